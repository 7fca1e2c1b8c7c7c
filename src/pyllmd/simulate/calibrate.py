"""Fit the batch step-time profile to measured vLLM runs (the pure core of `pyllmd calibrate`).

Each run of a calibration CSV (the columns of the shared calibration set's
calibration_runs.csv) is rebuilt as inference-perf sends it and replayed on the simulator's
batch engine (`pyllmd.sim.batch`, built from the run's vLLM settings as `pyllmd simulate`
builds a pod from a stack file's args) in virtual time:

- load: constant-rate stages (`stageN_rate_rps` for `stageN_duration_s`), one request every
  1/rate seconds, stages back to back;
- data: shared-prefix with multi-turn chat: `num_unique_system_prompts` groups of
  `num_users_per_system_prompt` users; request i goes to user i mod users; a prompt is the
  group's system prompt, the user's question and the framing tokens that make up the measured
  `prompt_len_mean`. With reuse "repeat" (the default) a user's rounds send the same prompt
  (the client keeps its session context as the system prompt), so later rounds hit the prefix
  cache up to their last block; "fresh" makes only the system prompt shared;
- output: `output_len` tokens each (ignore_eos: the server generates exactly max_tokens). The
  measured `output_len_mean` (derived from the data's ITL formula when the column is empty) is
  what the client counted in the streamed text, 0.76-1.01 of it depending on the tokenizer: it
  enters only the ITL formula, as in the data;
- the client gives up after `timeout` seconds (the request is aborted: a failure).

Metrics follow inference-perf: TTFT and E2E per request, their means and p90, and the data's
ITL formula (mean E2E - mean TTFT) / (mean output length - 1) over the simulated requests. The
fit (`fit_map`) runs Levenberg-Marquardt on the log of the profile's coefficients (`fit_lm`;
residuals: weighted log ratios of E2E mean, ITL, TTFT mean and E2E p90), starting from the
package's physical prior (`pyllmd.sim.batch.prior`) and drawn toward it, so that the shipped
profile and the hold-out refits are one method and a refit never starts from a profile that
has seen the runs it predicts; then optionally a multiplicative
pattern search (`fit`) that also picks the roofline's form, on replays cut to a number of
seconds per stage (constant-rate stages are stationary after a few seconds). The loss is the
mean over runs of the weighted |relative error|. Overloaded runs (failures > 0) are left out
of the fit and reported apart with their success counts; so are the runs with CPU KV offload
(`cpu_offload` True), which the model does not cover yet.

Nothing here prints or reads a clock for its decisions: progress goes to a `log` callback, and
the replays' wall and CPU times are measurements reported beside the results.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pyllmd.core.errors import ConfigError
from pyllmd.sim.batch.architecture import get_architecture
from pyllmd.sim.batch.hardware import get_accelerator
from pyllmd.sim.batch.prior import PRIOR, prior_profile
from pyllmd.sim.batch.scheduler import BLOCK_SIZE, Engine, Request
from pyllmd.sim.batch.steptime import Profile, StepModel
from pyllmd.simulate.deployment import EngineSpec, build_engine_spec, variant_from_args

METRICS = ("e2e_mean", "ttft_mean", "itl_mean", "e2e_p90")
WEIGHTS = {"e2e_mean": 1.0, "ttft_mean": 0.5, "itl_mean": 1.0, "e2e_p90": 0.5}
# coefficients the fit moves (multiplicatively), with their bounds. No kernel is allowed more
# than 80 % of peak FLOPS: the calibration prompts are mostly prefix-cache hits, so the data
# barely constrains prefill compute, and the fit would otherwise take the upper bound.
FIT_BOUNDS: dict[str, tuple[float, float]] = {
    "mfu_linear": (0.05, 0.8),
    "mbu_weights": (0.2, 1.0),
    "mfu_attention": (0.02, 0.8),
    "mbu_kv": (0.1, 1.0),
    "step_s": (1e-5, 0.05),
    "seq_s": (1e-7, 1e-3),
    "layer_s": (1e-8, 1e-3),
    "allreduce_s": (1e-7, 1e-3),
    "first_token_s": (1e-5, 0.1),
    "last_token_s": (1e-6, 0.1),
    "sampler_passes": (0.01, 2000.0),
}


@dataclass(frozen=True)
class Run:
    """One measured run: its spec and what was measured (milliseconds)."""

    run_id: str
    model: str
    gpu: str
    tp: int
    workload: str
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    gpu_memory_utilization: float
    cpu_offload: bool
    kv_blocks: int | None
    stages: tuple[tuple[float, float], ...]
    system_prompt_len: int
    question_len: int
    output_len: int
    groups: int
    users_per_group: int
    prompt_len_mean: float | None
    output_len_mean: float | None
    measured: dict[str, float]
    n_success: int | None
    n_fail: int | None
    blis: dict[str, float]

    @property
    def overloaded(self) -> bool:
        return bool(self.n_fail)

    @property
    def short(self) -> str:
        return self.run_id.split(":", 1)[-1][:44]


def _f(row: dict[str, str], key: str) -> float | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{key}: not a number: {raw!r}") from None


def _i(row: dict[str, str], key: str) -> int:
    value = _f(row, key)
    if value is None or value != int(value) or value < 0:
        raise ValueError(f"{key}: must be a whole number >= 0, got {row.get(key)!r}")
    return int(value)


REQUIRED_COLUMNS = (
    "run_id", "model", "gpu", "tp", "max_num_seqs", "max_num_batched_tokens", "max_model_len",
    "stage0_rate_rps", "stage0_duration_s", "system_prompt_len", "question_len", "output_len",
    "num_unique_system_prompts", "num_users_per_system_prompt", "ttft_mean_ms", "e2e_mean_ms",
)  # fmt: skip


def load_runs(path: Path, flag: str = "--runs") -> list[Run]:
    """The runs of a calibration CSV; ConfigError (one line naming the file) on bad input."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except OSError as e:
        raise ConfigError(f"{flag} {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{flag} {path}: not a CSV file ({e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{flag} {path}: missing column(s) {', '.join(missing)}")
    if not rows:
        raise ConfigError(f"{flag} {path}: no runs")
    runs = []
    for line, row in enumerate(rows, start=2):
        try:
            runs.append(_run_of(row))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{flag} {path}:{line}: {e}") from None
    return runs


