#!/usr/bin/env python3
"""gdprd's `postgres` store against the hand-written SQL a DBA would run through psql, on the same data.

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (gdprd fails, responses
other than 500 SUCCESS / 500 SUCCESS: not found / 0 ERROR, a baseline that fails, the two leave different data).

    python3 benches/postgres.py                      # 1,000,000 contacts + 3,000,000 attempts
    python3 benches/postgres.py --rows 100000        # smaller
    python3 benches/postgres.py --url postgres://postgres@127.0.0.1:5432/test --binary target/release/gdprd

Needs psql and GNU time (apt-get install postgresql-client time). The data is made in two schemas of the
database, `gdprd_bench_a` (for gdprd) and `gdprd_bench_b` (an identical copy, for psql), with the schema of
fixtures/postgres/schema.sql and the indexes of fixtures/postgres/indexes.sql; both are dropped at the end.

Cases:
  export  1,000 devices (250 phones + 250 emails present, 250 + 250 absent, as in throughput.py), gdprd
          `run --once` against `COPY (SELECT … WHERE <normalised> = ANY(…)) TO STDOUT` per table;
  forget  the same 1,000 devices against one UPDATE … WHERE <normalised> = ANY(…) per table, in one transaction.
          Both run --repeat times (default 5) on other people each time; medians are reported, peak MiB the max;
  stream  one email carried by every contact_list row, exported: gdprd's peak memory against COPY's.
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
import throughput as t  # noqa: E402  (devices, request_file, measure, responses, archive_rows)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A, B = "gdprd_bench_a", "gdprd_bench_b"
ACCOUNTS = "ARRAY['30003748347', '30003748348', '40004000400']"


def psql(url, sql, out=subprocess.DEVNULL, measured=False):
    """Runs a script (statements one by one, as psql -f does); measured: (seconds, peak MiB) of the psql child."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script, tempfile.TemporaryFile("w+") as err:
        script.write(sql)
        script.flush()
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", script.name]
        if measured:
            secs, rss, code = t.measure(argv, stdout=out, stderr=err)
        else:
            secs, rss, code = 0, 0, subprocess.run(argv, stdout=out, stderr=err).returncode
        if code != 0:
            err.seek(0)
            sys.exit(f"psql failed: {err.read()[:2000]}")
    return secs, rss


def scalar(url, sql):
    return subprocess.run(["psql", "-X", "-qtA", url, "-c", sql], capture_output=True, text=True,
                          check=True).stdout.strip()


def messy(digits_expr, style_expr):
    """SQL for the demo's messy ways of writing a 10-digit national number (messy() in src/demo.rs)."""
    d = digits_expr
    a, b, c = f"substr({d}, 1, 3)", f"substr({d}, 4, 3)", f"substr({d}, 7)"
    return (f"CASE ({style_expr}) % 4 WHEN 0 THEN '(' || {a} || ') ' || {b} || '-' || {c} "
            f"WHEN 1 THEN {a} || '.' || {b} || '.' || {c} WHEN 2 THEN '+1 ' || {a} || ' ' || {b} || ' ' || {c} "
            f"ELSE '1-' || {a} || '-' || {b} || '-' || {c} END")


