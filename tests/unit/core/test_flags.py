"""Go-pflag command-line syntax, Go value syntax and Go durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import (
    FlagKind,
    FlagSpec,
    HelpRequested,
    VersionRequested,
    format_duration_ns,
    go_parse_duration_ns,
    is_deprecated_duration,
    parse_duration,
    parse_duration_ns,
    parse_flags,
    parse_go_bool,
    parse_go_float,
    parse_go_int,
    prescan_values,
    usage,
)
from pyllmd.core.logging import klog_flags

SPECS = (
    FlagSpec("port", FlagKind.INT, 8000, "Port"),
    FlagSpec("model", FlagKind.STRING, "", "Model"),
    FlagSpec("ratio", FlagKind.FLOAT, 1.0, "Ratio"),
    FlagSpec("enable", FlagKind.BOOL, False, "Enable"),
    FlagSpec("ttft", FlagKind.DURATION, 0.0, "TTFT"),
    FlagSpec("tags", FlagKind.STRING_LIST, (), "Tags"),
    FlagSpec("names", FlagKind.STRING_LIST, (), "Names", multi_arg=True),
    *klog_flags(),
)


def parse(*argv: str) -> dict[str, object]:
    return dict(parse_flags(argv, SPECS).values)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "9000"], {"port": 9000}),
        (["--port=9000"], {"port": 9000}),
        (["--port", "1", "--port", "2"], {"port": 2}),
        (["--port=0x1F"], {"port": 31}),
        (["--port=010"], {"port": 8}),
        (["--port=1_000"], {"port": 1000}),
        (["--port=-5"], {"port": -5}),
        (["--model", "--port"], {"model": "--port"}),
        (["--model="], {"model": ""}),
        (["--model=a=b"], {"model": "a=b"}),
        (["--ratio", "2.5"], {"ratio": 2.5}),
        (["--ratio=1e3"], {"ratio": 1000.0}),
        (["--enable"], {"enable": True}),
        (["--enable=false"], {"enable": False}),
        (["--enable=T"], {"enable": True}),
        (["--enable=0"], {"enable": False}),
        (["--ttft", "100ms"], {"ttft": 0.1}),
        (["--ttft=1.5s"], {"ttft": 1.5}),
        (["--ttft", "100"], {"ttft": 0.1}),
        (["--tags", "a,b", "--tags", "c"], {"tags": ("a", "b", "c")}),
        (["--tags="], {"tags": ()}),
        (["-v", "4"], {"v": 4}),
        (["-v=5"], {"v": 5}),
        (["-v3"], {"v": 3}),
        (["--v", "1"], {"v": 1}),
        (["--logtostderr=false", "--log_dir", "/x"], {"logtostderr": False, "log_dir": "/x"}),
    ],
)
def test_pflag_syntax(argv: list[str], expected: dict[str, object]) -> None:
    assert parse(*argv) == expected


def test_bool_does_not_take_the_next_argument() -> None:
    parsed = parse_flags(["--enable", "false", "--port", "1"], SPECS)
    assert parsed.values == {"enable": True, "port": 1}
    assert parsed.args == ("false",)


def test_positionals_and_double_dash() -> None:
    parsed = parse_flags(["a", "--port", "1", "-", "b", "--", "--model", "x"], SPECS)
    assert parsed.args == ("a", "-", "b", "--model", "x")
    assert parsed.values == {"port": 1}


def test_multi_arg_flag_takes_values_until_next_double_dash_flag() -> None:
    parsed = parse_flags(["--names", "a", "", "b", "--port", "1", "c"], SPECS)
    assert parsed.values["names"] == ("a", "b")
    assert parsed.values["port"] == 1
    assert parsed.args == ("a", "", "b", "c")


def test_multi_arg_values_may_look_like_short_flags() -> None:
    # Upstream's pre-scan keeps "-v" as a value while pflag still applies it.
    parsed = parse_flags(["--names", "a", "-v", "3"], SPECS)
    assert parsed.values["names"] == ("a", "-v", "3")
    assert parsed.values["v"] == 3


def test_multi_arg_pflag_pass_sees_no_argument() -> None:
    # pflag's own pass treats --names as taking no value, so following words are positional.
    parsed = parse_flags(["--names", "x", "y"], SPECS)
    assert parsed.values["names"] == ("x", "y")
    assert parsed.args == ("x", "y")


@pytest.mark.parametrize(
    ("argv", "found"),
    [
        (["--names", "a", "b"], ["a", "b"]),
        (["--names=a", "b"], ["a"]),
        (["--names", "--port", "1"], []),
        (["--port", "1"], None),
        (["--names", "a", "--names", "b"], ["a"]),
        (["--names", "a", "", "b"], ["a", "b"]),
    ],
)
def test_prescan_values(argv: list[str], found: list[str] | None) -> None:
    assert prescan_values(argv, "names") == found


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unknown flag: --nope"),
        (["--nope=1"], "unknown flag: --nope"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["--port"], "flag needs an argument: --port"),
        (["-v"], "flag needs an argument: 'v' in -v"),
        (["---port"], "bad flag syntax: ---port"),
        (["--=1"], "bad flag syntax: --=1"),
        (
            ["--port", "abc"],
            'invalid argument "abc" for "--port" flag: '
            'strconv.ParseInt: parsing "abc": invalid syntax',
        ),
        (
            ["--port", "99999999999999999999"],
            'invalid argument "99999999999999999999" for "--port" flag: '
            'strconv.ParseInt: parsing "99999999999999999999": value out of range',
        ),
        (
            ["--enable=yes"],
            'invalid argument "yes" for "--enable" flag: '
            'strconv.ParseBool: parsing "yes": invalid syntax',
        ),
        (
            ["--ratio", "x"],
            'invalid argument "x" for "--ratio" flag: '
            'strconv.ParseFloat: parsing "x": invalid syntax',
        ),
        (
            ["--ttft", "1.5"],
            'invalid argument "1.5" for "--ttft" flag: invalid duration format: 1.5',
        ),
        (
            ["-v", "x"],
            'invalid argument "x" for "-v, --v" flag: '
            'strconv.ParseInt: parsing "x": invalid syntax',
        ),
    ],
)
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_flags(argv, SPECS)
    assert str(info.value) == message


def test_errors_stop_at_the_first_bad_argument() -> None:
    with pytest.raises(ConfigError, match="--port"):
        parse_flags(["--port", "x", "--help"], SPECS)
    with pytest.raises(HelpRequested):
        parse_flags(["--help", "--port", "x"], SPECS)


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--port", "1", "-h"]])
def test_help(argv: list[str]) -> None:
    with pytest.raises(HelpRequested) as info:
        parse_flags(argv, SPECS, prog="sim")
    text = info.value.usage
    assert text.startswith("Usage of sim:\n")
    assert "--port int" in text and "(default 8000)" in text
    assert "-v, --v int" in text
    assert "--enable " in text and "--enable bool" not in text
    assert info.value.text == text


@pytest.mark.parametrize("argv", [["--version"], ["--port", "1", "--version", "--help"]])
def test_version_is_requested_like_help(argv: list[str]) -> None:
    with pytest.raises(VersionRequested):
        parse_flags(argv, SPECS, prog="sim")


def test_version_is_a_flag_when_the_command_has_one() -> None:
    specs = (*SPECS, FlagSpec("version", FlagKind.STRING, "", "API version"))
    assert parse_flags(["--version", "v2"], specs).values["version"] == "v2"
    with pytest.raises(ConfigError, match="unknown flag: --versions"):
        parse_flags(["--versions"], SPECS)


def test_usage_is_sorted_and_aligned() -> None:
    lines = usage(SPECS[:3]).splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["--model", "--port", "--ratio"]
    assert (
        len(
            {line.index(word) for line, word in zip(lines, ["Model", "Port", "Ratio"], strict=True)}
        )
        == 1
    )
    assert lines[1].endswith("Port (default 8000)")
    assert lines[2].endswith("Ratio (default 1)")


def test_deprecated_ms_durations_are_reported_with_their_text() -> None:
    assert parse_flags(["--ttft", "100"], SPECS).deprecated_ms == {"ttft": "100"}
    assert parse_flags(["--ttft", "100ms"], SPECS).deprecated_ms == {}
    assert parse_flags(["--ttft", "100", "--ttft=1s"], SPECS).deprecated_ms == {}


# ------------------------------------------------------------ Go values


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_bool_true(text: str) -> None:
    assert parse_go_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_bool_false(text: str) -> None:
    assert parse_go_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "tRuE", " true", "2"])
def test_go_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid syntax"):
        parse_go_bool(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("+7", 7), ("-0x10", -16), ("0o17", 15), ("0b101", 5), ("0_7", 7), ("1_0", 10)],
)
def test_go_int(text: str, value: int) -> None:
    assert parse_go_int(text) == value


@pytest.mark.parametrize("text", ["", "08", "1__0", "_1", "1_", "1.0", "0x", " 1", "١"])
def test_go_int_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_int(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("-2.5", -2.5), (".5", 0.5), ("1e-3", 0.001), ("0x1p-2", 0.25), ("Inf", 1e999)],
)
def test_go_float(text: str, value: float) -> None:
    assert parse_go_float(text) == value


@pytest.mark.parametrize("text", ["", "x", "1.0.0", " 1", "1e", "_1"])
def test_go_float_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_float(text)


# ------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("0s", 0),
        ("-0", 0),
        ("100ms", 100_000_000),
        ("1.5s", 1_500_000_000),
        ("2m", 120_000_000_000),
        ("1h", 3_600_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1h2m3.5s", 3_723_500_000_000),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("250μs", 250_000),
        ("7ns", 7),
        ("-1.5h", -5_400_000_000_000),
        ("+5s", 5_000_000_000),
        (".5s", 500_000_000),
        ("5.s", 5_000_000_000),
        ("1.0000000009s", 1_000_000_000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert go_parse_duration_ns(text) == ns
    assert parse_duration_ns(text) == ns
    assert not is_deprecated_duration(text)


@pytest.mark.parametrize(
    "text", ["", "1", "1.5", "s", ".s", "1x", "1 s", "1sm", "3000000h", "--1s", "1.5.s"]
)
def test_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        go_parse_duration_ns(text)


@pytest.mark.parametrize(("text", "seconds"), [("100", 0.1), ("-20", -0.02), ("+1500", 1.5)])
def test_deprecated_integer_milliseconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert is_deprecated_duration(text)


@pytest.mark.parametrize("text", ["1.5", "abc", "", "0x10", "1_000"])
def test_invalid_duration_message(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"invalid duration format: {text}"
    assert not is_deprecated_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (7, "7ns"),
        (1_500, "1.5µs"),
        (100_000_000, "100ms"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (90_000_000_000, "1m30s"),
        (7_200_000_000_000, "2h0m0s"),
        (-2_500_000, "-2.5ms"),
    ],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert go_parse_duration_ns(format_duration_ns(ns)) == ns


def test_usage_prints_bool_defaults_like_pflag() -> None:
    from pyllmd.core.flags import FlagKind, FlagSpec, usage

    text = usage([FlagSpec("metrics-secure", FlagKind.BOOL, True, "serve metrics over HTTPS")])
    assert "(default true)" in text