def _run_of(row: dict[str, str]) -> Run:
    stages = []
    for i in range(4):
        rate, dur = _f(row, f"stage{i}_rate_rps"), _f(row, f"stage{i}_duration_s")
        if rate and dur:
            stages.append((rate, dur))
    measured = {
        "ttft_mean": _f(row, "ttft_mean_ms"),
        "ttft_p90": _f(row, "ttft_p90_ms"),
        "e2e_mean": _f(row, "e2e_mean_ms"),
        "e2e_p90": _f(row, "e2e_p90_ms"),
        "itl_mean": _f(row, "itl_mean_ms"),
    }
    blis = {
        "ttft_mean": _f(row, "blis_ttft_mean_ms"),
        "e2e_mean": _f(row, "blis_e2e_mean_ms"),
        "itl_mean": _f(row, "blis_itl_mean_ms"),
        "e2e_p90": _f(row, "blis_e2e_p90_ms"),
    }
    out_mean = _f(row, "output_len_mean")
    if out_mean is None and {"e2e_mean", "ttft_mean", "itl_mean"} <= measured.keys():
        # the data's ITL is (E2E - TTFT) / (output_len_mean - 1): recover the mean from it
        e2e, ttft, itl = measured["e2e_mean"], measured["ttft_mean"], measured["itl_mean"]
        if e2e is not None and ttft is not None and itl:
            out_mean = (e2e - ttft) / itl + 1.0
    blocks = _f(row, "total_gpu_kv_blocks")
    succ, fail = _f(row, "n_success"), _f(row, "n_fail")
    if not stages:
        raise ValueError("stage0_rate_rps and stage0_duration_s must be > 0")
    return Run(
        run_id=row["run_id"],
        model=row["model"],
        gpu=row["gpu"],
        tp=_i(row, "tp"),
        workload=row.get("workload") or "",
        max_num_seqs=_i(row, "max_num_seqs"),
        max_num_batched_tokens=_i(row, "max_num_batched_tokens"),
        max_model_len=_i(row, "max_model_len"),
        gpu_memory_utilization=_f(row, "gpu_memory_utilization") or 0.9,
        cpu_offload=(row.get("cpu_offload") or "").strip().lower() == "true",
        kv_blocks=int(blocks) if blocks else None,
        stages=tuple(stages),
        system_prompt_len=_i(row, "system_prompt_len"),
        question_len=_i(row, "question_len"),
        output_len=_i(row, "output_len"),
        groups=_i(row, "num_unique_system_prompts"),
        users_per_group=_i(row, "num_users_per_system_prompt"),
        prompt_len_mean=_f(row, "prompt_len_mean"),
        output_len_mean=out_mean,
        measured={k: v for k, v in measured.items() if v is not None},
        n_success=int(succ) if succ is not None else None,
        n_fail=int(fail) if fail is not None else None,
        blis={k: v for k, v in blis.items() if v is not None},
    )


