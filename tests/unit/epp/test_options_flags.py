"""Every `pyllmd epp` flag answers every bad value with one line naming it (property tests).

In-process over what `run_epp` does before serving (`load_options`, then the
config and the wiring); tests/e2e/test_epp_cli.py runs a few as processes.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind
from pyllmd.core.gosyntax import quote_go
from pyllmd.epp.options import (
    POOL_GROUPS,
    POSITIVE_DURATIONS,
    SERVER_PORTS,
    EppOptions,
    epp_flag_specs,
    load_options,
)
from pyllmd.epp.run import build_epp, load_epp_config

SPECS = {spec.name: spec for spec in epp_flag_specs()}
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
_KUBE_DIR = tempfile.mkdtemp(prefix="epp-flags-")  # a client is built, never used
(Path(_KUBE_DIR) / "kubeconfig").write_text(KUBECONFIG)
ENV = {"POD_NAME": "epp-5d9f7c-abcde", "KUBECONFIG": f"{_KUBE_DIR}/kubeconfig"}
STATIC = "--static-endpoints=127.0.0.1:8000"
NO_AUTH = "--metrics-endpoint-auth=false"
POOL_FLAGS = ("pool-name", "endpoint-selector", "static-endpoints", "endpoints-file")
GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
UNIT_NAMES = sorted(UNITS)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
# Flags whose failures are upstream's texts, which name the flag by another word.
RELATED = {"config-file": "config", "config-text": "config", "kubeconfig": "kubeconfig"}


def argv_for(name: str, value: str) -> list[str]:
    """A start that is valid but for `--name=value` (static endpoints unless `name`
    chooses the pool itself)."""
    flag = f"--{name}={value}"
    if name == "endpoint-selector":
        return [flag, "--endpoint-target-ports=8000", NO_AUTH]
    if name in POOL_FLAGS:
        return [flag, NO_AUTH]
    return [STATIC, NO_AUTH, flag]


def names(message: str, name: str) -> bool:
    """Whether a one-line error names the flag `name` (pflag quotes it, others prefix it)."""
    if f"--{name}" in message or f'"{name}"' in message:
        return True
    if name in POOL_FLAGS and "pool-name or endpoint-selector" in message:
        return True
    return name in RELATED and RELATED[name] in message


def prepare(argv: Sequence[str], env: Mapping[str, str] = ENV) -> EppOptions:
    """`run_epp` up to serving: options, config and wiring (no network I/O)."""
    options = load_options(argv, env)
    build_epp(options, load_epp_config(options, env), env=env)
    return options


def outcome(name: str, argv: Sequence[str]) -> EppOptions | str:
    """The options, or the error line (checked: one line naming the flag). Any other
    exception escapes and fails the test: it would be a traceback."""
    try:
        return prepare(argv)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message and "\r" not in message, message
        assert names(message, name), (name, message)
        return message


@SETTINGS
@given(st.sampled_from(sorted(SPECS)), st.text(max_size=40))
def test_any_value_of_any_flag_starts_or_is_refused_in_one_line(name: str, value: str) -> None:
    outcome(name, argv_for(name, value))


@SETTINGS
@given(
    st.sampled_from(sorted(SPECS)),
    st.one_of(
        st.integers().map(str),
        st.sampled_from(sorted(GO_BOOLS | {"yes", "", " ", "-1", "1e3", "0x10", "1_000"})),
        st.builds(
            lambda n, u: f"{n}{u}", st.integers(-(10**6), 10**6), st.sampled_from(sorted(UNITS))
        ),
    ),
)
def test_typed_looking_values_of_any_flag(name: str, value: str) -> None:
    outcome(name, argv_for(name, value))


@SETTINGS
@given(
    st.sampled_from((*SERVER_PORTS, "model-server-metrics-port")),
    st.integers(-(2**40), 2**40),
)
def test_ports_are_0_to_65535_and_the_server_ports_distinct(name: str, port: int) -> None:
    result = outcome(name, argv_for(name, str(port)))
    others = {int(str(SPECS[n].default)) for n in SERVER_PORTS if n != name}
    ok = 0 <= port <= 65535 and not (name in SERVER_PORTS and port in others)
    assert isinstance(result, EppOptions) == ok, result
    if isinstance(result, EppOptions):
        assert getattr(result, name.replace("-", "_")) == port
    elif not 0 <= port <= 65535:
        zero = "picks a free port" if name in SERVER_PORTS else "scrapes the serving port"
        assert result == f"--{name}: invalid port {port} (0 to 65535; 0 {zero})"
    else:
        pair = re.fullmatch(rf"--([a-z-]+) and --([a-z-]+) are both port {port}", result)
        assert pair is not None and name in pair.groups(), result


@SETTINGS
@given(
    st.sampled_from([n for n, s in SPECS.items() if s.kind is FlagKind.DURATION]),
    st.integers(-(10**6), 10**6),
    st.sampled_from(UNIT_NAMES),
)
def test_durations_need_a_unit_and_a_sign_that_makes_sense(name: str, n: int, unit: str) -> None:
    seconds = n * UNITS[unit]
    result = outcome(name, argv_for(name, f"{n}{unit}"))
    ok = seconds > 0 if name in POSITIVE_DURATIONS else seconds >= 0
    assert isinstance(result, EppOptions) == ok, result
    if isinstance(result, EppOptions):
        assert getattr(result, name.replace("-", "_")) == pytest.approx(seconds)
    bare = outcome(name, argv_for(name, str(n)))  # Go: only "0" goes without a unit
    if n != 0:
        assert isinstance(bare, str) and "missing unit in duration" in bare


@SETTINGS
@given(
    st.sampled_from([n for n, s in SPECS.items() if s.kind is FlagKind.BOOL]),
    st.one_of(st.sampled_from(sorted(GO_BOOLS)), st.text(max_size=8)),
)
def test_booleans_take_go_spellings_only(name: str, value: str) -> None:
    try:
        load_options(argv_for(name, value), ENV)
    except ConfigError as err:
        assert value not in GO_BOOLS, err
        assert str(err) == (
            f'invalid argument {quote_go(value)} for "--{name}" flag: '
            f"strconv.ParseBool: parsing {quote_go(value)}: invalid syntax"
        )
    else:
        assert value in GO_BOOLS


@SETTINGS
@given(
    st.sampled_from(["model-server-metrics-scheme", "pool-group", "zap-encoder"]),
    st.one_of(
        st.sampled_from(["http", "https", *POOL_GROUPS, "json", "console", "HTTP", "JSON"]),
        st.text(max_size=12),
    ),
)
def test_enumerated_values(name: str, value: str) -> None:
    accepted = {
        "model-server-metrics-scheme": {"http", "https"},
        "pool-group": set(POOL_GROUPS),
        "zap-encoder": {"json", "console"},  # given empty is refused too, as by zap
    }[name]
    ok = (value.lower() if name == "zap-encoder" else value) in accepted
    result = outcome(name, argv_for(name, value))
    assert isinstance(result, EppOptions) == ok, result


def test_every_flag_of_the_table_is_exercised() -> None:
    # the generic properties draw from the whole table: nothing is left out by name
    assert len(SPECS) == len(epp_flag_specs()) >= 40
