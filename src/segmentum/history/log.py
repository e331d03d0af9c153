"""The membership log: who entered and who left each segment, and when; signed webhooks.

``log_changes`` compares a segment computation with the previous one and appends ``enter`` and
``exit`` events to ``segment_events``. Each event is also queued in ``webhook_outbox``;
``deliver`` POSTs pending events in batches to the configured endpoint, signed with
HMAC-SHA256 (header ``X-Segmentum-Signature: sha256=<hex>``) and carrying an idempotency key
(``X-Segmentum-Delivery``).

A batch is fixed before its first POST: its events are written down with the batch's key
(``batch_id``, a hash of their ids), and every retry, in the same call or any later one, sends
exactly the same body under the same key. An event is never re-batched under a new key, so a
receiver that keeps the keys it has seen drops every duplicate, even after it answered too
late and the POST was retried. A failing endpoint loses nothing: the batch stays pending with
its attempts and last error, and is retried (with exponential backoff within a call, and on
the next run). Each batch's outcome is written as soon as it is known, so a killed delivery
repeats at most the batch in flight, under its key.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa

from segmentum.warehouse import Warehouse

EVENTS = "segment_events"
OUTBOX = "webhook_outbox"


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def log_changes(wh: Warehouse, as_of: _dt.date, run_id: str, queue: bool = False) -> dict[str, int]:
    """Append enter / exit events between the previous computation and ``as_of``."""
    m = wh.table("segment_members")
    prev_dates = m.filter(m.as_of < ibis.literal(as_of, "date")).as_of.max()
    prev = prev_dates.to_pyarrow().as_py()
    if prev is None:
        return {"enter": 0, "exit": 0}
    now = m.filter(m.as_of == ibis.literal(as_of, "date")).select("segment", "customer_id")
    before = m.filter(m.as_of == ibis.literal(prev, "date")).select("segment", "customer_id")
    # Only segments computed on both dates can have changes (a new segment is not "entered").
    both = (
        now.select("segment").distinct().semi_join(before.select("segment").distinct(), "segment")
    )
    now = now.semi_join(both, "segment")
    before = before.semi_join(both, "segment")
    entered = now.anti_join(before, ["segment", "customer_id"]).mutate(event=ibis.literal("enter"))
    left = before.anti_join(now, ["segment", "customer_id"]).mutate(event=ibis.literal("exit"))
    ev = entered.union(left).mutate(
        as_of=ibis.literal(as_of, "date"),
        previous_as_of=ibis.literal(prev, "date"),
        run_id=ibis.literal(run_id),
    )
    if wh.has(EVENTS):
        stored = wh.table(EVENTS)
        kept = wh.materialize(stored.filter(stored.as_of != ibis.literal(as_of, "date")), "evk")
        wh.write(EVENTS, wh.materialize(kept.union(ev), "eva"))
    else:
        wh.write(EVENTS, ev)
    cur = wh.table(EVENTS)
    cur = cur.filter(cur.as_of == ibis.literal(as_of, "date"))
    if queue:
        _enqueue(wh, cur)
    counts = cur.group_by("event").aggregate(n=cur.count()).to_pyarrow().to_pylist()
    out = {"enter": 0, "exit": 0}
    out.update({r["event"]: int(r["n"]) for r in counts})
    return out


_OUTBOX_COLUMNS = {
    "event_id": "string",
    "segment": "string",
    "customer_id": "string",
    "event": "string",
    "as_of": "date",
    "status": "string",
    "attempts": "int64",
    "last_error": "string",
    "delivered_at": "timestamp",
    "batch_id": "string",
}


def _upgrade(wh: Warehouse) -> None:
    """An outbox written before batches were fixed gets its (empty) ``batch_id`` column."""
    if wh.has(OUTBOX) and "batch_id" not in wh.table(OUTBOX).columns:
        out = wh.table(OUTBOX)
        wh.write(OUTBOX, wh.materialize(out.mutate(batch_id=ibis.null("string")), "obup"))


def _enqueue(wh: Warehouse, events: ibis.expr.types.Table) -> None:
    key = (
        events.segment
        + ":"
        + events.customer_id
        + ":"
        + events.event
        + ":"
        + events.as_of.cast("string")
    )
    rows = events.select(
        event_id=key,
        segment="segment",
        customer_id="customer_id",
        event="event",
        as_of="as_of",
        status=ibis.literal("pending"),
        attempts=ibis.literal(0, "int64"),
        last_error=ibis.null("string"),
        delivered_at=ibis.null("timestamp"),
        batch_id=ibis.null("string"),
    )
    _upgrade(wh)
    if wh.has(OUTBOX):
        out = wh.table(OUTBOX)
        new = rows.anti_join(out, "event_id")  # re-logging never duplicates a delivery
        wh.insert(OUTBOX, wh.materialize(new, "obx"))
    else:
        wh.write(OUTBOX, rows)


@dataclass
class Delivery:
    delivered: int
    failed: int
    pending: int
    batches: int
    errors: list[str]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_signed(
    url: str,
    secret: str,
    body: bytes,
    key: str,
    *,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 10.0,
) -> str | None:
    """POST ``body`` signed with HMAC-SHA256, retrying with exponential backoff.

    ``key`` goes in ``X-Segmentum-Delivery`` and is the same on every retry, so the receiver can
    drop a duplicate. Returns None on success, else the last error.
    """
    headers = {
        "Content-Type": "application/json",
        "X-Segmentum-Signature": sign(secret, body),
        "X-Segmentum-Delivery": key,
    }
    error: str | None = None
    for attempt in range(retries + 1):
        try:
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return None
                error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    return error


def _body(key: str, batch: list[dict[str, Any]]) -> bytes:
    """The JSON of a batch: the same bytes every time for the same events."""
    events = sorted(batch, key=lambda r: r["event_id"])
    return json.dumps(
        {
            "delivery_id": key,
            "events": [
                {
                    "segment": r["segment"],
                    "customer_id": r["customer_id"],
                    "event": r["event"],
                    "as_of": r["as_of"].isoformat(),
                }
                for r in events
            ],
        }
    ).encode()


def deliver(
    wh: Warehouse,
    url: str,
    secret: str,
    *,
    batch_size: int = 500,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 10.0,
) -> Delivery:
    """POST every pending event: first the batches already fixed (unchanged, same key), then
    new batches of the events not yet in one; mark each batch as soon as its POST ends."""
    if not wh.has(OUTBOX):
        return Delivery(0, 0, 0, 0, [])
    _upgrade(wh)
    _fix_batches(wh, batch_size)
    out = wh.table(OUTBOX)
    pending = out.filter(out.status == "pending").order_by("event_id").to_pyarrow().to_pylist()
    batches: dict[str, list[dict[str, Any]]] = {}
    for r in pending:
        batches.setdefault(r["batch_id"], []).append(r)
    delivered = failed = 0
    errors: list[str] = []
    for key, batch in batches.items():
        error = post_signed(
            url, secret, _body(key, batch), key, retries=retries, backoff=backoff, timeout=timeout
        )
        _mark(wh, key, error, retries + 1)
        if error is None:
            delivered += len(batch)
        else:
            failed += len(batch)
            errors.append(f"batch {key}: {error}")
    still = int(wh.table(OUTBOX).filter(ibis._.status == "pending").count().to_pyarrow().as_py())
    return Delivery(delivered, failed, still, len(batches), errors)


def _fix_batches(wh: Warehouse, batch_size: int) -> None:
    """Give every pending event without a batch one, written down before anything is sent."""
    out = wh.table(OUTBOX)
    loose = out.filter((out.status == "pending") & out.batch_id.isnull())
    ids = [
        r["event_id"]
        for r in loose.select("event_id").order_by("event_id").to_pyarrow().to_pylist()
    ]
    if not ids:
        return
    rows: list[tuple[str, str]] = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        key = hashlib.sha256("|".join(chunk).encode()).hexdigest()[:32]
        rows.extend((e, key) for e in chunk)
    upd = wh.from_arrow(
        pa.table(
            {
                "event_id": pa.array([e for e, _ in rows], pa.string()),
                "_batch": pa.array([k for _, k in rows], pa.string()),
            }
        ),
        "obb",
    )
    j = out.left_join(upd, "event_id").drop("event_id_right")
    new = j.mutate(batch_id=ibis.coalesce(j.batch_id, j._batch)).select(*_OUTBOX_COLUMNS)
    wh.write(OUTBOX, wh.materialize(new, "obf"))


def _mark(wh: Warehouse, key: str, error: str | None, attempts: int) -> None:
    """Record one batch's outcome at once (a killed delivery repeats only the batch in flight)."""
    now = _now()
    if wh.engine in ("duckdb", "postgres"):
        if error is None:
            wh.run_sql(
                f"UPDATE {OUTBOX} SET status = 'delivered', delivered_at = ?, "
                "attempts = attempts + ? WHERE batch_id = ? AND status = 'pending'",
                [now, attempts, key],
            )
        else:
            wh.run_sql(
                f"UPDATE {OUTBOX} SET attempts = attempts + ?, last_error = ? "
                "WHERE batch_id = ? AND status = 'pending'",
                [attempts, error, key],
            )
        return
    out = wh.table(OUTBOX)
    hit = (out.batch_id == key) & (out.status == "pending")
    ok = error is None
    new = out.mutate(
        status=ibis.ifelse(hit & ok, "delivered", out.status),
        attempts=ibis.ifelse(hit, out.attempts + attempts, out.attempts),
        last_error=ibis.ifelse(hit & (not ok), ibis.literal(error, "string"), out.last_error),
        delivered_at=ibis.ifelse(hit & ok, ibis.literal(now, "timestamp"), out.delivered_at),
    ).select(*_OUTBOX_COLUMNS)
    wh.write(OUTBOX, wh.materialize(new, "obn"))
