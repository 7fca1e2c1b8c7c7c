"""`pyllmd epp`: the endpoint picker's composition root (options → config → wiring → servers).

`build_epp` wires the tested pieces without network I/O; `start_epp` opens the
three servers (ext_proc, gRPC health, `/metrics`) and the background loops
(metrics scrapes, pool gauges, prefix-index pruning, and in the pool and
standalone modes the Kubernetes discovery of `datalayer/kube.py`);
`run_epp` is the CLI.

Deviations, on purpose:
* under `--ha-enable-leader-election` pod discovery and the objective/rewrite
  informers run on every replica, not only the leader, so a follower that
  takes over starts warm (readiness still passes only on the leader);
* `--metrics-endpoint-auth=true` reviews scrapers' tokens with the Kubernetes
  API; in static mode with no reachable configuration nothing can be reviewed,
  so every scrape is refused (401 without a token, 403 with one) rather than
  served unauthenticated;
* endpoints whose metrics are older than `--metrics-staleness-threshold` are
  left out of scheduling while a fresher one exists (see `extproc/adapters.py`);
* `--static-endpoints` (extension) needs no Kubernetes at all, nor does
  `--endpoints-file` (extension, `datalayer/filesd.py`: a polled file_sd file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
from aiohttp import web

from pyllmd.core import logging as pylog
from pyllmd.core.clock import Clock, RealClock
from pyllmd.core.entry import run_command
from pyllmd.core.errors import ConfigError
from pyllmd.core.informer import Informer
from pyllmd.core.kubeauth import Decide, KubeAuthorizer, guarded_handler, refuse_all
from pyllmd.core.kubeclient import connect
from pyllmd.core.leader import LeaderElector, default_identity
from pyllmd.core.listen import bind_error
from pyllmd.core.zap import zap_verbosity
from pyllmd.epp.config.loader import (
    EppConfig,
    load_config_file,
    load_config_text,
)
from pyllmd.epp.config.sections import GATE_FLOW_CONTROL, flow_control_config
from pyllmd.epp.datalayer.filesd import EndpointsFile
from pyllmd.epp.datalayer.kube import PodDiscovery, PoolSpec, informers
from pyllmd.epp.datalayer.kvevents import KVEventFeed, kv_event_families, kv_event_feeds
from pyllmd.epp.datalayer.modelscrape import MIN_INTERVAL as MODELS_MIN_INTERVAL
from pyllmd.epp.datalayer.modelscrape import ModelsScraper
from pyllmd.epp.datalayer.scrape import HttpFetcher, Scraper
from pyllmd.epp.datastore import Datastore, endpoints_from_static
from pyllmd.epp.extproc.adapters import (
    DatastoreEndpoints,
    MetricsRecorder,
    ModelRewriter,
    PluginScheduler,
    SaturationAdmission,
)
from pyllmd.epp.extproc.flowcontroller import FlowController, FlowMetrics
from pyllmd.epp.extproc.health import EppHealth, serve_health
from pyllmd.epp.extproc.lifecycle import PluginHooks
from pyllmd.epp.extproc.servicer import ExtProcServicer, serve_epp
from pyllmd.epp.extproc.tls import check_cert_dir
from pyllmd.epp.metrics import CONTENT_TYPE, EppMetrics, pool_gauge_loop
from pyllmd.epp.objectives import Objectives, Rewrites
from pyllmd.epp.options import EppOptions, load_options
from pyllmd.epp.plugins.datalayer.mapping import MetricMapping
from pyllmd.epp.plugins.datalayer.model_server_protocol_metrics import ModelServerProtocolMetrics
from pyllmd.epp.plugins.datalayer.models_data_source import ModelsDataSource
from pyllmd.epp.scheduling.types import Endpoint

if TYPE_CHECKING:
    from lightkube import AsyncClient

__all__ = [
    "Epp",
    "RunningEpp",
    "build_epp",
    "load_epp_config",
    "run_epp",
    "start_epp",
]

log = logging.getLogger(__name__)

PROG = "pyllmd epp"
STATIC_POOL_NAME = "static"  # the `name` label of the inference_pool_* gauges in static mode
PRUNE_INTERVAL = 120.0  # seconds between prefix-index prunes of departed endpoints
AUTH_WARNING = (
    "--metrics-endpoint-auth=true needs the Kubernetes API to review scrapers' tokens and none "
    "is configured (%s): every /metrics scrape is refused; "
    "pass --metrics-endpoint-auth=false to serve metrics"
)
LEASE_SUFFIX = "gateway-api-inference-extension.sigs.k8s.io"
# controller-runtime's default leader-election timings (seconds)
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 2.0


# ------------------------------------------------------------------ wiring


def load_epp_config(options: EppOptions, env: Mapping[str, str]) -> EppConfig:
    """The config of `--config-file`/`--config-text`, else the default one."""
    if options.config_file:
        return load_config_file(options.config_file, env)
    return load_config_text(options.config_text or None, env)


def metric_mapping(options: EppOptions) -> MetricMapping:
    """The scrape mapping of the options' metric specs (spec §4.1)."""
    specs = options.metric_specs
    try:
        return MetricMapping.from_specs(
            specs["total-queued-requests-metric"],
            specs["total-running-requests-metric"],
            specs["kv-cache-usage-percentage-metric"],
            specs["lora-info-metric"],
            specs["cache-info-metric"],
        )
    except ValueError as err:
        raise ConfigError(f"failed to parse metric specs: {err}") from None


