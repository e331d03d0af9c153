"""Cohorts and forecasts: retention and revenue curves, and where the segment mix is heading.

``cohorts`` groups customers by the month of their first purchase (or by the first segment
they were seen in) and follows, month by month, the share still buying and the revenue per
customer, computed in the engine from the net purchase days (cancelled orders are not
purchases, returns count against the day of the purchase they undo). Every month from a
cohort's first to the newest month with purchases has a row (0 when nobody bought); months not
reached yet have none.

``forecast`` projects segment sizes with a Markov chain: the transition rates between
consecutive snapshots (pooled over the history, with customers who are not yet customers or are
gone as states of their own, and new customers arriving at the average observed rate) are
applied to the latest mix. Its error is measured by backtesting: forecasting each past snapshot
from the ones before it and comparing with what was observed.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np

from segmentum.errors import InputError
from segmentum.features import purchase_days
from segmentum.history.migration import labels_at
from segmentum.history.snapshots import snapshot_dates
from segmentum.warehouse import Warehouse


@dataclass
class Cohorts:
    by: str
    rows: list[dict[str, Any]]  # cohort, period, customers, active, retention, revenue, ...

    def matrix(self, value: str = "retention") -> dict[str, dict[int, float]]:
        """cohort -> period -> value; a period not reached yet is absent (a period reached
        with no buyer is 0)."""
        out: dict[str, dict[int, float]] = {}
        for r in self.rows:
            out.setdefault(str(r["cohort"]), {})[int(r["period"])] = float(r[value] or 0.0)
        return out

    def sizes(self) -> dict[str, int]:
        """cohort -> its customers."""
        return {str(r["cohort"]): int(r["customers"]) for r in self.rows}


def cohorts(wh: Warehouse, by: str = "month", classification: str = "value_tier") -> Cohorts:
    """Retention and revenue by months since the first purchase.

    ``by="month"``: cohort = month of first purchase. ``by="segment"``: cohort = the value of
    ``classification`` in the first snapshot the customer appears in.
    """
    # Net purchase days, as the features count them: an order cancelled in full is no
    # purchase (a customer with nothing else is in no cohort), returns net against the day.
    days = purchase_days(wh)
    month = ibis.date(days.day.year(), days.day.month(), 1)
    lines = days.select("customer_id", month=month, amount=days.value)
    active = lines.group_by(["customer_id", "month"]).aggregate(revenue=lines.amount.sum())
    first = active.group_by("customer_id").aggregate(first_month=active.month.min())
    j = active.join(first, "customer_id")
    j = j.mutate(
        period=(
            (j.month.year() - j.first_month.year()) * 12 + (j.month.month() - j.first_month.month())
        ).cast("int64")
    )
    if by == "month":
        keyed = j.mutate(cohort=j.first_month.cast("string"))
        sizes = first.group_by(cohort=first.first_month.cast("string")).aggregate(
            size=first.count()
        )
        starts = first.group_by(cohort=first.first_month.cast("string")).aggregate(
            start=first.first_month.min()
        )
    elif by == "segment":
        if not wh.has("customer_classes"):
            raise InputError("no snapshots yet", "run the pipeline or segmentum history backfill")
        c = wh.table("customer_classes")
        if classification not in c.columns:
            raise InputError(f"unknown classification {classification!r}")
        w = ibis.window(group_by=c.customer_id, order_by=c.as_of)
        ranked = c.mutate(_rk=ibis.row_number().over(w))
        firstseg = ranked.filter(ranked._rk == 0).select(
            "customer_id", cohort=ranked[classification].cast("string").fill_null("(none)")
        )
        keyed = j.join(firstseg, "customer_id")
        sizes = firstseg.group_by("cohort").aggregate(size=firstseg.count())
        buyers = firstseg.join(first, "customer_id")
        starts = buyers.group_by("cohort").aggregate(start=buyers.first_month.min())
    else:
        raise InputError(f"unknown cohort key {by!r}", "use month or segment")
    g = keyed.group_by(["cohort", "period"]).aggregate(
        active=keyed.count(), revenue=keyed.revenue.sum()
    )
    g = g.join(sizes, "cohort")
    g = g.select(
        "cohort",
        "period",
        customers="size",
        active="active",
        retention=g.active / g.size,
        revenue="revenue",
        revenue_per_customer=g.revenue / g.size,
    )
    rows = g.order_by(["cohort", "period"]).to_pyarrow().to_pylist()
    last = active.month.max().to_pyarrow().as_py()
    begun = {r["cohort"]: r["start"] for r in starts.to_pyarrow().to_pylist()}
    return Cohorts(by, _with_empty_periods(rows, begun, last))


def _with_empty_periods(
    rows: list[dict[str, Any]], starts: dict[str, _dt.date], last: _dt.date | None
) -> list[dict[str, Any]]:
    """``rows`` with a row of zeros for every period a cohort has been observed in (from its
    first month to the newest month with purchases) and had no buyer: a month nobody bought
    in is 0 %, not missing, and only the months not reached yet are absent."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        found.setdefault(str(r["cohort"]), {})[int(r["period"])] = r
    out = []
    for cohort, periods in found.items():
        size = next(iter(periods.values()))["customers"]
        start = starts.get(cohort)
        reached = max(periods)
        if start is not None and last is not None:
            reached = max(reached, (last.year - start.year) * 12 + last.month - start.month)
        for p in range(reached + 1):
            out.append(
                periods.get(p)
                or {
                    "cohort": cohort,
                    "period": p,
                    "customers": size,
                    "active": 0,
                    "retention": 0.0,
                    "revenue": 0.0,
                    "revenue_per_customer": 0.0,
                }
            )
    return out


