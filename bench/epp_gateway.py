"""Figures (f) and (g): what Envoy + `pyllmd epp` cost a request, and how many they route.

Both figures run two Envoys side by side in the same run: one with the
project's gateway bootstrap (`pyllmd.stack.envoy.envoy_bootstrap`: ext_proc
filter, ORIGINAL_DST cluster) in front of `pyllmd epp --static-endpoints`
(plaintext gRPC, default config), and the same listener without the filter
routing straight to the simulators (`direct_bootstrap`). The simulators run
with zero latency. The EPP gets core 0 to itself, as it would get its own pod;
the Envoys (one worker each), the simulators and the client share core 1.

(f) sends requests one at a time over one keep-alive connection, alternating
blocks between the two gateways so drift hits both alike. (g) is wrk (or the
aiohttp client) with a fixed number of connections against each gateway.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop

from bench import loadgen, wrk
from bench.loadgen import Throughput, percentile
from bench.procs import LOOPBACK, Server, cpu_seconds, free_port, pinned
from pyllmd.core.promtext import parse_samples
from pyllmd.stack.envoy import envoy_binary, envoy_bootstrap, write_bootstrap

MODEL = "bench-model"
BODY: dict[str, object] = {"model": MODEL, "prompt": "Hello, how are you today?", "max_tokens": 8}
PATH = "/v1/completions"
EPP_CPU = 0
SHARED_CPU = 1
DIRECT_CLUSTER = "direct"
BLOCK = 100  # sequential requests per gateway before switching to the other


@dataclass(frozen=True)
class LatencyResults:
    """Figure (f): client-measured latency of sequential requests per gateway (ms)."""

    epp_ms: tuple[float, ...]
    direct_ms: tuple[float, ...]
    errors: int
    warmup: int

    def epp(self, q: float) -> float:
        return percentile(list(self.epp_ms), q)

    def direct(self, q: float) -> float:
        return percentile(list(self.direct_ms), q)

    def added(self, q: float) -> float:
        """The EPP's share: its gateway's quantile minus the direct one's."""
        return self.epp(q) - self.direct(q)


@dataclass(frozen=True)
class ThroughputResults:
    """Figure (g): closed-loop requests/s through each gateway to three simulators."""

    client: str
    concurrency: int
    seconds: int
    epp: Throughput
    direct: Throughput
    epp_cpu: float  # cores the EPP process used during the measured run
    per_sim: tuple[int, ...]  # requests each simulator answered during the EPP run


def direct_bootstrap(listen_port: int, admin_port: int, upstreams: Sequence[int]) -> dict[str, Any]:
    """The gateway bootstrap without ext_proc: the same listener, round robin over
    `upstreams` (loopback ports) instead of the EPP-chosen original destination."""
    boot = copy.deepcopy(envoy_bootstrap(listen_port, 0, admin_port, ext_proc_tls=False))
    resources = boot["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if "ext_proc" not in f["name"]]
    for host in hcm["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            route["route"]["cluster"] = DIRECT_CLUSTER
    limits = resources["clusters"][-1]["circuit_breakers"]
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": LOOPBACK, "port_value": port}}}}
        for port in upstreams
    ]
    resources["clusters"] = [
        {
            "name": DIRECT_CLUSTER,
            "type": "STATIC",
            "lb_policy": "ROUND_ROBIN",
            "connect_timeout": "5s",
            "circuit_breakers": limits,
            "load_assignment": {
                "cluster_name": DIRECT_CLUSTER,
                "endpoints": [{"lb_endpoints": endpoints}],
            },
        }
    ]
    return boot


def envoy(name: str, bootstrap: dict[str, Any], directory: Path) -> Server:
    """One Envoy worker on the shared core; healthy once the admin `/ready` answers."""
    config = write_bootstrap(directory / f"{name}.yaml", bootstrap)
    admin = int(bootstrap["admin"]["address"]["socket_address"]["port_value"])
    argv = [envoy_binary(), "-c", str(config), "--concurrency", "1", "--use-dynamic-base-id"]
    argv += ["--log-level", "error"]
    server = Server(name, pinned(argv, SHARED_CPU), admin, cpu=SHARED_CPU, health_path="/ready")
    return server


def simulator(sim_command: Sequence[str]) -> Server:
    port = free_port()
    argv = [*sim_command, "--model", MODEL, "--port", str(port), "--seed", "1"]
    argv += ["--max-num-seqs", "256"]
    return Server("simulator", pinned(argv, SHARED_CPU), port, cpu=SHARED_CPU)


def epp(sim_ports: Sequence[int]) -> tuple[Server, int]:
    """`pyllmd epp` over the simulators with the default config; (server, ext_proc port)."""
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "pyllmd", "epp",
        "--static-endpoints=" + ",".join(f"{LOOPBACK}:{p}" for p in sim_ports),
        "--secure-serving=false", f"--bind-address={LOOPBACK}", f"--grpc-port={grpc_port}",
        f"--grpc-health-port={health_port}", f"--metrics-port={metrics_port}",
        "--metrics-endpoint-auth=false",
    ]  # fmt: skip
    server = Server("epp", pinned(argv, EPP_CPU), metrics_port, cpu=EPP_CPU, health_path="/metrics")
    return server, grpc_port


