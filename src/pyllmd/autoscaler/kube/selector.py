"""Kubernetes label selectors in string form (`labels.Parse` syntax) and label validation.

Used for `WVA_NODE_SELECTOR` (GPU discovery) and to check label values such as
`CONTROLLER_INSTANCE`. Written by hand because no small, maintained Python
library parses the selector grammar; the grammar is short:

    requirement[,requirement...]   where a requirement is one of
    key | !key | key=value | key==value | key!=value
    key in (v1,v2) | key notin (v1,v2) | key>N | key<N   (N an integer)

An empty selector selects everything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyllmd.core.gosyntax import quote_go

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = r"[^\s,!=<>()]+"
_EXISTS = re.compile(rf"^(!?)\s*({_TOKEN})$")
_EQUALITY = re.compile(rf"^({_TOKEN})\s*(==|=|!=)\s*([^\s,!=<>()]*)$")
_SET = re.compile(rf"^({_TOKEN})\s+(in|notin)\s*\((.*)\)$")
_COMPARE = re.compile(rf"^({_TOKEN})\s*([<>])\s*([^\s,!=<>()]+)$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement: `op` is `exists`, `!`, `=`, `!=`, `in`, `notin`, `>` or `<`."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies the requirement (Kubernetes semantics)."""
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        try:
            number = int(value)
        except ValueError:
            return False
        limit = int(self.values[0])
        return number > limit if self.op == ">" else number < limit


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label key (`[prefix/]name`), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"prefix part of {quote_go(key)} must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        return (
            f"name part of {quote_go(key)} must be at most 63 alphanumeric characters, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )
    return None


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def dns_label_error(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label (a namespace name), or None."""
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        return (
            f"{quote_go(value)} must be at most 63 lower-case alphanumeric characters or '-', "
            "starting and ending with an alphanumeric character"
        )
    return None


def dns_subdomain_error(value: str) -> str | None:
    """Why `value` is not a DNS-1123 subdomain (an object name), or None."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return (
            f"{quote_go(value)} must be at most 253 lower-case alphanumeric characters, "
            "'-' or '.', starting and ending with an alphanumeric character"
        )
    return None


def label_value_error(value: str) -> str | None:
    """Why `value` is not a valid label value (empty is valid), or None."""
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return (
            f"value {quote_go(value)} must be at most 63 alphanumeric characters, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )
    return None


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _requirement(part: str) -> Requirement:
    if m := _SET.match(part):
        values = tuple(v.strip() for v in m.group(3).split(","))
        req = Requirement(m.group(1), m.group(2), values)
    elif m := _EQUALITY.match(part):
        req = Requirement(m.group(1), "=" if m.group(2) == "==" else m.group(2), (m.group(3),))
    elif m := _COMPARE.match(part):
        if not re.fullmatch(r"[+-]?\d+", m.group(3)):
            raise ValueError(f"for {quote_go(m.group(2))}, value must be an integer")
        req = Requirement(m.group(1), m.group(2), (m.group(3),))
    elif m := _EXISTS.match(part):
        req = Requirement(m.group(2), "!" if m.group(1) else "exists")
    else:
        raise ValueError(f"cannot parse requirement {quote_go(part)}")
    if (error := label_key_error(req.key)) is not None:
        raise ValueError(error)
    if req.op in ("=", "!=", "in", "notin"):
        for value in req.values:
            if (error := label_value_error(value)) is not None:
                raise ValueError(error)
    return req


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a selector string; raises ValueError naming the broken part."""
    if not text.strip():
        return ()
    parts = _split(text)
    if any(not p for p in parts):
        raise ValueError("empty requirement")
    return tuple(_requirement(p) for p in parts)


def selector_matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    """Whether the labels satisfy every requirement (an empty selector matches all)."""
    return all(r.matches(labels) for r in requirements)
