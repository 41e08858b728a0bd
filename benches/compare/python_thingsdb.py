"""The official Python connector on the same workload as bench_e2e.

`1+1;` in @t against a node, pipelined (256 requests in flight, as
asyncio tasks over one connection) and one at a time, for N seconds each,
over TCP and/or WebSocket, with this process's CPU time per request and,
one at a time, the system calls per request (this script again under
`strace -f -c` for 500 and for 2 500 requests, the difference divided by
2 000, as bench_e2e counts its own; n/a without strace); then the latency from a JOIN's reply to its ON_JOIN (5 fresh connections) and
from the first to the last event of a burst of 10 (5 bursts), in ms,
median / max. Prints Markdown rows.

    pip install python-thingsdb websockets
    python benches/compare/python_thingsdb.py --tcp 127.0.0.1:9200 --ws ws://127.0.0.1:9270 --secs 5
"""
import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

from thingsdb.client import Client
from thingsdb.room import Room, event

SAMPLES = 5
BURST = 10
COLLECTION = "//stuff"
ROOM_CODE = (
    "if (!.has('bench_e2e_room')) .bench_e2e_room = room(); "
    ".bench_e2e_room.id();"
)
BURST_CODE = "".join(f".bench_e2e_room.emit('b', {i});" for i in range(BURST))


async def connect(tcp=None, ws=None, user="admin", password="pass"):
    client = Client()
    if ws:
        await client.connect(ws)
    else:
        host, port = tcp.rsplit(":", 1)
        await client.connect(host, int(port))
    await client.authenticate(user, password)
    return client


def measured(done, t0, cpu0):
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return done / wall, cpu * 1e6 / max(done, 1)


async def one_at_a_time(client, secs):
    done, end = 0, time.perf_counter() + secs
    t0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() < end:
        assert await client.query("1+1;", scope="@t") == 2
        done += 1
    return measured(done, t0, cpu0)


async def pipelined(client, secs, window):
    done = 0
    end = time.perf_counter() + secs
    t0, cpu0 = time.perf_counter(), time.process_time()

    async def worker():
        nonlocal done
        while time.perf_counter() < end:
            assert await client.query("1+1;", scope="@t") == 2
            done += 1

    await asyncio.gather(*(worker() for _ in range(window)))
    return measured(done, t0, cpu0)


async def only_requests(kind, target, count):
    """`--syscalls-only`: connect, warm up, `count` requests one at a time."""
    client = await (connect(ws=target) if kind == "WS" else connect(tcp=target))
    for _ in range(100):
        await client.query("1+1;", scope="@t")
    for _ in range(count):
        await client.query("1+1;", scope="@t")
    client.close()
    await client.wait_closed()


def syscalls_per_request(kind, target):
    """System calls per request one at a time, or None without strace."""
    if not shutil.which("strace"):
        return None

    def total(n):
        with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
            out = f.name
        flag = "--ws" if kind == "WS" else "--tcp"
        cmd = ["strace", "-f", "-c", "-o", out, sys.executable, __file__,
               "--syscalls-only", flag, target, "--count", str(n)]
        try:
            ok = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
            lines = open(out).read().splitlines()
        finally:
            os.unlink(out)
        if not ok:
            return None
        last = [l for l in lines if l.rstrip().endswith("total")]
        return int(last[-1].split()[3]) if last else None

    a, b = total(500), total(2500)
    return None if a is None or b is None else (b - a) / 2000


class BenchRoom(Room):
    """Records when its ON_JOIN and its events arrive."""

    def on_init(self):
        self.joined_at = None
        self.events = []

    async def on_join(self):
        self.joined_at = time.perf_counter()

    @event("b")
    def on_b(self, *args):
        self.events.append(time.perf_counter())


def med_max(v):
    v = sorted(v)
    return f"{v[len(v) // 2] * 1e3:.1f} / {v[-1] * 1e3:.1f}"


async def latency(open_client):
    client = await open_client()
    room_id = await client.query(ROOM_CODE, scope=COLLECTION)
    client.close()
    await client.wait_closed()
    joins, bursts = [], []
    for sample in range(SAMPLES):
        client = await open_client()
        room = BenchRoom(room_id, scope=COLLECTION)
        replied = []
        orig = client._join

        async def timed_join(*args, **kwargs):
            res = await orig(*args, **kwargs)
            replied.append(time.perf_counter())
            return res

        client._join = timed_join
        await room.join(client, wait=5)
        joins.append(room.joined_at - replied[0])
        if sample == 0:
            for _ in range(SAMPLES):
                room.events = []
                await client.query(BURST_CODE, scope=COLLECTION)
                while len(room.events) < BURST:
                    await asyncio.sleep(0.001)
                bursts.append(room.events[-1] - room.events[0])
        client.close()
        await client.wait_closed()
    return joins, bursts


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tcp")
    p.add_argument("--ws")
    p.add_argument("--secs", type=float, default=5)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--syscalls-only", action="store_true")
    p.add_argument("--count", type=int, default=1000)
    a = p.parse_args()
    if a.syscalls_only:
        kind, target = ("WS", a.ws) if a.ws else ("TCP", a.tcp)
        await only_requests(kind, target, a.count)
        return
    print("| transport | mode | python-thingsdb (req/s) | python-thingsdb CPU (us/req) | syscalls/req |")
    print("|---|---|---:|---:|---:|")
    lat = []
    for kind, target in (("TCP", a.tcp), ("WS", a.ws)):
        if not target:
            continue

        def open_client(kind=kind, target=target):
            return connect(ws=target) if kind == "WS" else connect(tcp=target)

        client = await open_client()
        await one_at_a_time(client, 0.5)  # warm up
        rate, cpu = await pipelined(client, a.secs, a.window)
        print(f"| {kind} | pipelined | {rate:.0f} | {cpu:.1f} | |")
        rate, cpu = await one_at_a_time(client, a.secs)
        sc = syscalls_per_request(kind, target)
        sc = "n/a" if sc is None else f"{sc:.1f}"
        print(f"| {kind} | one at a time | {rate:.0f} | {cpu:.1f} | {sc} |")
        client.close()
        await client.wait_closed()
        lat.append((kind, await latency(open_client)))
    print()
    print(f"| transport | measure (ms, median / max) | python-thingsdb |")
    print("|---|---|---:|")
    for kind, (joins, bursts) in lat:
        print(f"| {kind} | JOIN reply -> ON_JOIN | {med_max(joins)} |")
        print(f"| {kind} | burst of {BURST} events | {med_max(bursts)} |")


asyncio.run(main())
