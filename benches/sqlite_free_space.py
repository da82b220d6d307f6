#!/usr/bin/env python3
"""What the SQLite free-space cure costs: a forget with `vacuum_after_forget = false` (baseline) against the default
`true` (cure), on copies of the same demo database, in the same run.

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (gdprd fails, no execution
log), or when the cure leaves a copy of a forgotten value in the database's files.

    python3 benches/sqlite_free_space.py                 # 1,000,000 filler contacts (~230 MiB, a few minutes)
    python3 benches/sqlite_free_space.py --rows 100000
    python3 benches/sqlite_free_space.py --binary target/release/gdprd

Without --binary it runs `cargo build --release`. Cases, each on its own copy of the database as `gdprd demo` made it,
after an application-style update (without `secure_delete`) that leaves old forms of the sample's values in free
space, as a real application does:
  seed     the seed's forget (12 contacts, one batch);
  1,000    1,000 filler phones present in the store, in one request (two batches of 500: two VACUUMs).
For each: wall time of `gdprd run --once`, database size, and (seed) how many copies of the forgotten values remain
in the database, its -wal and its -journal, before and after the forget.
"""

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Values only the seed's forgotten rows hold, and old forms the "application" wrote and replaced.
FORGOTTEN = [b"Analytical Engines", b"12 Babbage St", b"asked about invoice", b"1-781-555-1212",
             b"test2@test.com", b" 11.11.11.12", b"Your code is 1234", b"781.555.1313",
             b"781/555/1212 (home)", b"TEST2@TEST.COM (old)"]


def filler_phone(i):
    d = "1" + str(2_000_000_000 + (i * 7) % 1_000_000_000)
    return f"+1 {d[1:4]} {d[4:7]} {d[7:]}"


def copies(db):
    n = 0
    for suffix in ["", "-wal", "-journal"]:
        try:
            with open(db + suffix, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        n += sum(data.count(v) for v in FORGOTTEN)
    return n


def size(db):
    return sum(os.path.getsize(db + s) for s in ["", "-wal", "-journal"] if os.path.exists(db + s))


def application_update(db):
    """An application reformats two of the sample's values without secure_delete: the old forms stay in free space."""
    c = sqlite3.connect(db)
    c.execute("PRAGMA secure_delete = OFF")
    c.executescript(
        "UPDATE contact_list SET phone = '781/555/1212 (home)' WHERE last_name = 'Lovelace' AND account_id = '30003748347';"
        "UPDATE contact_list SET email = 'TEST2@TEST.COM (old)' WHERE last_name = 'Liskov' AND account_id = '30003748347';"
        "UPDATE contact_list SET phone = '(781) 555-1212' WHERE phone = '781/555/1212 (home)';"
        "UPDATE contact_list SET email = 'test2@test.com' WHERE email = 'TEST2@TEST.COM (old)';")
    c.commit()
    c.close()


def request(case, rows):
    if case == "seed":
        with open(os.path.join(REPO, "fixtures/requests/seed-forget.json"), "rb") as f:
            return f.read()
    step = max(1, rows // 1000)
    contacts = [{"phone": filler_phone(i)} for i in range(0, step * 1000, step)][:1000]
    return json.dumps({"requests": [{"requestcase": "bench", "type": "FORGET", "contacts": contacts}]}).encode()


def run_case(binary, master, case, rows, vacuum):
    work = tempfile.mkdtemp(prefix="gdprd-free-space-", dir=os.path.dirname(master))
    try:
        for name in os.listdir(master):
            src = os.path.join(master, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(work, name))
            else:
                shutil.copy2(src, os.path.join(work, name))
        config = os.path.join(work, "gdprd.toml")
        with open(config) as f:
            text = f.read()
        text = text.replace('type = "sqlite"\n', f'type = "sqlite"\nvacuum_after_forget = {"true" if vacuum else "false"}\n')
        text = text.replace("settle_seconds = 2", "settle_seconds = 0")
        with open(config, "w") as f:
            f.write(text)
        db = os.path.join(work, "demo.db")
        application_update(db)
        before = copies(db)
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
        name = f"forget-{today}_120000"
        with open(os.path.join(work, "accounts/demo/GDPR_Submit", name + ".json"), "wb") as f:
            f.write(request(case, rows))
        start = time.monotonic()
        out = subprocess.run([binary, "run", "--once", "--config", config], capture_output=True)
        wall = time.monotonic() - start
        if out.returncode != 0:
            sys.exit(f"gdprd failed: {out.stderr.decode()[-2000:]}")
        log = os.path.join(work, "accounts/demo/GDPR_Result", name + "-execution-log.json")
        if not os.path.exists(log):
            sys.exit(f"no execution log: {out.stderr.decode()[-2000:]}")
        return wall, before, copies(db), size(db)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--binary")
    args = ap.parse_args()
    binary = args.binary
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--bin", "gdprd"], cwd=REPO, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        binary = os.path.join(target, "release", "gdprd")
    base = tempfile.mkdtemp(prefix="gdprd-free-space-")
    try:
        master = os.path.join(base, "demo")
        start = time.monotonic()
        subprocess.run([binary, "demo", "--dir", master, "--rows", str(args.rows), "--no-start"], check=True,
                       capture_output=True)
        made = time.monotonic() - start
        db = os.path.join(master, "demo.db")
        print(f"demo database: {args.rows:,} filler contacts, {size(db) / 2**20:.0f} MiB, made in {made:.1f} s "
              f"(secure_delete, VACUUM); copies of the sample's values outside their rows: "
              f"{copies(db) - 9} (9 live cells hold them)")
        print(f"{'case':<8} {'vacuum_after_forget':<20} {'wall s':>8} {'left before':>12} {'left after':>11} {'MiB after':>10}")
        broken = False
        for case in ["seed", "1,000"]:
            for vacuum in [False, True]:
                wall, before, after, total = run_case(binary, master, case, args.rows, vacuum)
                # Only the seed's forget forgets the sample's values; the 1,000 filler phones leave them live.
                left = str(after) if case == "seed" else "n/a"
                print(f"{case:<8} {str(vacuum).lower():<20} {wall:>8.2f} {before:>12} {left:>11} {total / 2**20:>10.0f}")
                if vacuum and case == "seed" and after:
                    broken = True
        if broken:
            sys.exit("the cure left copies of forgotten values")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
