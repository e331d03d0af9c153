"""The webhook outbox worker: sends every queued live transition, signed, off the request path.

A row of ``webhook_outbox`` is one transition for one subscription, its body fixed when it was
queued. The worker claims rows for a lease (so two processes never send the same row at once),
POSTs each signed with HMAC-SHA256 (``X-Segmentum-Signature: sha256=<hex>``) under its
idempotency key (``X-Segmentum-Delivery``), and marks it delivered. A subscription's rows go
out in order: while one waits for a retry, the later ones wait behind it. A failing endpoint is
retried with growing pauses (``realtime_retry_seconds`` doubling, at most five minutes apart)
up to ``realtime_max_attempts`` times, then the row is marked failed and shown by
``segmentum realtime status``.

Delivery is at least once: a crash after the receiver answered but before the row was marked
sends it again on restart, under the same key, so a receiver that keeps the keys it has seen
processes every transition exactly once.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

from segmentum.history.log import sign
from segmentum.realtime.engine import Engine
from segmentum.realtime.store import RealtimeStore

log = logging.getLogger("segmentum.realtime")
MAX_PAUSE = 300.0
CLAIMANT = f"{socket.gethostname()}:{os.getpid()}"
CHECKPOINT_SECONDS = 2.0  # the write-ahead log copied into the file, off the write path
PRUNE_SECONDS = 3600.0  # how often old events, transitions and delivered webhooks are dropped


@dataclass
class Sent:
    """One pass of :func:`deliver_pending`."""

    delivered: int = 0
    failed: int = 0  # attempts that failed (rows kept for a retry, or given up)

    @property
    def attempted(self) -> int:
        return self.delivered + self.failed


class Poster:
    """Signed POSTs over kept-alive connections, one per endpoint (a TCP and TLS handshake per
    webhook would cost more than everything else the worker does)."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._open: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def post(self, url: str, secret: str, body: bytes, key: str) -> str | None:
        """None on a 2xx answer, else what went wrong."""
        parts = urllib.parse.urlsplit(url)
        where = (parts.scheme, parts.hostname or "", parts.port or 0)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "X-Segmentum-Signature": sign(secret, body),
            "X-Segmentum-Delivery": key,
        }
        for attempt in (1, 2):  # a kept-alive connection the endpoint closed: once more
            con = self._connection(where)
            try:
                con.request("POST", path, body=body, headers=headers)
                resp = con.getresponse()
                resp.read()
                if resp.will_close:
                    con.close()
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
            except (http.client.HTTPException, OSError) as exc:
                con.close()
                self._open.pop(where, None)
                if attempt == 2 or isinstance(exc, TimeoutError):
                    return str(exc) or type(exc).__name__
        return None  # pragma: no cover - the loop returns

    def _connection(self, where: tuple[str, str, int]) -> http.client.HTTPConnection:
        con = self._open.get(where)
        if con is None:
            scheme, host, port = where
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            con = kind(host, port or None, timeout=self.timeout)
            self._open[where] = con
        return con

    def close(self) -> None:
        for con in self._open.values():
            con.close()
        self._open.clear()


def deliver_pending(
    store: RealtimeStore,
    *,
    limit: int = 200,
    lease: float = 30.0,
    timeout: float = 5.0,
    retry_seconds: float = 0.5,
    max_attempts: int = 12,
    poster: Poster | None = None,
) -> Sent:
    """Claim and send the outbox rows that are due, oldest first, in order per subscription."""
    poster = poster or Poster(timeout)
    now = time.time()
    # A look without the write lock first: an idle outbox costs the writers nothing.
    due = store.query(
        "SELECT 1 FROM webhook_outbox WHERE status = 'pending' AND next_at <= ? LIMIT 1", (now,)
    )
    if not due:
        return Sent()
    with store.connect(write=True) as con:
        rows = con.execute(
            "SELECT id, subscription_id, url, secret, delivery_key, body, attempts "
            "FROM webhook_outbox o WHERE status = 'pending' AND next_at <= ? "
            "AND (claimed_until IS NULL OR claimed_until < ?) AND NOT EXISTS ("
            "  SELECT 1 FROM webhook_outbox p WHERE p.subscription_id = o.subscription_id "
            "  AND p.status = 'pending' AND p.id < o.id "
            "  AND (p.next_at > ? OR p.claimed_until >= ?)) "
            "ORDER BY id LIMIT ?",
            (now, now, now, now, limit),
        ).fetchall()
        if rows:
            con.executemany(
                "UPDATE webhook_outbox SET claimed_until = ?, claimed_by = ? WHERE id = ?",
                [(now + lease, CLAIMANT, r["id"]) for r in rows],
            )
    out = Sent()
    stopped: set[str] = set()
    sent: list[tuple[float, int, int]] = []
    try:
        for r in rows:
            if r["subscription_id"] in stopped:
                store.execute(
                    "UPDATE webhook_outbox SET claimed_until = NULL WHERE id = ?", (r["id"],)
                )
                continue
            error = poster.post(r["url"], r["secret"], bytes(r["body"]), r["delivery_key"])
            done = time.time()
            attempts = int(r["attempts"]) + 1
            if error is None:
                out.delivered += 1
                sent.append((done, attempts, r["id"]))
                if len(sent) >= 50:  # noted in groups: one write for many deliveries
                    _mark_sent(store, sent)
                continue
            out.failed += 1
            stopped.add(r["subscription_id"])
            status = "failed" if attempts >= max_attempts else "pending"
            pause = min(MAX_PAUSE, retry_seconds * 2 ** (attempts - 1))
            store.execute(
                "UPDATE webhook_outbox SET status = ?, attempts = ?, next_at = ?, "
                "last_error = ?, claimed_until = NULL WHERE id = ?",
                (status, attempts, done + pause, error, r["id"]),
            )
    finally:
        _mark_sent(store, sent)
    return out


