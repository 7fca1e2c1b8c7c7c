"""Parse Prometheus' text exposition into flat samples.

Uses `prometheus_client`'s own parser (the reference implementation of the
format in Python), flattened to one record per sample because callers (the
autoscaler's EPP scraping) filter samples by name and labels, not by family.

`names` narrows the parse: the EPP scrapes every model server 20 times a second
and reads five series out of a few hundred lines, so lines of other metrics are
dropped by a cheap shape check before the (character by character) reference
parser runs. A dropped line still has to look like a sample (`name[{...}] value
[timestamp]` with a numeric value), so garbage fails the parse as before.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client.parser import text_string_to_metric_families

from pyllmd.core.sample import Sample

__all__ = ["PromTextError", "Sample", "parse_samples"]


class PromTextError(ValueError):
    """The text is not valid Prometheus exposition format."""


def parse_samples(text: str, names: Collection[str] | None = None) -> list[Sample]:
    """Every sample of `text` in the order written (only those named in `names` when
    given, plus possibly a few more); raises PromTextError on malformed input."""
    if names is not None:
        text = _relevant(text, names)
    try:
        return [
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, IndexError, KeyError) as err:
        raise PromTextError(f"invalid Prometheus text format: {err}") from err


def _relevant(text: str, names: Collection[str]) -> str:
    """The lines of `text` that may matter for samples named `names` (a superset)."""
    wanted = tuple(names)
    comments = tuple(f"# {kind} {n}" for n in wanted for kind in ("HELP", "TYPE"))
    keep: list[str] = []
    for line in text.split("\n"):
        if line.startswith(wanted) or line.startswith(comments):
            keep.append(line)
        elif line.startswith("#") or not line.strip():
            continue  # other families' metadata and plain comments
        elif not _looks_like_sample(line):
            keep.append(line)  # let the reference parser report it
    keep.append("")
    return "\n".join(keep)


def _looks_like_sample(line: str) -> bool:
    brace = line.find("{")
    if brace != -1:
        close = line.rfind("}")
        if close < brace:
            return False
        inner = line[brace + 1 : close]
        if inner.strip() and ('="' not in inner or inner.count('"') % 2):
            return False  # unquoted or unbalanced label values (or escaped quotes: parse)
        name, rest = line[:brace], line[close + 1 :].split()
    else:
        name, *rest = line.split()
    if not name or " " in name or not 1 <= len(rest) <= 2:
        return False
    try:
        float(rest[0])
    except ValueError:
        return False
    return True
