"""The real-time store: tracked events, live segment membership, transitions and the webhook
outbox, in one SQLite file beside the warehouse (``shop.duckdb`` -> ``shop.realtime.sqlite``).

Everything on the live path must keep working while a pipeline job holds the DuckDB warehouse
for minutes, so nothing here reads it: the warehouse hands over what the live side needs
(segment definitions, webhook subscriptions, each customer's recent orders) when it changes
and at every publish (:mod:`.sync`). SQLite in WAL mode lets the service, the CLI and a
pipeline job read beside one writer; every write is one short transaction.

Times are stored as ISO-8601 UTC text of one fixed width (``2026-12-02T07:30:00.000000Z``),
so comparing the text compares the instants.

    >>> store = RealtimeStore(":memory:")
    >>> store.record([{"event_id": "e1", "customer_id": "C1", "event_type": "page_view",
    ...                "at": "2026-01-01T10:00:00.000000Z"}]).accepted
    1
    >>> store.record([{"event_id": "e1", "customer_id": "C1", "event_type": "page_view",
    ...                "at": "2026-01-01T10:00:00.000000Z"}]).duplicates
    1
    >>> [e["event_type"] for e in store.events_since(0)]
    ['page_view']
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentum.config import Settings, load_settings
from segmentum.serving import sidecar_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS tracked_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    customer_id TEXT,
    anonymous_id TEXT,
    event_type TEXT NOT NULL,
    at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    product_id TEXT,
    amount REAL,
    invoice_id TEXT,
    properties TEXT,
    at_text TEXT
);
CREATE INDEX IF NOT EXISTS tracked_events_customer ON tracked_events (customer_id, at);
CREATE TABLE IF NOT EXISTS segment_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    segment TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    cause_event_id TEXT
);
CREATE TABLE IF NOT EXISTS realtime_members (
    segment TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (segment, customer_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS realtime_customers (
    customer_id TEXT PRIMARY KEY,
    evaluated_at TEXT NOT NULL,
    due_at TEXT,
    segments TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS realtime_customers_due ON realtime_customers (due_at);
CREATE TABLE IF NOT EXISTS realtime_segments (
    name TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    level TEXT NOT NULL,
    realtime INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    longest_seconds INTEGER,
    synced_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS realtime_subscriptions (
    subscription_id TEXT PRIMARY KEY,
    segment TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transition_seq INTEGER NOT NULL,
    subscription_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    delivery_key TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    claimed_until REAL,
    claimed_by TEXT,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (status, next_at);
CREATE INDEX IF NOT EXISTS webhook_outbox_order ON webhook_outbox (subscription_id, status, id);
CREATE TABLE IF NOT EXISTS realtime_meta (k TEXT PRIMARY KEY, v TEXT);
"""

EVENT_COLUMNS = (
    "event_id",
    "customer_id",
    "anonymous_id",
    "event_type",
    "at",
    "received_at",
    "product_id",
    "amount",
    "invoice_id",
    "properties",
    "at_text",
)
_memory = itertools.count()