def _mark_sent(store: RealtimeStore, sent: list[tuple[float, int, int]]) -> None:
    if sent:
        with store.connect(write=True) as con:
            con.executemany(
                "UPDATE webhook_outbox SET status = 'delivered', delivered_at = ?, attempts = ?, "
                "claimed_until = NULL, last_error = NULL WHERE id = ?",
                sent,
            )
        sent.clear()


def release_dead_claims(store: RealtimeStore) -> int:
    """Rows claimed by a process of this machine that is gone (a crash): sent again at once
    instead of after their lease. Returns how many."""
    host = socket.gethostname()
    gone = []
    for r in store.query(
        "SELECT DISTINCT claimed_by FROM webhook_outbox WHERE status = 'pending' "
        "AND claimed_until IS NOT NULL AND claimed_by LIKE ?",
        (f"{host}:%",),
    ):
        pid = int(str(r["claimed_by"]).rsplit(":", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            gone.append(r["claimed_by"])
        except PermissionError:
            pass  # alive, another user's
    return sum(
        store.execute(
            "UPDATE webhook_outbox SET claimed_until = NULL WHERE status = 'pending' "
            "AND claimed_by = ?",
            (who,),
        )
        for who in gone
    )


class Worker:
    """A background thread of the service: delivers the outbox and re-evaluates customers
    whose windows expire.

    Parameters
    ----------
    engine
        The live engine (its ``wake`` event says new rows are queued in this process).
    poll
        Seconds between looks at the outbox when nothing woke the worker (rows queued by
        another process, retries coming due).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        poll: float = 0.5,
        timeout: float = 5.0,
        retry_seconds: float = 0.5,
        max_attempts: int = 12,
    ) -> None:
        self.engine = engine
        self.poll = poll
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.max_attempts = max_attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.poster = Poster(timeout)

    def start(self) -> Worker:
        if self._thread is None or not self._thread.is_alive():
            release_dead_claims(self.engine.store)
            self.engine.store.background_checkpoints = True
            self.engine.store.close()  # reopened without automatic checkpoints
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="segmentum-realtime", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the row being sent (rows claimed and not sent are sent again later)."""
        self._stop.set()
        self.engine.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        last_due, last_prune, last_checkpoint = 0.0, 0.0, 0.0
        while not self._stop.is_set():
            self.engine.wake.clear()
            try:
                sent = deliver_pending(
                    self.engine.store,
                    timeout=self.timeout,
                    retry_seconds=self.retry_seconds,
                    max_attempts=self.max_attempts,
                    poster=self.poster,
                )
                if time.monotonic() - last_due >= 1.0:
                    last_due = time.monotonic()
                    self.engine.evaluate_due()
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    last_checkpoint = time.monotonic()
                    self.engine.store.checkpoint()
                if time.monotonic() - last_prune >= PRUNE_SECONDS:
                    last_prune = time.monotonic()
                    self.engine.store.prune(self.engine.settings.realtime_max_window_days)
            except Exception:  # a locked or missing file must not end the thread
                self.errors += 1
                if self.errors in (1, 10, 100, 1000):  # said, without flooding the log
                    log.exception("real-time worker: error %d (it keeps going)", self.errors)
                sent = Sent()
                self._stop.wait(self.poll)
            if not sent.attempted:
                self.engine.wake.wait(self.poll)
        self.poster.close()
        self.engine.store.background_checkpoints = False
        self.engine.store.close()
