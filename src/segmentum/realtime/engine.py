"""Recording tracked events and re-evaluating their customers' live segments, in one
transaction of the real-time store.

The events, the membership they change, the enter / exit transitions and one outbox row per
webhook subscription of the segment are committed together: a crash either keeps all of it (the
outbox worker, :mod:`.deliver`, then sends what it has not sent) or none of it (the client,
which got no answer, sends the batch again, and the event ids keep it from counting twice).

The first live evaluation of a customer starts from the batch membership published in their
document, so an enter or exit is a real change against what the last run said.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
import threading
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from segmentum.config import Settings, load_settings
from segmentum.realtime.evaluate import Customer, Order, Plan, live_plan, plan_order
from segmentum.realtime.store import (
    RealtimeStore,
    RecordReport,
    events_of_in,
    get_meta,
    iso,
    now_utc,
    record_in,
)
from segmentum.serving import ServingStore

LOOKUP = "customer_lookup"
HISTORY = "realtime_history"


@dataclass
class Transition:
    """A customer entering or leaving a live segment."""

    seq: int
    customer_id: str
    segment: str
    kind: str  # enter / exit
    at: str
    cause_event_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class TrackResult:
    """What one call of :meth:`Engine.track` did."""

    report: RecordReport
    transitions: list[Transition] = field(default_factory=list)
    queued: int = 0  # webhook deliveries queued

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "transitions": [t.to_dict() for t in self.transitions],
            "webhooks_queued": self.queued,
        }


def delivery_key(subscription_id: str, transition_seq: int) -> str:
    """The idempotency key of one transition sent to one subscription (the same on retries)."""
    return hashlib.sha256(f"{subscription_id}:rt:{transition_seq}".encode()).hexdigest()[:32]


def webhook_body(key: str, t: Transition) -> bytes:
    """The JSON a subscription receives for one live transition: the shape of the batch
    webhooks (``delivery_id``, ``segment``, ``events``), with the time and its cause."""
    return json.dumps(
        {
            "delivery_id": key,
            "segment": t.segment,
            "realtime": True,
            "as_of": t.at[:10],
            "events": [
                {
                    "segment": t.segment,
                    "customer_id": t.customer_id,
                    "event": t.kind,
                    "as_of": t.at[:10],
                    "at": t.at,
                    "cause_event_id": t.cause_event_id,
                    "transition_seq": t.seq,
                }
            ],
        },
        sort_keys=True,
    ).encode()


class Engine:
    """Live segments over one real-time store.

    Parameters
    ----------
    store
        The real-time store.
    serving
        The serving store with the published customer documents (None: every customer is
        evaluated without attributes or order history).
    settings
        For the business time zone of the published order times.
    """

    def __init__(
        self,
        store: RealtimeStore,
        serving: ServingStore | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.serving = serving
        self.settings = settings or load_settings()
        self.wake = threading.Event()  # set when the outbox gets rows to send
        self._plans: tuple[str, list[Plan], set[str]] | None = None
        self._plans_lock = threading.Lock()
        try:
            self.zone: _dt.tzinfo = zoneinfo.ZoneInfo(self.settings.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.zone = _dt.UTC

    # ------------------------------------------------------------------ plans
    def plans(self, con: sqlite3.Connection) -> tuple[list[Plan], set[str]]:
        """The live plans in evaluation order and every saved segment's name (re-read when a
        sync changed them)."""
        version = get_meta(con, "segments_version") or ""
        cached = self._plans
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        rows = con.execute(
            "SELECT name, rule, realtime, longest_seconds FROM realtime_segments"
        ).fetchall()
        names = {r["name"] for r in rows}
        plans = plan_order(
            live_plan(r["name"], r["rule"], int(r["longest_seconds"] or 0), names)
            for r in rows
            if r["realtime"]
        )
        with self._plans_lock:
            self._plans = (version, plans, names)
        return plans, names

    # ------------------------------------------------------------------ tracking
    def track(self, events: list[dict[str, Any]]) -> TrackResult:
        """Record checked events (:func:`segmentum.realtime.events.check_events`) and
        re-evaluate the live segments of every customer they name."""
        now = now_utc()
        with self.store.connect(write=True) as con:
            report = record_in(con, events)
            result = TrackResult(report)
            causes: dict[str, str] = {}
            for e in report.events:
                if e.get("customer_id"):
                    causes[str(e["customer_id"])] = str(e["event_id"])
            plans, names = self.plans(con)
            if plans:
                for cid, cause in causes.items():
                    self._evaluate(con, cid, now, cause, plans, names, result)
        if result.queued:
            self.wake.set()
        return result

    def evaluate_due(self, limit: int = 500) -> TrackResult:
        """Re-evaluate the customers whose counted events or orders have left a window since
        (a cart abandoned more than an hour ago), so they leave without a new event."""
        now = now_utc()
        result = TrackResult(RecordReport())
        due = self.store.query(
            "SELECT 1 FROM realtime_customers WHERE due_at IS NOT NULL AND due_at <= ? LIMIT 1",
            (iso(now),),
        )
        if not due:  # the usual case: a look without the write lock
            return result
        with self.store.connect(write=True) as con:
            plans, names = self.plans(con)
            rows = con.execute(
                "SELECT customer_id FROM realtime_customers WHERE due_at IS NOT NULL "
                "AND due_at <= ? ORDER BY due_at LIMIT ?",
                (iso(now), limit),
            ).fetchall()
            for r in rows:
                if plans:
                    self._evaluate(con, r["customer_id"], now, None, plans, names, result)
                else:
                    con.execute(
                        "UPDATE realtime_customers SET due_at = NULL WHERE customer_id = ?",
                        (r["customer_id"],),
                    )
        if result.queued:
            self.wake.set()
        return result

    def evaluate(self, customer_id: str) -> TrackResult:
        """Re-evaluate one customer now (``segmentum realtime evaluate``)."""
        now = now_utc()
        result = TrackResult(RecordReport())
        with self.store.connect(write=True) as con:
            plans, names = self.plans(con)
            if plans:
                self._evaluate(con, customer_id, now, None, plans, names, result)
        if result.queued:
            self.wake.set()
        return result

    # ------------------------------------------------------------------ one customer
    def document(self, table: str, customer_id: str) -> dict[str, Any]:
        if self.serving is None:
            return {}
        found = self.serving.document(table, customer_id)
        return json.loads(found) if isinstance(found, str) else {}

    def _orders(self, customer_id: str, since: _dt.datetime) -> list[Order]:
        out = []
        for o in self.document(HISTORY, customer_id).get("orders") or []:
            try:
                local = _dt.datetime.fromisoformat(str(o["at"]))
            except (KeyError, ValueError):
                continue
            at = local.replace(tzinfo=self.zone).astimezone(_dt.UTC)
            if at >= since:
                amount = o.get("amount")
                out.append(Order(str(o["invoice_id"]), at, float(amount) if amount else None))
        return out

    def _evaluate(
        self,
        con: sqlite3.Connection,
        customer_id: str,
        now: _dt.datetime,
        cause: str | None,
        plans: list[Plan],
        names: set[str],
        result: TrackResult,
    ) -> None:
        longest = max(p.longest_seconds for p in plans)
        since = now - _dt.timedelta(seconds=longest)
        events = events_of_in(con, customer_id, iso(since))
        doc = self.document(LOOKUP, customer_id)
        customer = Customer(doc, events, self._orders(customer_id, since), now, None, names)
        seen = con.execute(
            "SELECT segments FROM realtime_customers WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        evaluated = set(json.loads(seen["segments"])) if seen else set()
        held = {
            r["segment"]
            for r in con.execute(
                "SELECT segment FROM realtime_members WHERE customer_id = ?", (customer_id,)
            )
        }
        # A segment not evaluated live for this customer yet starts from the batch membership.
        batch = set(doc.get("segments") or [])
        when = iso(now)
        for p in plans:
            inside = customer.matches(p)
            customer.live[p.name] = inside
            was = p.name in held if p.name in evaluated else p.name in batch
            if inside:
                con.execute(
                    "INSERT OR IGNORE INTO realtime_members (segment, customer_id, since) "
                    "VALUES (?, ?, ?)",
                    (p.name, customer_id, when),
                )
            elif p.name in held:
                con.execute(
                    "DELETE FROM realtime_members WHERE segment = ? AND customer_id = ?",
                    (p.name, customer_id),
                )
            if inside != was:
                self._transition(con, customer_id, p.name, inside, when, cause, result)
        con.execute(
            "INSERT INTO realtime_customers (customer_id, evaluated_at, due_at, segments) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET "
            "evaluated_at = excluded.evaluated_at, due_at = excluded.due_at, "
            "segments = excluded.segments",
            (
                customer_id,
                when,
                iso(customer.due) if customer.due is not None else None,
                json.dumps(sorted(evaluated | {p.name for p in plans})),
            ),
        )

    def _transition(
        self,
        con: sqlite3.Connection,
        customer_id: str,
        segment: str,
        inside: bool,
        when: str,
        cause: str | None,
        result: TrackResult,
    ) -> None:
        kind = "enter" if inside else "exit"
        cur = con.execute(
            "INSERT INTO segment_transitions (customer_id, segment, kind, at, cause_event_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (customer_id, segment, kind, when, cause),
        )
        t = Transition(int(cur.lastrowid or 0), customer_id, segment, kind, when, cause)
        result.transitions.append(t)
        subs = con.execute(
            "SELECT subscription_id, url, secret FROM realtime_subscriptions WHERE segment = ?",
            (segment,),
        ).fetchall()
        stamp = now_utc().timestamp()
        for s in subs:
            key = delivery_key(s["subscription_id"], t.seq)
            con.execute(
                "INSERT OR IGNORE INTO webhook_outbox (transition_seq, subscription_id, url, "
                "secret, delivery_key, body, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    t.seq,
                    s["subscription_id"],
                    s["url"],
                    s["secret"],
                    key,
                    webhook_body(key, t),
                    stamp,
                    stamp,
                ),
            )
            result.queued += 1
