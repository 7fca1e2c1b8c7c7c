"""Go-pflag-compatible command-line parsing, Go value syntax and Go durations.

Written by hand on purpose: the Go originals (llm-d-inference-sim, the EPP, the
autoscaler) parse with spf13/pflag plus klog's Go flags, and drop-in users rely
on its exact quirks, which neither argparse nor click reproduce:

* `--name value`, `--name=value`; a value is taken even if it starts with `-`
  (`--model --port` sets model to "--port");
* a bool (or any flag with a no-argument default) never consumes the next
  element: `--flag false` sets true and leaves "false" as a positional argument;
* Go's `strconv` spellings for bools, ints (base prefixes, `_`) and floats;
* single-dash shorthands (`-v 4`, `-v=4`, `-v4`), `--` ends the flags;
* `--help` / `-h` request usage unless a flag of that name exists; likewise
  `--version` requests the program version (`VersionRequested`);
* positional arguments are collected, never an error;
* pflag's error texts (`unknown flag: --x`, `flag needs an argument: --x`,
  `invalid argument "abc" for "--port" flag: ...`).

Values use Go syntax (`gosyntax`, re-exported here): durations follow Go's
`time.ParseDuration`, plus the deprecated bare integer of milliseconds that
the simulator still accepts (`parse_duration`, `is_deprecated_duration`).
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pyllmd.core.errors import ConfigError
from pyllmd.core.gosyntax import (
    format_duration,
    format_duration_ns,
    go_parse_duration_ns,
    is_deprecated_duration,
    parse_duration,
    parse_duration_ns,
    parse_go_bool,
    parse_go_float,
    parse_go_int,
    quote_go,
    seconds_to_ns,
)

__all__ = [
    "FlagKind",
    "FlagSpec",
    "HelpRequested",
    "ParsedFlags",
    "VersionRequested",
    "default_text",
    "format_duration",
    "format_duration_ns",
    "go_parse_duration_ns",
    "is_deprecated_duration",
    "parse_duration",
    "parse_duration_ns",
    "parse_flags",
    "parse_go_bool",
    "parse_go_float",
    "parse_go_int",
    "quote_go",
    "prescan_values",
    "seconds_to_ns",
    "usage",
]


class FlagKind(enum.StrEnum):
    """Value type of a flag; the string is what usage text shows."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    DURATION = "duration"
    STRING_LIST = "string-list"


@dataclass(frozen=True)
class FlagSpec:
    """One flag. `multi_arg` flags take every following argv element up to the next
    `--…` element (upstream's hand-made pre-scan); pflag itself sees them as taking
    no argument."""

    name: str
    kind: FlagKind
    default: object = None
    help: str = ""
    shorthand: str = ""
    multi_arg: bool = False
    no_opt_default: str | None = None

    @property
    def optional_value(self) -> str | None:
        """pflag's NoOptDefVal: the value used when the flag is given bare."""
        if self.no_opt_default is not None:
            return self.no_opt_default
        if self.kind is FlagKind.BOOL:
            return "true"
        if self.multi_arg:
            return "dummy"
        return None


@dataclass(frozen=True)
class ParsedFlags:
    """Flags given on the command line (name -> typed value) and positional args."""

    values: Mapping[str, object]
    args: tuple[str, ...]
    deprecated_ms: Mapping[str, str]  # duration flag -> its bare-integer (milliseconds) text

    def effective(self, specs: Sequence[FlagSpec]) -> dict[str, object]:
        """Every flag's value: the given one, else the spec's default."""
        return {s.name: self.values.get(s.name, s.default) for s in specs}


class HelpRequested(Exception):
    """`--help` or `-h` was given; carries the usage text to print (exit 0)."""

    def __init__(self, usage: str) -> None:
        super().__init__(usage)
        self.usage = usage

    @property
    def text(self) -> str:
        """The usage text (alias of `usage`)."""
        return self.usage


class VersionRequested(Exception):
    """`--version` was given to a command without a flag of that name (print the
    version, exit 0). Not a HelpRequested: it reaches the CLI, which prints it once for
    every command."""


# ---------------------------------------------------------------- parsing


def scalar_value(kind: FlagKind, raw: str, duration: Callable[[str], float]) -> object:
    """A bool, int or float as Go's strconv reads it, a duration by `duration`; a string or
    list kind as it is. Raises ValueError."""
    if kind is FlagKind.BOOL:
        return parse_go_bool(raw)
    if kind is FlagKind.INT:
        return parse_go_int(raw)
    if kind is FlagKind.FLOAT:
        return parse_go_float(raw)
    if kind is FlagKind.DURATION:
        return duration(raw)
    return raw


def _convert(spec: FlagSpec, raw: str, previous: object) -> object:
    """Typed value of one occurrence (pflag Value.Set)."""
    if spec.kind is FlagKind.STRING_LIST:  # pflag StringSlice: comma-separated, repeats append
        try:
            items = tuple(next(csv.reader([raw]), [])) if raw else ()
        except csv.Error as err:  # e.g. a line break in an unquoted field
            raise ValueError(str(err)) from None
        return (previous if isinstance(previous, tuple) else ()) + items
    return scalar_value(spec.kind, raw, parse_duration)


def _set(
    spec: FlagSpec,
    raw: str,
    values: dict[str, object],
    deprecated: dict[str, str],
    label: str,
) -> None:
    if spec.multi_arg:
        return  # its values come from prescan_values
    try:
        values[spec.name] = _convert(spec, raw, values.get(spec.name))
    except ValueError as exc:
        detail = str(exc).replace("\r", "\\r").replace("\n", "\\n")  # one line, always
        raise ConfigError(
            f"invalid argument {quote_go(raw)} for {quote_go(label)} flag: {detail}"
        ) from None
    if spec.kind is FlagKind.DURATION and is_deprecated_duration(raw):
        deprecated[spec.name] = raw
    else:
        deprecated.pop(spec.name, None)


