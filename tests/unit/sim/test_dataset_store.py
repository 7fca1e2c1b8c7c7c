"""Opening a dataset: schema checks, the lock, in-memory copies and the start-up download."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pyllmd.core.errors import ConfigError
from pyllmd.sim.dataset.download import download_dataset
from pyllmd.sim.dataset.store import DatasetStore

from .conftest import SimFactory
from .dataset_helpers import make_db, text_key, words


def table(path: Path, ddl: str) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute(ddl)
    return path


GOOD = "CREATE TABLE llmd (id INTEGER PRIMARY KEY, prompt_hash BLOB, gen_tokens JSON, "


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        (
            GOOD + "n_gen_tokens INT)",
            "column n_gen_tokens has incorrect type: expected INTEGER, got INT",
        ),
        (
            GOOD.replace("gen_tokens JSON", "gen_tokens TEXT") + "n_gen_tokens INTEGER)",
            "column gen_tokens has incorrect type: expected JSON, got TEXT",
        ),
        (GOOD.rstrip(", ") + ")", "missing expected column in llmd table: n_gen_tokens"),
        ("CREATE TABLE other (x INTEGER)", "missing expected column in llmd table: id"),
    ],
)
def test_schema_is_checked_exactly(tmp_path: Path, ddl: str, message: str) -> None:
    db = table(tmp_path / "d.sqlite3", ddl)
    for in_memory in (False, True):
        with pytest.raises(ConfigError, match=message):
            DatasetStore.open(str(db), "llmd", in_memory)


def test_extra_columns_are_allowed(tmp_path: Path) -> None:
    db = table(tmp_path / "d.sqlite3", GOOD + "n_gen_tokens INTEGER, note TEXT)")
    DatasetStore.open(str(db), "llmd", False).close()


def test_missing_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database file does not exist"):
        DatasetStore.open(str(tmp_path / "nope.sqlite3"), "llmd", False)


def test_a_custom_table_name_is_read(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(b"k", ["a"])], table="my table")
    store = DatasetStore.open(str(db), "my table", False)
    assert store.rows_for(b"k") == ['{"Tokens": [3826002220], "Strings": ["a"]}']
    store.close()
    with pytest.raises(ConfigError, match="missing expected column in llmd table"):
        DatasetStore.open(str(db), "llmd", False)


def test_file_mode_locks_writers_out_until_closed(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(b"k", ["a"])])
    store = DatasetStore.open(str(db), "llmd", False)
    writer = sqlite3.connect(db, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        writer.execute("DELETE FROM llmd")
        writer.commit()
    writer.rollback()
    store.close()
    writer.execute("DELETE FROM llmd")
    writer.commit()
    writer.close()


def test_a_file_held_by_a_writer_cannot_be_opened(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(b"k", ["a"])])
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ConfigError, match="database is locked or has other active"):
            DatasetStore.open(str(db), "llmd", False)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_in_memory_copy_leaves_the_file_free(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.sqlite3", [(b"k", ["a"]), (b"k", ["b", "c"])])
    store = DatasetStore.open(str(db), "llmd", True)
    with sqlite3.connect(db, timeout=0) as writer:
        writer.execute("DELETE FROM llmd")
    assert len(store.rows_for(b"k")) == 2
    assert list(store.lengths) == [1, 2]
    store.close()


def test_lengths_are_sorted_and_row_at_follows_them(tmp_path: Path) -> None:
    rows = [(b"a", words(5)), (b"b", words(1)), (b"c", words(3))]
    store = DatasetStore.open(str(make_db(tmp_path / "d.sqlite3", rows)), "llmd", False)
    assert list(store.lengths) == [1, 3, 5]
    assert '"w2 "' in store.row_at(1) and '"w3 "' not in store.row_at(1)
    store.close()


async def test_bad_dataset_stops_the_app_from_being_built(
    start_sim: SimFactory, tmp_path: Path
) -> None:
    db = table(tmp_path / "d.sqlite3", "CREATE TABLE llmd (id INTEGER)")
    with pytest.raises(ConfigError, match="failed to verify database"):
        await start_sim("--dataset-path", str(db))


async def test_echo_mode_never_opens_a_dataset(start_sim: SimFactory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset cannot be defined in echo mode"):
        await start_sim("--mode", "echo", "--dataset-path", str(tmp_path / "x"))


# ------------------------------------------------------------ download

Serve = Callable[[web.Response | bytes], Awaitable[str]]


@pytest.fixture
async def serve_file() -> AsyncIterator[Serve]:
    """Factory: a loopback HTTP server answering GET /data with the given reply."""
    servers: list[TestServer] = []

    async def start(reply: web.Response | bytes) -> str:
        async def handler(_: web.Request) -> web.StreamResponse:
            if isinstance(reply, bytes):
                return web.Response(body=reply)
            return reply

        app = web.Application()
        app.router.add_get("/data", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/data"))

    yield start
    for server in servers:
        await server.close()


async def test_download_creates_parents_and_the_file_opens(
    serve_file: Serve, tmp_path: Path
) -> None:
    src = make_db(tmp_path / "src.sqlite3", [(text_key("q"), ["a"])])
    url = await serve_file(src.read_bytes())
    target = tmp_path / "deep" / "er" / "d.sqlite3"
    assert await download_dataset(url, str(target)) is True
    assert target.read_bytes() == src.read_bytes()
    DatasetStore.open(str(target), "llmd", False).close()
    assert await download_dataset(url, str(target)) is False  # exists: no download


async def test_download_bad_status_is_reported_and_leaves_nothing(
    serve_file: Serve, tmp_path: Path
) -> None:
    url = await serve_file(web.Response(status=404, text="gone"))
    target = tmp_path / "sub" / "d.sqlite3"
    with pytest.raises(ConfigError, match="^dataset download bad status: 404 Not Found$"):
        await download_dataset(url, str(target))
    assert list((tmp_path / "sub").iterdir()) == []


async def test_download_of_an_empty_body_is_an_error(serve_file: Serve, tmp_path: Path) -> None:
    url = await serve_file(b"")
    target = tmp_path / "d.sqlite3"
    with pytest.raises(ConfigError, match="downloaded file is empty"):
        await download_dataset(url, str(target))
    assert list(tmp_path.iterdir()) == []


async def test_broken_transfer_removes_the_partial_file(tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.close()  # the connection drops mid-body
        return resp

    app = web.Application()
    app.router.add_get("/data", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        with pytest.raises(ConfigError, match="failed to download dataset"):
            await download_dataset(str(server.make_url("/data")), str(tmp_path / "d.sqlite3"))
    finally:
        await server.close()
    assert list(tmp_path.iterdir()) == []


async def test_unreachable_url_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="failed to download dataset from") as err:
        await download_dataset("http://127.0.0.1:9/data", str(tmp_path / "d.sqlite3"))
    assert "\n" not in str(err.value)
