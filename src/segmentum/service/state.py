"""The service's own small state (API keys, dashboard sessions, jobs) in a SQLite file.

None of it is analytics, and all of it must be read and written while a long command holds the
warehouse: a revoked key has to stop working at once, a sign-in must not wait for a pipeline
run. SQLite is built for that (many processes, short transactions, readers beside a writer in
WAL mode), and ships with Python. Every use opens a connection and closes it again, so the CLI
(``segmentum api-key revoke``) and the server share the file without ever locking each other
out for more than a few milliseconds.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from segmentum.config import Settings, load_settings
from segmentum.privacy import purge_downloads
from segmentum.serving import ThreadReader, sidecar_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    sid_sha256 TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_key ON sessions (key_id);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '[]',
    result TEXT,
    error TEXT,
    error_kind TEXT,
    pid INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
-- Personal data that left through the service (docs/privacy.md): who asked, when, what, and
-- the customers in the file, so ``segmentum forget`` can name every download of a person.
CREATE TABLE IF NOT EXISTS downloads (
    download_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_name TEXT NOT NULL,
    via TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    kind TEXT NOT NULL,
    segment TEXT,
    platform TEXT,
    rows INTEGER NOT NULL,
    personal_data INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS downloads_at ON downloads (at);
-- Written once per download (100k+ ids in one executemany): one index only, the one forget
-- needs; a purge finds a download's rows by scanning, which happens once per old download.
CREATE TABLE IF NOT EXISTS download_members (
    download_id TEXT NOT NULL,
    customer_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS download_members_customer ON download_members (customer_id);
"""


def state_path(url: str, settings: Settings | None = None) -> str:
    """Where the state of the warehouse at ``url`` lives: the ``state_store`` setting, else
    beside a DuckDB file warehouse (``shop.duckdb`` -> ``shop.state.sqlite``), else a
    private in-memory store for an in-memory warehouse, else ``segmentum.state.sqlite`` here."""
    configured = (settings or load_settings()).state_store
    return configured or sidecar_sqlite(url, "state")


class StateStore:
    """A SQLite file (or, for ``:memory:``, a private in-memory database of this process).

    Parameters
    ----------
    path
        The file; created with its tables on first use.
    busy_seconds
        How long a write waits for another process's write before giving up.
    """

    _memory_lock = threading.Lock()

    def __init__(self, path: str | Path, busy_seconds: float = 5.0) -> None:
        self.busy_seconds = busy_seconds
        self._anchor: sqlite3.Connection | None = None
        if str(path) == ":memory:":
            # A shared-cache in-memory database lives while one connection holds it open.
            with self._memory_lock:
                self.uri = f"file:segmentum-state-{id(self)}?mode=memory&cache=shared"
                self._anchor = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
            self.path: Path | None = None
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.uri = self.path.absolute().as_uri()
        self._reader = (
            ThreadReader(self.path, self.uri, busy_seconds) if self.path is not None else None
        )
        with self.connect() as con:
            if self.path is not None:
                con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)

    @classmethod
    def for_warehouse(cls, url: str, settings: Settings | None = None) -> StateStore:
        settings = settings or load_settings()
        return cls(state_path(url, settings), settings.busy_wait_seconds)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection: one transaction, committed on success, then closed."""
        con = sqlite3.connect(self.uri, uri=True, timeout=self.busy_seconds)
        con.row_factory = sqlite3.Row
        try:
            with con:
                yield con
        finally:
            con.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute(sql, params).fetchall()]

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """:meth:`query` for the hot path (the key check on every request): on this thread's
        own open connection instead of a new one each time.

        Each SELECT runs in autocommit, so it sees every write committed before it (a revoked
        key stops at once). The connection is reopened when the file is replaced.
        """
        found = self._reader.get() if self._reader is not None else None
        if found is None:  # in memory, or not created yet (query creates it)
            return self.query(sql, params)
        return [dict(r) for r in found[0].execute(sql, params).fetchall()]

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self.connect() as con:
            return con.execute(sql, params).rowcount

    def record_download(
        self,
        *,
        key_id: str,
        via: str,
        endpoint: str,
        kind: str,
        customer_ids: Iterable[object],
        personal_data: bool,
        segment: str | None = None,
        platform: str | None = None,
        keep_days: int = 0,
        at: _dt.datetime | None = None,
    ) -> str | None:
        """Remember that the key ``key_id`` downloaded a file with these customers in it (the
        ids actually in the file), for :func:`segmentum.privacy.forget` to list.

        A file without customer ids is not recorded: it names nobody (a report alone, a
        products file). Records older than ``keep_days`` days (0: none) are purged in the same
        transaction. Returns the download id, or None when nothing was recorded.

        Parameters
        ----------
        key_id
            The key that asked (its name is read from ``api_keys``, so a dashboard session,
            which carries only the id, is named too).
        via
            ``api`` or ``dashboard``.
        endpoint
            The path asked for, e.g. ``/v1/exports/segments/vip.csv``.
        kind
            ``segment export``, ``ad audience``, ``retargeting audience`` or ``look-alike
            seed``.
        """
        # Sorted: the index on customer_id then grows in order (about twice as fast).
        ids = sorted({str(x) for x in customer_ids if x is not None})
        if not ids:
            return None
        download_id = uuid.uuid4().hex[:16]
        when = at or _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
        with self.connect() as con:
            found = con.execute("SELECT name FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            con.execute(
                "INSERT INTO downloads (download_id, at, key_id, key_name, via, endpoint, kind, "
                "segment, platform, rows, personal_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    download_id,
                    when.isoformat(timespec="seconds"),
                    key_id,
                    found["name"] if found is not None else "",
                    via,
                    endpoint,
                    kind,
                    segment,
                    platform,
                    len(ids),
                    int(personal_data),
                ),
            )
            con.executemany(
                "INSERT INTO download_members (download_id, customer_id) VALUES (?, ?)",
                ((download_id, c) for c in ids),
            )
            if keep_days > 0:
                purge_downloads(con, when - _dt.timedelta(days=keep_days))
        return download_id
