"""Saved segments at every backfilled date in one partitioned pass.

The history backfill's point-in-time summary already holds every snapshot date (its ``as_of``
column). Here the customer view, every time-window aggregate and every rule are built once
over all dates, keyed by ``(customer_id, as_of)``, as the class backfill does, instead of one
:meth:`Segments.compute` per date: the lines of a raw table are added up per customer and day
once, each day joins the dates whose windows hold it (``day < as_of`` and
``day >= as_of - longest window``), one grouped scan gives every window call per customer and
date (:func:`segmentum.segments.rules.window_aggregates`), and segment references read the
flags of the same date.
All dates' members are written with one replace. The members are those that
:meth:`Segments.compute` gives date by date (``tests/test_history.py`` compares them).

Every rule feature is computed by date here. Two parts of the view are still built per date
and stacked in the same expression, because the functions that define them take one date:
survey scores (``nps``, ``csat``, ``last_nps``: :func:`segmentum.satisfaction.compute.per_customer`)
and the account view of B2B segments (:func:`segmentum.segments.view.account_view`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.ingest.returns import cancelled_invoices, links
from segmentum.segments import rules as R
from segmentum.segments.store import Segment, Segments, _col, _levels, _order, _parse
from segmentum.segments.view import CLASS_COLUMNS, PROFILE_COLUMNS, account_view, age_band
from segmentum.warehouse import Warehouse

KEYS = ["customer_id", "as_of"]


def dates_table(dates: list[_dt.date]) -> ir.Table:
    """The snapshot dates with their midnight as a timestamp (the window cutoff)."""
    return ibis.memtable(
        pa.table(
            {
                "as_of": pa.array(dates, pa.date32()),
                "cutoff": pa.array(
                    [_dt.datetime(d.year, d.month, d.day) for d in dates], pa.timestamp("us")
                ),
            }
        )
    )


def _left(view: ir.Table, part: ir.Table, keys: list[str]) -> ir.Table:
    return view.left_join(part, keys).drop(*[f"{k}_right" for k in keys])


def view_by_date(
    wh: Warehouse,
    dates: list[_dt.date],
    summary: ir.Table,
    columns: set[str] | None = None,
) -> ir.Table:
    """:func:`segmentum.segments.view.customer_view` (no CLV) for every date, with ``as_of``.

    ``summary`` is the backfill's point-in-time summary (one row per customer and date).
    ``columns``: only these of the view's columns are needed (the rest may be left out, and
    the parts of the view that hold none of them are not joined); with them, the parts are
    stored as they are joined (one statement joining them all for 8.7 million customers x 4
    dates ran out of memory in DuckDB at 4 GB, where each join alone spills and passes).
    """
    stage = columns is not None

    def need(*names: str) -> bool:
        return columns is None or any(n in columns for n in names)

    staged: list[ir.Table] = []

    def store(t: ir.Table) -> ir.Table:
        if not stage:
            return t
        t = wh.materialize(t, "histview")
        staged.append(t)
        return t

    snaps = dates_table(dates).select("as_of")
    ids = summary.select(*KEYS)
    profile = wh.table("customers") if wh.has("customers") else None
    if profile is not None:
        ids = ids.union(profile.select("customer_id").cross_join(snaps), distinct=True)
    view = _left(ids, summary, KEYS)
    view = store(
        view.mutate(frequency=view.frequency.fill_null(0), monetary=view.monetary.fill_null(0.0))
    )
    if wh.has("customer_classes") and need(*CLASS_COLUMNS):
        c = wh.table("customer_classes")
        c = c.filter(c.as_of.isin([ibis.literal(d, "date") for d in dates]))
        c = c.select(
            "customer_id",
            as_of=c.as_of.cast("date"),
            **{k: c[k] for k in CLASS_COLUMNS if k in c.columns and need(k)},
        )
        view = store(_left(view, c, KEYS))
    if wh.has("responses") and need("nps", "csat", "last_nps"):
        # Survey scores are defined for one date (a window of answers before it): stacked.
        from segmentum.satisfaction.compute import per_customer

        sat = ibis.union(
            *[
                per_customer(wh, d).select(
                    "customer_id", "nps", "csat", "last_nps", as_of=ibis.literal(d, "date")
                )
                for d in dates
            ]
        )
        view = store(_left(view, sat, KEYS))
    wanted = {"age", "age_band", "has_email", "has_phone", "in_profile", *PROFILE_COLUMNS}
    if profile is not None and need(*wanted):
        # The profile joins by customer alone; only the age depends on the date.
        p = profile
        prof = p.select(
            "customer_id",
            _born=p.birth_date,
            _age=p.age,
            has_email=p.email.notnull() & (p.email.strip() != ""),
            has_phone=p.phone.notnull() & (p.phone.strip() != ""),
            in_profile=ibis.literal(True),
            **{c: p[c] for c in PROFILE_COLUMNS if c in p.columns and need(c)},
        )
        view = _left(view, prof, ["customer_id"])
        end, born = view.as_of, view._born
        years = (end.year() - born.year()) - ibis.ifelse(
            (end.month() < born.month())
            | ((end.month() == born.month()) & (end.day() < born.day())),
            1,
            0,
        )
        age = ibis.coalesce(years.cast("int64"), view._age.cast("int64"))
        view = view.mutate(age=age, in_profile=view.in_profile.fill_null(False))
        view = view.mutate(age_band=age_band(view.age)).drop("_born", "_age")
    if columns is not None:
        view = view.select(*KEYS, *[c for c in view.columns if c in columns and c not in KEYS])
    if stage:
        view = wh.materialize(view, "histview")
        for t in staged:
            wh.drop(t.get_name())
    return view


def members_by_date(
    store: Segments,
    segs: Mapping[str, Segment],
    dates: list[_dt.date],
    summary: ir.Table,
    memo: dict[Any, Any] | None = None,
) -> ir.Table:
    """``(segment, customer_id, as_of)`` of every customer segment in ``segs`` at every date.

    ``segs`` must already be valid at these dates (checked by the caller on one date's view).
    ``memo``: what holds for every batch of a backfill's dates (whether each invoice's lines
    are on one day, each window's lines added up per customer and day: passes over every
    line), kept from one batch to the next; the caller drops its tables
    (:func:`drop_memo`).
    """
    wh = store.wh
    order = _order(segs)
    last = dates[-1]  # only for the signature of _compile: rules do not read the date
    accounts = [n for n in order if segs[n].level == "account"]
    customers = [n for n in order if segs[n].level == "customer"]
    all_calls: dict[str, dict[R.Call, str]] = {}
    for n in customers:
        for c in R.calls(_parse(segs[n], store.limits)):
            all_calls.setdefault(R.call_table(c), {})[c] = segs[n].rule
    # Only the columns the rules read travel on (the view has dozens, one row per date).
    used = {"company_id"} if accounts else set()
    for n in customers:
        tree = _parse(segs[n], store.limits)
        used |= R.names(tree)
        if any(isinstance(x, R.Call) and x.func == "has_tag" for x in R.walk(tree)):
            used.add("tags")
    # The view and each table's windows are stored before they are joined: one statement
    # holding every join of the view and both window scans ran out of memory at 8.7 million
    # customers x 4 dates (DuckDB, memory_limit 4GB), where each part alone spills and passes.
    staged: list[str] = []
    acc_flags: ir.Table | None = None
    if accounts:
        # The account view reads every column of the view, once per date.
        view = wh.materialize(view_by_date(wh, dates, summary), "histview")
        staged.append(view.get_name())
        acc = ibis.union(
            *[
                account_view(
                    view.filter(view.as_of == ibis.literal(d, "date")).drop("as_of")
                ).mutate(as_of=ibis.literal(d, "date"))
                for d in dates
            ]
        )
        for level in _levels(segs, accounts):
            acc = acc.mutate(
                **{_col(n): store._compile(segs[n], acc, last, {}).fill_null(False) for n in level}
            )
            acc = wh.materialize(acc, "segacc")
        acc_flags = acc.select("company_id", "as_of", *[_col(n) for n in accounts])
        base = view.select(*KEYS, *[c for c in view.columns if c in used and c not in KEYS])
    else:
        base = view_by_date(wh, dates, summary, columns=used)  # stored, with these columns
        staged.append(base.get_name())
    snaps = dates_table(dates)
    for tname, cs in all_calls.items():
        gone, one_day, days = None, None, None
        table, calls_ = wh.table(tname), list(dict.fromkeys(cs))
        if tname == "transactions":
            gone = cancelled_invoices(links(wh))
            if memo is not None and any(c.func != "sum" for c in cs):
                if "one_day_invoices" not in memo:
                    memo["one_day_invoices"] = R.invoices_within_a_day(table)
                one_day = memo["one_day_invoices"]
        if memo is not None and R.by_whole_days(calls_, table, tname, one_day):
            # Each line's day, added up once for every batch of dates (not once a batch).
            key = ("window_days", tname, tuple(calls_))
            if key not in memo:
                days = R.window_days(calls_, table, tname, cs, gone)
                memo[key] = wh.materialize(days.order_by("day"), "segdays")
            days = memo[key]
        w = R.window_aggregates(
            cs, table, tname, last, cs, gone, dates=snaps, one_day_invoices=one_day, days=days
        )
        w = wh.materialize(w, "segwin")
        staged.append(w.get_name())
        base = _left(base, w, KEYS)
        base = base.mutate(
            **{k: base[k].fill_null(0.0) for k in dict.fromkeys(map(R.call_key, cs))}
        )
    if acc_flags is not None and "company_id" in base.columns:
        base = _left(base, acc_flags, ["company_id", "as_of"])
        base = base.mutate(**{_col(n): base[_col(n)].fill_null(False) for n in accounts})
    # Level by level on the same rows (no join per level): a reference reads the flag column
    # of the same customer and date; one table is computed in the end.
    flags = base
    for level in _levels(segs, customers):
        flags = flags.mutate(
            **{_col(n): store._compile(segs[n], flags, last, {}).fill_null(False) for n in level}
        )
    flags = wh.materialize(flags.select(*KEYS, *[_col(n) for n in customers]), "segflags")
    for name in staged:
        wh.drop(name)
    parts = [
        flags.filter(flags[_col(n)]).select(
            segment=ibis.literal(n), customer_id=flags.customer_id, as_of=flags.as_of
        )
        for n in customers
    ]
    if not parts:
        return flags.limit(0).select(
            segment=ibis.literal(""), customer_id="customer_id", as_of="as_of"
        )
    return ibis.union(*parts) if len(parts) > 1 else parts[0]


def drop_memo(wh: Warehouse, memo: Mapping[Any, Any]) -> None:
    """Drop the tables :func:`members_by_date` kept in ``memo`` for a backfill's batches."""
    for value in memo.values():
        if isinstance(value, ir.Table):
            wh.drop(value.get_name())
