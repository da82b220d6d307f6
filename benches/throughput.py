#!/usr/bin/env python3
"""Forget and export throughput of gdprd on the demo store, against the hand-written SQL a DBA would run.

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (gdprd fails, no execution
log, responses other than 500 SUCCESS / 500 SUCCESS: not found / 0 ERROR, a baseline that fails).

    python3 benches/throughput.py              # 1,000,000 filler contacts (~230 MiB database, a few minutes)
    python3 benches/throughput.py --quick      # 100,000
    python3 benches/throughput.py --binary /tmp/bench-target/release/gdprd --rows 500000

Without --binary it runs `cargo build --release` (CARGO_TARGET_DIR from the environment, else the repo's target/).
Every measured command runs as its own child process; its wall time and its own peak RSS (GNU time's %M) are
reported. Needs the sqlite3 command-line tool for the baselines and GNU time (apt-get install sqlite3 time).

Cases, each on its own copy of the database as it was before any of them ran:
  forget  1,000 devices in one request (250 filler phones + 250 filler emails present, 250 phones + 250 emails
          absent), `gdprd run --once`, against one transaction of UPDATE/DELETE per mapped table in sqlite3;
  export  the same 1,000 devices, against `sqlite3 -csv` SELECTs of the same rows into a file;
  stream  one email carried by >= 1,000,000 web_session rows, exported: shows whether memory stays flat.
"""

import argparse
import csv
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GNU_TIME = "/usr/bin/time"  # Debian package `time`
SHORTCODES = ["11111", "22222"]  # named in the requests, so sms_message is in scope for gdprd and the baseline
PUNCTUATION = [" ", "(", ")", "-", ".", "+"]


# --- devices -------------------------------------------------------------------------------------------------


def filler_digits(i):
    """E.164 digits of demo filler contact i (filler_digits in src/demo.rs)."""
    return "1" + str(2_000_000_000 + (i * 7) % 1_000_000_000)


def filler_phone(i):
    """Filler contact i's phone as a customer writes it (filler_phone in src/demo.rs)."""
    d = filler_digits(i)
    return f"+1 {d[1:4]} {d[4:7]} {d[7:]}"


def filler_email(i):
    return f"user{i}@example.com"


