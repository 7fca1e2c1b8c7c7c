"""Researchers' own plugins through entry points (docs/user-guide/admin/plugins.md).

The example package `examples/pyllmd-example-plugins` is installed into a temporary
directory with pip, and every check that needs it runs in a fresh interpreter with that
directory on PYTHONPATH, as a user's environment would have it installed. A second,
hand-made distribution provides a broken entry point and one that clashes with an
in-tree name.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from pyllmd.epp.config.loader import EppConfig
from pyllmd.epp.extproc.adapters import PluginScheduler
from pyllmd.epp.options import load_options
from pyllmd.epp.plugins import default_registry
from pyllmd.epp.run import build_epp, load_epp_config
from pyllmd.epp.scheduling.registry import Handle
from pyllmd.epp.scheduling.runner import ProfileRunner
from pyllmd.simulate.routing import EppRouter

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pyllmd-example-plugins"
WORKLOADS = ROOT / "tests" / "unit" / "simulate" / "workloads"
TIMEOUT = 120.0

SCORER_CONFIG = """\
plugins:
- type: prefer-pod-scorer
  parameters:
    podNamePrefix: llama-1
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefer-pod-scorer
"""

BROKEN_DIST = "broken_plugins-0.1.dist-info"
BROKEN_ENTRY_POINTS = """\
[pyllmd.epp.plugins]
broken-scorer = no_such_module_for_pyllmd:factory

[pyllmd.sim.latency]
broken-model = no_such_module_for_pyllmd:Calculator

[pyllmd.autoscaler.analyzers]
broken-analyzer = no_such_module_for_pyllmd:make
"""


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed with pip (offline, no build isolation) into a directory."""
    base = tmp_path_factory.mktemp("plugins")
    source = base / "source"  # a copy: the build writes its scratch files next to the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = base / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    return target


CLASH_DIST = "clashing_plugins-0.2.dist-info"
CLASH_ENTRY_POINTS = """\
[pyllmd.epp.plugins]
queue-scorer = no_such_module_for_pyllmd:factory
"""


def fake_distribution(target: Path, dist_info: str, entry_points: str) -> Path:
    """A distribution made of its metadata only: its entry points name a missing module."""
    info = target / dist_info
    info.mkdir()
    name, version = dist_info.removesuffix(".dist-info").split("-")
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def clash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distribution that claims the in-tree type `queue-scorer`."""
    return fake_distribution(tmp_path_factory.mktemp("clash"), CLASH_DIST, CLASH_ENTRY_POINTS)


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distribution whose entry points name a module that does not exist."""
    return fake_distribution(tmp_path_factory.mktemp("broken"), BROKEN_DIST, BROKEN_ENTRY_POINTS)