def iso(when: _dt.datetime) -> str:
    """``when`` as the store writes times: UTC, fixed width, ``Z``."""
    if when.tzinfo is not None:
        when = when.astimezone(_dt.UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> _dt.datetime:
    """A time the store wrote, as an aware UTC datetime."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(_dt.UTC)


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def realtime_path(url: str, settings: Settings | None = None) -> str:
    """Where the real-time store of the warehouse at ``url`` lives: beside the state store
    (``shop.state.sqlite`` -> ``shop.realtime.sqlite``), so beside a DuckDB file warehouse;
    a private in-memory store for an in-memory warehouse."""
    configured = (settings or load_settings()).state_store
    if configured:
        p = Path(configured)
        stem = p.name[: -len(".state.sqlite")] if p.name.endswith(".state.sqlite") else p.stem
        return str(p.with_name(stem + ".realtime.sqlite"))
    return sidecar_sqlite(url, "realtime")


@dataclass
class RecordReport:
    """What :meth:`RealtimeStore.record` did: ``read = accepted + duplicates``."""

    accepted: int = 0
    duplicates: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # the accepted, with their seq
    duplicate_ids: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.accepted + self.duplicates

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "duplicate_ids": self.duplicate_ids,
        }


class RealtimeStore:
    """The real-time SQLite file (or, for ``:memory:``, a private in-memory database).

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
        self._write_lock = threading.Lock()
        self._write_con: sqlite3.Connection | None = None
        self._write_pid = 0
        # Set by the service's worker thread, which then checkpoints (see _writer).
        self.background_checkpoints = False
        if str(path) == ":memory:":
            # A shared-cache in-memory database lives while one connection holds it open.
            with self._memory_lock:
                self.uri = f"file:segmentum-realtime-{next(_memory)}-{id(self)}?mode=memory"
                self.uri += "&cache=shared"
                self._anchor = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
            self.path: Path | None = None
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.uri = self.path.absolute().as_uri()
        with self.connect() as con:
            if self.path is not None:
                con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            # Columns added since the first version of the file.
            have = {r[1] for r in con.execute("PRAGMA table_info(webhook_outbox)")}
            if "claimed_by" not in have:
                con.execute("ALTER TABLE webhook_outbox ADD COLUMN claimed_by TEXT")

    @classmethod
    def for_warehouse(cls, url: str, settings: Settings | None = None) -> RealtimeStore:
        """The real-time store of the warehouse at ``url`` (see :func:`realtime_path`)."""
        settings = settings or load_settings()
        return cls(realtime_path(url, settings), settings.busy_wait_seconds)

    @contextlib.contextmanager
    def connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on success.

        ``write``: on this store's one write connection, taking SQLite's write lock at once
        (``BEGIN IMMEDIATE``), so a read-modify-write (membership, claiming outbox rows) cannot
        interleave with another writer's. The threads of one process queue on a lock for it
        (SQLite's own busy wait polls with sleeps, and starves some waiters under load); other
        processes wait up to ``busy_seconds``. Otherwise a short-lived connection for reads.
        """
        if write:
            with self._write_lock:
                con = self._writer()
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            return
        con = self._open()
        try:
            with con:
                yield con
        finally:
            con.close()

    def _open(self, **kw: Any) -> sqlite3.Connection:
        con = sqlite3.connect(self.uri, uri=True, timeout=self.busy_seconds, **kw)
        con.row_factory = sqlite3.Row
        if self.path is not None:
            # WAL with NORMAL sync: a commit survives a process crash; only a power cut may
            # lose the last transactions, never corrupt the file.
            con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _writer(self) -> sqlite3.Connection:
        """The write connection, opened on first use (and again in a forked child)."""
        import os

        if self._write_con is None or self._write_pid != os.getpid():
            self._write_con = self._open(check_same_thread=False, isolation_level=None)
            self._write_pid = os.getpid()
            if self.background_checkpoints:
                # A checkpoint after a commit runs inside the write lock, and its fsync can
                # take seconds while a pipeline job loads the disk: the worker runs them.
                self._write_con.execute("PRAGMA wal_autocheckpoint=0")
        return self._write_con

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the file without stopping writers (PASSIVE)."""
        if self.path is None:
            return
        con = self._open()
        try:
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            con.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute(sql, params).fetchall()]

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement that writes; the number of rows it changed."""
        with self.connect(write=True) as con:
            return con.execute(sql, params).rowcount

    def close(self) -> None:
        """Close the write connection (the next write opens it again)."""
        with self._write_lock:
            if self._write_con is not None:
                self._write_con.close()
                self._write_con = None

    # ------------------------------------------------------------------ events
    def record(self, events: list[dict[str, Any]]) -> RecordReport:
        """Store checked events (see :func:`segmentum.realtime.events.check_events`); an
        ``event_id`` already stored (or repeated in ``events``) is counted as a duplicate and
        stored once."""
        with self.connect(write=True) as con:
            return record_in(con, events)

    def events_since(self, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Tracked events with ``seq`` above ``after_seq``, oldest first (a reader keeps the
        last seq it handled and asks again)."""
        rows = self.query(
            "SELECT * FROM tracked_events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        )
        return [_event_out(r) for r in rows]

    def transitions_since(self, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Segment enter / exit transitions with ``seq`` above ``after_seq``, oldest first."""
        return self.query(
            "SELECT seq, customer_id, segment, kind, at, cause_event_id FROM segment_transitions "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )

    def events_of(self, customer_id: str, since: _dt.datetime) -> list[dict[str, Any]]:
        """One customer's tracked events at or after ``since``, oldest first."""
        with self.connect() as con:
            return events_of_in(con, customer_id, iso(since))

    def members(self, segment: str) -> list[str]:
        """The customers the live evaluation holds in ``segment`` (those evaluated live)."""
        rows = self.query(
            "SELECT customer_id FROM realtime_members WHERE segment = ? ORDER BY customer_id",
            (segment,),
        )
        return [r["customer_id"] for r in rows]

    def forget(self, customer_id: str, *, dry_run: bool = False) -> dict[str, int]:
        """Erase a customer (right to erasure): their tracked events, live membership,
        transitions and the webhooks about them; rows per table (none erased with
        ``dry_run``)."""
        seqs = "SELECT seq FROM segment_transitions WHERE customer_id = ?"
        counts: dict[str, int] = {}
        with self.connect(write=True) as con:
            for table, where in (
                ("webhook_outbox", f"transition_seq IN ({seqs})"),
                ("segment_transitions", "customer_id = ?"),
                ("tracked_events", "customer_id = ?"),
                ("realtime_members", "customer_id = ?"),
                ("realtime_customers", "customer_id = ?"),
            ):
                n = int(
                    con.execute(
                        f"SELECT count(*) FROM {table} WHERE {where}", (customer_id,)
                    ).fetchone()[0]
                )
                if n:
                    counts[table] = n
                    if not dry_run:
                        con.execute(f"DELETE FROM {table} WHERE {where}", (customer_id,))
        return counts

    def prune(self, keep_days: int = 90, delivered_days: int = 7) -> dict[str, int]:
        """Drop what nothing needs any more: tracked events already in the warehouse and
        older than ``keep_days`` (the longest live window), transitions older than that, and
        webhooks delivered more than ``delivered_days`` ago. Rows per table."""
        now = now_utc()
        old = iso(now - _dt.timedelta(days=keep_days))
        sent = now.timestamp() - delivered_days * 86400
        with self.connect(write=True) as con:
            drained = int(get_meta(con, "drained_seq") or 0)
            out = {
                "tracked_events": con.execute(
                    "DELETE FROM tracked_events WHERE seq <= ? AND at < ?", (drained, old)
                ).rowcount,
                "segment_transitions": con.execute(
                    "DELETE FROM segment_transitions WHERE at < ?", (old,)
                ).rowcount,
                "webhook_outbox": con.execute(
                    "DELETE FROM webhook_outbox WHERE status = 'delivered' AND delivered_at < ?",
                    (sent,),
                ).rowcount,
            }
        return out

    def segments(self) -> list[dict[str, Any]]:
        """The saved segments as last synced, each with whether it runs live and why not."""
        rows = self.query(
            "SELECT name, rule, level, realtime, reason, longest_seconds, synced_at "
            "FROM realtime_segments ORDER BY name"
        )
        for r in rows:
            r["realtime"] = bool(r["realtime"])
        return rows

    def segment_status(self, segment: str) -> dict[str, Any]:
        """One segment's live numbers: its members now, the last event the live side received
        (any customer's, as ``received_at`` UTC text), the segment's last change, and its
        webhooks still waiting to be delivered."""
        with self.connect() as con:
            one = con.execute
            members = int(
                one(
                    "SELECT count(*) FROM realtime_members WHERE segment = ?", (segment,)
                ).fetchone()[0]
            )
            last = one(
                "SELECT received_at FROM tracked_events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            change = one(
                "SELECT kind, at FROM segment_transitions WHERE segment = ? "
                "ORDER BY seq DESC LIMIT 1",
                (segment,),
            ).fetchone()
            waiting = int(
                one(
                    "SELECT count(*) FROM webhook_outbox o JOIN segment_transitions t "
                    "ON t.seq = o.transition_seq WHERE t.segment = ? AND o.status = 'pending'",
                    (segment,),
                ).fetchone()[0]
            )
        return {
            "members": members,
            "last_event_received": last["received_at"] if last else None,
            "last_change": dict(change) if change else None,
            "webhooks_waiting": waiting,
        }

    def status(self) -> dict[str, Any]:
        """Queue depths, the last event and transition, and the segments that run live."""
        with self.connect() as con:
            one = con.execute
            last = one(
                "SELECT seq, event_id, event_type, at, received_at FROM tracked_events "
                "ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            last_t = one(
                "SELECT seq, segment, kind, at FROM segment_transitions ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            outbox = {
                r["status"]: int(r["n"])
                for r in one("SELECT status, count(*) AS n FROM webhook_outbox GROUP BY status")
            }
            errors = [
                dict(r)
                for r in one(
                    "SELECT url, last_error, attempts FROM webhook_outbox "
                    "WHERE last_error IS NOT NULL AND status != 'delivered' "
                    "ORDER BY id DESC LIMIT 3"
                )
            ]
            events = int(one("SELECT count(*) FROM tracked_events").fetchone()[0])
            drained = int(get_meta(con, "drained_seq") or 0)
            waiting = int(
                one("SELECT count(*) FROM tracked_events WHERE seq > ?", (drained,)).fetchone()[0]
            )
        return {
            "events": events,
            "last_event": dict(last) if last else None,
            "last_transition": dict(last_t) if last_t else None,
            "drained_seq": drained,
            "pending_warehouse": waiting,
            "outbox": {
                "pending": outbox.get("pending", 0),
                "delivered": outbox.get("delivered", 0),
                "failed": outbox.get("failed", 0),
            },
            "outbox_errors": errors,
            "segments": self.segments(),
        }


def record_in(con: sqlite3.Connection, events: list[dict[str, Any]]) -> RecordReport:
    """:meth:`RealtimeStore.record` inside a transaction the caller holds."""
    out = RecordReport()
    received = iso(now_utc())
    for e in events:
        row = {c: e.get(c) for c in EVENT_COLUMNS}
        row["event_id"] = row["event_id"] or f"evt_{uuid.uuid4().hex}"
        row["received_at"] = row["received_at"] or received
        if isinstance(row["properties"], dict):
            row["properties"] = json.dumps(row["properties"], sort_keys=True)
        cur = con.execute(
            f"INSERT OR IGNORE INTO tracked_events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
            tuple(row[c] for c in EVENT_COLUMNS),
        )
        if cur.rowcount:
            out.accepted += 1
            out.events.append(_event_out({**row, "seq": cur.lastrowid}))
        else:
            out.duplicates += 1
            out.duplicate_ids.append(str(row["event_id"]))
    return out


def events_of_in(con: sqlite3.Connection, customer_id: str, since: str) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT * FROM tracked_events WHERE customer_id = ? AND at >= ? ORDER BY at, seq",
        (customer_id, since),
    ).fetchall()
    return [_event_out(dict(r)) for r in rows]


def _event_out(row: dict[str, Any]) -> dict[str, Any]:
    props = row.get("properties")
    if isinstance(props, str):
        try:
            row["properties"] = json.loads(props)
        except ValueError:
            row["properties"] = {}
    elif props is None:
        row["properties"] = {}
    return row


def get_meta(con: sqlite3.Connection, key: str) -> str | None:
    row = con.execute("SELECT v FROM realtime_meta WHERE k = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(con: sqlite3.Connection, key: str, value: str) -> None:
    con.execute(
        "INSERT INTO realtime_meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = ?",
        (key, value, value),
    )
