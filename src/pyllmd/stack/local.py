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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web

from pyllmd.autoscaler.collect import PrometheusMetricsSource
from pyllmd.autoscaler.controller import Controller
from pyllmd.autoscaler.engine import EngineSettings, SaturationEngine
from pyllmd.autoscaler.eppscrape import EppScraper
from pyllmd.autoscaler.local import (
    LOOPBACK,
    LocalActuator,
    LocalCluster,
    free_port,
    load_local_spec,
)
from pyllmd.autoscaler.metrics import ControllerMetrics
from pyllmd.autoscaler.promclient import PrometheusClient, PrometheusOptions
from pyllmd.autoscaler.scalefromzero import InferencePool, ScaleFromZeroEngine, StaticPools
from pyllmd.autoscaler.status import StatusBook
from pyllmd.core.clock import RealClock
from pyllmd.core.errors import ConfigError
from pyllmd.stack.eppgateway import (
    ENVOY_EPP,
    EnvoyEppGateway,
    TargetGroups,
    pool_groups,
    read_gateway_settings,
)
from pyllmd.stack.gateway import Gateway
from pyllmd.stack.prometheus import PrometheusProcess, prometheus_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackOptions:
    """Ports, files and timings of a local stack run."""

    stack_file: Path
    gateway_port: int = 8000
    admin_port: int = 0
    prometheus_port: int = 0
    workdir: Path | None = None
    interval: float = 15.0
    scrape_interval: str = "1s"
    fresh_threshold: float = 60.0


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
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


@contextlib.asynccontextmanager
async def local_stack(opts: StackOptions) -> AsyncIterator[RunningStack]:
    """Start every piece; yields them with their URLs; stops everything on exit."""
    with contextlib.ExitStack() as files:
        workdir = opts.workdir or Path(files.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = LocalCluster(load_local_spec(opts.stack_file), targets_file=workdir / "pods.json")
        gateway_kind, epp_config = read_gateway_settings(opts.stack_file)
        model = single_model(cluster, str(opts.stack_file)) if gateway_kind == ENVOY_EPP else ""
        epp_gateway: EnvoyEppGateway | None = None
        runners: list[web.AppRunner] = []
        tasks: list[asyncio.Task[None]] = []
        prom: PrometheusProcess | None = None
        client: PrometheusClient | None = None
        scraper = EppScraper()
        stop = asyncio.Event()
        try:
            await cluster.reconcile()
            tasks.append(asyncio.create_task(cluster.run()))
            if gateway_kind == ENVOY_EPP:
                namespaces = sorted({d.namespace for d in cluster.deployments.values()})
                epp_gateway = EnvoyEppGateway(
                    workdir / "gateway",
                    opts.gateway_port,
                    lambda: ready_pool(cluster, model),
                    namespaces[0] if len(namespaces) == 1 else "default",
                    epp_config,
                )
                await epp_gateway.start()
                gateway_url, queue_metrics = epp_gateway.url, epp_gateway.metrics_url
            else:
                gateway = Gateway(lambda model: [p.url for p in cluster.ready_pods(model)])
                runners.append(await _serve(gateway.app(), opts.gateway_port))
                gateway_url = f"http://{LOOPBACK}:{runners[-1].addresses[0][1]}"
                queue_metrics = gateway_url + "/metrics"
            admin_port = opts.admin_port or free_port()
            prom_dir = workdir / "prometheus"
            prom_dir.mkdir(exist_ok=True)
            prom = PrometheusProcess(
                prom_dir,
                opts.prometheus_port or free_port(),
                prometheus_config(
                    opts.scrape_interval,
                    cluster.targets_file,
                    {"wva": [f"{LOOPBACK}:{admin_port}"], "gateway": [_hostport(queue_metrics)]},
                ),
            )
            await prom.start()
            clock = RealClock()
            client = PrometheusClient(
                PrometheusOptions(base_url=prom.url, ca_cert_path=str(prom.tls.cert)), clock
            )
            metrics = ControllerMetrics()
            engine = SaturationEngine(
                cluster,
                PrometheusMetricsSource(client, fresh_threshold=opts.fresh_threshold),
                metrics,
                StatusBook(),
                clock,
                EngineSettings(),
                actuator=LocalActuator(cluster),
            )
            pools = StaticPools(
                tuple(
                    InferencePool(ns, "gateway", {}, (queue_metrics,))
                    for ns in sorted({d.namespace for d in cluster.deployments.values()})
                )
            )
            from_zero = ScaleFromZeroEngine(cluster, pools, scraper, metrics, clock)
            controller = Controller(engine, metrics, clock, opts.interval, from_zero)
            runners.append(await _serve(admin_app(controller, cluster), admin_port))
            await controller.bootstrap()
            tasks.append(asyncio.create_task(controller.run(stop)))
            urls = {
                "gateway": gateway_url,
                "admin": f"http://{LOOPBACK}:{admin_port}",
                "prometheus": prom.url,
                "prometheus_ca": str(prom.tls.cert),
                "workdir": str(workdir),
                "queue_metrics": queue_metrics,
            }
            yield RunningStack(urls, cluster, prom, controller)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for runner in runners:
                await runner.cleanup()
            if epp_gateway is not None:
                await epp_gateway.stop()
            await scraper.close()
            if client is not None:
                await client.close()
            if prom is not None:
                await prom.stop()
            await cluster.close()


def _hostport(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


async def run_local_stack(opts: StackOptions, stop: asyncio.Event) -> None:
    """Run the stack until `stop` is set, printing where everything is."""
    async with local_stack(opts) as running:
        urls = running.urls
        lines = [
            "pyllmd local stack is up:",
            f"  OpenAI API (gateway): {urls['gateway']}/v1",
            f"  queue metrics:        {urls['queue_metrics']}",
            f"  autoscaler metrics:   {urls['admin']}/metrics",
            f"  VariantAutoscalings:  {urls['admin']}/apis/llmd.ai/v1alpha1/variantautoscalings",
            f"  Prometheus (HTTPS):   {urls['prometheus']}  (CA: {urls['prometheus_ca']})",
            "Ctrl-C stops everything.",
        ]
        print("\n".join(lines), flush=True)
        await stop.wait()
