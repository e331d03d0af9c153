"""Customer lifetime value: fit BG/NBD and Gamma-Gamma on what the engine hands back, score in it.

Only the compressed summary comes out of the warehouse: the unique (x, t_x, T) rows with their
counts, and the repeat buyers' (x, mean spend). Predictions are computed once per unique
(x, t_x, T) row, uploaded as a small table and joined back in the engine, so scoring a million
customers on Spark never collects them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from segmentum.errors import ModelError
from segmentum.models.btyd import BetaGeo, GammaGamma, _pairs
from segmentum.warehouse import Warehouse

WEEKS_PER_MONTH = 365.25 / 12 / 7


@dataclass
class ClvModels:
    """The fitted models and what they were fitted on."""

    purchases: BetaGeo
    spend: GammaGamma
    customers: int
    repeat_buyers: int
    notes: list[str] = field(default_factory=list)


def fit_models(features: ir.Table, *, penalizer: float = 0.0) -> ClvModels:
    """Fit BG/NBD on the unique (x, t_x, T) rows and Gamma-Gamma on the repeat buyers."""
    f = features.filter(features["T"] > 0)
    grouped = f.group_by(["x", "t_x", "T"]).aggregate(n=f.count()).to_pyarrow()
    x = grouped["x"].to_numpy()
    bg = BetaGeo(penalizer=penalizer).fit(
        x, grouped["t_x"].to_numpy(), grouped["T"].to_numpy(), weights=grouped["n"].to_numpy()
    )
    rep = f.filter((f.x > 0) & (f.monetary_value > 0))
    spend = rep.group_by(["x", "monetary_value"]).aggregate(n=rep.count()).to_pyarrow()
    gg = GammaGamma(penalizer=penalizer).fit(
        spend["x"].to_numpy(), spend["monetary_value"].to_numpy(), weights=spend["n"].to_numpy()
    )
    notes = []
    if abs(gg.frequency_spend_correlation_) > 0.3:
        notes.append(
            "spend per purchase is correlated with frequency "
            f"(r = {gg.frequency_spend_correlation_:.2f}); Gamma-Gamma assumes independence, "
            "so spend forecasts for frequent buyers are less reliable"
        )
    n_total = int(np.sum(grouped["n"].to_numpy()))
    return ClvModels(bg, gg, n_total, int(np.sum(spend["n"].to_numpy())), notes)


def _unique_predictions(
    models: ClvModels, features: ir.Table, horizon_months: int, monthly_discount: float, weeks: bool
) -> pa.Table:
    """Per unique (x, t_x, T): P(alive), expected purchases, discounted purchases, next gap."""
    f = features
    u = f.select("x", "t_x", "T").distinct().to_pyarrow()
    x, tx, t = (u[c].to_numpy().astype(float) for c in ("x", "t_x", "T"))
    unit = WEEKS_PER_MONTH if weeks else WEEKS_PER_MONTH * 7
    bg = models.purchases
    # The hypergeometric part of E[X(t)] depends on (x, T) only: far fewer distinct pairs.
    ux, ut, inverse = _pairs(x, t)
    p_alive = bg.probability_alive(x, tx, t)
    cumulative = [np.zeros(len(x))]
    for k in range(1, horizon_months + 1):
        cumulative.append(bg.expected_if_alive(k * unit, ux, ut)[inverse] * p_alive)
    steps = np.diff(np.vstack(cumulative), axis=0)
    discount = (1 + monthly_discount) ** -np.arange(1, horizon_months + 1)
    discounted = (steps * discount[:, None]).sum(axis=0)
    r, alpha = bg.params_["r"], bg.params_["alpha"]
    # Typical time to the next purchase if still active: 1 / posterior mean purchase rate.
    next_gap = (alpha + t) / (r + x)
    days_per_unit = 7.0 if weeks else 1.0
    return pa.table(
        {
            "x": x,
            "t_x": tx,
            "T": t,
            "p_alive": p_alive,
            "expected_purchases": cumulative[-1],
            "_discounted_purchases": discounted,
            "_next_gap_days": next_gap * days_per_unit,
        }
    )


def score(
    wh: Warehouse,
    features: ir.Table,
    models: ClvModels,
    as_of: _dt.date,
    *,
    horizon_months: int = 12,
    monthly_discount: float = 0.01,
    min_weeks: float = 4.0,
    weeks: bool = True,
) -> ir.Table:
    """``customer_clv`` rows: P(alive), churn probability, expected purchases and spend, CLV.

    CLV is the expected spend per purchase times the expected purchases in each of the next
    ``horizon_months`` months, discounted at ``monthly_discount`` per month. Customers observed
    for less than ``min_weeks`` are labelled ``too_new`` and get no forecast: the models have
    nothing to judge them on yet.
    """
    if horizon_months < 1:
        raise ModelError(f"horizon_months={horizon_months} is not allowed", "use 1 or more months")
    preds = wh.from_arrow(
        _unique_predictions(models, features, horizon_months, monthly_discount, weeks), "clv"
    )
    p, q, g = (models.spend.params_[k] for k in ("p", "q", "gamma"))
    f = features.select("customer_id", "x", "t_x", "T", "monetary_value")
    j = f.join(preds, ["x", "t_x", "T"])
    m = j.monetary_value.fill_null(0.0)
    spend = (p * (g + j.x * m)) / (p * j.x + q - 1)
    t_weeks = j["T"] if weeks else j["T"] / 7.0
    too_new = t_weeks < min_weeks
    none = ibis.null("float64")
    next_date = ibis.literal(as_of, "date") + j._next_gap_days.round().cast("int64").as_interval(
        "D"
    )
    return j.select(
        "customer_id",
        clv_status=ibis.ifelse(too_new, "too_new", "scored"),
        p_alive=ibis.ifelse(too_new, none, j.p_alive),
        churn_probability=ibis.ifelse(too_new, none, 1 - j.p_alive),
        expected_purchases=ibis.ifelse(too_new, none, j.expected_purchases),
        expected_spend=ibis.ifelse(too_new, none, spend),
        clv=ibis.ifelse(too_new, none, spend * j._discounted_purchases),
        expected_next_purchase=ibis.ifelse(too_new, ibis.null("date"), next_date),
        horizon_months=ibis.literal(horizon_months, "int64"),
        as_of=ibis.literal(as_of, "date"),
    )
