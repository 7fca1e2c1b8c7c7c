"""The experiments of docs/developer-guide/experiments.md, each one command.

    python tools/experiments.py autoscaling|routing [--quick] [--output DIR] [--write-docs]

`autoscaling`: a compressed day of traffic (`pyllmd.simulate.ramp.daily_ramp`) against one
variant of Llama-3.1-8B on H100, scaled (a) by the workload variant autoscaler's saturation
analyzer, acting directly, and (b) by an HPA-style rule, an HPA whose External metric is the
running requests per pod with a target value. The HPA's target is swept; the chosen one is the
largest that attains the SLO at least as often as the saturation analyzer does, and the two
are compared on replica-seconds. `--quick` runs a shortened version (the test's); without it,
`--write-docs` rewrites the generated section of experiments.md and its plot.

`routing`: routing at cluster scale (16 pods): the precise and approximate prefix scorers,
load-only and random, each one EndpointPickerConfig replayed through the picker's code; then
figure (h)'s divergent workload of `make bench` (4 pods; tokens wider than the approximate
scorer's four characters; each pod's prefix cache dropped once midway), whose order by TTFT
p90 and hit rate is printed beside live figure (h)'s. `--write-docs` rewrites both sections.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pyllmd.simulate.ramp import daily_ramp
from pyllmd.simulate.run import load_options, simulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `bench` is imported from the repository, as pytest does
from bench import epp_kv_wins_report as kv_wins_report  # noqa: E402  (figure (h)'s tie rule)

DOC = ROOT / "docs" / "developer-guide" / "experiments.md"
IMG = ROOT / "docs" / "developer-guide" / "experiments"
START = "<!-- experiments:autoscaling:start -->"
END = "<!-- experiments:autoscaling:end -->"
ROUTING_START = "<!-- experiments:routing:start -->"
ROUTING_END = "<!-- experiments:routing:end -->"
DIVERGENT_START = "<!-- experiments:divergent:start -->"
DIVERGENT_END = "<!-- experiments:divergent:end -->"
DIVERGENT_TITLE = "Figure (h)'s divergent workload, replayed on 4 pods:"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
NS = "llm-d-sim"
ARGS = ["--model", MODEL, "--accelerator", "H100", "--max-num-seqs", "32",
        "--max-model-len", "4096"]  # fmt: skip
SATURATION = (
    "kvCacheThreshold: 0.80\nqueueLengthThreshold: 5\nkvSpareTrigger: 0.1\nqueueSpareTrigger: 3\n"
)


@dataclass(frozen=True)
class Setup:
    stages: int
    stage_s: float
    low: float
    high: float
    targets: tuple[int, ...]
    slo_ttft: str = "1s"
    slo_itl: str = "50ms"


FULL = Setup(24, 300.0, 2.0, 40.0, (16, 24, 28, 30, 32))
QUICK = Setup(4, 45.0, 1.0, 12.0, (8, 24))


def workload(setup: Setup) -> dict[str, Any]:
    return {
        "api": {"type": "completion", "streaming": True},
        "data": {
            "type": "random",
            "input_distribution": {"min": 100, "max": 3000, "mean": 1000, "std_dev": 300},
            "output_distribution": {"min": 20, "max": 600, "mean": 250, "std_dev": 100},
        },
        "server": {"type": "vllm", "model_name": MODEL, "ignore_eos": True},
        "load": {
            "type": "poisson",
            "interval": 0,
            "stages": daily_ramp(setup.stages, setup.stage_s, setup.low, setup.high),
        },
    }


def _deployment() -> dict[str, Any]:
    return {"name": "h100", "replicas": 1, "labels": {"app": "sim"}, "args": list(ARGS)}


def saturation_stack() -> dict[str, Any]:
    """The variant under the workload variant autoscaler (saturation analyzer, direct)."""
    va = {
        "apiVersion": "llmd.ai/v1alpha1",
        "kind": "VariantAutoscaling",
        "metadata": {"name": "h100", "labels": {"inference.optimization/acceleratorName": "H100"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "h100"},
            "modelID": MODEL,
            "variantCost": "1.0",
        },
    }
    cm = {
        "metadata": {
            "name": "wva-saturation-scaling-config",
            "namespace": "workload-variant-autoscaler-system",
        },
        "data": {"default": SATURATION},
    }
    return {
        "namespace": NS,
        "variants": [{"variantAutoscaling": va, "deployment": _deployment()}],
        "configMaps": [cm],
    }


def hpa_stack(target: int) -> dict[str, Any]:
    """The same variant under an HPA on running requests per pod (no autoscaler)."""
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h100"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "h100"},
            "minReplicas": 1,
            "maxReplicas": 40,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "vllm:num_requests_running",
                            "selector": {"matchLabels": {"namespace": NS, "model_name": MODEL}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(target)},
                    },
                }
            ],
        },
    }
    return {"namespace": NS, "variants": [{"deployment": _deployment(), "hpa": hpa}]}


@dataclass(frozen=True)
class Result:
    policy: str
    target: int | None
    attainment: float
    ttft_p90: float
    replica_seconds: float
    requests: int
    events: list[tuple[float, int]]


def run(out: Path, name: str, stack: dict[str, Any], wl: dict[str, Any], setup: Setup,
        target: int | None = None) -> Result:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    s, w = out / f"{name}-stack.yaml", out / "workload.yaml"
    s.write_text(yaml.safe_dump(stack, sort_keys=False), encoding="utf-8")
    w.write_text(yaml.safe_dump(wl, sort_keys=False), encoding="utf-8")
    config = load_options(
        ["--stack", str(s), "--workload", str(w), "--output", str(out / name),
         "--interval", "30s", "--slo-ttft", setup.slo_ttft, "--slo-itl", setup.slo_itl]
    )  # fmt: skip
    simulate(config)
    slo = json.loads((out / name / "slo_and_cost.json").read_text(encoding="utf-8"))
    summary = json.loads(
        (out / name / "summary_lifecycle_metrics.json").read_text(encoding="utf-8")
    )
    with (out / name / "scale_events.csv").open(newline="", encoding="utf-8") as f:
        events = [(float(r["time_s"]), int(r["to_replicas"])) for r in csv.DictReader(f)]
    return Result(
        "saturation analyzer" if target is None else "HPA on running requests",
        target,
        slo["summary"]["attainment"],
        summary["successes"]["latency"]["time_to_first_token"]["p90"],
        slo["cost"]["variants"]["h100"]["replica_seconds"],
        slo["summary"]["requests"],
        events,
    )


def autoscaling(out: Path, setup: Setup) -> tuple[Result, list[Result], Result | None]:
    """The saturation analyzer's run, the HPA sweep, and the HPA target chosen."""
    wl = workload(setup)
    base = run(out, "saturation", saturation_stack(), wl, setup)
    sweep = [run(out, f"hpa-{t}", hpa_stack(t), wl, setup, t) for t in setup.targets]
    meeting = [r for r in sweep if r.attainment >= base.attainment]
    chosen = max(meeting, key=lambda r: r.target or 0) if meeting else None
    return base, sweep, chosen


