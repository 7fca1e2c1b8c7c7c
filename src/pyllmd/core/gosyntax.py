"""Go value syntax: `strconv` bools, ints and floats, and `time` durations.

Written by hand because Go's rules differ from Python's in ways users of the
Go originals rely on: `010` is octal, `1_000` is allowed, `1.5s`/`1m30s` are
durations, and the simulator reads a bare integer as milliseconds
(deprecated). Error texts follow Go's, since they end up in start-up errors.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def quote_go(s: str) -> str:
    """Go's %q for the common case (ASCII escapes)."""
    return json.dumps(s, ensure_ascii=False)


_CONTROL = re.compile(r"[\x00-\x1f]")


def printable(s: str) -> str:
    """`s` with control characters escaped as `quote_go` escapes them, so a message that
    shows a user's value stays on one line."""
    return _CONTROL.sub(lambda m: quote_go(m.group())[1:-1], s)


def parse_go_bool(s: str) -> bool:
    """`strconv.ParseBool`."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {quote_go(s)}: invalid syntax")


_INT_BODY = {
    2: re.compile(r"_?[01]+(_[01]+)*", re.ASCII),
    8: re.compile(r"_?[0-7]+(_[0-7]+)*", re.ASCII),
    10: re.compile(r"[0-9]+(_[0-9]+)*", re.ASCII),
    16: re.compile(r"_?[0-9a-fA-F]+(_[0-9a-fA-F]+)*", re.ASCII),
}


def parse_go_int(s: str, bits: int = 64) -> int:
    """`strconv.ParseInt(s, 0, bits)`: sign, 0x/0o/0b or leading-0 octal, `_` separators."""
    err = f"strconv.ParseInt: parsing {quote_go(s)}: invalid syntax"
    body = s[1:] if s[:1] in ("+", "-") else s
    base, digits = 10, body
    low = body[:2].lower()
    if low in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[low], body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    if not digits or not _INT_BODY[base].fullmatch(digits):
        raise ValueError(err)
    value = int(digits.replace("_", ""), base)
    if s.startswith("-"):
        value = -value
    if not -(2 ** (bits - 1)) <= value <= 2 ** (bits - 1) - 1:
        raise ValueError(f"strconv.ParseInt: parsing {quote_go(s)}: value out of range")
    return value


_FLOAT_WORDS = re.compile(r"[+-]?(inf|infinity|nan)", re.ASCII | re.IGNORECASE)
_FLOAT_DEC = re.compile(r"[+-]?([0-9_]+\.?[0-9_]*|\.[0-9_]+)([eE][+-]?[0-9_]+)?", re.ASCII)


def parse_go_float(s: str) -> float:
    """`strconv.ParseFloat(s, 64)` (decimal, hex, inf/infinity/nan)."""
    err = f"strconv.ParseFloat: parsing {quote_go(s)}: invalid syntax"
    try:
        if _FLOAT_WORDS.fullmatch(s) or _FLOAT_DEC.fullmatch(s):
            if "__" in s or s.startswith("_") or s.endswith("_"):
                raise ValueError(err)
            return float(s)
        if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F.]+[pP][+-]?[0-9]+", s):
            return float.fromhex(s)
    except (ValueError, OverflowError):
        pass
    raise ValueError(err)


# ---------------------------------------------------------------- durations

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"([0-9]*)(\.([0-9]*))?", re.ASCII)
_UNIT = re.compile(r"[^0-9.]*")


def go_parse_duration_ns(s: str) -> int:
    """Go's `time.ParseDuration`, in integer nanoseconds (no bare-integer form)."""
    err = ValueError(f"time: invalid duration {quote_go(s)}")
    rest, negative = s, False
    if rest[:1] in ("+", "-"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise err
    total = Fraction(0)
    while rest:
        number = _NUMBER.match(rest)
        assert number is not None  # the pattern matches the empty string
        whole, frac = number.group(1), number.group(3) or ""
        if not whole and not frac:
            raise err
        rest = rest[number.end() :]
        unit_match = _UNIT.match(rest)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ValueError(f"time: missing unit in duration {quote_go(s)}")
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {quote_go(unit)} in duration {quote_go(s)}")
        rest = rest[len(unit) :]
        value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        total += value * _UNIT_NS[unit]
        if total > 2**63:
            raise err
    ns = int(total)  # Go drops sub-nanosecond fractions
    ns = -ns if negative else ns
    if ns > _INT64_MAX:
        raise err
    return ns


def is_deprecated_duration(s: str) -> bool:
    """True when `s` is accepted only as the deprecated bare integer of milliseconds."""
    try:
        go_parse_duration_ns(s)
        return False
    except ValueError:
        pass
    try:
        _parse_base10_int64(s)
        return True
    except ValueError:
        return False


def _parse_base10_int64(s: str) -> int:
    """`strconv.ParseInt(s, 10, 64)`: optional sign and decimal digits only."""
    if not re.fullmatch(r"[+-]?[0-9]+", s, re.ASCII):
        raise ValueError(s)
    value = int(s)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(s)
    return value


def parse_duration_ns(s: str) -> int:
    """A Go duration string, else (deprecated) a bare integer of milliseconds; in ns."""
    try:
        return go_parse_duration_ns(s)
    except ValueError:
        pass
    try:
        ms = _parse_base10_int64(s)
    except ValueError:
        raise ValueError(f"invalid duration format: {s}") from None
    return max(_INT64_MIN, min(_INT64_MAX, ms * 1_000_000))  # Go's Duration*Millisecond wraps


def parse_duration(s: str) -> float:
    """A Go duration string or (deprecated) bare integer milliseconds, in float seconds."""
    return parse_duration_ns(s) / 1e9


def seconds_to_ns(seconds: float) -> int:
    """Float seconds back to integer nanoseconds (rounded)."""
    return round(seconds * 1e9)


def _decimal(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def format_duration_ns(ns: int) -> str:
    """Go's `Duration.String()`: `0s`, `250µs`, `100ms`, `1.5s`, `1m30s`, `2h0m0s`."""
    if ns == 0:
        return "0s"
    u = abs(ns)
    if u < 1_000:
        text = f"{u}ns"
    elif u < 1_000_000:
        text = _decimal(u, 3) + "µs"
    elif u < 1_000_000_000:
        text = _decimal(u, 6) + "ms"
    else:
        hours, rem = divmod(u, 3_600_000_000_000)
        minutes, rem = divmod(rem, 60_000_000_000)
        text = _decimal(rem, 9) + "s"
        if hours or minutes:
            text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return "-" + text if ns < 0 else text


def format_duration(seconds: float) -> str:
    """Float seconds as a Go duration string."""
    return format_duration_ns(seconds_to_ns(seconds))