def make_data(url, rows):
    """Schema A filled with `rows` contacts and 3 attempts each; schema B a copy, indexes included."""
    with open(os.path.join(REPO, "fixtures/postgres/schema.sql")) as f:
        schema = f.read()
    with open(os.path.join(REPO, "fixtures/postgres/indexes.sql")) as f:
        indexes = f.read()
    national = "(2000000000 + (g * 7) % 1000000000)::text"
    psql(url, f"""
DROP SCHEMA IF EXISTS {A} CASCADE; DROP SCHEMA IF EXISTS {B} CASCADE; CREATE SCHEMA {A}; SET search_path TO {A};
{schema}
INSERT INTO contact_list (id, account_id, first_name, last_name, phone, email, company, address, notes, created_at)
  SELECT g, ({ACCOUNTS})[g % 3 + 1], 'Ada', 'Lovelace', {messy(national, 'g')}, 'user' || g || '@example.com',
         'Acme', (g % 997) || ' Main St', 'filler', '2025-06-01T09:00:00Z'
  FROM generate_series(0, {rows - 1}) g;
INSERT INTO contact_attempt (account_id, contact_id, dialed_number, attempted_at, outcome, agent, agent_notes)
  SELECT ({ACCOUNTS})[g % 3 + 1], g, {messy(national, 'g + k + 1')}, '2025-06-02T09:00:00Z', 'ANSWERED', 'agent1',
         'called back'
  FROM generate_series(0, {rows - 1}) g, generate_series(0, 2) k;
{indexes}
CREATE SCHEMA {B};
CREATE TABLE {B}.contact_list (LIKE {A}.contact_list INCLUDING ALL);
CREATE TABLE {B}.contact_attempt (LIKE {A}.contact_attempt INCLUDING ALL);
INSERT INTO {B}.contact_list SELECT * FROM {A}.contact_list;
INSERT INTO {B}.contact_attempt SELECT * FROM {A}.contact_attempt;
-- The hand-written SQL compares plain digit strings (it reads no extensions, wrapped emails or cells of two
-- numbers): B gets the indexes it needs.
CREATE INDEX ON {B}.contact_list ((regexp_replace(phone, '[^0-9]', '', 'g')));
CREATE INDEX ON {B}.contact_list ((regexp_replace(mobile, '[^0-9]', '', 'g')));
CREATE INDEX ON {B}.contact_list ((lower(trim(email))));
CREATE INDEX ON {B}.contact_attempt ((regexp_replace(dialed_number, '[^0-9]', '', 'g')));
VACUUM ANALYZE {A}.contact_list; VACUUM ANALYZE {A}.contact_attempt;
VACUUM ANALYZE {B}.contact_list; VACUUM ANALYZE {B}.contact_attempt;
""")


def config(work, url):
    store = f"""
state_dir = "state"
[log]
format = "text"
level = "info"
[[accounts]]
name = "demo"
root = "accounts/demo"
timezone = "UTC"
transport = "local"
stores = ["pg"]
[stores.pg]
type = "postgres"
url = "{url}"
schema = "{A}"
tls = "disable"
[stores.pg.phones]
default_country_code = "1"
international_prefix = "011"
[[stores.pg.tables]]
name = "contact_list"
phone = ["phone", "mobile"]
email = ["email"]
personal = ["first_name", "last_name", "company", "address", "notes"]
account = "account_id"
[[stores.pg.tables]]
name = "contact_attempt"
phone = ["dialed_number"]
personal = ["agent_notes"]
account = "account_id"
"""
    demo = os.path.join(work, "demo")
    for sub in ("GDPR_Submit", "GDPR_Result"):
        os.makedirs(os.path.join(demo, "accounts/demo", sub), exist_ok=True)
    with open(os.path.join(demo, "gdprd.toml"), "w") as f:
        f.write(store)
    return demo


def forms(phones):
    """Every digit form of each phone the demo data holds: E.164 digits, national, after 011."""
    out = []
    for d in phones:
        out += [d, d[1:] if d.startswith("1") else d, "011" + d]
    return "ARRAY[" + ", ".join(f"'{f}'" for f in out) + "]"


def where(phones, emails):
    digits = forms(phones)
    mails = "ARRAY[" + ", ".join(f"'{e.lower()}'" for e in emails) + "]"
    ph = lambda c: f"regexp_replace({c}, '[^0-9]', '', 'g') = ANY({digits})"  # noqa: E731
    return {
        "contact_list": f"{ph('phone')} OR {ph('mobile')} OR lower(trim(email)) = ANY({mails})",
        "contact_attempt": ph("dialed_number"),
    }


