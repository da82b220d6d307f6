#!/usr/bin/env python3
"""Forget and export throughput of gdprd on the demo store, against the hand-written SQL a DBA would run.

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (no log, wrong counts).

    python3 benches/throughput.py              # 1,000,000 filler contacts (about 1.2 GB of disk in a temp dir)
    python3 benches/throughput.py --quick      # 100,000
    python3 benches/throughput.py --binary target/release/gdprd --rows 500000

Each measured command runs as its own child; wall time and that child's peak RSS (os.wait4) are reported.
Needs the sqlite3 command-line tool for the baselines.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(argv, stdin=None, stdout=subprocess.DEVNULL):
    """Runs argv; returns (seconds, peak RSS in MiB, exit status)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_maxrss / 1024, proc.returncode


def filler_digits(i):
    """E.164 digits of demo filler contact i (see filler_digits in src/demo.rs)."""
    return "1" + str(2_000_000_000 + (i * 7) % 1_000_000_000)


def filler_phone(i):
    d = filler_digits(i)
    return f"+1 {d[1:4]} {d[4:7]} {d[7:]}"


def devices(rows):
    """1,000 devices: 250 filler phones and 250 filler emails present, 500 absent."""
    step = max(rows // 250, 1)
    present_phones = [i * step for i in range(250)]
    present_emails = [i * step + 1 for i in range(250)]
    contacts = [{"phone": filler_phone(i)} for i in present_phones]
    contacts += [{"email": f"user{i}@example.com"} for i in present_emails]
    contacts += [{"email": f"nobody{k}@example.org"} for k in range(250)]
    contacts += [{"phone": f"+49 30 5555 {k:04d}"} for k in range(250)]
    return contacts, present_phones, present_emails


def request_file(kind, contacts):
    return json.dumps({"requests": [{"requestcase": "bench", "type": kind.upper(), "contacts": contacts}]})


def matchers(phones, emails):
    """SQL predicates a DBA would write: phone digits by nested replace(), emails by lower(trim())."""
    digits = ", ".join(f"'{filler_digits(i)}', '{filler_digits(i)[1:]}'" for i in phones)
    mails = ", ".join(f"'user{i}@example.com'" for i in emails)

    def ph(col):
        expr = col
        for ch in [" ", "(", ")", "-", ".", "+"]:
            expr = f"replace({expr}, '{ch}', '')"
        return f"{expr} IN ({digits})"

    return ph, lambda col: f"lower(trim({col})) IN ({mails})"


def baseline_forget_sql(phones, emails):
    ph, em = matchers(phones, emails)
    r = "'forgotten-' || lower(hex(randomblob(8)))"
    return f"""
BEGIN;
UPDATE contact_list SET phone = {r}, mobile = {r}, email = {r}, first_name = 'REDACTED', last_name = 'REDACTED',
  company = 'REDACTED', address = 'REDACTED', notes = 'REDACTED'
  WHERE {ph('phone')} OR {ph('mobile')} OR {em('email')};
UPDATE contact_attempt SET dialed_number = {r}, agent_notes = 'REDACTED' WHERE {ph('dialed_number')};
UPDATE callback SET state = 'CANCELLED' WHERE {ph('customer_number')} AND state IN ('PROCESSING', 'QUEUED', 'ROUTING');
COMMIT;
BEGIN;
DELETE FROM callback WHERE {ph('customer_number')};
UPDATE sms_message SET msisdn = {r}, body = 'REDACTED' WHERE {ph('msisdn')} AND shortcode IN ('11111', '22222');
DELETE FROM call_recording WHERE {ph('caller_number')};
UPDATE web_session SET login_email = {r}, client_ip = {r}, user_agent = 'REDACTED' WHERE {em('login_email')};
COMMIT;
"""


def baseline_export_sql(phones, emails):
    ph, em = matchers(phones, emails)
    return f"""
SELECT * FROM contact_list WHERE {ph('phone')} OR {ph('mobile')} OR {em('email')};
SELECT * FROM contact_attempt WHERE {ph('dialed_number')};
SELECT * FROM callback WHERE {ph('customer_number')};
SELECT * FROM call_recording WHERE {ph('caller_number')};
SELECT * FROM web_session WHERE {em('login_email')};
"""


def responses(log_path):
    with open(log_path) as f:
        log = json.load(f)
    out = {}
    for request in log["result"]:
        for contact in request["contacts"]:
            out[contact["response"]] = out.get(contact["response"], 0) + 1
    return out


def run_gdprd(binary, demo, name, body):
    submit = os.path.join(demo, "accounts/demo/GDPR_Submit")
    with open(os.path.join(submit, name), "w") as f:
        f.write(body)
    secs, rss, code = measure([binary, "run", "--config", os.path.join(demo, "gdprd.toml"), "--once"])
    if code != 0:
        sys.exit(f"gdprd exited {code}")
    stem = name[: -len(".json")]
    log = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-execution-log.json")
    if not os.path.exists(log):
        sys.exit(f"no execution log for {name}")
    return secs, rss, responses(log), stem


def sqlite(db, sql, out=subprocess.DEVNULL, csv=False):
    argv = ["sqlite3"] + (["-csv"] if csv else []) + [db]
    with tempfile.TemporaryFile("w+") as script:
        script.write(sql)
        script.seek(0)
        return measure(argv, stdin=script, stdout=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    ap.add_argument("--binary", help="a built gdprd (default: cargo build --release)")
    ap.add_argument("--stream-rows", type=int, default=1_000_000, help="rows of one device in the streaming export")
    args = ap.parse_args()
    rows = 100_000 if args.quick else args.rows
    if shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 command-line tool is needed for the baselines (apt-get install sqlite3)")
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        binary = os.path.join(target, "release", "gdprd")
    binary = os.path.abspath(binary)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    work = tempfile.mkdtemp(prefix="gdprd-bench-")
    figures = []
    try:
        demo = os.path.join(work, "demo")
        secs, rss, _ = measure([binary, "demo", "--dir", demo, "--rows", str(rows), "--no-start"])
        db = os.path.join(demo, "demo.db")
        pristine = os.path.join(work, "pristine.db")
        shutil.copy(db, pristine)
        print(f"demo database: {rows:,} filler contacts, {os.path.getsize(db) / 2**20:.0f} MiB, made in {secs:.1f} s")
        contacts, phones, emails = devices(rows)

        # Forget: gdprd vs the hand-written SQL, each on its own copy of the same database.
        secs, rss, counts, _ = run_gdprd(binary, demo, f"forget-{today}_120000.json", request_file("forget", contacts))
        if counts.get("SUCCESS", 0) < 500 or counts.get("SUCCESS: not found", 0) > 500 or any(k.startswith("ERROR") for k in counts):
            sys.exit(f"unexpected forget responses: {counts}")
        base_db = os.path.join(work, "baseline.db")
        shutil.copy(pristine, base_db)
        bsecs, brss, code = sqlite(base_db, baseline_forget_sql(phones, emails))
        if code != 0:
            sys.exit("baseline forget failed")
        figures.append(("forget 1,000 devices", secs, rss, bsecs, brss, f"{counts}"))

        # Export: same devices on a fresh copy.
        shutil.copy(pristine, db)
        secs, rss, counts, stem = run_gdprd(binary, demo, f"export-{today}_120000.json", request_file("export", contacts))
        archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
        with zipfile.ZipFile(archive) as z:
            exported = sum(sum(1 for _ in z.open(i)) - 1 for i in z.infolist())
        with open(os.path.join(work, "baseline.csv"), "w") as out:
            bsecs, brss, code = sqlite(pristine, baseline_export_sql(phones, emails), out=out, csv=True)
        figures.append(("export 1,000 devices", secs, rss, bsecs, brss, f"{exported:,} rows, {os.path.getsize(archive) / 1024:.0f} KiB zip"))

        # Streaming: one device in a million rows; memory must stay flat.
        shutil.copy(pristine, db)
        n = args.stream_rows
        fill = f"""
INSERT INTO web_session (account_id, login_email, client_ip, user_agent, started_at)
  SELECT account_id, 'stream@example.com', '192.0.2.1', 'Mozilla/5.0 (bench)', '2025-06-06T09:00:00Z'
  FROM contact_list LIMIT {n};
"""
        sqlite(db, fill)
        body = request_file("export", [{"email": "stream@example.com"}])
        secs, rss, counts, stem = run_gdprd(binary, demo, f"export-{today}_130000.json", body)
        archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
        with zipfile.ZipFile(archive) as z:
            exported = sum(sum(1 for _ in z.open(i)) - 1 for i in z.infolist())
        if exported < n:
            sys.exit(f"streaming export wrote {exported} rows, expected at least {n}")
        with open(os.path.join(work, "stream.csv"), "w") as out:
            bsecs, brss, _ = sqlite(db, "SELECT * FROM web_session WHERE lower(trim(login_email)) = 'stream@example.com';", out=out, csv=True)
        figures.append((f"export 1 device, {exported:,} rows", secs, rss, bsecs, brss, f"{os.path.getsize(archive) / 2**20:.1f} MiB zip"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'case':34} {'gdprd s':>8} {'peak MiB':>9} {'SQL s':>7} {'SQL MiB':>8} {'ratio':>6}  notes")
    for case, secs, rss, bsecs, brss, notes in figures:
        print(f"{case:34} {secs:8.2f} {rss:9.1f} {bsecs:7.2f} {brss:8.1f} {secs / bsecs:6.2f}  {notes}")


if __name__ == "__main__":
    main()
