"""Where setting values come from besides the command line, and their precedence.

Each command declares its sources in the order they win (`resolve`): for example
the autoscaler's flag > environment > config file > default. A source maps field
names to raw values and says how a raw value becomes a typed one; conversion happens
only for the value that wins, field by field in declaration order, so a bad value
that a higher source overrides is never an error, and the first error is the first
field's, as in the Go originals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pyllmd.core.flags import FlagKind, go_parse_duration_ns, scalar_value
from pyllmd.core.settings.fields import Setting

__all__ = ["Source", "env_values", "file_values", "resolve", "text_value"]


def _as_is(row: Setting, value: object) -> object:
    return value


@dataclass(frozen=True)
class Source:
    """One source: raw values by field, and how a raw value becomes the field's value."""

    values: Mapping[str, object]
    convert: Callable[[Setting, object], object] = _as_is


def resolve(rows: Sequence[Setting], sources: Sequence[Source]) -> dict[str, object]:
    """Each field's value from the first source that has it (highest precedence first),
    converted by that source; else the field's default. Derived fields are skipped."""
    out: dict[str, object] = {}
    for row in rows:
        if row.derived:
            continue
        for source in sources:
            if row.field in source.values:
                out[row.field] = source.convert(row, source.values[row.field])
                break
        else:
            out[row.field] = row.default
    return out


def env_values(
    rows: Sequence[Setting], env: Mapping[str, str], *, empty_is_unset: bool = True
) -> dict[str, str]:
    """Field -> the text of its first environment variable that is set (an empty value
    counts as unset unless `empty_is_unset` is false)."""
    out: dict[str, str] = {}
    for row in rows:
        for name in row.env:
            raw = env.get(name)
            if raw is not None and (raw or not empty_is_unset):
                out[row.field] = raw
                break
    return out


def file_values(rows: Sequence[Setting], document: Mapping[str, object]) -> dict[str, object]:
    """Field -> the config-file value of its key, for the keys `document` has."""
    return {row.field: document[row.key] for row in rows if row.key and row.key in document}


def text_value(kind: FlagKind, raw: str) -> object:
    """A text value (environment, file string) in Go syntax: bools and ints as strconv
    reads them, durations as `time.ParseDuration` (float seconds), strings as they are.
    Raises ValueError."""
    return scalar_value(kind, raw, lambda text: go_parse_duration_ns(text) / 1e9)
