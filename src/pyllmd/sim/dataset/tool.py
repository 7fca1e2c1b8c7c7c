"""`pyllmd dataset`: build a simulator dataset from recorded conversations (spec §10.2).

Drop-in for upstream's `dataset-tool` with local input: same flags, same three
outputs (`<output-file>.sqlite3` for `--dataset-path`, a `.json` copy for reading,
a `.md` card), same rows. For every assistant turn that follows a user turn, two
rows hold the assistant's text as the response:

* keyed by the user turn's text alone (what a text completion sends as `prompt`);
* keyed by `render_chat` of every earlier turn (what a chat completion with that
  history sends; the simulator computes its chat key with the same function).

Input: a JSON array or JSONL (one record per line) of ShareGPT records
`{"id", "conversations": [{"from", "value"}]}` or OpenAI-style records
`{"messages": [{"role", "content"}]}`. Roles human/user, gpt/assistant (and a few
aliases) and system are understood; a conversation stops at any other role.
Beyond upstream: JSONL, OpenAI records and system turns; `--table-name` is honoured
(upstream binds it to the output path); `--hf-repo` is refused (no network).
"""

from __future__ import annotations

import base64
import errno
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings_dataclass

from pyllmd.core.entry import run_command
from pyllmd.core.errors import ConfigError
from pyllmd.core.logging import verbosity
from pyllmd.core.settings import build as build_settings
from pyllmd.core.settings import flag_specs, parse_command_line, setting
from pyllmd.core.tokenize import HFTokenizer, Tokenizer, load_tokenizer
from pyllmd.sim.dataset.card import card_text
from pyllmd.sim.dataset.lookup import content_text, prompt_key, render_chat
from pyllmd.sim.dataset.store import create_table_sql, quote_ident

PROG = "pyllmd dataset"


@settings_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class DatasetFlags:
    """Every `pyllmd dataset` flag, declared once (core/settings)."""

    hf_repo: str = setting(
        "", "Hugging Face dataset repository (refused: no network)", flag="hf-repo"
    )
    local_path: str = setting("", "directory of --input-file", flag="local-path")
    input_file: str = setting(
        "", "input file: ShareGPT JSON or JSONL (relative to --local-path)", flag="input-file"
    )
    output_file: str = setting(
        "inference-sim-dataset",
        "output name without extension; writes <name>.sqlite3, <name>.json and <name>.md",
        flag="output-file",
    )
    output_path: str = setting("", "directory of the outputs", flag="output-path")
    table_name: str = setting("llmd", "table name in the SQLite output", flag="table-name")
    max_records: int = setting(
        10000, "process at most this many source records", flag="max-records"
    )
    model: str = setting(
        "", "model whose tokenizer keys the rows (required; see the docs)", flag="model"
    )
    tokenizers_cache_dir: str = setting(
        "hf_cache", "where the model's tokenizer.json is looked for", flag="tokenizers-cache-dir"
    )
    v: int = verbosity("log verbosity (accepted)")


TOOL_FLAGS = flag_specs(DatasetFlags)
DESCRIPTION = (
    "Builds a dataset for `pyllmd sim --dataset-path` from ShareGPT JSON or JSONL "
    "conversations.\n\n"
)

_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}

Turn = tuple[str, str]  # (role, content), role normalised


@dataclass(frozen=True)
class ToolOptions:
    """Validated flags of one run."""

    input_path: Path
    output_base: Path
    table: str
    max_records: int
    model: str
    tokenizers_cache_dir: str

    def output(self, ext: str) -> Path:
        """`<output-path>/<output-file><ext>`."""
        return self.output_base.with_name(self.output_base.name + ext)


@dataclass(frozen=True)
class OutputRecord:
    """One row: the prompt it answers, the response and its tokens."""

    input_text: str
    generated: str
    prompt_hash: bytes
    gen_ids: list[int]
    gen_strings: list[str]


