"""`--endpoints-file` (pyllmd extension): file_sd parsing, option checks, following changes."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.core.errors import ConfigError
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.datalayer.filesd import EndpointsFile, parse_endpoints_file
from pyllmd.epp.datastore import Datastore
from pyllmd.epp.options import StaticEndpoint, load_options
from pyllmd.epp.run import build_epp, start_epp
from pyllmd.epp.scheduling.types import Endpoint, EndpointMetrics

LOCAL = ["--bind-address=127.0.0.1", "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0"]


async def no_fetch(url: str) -> str:
    return "vllm:num_requests_waiting 0\n"


def write(path: Path, groups: object) -> Path:
    """Replace `path` atomically, as the local stack does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ parsing


def test_file_sd_groups_become_endpoints_with_their_labels() -> None:
    text = json.dumps(
        [
            {"targets": ["10.0.0.1:8000", "[::1]:8001"], "labels": {"llm-d.ai/role": "decode"}},
            {"targets": ["h.local:9000"], "labels": {"__metrics_path__": "/m", "pod": "p-1"}},
            {"targets": []},
        ]
    )
    assert parse_endpoints_file(text, "e.json") == (
        StaticEndpoint("10.0.0.1", 8000, {"llm-d.ai/role": "decode"}),
        StaticEndpoint("::1", 8001, {"llm-d.ai/role": "decode"}),
        StaticEndpoint("h.local", 9000, {"pod": "p-1"}),
    )


def test_yaml_and_empty_files_are_valid_pools() -> None:
    yaml_text = "- targets: ['127.0.0.1:8000']\n  labels: {app: sim}\n"
    assert parse_endpoints_file(yaml_text, "e.yaml") == (
        StaticEndpoint("127.0.0.1", 8000, {"app": "sim"}),
    )
    assert parse_endpoints_file("[]", "e.json") == ()
    assert parse_endpoints_file("", "e.yml") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "e.json: "),
        ("{}", "want a list of target groups"),
        ("[1]", "group 0: want a map"),
        ('[{"targets": "1.2.3.4:80"}]', "targets must be a list"),
        ('[{"targets": ["1.2.3.4"]}]', 'group 0: "1.2.3.4" is not host:port'),
        ('[{"targets": ["1.2.3.4:0"]}]', "is not host:port"),
        ('[{"targets": ["::1:80"]}]', "is not host:port"),
        ('[{"targets": [80]}]', "80 is not host:port"),
        ('[{"targets": ["a:1"]}, {"targets": ["a:1"]}]', "group 1: a:1 is listed twice"),
        ('[{"targets": ["a:1"], "labels": {"x": 1}}]', "labels must be a map of strings"),
        ('[{"targets": ["a:1"], "labels": {"bad key": "v"}}]', 'invalid label key "bad key"'),
    ],
)
def test_bad_files_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^--endpoints-file e.json") as err:
        parse_endpoints_file(text, "e.json")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ options


def test_endpoints_file_is_an_exclusive_fourth_pool_choice() -> None:
    opts = load_options(["--endpoints-file=/x/e.json"], {})
    assert opts.mode == "file" and opts.endpoints_file == "/x/e.json"
    for other in ("--pool-name=p", "--static-endpoints=1.2.3.4:80", "--endpoint-selector=a=b"):
        with pytest.raises(ConfigError) as err:
            load_options(["--endpoints-file=e.json", other], {"POD_NAME": "a-b-c"})
        assert str(err.value) == (
            "--endpoints-file can not be combined with pool-name, endpoint-selector "
            "or static-endpoints"
        )


def test_build_epp_needs_a_readable_file_with_a_known_suffix(tmp_path: Path) -> None:
    config = load_config_text(None)
    for name, message in (
        ("missing.json", "No such file"),
        ("e.txt", "the name must end in .json, .yml or .yaml"),
    ):
        path = tmp_path / name
        if name.endswith(".txt"):
            path.write_text("[]")
        with pytest.raises(ConfigError, match=message):
            build_epp(load_options([f"--endpoints-file={path}"], {}), config, fetch=no_fetch)


