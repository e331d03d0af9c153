"""Best time, day, device and channel for every customer, shrunk toward their segment.

Signals: purchases (hour band, weekday, device) and message opens and clicks (hour band,
weekday, channel). A customer with little history is pulled toward their RFM segment's
distribution: posterior share of a value = (own count + k x segment share) / (own total + k),
with ``k`` pseudo-observations (default 5). The best value is the one with the largest posterior
share, which is also reported as the confidence. All in the engine; written to
``contact_times``.

``next_send_time`` turns a customer's best weekday and hour band into the next such moment in
their own time zone, expressed in UTC for the sender.
"""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import ibis.expr.types as ir

from segmentum.features.customer import HOUR_BANDS, WEEKDAYS, mark_purchases
from segmentum.ingest.returns import cancelled_invoices, links
from segmentum.segments.view import customer_view
from segmentum.warehouse import Warehouse

BAND_HOUR = {"night": 3, "morning": 10, "afternoon": 14, "evening": 18, "late": 21}
MESSAGE_EVENTS = {
    "email_open": "email",
    "email_click": "email",
    "push_open": "push",
    "push_click": "push",
}


def _band(ts: ir.TimestampValue) -> ir.StringValue:
    hour = ts.hour()
    return ibis.cases(
        *((hour.between(lo, hi - 1), name) for lo, hi, name in HOUR_BANDS), else_="late"
    )


def _weekday(ts: ir.TimestampValue) -> ir.StringValue:
    idx = ts.day_of_week.index()
    return ibis.cases(*((idx == i, n) for i, n in enumerate(WEEKDAYS)), else_=ibis.null("string"))


def _shrunk_best(signals: ir.Table, column: str, segments: ir.Table, k: float) -> ir.Table:
    """customer_id, best value of ``column`` and its posterior share."""
    s = signals.filter(signals[column].notnull())
    counts = s.group_by(["customer_id", column]).aggregate(n=s.count().cast("float64"))
    counts = counts.join(segments, "customer_id")
    seg = counts.group_by(["_seg", column]).aggregate(sn=counts.n.sum())
    seg = seg.mutate(p=seg.sn / seg.sn.sum().over(ibis.window(group_by=seg._seg)))
    own_tot = counts.group_by("customer_id").aggregate(tot=counts.n.sum())
    # Every (customer, value) the segment knows, with the customer's own count (0 if none).
    cand = segments.join(seg, "_seg").select("customer_id", column, "p")
    cand = cand.left_join(counts.select("customer_id", column, "n"), ["customer_id", column]).drop(
        "customer_id_right", f"{column}_right"
    )
    # Customers with no signal of this kind get their segment's habit (own total 0).
    cand = cand.left_join(own_tot, "customer_id").drop("customer_id_right")
    post = (cand.n.fill_null(0.0) + k * cand.p) / (cand.tot.fill_null(0.0) + k)
    cand = cand.mutate(post=post)
    w = ibis.window(group_by=cand.customer_id, order_by=[ibis.desc(cand.post), cand[column]])
    best = cand.mutate(_rk=ibis.row_number().over(w))
    best = best.filter(best._rk == 0)
    return best.select(
        "customer_id", **{f"best_{column}": best[column], f"{column}_confidence": best.post}
    )


def contact_times(
    wh: Warehouse, as_of: _dt.date | None = None, k: float = 5.0, store: bool = True
) -> ir.Table:
    """Best hour band, weekday, device and channel for every customer with any signal."""
    view, as_of = customer_view(wh, as_of)
    segments = view.select("customer_id", _seg=view.rfm_segment.fill_null("(none)"))
    signals = _signals(wh, as_of)
    out = segments.select("customer_id")
    for col in ("hour_band", "weekday", "device", "channel"):
        best = _shrunk_best(signals, col, segments, k)
        out = out.left_join(best, "customer_id").drop("customer_id_right")
    out = out.mutate(as_of=ibis.literal(as_of, "date"))
    if not store:
        return out
    return wh.replace_where("contact_times", out, "as_of", as_of)


def _signals(wh: Warehouse, as_of: _dt.date) -> ir.Table:
    """Purchases and message opens / clicks: customer, hour band, weekday, device, channel."""
    cutoff = ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")
    tx = wh.table("transactions")
    tx = tx.filter(tx.customer_id.notnull() & (tx.timestamp < cutoff))
    # Purchases as the features' preferences count them: a cancelled order is not one.
    tx = mark_purchases(tx, cancelled_invoices(links(wh)))
    tx = tx.filter(tx.is_purchase)
    signals = tx.select(
        "customer_id",
        hour_band=_band(tx.timestamp),
        weekday=_weekday(tx.timestamp),
        device=tx.device,
        channel=ibis.null("string"),
    )
    if wh.has("events"):
        ev = wh.table("events")
        ev = ev.filter(
            ev.customer_id.notnull()
            & ev.event_type.isin(list(MESSAGE_EVENTS))
            & (ev.timestamp < cutoff)
        )
        chan = ibis.cases(
            *((ev.event_type == e, c) for e, c in MESSAGE_EVENTS.items()),
            else_=ibis.null("string"),
        )
        opens = ev.select(
            "customer_id",
            hour_band=_band(ev.timestamp),
            weekday=_weekday(ev.timestamp),
            device=ev.device,
            channel=chan,
        )
        signals = signals.union(opens)
    return signals


def segment_times(wh: Warehouse, as_of: _dt.date | None = None) -> list[dict[str, object]]:
    """For every RFM segment: the share of purchases and opens in each hour band, weekday,
    device and channel, most common first (what a segment-wide send should use)."""
    view, as_of = customer_view(wh, as_of)
    seg = view.select("customer_id", segment=view.rfm_segment.fill_null("(none)"))
    j = _signals(wh, as_of).join(seg, "customer_id")
    rows: list[dict[str, object]] = []
    for col in ("hour_band", "weekday", "device", "channel"):
        s = j.filter(j[col].notnull())
        g = s.group_by(["segment", col]).aggregate(n=s.count())
        g = g.mutate(share=g.n / g.n.sum().over(ibis.window(group_by=g.segment)))
        for r in g.order_by(["segment", ibis.desc("share"), col]).to_pyarrow().to_pylist():
            rows.append(
                {"segment": r["segment"], "dimension": col, "value": r[col], "share": r["share"]}
            )
    return rows


def next_send_time(
    now_utc: _dt.datetime, band: str | None, weekday: str | None, tz: str | None
) -> _dt.datetime:
    """The next moment at the customer's best weekday and hour, in their zone, as naive UTC."""
    try:
        zone = ZoneInfo(tz) if tz else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now_utc.replace(tzinfo=_dt.UTC).astimezone(zone)
    hour = BAND_HOUR.get(band or "", 10)
    target_day = WEEKDAYS.index(weekday) if weekday in WEEKDAYS else None
    for add in range(0, 8):
        day = (local + _dt.timedelta(days=add)).date()
        if target_day is not None and day.weekday() != target_day:
            continue
        cand = _dt.datetime(day.year, day.month, day.day, hour, tzinfo=zone)
        if cand > local:
            return cand.astimezone(_dt.UTC).replace(tzinfo=None)
    cand = _dt.datetime(day.year, day.month, day.day, hour, tzinfo=zone) + _dt.timedelta(days=7)
    return cand.astimezone(_dt.UTC).replace(tzinfo=None)