def parse_options(argv: Sequence[str]) -> ToolOptions:
    """The command line, parsed and checked; ConfigError, HelpRequested or
    VersionRequested otherwise."""
    return options(
        build_settings(DatasetFlags, parse_command_line(DatasetFlags, argv, PROG).effective())
    )


def options(flags: DatasetFlags) -> ToolOptions:
    """Check the flags (upstream's rules, plus a bare --input-file path)."""
    model, cache = flags.model, flags.tokenizers_cache_dir
    hf_repo, local, input_file = flags.hf_repo, flags.local_path, flags.input_file
    if not model:
        raise ConfigError("--model is not defined")
    if not cache:
        raise ConfigError("--tokenizers-cache-dir cannot be empty")
    if hf_repo:
        raise ConfigError(
            "--hf-repo is not supported (no network): download the file, use --local-path"
        )
    if not input_file:
        raise ConfigError("--input-file is required (a file in --local-path, or a path)")
    max_records = flags.max_records
    if max_records < 1:
        raise ConfigError("--max-records must be at least 1")
    table = flags.table_name
    if not table:
        raise ConfigError("--table-name cannot be empty")
    base = Path(flags.output_path) / flags.output_file
    opts = ToolOptions(Path(local) / input_file, base, table, max_records, model, cache)
    for ext in (".sqlite3", ".json", ".md"):
        try:
            exists = opts.output(ext).exists()
        except OSError as e:  # e.g. a name longer than the file system allows
            raise ConfigError(f"{_output_flag(e)}: {opts.output(ext)}: {e.strerror}") from None
        if exists:
            raise ConfigError(
                f"--output-path, --output-file: output file already exists: {opts.output(ext)}"
            )
    return opts


def _output_flag(e: OSError) -> str:
    """The flag an output error is about: the name when too long, else the directory."""
    return "--output-file" if e.errno == errno.ENAMETOOLONG else "--output-path"


# ---------------------------------------------------------------- reading the source


def parse_source(text: str, where: str) -> list[object]:
    """Records of a JSON array, or of JSONL (one JSON value per non-blank line)."""
    if text.lstrip().startswith("["):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"{where}: invalid JSON: {e}") from None
        return list(data)
    records: list[object] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as e:
                raise ConfigError(f"{where}:{number}: invalid JSON: {e}") from None
    return records


def conversation(record: object) -> list[Turn] | None:
    """A record's turns with normalised roles; None if it holds no conversation.

    The turns stop before the first unknown role.
    """
    if not isinstance(record, dict):
        return None
    items = record.get("conversations")
    role_key, text_key = "from", "value"
    if not isinstance(items, list):
        items, role_key, text_key = record.get("messages"), "role", "content"
    if not isinstance(items, list):
        return None
    turns: list[Turn] = []
    for item in items:
        role = _ROLES.get(str(item.get(role_key, "")).lower()) if isinstance(item, dict) else None
        if role is None:
            break
        turns.append((role, content_text(item.get(text_key))))
    return turns


def prompt_pairs(turns: Sequence[Turn]) -> list[tuple[str, str]]:
    """(prompt text, response) of every assistant turn that follows a user turn:
    the text-completion prompt, then the chat prompt (all earlier turns rendered)."""
    pairs: list[tuple[str, str]] = []
    for i, (role, content) in enumerate(turns):
        if role == "assistant" and i and turns[i - 1][0] == "user":
            pairs.append((turns[i - 1][1], content))
            pairs.append((render_chat(turns[:i]), content))
    return pairs


def output_records(pairs: Iterable[tuple[str, str]], tokenizer: Tokenizer) -> list[OutputRecord]:
    """Tokenize prompts (for the key) and responses (for the stored tokens)."""
    records: list[OutputRecord] = []
    for prompt, response in pairs:
        ids, strings = tokenizer.encode(response)
        key = prompt_key(tokenizer.encode(prompt)[0])
        records.append(OutputRecord(prompt, response, key, ids, strings))
    return records


