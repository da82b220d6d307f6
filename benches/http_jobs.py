#!/usr/bin/env python3
"""The HTTP front doors under load: a 10,000-identifier erasure job end to end on the demo store, with and without
200 concurrent status polls while it runs, against the same 10,000 devices dropped as a file (the baseline).

Prints figures; asserts nothing about speed. Exits non-zero only when a run is broken (the daemon fails, a job
does not finish, responses other than 5,000 found + 5,000 not found, a poll answered other than 200 / 303).

    python3 benches/http_jobs.py                   # 50,000 filler contacts
    python3 benches/http_jobs.py --rows 200000 --binary /tmp/t/release/gdprd

Without --binary it runs `cargo build --release`. Each case runs its own daemon (under GNU time, for its peak
RSS) on its own copy of the pristine demo database. Needs GNU time (apt-get install time).

Cases:
  file    the 10,000 devices as forget-….json dropped into GDPR_Submit: drop to execution log;
  http    the same lines POSTed to /accounts/demo/gdpr_erasure: POST to the 303 of /status (one poll every 50 ms);
  polled  the same, while 200 clients poll /status at once, in waves, for the whole run: job time and the polls'
          latency (the account's read limit and the connection caps are raised for the run so the polls measure
          the server, not the limiter; with the default 100 reads/s most of a 200-poll wave would be answered 429,
          and with the default 16 connections per address, 503).
"""

import argparse
import concurrent.futures
import datetime
import http.client
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
GNU_TIME = "/usr/bin/time"
TOKEN = "demo-http-token"
IDENTIFIERS = 10_000
POLLERS = 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(binary):
    if binary:
        return binary
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "release", "gdprd")