def _label(spec: FlagSpec) -> str:
    return f"-{spec.shorthand}, --{spec.name}" if spec.shorthand else f"--{spec.name}"


class _Parser:
    """One pass over argv with pflag's rules (interspersed positionals allowed)."""

    def __init__(self, specs: Sequence[FlagSpec], prog: str) -> None:
        self.specs = specs
        self.prog = prog
        self.by_name = {s.name: s for s in specs}
        self.by_short = {s.shorthand: s for s in specs if s.shorthand}
        self.values: dict[str, object] = {}
        self.deprecated: dict[str, str] = {}
        self.args: list[str] = []

    def run(self, argv: Sequence[str]) -> ParsedFlags:
        rest = list(argv)
        while rest:
            arg = rest.pop(0)
            if len(arg) < 2 or arg[0] != "-":
                self.args.append(arg)
            elif arg == "--":
                self.args.extend(rest)
                break
            elif arg[1] == "-":
                rest = self._long(arg, rest)
            else:
                rest = self._short(arg, rest)
        for spec in self.specs:
            if spec.multi_arg:
                found = prescan_values(argv, spec.name)
                if found is not None:
                    self.values[spec.name] = tuple(found)
        return ParsedFlags(dict(self.values), tuple(self.args), dict(self.deprecated))

    def _long(self, arg: str, rest: list[str]) -> list[str]:
        body = arg[2:]
        if not body or body[0] in "-=":
            raise ConfigError(f"bad flag syntax: {arg}")
        name, eq, inline = body.partition("=")
        spec = self.by_name.get(name)
        if spec is None:
            if name == "help":
                raise HelpRequested(usage(self.specs, self.prog))
            if name == "version":
                raise VersionRequested()
            raise ConfigError(f"unknown flag: --{name}")
        if eq:
            raw = inline
        elif spec.optional_value is not None:
            raw = spec.optional_value
        elif rest:
            raw = rest.pop(0)
        else:
            raise ConfigError(f"flag needs an argument: {arg}")
        _set(spec, raw, self.values, self.deprecated, _label(spec))
        return rest

    def _short(self, arg: str, rest: list[str]) -> list[str]:
        shorts = arg[1:]
        while shorts:
            char = shorts[0]
            spec = self.by_short.get(char)
            if spec is None:
                if char == "h":
                    raise HelpRequested(usage(self.specs, self.prog))
                raise ConfigError(f"unknown shorthand flag: '{char}' in -{shorts}")
            if len(shorts) > 2 and shorts[1] == "=":
                raw, shorts = shorts[2:], ""
            elif spec.optional_value is not None:
                raw, shorts = spec.optional_value, shorts[1:]
            elif len(shorts) > 1:
                raw, shorts = shorts[1:], ""
            elif rest:
                raw, shorts = rest.pop(0), ""
            else:
                raise ConfigError(f"flag needs an argument: '{char}' in -{shorts}")
            _set(spec, raw, self.values, self.deprecated, _label(spec))
        return rest


def parse_flags(argv: Sequence[str], specs: Sequence[FlagSpec], prog: str = "") -> ParsedFlags:
    """Parse argv (without the program name) like pflag; raises ConfigError or HelpRequested."""
    return _Parser(specs, prog).run(argv)


def prescan_values(argv: Sequence[str], name: str) -> list[str] | None:
    """Upstream's list pre-scan: values after the first `--name` up to the next `--…`
    element (empty strings skipped), or exactly one for `--name=value`; None if absent."""
    values: list[str] | None = None
    flag = f"--{name}"
    for arg in argv:
        if values is not None:
            if arg.startswith("--"):
                break
            if arg:
                values.append(arg)
        elif arg == flag:
            values = []
        elif arg.startswith(flag + "="):
            return [arg[len(flag) + 1 :]]
    return values


# ---------------------------------------------------------------- usage


def _type_name(spec: FlagSpec) -> str:
    if spec.kind is FlagKind.BOOL:
        return ""
    if spec.kind is FlagKind.STRING_LIST:
        return "strings"
    return str(spec.kind)


def default_text(spec: FlagSpec) -> str:
    """The default as usage text shows it; empty for a zero value."""
    value = spec.default
    if value is None or value == "" or value is False or value == () or value == 0:
        return ""
    if spec.kind is FlagKind.DURATION and isinstance(value, int | float):
        return format_duration(float(value))
    if spec.kind is FlagKind.STRING:
        return quote_go(str(value))
    if isinstance(value, bool):
        return "true"  # false is the zero value, returned above; Go spells bools lower-case
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))  # Go's FormatFloat(v, 'g', -1, 64): 1.0 -> "1"
    return str(value)


def usage(specs: Sequence[FlagSpec], prog: str = "") -> str:
    """pflag-style usage: sorted flags, aligned help, non-zero defaults."""
    rows: list[tuple[str, str]] = []
    for spec in sorted(specs, key=lambda s: s.name):
        head = f"  -{spec.shorthand}, --{spec.name}" if spec.shorthand else f"      --{spec.name}"
        if type_name := _type_name(spec):
            head += " " + type_name
        text = spec.help
        if default := default_text(spec):
            text += f" (default {default})"
        rows.append((head, text))
    width = max((len(h) for h, _ in rows), default=0)
    lines = [f"Usage of {prog}:" if prog else "Usage:"]
    lines += [f"{h.ljust(width)}   {t}".rstrip() for h, t in rows]
    return "\n".join(lines) + "\n"
