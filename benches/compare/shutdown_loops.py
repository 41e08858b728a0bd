"""python-thingsdb on the shutdown scenario of `cargo run -p thingsdb-client
--example shutdown_loops` (which starts this script itself with `--python`,
so that both connectors go through the same shutdown of the same node).

A pool of nodes (the first is connected first, as the Rust client does
without `random_start`), LOOPS tasks each running `.n += 1;` and `1 + 1;`
in turn with a per-request timeout, for SECS seconds. The script prints
`ready` once connected, runs until SECS have passed, then prints the first
few errors (`error ...` lines) and `result answered=N failed=N timeouts=N`.

    python benches/compare/shutdown_loops.py --pool ws://127.0.0.1:9270,ws://127.0.0.1:9271 --secs 12
"""
import argparse
import asyncio
import sys
import time
from unittest import mock

from thingsdb.client import Client


def address(entry):
    if entry.startswith("ws://") or entry.startswith("wss://"):
        return entry
    host, port = entry.rsplit(":", 1)
    return (host, int(port))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", required=True, help="comma separated host:port or ws:// URIs")
    ap.add_argument("--secs", type=float, default=12.0)
    ap.add_argument("--loops", type=int, default=16)
    ap.add_argument("--timeout", type=int, default=10)
    ap.add_argument("--scope", default="//stuff")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="pass")
    args = ap.parse_args()

    pool = [address(e) for e in args.pool.split(",")]
    client = Client()
    client.set_default_scope(args.scope)
    # connect_pool starts at a random node; start at the first one, as the
    # Rust client does, so that both are on the node that is shut down.
    with mock.patch("thingsdb.client.client.random.randint", return_value=0):
        await client.connect_pool(pool, args.user, args.password)
    print("ready", flush=True)

    counts = {"answered": 0, "failed": 0, "timeouts": 0, "errors": []}
    end = time.monotonic() + args.secs

    async def loop(k):
        i = 0
        while time.monotonic() < end:
            code = ".n += 1;" if (i + k) % 2 == 0 else "1 + 1;"
            i += 1
            try:
                await client.query(code, timeout=args.timeout)
                counts["answered"] += 1
            except asyncio.TimeoutError as e:
                counts["timeouts"] += 1
                counts["failed"] += 1
                if len(counts["errors"]) < 5:
                    counts["errors"].append(f"timeout: {e}")
            except Exception as e:  # any failure counts
                counts["failed"] += 1
                if len(counts["errors"]) < 5:
                    counts["errors"].append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(loop(k) for k in range(args.loops)))
    client.close()
    try:
        await asyncio.wait_for(client.wait_closed(), 5)
    except Exception:
        pass
    for e in counts["errors"]:
        print("error", e)
    print(
        f"result answered={counts['answered']} failed={counts['failed']} "
        f"timeouts={counts['timeouts']}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
