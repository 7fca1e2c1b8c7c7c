"""Datasets across processes: `pyllmd dataset` builds one, `pyllmd sim` downloads and serves it."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from openai import OpenAI

from tests.e2e.harness import LOOPBACK, SimProcess, free_port

pytestmark = pytest.mark.e2e

StartSim = Callable[..., SimProcess]
RunSim = Callable[..., subprocess.CompletedProcess[str]]

CONVERSATIONS = [
    {
        "messages": [
            {"role": "system", "content": "You answer about weather."},
            {"role": "user", "content": "Will it rain in Oslo?"},
            {"role": "assistant", "content": "Light rain is expected after noon."},
        ]
    },
    {
        "id": "sg",
        "conversations": [
            {"from": "human", "value": "Name a prime."},
            {"from": "gpt", "value": "Seven is prime."},
        ],
    },
]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loopback HTTP server over a fresh directory: (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def build_dataset(tmp_path: Path, out: Path) -> Path:
    src = tmp_path / "conversations.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS))
    argv = ["--model", "m", "--input-file", str(src), "--output-path", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "pyllmd", "dataset", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "4 rows from 2 records" in result.stdout
    return out / "inference-sim-dataset.sqlite3"


def test_sim_downloads_the_tools_dataset_and_chat_hits_it(
    start_sim: StartSim, file_server: tuple[Path, str], tmp_path: Path
) -> None:
    root, base = file_server
    build_dataset(tmp_path, root)
    target = tmp_path / "cache" / "nested" / "ds.sqlite3"
    url = f"{base}/inference-sim-dataset.sqlite3"
    sim = start_sim("--model", "m", "--dataset-url", url, "--dataset-path", str(target))
    assert target.is_file()
    client = OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "You answer about weather."},
            {"role": "user", "content": "Will it rain in Oslo?"},
        ],
    )
    assert chat.choices[0].message.content == "Light rain is expected after noon."
    text = client.completions.create(model="m", prompt="Name a prime.")
    assert text.choices[0].text == "Seven is prime."


def test_bad_download_status_ends_startup_with_one_line(
    run_sim: RunSim, file_server: tuple[Path, str], tmp_path: Path
) -> None:
    _, base = file_server
    target = tmp_path / "ds.sqlite3"
    result = run_sim(
        "--model", "m", "--dataset-url", f"{base}/missing", "--dataset-path", str(target)
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last == "pyllmd sim: error: --dataset-url: dataset download bad status: 404 File not found"
    )
    assert "Traceback" not in result.stderr
    assert not target.exists()


def test_a_dataset_with_the_wrong_schema_ends_startup(run_sim: RunSim, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "bad.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE llmd (id INTEGER, prompt_hash TEXT)")
    port = str(free_port())
    result = run_sim("--model", "m", "--host", LOOPBACK, "--port", port, "--dataset-path", str(db))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pyllmd sim: error: --dataset-path: failed to verify database: ")
    assert last.endswith("column prompt_hash has incorrect type: expected BLOB, got TEXT")
    assert "Traceback" not in result.stderr
