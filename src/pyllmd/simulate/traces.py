"""Request traces for `pyllmd simulate`: Azure LLM inference trace CSVs, read as
inference-perf 0.7.0's `trace_replay` reads them, and Mooncake-style JSONL.

* `AzurePublicDataset` (inference-perf's only trace format): CSV rows `TIMESTAMP,
  ContextTokens, GeneratedTokens`, a header line when the csv module's sniffer sees one; the
  timestamp (`2023-11-16 18:15:46.6805900`, an ISO `T`/`Z` form too) is read to microseconds in
  UTC and made relative to the first row (not the smallest). A row that does not parse is
  skipped, as inference-perf skips it (with a warning).
* `Mooncake` (pyllmd's extension; inference-perf cannot read it): one JSON object per line,
  `timestamp` in milliseconds, `input_length`, `output_length` and `hash_ids`, the ids of the
  prompt's 512-token blocks; equal ids are equal blocks, so shared prefixes reach the prefix
  cache. Timestamps are made relative to the first line.

The public traces are not shipped: see docs/user-guide/admin/simulate.md for where they are.
The csv module reads the CSV; the parsing of the timestamp is written here because it must
accept exactly what inference-perf accepts.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pyllmd.core.errors import ConfigError

FORMATS = ("AzurePublicDataset", "Mooncake")
MOONCAKE_BLOCK = 512  # tokens per hash id


@dataclass(frozen=True)
class TraceEntry:
    t: float  # seconds after the trace's first entry
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Trace:
    file: str
    format: str
    entries: tuple[TraceEntry, ...]
    skipped: int = 0  # rows that did not parse (inference-perf skips them too)


def azure_timestamp(text: str) -> float:
    """inference-perf's parse: `T` and a trailing `Z` allowed, fraction cut to 6 digits, UTC."""
    ts = text.strip().strip('"').replace("T", " ").rstrip("Z").strip()
    if "." in ts:
        head, frac = ts.split(".", 1)
        digits = "".join(itertools.takewhile(str.isdigit, frac))
        ts = f"{head}.{digits[:6].ljust(6, '0')}"
    else:
        ts = f"{ts}.000000"
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def _azure(text: str) -> tuple[list[TraceEntry], int]:
    lines = text.splitlines()
    try:
        header = csv.Sniffer().has_header(text[:2048])
    except csv.Error:
        header = False
    rows = lines[1:] if header else lines
    out: list[TraceEntry] = []
    skipped = 0
    first: float | None = None
    for line in rows:
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            t = azure_timestamp(fields[0])
            entry = (int(fields[1].strip()), int(fields[2].strip()))
        except (ValueError, IndexError):
            skipped += 1
            continue
        if first is None:
            first = t
        out.append(TraceEntry(t - first, *entry))
    return out, skipped


def _mooncake(text: str, where: str) -> list[TraceEntry]:
    out: list[TraceEntry] = []
    first: float | None = None
    for n, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            t = float(row["timestamp"]) / 1000.0
            entry = TraceEntry(
                0.0,
                int(row["input_length"]),
                int(row["output_length"]),
                tuple(int(h) for h in row.get("hash_ids") or ()),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{where}:{n}: not a Mooncake trace line ({err})") from None
        if entry.input_tokens < 1 or entry.output_tokens < 1:
            raise ConfigError(f"{where}:{n}: input_length and output_length must be >= 1")
        if first is None:
            first = t
        out.append(TraceEntry(t - first, entry.input_tokens, entry.output_tokens, entry.hash_ids))
    return out


def read_trace(file: str, fmt: str, where: str) -> Trace:
    """The trace of `file` in format `fmt`; ConfigError naming `where` when it cannot be read."""
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format: {fmt!r} is not one of {', '.join(FORMATS)}")
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{where}.file {file}: {err.strerror or err}") from None
    if fmt == "Mooncake":
        entries, skipped = _mooncake(text, f"{where}.file {file}"), 0
    else:
        entries, skipped = _azure(text)
    if not entries:
        raise ConfigError(f"{where}.file {file}: no trace entries")
    return Trace(file, fmt, tuple(entries), skipped)


def block_tokens(hash_id: int, vocab: int) -> list[int]:
    """The 512 token ids of a Mooncake block: the same for the same id, in every run."""
    rnd = random.Random(hash_id)
    return [rnd.randrange(1, vocab) for _ in range(MOONCAKE_BLOCK)]


def prompt_tokens(entry: TraceEntry, vocab: int, fill: Callable[[int], list[int]]) -> list[int]:
    """An entry's prompt: its blocks' tokens, cut to its length or topped up by `fill(n)`."""
    tokens: list[int] = []
    for h in entry.hash_ids:
        if len(tokens) >= entry.input_tokens:
            break
        tokens += block_tokens(h, vocab)
    if len(tokens) < entry.input_tokens:
        tokens += fill(entry.input_tokens - len(tokens))
    return tokens[: entry.input_tokens]
