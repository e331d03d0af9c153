"""The send log's row states, changed one message at a time so a killed send loses nothing.

Every message of a campaign is one row of ``campaign_sends`` that moves through::

    pending --claim--> sending --delivered--> sent
                         |------transient---> pending   (retried by the next send)
                         '------permanent---> failed    (kept with its error)

Each arrow is its own small transaction, taken right before and right after the message goes
out. So a process killed at any moment leaves at most one row in ``sending``: the message in
flight, which may or may not have reached the server. The next send finds it (its claim names
a process that is gone, or is older than ``send_lease_seconds``) and sends it again: at most
one duplicate per kill, nothing lost, nothing else sent twice.

A claim is one ``UPDATE ... WHERE status = 'pending'``, atomic in DuckDB and PostgreSQL: two
senders of the same campaign (PostgreSQL allows several processes) never both get a row.
Spark has no row updates: outcomes are written in batches of :data:`SPARK_BATCH` messages,
so a killed send on Spark may repeat up to one batch (documented in docs/campaigns.md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from segmentum.warehouse import Warehouse

SENDS = "campaign_sends"
SPARK_BATCH = 100
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("campaign_id", pa.string()),
        ("customer_id", pa.string()),
        ("group", pa.string()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
        ("reason_args", pa.string()),
        ("scheduled_at", pa.timestamp("us")),
        ("language", pa.string()),
        ("rfm_segment", pa.string()),
        ("recommendation", pa.string()),
        ("channel", pa.string()),
        ("status", pa.string()),
        ("attempts", pa.int64()),
        ("claim_token", pa.string()),
        ("claimed_at", pa.timestamp("us")),
        ("sent_at", pa.timestamp("us")),
        ("error", pa.string()),
        ("address", pa.string()),
        ("logged_at", pa.timestamp("us")),
    ]
)
# Columns an older version copied onto every row (personal data the send does not need).
OLD_PERSONAL = ("email", "phone", "first_name", "last_name", "message")


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def upgrade(wh: Warehouse) -> None:
    """Bring a send log written by an older version to :data:`SCHEMA` (dropping the personal
    data it copied onto every row)."""
    if not wh.has(SENDS):
        return
    t = wh.table(SENDS)
    if list(t.columns) == SCHEMA.names:
        return
    target = ibis.schema(SCHEMA)
    cols = {
        name: t[name].cast(dtype) if name in t.columns else ibis.null(dtype)
        for name, dtype in target.items()
    }
    if "attempts" not in t.columns:
        cols["attempts"] = ibis.ifelse(t.status == "sent", 1, 0).cast("int64")
    wh.write(SENDS, wh.materialize(t.select(**cols), "sendsup"))


def sql(wh: Warehouse, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One row-level statement (DuckDB, PostgreSQL), committed at once: see
    :meth:`Warehouse.run_sql`."""
    return wh.run_sql(statement, params)


@contextlib.contextmanager
def exclusive(wh: Warehouse, name: str) -> Iterator[None]:
    """Only one process at a time inside the block for ``name`` (logging a campaign's plan).

    PostgreSQL: a session advisory lock. DuckDB: one process holds the file, and the service
    runs writes under its own lock. Spark: no cross-process guard.
    """
    if wh.engine != "postgres":
        yield
        return
    lock = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    sql(wh, "SELECT pg_advisory_lock(?)", [lock])
    try:
        yield
    finally:
        sql(wh, "SELECT pg_advisory_unlock(?)", [lock])


