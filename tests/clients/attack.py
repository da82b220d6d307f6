#!/usr/bin/env python3
"""Attacks and unusual-but-legal client behaviour against gdprd's embedded SFTP server, for the integration tests.
Loopback only, bounded in time and count. Each command prints one JSON object with what it observed.

    attack.py channels PORT USER KEY EXECS CHANNELS
        on one connection: EXECS `exec` requests (each refused), then CHANNELS sftp channels; counts those opened.
    attack.py handles PORT USER KEY CONNECTIONS CHANNELS PER_CHANNEL HOLD
        CONNECTIONS x CHANNELS sftp sessions each opening up to PER_CHANNEL files of GDPR_Result (cycling through the
        names there); counts the handles opened and the first error, holds them HOLD seconds, prints, then closes.
    attack.py listings PORT USER KEY CONNECTIONS CHANNELS PER_CHANNEL HOLD
        the same with opendir + one readdir of GDPR_Result per handle.
    attack.py idle PORT ADDRS PER_ADDR SECONDS
        from each source address in ADDRS (comma-separated), keeps PER_ADDR TCP connections open that never log in,
        reconnecting whenever one is closed, for SECONDS; prints {"ready": true} once all are connected, then
        counts connects and closes.
    attack.py kex PORT SOURCE KEX SECONDS SOCKETS
        from SOURCE, SOCKETS threads run key exchanges offering only KEX (comma-separated) for SECONDS; counts
        completed key exchanges and failures (with the first error).
    attack.py sftp PORT USER KEY OP ARGS...
        one paramiko SFTP operation: put LOCAL REMOTE | put-then-utime LOCAL REMOTE (1.5 s apart, as rclone) |
        keepalive-idle SECONDS (result: whether the session survived) |
        write LOCAL REMOTE (each write answered before the next) | rename OLD NEW | utime PATH | chmod PATH MODE | put-exclusive LOCAL REMOTE | listdir PATH | stat PATH;
        prints {"ok": ..., "error": ...}.
"""

import json
import logging
import socket
import sys
import threading
import time

import paramiko

# paramiko's own tracebacks for refused key exchanges would bury the JSON line.
logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)


def connect(port, user, key, source=None):
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=30, source_address=(source, 0) if source else None)
    transport = paramiko.Transport(sock)
    transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key))
    return transport


def out(**fields):
    print(json.dumps(fields), flush=True)


def channels(port, user, key, execs, count):
    transport = connect(port, user, key)
    refused = 0
    for _ in range(int(execs)):
        ch = transport.open_session(timeout=10)
        try:
            ch.exec_command("id")
            ch.recv_exit_status()
        except paramiko.SSHException:
            refused += 1
        ch.close()
    time.sleep(0.3)
    opened, clients = 0, []
    for _ in range(int(count)):
        try:
            clients.append(paramiko.SFTPClient.from_transport(transport))
            opened += 1
        except (paramiko.SSHException, EOFError, OSError):
            pass
    listed = all(sorted(c.listdir("/")) == ["GDPR_Result", "GDPR_Submit"] for c in clients)
    out(refused_execs=refused, opened=opened, listed=listed)
    transport.close()


def hold_handles(port, user, key, connections, chans, per_channel, hold, kind):
    # The clients are kept: paramiko closes a client's channel when it is garbage-collected.
    transports, clients, handles, first_error = [], [], [], None
    for _ in range(int(connections)):
        t = connect(port, user, key)
        transports.append(t)
        for _ in range(int(chans)):
            try:
                c = paramiko.SFTPClient.from_transport(t)
            except (paramiko.SSHException, EOFError, OSError) as e:
                first_error = first_error or f"channel: {e}"
                continue
            clients.append(c)
            try:
                names = c.listdir("GDPR_Result") if kind == "files" else []
            except (IOError, OSError) as e:
                first_error = first_error or str(e)
                continue
            for i in range(int(per_channel)):
                try:
                    if kind == "files":
                        handles.append(c.open(f"GDPR_Result/{names[i % len(names)]}", "rb"))
                    else:
                        h = c._request(paramiko.sftp.CMD_OPENDIR, "GDPR_Result")[1].get_binary()
                        c._request(paramiko.sftp.CMD_READDIR, h)
                        handles.append(h)
                except (IOError, OSError, paramiko.SSHException) as e:
                    first_error = first_error or str(e)
    out(opened=len(handles), first_error=first_error)
    time.sleep(float(hold))
    for t in transports:
        t.close()