# ---- requests ---------------------------------------------------------------------------


def _chain(parent: int, keys: Iterable[object]) -> list[int]:
    out = []
    for k in keys:
        parent = hash((parent, k))
        out.append(parent)
    return out


@dataclass
class Sent:
    """A request as the client sent it."""

    stage: int
    send: float
    request: Request


def build_requests(
    run: Run,
    profile: Profile,
    seconds_per_stage: float | None = None,
    reuse: str = "repeat",
    timeout: float | None = 300.0,
    seed: int = 0,
) -> list[Sent]:
    """The run's requests, in send order (see the module docstring)."""
    rnd = random.Random(seed)
    users = run.groups * run.users_per_group
    total = round(run.prompt_len_mean) if run.prompt_len_mean else 0
    total = max(total, run.system_prompt_len + run.question_len)
    user_ids = list(range(users))
    rnd.shuffle(user_ids)  # inference-perf shuffles its user sessions
    sys_tokens = run.system_prompt_len
    sys_blocks = sys_tokens // BLOCK_SIZE
    group_hashes = [
        _chain(0, ((g, "sys", b) for b in range(sys_blocks))) for g in range(run.groups)
    ]
    n_blocks = total // BLOCK_SIZE
    # ignore_eos: the server generates exactly max_tokens = output_len tokens; the measured
    # output_len_mean is what the client counted in the streamed text (see replay())
    out_tokens = run.output_len

    def prompt_hashes(user: int, unique: object) -> tuple[int, ...]:
        g = user // run.users_per_group
        head = group_hashes[g]
        tail_keys = ((unique, b) for b in range(sys_blocks, n_blocks))
        return tuple(head + _chain(head[-1] if head else g, tail_keys))

    per_user = [prompt_hashes(u, ("user", u)) for u in range(users)]
    out: list[Sent] = []
    t0 = 0.0
    i = 0
    for s, (rate, dur) in enumerate(run.stages):
        length = min(dur, seconds_per_stage) if seconds_per_stage else dur
        n = int(round(rate * length))
        for k in range(n):
            send = t0 + k / rate
            user = user_ids[i % users]
            hashes = per_user[user] if reuse == "repeat" else prompt_hashes(user, ("req", i))
            req = Request(i, send + profile.first_token_s, total, out_tokens, hashes)
            if timeout is not None:
                req.deadline = send + timeout
            out.append(Sent(s, send, req))
            i += 1
        t0 += length
    return out


# ---- replay and metrics -----------------------------------------------------------------


OFFLOAD_GIB = 8


