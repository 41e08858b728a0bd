"""The official Python connector on the same workload as bench_e2e.

`1+1;` in @t against a node, pipelined (256 requests in flight, as
asyncio tasks over one connection) and one at a time, for N seconds each,
over TCP and/or WebSocket. Prints Markdown rows.

    pip install python-thingsdb websockets
    python benches/compare/python_thingsdb.py --tcp 127.0.0.1:9200 --ws ws://127.0.0.1:9270 --secs 5
"""
import argparse
import asyncio
import time

from thingsdb.client import Client


async def connect(tcp=None, ws=None, user="admin", password="pass"):
    client = Client()
    if ws:
        await client.connect(ws)
    else:
        host, port = tcp.rsplit(":", 1)
        await client.connect(host, int(port))
    await client.authenticate(user, password)
    return client


async def one_at_a_time(client, secs):
    done, end = 0, time.perf_counter() + secs
    start = time.perf_counter()
    while time.perf_counter() < end:
        assert await client.query("1+1;", scope="@t") == 2
        done += 1
    return done / (time.perf_counter() - start)


async def pipelined(client, secs, window):
    done = 0
    end = time.perf_counter() + secs
    start = time.perf_counter()

    async def worker():
        nonlocal done
        while time.perf_counter() < end:
            assert await client.query("1+1;", scope="@t") == 2
            done += 1

    await asyncio.gather(*(worker() for _ in range(window)))
    return done / (time.perf_counter() - start)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tcp")
    p.add_argument("--ws")
    p.add_argument("--secs", type=float, default=5)
    p.add_argument("--window", type=int, default=256)
    a = p.parse_args()
    print("| transport | mode | python-thingsdb (req/s) |")
    print("|---|---|---:|")
    for kind, target in (("TCP", a.tcp), ("WS", a.ws)):
        if not target:
            continue
        client = await (connect(ws=target) if kind == "WS" else connect(tcp=target))
        await one_at_a_time(client, 0.5)  # warm up
        rate = await pipelined(client, a.secs, a.window)
        print(f"| {kind} | pipelined | {rate:.0f} |")
        rate = await one_at_a_time(client, a.secs)
        print(f"| {kind} | one at a time | {rate:.0f} |")
        client.close()
        await client.wait_closed()


asyncio.run(main())
