"""What the warehouse hands the live side, so that it never has to read the warehouse itself.

* the saved segments, each planned (live or batch-only, and why), when a segment is saved and at
  every publish;
* the webhook subscriptions (URL and signing secret), when they change and at every publish;
* each customer's recent orders (``realtime_history``: invoice, time, amount, within the longest
  live window), a read model published as one JSON document per customer beside the lookup.
"""

from __future__ import annotations

import datetime as _dt
import uuid
import zoneinfo
from pathlib import Path

import ibis

from segmentum.config import Settings, load_settings
from segmentum.realtime.evaluate import Plan, plan_segment
from segmentum.realtime.store import RealtimeStore, iso, now_utc, realtime_path, set_meta
from segmentum.serving import warehouse_file
from segmentum.warehouse import Warehouse, spark_folder

HISTORY = "realtime_history"


def open_for(
    wh: Warehouse, settings: Settings | None = None, *, create: bool = True
) -> RealtimeStore | None:
    """The warehouse's real-time store; None for an in-memory warehouse, and (unless
    ``create``) when the store does not exist yet beside a warehouse that is not a file."""
    settings = settings or load_settings()
    path = realtime_path(wh.url, settings)
    if path == ":memory:":
        return None
    if not Path(path).exists():
        if not create:
            return None
        beside = warehouse_file(wh.url) or spark_folder(wh.url)
        if beside is None and not settings.state_store:
            return None  # it would land in whatever folder the command runs in
    return RealtimeStore(path, settings.busy_wait_seconds)


def lookup_attributes(wh: Warehouse) -> set[str]:
    """The fields of the published customer document (``customer_lookup``'s columns)."""
    from segmentum.precompute import LOOKUP

    if not wh.has(LOOKUP):
        return set()
    return set(wh.table(LOOKUP).columns) - {"customer_id"}


def sync_segments(wh: Warehouse, store: RealtimeStore, settings: Settings) -> list[Plan]:
    """Plan every saved segment and store the plans; live membership of a segment that is
    gone or no longer live is dropped."""
    from segmentum.segments.store import DEFINITIONS

    rows = wh.table(DEFINITIONS).to_pyarrow().to_pylist() if wh.has(DEFINITIONS) else []
    attributes = lookup_attributes(wh)
    names = {str(r["name"]) for r in rows}
    plans = [
        plan_segment(
            str(r["name"]),
            str(r["rule"]),
            str(r["level"] or "customer"),
            attributes,
            names,
            settings.realtime_max_window_days,
        )
        for r in rows
    ]
    when = iso(now_utc())
    with store.connect(write=True) as con:
        con.execute("DELETE FROM realtime_segments")
        con.executemany(
            "INSERT INTO realtime_segments (name, rule, level, realtime, reason, "
            "longest_seconds, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.name,
                    p.rule,
                    str(r["level"] or "customer"),
                    int(p.realtime),
                    p.reason,
                    p.longest_seconds,
                    when,
                )
                for p, r in zip(plans, rows, strict=True)
            ],
        )
        con.execute(
            "DELETE FROM realtime_members WHERE segment NOT IN "
            "(SELECT name FROM realtime_segments WHERE realtime = 1)"
        )
        set_meta(con, "segments_version", uuid.uuid4().hex)
    return plans


def sync_subscriptions(wh: Warehouse, store: RealtimeStore) -> int:
    """Mirror the webhook subscriptions (with their secrets, to sign); returns how many."""
    from segmentum.history.webhooks import SUBSCRIPTIONS

    rows: list[dict[str, object]] = []
    if wh.has(SUBSCRIPTIONS):
        t = wh.table(SUBSCRIPTIONS).select("subscription_id", "segment", "url", "secret")
        rows = t.to_pyarrow().to_pylist()
    with store.connect(write=True) as con:
        con.execute("DELETE FROM realtime_subscriptions")
        con.executemany(
            "INSERT INTO realtime_subscriptions (subscription_id, segment, url, secret) "
            "VALUES (?, ?, ?, ?)",
            [(r["subscription_id"], r["segment"], r["url"], r["secret"]) for r in rows],
        )
    return len(rows)


def sync(
    wh: Warehouse,
    settings: Settings | None = None,
    *,
    create: bool = True,
    store: RealtimeStore | None = None,
) -> bool:
    """Mirror segments and subscriptions into the real-time store (``store``, else the
    warehouse's, see :func:`open_for`); returns whether there was a store to mirror into."""
    settings = settings or load_settings()
    store = store or open_for(wh, settings, create=create)
    if store is None:
        return False
    sync_segments(wh, store, settings)
    sync_subscriptions(wh, store)
    return True


def build_history(wh: Warehouse, settings: Settings | None = None) -> int:
    """Write ``realtime_history``: per customer, the orders (net purchases, one row an invoice:
    id, first line's local time, amount) within ``realtime_max_window_days`` of now; returns
    the number of customers."""
    from segmentum.features.customer import mark_purchases
    from segmentum.ingest.returns import cancelled_invoices, links

    settings = settings or load_settings()
    if not wh.has("transactions"):
        return 0
    try:
        zone: _dt.tzinfo = zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = _dt.UTC
    days = settings.realtime_max_window_days + 1  # a day more: the zone's offset, a clock
    start = (now_utc().astimezone(zone) - _dt.timedelta(days=days)).replace(tzinfo=None)
    t = wh.table("transactions")
    t = t.filter(
        t.customer_id.notnull() & t.invoice_id.notnull() & (t.timestamp >= ibis.literal(start))
    )
    t = mark_purchases(t, cancelled_invoices(links(wh)))
    t = t.filter(t.is_purchase)
    orders = t.group_by(["customer_id", "invoice_id"]).aggregate(
        at=t.timestamp.min(), amount=t.amount.sum().cast("float64")
    )
    order = ibis.struct(
        {
            "invoice_id": orders.invoice_id.cast("string"),
            "at": orders.at.cast("string"),
            "amount": orders.amount,
        }
    )
    hist = orders.group_by("customer_id").aggregate(orders=order.collect())
    out = wh.write(HISTORY, hist)
    return int(out.count().to_pyarrow().as_py())
