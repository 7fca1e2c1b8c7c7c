"""`pyllmd autoscaler`: the controller on Kubernetes (composition root).

Upstream's start-up order: configuration → Kubernetes client → Prometheus
client and an `up` query retried with backoff (5 s, ×2, 6 steps) → endpoints
→ loops. Any failure before the loops is one line on stderr and exit 1.
The loops are the saturation engine, the scale-from-zero engine (VAs, Deployments
and Namespaces from watch-fed caches, InferencePools of `POOL_GROUP`, EPP pods
scraped with `EPP_METRIC_READER_BEARER_TOKEN`) and the watch-driven targets
pass; with `--leader-elect` they run only on the replica holding the Lease
`LEADER_ELECTION_ID` in `POD_NAMESPACE`, and losing it ends the process with
"leader election lost" (exit 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from pyllmd.autoscaler.collect.epp import EppScraper
from pyllmd.autoscaler.collect.prometheus import (
    PrometheusClient,
    PrometheusMetricsSource,
    PrometheusOptions,
    QueryClient,
)
from pyllmd.autoscaler.collect.queries import PrometheusError
from pyllmd.autoscaler.config import ControllerConfig, load_controller_config
from pyllmd.autoscaler.config_table import engine_settings
from pyllmd.autoscaler.decide.status import StatusBook
from pyllmd.autoscaler.interfaces import Actuator, Cluster
from pyllmd.autoscaler.kube.cache import KubeCache
from pyllmd.autoscaler.kube.cluster import KubeCluster, connect
from pyllmd.autoscaler.kube.pools import KubePools
from pyllmd.autoscaler.loops.controller import Controller, split_bind_address
from pyllmd.autoscaler.loops.metrics import ControllerMetrics
from pyllmd.autoscaler.loops.saturation import SaturationEngine
from pyllmd.autoscaler.loops.scalefromzero import PoolSource, ScaleFromZeroEngine
from pyllmd.core.clock import Clock, RealClock
from pyllmd.core.entry import run_command
from pyllmd.core.errors import ConfigError
from pyllmd.core.kubeauth import KubeAuthorizer
from pyllmd.core.leader import LeaderElector, default_identity
from pyllmd.core.tls import write_self_signed

log = logging.getLogger(__name__)

Runner = Callable[[Callable[[asyncio.Event], Awaitable[None]], str], int]


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (`\\n`, `\\x1b`, ...)."""
    out = []
    for c in text:
        code = ord(c)
        if c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif c in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(c)
    return "".join(out)


def prometheus_options(cfg: ControllerConfig) -> PrometheusOptions:
    """Client settings from the `PROMETHEUS_*` keys."""
    return PrometheusOptions(
        base_url=cfg.prometheus_base_url,
        bearer_token=cfg.prometheus_bearer_token,
        token_path=cfg.prometheus_token_path,
        insecure_skip_verify=cfg.prometheus_tls_insecure_skip_verify,
        ca_cert_path=cfg.prometheus_ca_cert_path,
        client_cert_path=cfg.prometheus_client_cert_path,
        client_key_path=cfg.prometheus_client_key_path,
        server_name=cfg.prometheus_server_name,
    )


def leader_elector(
    cfg: ControllerConfig, kube: KubeCluster | None, clock: Clock, identity: str
) -> LeaderElector:
    """The Lease-based elector of `--leader-elect` (`identity` default `<hostname>_<uuid>`)."""
    if kube is None:
        raise ValueError("build_controller: leader election needs a Kubernetes cluster")
    return LeaderElector(
        kube.client,
        clock,
        name=cfg.leader_election_id,
        namespace=cfg.pod_namespace,
        identity=identity or default_identity(),
        lease_duration=cfg.leader_election_lease_duration,
        renew_deadline=cfg.leader_election_renew_deadline,
        retry_period=cfg.leader_election_retry_period,
    )


