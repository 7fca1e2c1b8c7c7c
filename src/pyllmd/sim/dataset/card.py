"""The markdown card `pyllmd dataset` writes beside a dataset (our own wording)."""

from __future__ import annotations

_CARD = """# Simulator dataset

Recorded responses for `pyllmd sim --dataset-path` (and llm-d-inference-sim).
Each row answers one prompt; the simulator finds rows by the SHA-256 of the
prompt's token ids (4-byte little-endian each), so a dataset only hits when the
simulator runs with the same tokenizer that built it.

- Tokenizer of model: `{model}`
- Source: {source}
- Source records used: {sources}
- Rows: {rows} (each assistant turn gives a text-completion row and a chat row)

## Files

- `.sqlite3`: the table `{table}` the simulator reads.
- `.json`: the same rows for reading, with the prompt text (`input_text`) and the
  response text (`generated`); `prompt_hash` is base64 there.

## Table `{table}`

| column | type | content |
| :--- | :--- | :--- |
| `id` | INTEGER PRIMARY KEY | row number |
| `prompt_hash` | BLOB | SHA-256 key of the prompt |
| `gen_tokens` | JSON | `{{"Tokens": [ids], "Strings": [token texts]}}` |
| `n_gen_tokens` | INTEGER | number of response tokens |

Prompts: a text-completion row is keyed by the user turn's text; a chat row by
every earlier turn rendered as `### <role>:\\n<content>\\n`.

Average response length: `SELECT AVG(n_gen_tokens) FROM {table};`
"""


def card_text(model: str, table: str, source: str, sources: int, rows: int) -> str:
    """The card's markdown."""
    return _CARD.format(model=model, table=table, source=source, sources=sources, rows=rows)
