"""The precise scorer fed by real ZMQ publishers on loopback (kv-events contract §2.1):
vLLM-shaped batches in the global (bind) mode and from per-pod publishers (`discoverPods`)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import msgpack
import pytest
import zmq
import zmq.asyncio

from pyllmd.core.clock import RealClock
from pyllmd.core.prefix import block_keys
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.datalayer.kvevents import GLOBAL_KEY, KVEventFeed, PodSubscriptions
from pyllmd.epp.kvindex.params import parse_settings
from pyllmd.epp.options import load_options
from pyllmd.epp.plugins.scorer.precise_prefix_cache_scorer import PrecisePrefixCacheScorer
from pyllmd.epp.run import build_epp, start_epp
from tests.unit.epp.plugin_helpers import endpoint, request, state

MODEL = "m"
PROMPT = " ".join(f"shared system prompt sentence number {i}." for i in range(20))
TOK = SimpleTokenizer()


def vllm_batch(tokens: list[int], seq_ts: float = 1.0) -> bytes:
    """One vLLM-style BlockStored for every full block of `tokens` (hashes as vLLM's
    sha256_cbor low 64 bits, parent nil, token ids, block size, no LoRA, GPU)."""
    keys = block_keys(tokens, 16, "")
    full = tokens[: 16 * len(keys)]
    return msgpack.packb([seq_ts, [["BlockStored", keys, None, full, 16, None, None, None]], None])


PROBE = msgpack.packb([0.0, [["BlockRemoved", [1], None]]])


def free_tcp(host: str) -> str:
    with socket.socket() as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


async def until(probe: Callable[[], bool], what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if probe():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def scorer(**events: object) -> PrecisePrefixCacheScorer:
    raw = {
        "indexerConfig": {"tokenizersPoolConfig": {"modelName": MODEL}},
        "kvEventsConfig": events,
    }
    return PrecisePrefixCacheScorer("precise", parse_settings(raw, env={}), TOK)


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


class Publisher:
    """A PUB socket sending 3-frame messages with its own sequence numbers."""

    def __init__(self, sock: zmq.asyncio.Socket, topic: str) -> None:
        self.sock = sock
        self.topic = topic.encode()
        self.seq = 0

    async def send(self, payload: bytes, seq: int | None = None) -> None:
        self.seq = self.seq + 1 if seq is None else seq
        await self.sock.send_multipart([self.topic, self.seq.to_bytes(8, "big"), payload])

    async def handshake(self, received: Callable[[], int]) -> None:
        """Send probes until one arrives: the subscription has propagated."""
        before = received()
        for _ in range(300):
            await self.send(PROBE)
            await asyncio.sleep(0.01)
            if received() > before:
                return
        raise AssertionError("the subscriber never received a probe")


async def test_global_socket_indexes_vllm_batches_and_the_scorer_prefers_that_pod(
    ctx: zmq.asyncio.Context,
) -> None:
    address = free_tcp("127.0.0.1")
    sc = scorer(zmqEndpoint=address, discoverPods=False)
    feed = KVEventFeed(sc)
    await feed.start(RealClock())
    try:
        assert feed.events is not None
        await asyncio.wait_for(feed.events.subscribers.ready[GLOBAL_KEY].wait(), 5)
        sock = ctx.socket(zmq.PUB)
        sock.connect(address)
        pub = Publisher(sock, f"kv@10.0.0.2@{MODEL}")
        stats = sc.processor.stats
        await pub.handshake(lambda: stats.batches)
        await pub.send(vllm_batch(TOK.ids(PROMPT)))
        await until(lambda: stats.stored == 1, "the BlockStored event")
        a, b = endpoint("a-rank-0", "10.0.0.1"), endpoint("b-rank-0", "10.0.0.2")
        st = state(now=time.monotonic())
        scores = sc.score(st, request(PROMPT + " And a question?"), [a, b])
        assert scores == {a.namespaced_name: 0.0, b.namespaced_name: 1.0}
        blocks = len(TOK.ids(PROMPT)) // 16
        assert st.prefix["precise"].matches[b.namespaced_name] == blocks >= 4
        # lost batches are noticed from the sequence numbers
        await pub.send(PROBE, seq=pub.seq + 3)
        await until(lambda: sc.processor.sequences.missed == 2, "the gap to be counted")
        # garbage is counted, never fatal
        await sock.send_multipart([b"kv@10.0.0.2@m", bytes(8), b"\xc1"])
        await sock.send_multipart([b"kv@bad-topic", bytes(8), PROBE])
        await until(lambda: stats.bad_batches == 1, "the bad batch")
        subscribers = feed.events.subscribers
        await until(lambda: subscribers.bad_messages == 1, "the malformed message")
        sock.close(linger=0)
    finally:
        await feed.stop()
    assert feed.events is None


async def test_discovered_pods_are_subscribed_by_address(ctx: zmq.asyncio.Context) -> None:
    # vLLM binds tcp://*:5557: one port, told apart by address
    first = ctx.socket(zmq.PUB)
    port = first.bind_to_random_port("tcp://127.0.0.2")
    second = ctx.socket(zmq.PUB)
    second.bind(f"tcp://127.0.0.3:{port}")
    pubs = {
        "127.0.0.2": Publisher(first, f"kv@127.0.0.2@{MODEL}"),
        "127.0.0.3": Publisher(second, f"kv@127.0.0.3@{MODEL}"),
    }
    sc = scorer(podDiscoveryConfig={"socketPort": port})
    feed = KVEventFeed(sc)
    await feed.start(RealClock())
    try:
        e2, e3 = endpoint("p2-rank-0", "127.0.0.2"), endpoint("p3-rank-0", "127.0.0.3")
        req = request(PROMPT)
        assert sc.score(state(now=time.monotonic()), req, [e2, e3]) == {
            e2.namespaced_name: 0.0,
            e3.namespaced_name: 0.0,
        }
        assert feed.events is not None
        assert feed.events.subscribers.endpoints() == {
            e2.namespaced_name: f"tcp://127.0.0.2:{port}",
            e3.namespaced_name: f"tcp://127.0.0.3:{port}",
        }
        stats = sc.processor.stats
        for pub in pubs.values():
            await pub.handshake(lambda: stats.batches)
        await pubs["127.0.0.3"].send(vllm_batch(TOK.ids(PROMPT)))
        await until(lambda: stats.stored == 1, "the BlockStored event")
        scores = sc.score(state(now=time.monotonic()), req, [e2, e3])
        assert scores == {e2.namespaced_name: 0.0, e3.namespaced_name: 1.0}
        # AllBlocksCleared (e.g. the engine went to sleep): nothing is held any more
        await pubs["127.0.0.3"].send(msgpack.packb([0.0, [["AllBlocksCleared"]]]))
        await until(lambda: stats.cleared == 1, "the clear")
        found = sc.raw_scores(req)
        assert found is not None and found[1] == {}
    finally:
        await feed.stop()
        for pub in pubs.values():
            pub.sock.close(linger=0)


def test_pod_subscriptions_expire_after_ten_minutes_unseen() -> None:
    subs = PodSubscriptions(5557)
    assert subs.touch("ns/a", "10.0.0.1", 0.0)
    assert not subs.touch("ns/a", "10.0.0.1", 100.0)  # seen again: nothing to do
    assert subs.touch("ns/b", "fd00::1", 100.0)
    assert subs.wanted() == {"ns/a": "tcp://10.0.0.1:5557", "ns/b": "tcp://[fd00::1]:5557"}
    assert subs.expire(699.0) == []
    assert subs.expire(700.0) == ["ns/a", "ns/b"]
    assert subs.touch("ns/a", "10.0.0.9", 701.0)  # back, on another address


async def test_the_epp_starts_and_stops_the_subscribers_and_exports_their_counters() -> None:
    address = free_tcp("127.0.0.1")
    config = f"""
