#!/usr/bin/env python3
"""Measures what slow, idle and hostile clients get from `candor serve`.

    cargo build --release
    python3 scripts/slow-clients.py target/release/candor models/sentiment

Starts the server twice on free loopback ports with its default connection
settings (a throwaway SQLite file under /tmp keeps the prediction log on),
then prints, with timings:

- a partial request head, a partial body, an idle keep-alive connection and
  a connection that sends nothing: what each gets and after how long;
- 1,100 slow connections (partial heads) against the 1,024-connection cap;
- SIGTERM while a client holds a partial body: time until the process exits.

Only the standard library; every wait is bounded.
"""

import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

SLOW = 1_100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, model, folder):
    port = free_port()
    log = open(os.path.join(folder, f"serve-{port}.log"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--model", model, "--addr", f"127.0.0.1:{port}",
         "--database-url", f"sqlite://{folder}/candor-{port}.db"],
        stdout=log, stderr=log)
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(4096):
                    return server, port
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the server did not become ready")


def connect(port, first_bytes=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first_bytes:
        s.sendall(first_bytes)
    return s


def wait_closed(s, limit):
    """Seconds until the server closes `s` (and what it sent), or None."""
    started, received = time.monotonic(), b""
    s.settimeout(limit)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
    except socket.timeout:
        return None, received
    except OSError:
        pass
    return time.monotonic() - started, received


def status_line(received):
    line = received.split(b"\r\n", 1)[0].decode(errors="replace")
    body = received.split(b"\r\n\r\n", 1)[-1]
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        kind = None
    if not line:
        return "no response"
    return f"{line} ({kind})" if kind else line


def slow_clients(port):
    cases = {
        "partial request head": b"POST /v1/classify HTTP/1.1\r\nHost: m\r\nContent-Ty",
        "partial body": b"POST /v1/classify HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\": ",
        "nothing sent": b"",
        "idle keep-alive": b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n",
    }
    results = {}

    def run(name, first_bytes):
        s = connect(port, first_bytes)
        if name == "idle keep-alive":
            s.recv(4096)  # the answer; then the connection rests
        results[name] = wait_closed(s, 120)
        s.close()

    threads = [threading.Thread(target=run, args=case) for case in cases.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in cases:
        took, received = results[name]
        print(f"{name:22} closed after {took:6.2f} s; got: {status_line(received)}")


def over_the_cap(port):
    opened, refused = {}, 0
    started = time.monotonic()
    for _ in range(SLOW):
        s = connect(port, b"POST /v1/classify HTTP/1.1\r\nHost: m\r\n")
        opened[s] = time.monotonic()
    time.sleep(1)
    for s in list(opened):
        s.setblocking(False)
        try:
            gone = s.recv(1) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if gone:
            refused += 1
            del opened[s]
            s.close()
    print(f"{SLOW} slow connections opened in {time.monotonic() - started:.1f} s: "
          f"{len(opened)} held open, {refused} closed at once")
    probe = connect(port, b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
    took, received = wait_closed(probe, 5)
    print(f"a real request while full: {status_line(received)}, closed after {took:.2f} s")
    lifetimes = held_until_closed(opened, 30)
    print(f"the held ones were closed {min(lifetimes):.2f} to {max(lifetimes):.2f} s "
          f"after being opened ({len(lifetimes)} of {len(opened)})")
    probe = connect(port, b"GET /healthz HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
    print(f"a real request afterwards: {status_line(wait_closed(probe, 5)[1])}")


def held_until_closed(opened, limit):
    """Seconds each socket in `opened` lived until the server closed it."""
    watch, lifetimes = selectors.DefaultSelector(), []
    for s in opened:
        watch.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + limit
    while watch.get_map() and time.monotonic() < deadline:
        for key, _ in watch.select(timeout=0.05):
            try:
                gone = key.fileobj.recv(4096) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                lifetimes.append(time.monotonic() - opened[key.fileobj])
                watch.unregister(key.fileobj)
                key.fileobj.close()
    return lifetimes


def shutdown_with_a_partial_body(server, port):
    s = connect(port, b"POST /v1/classify HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\": ")
    time.sleep(0.5)
    started = time.monotonic()
    server.terminate()
    code = server.wait(timeout=60)
    print(f"SIGTERM with a partial body held: the process exited after "
          f"{time.monotonic() - started:.2f} s with code {code}")
    s.close()


def main():
    binary, model = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        server, port = start(binary, model, folder)
        try:
            slow_clients(port)
            over_the_cap(port)
        finally:
            server.terminate()
            server.wait(timeout=60)
        server, port = start(binary, model, folder)
        shutdown_with_a_partial_body(server, port)


if __name__ == "__main__":
    main()
