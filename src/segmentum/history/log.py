"""The membership log: who entered and who left each segment, and when; signed webhooks.

``log_changes`` compares a segment computation with the previous one and appends ``enter`` and
``exit`` events to ``segment_events``. Each event is also queued in ``webhook_outbox``;
``deliver`` POSTs pending events in batches to the configured endpoint, signed with
HMAC-SHA256 (header ``X-Segmentum-Signature: sha256=<hex>``) and carrying an idempotency key
(``X-Segmentum-Delivery``, the same on every retry of a batch). A failing endpoint loses
nothing: events stay pending with their attempts and last error, and are retried (with
exponential backoff within a call, and on the next run).
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
    )
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
    """POST every pending event; mark delivered ones, keep failed ones pending."""
    if not wh.has(OUTBOX):
        return Delivery(0, 0, 0, 0, [])
    out = wh.table(OUTBOX)
    pending = out.filter(out.status == "pending").order_by("event_id").to_pyarrow().to_pylist()
    delivered: list[str] = []
    failed: dict[str, str] = {}
    batches = 0
    errors: list[str] = []
    for i in range(0, len(pending), batch_size):
        batch = pending[i : i + batch_size]
        ids = [r["event_id"] for r in batch]
        key = hashlib.sha256("|".join(ids).encode()).hexdigest()[:32]
        body = json.dumps(
            {
                "delivery_id": key,
                "events": [
                    {
                        "segment": r["segment"],
                        "customer_id": r["customer_id"],
                        "event": r["event"],
                        "as_of": r["as_of"].isoformat(),
                    }
                    for r in batch
                ],
            }
        ).encode()
        batches += 1
        error = post_signed(
            url, secret, body, key, retries=retries, backoff=backoff, timeout=timeout
        )
        if error is None:
            delivered.extend(ids)
        else:
            failed.update({i_: error for i_ in ids})
            errors.append(f"batch {key}: {error}")
    if delivered or failed:
        _update(wh, delivered, failed, retries + 1)
    still = int(wh.table(OUTBOX).filter(ibis._.status == "pending").count().to_pyarrow().as_py())
    return Delivery(len(delivered), len(failed), still, batches, errors)


def _update(wh: Warehouse, delivered: list[str], failed: dict[str, str], attempts: int) -> None:
    now = _now()
    upd = pa.table(
        {
            "event_id": pa.array(delivered + list(failed), pa.string()),
            "ok": pa.array([True] * len(delivered) + [False] * len(failed)),
            "err": pa.array([None] * len(delivered) + list(failed.values()), pa.string()),
        }
    )
    u = wh.from_arrow(upd, "obu")
    out = wh.table(OUTBOX)
    j = out.left_join(u, "event_id").drop("event_id_right")
    touched = j.ok.notnull()
    new = j.select(
        "event_id",
        "segment",
        "customer_id",
        "event",
        "as_of",
        status=ibis.ifelse(j.ok.fill_null(False), "delivered", j.status),
        attempts=ibis.ifelse(touched, j.attempts + attempts, j.attempts),
        last_error=ibis.ifelse(touched & ~j.ok.fill_null(False), j.err, j.last_error),
        delivered_at=ibis.ifelse(
            j.ok.fill_null(False), ibis.literal(now, "timestamp"), j.delivered_at
        ),
    )
    wh.write(OUTBOX, wh.materialize(new, "obn"))
