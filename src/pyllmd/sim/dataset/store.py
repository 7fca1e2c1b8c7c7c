"""The dataset file: open, check, index, read rows (spec §10.2); `download` fetches it.

Upstream's schema and checks: table `--dataset-table-name` with columns `id
INTEGER`, `prompt_hash BLOB`, `gen_tokens JSON`, `n_gen_tokens INTEGER` (declared
types compared exactly, other columns allowed). The file is opened read-only inside
a `BEGIN EXCLUSIVE` transaction kept open while serving, so writers are locked
out; or, with `--dataset-in-memory`, copied into an in-memory database.

Beyond upstream, two lookups are indexed once at start-up instead of scanning the
table per request: prompt hashes in a TEMP table with an index (the file itself
stays read-only), and the response lengths as a sorted array, so "a random row of at
most N tokens" is a bisection and a primary-key read.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from array import array
from pathlib import Path

from pyllmd.core.errors import ConfigError
from pyllmd.sim.dataset.lookup import DatasetError

log = logging.getLogger(__name__)

EXPECTED_COLUMNS = {
    "id": "INTEGER",
    "prompt_hash": "BLOB",
    "gen_tokens": "JSON",
    "n_gen_tokens": "INTEGER",
}


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted, so any table name is safe to interpolate."""
    return '"' + name.replace('"', '""') + '"'


def create_table_sql(table: str) -> str:
    """The table a dataset file holds (what `pyllmd dataset` creates)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} (id INTEGER PRIMARY KEY, "
        "prompt_hash BLOB NOT NULL, gen_tokens JSON NOT NULL, n_gen_tokens INTEGER NOT NULL)"
    )


def check_schema(conn: sqlite3.Connection, table: str) -> None:
    """Every expected column is there with exactly its declared type, else ConfigError."""
    rows = conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
    found = {str(r[1]): str(r[2]) for r in rows}
    for column, wanted in EXPECTED_COLUMNS.items():
        if column not in found:
            raise ConfigError(
                f"failed to verify database: missing expected column in {table} table: {column}"
            )
        if found[column] != wanted:
            raise ConfigError(
                f"failed to verify database: column {column} has incorrect type: "
                f"expected {wanted}, got {found[column]}"
            )


class DatasetStore:
    """One opened dataset: key lookups and length-ordered random access."""

    def __init__(self, conn: sqlite3.Connection, table: str) -> None:
        self._conn = conn
        self._table = quote_ident(table)
        self.lengths, self._rowids = self._index()

    @classmethod
    def open(cls, path: str, table: str, in_memory: bool) -> DatasetStore:
        """Open, lock (or copy) and check the file; every failure is a one-line ConfigError."""
        if not os.path.exists(path):
            raise ConfigError(f"database file does not exist: {path}")
        uri = "file:" + Path(path).resolve().as_posix() + "?mode=ro"
        try:
            src = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            src.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error as e:
            raise ConfigError(f"failed to open database: {e}") from None
        conn = src
        try:
            conn = cls._lock_or_copy(src, table, in_memory)
            store = cls(conn, table)
        except (sqlite3.Error, ConfigError) as e:
            src.close()
            conn.close()
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"failed to query database {path}: {e}") from None
        log.info(
            "dataset %s: %d rows (table %s, %s)",
            path,
            len(store.lengths),
            table,
            "in memory" if in_memory else "read-only, locked",
        )
        return store

    @staticmethod
    def _lock_or_copy(src: sqlite3.Connection, table: str, in_memory: bool) -> sqlite3.Connection:
        try:
            src.execute("BEGIN EXCLUSIVE")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the lock now
        except sqlite3.OperationalError as e:
            raise ConfigError(f"database is locked or has other active connections: {e}") from None
        check_schema(src, table)
        if not in_memory:
            return src
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        src.backup(mem)
        src.close()
        return mem

    def _index(self) -> tuple[array[int], array[int]]:
        c = self._conn
        c.execute("DROP TABLE IF EXISTS temp.pyllmd_keys")
        c.execute("CREATE TEMP TABLE pyllmd_keys (prompt_hash BLOB, rid INTEGER)")
        c.execute(f"INSERT INTO temp.pyllmd_keys SELECT prompt_hash, rowid FROM main.{self._table}")
        c.execute("CREATE INDEX temp.pyllmd_keys_hash ON pyllmd_keys (prompt_hash)")
        lengths: array[int] = array("q")
        rowids: array[int] = array("q")
        n = "CAST(COALESCE(n_gen_tokens, 0) AS INTEGER)"
        sql = f"SELECT {n} AS n, rowid FROM main.{self._table} ORDER BY n, rowid"
        for length, rid in c.execute(sql):
            lengths.append(length)
            rowids.append(rid)
        return lengths, rowids

    def rows_for(self, key: bytes) -> list[str]:
        """`gen_tokens` of every row whose prompt hash is `key`, in row order."""
        sql = (
            f"SELECT t.gen_tokens FROM temp.pyllmd_keys k JOIN main.{self._table} t "
            "ON t.rowid = k.rid WHERE k.prompt_hash = ? ORDER BY k.rid"
        )
        return [_text(r[0]) for r in self._query(sql, (key,))]

    def row_at(self, position: int) -> str:
        """`gen_tokens` of the row at `position` in length order."""
        sql = f"SELECT gen_tokens FROM main.{self._table} WHERE rowid = ?"
        rows = self._query(sql, (self._rowids[position],))
        if not rows:
            raise DatasetError("row vanished from the dataset")
        return _text(rows[0][0])

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise DatasetError(str(e)) from None

    def close(self) -> None:
        """Close the connection, which ends the transaction and releases the lock."""
        self._conn.close()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise DatasetError(f"gen_tokens is {type(value).__name__}, not JSON text")
    return value
