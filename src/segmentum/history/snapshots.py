"""Snapshots of every customer's classes over time, and a backfill from the history alone.

Every pipeline run already stores ``customer_classes`` and ``segment_members`` with their
``as_of`` date: those rows are the snapshots. ``backfill`` builds past snapshots at period ends
(weekly or monthly) from the transaction history alone, point in time (a snapshot at date D
uses only lines strictly before D), in two engine passes:

1. grouped passes over the invoice lines: per customer and day, spend and the number of
   orders first bought that day, counted net as a daily run counts them (an order that its
   returns cancel in full is not a purchase); and the net purchase days, read from the
   purchase-day rollup the warehouse keeps;
2. passes joining those days to every snapshot date after them, grouped by customer and
   date: frequency, monetary, first and last purchase day, number of purchase days.

The classes of every date are then computed in one more pass by the same code as a daily run
(:func:`classify`, every rank and share taken within its own date), and written at once.
CLV-based columns (potential tier, value x potential) need a model per date and are left
empty in backfilled snapshots.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.features import rollup
from segmentum.features.customer import default_as_of, mark_purchases, money, net_links
from segmentum.ingest import returns as _returns
from segmentum.segments.classes import RFM_RULES, classify, load_rfm_rules
from segmentum.warehouse import Warehouse

FREQUENCIES = ("month", "week")


def period_ends(first: _dt.date, last: _dt.date, freq: str = "month") -> list[_dt.date]:
    """Snapshot dates: the first day after each whole period between ``first`` and ``last``.

    A monthly snapshot dated 2025-03-01 describes the customer base at the end of February.
    """
    if freq not in FREQUENCIES:
        raise InputError(f"unknown frequency {freq!r}", "use month or week")
    out: list[_dt.date] = []
    if freq == "month":
        d = _dt.date(first.year, first.month, 1)
        while True:
            d = _dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
            if d > last:
                break
            out.append(d)
    else:
        d = first + _dt.timedelta(days=(7 - first.weekday()) % 7 or 7)  # next Monday
        while d <= last:
            out.append(d)
            d += _dt.timedelta(days=7)
    return out


@dataclass
class BackfillReport:
    run_id: str
    dates: list[_dt.date]
    rows: int
    customers_last: int
    segments: list[str] = field(default_factory=list)  # saved segments backfilled
    skipped: dict[str, str] = field(default_factory=dict)  # segment -> why not
    # Dates that already hold a pipeline run's snapshot, kept as they are (see backfill).
    kept: list[_dt.date] = field(default_factory=list)


def _daily_parts(
    transactions: ir.Table, links: ir.Table | None, days: ir.Table | None
) -> tuple[ir.Table, ir.Table, ir.Table]:
    """Per customer and day: net spend (with the gross and promotional spend), orders first
    bought that day, and the net purchase days; what every snapshot is summed from."""
    links = net_links(transactions, links)
    if days is None:
        days = rollup.day_rollup(transactions, links)
    t = mark_purchases(
        transactions.filter(transactions.customer_id.notnull()).select(
            "customer_id", "invoice_id", "timestamp", "quantity", "amount", "promo_code", "discount"
        ),
        _returns.cancelled_invoices(links),
    )
    buy = t.is_purchase
    promo = buy & (t.promo_code.notnull() | (t.discount.fill_null(0) > 0))
    spend = t.group_by(["customer_id", "day"]).aggregate(
        spend=t.amount.sum(),
        gross=t.amount.sum(where=buy),
        promo=t.amount.sum(where=promo),
    )
    # An order counts once, from the first day it has a purchase line (as a daily run counts
    # distinct invoices, even one whose lines span midnight).
    p = t.filter(buy & t.invoice_id.notnull())
    first = p.group_by(["customer_id", "invoice_id"]).aggregate(day=p.day.min())
    orders = first.group_by(["customer_id", "day"]).aggregate(orders=first.count())
    bought = rollup.bought(days).select("customer_id", "day")
    return spend, orders, bought


def _dates_table(dates: list[_dt.date]) -> ir.Table:
    return ibis.memtable(pa.table({"as_of": pa.array(dates, pa.date32())}))


def history_summary(
    transactions: ir.Table,
    dates: list[_dt.date],
    *,
    links: ir.Table | None = None,
    days: ir.Table | None = None,
    parts: tuple[ir.Table, ir.Table, ir.Table] | None = None,
) -> ir.Table:
    """Per customer and snapshot date: the features the classes need, point in time.

    Purchases are net, exactly as in a daily run (:func:`customer_features`): lines of an
    invoice that its linked returns cancel in full are not purchases, and purchase days are
    the days whose net spend stays above zero once the returns linked to them are counted
    (:mod:`segmentum.features.rollup`). ``links`` is the warehouse's ``return_links`` and
    ``days`` its purchase-day rollup (:func:`segmentum.features.rollup.purchase_days`); by
    default both are computed here from ``transactions``. ``parts``: the customer-day tables
    these give (:func:`_daily_parts`), when the caller computed them once for several calls.
    """
    spend, orders, bought = parts or _daily_parts(transactions, links, days)
    snaps = _dates_table(dates)
    j = spend.join(snaps, spend.day < snaps.as_of)
    spent = j.group_by(["customer_id", "as_of"]).aggregate(
        monetary=money(j.spend.sum()), gross=money(j.gross.sum()), promo=money(j.promo.sum())
    )
    j = orders.join(snaps, orders.day < snaps.as_of)
    counted = j.group_by(["customer_id", "as_of"]).aggregate(frequency=j.orders.sum())
    j = bought.join(snaps, bought.day < snaps.as_of)
    span = j.group_by(["customer_id", "as_of"]).aggregate(
        first_purchase=j.day.min(), last_purchase=j.day.max(), n_days=j.count()
    )
    # A customer is in a snapshot with a net order and a net purchase day, as in a daily run.
    g = counted.join(spent, ["customer_id", "as_of"]).join(span, ["customer_id", "as_of"])
    end = g.as_of - ibis.interval(days=1)
    x = (g.n_days - 1).cast("float64")
    gap = g.last_purchase.delta(g.first_purchase, unit="day").cast("float64")
    return g.select(
        "customer_id",
        "as_of",
        "frequency",
        "monetary",
        recency_days=end.delta(g.last_purchase, unit="day"),
        tenure_days=end.delta(g.first_purchase, unit="day"),
        x=x,
        interpurchase_mean=ibis.ifelse(x > 0, gap / x, ibis.null("float64")),
        avg_order_value=g.monetary / g.frequency,
        promo_share=ibis.ifelse(g.gross > 0, g.promo.fill_null(0) / g.gross, ibis.null("float64")),
        first_purchase=g.first_purchase,
        last_purchase=g.last_purchase,
    )


def snapshot_parts(
    transactions: ir.Table,
    *,
    links: ir.Table | None = None,
    days: ir.Table | None = None,
) -> ir.Table:
    """What each customer adds to the snapshots after each day (``customer_id``, ``day``,
    ``customers``, ``revenue``): :func:`snapshot_totals` is their sum over the days before each
    date.

    A customer is in every snapshot after the day they first have a net order, spend and a net
    purchase day (the latest of those three first days, their *entry*: ``customers`` is 1 on
    it); a day's spend counts in a snapshot when both the day and the entry precede it, so it
    is summed under the later of the two. The rows of a customer follow from their own lines
    only (returns link within a customer), so a daily run replaces only the changed customers'
    rows (:func:`segmentum.page_models.build_page_models`).
    """
    spend, orders, bought = _daily_parts(transactions, links, days)

    def first(t: ir.Table, name: str) -> ir.Table:
        return t.group_by("customer_id").aggregate(**{name: t.day.min()})

    s, o, b = first(spend, "s"), first(orders, "o"), first(bought, "b")
    e = s.join(o, "customer_id").join(b, "customer_id")
    entry = e.select("customer_id", entry=ibis.greatest(e.s, e.o, e.b))
    j = spend.join(entry, "customer_id")
    money = j.select(
        "customer_id",
        day=ibis.greatest(j.day, j.entry),
        customers=ibis.literal(0, "int64"),
        revenue=j.spend,
    )
    joined = entry.select(
        "customer_id",
        day=entry.entry,
        customers=ibis.literal(1, "int64"),
        revenue=ibis.literal(0.0, "float64"),
    )
    both = money.union(joined.cast(money.schema()))
    return both.group_by(["customer_id", "day"]).aggregate(
        customers=both.customers.sum(), revenue=both.revenue.sum()
    )


def totals_from_parts(parts: ir.Table, dates: list[_dt.date]) -> ir.Table:
    """Per snapshot date: customers and revenue (``as_of``, ``customers``, ``revenue``), summed
    from :func:`snapshot_parts`: a day's parts count in every date after it. The parts are
    first summed per day, so the cost follows the days, not customers x dates."""
    by_day = parts.group_by("day").aggregate(
        customers=parts.customers.sum(), revenue=parts.revenue.sum()
    )
    snaps = _dates_table(dates)
    j = by_day.join(snaps, by_day.day < snaps.as_of)
    return j.group_by("as_of").aggregate(customers=j.customers.sum(), revenue=j.revenue.sum())


def snapshot_totals(
    transactions: ir.Table,
    dates: list[_dt.date],
    *,
    links: ir.Table | None = None,
    days: ir.Table | None = None,
) -> ir.Table:
    """Per snapshot date: the customers in it and their revenue (``as_of``, ``customers``,
    ``revenue``), the sums of :func:`history_summary` over its customers, without a row per
    customer and date (see :func:`snapshot_parts`): the cost follows the lines, not lines x
    dates (a daily run adds a snapshot date every day).
    """
    parts = snapshot_parts(transactions, links=links, days=days)
    return totals_from_parts(parts, dates)


def backfill(
    wh: Warehouse,
    *,
    freq: str = "month",
    periods: int | None = 24,
    start: _dt.date | None = None,
    end: _dt.date | None = None,
    settings: Settings | None = None,
    segments: bool = True,
) -> BackfillReport:
    """Build past snapshots of ``customer_classes`` (weekly or monthly) from the lines alone.

    Existing backfilled snapshots at those dates are replaced (the classes, and with
    ``segments`` the members of every saved segment at those dates: a segment that cannot be
    backfilled has none there); other dates are kept. A date whose snapshot a pipeline run
    wrote is kept too: it holds what a backfill cannot rebuild
    (CLV, potential, value x potential, the segments that need them), so a backfill after
    ``segmentum run`` no longer empties those columns for the run's own date.
    """
    settings = settings or load_settings()
    tx = wh.table("transactions")
    last = end or default_as_of(tx)
    first = start or tx.timestamp.min().to_pyarrow().as_py().date()
    dates = period_ends(first, last, freq)
    if periods is not None:
        dates = dates[-periods:]
    if not dates:
        raise InputError(
            f"no whole {freq} between {first} and {last}", "use --freq week or more history"
        )
    kept = _run_dates(wh, dates)
    dates = [d for d in dates if d not in kept]
    if not dates:
        return BackfillReport("", [], 0, 0, kept=kept)
    # The old snapshots of these dates go first, in one statement: deleted in each batch's
    # own transaction, they cost a checkpoint a batch (on 10M lines in 24 batches, 38 s of a
    # 154 s backfill). Each batch then only adds its rows.
    wh.delete_where("customer_classes", "as_of", dates)
    if segments:
        from segmentum.segments.store import MEMBERS

        wh.delete_where(MEMBERS, "as_of", dates)
    days = rollup.purchase_days(wh)  # brings the return links up to date too
    links = wh.table(_returns.LINKS)
    rules = load_rfm_rules(settings.rfm_rules) if settings.rfm_rules else RFM_RULES
    run_id = "backfill-" + uuid.uuid4().hex[:8]
    rows, n_last = 0, 0
    done: list[str] = []
    skipped: dict[str, str] = {}
    memo: dict[Any, Any] = {}  # what the segments' batches share (see members_by_date)
    batches = date_batches(dates, int(days.customer_id.nunique().to_pyarrow().as_py() or 0))
    # Several batches: the lines' customer-day sums are computed once, not once a batch (at
    # 100M lines, six passes over every line).
    parts = None
    if len(batches) > 1:
        a, b, c = (wh.materialize(x, "histparts") for x in _daily_parts(tx, links, days))
        parts = (a, b, c)
    # The lines are only read from here on: their fingerprint (are the return links
    # current? every batch's segments ask) is taken once, not once a batch (a scan of
    # every line: 24 of them at 100M lines).
    with wh.reading_only(("transactions",)):
        for batch in batches:
            summary = wh.materialize(
                history_summary(tx, batch, links=links, days=days, parts=parts), "histsum"
            )
            out = classify(
                summary,
                rules=rules,
                tier_cuts=settings.value_tier_cuts,
                tier_method=settings.value_tier_method,
                score_cuts=settings.value_tier_score_cuts,
                by_date=True,
            )
            out = out.mutate(run_id=ibis.literal(run_id))
            out = wh.materialize(out, "histcls")
            # Backfilled dates are replaced, every other date kept; CLV-based columns stay empty.
            wh.replace_where("customer_classes", out, "as_of", batch)
            if segments:
                these, why = backfill_segments(
                    wh, batch, summary, settings, run_id, memo if len(batches) > 1 else None
                )
                done = list(dict.fromkeys([*done, *these]))
                skipped.update(why)
            rows += int(out.count().to_pyarrow().as_py())
            if batch[-1] == dates[-1]:
                last_day = out.filter(out.as_of == ibis.literal(dates[-1], "date"))
                n_last = int(last_day.count().to_pyarrow().as_py())
            for staged in (out, summary):  # a batch's rows, written: the next batch needs room
                wh.drop(staged.get_name())
    for staged in parts or ():
        wh.drop(staged.get_name())
    from segmentum.history.segment_backfill import drop_memo

    drop_memo(wh, memo)
    return BackfillReport(run_id, dates, rows, n_last, done, skipped, kept)


#: Customer-dates one backfill pass holds at most (its point-in-time summary and classes):
#: 24 monthly dates of 8.7 million customers in one pass spilled more than the free disk.
#: Measured on 864,000 customers x 24 dates (4GB memory limit, CPU seconds of the backfill):
#: one pass 329, 2 batches of 12 dates 265, 6 of 4 dates 267, 23 of about one 337; a pass
#: of about 10M customer-dates is the cheapest there, a bigger one spills.
BATCH_ROWS = 12_000_000
#: Dates one pass holds at least, whatever :data:`BATCH_ROWS` says: each pass reads every
#: customer's days again (on 10M lines in passes of one date, 24 passes: 206 CPU-s against 194
#: for passes of two, mean of two runs each).
MIN_DATES = 2


def date_batches(dates: list[_dt.date], customers: int) -> list[list[_dt.date]]:
    """``dates`` in consecutive groups of at most :data:`BATCH_ROWS` customer-dates each
    (but at least :data:`MIN_DATES` dates a group): every date's classes and segments depend on
    that date alone, so the groups give what one pass over every date gives.

    >>> import datetime as dt
    >>> days = [dt.date(2025, m, 1) for m in range(1, 7)]
    >>> [len(b) for b in date_batches(days, 5_000_000)], len(date_batches(days, 1000))
    ([2, 2, 2], 1)
    >>> [len(b) for b in date_batches(days, 9_000_000)]  # one date would pass the bound
    [2, 2, 2]
    """
    size = max(MIN_DATES, BATCH_ROWS // max(customers, 1))
    return [dates[i : i + size] for i in range(0, len(dates), size)]


def _run_dates(wh: Warehouse, dates: list[_dt.date]) -> list[_dt.date]:
    """Those of ``dates`` whose snapshot in ``customer_classes`` a pipeline run wrote."""
    if not wh.has("customer_classes"):
        return []
    c = wh.table("customer_classes")
    if "run_id" not in c.columns:
        return []
    c = c.filter(
        c.as_of.isin([ibis.literal(d, "date") for d in dates])
        & ~c.run_id.fill_null("").startswith("backfill-")
    )
    found = c.select("as_of").distinct().to_pyarrow().column("as_of").to_pylist()
    return sorted(d.date() if isinstance(d, _dt.datetime) else d for d in found)


def backfill_segments(
    wh: Warehouse,
    dates: list[_dt.date],
    summary: ir.Table,
    settings: Settings,
    run_id: str,
    memo: dict[Any, Any] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Compute the saved segments at every backfilled date, from the point-in-time summary.

    All dates are evaluated in one partitioned pass
    (:func:`segmentum.history.segment_backfill.members_by_date`) and written at once; the
    members are those :meth:`Segments.compute` gives date by date.

    A segment whose rule needs something a past date does not have (a feature outside the
    summary, CLV, or a segment that is skipped) is skipped, with the reason.
    """
    from segmentum.history.segment_backfill import members_by_date
    from segmentum.segments.rules import RuleError
    from segmentum.segments.store import MEMBERS, Segments

    store = Segments(wh, settings)
    segs = {s.name: s for s in store.list()}
    if not segs:
        return [], {}
    store.features_at = lambda d: summary.filter(summary.as_of == ibis.literal(d, "date")).drop(
        "as_of"
    )
    view, _ = store._view(dates[-1])
    valid = dict(segs)
    skipped: dict[str, str] = {}
    while valid:
        try:
            store.validate(valid.values(), view)
            break
        except (RuleError, InputError) as exc:
            name = next(
                (n for n in valid if exc.message.startswith(f"segment {n}:")),
                None,
            )
            if name is None:
                name = next((n for n in valid if n in exc.message), None)
            if name is None:  # not about one segment: nothing can be backfilled
                skipped.update({n: exc.message.splitlines()[0] for n in valid})
                valid = {}
                break
            skipped[name] = exc.message.splitlines()[0]
            del valid[name]
    if valid:
        # Every date in one partitioned pass, written at once (not one compute per date).
        before = wh.temp_tables()
        members = members_by_date(store, valid, dates, summary, memo)
        members = members.mutate(run_id=ibis.literal(run_id))
        wh.replace_where(MEMBERS, members, "as_of", dates)
        wh.release(before, keep=memo)  # the batch's flags; what later batches share stays
    return sorted(valid), skipped


def month_before(dates: list[_dt.date]) -> _dt.date:
    """The default start of a migration ending at the newest of ``dates`` (oldest first, at
    least two): the newest snapshot a month or more before it, so that daily runs compare
    month on month, not yesterday with today; the oldest when none is that old.

    >>> import datetime as dt
    >>> days = [dt.date(2025, 11, 1), dt.date(2025, 12, 1), dt.date(2025, 12, 2)]
    >>> month_before(days).isoformat(), month_before(days[1:]).isoformat()
    ('2025-11-01', '2025-12-01')
    """
    newest = dates[-1]
    back = newest.replace(day=1) - _dt.timedelta(days=1)  # the day before newest's month
    cutoff = back.replace(day=min(newest.day, back.day))  # the same day a month earlier
    older = [d for d in dates[:-1] if d <= cutoff]
    return older[-1] if older else dates[0]


def snapshot_dates(wh: Warehouse) -> list[_dt.date]:
    """Every ``as_of`` with stored classes, oldest first."""
    if not wh.has("customer_classes"):
        return []
    t = wh.table("customer_classes")
    return sorted(t.select("as_of").distinct().as_of.to_pyarrow().to_pylist())
