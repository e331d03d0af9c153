"""Check the purchase model on your own data: fit on a calibration period, predict the holdout.

The standard checks of the customer-base-analysis literature: cumulative repeat purchases week
by week (predicted vs actual) and the conditional expectation of holdout purchases by number
of calibration purchases, each against a naive baseline (every customer keeps buying at their
calibration rate). Only aggregates leave the engine.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from segmentum.errors import InputError
from segmentum.features.customer import btyd_summary, window_lines
from segmentum.models.btyd import BetaGeo


@dataclass
class Validation:
    """The fitted model and the tracking tables."""

    model: BetaGeo
    calibration_end: _dt.date
    holdout_end: _dt.date
    weekly: pd.DataFrame  # week, actual, predicted, naive (cumulative repeat purchases)
    by_frequency: pd.DataFrame  # x, customers, actual, predicted, naive (mean per customer)
    errors: pd.DataFrame  # metric by method

    def to_html(self) -> str:
        """A self-contained page: the two tracking charts (inline SVG) and the tables."""
        charts = [
            _svg_lines("Cumulative repeat purchases in the holdout", self.weekly, "week"),
            _svg_lines(
                "Holdout purchases per customer by calibration purchases", self.by_frequency, "x"
            ),
        ]
        tables = [
            self.errors.to_html(float_format=lambda v: f"{v:,.3f}"),
            self.by_frequency.to_html(index=False, float_format=lambda v: f"{v:,.3f}"),
            self.weekly.to_html(index=False, float_format=lambda v: f"{v:,.1f}"),
        ]
        params = ", ".join(f"{k} = {v:.4g}" for k, v in self.model.params_.items())
        start = self.calibration_end + _dt.timedelta(days=1)
        return (
            "<!doctype html><meta charset='utf-8'><title>segmentum: CLV validation</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:auto}table{border-collapse:collapse}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>"
            "<h1>Purchase model check</h1>"
            f"<p>BG/NBD fitted on data before {start}; "
            f"holdout to {self.holdout_end}. Parameters: {html.escape(params)}.</p>"
            + "".join(charts)
            + "<h2>Errors</h2>"
            + tables[0]
            + "<h2>By number of calibration purchases</h2>"
            + tables[1]
            + "<h2>Week by week</h2>"
            + tables[2]
        )


def _svg_lines(title: str, df: pd.DataFrame, xcol: str, width: int = 900, height: int = 300) -> str:
    series = [("actual", "#222"), ("predicted", "#d62728"), ("naive", "#1f77b4")]
    xs = pd.to_numeric(df[xcol].astype(str).str.rstrip("+")).to_numpy(dtype=float)
    ymax = float(max(df[c].max() for c, _ in series)) or 1.0
    xmin, xmax = float(xs.min()), float(xs.max()) if len(xs) > 1 else float(xs.min()) + 1

    def pt(x: float, y: float) -> str:
        px = 50 + (x - xmin) / ((xmax - xmin) or 1) * (width - 70)
        py = height - 30 - y / ymax * (height - 50)
        return f"{px:.1f},{py:.1f}"

    lines = "".join(
        f"<polyline fill='none' stroke='{color}' stroke-width='2' points='"
        + " ".join(pt(x, y) for x, y in zip(xs, df[col].to_numpy(dtype=float), strict=True))
        + f"'><title>{col}</title></polyline>"
        for col, color in series
    )
    legend = "".join(
        f"<text x='{60 + 110 * i}' y='15' fill='{c}'>{n}</text>" for i, (n, c) in enumerate(series)
    )
    return (
        f"<h2>{html.escape(title)}</h2><svg width='{width}' height='{height}' role='img'>"
        f"{legend}<text x='5' y='{height - 10}'>{xcol}: {xmin:g}..{xmax:g}; "
        f"max {ymax:,.1f}</text>{lines}</svg>"
    )


def validate(
    transactions: ir.Table,
    calibration_end: _dt.date,
    holdout_end: _dt.date | None = None,
) -> Validation:
    """Fit BG/NBD on purchases up to ``calibration_end`` and compare its holdout predictions.

    ``holdout_end`` defaults to the last purchase day. Times are in weeks.
    """
    as_of = calibration_end + _dt.timedelta(days=1)
    last = transactions.timestamp.max().to_pyarrow().as_py()
    if last is None:
        raise InputError("there are no transactions to validate on")
    holdout_end = holdout_end or last.date()
    if holdout_end <= calibration_end:
        raise InputError(
            f"the holdout ends {holdout_end}, not after the calibration end {calibration_end}",
            "choose an earlier --calibration-end so some purchases fall after it",
        )
    summary = btyd_summary(transactions, as_of)
    # A customer whose first purchase is on the calibration end has not been observed yet.
    summary = summary.filter(summary["T"] > 0)
    grouped = summary.group_by(["x", "t_x", "T"]).aggregate(n=summary.count()).to_pyarrow()
    x, tx, t, n = (grouped[c].to_numpy().astype(float) for c in ("x", "t_x", "T", "n"))
    model = BetaGeo().fit(x, tx, t, weights=n)

    # Holdout purchase days of calibration customers, by customer and by week.
    lines = window_lines(transactions, holdout_end + _dt.timedelta(days=1))
    buys = lines.filter(lines.is_purchase & (lines.day >= ibis.literal(as_of, "date")))
    days = buys.select("customer_id", "day").distinct()
    days = days.semi_join(summary, "customer_id")
    start = ibis.literal(as_of, "date")
    per_week = (
        days.mutate(week=(days.day.delta(start, unit="day") / 7).floor().cast("int64") + 1)
        .group_by("week")
        .aggregate(purchases=ibis._.count())
        .to_pandas()
    )
    per_customer = days.group_by("customer_id").aggregate(actual=days.count())
    by_x_actual = (
        summary.left_join(per_customer, "customer_id")
        .group_by("x")
        .aggregate(customers=ibis._.count(), actual=ibis._.actual.fill_null(0).mean())
        .to_pandas()
    )

    horizon = (holdout_end - calibration_end).days / 7.0
    weeks = np.arange(1, int(np.ceil(horizon)) + 1)
    rate = np.where(t > 0, x / np.maximum(t, 1e-9), 0.0)
    spans = [min(float(k), horizon) for k in weeks]
    predicted = [float(np.sum(n * model.expected_purchases(h, x, tx, t))) for h in spans]
    naive = [float(np.sum(n * rate * h)) for h in spans]
    actual = per_week.set_index("week").reindex(weeks, fill_value=0).purchases.cumsum().to_numpy()
    weekly = pd.DataFrame({"week": weeks, "actual": actual, "predicted": predicted, "naive": naive})

    pred_rows = model.expected_purchases(horizon, x, tx, t)
    by_x = pd.DataFrame({"x": x, "n": n, "predicted": pred_rows * n, "naive": rate * horizon * n})
    by_x = by_x.groupby("x").sum()
    by_x = pd.DataFrame({"predicted": by_x.predicted / by_x.n, "naive": by_x.naive / by_x.n})
    table = by_x_actual.set_index("x").join(by_x).reset_index().sort_values("x")
    table["x"] = table.x.astype(int)
    capped = table.assign(x=np.minimum(table.x, 7))
    w = capped.customers
    by_frequency = (
        capped.assign(
            actual=capped.actual * w, predicted=capped.predicted * w, naive=capped.naive * w
        )
        .groupby("x")
        .sum()
        .reset_index()
    )
    for c in ("actual", "predicted", "naive"):
        by_frequency[c] = by_frequency[c] / by_frequency.customers
    by_frequency["x"] = by_frequency.x.map(lambda v: f"{v}+" if v == 7 else str(v))

    total_actual = float(actual[-1])
    errors = pd.DataFrame(
        {
            "total holdout purchases": [total_actual, predicted[-1], naive[-1]],
            "relative error of the total": [
                0.0,
                predicted[-1] / total_actual - 1,
                naive[-1] / total_actual - 1,
            ],
            "mean absolute error, weekly cumulative": [
                0.0,
                float(np.mean(np.abs(np.array(predicted) - actual))),
                float(np.mean(np.abs(np.array(naive) - actual))),
            ],
            "mean absolute error, by calibration purchases": [
                0.0,
                float(np.average(np.abs(table.predicted - table.actual), weights=table.customers)),
                float(np.average(np.abs(table.naive - table.actual), weights=table.customers)),
            ],
        },
        index=pd.Index(["actual", "BG/NBD", "naive (calibration rate)"], name="method"),
    )
    return Validation(model, calibration_end, holdout_end, weekly, by_frequency, errors)