def run_args(run: Run) -> list[str]:
    """The run's vLLM settings as the simulator's command line (as a stack file's args)."""
    args = [
        "--model", run.model,
        "--accelerator", run.gpu,
        "--tensor-parallel-size", str(run.tp),
        "--max-num-seqs", str(run.max_num_seqs),
        "--max-num-batched-tokens", str(run.max_num_batched_tokens),
        "--max-model-len", str(run.max_model_len),
        "--gpu-memory-utilization", str(run.gpu_memory_utilization),
    ]  # fmt: skip
    if run.kv_blocks:
        args += ["--kv-cache-size", str(run.kv_blocks)]
    if run.cpu_offload:  # 8 GiB: what the published cpu_kv_blocks of these runs amount to
        args += ["--kv-offloading-size", str(OFFLOAD_GIB)]
    return args


def engine_spec(run: Run, profile: Profile) -> EngineSpec:
    """The run's engine, built as `pyllmd simulate` builds a pod from its args."""
    return build_engine_spec(variant_from_args(run.short, run_args(run)), profile)


@dataclass
class Replay:
    """What inference-perf would report for a replay, in milliseconds, plus counts."""

    values: dict[str, float]
    n_success: int
    n_fail: int
    steps: int
    preemptions: int
    wall_s: float
    cpu_s: float
    stage_values: list[dict[str, float]] = field(default_factory=list)


def _weighted_quantile(pairs: list[tuple[float, float]], q: float) -> float:
    pairs.sort()
    total = sum(w for _, w in pairs)
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= q * total:
            return v
    return pairs[-1][0]


def summarize(samples: Sequence[tuple[float, float, float]], out_len: float) -> dict[str, float]:
    """(ttft, e2e, weight) samples in seconds -> inference-perf's means, p90 and ITL (ms)."""
    wsum = sum(w for _, _, w in samples)
    ttft = sum(t * w for t, _, w in samples) / wsum
    e2e = sum(e * w for _, e, w in samples) / wsum
    return {
        "ttft_mean": ttft * 1e3,
        "ttft_p90": _weighted_quantile([(t, w) for t, _, w in samples], 0.9) * 1e3,
        "e2e_mean": e2e * 1e3,
        "e2e_p90": _weighted_quantile([(e, w) for _, e, w in samples], 0.9) * 1e3,
        "itl_mean": (e2e - ttft) / max(out_len - 1.0, 1.0) * 1e3,
    }


def replay(
    run: Run,
    profile: Profile,
    seconds_per_stage: float | None = None,
    reuse: str = "repeat",
    timeout: float | None = 300.0,
) -> Replay:
    spec = engine_spec(run, profile)
    sent = build_requests(run, profile, seconds_per_stage, reuse, timeout)
    started, cpu = time.perf_counter(), time.process_time()
    result = Engine(spec.scheduler, spec.step.time, decode_time=spec.step.decode).run(
        [s.request for s in sent]
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    last = profile.last_token_s
    per_stage: list[list[tuple[float, float, float]]] = [[] for _ in run.stages]
    ok = fail = 0
    for s in sent:
        r = s.request
        if r.finished and r.first_token is not None and r.last_token is not None:
            e2e = r.last_token + last - s.send
            if timeout is not None and e2e > timeout:
                fail += 1
                continue
            per_stage[s.stage].append((r.first_token - s.send, e2e, 1.0))
            ok += 1
        else:
            fail += 1
    # the data's ITL formula over the simulated requests, with the output length the client
    # counts in their text: the measured mean (it counted the same generated text)
    out_len = float(run.output_len_mean) if run.output_len_mean else float(run.output_len)
    samples: list[tuple[float, float, float]] = []
    stage_values = []
    for st, (rate, dur) in zip(per_stage, run.stages, strict=True):
        if not st:
            continue
        weight = rate * dur / len(st)  # a cut replay stands for its whole stage
        samples.extend((t, e, weight) for t, e, _ in st)
        stage_values.append(summarize(st, out_len))
    values = summarize(samples, out_len) if samples else {}
    return Replay(values, ok, fail, result.steps, result.preemptions, wall, cpu, stage_values)


def errors(run: Run, rep: Replay) -> dict[str, float]:
    """Relative errors (simulated / measured - 1) of the goal metrics."""
    out = {}
    for m in (*METRICS, "ttft_p90"):
        if m in run.measured and m in rep.values:
            out[m] = rep.values[m] / run.measured[m] - 1.0
    return out


# ---- the fit ----------------------------------------------------------------------------


def loss_of(errs: Sequence[dict[str, float]]) -> float:
    total = 0.0
    for e in errs:
        total += sum(WEIGHTS[m] * abs(e.get(m, 1.0)) for m in METRICS)
    return total / max(len(errs), 1)


def evaluate(
    runs: Sequence[Run], profile: Profile, seconds: float | None, reuse: str
) -> tuple[float, list[dict[str, float]]]:
    errs = []
    for run in runs:
        try:
            errs.append(errors(run, replay(run, profile, seconds, reuse)))
        except ConfigError:
            errs.append({m: 1.0 for m in METRICS})
    return loss_of(errs), errs


def residuals(errs: Sequence[dict[str, float]]) -> list[float]:
    """Weighted log ratios (simulated / measured), one per run and goal metric.

    Logs keep a saturated replay (a TTFT a hundred times too long) from outweighing every
    other run; a missing metric counts as a factor e.
    """
    out = []
    for e in errs:
        for m in METRICS:
            ratio = 1.0 + e[m] if m in e else math.e
            out.append(math.sqrt(WEIGHTS[m]) * math.log(max(ratio, 1e-3)))
    return out


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (small dense systems)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[piv] = m[piv], m[col]
        if abs(m[col][col]) < 1e-300:
            continue
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        acc = m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))
        x[r] = acc / m[r][r] if abs(m[r][r]) > 1e-300 else 0.0
    return x


