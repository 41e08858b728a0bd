"""One query from start to result with python-thingsdb, as `thingsdb -q`
does it: start the interpreter, connect, authenticate, run the query,
print the result as JSON, close. For start-to-result timings next to the
CLI (see README, "One-shot queries"):

    hyperfine 'python benches/compare/oneshot.py 127.0.0.1:9200 "1+1;"' \
              'thingsdb -u thingsdb://127.0.0.1:9200 --password pass -q "1+1;"'
"""
import asyncio
import json
import sys

from thingsdb.client import Client


async def main(target, code):
    host, port = target.rsplit(":", 1)
    client = Client()
    await client.connect(host, int(port))
    try:
        await client.authenticate("admin", "pass")
        print(json.dumps(await client.query(code, scope="@t")))
    finally:
        client.close()
        await client.wait_closed()


asyncio.run(main(sys.argv[1], sys.argv[2]))
