"""Which pod a request goes to in `pyllmd simulate`: the `Router` protocol and the endpoint
picker's router (without one, `gateway.py`'s built-in gateway).

With `gateway: envoy-epp`, the endpoint picker's own scheduling code decides:
the EndpointPickerConfig of the stack (`eppConfig`, else the chart's default plugins) is loaded
by `epp.config`, and each request runs the same `ProfileRunner` cycle and `PreRequest` plugins
as `pyllmd epp` runs for it, over endpoint metrics as of the last scrape tick (every
`--refresh-metrics-interval`, 50 ms, as the picker's scrapers). With the `flowControl`
feature gate (on in the stack's default EndpointPickerConfig) a request first enters the
picker's flow-control queues (`epp.flowcontrol`: bands, byte capacities, TTL) and leaves them
when the saturation detector's gate reads its candidates as unsaturated, checked every 10 ms
of virtual time while requests wait, as the live controller polls; a rejected or expired
request fails with the picker's message.

Prompts are token ids here, while the picker hashes prompt text: each id is rendered as four
characters (the picker's characters per token), so equal token prefixes are equal text
prefixes. A wider rendering (`EppRouter(token_chars=...)`, `token_text(ids, chars)`) makes
the approximate prefix scorer's four-characters-per-token estimate wrong, as a tokenizer
whose tokens are longer words does; the precise scorers' tokenizer inverts it either way.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from pyllmd.core.metricset import Family
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.config.sections import GATE_FLOW_CONTROL, flow_control_config
from pyllmd.epp.flowcontrol.bands import DEFAULT_FAIRNESS_ID
from pyllmd.epp.flowcontrol.dispatch import Dispatcher
from pyllmd.epp.flowcontrol.queues import FlowKey, FlowQueues, Outcome, QueueItem, Rejection
from pyllmd.epp.metrics import EppMetrics, pool_gauges
from pyllmd.epp.plugins.profile.pd_common import PREFILL_HEADER
from pyllmd.epp.plugins.scorer.precise_prefix_cache_scorer import PrecisePrefixCacheScorer
from pyllmd.epp.saturation import fresh_candidates, is_stale
from pyllmd.epp.scheduling.interfaces import CycleState, PreRequest
from pyllmd.epp.scheduling.registry import ROLE_PRE_REQUEST, roles
from pyllmd.epp.scheduling.runner import SchedulingError
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics, LLMRequest
from pyllmd.sim.batch.scheduler import Engine
from pyllmd.simulate.cluster import PodRun
from pyllmd.simulate.kvfeed import DEFAULT_DELAY_S, KVFeed, TokenTextTokenizer
from pyllmd.simulate.promql.store import Labels, SeriesStore
from pyllmd.simulate.scrape import scrape_registry

SCRAPE_S = 0.05  # the picker's --refresh-metrics-interval
POOL_NAME = "inference-pool"  # the InferencePool the virtual picker serves
EPP_POD = "endpoint-picker-0"
FLOW_QUEUE_SIZE = "inference_extension_flow_control_queue_size"
FLOW_QUEUE_BYTES = "inference_extension_flow_control_queue_bytes"
FLOW_LABELS = ("fairness_id", "priority", "inference_pool", "model_name", "target_model_name")
POLL_S = 0.01  # the live flow controller's gate checks while requests wait
STALENESS_S = 2.0  # its --metrics-staleness-threshold
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
TEXT_CACHE = 4096  # prompts whose text is kept


def _four(t: int) -> str:
    n = len(_ALPHABET)
    return (
        _ALPHABET[t % n]
        + _ALPHABET[t // n % n]
        + _ALPHABET[t // (n * n) % n]
        + _ALPHABET[t // (n * n * n) % n]
    )


_TEXT = [_four(t) for t in range(1 << 16)]  # the ids of every vocabulary the workloads use


def _wide(t: int, chars: int) -> str:
    """`chars` characters for id `t` (chars > 4): its four characters, repeated."""
    four = _TEXT[t] if 0 <= t < len(_TEXT) else _four(t)
    return (four * (chars // 4 + 1))[:chars]


def token_text(ids: Sequence[int], chars: int = 4) -> str:
    """Four characters per token id (or `chars`, more than four: the four repeated), the
    same for the same id."""
    if chars != 4:
        return "".join(_wide(t, chars) for t in ids)
    table = _TEXT
    try:
        return "".join(map(table.__getitem__, ids))
    except IndexError:  # an id past the table (a trace's own ids)
        return "".join(table[t] if 0 <= t < len(table) else _four(t) for t in ids)


Released = tuple[object, str | None, str | None]  # (payload, pod, or the error it failed with)


@dataclass(frozen=True)
class Disaggregated:
    """A request the picker split (P/D): the payload goes to its decode pod, whose sidecar has
    it prefilled on `prefill` first (the `x-prefiller-host-port` header)."""

    payload: object
    prefill: str


class Router(Protocol):
    def route(
        self,
        payload: object,
        tokens: Sequence[int],
        model: str,
        now: float,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
    ) -> list[Released]:
        """The requests that leave the router now (this one, unless it is held)."""
        ...

    def next_poll(self) -> float:
        """When held requests are looked at again (inf: none held)."""
        ...

    def reads_engines(self, now: float, pods: Sequence[str]) -> bool:
        """Whether routing at `now` reads the pods' engines (else only the chosen pod's
        engine must have reached `now`)."""
        ...

    def poll(
        self, now: float, pods: Sequence[str], engines: Mapping[str, Engine]
    ) -> list[Released]: ...

    def queued(self) -> int:
        """Requests held now (what the autoscaler's scale-from-zero loop reads)."""
        ...

    def cancel(self, payload: object) -> bool:
        """The client gave up on a held request (its `request_timeout`): take it out, as a
        gateway does when the client's connection closes; False when it is not held."""
        ...


class EppRouter:
    """The endpoint picker's scheduling cycle over the pods' engines."""

    def __init__(
        self,
        config_text: str,
        namespace: str,
        seed: int,
        kv_event_delay: float = DEFAULT_DELAY_S,
        token_chars: int = 4,
    ) -> None:
        if token_chars < 4:
            raise ValueError(f"token_chars: must be 4 or more, got {token_chars}")
        self.token_chars = token_chars
        prompt_log = logging.getLogger("pyllmd.epp.kvindex.prompt")
        level = prompt_log.level
        prompt_log.setLevel(logging.ERROR)  # which tokenizer it finds: replaced below anyway
        try:
            self.config = load_config_text(config_text)
        finally:
            prompt_log.setLevel(level)
        self.runner = self.config.scheduler
        self.pre_request = [
            cast(PreRequest, p)
            for p in self.config.plugins.values()
            if ROLE_PRE_REQUEST in roles(p)
        ]
        self.namespace = namespace
        self.rng = random.Random(seed)
        self.scraped_at = -math.inf
        self.snapshot: dict[str, Endpoint] = {}
        self.snapshot_pods: list[str] = []
        self.texts: dict[tuple[int, ...], str] = {}
        self.fresh_key: tuple[float, bool] | None = None
        self.endpoints: tuple[Endpoint, ...] = ()
        self.fresh: tuple[Endpoint, ...] = ()
        self.count = 0
        self.picks: dict[str, int] = {}
        self.flow: Dispatcher[tuple[object, Sequence[int], str]] | None = None
        # flow control's items by payload identity, while queued (for `cancel`)
        self.items: dict[int, QueueItem[tuple[object, Sequence[int], str]]] = {}
        if self.config.enabled(GATE_FLOW_CONTROL):
            queues: FlowQueues[tuple[object, Sequence[int], str]] = FlowQueues(
                flow_control_config(self.config.raw.flow_control)
            )
            self.flow = Dispatcher(queues, self.config.saturation)
        self.polled_at = -math.inf
        self.addresses: dict[str, str] = {}  # pod -> its IP, for as long as the run lasts
        self.by_address: dict[str, str] = {}
        self.labels: dict[str, Mapping[str, str]] = {}
        self.headers: dict[str, str] = {}  # of the last decision
        # the picker's own /metrics (epp.metrics), scraped with the pods; the flow-control
        # gauges are the live flow controller's names and labels (it lives in the extproc shell)
        self.metrics = EppMetrics(POOL_NAME, lambda: self.snapshot.values())
        self.queue_size = self.metrics.registry.add(
            Family(FLOW_QUEUE_SIZE, "gauge", "Requests waiting in flow control.", FLOW_LABELS)
        )
        self.queue_bytes = self.metrics.registry.add(
            Family(FLOW_QUEUE_BYTES, "gauge", "Bytes waiting in flow control.", FLOW_LABELS)
        )
        self.model = ""
        self.seen: set[Labels] = set()
        precise = [
            p for p in self.config.plugins.values() if isinstance(p, PrecisePrefixCacheScorer)
        ]
        for scorer in precise:
            # prompts are token ids rendered as text
            scorer.tokenizer = TokenTextTokenizer(token_chars)
        self.kv_feed: KVFeed | None = None
        if precise:
            self.kv_feed = KVFeed([s.processor for s in precise], "", kv_event_delay)

    def address(self, pod: str) -> str:
        """The pod's IP: one per pod name, kept when other pods come and go."""
        found = self.addresses.get(pod)
        if found is None:
            i = len(self.addresses)
            found = self.addresses[pod] = f"10.0.{i // 250}.{i % 250 + 1}"
        return found

    def attach(self, run: PodRun) -> None:
        """A Ready pod: its labels for the filters; its KV events to the precise prefix
        scorers (when configured)."""
        self.labels[run.name] = run.labels
        self.by_address[self.address(run.name)] = run.name
        if self.kv_feed is not None:
            self.kv_feed.attach(run, self.address(run.name))

    def _scrape(self, pods: Sequence[str], engines: Mapping[str, Engine], now: float) -> None:
        """Endpoint metrics as the picker's scrapers read them at this tick."""
        if not self.reads_engines(now, pods):
            return
        self.scraped_at = math.floor(now / SCRAPE_S) * SCRAPE_S
        at = self.scraped_at
        snap = {}
        namespace, labels, none = self.namespace, self.labels, frozenset[str]()
        for pod in pods:  # positional: this runs for every pod at every tick
            eng = engines[pod]
            kv = eng.kv
            size = kv.size
            metrics = EndpointMetrics(
                len(eng.waiting) + len(eng.loading),  # waiting_queue_size
                len(eng.running),  # running_requests_size
                kv.used / size if size else 0.0,  # kv_cache_usage_percent
                none,  # active_models
                none,  # waiting_models
                0,  # max_active_models
                eng.cfg.block_size,  # cache_block_size
                size,  # cache_num_gpu_blocks
                at,  # update_time
            )
            snap[pod] = Endpoint(
                f"{pod}-rank-0",  # name
                namespace,
                pod,  # pod_name
                self.address(pod),
                8000,  # port
                labels.get(pod, {}),
                "",  # metrics_host
                metrics,
            )
        self.snapshot = snap
        self.snapshot_pods = list(pods)
        self.endpoints = tuple(snap.values())
        self.fresh_key = None

    def _text(self, tokens: Sequence[int]) -> str:
        """`token_text`, kept for the prompts seen last (sessions and shared prompts repeat)."""
        key = tuple(tokens)
        text = self.texts.get(key)
        if text is None:
            if len(self.texts) >= TEXT_CACHE:
                self.texts.clear()  # unique prompts (random data): keep memory bounded
            text = self.texts[key] = token_text(tokens, self.token_chars)
        return text

    def reads_engines(self, now: float, pods: Sequence[str]) -> bool:
        """A new tick, or other pods than the snapshot's: the snapshot is taken again. With
        precise prefix scorers, always: every pod's KV events up to `now` are read."""
        if self.kv_feed is not None:
            return True
        return not (
            math.floor(now / SCRAPE_S) * SCRAPE_S <= self.scraped_at
            and (self.snapshot_pods == pods or set(self.snapshot) == set(pods))
        )

    def _fresh(self, now: float) -> Sequence[Endpoint]:
        """`fresh_candidates` of the snapshot at `now`. Every endpoint of a snapshot has its
        update time, so the answer changes only when that one time turns stale: it is kept
        until then."""
        endpoints = self.endpoints
        key = (self.scraped_at, bool(endpoints) and is_stale(endpoints[0], STALENESS_S, now))
        if key != self.fresh_key:
            self.fresh_key = key
            self.fresh = tuple(fresh_candidates(endpoints, now, STALENESS_S))
        return self.fresh

    def pick(
        self,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
        tokens: Sequence[int],
        model: str,
        now: float,
    ) -> str:
        """The pod the picker's cycle sends this request to; SchedulingError when none fits."""
        self._scrape(pods, engines, now)
        if self.kv_feed is not None:
            self.kv_feed.model = model
            self.kv_feed.deliver(now)
        self.count += 1
        request = LLMRequest(
            request_id=f"req-{self.count}",
            incoming_model=model,
            target_model=model,
            api="completions",
            body={"model": model, "prompt": self._text(tokens)},
        )
        candidates = self._fresh(now)
        state = CycleState(rng=self.rng, now=now)
        result = self.runner.schedule_in(state, request, candidates)
        for plugin in self.pre_request:
            plugin.pre_request(state, request, result)
        self.model = model
        if not result.targets:
            self.metrics.record_scheduling(0.0, False)  # the picker's own time is not modelled
            raise SchedulingError("no endpoints available for the given request")
        self.metrics.record_scheduling(0.0, True)
        self.metrics.record_request(model, model, self.token_chars * len(tokens) + 64)
        self.headers = result.headers
        pod = result.targets[0].pod_name
        self.picks[pod] = self.picks.get(pod, 0) + 1
        return pod

    # ---- flow control ----------------------------------------------------------------------
    def route(
        self,
        payload: object,
        tokens: Sequence[int],
        model: str,
        now: float,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
    ) -> list[Released]:
        if self.flow is None:
            return [self._schedule(payload, tokens, model, now, pods, engines)]
        # the request body's bytes: its text and the JSON around it
        size = self.token_chars * len(tokens) + 64
        item = self.flow.queues.enqueue(
            FlowKey(DEFAULT_FAIRNESS_ID, 0), size, now, (payload, tokens, model)
        )
        if isinstance(item, Rejection):
            return [(payload, None, f"request rejected by flow control: {item.message}")]
        self.items[id(payload)] = item
        return self.poll(now, pods, engines)

    def next_poll(self) -> float:
        if self.flow is None or not len(self.flow.queues):
            return math.inf
        return self.polled_at + POLL_S

    def poll(
        self, now: float, pods: Sequence[str], engines: Mapping[str, Engine]
    ) -> list[Released]:
        """One dispatch step of the flow-control queues: what leaves them now."""
        if self.flow is None:
            return []
        self.polled_at = now
        self._scrape(pods, engines, now)
        fresh = self._fresh(now)
        out: list[Released] = []
        for item in self.flow.step(now, lambda _: fresh):
            out.append(self._left(item, now, pods, engines))
        return out

    def queued(self) -> int:
        return len(self.flow.queues) if self.flow is not None else 0

    def cancel(self, payload: object) -> bool:
        item = self.items.pop(id(payload), None)
        return (
            item is not None
            and self.flow is not None
            and self.flow.queues.remove(item, Outcome.EVICTED_CONTEXT_CANCELLED)
        )

    def scrape_into(self, store: SeriesStore, t: float) -> None:
        """Prometheus scraping the picker's `/metrics` at `t`: the pool gauges as of then, the
        flow-control queue, and the request and scheduling counters."""
        self.metrics.set_pool_gauges(pool_gauges(self.snapshot.values(), t, STALENESS_S))
        if self.flow is not None:
            labels = (DEFAULT_FAIRNESS_ID, "0", POOL_NAME, self.model, self.model)
            self.queue_size.gauge(*labels).set(float(len(self.flow.queues)))
            self.queue_bytes.gauge(*labels).set(float(self.flow.queues.bytes))
        target = {"namespace": self.namespace, "pod": EPP_POD}
        self.seen = scrape_registry(store, self.metrics.registry, t, target, self.seen)

    def _left(
        self,
        item: QueueItem[tuple[object, Sequence[int], str]],
        now: float,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
    ) -> Released:
        payload, tokens, model = item.payload
        self.items.pop(id(payload), None)
        if item.outcome is Outcome.DISPATCHED:
            return self._schedule(payload, tokens, model, now, pods, engines)
        if item.outcome is Outcome.EVICTED_TTL:
            ttl = (item.deadline or item.enqueued_at) - item.enqueued_at
            return (
                payload,
                None,
                f"request timed out in queue: not dispatched within its {ttl:g}s TTL",
            )
        return (payload, None, f"internal flow control error: request {item.outcome}")

    def _schedule(
        self,
        payload: object,
        tokens: Sequence[int],
        model: str,
        now: float,
        pods: Sequence[str],
        engines: Mapping[str, Engine],
    ) -> Released:
        try:
            pod = self.pick(pods, engines, tokens, model, now)
        except SchedulingError as e:
            return (payload, None, e.message)
        prefill = self.headers.get(PREFILL_HEADER, "")
        prefill_pod = self.by_address.get(prefill.rsplit(":", 1)[0]) if prefill else None
        if prefill_pod is not None and prefill_pod != pod:
            return (Disaggregated(payload, prefill_pod), pod, None)
        return (payload, pod, None)