# The typical log error a run's metric keeps under the model (the goals' scale): the data's
# residuals count against the prior's in this unit. A coefficient one prior spread away from
# its prior value costs as much as one metric of one run 5 % off.
DATA_SPREAD = 0.05


def log_in_bounds(name: str, value: float) -> float:
    """log of a coefficient clamped to FIT_BOUNDS: a profile written before a coefficient
    existed has it at 0 (the term off), which the fit starts from as the lower bound."""
    lo, hi = FIT_BOUNDS[name]
    return math.log(min(hi, max(lo, value)))


def prior_residuals(x: Sequence[float], names: Sequence[str], prior: Profile) -> list[float]:
    """DATA_SPREAD · (log x − log prior) / spread, one per fitted coefficient."""
    out = []
    for n, v in zip(names, x, strict=True):
        term = PRIOR.get(n)
        if term is None:
            out.append(0.0)
            continue
        out.append(DATA_SPREAD / term.spread * (v - log_in_bounds(n, getattr(prior, n))))
    return out


def fit_lm(
    runs: Sequence[Run],
    start: Profile,
    seconds: float | None,
    reuse: str,
    iterations: int,
    log: Callable[[str], None] = print,
    h: float = 0.05,
    prior: Profile | None = None,
    tol: float = 1e-3,
) -> Profile:
    """Levenberg-Marquardt on the log of the coefficients, finite-difference Jacobian.

    Moves all coefficients together (they are correlated: a lower step cost and a higher
    first-token cost can leave E2E unchanged and fix TTFT), which a one-at-a-time search
    cannot. With a `prior` (the package's physical prior, `pyllmd.sim.batch.prior`) the fit is
    a maximum a posteriori one: each coefficient's log is also drawn toward the prior's, with
    weight DATA_SPREAD / spread, so a coefficient the runs cannot identify (its column of the
    Jacobian is zero) stays at the prior, and few runs move the others little.

    Stops after `iterations`, once no step lowers the cost, or after two iterations in a row
    that lower it by less than `tol` (relative).
    """
    names = list(FIT_BOUNDS)
    ws = [DATA_SPREAD / PRIOR[n].spread if prior is not None and n in PRIOR else 0.0 for n in names]

    def full(r_data: list[float], x: Sequence[float]) -> list[float]:
        if prior is None:
            return r_data
        return r_data + prior_residuals(x, names, prior)

    def at(x: Sequence[float]) -> Profile:
        vals = {}
        for n, v in zip(names, x, strict=True):
            lo, hi = FIT_BOUNDS[n]
            vals[n] = min(hi, max(lo, math.exp(v)))
        return replace(start, **vals)

    def clip(x: Sequence[float]) -> list[float]:
        return [math.log(getattr(at(x), n)) for n in names]

    def data(x: Sequence[float]) -> tuple[list[float], list[dict[str, float]]]:
        prof = at(x)
        _, e = evaluate(runs, prof, seconds, reuse)
        return residuals(e), e

    x = [log_in_bounds(n, getattr(start, n)) for n in names]
    r, errs = data(x)
    cost = sum(v * v for v in full(r, x))
    lam = 1e-3
    small = 0  # consecutive iterations that lowered the cost by less than tol
    log(f"  LM start: sum of squares {cost:.4f}, loss {loss_of(errs):.4f}")
    for it in range(iterations):
        cols = []
        for i in range(len(names)):
            xp = x[:]
            xp[i] += h
            rp, _ = data(xp)
            cols.append([(a - b) / h for a, b in zip(rp, r, strict=True)])
        jtj = [[sum(ci[k] * cj[k] for k in range(len(r))) for cj in cols] for ci in cols]
        jtr = [sum(ci[k] * r[k] for k in range(len(r))) for ci in cols]
        if prior is not None:  # the prior's rows: diagonal, weight ws[i]
            rp = prior_residuals(x, names, prior)
            for i in range(len(names)):
                jtj[i][i] += ws[i] * ws[i]
                jtr[i] += ws[i] * rp[i]
        improved = False
        lo_x = [math.log(FIT_BOUNDS[n][0]) for n in names]
        hi_x = [math.log(FIT_BOUNDS[n][1]) for n in names]
        for _ in range(6):
            # solve on the free coefficients; one at a bound the step pushes past is frozen
            frozen: set[int] = set()
            delta = [0.0] * len(names)
            for _ in range(len(names)):
                idx = [i for i in range(len(names)) if i not in frozen]
                a = [[jtj[i][j] for j in idx] for i in idx]
                floor = 0.01 * max(jtj[i][i] for i in range(len(names))) + 1e-9
                for k, i in enumerate(idx):
                    a[k][k] += lam * max(jtj[i][i], floor)
                sub = _solve(a, [-jtr[i] for i in idx])
                delta = [0.0] * len(names)
                for k, i in enumerate(idx):
                    delta[i] = sub[k]
                push = {
                    i
                    for i in idx
                    if (x[i] >= hi_x[i] - 1e-9 and delta[i] > 0)
                    or (x[i] <= lo_x[i] + 1e-9 and delta[i] < 0)
                }
                if not push:
                    break
                frozen |= push
            delta = [max(-1.0, min(1.0, d)) for d in delta]  # at most a factor e each
            cand = clip([xi + di for xi, di in zip(x, delta, strict=True)])
            rc, e = data(cand)
            c = sum(v * v for v in full(rc, cand))
            if c < cost:
                small = small + 1 if c > cost * (1.0 - tol) else 0
                improved = small < 2  # two small steps in a row: converged
                x, r, cost, errs = cand, rc, c, e
                lam = max(lam / 3.0, 1e-4)
                break
            lam *= 4.0
        log(f"  LM {it + 1}: sum of squares {cost:.4f}, loss {loss_of(errs):.4f}, λ {lam:.3g}")
        log("    " + ", ".join(f"{n}={getattr(at(x), n):.4g}" for n in names))
        if not improved:
            break
    return at(x)