plugins:
- type: precise-prefix-cache-scorer
  parameters:
    indexerConfig:
      tokenizersPoolConfig: {{modelName: {MODEL}}}
      kvBlockIndexConfig: {{enableMetrics: true}}
    kvEventsConfig: {{zmqEndpoint: "{address}", discoverPods: false}}
"""
    argv = [
        "--static-endpoints=127.0.0.1:8001", "--bind-address=127.0.0.1", "--grpc-port=0",
        "--grpc-health-port=0", "--metrics-port=0", "--metrics-endpoint-auth=false",
    ]  # fmt: skip

    async def fetch(url: str) -> str:
        return "vllm:num_requests_waiting 0\n"

    epp = build_epp(
        load_options(argv, {}), load_config_text(config), clock=RealClock(), fetch=fetch
    )
    plugin = epp.config.plugins["precise-prefix-cache-scorer"]
    assert isinstance(plugin, PrecisePrefixCacheScorer)
    [feed] = epp.kv_feeds
    assert feed.scorer is plugin
    running = await start_epp(epp)
    try:
        assert feed.events is not None
        await asyncio.wait_for(feed.events.subscribers.ready[GLOBAL_KEY].wait(), 5)
        text = epp.metrics.render().decode()
        assert 'pyllmd:epp_kv_events_total{outcome="indexed"} 0' in text
        assert 'pyllmd:epp_kv_event_batches_total{outcome="lost"} 0' in text
        assert "kvcache_index_admissions_total 0" in text
    finally:
        await running.close(grace=0)
    assert feed.events is None
