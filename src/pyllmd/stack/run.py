"""`pyllmd up`: the whole autoscaling loop on one machine.

One process supervises everything: the simulator "pods" of each variant (the
local cluster), a gateway that routes by model and queues while a model has no
ready pod, a real Prometheus (HTTPS, file_sd discovery of the pods), and the
autoscaler controller with the local actuator standing in for the HPA. An admin
endpoint serves the controller's `/metrics`, `/healthz`, `/readyz` and the VAs
with their status at `/apis/llmd.ai/v1alpha1/variantautoscalings`.

The gateway is the stand-in of `gateway.py` by default; with `gateway: envoy-epp`
in the stack file it is a real Envoy and `pyllmd epp` with flow control
(`eppgateway.py`), whose queue gauge the scale-from-zero engine then reads.

Every child (pods, Prometheus, Envoy, the EPP) is supervised: a death is logged and
the child restarted after a back-off. On stop, the gateway ends held and in-flight
requests at once, then every child is stopped in parallel with a short grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import orjson
import yaml
from aiohttp import web

from pyllmd.autoscaler.collect.epp import EppScraper
from pyllmd.autoscaler.collect.prometheus import PrometheusClient, PrometheusOptions
from pyllmd.autoscaler.config import ControllerConfig
from pyllmd.autoscaler.loops.controller import Controller
from pyllmd.autoscaler.loops.scalefromzero import InferencePool, StaticPools
from pyllmd.autoscaler.run import build_controller
from pyllmd.core.clock import RealClock
from pyllmd.core.errors import ConfigError
from pyllmd.core.listen import LOOPBACK, free_port
from pyllmd.epp.config.gateway import ENVOY_EPP, gateway_settings
from pyllmd.stack.envoy import envoy_binary
from pyllmd.stack.eppgateway import EnvoyEppGateway, TargetGroups, pool_groups
from pyllmd.stack.gateway import Gateway
from pyllmd.stack.localcluster import LocalActuator, LocalCluster, LocalSpec, parse_local_spec
from pyllmd.stack.prometheus import PrometheusProcess, prometheus_config
from pyllmd.stack.ui import run_dashboard

log = logging.getLogger(__name__)


DEFAULT_GATEWAY_PORT = 8000
DEFAULT_ADMIN_PORT = 8001
DEFAULT_PROMETHEUS_PORT = 8002
SHUTDOWN_GRACE = 3.0  # seconds a child gets between SIGTERM and SIGKILL when the stack stops


def packaged_stack() -> Path:
    """The default stack file, shipped inside the package."""
    return Path(str(resources.files("pyllmd.stack").joinpath("stack.yaml")))


@dataclass(frozen=True)
class StackOptions:
    """Ports, files and timings of a local stack run (port 0: any free port)."""

    stack_file: Path = field(default_factory=packaged_stack)
    gateway_port: int = DEFAULT_GATEWAY_PORT
    admin_port: int = 0
    prometheus_port: int = 0
    workdir: Path | None = None
    interval: float = 15.0
    scrape_interval: str = "1s"
    fresh_threshold: float = 60.0
    ui: bool = False  # the live terminal dashboard (stack/ui.py); logs go to a file meanwhile


@dataclass(frozen=True)
class StackFile:
    """What a stack file declares: the cluster, and which gateway runs in front of it."""

    spec: LocalSpec
    gateway: str
    epp_config: str


def read_stack_file(path: Path) -> StackFile:
    """Read and validate a stack file; errors are one line naming `--stack` and the file
    (with line and column for YAML syntax errors)."""
    where = f"--stack {path}"
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{where}: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
        raise ConfigError(f"--stack {at}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: {' '.join(str(e).split())}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: the stack file must be a map")
    kind, epp_config = gateway_settings(doc, where)
    spec = parse_local_spec(doc, where)
    for dep in spec.deployments:
        if dep.hpa is not None or dep.scaled_object is not None:
            key = "hpa" if dep.hpa is not None else "scaledObject"
            log.warning(
                "%s: variant %s: its %s is for pyllmd simulate and Kubernetes; pyllmd up's "
                "autoscaler scales the Deployment directly", where, dep.name, key,
            )  # fmt: skip
    return StackFile(spec, kind, epp_config)


def controller_config(opts: StackOptions) -> ControllerConfig:
    """The controller's configuration in the stack: the defaults, with the stack's interval
    and freshness threshold (no flags, environment or config file are read)."""
    return ControllerConfig(
        global_opt_interval=opts.interval,
        prometheus_metrics_cache_fresh_threshold=opts.fresh_threshold,
    )


def check_ports(ports: Mapping[str, int]) -> None:
    """Fail early, naming the flag, when a fixed port is taken or given twice."""
    seen: dict[int, str] = {}
    for flag, port in ports.items():
        if not port:
            continue
        if port in seen:
            raise ConfigError(f"{flag} {port}: the same port as {seen[port]}")
        seen[port] = flag
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                s.bind((LOOPBACK, port))
            except OSError as e:
                why = "address already in use" if e.errno == errno.EADDRINUSE else str(e)
                raise ConfigError(f"{flag} {port}: {why}; choose another with {flag}") from None


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    # shutdown_timeout: a backstop; the gateway itself ends its requests on shutdown
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    return runner


def admin_app(controller: Controller, cluster: LocalCluster) -> web.Application:
    """The controller's endpoints plus a read-only view of the VAs (as the API would list them)."""
    app = web.Application()
    app.add_routes([*controller.health_routes(), *controller.metrics_routes()])

    async def list_vas(_: web.Request) -> web.Response:
        items = [va.to_json() for va in await cluster.list_variant_autoscalings()]
        body = {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscalingList", "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app.router.add_get("/apis/llmd.ai/v1alpha1/variantautoscalings", list_vas)
    return app


def ready_pool(cluster: LocalCluster, model_id: str) -> TargetGroups:
    """file_sd groups of the ready pods serving `model_id`, labelled with their template labels."""
    keys = {
        (va.metadata.namespace, va.spec.scale_target_ref.name)
        for va in cluster.vas.values()
        if va.spec.model_id == model_id
    }
    return pool_groups(
        [
            (LOOPBACK, p.port, d.labels)
            for key in keys
            if (d := cluster.deployments.get(key)) is not None
            for p in d.pods
            if p.ready and p.process.returncode is None
        ]
    )


def single_model(cluster: LocalCluster, where: str) -> str:
    """The one model of the stack; Envoy + one EPP form a single pool, as one InferencePool."""
    models = sorted({va.spec.model_id for va in cluster.vas.values()})
    if len(models) != 1:
        raise ConfigError(
            f"{where}: gateway: {ENVOY_EPP} serves exactly one model, the stack has {models}"
        )
    return models[0]


@dataclass
class RunningStack:
    """The pieces of a running stack, and where to reach them."""

    urls: dict[str, str]
    cluster: LocalCluster
    prometheus: PrometheusProcess
    controller: Controller
    epp: bool = False  # the gateway is a real Envoy with `pyllmd epp`


@dataclass
class _Pieces:
    """What `local_stack` has started so far: all of it is stopped on the way out."""

    cluster: LocalCluster
    scraper: EppScraper = field(default_factory=EppScraper)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    gateway_runner: web.AppRunner | None = None
    epp_gateway: EnvoyEppGateway | None = None
    admin_runner: web.AppRunner | None = None
    prom: PrometheusProcess | None = None
    client: PrometheusClient | None = None

    async def close(self) -> None:
        """Stop in order: loops, then the gateway (held and in-flight requests end now,
        with an error), then every child in parallel."""
        log.info("stopping the local stack")
        self.stop.set()
        for task in self.tasks:  # no decision and no pod restart from here on
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.gateway_runner is not None:
            await self.gateway_runner.cleanup()
        await asyncio.gather(
            *([self.epp_gateway.stop()] if self.epp_gateway is not None else []),
            *([self.admin_runner.cleanup()] if self.admin_runner is not None else []),
            *([self.prom.stop(SHUTDOWN_GRACE)] if self.prom is not None else []),
            self.cluster.close(SHUTDOWN_GRACE),
            return_exceptions=True,
        )
        await self.scraper.close()
        if self.client is not None:
            await self.client.close()


@contextlib.asynccontextmanager
async def local_stack(opts: StackOptions) -> AsyncIterator[RunningStack]:
    """Start every piece; yields them with their URLs; stops everything on exit."""
    stack = read_stack_file(opts.stack_file)
    check_ports(
        {
            "--port": opts.gateway_port,
            "--admin-port": opts.admin_port,
            "--prometheus-port": opts.prometheus_port,
        }
    )
    if stack.gateway == ENVOY_EPP:
        envoy_binary()  # a missing Envoy is a start-up error, before anything starts
    with contextlib.ExitStack() as files:
        workdir = opts.workdir or Path(files.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = LocalCluster(
            stack.spec, targets_file=workdir / "pods.json", log_dir=workdir / "pods"
        )
        model = single_model(cluster, str(opts.stack_file)) if stack.gateway == ENVOY_EPP else ""
        pieces = _Pieces(cluster)
        try:
            await cluster.reconcile()
            pieces.tasks.append(asyncio.create_task(cluster.run()))
            gateway_url, queue_metrics = await _start_gateway(pieces, stack, opts, workdir, model)
            admin_port = opts.admin_port or free_port()
            prom = pieces.prom = _prometheus(opts, workdir, cluster, admin_port, queue_metrics)
            await prom.start()
            controller = await _start_controller(pieces, opts, admin_port, queue_metrics)
            urls = {
                "gateway": gateway_url,
                "admin": f"http://{LOOPBACK}:{admin_port}",
                "prometheus": prom.url,
                "prometheus_ca": str(prom.tls.cert),
                "workdir": str(workdir),
                "pod_logs": str(cluster.log_dir),
                "queue_metrics": queue_metrics,
                "stack": str(opts.stack_file),
            }
            epp = pieces.epp_gateway is not None
            yield RunningStack(urls, cluster, prom, controller, epp=epp)
        finally:
            await pieces.close()


async def _start_gateway(
    pieces: _Pieces, stack: StackFile, opts: StackOptions, workdir: Path, model: str
) -> tuple[str, str]:
    """The stack's gateway (built-in, or Envoy + `pyllmd epp`): its URL and the URL of the
    metrics that hold its queue (what scale from zero reads)."""
    cluster = pieces.cluster
    if stack.gateway == ENVOY_EPP:
        namespaces = sorted({d.namespace for d in cluster.deployments.values()})
        pieces.epp_gateway = EnvoyEppGateway(
            workdir / "gateway",
            opts.gateway_port,
            lambda: ready_pool(cluster, model),
            namespaces[0] if len(namespaces) == 1 else "default",
            stack.epp_config,
        )
        await pieces.epp_gateway.start()
        return pieces.epp_gateway.url, pieces.epp_gateway.metrics_url
    gateway = Gateway(
        lambda model: [p.url for p in cluster.ready_pods(model)],
        lambda: {va.spec.model_id for va in cluster.vas.values()},
    )
    pieces.gateway_runner = await _serve(gateway.app(), opts.gateway_port)
    url = f"http://{LOOPBACK}:{pieces.gateway_runner.addresses[0][1]}"
    return url, url + "/metrics"


def _prometheus(
    opts: StackOptions, workdir: Path, cluster: LocalCluster, admin_port: int, queue_metrics: str
) -> PrometheusProcess:
    """Prometheus scraping the pods, the autoscaler and the gateway (not started yet)."""
    prom_dir = workdir / "prometheus"
    prom_dir.mkdir(exist_ok=True)
    return PrometheusProcess(
        prom_dir,
        opts.prometheus_port or free_port(),
        prometheus_config(
            opts.scrape_interval,
            cluster.targets_file,
            {"wva": [f"{LOOPBACK}:{admin_port}"], "gateway": [_hostport(queue_metrics)]},
        ),
    )


async def _start_controller(
    pieces: _Pieces, opts: StackOptions, admin_port: int, queue_metrics: str
) -> Controller:
    """The autoscaler (built as on Kubernetes, by `build_controller`) with its admin
    endpoint, acting on the local cluster; its loops run until the stack stops."""
    assert pieces.prom is not None
    cluster, clock = pieces.cluster, RealClock()
    pieces.client = PrometheusClient(
        PrometheusOptions(base_url=pieces.prom.url, ca_cert_path=str(pieces.prom.tls.cert)),
        clock,
    )
    pools = StaticPools(
        tuple(
            InferencePool(ns, "gateway", {}, (queue_metrics,))
            for ns in sorted({d.namespace for d in cluster.deployments.values()})
        )
    )
    controller = build_controller(
        controller_config(opts),
        cluster,
        pieces.client,
        pieces.scraper,
        clock,
        pools=pools,
        actuator=LocalActuator(cluster),
    )
    pieces.admin_runner = await _serve(admin_app(controller, cluster), admin_port)
    await controller.bootstrap()
    pieces.tasks.append(asyncio.create_task(controller.run(pieces.stop)))
    return controller


def _hostport(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


def ui_log_file(workdir: Path | None) -> Path:
    """Where the logs go while the dashboard runs: `pyllmd-up.log` in `--workdir`, else a
    new temporary file (kept after exit)."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir / "pyllmd-up.log"
    fd, name = tempfile.mkstemp(prefix="pyllmd-up-logs-", suffix=".log")
    os.close(fd)
    return Path(name)


def _log_to_file(path: Path) -> None:
    """Send the root logger's records to `path` instead of the terminal, same format."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    if root.handlers and root.handlers[0].formatter is not None:
        handler.setFormatter(root.handlers[0].formatter)
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]


async def run_local_stack(opts: StackOptions, stop: asyncio.Event) -> None:
    """Run the stack until `stop` is set, printing where everything is (and, with
    `opts.ui`, the live dashboard below it, the logs going to a file meanwhile)."""
    log_file: Path | None = None
    if opts.ui:
        log_file = ui_log_file(opts.workdir)
        print(f"pyllmd up: logs go to {log_file} while the dashboard runs", flush=True)
        _log_to_file(log_file)
    async with local_stack(opts) as running:
        urls = running.urls
        lines = [
            "pyllmd local stack is up:",
            f"  OpenAI API (gateway): {urls['gateway']}/v1",
            f"  queue metrics:        {urls['queue_metrics']}",
            f"  autoscaler metrics:   {urls['admin']}/metrics",
            f"  VariantAutoscalings:  {urls['admin']}/apis/llmd.ai/v1alpha1/variantautoscalings",
            f"  Prometheus (HTTPS):   {urls['prometheus']}  (CA: {urls['prometheus_ca']})",
            f"  stack file:           {urls['stack']}",
            f"  pod logs:             {urls['pod_logs']}",
            *([f"  logs:                 {log_file}"] if log_file is not None else []),
            "Ctrl-C stops everything (a second Ctrl-C kills at once).",
        ]
        if log_file is None:
            print("\n".join(lines), flush=True)
            await stop.wait()
            return
        options = PrometheusOptions(
            base_url=urls["prometheus"], ca_cert_path=urls["prometheus_ca"], query_timeout=5.0
        )
        async with PrometheusClient(options) as client:
            await run_dashboard(client.query_once, running.epp, lines, stop)
    print(f"pyllmd up: stopped; the logs are in {log_file}", flush=True)
