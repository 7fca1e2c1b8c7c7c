"""Every flag of `pyllmd sim` and `pyllmd dataset` against junk and boundary values.

Property: a value is either accepted, or refused with exactly one line that names
the flag (exit 1); never a traceback. The simulator's flags go through its
parse-and-validate function in-process (and, when valid, through building a rank's
app, which is everything start-up does before listening); the dataset tool runs
whole. A few cases run as real processes in tests/e2e/test_sim_flags.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pyllmd.cli import main as cli_main
from pyllmd.cli import sim_main
from pyllmd.core.clock import SteppingClock
from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import FlagKind, FlagSpec, HelpRequested
from pyllmd.core.logging import klog_flags
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.config import FakeMetrics, load_config, sim_flag_specs
from pyllmd.sim.dataset.tool import TOOL_FLAGS
from pyllmd.sim.run import build_app

SIM_FLAGS = sim_flag_specs()
KLOG = frozenset(s.name for s in klog_flags())
GOLDENS = Path(__file__).parent / "goldens"

# ------------------------------------------------------------ value strategies

INT_EDGES = (
    0, 1, -1, 2, 7, 8, 9, 10, 11, 100, 101, 1024, 65535, 65536, 99999,
    2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30,
)  # fmt: skip
INT_TEXTS = ("0x10", "0o17", "0b101", "1_000", "+5", "-0", " 1", "1.5", "1e3", "", "abc")
FLOAT_TEXTS = (
    "nan", "NaN", "inf", "-Inf", "+Inf", "1e308", "1e309", "-1e308", "0.3", "-0", "5e-324",
    "0x1p-2", "1_0.5", ".5", "5.", "", "abc",
)  # fmt: skip
DURATION_TEXTS = (
    "0", "1", "-1", "100", "1.5", "1h", "-1s", "250us", "1µs", "1m30s", "2562047h",
    "2562048h", "9223372036854775807", "9223372036854775807ns", "9223372036854775808ns",
    "1e3ms", "nan", "inf", "ms", "", "abc",
)  # fmt: skip
BOOL_TEXTS = ("true", "false", "1", "0", "t", "F", "TRUE", "yes", "", "2", "abc")

# argv elements: no NUL (argv cannot carry it), no surrogates (not valid UTF-8)
junk = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


def ints() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(INT_EDGES).map(str),
        st.integers(min_value=-(2**64), max_value=2**64).map(str),
        st.sampled_from(INT_TEXTS),
        junk,
    )


def floats() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(FLOAT_TEXTS),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
        junk,
    )


def durations() -> st.SearchStrategy[str]:
    units = st.sampled_from(("ns", "us", "µs", "ms", "s", "m", "h", ""))
    numbers = st.one_of(st.integers(-(10**20), 10**20).map(str), st.floats().map(repr))
    return st.one_of(
        st.sampled_from(DURATION_TEXTS),
        st.tuples(numbers, units).map("".join),
        junk,
    )


def json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(INT_EDGES),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        junk,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(junk, inner, max_size=4)
        ),
        max_leaves=8,
    )


FAKE_KEYS = tuple(field.alias or name for name, field in FakeMetrics.model_fields.items())
LORA_KEYS = ("name", "path", "base_model_name")


def fake_metrics_json() -> st.SearchStrategy[str]:
    known = st.dictionaries(st.sampled_from(FAKE_KEYS), json_values(), max_size=4)
    success = st.dictionaries(
        st.sampled_from(("stop", "length", "tool_calls", "bogus", "")),
        st.sampled_from(INT_EDGES),
        max_size=3,
    ).map(lambda d: {"request-success-total": d})
    buckets = st.tuples(
        st.sampled_from(FAKE_KEYS[3:17]), st.lists(st.sampled_from(INT_EDGES), max_size=25)
    ).map(lambda kv: {kv[0]: list(kv[1])})
    return st.one_of(
        st.one_of(known, success, buckets, json_values()).map(json.dumps),
        st.just("NaN"),
        st.just('{"kv-cache-usage": NaN}'),
        junk,
    )


def lora_json() -> st.SearchStrategy[str]:
    module = st.dictionaries(st.sampled_from(LORA_KEYS), st.one_of(junk, st.just("m")))
    return st.one_of(st.one_of(module, json_values()).map(json.dumps), junk)


def values_for(spec: FlagSpec) -> st.SearchStrategy[list[str]]:
    """argv elements after `--<name>` (or its `=` form) for one flag."""
    name = spec.name
    if spec.multi_arg:
        item = {"fake-metrics": fake_metrics_json(), "lora-modules": lora_json()}.get(name, junk)
        # pflag reads an element starting with "-" as the next flag (as upstream), not a value
        items = st.lists(item.filter(lambda v: not v.startswith("-")), max_size=3)
        return st.one_of(
            items.map(lambda vs: [f"--{name}", *vs]),
            item.map(lambda v: [f"--{name}={v}"]),
        )
    if spec.kind is FlagKind.BOOL:
        return st.one_of(
            st.just([f"--{name}"]),
            st.one_of(st.sampled_from(BOOL_TEXTS), junk).map(lambda v: [f"--{name}={v}"]),
        )
    value = {
        FlagKind.INT: ints(),
        FlagKind.FLOAT: floats(),
        FlagKind.DURATION: durations(),
    }.get(spec.kind, junk)
    if name == "config":  # a path: junk, never a file to block on
        value = st.one_of(junk.map(lambda v: "no-such-dir/" + v), st.just("/"), st.just(""))
    return st.one_of(
        value.map(lambda v: [f"--{name}", v]),
        value.map(lambda v: [f"--{name}={v}"]),
    )


def flag_and_values(specs: tuple[FlagSpec, ...]) -> st.SearchStrategy[tuple[str, list[str]]]:
    return st.sampled_from(specs).flatmap(lambda s: values_for(s).map(lambda v: (s.name, v)))


def names_the_flag(line: str, name: str) -> bool:
    """The error names the flag (`--name`, or its bare name in upstream's wording)."""
    return f"--{name}" in line or name in line


# ------------------------------------------------------------ pyllmd sim

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_sim_argv(name: str, argv: list[str]) -> None:
    try:
        loaded = load_config(["--model", "m", *argv], {"POD_IP": "10.0.0.1"}, 7, "pyllmd sim")
    except ConfigError as e:
        text = str(e)
        assert "\n" not in text and text, argv
        assert names_the_flag(text, name), (argv, text)
        return
    except HelpRequested:
        assert any(a in ("--help", "-h") for a in argv[1:]) or "h" in argv[-1], argv
        return
    cfg = loaded.config
    assert 0 < cfg.port <= 65535 and cfg.port + cfg.data_parallel_size - 1 <= 65535
    for value in (cfg.time_factor_under_load, cfg.max_tool_call_number_param):
        assert math.isfinite(value)
    try:  # everything start-up does before listening (the dataset is opened here)
        build_app(cfg, cfg.port, SteppingClock(), SimpleTokenizer())
    except ConfigError as e:  # printed through one_line by sim_main
        assert names_the_flag(str(e), name), (argv, str(e))


@SETTINGS
@given(flag_and_values(SIM_FLAGS))
@example(("port", ["--port", "99999"]))
@example(("port", ["--port", "65536"]))
@example(("port", ["--port", "0"]))
@example(("data-parallel-size", ["--data-parallel-size", "8", "--port", "65530"]))
@example(("zmq-endpoint", ["--zmq-endpoint", "tcp://localhost:99999"]))
@example(("zmq-endpoint", ["--zmq-endpoint", "tcp://localhost:0"]))
@example(("time-factor-under-load", ["--time-factor-under-load", "NaN"]))
@example(("config", ["--config", "no-such-dir/x.yaml"]))
@example(("dataset-path", ["--dataset-path", "no-such-dir/x.sqlite3"]))
def test_every_sim_flag_value_is_accepted_or_refused_in_one_line(
    case: tuple[str, list[str]],
) -> None:
    check_sim_argv(*case)


@SETTINGS
@given(st.sampled_from(SIM_FLAGS), st.one_of(junk, st.sampled_from(INT_EDGES).map(str)))
def test_every_sim_yaml_key_is_accepted_or_refused_in_one_line(spec: FlagSpec, value: str) -> None:
    if spec.name == "config" or spec.name in KLOG:
        return  # not YAML keys: the file itself, and klog's flags
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.yaml"
        path.write_text(f"{spec.name}: {json.dumps(value)}\n", encoding="utf-8")
        check_sim_argv(spec.name, ["--config", str(path)])


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--port", "99999"], "--port: invalid port '99999'"),
        (["--port", "-1"], "--port: invalid port '-1'"),
        (
            ["--port", "65535", "--data-parallel-size", "2"],
            "--data-parallel-size: invalid port '65536' (rank 1 listens on --port + 1)",
        ),
        (
            ["--zmq-endpoint", "tcp://localhost:99999"],
            "--zmq-endpoint: invalid port '99999' in 'tcp://localhost:99999'",
        ),
        (
            ["--zmq-endpoint", "tcp://127.0.0.1:"],
            "--zmq-endpoint: invalid port '' in 'tcp://127.0.0.1:'",
        ),
        (["--zmq-endpoint", "tcp://127.0.0.1"], "--zmq-endpoint: no port in 'tcp://127.0.0.1'"),
        (["--mode", "a\nb\x1b"], "--mode: invalid mode 'a\\nb\\x1b', valid values are"),
        (["--time-factor-under-load", "NaN"], "--time-factor-under-load: must be a finite number"),
        (
            ["--max-tool-call-number-param", "+Inf"],
            "--max-tool-call-number-param: must be a finite",
        ),
        (
            ["--min-tool-call-number-param", "-Inf"],
            "--min-tool-call-number-param: must be a finite",
        ),
        (["--config", "no-such.yaml"], "--config: failed to read configuration file: open"),
        (["--shutdown-timeout", "-1"], "--shutdown-timeout: shutdown timeout cannot be negative"),
        (["--shutdown-timeout", "+Inf"], "--shutdown-timeout: must be a finite number"),
    ],
)
def test_bad_values_are_named_with_the_rule(argv: list[str], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["--model", "m", *argv], {}, 0)
    assert str(info.value).startswith(line)


