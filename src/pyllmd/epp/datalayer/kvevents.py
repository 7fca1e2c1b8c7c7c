"""The precise prefix scorer's data source: ZMQ SUB sockets feeding KV events to its index.

The shell of the kv-events contract §2.1; the scorer and its index are pure
(`plugins/scorer/precise_prefix_cache_scorer.py`, `kvindex/`). `KVEventFeed` is
what the EPP starts and stops per scorer; `kv_event_families` its counters.

Two modes, as upstream: a global socket that binds `zmqEndpoint` (engines
connect to it: our simulator, llm-d-inference-sim, or vLLM given a connect
address), and, with `discoverPods`, one socket per endpoint seen by `Score`
that connects to `tcp://<endpoint address>:<socketPort>` (vLLM binding its
default `tcp://*:5557`), dropped when the endpoint was not seen for 10 minutes.
A socket that fails to bind or connect is retried every 5 s. Each socket
subscribes to the `topicFilter` prefix.

pyzmq's asyncio sockets run on the EPP's loop; a message is decoded and applied
to the index synchronously as it arrives, so there are no worker threads and a
pod's events stay in order. The receive high-water mark is raised well above
libzmq's 1000 so a burst of events is queued, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq
import zmq.asyncio

from pyllmd.core.clock import Clock
from pyllmd.core.metricset import CollectorFamily
from pyllmd.epp.kvindex.events import DecodeError, parse_frames
from pyllmd.epp.kvindex.processor import EventProcessor
from pyllmd.epp.plugins.scorer.precise_prefix_cache_scorer import PrecisePrefixCacheScorer

log = logging.getLogger(__name__)

RETRY_INTERVAL = 5.0  # seconds between attempts of a socket that failed
SUBSCRIPTION_TTL = 600.0  # a discovered endpoint not seen for this long is unsubscribed
EXPIRY_CHECK_INTERVAL = 30.0
RCV_HWM = 100_000
GLOBAL_KEY = "local-subscriber"  # upstream's name of the global socket


def tcp_endpoint(address: str, port: int) -> str:
    """`tcp://ip:port`, an IPv6 address in brackets (upstream forgets them)."""
    host = f"[{address}]" if ":" in address else address
    return f"tcp://{host}:{port}"


@dataclass
class _Seen:
    endpoint: str
    last_seen: float


class PodSubscriptions:
    """Which endpoints' publishers to connect to (pure bookkeeping, clock passed in)."""

    def __init__(self, port: int, ttl: float = SUBSCRIPTION_TTL) -> None:
        self.port = port
        self.ttl = ttl
        self._seen: dict[str, _Seen] = {}

    def touch(self, key: str, address: str, now: float) -> bool:
        """Marks endpoint `key` seen; True when it is new or its address changed."""
        endpoint = tcp_endpoint(address, self.port)
        found = self._seen.get(key)
        self._seen[key] = _Seen(endpoint, now)
        return found is None or found.endpoint != endpoint

    def expire(self, now: float) -> list[str]:
        """Forgets and returns the endpoints not seen for `ttl` seconds."""
        gone = [k for k, s in self._seen.items() if now - s.last_seen >= self.ttl]
        for k in gone:
            del self._seen[k]
        return gone

    def wanted(self) -> dict[str, str]:
        """Endpoint key → address to connect to."""
        return {k: s.endpoint for k, s in self._seen.items()}


