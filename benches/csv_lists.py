#!/usr/bin/env python3
"""gdprd's `csv` store on one large contact list, against what a sysadmin would script with awk and grep.

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (gdprd fails, responses
other than 500 SUCCESS / 500 SUCCESS: not found / 0 ERROR, gdprd and the baseline leave different counts).

    python3 benches/csv_lists.py                        # a 2 GiB list (about 28 million contacts)
    python3 benches/csv_lists.py --gib 0.2 --binary target/release/gdprd

Needs GNU time and awk (mawk or gawk). The list is written by awk in a temporary folder (removed at the end):
`list_id,account_id,first_name,last_name,phone,email,opt_in`, phone written `(2xx) xxx-xxxx` or `2xx.xxx.xxxx`, email
`user{i}@example.com`, for the demo's filler contacts i = 0, 1, 2, … (throughput.py's helpers name them).

Cases, each on its own copy of the list:
  export  1,000 devices (250 phones + 250 emails present, 250 + 250 absent), gdprd `run --once`, against
          `grep -F -f` of the present devices' spellings (the time to read the file and find the lines);
  forget  the same 1,000 devices, against an awk script that normalises each line's phone and email, looks them
          up in the set of wanted devices, redacts the matching lines and writes the list anew (then `mv`).
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as t  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "list_id,account_id,first_name,last_name,phone,email,opt_in"
BYTES_PER_ROW = 64  # about, for sizing

GENERATE = r"""
BEGIN { print "%s"; split("30003748347 30003748348 40004000400", acct, " ") }
{
  i = $1; d = 2000000000 + (i * 7) %% 1000000000; s = sprintf("%%.0f", d)
  if (i %% 2 == 0) p = "(" substr(s, 1, 3) ") " substr(s, 4, 3) "-" substr(s, 7)
  else p = substr(s, 1, 3) "." substr(s, 4, 3) "." substr(s, 7)
  printf "L3,%%s,Ada,Lovelace,%%s,user%%d@example.com,yes\n", acct[i %% 3 + 1], p, i
}
""" % HEADER

FORGET = r"""
BEGIN { FS = OFS = ","; n = 0 }
NR == FNR { want[$0] = 1; next }
FNR == 1 { print; next }
{
  d = $5; gsub(/[^0-9]/, "", d); if (length(d) == 10) d = "1" d
  e = tolower($6)
  if ((("p:" d) in want) || (("e:" e) in want)) {
    n++; $3 = "REDACTED"; $4 = "REDACTED"
    if ($5 != "") $5 = sprintf("forgotten-%08x%08x", int(rand() * 4294967295), n)
    if ($6 != "") $6 = sprintf("forgotten-%08x%08x", int(rand() * 4294967295), n)
  }
  print
}
"""


def config(work, folder):
    demo = os.path.join(work, "demo")
    for sub in ("GDPR_Submit", "GDPR_Result"):
        os.makedirs(os.path.join(demo, "accounts/demo", sub), exist_ok=True)
    with open(os.path.join(demo, "gdprd.toml"), "w") as f:
        f.write(f"""state_dir = "state"