def endpoint_mapping(options: EppOptions, config: EppConfig) -> Callable[[Endpoint], MetricMapping]:
    """Per endpoint, the series to scrape: the config's `model-server-protocol-metrics`
    plugin (by engine label), else the flags' mapping."""
    extractor = config.metrics_extractor
    if isinstance(extractor, ModelServerProtocolMetrics):
        return extractor.mapping
    mapping = metric_mapping(options)
    return lambda _endpoint: mapping


@dataclass
class Epp:
    """Everything the servers and loops need, built but not started."""

    options: EppOptions
    config: EppConfig
    clock: Clock
    datastore: Datastore
    metrics: EppMetrics
    scraper: Scraper
    fetcher: HttpFetcher | None
    scheduler: PluginScheduler
    servicer: ExtProcServicer
    health: EppHealth
    kube: AsyncClient | None = None  # pool and standalone modes
    discovery: PodDiscovery | None = None
    informers: list[Informer] = field(default_factory=list)  # objectives and rewrites (pool mode)
    objectives: Objectives | None = None
    rewrites: Rewrites | None = None
    authorize: Decide | None = None  # `/metrics` guard (`--metrics-endpoint-auth`)
    elector: LeaderElector | None = None  # `--ha-enable-leader-election`
    endpoints_file: EndpointsFile | None = None  # `--endpoints-file`
    models_scraper: ModelsScraper | None = None  # `models-data-source` (data layer)
    kv_feeds: list[KVEventFeed] = field(default_factory=list)  # precise prefix scorers


def build_epp(
    options: EppOptions,
    config: EppConfig,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    fetch: Callable[[str], Awaitable[str]] | None = None,
    kube: AsyncClient | None = None,
    env: Mapping[str, str] | None = None,
) -> Epp:
    """Wire the EPP (no network I/O); pool/standalone modes connect `kube` or build a client
    from `--kubeconfig`, `$KUBECONFIG` (in `env`) or the in-cluster config."""
    clock = clock or RealClock()
    rng = rng or random.Random()
    if options.secure_serving and options.cert_path:
        check_cert_dir(Path(options.cert_path))
    datastore, endpoints_file = _datastore(options)
    env = os.environ if env is None else env
    if options.mode not in ("static", "file") or options.ha_enable_leader_election:
        kube = kube or connect(kubeconfig=options.kubeconfig, env=env)
    metrics = EppMetrics(options.pool_name or STATIC_POOL_NAME, datastore.snapshot_tuple)
    kv_feeds = kv_event_feeds(list(config.plugins.values()))
    for family in kv_event_families(kv_feeds):
        metrics.registry.add(family)
    scraper, fetcher = _metrics_scraper(options, config, datastore, clock, fetch, rng)
    discovery, watchers, objectives, rewrites = _discovery(options, kube, datastore)
    scheduler = PluginScheduler(config, clock, rng, metrics, options.metrics_staleness_threshold)
    flow = _flow_control(options, config, clock, metrics)
    servicer = ExtProcServicer(
        scheduler,
        DatastoreEndpoints(datastore),
        admission=SaturationAdmission(config.saturation, clock) if flow is None else None,
        flow_control=flow,
        metrics=MetricsRecorder(metrics),
        observer=PluginHooks(config.plugins.values(), metrics),
        model_rewrite=ModelRewriter(rewrites, rng, metrics) if rewrites is not None else None,
        objective_priority=objectives.priority if objectives is not None else None,
        disable_subset_filter=options.disable_endpoint_subset_filter,
        clock=clock,
        rng=rng,
    )
    elector = _elector(options, kube, clock)
    health = EppHealth(
        lambda: datastore.synced, (lambda: elector.is_leader) if elector is not None else None
    )
    authorize, kube = _metrics_guard(options, kube, clock, env)
    return Epp(
        options, config, clock, datastore, metrics, scraper, fetcher, scheduler, servicer, health,
        kube, discovery, watchers, objectives, rewrites, authorize, elector, endpoints_file,
        _models_scraper(options, config, datastore, clock, fetch, rng),
        kv_feeds,
    )  # fmt: skip


