"""`pyllmd autoscaler` answers any value of any flag, environment key or config-file key
with either a start (the runner is reached with values its consumers accept) or one
line on stderr naming the flag or key, and exit status 1; never a traceback."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from pyllmd.autoscaler.config import load_controller_config
from pyllmd.autoscaler.config_table import SETTINGS, Setting
from pyllmd.autoscaler.loops.controller import split_bind_address
from pyllmd.autoscaler.run import run_controller
from pyllmd.core.flags import FlagKind

PROG = "pyllmd autoscaler"
BASE_ENV = {"PROMETHEUS_BASE_URL": "https://prometheus.example:9090"}
FLAGS = [s for s in SETTINGS if s.flag]
KEYS = [s for s in SETTINGS if s.key]
SETTINGS_BY_FLAG = {s.flag: s for s in FLAGS}

HOSTS = st.sampled_from(["", "0.0.0.0", "127.0.0.1", "[::1]", "::1", "localhost", "[x]", "a b"])
PORTS = st.one_of(st.integers(-5, 70_000), st.integers(), st.text(max_size=6)).map(str)
UNITS = st.sampled_from(["ns", "us", "ms", "s", "m", "h", "", "d", "x"])


def values(kind: FlagKind) -> st.SearchStrategy[str]:
    """Any text, plus text shaped like the kind's values (where the edge cases are)."""
    shaped: list[st.SearchStrategy[str]] = [
        st.text(max_size=40),
        st.builds(lambda h, p: f"{h}:{p}", HOSTS, PORTS),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    ]
    if kind is FlagKind.DURATION:
        shaped.append(st.builds(lambda n, u: f"{n}{u}", st.integers(-(10**21), 10**21), UNITS))
    if kind is FlagKind.BOOL:
        shaped.append(st.sampled_from(["true", "false", "1", "0", "t", "F", "yes", "TRUE "]))
    if kind is FlagKind.STRING:
        shaped += [
            st.sampled_from(["https://p:9090", "https://[::1", "https://p:99999", "https://p:0"]),
            st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
        ]
    return st.one_of(shaped)


