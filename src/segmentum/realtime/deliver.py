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

import threading
import time
from dataclasses import dataclass

from segmentum.history.log import post_signed
from segmentum.realtime.engine import Engine
from segmentum.realtime.store import RealtimeStore

MAX_PAUSE = 300.0


@dataclass
class Sent:
    """One pass of :func:`deliver_pending`."""

    delivered: int = 0
    failed: int = 0  # attempts that failed (rows kept for a retry, or given up)

    @property
    def attempted(self) -> int:
        return self.delivered + self.failed


def deliver_pending(
    store: RealtimeStore,
    *,
    limit: int = 200,
    lease: float = 30.0,
    timeout: float = 5.0,
    retry_seconds: float = 0.5,
    max_attempts: int = 12,
) -> Sent:
    """Claim and send the outbox rows that are due, oldest first, in order per subscription."""
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
                "UPDATE webhook_outbox SET claimed_until = ? WHERE id = ?",
                [(now + lease, r["id"]) for r in rows],
            )
    out = Sent()
    stopped: set[str] = set()
    for r in rows:
        if r["subscription_id"] in stopped:
            store.execute("UPDATE webhook_outbox SET claimed_until = NULL WHERE id = ?", (r["id"],))
            continue
        error = post_signed(
            r["url"], r["secret"], bytes(r["body"]), r["delivery_key"], retries=0, timeout=timeout
        )
        done = time.time()
        attempts = int(r["attempts"]) + 1
        if error is None:
            out.delivered += 1
            store.execute(
                "UPDATE webhook_outbox SET status = 'delivered', delivered_at = ?, attempts = ?, "
                "claimed_until = NULL, last_error = NULL WHERE id = ?",
                (done, attempts, r["id"]),
            )
            continue
        out.failed += 1
        stopped.add(r["subscription_id"])
        status = "failed" if attempts >= max_attempts else "pending"
        pause = min(MAX_PAUSE, retry_seconds * 2 ** (attempts - 1))
        store.execute(
            "UPDATE webhook_outbox SET status = ?, attempts = ?, next_at = ?, last_error = ?, "
            "claimed_until = NULL WHERE id = ?",
            (status, attempts, done + pause, error, r["id"]),
        )
    return out


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

    def start(self) -> Worker:
        if self._thread is None or not self._thread.is_alive():
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
        last_due = 0.0
        while not self._stop.is_set():
            self.engine.wake.clear()
            try:
                sent = deliver_pending(
                    self.engine.store,
                    timeout=self.timeout,
                    retry_seconds=self.retry_seconds,
                    max_attempts=self.max_attempts,
                )
                if time.monotonic() - last_due >= 1.0:
                    last_due = time.monotonic()
                    self.engine.evaluate_due()
            except Exception:  # a locked or missing file must not end the thread
                self.errors += 1
                sent = Sent()
                self._stop.wait(self.poll)
            if not sent.attempted:
                self.engine.wake.wait(self.poll)
