"""Every `pyllmd pd-sidecar` flag answers every bad value with one line naming it (properties).

In-process over the flag parsing and validation plus the `--cert-path` load
that start-up does; tests/e2e/test_epp_cli.py runs a few as processes.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind
from pyllmd.sidecar.config import FLAGS, SUPPORTED_CONNECTORS, SidecarOptions, load_options
from pyllmd.sidecar.run import _ssl_context

SPECS = {spec.name: spec for spec in FLAGS}
GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
ENV = {"INFERENCE_POOL_NAMESPACE": "ns", "INFERENCE_POOL_NAME": "pool"}


def outcome(name: str, argv: Sequence[str]) -> SidecarOptions | str:
    """The options, or the error line (checked: one line naming the flag). Any other
    exception escapes and fails the test: it would be a traceback."""
    try:
        options = load_options(argv, ENV)
        if options.secure_proxy and options.cert_path:
            _ssl_context(options)  # what start-up loads before listening
        return options
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message and "\r" not in message, message
        assert f"--{name}" in message or f'"{name}"' in message, (name, message)
        return message


@SETTINGS
@given(st.sampled_from(sorted(SPECS)), st.text(max_size=40), st.booleans())
def test_any_value_of_any_flag_starts_or_is_refused_in_one_line(
    name: str, value: str, single_dash: bool
) -> None:
    dash = "-" if single_dash else "--"  # Go's flag package takes both
    outcome(name, [f"{dash}{name}={value}"])


@SETTINGS
@given(
    st.sampled_from(sorted(SPECS)),
    st.one_of(
        st.integers().map(str),
        st.sampled_from(sorted(GO_BOOLS | {"", "yes", "0x10", "-1", *SUPPORTED_CONNECTORS})),
    ),
)
def test_typed_looking_values_of_any_flag(name: str, value: str) -> None:
    outcome(name, [f"--{name}={value}"])


@SETTINGS
@given(st.sampled_from(["port", "vllm-port"]), st.integers(-(2**40), 2**40))
def test_ports_are_1_to_65535(name: str, port: int) -> None:
    result = outcome(name, [f"--{name}={port}"])
    assert isinstance(result, SidecarOptions) == (0 < port <= 65535), result
    if isinstance(result, str):
        assert result == f"--{name}: invalid port '{port}'"


@SETTINGS
@given(st.integers(-(2**31), 2**31), st.integers(1, 65535))
def test_data_parallel_ranks_must_fit_below_65536(size: int, port: int) -> None:
    result = outcome("data-parallel-size", [f"--data-parallel-size={size}", f"--port={port}"])
    ok = size >= 1 and port + size - 1 <= 65535 and 8001 + size - 1 <= 65535
    assert isinstance(result, SidecarOptions) == ok, result


@SETTINGS
@given(
    st.sampled_from([n for n, s in SPECS.items() if s.kind is FlagKind.BOOL]),
    st.one_of(st.sampled_from(sorted(GO_BOOLS)), st.text(max_size=8)),
)
def test_booleans_take_go_spellings_only(name: str, value: str) -> None:
    result = outcome(name, [f"--{name}={value}"])
    if value not in GO_BOOLS:
        assert isinstance(result, str) and "strconv.ParseBool" in result
    elif name == "enable-ssrf-protection" and value in {"1", "t", "T", "TRUE", "true", "True"}:
        assert result == "--enable-ssrf-protection is not implemented by pyllmd pd-sidecar"
    else:
        assert isinstance(result, SidecarOptions)


@SETTINGS
@given(st.one_of(st.sampled_from(SUPPORTED_CONNECTORS), st.text(max_size=12)))
def test_connector_is_one_of_the_three(value: str) -> None:
    result = outcome("connector", [f"--connector={value}"])
    assert isinstance(result, SidecarOptions) == (value in SUPPORTED_CONNECTORS), result


def test_every_flag_of_the_table_is_exercised() -> None:
    assert len(SPECS) == len(FLAGS) >= 20