def baseline_forget(phones, emails):
    w = where(phones, emails)
    token = "'forgotten-' || replace(gen_random_uuid()::text, '-', '')"
    return f"""SET search_path TO {B}; BEGIN;
UPDATE contact_list SET phone = CASE WHEN phone IS NULL THEN NULL ELSE LEFT({token}, 32) END,
  mobile = CASE WHEN mobile IS NULL THEN NULL ELSE LEFT({token}, 32) END,
  email = CASE WHEN email IS NULL THEN NULL ELSE {token} END, first_name = 'REDACTED', last_name = 'REDACTED',
  company = 'REDACTED', address = 'REDACTED', notes = 'REDACTED'
  WHERE {w['contact_list']};
UPDATE contact_attempt SET dialed_number = LEFT({token}, 32),
  agent_notes = CASE WHEN agent_notes IS NULL THEN NULL ELSE 'REDACTED' END
  WHERE {w['contact_attempt']};
COMMIT;"""


def effect(url, schema):
    return (int(scalar(url, f"SELECT count(*) FROM {schema}.contact_list WHERE email LIKE 'forgotten-%'")),
            int(scalar(url, f"SELECT count(*) FROM {schema}.contact_attempt WHERE dialed_number LIKE 'forgotten-%'")))


def internal_seconds(stderr_path):
    """Seconds from 'file claimed' to 'file done' in gdprd's log: the work itself, without start-up."""
    stamps = {}
    with open(stderr_path) as f:
        for line in f:
            m = re.match(r"(\S+)\s+INFO .*file (claimed|done)", line)
            if m:
                stamps[m.group(2)] = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    if len(stamps) != 2:
        return float("nan")
    return (stamps["done"] - stamps["claimed"]).total_seconds()


