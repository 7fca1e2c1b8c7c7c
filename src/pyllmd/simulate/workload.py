"""An inference-perf workload (its config file) and the requests its client sends (pure).

`parse_workload` reads the `api`, `data`, `load` and `server` sections of an inference-perf
config into a `Workload`, with one warning line naming what is not modelled. `Client` is the
client's behaviour on virtual time: the load stages' send schedule (constant, poisson,
concurrent, a sweep's saturation probe and the stages made from it), multi-turn sessions that
send a user's rounds one after another, the in-flight cap (`worker_max_concurrency` ×
`num_workers`) and the request timeout. Prompts are token-id
sequences built from the data's structure, so a shared system prompt or a session's earlier
rounds share their ids (and KV block hashes) with later requests.

Multi-turn sessions (shared_prefix with `enable_multi_turn_chat`): slot i of the schedule
belongs to user i mod users (the users shuffled), and a user's rounds go one after another.
Each round sends the user's prompt (its group's system prompt and its question) again, so a
later round hits the prefix cache up to its last block. This is what the measured runs of the
calibration set show (their prompt lengths do not grow over a run); inference-perf 0.7.0's
code would instead prepend each round's prompt and answer to the next (see
differences-from-upstream.md).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pyllmd.core.errors import ConfigError
from pyllmd.simulate.traces import Trace, TraceEntry, prompt_tokens, read_trace

__all__ = ["Client", "Distribution", "Send", "Stage", "Workload", "parse_workload"]

VOCAB = 32000  # token ids are drawn from [1, VOCAB)
KNOWN = {
    "api": {"type", "streaming"},
    "data": {"type", "shared_prefix", "input_distribution", "output_distribution", "path", "trace"},
    "load": {
        "type",
        "stages",
        "sweep",
        "interval",
        "num_workers",
        "worker_max_concurrency",
        "request_timeout",
        "trace",
    },
    "server": {"type", "model_name", "base_url", "ignore_eos"},
}
SECTIONS = ("api", "data", "load", "server")
DIST_TYPES = ("normal", "skew_normal", "lognormal", "uniform", "poisson", "fixed")


@dataclass(frozen=True)
class Distribution:
    """inference-perf's length distribution (clamped to [min, max])."""

    min: int = 10
    max: int = 1024
    mean: float = 512.0
    std_dev: float = 200.0
    type: str = "normal"
    skew: float = 0.0

    def sample(self, rnd: random.Random) -> int:
        kind = self.type
        if kind == "fixed":
            value = self.mean
        elif kind == "uniform":
            value = rnd.uniform(self.min, self.max)
        elif kind == "poisson":
            value = _poisson(rnd, self.mean)
        elif kind == "lognormal":
            # parameters of the underlying normal that give this mean and std-dev
            var = self.std_dev**2
            mean = max(self.mean, 1e-9)
            sigma2 = math.log(1.0 + var / (mean * mean))
            value = rnd.lognormvariate(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2))
        elif kind == "skew_normal":
            delta = self.skew / math.sqrt(1.0 + self.skew * self.skew)
            u0, v = rnd.gauss(0.0, 1.0), rnd.gauss(0.0, 1.0)
            z = delta * u0 + math.sqrt(1.0 - delta * delta) * v
            z = z if u0 >= 0 else -z
            # standardize the skew-normal variate so mean and std-dev are the configured ones
            mu = delta * math.sqrt(2.0 / math.pi)
            value = self.mean + self.std_dev * (z - mu) / math.sqrt(1.0 - mu * mu)
        else:
            value = rnd.gauss(self.mean, self.std_dev)
        return int(min(self.max, max(self.min, round(value))))


def _poisson(rnd: random.Random, lam: float) -> float:
    if lam > 50:  # normal approximation
        return max(0.0, rnd.gauss(lam, math.sqrt(lam)))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rnd.random()
        if p <= limit:
            return float(k)
        k += 1