def _alive(host: str, pid: int) -> bool:
    """Whether the process that took a claim may still be running (unknown host: yes)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: gone all the same
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


class SendLog:
    """The rows of one campaign in ``campaign_sends``, claimed and marked one by one."""

    def __init__(self, wh: Warehouse, campaign_id: str, lease_seconds: float = 300.0) -> None:
        self.wh = wh
        self.campaign_id = campaign_id
        self.lease_seconds = lease_seconds
        self.rows_level = wh.engine in ("duckdb", "postgres")
        self.token = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._pending: list[dict[str, Any]] = []  # Spark: outcomes waiting for the next write

    # -------------------------------------------------------------------- recovery
    def reclaim(self) -> int:
        """Put back to ``pending`` the rows left in ``sending`` by a send that died."""
        if not self.rows_level:
            return 0
        rows = sql(
            self.wh,
            f"SELECT key, claim_token, claimed_at FROM {SENDS} "
            "WHERE campaign_id = ? AND status = 'sending'",
            [self.campaign_id],
        )
        stale = now() - _dt.timedelta(seconds=self.lease_seconds)
        back = 0
        for key, token, at in rows:
            host, _, rest = str(token or "").partition("/")
            pid = rest.partition("/")[0]
            dead = not pid.isdigit() or not _alive(host, int(pid))
            if dead or at is None or at < stale:
                back += len(
                    sql(
                        self.wh,
                        f"UPDATE {SENDS} SET status = 'pending', claim_token = NULL, "
                        "error = 'interrupted while sending: sent again' "
                        "WHERE key = ? AND status = 'sending' AND claim_token = ? RETURNING key",
                        [key, token],
                    )
                )
        return back

    # -------------------------------------------------------------------- one message
    def claim(self, key: str) -> bool:
        """Take ``key`` for this process; False when another sender has it or it is done."""
        if not self.rows_level:
            return True
        got = sql(
            self.wh,
            f"UPDATE {SENDS} SET status = 'sending', claim_token = ?, claimed_at = ?, "
            "attempts = COALESCE(attempts, 0) + 1 "
            "WHERE key = ? AND status = 'pending' RETURNING key",
            [self.token, now(), key],
        )
        return bool(got)

    def sent(self, key: str, at: _dt.datetime, address: str | None = None) -> None:
        self._finish(key, "sent", None, at, address)

    def retry(self, key: str, error: str) -> None:
        """A transient failure: back to ``pending`` for the next send, with its error."""
        self._finish(key, "pending", error, None, None)

    def skip(self, key: str, why: str) -> None:
        """Not to be sent after all (consent withdrawn since the plan): ``not_sent``."""
        self._finish(key, "not_sent", why, None, None)

    def failed(self, key: str, error: str) -> None:
        """A permanent failure (address refused, template cannot render): not retried."""
        self._finish(key, "failed", error, None, None)

    def _finish(
        self,
        key: str,
        status: str,
        error: str | None,
        at: _dt.datetime | None,
        address: str | None,
    ) -> None:
        if not self.rows_level:
            self._pending.append(
                {"key": key, "status": status, "error": error, "sent_at": at, "address": address}
            )
            if len(self._pending) >= SPARK_BATCH:
                self.flush()
            return
        sql(
            self.wh,
            f"UPDATE {SENDS} SET status = ?, error = ?, sent_at = ?, address = ?, "
            "claim_token = NULL WHERE key = ? AND claim_token = ?",
            [status, error, at, address, key, self.token],
        )

    # -------------------------------------------------------------------- many at once
    def publish(
        self, outcomes: Sequence[str], at: _dt.datetime, due_before: _dt.datetime | None
    ) -> int:
        """Mark every pending row of ``outcomes`` sent in one statement (web messages are
        published, files written as a whole); ``due_before`` limits it to rows due by then."""
        if not self.rows_level:
            t = self.wh.table(SENDS)
            t = t.filter(
                (t.campaign_id == self.campaign_id)
                & (t.status == "pending")
                & t.outcome.isin(list(outcomes))
            )
            if due_before is not None:
                t = t.filter(t.scheduled_at.isnull() | (t.scheduled_at <= due_before))
            keys = [r["key"] for r in t.select("key").to_pyarrow().to_pylist()]
            for k in keys:
                self._finish(k, "sent", None, at, None)
            self.flush()
            return len(keys)
        marks = ", ".join("?" for _ in outcomes)
        due = "" if due_before is None else " AND (scheduled_at IS NULL OR scheduled_at <= ?)"
        params: list[Any] = [at, self.campaign_id, *outcomes]
        if due_before is not None:
            params.append(due_before)
        got = sql(
            self.wh,
            f"UPDATE {SENDS} SET status = 'sent', sent_at = ?, error = NULL, "
            "attempts = COALESCE(attempts, 0) + 1 "
            f"WHERE campaign_id = ? AND status = 'pending' AND outcome IN ({marks}){due} "
            "RETURNING key",
            params,
        )
        return len(got)

    def controls_due(self, at: _dt.datetime) -> int:
        """A send of everything at once (``send --now``, a file): the control members' messages
        would have gone out at ``at`` too, not at the later times planned for them, so both
        groups are measured from the same moment (left at their times, the control group was
        not due yet, and the results compared the sent messages with nobody). Returns how
        many control rows were brought forward."""
        if self.rows_level:
            got = sql(
                self.wh,
                f"UPDATE {SENDS} SET scheduled_at = ? WHERE campaign_id = ? "
                "AND outcome = 'control' AND scheduled_at > ? RETURNING key",
                [at, self.campaign_id, at],
            )
            return len(got)
        s = self.wh.table(SENDS)
        when = ibis.literal(at, "timestamp")
        hit = (
            (s.campaign_id == self.campaign_id) & (s.outcome == "control") & (s.scheduled_at > when)
        )
        n = int(s.filter(hit).count().to_pyarrow().as_py())
        if n:
            moved = s.mutate(scheduled_at=ibis.ifelse(hit, when, s.scheduled_at))
            self.wh.write(SENDS, self.wh.materialize(moved.select(*SCHEMA.names), "sends"))
        return n

    def flush(self) -> None:
        """Spark: write the outcomes gathered so far (one rewrite of the log)."""
        if not self._pending:
            return
        upd = pa.Table.from_pylist(
            self._pending,
            schema=pa.schema(
                [
                    ("key", pa.string()),
                    ("status", pa.string()),
                    ("error", pa.string()),
                    ("sent_at", pa.timestamp("us")),
                    ("address", pa.string()),
                ]
            ),
        )
        self._pending = []
        u = self.wh.from_arrow(upd, "sendupd").rename(
            _s="status", _e="error", _at="sent_at", _a="address"
        )
        s = self.wh.table(SENDS)
        j = s.left_join(u, "key").drop("key_right")
        hit = j._s.notnull()
        new = j.mutate(
            status=ibis.ifelse(hit, j._s, j.status),
            error=ibis.ifelse(hit, j._e, j.error),
            sent_at=ibis.ifelse(hit, j._at, j.sent_at),
            address=ibis.ifelse(hit, j._a, j.address),
            attempts=ibis.ifelse(hit, j.attempts.fill_null(0) + 1, j.attempts),
        ).select(*SCHEMA.names)
        self.wh.write(SENDS, self.wh.materialize(new, "sends"))

    def forget_addresses(self, keep_days: int) -> int:
        """Clear delivered addresses older than ``keep_days`` (all of them with 0)."""
        cut = now() - _dt.timedelta(days=keep_days)
        if self.rows_level:
            return len(
                sql(
                    self.wh,
                    f"UPDATE {SENDS} SET address = NULL "
                    "WHERE address IS NOT NULL AND (sent_at IS NULL OR sent_at <= ?) "
                    "RETURNING key",
                    [cut],
                )
            )
        t = self.wh.table(SENDS)
        old = t.address.notnull() & (t.sent_at.isnull() | (t.sent_at <= cut))
        n = int(t.filter(old).count().to_pyarrow().as_py())
        if n:
            new = t.mutate(address=ibis.ifelse(old, ibis.null("string"), t.address))
            self.wh.write(SENDS, self.wh.materialize(new, "sendsaddr"))
        return n
