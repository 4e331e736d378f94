#!/usr/bin/env python3
"""Ward's memory figures (BENCHMARKS.md, "Memory").

1. Peak resident memory of the gateway under a paced load of about
   1,000 requests per second (wrk, 12 keep-alive connections, each waiting
   10 ms after every response).
2. Resident memory per idle TLS connection: RSS with N idle TLS 1.3
   connections open (handshake done, no request) minus RSS before.

The gateway runs as E does in the anchor benchmark (one worker thread,
ES256 verified on every request, an audit record per request), with the
built-in echo upstream in the same process, so the figures include it.

    cargo build --release
    python3 bench/memory.py                  # rate 1000/s for 20 s, 10,000 idle connections
    python3 bench/memory.py --idle 2000      # fewer idle connections

Needs wrk and python3 (standard library only); uses loopback only and
stops by itself.
"""

import argparse
import asyncio
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found for {pid}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(ward, work, port):
    """Create a data directory with `ward up`, then adapt its ward.toml."""
    data = os.path.join(work, "d")
    up = subprocess.Popen([ward, "up", "--data-dir", data, "--listen", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in up.stdout:
        if line.startswith("Ward is up"):
            break
    up.terminate()
    up.wait(timeout=20)
    path = os.path.join(data, "ward.toml")
    text = open(path).read()
    text = text.replace('listen = "127.0.0.1:8443"', f'listen = "127.0.0.1:{port}"\nworker_threads = 1')
    text = text.replace("max_connections = 10000", "max_connections = 20000")
    text = text.replace('idle_timeout = "60s"', 'idle_timeout = "600s"')
    text = text.replace("cache_entries = 10000", "cache_entries = 0")
    open(path, "w").write(text)
    token = subprocess.run([ward, "token", "issue", "--data-dir", data, "--sub", "bench",
                            "--claim", "roles=reader", "--ttl", "1h"],
                           check=True, capture_output=True, text=True).stdout.strip()
    return data, path, token


def start(ward, config, port, pin):
    cmd = [ward, "gateway", "--config", config]
    if pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", pin] + cmd
    env = dict(os.environ, WARD_LOG="warn")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the gateway did not start")


def paced_load(ward_pid, port, token, rate, seconds, work):
    # Each connection waits 10 ms after every response; with about 1.5 ms
    # of latency per request, rate * 12 ms connections give the rate.
    conns = max(1, (rate * 12 + 999) // 1000)
    script = os.path.join(work, "pace.lua")
    with open(script, "w") as f:
        f.write("function delay() return 10 end\n")
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(ward_pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", script,
                          "-H", f"Authorization: Bearer {token}", f"https://127.0.0.1:{port}/api/x"],
                         check=True, capture_output=True, text=True).stdout
    done.set()
    sampler.join()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return total / seconds, peak[0], int(bad.group(1)) if bad else 0


async def hold_idle(port, cafile, count, pid):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    writers = []
    sem = asyncio.Semaphore(200)

    async def one():
        async with sem:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                      server_hostname="localhost")
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(2)
    rss = rss_kib(pid)
    for w in writers:
        w.close()
    return rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ward", default=os.path.join(ROOT, "target/release/ward"))
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--pin", default="1", help="CPU list for the gateway (taskset); empty for none")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    work = tempfile.mkdtemp(prefix="ward-memory.")
    try:
        port = free_port()
        data, config, token = prepare(args.ward, work, port)

        ward = start(args.ward, config, port, args.pin)
        try:
            idle_rss = rss_kib(ward.pid)
            achieved, peak, bad = paced_load(ward.pid, port, token, args.rate, args.seconds, work)
            hwm = rss_kib(ward.pid, "VmHWM")
        finally:
            ward.terminate()
            ward.wait(timeout=20)
        if bad:
            sys.exit(f"{bad} requests failed: the figures would not describe real work")
        print(f"paced load: {achieved:.0f} req/s for {args.seconds} s; RSS at start {idle_rss / 1024:.1f} MiB, "
              f"peak sampled {peak / 1024:.1f} MiB, VmHWM {hwm / 1024:.1f} MiB")

        ward = start(args.ward, config, port, args.pin)
        try:
            before = rss_kib(ward.pid)
            with_idle = asyncio.run(hold_idle(port, os.path.join(data, "ca.crt"), args.idle, ward.pid))
        finally:
            ward.terminate()
            ward.wait(timeout=30)
        per = (with_idle - before) * 1024 / args.idle
        print(f"idle TLS connections: {args.idle}; RSS {before / 1024:.1f} MiB before, "
              f"{with_idle / 1024:.1f} MiB with them open: {per / 1024:.1f} KiB per connection")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
