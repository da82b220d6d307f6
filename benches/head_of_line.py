#!/usr/bin/env python3
"""Head-of-line blocking between accounts: account B's 1-contact forget dropped while account A runs a
10,000-device forget on the 300,000-row demo store, with `[engine] workers = 1` (one file at a time, as before
issue 17) and `workers = 2`, in the same run.

Prints, per case and repetition, B's drop-to-log time and A's drop-to-log time; asserts nothing about speed. Exits
non-zero only when a run is broken (the daemon fails, a log does not come, a response is not SUCCESS).

    python3 benches/head_of_line.py                                     # 300,000 rows, 3 repetitions
    python3 benches/head_of_line.py --rows 300000 --binary target/release/gdprd --repeat 5

Without --binary it runs `cargo build --release`. Account A is the demo account as shipped (the SQLite demo store
and the CSV lists, both of --rows contacts); account B has its own SQLite store (a 1,000-contact demo database,
mapped as the demo's) and a local folder. Each repetition starts its own daemon on a fresh copy of the pristine
demo. A's file is dropped first; B's is dropped once the ledger shows A's file claimed (A is then at work). Both
files are renamed into GDPR_Submit, so the watcher announces them at once (no settle time).
"""

import argparse
import datetime
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as t  # noqa: E402  (built: the release binary)

DEVICES = 10_000


def demo(binary, folder, rows):
    subprocess.run([binary, "demo", "--dir", folder, "--rows", str(rows), "--no-start"], check=True,
                   stdout=subprocess.DEVNULL)


def forget(first, n):
    contacts = ", ".join(f'{{"email": "user{i}@example.com"}}' for i in range(first, first + n))
    return f'{{"requests": [{{"requestcase": "hol", "type": "FORGET", "contacts": [{contacts}]}}]}}'.encode()


def configure(work, workers):
    """Account b with its own store, the given number of workers, ports the OS picks, no settle time."""
    config = os.path.join(work, "gdprd.toml")
    with open(config) as f:
        text = f.read()
    text = text.replace("127.0.0.1:8080", "127.0.0.1:0").replace("127.0.0.1:2222", "127.0.0.1:0")
    text = text.replace("settle_seconds = 2", "settle_seconds = 0")
    demo_store = text[text.index("[stores.demo]"):]
    b_store = demo_store.replace("[stores.demo", "[stores.b").replace('path = "demo.db"', 'path = "b/demo.db"')
    b_store = b_store.replace('files_root = "recordings"', 'files_root = "b/recordings"')
    head = text[:text.index("[stores.demo]")]
    account = ('[[accounts]]\nname = "b"\nroot = "accounts/b"\ntimezone = "UTC"\ntransport = "local"\n'
               'stores = ["b"]\nretention_days = 3\n\n')
    text = head + account + demo_store + "\n" + b_store + f"\n[engine]\nworkers = {workers}\n"
    with open(config, "w") as f:
        f.write(text)
    for sub in ("GDPR_Submit", "GDPR_Result"):
        os.makedirs(os.path.join(work, "accounts", "b", sub), exist_ok=True)
    return config


def drop(work, account, name, data):
    submit = os.path.join(work, "accounts", account, "GDPR_Submit")
    temp = os.path.join(submit, name + ".filepart")
    with open(temp, "wb") as f:
        f.write(data)
    os.rename(temp, os.path.join(submit, name))
    return time.monotonic()


def wait(what, done, limit=600):
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > limit:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.002)
    return time.monotonic()


def claimed(work, account, name):
    try:
        with sqlite3.connect(f"file:{os.path.join(work, 'state', 'ledger.db')}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM files WHERE account = ? AND name = ?",
                              (account, name)).fetchone()[0] > 0
    except sqlite3.Error:
        return False


def log_of(work, account, name):
    return os.path.join(work, "accounts", account, "GDPR_Result",
                        name.removesuffix(".json") + "-execution-log.json")


def responses(path):
    import json
    with open(path) as f:
        log = json.load(f)
    return [c["response"] for r in log["result"] for c in r["contacts"]]


def case(binary, pristine, scratch, workers, n):
    work = os.path.join(scratch, f"w{workers}-{n}")
    shutil.copytree(pristine, work)
    config = configure(work, workers)
    out = open(os.path.join(work, "daemon.log"), "w")
    daemon = subprocess.Popen([binary, "run", "--config", config], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait("the daemon to be ready", lambda: "gdprd ready" in open(os.path.join(work, "daemon.log")).read(), 120)
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
        big, small = f"forget-{today}_010000.json", f"forget-{today}_010001.json"
        a_dropped = drop(work, "demo", big, forget(0, DEVICES))
        wait("A's file to be claimed", lambda: claimed(work, "demo", big))
        b_dropped = drop(work, "b", small, forget(5, 1))
        # Both logs watched in one loop: each time is when its log was first seen.
        seen = {}
        paths = {"a": log_of(work, "demo", big), "b": log_of(work, "b", small)}

        def both():
            for k, path in paths.items():
                if k not in seen and os.path.exists(path):
                    seen[k] = time.monotonic()
            return len(seen) == 2

        wait("both execution logs", both)
        a_done, b_done = seen["a"], seen["b"]
        if daemon.poll() is not None:
            sys.exit(f"the daemon stopped: see {work}/daemon.log")
        got_b, got_a = responses(log_of(work, "b", small)), responses(log_of(work, "demo", big))
        if got_b != ["SUCCESS"] or len(got_a) != DEVICES or any(r != "SUCCESS" for r in got_a):
            sys.exit(f"unexpected responses: B {got_b}, A {len(got_a)} with {set(got_a)}")
        return b_done - b_dropped, a_done - a_dropped, b_done < a_done
    finally:
        daemon.terminate()
        daemon.wait(60)
        out.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--binary")
    args = parser.parse_args()
    binary = t.built(args.binary)
    scratch = tempfile.mkdtemp(prefix="gdprd-hol-")
    try:
        pristine = os.path.join(scratch, "pristine")
        demo(binary, pristine, args.rows)
        demo(binary, os.path.join(pristine, "b"), 1_000)
        print(f"gdprd {binary}; A: {DEVICES:,}-device forget on {args.rows:,} rows (demo store + CSV lists); "
              f"B: 1 contact on its own 1,000-row store; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        results = {}
        for n in range(args.repeat):
            for workers in (1, 2):
                b, a, first = case(binary, pristine, scratch, workers, n)
                results.setdefault(workers, []).append((b, a))
                print(f"workers={workers} run {n + 1}: B drop-to-log {b:.3f} s, A drop-to-log {a:.3f} s, "
                      f"B {'before' if first else 'after'} A", flush=True)
        for workers, runs in results.items():
            print(f"workers={workers}: B median {statistics.median(r[0] for r in runs):.3f} s "
                  f"(min {min(r[0] for r in runs):.3f}, max {max(r[0] for r in runs):.3f}); "
                  f"A median {statistics.median(r[1] for r in runs):.3f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
