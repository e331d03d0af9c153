"""Checking tracked events as a client sends them (the events API, ``segmentum events track``).

One event is a JSON object; a batch is ``{"events": [...]}``. Every problem is reported at once,
each naming the event's position in the batch, the field and what to do, and a batch with any
problem is stored not at all: the client fixes it and sends it again, and the ``event_id``s
make that safe (an event already stored is counted once).

    >>> ok, problems = check_events([{"customer_id": 17850.0, "event_type": "Add_To_Cart",
    ...     "timestamp": "2026-03-01T10:00:00+01:00"}])
    >>> ok[0]["customer_id"], ok[0]["event_type"], ok[0]["at"]
    ('17850', 'add_to_cart', '2026-03-01T09:00:00.000000Z')
    >>> check_events([{"event_type": "page_view"}])[1][0].field
    'customer_id'
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import zoneinfo
from dataclasses import asdict, dataclass
from typing import Any

from segmentum.realtime.store import iso, now_utc

# The event types the rule language and the features know; others are accepted as written.
KNOWN_TYPES = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "cart_abandoned",
    "checkout",
    "purchase",
    "email_open",
    "email_click",
    "push_open",
    "push_click",
    "sms_click",
    "in_app_open",
    "in_app_click",
    "web_message_view",
    "web_message_click",
    "search",
    "sign_up",
    "login",
)
FIELDS = (
    "event_id",
    "customer_id",
    "anonymous_id",
    "event_type",
    "timestamp",
    "product_id",
    "amount",
    "invoice_id",
    "properties",
    "device",
    "channel",
    "campaign_id",
)
# Top-level fields that the warehouse's events table has columns for: kept in properties here.
CARRIED = ("device", "channel", "campaign_id")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TRAILING_ZEROS = re.compile(r"^[+-]?\d+\.0+$")
_SCIENTIFIC = re.compile(r"^\d\.\d+[eE]\+?\d{1,2}$")
MAX_ID = 200
MAX_PROPERTIES_BYTES = 4096
FUTURE_SLACK = _dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one event: where (index, field), what, and what to do."""

    index: int
    field: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"event {self.index}, {self.field}: {self.message} ({self.hint})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalise_id(value: Any) -> str | None:
    """An id as text, numbers written as floats brought back to whole numbers, as the warehouse
    does on ingest (``17850.0``, ``"17850.0"`` and ``"1.785E4"`` are ``"17850"``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == math.floor(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    if not text:
        return None
    if _TRAILING_ZEROS.match(text):
        return re.sub(r"\.0+$", "", text)
    if _SCIENTIFIC.match(text):
        num = float(text)
        if num == math.floor(num) and num < 1e15:
            return str(int(num))
    return text


def parse_timestamp(value: Any, timezone: str) -> _dt.datetime:
    """An ISO-8601 time (``2026-03-01T10:00:00+01:00``, ``...Z``); one without an offset is
    read in the business time zone (the ``timezone`` setting), as the warehouse reads files."""
    if not isinstance(value, str):
        raise ValueError("not text")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = _dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        try:
            zone: _dt.tzinfo = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = _dt.UTC
        when = when.replace(tzinfo=zone)
    return when.astimezone(_dt.UTC)


def check_events(
    events: list[Any],
    *,
    timezone: str = "UTC",
    earliest: _dt.date = _dt.date(1990, 1, 1),
    now: _dt.datetime | None = None,
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Check and normalise ``events``; returns the rows to store and every problem found.

    A row has the columns of ``tracked_events``: ``at`` is the time in UTC, ``at_text`` the
    time as sent (the warehouse keeps the local time written), and ``device``, ``channel``,
    ``campaign_id`` travel in ``properties``.
    """
    now = now or now_utc()
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i, e in enumerate(events):
        before = len(problems)

        def bad(field: str, message: str, hint: str, i: int = i) -> None:
            problems.append(Problem(i, field, message, hint))

        if not isinstance(e, dict):
            bad("event", "is not a JSON object", 'send {"event_type": ..., "customer_id": ...}')
            continue
        unknown = sorted(k for k in e if k not in FIELDS)
        for k in unknown[:3]:
            bad(
                str(k)[:60],
                "is not a field of an event",
                "put extra data in properties; fields: " + ", ".join(FIELDS),
            )
        ids: dict[str, str | None] = {}
        for name in ("event_id", "customer_id", "anonymous_id", "product_id", "invoice_id"):
            raw = e.get(name)
            if raw is not None and (
                isinstance(raw, bool) or not isinstance(raw, str | int | float)
            ):
                bad(name, "must be text or a number", f'e.g. "{name}": "A-1001"')
                continue
            ids[name] = normalise_id(raw)
            if ids[name] is not None and len(ids[name] or "") > MAX_ID:
                bad(name, f"is longer than {MAX_ID} characters", "send a shorter id")
        if not ids.get("customer_id") and not ids.get("anonymous_id"):
            bad(
                "customer_id",
                "is missing (and so is anonymous_id)",
                "send the customer's id, or the visitor's cookie id as anonymous_id",
            )
        kind = e.get("event_type")
        event_type = kind.strip().lower() if isinstance(kind, str) else ""
        if kind is None or event_type == "":
            bad("event_type", "is missing", "e.g. " + ", ".join(KNOWN_TYPES[:6]) + "...")
        elif not _TYPE.match(event_type):
            bad(
                "event_type",
                f"{str(kind)[:60]!r} is not an event type",
                "use lower-case letters, digits and _, starting with a letter: add_to_cart",
            )
        stamp = e.get("timestamp")
        at = now
        if stamp is not None:
            try:
                at = parse_timestamp(stamp, timezone)
            except (ValueError, TypeError, OverflowError):
                bad(
                    "timestamp",
                    f"{str(stamp)[:60]!r} is not a time",
                    "send ISO 8601 with its offset, e.g. 2026-03-01T10:00:00+01:00 (or leave it "
                    "out for now)",
                )
            else:
                if at > now + FUTURE_SLACK:
                    bad(
                        "timestamp",
                        f"{stamp} is in the future",
                        "check the sender's clock and time zone offset",
                    )
                elif at.date() < earliest:
                    bad(
                        "timestamp",
                        f"{stamp} is before {earliest.isoformat()}",
                        "check the date (the earliest_date setting sets the limit)",
                    )
        amount = e.get("amount")
        if amount is not None:
            if isinstance(amount, bool) or not isinstance(amount, int | float | str):
                bad("amount", "must be a number", 'e.g. "amount": 59.90')
                amount = None
            else:
                try:
                    amount = float(amount)
                except ValueError:
                    bad("amount", f"{str(amount)[:60]!r} is not a number", "e.g. 59.90")
                    amount = None
                else:
                    if not math.isfinite(amount):
                        bad("amount", "must be a finite number", "e.g. 59.90")
        if event_type == "purchase":
            if not ids.get("invoice_id"):
                bad(
                    "invoice_id",
                    "is missing on a purchase",
                    "send the order's invoice id: the invoice export brings the same order "
                    "later, and the id keeps it from counting twice",
                )
            if isinstance(amount, float) and amount < 0:
                bad("amount", "is negative on a purchase", "send returns from the invoice export")
        props = e.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            bad("properties", "must be a JSON object", 'e.g. "properties": {"cart_value": 80}')
            props = {}
        for name in CARRIED:
            v = e.get(name)
            if v is not None:
                if not isinstance(v, str | int | float) or isinstance(v, bool):
                    bad(name, "must be text", f'e.g. "{name}": "web"')
                else:
                    props[name] = str(v)[:MAX_ID]
        text = json.dumps(props, sort_keys=True, default=str)
        if len(text.encode()) > MAX_PROPERTIES_BYTES:
            bad(
                "properties",
                f"is larger than {MAX_PROPERTIES_BYTES} bytes",
                "keep a few small values; product details belong in the catalogue",
            )
        if len(problems) > before:
            continue
        rows.append(
            {
                "event_id": ids.get("event_id"),
                "customer_id": ids.get("customer_id"),
                "anonymous_id": ids.get("anonymous_id"),
                "event_type": event_type,
                "at": iso(at),
                "at_text": stamp.strip() if isinstance(stamp, str) else iso(at),
                "product_id": ids.get("product_id"),
                "amount": amount,
                "invoice_id": ids.get("invoice_id"),
                "properties": text,
            }
        )
    return rows, problems


def batch_of(payload: Any, max_events: int) -> list[Any]:
    """The events of a request body: one event object, a list, or ``{"events": [...]}``.

    Raises ValueError with the message to show for anything else, or a batch over
    ``max_events``.
    """
    if isinstance(payload, dict) and "events" in payload:
        events = payload["events"]
        if not isinstance(events, list):
            raise ValueError('"events" must be a list of event objects')
    elif isinstance(payload, dict):
        events = [payload]
    elif isinstance(payload, list):
        events = payload
    else:
        raise ValueError('send one event object, or {"events": [...]}')
    if not events:
        raise ValueError("the batch holds no events")
    if len(events) > max_events:
        raise ValueError(
            f"the batch holds {len(events):,} events; at most {max_events:,} are accepted at once"
        )
    return events