def idle(port, addrs, per_addr, seconds):
    deadline = time.time() + float(seconds)
    stats = {"connects": 0, "closed_by_server": 0}
    lock = threading.Lock()

    def keep(addr):
        while time.time() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", int(port)), timeout=2, source_address=(addr, 0))
            except OSError:
                time.sleep(0.05)
                continue
            with lock:
                stats["connects"] += 1
            s.settimeout(0.5)
            while time.time() < deadline:
                try:
                    if s.recv(4096) == b"":
                        with lock:
                            stats["closed_by_server"] += 1
                        break
                except socket.timeout:
                    continue
                except OSError:
                    with lock:
                        stats["closed_by_server"] += 1
                    break
            s.close()

    threads = [threading.Thread(target=keep, args=(a,)) for a in addrs.split(",") for _ in range(int(per_addr))]
    for t in threads:
        t.start()
    while time.time() < deadline:
        with lock:
            if stats["connects"] >= len(threads):
                break
        time.sleep(0.05)
    print(json.dumps({"ready": True}), flush=True)
    for t in threads:
        t.join()
    out(**stats)


def kex(port, source, kexes, seconds, sockets):
    deadline = time.time() + float(seconds)
    wanted = kexes.split(",")
    stats = {"completed": 0, "failed": 0, "first_error": None}
    lock = threading.Lock()

    def run():
        while time.time() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", int(port)), timeout=5, source_address=(source, 0))
                t = paramiko.Transport(sock)
                t.get_security_options().kex = [k for k in t.get_security_options().kex if k in wanted] or wanted
                # Only key exchanges completed within the window count: a connection still waiting for its turn
                # when the window ends is given up.
                t.start_client(timeout=max(0.1, deadline - time.time()))
                if time.time() > deadline:
                    t.close()
                    break
                with lock:
                    stats["completed"] += 1
                t.close()
            except Exception as e:  # noqa: BLE001 - every failure counts the same
                with lock:
                    stats["failed"] += 1
                    stats["first_error"] = stats["first_error"] or f"{type(e).__name__}: {e}"
                time.sleep(0.02)

    threads = [threading.Thread(target=run) for _ in range(int(sockets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out(**stats)


def sftp_op(port, user, key, op, *args):
    transport = connect(port, user, key)
    c = paramiko.SFTPClient.from_transport(transport)
    try:
        if op == "put":
            c.put(args[0], args[1], confirm=False)
            result = None
        elif op == "write":
            # Unlike put (pipelined, and paramiko ignores an error at close), each write waits for its answer.
            with open(args[0], "rb") as f:
                data = f.read()
            remote = c.open(args[1], "wb")
            for at in range(0, len(data), 8192):
                remote.write(data[at:at + 8192])
            remote.close()
            result = None
        elif op == "put-exclusive":
            with open(args[0], "rb") as f:
                data = f.read()
            try:
                remote = c.open(args[1], "x")
            except IOError as e:
                out(ok=False, error=str(e), at="open")
                return
            remote.write(data)
            remote.close()
            result = None
        elif op == "rename":
            c.rename(args[0], args[1])
            result = None
        elif op == "put-then-utime":
            c.put(args[0], args[1], confirm=False)
            time.sleep(1.5)
            c.utime(args[1], (time.time(), time.time()))
            result = None
        elif op == "utime":
            c.utime(args[0], (time.time(), time.time()))
            result = None
        elif op == "chmod":
            c.chmod(args[0], int(args[1], 8))
            result = None
        elif op == "keepalive-idle":
            # Only SSH keepalives for SECONDS, no SFTP request: is the session still open afterwards?
            transport.set_keepalive(1)
            c.listdir("/")
            end = time.time() + float(args[0])
            while time.time() < end and transport.is_active():
                time.sleep(0.2)
            result = transport.is_active()
        elif op == "listdir":
            result = len(c.listdir(args[0]))
        elif op == "stat":
            result = c.stat(args[0]).st_size
        else:
            sys.exit(f"unknown op {op}")
        out(ok=True, result=result)
    except (IOError, OSError, paramiko.SSHException) as e:
        out(ok=False, error=str(e))
    finally:
        transport.close()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "handles":
        hold_handles(*args, kind="files")
    elif command == "listings":
        hold_handles(*args, kind="dirs")
    else:
        {"channels": channels, "idle": idle, "kex": kex, "sftp": sftp_op}[command](*args)