def _datastore(options: EppOptions) -> tuple[Datastore, EndpointsFile | None]:
    """The datastore, filled at once from `--static-endpoints` or `--endpoints-file`."""
    datastore = Datastore()
    if options.mode == "static":
        datastore.set_static(
            endpoints_from_static(
                options.static_endpoints, options.pool_namespace, options.model_server_metrics_port
            )
        )
    endpoints_file = None
    if options.mode == "file":
        endpoints_file = EndpointsFile(
            Path(options.endpoints_file),
            datastore,
            options.pool_namespace,
            options.model_server_metrics_port,
        )
        endpoints_file.load()
    return datastore, endpoints_file


def _metrics_scraper(
    options: EppOptions,
    config: EppConfig,
    datastore: Datastore,
    clock: Clock,
    fetch: Callable[[str], Awaitable[str]] | None,
    rng: random.Random,
) -> tuple[Scraper, HttpFetcher | None]:
    """The metrics scraper, and the HTTP fetcher it owns unless `fetch` is injected."""
    source = config.metrics_source
    fetcher = None
    if fetch is None:
        insecure = getattr(source, "insecure_skip_verify", None)
        if insecure is None:
            insecure = options.model_server_metrics_https_insecure_skip_verify
        fetch = fetcher = HttpFetcher(insecure)
    scraper = Scraper(
        datastore,
        clock,
        interval=options.refresh_metrics_interval,
        scheme=getattr(source, "scheme", None) or options.model_server_metrics_scheme,
        path=getattr(source, "path", None) or options.model_server_metrics_path,
        mapping=endpoint_mapping(options, config),
        fetch=fetch,
        rng=random.Random(rng.random()),
    )
    return scraper, fetcher


def _models_scraper(
    options: EppOptions,
    config: EppConfig,
    datastore: Datastore,
    clock: Clock,
    fetch: Callable[[str], Awaitable[str]] | None,
    rng: random.Random,
) -> ModelsScraper | None:
    """The `/v1/models` loop when `models-data-source` is wired under the data layer."""
    source = config.models_source
    if not isinstance(source, ModelsDataSource):
        return None
    return ModelsScraper(
        datastore,
        clock,
        interval=max(options.refresh_metrics_interval, MODELS_MIN_INTERVAL),
        scheme=source.scheme,
        path=source.path,
        fetch=fetch or HttpFetcher(source.insecure_skip_verify),
        rng=random.Random(rng.random()),
    )


def _flow_control(
    options: EppOptions, config: EppConfig, clock: Clock, metrics: EppMetrics
) -> FlowController | None:
    """The flow controller when the `flowControl` gate is on (it replaces legacy admission)."""
    if not config.enabled(GATE_FLOW_CONTROL):
        return None
    try:
        settings = flow_control_config(config.raw.flow_control)
    except ConfigError as err:
        raise ConfigError(f"failed to load the configuration - {err}") from None
    flow_metrics = FlowMetrics(metrics.registry, options.pool_name)
    return FlowController(settings, config.saturation, clock, flow_metrics)


def lease_name(options: EppOptions) -> str:
    """`epp-<namespace>-<pool or deployment>.gateway-api-inference-extension.sigs.k8s.io`."""
    name = options.pool_name or STATIC_POOL_NAME
    return f"epp-{options.pool_namespace}-{name}.{LEASE_SUFFIX}"


def _elector(options: EppOptions, kube: AsyncClient | None, clock: Clock) -> LeaderElector | None:
    if not options.ha_enable_leader_election or kube is None:
        return None
    return LeaderElector(
        kube,
        clock,
        name=lease_name(options),
        namespace=options.pool_namespace,
        identity=default_identity(),
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY_PERIOD,
    )


