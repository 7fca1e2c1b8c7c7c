"""Figure (h): "KV-cache wins", the TTFT a cache-aware EPP saves on a shared-prefix workload.

Four `pyllmd sim` processes with the KV-cache simulation on, each on its own
loopback address (127.0.0.2-5, `POD_IP` the same, so the precise scorer can
match the pod in a KV-event topic to an endpoint), behind a real Envoy and
`pyllmd epp`. Each simulator's cache holds fewer tenants' system prompts than
there are tenants, so a spread that ignores the caches keeps evicting, while a
spread that keeps each tenant on one simulator fits. Prefill costs a fixed time
per uncached prompt token, so a cache hit shortens TTFT by about the prompt.

The same seeded request sequence (a tenant's system prompt plus a short question
of its own) is sent open-loop, at seeded Poisson arrival times of a fixed rate (as
llm-d's benchmark offers a fixed QPS), through four EPP configurations in turn,
each against freshly started simulators (empty caches): precise
(`precise-prefix-cache-scorer` fed by the simulators' KV events), approximate
(`prefix-cache-scorer`), load-only (`queue-scorer` + `kv-cache-utilization-scorer`)
and random (`random-picker`). The client measures TTFT (first SSE event) and reads
`usage.prompt_tokens_details.cached_tokens` of each stream's usage chunk.

Open-loop matters: a miss holds one of a simulator's `--max-num-seqs` slots for
about a second of prefill, a hit for tens of milliseconds, so the hit rate sets how
many requests per second the four simulators can serve. The rate is fixed above
what a cache-blind spread can serve and far below what a spread at the hit ceiling
can (`capacity` gives both from the simulator's latency flags), which is the regime
the published results describe: there, blind routing queues and TTFT grows with
the run, while cache-aware routing keeps up.

Two workloads: "ideal" (three-letter words, so the approximate scorer's model is
exact) and "divergent" (8-12-letter words, so its 4-characters-per-token estimate is
wrong, and each simulator's cache dropped once midway behind the router's back).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop

from bench.epp_gateway import envoy
from bench.epp_kv_wins_report import ConfigRun, Outcome, Result, Setup
from bench.procs import Server, free_port, pinned
from pyllmd.core.promtext import parse_samples
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.stack.envoy import envoy_bootstrap

MODEL = "bench-model"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
EPP_CPU, SHARED_CPU = 0, 1
TENANTS = 24
SYSTEM_WORDS = 1_024  # tokens of each system prompt (one simple-tokenizer token per word)
QUESTION_WORDS = 24
REQUESTS = 960  # 40 per tenant: first visits are 2.5 % of the requests
# requests per second offered (open-loop): 1.2 and 2.4 × what a cache-blind spread serves
RATES = (60.0, 120.0)
MAX_TOKENS = 4
BLOCK_SIZE = 16
KV_CACHE_BLOCKS = 640  # 10 system prompts of 64 blocks; all 24 need 1,536
PREFILL_MS_PER_TOKEN = 1
ITL_MS = 5
MAX_NUM_SEQS = 8
SIM_FLAGS = (
    "--model", MODEL, "--seed", "1", "--enable-kvcache",
    "--block-size", str(BLOCK_SIZE), "--kv-cache-size", str(KV_CACHE_BLOCKS),
    "--prefill-time-per-token", f"{PREFILL_MS_PER_TOKEN}ms",
    "--inter-token-latency", f"{ITL_MS}ms", "--max-num-seqs", str(MAX_NUM_SEQS),
    "--max-model-len", "4096",
)  # fmt: skip
LABELS = ("precise", "approximate", "load-only", "random")
LOAD = (("queue-scorer", 2), ("kv-cache-utilization-scorer", 2))  # the GIE default weights
PREFIX_WEIGHT = 3


def config_text(label: str, zmq_port: int) -> str:
    """The EndpointPickerConfig of one configuration (`zmq_port`: the precise scorer's socket)."""
    precise_params = (
        f"  parameters:\n    tokenProcessorConfig: {{blockSize: {BLOCK_SIZE}}}\n"
        f"    indexerConfig: {{tokenizersPoolConfig: {{modelName: {MODEL}}}}}\n"
        f'    kvEventsConfig: {{zmqEndpoint: "tcp://127.0.0.1:{zmq_port}", discoverPods: false}}\n'
    )
    scorers: tuple[tuple[str, int], ...] = {
        "precise": (("precise-prefix-cache-scorer", PREFIX_WEIGHT), *LOAD),
        "approximate": (("prefix-cache-scorer", PREFIX_WEIGHT), *LOAD),
        "load-only": LOAD,
        "random": (),
    }[label]
    plugins = "".join(
        f"- type: {t}\n" + (precise_params if t.startswith("precise") else "") for t, _ in scorers
    )
    refs = "".join(f"  - {{pluginRef: {t}, weight: {w}}}\n" for t, w in scorers)
    if not scorers:
        plugins, refs = "- type: random-picker\n", "  - pluginRef: random-picker\n"
    return f"plugins:\n{plugins}schedulingProfiles:\n- name: default\n  plugins:\n{refs}"


# --- the workload (pure) ---------------------------------------------------------------


IDEAL_LETTERS = (3, 3)  # "ideal": 4 characters per token with the space, as the estimate assumes
LONG_LETTERS = (8, 12)  # "divergent": about 11 characters per token
# "divergent": simulator i's cache is dropped when this share of the requests has started
DROP_AT = (0.4, 0.5, 0.6, 0.7)
WORKLOADS = ("ideal", "divergent")


def _words(rng: random.Random, n: int, letters: tuple[int, int] = IDEAL_LETTERS) -> str:
    """`n` random words of `letters` (min, max) letters: one simple-tokenizer token each.
    Three letters plus the space make the approximate scorer's 4-characters-per-token
    estimate right; longer words make it overcount the tokens."""
    low, high = letters
    return " ".join(  # a fixed length draws no length, so "ideal" stays the sequence it was
        "".join(
            rng.choices(
                "abcdefghijklmnopqrstuvwxyz", k=low if low == high else rng.randint(low, high)
            )
        )
        for _ in range(n)
    )


@dataclass(frozen=True)
class Request:
    tenant: int
    prompt: str


def workload(
    seed: int = 1,
    tenants: int = TENANTS,
    requests: int = REQUESTS,
    system_words: int = SYSTEM_WORDS,
    question_words: int = QUESTION_WORDS,
    letters: tuple[int, int] = IDEAL_LETTERS,
) -> list[Request]:
    """The request sequence: a uniformly drawn tenant's system prompt + a new question."""
    rng = random.Random(seed)
    systems = [_words(rng, system_words, letters) for _ in range(tenants)]
    out: list[Request] = []
    for i in range(requests):
        tenant = rng.randrange(tenants)
        question = f" q{i} " + _words(rng, question_words - 1, letters)
        out.append(Request(tenant, systems[tenant] + question))
    return out


def arrivals(n: int, rate: float, seed: int = 1) -> list[float]:
    """Seconds from the start at which each of `n` requests is sent: a seeded Poisson
    process of `rate` per second."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def capacity(miss_share: float) -> float:
    """Requests per second the four simulators serve when `miss_share` of the requests
    miss the system prompt: each request holds a slot for its prefill (uncached
    tokens × prefill time) and its decode."""
    decode = (MAX_TOKENS - 1) * ITL_MS
    miss = (SYSTEM_WORDS + QUESTION_WORDS) * PREFILL_MS_PER_TOKEN + decode
    hit = (QUESTION_WORDS + SYSTEM_WORDS % BLOCK_SIZE) * PREFILL_MS_PER_TOKEN + decode
    slot_ms = miss_share * miss + (1 - miss_share) * hit
    return len(HOSTS) * MAX_NUM_SEQS * 1000 / slot_ms


def hit_ceiling(requests: Sequence[Request], block_size: int = BLOCK_SIZE) -> float:
    """The best hit rate a router could reach: every request after its tenant's first
    finds the system prompt's full blocks; the question and the first visits miss."""
    seen: set[int] = set()
    prompt = cached = 0
    tokenizer = SimpleTokenizer()
    for req in requests:
        prompt += tokenizer.count(req.prompt)
        if req.tenant in seen:
            cached += SYSTEM_WORDS // block_size * block_size
        seen.add(req.tenant)
    return cached / prompt if prompt else math.nan


def drop_points(requests: int, shares: Sequence[float] = DROP_AT) -> dict[int, int]:
    """Request index → simulator whose cache is dropped when that request is taken."""
    return {int(requests * share): sim for sim, share in enumerate(shares)}


def setup(requests: Sequence[Request], rate: float = RATES[0]) -> Setup:
    tenants = len({r.tenant for r in requests})
    return Setup(
        requests=len(requests),
        tenants=tenants,
        rate=rate,
        kv_cache_blocks=KV_CACHE_BLOCKS,
        prefill_ms_per_token=PREFILL_MS_PER_TOKEN,
        hit_ceiling=hit_ceiling(requests),
        ceiling_capacity=capacity(tenants / len(requests)) if requests else math.nan,
        # a spread that ignores the caches finds a tenant's prompt on a simulator
        # holding 10 of the 24 tenants' prompts: at best 10 / 24 of the time
        blind_capacity=capacity(1 - KV_CACHE_BLOCKS // (SYSTEM_WORDS // BLOCK_SIZE) / TENANTS),
    )


# --- the run (imperative shell) ------------------------------------------------------


def _port_on(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _scrape(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for s in parse_samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _simulator(host: str, zmq_port: int) -> Server:
    port = _port_on(host)
    argv = [sys.executable, "-m", "pyllmd", "sim", *SIM_FLAGS, "--host", host]
    argv += ["--enable-sleep-mode"]
    argv += ["--port", str(port), "--zmq-endpoint", f"tcp://127.0.0.1:{zmq_port}"]
    env_argv = ["env", f"POD_IP={host}", f"POD_NAME=sim-{host}", "VLLM_SERVER_DEV_MODE=1", *argv]
    server = Server(f"sim-{host}", pinned(env_argv, SHARED_CPU), port, cpu=SHARED_CPU)
    server.base_url = f"http://{host}:{port}"  # Server assumes 127.0.0.1
    return server


def _epp(endpoints: str, config: str) -> tuple[Server, int]:
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "pyllmd", "epp", f"--static-endpoints={endpoints}",
        "--secure-serving=false", "--bind-address=127.0.0.1", f"--grpc-port={grpc_port}",
        f"--grpc-health-port={health_port}", f"--metrics-port={metrics_port}",
        "--metrics-endpoint-auth=false", "--refresh-prometheus-metrics-interval=100ms",
        "--config-text", config,
    ]  # fmt: skip
    server = Server("epp", pinned(argv, EPP_CPU), metrics_port, cpu=EPP_CPU, health_path="/metrics")
    return server, grpc_port


@dataclass
class Stack:
    url: str
    sims: list[Server]
    metrics_url: str


@contextmanager
def stack(label: str) -> Iterator[Stack]:
    """Fresh simulators, the EPP configured as `label` (once it sees all four), then Envoy."""
    zmq_port = free_port()
    with ExitStack() as stop, tempfile.TemporaryDirectory(prefix="bench-kvwins-") as tmp:
        sims = [stop.enter_context(_simulator(h, zmq_port)) for h in HOSTS]
        endpoints = ",".join(f"{h}:{s.port}" for h, s in zip(HOSTS, sims, strict=True))
        picker, grpc_port = _epp(endpoints, config_text(label, zmq_port))
        stop.enter_context(picker)
        metrics_url = f"{picker.base_url}/metrics"
        deadline = time.monotonic() + 20
        while _scrape(metrics_url, "inference_pool_ready_pods") < len(sims):
            if time.monotonic() > deadline:
                raise RuntimeError("the EPP did not see all four simulators")
            time.sleep(0.1)
        listen = free_port()
        boot = envoy_bootstrap(listen, grpc_port, free_port(), ext_proc_tls=False)
        stop.enter_context(envoy("envoy-kvwins", boot, Path(tmp)))
        yield Stack(f"http://127.0.0.1:{listen}/v1/completions", sims, metrics_url)


async def _one(session: aiohttp.ClientSession, url: str, prompt: str) -> Outcome:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = math.nan
    usage: dict[str, object] = {}
    try:
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                await resp.read()
                return Outcome(math.nan)
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                if math.isnan(first):
                    first = (time.perf_counter() - start) * 1000
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return Outcome(math.nan)
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    prompt_tokens = usage.get("prompt_tokens", 0)
    return Outcome(first, int(prompt_tokens or 0), int(cached or 0))  # type: ignore[call-overload]


async def _drop_cache(session: aiohttp.ClientSession, sim_url: str) -> None:
    """Sleep level 1 discards the KV cache (AllBlocksCleared); wake at once, since a
    sleeping simulator holds its requests."""
    async with session.post(f"{sim_url}/sleep?level=1") as resp:
        resp.raise_for_status()
    async with session.post(f"{sim_url}/wake_up") as resp:
        resp.raise_for_status()


async def drive(
    url: str,
    requests: Sequence[Request],
    starts: Sequence[float],
    drops: dict[int, str] | None = None,
) -> list[Outcome]:
    """Send request i at `starts[i]` seconds whether or not earlier ones are answered;
    sending request i first drops the cache of simulator `drops[i]` (a base URL)."""
    outcomes: list[Outcome] = [Outcome(math.nan)] * len(requests)
    timeout = aiohttp.ClientTimeout(total=120)

    async def one(session: aiohttp.ClientSession, i: int, prompt: str) -> None:
        outcomes[i] = await _one(session, url, prompt)

    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)  # open-loop: no client-side cap
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = loop.time()
        tasks = []
        for i, (req, start) in enumerate(zip(requests, starts, strict=True)):
            await asyncio.sleep(max(0.0, begin + start - loop.time()))
            if drops and i in drops:
                await _drop_cache(session, drops[i])
            tasks.append(asyncio.create_task(one(session, i, req.prompt)))
        await asyncio.gather(*tasks)
    return outcomes


def run_config(
    label: str, requests: Sequence[Request], rate: float, drop: bool = False
) -> ConfigRun:
    """One configuration over fresh simulators at `rate` requests per second (`drop`:
    drop each one's cache midway); the counters are read before they stop."""
    with stack(label) as st:
        drops = (
            {i: st.sims[sim].base_url for i, sim in drop_points(len(requests)).items()}
            if drop
            else None
        )
        begin = time.monotonic()
        starts = arrivals(len(requests), rate)
        outcomes = uvloop.run(drive(st.url, requests, starts, drops))
        seconds = time.monotonic() - begin
        per_sim = tuple(
            int(_scrape(f"{s.base_url}/metrics", "vllm:request_success_total")) for s in st.sims
        )
        indexed = int(_scrape(st.metrics_url, "pyllmd:epp_kv_events_total", outcome="indexed"))
    run = ConfigRun(label, tuple(outcomes), seconds, per_sim, indexed)
    print(
        f"  {label}: TTFT p50 {run.ttft(0.5):.1f} p90 {run.ttft(0.9):.1f} mean "
        f"{run.ttft_mean:.1f} ms, hit rate "
        f"{run.hit_rate:.1%}, {run.errors} errors, split {per_sim}, {seconds:.1f} s"
    )
    return run


def run(
    requests: int = REQUESTS, name: str = "ideal", rates: Sequence[float] = RATES
) -> list[Result]:
    """Figure (h), one workload ("ideal" or "divergent"): every configuration over the
    same request sequence, at each offered rate."""
    divergent = name == "divergent"
    sequence = workload(requests=requests, letters=LONG_LETTERS if divergent else IDEAL_LETTERS)
    out: list[Result] = []
    for rate in rates:
        print(f" workload {name}, {rate:g} requests per second")
        runs = [run_config(label, sequence, rate, divergent) for label in LABELS]
        out.append((setup(sequence, rate), runs))
    return out
