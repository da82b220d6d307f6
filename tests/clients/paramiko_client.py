#!/usr/bin/env python3
"""A second SFTP client implementation (paramiko) for gdprd's integration tests.

    paramiko_client.py roundtrip PORT USER KEY LOCAL REMOTE_NAME RESULT_NAME OUTDIR
        put LOCAL as GDPR_Submit/REMOTE_NAME, wait for GDPR_Result/RESULT_NAME, get it into OUTDIR, remove it.
    paramiko_client.py slow-put PORT USER KEY LOCAL REMOTE_NAME
        open GDPR_Submit/REMOTE_NAME, write half of LOCAL, print "started", wait for a line on stdin, write the
        rest, close, print "closed".
    paramiko_client.py oversized PORT USER KEY
        log in, open the sftp subsystem, announce a 0xFFFFFFFF-byte SFTP packet; print "closed" when the server
        drops the channel, "open" if it is still open after 10 s.
    paramiko_client.py password-ls PORT USER PASSWORD DIR
        log in with PASSWORD (password authentication only) and print DIR's names, one a line; exit 1 with
        "authentication failed: …" when the server refuses the login.
"""

import os
import sys
import time

import paramiko


def connect(port, user, key):
    transport = paramiko.Transport(("127.0.0.1", int(port)))
    transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key))
    return transport


def roundtrip(port, user, key, local, remote_name, result_name, outdir):
    transport = connect(port, user, key)
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sorted(sftp.listdir("/")) == ["GDPR_Result", "GDPR_Submit"], sftp.listdir("/")
    sftp.put(local, f"GDPR_Submit/{remote_name}", confirm=False)
    deadline = time.time() + 60
    while result_name not in sftp.listdir("GDPR_Result"):
        if time.time() > deadline:
            sys.exit(f"no {result_name} within 60 s")
        time.sleep(0.1)
    sftp.get(f"GDPR_Result/{result_name}", os.path.join(outdir, result_name))
    sftp.remove(f"GDPR_Result/{result_name}")
    try:
        sftp.mkdir("GDPR_Submit/nope")
        sys.exit("mkdir was allowed")
    except PermissionError:
        pass
    sftp.close()
    transport.close()
    print("ok")


def slow_put(port, user, key, local, remote_name):
    with open(local, "rb") as f:
        data = f.read()
    transport = connect(port, user, key)
    sftp = paramiko.SFTPClient.from_transport(transport)
    remote = sftp.open(f"GDPR_Submit/{remote_name}", "wb")
    half = len(data) // 2
    remote.write(data[:half])
    remote.flush()
    print("started", flush=True)
    sys.stdin.readline()
    remote.write(data[half:])
    remote.close()
    print("closed", flush=True)
    sftp.close()
    transport.close()


def oversized(port, user, key):
    transport = connect(port, user, key)
    channel = transport.open_session()
    channel.invoke_subsystem("sftp")
    channel.sendall(b"\xff\xff\xff\xff" + b"\x01" * 64)
    channel.settimeout(10)
    try:
        while True:
            data = channel.recv(65536)
            if not data:
                print("closed")
                break
    except (TimeoutError, OSError):
        print("closed" if channel.closed or not transport.is_active() else "open")
    transport.close()


def password_ls(port, user, password, path):
    transport = paramiko.Transport(("127.0.0.1", int(port)))
    try:
        transport.connect(username=user, password=password)
    except paramiko.AuthenticationException as e:
        sys.exit(f"authentication failed: {e}")
    sftp = paramiko.SFTPClient.from_transport(transport)
    for name in sorted(sftp.listdir(path)):
        print(name)
    sftp.close()
    transport.close()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {
        "roundtrip": roundtrip,
        "slow-put": slow_put,
        "oversized": oversized,
        "password-ls": password_ls,
    }[command](*args)
