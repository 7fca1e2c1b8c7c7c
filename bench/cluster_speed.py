"""Figure (j): cluster-scale speed of `pyllmd simulate`, in this process (issue 15's benchmark).

The stack: a fixed variant of 100 Ready pods and an autoscaled variant (a VariantAutoscaling
and the saturation ConfigMap, starting at one pod), both Llama-3.1-8B-Instruct on H100 with
`--latency-calculator batch`, behind `gateway: envoy-epp` with no `eppConfig`: the endpoint
picker's default EndpointPickerConfig (the GIE chart's queue, KV-cache-utilization and
prefix-cache scorers, weights 2/2/3, max-score picker) with the flow-control gate. The
autoscaler's saturation engine runs every 60 s, Prometheus scrapes every 15 s, the picker
refreshes its endpoint metrics every 50 ms, all on the virtual clock.

The workload: inference-perf's shared-prefix data at 100 requests/s (poisson) for 3600 s,
360,000 requests. Chat traffic behind a gateway shares system prompts, and the default
profile's heaviest scorer is the prefix-cache one: with unique random prompts it would find
nothing and the run would measure a picker whose main signal is idle. 100 system prompts of
800 tokens, 20 users each, a question of ~200 tokens (lognormal) and ~200 output tokens
(lognormal): about 1,000 tokens in and 200 out, an 8B chat deployment's typical shape.

Measured: wall and CPU seconds of `simulate()` (the replay, the reports, the dashboards'
timeline and plots), simulated requests per wall-second; and the replay alone (the router,
the engines, the scrapes and the autoscaler, without reading or writing files). The baseline
is the same profile scheduling the same prompts alone: one `ProfileRunner` cycle and the
PreRequest plugins per request, over the 101 endpoints with fixed metrics, the prompt text
given (as the live picker receives it), no engine. Their ratio says what the cluster around
the picker costs. `--cluster-quick` runs one simulated minute (6,000 requests).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.host import last_run
from pyllmd.epp.config.gateway import DEFAULT_EPP_CONFIG
from pyllmd.epp.scheduling.interfaces import CycleState
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics, LLMRequest
from pyllmd.simulate.routing import EppRouter, token_text
from pyllmd.simulate.run import SimulateConfig, simulate

START = "<!-- bench:cluster:start -->"
END = "<!-- bench:cluster:end -->"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FIXED_PODS = 100
RATE = 100.0
FULL_S = 3600.0
QUICK_S = 60.0  # --cluster-quick: one simulated minute (6,000 requests)
TARGET_RPS = 1_000.0
AIM_RPS = 2_000.0
BLIS_RPS = 1_840.0  # BLIS (Go), one instance, no routing or autoscaling: issue 15's figure
ARGS = (
    f"[--model, {MODEL}, --accelerator, H100, --latency-calculator, batch, "
    '--max-num-seqs, "256", --max-num-batched-tokens, "8192", --max-model-len, "8192"]'
)
STACK = f"""\
namespace: bench
gateway: envoy-epp
variants:
  - deployment:
      name: fixed-h100
      replicas: {FIXED_PODS}
      args: {ARGS}
  - variantAutoscaling:
      apiVersion: llmd.ai/v1alpha1
      kind: VariantAutoscaling
      metadata:
        name: auto-h100
        labels:
          inference.optimization/acceleratorName: H100
      spec:
        scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: auto-h100}}
        modelID: {MODEL}
        variantCost: "10.0"
    deployment:
      replicas: 1
      args: {ARGS}
configMaps:
  - metadata: {{name: wva-saturation-scaling-config, namespace: workload-variant-autoscaler-system}}
    data:
      default: |
        kvCacheThreshold: 0.80
        queueLengthThreshold: 5
        kvSpareTrigger: 0.1
        queueSpareTrigger: 3
"""


def workload(duration: float) -> str:
    return f"""\
