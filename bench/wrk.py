"""Optional use of ``wrk`` for the requests/s figure.

wrk (C, one thread) costs far less per request than any Python client, so with
it the figure measures the servers rather than the client. It is used when
installed (``make bench`` installs it from Debian); otherwise the aiohttp
client in bench.loadgen is used and the report says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.loadgen import Throughput
from bench.procs import pin

SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def run(url: str, body: dict[str, object], concurrency: int, seconds: int) -> Throughput:
    """One wrk run of ``seconds``; non-2xx answers and socket errors count as errors."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(SCRIPT.format(body=_lua_string(json.dumps(body))))
        argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pin(proc.pid, 1)
        out, _ = proc.communicate(timeout=seconds + 30)
    return parse(out, seconds)


def parse(out: str, seconds: int) -> Throughput:
    """Read wrk's summary: total requests, non-2xx and socket errors."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    elapsed = float(total.group(2)) * scale or float(seconds)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    ok = max(0, int(total.group(1)) - errors)
    return Throughput(ok, errors, elapsed)
