"""Where flows keep their state: a SQLite file (WAL) beside the warehouse.

Flows must keep running while a pipeline job holds the DuckDB warehouse, and every step of
every customer is a small write that must survive a crash, so their state lives apart, in
the way :mod:`segmentum.service.state` keeps keys and sessions: ``shop.duckdb`` ->
``shop.flows.sqlite``. It holds the flows' definitions, one row per customer per flow entry
(``runs``), every message (``messages``, with its idempotency key), the path each customer
took (``path``), the triggers received, the cursors on the trigger sources, and a snapshot of
what the flows need to know of each customer (``profiles``), copied from the warehouse
whenever it is free.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segmentum.config import Settings, load_settings
from segmentum.serving import sidecar_sqlite

# Events by which a customer withdraws consent, and the condition that picks them out of
# ``triggers`` (the partial index below is written with it).
UNSUBSCRIBE_EVENTS = ("unsubscribe", "unsubscribed", "consent_withdrawn")
UNSUBSCRIBE_TRIGGER = "kind = 'event' AND name IN ({})".format(
    ", ".join(f"'{n}'" for n in UNSUBSCRIBE_EVENTS)
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS flows (
    name TEXT PRIMARY KEY,
    yaml TEXT NOT NULL,
    status TEXT NOT NULL,              -- draft | enabled | disabled
    version INTEGER NOT NULL DEFAULT 1,
    origin TEXT,                       -- the template or playbook it came from
    start_seq INTEGER NOT NULL DEFAULT 0,  -- triggers up to this one predate enabling
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    grp TEXT,                          -- treatment | control (set by a split step)
    status TEXT NOT NULL,              -- active | done | exited
    step INTEGER NOT NULL DEFAULT 0,   -- the next step to run
    due_at TEXT NOT NULL,              -- when the next step may run (UTC)
    entered_at TEXT NOT NULL,
    convert_until TEXT NOT NULL,
    trigger_ref TEXT NOT NULL,
    exit_reason TEXT,
    exited_at TEXT,
    left_at TEXT,
    unsubscribed_at TEXT,
    converted_at TEXT,
    deferred INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    UNIQUE (flow, trigger_ref)
);
CREATE INDEX IF NOT EXISTS runs_due ON runs (status, due_at);
CREATE INDEX IF NOT EXISTS runs_customer ON runs (customer_id, flow);
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,              -- the idempotency key: flow.run.step
    run_id TEXT NOT NULL,
    flow TEXT NOT NULL,
    step INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,              -- sending | sent | retry | failed
    claim_token TEXT,
    claimed_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS messages_customer ON messages (customer_id, sent_at);
CREATE INDEX IF NOT EXISTS messages_flow ON messages (flow, step, status);
CREATE TABLE IF NOT EXISTS path (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    flow TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    step INTEGER,                      -- null: entering or leaving the flow
    at TEXT NOT NULL,
    what TEXT NOT NULL,                -- entered wait condition split sent skipped deferred
                                       -- retry failed exited done
    detail TEXT
);
CREATE INDEX IF NOT EXISTS path_run ON path (run_id, step);
CREATE INDEX IF NOT EXISTS path_customer ON path (customer_id);
CREATE INDEX IF NOT EXISTS path_flow ON path (flow, step, what);
CREATE TABLE IF NOT EXISTS triggers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,              -- realtime | batch | manual
    kind TEXT NOT NULL,                -- enter | exit | event
    name TEXT NOT NULL,                -- the segment or the event type
    customer_id TEXT NOT NULL,
    at TEXT NOT NULL,
    ref TEXT NOT NULL UNIQUE,
    properties TEXT
);
-- Who unsubscribed (flows tell it from never having consented): only those events.
CREATE INDEX IF NOT EXISTS triggers_unsubscribe ON triggers (customer_id) WHERE {unsubscribe};
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id TEXT PRIMARY KEY,
    email TEXT,
    phone TEXT,
    first_name TEXT,
    language TEXT,
    tz TEXT,
    birthday TEXT,                     -- MM-DD
    next_purchase TEXT,                -- YYYY-MM-DD
    last_purchase_at TEXT,
    consent TEXT NOT NULL DEFAULT '{}',   -- channel -> 0/1
    suppressed TEXT NOT NULL DEFAULT '[]',
    attrs TEXT NOT NULL DEFAULT '{}',
    segments TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS contacts (
    customer_id TEXT NOT NULL,
    at TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (customer_id, at, source)
);
CREATE TABLE IF NOT EXISTS columns (name TEXT PRIMARY KEY, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, token TEXT NOT NULL, until REAL NOT NULL);
""".replace("{unsubscribe}", UNSUBSCRIBE_TRIGGER)