# ---------------------------------------------------------------- writing the outputs


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through `<path>.part`, so a failed run leaves no output that blocks the next."""
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    try:
        write(part)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def write_sqlite(path: Path, table: str, records: Sequence[OutputRecord]) -> None:
    """The database `pyllmd sim --dataset-path` reads (upstream's schema)."""
    import sqlite3

    def write(part: Path) -> None:
        conn = sqlite3.connect(part)
        try:
            try:
                conn.execute(create_table_sql(table))
            except sqlite3.Error as e:  # e.g. a name SQLite reserves (sqlite_...)
                raise ConfigError(f"--table-name: cannot create table {table!r}: {e}") from None
            conn.executemany(
                f"INSERT INTO {quote_ident(table)} (prompt_hash, gen_tokens, n_gen_tokens) "
                "VALUES (?, ?, ?)",
                ((r.prompt_hash, gen_tokens_json(r), len(r.gen_ids)) for r in records),
            )
            conn.commit()
        finally:
            conn.close()

    _write_atomically(path, write)


def gen_tokens_json(record: OutputRecord) -> str:
    """The `gen_tokens` value: `{"Tokens": [...], "Strings": [...]}` (upstream's field names)."""
    return json.dumps({"Tokens": record.gen_ids, "Strings": record.gen_strings}, ensure_ascii=False)


def write_json(path: Path, records: Sequence[OutputRecord]) -> None:
    """The readable copy: hashes in base64, with the prompt and response texts."""
    rows = [
        {
            "prompt_hash": base64.b64encode(r.prompt_hash).decode(),
            "n_gen_tokens": len(r.gen_ids),
            "gen_tokens": {"Tokens": r.gen_ids, "Strings": r.gen_strings},
            "input_text": r.input_text,
            "generated": r.generated,
        }
        for r in records
    ]
    text = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    _write_atomically(path, lambda p: p.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------- command


def build(opts: ToolOptions, tokenizer: Tokenizer) -> tuple[int, int]:
    """Read, convert, write; returns (source records used, rows written)."""
    try:
        text = opts.input_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        # the path is --local-path joined with --input-file: either may be wrong
        raise ConfigError(
            f"--local-path, --input-file: cannot read {opts.input_path}: {e}"
        ) from None
    sources = parse_source(text, str(opts.input_path))[: opts.max_records]
    pairs = [p for rec in sources for p in prompt_pairs(conversation(rec) or [])]
    records = output_records(pairs, tokenizer)
    card = card_text(opts.model, opts.table, str(opts.input_path), len(sources), len(records))
    try:
        opts.output_base.parent.mkdir(parents=True, exist_ok=True)
        write_sqlite(opts.output(".sqlite3"), opts.table, records)
        write_json(opts.output(".json"), records)
        _write_atomically(opts.output(".md"), lambda p: p.write_text(card, encoding="utf-8"))
    except OSError as e:
        where = e.filename or opts.output_base
        raise ConfigError(f"{_output_flag(e)}: cannot write {where}: {e.strerror or e}") from None
    return len(sources), len(records)


def main(argv: Sequence[str]) -> int:
    """Entry point of `pyllmd dataset`; one-line errors, exit 1."""
    return run_command(
        PROG,
        lambda: parse_options(argv),
        _run,
        description=DESCRIPTION,
        errors=(ConfigError, OSError),
    )


def _run(opts: ToolOptions) -> int:
    tokenizer = load_tokenizer(opts.model, opts.tokenizers_cache_dir)
    used, rows = build(opts, tokenizer)
    kind = f"Hugging Face {tokenizer.path}" if isinstance(tokenizer, HFTokenizer) else "simple"
    print(
        f"{PROG}: {rows} rows from {used} records written to "
        f"{os.fspath(opts.output('.sqlite3'))} (table {opts.table}, tokenizer {kind})"
    )
    return 0
