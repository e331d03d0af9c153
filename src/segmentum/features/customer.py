"""Per-customer behaviour features as of a reference date, as Ibis expressions run in the engine.

Only lines strictly before ``as_of`` are used, so a feature computed for a past date never sees
the future. The observation ends on the last whole day before ``as_of``: a customer who bought
on that day has a recency of 0 days.
"""

from __future__ import annotations

import datetime as _dt

import ibis
import ibis.expr.types as ir

from segmentum.errors import InputError
from segmentum.features import rollup
from segmentum.ingest import returns as _returns

HOUR_BANDS = (
    (0, 6, "night"),
    (6, 12, "morning"),
    (12, 16, "afternoon"),
    (16, 20, "evening"),
    (20, 24, "late"),
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The event types counted per customer, in the order of their feature columns.
EVENT_COUNTS = {
    "cart_abandonments": "cart_abandoned",
    "email_opens": "email_open",
    "email_clicks": "email_click",
    "push_opens": "push_open",
    "push_clicks": "push_click",
}


def default_as_of(transactions: ir.Table) -> _dt.date:
    """The day after the last transaction: every line is then in the past."""
    last = transactions.timestamp.max().to_pyarrow().as_py()
    if last is None:
        raise InputError(
            "there are no transactions yet", "load some: segmentum ingest transactions FILE"
        )
    return (last + _dt.timedelta(days=1)).date()


def _cutoff(as_of: _dt.date) -> ir.TimestampScalar:
    """Midnight at the start of ``as_of``: lines strictly before it are in the past."""
    return ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")


def _days_between(later: ir.DateValue, earlier: ir.DateValue) -> ir.IntegerValue:
    return later.delta(earlier, unit="day")


def window_lines(
    transactions: ir.Table, as_of: _dt.date, cancelled: ir.Table | None = None
) -> ir.Table:
    """Identified customers' lines before ``as_of``, with the day and purchase/return flags.

    ``cancelled``: invoices (``customer_id``, ``invoice_id``) that returns cancel in full
    (:func:`segmentum.ingest.returns.cancelled_invoices`); their lines are not purchases.
    """
    t = transactions
    t = t.filter((t.timestamp < _cutoff(as_of)) & t.customer_id.notnull())
    return mark_purchases(t, cancelled)


#: Money sums are rounded to a millionth of the currency unit, so that a sum of prices in cents
#: has one value whatever order the engine adds the lines in: threads and engines add them in
#: different orders, and a customer's 300.00 came out as 300.00000000000006 in one run and
#: 299.99999999999994 in another, in and out of a rule's ``monetary > 300``.
MONEY_DIGITS = 6


def money(total: ir.NumericValue) -> ir.NumericValue:
    """A sum of money, rounded to :data:`MONEY_DIGITS` decimals."""
    return total.round(MONEY_DIGITS)


def mark_purchases(lines: ir.Table, cancelled: ir.Table | None = None) -> ir.Table:
    """``lines`` with their ``day`` and whether each is a net purchase or a return.

    ``is_purchase``: a positive quantity on an invoice that the returns linked to it do not
    cancel in full (``cancelled``, :func:`segmentum.ingest.returns.cancelled_invoices`);
    ``is_return``: a negative quantity. Every reader of net purchases marks lines here, so
    the daily run, the history backfill and the models agree on what a purchase is.
    """
    # One projection over the join: each extra select is a level the SQL compiler walks again.
    if cancelled is None:
        return lines.mutate(
            day=lines.timestamp.date(),
            is_purchase=lines.quantity > 0,
            is_return=lines.quantity < 0,
        )
    gone = cancelled.select("customer_id", "invoice_id", _gone=ibis.literal(True))
    t = lines.left_join(gone, ["customer_id", "invoice_id"])
    return t.select(
        *lines.columns,
        day=t.timestamp.date(),
        is_purchase=(t.quantity > 0) & ~t._gone.fill_null(False),
        is_return=t.quantity < 0,
    )


def net_links(transactions: ir.Table, links: ir.Table | None) -> ir.Table:
    """``links`` (the stored ``return_links``), or the returns of ``transactions`` linked here."""
    return _returns.link_returns(transactions) if links is None else links


def _mode(lines: ir.Table, column: str, weight: str, name: str) -> ir.Table:
    """Each customer's value of ``column`` with the largest total ``weight``; ties by value."""
    src = lines.filter(lines[column].notnull())
    counts = src.group_by(["customer_id", column]).aggregate(_w=src[weight].sum().cast("float64"))
    win = ibis.window(group_by=counts.customer_id, order_by=[ibis.desc(counts._w), counts[column]])
    ranked = counts.mutate(
        _rk=ibis.row_number().over(win),
        _tot=counts._w.sum().over(ibis.window(group_by=counts.customer_id)),
    )
    top = ranked.filter(ranked._rk == 0)
    return top.select("customer_id", **{name: top[column]}, **{f"{name}_share": top._w / top._tot})


def btyd_summary(
    transactions: ir.Table,
    as_of: _dt.date,
    weeks: bool = True,
    links: ir.Table | None = None,
) -> ir.Table:
    """The buy-till-you-die summary: x, t_x, T and the mean value of repeat purchases.

    Purchases are counted per distinct day (the literature's convention) and net of returns:
    a day whose spend, less the returns linked to it, is not positive is not a purchase day
    (see :mod:`segmentum.features.rollup`). ``x`` is the number
    of purchase days after the first, ``t_x`` the time from the first to the last purchase day,
    ``T`` the time from the first purchase day to the end of the observation (the day before
    ``as_of``), in weeks (days / 7) or days. ``monetary_value`` is the mean spend of the repeat
    purchase days (NULL when x = 0).

    ``transactions`` is the invoice lines, or the purchase-day rollup the warehouse keeps
    (:func:`segmentum.features.rollup.purchase_days`): the same numbers, without grouping
    every line again.

    Examples
    --------
    >>> import ibis, datetime
    >>> t = ibis.memtable({"customer_id": ["a", "a"], "timestamp": [datetime.datetime(2024, 1, 1),
    ...     datetime.datetime(2024, 1, 8)], "quantity": [1.0, 1.0], "amount": [10.0, 20.0]})
    >>> s = btyd_summary(t, datetime.date(2024, 1, 15), weeks=False).execute()
    >>> s[["x", "t_x", "T"]].values.tolist()
    [[1.0, 7.0, 13.0]]
    """
    return _btyd_from_days(purchase_days_before(transactions, as_of, links), as_of, weeks)


def purchase_days_before(
    source: ir.Table, as_of: _dt.date, links: ir.Table | None = None
) -> ir.Table:
    """Each customer's purchase days before ``as_of`` with the day's net spend (``value``).

    ``source`` is either invoice lines (grouped here, their returns netted through ``links``
    or linked here) or the warehouse's purchase-day rollup
    (:func:`segmentum.features.rollup.purchase_days`, already grouped: only filtered here).
    """
    if rollup.is_day_rollup(source):
        days = rollup.window(source, as_of)
    else:
        # Every line, not only those before as_of: a later return nets against its purchase.
        days = rollup.window(rollup.day_rollup(source, links), as_of)
    days = rollup.bought(days)
    return days.select("customer_id", "day", "value")


def _btyd_from_days(days: ir.Table, as_of: _dt.date, weeks: bool) -> ir.Table:
    """The BTYD summary from the purchase-day table (one row per customer and day)."""
    end = ibis.literal(as_of, "date") - ibis.interval(days=1)
    unit = 7.0 if weeks else 1.0
    # The first day's spend by arg-min (no window): repeat value = total - first day.
    summary = days.group_by("customer_id").aggregate(
        n_days=days.count(),
        first_day=days.day.min(),
        last_day=days.day.max(),
        total_value=days.value.sum(),
        first_value=days.value.argmin(days.day),
    )
    x = summary.n_days - 1
    summary = summary.mutate(repeat_value=summary.total_value - summary.first_value)
    return summary.select(
        "customer_id",
        x=x.cast("float64"),
        t_x=_days_between(summary.last_day, summary.first_day).cast("float64") / unit,
        T=_days_between(end, summary.first_day).cast("float64") / unit,
        monetary_value=ibis.ifelse(x > 0, summary.repeat_value / x, ibis.null("float64")),
    )


def customer_features(
    transactions: ir.Table,
    as_of: _dt.date,
    *,
    events: ir.Table | None = None,
    campaign_results: ir.Table | None = None,
    weeks: bool = True,
    days: ir.Table | None = None,
    links: ir.Table | None = None,
) -> ir.Table:
    """One row per customer with a purchase before ``as_of``: every behaviour feature.

    Purchases are net of returns and cancellations: an invoice that the returns linked to it
    cancel in full is not a purchase (it adds nothing to ``frequency``, the items, products,
    preferences or ``first_purchase`` / ``last_purchase``), and a day whose net spend is not
    positive is not a purchase day (the BTYD summary, recency, tenure and purchase gaps).
    ``monetary`` is the net spend (every line, returns included); ``return_rate`` is returned
    spend over everything ordered, cancelled orders included.

    Parameters
    ----------
    transactions
        The canonical ``transactions`` table (or any expression with its columns).
    as_of
        Reference date; only data strictly before it is used.
    events, campaign_results
        Optional: add cart abandonment and message open / click rates.
    weeks
        Express the BTYD times (t_x, T) in weeks instead of days.
    days
        Optional: the warehouse's purchase-day rollup
        (:func:`segmentum.features.rollup.purchase_days`). The purchase gaps and the BTYD
        summary then read it instead of grouping the lines again; the values are the same.
    links
        Optional: the warehouse's ``return_links`` (:func:`segmentum.ingest.returns.links`);
        by default the returns are linked to their purchases here, from ``transactions``.
    """
    end = ibis.literal(as_of, "date") - ibis.interval(days=1)
    d90 = end - ibis.interval(days=89)
    d180 = end - ibis.interval(days=179)

    links = net_links(transactions, links)
    cancelled = _returns.cancelled_invoices(links)

    def purchases(*columns: str) -> ir.Table:
        """Purchase lines with only ``columns``: each pass reads just what it needs (a shared
        expression of every line would be materialised whole by the engine)."""
        cols = dict.fromkeys(("customer_id", "invoice_id", "timestamp", "quantity", *columns))
        t = window_lines(transactions.select(*cols), as_of, cancelled)
        return t.filter(t.is_purchase)

    lines = window_lines(
        transactions.select(
            "customer_id",
            "invoice_id",
            "timestamp",
            "quantity",
            "amount",
            "promo_code",
            "discount",
        ),
        as_of,
        cancelled,
    )
    buy = lines.is_purchase
    promo = (lines.promo_code.notnull() | (lines.discount.fill_null(0) > 0)) & buy
    base = lines.group_by("customer_id").aggregate(
        monetary=money(lines.amount.sum()),
        gross_spend=money(lines.amount.sum(where=buy)),
        ordered_spend=money(lines.amount.sum(where=lines.quantity > 0)),
        returned_spend=money(-lines.amount.sum(where=lines.is_return)),
        items=lines.quantity.sum(where=buy),
        promo_spend=money(lines.amount.sum(where=promo)),
        spend_last_90=money(lines.amount.sum(where=lines.day >= d90)),
        spend_prev_90=money(lines.amount.sum(where=(lines.day >= d180) & (lines.day < d90))),
    )
    inv = purchases("invoice_id")
    orders = inv.group_by("customer_id").aggregate(frequency=inv.invoice_id.nunique())
    prod = purchases("product_id")
    distinct_products = prod.group_by("customer_id").aggregate(
        distinct_products=prod.product_id.nunique()
    )
    days = purchase_days_before(transactions if days is None else days, as_of, links)
    # First and last purchase are net purchase days, as in the BTYD summary.
    span = days.group_by("customer_id").aggregate(
        first_purchase=days.day.min(), last_purchase=days.day.max()
    )

    # Preferences: each from a grouping over small integer or dictionary keys, named after.
    when = purchases()
    when = when.mutate(
        _hour=when.timestamp.hour(),
        _dow=when.timestamp.day_of_week.index(),  # 0 = Monday
    )
    slots = when.group_by(["customer_id", "_hour", "_dow"]).aggregate(_lines=when.count())
    slots = slots.mutate(
        hour_band=ibis.cases(
            *((slots._hour.between(lo, hi - 1), name) for lo, hi, name in HOUR_BANDS),
            else_="late",
        ),
        weekday=ibis.cases(
            *((slots._dow == i, n) for i, n in enumerate(WEEKDAYS)), else_=ibis.null("string")
        ),
    )
    how = purchases("sales_channel", "device")
    ways = how.group_by(["customer_id", "sales_channel", "device"]).aggregate(_lines=how.count())
    cat = purchases("category", "amount")
    cats = cat.group_by(["customer_id", "category"]).aggregate(_value=cat.amount.sum())

    base = (
        base.join(orders.filter(orders.frequency > 0), "customer_id")
        .join(span, "customer_id")
        .left_join(distinct_products, "customer_id")
    )
    gross = base.gross_spend
    ordered = base.ordered_spend
    last90, prev90 = base.spend_last_90.fill_null(0), base.spend_prev_90.fill_null(0)
    feats = base.select(
        base.customer_id,
        "frequency",
        "monetary",
        recency_days=_days_between(end, base.last_purchase),
        tenure_days=_days_between(end, base.first_purchase),
        first_purchase="first_purchase",
        last_purchase="last_purchase",
        avg_order_value=base.monetary / base.frequency,
        items_per_order=base.items / base.frequency,
        return_rate=ibis.ifelse(
            ordered > 0, base.returned_spend.fill_null(0) / ordered, ibis.null("float64")
        ),
        promo_share=ibis.ifelse(
            gross > 0, base.promo_spend.fill_null(0) / gross, ibis.null("float64")
        ),
        distinct_products=base.distinct_products.fill_null(0),
        spend_last_90=last90,
        spend_prev_90=prev90,
        # -1 (all spend in the 90 days before) .. +1 (all in the last 90 days); NULL when neither.
        # A period whose returns exceed its purchases counts as no spend: the net is negative
        # there, and the ratio would leave -1..+1 (or vanish when the two periods cancel).
        trend=_trend(ibis.greatest(last90, 0.0), ibis.greatest(prev90, 0.0)),
    )

    # Time between purchase days: mean and spread, from the day table.
    prev = days.day.lag().over(ibis.window(group_by=days.customer_id, order_by=days.day))
    gaps = days.mutate(gap=_days_between(days.day, prev).cast("float64")).filter(
        ibis._.gap.notnull()
    )
    gap_stats = gaps.group_by("customer_id").aggregate(
        interpurchase_mean=gaps.gap.mean(), interpurchase_std=gaps.gap.std(how="pop")
    )

    modes = [
        _mode(ways, "sales_channel", "_lines", "preferred_channel"),
        _mode(ways, "device", "_lines", "preferred_device"),
        _mode(slots, "hour_band", "_lines", "preferred_hour_band"),
        _mode(slots, "weekday", "_lines", "preferred_weekday"),
        _mode(cats, "category", "_value", "top_category"),
    ]
    # One chain of joins and one projection: each join followed by its own select nests the
    # expression one level deeper, and compiling it cost more than running it on small data.
    parts = [gap_stats, *modes, _btyd_from_days(days, as_of, weeks)]
    if events is not None:
        ev = events.filter((events.timestamp < _cutoff(as_of)) & events.customer_id.notnull())
        et = ev.event_type
        parts.append(
            ev.group_by("customer_id").aggregate(
                **{c: (et == k).cast("int64").sum() for c, k in EVENT_COUNTS.items()}
            )
        )
        if campaign_results is not None:
            cr = campaign_results.filter(campaign_results.sent_at < _cutoff(as_of))
            treated = cr.group == "treatment"
            parts.append(
                cr.group_by("customer_id").aggregate(
                    email_sends=cr.count(where=(cr.channel == "email") & treated),
                    push_sends=cr.count(where=(cr.channel == "push") & treated),
                )
            )
    out = feats
    for i, part in enumerate(parts):
        out = out.left_join(part, "customer_id", rname=f"{{name}}_{i}")
    preferred = ("channel", "device", "hour_band", "weekday")
    dropped = {*(f"preferred_{n}_share" for n in preferred), *EVENT_COUNTS}
    dropped |= {"email_sends", "push_sends"}
    keep = [c for c in out.columns if c not in dropped and not c.startswith("customer_id_")]
    extra: dict[str, ir.Value] = {}
    if events is not None:
        n = {c: out[c].fill_null(0) for c in EVENT_COUNTS}
        extra.update(n)
        if campaign_results is not None:
            for ch in ("email", "push"):
                sends = out[f"{ch}_sends"]
                extra[f"{ch}_open_rate"] = ibis.ifelse(
                    sends > 0, n[f"{ch}_opens"] / sends, ibis.null("float64")
                )
        for ch in ("email", "push"):
            opens = n[f"{ch}_opens"]
            extra[f"{ch}_click_rate"] = ibis.ifelse(
                opens > 0, n[f"{ch}_clicks"] / opens, ibis.null("float64")
            )
    return out.select(*keep, **extra, as_of=ibis.literal(as_of, "date"))


def net_purchase_lines(
    transactions: ir.Table, as_of: _dt.date, links: ir.Table | None = None
) -> ir.Table:
    """Purchase lines before ``as_of`` as they stand once returns are counted
    (:func:`net_lines`). ``links``: the stored ``return_links``; by default linked here."""
    links = net_links(transactions, links)
    t = transactions
    return net_lines(t.filter((t.timestamp < _cutoff(as_of)) & t.customer_id.notnull()), links)


def net_lines(lines: ir.Table, links: ir.Table) -> ir.Table:
    """The purchase lines of ``lines`` as they stand once returns are counted.

    Lines of an order that its returns cancel in full are left out, and so is a line whose
    units all came back; a line partly returned keeps what was kept: ``quantity`` and
    ``amount`` less the units and money returned against it (never below zero), whenever the
    return was made. The same lines are in the cross-sell baskets
    (:func:`segmentum.campaigns.fpgrowth.basket_items`). ``links``: the stored
    ``return_links`` (:func:`segmentum.ingest.returns.links`).
    """
    marked = mark_purchases(lines, _returns.cancelled_invoices(links))
    marked = marked.filter(marked.is_purchase)
    back = _returns.returned_per_line(links)
    t = marked.left_join(back, ["invoice_id", "line"])
    t = t.drop(*[c for c in t.columns if c.endswith("_right")])
    kept = t.quantity + t.returned.fill_null(0)
    t = t.filter(kept > _returns.EPS)
    net = t.amount + t.returned_amount.fill_null(0)
    t = t.mutate(quantity=kept, amount=ibis.ifelse(net > 0, net, 0).cast(t.amount.type()))
    return t.drop("returned", "returned_amount")


def top_categories(
    transactions: ir.Table, as_of: _dt.date, n: int = 8, links: ir.Table | None = None
) -> list[str]:
    """The ``n`` categories with the most net revenue before ``as_of`` (a small query).

    Cancelled orders and returned units do not count (:func:`net_purchase_lines`).
    """
    lines = net_purchase_lines(transactions, as_of, links)
    lines = lines.filter(lines.category.notnull())
    top = (
        lines.group_by("category")
        .aggregate(revenue=lines.amount.sum())
        .order_by([ibis.desc("revenue"), "category"])
        .limit(n)
    )
    return [str(c) for c in top.category.to_pyarrow().to_pylist()]


def mix_column(category: str) -> str:
    """The column name of a category's spend share, e.g. ``mix_moda_calzado``."""
    import re
    import unicodedata

    ascii_ = unicodedata.normalize("NFKD", category).encode("ascii", "ignore").decode()
    return "mix_" + (re.sub(r"[^a-z0-9]+", "_", ascii_.lower()).strip("_") or "other")


def category_mix(
    transactions: ir.Table,
    as_of: _dt.date,
    categories: list[str],
    links: ir.Table | None = None,
) -> ir.Table:
    """Each customer's share of net purchase spend in each of ``categories`` (one grouped
    pass): cancelled orders and returned units do not count (:func:`net_purchase_lines`)."""
    lines = net_purchase_lines(transactions, as_of, links)
    total = lines.amount.sum()
    aggs = {mix_column(c): lines.amount.sum(where=lines.category == c) for c in categories}
    g = lines.group_by("customer_id").aggregate(_total=total, **aggs)
    return g.select(
        "customer_id",
        **{
            k: ibis.ifelse(g._total > 0, g[k].fill_null(0) / g._total, 0.0).cast("float64")
            for k in aggs
        },
    )


def _trend(last: ir.NumericValue, prev: ir.NumericValue) -> ir.FloatingValue:
    """(last - prev) / (last + prev) of two non-negative spends; NULL when both are 0."""
    return ibis.ifelse((last + prev) > 0, (last - prev) / (last + prev), ibis.null("float64"))
