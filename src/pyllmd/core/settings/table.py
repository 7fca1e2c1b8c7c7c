"""A settings model read back as a table: its rows, its pflag table, `--help`, and the
command line parsed into field values.

Tables are cached per model class: the simulator's start-up and the tests parse
command lines often, and a model's declarations never change at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import TypeAdapter

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import (
    FlagKind,
    FlagSpec,
    HelpRequested,
    ParsedFlags,
    go_parse_duration_ns,
    parse_flags,
    quote_go,
    usage,
)
from pyllmd.core.settings.fields import Setting

__all__ = [
    "CommandLine",
    "accepted_flags",
    "build",
    "flag_specs",
    "parse_command_line",
    "settings_of",
    "usage_text",
]

_KINDS: dict[object, FlagKind] = {
    bool: FlagKind.BOOL,
    int: FlagKind.INT,
    float: FlagKind.FLOAT,
    str: FlagKind.STRING,
    tuple[str, ...]: FlagKind.STRING_LIST,
}


def _fields(model: type) -> Mapping[str, Any]:
    """The pydantic FieldInfo of every field (a BaseModel or a pydantic dataclass)."""
    fields = getattr(model, "__pydantic_fields__", None)
    if fields is None:
        raise TypeError(f"{model.__name__} is not a pydantic model or dataclass")
    return fields  # type: ignore[no-any-return]


M = TypeVar("M")


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def build(model: type[M], values: Mapping[str, object]) -> M:
    """An instance of the settings model from field values (validated by pydantic: the
    values are typed by then, so an error here is a programming error)."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    instance: M = adapter.validate_python(dict(values))
    return instance


@functools.cache
def settings_of(model: type) -> tuple[Setting, ...]:
    """Every field of `model` as a completed `Setting`, in declaration order.

    Each field must be declared with `setting(...)`; a field with a source (flag,
    environment, file key) whose type is not a plain bool/int/float/str/tuple[str, ...]
    must declare its `kind`.
    """
    rows = []
    for name, info in _fields(model).items():
        meta = next((m for m in info.metadata if isinstance(m, Setting)), None)
        if meta is None:
            raise TypeError(f"{model.__name__}.{name} is not declared with setting(...)")
        row = meta.completed(name, info.default, _KINDS.get(info.annotation))
        if row.kind is None and (row.flag or row.env or row.key):
            raise TypeError(f"{model.__name__}.{name}: declare the kind of {info.annotation}")
        rows.append(row)
    return tuple(rows)


def accepted_flags(model: type) -> tuple[FlagSpec, ...]:
    """Flags the command accepts without a field (`ACCEPTED_FLAGS` of the model): parsed,
    checked for syntax, then ignored (the simulator's klog flags)."""
    return tuple(getattr(model, "ACCEPTED_FLAGS", ()))


@functools.cache
def flag_specs(model: type) -> tuple[FlagSpec, ...]:
    """The pflag table: every field's flag in declaration order, then the accepted ones."""
    return tuple(row.flag_spec() for row in settings_of(model) if row.flag) + accepted_flags(model)


@functools.cache
def _by_flag(model: type) -> dict[str, Setting]:
    return {row.flag: row for row in settings_of(model) if row.flag}


@functools.cache
def usage_text(model: type, prog: str) -> str:
    """The `--help` text (pflag's layout: sorted flags, aligned help, non-zero defaults)."""
    return usage(flag_specs(model), prog)


@functools.cache
def _text_duration_specs(model: type) -> tuple[FlagSpec, ...]:
    """The table with durations read as text, for Go's strict duration syntax."""
    return tuple(
        replace(s, kind=FlagKind.STRING) if s.kind is FlagKind.DURATION else s
        for s in flag_specs(model)
    )


@dataclass(frozen=True)
class CommandLine:
    """A parsed command line: the given flags' values by field, and what pflag saw."""

    given: Mapping[str, object]  # field -> value, for the flags on the command line
    parsed: ParsedFlags  # flag name -> value, positional arguments, bare-integer durations
    rows: tuple[Setting, ...]

    @property
    def args(self) -> tuple[str, ...]:
        """Positional arguments."""
        return self.parsed.args

    def effective(self) -> dict[str, object]:
        """Every flag field's value: the given one, else the flag's default."""
        return {r.field: self.given.get(r.field, r.flag_default) for r in self.rows if r.flag}


def parse_command_line(
    model: type, argv: Sequence[str], prog: str, *, go_durations: bool = False
) -> CommandLine:
    """Parse argv (without the program name) with the model's pflag table.

    Raises HelpRequested (with the model's usage), VersionRequested or ConfigError.
    `go_durations`: durations follow Go's `time.ParseDuration` strictly (a unit is
    required), checked after every flag has been parsed, in table order, as pflag's
    Duration values of the Go originals do; otherwise the simulator's syntax, which
    also takes a bare integer of milliseconds.
    """
    if go_durations:
        try:
            parsed = parse_flags(argv, _text_duration_specs(model), prog)
        except HelpRequested:
            raise HelpRequested(usage_text(model, prog)) from None
        parsed = _go_durations(model, parsed)
    else:
        parsed = parse_flags(argv, flag_specs(model), prog)
    by_flag = _by_flag(model)
    given = {by_flag[f].field: v for f, v in parsed.values.items() if f in by_flag}
    return CommandLine(given, parsed, settings_of(model))


def _go_durations(model: type, parsed: ParsedFlags) -> ParsedFlags:
    values = dict(parsed.values)
    for spec in flag_specs(model):
        if spec.kind is FlagKind.DURATION and spec.name in values:
            raw = str(values[spec.name])
            try:
                values[spec.name] = go_parse_duration_ns(raw) / 1e9
            except ValueError as err:
                raise ConfigError(
                    f"invalid argument {quote_go(raw)} for {quote_go('--' + spec.name)} flag: {err}"
                ) from None
    return replace(parsed, values=values)


def flags_only(model: type[M], argv: Sequence[str], prog: str, required: Sequence[str] = ()) -> M:
    """A command that reads only its flags (no positional argument, environment or file).

    ConfigError names the first stray argument or the first empty `required` flag.
    """
    line = parse_command_line(model, list(argv), prog)
    if line.args:
        raise ConfigError(f"unexpected argument {line.args[0]!r} (flags only)")
    config = build(model, line.effective())
    for name in required:
        if not getattr(config, name):
            raise ConfigError(f"--{name.replace('_', '-')}: required")
    return config