api: {{type: completion, streaming: true}}
data:
  type: shared_prefix
  shared_prefix:
    num_unique_system_prompts: 100
    num_users_per_system_prompt: 20
    system_prompt_len: 800
    question_distribution: {{type: lognormal, mean: 200, std_dev: 80, min: 20, max: 1000}}
    output_distribution: {{type: lognormal, mean: 200, std_dev: 100, min: 10, max: 1000}}
server: {{type: vllm, model_name: {MODEL}, ignore_eos: true}}
load:
  type: poisson
  num_workers: 8
  worker_max_concurrency: 500
  stages:
    - rate: {RATE:g}
      duration: {duration:g}
"""


@dataclass(frozen=True)
class ClusterTiming:
    """One run of the benchmark: the simulation and the picker-alone baseline."""

    virtual_s: float  # the workload's duration
    requests: int  # sent
    succeeded: int
    failed: int
    pods_max: int  # pods ever created
    scale_events: int
    wall_s: float  # simulate(): replay, reports, timeline
    cpu_s: float
    replay_s: float  # of which the replay (router, engines, scrapes, autoscaler)
    baseline_s: float  # the profile alone over the same prompts
    endpoints: int  # in the baseline

    @property
    def rps(self) -> float:
        """Simulated requests per wall-second of the whole `simulate()` call."""
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def replay_rps(self) -> float:
        return self.requests / self.replay_s if self.replay_s > 0 else 0.0

    @property
    def baseline_rps(self) -> float:
        return self.requests / self.baseline_s if self.baseline_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        """The picker alone ÷ the whole simulation, in requests per wall-second."""
        return self.baseline_rps / self.rps if self.rps > 0 else float("inf")


def _config(tmp: Path, duration: float) -> SimulateConfig:
    stack, wl = tmp / "stack.yaml", tmp / "workload.yaml"
    stack.write_text(STACK, encoding="utf-8")
    wl.write_text(workload(duration), encoding="utf-8")
    return SimulateConfig(stack=str(stack), workload=str(wl), output=str(tmp / "out"))


def _timed_replay() -> tuple[Callable[[], float], Callable[[], None]]:
    """Wraps the replay `simulate()` calls, to time it; (seconds so far, undo)."""
    from pyllmd.simulate import run as run_module

    original = getattr(run_module, "replay")  # noqa: B009 (a module attribute, replaced)
    spent = [0.0]

    def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    setattr(run_module, "replay", timed)  # noqa: B010

    def undo() -> None:
        setattr(run_module, "replay", original)  # noqa: B010

    return (lambda: spent[0]), undo


def endpoints(n: int, namespace: str = "bench") -> list[Endpoint]:
    """`n` endpoints as the picker sees idle H100 pods (block size 16)."""
    metrics = EndpointMetrics(
        waiting_queue_size=0,
        running_requests_size=2,
        kv_cache_usage_percent=0.05,
        cache_block_size=16,
        cache_num_gpu_blocks=30_000,
        update_time=0.0,
    )
    return [
        Endpoint(
            name=f"pod-{i}-rank-0",
            namespace=namespace,
            pod_name=f"pod-{i}",
            address=f"10.0.{i // 250}.{i % 250 + 1}",
            port=8000,
            metrics=metrics,
        )
        for i in range(n)
    ]


def baseline(prompts: Sequence[Sequence[int]], n_endpoints: int) -> float:
    """Seconds the default profile takes to schedule `prompts` alone (module docstring)."""
    router = EppRouter(DEFAULT_EPP_CONFIG, "bench", 0)
    runner, pre = router.runner, router.pre_request
    eps = endpoints(n_endpoints)
    texts = [token_text(p) for p in prompts]  # the live picker receives the text
    rng = random.Random(0)
    started = time.perf_counter()
    for i, text in enumerate(texts):
        request = LLMRequest(
            request_id=f"req-{i}",
            incoming_model=MODEL,
            target_model=MODEL,
            api="completions",
            body={"model": MODEL, "prompt": text},
        )
        state = CycleState(rng=rng, now=i / RATE)
        result = runner.schedule_in(state, request, eps)
        for plugin in pre:
            plugin.pre_request(state, request, result)
    return time.perf_counter() - started


def run(duration: float = FULL_S, log: Callable[[str], None] = print) -> ClusterTiming:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        config = _config(Path(tmp), duration)
        replay_s, undo = _timed_replay()
        try:
            started, cpu = time.perf_counter(), time.process_time()
            outcome, _ = simulate(config)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            undo()
        events = (Path(tmp) / "out" / "scale_events.csv").read_text(encoding="utf-8")
    sends = outcome.sends
    ok = sum(1 for s in sends if s.end is not None and s.error is None)
    failed = sum(1 for s in sends if s.error is not None)
    log(
        f"  simulate: {len(sends):,} requests ({ok:,} ok, {failed:,} failed) in "
        f"{wall:.1f} s wall ({cpu:.1f} s CPU), replay {replay_s():.1f} s: "
        f"{len(sends) / wall:,.0f} simulated requests per wall-second"
    )
    n_endpoints = FIXED_PODS + 1
    base = baseline([s.tokens for s in sends], n_endpoints)
    log(
        f"  baseline: the default profile alone over {n_endpoints} endpoints: {base:.1f} s, "
        f"{len(sends) / base:,.0f} requests per wall-second"
    )
    return ClusterTiming(
        virtual_s=duration,
        requests=len(sends),
        succeeded=ok,
        failed=failed,
        pods_max=len(outcome.steps),
        scale_events=max(0, events.count("\n") - 1),
        wall_s=wall,
        cpu_s=cpu,
        replay_s=replay_s(),
        baseline_s=base,
        endpoints=n_endpoints,
    )


def profile(duration: float = 60.0, top: int = 30) -> str:
    """cProfile of `simulate()` over `duration` simulated seconds, by own time."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        config = _config(Path(tmp), duration)
        prof = cProfile.Profile()
        prof.enable()
        simulate(config)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def render(t: ClusterTiming, now: datetime | None = None) -> str:
    met = "yes" if t.rps >= TARGET_RPS else "no"
    mode = "" if t.virtual_s == FULL_S else f" (shortened: {t.virtual_s:g} simulated s)"
    lines = [
        START,
        last_run(now),
        "",
        "| figure | measured | same-run baseline | ratio | aim | met |",
        "|---|---|---|---|---|---|",
        f"| (j) `pyllmd simulate` of {t.virtual_s:,.0f} s at {RATE:g} requests/s{mode}, "
        f"{FIXED_PODS} fixed pods + an autoscaled variant, default EPP profile: simulated "
        f"requests per wall-second | {t.rps:,.0f} | {t.baseline_rps:,.0f} (the profile alone "
        f"over {t.endpoints} endpoints) | {t.ratio:.1f}× | ≥ {TARGET_RPS:,.0f} (aim "
        f"{AIM_RPS:,.0f}; BLIS ~{BLIS_RPS:,.0f}) | {met} |",
        "",
        "| run | value |",
        "|---|---|",
        f"| virtual time | {t.virtual_s:,.0f} s |",
        f"| requests sent / succeeded / failed | {t.requests:,} / {t.succeeded:,} / {t.failed:,} |",
        f"| pods ever created / scale events | {t.pods_max} / {t.scale_events} |",
        f"| `simulate()` wall s (CPU s) | {t.wall_s:.1f} ({t.cpu_s:.1f}) |",
        f"| of which the replay: wall s, requests per wall-second | {t.replay_s:.1f}, "
        f"{t.replay_rps:,.0f} |",
        f"| the profile alone: wall s | {t.baseline_s:.1f} |",
        END,
    ]
    return "\n".join(lines) + "\n"