[[accounts]]
name = "demo"
root = "accounts/demo"
timezone = "UTC"
transport = "local"
stores = ["lists"]
[stores.lists]
type = "csv"
folder = "{folder}"
[stores.lists.phones]
default_country_code = "1"
international_prefix = "011"
[[stores.lists.files]]
name = "contacts-*.csv"
phone = ["phone"]
email = ["email"]
personal = ["first_name", "last_name"]
account = "account_id"
""")
    return demo


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0, help="size of the list in GiB (default 2)")
    ap.add_argument("--binary", help="a built gdprd (default: cargo build --release)")
    args = ap.parse_args()
    awk = shutil.which("mawk") or shutil.which("awk")
    if awk is None or not os.access(t.GNU_TIME, os.X_OK):
        sys.exit("needs awk and GNU time (apt-get install mawk time)")
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "gdprd")
    binary = os.path.abspath(binary)
    rows = int(args.gib * 2**30 / BYTES_PER_ROW)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    work = tempfile.mkdtemp(prefix="gdprd-csvbench-")
    figures = []
    try:
        pristine = os.path.join(work, "pristine.csv")
        print(f"writing {rows:,} contacts with {os.path.basename(awk)} ...", flush=True)
        with open(pristine, "w") as out:
            seq = subprocess.Popen(["seq", "0", str(rows - 1)], stdout=subprocess.PIPE)
            subprocess.run([awk, GENERATE], stdin=seq.stdout, stdout=out, check=True)
            seq.wait()
        size = os.path.getsize(pristine)
        print(f"  {size / 2**30:.2f} GiB", flush=True)
        lists = os.path.join(work, "lists")
        os.makedirs(lists)
        listed = os.path.join(lists, "contacts-2025-06.csv")
        demo = config(work, lists)
        contacts, phones, emails = t.devices(rows)

        # Export, and its grep baseline.
        shutil.copy(pristine, listed)
        secs, rss, _, stem = t.run_gdprd(binary, demo, f"export-{today}_120000.json",
                                         t.request_file("EXPORT", contacts), (500, 500, 0))
        archive = os.path.join(demo, "accounts/demo/GDPR_Result", f"{stem}-archive.zip")
        exported = sum(t.archive_rows(archive).values())
        patterns = os.path.join(work, "patterns.txt")
        with open(patterns, "w") as f:
            for d in phones:
                n = d[1:]
                f.write(f"({n[:3]}) {n[3:6]}-{n[6:]},\n{n[:3]}.{n[3:6]}.{n[6:]},\n")
            for e in emails:
                f.write(f",{e},\n")
        grep_out = os.path.join(work, "grep.txt")
        with open(grep_out, "w") as out:
            bsecs, brss, _ = t.measure(["grep", "-F", "-f", patterns, pristine], stdout=out)
        grepped = t.csv_rows(grep_out)
        if grepped != exported:
            sys.exit(f"gdprd exported {exported:,} rows, grep found {grepped:,}")
        figures.append((f"export 1,000 devices ({exported:,} rows)", secs, rss, "grep -F -f", bsecs, brss))

        # Forget, and its awk baseline on a copy.
        secs, rss, _, _ = t.run_gdprd(binary, demo, f"forget-{today}_120000.json",
                                      t.request_file("FORGET", contacts), (500, 500, 0))
        wanted = os.path.join(work, "wanted.txt")
        with open(wanted, "w") as f:
            f.writelines(f"p:{d}\n" for d in phones)
            f.writelines(f"e:{e.lower()}\n" for e in emails)
        rewritten = os.path.join(work, "rewritten.csv")
        with open(rewritten, "w") as out:
            bsecs, brss, code = t.measure([awk, FORGET, wanted, pristine], stdout=out)
        if code != 0:
            sys.exit("the awk baseline failed")
        os.replace(rewritten, pristine)
        count = lambda path: int(subprocess.run(["grep", "-c", "REDACTED,REDACTED", path],  # noqa: E731
                                                capture_output=True, text=True).stdout or 0)
        ours, theirs = count(listed), count(pristine)
        if ours != theirs:
            sys.exit(f"different effect: gdprd redacted {ours:,} rows, awk {theirs:,}")
        figures.append((f"forget 1,000 devices ({ours:,} rows)", secs, rss, "awk + mv", bsecs, brss))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"gdprd {binary}; one list of {rows:,} contacts, {size / 2**30:.2f} GiB")
    print(f"{'case':36} {'gdprd s':>8} {'peak MiB':>9}  {'baseline':10} {'s':>7} {'MiB':>6} {'ratio':>6}")
    for case, secs, rss, name, bsecs, brss in figures:
        print(f"{case:36} {secs:8.2f} {rss:9.1f}  {name:10} {bsecs:7.2f} {brss:6.1f} {secs / bsecs:5.2f}x")


if __name__ == "__main__":
    main()