def fit_map(
    runs: Sequence[Run],
    prior: Profile,
    seconds: float | None,
    reuse: str,
    iterations: int,
    log: Callable[[str], None] = print,
) -> Profile:
    """The fit of `pyllmd calibrate`: maximum a posteriori from `prior` (see `fit_lm`).

    The shipped profile and every hold-out refit are this fit, from the same prior."""
    return fit_lm(runs, prior, seconds, reuse, iterations, log, prior=prior)


def fit(
    runs: Sequence[Run],
    start: Profile,
    seconds: float | None,
    reuse: str,
    passes: int,
    log: Callable[[str], None] = print,
    step: float = 0.5,
) -> Profile:
    """Multiplicative pattern search over FIT_BOUNDS, then over the roofline's smoothness."""
    best = start
    best_loss, _ = evaluate(runs, best, seconds, reuse)
    log(f"  start loss {best_loss:.4f}")
    for p in range(passes):
        improved = False
        for name, (lo, hi) in FIT_BOUNDS.items():
            for factor in (1.0 + step, 1.0 / (1.0 + step)):
                value = min(hi, max(lo, getattr(best, name) * factor))
                if value == getattr(best, name):
                    continue
                cand = replace(best, **{name: value})
                loss, _ = evaluate(runs, cand, seconds, reuse)
                if loss < best_loss - 1e-6:
                    best, best_loss, improved = cand, loss, True
                    # keep going in the same direction while it helps
                    while True:
                        value = min(hi, max(lo, getattr(best, name) * factor))
                        if value == getattr(best, name):
                            break
                        cand = replace(best, **{name: value})
                        loss, _ = evaluate(runs, cand, seconds, reuse)
                        if loss >= best_loss - 1e-6:
                            break
                        best, best_loss = cand, loss
                    break
        for power in (0.0, 1.0, 2.0, 4.0, 8.0):
            if power == best.roofline_p:
                continue
            cand = replace(best, roofline_p=power)
            loss, _ = evaluate(runs, cand, seconds, reuse)
            if loss < best_loss - 1e-6:
                best, best_loss, improved = cand, loss, True
        log(f"  pass {p + 1}: loss {best_loss:.4f} (step ×{1 + step:.3f})")
        if not improved:
            step /= 2.0
            if step < 0.02:
                break
    return best


