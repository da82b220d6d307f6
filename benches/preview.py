#!/usr/bin/env python3
"""`gdprd preview` against the forget it mirrors, on the same data, in the same run (issue 18 item 2).

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (gdprd fails, the forget's
responses are not 5,000 SUCCESS / 5,000 SUCCESS: not found / 0 ERROR, or they differ from what the preview said).

    python3 benches/preview.py                                   # SQLite demo, 1,000,000 filler contacts
    python3 benches/preview.py --postgres postgres://postgres@127.0.0.1:5432/test --mysql mysql://root@127.0.0.1:3306/test
    python3 benches/preview.py --rows 100000 --binary target/release/gdprd --no-sqlite --postgres URL

Without --binary it runs `cargo build --release`. Needs GNU time (apt-get install time).

For each store (the demo's SQLite database; with --postgres / --mysql the same demo data loaded by
`gdprd demo-db` into a schema / database of its own, dropped at the end), with the demo's CSV list beside it
(one filler contact in ten), one request file of 10,000 devices: 2,500 filler phones and 2,500 filler emails
present, spread over the whole table, and 2,500 phones + 2,500 emails absent. Measured, each as its own child
process (wall time and peak RSS):
  preview  `gdprd preview --json FILE` (one read-only scan of every table for the whole file);
  forget   `gdprd run --once` with the file in GDPR_Submit (the survey, then 20 chunks of 500 devices).
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as t  # noqa: E402  (filler_phone, filler_email, measure, request_file, run_gdprd)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESENT = 2_500  # phones, and as many emails


def devices(rows):
    """10,000 contacts: 2,500 filler phones and 2,500 filler emails of different contacts, 5,000 absent."""
    spread = max(rows // (2 * PRESENT), 1)
    contacts = [{"phone": t.filler_phone((2 * k) * spread)} for k in range(PRESENT)]
    contacts += [{"email": t.filler_email((2 * k + 1) * spread)} for k in range(PRESENT)]
    contacts += [{"email": f"nobody{k}@example.org"} for k in range(PRESENT)]
    contacts += [{"phone": f"+44 20 7947 {k:04d}"} for k in range(PRESENT)]
    return contacts


def replace_demo_store(config_path, fixture, url, schema=None):
    """Replaces the [stores.demo] sections of the demo config with `fixture` (a fixtures/*/store.toml)."""
    with open(config_path) as f:
        lines = f.read().splitlines()
    out, skipping = [], False
    for line in lines:
        if line.startswith("["):
            skipping = bool(re.match(r"^\[\[?stores\.demo[.\]]", line))
        if not skipping:
            out.append(line)
    with open(os.path.join(REPO, fixture)) as f:
        store = f.read()
    store = re.sub(r'^url = ".*"$', f'url = "{url}"', store, count=1, flags=re.M)
    store = re.sub(r'^tls = ".*"$', 'tls = "disable"', store, count=1, flags=re.M)
    if schema:
        store = re.sub(r'^schema = ".*"$', f'schema = "{schema}"', store, count=1, flags=re.M)
    with open(config_path, "w") as f:
        f.write("\n".join(out) + "\n" + store)


def preview(binary, demo, path):
    """`gdprd preview --json`: (seconds, MiB, the report)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        secs, rss, code = t.measure([binary, "preview", "--config", os.path.join(demo, "gdprd.toml"), "--json",
                                     path], stdout=out, stderr=err)
        if code != 0:
            err.seek(0)
            sys.exit(f"gdprd preview exited {code}: {err.read()[-4000:]}")
        out.seek(0)
        return secs, rss, json.load(out)


def one_store(binary, work, label, rows, setup):
    """Lays out a demo (`setup` puts the demo store where it belongs), previews then forgets the file; returns
    (label, preview s, preview MiB, forget s, forget MiB, rows counted)."""
    demo = os.path.join(work, label)
    print(f"{label}: laying out the demo ({rows:,} filler contacts) ...", flush=True)
    secs, _, code = t.measure([binary, "demo", "--dir", demo, "--rows", str(rows), "--no-start"])
    if code != 0:
        sys.exit(f"gdprd demo exited {code}")
    setup(demo)
    print(f"  laid out in {secs:.0f} s", flush=True)
    body = t.request_file("FORGET", devices(rows))
    path = os.path.join(work, f"{label}-forget.json")
    with open(path, "w") as f:
        f.write(body)
    p_secs, p_rss, report = preview(binary, demo, path)
    counted = sum(tb["rows"] for s in report["stores"] for tb in s["tables"])
    print(f"  preview: {p_secs:.2f} s, peak {p_rss:.0f} MiB; counts {report['counts']}; {counted:,} rows "
          f"in {sum(len(s['tables']) for s in report['stores'])} tables", flush=True)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    name = f"forget-{today}_120000.json"
    f_secs, f_rss, _, stem = t.run_gdprd(binary, demo, name, body, (2 * PRESENT, 2 * PRESENT, 0))
    with open(os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-execution-log.json")) as f:
        log = json.load(f)
    done = [c["response"] for r in log["result"] for c in r["contacts"]]
    said = [c["response"] for c in report["contacts"]]
    if done != said:
        sys.exit(f"{label}: the forget's responses differ from the preview's")
    print(f"  forget:  {f_secs:.2f} s, peak {f_rss:.0f} MiB; responses equal the preview's", flush=True)
    return (label, p_secs, p_rss, f_secs, f_rss, counted)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="filler contacts (default 1,000,000)")
    ap.add_argument("--binary", help="a built gdprd (default: cargo build --release)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite demo store")
    ap.add_argument("--postgres", help="also a PostgreSQL server (postgres://user@host/db)")
    ap.add_argument("--mysql", help="also a MySQL/MariaDB server (mysql://user@host/db)")
    args = ap.parse_args()
    if args.rows < 2 * PRESENT * 2:
        sys.exit(f"--rows must be at least {4 * PRESENT}")
    binary = t.built(args.binary)
    work = tempfile.mkdtemp(prefix="gdprd-bench-preview-")
    figures = []
    cleanup = []
    try:
        if not args.no_sqlite:
            figures.append(one_store(binary, work, "sqlite", args.rows, lambda demo: None))
        if args.postgres:
            schema = f"gdprd_bench_preview_{os.getpid()}"

            def pg(demo):
                cleanup.append(lambda: subprocess.run(["psql", "-X", "-q", args.postgres, "-c",
                                                       f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                                                      stderr=subprocess.DEVNULL))
                files = os.path.join(demo, "recordings")
                code = subprocess.run([binary, "demo-db", "--postgres", args.postgres, "--schema", schema,
                                       "--rows", str(args.rows), "--files-dir", files]).returncode
                if code != 0:
                    sys.exit("gdprd demo-db --postgres failed")
                replace_demo_store(os.path.join(demo, "gdprd.toml"), "fixtures/postgres/store.toml",
                                   args.postgres, schema)

            figures.append(one_store(binary, work, "postgres", args.rows, pg))
        if args.mysql:
            name = f"gdprd_bench_preview_{os.getpid()}"
            base = args.mysql.rsplit("/", 1)[0]
            url = f"{base}/{name}"

            def my(demo):
                host = re.match(r"mysql://(?:([^@:/]+)@)?([^:/]+)(?::(\d+))?", args.mysql)
                argv = ["mysql", "-u", host.group(1) or "root", "-h", host.group(2), "-P", host.group(3) or "3306"]
                subprocess.run(argv + ["-e", f"CREATE DATABASE {name}"], check=True)
                cleanup.append(lambda: subprocess.run(argv + ["-e", f"DROP DATABASE IF EXISTS {name}"]))
                files = os.path.join(demo, "recordings")
                code = subprocess.run([binary, "demo-db", "--mysql", url, "--rows", str(args.rows),
                                       "--files-dir", files]).returncode
                if code != 0:
                    sys.exit("gdprd demo-db --mysql failed")
                replace_demo_store(os.path.join(demo, "gdprd.toml"), "fixtures/mysql/store.toml", url)

            figures.append(one_store(binary, work, "mysql", args.rows, my))
    finally:
        for undo in cleanup:
            undo()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"10,000 devices (5,000 present) on {args.rows:,} filler contacts, with the demo's CSV list:")
    print("| store | preview | forget | preview / forget | rows counted |")
    print("|---|---|---|---|---|")
    for label, p_secs, p_rss, f_secs, f_rss, counted in figures:
        print(f"| {label} | {p_secs:.2f} s, {p_rss:.0f} MiB | {f_secs:.2f} s, {f_rss:.0f} MiB | "
              f"{p_secs / f_secs:.2f} | {counted:,} |")


if __name__ == "__main__":
    main()
