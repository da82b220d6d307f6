#!/usr/bin/env python3
"""Upload throughput through gdprd's embedded SFTP server against OpenSSH's own sshd with internal-sftp, same
client (OpenSSH sftp), same file, back to back on loopback; and the time from the end of a `put` of a 10-contact
forget file to its execution log being readable (median of 20).

    python3 benches/sftp.py [--binary target/release/gdprd] [--mib 256] [--rounds 3]

Starts its own sshd (Debian's openssh-server) on a spare port with its own config, host key and authorized_keys in
a temporary folder; never the system's sshd or its config. Prints figures; asserts nothing about speed.
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def sftp(port, user, key, batch_text, work):
    batch = os.path.join(work, "batch")
    with open(batch, "w") as f:
        f.write(batch_text)
    start = time.monotonic()
    subprocess.run(["sftp", "-b", batch, "-P", str(port), "-i", key] + SSH_OPTS + [f"{user}@127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary")
    ap.add_argument("--mib", type=int, default=256, help="size of the uploaded file")
    ap.add_argument("--rounds", type=int, default=3, help="uploads per server (best is reported)")
    args = ap.parse_args()
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        sys.exit("OpenSSH's sshd is needed (apt-get install openssh-server)")
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "gdprd")
    binary = os.path.abspath(binary)
    work = tempfile.mkdtemp(prefix="gdprd-sftp-bench-")
    procs = []
    try:
        # gdprd: the demo, with uploads allowed up to the test file's size.
        demo = os.path.join(work, "demo")
        gport = free_port()
        subprocess.run([binary, "demo", "--dir", demo, "--rows", "1000", "--no-start", "--sftp-port", str(gport)],
                       check=True, stdout=subprocess.DEVNULL)
        config = os.path.join(demo, "gdprd.toml")
        with open(config) as f:
            text = f.read()
        limit = (args.mib + 1) * 2**20
        text = text.replace("[sftp_server]", f"[sftp_server]\nmax_upload_bytes = {limit}")
        text = text.replace("[intake]", f"[limits]\nmax_file_bytes = {limit}\n\n[intake]")
        with open(config, "w") as f:
            f.write(text)
        log = open(os.path.join(work, "gdprd.log"), "w")
        procs.append(subprocess.Popen([binary, "run", "--config", config], stderr=log))
        wait_port(gport)
        key = os.path.join(demo, "demo_ed25519")

        # OpenSSH: its own sshd on a spare port with internal-sftp (no chroot: sshd refuses one under /tmp, and it
        # does not change throughput).
        oport = free_port()
        ossh = os.path.join(work, "openssh")
        chroot = os.path.join(ossh, "chroot")
        os.makedirs(os.path.join(chroot, "upload"))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(ossh, "host_key")], check=True)
        shutil.copy(key + ".pub", os.path.join(ossh, "authorized_keys"))
        user = os.environ.get("USER") or "root"
        with open(os.path.join(ossh, "sshd_config"), "w") as f:
            f.write(f"""Port {oport}
ListenAddress 127.0.0.1
HostKey {ossh}/host_key
PidFile {ossh}/sshd.pid
AuthorizedKeysFile {ossh}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
ForceCommand internal-sftp
""")
        os.makedirs("/run/sshd", exist_ok=True)
        procs.append(subprocess.Popen([sshd, "-D", "-e", "-f", os.path.join(ossh, "sshd_config")],
                                      stderr=open(os.path.join(work, "sshd.log"), "w")))
        wait_port(oport)

        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(2**20))
        mb = args.mib * 2**20 / 1e6
        g_times, o_times = [], []
        for i in range(args.rounds):
            o_times.append(sftp(oport, user, key, f"put {big} {chroot}/upload/big-{i}.bin\n", work))
            g_times.append(sftp(gport, "demo", key, f"put {big} GDPR_Submit/big-{i}.bin.part\n", work))
        g, o = min(g_times), min(o_times)

        # Latency: end of put of a 10-contact forget file to its log being readable.
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
        contacts = [{"email": f"user{i}@example.com"} for i in range(10)]
        small = os.path.join(work, "small.json")
        with open(small, "w") as f:
            json.dump({"requests": [{"type": "FORGET", "contacts": contacts}]}, f)
        result_dir = os.path.join(demo, "accounts/demo/GDPR_Result")
        latencies, sessions = [], []
        for i in range(20):
            name = f"forget-{today}_1300{i:02}"
            target = os.path.join(result_dir, f"{name}-execution-log.json")
            seen = []

            def watch():
                deadline = time.monotonic() + 30
                while not os.path.exists(target) and time.monotonic() < deadline:
                    time.sleep(0.0002)
                seen.append(time.monotonic())

            watcher = threading.Thread(target=watch)
            watcher.start()
            start = time.monotonic()
            sessions.append(sftp(gport, "demo", key, f"put {small} GDPR_Submit/{name}.json\n", work) * 1000)
            watcher.join()
            if not os.path.exists(target):
                sys.exit(f"no log for {name}")
            latencies.append((seen[0] - start) * 1000)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"upload of {args.mib} MiB, best of {args.rounds}, OpenSSH sftp client on loopback:")
    print(f"  OpenSSH sshd internal-sftp  {o:6.2f} s  {mb / o:7.1f} MB/s")
    print(f"  gdprd embedded server       {g:6.2f} s  {mb / g:7.1f} MB/s   ratio gdprd/OpenSSH {o / g:.2f}x")
    print("a 10-contact forget file, 20 runs, each a whole sftp session (connect, log in, put, close):")
    print(f"  session start -> execution log readable: median {statistics.median(latencies):.1f} ms "
          f"(min {min(latencies):.1f}, max {max(latencies):.1f})")
    print(f"  whole sftp session for comparison:       median {statistics.median(sessions):.1f} ms; the log is readable "
          f"before the client has even exited when the first figure is below the second")


if __name__ == "__main__":
    main()