def test_shutdown_timeout_is_seconds_as_in_vllm() -> None:
    assert load_config(["--model", "m"], {}, 0).config.shutdown_timeout == 20
    for text, seconds in (("15", 15.0), ("0", 0.0), ("2.5", 2.5)):
        cfg = load_config(["--model", "m", "--shutdown-timeout", text], {}, 0).config
        assert cfg.shutdown_timeout == seconds


def test_ports_at_the_bounds_are_accepted() -> None:
    for argv in (["--port", "65535"], ["--port", "65528", "--data-parallel-size", "8"]):
        assert load_config(["--model", "m", *argv], {}, 0).config.port == int(argv[1])
    for endpoint in ("tcp://localhost:1", "tcp://[::1]:65535", "ipc:///tmp/x", ""):
        cfg = load_config(["--model", "m", "--zmq-endpoint", endpoint], {}, 0).config
        assert cfg.zmq_endpoint == endpoint


# ------------------------------------------------------------ program name


@pytest.mark.parametrize(
    ("pyllmd", "golden"),
    [(False, "help_llm-d-inference-sim.txt"), (True, "help_pyllmd_sim.txt")],
)
def test_help_and_errors_name_the_program_as_invoked(
    capsys: pytest.CaptureFixture[str], pyllmd: bool, golden: str
) -> None:
    def run(*argv: str) -> int:
        return cli_main(["sim", *argv]) if pyllmd else sim_main(list(argv))

    prog = "pyllmd sim" if pyllmd else "llm-d-inference-sim"
    assert run("--help") == 0
    out = capsys.readouterr().out
    assert out == (GOLDENS / golden).read_text(encoding="utf-8")
    assert out.startswith(f"Usage of {prog}:\n")
    assert run("--model", "m", "--port", "99999") == 1
    captured = capsys.readouterr()
    assert captured.err == f"{prog}: error: --port: invalid port '99999'\n"
    assert captured.out == ""