@dataclass
class Forecast:
    classification: str
    states: list[str]
    dates: list[_dt.date]
    observed: list[dict[str, int]]  # sizes at each snapshot
    transition: list[list[float]]  # pooled P[from][to], states + gone
    projected: list[dict[str, float]]  # sizes for the next periods
    inflow: dict[str, float]  # new customers per period, by the state they enter
    backtest_mape: float | None  # mean absolute percentage error of one-step forecasts
    baseline_mape: float | None  # the same for "no change" (next period = this period)
    backtest: list[dict[str, Any]] = field(default_factory=list)
    freq: str = "month"  # the step of the chain: one snapshot a month, a week, or every one

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["dates"] = [x.isoformat() for x in self.dates]
        return d


GONE = "(gone)"


def _pairs(wh: Warehouse, classification: str, dates: list[_dt.date]) -> list[ir.Table]:
    return [labels_at(wh, classification, d) for d in dates]


def _transition_counts(
    a: ir.Table, b: ir.Table, states: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Counts from state i (at a) to j (at b, or gone); and new arrivals by state at b."""
    j = a.rename(s_from="state").outer_join(b.rename(s_to="state").view(), "customer_id")
    g = j.group_by(["s_from", "s_to"]).aggregate(n=j.count()).to_pyarrow().to_pylist()
    idx = {s: i for i, s in enumerate(states)}
    k = len(states)
    counts = np.zeros((k, k + 1))
    arrivals = np.zeros(k)
    for r in g:
        f, t, n = r["s_from"], r["s_to"], int(r["n"])
        if f is None and t is not None:
            arrivals[idx[t]] += n
        elif f is not None:
            counts[idx[f], idx[t] if t is not None else k] += n
    return counts, arrivals


FREQS = ("month", "week", "all")


def grid(dates: list[_dt.date], freq: str) -> list[_dt.date]:
    """One snapshot a period: the first date of each calendar month (``month``) or ISO week
    (``week``); ``all``: every date. Daily runs between backfilled month starts would otherwise
    make a chain whose steps are a month here and a day there.

    >>> import datetime as dt
    >>> days = [dt.date(2025, 11, 1)] + [dt.date(2025, 12, d) for d in (1, 2, 3)]
    >>> [d.isoformat() for d in grid(days, "month")], len(grid(days, "all"))
    (['2025-11-01', '2025-12-01'], 4)
    """
    if freq not in FREQS:
        raise InputError(f"unknown forecast step {freq!r}", f"use one of: {', '.join(FREQS)}")
    if freq == "all":
        return list(dates)
    seen: dict[tuple[int, int], _dt.date] = {}
    for d in sorted(dates):
        key = (d.year, d.month) if freq == "month" else tuple(d.isocalendar())[:2]
        seen.setdefault(key, d)  # type: ignore[arg-type]
    return sorted(seen.values())


# The longest typical step (median days between the grid's snapshots) a period may have: a
# chain on monthly snapshots asked to step by weeks would label each month a week.
MAX_STEP_DAYS = {"week": 10, "month": 45}


def _check_step(dates: list[_dt.date], freq: str) -> None:
    """Raise a user error when the snapshots on the ``freq`` grid are further apart than one
    ``freq``: the projection's steps would be labelled as periods they are not."""
    if freq not in MAX_STEP_DAYS or len(dates) < 2:
        return
    step = int(np.median([(b - a).days for a, b in itertools.pairwise(dates)]))
    if step <= MAX_STEP_DAYS[freq]:
        return
    if freq == "week":
        raise InputError(
            f"the snapshots are {step} days apart: a forecast by week needs a snapshot every week",
            "forecast by month (--freq month), or build weekly snapshots: "
            "segmentum history backfill --freq week",
        )
    raise InputError(
        f"the snapshots are {step} days apart: a forecast by month needs a snapshot every month",
        "build monthly snapshots: segmentum history backfill --freq month; or step from every "
        "snapshot: --freq all",
    )


def forecast(
    wh: Warehouse,
    classification: str = "rfm_segment",
    periods: int = 3,
    min_history: int = 3,
    freq: str = "month",
) -> Forecast:
    """Markov projection of segment sizes, with its one-step backtest error.

    The chain steps from one snapshot to the next on the ``freq`` grid (:func:`grid`): a
    period is a month by default, whatever mix of backfilled and daily snapshots is stored.
    """
    dates = grid(snapshot_dates(wh), freq)
    if len(dates) < 2:
        raise InputError(
            f"a forecast needs snapshots from at least two periods (one {freq} apart)",
            "build past ones: segmentum history backfill"
            + ("; or step from every snapshot: --freq all" if freq != "all" else ""),
        )
    labels = _pairs(wh, classification, dates)
    sizes = []
    for lab in labels:
        rows = lab.group_by("state").aggregate(n=lab.count()).to_pyarrow().to_pylist()
        sizes.append({r["state"]: int(r["n"]) for r in rows})
    # A classification kept only at some snapshots (the discovered clusters are stored by the
    # runs, not backfilled): the chain steps between the dates that have it.
    held = [i for i, d in enumerate(sizes) if d]
    if len(held) < 2:
        raise InputError(
            f"{classification} is stored at {len(held)} of the {len(dates)} snapshots on the "
            f"{freq} grid: a forecast needs it at two or more",
            "forecast a class that the backfill keeps (rfm_segment, value_tier, "
            "lifecycle_stage), or step from every snapshot: --freq all",
        )
    dates = [dates[i] for i in held]
    labels = [labels[i] for i in held]
    sizes = [sizes[i] for i in held]
    _check_step(dates, freq)
    states = sorted({s for d in sizes for s in d})
    k = len(states)
    steps = [_transition_counts(labels[i], labels[i + 1], states) for i in range(len(dates) - 1)]

    def fit(upto: int) -> tuple[np.ndarray, np.ndarray]:
        c = np.sum([s[0] for s in steps[:upto]], axis=0)
        arr = np.sum([s[1] for s in steps[:upto]], axis=0) / max(upto, 1)
        rowsum = c.sum(axis=1, keepdims=True)
        p = np.divide(c, rowsum, out=np.zeros_like(c), where=rowsum > 0)
        return p, arr

    def step(vec: np.ndarray, p: np.ndarray, arr: np.ndarray) -> np.ndarray:
        out: np.ndarray = vec @ p[:, :k] + arr
        return out

    # Backtest: forecast each snapshot from the ones before it (at least min_history of them).
    errors: list[float] = []
    base_errors: list[float] = []
    backtest = []
    for t in range(min_history, len(dates)):
        p, arr = fit(t - 1)
        prev = np.array([sizes[t - 1].get(s, 0) for s in states], float)
        pred = step(prev, p, arr)
        actual = np.array([sizes[t].get(s, 0) for s in states], float)
        mask = actual > 0
        if not mask.any():
            continue
        mape = float(np.mean(np.abs(pred[mask] - actual[mask]) / actual[mask])) * 100
        naive = float(np.mean(np.abs(prev[mask] - actual[mask]) / actual[mask])) * 100
        errors.append(mape)
        base_errors.append(naive)
        backtest.append({"date": dates[t].isoformat(), "mape": mape, "no_change_mape": naive})
    p, arr = fit(len(steps))
    vec = np.array([sizes[-1].get(s, 0) for s in states], float)
    projected = []
    for _ in range(periods):
        vec = step(vec, p, arr)
        projected.append({s: float(v) for s, v in zip(states, vec, strict=True)})
    return Forecast(
        classification,
        states,
        dates,
        sizes,
        p.tolist(),
        projected,
        {s: float(v) for s, v in zip(states, arr, strict=True)},
        float(np.mean(errors)) if errors else None,
        float(np.mean(base_errors)) if base_errors else None,
        backtest,
        freq,
    )