@contextlib.contextmanager
def isolated(env: dict[str, str]) -> Iterator[io.StringIO]:
    """The process environment replaced by `env`, stderr captured, logging restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    err = io.StringIO()
    try:
        with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stderr(err):
            with contextlib.redirect_stdout(io.StringIO()):
                yield err
    finally:
        root.handlers[:], root.level = handlers, level


def start(argv: list[str], env: dict[str, str]) -> tuple[int, str, bool]:
    """(exit status, stderr, whether the runner was reached) of `pyllmd autoscaler argv`."""
    reached: list[str] = []

    def runner(main: Callable[[Any], Awaitable[None]], prog: str) -> int:
        reached.append(prog)
        return 0

    with isolated(env) as err:
        code = run_controller(argv, runner)
    return code, err.getvalue(), bool(reached)


def check(argv: list[str], env: dict[str, str], names: tuple[str, ...]) -> None:
    code, err, reached = start(argv, env)
    if code == 1:
        assert not reached
        assert err.startswith(f"{PROG}: error: ") and err.count("\n") == 1, repr(err)
        assert err.endswith("\n") and any(n in err for n in names), repr(err)
        return
    assert (code, err, reached) == (0, "", True), (code, err)
    cfg = load_controller_config(argv, env)  # what the runner would build from
    for address in (cfg.metrics_bind_address, cfg.health_probe_bind_address):
        bind = split_bind_address(address)
        assert bind is None or 0 <= bind[1] <= 65535
    url = URL(cfg.prometheus_base_url)
    assert url.scheme == "https" and url.host and url.port
    for token in (cfg.prometheus_bearer_token, cfg.epp_metric_reader_bearer_token):
        assert not any(c in token for c in "\r\n\x00")
    if cfg.prometheus_server_name:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_bio(
            ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=cfg.prometheus_server_name
        )


def names_of(s: Setting) -> tuple[str, ...]:
    return tuple(n for n in (f"--{s.flag}" if s.flag else "", s.key) if n)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FLAGS).flatmap(lambda s: st.tuples(st.just(s), values(s.kind))))
@example((SETTINGS_BY_FLAG["metrics-bind-address"], ":99999"))
@example((SETTINGS_BY_FLAG["health-probe-bind-address"], ":99999"))
@example((SETTINGS_BY_FLAG["metrics-bind-address"], ":http"))
@example((SETTINGS_BY_FLAG["health-probe-bind-address"], "[::1]:8081"))
@example((SETTINGS_BY_FLAG["watch-namespace"], "ns\n"))
@example((SETTINGS_BY_FLAG["config-file"], "a\x00b"))
@example((SETTINGS_BY_FLAG["metrics-cert-path"], "/nonexistent"))
def test_every_flag_value(case: tuple[Setting, str]) -> None:
    setting, value = case
    names = names_of(setting)
    if setting.flag == "metrics-cert-path":
        names += ("METRICS_CERT_PATH",)
    check([f"--{setting.flag}={value}"], dict(BASE_ENV), names)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS).flatmap(lambda s: st.tuples(st.just(s), values(s.kind))))
@example((next(s for s in KEYS if s.key == "PROMETHEUS_BASE_URL"), "https://[::1"))
@example((next(s for s in KEYS if s.key == "PROMETHEUS_BEARER_TOKEN"), "a\nb"))
@example((next(s for s in KEYS if s.key == "PROMETHEUS_SERVER_NAME"), ".bad"))
@example((next(s for s in KEYS if s.key == "CONTROLLER_INSTANCE"), "a\n"))
def test_every_environment_value(case: tuple[Setting, str]) -> None:
    setting, value = case
    value = value.replace("\x00", "")  # an environment cannot hold NUL
    env = {**BASE_ENV, setting.key: value}
    check([], env, (setting.key,))


YAML_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), st.one_of(YAML_VALUES, st.nothing()))
def test_every_config_file_value(setting: Setting, value: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump({setting.key: value}, allow_unicode=True))
        env = {} if setting.key == "PROMETHEUS_BASE_URL" else dict(BASE_ENV)
        check([f"--config-file={path}"], env, (setting.key,))


OUT_OF_RANGE = "port 99999 is out of range (0-65535)"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--metrics-bind-address=:99999"],
         f'METRICS_BIND_ADDRESS: invalid address ":99999": {OUT_OF_RANGE}'),
        (["--health-probe-bind-address", ":99999"],
         f'HEALTH_PROBE_BIND_ADDRESS: invalid address ":99999": {OUT_OF_RANGE}'),
        (["--health-probe-bind-address=8081"],
         'HEALTH_PROBE_BIND_ADDRESS: invalid address "8081": missing port in address'),
        (["--metrics-bind-address=::1:8443"],
         'METRICS_BIND_ADDRESS: invalid address "::1:8443": too many colons in address'),
        (["--metrics-bind-address=:https"],
         'METRICS_BIND_ADDRESS: invalid address ":https": port "https" is not a number'),
        (["--watch-namespace=Team_A"],
         'WATCH_NAMESPACE: "Team_A" must be at most 63 lower-case'),
        (["--metrics-cert-path=/nonexistent"],
         'METRICS_CERT_PATH and METRICS_CERT_NAME: file "/nonexistent/tls.crt" not found'),
    ],
)  # fmt: skip
def test_bad_values_say_what_is_wrong(argv: list[str], expected: str) -> None:
    code, err, reached = start(argv, dict(BASE_ENV))
    assert (code, reached) == (1, False)
    assert err.startswith(f"{PROG}: error: {expected}") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("address", "bind"),
    [(":8443", ("0.0.0.0", 8443)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9", ("::1", 9)),
     ("[::]:65535", ("::", 65535)), ("0", None), ("", None), ("localhost:", ("localhost", 0))],
)  # fmt: skip
def test_good_bind_addresses(address: str, bind: tuple[str, int] | None) -> None:
    cfg = load_controller_config([f"--metrics-bind-address={address}"], BASE_ENV)
    assert split_bind_address(cfg.metrics_bind_address) == bind
