"""`pyllmd dataset`: input formats, the rows it writes, its flags and errors."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from pyllmd.cli import main as cli_main
from pyllmd.core.tokenize import SimpleTokenizer
from pyllmd.sim.dataset.lookup import prompt_key, render_chat
from pyllmd.sim.dataset.store import DatasetStore
from pyllmd.sim.dataset.tool import conversation, parse_source, prompt_pairs

from .dataset_helpers import SHAREGPT, build_with_tool

TOK = SimpleTokenizer()


def rows(db: Path, table: str = "llmd") -> list[tuple[bytes, dict[str, list[object]], int]]:
    with sqlite3.connect(db) as conn:
        got = conn.execute(
            f'SELECT prompt_hash, gen_tokens, n_gen_tokens FROM "{table}" ORDER BY id'
        ).fetchall()
    return [(h, json.loads(g), n) for h, g, n in got]


def test_each_assistant_turn_gives_a_text_row_then_a_chat_row() -> None:
    turns = conversation(SHAREGPT[0])
    assert turns is not None
    assert prompt_pairs(turns) == [
        ("Hello there, bot!", "Hi, human. How are you today?"),
        ("### user:\nHello there, bot!\n", "Hi, human. How are you today?"),
        ("Fine, thanks.", "Glad to hear it."),
        (
            "### user:\nHello there, bot!\n### assistant:\nHi, human. How are you today?\n"
            "### user:\nFine, thanks.\n",
            "Glad to hear it.",
        ),
    ]


def test_database_rows_are_keyed_and_tokenized_like_the_simulator(tmp_path: Path) -> None:
    got = rows(build_with_tool(tmp_path))
    assert len(got) == 4
    key, gen, n = got[1]
    assert key == prompt_key(TOK.encode(render_chat([("user", "Hello there, bot!")]))[0])
    ids, strs = TOK.encode("Hi, human. How are you today?")
    assert gen == {"Tokens": ids, "Strings": strs}
    assert n == len(ids)
    assert got[0][0] == prompt_key(TOK.encode("Hello there, bot!")[0])


def test_openai_messages_with_a_system_turn(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello."},
        ]
    }
    turns = conversation(record)
    assert turns == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello.")]
    assert prompt_pairs(turns) == [
        ("Hi", "Hello."),
        ("### system:\nBe brief.\n### user:\nHi\n", "Hello."),
    ]


def test_unknown_role_ends_the_conversation_and_odd_turns_are_skipped() -> None:
    record = {
        "conversations": [
            {"from": "gpt", "value": "unprompted"},
            {"from": "human", "value": "q"},
            {"from": "human", "value": "q again"},
            {"from": "gpt", "value": "a"},
            {"from": "tool", "value": "x"},
            {"from": "human", "value": "later"},
            {"from": "gpt", "value": "never"},
        ]
    }
    turns = conversation(record)
    assert turns is not None and len(turns) == 4
    assert [p[1] for p in prompt_pairs(turns)] == ["a", "a"]
    assert prompt_pairs(turns)[0][0] == "q again"


def test_records_without_a_conversation_are_skipped() -> None:
    assert conversation({"id": "x"}) is None
    assert conversation("text") is None
    assert conversation({"conversations": "nope"}) is None


def test_jsonl_and_json_array_give_the_same_records() -> None:
    lines = "\n".join(json.dumps(r) for r in SHAREGPT) + "\n\n"
    assert parse_source(lines, "f") == parse_source(json.dumps(SHAREGPT), "f")


def test_bad_jsonl_line_is_named() -> None:
    with pytest.raises(Exception, match="^f:2: invalid JSON"):
        parse_source('{"messages": []}\n{oops\n', "f")


def test_outputs_json_and_card(tmp_path: Path) -> None:
    db = build_with_tool(tmp_path, SHAREGPT, "--output-file", "ds", "--table-name", "conv")
    assert db.name == "inference-sim-dataset.sqlite3"
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["ds.json", "ds.md", "ds.sqlite3"]
    records = json.loads((out / "ds.json").read_text())
    assert records[0]["input_text"] == "Hello there, bot!"
    assert records[0]["generated"] == "Hi, human. How are you today?"
    assert base64.b64decode(records[0]["prompt_hash"]) == rows(out / "ds.sqlite3", "conv")[0][0]
    card = (out / "ds.md").read_text()
    assert "`conv`" in card and "Rows: 4" in card
    DatasetStore.open(str(out / "ds.sqlite3"), "conv", False).close()


def test_max_records_limits_the_source(tmp_path: Path) -> None:
    db = build_with_tool(tmp_path, SHAREGPT * 3, "--max-records", "2")
    assert len(rows(db)) == 8


def test_local_path_and_input_file_as_upstream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "sg.json").write_text(json.dumps(SHAREGPT))
    argv = ["dataset", "--model", "m", "--local-path", str(tmp_path / "in")]
    argv += ["--input-file", "sg.json", "--output-path", str(tmp_path / "o")]
    assert cli_main(argv) == 0
    assert "4 rows from 1 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input-file", "x.json"], "--model is not defined"),
        (["--model", "m"], "--input-file is required"),
        (["--model", "m", "--hf-repo", "a/b", "--input-file", "f"], "--hf-repo is not supported"),
        (["--model", "m", "--input-file", "missing.json"], "cannot read"),
        (["--model", "m", "--input-file", "f", "--bogus"], "unknown flag: --bogus"),
        (["--model", "m", "--input-file", "f", "--max-records", "0"], "--max-records"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["dataset", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyllmd dataset: error: ") and message in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_with_tool(tmp_path)
    src = tmp_path / "source.json"
    argv = ["dataset", "--model", "m", "--input-file", str(src), "--output-path"]
    assert cli_main([*argv, str(tmp_path / "out")]) == 1
    assert "output file already exists" in capsys.readouterr().err


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["dataset", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--local-path", "--input-file", "--output-file", "--table-name", "--model"):
        assert flag in out
