"""Webhook subscriptions to one segment: its enter / exit events POSTed, signed, to a URL.

The ``webhook_url`` setting sends every segment's events to one endpoint (:mod:`.log`). A
subscription is narrower and is made by a person, from the dashboard's segment page or the API:
one segment, one URL, its own secret (shown once, when it is made). After each run
:func:`deliver_subscriptions` sends every subscription the events of its segment that it has not
had yet, one batch per computation date, each signed with HMAC-SHA256 of the body
(``X-Segmentum-Signature: sha256=<hex>``) and keyed (``X-Segmentum-Delivery``) by the
subscription and the date. A subscription remembers the last date delivered
(``delivered_through``), so a failing endpoint loses nothing: the same batch, under the same key,
is sent again on the next run, and a receiver that keeps the keys drops duplicates.

A new subscription starts at the segment's latest computation: it gets changes from then on,
not the segment's whole past.

    >>> import segmentum
    >>> wh = segmentum.connect("duckdb://")
    >>> subscriptions(wh)
    []
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

import ibis
import pyarrow as pa

from segmentum.errors import InputError
from segmentum.history.log import EVENTS, Delivery, post_signed
from segmentum.warehouse import Warehouse

SUBSCRIPTIONS = "webhook_subscriptions"
_SCHEMA = pa.schema(
    [
        ("subscription_id", pa.string()),
        ("segment", pa.string()),
        ("url", pa.string()),
        ("secret", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("delivered_through", pa.date32()),
        ("last_error", pa.string()),
    ]
)


@dataclass
class Subscription:
    """One segment's events sent to one URL. ``secret`` is only set in :func:`subscribe`'s
    answer; listings leave it out."""

    subscription_id: str
    segment: str
    url: str
    created_at: _dt.datetime
    delivered_through: _dt.date | None = None
    last_error: str | None = None
    secret: str = ""

    def public(self) -> dict[str, Any]:
        """As the API answers it (the secret only when just created)."""
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat(timespec="seconds")
        out["delivered_through"] = (
            self.delivered_through.isoformat() if self.delivered_through else None
        )
        if not self.secret:
            out.pop("secret")
        return out


def _check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unbalanced [ of an IPv6 address, for one
        host = None
    if host is None or parts.scheme not in ("http", "https") or any(ord(c) < 33 for c in url):
        raise InputError(
            f"{url!r} is not a web address a webhook can be sent to",
            "give the full address of your endpoint, like https://crm.example.com/hooks/segmentum",
        )
    if parts.username or parts.password:
        raise InputError(
            "a webhook address must not carry a user name or password",
            "the endpoint checks the X-Segmentum-Signature header instead",
        )
    return url


def _rows(wh: Warehouse) -> list[dict[str, Any]]:
    if not wh.has(SUBSCRIPTIONS):
        return []
    t = wh.table(SUBSCRIPTIONS)
    return list(t.order_by(["created_at", "subscription_id"]).to_pyarrow().to_pylist())


def _save(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    wh.write(SUBSCRIPTIONS, pa.Table.from_pylist(rows, schema=_SCHEMA))
    from segmentum.realtime.sync import sync

    sync(wh, create=False)  # live enter / exit webhooks go to the new set at once


def _latest_computation(wh: Warehouse, segment: str) -> _dt.date | None:
    if not wh.has("segment_members"):
        return None
    m = wh.table("segment_members")
    found: _dt.date | None = m.filter(m.segment == segment).as_of.max().to_pyarrow().as_py()
    return found


def subscribe(
    wh: Warehouse, segment: str, url: str, *, since: _dt.date | None = None
) -> Subscription:
    """Subscribe ``url`` to the enter / exit events of the saved segment ``segment``.

    ``since``: send the events computed after this date (default: the segment's latest
    computation, so only changes from now on). Returns the subscription with its new
    ``secret`` (stored for signing; shown only now).
    """
    from segmentum.segments.store import Segments

    Segments(wh).get(segment)  # a clear error for a segment that does not exist
    url = _check_url(url)
    rows = _rows(wh)
    if any(r["segment"] == segment and r["url"] == url for r in rows):
        raise InputError(
            f"{url} is already subscribed to {segment}",
            "unsubscribe it first to get a new secret",
        )
    sub = Subscription(
        subscription_id=secrets.token_hex(6),
        segment=segment,
        url=url,
        created_at=_dt.datetime.now(_dt.UTC).replace(tzinfo=None),  # shown to the second
        delivered_through=since if since is not None else _latest_computation(wh, segment),
        secret="whsec_" + secrets.token_urlsafe(24),
    )
    row = asdict(sub)
    _save(wh, [*rows, row])
    return sub


def unsubscribe(wh: Warehouse, subscription_id: str) -> None:
    """Stop a subscription (nothing more is sent to it)."""
    rows = _rows(wh)
    kept = [r for r in rows if r["subscription_id"] != subscription_id]
    if len(kept) == len(rows):
        raise InputError(f"there is no webhook subscription {subscription_id!r}")
    _save(wh, kept)


def drop_segment(wh: Warehouse, segment: str) -> int:
    """Stop every subscription to ``segment`` (deleted: a segment saved later under its name
    is another one, and must not inherit them); returns how many."""
    rows = _rows(wh)
    kept = [r for r in rows if r["segment"] != segment]
    if len(kept) < len(rows):
        _save(wh, kept)
    return len(rows) - len(kept)


def subscriptions(wh: Warehouse, segment: str | None = None) -> list[Subscription]:
    """Every subscription (or one segment's), oldest first, without secrets."""
    return [
        Subscription(**{**r, "secret": ""})
        for r in _rows(wh)
        if segment is None or r["segment"] == segment
    ]


def _body(key: str, segment: str, as_of: _dt.date, events: list[dict[str, Any]]) -> bytes:
    """The same bytes every time for the same events (a retry repeats the body exactly)."""
    ordered = sorted(events, key=lambda e: (e["event"], str(e["customer_id"])))
    return json.dumps(
        {
            "delivery_id": key,
            "segment": segment,
            "as_of": as_of.isoformat(),
            "events": [
                {
                    "segment": segment,
                    "customer_id": e["customer_id"],
                    "event": e["event"],
                    "as_of": as_of.isoformat(),
                }
                for e in ordered
            ],
        }
    ).encode()


def deliver_subscriptions(
    wh: Warehouse, *, retries: int = 3, backoff: float = 0.5, timeout: float = 10.0
) -> Delivery:
    """POST every subscription the events of its segment after ``delivered_through``, one
    signed batch per date, oldest first; a subscription stops at its first failing batch and
    keeps it for the next call."""
    rows = _rows(wh)
    if not rows or not wh.has(EVENTS):
        return Delivery(0, 0, 0, 0, [])
    ev = wh.table(EVENTS)
    delivered = failed = batches = 0
    errors: list[str] = []
    for r in rows:
        e = ev.filter(ev.segment == r["segment"])
        if r["delivered_through"] is not None:
            e = e.filter(e.as_of > ibis.literal(r["delivered_through"], "date"))
        pending = e.select("customer_id", "event", "as_of").to_pyarrow().to_pylist()
        by_date: dict[_dt.date, list[dict[str, Any]]] = {}
        for x in pending:
            by_date.setdefault(x["as_of"], []).append(x)
        r["last_error"] = None
        for day in sorted(by_date):
            key = hashlib.sha256(f"{r['subscription_id']}:{day}".encode()).hexdigest()[:32]
            body = _body(key, r["segment"], day, by_date[day])
            batches += 1
            error = post_signed(
                r["url"], r["secret"], body, key, retries=retries, backoff=backoff, timeout=timeout
            )
            if error is not None:
                failed += sum(len(v) for d, v in by_date.items() if d >= day)
                r["last_error"] = error
                errors.append(f"{r['segment']} -> {r['url']}: {error}")
                break
            delivered += len(by_date[day])
            r["delivered_through"] = day
    _save(wh, rows)
    return Delivery(delivered, failed, failed, batches, errors)