def devices(rows):
    """The 1,000 devices of the request: (contacts, phone digit strings, emails).

    Present: 250 filler phones and 250 filler emails of different contacts, spread over the whole table.
    Absent: nobody{k}@example.org and +44 20 7946 1000..1249 (the seed sample holds +44 20 7946 0018, so the
    0xxx block is avoided).
    """
    spread = max(rows // 500, 1)
    phone_ids = [(2 * k) * spread for k in range(250)]
    email_ids = [(2 * k + 1) * spread for k in range(250)]
    contacts = [{"phone": filler_phone(i)} for i in phone_ids]
    contacts += [{"email": filler_email(i)} for i in email_ids]
    contacts += [{"email": f"nobody{k}@example.org"} for k in range(250)]
    contacts += [{"phone": f"+44 20 7946 {1000 + k}"} for k in range(250)]
    phones = [filler_digits(i) for i in phone_ids] + [f"44207946{1000 + k}" for k in range(250)]
    emails = [c["email"] for c in contacts if "email" in c]
    return contacts, phones, emails


def request_file(kind, contacts):
    """One request, "accountid" omitted (every account), the two non-shared shortcodes."""
    request = {"requestcase": f"bench-{kind.lower()}", "type": kind, "shortcodes": SHORTCODES, "contacts": contacts}
    return json.dumps({"requests": [request]}, indent=1)


# --- the baseline a DBA would write ----------------------------------------------------------------------------


def predicates(phones, emails):
    """(phone predicate, email predicate) builders.

    Stored phones are normalised with nested replace() of ' ', '(', ')', '-', '.', '+' and compared with every
    digit form a device takes in the demo data: with the country code 1, without it (national), and after the
    international prefix 011. Emails: lower(trim(col)) IN (...).
    """
    forms = []
    for d in phones:
        forms.append(d)
        if d.startswith("1"):
            forms.append(d[1:])
        forms.append("011" + d)
    digits = ", ".join(f"'{f}'" for f in forms)
    mails = ", ".join(f"'{e.lower()}'" for e in emails)

    def phone(col):
        expr = col
        for ch in PUNCTUATION:
            expr = f"replace({expr}, '{ch}', '')"
        return f"{expr} IN ({digits})"

    def email(col):
        return f"lower(trim({col})) IN ({mails})"

    return phone, email


def baseline_forget_sql(phones, emails):
    ph, em = predicates(phones, emails)
    token = "'forgotten-' || lower(hex(randomblob(8)))"
    codes = ", ".join(f"'{c}'" for c in SHORTCODES)
    return f"""
BEGIN IMMEDIATE;
UPDATE contact_list SET phone = {token}, mobile = CASE WHEN mobile IS NULL THEN NULL ELSE {token} END,
  email = {token}, first_name = 'REDACTED', last_name = 'REDACTED', company = 'REDACTED', address = 'REDACTED',
  notes = 'REDACTED'
  WHERE {ph('phone')} OR {ph('mobile')} OR {em('email')};
SELECT 'contact_list', changes();
UPDATE contact_attempt SET dialed_number = {token}, agent_notes = CASE WHEN agent_notes IS NULL THEN NULL ELSE 'REDACTED' END
  WHERE {ph('dialed_number')};
SELECT 'contact_attempt', changes();
DELETE FROM callback WHERE {ph('customer_number')};
SELECT 'callback', changes();
UPDATE sms_message SET msisdn = {token}, body = 'REDACTED' WHERE {ph('msisdn')} AND shortcode IN ({codes});
SELECT 'sms_message', changes();
DELETE FROM call_recording WHERE {ph('caller_number')};
SELECT 'call_recording', changes();
UPDATE web_session SET login_email = {token}, client_ip = {token}, user_agent = 'REDACTED' WHERE {em('login_email')};
SELECT 'web_session', changes();
COMMIT;
"""


def baseline_export_sql(phones, emails):
    ph, em = predicates(phones, emails)
    codes = ", ".join(f"'{c}'" for c in SHORTCODES)
    return f"""
SELECT * FROM contact_list WHERE {ph('phone')} OR {ph('mobile')} OR {em('email')};
SELECT * FROM contact_attempt WHERE {ph('dialed_number')};
SELECT * FROM callback WHERE {ph('customer_number')};
SELECT * FROM sms_message WHERE {ph('msisdn')} AND shortcode IN ({codes});
SELECT id, account_id, caller_number, duration_s, recorded_at FROM call_recording WHERE {ph('caller_number')};
SELECT * FROM web_session WHERE {em('login_email')};
SELECT * FROM email_suppression WHERE {em('email')};
"""


# Tables whose rows a forget deletes, and the column a forget overwrites with 'forgotten-…' in the others.
DELETED = ["callback", "call_recording"]
ANONYMISED = {"contact_list": "phone", "contact_attempt": "dialed_number", "sms_message": "msisdn",
              "web_session": "login_email"}


def effect(db, pristine):
    """What a forget left behind: row counts of deleting tables, and the rows of anonymising ones whose device
    column changed from the pristine copy (replaced by a placeholder, or masked where the demo pseudonymises)."""
    sql = f"ATTACH '{pristine}' AS p;"
    sql += "".join(f"SELECT count(*) FROM {t};" for t in DELETED)
    sql += "".join(f"SELECT count(*) FROM {t} a JOIN p.{t} b ON a.id = b.id WHERE a.{c} IS NOT b.{c};"
                   for t, c in ANONYMISED.items())
    out = subprocess.run(["sqlite3", db], input=sql, capture_output=True, text=True, check=True).stdout.split()
    return dict(zip(DELETED + list(ANONYMISED), (int(n) for n in out)))


# --- running and measuring -------------------------------------------------------------------------------------


def measure(argv, stdin=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    """Runs argv as a child under GNU time; returns (seconds, peak RSS of that child in MiB, exit status).

    The peak RSS comes from `/usr/bin/time -f %M`, not from os.wait4 or RUSAGE_CHILDREN here: Linux carries a
    process's peak RSS across exec, so a child forked straight from this Python process would report at least
    Python's own RSS (~15 MiB). GNU time is a small C program; what it reports floors at about 1 MiB.
    """
    with tempfile.NamedTemporaryFile("r", prefix="gdprd-bench-rss-") as rss_file:
        start = time.monotonic()
        code = subprocess.run([GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv], stdin=stdin, stdout=stdout,
                              stderr=stderr).returncode
        secs = time.monotonic() - start
        with open(rss_file.name) as f:
            lines = f.read().split()
    kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return secs, kib / 1024, code


def sqlite(db, sql, out_path=None, csv_mode=False):
    """Runs a SQL script through the sqlite3 CLI as a measured child; returns (seconds, MiB, status, stdout)."""
    argv = ["sqlite3", "-bail"] + (["-csv"] if csv_mode else []) + [db]
    with tempfile.TemporaryFile("w+") as script, tempfile.TemporaryFile("w+") as err:
        script.write(sql)
        script.seek(0)
        if out_path:
            with open(out_path, "w") as out:
                secs, rss, code = measure(argv, stdin=script, stdout=out, stderr=err)
            text = ""
        else:
            with tempfile.TemporaryFile("w+") as out:
                secs, rss, code = measure(argv, stdin=script, stdout=out, stderr=err)
                out.seek(0)
                text = out.read()
        if code != 0:
            err.seek(0)
            sys.exit(f"sqlite3 failed ({code}): {err.read()[:2000]}")
    return secs, rss, code, text


def responses(log_path):
    with open(log_path) as f:
        log = json.load(f)
    counts = {"SUCCESS": 0, "SUCCESS: not found": 0, "ERROR": 0}
    for request in log["result"]:
        for contact in request["contacts"]:
            r = contact["response"]
            counts[r if r in counts else "ERROR"] += 1
    return counts


def run_gdprd(binary, demo, name, body, expect):
    """Drops `name` into GDPR_Submit and runs `gdprd run --once`; returns (seconds, MiB, counts, stem)."""
    submit = os.path.join(demo, "accounts/demo/GDPR_Submit")
    with open(os.path.join(submit, name), "w") as f:
        f.write(body)
    stem = name[: -len(".json")]
    stderr_path = os.path.join(os.path.dirname(demo), f"{stem}.stderr")
    with open(stderr_path, "w") as err:
        secs, rss, code = measure([binary, "run", "--config", os.path.join(demo, "gdprd.toml"), "--once"], stderr=err)
    if code != 0:
        sys.exit(f"gdprd exited {code} on {name}; its stderr:\n{open(stderr_path).read()[-4000:]}")
    log = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-execution-log.json")
    if not os.path.exists(log):
        sys.exit(f"no execution log for {name}; gdprd's stderr:\n{open(stderr_path).read()[-4000:]}")
    counts = responses(log)
    print(f"  {name}: SUCCESS {counts['SUCCESS']}, SUCCESS: not found {counts['SUCCESS: not found']}, "
          f"ERROR {counts['ERROR']}")
    if (counts["SUCCESS"], counts["SUCCESS: not found"], counts["ERROR"]) != expect:
        sys.exit(f"unexpected responses for {name}: {counts}, expected {expect}")
    return secs, rss, counts, stem


def archive_rows(path):
    """Data rows of every CSV in an export archive (CSV records minus each entry's header)."""
    rows = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as raw:
                n = sum(1 for _ in csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")))
            rows[info.filename] = max(n - 1, 0)
    return rows


def csv_rows(path):
    with open(path, newline="") as f:
        return sum(1 for _ in csv.reader(f))


def fresh_db(pristine, db):
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shutil.copy(pristine, db)


def mib(n):
    return n / 2**20


def built(binary):
    """`binary` made absolute, or when None the release build `cargo build --release` makes (CARGO_TARGET_DIR from
    the environment, else the repo's target/)."""
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        print(f"building: cargo build --release (CARGO_TARGET_DIR={target})", flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True, env=env)
        binary = os.path.join(target, "release", "gdprd")
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not an executable")
    return binary


# --- main ------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="filler contacts in the demo (default 1,000,000)")
    ap.add_argument("--quick", action="store_true", help="100,000 filler contacts")
    ap.add_argument("--binary", help="a built gdprd (default: cargo build --release)")
    ap.add_argument("--stream-rows", type=int, default=1_000_000,
                    help="at least this many web_session rows carry the streamed email (default 1,000,000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (printed) for inspection")
    args = ap.parse_args()
    rows = 100_000 if args.quick else args.rows
    if rows < 500:
        sys.exit("--rows must be at least 500 (500 distinct filler contacts are named)")
    if shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 command-line tool is needed for the baselines (apt-get install sqlite3)")
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit("GNU time is needed to measure each child's peak RSS (apt-get install time)")

    binary = built(args.binary)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    work = tempfile.mkdtemp(prefix="gdprd-bench-")
    figures = []  # (case, gdprd s, gdprd MiB, baseline s, baseline MiB, notes)
    try:
        demo = os.path.join(work, "demo")
        db = os.path.join(demo, "demo.db")
        pristine = os.path.join(work, "pristine.db")
        print(f"laying out the demo in {demo} ({rows:,} filler contacts) ...", flush=True)
        gen_secs, gen_rss, code = measure([binary, "demo", "--dir", demo, "--rows", str(rows), "--no-start"])
        if code != 0:
            sys.exit(f"gdprd demo exited {code}")
        shutil.copy(db, pristine)
        counts_sql = "".join(f"SELECT count(*) FROM {t};" for t in
                             ["contact_list", "contact_attempt", "callback", "sms_message", "call_recording",
                              "web_session"])
        sizes = subprocess.run(["sqlite3", pristine], input=counts_sql, capture_output=True, text=True,
                               check=True).stdout.split()
        print(f"  demo database: {mib(os.path.getsize(db)):.0f} MiB, made in {gen_secs:.1f} s "
              f"(peak {gen_rss:.0f} MiB); rows: contact_list {int(sizes[0]):,}, contact_attempt {int(sizes[1]):,}, "
              f"callback {int(sizes[2]):,}, sms_message {int(sizes[3]):,}, call_recording {int(sizes[4]):,}, "
              f"web_session {int(sizes[5]):,}")
        contacts, phones, emails = devices(rows)

        # Forget: gdprd on demo.db, the hand-written SQL on an identical copy taken before.
        print("forget: 1,000 devices ...", flush=True)
        base_db = os.path.join(work, "baseline.db")
        fresh_db(pristine, base_db)
        secs, rss, _, _ = run_gdprd(binary, demo, f"forget-{today}_120000.json",
                                    request_file("FORGET", contacts), (500, 500, 0))
        bsecs, brss, _, changed = sqlite(base_db, baseline_forget_sql(phones, emails))
        changed = ", ".join(line.replace("|", " ") for line in changed.split())
        print(f"  baseline rows changed: {changed}")
        ours, theirs = effect(db, pristine), effect(base_db, pristine)
        same = "same effect" if ours == theirs else f"EFFECT DIFFERS: gdprd {ours}, SQL {theirs}"
        print(f"  after gdprd: {ours}; after SQL: {theirs}: {same}")
        figures.append(("forget 1,000 devices", secs, rss, bsecs, brss, f"500/500/0; {same}"))

        # Export: the same 1,000 devices on a fresh copy.
        print("export: 1,000 devices ...", flush=True)
        fresh_db(pristine, db)
        secs, rss, _, stem = run_gdprd(binary, demo, f"export-{today}_120000.json",
                                       request_file("EXPORT", contacts), (500, 500, 0))
        archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
        per_table = archive_rows(archive)
        # The demo's CSV contact lists (lists/…) are a store the SQL baseline cannot read: compared without them.
        exported = sum(v for k, v in per_table.items() if not k.startswith("lists/"))
        base_csv = os.path.join(work, "baseline-export.csv")
        bsecs, brss, _, _ = sqlite(pristine, baseline_export_sql(phones, emails), out_path=base_csv, csv_mode=True)
        base_rows = csv_rows(base_csv)
        print(f"  archive {os.path.getsize(archive):,} bytes: "
              + ", ".join(f"{k} {v:,}" for k, v in per_table.items())
              + f"; baseline CSV {base_rows:,} rows, {os.path.getsize(base_csv):,} bytes")
        figures.append(("export 1,000 devices", secs, rss, bsecs, brss,
                        f"{exported:,} rows (SQL {base_rows:,}), zip {os.path.getsize(archive) / 1024:.0f} KiB"))

        # Streaming: one email on >= stream_rows web_session rows.
        print(f"stream: one email on at least {args.stream_rows:,} web_session rows ...", flush=True)
        fresh_db(pristine, db)
        sqlite(db, "UPDATE web_session SET login_email = 'stream@example.com';")
        while True:
            n = int(subprocess.run(["sqlite3", db], input="SELECT count(*) FROM web_session;", capture_output=True,
                                   text=True, check=True).stdout)
            if n >= args.stream_rows:
                break
            sqlite(db, "INSERT INTO web_session (account_id, login_email, client_ip, user_agent, started_at) "
                       "SELECT account_id, login_email, client_ip, user_agent, started_at FROM web_session;")
        subprocess.run(["sqlite3", db], input="PRAGMA wal_checkpoint(TRUNCATE);", capture_output=True,
                       text=True, check=True)
        print(f"  web_session holds {n:,} rows, all with stream@example.com", flush=True)
        secs, rss, _, stem = run_gdprd(binary, demo, f"export-{today}_130000.json",
                                       request_file("EXPORT", [{"email": "stream@example.com"}]), (1, 0, 0))
        archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
        exported = sum(archive_rows(archive).values())
        if exported != n:
            sys.exit(f"the streaming export holds {exported:,} rows, expected {n:,}")
        stream_csv = os.path.join(work, "stream.csv")
        bsecs, brss, _, _ = sqlite(db, "SELECT * FROM web_session WHERE lower(trim(login_email)) = 'stream@example.com';",
                                   out_path=stream_csv, csv_mode=True)
        print(f"  archive {mib(os.path.getsize(archive)):.1f} MiB, {exported:,} rows; "
              f"baseline CSV {mib(os.path.getsize(stream_csv)):.1f} MiB, {csv_rows(stream_csv):,} rows")
        figures.append((f"export 1 device, {exported:,} rows", secs, rss, bsecs, brss,
                        f"zip {mib(os.path.getsize(archive)):.1f} MiB"))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"gdprd {binary}; {rows:,} filler contacts; demo generation {gen_secs:.1f} s, peak {gen_rss:.0f} MiB")
    print(f"{'case':36} {'gdprd s':>8} {'peak MiB':>9} {'SQL s':>7} {'SQL MiB':>8} {'gdprd/SQL':>9}  notes")
    for case, secs, rss, bsecs, brss, notes in figures:
        print(f"{case:36} {secs:8.2f} {rss:9.1f} {bsecs:7.2f} {brss:8.1f} {secs / bsecs:8.2f}x  {notes}")


if __name__ == "__main__":
    main()