def build_controller(
    cfg: ControllerConfig,
    cluster: Cluster,
    client: QueryClient,
    scraper: EppScraper,
    clock: Clock,
    identity: str = "",
    cache: Cluster | None = None,
    *,
    pools: PoolSource | None = None,
    actuator: Actuator | None = None,
) -> Controller:
    """The controller with its engines, wired from `cfg` (no I/O): the one place they are built.

    On Kubernetes (`cluster` a `KubeCluster`): the scale-from-zero engine reads
    through `cache` (default: a new `KubeCache` over `cluster`, whose informers
    start on its first read; the caller closes it), InferencePools come from the
    API server, watch events drive the targets pass, and with `--leader-elect`
    `identity` names this replica in the Lease (default `<hostname>_<uuid>`).
    Elsewhere (the local stack) the engine reads `cluster` itself and `pools` must
    be given. `actuator`, when given, enacts every cycle's decisions.
    """
    kube = cluster if isinstance(cluster, KubeCluster) else None
    if pools is None:
        if kube is None:
            raise ValueError("build_controller: pools are needed outside Kubernetes")
        pools = KubePools(kube, cfg.pool_group, clock=clock)
    if cache is None:
        cache = KubeCache(kube) if kube is not None else cluster
    metrics = ControllerMetrics(cfg.controller_instance)
    source = PrometheusMetricsSource(
        client, fresh_threshold=cfg.prometheus_metrics_cache_fresh_threshold
    )
    settings = engine_settings(cfg)
    engine = SaturationEngine(
        cluster, source, metrics, StatusBook(), clock, settings, actuator=actuator
    )
    from_zero = ScaleFromZeroEngine(
        cache,
        pools,
        scraper,
        metrics,
        clock,
        controller_instance=cfg.controller_instance,
        max_concurrency=cfg.scale_from_zero_engine_max_concurrency,
        watch_namespace=cfg.watch_namespace,
    )
    elector = leader_elector(cfg, kube, clock, identity) if cfg.leader_elect else None
    return Controller(
        engine, metrics, clock, cfg.global_opt_interval, from_zero, events=kube, elector=elector
    )


def metrics_tls(cfg: ControllerConfig) -> ssl.SSLContext | None:
    """TLS for `/metrics` when `--metrics-secure`: the given cert, else a self-signed one.

    Scrapers are then also authenticated and authorized (`core.kubeauth`).
    """
    if not cfg.metrics_secure:
        return None
    if cfg.metrics_cert_path:
        directory = Path(cfg.metrics_cert_path)
        cert, key = directory / cfg.metrics_cert_name, directory / cfg.metrics_cert_key
    else:
        cert, key = write_self_signed(Path(tempfile.mkdtemp(prefix="wva-metrics-")), "metrics")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def wait_for_prometheus(
    client: PrometheusClient, clock: Clock, steps: int = 6, initial: float = 5.0
) -> None:
    """Upstream's connectivity check: `up`, retried with exponential backoff and jitter."""
    delay, rng = initial, random.Random()
    for attempt in range(steps):
        try:
            await client.validate_connectivity()
            return
        except PrometheusError as e:
            if attempt == steps - 1:
                raise ConfigError(f"PROMETHEUS_BASE_URL: Prometheus is not reachable: {e}") from e
            log.warning("prometheus not reachable yet (%s); retrying in %.0fs", e, delay)
            await clock.sleep(delay * (1 + 0.1 * rng.random()))
            delay *= 2


async def serve_controller(cfg: ControllerConfig, stop: asyncio.Event) -> None:
    """Build everything from `cfg` and run until `stop`."""
    clock = RealClock()
    kube = connect(timeout=cfg.rest_client_timeout)
    cluster = KubeCluster(
        kube,
        namespace=cfg.watch_namespace,
        controller_instance=cfg.controller_instance,
        system_namespace=cfg.pod_namespace,
    )
    client = PrometheusClient(prometheus_options(cfg), clock)
    scraper = EppScraper(bearer_token=cfg.epp_metric_reader_bearer_token)
    cache = KubeCache(cluster)
    runners: list[web.AppRunner] = []
    try:
        await wait_for_prometheus(client, clock)
        controller = build_controller(cfg, cluster, client, scraper, clock, cache=cache)
        authorize = KubeAuthorizer(kube, clock).decide if cfg.metrics_secure else None
        for address, routes, tls in (
            (cfg.health_probe_bind_address, controller.health_routes(), None),
            (cfg.metrics_bind_address, controller.metrics_routes(authorize), metrics_tls(cfg)),
        ):
            bind = split_bind_address(address)
            if bind is None:
                continue
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, bind[0], bind[1], ssl_context=tls).start()
            runners.append(runner)
        await controller.bootstrap()
        await controller.run(stop)
    finally:
        for runner in runners:
            await runner.cleanup()
        await cache.close()
        await scraper.close()
        await client.close()
        await cluster.close()


def run_controller(argv: list[str], runner: Runner) -> int:
    """Parse the configuration and run the controller; the exit status."""
    return run_command(
        "pyllmd autoscaler",
        lambda: load_controller_config(argv, os.environ),
        lambda cfg: runner(lambda stop: serve_controller(cfg, stop), "pyllmd autoscaler"),
        verbosity=lambda cfg: cfg.log_verbosity,
        escape=one_line,
    )
