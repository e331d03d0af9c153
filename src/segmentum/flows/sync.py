"""What flows copy out of the warehouse, computed in the engine: one row per customer (contact,
consent, time zone, values for conditions, segments, last purchase), recent campaign sends and
the membership log's enter / exit events."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

import ibis

from segmentum.campaigns import channels as ch
from segmentum.config import Settings
from segmentum.errors import WarehouseError
from segmentum.flows import quiet
from segmentum.segments import rules
from segmentum.warehouse import Warehouse

CONSENT = ("email", "sms", "push", "inapp", "web")
PERSONAL = ("email", "phone", "first_name", "last_name", "birth_date")


@dataclass
class Snapshot:
    columns: dict[str, str] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)
    profiles: list[tuple[Any, ...]] = field(default_factory=list)
    contacts: list[tuple[str, str, str]] = field(default_factory=list)
    membership: list[tuple[str, str, str, str]] = field(default_factory=list)
    newest: str | None = None


def _scalar(expr: Any) -> Any:
    return expr.to_pyarrow().as_py()


def signature(wh: Warehouse) -> str:
    """Changes whenever something flows copy changed (a run, new sales, sends, the log)."""
    parts: list[Any] = []
    for name, col in (
        ("customer_features", "as_of"),
        ("segment_events", "as_of"),
        ("transactions", "timestamp"),
        ("campaign_sends", "sent_at"),
        ("customers", None),
        ("suppressions", None),
    ):
        if not wh.has(name):
            parts.append(None)
            continue
        t = wh.table(name)
        agg = {"n": t.count()}
        if col is not None and col in t.columns:
            agg["m"] = t[col].max().cast("string")
        parts.append(t.aggregate(**agg).to_pyarrow().to_pylist()[0])
    return json.dumps(parts, default=str, sort_keys=True)


def _jsonable(v: Any) -> Any:
    from segmentum.flows.engine import _json_value

    return _json_value(v)


def snapshot(
    wh: Warehouse, now: _dt.datetime, settings: Settings, after: str | None = None
) -> Snapshot:
    """Everything flows copy; ``after``: the membership log's last date already taken (None:
    none yet, and the log's past is not replayed)."""
    snap = Snapshot()
    if not wh.has("customers") and not wh.has("customer_features"):
        raise WarehouseError("the warehouse has no customers yet", "load them: segmentum ingest")
    try:
        from segmentum.segments.view import customer_view

        view, _ = customer_view(wh)
    except WarehouseError:
        view = wh.table("customers")
    schema = view.schema()
    snap.columns = {c: rules.kind_of(schema[c]) for c in view.columns if c not in PERSONAL}
    t = view
    if wh.has("customers"):
        c = wh.table("customers")
        own = [x for x in PERSONAL if x in c.columns and x not in t.columns]
        if own and "customer_id" in t.columns and t is not c:
            t = t.left_join(c.select("customer_id", *own), "customer_id").drop("customer_id_right")
    if wh.has("transactions"):
        tx = wh.table("transactions")
        tx = tx.filter(tx.customer_id.notnull() & (tx.quantity > 0))
        last = tx.group_by("customer_id").aggregate(_last=tx.timestamp.max())
        t = t.left_join(last, "customer_id").drop("customer_id_right")
    if wh.has("segment_members"):
        m = wh.table("segment_members")
        m = m.filter(m.as_of == m.as_of.max())
        segs = m.group_by("customer_id").aggregate(_segments=m.segment.collect())
        t = t.left_join(segs, "customer_id").drop("customer_id_right")
        snap.segments = set(m.select("segment").distinct().to_pyarrow().column(0).to_pylist())
    suppressed: dict[str, set[str]] = {}
    mails: dict[str, set[str]] = {}
    if wh.has("suppressions"):
        s = wh.table("suppressions")
        cols = [x for x in ("customer_id", "email", "channel") if x in s.columns]
        for r in s.select(*cols).to_pyarrow().to_pylist():
            chan = (r.get("channel") or "all").strip().lower() or "all"
            if r.get("customer_id"):
                suppressed.setdefault(str(r["customer_id"]), set()).add(chan)
            if r.get("email"):
                mails.setdefault(str(r["email"]).strip().lower(), set()).add(chan)
    for r in t.to_pyarrow().to_pylist():
        cid = str(r["customer_id"])
        email = r.get("email")
        supp = set(suppressed.get(cid, set()))
        if email:
            supp |= mails.get(str(email).strip().lower(), set())
        birth = r.get("birth_date")
        nxt = r.get("expected_next_purchase")
        last = r.get("_last")
        attrs = {
            k: _jsonable(v) for k, v in r.items() if k in snap.columns and not k.startswith("_")
        }
        consent = {x: 1 if r.get(f"consent_{x}") else 0 for x in CONSENT}
        tz = quiet.zone_name(
            r.get("timezone"), r.get("country"), r.get("region"), settings.timezone
        )
        snap.profiles.append(
            (
                cid,
                email,
                r.get("phone"),
                r.get("first_name"),
                ch.language(r.get("country"), settings.language),
                tz,
                birth.strftime("%m-%d") if isinstance(birth, _dt.date) else None,
                (nxt.date() if isinstance(nxt, _dt.datetime) else nxt).isoformat()
                if isinstance(nxt, _dt.date)
                else None,
                last.replace(microsecond=0).isoformat(sep=" ")
                if isinstance(last, _dt.datetime)
                else None,
                json.dumps(consent),
                json.dumps(sorted(supp)),
                json.dumps(attrs, default=str),
                json.dumps(sorted(r.get("_segments") or [])),
            )
        )
    if wh.has("campaign_sends") and settings.frequency_cap > 0:
        cs = wh.table("campaign_sends")
        since = now - _dt.timedelta(days=settings.frequency_cap_days)
        at = cs.sent_at
        contacted = cs.status == "sent"
        if settings.protect_controls:
            # A campaign's control member counts as contacted when their message would have
            # gone out (segmentum.segments.reach._recent_contacts says why).
            held = (cs.group == "control") & (cs.outcome == "control")
            at = ibis.ifelse(held, cs.scheduled_at.fill_null(cs.logged_at), cs.sent_at)
            contacted |= held
        recent = cs.filter(
            contacted
            & (at >= ibis.literal(since, "timestamp"))
            & (at <= ibis.literal(now, "timestamp"))
        ).select("customer_id", "campaign_id", sent_at=at)
        for r in recent.to_pyarrow().to_pylist():
            snap.contacts.append(
                (
                    str(r["customer_id"]),
                    r["sent_at"].replace(microsecond=0).isoformat(sep=" "),
                    f"campaign:{r['campaign_id']}",
                )
            )
    if wh.has("segment_events"):
        ev = wh.table("segment_events")
        top = _scalar(ev.as_of.max())
        snap.newest = top.isoformat() if top is not None else None
        if after is not None and snap.newest is not None and snap.newest > after:
            # Only the computations since the last sync: older changes were taken then.
            new = (
                ev.filter(ev.as_of > ibis.literal(_dt.date.fromisoformat(after), "date"))
                if after
                else ev
            )
            for r in (
                new.select("segment", "customer_id", "event", "as_of").to_pyarrow().to_pylist()
            ):
                snap.membership.append(
                    (
                        str(r["segment"]),
                        str(r["customer_id"]),
                        str(r["event"]),
                        r["as_of"].isoformat(),
                    )
                )
    return snap