class Subscribers:
    """The running SUB sockets, by key; each one's frames go to `processor`."""

    def __init__(
        self,
        processor: EventProcessor,
        topic_filter: str,
        clock: Clock,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.processor = processor
        self.topic_filter = topic_filter.encode()
        self.clock = clock
        self.retry_interval = retry_interval
        self.ctx = zmq.asyncio.Context()
        self.bad_messages = 0  # not 3 frames, or a bad topic or sequence frame
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self.ready: dict[str, asyncio.Event] = {}  # set once a socket is bound/connected

    def endpoints(self) -> dict[str, str]:
        """Key → endpoint of every running subscriber."""
        return {k: e for k, (e, _) in self._tasks.items()}

    def ensure(self, key: str, endpoint: str, bind: bool) -> None:
        """Starts a subscriber for `key` unless one runs on that endpoint (call on the loop)."""
        found = self._tasks.get(key)
        if found is not None:
            if found[0] == endpoint and not found[1].done():
                return
            found[1].cancel()
        self.ready[key] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._run(key, endpoint, bind), name=f"kv-events {key}"
        )
        self._tasks[key] = (endpoint, task)

    def remove(self, key: str) -> None:
        """Stops the subscriber of `key`, if any."""
        found = self._tasks.pop(key, None)
        self.ready.pop(key, None)
        if found is not None:
            found[1].cancel()
            log.debug("kv events: unsubscribed %s (%s)", key, found[0])

    async def close(self) -> None:
        """Stops every subscriber and closes the ZMQ context."""
        tasks = [t for _, t in self._tasks.values()]
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.ctx.destroy(linger=0)

    def on_frames(self, frames: Sequence[bytes]) -> None:
        """One received multipart message → the processor (malformed ones are counted)."""
        try:
            message = parse_frames(frames)
        except DecodeError as e:
            self.bad_messages += 1
            log.debug("kv events: dropped message: %s", e)
            return
        try:
            self.processor.process(message)
        except Exception:  # noqa: BLE001 - one bad message must not stop the subscriber
            self.bad_messages += 1
            log.exception("kv events: failed to apply a message from %s", message.topic)

    async def _run(self, key: str, endpoint: str, bind: bool) -> None:
        while True:
            try:
                await self._session(key, endpoint, bind)
            except zmq.ZMQError as e:
                verb = "bind" if bind else "connect"
                log.error("kv events: cannot %s %s (%s): %s; retrying", verb, endpoint, key, e)
            await self.clock.sleep(self.retry_interval)

    async def _session(self, key: str, endpoint: str, bind: bool) -> None:
        sock = self.ctx.socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, RCV_HWM)
            sock.setsockopt(zmq.SUBSCRIBE, self.topic_filter)
            if bind:
                sock.bind(endpoint)
            else:
                sock.connect(endpoint)
            log.info("kv events: %s %s (%s)", "bound" if bind else "connected", endpoint, key)
            ready = self.ready.get(key)
            if ready is not None:
                ready.set()
            while True:
                self.on_frames(await sock.recv_multipart())
        finally:
            sock.close(linger=0)


class KVEvents:
    """The scorer's event intake: the global socket, discovered pods, and their expiry."""

    def __init__(
        self,
        processor: EventProcessor,
        clock: Clock,
        *,
        zmq_endpoint: str,
        topic_filter: str,
        discover_pods: bool,
        socket_port: int,
    ) -> None:
        self.zmq_endpoint = zmq_endpoint
        self.discover_pods = discover_pods
        self.clock = clock
        self.pods = PodSubscriptions(socket_port)
        self.subscribers = Subscribers(processor, topic_filter, clock)
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the global socket (when configured) and start the expiry loop."""
        if self.zmq_endpoint:
            self.subscribers.ensure(GLOBAL_KEY, self.zmq_endpoint, bind=True)
        if self.discover_pods:
            self._expiry = asyncio.get_running_loop().create_task(
                self._expire_loop(), name="kv-events expiry"
            )

    def seen(self, endpoints: Sequence[tuple[str, str]], now: float) -> None:
        """`Score` saw these (key, address) endpoints: subscribe to new ones."""
        for key, address in endpoints:
            if self.pods.touch(key, address, now):
                self.subscribers.ensure(key, self.pods.wanted()[key], bind=False)

    async def _expire_loop(self) -> None:
        while True:
            await self.clock.sleep(EXPIRY_CHECK_INTERVAL)
            for key in self.pods.expire(self.clock.now()):
                self.subscribers.remove(key)

    async def close(self) -> None:
        """Stop everything started."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        await self.subscribers.close()


