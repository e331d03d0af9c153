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
import functools
import operator
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import ibis.expr.types as ir

from segmentum.features.customer import HOUR_BANDS, WEEKDAYS, mark_purchases
from segmentum.ingest.returns import cancelled_invoices, links
from segmentum.segments.view import customer_view, latest_as_of
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


DIMENSIONS = ("hour_band", "weekday", "device", "channel")
#: Every customer's signals counted per dimension and value, for the next day's run.
COUNTS = "contact_counts"
#: The date those counts were counted for (:meth:`Warehouse.mark`).
COUNTS_AS_OF = "contact_counts_as_of"
#: Up to this many values a dimension, the best values are picked across one column per value.
WIDE_VALUES = 32


def _segments(wh: Warehouse, as_of: _dt.date) -> ir.Table:
    """customer_id and RFM segment (``_seg``) of every customer of the customer view.

    The same customers as :func:`customer_view` (those with features for ``as_of`` and those in
    the profile), read without the view's other joins: only the segment is needed here.
    """
    feats = wh.table("customer_features")
    ids = feats.filter(feats.as_of == ibis.literal(as_of, "date")).select("customer_id")
    if wh.has("customers"):
        ids = ids.union(wh.table("customers").select("customer_id"), distinct=True)
    if not wh.has("customer_classes"):
        return ids.mutate(_seg=ibis.literal("(none)"))
    c = wh.table("customer_classes")
    c = c.filter(c.as_of == ibis.literal(as_of, "date")).select("customer_id", "rfm_segment")
    j = ids.left_join(c, "customer_id")
    return j.select("customer_id", _seg=j.rfm_segment.fill_null("(none)"))


def _counts(signals: ir.Table) -> ir.Table:
    """One row per customer, dimension and value: customer_id, dim, value, n."""
    # One grouping of the signals first (the lines of an order share their hour, day and
    # device), then each dimension from that small table instead of from every line.
    fine = signals.group_by(["customer_id", *DIMENSIONS]).aggregate(
        n=signals.count().cast("float64")
    )
    parts = []
    for col in DIMENSIONS:
        s = fine.filter(fine[col].notnull())
        g = s.group_by(["customer_id", col]).aggregate(n=s.n.sum())
        parts.append(g.select("customer_id", dim=ibis.literal(col), value=g[col], n=g.n))
    return ibis.union(*parts)


def counts_as_of(wh: Warehouse) -> _dt.date | None:
    """The date the stored signal counts (``contact_counts``) were counted for, if any."""
    state = wh.marked(COUNTS_AS_OF) if wh.has(COUNTS) else None
    try:
        return _dt.date.fromisoformat(state["as_of"]) if state else None
    except (KeyError, TypeError, ValueError):
        return None


