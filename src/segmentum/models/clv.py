"""Customer lifetime value: fit BG/NBD and Gamma-Gamma on what the engine hands back, score in it.

Only the compressed summary comes out of the warehouse: the unique (x, t_x, T) rows with their
counts, and the repeat buyers' (x, mean spend). The part of the forecast that needs the
hypergeometric function depends on (x, T) only: it is computed once per distinct pair, uploaded
as a small table and joined back in the engine, where P(alive) and spend are closed forms, so
scoring a million customers on Spark never collects them.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from segmentum.errors import ModelError
from segmentum.models.btyd import WEEKS_PER_MONTH, BetaGeo, GammaGamma, unique_rows
from segmentum.warehouse import Warehouse


@dataclass
class ClvModels:
    """The fitted models and what they were fitted on."""

    purchases: BetaGeo
    spend: GammaGamma
    customers: int
    repeat_buyers: int
    notes: list[str] = field(default_factory=list)
    #: The distinct (x, t_x, T) rows of the features fitted on, and those features: scoring
    #: the same features reuses the rows instead of asking the engine again.
    summary: pa.Table | None = None
    fitted_on: ir.Table | None = None


def fit_models(features: ir.Table, *, penalizer: float = 0.0) -> ClvModels:
    """Fit BG/NBD on the unique (x, t_x, T) rows and Gamma-Gamma on the repeat buyers."""
    f = features
    summary = f.group_by(["x", "t_x", "T"]).aggregate(n=f.count()).to_pyarrow()
    x, tx, t, n = (summary[c].to_numpy() for c in ("x", "t_x", "T", "n"))
    seen = t > 0  # customers observed for no time yet say nothing about rates
    bg = BetaGeo(penalizer=penalizer).fit(x[seen], tx[seen], t[seen], weights=n[seen])
    f = f.filter(f["T"] > 0)
    rep = f.filter((f.x > 0) & (f.monetary_value > 0))
    spend = rep.group_by(["x", "monetary_value"]).aggregate(n=rep.count()).to_pyarrow()
    gg = GammaGamma(penalizer=penalizer).fit(
        spend["x"].to_numpy(), spend["monetary_value"].to_numpy(), weights=spend["n"].to_numpy()
    )
    notes = []
    a, b = bg.params_["a"], bg.params_["b"]
    if a + b > 1e4 or {"a", "b"} & set(bg.at_bound_):
        # Beta(a, b) with a + b this large is nearly a point mass: the likelihood keeps rising
        # slowly as a and b grow together, so their values mean little, only their ratio does.
        spread = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        notes.append(
            "BG/NBD: the chance of dropping out after a purchase hardly varies between "
            f"customers (a = {a:.3g}, b = {b:.3g}: {a / (a + b):.1%} for everyone, spread "
            f"{spread:.2%}); a and b are not identified separately, their ratio is"
        )
    if abs(gg.frequency_spend_correlation_) > 0.3:
        notes.append(
            "spend per purchase is correlated with frequency "
            f"(r = {gg.frequency_spend_correlation_:.2f}); Gamma-Gamma assumes independence, "
            "so spend forecasts for frequent buyers are less reliable"
        )
    n_total = int(np.sum(n[seen]))
    repeat = int(np.sum(spend["n"].to_numpy()))
    return ClvModels(bg, gg, n_total, repeat, notes, summary, features)


def _pair_predictions(
    models: ClvModels, features: ir.Table, horizon_months: int, monthly_discount: float, weeks: bool
) -> pa.Table:
    """Per distinct (x, T): expected purchases over the horizon and their discounted sum,
    both for a customer still alive (the hypergeometric part of eq. 10, which does not
    involve t_x). P(alive), the other factor, is a closed form computed in the engine."""
    u = models.summary
    if u is None or models.fitted_on is None or not features.equals(models.fitted_on):
        u = features.select("x", "T").distinct().to_pyarrow()
    (x, t), _, _ = unique_rows(u["x"].to_numpy(), u["T"].to_numpy())
    month = WEEKS_PER_MONTH if weeks else WEEKS_PER_MONTH * 7
    expected, discounted = models.purchases.purchases_if_alive(
        x, t, horizon_months, monthly_discount, month
    )
    return pa.table(
        {"x": x, "T": t, "_expected_if_alive": expected, "_discounted_if_alive": discounted}
    )


def _p_alive(bg: BetaGeo, x: ir.NumericValue, tx: ir.NumericValue, t: ir.NumericValue) -> Any:
    """BG/NBD P(alive | x, t_x, T) as an engine expression (eq. 13 of the paper), in logs so
    that large x cannot overflow."""
    r, alpha, a, b = (bg.params_[k] for k in bg.param_names)
    log_ratio = (
        math.log(a)
        - (ibis.greatest(x + (b - 1), 1e-300)).ln()
        + (x + r) * ((t + alpha).ln() - (tx + alpha).ln())
    )
    odds = ibis.least(log_ratio, 700.0).exp()
    return ibis.ifelse(x > 0, 1.0 / (1.0 + odds), 1.0)


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
        _pair_predictions(models, features, horizon_months, monthly_discount, weeks), "clv"
    )
    p, q, g = (models.spend.params_[k] for k in ("p", "q", "gamma"))
    f = features.select("customer_id", "x", "t_x", "T", "monetary_value")
    # The distinct (x, T) pairs are few (tens of thousands for a million customers): a small
    # table to upload and a small side to build the join on.
    j = f.join(preds, ["x", "T"])
    j = j.mutate(_alive=_p_alive(models.purchases, j.x, j.t_x, j["T"]))
    alive = j._alive
    m = j.monetary_value.fill_null(0.0)
    spend = (p * (g + j.x * m)) / (p * j.x + q - 1)
    t_weeks = j["T"] if weeks else j["T"] / 7.0
    too_new = t_weeks < min_weeks
    none = ibis.null("float64")
    # Typical time to the next purchase if still active: 1 / posterior mean purchase rate.
    r, alpha = models.purchases.params_["r"], models.purchases.params_["alpha"]
    gap_days = (j["T"] + alpha) / (j.x + r) * (7.0 if weeks else 1.0)
    next_date = ibis.literal(as_of, "date") + gap_days.round().cast("int64").as_interval("D")
    return j.select(
        "customer_id",
        clv_status=ibis.ifelse(too_new, "too_new", "scored"),
        p_alive=ibis.ifelse(too_new, none, alive),
        churn_probability=ibis.ifelse(too_new, none, 1 - alive),
        expected_purchases=ibis.ifelse(too_new, none, alive * j._expected_if_alive),
        expected_spend=ibis.ifelse(too_new, none, spend),
        clv=ibis.ifelse(too_new, none, spend * alive * j._discounted_if_alive),
        expected_next_purchase=ibis.ifelse(too_new, ibis.null("date"), next_date),
        horizon_months=ibis.literal(horizon_months, "int64"),
        as_of=ibis.literal(as_of, "date"),
    )