class KVEventFeed:
    """The KV-event intake of one precise prefix scorer: started and stopped by the EPP.

    While it runs, its subscribers apply events to the scorer's `processor`, and with
    `discoverPods` the endpoints the scorer sees are subscribed to (`on_endpoints`).
    """

    def __init__(self, scorer: PrecisePrefixCacheScorer) -> None:
        self.scorer = scorer
        self.events: KVEvents | None = None

    @property
    def bad_messages(self) -> int:
        """Messages the running subscribers could not read (0 when stopped)."""
        return self.events.subscribers.bad_messages if self.events is not None else 0

    async def start(self, clock: Clock) -> None:
        """Open the subscribers; `clock` must be the one scheduling cycles are stamped
        with (subscription expiry compares it with the `now` of `Score`)."""
        if self.events is not None:
            return
        s = self.scorer.settings
        self.events = KVEvents(
            self.scorer.processor,
            clock,
            zmq_endpoint=s.zmq_endpoint,
            topic_filter=s.topic_filter,
            discover_pods=s.discover_pods,
            socket_port=s.socket_port,
        )
        await self.events.start()
        if s.discover_pods:
            self.scorer.on_endpoints = self.events.seen

    async def stop(self) -> None:
        """Close every subscriber."""
        self.scorer.on_endpoints = None
        events, self.events = self.events, None
        if events is not None:
            await events.close()


def kv_event_feeds(plugins: Sequence[object]) -> list[KVEventFeed]:
    """One feed per precise prefix scorer among the configured plugins."""
    return [KVEventFeed(p) for p in plugins if isinstance(p, PrecisePrefixCacheScorer)]


Samples = list[tuple[tuple[str, ...], float]]


def kv_event_families(feeds: Sequence[KVEventFeed]) -> list[CollectorFamily]:
    """Counters of every precise scorer and its feed, summed (none when there is none).

    Always: `pyllmd:epp_kv_events_total{outcome}` and `pyllmd:epp_kv_event_batches_total
    {outcome}`; with `kvBlockIndexConfig.enableMetrics`, upstream's `kvcache_index_*`.
    """
    if not feeds:
        return []
    scorers = [f.scorer for f in feeds]

    def events() -> Samples:
        totals = dict.fromkeys(EVENT_OUTCOMES, 0)
        for sc in scorers:
            st = sc.processor.stats
            for outcome, value in zip(
                EVENT_OUTCOMES,
                (st.stored, st.fallback, st.dropped, st.removed, st.cleared, st.bad_events),
                strict=True,
            ):
                totals[outcome] += value
        return [((k,), float(v)) for k, v in totals.items()]

    def batches() -> Samples:
        applied = sum(sc.processor.stats.batches for sc in scorers)
        bad = sum(f.scorer.processor.stats.bad_batches + f.bad_messages for f in feeds)
        lost = sum(sc.processor.sequences.missed for sc in scorers)
        return [(("applied",), applied), (("undecodable",), bad), (("lost",), lost)]

    families = [
        CollectorFamily(
            "pyllmd:epp_kv_events_total", "counter",
            "KV events received by the precise prefix scorer, by what was done with them.",
            ("outcome",), events,
        ),
        CollectorFamily(
            "pyllmd:epp_kv_event_batches_total", "counter",
            "KV event batches: applied, undecodable, or lost (sequence gaps).",
            ("outcome",), batches,
        ),
    ]  # fmt: skip
    instrumented = [sc for sc in scorers if sc.settings.enable_metrics]
    for name, help_text, read in _UPSTREAM_COUNTERS if instrumented else ():
        families.append(
            CollectorFamily(name, "counter", help_text, (), _summed(read, instrumented))
        )
    return families


def _summed(
    read: Callable[[PrecisePrefixCacheScorer], int], scorers: Sequence[PrecisePrefixCacheScorer]
) -> Callable[[], Samples]:
    return lambda: [((), float(sum(read(sc) for sc in scorers)))]


EVENT_OUTCOMES = ("indexed", "fallback", "dropped", "removed", "cleared", "invalid")
_UPSTREAM_COUNTERS: tuple[tuple[str, str, Callable[[PrecisePrefixCacheScorer], int]], ...] = (
    ("kvcache_index_admissions_total", "Total number of KV-block admissions.",
     lambda sc: sc.kv_index.admissions),
    ("kvcache_index_evictions_total", "Total number of KV-block evictions.",
     lambda sc: sc.kv_index.evictions),
    ("kvcache_index_lookup_requests_total", "Total number of index lookups.",
     lambda sc: sc.lookup_stats.lookups),
    ("kvcache_index_lookup_hits_total", "Blocks matched on the best pod, over all lookups.",
     lambda sc: sc.lookup_stats.hits),
    ("kvcache_index_max_pod_hit_count_total", "Blocks matched on the best pod, over all lookups.",
     lambda sc: sc.lookup_stats.hits),
)  # fmt: skip