def _metrics_guard(
    options: EppOptions, kube: AsyncClient | None, clock: Clock, env: Mapping[str, str]
) -> tuple[Decide | None, AsyncClient | None]:
    """The `/metrics` guard and the client it uses (static mode connects only for it)."""
    if not options.metrics_endpoint_auth:
        return None, kube
    if kube is None:
        try:
            kube = connect(kubeconfig=options.kubeconfig, env=env)
        except ConfigError as err:
            log.warning(AUTH_WARNING, err)
            return refuse_all("no Kubernetes API server is configured to review tokens"), None
    return KubeAuthorizer(kube, clock).decide, kube


def _discovery(
    options: EppOptions, kube: AsyncClient | None, datastore: Datastore
) -> tuple[PodDiscovery | None, list[Informer], Objectives | None, Rewrites | None]:
    """Pod discovery for the mode; objectives and rewrites only in pool mode (spec §3.2)."""
    if kube is None or options.mode in ("static", "file"):
        return None, [], None, None
    common: dict[str, Any] = {
        "metrics_port_override": options.model_server_metrics_port,
        "pool_group": options.pool_group,
    }
    if options.mode == "standalone":
        pool = PoolSpec(dict(options.endpoint_selector), options.endpoint_target_ports)
        discovery = PodDiscovery(
            kube, datastore, options.pool_namespace, static_pool=pool, **common
        )
        return discovery, [], None, None
    discovery = PodDiscovery(
        kube, datastore, options.pool_namespace, pool_name=options.pool_name, **common
    )
    objectives = Objectives(options.pool_name, options.pool_group)
    rewrites = Rewrites(options.pool_name, options.pool_group)
    watchers = informers(kube, options.pool_namespace, objectives, rewrites)
    return discovery, watchers, objectives, rewrites


# ------------------------------------------------------------------ servers


def metrics_app(metrics: EppMetrics, authorize: Decide | None) -> web.Application:
    """`/metrics`, behind `authorize` when given (TokenReview + SubjectAccessReview)."""

    async def handle(_: web.Request) -> web.StreamResponse:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    guarded = handle if authorize is None else guarded_handler(handle, authorize)
    app.router.add_get("/metrics", guarded)
    return app


