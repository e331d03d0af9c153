"""Snapshots of every customer's classes over time, and a backfill from the history alone.

Every pipeline run already stores ``customer_classes`` and ``segment_members`` with their
``as_of`` date: those rows are the snapshots. ``backfill`` builds past snapshots at period ends
(weekly or monthly) from the transaction history alone, point in time (a snapshot at date D
uses only lines strictly before D), in two engine passes:

1. one grouped pass over the invoice lines: per customer and day, net spend and the number of
   purchase invoices (a table about half the size of the lines);
2. one pass joining those days to every snapshot date after them, grouped by customer and
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

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.features.customer import default_as_of
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


def history_summary(transactions: ir.Table, dates: list[_dt.date]) -> ir.Table:
    """Per customer and snapshot date: the features the classes need, point in time."""
    t = transactions.filter(transactions.customer_id.notnull())
    t = t.mutate(day=t.timestamp.date())
    buy_line = t.quantity > 0
    promo = buy_line & (t.promo_code.notnull() | (t.discount.fill_null(0) > 0))
    daily = t.group_by(["customer_id", "day"]).aggregate(
        spend=t.amount.sum(),
        gross=t.amount.sum(where=buy_line),
        promo=t.amount.sum(where=promo),
        invoices=t.invoice_id.nunique(where=buy_line),
    )
    snaps = ibis.memtable(pa.table({"as_of": pa.array(dates, pa.date32())}))
    j = daily.join(snaps, daily.day < snaps.as_of)
    buy = j.invoices > 0
    g = j.group_by(["customer_id", "as_of"]).aggregate(
        frequency=j.invoices.sum(),
        monetary=j.spend.sum(),
        gross=j.gross.sum(),
        promo=j.promo.sum(),
        first_purchase=j.day.min(where=buy),
        last_purchase=j.day.max(where=buy),
        n_days=j.day.count(where=buy),
    )
    g = g.filter(g.frequency > 0)
    end = g.as_of - ibis.interval(days=1)
    x = (g.n_days - 1).cast("float64")
    span = g.last_purchase.delta(g.first_purchase, unit="day").cast("float64")
    return g.select(
        "customer_id",
        "as_of",
        "frequency",
        "monetary",
        recency_days=end.delta(g.last_purchase, unit="day"),
        tenure_days=end.delta(g.first_purchase, unit="day"),
        x=x,
        interpurchase_mean=ibis.ifelse(x > 0, span / x, ibis.null("float64")),
        avg_order_value=g.monetary / g.frequency,
        promo_share=ibis.ifelse(g.gross > 0, g.promo.fill_null(0) / g.gross, ibis.null("float64")),
        first_purchase=g.first_purchase,
        last_purchase=g.last_purchase,
    )


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

    Existing snapshots at those dates are replaced; other dates are kept.
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
    summary = wh.materialize(history_summary(tx, dates), "histsum")
    rules = load_rfm_rules(settings.rfm_rules) if settings.rfm_rules else RFM_RULES
    run_id = "backfill-" + uuid.uuid4().hex[:8]
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
    wh.replace_where("customer_classes", out, "as_of", dates)
    done, skipped = (
        backfill_segments(wh, dates, summary, settings, run_id) if segments else ([], {})
    )
    rows = int(out.count().to_pyarrow().as_py())
    n_last = int(
        out.filter(out.as_of == ibis.literal(dates[-1], "date")).count().to_pyarrow().as_py()
    )
    return BackfillReport(run_id, dates, rows, n_last, done, skipped)


def backfill_segments(
    wh: Warehouse, dates: list[_dt.date], summary: ir.Table, settings: Settings, run_id: str
) -> tuple[list[str], dict[str, str]]:
    """Compute the saved segments at every backfilled date, from the point-in-time summary.

    A segment whose rule needs something a past date does not have (a feature outside the
    summary, CLV, or a segment that is skipped) is skipped, with the reason.
    """
    from segmentum.segments.rules import RuleError
    from segmentum.segments.store import Segments

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
    for d in dates:
        store.compute(d, run_id, only=list(valid))
    return sorted(valid), skipped


def snapshot_dates(wh: Warehouse) -> list[_dt.date]:
    """Every ``as_of`` with stored classes, oldest first."""
    if not wh.has("customer_classes"):
        return []
    t = wh.table("customer_classes")
    return sorted(t.select("as_of").distinct().as_of.to_pyarrow().to_pylist())