def devices(rows, shift):
    """throughput.devices' 1,000 devices, moved by `shift` contacts so every repetition forgets other people."""
    spread = max(rows // 500, 1)
    phone_ids = [(2 * k) * spread + shift for k in range(250)]
    email_ids = [(2 * k + 1) * spread + shift for k in range(250)]
    contacts = [{"phone": t.filler_phone(i)} for i in phone_ids]
    contacts += [{"email": t.filler_email(i)} for i in email_ids]
    contacts += [{"email": f"nobody{k}-{shift}@example.org"} for k in range(250)]
    contacts += [{"phone": f"+44 20 7946 {1000 + k}"} for k in range(250)]
    phones = [t.filler_digits(i) for i in phone_ids] + [f"44207946{1000 + k}" for k in range(250)]
    emails = [c["email"] for c in contacts if "email" in c]
    return contacts, phones, emails


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run(binary, demo, name, body, expect):
    secs, rss, counts, stem = t.run_gdprd(binary, demo, name, body, expect)
    inner = internal_seconds(os.path.join(os.path.dirname(demo), f"{stem}.stderr"))
    return secs, rss, inner, stem


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("GDPRD_TEST_POSTGRES_URL",
                                                    "postgres://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--rows", type=int, default=1_000_000, help="contacts (attempts: 3 per contact)")
    ap.add_argument("--binary", help="a built gdprd (default: cargo build --release)")
    ap.add_argument("--no-stream", action="store_true", help="skip the one-email-on-every-row export")
    ap.add_argument("--repeat", type=int, default=5, help="runs of the 1,000-device cases (median reported)")
    args = ap.parse_args()
    for tool in ("psql",):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install postgresql-client)")
    binary = t.built(args.binary)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    work = tempfile.mkdtemp(prefix="gdprd-pgbench-")
    figures = []
    try:
        print(f"making {args.rows:,} contacts and {3 * args.rows:,} attempts in {A}, copying to {B} ...", flush=True)
        start = datetime.datetime.now()
        make_data(args.url, args.rows)
        print(f"  done in {(datetime.datetime.now() - start).total_seconds():.0f} s", flush=True)
        demo = config(work, args.url)
        out_path = os.path.join(work, "copy.csv")
        runs = {"export": [], "forget": []}
        for r in range(args.repeat):
            contacts, phones, emails = devices(args.rows, r)
            print(f"run {r + 1}/{args.repeat}: export, then forget, of 1,000 devices ...", flush=True)
            secs, rss, inner, stem = run(binary, demo, f"export-{today}_12000{r}.json",
                                         t.request_file("EXPORT", contacts), (500, 500, 0))
            archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
            exported = sum(t.archive_rows(archive).values())
            w = where(phones, emails)
            copy = "\n".join(f"COPY (SELECT * FROM {B}.{table} WHERE {cond}) TO STDOUT (FORMAT csv);"
                             for table, cond in w.items())
            with open(out_path, "w") as out:
                bsecs, brss = psql(args.url, copy, out=out, measured=True)
            copied = t.csv_rows(out_path)
            if copied != exported:
                sys.exit(f"gdprd exported {exported:,} rows, COPY {copied:,}")
            runs["export"].append((secs, inner, rss, bsecs, brss, f"{exported:,} rows both"))

            secs, rss, inner, _ = run(binary, demo, f"forget-{today}_12000{r}.json",
                                      t.request_file("FORGET", contacts), (500, 500, 0))
            bsecs, brss = psql(args.url, baseline_forget(phones, emails), measured=True)
            ours, theirs = effect(args.url, A), effect(args.url, B)
            if ours != theirs:
                sys.exit(f"different effect: gdprd {ours}, SQL {theirs} (contacts, attempts anonymised)")
            runs["forget"].append((secs, inner, rss, bsecs, brss,
                                   f"same effect: {ours[0]:,} contacts, {ours[1]:,} attempts in all"))
        for case, rs in runs.items():
            figures.append((f"{case} 1,000 devices (median of {len(rs)})", median([x[0] for x in rs]),
                            median([x[1] for x in rs]), max(x[2] for x in rs), median([x[3] for x in rs]),
                            max(x[4] for x in rs), rs[-1][5]))

        if not args.no_stream:
            print("stream: one email on every contact_list row ...", flush=True)
            psql(args.url, f"UPDATE {A}.contact_list SET email = 'stream@example.com'; VACUUM ANALYZE {A}.contact_list;")
            secs, rss, inner, stem = run(binary, demo, f"export-{today}_130000.json",
                                         t.request_file("EXPORT", [{"email": "stream@example.com"}]), (1, 0, 0))
            archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
            exported = sum(t.archive_rows(archive).values())
            with open(out_path, "w") as out:
                bsecs, brss = psql(args.url, f"COPY (SELECT * FROM {A}.contact_list WHERE lower(trim(email)) = "
                                             f"'stream@example.com') TO STDOUT (FORMAT csv)", out=out, measured=True)
            figures.append((f"export 1 device, {exported:,} rows", secs, inner, rss, bsecs, brss,
                            f"zip {os.path.getsize(archive) / 2**20:.1f} MiB, CSV {os.path.getsize(out_path) / 2**20:.1f} MiB"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        psql(args.url, f"DROP SCHEMA IF EXISTS {A} CASCADE; DROP SCHEMA IF EXISTS {B} CASCADE;")

    print()
    print(f"gdprd {binary}; PostgreSQL {scalar(args.url, 'SHOW server_version')}; {args.rows:,} contacts, "
          f"{3 * args.rows:,} attempts")
    print(f"{'case':32} {'gdprd s':>8} {'(work s)':>9} {'peak MiB':>9} {'psql s':>7} {'psql MiB':>9} {'ratio':>6}  notes")
    for case, secs, inner, rss, bsecs, brss, notes in figures:
        print(f"{case:32} {secs:8.2f} {inner:9.2f} {rss:9.1f} {bsecs:7.2f} {brss:9.1f} {secs / bsecs:5.2f}x  {notes}")
    print("gdprd s: the whole `gdprd run --once` process (start, store check, ledger, result files); work s: from "
          "'file claimed' to 'file done' in its log. psql s: the whole psql process.")


if __name__ == "__main__":
    main()
