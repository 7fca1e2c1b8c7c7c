"""Builders of dataset files and tokenizer files for the dataset tests (no downloads)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from pyllmd.core.tokenize import SimpleTokenizer, Tokenizer
from pyllmd.sim.dataset.lookup import prompt_key
from pyllmd.sim.dataset.store import create_table_sql, quote_ident
from pyllmd.sim.dataset.tool import main as tool_main

SHAREGPT = [
    {
        "id": "a",
        "conversations": [
            {"from": "human", "value": "Hello there, bot!"},
            {"from": "gpt", "value": "Hi, human. How are you today?"},
            {"from": "human", "value": "Fine, thanks."},
            {"from": "gpt", "value": "Glad to hear it."},
        ],
    }
]


def build_with_tool(tmp: Path, records: Sequence[object] = SHAREGPT, *extra: str) -> Path:
    """Run `pyllmd dataset` on `records` (a ShareGPT JSON file); the .sqlite3 path."""
    src = tmp / "source.json"
    src.write_text(json.dumps(records))
    out = tmp / "out"
    argv = ["--model", "m", "--input-file", str(src), "--output-path", str(out), *extra]
    assert tool_main(argv) == 0
    return out / "inference-sim-dataset.sqlite3"


def make_db(
    path: Path,
    rows: Sequence[tuple[bytes, Sequence[str]]],
    table: str = "llmd",
    tokenizer: Tokenizer | None = None,
) -> Path:
    """A dataset with upstream's schema: (prompt key, response token strings) per row."""
    tok = tokenizer or SimpleTokenizer()
    conn = sqlite3.connect(path)
    conn.execute(create_table_sql(table))
    for key, strings in rows:
        ids = [tok.encode(s)[0][0] if tok.encode(s)[0] else 0 for s in strings]
        gen = json.dumps({"Tokens": ids, "Strings": list(strings)})
        insert = f"INSERT INTO {quote_ident(table)} (prompt_hash, gen_tokens, n_gen_tokens)"
        conn.execute(insert + " VALUES (?, ?, ?)", (key, gen, len(strings)))
    conn.commit()
    conn.close()
    return path


def text_key(text: str, tokenizer: Tokenizer | None = None) -> bytes:
    """The key a text completion with `prompt=text` looks up."""
    return prompt_key((tokenizer or SimpleTokenizer()).encode(text)[0])


def words(n: int, word: str = "w") -> list[str]:
    """`n` distinct-looking token strings (`w0 `, `w1 `, ...)."""
    return [f"{word}{i} " for i in range(n)]


def write_word_tokenizer(directory: Path, sentences: Sequence[str]) -> Path:
    """A tiny WordLevel `tokenizer.json` over the words of `sentences` (built locally)."""
    from tokenizers import Tokenizer as HF
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab: dict[str, int] = {"[UNK]": 0}
    pre = Whitespace()
    for sentence in sentences:
        for piece, _ in pre.pre_tokenize_str(sentence):
            vocab.setdefault(piece, len(vocab))
    tok = HF(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path