@dataclass
class Gateways:
    """The two running gateways and what is behind them."""

    epp_url: str
    direct_url: str
    epp: Server
    sims: list[Server]


@contextmanager
def gateways(sim_command: Sequence[str], sims: int) -> Iterator[Gateways]:
    """Start `sims` simulators, the EPP and both Envoys; stop them all on exit."""
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-envoy-") as tmp:
        started = [stack.enter_context(simulator(sim_command)) for _ in range(sims)]
        ports = [s.port for s in started]
        picker, grpc_port = epp(ports)
        stack.enter_context(picker)
        via, direct = free_port(), free_port()
        boot = envoy_bootstrap(via, grpc_port, free_port(), ext_proc_tls=False)
        stack.enter_context(envoy("envoy-epp", boot, Path(tmp)))
        stack.enter_context(
            envoy("envoy-direct", direct_bootstrap(direct, free_port(), ports), Path(tmp))
        )
        yield Gateways(
            f"http://{LOOPBACK}:{via}{PATH}", f"http://{LOOPBACK}:{direct}{PATH}", picker, started
        )


class _Client:
    """One keep-alive HTTP/1.1 connection posting `BODY`; reconnects after an error."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or LOOPBACK, parts.port or 80, parts.path
        self.payload = json.dumps(BODY).encode()
        self.headers = {"Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def post(self) -> tuple[float, bool]:
        """(seconds, answered 200)."""
        start = time.perf_counter()
        try:
            self.conn.request("POST", self.path, body=self.payload, headers=self.headers)
            resp = self.conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            ok = False
        return time.perf_counter() - start, ok

    def close(self) -> None:
        self.conn.close()


def sequential(epp_url: str, direct_url: str, requests: int, warmup: int) -> LatencyResults:
    """Figure (f): `requests` timed requests per gateway, alternating in blocks of `BLOCK`."""
    clients = {"epp": _Client(epp_url), "direct": _Client(direct_url)}
    samples: dict[str, list[float]] = {"epp": [], "direct": []}
    errors = 0
    try:
        for client in clients.values():
            for _ in range(warmup):
                client.post()
        for block in range(math.ceil(requests / BLOCK)):
            n = min(BLOCK, requests - block * BLOCK)
            for label, client in clients.items():
                for _ in range(n):
                    seconds, ok = client.post()
                    if ok:
                        samples[label].append(seconds * 1000)
                    else:
                        errors += 1
    finally:
        for client in clients.values():
            client.close()
    return LatencyResults(tuple(samples["epp"]), tuple(samples["direct"]), errors, warmup)


def served(sim: Server) -> int:
    """`vllm:request_success_total` of one simulator."""
    with urllib.request.urlopen(f"{sim.base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return int(sum(s.value for s in parse_samples(text) if s.name == "vllm:request_success_total"))


def _measure(url: str, concurrency: int, seconds: int, warm: bool) -> Throughput:
    """`seconds` of closed-loop load, after a 2 s warm-up when `warm` (wrk when installed;
    the aiohttp client always warms up 2 s first)."""
    if wrk.available():
        if warm:
            wrk.run(url, BODY, concurrency, 2)
        return wrk.run(url, BODY, concurrency, seconds)
    return uvloop.run(loadgen.throughput(url, BODY, concurrency, 2.0, seconds))


def throughput(gw: Gateways, concurrency: int, seconds: int) -> ThroughputResults:
    """Figure (g): the EPP gateway, then the direct one, with the same client."""
    client = "wrk (1 thread)" if wrk.available() else "bench.loadgen (aiohttp)"
    if wrk.available():
        wrk.run(gw.epp_url, BODY, concurrency, 2)
    before = [served(s) for s in gw.sims]
    cpu_start, wall_start = cpu_seconds(gw.epp.proc.pid), time.monotonic()
    via = _measure(gw.epp_url, concurrency, seconds, warm=False)
    cpu = (cpu_seconds(gw.epp.proc.pid) - cpu_start) / (time.monotonic() - wall_start)
    per_sim = tuple(served(s) - b for s, b in zip(gw.sims, before, strict=True))
    direct = _measure(gw.direct_url, concurrency, seconds, warm=True)
    return ThroughputResults(client, concurrency, seconds, via, direct, cpu, per_sim)