@dataclass(frozen=True)
class Stage:
    """One load stage: a rate for a duration, or `num_requests` at a concurrency level."""

    rate: float | None = None
    duration: float | None = None
    num_requests: int | None = None
    concurrency_level: int | None = None


@dataclass(frozen=True)
class Sweep:
    """`load.sweep`: a saturation probe, then stages up to the rate it finds."""

    type: str = "geometric"  # or linear
    num_requests: int = 2000
    timeout: float = 60.0
    num_stages: int = 5
    stage_duration: float = 180.0
    saturation_percentile: float = 95.0

    def rates(self, saturation: float) -> list[float]:
        """inference-perf's stage rates up to `saturation` (geometric or linear spacing)."""
        n = self.num_stages
        if self.type == "linear":
            points = [1.0 + (saturation - 1.0) * i / (n - 1) for i in range(n)] if n > 1 else [1.0]
            return [round(r, 2) for r in points]
        if n == 1:
            geo = [saturation]
        else:  # from saturation down to 1, evenly spaced in log
            geo = [saturation * (1.0 / saturation) ** (i / (n - 1)) for i in range(n)]
        return [round(1.0 + saturation - r, 2) for r in geo]


PROBE_SECONDS = 5.0  # the probe sends num_requests over this long
SAMPLE_SECONDS = 0.5  # active requests are sampled this often during the probe


@dataclass(frozen=True)
class Workload:
    """What the simulation needs from an inference-perf config."""

    load_type: str  # constant, poisson or concurrent
    stages: tuple[Stage, ...]
    interval: float  # seconds between stages
    max_in_flight: int  # num_workers × worker_max_concurrency
    request_timeout: float | None
    data_type: str  # shared_prefix, random or synthetic
    input: Distribution | None = None  # random / synthetic
    output: Distribution | None = None
    groups: int = 10
    users_per_group: int = 10
    system_prompt_len: Distribution | int = 100
    question_len: Distribution | int = 50
    output_len: Distribution | int = 50
    multi_turn: bool = False
    model_name: str = ""
    ignore_eos: bool = False
    sweep: Sweep | None = None
    warnings: tuple[str, ...] = ()
    load_trace: Trace | None = None  # trace_replay: the send times
    data_trace: Trace | None = None  # random data: each request's lengths (and Mooncake blocks)


def _where(path: str) -> str:
    return f"--workload: {path}"


def _map(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key} must be a map")
    return value