def lines():
    """5,000 filler emails the demo holds (user{i}@example.com) and 5,000 it does not."""
    present = [f"EMAIL,user{2 * i}@example.com" for i in range(IDENTIFIERS // 2)]
    absent = [f"EMAIL,nobody{i}@example.org" for i in range(IDENTIFIERS // 2)]
    return present + absent


class Daemon:
    def __init__(self, binary, pristine, work, reads_per_second=None):
        shutil.copytree(pristine, work)
        self.dir = work
        self.port = free_port()
        config = os.path.join(work, "gdprd.toml")
        with open(config) as f:
            text = f.read()
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}").replace("127.0.0.1:2222", "127.0.0.1:0")
        text = text.replace("level = \"info\"", "level = \"warn,gdprd::daemon=info\"")
        if reads_per_second:
            text = text.replace(
                f"listen = \"127.0.0.1:{self.port}\"",
                f"listen = \"127.0.0.1:{self.port}\"\nreads_per_second = {reads_per_second}\nmax_lines = {IDENTIFIERS}"
                # 200 pollers from one address: above the default caps of 128 connections, 16 per address.
                f"\nmax_connections = {POLLERS + 16}\nmax_connections_per_address = {POLLERS + 16}",
            )
        else:
            text = text.replace(
                f"listen = \"127.0.0.1:{self.port}\"", f"listen = \"127.0.0.1:{self.port}\"\nmax_lines = {IDENTIFIERS}"
            )
        with open(config, "w") as f:
            f.write(text)
        self.log = open(os.path.join(work, "daemon.log"), "w+")
        self.rss_file = os.path.join(work, "rss")
        self.proc = subprocess.Popen(
            [GNU_TIME, "-f", "%M", "-o", self.rss_file, binary, "run", "--config", config],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.time() + 60
        while "gdprd ready" not in open(self.log.name).read():
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit("daemon did not start:\n" + open(self.log.name).read())
            time.sleep(0.02)

    def stop(self):
        # GNU time does not pass signals on: stop gdprd itself, its only child.
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            for pid in f.read().split():
                os.kill(int(pid), 15)
        self.proc.wait(timeout=60)
        with open(self.rss_file) as f:
            return int(f.read().split()[-1]) / 1024

    def request(self, method, path, body=None, content_type=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if content_type:
            headers["Content-Type"] = content_type
        began = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        elapsed = time.perf_counter() - began
        conn.close()
        return r.status, data, elapsed


def results(daemon):
    return os.listdir(os.path.join(daemon.dir, "accounts/demo/GDPR_Result"))


def check_log(path):
    with open(path) as f:
        log = json.load(f)
    answers = [c["response"] for r in log["result"] for c in r["contacts"]]
    found = answers.count("SUCCESS")
    missing = answers.count("SUCCESS: not found")
    if (found, missing) != (IDENTIFIERS // 2, IDENTIFIERS // 2):
        sys.exit(f"unexpected responses: {found} SUCCESS, {missing} not found, {len(answers) - found - missing} other")


def case_file(binary, pristine, scratch):
    daemon = Daemon(binary, pristine, os.path.join(scratch, "file"))
    contacts = [{"email": line.split(",", 1)[1]} for line in lines()]
    name = f"forget-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d}_120000"
    body = json.dumps({"requests": [{"requestcase": "bench", "type": "FORGET", "contacts": contacts}]})
    submit = os.path.join(daemon.dir, "accounts/demo/GDPR_Submit")
    began = time.perf_counter()
    with open(os.path.join(submit, name + ".json.part"), "w") as f:
        f.write(body)
    os.rename(os.path.join(submit, name + ".json.part"), os.path.join(submit, name + ".json"))
    log = os.path.join(daemon.dir, "accounts/demo/GDPR_Result", name + "-execution-log.json")
    while not os.path.exists(log):
        if time.perf_counter() - began > 600:
            sys.exit("the dropped file did not finish")
        time.sleep(0.01)
    elapsed = time.perf_counter() - began
    check_log(log)
    return {"seconds": elapsed, "rss_mib": daemon.stop()}


def run_job(daemon, poll_every):
    body = "\n".join(lines()).encode()
    began = time.perf_counter()
    status, data, post_seconds = daemon.request("POST", "/accounts/demo/gdpr_erasure", body, "text/csv")
    if status != 202:
        sys.exit(f"POST answered {status}: {data[:200]!r}")
    job = json.loads(data)["id"]
    while True:
        status, data, _ = daemon.request("GET", f"/gdpr_jobs/{job}/status")
        if status == 303:
            break
        if status != 200 or json.loads(data)["status"] == "FAILED":
            sys.exit(f"status answered {status}: {data[:200]!r}")
        if time.perf_counter() - began > 600:
            sys.exit("the job did not finish")
        time.sleep(poll_every)
    elapsed = time.perf_counter() - began
    status, data, response_seconds = daemon.request("GET", f"/gdpr_jobs/{job}/response")
    response = json.loads(data)
    deleted = sum(1 for c in response["contacts"] if c["contactDeleted"])
    if status != 200 or deleted != IDENTIFIERS // 2 or len(response["contacts"]) != IDENTIFIERS:
        sys.exit(f"unexpected response: {status}, {deleted} deleted of {len(response['contacts'])}")
    log = [r for r in results(daemon) if r.endswith("-execution-log.json")]
    check_log(os.path.join(daemon.dir, "accounts/demo/GDPR_Result", log[0]))
    return job, elapsed, post_seconds, response_seconds, len(data)


def case_http(binary, pristine, scratch):
    daemon = Daemon(binary, pristine, os.path.join(scratch, "http"))
    _, elapsed, post_seconds, response_seconds, size = run_job(daemon, 0.05)
    return {
        "seconds": elapsed,
        "post_seconds": post_seconds,
        "response_seconds": response_seconds,
        "response_bytes": size,
        "rss_mib": daemon.stop(),
    }


def case_polled(binary, pristine, scratch):
    daemon = Daemon(binary, pristine, os.path.join(scratch, "polled"), reads_per_second=100_000)
    latencies = []
    codes = {}
    done = threading.Event()
    job_id = [None]

    def poller(barrier):
        while not done.is_set():
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                return
            if job_id[0] is None:
                continue
            status, _, seconds = daemon.request("GET", f"/gdpr_jobs/{job_id[0]}/status")
            latencies.append(seconds)
            codes[status] = codes.get(status, 0) + 1

    barrier = threading.Barrier(POLLERS)
    pool = concurrent.futures.ThreadPoolExecutor(POLLERS)
    for _ in range(POLLERS):
        pool.submit(poller, barrier)
    # The first status poll of run_job tells the pollers which job to poll.
    original = daemon.request

    def spy(method, path, *args):
        if path.startswith("/gdpr_jobs/") and job_id[0] is None:
            job_id[0] = int(path.split("/")[2])
        return original(method, path, *args)

    daemon.request = spy
    _, elapsed, _, _, _ = run_job(daemon, 0.05)
    done.set()
    barrier.abort()
    pool.shutdown(wait=True)
    bad = {c: n for c, n in codes.items() if c not in (200, 303)}
    if bad:
        sys.exit(f"polls answered {bad}")
    latencies.sort()
    return {
        "seconds": elapsed,
        "polls": len(latencies),
        "waves": len(latencies) / POLLERS,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "max_ms": 1000 * latencies[-1],
        "rss_mib": daemon.stop(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--binary")
    args = parser.parse_args()
    if args.rows < IDENTIFIERS:
        sys.exit(f"--rows must be at least {IDENTIFIERS}")
    binary = build(args.binary)
    scratch = tempfile.mkdtemp(prefix="gdprd-http-bench-")
    try:
        pristine = os.path.join(scratch, "pristine")
        subprocess.run(
            [binary, "demo", "--dir", pristine, "--rows", str(args.rows), "--no-start"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"demo store: {args.rows:,} filler contacts; job: {IDENTIFIERS:,} identifiers (half present)")
        file = case_file(binary, pristine, scratch)
        print(f"file    drop to execution log     {file['seconds']:7.2f} s   peak RSS {file['rss_mib']:6.1f} MiB")
        http_ = case_http(binary, pristine, scratch)
        print(
            f"http    POST to 303                {http_['seconds']:7.2f} s   peak RSS {http_['rss_mib']:6.1f} MiB"
            f"   (POST answered in {1000 * http_['post_seconds']:.0f} ms; response of"
            f" {http_['response_bytes'] / 1024:.0f} KiB in {1000 * http_['response_seconds']:.0f} ms)"
        )
        polled = case_polled(binary, pristine, scratch)
        print(
            f"polled  POST to 303                {polled['seconds']:7.2f} s   peak RSS {polled['rss_mib']:6.1f} MiB"
            f"   ({polled['polls']:,} polls in {polled['waves']:.0f} waves of {POLLERS}: p50 {polled['p50_ms']:.1f} ms,"
            f" p95 {polled['p95_ms']:.1f} ms, max {polled['max_ms']:.1f} ms)"
        )
        print(
            f"http vs file: {http_['seconds'] / file['seconds']:.2f}x; polled vs http: "
            f"{polled['seconds'] / http_['seconds']:.2f}x"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
