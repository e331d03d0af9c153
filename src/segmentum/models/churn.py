"""A supervised churn model, evaluated on a time split and set beside BG/NBD.

Churn here is concrete: *no purchase in the next ``horizon_days``*. The model learns from the
features at one date labelled by what happened after it, and is judged on a later date it never
saw (features at ``train_as_of + horizon``, labels from the horizon after that). BG/NBD answers
the same question in closed form: P(no purchase in t) = 1 - P(alive) + P(alive) (a+T/(a+T+t))^(r+x).
Only per-customer feature rows leave the engine (summaries, not invoice lines).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score

from segmentum.errors import ModelError
from segmentum.features.customer import customer_features, net_links, purchase_days_before
from segmentum.models.btyd import BetaGeo

FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_order_value",
    "items_per_order",
    "interpurchase_mean",
    "interpurchase_std",
    "return_rate",
    "promo_share",
    "distinct_products",
    "spend_last_90",
    "spend_prev_90",
    "trend",
    "x",
    "t_x",
    "T",
)
# Added by evaluate(responses=...): how the customer answered surveys before the date.
SATISFACTION_FEATURES = ("last_nps", "had_response")


@dataclass
class ChurnEvaluation:
    """Scores of both models on the later (unseen) date."""

    train_as_of: _dt.date
    test_as_of: _dt.date
    horizon_days: int
    customers: int
    churn_rate: float
    metrics: pd.DataFrame  # AUC and Brier score by model
    calibration: pd.DataFrame  # mean predicted vs observed churn by decile of prediction
    model: HistGradientBoostingClassifier


def labelled(
    transactions: ir.Table,
    as_of: _dt.date,
    horizon_days: int,
    weeks: bool = True,
    links: ir.Table | None = None,
    responses: ir.Table | None = None,
) -> pd.DataFrame:
    """Features at ``as_of`` with ``churned`` = no purchase in the following ``horizon_days``.

    A purchase is a net purchase day, as in the features: an order cancelled in the horizon
    does not make its customer a buyer. ``links``: the stored ``return_links`` (by default
    linked here).
    """
    links = net_links(transactions, links)
    feats = customer_features(transactions, as_of, weeks=weeks, links=links)
    days = purchase_days_before(transactions, as_of + _dt.timedelta(days=horizon_days), links)
    later = days.filter(days.day >= ibis.literal(as_of, "date"))
    buyers = later.select("customer_id").distinct().mutate(_bought=ibis.literal(1))
    j = feats.left_join(buyers, "customer_id").drop("customer_id_right")
    if responses is not None:
        from segmentum.satisfaction.compute import churn_features

        sat = churn_features(responses, as_of)
        j = j.left_join(sat, "customer_id").drop("customer_id_right")
        j = j.mutate(had_response=j.had_response.fill_null(0))
    df: pd.DataFrame = (
        j.mutate(churned=(j._bought.isnull()).cast("int64")).drop("_bought").to_pandas()
    )
    return df


def _matrix(df: pd.DataFrame, extra: tuple[str, ...] = ()) -> np.ndarray:
    return df[[*FEATURES, *extra]].astype(float).to_numpy()


def bgnbd_no_purchase(model: BetaGeo, df: pd.DataFrame, horizon_weeks: float) -> np.ndarray:
    """P(no purchase in the next ``horizon_weeks`` | x, t_x, T) under BG/NBD."""
    r, alpha = model.params_["r"], model.params_["alpha"]
    x, tx, t = (df[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
    alive = model.probability_alive(x, tx, t)
    quiet_if_alive = np.exp((r + x) * np.log((alpha + t) / (alpha + t + horizon_weeks)))
    return np.asarray(1 - alive + alive * quiet_if_alive)


def evaluate(
    transactions: ir.Table,
    train_as_of: _dt.date,
    horizon_days: int = 90,
    *,
    random_state: int = 0,
    responses: ir.Table | None = None,
) -> ChurnEvaluation:
    """Train at ``train_as_of``, test at ``train_as_of + horizon_days``; compare with BG/NBD.

    ``responses``: the survey answers; a second gradient-boosting model then learns from the
    same features plus the customer's last NPS and whether they answered
    (``SATISFACTION_FEATURES``), and both are scored on the same test date, so the change in AUC
    is what satisfaction adds on this data.
    """
    if horizon_days < 7:
        raise ModelError(
            f"horizon_days={horizon_days} is too short", "use 7 days or more (90 is usual)"
        )
    test_as_of = train_as_of + _dt.timedelta(days=horizon_days)
    last = transactions.timestamp.max().to_pyarrow().as_py()
    if last is None or (last.date() - test_as_of).days < horizon_days - 1:
        latest = (last.date() if last else test_as_of) - _dt.timedelta(days=2 * horizon_days - 1)
        raise ModelError(
            f"not enough history after {test_as_of} to label a {horizon_days}-day horizon",
            f"choose a train date on or before {latest}",
        )
    train = labelled(transactions, train_as_of, horizon_days, responses=responses)
    test = labelled(transactions, test_as_of, horizon_days, responses=responses)
    if train.churned.nunique() < 2:
        raise ModelError(
            "every customer in the training date has the same label",
            "choose another date or horizon",
        )
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.08, random_state=random_state
    )
    model.fit(_matrix(train), train.churned.to_numpy())
    p_gb = model.predict_proba(_matrix(test))[:, 1]

    fit = test[test["T"] > 0]
    bg = BetaGeo().fit(fit.x, fit.t_x, fit["T"])
    p_bg = bgnbd_no_purchase(bg, test.assign(T=test["T"].clip(lower=1e-6)), horizon_days / 7.0)
    y = test.churned.to_numpy()
    scored = [("gradient boosting", p_gb), ("BG/NBD", p_bg)]
    if responses is not None:
        extra = HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.08, random_state=random_state
        )
        extra.fit(_matrix(train, SATISFACTION_FEATURES), train.churned.to_numpy())
        p_sat = extra.predict_proba(_matrix(test, SATISFACTION_FEATURES))[:, 1]
        scored.insert(1, ("gradient boosting + satisfaction", p_sat))
    metrics = pd.DataFrame(
        {
            "AUC": [roc_auc_score(y, p) for _, p in scored],
            "Brier score": [brier_score_loss(y, p) for _, p in scored],
            "mean predicted churn": [float(p.mean()) for _, p in scored],
        },
        index=pd.Index([name for name, _ in scored], name="model"),
    )
    rows = []
    for name, p in scored:
        bins = pd.qcut(p, 10, labels=False, duplicates="drop")
        cal = (
            pd.DataFrame({"bin": bins, "p": p, "y": y})
            .groupby("bin")
            .agg(predicted=("p", "mean"), observed=("y", "mean"), customers=("y", "size"))
        )
        rows.append(cal.reset_index().assign(model=name))
    calibration = pd.concat(rows, ignore_index=True)[
        ["model", "bin", "customers", "predicted", "observed"]
    ]
    return ChurnEvaluation(
        train_as_of,
        test_as_of,
        horizon_days,
        len(test),
        float(y.mean()),
        metrics,
        calibration,
        model,
    )