def _num(section: Mapping[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _pos_int(section: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value


def _dist(value: Any, where: str) -> Distribution:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a map (min, max, mean, std_dev, type)")
    unknown = sorted(set(value) - {"min", "max", "mean", "std_dev", "type", "variance", "skew"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    kind = str(value.get("type", "normal"))
    if kind not in DIST_TYPES:
        raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(DIST_TYPES)}")
    base = Distribution()
    lo = int(_num(value, "min", where, base.min) or 0)
    hi = int(_num(value, "max", where, base.max) or 0)
    if lo > hi:
        raise ConfigError(f"{where}: min ({lo}) cannot be greater than max ({hi})")
    std = _num(value, "std_dev", where, base.std_dev) or 0.0
    if "variance" in value:
        variance = _num(value, "variance", where, 0.0) or 0.0
        if variance < 0:
            raise ConfigError(f"{where}.variance: cannot be negative")
        std = math.sqrt(variance)
    if std < 0:
        raise ConfigError(f"{where}.std_dev: cannot be negative")
    return Distribution(
        min=lo,
        max=hi,
        mean=_num(value, "mean", where, base.mean) or 0.0,
        std_dev=std,
        type=kind,
        skew=_num(value, "skew", where, 0.0) or 0.0,
    )


def _length(value: Any, where: str) -> Distribution | int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: must be an integer or a distribution")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}: must be >= 1, got {value}")
        return value
    return _dist(value, where)


def _stages(load: Mapping[str, Any], kind: str, where: str) -> tuple[Stage, ...]:
    raw = load.get("stages") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.stages must be a list")
    out = []
    for i, st in enumerate(raw):
        at = f"{where}.stages[{i}]"
        if not isinstance(st, Mapping):
            raise ConfigError(f"{at}: must be a map")
        if kind == "concurrent":
            if "rate" in st or "duration" in st:
                raise ConfigError(
                    f"{at}: a concurrent stage takes num_requests and concurrency_level"
                )
            out.append(
                Stage(
                    num_requests=_pos_int(st, "num_requests", at, 0),
                    concurrency_level=_pos_int(st, "concurrency_level", at, 0),
                )
            )
        else:
            if "num_requests" in st or "concurrency_level" in st:
                raise ConfigError(
                    f"{at}: num_requests and concurrency_level are for the concurrent load type"
                )
            rate = _num(st, "rate", at, None)
            duration = _num(st, "duration", at, None)
            if rate is None or rate <= 0:
                raise ConfigError(f"{at}.rate: must be a number > 0")
            if duration is None or duration <= 0:
                raise ConfigError(f"{at}.duration: must be a number > 0")
            out.append(Stage(rate=rate, duration=duration))
    return tuple(out)


def _trace(section: Mapping[str, Any], where: str) -> Trace:
    raw = section.get("trace")
    if not isinstance(raw, Mapping) or not raw.get("file"):
        raise ConfigError(f"{where}: a map with the trace's file (and format) is needed")
    return read_trace(str(raw["file"]), str(raw.get("format", "AzurePublicDataset")), where)


def _sweep(raw: Any, where: str) -> Sweep:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a map")
    known = {f for f in Sweep.__dataclass_fields__}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    kind = str(raw.get("type", ""))
    if kind not in ("geometric", "linear"):
        raise ConfigError(f"{where}.type: must be geometric or linear, got {kind!r}")
    base = Sweep()
    sweep = Sweep(
        type=kind,
        num_requests=_pos_int(raw, "num_requests", where, base.num_requests),
        timeout=_num(raw, "timeout", where, base.timeout) or 0.0,
        num_stages=_pos_int(raw, "num_stages", where, base.num_stages),
        stage_duration=_num(raw, "stage_duration", where, base.stage_duration) or 0.0,
        saturation_percentile=_num(raw, "saturation_percentile", where, base.saturation_percentile)
        or 0.0,
    )
    if sweep.timeout <= 0 or sweep.stage_duration <= 0:
        raise ConfigError(f"{where}: timeout and stage_duration must be > 0")
    if not 0 <= sweep.saturation_percentile <= 100:
        raise ConfigError(f"{where}.saturation_percentile: must be in [0, 100]")
    return sweep


def parse_workload(doc: Any, path: str = "WORKLOAD") -> Workload:
    """An inference-perf config document -> Workload; ConfigError (one line) when invalid."""
    where = _where(path)
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: the workload file must be a map")
    ignored: list[str] = sorted(f"{k}" for k in doc if k not in SECTIONS)
    sections = {name: _map(doc, name, where) for name in SECTIONS}
    for name, section in sections.items():
        ignored += sorted(f"{name}.{k}" for k in section if k not in KNOWN[name])
    api, data, load, server = (sections[n] for n in SECTIONS)
    api_type = str(api.get("type", "completion"))
    if api_type not in ("completion", "chat"):
        raise ConfigError(f"{where}: api.type: {api_type!r} is not completion or chat")
    if api.get("streaming") is False:
        ignored.append("api.streaming=false (every request is modelled as streamed)")
    kind = str(load.get("type", "constant"))
    if kind not in ("constant", "poisson", "concurrent", "trace_replay"):
        raise ConfigError(
            f"{where}: load.type: {kind!r} is not modelled (constant, poisson, concurrent or "
            "trace_replay)"
        )
    sweep = None
    if load.get("sweep") is not None:
        if kind == "concurrent":
            raise ConfigError(f"{where}: load.sweep is not valid for the concurrent load type")
        sweep = _sweep(load["sweep"], f"{where}: load.sweep")
    stages = _stages(load, kind, f"{where}: load")
    if sweep is not None:
        stages = ()  # the sweep makes the stages (inference-perf replaces any given)
    elif not stages:
        raise ConfigError(f"{where}: load.stages: give at least one stage")
    interval = _num(load, "interval", f"{where}: load", 1.0) or 0.0
    if interval < 0:
        raise ConfigError(f"{where}: load.interval: must be >= 0")
    workers = _pos_int(load, "num_workers", f"{where}: load", 1)
    per_worker = _pos_int(load, "worker_max_concurrency", f"{where}: load", 100)
    timeout = _num(load, "request_timeout", f"{where}: load", None)
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"{where}: load.request_timeout: must be > 0")
    data_type = str(data.get("type", "mock"))
    ignore_eos = server.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise ConfigError(f"{where}: server.ignore_eos must be true or false")
    if not ignore_eos:
        ignored.append("server.ignore_eos=false (outputs always run to their sampled length)")
    common: dict[str, Any] = {
        "load_type": kind,
        "stages": stages,
        "interval": interval,
        "max_in_flight": workers * per_worker,
        "request_timeout": timeout,
        "data_type": data_type,
        "model_name": str(server.get("model_name") or ""),
        "ignore_eos": ignore_eos,
        "sweep": sweep,
        "load_trace": _trace(load, f"{where}: load.trace") if kind == "trace_replay" else None,
        "data_trace": _trace(data, f"{where}: data.trace") if data.get("trace") else None,
    }
    if kind != "trace_replay" and load.get("trace") is not None:
        ignored.append("load.trace (load.type is not trace_replay)")
    if data.get("trace") is not None and data_type != "random":
        raise ConfigError(f"{where}: data.trace: only the random data type reads a trace")
    if data_type == "shared_prefix":
        sp = _map(data, "shared_prefix", f"{where}: data")
        at = f"{where}: data.shared_prefix"
        known = {
            "num_unique_system_prompts",
            "num_groups",
            "num_users_per_system_prompt",
            "num_prompts_per_group",
            "system_prompt_len",
            "question_len",
            "output_len",
            "question_distribution",
            "output_distribution",
            "enable_multi_turn_chat",
        }
        ignored += sorted(f"data.shared_prefix.{k}" for k in sp if k not in known)
        question: Any = sp.get("question_len", 50)
        if sp.get("question_distribution") is not None:
            question = sp["question_distribution"]
        output: Any = sp.get("output_len", 50)
        if sp.get("output_distribution") is not None:
            output = sp["output_distribution"]
        workload = Workload(
            **common,
            groups=_pos_int(
                sp, "num_unique_system_prompts", at, int(sp.get("num_groups", 10) or 10)
            ),
            users_per_group=_pos_int(
                sp,
                "num_users_per_system_prompt",
                at,
                int(sp.get("num_prompts_per_group", 10) or 10),
            ),
            system_prompt_len=_length(sp.get("system_prompt_len", 100), f"{at}.system_prompt_len"),
            question_len=_length(question, f"{at}.question_len"),
            output_len=_length(output, f"{at}.output_len"),
            multi_turn=bool(sp.get("enable_multi_turn_chat", False)),
        )
    elif data_type in ("random", "synthetic"):
        if data_type == "synthetic" and data.get("path"):
            ignored.append("data.path (synthetic prompts are random token ids)")
        workload = Workload(
            **common,
            input=_dist(data.get("input_distribution") or {}, f"{where}: data.input_distribution"),
            output=_dist(
                data.get("output_distribution") or {}, f"{where}: data.output_distribution"
            ),
        )
    else:
        raise ConfigError(
            f"{where}: data.type: {data_type!r} is not modelled (shared_prefix, random or "
            "synthetic)"
        )
    if data_type != "shared_prefix" and data.get("shared_prefix") is not None:
        ignored.append("data.shared_prefix (data.type is not shared_prefix)")
    warnings: tuple[str, ...] = ()
    if ignored:
        warnings = (f"{where}: not modelled, ignored: {', '.join(ignored)}",)
    return Workload(**{**workload.__dict__, "warnings": warnings})


def scaled(wl: Workload, time_scale: float = 1.0, rate_scale: float = 1.0) -> Workload:
    """`--time-scale` and `--rate-scale`: the workload's clock stretched by `time_scale` (trace
    times, stage durations and the pause between stages ×; stage rates ÷: the same requests),
    then its request rate × `rate_scale` (stage rates ×; trace times ÷)."""
    if time_scale == 1.0 and rate_scale == 1.0:
        return wl
    stages = tuple(
        replace(st, rate=st.rate * rate_scale / time_scale, duration=st.duration * time_scale)
        if st.rate is not None and st.duration is not None
        else st
        for st in wl.stages
    )
    trace = wl.load_trace
    if trace is not None:
        k = time_scale / rate_scale
        trace = replace(trace, entries=tuple(replace(e, t=e.t * k) for e in trace.entries))
    return replace(wl, stages=stages, interval=wl.interval * time_scale, load_trace=trace)


# ---- the client on virtual time ---------------------------------------------------------


@dataclass
class Send:
    """A request the client sends: its prompt as token ids and what it asks for."""

    index: int
    stage: int
    scheduled: float  # when the schedule meant to send it
    tokens: list[int]
    output_len: int
    user: int = -1  # multi-turn session, or -1
    start: float = 0.0  # when it was sent
    end: float | None = None  # when the response ended (success or failure)
    error: str | None = None


class Client:
    """inference-perf's client on virtual time (pure; the caller drives it).

    `next_time()` is when the client next acts (inf while it waits on responses);
    `due(now)` returns the requests it sends at `now`; `done(send, t)` reports that a
    response (or a failure) ended at `t`; `finished()` once every stage has run and every
    request has ended. A slot of the schedule is sent when it is due, fewer than
    `max_in_flight` requests are in flight and (multi-turn) its user has no round in flight;
    otherwise it waits, in order, and its schedule delay grows.
    """

    def __init__(self, wl: Workload, seed: int) -> None:
        self.wl = wl
        self.rnd = random.Random(seed)
        self.index = 0  # requests built
        self.slots = 0  # slots issued over the run (a multi-turn slot's user is slots % users)
        self.stage = -1
        self.stage_issued = 0
        self.stage_sent = 0
        self.stage_total = 0
        self.stage_start = 0.0
        self.saturation: float | None = None
        self.stage_open = 0  # slots of the current stage not ended
        self.schedule: deque[float] = deque()  # send times of a rate stage, not yet issued
        # slots issued and not yet sent: those that may go now, in slot order, in `sendable`
        # (heap of (scheduled, slot, user)); a busy user's further slots wait in `waiting`
        self.sendable: list[tuple[float, int, int]] = []
        self.waiting: list[deque[tuple[float, int]]] = []
        self.unsent = 0
        self.in_flight = 0
        self.user_busy: list[bool] = []
        self.wake = math.inf  # a response ended: pending slots may go then
        self.now = 0.0  # the latest time the client acted (its clock never goes back)
        self.next_stage_at = 0.0
        self.sends: list[Send] = []
        # the stages to run: with a sweep, first its probe (reported as stage -1), then the
        # stages made from the saturation it finds
        self.plan: list[Stage] = list(wl.stages)
        self.offset = 0
        self.active: list[tuple[float, int]] = []  # (time, requests in flight) in the probe
        if wl.sweep is not None:
            self.plan = [Stage(rate=wl.sweep.num_requests / PROBE_SECONDS, duration=PROBE_SECONDS)]
            self.offset = 1
        self._prepare_data()

    # ---- data ---------------------------------------------------------------------------
    def _ids(self, n: int) -> list[int]:
        r = self.rnd.randrange
        return [r(1, VOCAB) for _ in range(n)]

    def _len(self, spec: Distribution | int) -> int:
        return spec if isinstance(spec, int) else max(1, spec.sample(self.rnd))

    def _prepare_data(self) -> None:
        wl = self.wl
        self.prompts: list[list[int]] = []
        self.outputs: list[int] = []
        if wl.data_type != "shared_prefix":
            return
        for _ in range(wl.groups):
            system = self._ids(self._len(wl.system_prompt_len))
            for _ in range(wl.users_per_group):
                question = self._ids(self._len(wl.question_len))
                self.prompts.append(system + question)
                self.outputs.append(self._len(wl.output_len))
        order = list(range(len(self.prompts)))
        self.rnd.shuffle(order)  # inference-perf shuffles its prompts (and sessions with them)
        self.prompts = [self.prompts[i] for i in order]
        self.outputs = [self.outputs[i] for i in order]
        if wl.multi_turn:
            self.user_busy = [False] * len(self.prompts)
            self.waiting = [deque() for _ in self.prompts]

    def _request(self, scheduled: float, now: float, user: int) -> Send:
        wl = self.wl
        i = self.index
        self.index += 1
        if wl.data_type == "shared_prefix":
            # request i sends prompt i mod prompts (a session's rounds: the same prompt, see
            # the module docstring)
            p = user if user >= 0 else i % len(self.prompts)
            output = self.outputs[p]
            tokens = self.prompts[p]  # shared, never changed: a copy each would hold its ids
        elif wl.data_trace is not None:  # the stage's k-th request gets the trace's k-th lengths
            entries = wl.data_trace.entries
            entry: TraceEntry = entries[self.stage_sent % len(entries)]
            tokens = prompt_tokens(entry, VOCAB, self._ids)
            output = entry.output_tokens
        else:
            assert wl.input is not None and wl.output is not None
            tokens = self._ids(max(1, wl.input.sample(self.rnd)))
            output = max(1, wl.output.sample(self.rnd))
        self.stage_sent += 1
        send = Send(i, self.stage - self.offset, scheduled, tokens, output, user, start=now)
        self.sends.append(send)
        return send

    # ---- schedule -----------------------------------------------------------------------
    def _current(self) -> Stage | None:
        return self.plan[self.stage] if 0 <= self.stage < len(self.plan) else None

    def _stage_over(self) -> bool:
        return self.stage < 0 or (
            self.stage_issued >= self.stage_total and self.stage_open == 0 and not self.unsent
        )

    def _open_stage(self, now: float) -> None:
        self.stage += 1
        self.stage_start = now
        st = self.plan[self.stage]
        self.stage_issued = 0
        self.stage_open = 0
        self.stage_sent = 0
        if st.num_requests is not None:
            self.stage_total = st.num_requests
            return
        assert st.rate is not None and st.duration is not None
        times: list[float] = []
        if self.wl.load_trace is not None:  # inference-perf replays the whole trace per stage
            times = [now + e.t for e in self.wl.load_trace.entries]
            cap = int(st.rate * st.duration)
            if self.wl.data_trace is not None:
                cap = len(self.wl.data_trace.entries)
            del times[cap:]
        elif self.wl.load_type == "poisson":
            t = 0.0
            while True:
                t += self.rnd.expovariate(st.rate)
                if t >= st.duration:
                    break
                times.append(now + t)
        else:
            n = int(round(st.rate * st.duration))
            times = [now + k / st.rate for k in range(n)]
        self.stage_total = len(times)
        self.schedule = deque(times)

    def next_time(self) -> float:
        times = [self.wake]
        if self.schedule:
            times.append(self.schedule[0])
        if self._stage_over() and self.stage + 1 < len(self.plan):
            times.append(self.next_stage_at)
        return min(times)

    def _issue(self, scheduled: float) -> None:
        user = -1
        if self.user_busy:
            user = self.slots % len(self.user_busy)
        slot = self.slots
        self.slots += 1
        self.stage_issued += 1
        self.stage_open += 1
        self.unsent += 1
        if user >= 0 and (self.user_busy[user] or self.waiting[user]):
            self.waiting[user].append((scheduled, slot))
        else:
            heapq.heappush(self.sendable, (scheduled, slot, user))
            if user >= 0:
                self.user_busy[user] = True  # its next slots wait behind this one

    def due(self, now: float) -> list[Send]:
        """The requests sent at `now` (call it at next_time())."""
        now = self.now = max(now, self.now)
        self.wake = math.inf
        if self._stage_over() and self.stage + 1 < len(self.plan) and now >= self.next_stage_at:
            self._open_stage(now)
        st = self._current()
        if st is None:
            return []
        while self.schedule and self.schedule[0] <= now:
            self._issue(self.schedule.popleft())
        if st.concurrency_level is not None:
            while self.stage_open < st.concurrency_level and self.stage_issued < self.stage_total:
                self._issue(now)
        out: list[Send] = []
        cap = self.wl.max_in_flight
        while self.sendable and self.in_flight < cap:
            scheduled, _, user = heapq.heappop(self.sendable)
            self.in_flight += 1
            self.unsent -= 1
            out.append(self._request(scheduled, now, user))
        if out and self.stage < self.offset:
            self.active.append((now, self.in_flight))
        return out

    def done(self, send: Send, t: float) -> None:
        """The response to `send` ended at `t` (its `error` set when it failed)."""
        send.end = t
        self.in_flight -= 1
        if send.stage == self.stage - self.offset:
            self.stage_open -= 1
        if self.stage < self.offset:
            self.active.append((max(t, self.now), self.in_flight))
        user = send.user
        if user >= 0:
            if self.waiting[user]:
                scheduled, slot = self.waiting[user].popleft()
                heapq.heappush(self.sendable, (scheduled, slot, user))
            else:
                self.user_busy[user] = False
        if self.sendable or self._current_concurrent():
            self.wake = min(self.wake, max(t, self.now))
        if self._stage_over():
            self.next_stage_at = max(t, self.now) + self.wl.interval
            if self.stage < self.offset and len(self.plan) == self.offset:
                self._plan_sweep()

    @property
    def stages(self) -> list[Stage]:
        """The stages reported (a sweep's: those made after its probe)."""
        return self.plan[self.offset :]

    def _plan_sweep(self) -> None:
        """inference-perf's saturation estimate from the probe, and the stages up to it.

        Requests in flight are sampled every SAMPLE_SECONDS from the probe's start until its
        timeout; each fall between two samples is a completion rate, and the saturation
        percentile of those rates is the saturation point.
        """
        sweep = self.wl.sweep
        assert sweep is not None
        start = self.stage_start
        samples = []
        k = 0
        j = 0
        value = 0
        events = sorted(self.active, key=lambda e: e[0])
        while start + k * SAMPLE_SECONDS < start + sweep.timeout:
            t = start + k * SAMPLE_SECONDS
            while j < len(events) and events[j][0] <= t:
                value = events[j][1]
                j += 1
            samples.append(value)
            k += 1
            if not events or t > events[-1][0]:
                break  # nothing changes any more: the later samples add no rate
        rates = [
            abs(b - a) / SAMPLE_SECONDS for a, b in zip(samples, samples[1:], strict=False) if b < a
        ]
        if len(rates) <= 1:
            raise ConfigError(
                "--workload: load.sweep: the saturation probe gathered too few samples to "
                "determine saturation; increase num_requests or timeout"
            )
        rates.sort()
        pos = (len(rates) - 1) * sweep.saturation_percentile / 100.0
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(rates) - 1)
        saturation = rates[lo] + (rates[hi] - rates[lo]) * (pos - lo)
        self.saturation = saturation
        for rate in sweep.rates(saturation):
            if rate > 0:
                self.plan.append(Stage(rate=rate, duration=sweep.stage_duration))

    def _current_concurrent(self) -> bool:
        st = self._current()
        return st is not None and st.concurrency_level is not None

    def finished(self) -> bool:
        return self.stage + 1 >= len(self.plan) and self.stage >= 0 and self._stage_over()