def env_with(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    return env


def python(code: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with `paths` on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env_with(*paths), check=False,
    )  # fmt: skip


def pyllmd(*argv: str, paths: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`python -m pyllmd ...` with `paths` on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-m", "pyllmd", *argv],
        capture_output=True, text=True, timeout=TIMEOUT, env=env_with(*paths), check=False,
    )  # fmt: skip


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "per_request.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def stack_with(tmp_path: Path, epp_config: str) -> Path:
    stack = tmp_path / "stack.yaml"
    block = textwrap.indent(epp_config, "  ")
    stack.write_text(
        "gateway: envoy-epp\neppConfig: |\n"
        + block
        + (WORKLOADS / "stack.yaml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    return stack


# ------------------------------------------------------------------ the example, used


def test_simulate_routes_as_the_example_scorer_says(tmp_path: Path, example_dir: Path) -> None:
    """`pyllmd simulate` with an eppConfig naming the installed `prefer-pod-scorer`: every
    request goes to the preferred pod (round robin would use both)."""
    stack = stack_with(tmp_path, SCORER_CONFIG)
    workload = WORKLOADS / "shared_prefix_multi_turn.yaml"
    out = tmp_path / "out"
    done = pyllmd(
        "simulate", "--stack", str(stack), "--workload", str(workload), "--output", str(out),
        paths=(example_dir,),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pods = {r["pod"] for r in rows(out)}
    assert pods == {"llama-1"}
    plain = tmp_path / "plain"
    done = pyllmd(
        "simulate", "--stack", str(WORKLOADS / "stack.yaml"), "--workload", str(workload),
        "--output", str(plain),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {r["pod"] for r in rows(plain)} == {"llama-0", "llama-1"}


def test_the_live_endpoint_picker_loads_and_schedules_with_the_example_scorer(
    example_dir: Path,
) -> None:
    """`pyllmd epp --config-text ...` wiring (options, config, servers' scheduler) accepts the
    scorer, and its scheduler picks the endpoint whose pod name has the prefix."""
    done = python(
        f"""
        import random
        from pyllmd.core.clock import SteppingClock
        from pyllmd.epp.options import load_options
        from pyllmd.epp.run import build_epp, load_epp_config
        from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics, LLMRequest

        config = {SCORER_CONFIG!r}
        options = load_options(
            ["--static-endpoints=127.0.0.1:8000", "--metrics-endpoint-auth=false",
             "--config-text", config], {{}})
        clock = SteppingClock()
        epp = build_epp(options, load_epp_config(options, {{}}), clock=clock, env={{}})
        now = clock.now()
        eps = [Endpoint(f"{{p}}-rank-0", "ns", p, f"10.0.0.{{i + 1}}", 8000,
                        metrics=EndpointMetrics(update_time=now))
               for i, p in enumerate(["llama-0", "llama-1", "llama-2"])]
        request = LLMRequest("r1", "m", "m", "completions", {{"model": "m", "prompt": "hi"}})
        result = epp.scheduler.schedule(request, eps)
        print(type(epp.config.plugins["prefer-pod-scorer"]).__module__)
        print(result.targets[0].pod_name)
        """,
        example_dir,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pyllmd_example_plugins.scorer", "llama-1"]


def test_a_wrong_scorer_parameter_is_the_loaders_one_line_error(example_dir: Path) -> None:
    config = SCORER_CONFIG.replace("podNamePrefix: llama-1", "podNamePrefix: 3")
    done = pyllmd(
        "epp", "--static-endpoints=127.0.0.1:8000", "--config-text", config,
        paths=(example_dir,),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert (
        "failed to create plugin 'prefer-pod-scorer' (type: prefer-pod-scorer): json: cannot "
        "unmarshal number into Go struct field PreferPodScorerParameters.podNamePrefix of type "
        "string" in done.stderr
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_sim(example_dir: Path) -> Iterator[str]:
    """`pyllmd sim --latency-calculator linear-load` as a process; its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyllmd", "sim", "--model", "m", "--port", str(port),
         "--latency-calculator", "linear-load", "--time-to-first-token", "20",
         "--inter-token-latency", "2"],
        env=env_with(example_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_live_simulator_answers_with_the_example_latency_model(live_sim: str) -> None:
    client = openai.OpenAI(base_url=live_sim + "/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there"}], max_tokens=3
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 3
    client.close()


def test_the_example_latency_model_computes_its_documented_formula(example_dir: Path) -> None:
    """TTFT = T * running and ITL = I * running, through the simulator's own flag parsing
    and calculator lookup."""
    done = python(
        """
        import random
        from pyllmd.sim.config import load_config
        from pyllmd.sim.engine.latency import LatencyParams, make_calculator
        cfg = load_config(["--model", "m", "--latency-calculator", "linear-load",
                           "--time-to-first-token", "100", "--inter-token-latency", "10"],
                          {}, 0).config
        calc = make_calculator(cfg.latency_calculator, LatencyParams.from_config(cfg))
        rng = random.Random(0)
        print(type(calc).__name__, round(calc.ttft(50, 0, False, 3, rng), 9),
              round(calc.itl(4, rng), 9))
        """,
        example_dir,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["LinearLoadCalculator", "0.3", "0.04"]


def test_the_example_analyzer_resolves_by_its_analyzer_name(example_dir: Path) -> None:
    """`analyzerName: queue-step` selects the plugin, which scales a queued variant up."""
    done = python(
        """
        from pyllmd.autoscaler.decide.analyze import make_analyzer
        from pyllmd.autoscaler.decide.model import (
            ModelGroup, ReplicaMetrics, SaturationConfig, VariantState)
        analyzer = make_analyzer("queue-step")
        group = ModelGroup("m", "ns", (VariantState("v", "ns", "m", current_replicas=2),),
                           (ReplicaMetrics("p0", "v", "ns", "m", queue_length=9),
                            ReplicaMetrics("p1", "v", "ns", "m", queue_length=7)))
        [d] = analyzer.analyze(group, SaturationConfig(), 0.0)
        print(type(analyzer).__name__, d.target_replicas, d.action)
        print(type(make_analyzer("")).__name__, type(make_analyzer("other")).__name__)
        """,
        example_dir,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "QueueStepAnalyzer", "3", "scale-up", "SaturationV1Analyzer", "SaturationV1Analyzer",
    ]  # fmt: skip


# ------------------------------------------------------------------ names and errors


def test_an_unknown_latency_calculator_keeps_upstreams_line() -> None:
    done = pyllmd("sim", "--model", "m", "--latency-calculator", "my-model")
    assert (done.returncode, done.stderr) == (
        1,
        "pyllmd sim: error: unknown latency-calculator my-model, supported calculators are: "
        "constant and per-token\n",
    )


def test_an_unknown_latency_calculator_lists_the_installed_ones(example_dir: Path) -> None:
    done = pyllmd("sim", "--model", "m", "--latency-calculator", "x", paths=(example_dir,))
    assert (done.returncode, done.stderr) == (
        1,
        "pyllmd sim: error: unknown latency-calculator x, supported calculators are: "
        "constant, per-token and linear-load\n",
    )


BROKEN = "'{name} = no_such_module_for_pyllmd:{attr}' (group {group}, package broken-plugins 0.1)"


def test_a_broken_latency_plugin_is_one_line_naming_it(broken_dir: Path) -> None:
    done = pyllmd(
        "sim", "--model", "m", "--latency-calculator", "broken-model", paths=(broken_dir,)
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("pyllmd sim: error: ")
    assert BROKEN.format(name="broken-model", attr="Calculator", group="pyllmd.sim.latency") in (
        done.stderr
    )
    assert "ModuleNotFoundError: No module named 'no_such_module_for_pyllmd'" in done.stderr


def test_a_broken_epp_plugin_fails_only_the_configs_that_name_it(broken_dir: Path) -> None:
    """Naming it: one line naming the entry point. Not naming it: the default config loads."""
    done = pyllmd(
        "epp", "--static-endpoints=127.0.0.1:8000",
        "--config-text", "plugins: [{type: broken-scorer}]",
        paths=(broken_dir,),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        "pyllmd epp: error: failed to load the configuration - plugin instantiation failed: "
        "failed to create plugin 'broken-scorer' (type: broken-scorer): entry point "
    )
    assert BROKEN.format(name="broken-scorer", attr="factory", group="pyllmd.epp.plugins") in (
        done.stderr
    )
    fine = python(
        """
        from pyllmd.epp.config.loader import load_config_text
        cfg = load_config_text(None)
        print(sorted(type(p).__name__ for p in cfg.plugins.values()))
        """,
        broken_dir,
    )
    assert fine.returncode == 0, fine.stderr
    assert "QueueScorer" in fine.stdout


def test_an_in_tree_name_wins_over_a_plugins_with_a_warning_naming_it(clash_dir: Path) -> None:
    done = python(
        """
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        from pyllmd.epp.config.loader import load_config_text
        cfg = load_config_text(None)
        load_config_text(None)  # discovered once: one warning
        print(type(cfg.plugins["queue-scorer"]).__module__)
        """,
        clash_dir,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pyllmd.epp.plugins.scorer.queue_scorer"]
    assert done.stderr == (
        "WARNING entry point 'queue-scorer = no_such_module_for_pyllmd:factory' (group "
        "pyllmd.epp.plugins, package clashing-plugins 0.2) ignored: 'queue-scorer' is an in-tree "
        "name of pyllmd.epp.plugins, which wins\n"
    )


def test_a_broken_analyzer_plugin_is_one_error_naming_it(broken_dir: Path) -> None:
    done = python(
        """
        from pyllmd.autoscaler.decide.analyze import make_analyzer
        from pyllmd.core.plugins import PluginLoadError
        print(type(make_analyzer("saturation")).__name__)
        try:
            make_analyzer("broken-analyzer")
        except PluginLoadError as e:
            print(e)
        """,
        broken_dir,
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "SaturationV2Analyzer"
    assert (
        BROKEN.format(name="broken-analyzer", attr="make", group="pyllmd.autoscaler.analyzers")
        in second
    )
    assert second.endswith("ModuleNotFoundError: No module named 'no_such_module_for_pyllmd'")


# ------------------------------------------------------------------ the same modules


def test_simulate_schedules_with_the_modules_the_live_endpoint_picker_uses() -> None:
    """The EPP scheduling in virtual time (`simulate.routing.EppRouter`) runs a
    `ProfileRunner` over plugin instances of the classes `pyllmd epp` builds from its
    registry, in the same profiles, as the live servers' scheduler does."""
    text = """\
plugins:
- type: prefix-cache-scorer
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: prefix-cache-scorer, weight: 3}
  - {pluginRef: queue-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 2}
  - {pluginRef: max-score-picker}
"""
    router = EppRouter(text, "default", 0)
    options = load_options(
        ["--static-endpoints=127.0.0.1:8000", "--metrics-endpoint-auth=false",
         "--config-text", text], {},
    )  # fmt: skip
    live_config: EppConfig = load_epp_config(options, {})
    live = build_epp(options, live_config, env={})
    assert isinstance(live.scheduler, PluginScheduler)
    assert type(router.runner) is ProfileRunner and type(live.scheduler.runner) is ProfileRunner

    registry = default_registry()

    def built(type_name: str) -> type:
        factory = registry.get(type_name)
        assert factory is not None
        return type(factory(type_name, None, Handle()))

    sim_classes = {name: type(p) for name, p in router.config.plugins.items()}
    live_classes = {name: type(p) for name, p in live.config.plugins.items()}
    assert sim_classes == live_classes
    assert sim_classes == {n: built(p.type_name) for n, p in router.config.plugins.items()}

    def shape(profiles: object) -> list[tuple[str, list[type], list[tuple[type, float]], type]]:
        assert isinstance(profiles, dict)
        return [
            (name, [type(f) for f in p.filters], [(type(s), w) for s, w in p.scorers],
             type(p.picker))
            for name, p in profiles.items()
        ]  # fmt: skip

    assert shape(router.runner.profiles) == shape(live.scheduler.runner.profiles)
    assert json.dumps([s[0] for s in shape(router.runner.profiles)]) == '["default"]'
