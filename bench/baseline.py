"""The baseline server: the least an aiohttp + uvloop server can do per request.

It answers ``/v1/completions`` with a fixed body shaped like the simulator's
(after parsing the request JSON, which any real server must do), and streams a
fixed number of SSE chunks with a fixed gap (after an optional fixed wait for
the first one) when ``stream`` is true. The gaps are paced against deadlines,
as the simulator paces them, so timer overshoot does not add up. Benchmarks
divide the simulator's figure by this server's, measured with the same client.

Run: ``python -m bench.baseline --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop
from aiohttp import web

COMPLETION = json.dumps(
    {
        "id": "cmpl-00000000-0000-0000-0000-000000000000",
        "created": 1700000000,
        "model": "bench-model",
        "usage": {"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14},
        "object": "text_completion",
        "kv_transfer_params": None,
        "choices": [
            {"index": 0, "finish_reason": "length", "text": "Today is a nice sunny day and"}
        ],
    },
    separators=(",", ":"),
).encode()

CHUNK = (
    b'data: {"id":"cmpl-0","created":1700000000,"model":"bench-model","usage":null,'
    b'"object":"text_completion","kv_transfer_params":null,'
    b'"choices":[{"index":0,"finish_reason":null,"text":"word "}]}\n\n'
)


async def completions(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    if not body.get("stream"):
        return web.Response(body=COMPLETION, content_type="application/json")
    gap = float(request.app["itl"])
    ttft = float(request.app["ttft"])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if ttft > 0:
        await asyncio.sleep(ttft)
    start = time.monotonic()
    for i in range(int(body.get("max_tokens", 16))):
        if i:
            await asyncio.sleep(max(0.0, start + i * gap - time.monotonic()))
        await resp.write(CHUNK)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def health(_: web.Request) -> web.Response:
    return web.json_response({})


def build_app(itl: float, ttft: float = 0.0) -> web.Application:
    app = web.Application()
    app["itl"] = itl
    app["ttft"] = ttft
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/health", health)
    return app


async def serve(port: int, itl: float, ttft: float = 0.0) -> None:
    runner = web.AppRunner(build_app(itl, ttft), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--inter-token-latency-ms", type=float, default=50.0)
    parser.add_argument("--time-to-first-token-ms", type=float, default=0.0)
    args = parser.parse_args()
    ttft = args.time_to_first_token_ms / 1000
    uvloop.run(serve(args.port, args.inter_token_latency_ms / 1000, ttft))


if __name__ == "__main__":
    main()
