#!/usr/bin/env python3
"""Remote SFTP accounts: how long from a file's arrival on the remote server to its execution log there, and how
fast 500 small files dropped at once go through.

Prints figures; asserts nothing about speed. Needs openssh-server (this script starts its own sshd on a spare
loopback port with its own config and keys, never the system's) and runs as a user sshd lets log in with a key.

    python3 benches/sftp_remote.py                       # poll 30 s (the default) and 1 s, 20 files each, then 500
    python3 benches/sftp_remote.py --runs 5 --binary target/release/gdprd

Each latency sample waits a random part of the poll interval, then drops one forget file (the seed's sample, a new name each time) into the remote GDPR_Submit as
an upload would (written under a temporary name, renamed), and waits until `<stem>-execution-log.json` appears in
the remote GDPR_Result. gdprd's settle time is the default (2 s): a new file is listed again 2 s after it is first
seen, so the latency is about (time to the next listing) + 2 s + the work. The baseline in the same run is the
floor of any polling design: half the poll interval.
"""

import argparse
import datetime
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)


def spare_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(work):
    keygen(os.path.join(work, "host_key"))
    keygen(os.path.join(work, "client_key"))
    shutil.copy(os.path.join(work, "client_key.pub"), os.path.join(work, "authorized_keys"))
    for sub in ("remote/GDPR_Submit", "remote/GDPR_Result"):
        os.makedirs(os.path.join(work, sub))
    os.makedirs("/run/sshd", exist_ok=True)
    port = spare_port()
    with open(os.path.join(work, "sshd_config"), "w") as f:
        f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {work}/host_key
PidFile {work}/sshd.pid
AuthorizedKeysFile {work}/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(work, "sshd_config")],
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    fp = subprocess.run(["ssh-keygen", "-lf", os.path.join(work, "host_key.pub")], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    return proc, port, fp


def start_gdprd(binary, work, port, fp, poll):
    demo = os.path.join(work, f"gdprd-{poll}")
    subprocess.run([binary, "demo", "--dir", demo, "--rows", "1000", "--no-start"], check=True,
                   stdout=subprocess.DEVNULL)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    with open(os.path.join(demo, "gdprd.toml")) as f:
        text = f.read()
    start = text.index("[accounts.sftp]")
    end = text.index("\n\n", start)
    remote = (f'[accounts.remote]\nhost = "127.0.0.1"\nport = {port}\nuser = "{user}"\n'
              f'key_file = "{work}/client_key"\npath = "{work}/remote"\npoll_seconds = {poll}\n'
              f'host_key_fingerprint = "{fp}"\n')
    text = (text[:start] + remote + text[end:]).replace('transport = "sftp-server"', 'transport = "sftp-remote"')
    text = text.replace("127.0.0.1:2222", "127.0.0.1:0")
    # A remote account has no HTTP front doors (its results leave for the server): drop the demo's section, and
    # the [http] listener that only it used.
    start = text.index("[accounts.http]")
    end = text.index("\n\n", start)
    text = text[:start] + text[end + 2:]
    text = text.replace("127.0.0.1:8080", "127.0.0.1:0")
    with open(os.path.join(demo, "gdprd.toml"), "w") as f:
        f.write(text)
    log = open(os.path.join(demo, "daemon.log"), "w")
    proc = subprocess.Popen([binary, "run", "--config", os.path.join(demo, "gdprd.toml")], stderr=log,
                            stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(os.path.join(demo, "daemon.log")) as f:
            if "connected to the remote SFTP server" in f.read():
                return proc
        time.sleep(0.05)
    proc.kill()
    sys.exit("gdprd did not connect to the remote server")


def stamp(today, n):
    """A valid name for the n-th file of the day: n seconds after midnight."""
    return f"forget-{today}_{n // 3600:02d}{n // 60 % 60:02d}{n % 60:02d}"


def drop(work, name, body):
    tmp = os.path.join(work, "remote/GDPR_Submit", name + ".filepart")
    with open(tmp, "wb") as f:
        f.write(body)
    os.rename(tmp, os.path.join(work, "remote/GDPR_Submit", name))


def wait_log(work, stem, limit):
    path = os.path.join(work, "remote/GDPR_Result", f"{stem}-execution-log.json")
    deadline = time.time() + limit
    while time.time() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="a built gdprd (default: cargo build --release)")
    ap.add_argument("--runs", type=int, default=20, help="latency samples per poll interval (default 20)")
    ap.add_argument("--files", type=int, default=500, help="small files dropped at once (default 500)")
    ap.add_argument("--polls", default="30,1", help="poll intervals to measure, seconds (default 30,1)")
    args = ap.parse_args()
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "gdprd")
    binary = os.path.abspath(binary)
    with open(os.path.join(REPO, "fixtures/requests/seed-forget.json"), "rb") as f:
        seed = f.read()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    work = tempfile.mkdtemp(prefix="gdprd-remotebench-")
    sshd, port, fp = start_sshd(work)
    rows = []
    counter = 0
    try:
        for poll in (int(p) for p in args.polls.split(",")):
            gdprd = start_gdprd(binary, work, port, fp, poll)
            samples = []
            for _ in range(args.runs):
                # Files arrive at any moment of the poll cycle, not just after the last result.
                time.sleep(random.uniform(0, poll))
                counter += 1
                stem = stamp(today, counter)
                t0 = time.monotonic()
                drop(work, stem + ".json", seed)
                if not wait_log(work, stem, 4 * poll + 30):
                    sys.exit(f"no execution log for {stem}")
                samples.append(time.monotonic() - t0)
                print(f"  poll {poll} s: {samples[-1]:.2f} s", flush=True)
            rows.append((f"arrival -> log, poll {poll} s (n={len(samples)})", statistics.median(samples),
                         min(samples), max(samples), poll / 2))
            if poll == 1:
                print(f"dropping {args.files} files at once ...", flush=True)
                stems = []
                t0 = time.monotonic()
                for i in range(args.files):
                    counter += 1
                    stem = stamp(today, counter)
                    body = json.dumps({"requests": [{"type": "FORGET", "requestcase": f"b{i}",
                                                      "contacts": [{"email": f"user{i}@example.com"}]}]})
                    drop(work, stem + ".json", body.encode())
                    stems.append(stem)
                for stem in stems:
                    if not wait_log(work, stem, 600):
                        sys.exit(f"no execution log for {stem}")
                secs = time.monotonic() - t0
                rows.append((f"{args.files} small files dropped at once", secs, secs, secs, 0.0))
                print(f"  {args.files} files: {secs:.1f} s, {args.files / secs:.1f} files/s", flush=True)
            gdprd.terminate()
            gdprd.wait(timeout=60)
    finally:
        sshd.kill()
        subprocess.run(["pkill", "-KILL", "-f", f"{work}/sshd_config"], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"gdprd {binary}; OpenSSH sshd on loopback, internal-sftp")
    print(f"{'case':44} {'median s':>9} {'min s':>7} {'max s':>7} {'poll/2 s':>9}")
    for case, med, lo, hi, floor in rows:
        print(f"{case:44} {med:9.2f} {lo:7.2f} {hi:7.2f} {floor:9.1f}")


if __name__ == "__main__":
    main()