@dataclass
class RunningEpp:
    """The started servers and loops; `close()` stops them."""

    epp: Epp
    grpc_server: grpc.aio.Server
    grpc_port: int
    health_server: grpc.aio.Server
    health_port: int
    metrics_runner: web.AppRunner
    metrics_port: int
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self, grace: float = 1.0) -> None:
        """Stop accepting, let streams finish for `grace` seconds, stop the loops."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for feed in self.epp.kv_feeds:
            await feed.stop()
        flow = self.epp.servicer.flow_control
        if isinstance(flow, FlowController):
            await flow.close()  # requests still queued fail with 500
        await self.epp.scraper.stop()
        if self.epp.models_scraper is not None:
            await self.epp.models_scraper.stop()
            if isinstance(self.epp.models_scraper.fetch, HttpFetcher):
                await self.epp.models_scraper.fetch.close()
        await self.grpc_server.stop(grace)
        await self.health_server.stop(None)
        await self.metrics_runner.cleanup()
        if self.epp.fetcher is not None:
            await self.epp.fetcher.close()
        if self.epp.kube is not None:
            await self.epp.kube.close()


async def _prune_loop(epp: Epp) -> None:
    while True:
        await epp.clock.sleep(PRUNE_INTERVAL)
        epp.scheduler.prune(e.namespaced_name for e in epp.datastore.snapshot_tuple())


async def _start_loops(epp: Epp) -> list[asyncio.Task[None]]:
    """Start the data sources (scrapes, KV events, discovery, endpoints file) and loops."""
    epp.scraper.start()
    if epp.models_scraper is not None:
        epp.models_scraper.start()
    for feed in epp.kv_feeds:  # the precise prefix scorers' KV-event subscribers
        await feed.start(epp.clock)
    opts = epp.options
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(
            pool_gauge_loop(
                epp.metrics,
                epp.datastore.snapshot_tuple,
                epp.clock,
                opts.refresh_prometheus_metrics_interval,
                opts.metrics_staleness_threshold,
            ),
            name="pool gauges",
        ),
        loop.create_task(_prune_loop(epp), name="prefix prune"),
    ]
    if epp.discovery is not None:
        tasks.append(loop.create_task(epp.discovery.run(), name="pod discovery"))
    if epp.endpoints_file is not None:
        tasks.append(loop.create_task(epp.endpoints_file.run(epp.clock), name="endpoints file"))
    tasks += [loop.create_task(i.run(), name=f"{i.res.__name__} informer") for i in epp.informers]
    return tasks


async def start_epp(epp: Epp) -> RunningEpp:
    """Open the three servers on `--bind-address` and start the loops (port 0 = any)."""
    opts = epp.options
    host = opts.bind_address
    cert = Path(opts.cert_path) if opts.cert_path else None
    for flag, port in (
        ("--grpc-health-port", opts.grpc_health_port),
        ("--grpc-port", opts.grpc_port),
        ("--metrics-port", opts.metrics_port),
    ):
        if (error := bind_error(host, port, flag)) is not None:
            raise ConfigError(error)
    health_server, health_port = await serve_health(epp.health, opts.grpc_health_port, host)
    grpc_server: grpc.aio.Server | None = None
    runner: web.AppRunner | None = None
    try:
        grpc_server, grpc_port = await serve_epp(
            epp.servicer,
            opts.grpc_port,
            host=host,
            secure=opts.secure_serving,
            cert_path=cert,
            health=epp.health if opts.health_checking else None,
            cert_reload=opts.enable_cert_reload,
        )
        runner = web.AppRunner(metrics_app(epp.metrics, epp.authorize), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, opts.metrics_port).start()
        metrics_port = int(cast(Any, runner.addresses[0])[1])
    except BaseException:
        if runner is not None:
            await runner.cleanup()
        if grpc_server is not None:
            await grpc_server.stop(None)
        await health_server.stop(None)
        raise
    tasks = await _start_loops(epp)
    return RunningEpp(
        epp, grpc_server, grpc_port, health_server, health_port, runner, metrics_port, tasks
    )


def _warn_unsupported(options: EppOptions, config: EppConfig) -> None:
    for warning in options.warnings:
        log.warning("%s", warning)


async def serve(epp: Epp, stop: asyncio.Event) -> None:
    """Run the EPP until `stop` is set."""
    running = await start_epp(epp)
    opts = epp.options
    log.info(
        "epp serving ext_proc=%s:%d tls=%s health=%d metrics=%d endpoints=%d",
        opts.bind_address,
        running.grpc_port,
        opts.secure_serving,
        running.health_port,
        running.metrics_port,
        len(epp.datastore),
    )
    try:
        if epp.elector is None:
            await stop.wait()
        elif not await lead(epp.elector, stop):
            raise RuntimeError("leader election lost")
    finally:
        log.info("epp shutting down")
        await running.close()
        if epp.elector is not None:
            await epp.elector.release()


async def lead(elector: LeaderElector, stop: asyncio.Event) -> bool:
    """Campaign, then hold the lease until `stop` (True) or until it is lost (False).

    The servers run all along; readiness follows `elector.is_leader`.
    """
    if not await elector.acquire(stop):
        return True
    log.info("epp is the leader of lease %s/%s", elector.namespace, elector.name)
    return await elector.hold(stop)


def _verbosity(options: EppOptions) -> int:
    """`-v`, unless `--zap-log-level` names a level (an integer is a debug depth)."""
    return zap_verbosity(options.zap_log_level, options.log_verbosity)


Runner = Callable[[Callable[[asyncio.Event], Awaitable[None]], str], int]


def run_epp(argv: Sequence[str], runner: Runner, env: Mapping[str, str] | None = None) -> int:
    """Parse options and config, wire, and serve until a signal; the exit status."""
    env = os.environ if env is None else env

    def load() -> tuple[EppOptions, EppConfig, Epp]:
        options = load_options(argv, env)
        config = load_epp_config(options, env)
        return options, config, build_epp(options, config, env=env)

    def run(loaded: tuple[EppOptions, EppConfig, Epp]) -> int:
        options, config, epp = loaded
        # Set up here rather than by run_command's `verbosity`: a unit test replaces
        # this module's `pylog.setup` to keep pytest's logging.
        pylog.setup(_verbosity(options))
        _warn_unsupported(options, config)
        with contextlib.suppress(KeyboardInterrupt):
            return runner(lambda stop: serve(epp, stop), PROG)
        return 0

    return run_command(PROG, load, run)