def _wide_columns(values: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """The column of each dimension and value in the wide counts (by position: a device
    written as free text is not a column name every engine takes)."""
    return {(d, v): f"_n{i}_{j}" for i, d in enumerate(DIMENSIONS) for j, v in enumerate(values[d])}


def _stored_counts(
    wh: Warehouse, at: _dt.date
) -> tuple[ir.Table, dict[str, list[str]] | None] | None:
    """The signal counts the last run stored, when they were counted for ``at``, and the
    values of their columns (None: one row per customer, dimension and value)."""
    state = wh.marked(COUNTS_AS_OF) if wh.has(COUNTS) else None
    if counts_as_of(wh) != at or state is None:
        return None
    stored = wh.table(COUNTS)
    values = state.get("values")
    if isinstance(values, dict) and set(values) == set(DIMENSIONS):
        wide = ["customer_id", *_wide_columns(values).values()]
        return (stored, values) if list(stored.columns) == wide else None
    if state.get("shape") == "long" and set(stored.columns) == {"customer_id", "dim", "value", "n"}:
        return stored, None
    return None  # written by an older version: counted again


def stored_counts(wh: Warehouse) -> ir.Table:
    """The stored signal counts one row per customer, dimension and value (customer_id, dim,
    value, n; counts above zero), whichever shape they are kept in."""
    state = wh.marked(COUNTS_AS_OF) or {}
    stored = wh.table(COUNTS)
    values = state.get("values")
    if not isinstance(values, dict):
        return stored
    parts = []
    for (d, v), c in _wide_columns(values).items():
        s = stored.filter(stored[c] > 0)
        parts.append(s.select("customer_id", dim=ibis.literal(d), value=ibis.literal(v), n=s[c]))
    return ibis.union(*parts)


def _values(raw: ir.Table) -> dict[str, list[str]]:
    """The values each dimension has among the counts, in order."""
    rows = raw.group_by(["dim", "value"]).aggregate().to_pyarrow().to_pylist()
    return {d: sorted(r["value"] for r in rows if r["dim"] == d) for d in DIMENSIONS}


def _devices(wh: Warehouse, as_of: _dt.date, only: ir.Table | None = None) -> list[str]:
    """The devices of the lines and message events before ``as_of`` (of the customers in
    ``only``): every device a signal can carry, and maybe one only a cancelled order has,
    which no customer shows: its column counts 0 everywhere and never wins."""
    cutoff = ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")
    found: set[str] = set()
    for name in ("transactions", "events"):
        if not wh.has(name):
            continue
        t = wh.table(name)
        if "device" not in t.columns:
            continue
        keep = t.customer_id.notnull() & (t.timestamp < cutoff) & t.device.notnull()
        if name == "events":
            keep &= t.event_type.isin(list(MESSAGE_EVENTS))
        t = t.filter(keep)
        if only is not None:
            t = t.semi_join(only, "customer_id")
        found |= set(t.select("device").distinct().to_pyarrow().column(0).to_pylist())
    return sorted(found)


def _all_values(devices: Sequence[str]) -> dict[str, list[str]]:
    """Every value each dimension can take: the fixed hour bands, weekdays and channels, and
    ``devices``. A value nobody shows adds a column of zeros, which never wins (every value
    a customer or their segment shows scores more), so the answer is the one over the values
    found."""
    return {
        "hour_band": sorted(name for _, _, name in HOUR_BANDS),
        "weekday": sorted(WEEKDAYS),
        "device": sorted(devices),
        "channel": sorted(set(MESSAGE_EVENTS.values())),
    }


def _wide_counts(signals: ir.Table, values: dict[str, list[str]]) -> ir.Table:
    """Every customer's signals counted per dimension and value in one row (one grouping of
    the signals: no row per customer, dimension and value, which at 100M lines was 75M rows
    written and grouped again)."""
    col = _wide_columns(values)
    return signals.group_by("customer_id").aggregate(
        # Integers summed, then cast: Spark reads a 1.0 in SQL as a decimal.
        **{c: ibis.ifelse(signals[d] == v, 1, 0).sum().cast("float64") for (d, v), c in col.items()}
    )


def _pivot(raw: ir.Table, values: dict[str, list[str]]) -> ir.Table:
    """Counts kept one row per customer, dimension and value, as :func:`_wide_counts` gives."""
    col = _wide_columns(values)
    return raw.group_by("customer_id").aggregate(
        **{c: raw.n.sum(where=(raw.dim == d) & (raw.value == v)) for (d, v), c in col.items()}
    )


def _total(cols: Sequence[ir.NumericValue]) -> ir.NumericValue:
    return functools.reduce(operator.add, cols)


def _best_wide(
    per: ir.Table, segments: ir.Table, values: dict[str, list[str]], k: float
) -> ir.Table:
    """:func:`_best` from the wide counts (``per``: one column per dimension and value, when
    each dimension has at most ``WIDE_VALUES`` values): the segments' shares joined to each
    customer's row by segment, and the best value picked across the columns. The same answer
    (the values in order, so a tie goes to the first, and a value the segment never saw scores
    0) without a join of every count to its segment."""
    col = _wide_columns(values)
    j = segments.left_join(per, "customer_id").drop("customer_id_right")
    j = j.mutate(**{c: j[c].fill_null(0.0) for c in col.values()})
    seg = j.group_by("_seg").aggregate(**{f"_s{c}": j[c].sum() for c in col.values()})
    shares: dict[str, ir.Value] = {}
    for d in DIMENSIONS:
        cols = [col[(d, v)] for v in values[d]]
        if cols:
            total = _total([seg[f"_s{c}"] for c in cols])
            for c in cols:  # a segment without signals of the dimension has no best value
                shares[f"_p{c}"] = ibis.ifelse(total > 0, seg[f"_s{c}"] / total, None)
    j = j.join(seg.select("_seg", **shares), "_seg")
    j = j.mutate(**{f"_x{c}": j[c] + k * j[f"_p{c}"] for c in col.values()})  # numerators
    tops: dict[str, ir.Value] = {}
    for d in DIMENSIONS:
        cols = [col[(d, v)] for v in values[d]]
        if cols:
            scores = [j[f"_x{c}"] for c in cols]  # Spark's greatest wants two or more
            tops[f"_m_{d}"] = ibis.greatest(*scores) if len(scores) > 1 else scores[0]
            tops[f"_t_{d}"] = _total([j[c] for c in cols])
    j = j.mutate(**tops)
    out: dict[str, ir.Value] = {}
    for d in DIMENSIONS:
        cols = [col[(d, v)] for v in values[d]]
        if not cols:
            out[f"best_{d}"] = ibis.null("string")
            out[f"{d}_confidence"] = ibis.null("float64")
            continue
        top = j[f"_m_{d}"]
        out[f"best_{d}"] = ibis.cases(
            *((j[f"_x{c}"] == top, v) for v, c in zip(values[d], cols, strict=True)),
            else_=ibis.null("string"),
        )
        out[f"{d}_confidence"] = top / (j[f"_t_{d}"] + k)
    return j.select("customer_id", **out)


def _best(counts: ir.Table, segments: ir.Table, k: float) -> ir.Table:
    """customer_id, then ``best_<dim>`` and ``<dim>_confidence`` for every dimension: the
    value with the largest posterior share and that share, for every customer of
    ``segments`` (empty where their segment has no signal of that dimension).

    A value the customer never showed scores ``k x`` its segment share, so of those only the
    segment's top value can win, and only against the customer's best own value (every value
    they showed scores more than ``k x`` its share). So one pass over the counts, grouped by
    customer, finds each dimension's best own value (ties to the first value in order, as the
    segment's top), and the segment's top value is compared with it: the same answer as over
    every value the segment knows, without a customers x values table or a window over it.
    """
    seg = counts.group_by(["dim", "_seg", "value"]).aggregate(sn=counts.n.sum())
    seg = seg.mutate(p=seg.sn / seg.sn.sum().over(ibis.window(group_by=[seg.dim, seg._seg])))
    top_w = ibis.window(group_by=[seg.dim, seg._seg], order_by=[ibis.desc(seg.p), seg.value])
    top = seg.mutate(_rk=ibis.row_number().over(top_w))
    top = top.filter(top._rk == 0)
    tops = top.group_by("_seg").aggregate(
        **{f"_tv_{c}": top.value.max(where=top.dim == c) for c in DIMENSIONS},
        **{f"_tp_{c}": top.p.max(where=top.dim == c) for c in DIMENSIONS},
    )
    own = counts.join(seg.select("dim", "_seg", "value", "p"), ["dim", "_seg", "value"])
    own = own.mutate(score=own.n + k * own.p)  # the posterior's numerator
    first = ibis.struct({"s": -own.score, "v": own.value})  # highest score, then first value
    per = own.group_by("customer_id").aggregate(
        **{f"_v_{c}": own.value.argmin(first, where=own.dim == c) for c in DIMENSIONS},
        **{f"_s_{c}": own.score.max(where=own.dim == c) for c in DIMENSIONS},
        **{f"_n_{c}": own.n.sum(where=own.dim == c) for c in DIMENSIONS},
    )
    j = segments.left_join(per, "customer_id").drop("customer_id_right")
    j = j.left_join(tops, "_seg").drop("_seg_right")
    cols: dict[str, ir.Value] = {}
    for c in DIMENSIONS:
        total = j[f"_n_{c}"].fill_null(0.0) + k
        mine = j[f"_s_{c}"] / total
        theirs = (0.0 + k * j[f"_tp_{c}"]) / total
        take_top = (
            j[f"_s_{c}"].isnull()
            | (theirs > mine)
            | ((theirs == mine) & (j[f"_tv_{c}"] < j[f"_v_{c}"]))
        )
        cols[f"best_{c}"] = ibis.ifelse(take_top, j[f"_tv_{c}"], j[f"_v_{c}"])
        cols[f"{c}_confidence"] = ibis.ifelse(take_top, theirs, mine)
    return j.select("customer_id", **cols)


def contact_times(
    wh: Warehouse,
    as_of: _dt.date | None = None,
    k: float = 5.0,
    store: bool = True,
    *,
    changed: ir.Table | None = None,
    since: _dt.date | None = None,
) -> ir.Table:
    """Best hour band, weekday, device and channel for every customer with any signal.

    On an incremental day (``changed``: the ids of the customers with lines, events or
    results dated on or after ``since``, the last run's date), only their signals are
    counted again; everybody else's counts are the ones stored for ``since`` (their lines
    before the cut did not change, the run's plan checked it), and only the changed
    customers' stored counts are replaced. The shrinkage toward the segments is computed
    over everybody, as in a full run, so the answer is the same.
    """
    as_of = as_of or latest_as_of(wh)
    # The two inputs every dimension reads, computed once: the customers' segments and their
    # signals counted, one row a customer and one column a value (one pass over the lines
    # and events; one row per customer, dimension and value for free-text devices).
    segments = wh.materialize(_segments(wh, as_of), "ct_segments")
    found = _stored_counts(wh, since) if changed is not None and since is not None else None
    if found is not None and found[1] is not None and changed is not None:
        # A device the day brought that the stored columns lack: everybody counted again.
        new = _devices(wh, as_of, only=changed.select("customer_id"))
        found = found if set(new) <= set(found[1]["device"]) else None
    if found is not None and changed is not None:
        stored, kept_values = found
        ids = changed.select("customer_id")
        signals = _signals(wh, as_of, only=ids)
        fresh = (
            _wide_counts(signals, kept_values) if kept_values is not None else _counts(signals)
        ).cast(stored.schema())
        if store:  # the changed customers' counts replace theirs, the others' stay
            fresh = wh.materialize(fresh, "ct_fresh")
            state = wh.marked(COUNTS_AS_OF)
            wh.mark(COUNTS_AS_OF, None)
            wh.delete_keys(COUNTS, ids, ["customer_id"])
            wh.insert(COUNTS, fresh)
            wh.mark(COUNTS_AS_OF, {**(state or {}), "as_of": as_of.isoformat()})
            raw = wh.table(COUNTS)
        else:
            kept = stored.anti_join(ids, "customer_id")
            raw = wh.materialize(kept.union(fresh), "ct_raw")
        values = kept_values
    else:
        devices = _devices(wh, as_of)
        values = _all_values(devices) if len(devices) <= WIDE_VALUES else None
        signals = _signals(wh, as_of)
        counted = _wide_counts(signals, values) if values is not None else _counts(signals)
        raw = wh.materialize(counted, "ct_raw")
        if store:  # what the next day's run starts from
            wh.mark(COUNTS_AS_OF, None)
            wh.write(COUNTS, raw)
            shape = {"values": values} if values is not None else {"shape": "long"}
            wh.mark(COUNTS_AS_OF, {"as_of": as_of.isoformat(), **shape})
    if values is not None:
        best = _best_wide(raw, segments, values, k)
    else:  # one row per customer, dimension and value (free-text devices, say)
        values = _values(raw)
        if max((len(v) for v in values.values()), default=0) <= WIDE_VALUES:
            best = _best_wide(_pivot(raw, values), segments, values, k)
        else:
            counts = wh.materialize(
                raw.join(segments, "customer_id").select(
                    "customer_id", "_seg", "dim", "value", "n"
                ),
                "ct_counts",
            )
            best = _best(counts, segments, k)
    out = best.mutate(as_of=ibis.literal(as_of, "date"))
    if not store:
        return out
    return wh.replace_where("contact_times", out, "as_of", as_of)


def _signals(wh: Warehouse, as_of: _dt.date, only: ir.Table | None = None) -> ir.Table:
    """Purchases and message opens / clicks: customer, hour band, weekday, device, channel
    (of the customers in ``only`` when given)."""
    cutoff = ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")
    tx = wh.table("transactions")
    tx = tx.filter(tx.customer_id.notnull() & (tx.timestamp < cutoff))
    if only is not None:
        tx = tx.semi_join(only, "customer_id")
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
        if only is not None:
            ev = ev.semi_join(only, "customer_id")
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