def decode_bs1(path: Path, profile: Profile) -> list[tuple[str, float, float]]:
    """(label, simulated, measured) decode ms per token of one request alone (~500+125 context)."""
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            arch = get_architecture(row["model"])
            model = StepModel(arch, get_accelerator(row["gpu"]), _i(row, "tp"), profile, 128)
            ctx = 625
            sim = model.time(1, ctx + 1, ctx + 1, 1, True) * 1e3
            label = f"{row['model'].split('/')[-1][:30]} {row['gpu']} tp{row['tp']}"
            out.append((label, sim, float(row["decode_ms_per_token_bs1"])))
    return out


# ---- reports ----------------------------------------------------------------------------


def median_abs(values: Iterable[float]) -> float:
    vals = [abs(v) for v in values]
    return statistics.median(vals) if vals else float("nan")


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%" if not math.isnan(x) else "n/a"


def holdout(
    runs: Sequence[Run],
    prior: Profile,
    seconds: float | None,
    reuse: str,
    iterations: int,
    key: Callable[[Run], str],
    label: str,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Refit without each group (model or GPU) and predict it.

    Each refit is the fit of the shipped profile (`fit_map`) on the other runs: it starts from
    the prior, which has seen no run, and is drawn toward it, so a group of few runs moves
    only the coefficients they identify.
    """
    groups = sorted({key(r) for r in runs})
    predicted: dict[str, dict[str, float]] = {}
    for g in groups:
        train = [r for r in runs if key(r) != g]
        test = [r for r in runs if key(r) == g]
        log(f"leave out {label} {g}: fit on {len(train)} runs, predict {len(test)}")
        prof = fit_map(train, prior, seconds, reuse, iterations, log=lambda s: None)
        _, errs = evaluate(test, prof, seconds, reuse)
        for r, e in zip(test, errs, strict=True):
            predicted[r.run_id] = e
    return [predicted[r.run_id] for r in runs]


def load_stages(path: Path) -> dict[tuple[str, int], dict[str, float]]:
    """Measured per-stage metrics (ms) of calibration_stages.csv, by (run id, stage index)."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    if not path.exists():
        return out
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            vals = {m: _f(row, f"{m}_ms") for m in (*METRICS, "ttft_p90")}
            out[(row["run_id"], int(row["stage_index"]))] = {
                k: v for k, v in vals.items() if v is not None
            }
    return out


# ---- one calibration: fit, replay whole runs, hold-out refits ---------------------------


@dataclass(frozen=True)
class Settings:
    """How a calibration runs (the flags of `pyllmd calibrate`)."""

    iterations: int = 12  # Levenberg-Marquardt iterations
    passes: int = 0  # pattern-search passes after them
    fit_seconds: float = 40.0  # seconds replayed per stage while fitting
    timeout: float = 300.0  # the client's request timeout
    holdout: tuple[str, ...] = ()  # "model", "gpu"
    reuse: str = "repeat"
    prior: Profile = field(default_factory=prior_profile)  # where every fit starts


HOLDOUTS: dict[str, tuple[str, Callable[[Run], str]]] = {
    "model": ("leave one model out", lambda r: r.model),
    "gpu": ("leave one GPU out", lambda r: r.gpu),
}


def kind(run: Run) -> str:
    """Which table a run belongs to: fitted, offload (CPU KV offload) or overloaded."""
    if run.overloaded:
        return "overloaded"
    return "offload" if run.cpu_offload else "fitted"


def calibrate(
    runs: Sequence[Run],
    start: Profile,
    settings: Settings,
    stages: dict[tuple[str, int], dict[str, float]] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Profile, dict[str, object]]:
    """Fit `start` to the runs that are neither overloaded nor offloaded, then replay every run
    whole with the fitted profile; the profile and a results record (plain data, JSON-able:
    the input of the fidelity page)."""
    fitted = [r for r in runs if kind(r) == "fitted"]
    if not fitted:
        raise ConfigError("--runs: no run to fit (every run is overloaded or has cpu_offload)")
    started = time.process_time()
    prof = start
    if settings.iterations:
        log(f"fitting on {len(fitted)} runs ({settings.fit_seconds:g} s per stage) from the prior")
        prof = fit_map(
            fitted, settings.prior, settings.fit_seconds, settings.reuse, settings.iterations, log
        )
    if settings.passes:
        prof = fit(fitted, prof, settings.fit_seconds, settings.reuse, settings.passes, log, 0.25)
    fit_cpu = time.process_time() - started
    stages = stages or {}
    records: list[dict[str, object]] = []
    for r in runs:
        rep = replay(r, prof, None, settings.reuse, settings.timeout)
        stage_errs = []
        for i, got in enumerate(rep.stage_values):
            want = stages.get((r.run_id, i), {})
            se = {m: got[m] / want[m] - 1 for m in METRICS if m in want and m in got}
            if se:
                stage_errs.append({"stage": i, "errors": se})
        blis = {
            m: r.blis[m] / r.measured[m] - 1 for m in METRICS if m in r.blis and m in r.measured
        }
        records.append(
            {
                "run_id": r.run_id,
                "model": r.model,
                "gpu": r.gpu,
                "tp": r.tp,
                "kind": kind(r),
                "errors": errors(r, rep),
                "blis_errors": blis,
                "stages": stage_errs,
                "n_success": r.n_success,
                "n_success_simulated": rep.n_success,
                "steps": rep.steps,
                "wall_s": rep.wall_s,
                "cpu_s": rep.cpu_s,
            }
        )
    held: dict[str, dict[str, dict[str, float]]] = {}
    for name in settings.holdout:
        title, key = HOLDOUTS[name]
        errs = holdout(
            fitted, settings.prior, settings.fit_seconds, settings.reuse, settings.iterations
            or Settings.iterations, key, name, log,
        )  # fmt: skip
        held[title] = {r.run_id: e for r, e in zip(fitted, errs, strict=True)}
    results: dict[str, object] = {
        "profile": asdict(prof),
        "settings": {
            "iterations": settings.iterations,
            "passes": settings.passes,
            "fit_seconds": settings.fit_seconds,
            "holdout_iterations": settings.iterations or Settings.iterations,
            "prior": asdict(settings.prior),
            "fit_cpu_s": round(fit_cpu, 1),
        },
        "runs": records,
        "holdout": held,
    }
    return prof, results