# Changes to what older versions stored, applied once each (``PRAGMA user_version``).
MIGRATIONS = (
    # 1: runs that left because the channel had no consent were recorded as "unsubscribed"
    # before flows told never having consented from unsubscribing: the same test now, on
    # what the run logged (skipped for no consent, never for the suppression list) and the
    # unsubscribe events received.
    """
    UPDATE runs SET exit_reason = 'no_consent'
    WHERE exit_reason = 'unsubscribed'
      AND EXISTS (SELECT 1 FROM path p WHERE p.run_id = runs.run_id
                  AND p.what = 'skipped' AND p.detail = 'no_consent')
      AND NOT EXISTS (SELECT 1 FROM path p WHERE p.run_id = runs.run_id
                      AND p.what = 'skipped' AND p.detail = 'suppressed')
      AND NOT EXISTS (SELECT 1 FROM triggers t WHERE t.customer_id = runs.customer_id
                      AND {unsubscribe});
    UPDATE path SET detail = 'no_consent'
    WHERE what = 'exited' AND detail = 'unsubscribed'
      AND run_id IN (SELECT run_id FROM runs WHERE exit_reason = 'no_consent');
    """.replace(
        "{unsubscribe}",
        UNSUBSCRIBE_TRIGGER.replace("kind", "t.kind").replace("name IN", "t.name IN"),
    ),
)


def _migrate(con: sqlite3.Connection) -> None:
    """Apply the migrations this file has not had yet, each in its own transaction."""
    done = int(con.execute("PRAGMA user_version").fetchone()[0])
    for i, script in enumerate(MIGRATIONS[done:], start=done + 1):
        con.executescript(f"BEGIN IMMEDIATE; {script} PRAGMA user_version = {i}; COMMIT;")


def flows_path(url: str, settings: Settings | None = None) -> str:
    """Where the flows of the warehouse at ``url`` keep their state: the ``flow_store``
    setting, else beside a DuckDB file (``shop.duckdb`` -> ``shop.flows.sqlite``), else
    ``segmentum.flows.sqlite`` here (in memory for an in-memory warehouse)."""
    configured = getattr(settings or load_settings(), "flow_store", "")
    return str(configured) if configured else sidecar_sqlite(url, "flows")


class FlowStore:
    """The flows' SQLite file; every use is one short transaction on its own connection, so
    the CLI, the service and a runner share it without waiting on each other for long."""

    _memory_lock = threading.Lock()

    def __init__(self, path: str | Path, busy_seconds: float = 10.0) -> None:
        self.busy_seconds = busy_seconds
        self._anchor: sqlite3.Connection | None = None
        self._local = threading.local()
        if str(path) == ":memory:":
            with self._memory_lock:
                self.uri = f"file:segmentum-flows-{id(self)}?mode=memory&cache=shared"
                self._anchor = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
            self.path: Path | None = None
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.uri = self.path.absolute().as_uri()
        con = sqlite3.connect(self.uri, uri=True, timeout=self.busy_seconds)
        try:
            if self.path is not None:
                con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            _migrate(con)
        finally:
            con.close()

    @classmethod
    def for_warehouse(cls, url: str, settings: Settings | None = None) -> FlowStore:
        settings = settings or load_settings()
        return cls(flows_path(url, settings), max(settings.busy_wait_seconds, 10.0))

    def _connection(self) -> sqlite3.Connection:
        """This thread's own connection, kept open: opening and closing one per transaction
        costs more than the transaction (the last close of a WAL file checkpoints it)."""
        held = getattr(self._local, "con", None)
        if held is None or held[0] != os.getpid():  # a forked child opens its own
            con = sqlite3.connect(
                self.uri,
                uri=True,
                timeout=self.busy_seconds,
                isolation_level=None,
                check_same_thread=False,
            )
            con.row_factory = sqlite3.Row
            if self.path is not None:
                # WAL with synchronous=NORMAL can lose the last commits on power loss but
                # never on a process crash, which is the failure flows are built to survive.
                con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = held = (os.getpid(), con)
        return held[1]

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction (``BEGIN IMMEDIATE``: a writer waits its turn instead of failing
        half-way), committed on success, rolled back on any error. Inside :meth:`batch` it
        is part of the batch's transaction."""
        con = self._connection()
        if getattr(self._local, "batch", False):
            if not con.in_transaction:  # the batch's next transaction starts at its first write
                con.execute("BEGIN IMMEDIATE")
            yield con
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many small changes in one transaction (the steps of many customers): all of them
        or none survive a crash, and none has had an effect outside the file, so a resumed
        tick simply does them again. :meth:`commit` makes what is written so far durable
        (before a message goes out)."""
        con = self._connection()
        self._local.batch = True
        try:
            yield
            if con.in_transaction:
                con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            self._local.batch = False

    def commit(self) -> None:
        """Inside :meth:`batch`: commit what is written so far; the batch goes on in a new
        transaction (a no-op outside one)."""
        con = self._connection()
        if getattr(self._local, "batch", False) and con.in_transaction:
            # The next transaction begins at the next write: no lock is held meanwhile (while
            # a message goes out, other processes may write).
            con.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._connection().execute(sql, tuple(params)).fetchall()]

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        with self.connect() as con:
            return con.execute(sql, tuple(params)).rowcount

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        held = getattr(self._local, "con", None)
        if held is not None:
            held[1].close()
            self._local.con = None