def test_build_epp_loads_the_file_without_kubernetes(tmp_path: Path) -> None:
    path = write(tmp_path / "e.json", [{"targets": ["127.0.0.1:8001"], "labels": {"a": "b"}}])
    argv = [f"--endpoints-file={path}", "--pool-namespace=n", f"--kubeconfig={tmp_path / 'no'}"]
    epp = build_epp(load_options(argv, {}), load_config_text(None), fetch=no_fetch, env={})
    assert [e.namespaced_name for e in epp.datastore.snapshot()] == ["n/127-0-0-1-8001-rank-0"]
    assert epp.datastore.snapshot()[0].labels == {"a": "b"}
    assert epp.datastore.synced and epp.kube is None and epp.discovery is None
    assert epp.endpoints_file is not None


# ------------------------------------------------------------------ following changes


class Changes:
    def __init__(self, datastore: Datastore) -> None:
        self.seen: list[tuple[list[str], list[str]]] = []
        datastore.subscribe(self)

    def __call__(self, added: Sequence[Endpoint], removed: Sequence[str]) -> None:
        self.seen.append(([e.name for e in added], list(removed)))


def test_poll_applies_changes_in_place_and_keeps_metrics(tmp_path: Path) -> None:
    path = write(tmp_path / "e.json", [])
    store = Datastore()
    watcher = EndpointsFile(path, store, "ns")
    watcher.load()
    assert store.synced and len(store) == 0
    changes = Changes(store)
    assert not watcher.poll()  # unchanged

    write(path, [{"targets": ["127.0.0.1:8001"]}])
    assert watcher.poll()
    assert changes.seen == [(["127-0-0-1-8001-rank-0"], [])]
    key = "ns/127-0-0-1-8001-rank-0"
    store.update_metrics(key, EndpointMetrics(waiting_queue_size=3))

    write(path, [{"targets": ["127.0.0.1:8001", "127.0.0.1:8002"]}])
    assert watcher.poll()
    assert store.get(key).metrics.waiting_queue_size == 3  # type: ignore[union-attr]
    write(path, [{"targets": ["127.0.0.1:8002"]}])
    assert watcher.poll()
    assert changes.seen[1:] == [(["127-0-0-1-8002-rank-0"], []), ([], [key])]
    assert [e.name for e in store.snapshot()] == ["127-0-0-1-8002-rank-0"]


def test_bad_or_missing_file_later_keeps_the_last_endpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "e.json", [{"targets": ["127.0.0.1:8001"]}])
    store = Datastore()
    watcher = EndpointsFile(path, store, "ns")
    watcher.load()
    caplog.set_level(logging.WARNING)
    path.write_text("[{")  # a half-written file
    assert not watcher.poll() and not watcher.poll()
    path.unlink()
    assert not watcher.poll() and not watcher.poll()
    assert len(store) == 1 and store.synced
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # once per distinct problem
    assert "keeping the last endpoints" in warnings[0] and "not readable" in warnings[1]
    write(path, [])
    assert watcher.poll() and len(store) == 0


async def test_running_epp_follows_the_file_on_its_clock(tmp_path: Path) -> None:
    path = write(tmp_path / "e.json", [])
    clock = VirtualClock(start=10.0)
    argv = [f"--endpoints-file={path}", *LOCAL, "--metrics-endpoint-auth=false"]
    epp = build_epp(
        load_options(argv, {}), load_config_text(None), clock=clock, rng=random.Random(1),
        fetch=no_fetch,
    )  # fmt: skip
    running = await start_epp(epp)
    try:
        write(path, [{"targets": ["127.0.0.1:8001"]}])
        assert len(epp.datastore) == 0
        await clock.advance(0.25)
        assert [e.name for e in epp.datastore.snapshot()] == ["127-0-0-1-8001-rank-0"]
        assert "default/127-0-0-1-8001-rank-0" in epp.scraper.tasks  # scraping started
    finally:
        await running.close(grace=0)