def table(base: Result, sweep: Sequence[Result], chosen: Result | None) -> str:
    lines = [
        "| policy | target (running requests per pod) | SLO attainment | TTFT p90 (s) "
        "| replica-seconds | peak replicas |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in [base, *sweep]:
        mark = " (chosen)" if chosen is not None and r is chosen else ""
        peak = max([1, *(n for _, n in r.events)])
        lines.append(
            f"| {r.policy}{mark} | {r.target if r.target is not None else '-'} "
            f"| {r.attainment:.3f} | {r.ttft_p90:.3f} | {r.replica_seconds:,.0f} | {peak} |"
        )
    return "\n".join(lines)


def plot(path: Path, setup: Setup, base: Result, chosen: Result | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    end = setup.stages * setup.stage_s
    for r in [base, *([chosen] if chosen is not None else [])]:
        xs, ys, n = [0.0], [1], 1
        for t, to in r.events:
            xs += [t, t]
            ys += [n, to]
            n = to
        xs.append(end)
        ys.append(n)
        label = r.policy + (f" (target {r.target})" if r.target is not None else "")
        ax.plot([x / 60 for x in xs], ys, label=label)
    rates = daily_ramp(setup.stages, setup.stage_s, setup.low, setup.high)
    ax2 = ax.twinx()
    ax2.step([k * setup.stage_s / 60 for k in range(len(rates))], [s["rate"] for s in rates],
             where="post", color="grey", alpha=0.4, label="request rate")  # fmt: skip
    ax.set_xlabel("virtual time (min)")
    ax.set_ylabel("replicas")
    ax2.set_ylabel("requests/s")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(setup: Setup, base: Result, sweep: Sequence[Result], chosen: Result | None) -> str:
    verdict = "no HPA target in the sweep attains the SLO as often as the saturation analyzer"
    if chosen is not None:
        ratio = chosen.replica_seconds / base.replica_seconds
        verdict = (
            f"the largest HPA target attaining the SLO at least as often ({base.attainment:.3f}) "
            f"is {chosen.target} running requests per pod; it uses {ratio:.2f}× the "
            "saturation analyzer's replica-seconds"
        )
    return (
        f"Setup: {setup.stages} stages of {setup.stage_s:g} s, {setup.low:g} to {setup.high:g} "
        f"requests/s; SLO TTFT ≤ {setup.slo_ttft}, mean ITL ≤ {setup.slo_itl}; "
        f"{base.requests:,} requests per run.\n\n{table(base, sweep, chosen)}\n\n"
        f"Result: {verdict}.\n\n![replicas over the day](experiments/autoscaling-replicas.png)\n"
    )


# ---- routing at cluster scale --------------------------------------------------------------
EPP_CONFIGS = {
    "precise": (
        "precise-prefix-cache-scorer",
        "  parameters:\n    indexerConfig:\n      tokenizersPoolConfig: {modelName: "
        + MODEL
        + "}\n    kvEventsConfig: {discoverPods: false}\n",
    ),
    "approximate": ("prefix-cache-scorer", ""),
}


def epp_config(name: str) -> str:
    """The GIE default weights (prefix ×3, queue ×2, KV utilization ×2), with the precise or
    approximate prefix scorer; load-only keeps the two load scorers; random a random picker."""
    if name == "random":
        return (
            "plugins:\n- type: random-picker\nschedulingProfiles:\n- name: default\n"
            "  plugins:\n  - {pluginRef: random-picker}\n"
        )
    plugins = ["- type: queue-scorer", "- type: kv-cache-utilization-scorer",
               "- type: max-score-picker"]  # fmt: skip
    refs = ["  - {pluginRef: queue-scorer, weight: 2}",
            "  - {pluginRef: kv-cache-utilization-scorer, weight: 2}",
            "  - {pluginRef: max-score-picker}"]  # fmt: skip
    if name in EPP_CONFIGS:
        kind, params = EPP_CONFIGS[name]
        plugins.insert(0, f"- type: {kind}\n{params}".rstrip("\n"))
        refs.insert(0, f"  - {{pluginRef: {kind}, weight: 3}}")
    return (
        "plugins:\n" + "\n".join(plugins) + "\nschedulingProfiles:\n- name: default\n"
        "  plugins:\n" + "\n".join(refs) + "\n"
    )


@dataclass(frozen=True)
class RoutingSetup:
    pods: int
    tenants: int
    prompt: int
    kv_blocks: int
    rate: float
    duration: float


ROUTING_FULL = RoutingSetup(16, 96, 4096, 2000, 150.0, 60.0)
ROUTING_QUICK = RoutingSetup(16, 48, 2048, 800, 80.0, 8.0)
POLICIES = ("precise", "approximate", "load-only", "random")


def routing_stack(setup: RoutingSetup, policy: str) -> dict[str, Any]:
    args = [*ARGS[:5], "64", "--max-model-len", "8192", "--kv-cache-size", str(setup.kv_blocks)]
    return {
        "namespace": NS,
        "gateway": "envoy-epp",
        "eppConfig": epp_config(policy),
        "variants": [{"deployment": {"name": "llama", "replicas": setup.pods, "args": args}}],
    }


def routing_workload(setup: RoutingSetup) -> dict[str, Any]:
    """The "KV-cache wins" shape: many tenants, each with a long system prompt, more of them
    than one pod's cache holds; each request a tenant's prompt and a short question."""
    load = {"type": "poisson", "stages": [{"rate": setup.rate, "duration": setup.duration}]}
    return tenants_workload(setup.tenants, 4, setup.prompt, 64, 32, load)


def tenants_workload(
    tenants: int, users: int, system: int, question: int, output: int, load: dict[str, Any]
) -> dict[str, Any]:
    """inference-perf's shared-prefix data: `tenants` system prompts of `system` tokens,
    `users` questions of `question` tokens each, `output` tokens out; streamed completions."""
    return {
        "api": {"type": "completion", "streaming": True},
        "data": {
            "type": "shared_prefix",
            "shared_prefix": {
                "num_unique_system_prompts": tenants,
                "num_users_per_system_prompt": users,
                "system_prompt_len": system,
                "question_len": question,
                "output_len": output,
            },
        },
        "server": {"type": "vllm", "model_name": MODEL, "ignore_eos": True},
        "load": load,
    }


@dataclass(frozen=True)
class RoutingResult:
    policy: str
    ttft_p50: float
    ttft_p90: float
    hit_rate: float
    requests: int


def _policy_run(
    out: Path,
    policy: str,
    stack: dict[str, Any],
    workload_path: Path,
    token_chars: int = 4,
    cache_drops: Sequence[tuple[float, str]] = (),
    plots: bool = True,
) -> RoutingResult:
    """One routing policy's replay: TTFT p50 and p90, and the prefix-cache hit rate."""
    s = out / f"{policy}-stack.yaml"
    s.write_text(yaml.safe_dump(stack, sort_keys=False), "utf-8")
    config = load_options(["--stack", str(s), "--workload", str(workload_path), "--output",
                           str(out / policy)])  # fmt: skip
    simulate(config, token_chars=token_chars, cache_drops=cache_drops, plots=plots)
    summary = json.loads((out / policy / "summary_lifecycle_metrics.json").read_text("utf-8"))
    with (out / policy / "per_request.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cached = sum(int(r["cached_tokens"]) for r in rows)
    prompt = sum(int(r["prompt_len"]) for r in rows)
    ttft = summary["successes"]["latency"]["time_to_first_token"]
    return RoutingResult(policy, ttft["median"], ttft["p90"], cached / prompt, len(rows))


def routing(out: Path, setup: RoutingSetup) -> list[RoutingResult]:
    out.mkdir(parents=True, exist_ok=True)
    w = out / "workload.yaml"
    w.write_text(yaml.safe_dump(routing_workload(setup), sort_keys=False), encoding="utf-8")
    return [_policy_run(out, p, routing_stack(setup, p), w) for p in POLICIES]


def routing_report(setup: RoutingSetup, results: Sequence[RoutingResult]) -> str:
    by = {r.policy: r for r in results}
    aware = max(by["precise"].ttft_p90, by["approximate"].ttft_p90)
    blind = min(by["load-only"].ttft_p90, by["random"].ttft_p90)
    held = aware < blind and min(by["precise"].hit_rate, by["approximate"].hit_rate) > max(
        by["load-only"].hit_rate, by["random"].hit_rate
    )
    lines = [
        "| routing | TTFT p50 (s) | TTFT p90 (s) | prefix-cache hit rate |",
        "|---|---:|---:|---:|",
        *(
            f"| {r.policy} | {r.ttft_p50:.3f} | {r.ttft_p90:.3f} | {100 * r.hit_rate:.1f} % |"
            for r in results
        ),
    ]
    order = sorted(results, key=lambda r: r.ttft_p90)
    return (
        f"Setup: {setup.pods} pods of {setup.kv_blocks} KV blocks (16 tokens each), "
        f"{setup.tenants} tenants with {setup.prompt}-token system prompts, "
        f"{setup.rate:g} requests/s for {setup.duration:g} s ({results[0].requests:,} requests "
        "per policy).\n\n" + "\n".join(lines) + "\n\n"
        f"Cache-aware routing beats load-only and random on TTFT p90 and hit rate: "
        f"{'held' if held else 'did not hold'}. Order by TTFT p90: "
        + " < ".join(r.policy for r in order)
        + ".\n"
    )


# ---- figure (h)'s divergent workload, replayed --------------------------------------------
@dataclass(frozen=True)
class DivergentSetup:
    """Figure (h)'s "divergent" run of `make bench` (bench/epp_kv_wins.py) in virtual time:
    4 pods of 640 KV blocks, 8 sequences each; 24 tenants with 1,024-token system prompts and
    24-token questions, 4 output tokens; prompts rendered with `token_chars` characters per
    token (8-12-letter words and a space live); pod i's prefix cache dropped when the share
    `drops_at[i]` of the run has passed."""

    requests: int
    rates: tuple[float, ...]
    pods: int = 4
    tenants: int = 24
    system: int = 1024
    question: int = 24
    output: int = 4
    kv_blocks: int = 640
    max_num_seqs: int = 8
    batched_tokens: int = 256  # a step's prompt tokens: short steps, as side-by-side prefills
    token_chars: int = 11
    drops_at: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7)


DIVERGENT_FULL = DivergentSetup(960, (60.0, 120.0))
DIVERGENT_QUICK = DivergentSetup(480, (60.0,))
LIVE_PREFILL_S = 0.001  # bench (h)'s --prefill-time-per-token, per request slot
LIVE_ITL_S = 0.005  # its --inter-token-latency
# figure (h) "divergent" as recorded in benchmarks.md: rate -> policy -> (TTFT p90 s, hit rate)
LIVE_DIVERGENT: dict[float, dict[str, tuple[float, float]]] = {
    60.0: {"precise": (0.0425, 0.912), "approximate": (1.0564, 0.619),
           "load-only": (4.0759, 0.382), "random": (4.2448, 0.385)},
    120.0: {"precise": (0.1501, 0.916), "approximate": (3.3023, 0.655),
            "load-only": (11.5461, 0.363), "random": (10.7890, 0.405)},
}  # fmt: skip


def divergent_profile(setup: DivergentSetup) -> dict[str, float]:
    """Batch step-time coefficients for Llama-3.1-8B on H100 that mimic bench (h)'s simulator
    flags: a pod prefills as many tokens per second as its `max_num_seqs` slots at 1 ms per
    token each (the live simulator prefills each request on its own), and a decode step
    takes the live inter-token latency; no other cost."""
    from pyllmd.sim.batch.architecture import get_architecture
    from pyllmd.sim.batch.hardware import BUILTIN

    arch, gpu = get_architecture(MODEL), BUILTIN["H100"]
    per_token = LIVE_PREFILL_S / setup.max_num_seqs
    return {
        "mfu_linear": arch.linear_flops_per_token(1) / (gpu.flops_for(arch.fp8) * per_token),
        "mbu_weights": arch.always_read_bytes(1) / (gpu.hbm_bytes_per_s * LIVE_ITL_S),
        "mfu_attention": 1.0, "mbu_kv": 1.0, "roofline_p": 0.0, "step_s": 0.0, "seq_s": 0.0,
        "layer_s": 0.0, "allreduce_s": 0.0, "first_token_s": 0.0, "last_token_s": 0.0,
    }  # fmt: skip


def divergent_stack(setup: DivergentSetup, policy: str, profile: Path) -> dict[str, Any]:
    args = [*ARGS[:5], str(setup.max_num_seqs), "--max-model-len", "4096", "--block-size", "16",
            "--kv-cache-size", str(setup.kv_blocks), "--latency-profile", str(profile),
            "--max-num-batched-tokens", str(setup.batched_tokens)]  # fmt: skip
    return {
        "namespace": NS,
        "gateway": "envoy-epp",
        "eppConfig": epp_config(policy),
        "variants": [{"deployment": {"name": "llama", "replicas": setup.pods, "args": args}}],
    }


def divergent_workload(setup: DivergentSetup, rate: float) -> dict[str, Any]:
    """Each tenant's prompt with `requests / tenants` questions, in shuffled order, sent at
    Poisson arrivals of `rate` for as long as the requests take, whatever is in flight (as
    bench (h)'s open-loop client)."""
    load = {
        "type": "poisson",
        "stages": [{"rate": rate, "duration": setup.requests / rate}],
        "worker_max_concurrency": 2 * setup.requests,  # open-loop: no in-flight cap
    }
    users = setup.requests // setup.tenants
    return tenants_workload(setup.tenants, users, setup.system, setup.question, setup.output, load)


def divergent(out: Path, setup: DivergentSetup) -> dict[float, list[RoutingResult]]:
    """Every policy over the same requests at each rate, with the wide tokens and the drops."""
    out.mkdir(parents=True, exist_ok=True)
    profile = out / "profile.json"
    profile.write_text(json.dumps(divergent_profile(setup), indent=2) + "\n", encoding="utf-8")
    results: dict[float, list[RoutingResult]] = {}
    for rate in setup.rates:
        at = out / f"rate-{rate:g}"
        at.mkdir(parents=True, exist_ok=True)
        w = at / "workload.yaml"
        w.write_text(yaml.safe_dump(divergent_workload(setup, rate), sort_keys=False), "utf-8")
        duration = setup.requests / rate
        drops = [(share * duration, f"llama-{i}") for i, share in enumerate(setup.drops_at)]
        results[rate] = [
            _policy_run(
                at,
                p,
                divergent_stack(setup, p, profile.resolve()),
                w,
                setup.token_chars,
                drops,
                plots=False,
            )  # fmt: skip
            for p in POLICIES
        ]
    return results


def _ranked(values: dict[str, float], best_high: bool = False) -> list[str]:
    return sorted(values, key=lambda k: -values[k] if best_high else values[k])


def _p90_tie(a: float, b: float) -> bool:
    """Figure (h)'s own tie of two TTFT p90s (seconds): `bench.epp_kv_wins_report.same`."""
    return kv_wins_report.same(1000 * a, 1000 * b)


def _hit_tie(a: float, b: float) -> bool:
    """Figure (h)'s own tie of two hit rates (fractions): closer than `TIE_POINTS`."""
    return abs(100 * (a - b)) < kv_wins_report.TIE_POINTS


def _chain(values: dict[str, float], best_high: bool, tie: Callable[[float, float], bool]) -> str:
    """The policies best first, `≈` between neighbours that tie."""
    order = _ranked(values, best_high)
    text = order[0]
    for before, name in itertools.pairwise(order):
        text += " ≈ " if tie(values[before], values[name]) else " > " if best_high else " < "
        text += name
    return text


def _compare(
    what: str,
    sim: dict[str, float],
    live: dict[str, float],
    best_high: bool,
    tie: Callable[[float, float], bool],
) -> str:
    """Both orders with figure (h)'s ties, and whether they agree: no two policies ordered
    one way here and the other way live (a tie on either side orders nothing)."""

    def sign(values: dict[str, float], a: str, b: str) -> int:
        return 0 if tie(values[a], values[b]) else (1 if values[a] < values[b] else -1)

    inverted = [
        f"{a}/{b}"
        for a, b in itertools.combinations(sim, 2)
        if sign(sim, a, b) * sign(live, a, b) < 0
    ]
    verdict = "yes" if not inverted else f"no ({', '.join(inverted)} the other way)"
    return (
        f"Order by {what}: {_chain(sim, best_high, tie)}; live: {_chain(live, best_high, tie)}; "
        f"same order as live: {verdict}.\n"
    )


def divergent_report(setup: DivergentSetup, results: dict[float, list[RoutingResult]]) -> str:
    drops = ", ".join(f"{100 * s:g}" for s in setup.drops_at)
    text = (
        f"Setup: {setup.pods} pods of {setup.kv_blocks} KV blocks (16 tokens each) and "
        f"{setup.max_num_seqs} sequences, {setup.tenants} tenants with {setup.system}-token "
        f"system prompts and {setup.question}-token questions, {setup.output} output tokens, "
        f"{setup.requests} requests per policy and rate; {setup.token_chars} characters per "
        f"token; pod 1 to {len(setup.drops_at)}'s prefix cache dropped at {drops} % of the "
        "run.\n"
    )
    for rate, rows in results.items():
        live = LIVE_DIVERGENT.get(rate)
        head = "| routing | TTFT p50 (s) | TTFT p90 (s) | prefix-cache hit rate |"
        rule = "|---|---:|---:|---:|"
        if live is not None:
            head += " live TTFT p90 (s) | live hit rate |"
            rule += "---:|---:|"
        lines = [head, rule]
        for r in rows:
            line = f"| {r.policy} | {r.ttft_p50:.3f} | {r.ttft_p90:.3f} "
            line += f"| {100 * r.hit_rate:.1f} % |"
            if live is not None:
                p90, hit = live[r.policy]
                line += f" {p90:.3f} | {100 * hit:.1f} % |"
            lines.append(line)
        text += f"\nAt {rate:g} requests/s:\n\n" + "\n".join(lines) + "\n\n"
        p90s = {r.policy: r.ttft_p90 for r in rows}
        hits = {r.policy: r.hit_rate for r in rows}
        if live is None:
            text += f"Order by TTFT p90: {' < '.join(_ranked(p90s))}. Order by hit rate: "
            text += " > ".join(_ranked(hits, best_high=True)) + ".\n"
            continue
        text += _compare("TTFT p90", p90s, {k: v[0] for k, v in live.items()}, False, _p90_tie)
        live_hits = {k: v[1] for k, v in live.items()}
        text += "\n" + _compare("hit rate", hits, live_hits, True, _hit_tie)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/experiments.py")
    parser.add_argument("experiment", choices=["autoscaling", "routing"])
    parser.add_argument("--quick", action="store_true", help="the shortened version")
    parser.add_argument("--output", type=Path, default=Path("experiments-out"))
    parser.add_argument("--write-docs", action="store_true", help="rewrite experiments.md")
    args = parser.parse_args(argv)
    if args.experiment == "routing":
        rsetup = ROUTING_QUICK if args.quick else ROUTING_FULL
        text = routing_report(rsetup, routing(args.output / "routing", rsetup))
        print(text)
        dsetup = DIVERGENT_QUICK if args.quick else DIVERGENT_FULL
        dtext = divergent_report(dsetup, divergent(args.output / "divergent", dsetup))
        print(DIVERGENT_TITLE + "\n\n" + dtext)
        if args.write_docs:
            _write_section(ROUTING_START, ROUTING_END, text)
            _write_section(DIVERGENT_START, DIVERGENT_END, dtext)
        return 0
    setup = QUICK if args.quick else FULL
    base, sweep, chosen = autoscaling(args.output / "autoscaling", setup)
    text = report(setup, base, sweep, chosen)
    print(text)
    plot(args.output / "autoscaling" / "replicas.png", setup, base, chosen)
    if args.write_docs:
        plot(IMG / "autoscaling-replicas.png", setup, base, chosen)
        _write_section(START, END, text)
    return 0


def _write_section(start: str, end: str, text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{start}\n{text}{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