# ------------------------------------------------------------ pyllmd dataset

SOURCE = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}]
SAFE_NAME = junk.filter(lambda v: "/" not in v and v not in (".", "..") and not v.startswith("-"))


def tool_values_for(spec: FlagSpec) -> st.SearchStrategy[list[str]]:
    if spec.name in ("output-file", "output-path", "local-path"):
        # no path that leaves the run's temporary directory
        value: st.SearchStrategy[str] = SAFE_NAME
    elif spec.kind is FlagKind.INT:
        value = ints()
    else:
        value = junk
    return st.one_of(
        value.map(lambda v: [f"--{spec.name}", v]),
        value.map(lambda v: [f"--{spec.name}={v}"]),
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOOL_FLAGS).flatmap(lambda s: tool_values_for(s).map(lambda v: (s, v))))
@example((TOOL_FLAGS[6], ["--max-records", "99999999999999999999"]))
@example((TOOL_FLAGS[5], ["--table-name", "sqlite_x"]))
@example((TOOL_FLAGS[3], ["--output-file", "x" * 300]))
def test_every_dataset_flag_value_is_accepted_or_refused_in_one_line(
    case: tuple[FlagSpec, list[str]],
) -> None:
    spec, argv = case
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in.json").write_text(json.dumps(SOURCE), encoding="utf-8")
        base = ["--model", "m", "--local-path", str(work), "--input-file", "in.json"]
        base += ["--output-path", str(work / "out")]
        with contextlib.chdir(work), _captured() as (_, err):  # relative outputs stay in tmp
            code = cli_main(["dataset", *base, *argv])
        if code == 0:
            assert err.getvalue() == "", argv
            return
        assert code == 1, argv
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pyllmd dataset: error: "), (argv, lines)
        assert names_the_flag(lines[0], spec.name), (argv, lines)


class _captured:
    """stdout/stderr of an in-process command (hypothesis cannot use capsys per example)."""

    def __enter__(self) -> tuple[io.StringIO, io.StringIO]:
        self._out, self._err = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self._out))
        self._stack.enter_context(contextlib.redirect_stderr(self._err))
        return self._out, self._err

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
