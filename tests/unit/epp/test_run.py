"""`pyllmd epp` composition root: wiring from options, start-up errors, servers, shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyllmd import cli
from pyllmd.core.clock import VirtualClock
from pyllmd.core.errors import ConfigError
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.extproc.adapters import MetricsRecorder
from pyllmd.epp.options import load_options
from pyllmd.epp.requests import Usage
from pyllmd.epp.run import (
    STATIC_POOL_NAME,
    Epp,
    build_epp,
    run_epp,
    start_epp,
)
from pyllmd.epp.saturation import SATURATED_MESSAGE, fresh_candidates
from tests.unit.epp.plugin_helpers import endpoint, request

STATIC = "--static-endpoints=127.0.0.1:8001;llm-d.ai/role=decode,127.0.0.1:8002"
LOCAL = ["--bind-address=127.0.0.1", "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0"]
PREFIX_CONFIG = """
plugins:
- type: prefix-cache-scorer
  parameters: {autoTune: false}
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: prefix-cache-scorer, weight: 10}
  - {pluginRef: queue-scorer, weight: 1}
"""
SIM_METRICS = "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"


async def fake_fetch(url: str) -> str:
    return SIM_METRICS


def epp_for(argv: list[str], config: str | None = None, clock: VirtualClock | None = None) -> Epp:
    options = load_options([STATIC, *argv], {})
    return build_epp(
        options,
        load_config_text(config),
        clock=clock or VirtualClock(start=100.0),
        rng=random.Random(7),
        fetch=fake_fetch,
    )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cli.main(["epp", *args])
    return code, capsys.readouterr().err.splitlines()


# ------------------------------------------------------------------ wiring


def test_build_epp_wires_static_endpoints_and_flags() -> None:
    epp = epp_for(
        ["--refresh-metrics-interval=20ms", "--model-server-metrics-path=m", "--pool-namespace=n"]
    )
    names = [e.namespaced_name for e in epp.datastore.snapshot()]
    assert names == ["n/127-0-0-1-8001-rank-0", "n/127-0-0-1-8002-rank-0"]
    assert epp.datastore.get("n/127-0-0-1-8001-rank-0").labels == {"llm-d.ai/role": "decode"}  # type: ignore[union-attr]
    assert epp.datastore.synced
    assert epp.health.status("") == health_pb2.HealthCheckResponse.SERVING
    assert (epp.scraper.interval, epp.scraper.path, epp.scraper.scheme) == (0.02, "/m", "http")
    assert epp.scraper.url(epp.datastore.snapshot()[0]) == "http://127.0.0.1:8001/m"
    assert epp.metrics.pool_name == STATIC_POOL_NAME
    assert epp.servicer.admission is not None


def test_kubernetes_modes_and_leader_election_need_a_kubeconfig(tmp_path: Path) -> None:
    config = load_config_text(None)
    missing = f"--kubeconfig={tmp_path / 'none'}"
    standalone = ["--endpoint-selector=app=x", "--endpoint-target-ports=8000", missing]
    for argv, env in ((["--pool-name=p", missing], {}), (standalone, {"POD_NAME": "e-1-2"})):
        with pytest.raises(ConfigError, match="unable to get kubeconfig"):
            build_epp(load_options(argv, env), config, env={})
    with pytest.raises(ConfigError, match="unable to get kubeconfig"):
        build_epp(load_options([STATIC, "--ha-enable-leader-election", missing], {}), config)


def test_pool_mode_without_kubeconfig_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = run_cli(["--pool-name=p", f"--kubeconfig={tmp_path / 'none'}"], capsys)
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("pyllmd epp: error: unable to get kubeconfig")


def test_epp_acc_13_unknown_plugin_type_through_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run_cli([STATIC, "--config-text", "plugins:\n- type: bar\n"], capsys)
    assert (code, len(err)) == (1, 1)
    assert err[0] == (
        "pyllmd epp: error: failed to load the configuration - plugin instantiation failed: "
        "plugin type 'bar' is not registered"
    )


def test_epp_acc_15_undefined_plugin_reference_through_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "epp.yaml"
    path.write_text(
        "plugins:\n- type: queue-scorer\n"
        "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: nope\n"
    )
    code, err = run_cli([STATIC, f"--config-file={path}"], capsys)
    assert (code, len(err)) == (1, 1)
    assert err[0].endswith("schedulingProfiles[default] references undefined plugin 'nope'")
    code, err = run_cli([STATIC, f"--config-file={tmp_path / 'missing.yaml'}"], capsys)
    assert (code, len(err)) == (1, 1)
    assert "failed to load config from a file" in err[0]


def test_flag_errors_and_help_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli([], capsys)
    assert (code, err) == (
        1,
        [
            "pyllmd epp: error: either pool-name or endpoint-selector must be set "
            "(or, without Kubernetes, --static-endpoints or --endpoints-file)"
        ],
    )
    assert cli.main(["epp", "--help"]) == 0
    assert "--static-endpoints" in capsys.readouterr().out


# ------------------------------------------------------------------ scheduling


def test_scheduler_runs_pre_request_so_a_repeated_prefix_sticks() -> None:
    clock = VirtualClock(start=100.0)
    epp = epp_for([], PREFIX_CONFIG, clock)
    candidates = [endpoint(f"e{i}-rank-0", port=8000 + i, update_time=100.0) for i in range(3)]
    prompt = "x" * 64 * 6
    first = epp.scheduler.schedule(request(prompt + "a"), candidates).targets[0]
    for suffix in "bcdefg":
        assert epp.scheduler.schedule(request(prompt + suffix), candidates).targets[0] == first
    samples = parse_samples(epp.metrics.render().decode())
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    assert values[("inference_extension_scheduler_attempts_total", (("status", "success"),))] == 7
    assert values[("inference_extension_prefix_indexer_size", ())] == 6
    points = {s.labels.get("extension_point") for s in samples if "plugin_duration" in s.name}
    assert {"PreRequest", "Scorer", "Picker", "ProfilePicker"} <= points
    epp.scheduler.prune([])  # every endpoint left: the index forgets them
    assert values and epp.scheduler.plugins["prefix-cache-scorer"].index.size() == 0  # type: ignore[attr-defined]


def test_stale_endpoints_are_left_out_while_a_fresh_one_exists() -> None:
    epp = epp_for(["--metrics-staleness-threshold=1s"], "plugins:\n- type: queue-scorer\n")
    fresh = endpoint("fresh-rank-0", waiting_queue_size=9, update_time=99.5)
    stale = endpoint("stale-rank-0", port=8001, waiting_queue_size=0, update_time=98.0)
    for _ in range(10):
        assert epp.scheduler.schedule(request(), [fresh, stale]).targets == (fresh,)
    assert fresh_candidates([stale], 100.0, 1.0) == [stale]  # all stale: keep them all


def test_scheduling_failure_is_counted() -> None:
    config = (
        "plugins:\n- type: prefill-filter\n"
        "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: prefill-filter\n"
    )
    epp = epp_for([], config)
    with pytest.raises(Exception, match="no endpoint|failed"):
        epp.scheduler.schedule(request(), [endpoint("e-rank-0", update_time=100.0)])
    text = epp.metrics.render().decode()
    assert 'inference_extension_scheduler_attempts_total{status="failure"} 1' in text


def test_admission_sheds_only_sheddable_requests_when_saturated() -> None:
    epp = epp_for([])
    admission = epp.servicer.admission
    assert admission is not None
    full = [endpoint(f"e{i}-rank-0", waiting_queue_size=5, update_time=100.0) for i in range(2)]
    assert admission.admit(request(priority=-1), full) == SATURATED_MESSAGE
    assert admission.admit(request(priority=0), full) is None


def test_metrics_recorder_feeds_the_registry() -> None:
    epp = epp_for([])
    rec = MetricsRecorder(epp.metrics)
    rec.request_received("m", "t", 100)
    rec.running_changed("m", 1)
    rec.tokens("m", "t", Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10))
    rec.response_done("m", "t", 50, 0.25)
    rec.running_changed("m", -1)
    rec.request_error("m", "t", "BadRequest")
    text = epp.metrics.render().decode()
    assert 'inference_objective_request_total{model_name="m",target_model_name="t"} 1' in text
    assert 'inference_objective_input_tokens_sum{model_name="m",target_model_name="t"} 7' in text
    assert 'inference_objective_output_tokens_sum{model_name="m",target_model_name="t"} 3' in text
    assert 'inference_objective_running_requests{model_name="m"} 0' in text
    assert 'error_code="BadRequest"} 1' in text


# ------------------------------------------------------------------ servers


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url, headers=headers) as r:
        return r.status, await r.text()


async def test_metrics_refused_in_static_mode_without_kubernetes(tmp_path: Path) -> None:
    """Auth on and nothing to review tokens with: refused, never served unauthenticated."""
    from pyllmd.core.clock import RealClock

    missing = f"--kubeconfig={tmp_path / 'none'}"
    epp = build_epp(
        load_options([STATIC, *LOCAL, missing], {}),
        load_config_text(None),
        clock=RealClock(),
        fetch=fake_fetch,
    )
    running = await start_epp(epp)
    try:
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        assert (await _get(url))[0] == 401
        assert (await _get(url, {"Authorization": "Bearer x"}))[0] == 403
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service="readiness"))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert running.grpc_port > 0
    finally:
        await running.close(grace=0)


def test_run_epp_serves_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pyllmd.epp.run.pylog.setup", lambda v: None)  # keep pytest's logging
    seen: list[str] = []

    def runner(main: Callable[[asyncio.Event], Awaitable[None]], prog: str) -> int:
        async def go() -> None:
            stop = asyncio.Event()
            stop.set()  # a signal arrived at once: start, then shut down cleanly
            await main(stop)

        seen.append(prog)
        asyncio.run(go())
        return 0

    argv = [STATIC, *LOCAL, "--secure-serving=false", "--metrics-endpoint-auth=false"]
    assert run_epp(argv, runner, env={}) == 0
    assert seen == ["pyllmd epp"]
