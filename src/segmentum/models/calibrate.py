"""Churn probabilities calibrated on the data's own history, for when P(alive) is not one.

When a purchase model's fit runs to a bound (everyone gets the same dropout chance, or almost
nobody drops out) its P(alive) is a model artefact, not a probability. Churn is then made
concrete, *no purchase in the next ``horizon_days``*, and learned from what happened before:

1. at ``as_of - 2 horizons`` the model is refitted on the history up to that date and its
   P(no purchase in the horizon) is set against who really bought in the following horizon;
   an isotonic regression maps the model's number to the observed rate;
2. at ``as_of - 1 horizon`` (a date the mapping never saw) the same is done again, and the
   calibrated numbers are compared with what happened: the reliability table and the Brier
   score say how far to trust them;
3. when the calibrated numbers rank customers poorly there (AUC below 0.7) or hardly beat
   the base rate, the supervised churn model (:mod:`segmentum.models.churn`, gradient
   boosting on the customer features, itself calibrated on a held-out part) is judged on the
   same later date; the better of the two by Brier score gives the churn probability.

Only per-customer summaries leave the engine; the calibrated model's numbers are computed per
distinct (x, t_x, T) row and joined back.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from segmentum.errors import ModelError
from segmentum.features.customer import btyd_summary, purchase_days_before
from segmentum.i18n import date, number
from segmentum.models.btyd import BetaGeo, PurchaseModel, unique_rows

if TYPE_CHECKING:  # scikit-learn takes seconds to import: only the fits below need it
    from sklearn.ensemble import HistGradientBoostingClassifier

#: The calibrated purchase model is kept when it ranks this well on the check date (AUC) and
#: beats the base rate's Brier score by 10%; otherwise the supervised model is tried too.
GOOD_AUC = 0.7


#: An isotonic map as the thresholds of a step function, for ``np.interp(value, *steps)``
#: (flat beyond both ends).
Steps = tuple[np.ndarray, np.ndarray]


def _isotonic_map(raw: np.ndarray, churned: np.ndarray) -> Steps:
    """The non-decreasing map from ``raw`` to the observed churn rate (isotonic regression),
    with each step's rate the posterior mean under Jeffreys' prior, (k + 1/2) / (n + 1), not
    the bare share k / n: a step of 40 customers who all churned says 98.8%, not "certainly",
    and no customer is given a churn probability of exactly 0 or 1 from a finite sample.
    Where that moved a small step past its neighbour, the steps are pooled again, weighted by
    their size, so the map stays non-decreasing."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, churned)
    steps = pd.DataFrame({"step": iso.predict(raw), "y": churned.astype(float)})
    g = steps.groupby("step")["y"].agg(["size", "sum"]).sort_index()
    rate = ((g["sum"] + 0.5) / (g["size"] + 1.0)).to_numpy()
    order = np.arange(len(g), dtype=float)
    pooled = IsotonicRegression().fit(order, rate, sample_weight=g["size"].to_numpy())
    # Each threshold of the fitted map takes the shrunk value of the step it belongs to.
    shrunk = np.interp(iso.y_thresholds_, g.index.to_numpy(), pooled.predict(order))
    return np.asarray(iso.X_thresholds_, float), shrunk


@dataclass
class ChurnCalibration:
    """How churn probabilities were calibrated, and how well they did on a later date."""

    horizon_days: int
    fit_as_of: _dt.date  # the isotonic map was learned here
    check_as_of: _dt.date  # and judged here (out of time)
    source: str  # which model's numbers were kept
    #: By decile of the model's raw number on the check date: customers, raw and calibrated
    #: predicted churn, observed churn.
    reliability: pd.DataFrame
    #: Brier score and AUC on the check date, by model (raw, calibrated, supervised).
    metrics: pd.DataFrame
    #: The churn probability at ``as_of``: keyed by (x, t_x, T) for the purchase model, by
    #: customer_id for the supervised model.
    scores: pa.Table = field(repr=False)
    #: The isotonic map from the purchase model's P(no purchase) to churn (its thresholds,
    #: x and y) when that model's numbers were kept: a day scored with stored models applies
    #: it again (:mod:`segmentum.incremental`). None for the supervised model.
    mapping: tuple[list[float], list[float]] | None = None

    def sentence(self, lang: str = "en") -> str:
        """What the numbers are and how sure we are, in one sentence."""
        m = self.metrics
        scores = m["Brier score"].astype(float).to_dict()
        brier, base = scores[self.source], scores["base rate"]
        day = date(self.check_as_of, lang)
        if lang == "es":
            source = (
                "del modelo supervisado de fuga, entrenado"
                if self.source == "supervised churn model"
                else "del modelo " + self.source.replace("calibrated ", "") + " calibrado"
            )
            return (
                f"La probabilidad de fuga (no comprar en {self.horizon_days} días) viene "
                f"{source} con la historia de estos datos: el {day}, fecha que no vio, su "
                f"puntuación de Brier fue {number(brier, lang, 3)} (la tasa media sola daría "
                f"{number(base, lang, 3)})."
            )
        return (
            f"Churn probability (no purchase in {self.horizon_days} days) comes from "
            f"{self.source}, calibrated on the data's own history: on {day}, a "
            f"date it never saw, its Brier score was {number(brier, lang, 3)} (the base rate "
            f"alone would score {number(base, lang, 3)})."
        )


def no_purchase_probability(
    model: PurchaseModel, x: np.ndarray, tx: np.ndarray, t: np.ndarray, horizon: float
) -> np.ndarray:
    """The model's P(no purchase in the next ``horizon`` | x, t_x, T).

    Exact for the BG/NBD family (dead, or alive with no purchase); for Pareto/NBD a Poisson
    reading of the expected purchases, exp(-E[purchases]) (the calibration step only needs an
    order, it maps the number to observed rates)."""
    t = np.maximum(t, 1e-9)
    if isinstance(model, BetaGeo):
        r, alpha = model.params_["r"], model.params_["alpha"]
        alive = model.probability_alive(x, tx, t)
        quiet = np.exp((r + x) * np.log((alpha + t) / (alpha + t + horizon)))
        return np.asarray(1 - alive + alive * quiet, dtype=float)
    return np.asarray(np.exp(-model.expected_purchases(horizon, x, tx, t)), dtype=float)


def _outcomes(source: ir.Table, as_of: _dt.date, horizon_days: int, weeks: bool) -> pd.DataFrame:
    """Per customer known before ``as_of``: x, t_x, T and whether they bought in the horizon."""
    summary = btyd_summary(source, as_of, weeks=weeks)
    summary = summary.filter(summary["T"] > 0)
    days = purchase_days_before(source, as_of + _dt.timedelta(days=horizon_days))
    later = days.filter(days.day >= ibis.literal(as_of, "date")).select("customer_id").distinct()
    later = later.mutate(_bought=ibis.literal(1))
    j = summary.left_join(later, "customer_id").drop("customer_id_right")
    out: pd.DataFrame = j.select(
        "customer_id", "x", "t_x", "T", churned=j._bought.isnull().cast("int64")
    ).to_pandas()
    return out


def _raw(model: PurchaseModel, df: pd.DataFrame, horizon: float) -> np.ndarray:
    """Refit ``model``'s class on ``df`` and give its P(no purchase in ``horizon``)."""
    fitted = _fit_model(model, df)
    x, tx, t = (df[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
    return no_purchase_probability(fitted, x, tx, t, horizon)


def _fit_model(model: PurchaseModel, df: pd.DataFrame) -> PurchaseModel:
    fresh = type(model)(penalizer=model.penalizer)
    fresh.fit(df.x, df.t_x, df["T"])
    return fresh


def _reliability(raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    bins = pd.qcut(pd.Series(raw).rank(method="first"), 10, labels=False, duplicates="drop")
    table = (
        pd.DataFrame({"bin": bins, "raw": raw, "calibrated": calibrated, "y": y})
        .groupby("bin")
        .agg(
            customers=("y", "size"),
            predicted_raw=("raw", "mean"),
            predicted=("calibrated", "mean"),
            observed=("y", "mean"),
        )
        .reset_index()
    )
    table["bin"] = table.bin.astype(int) + 1
    return table


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.mean() < 1 else float("nan")


def calibrate_churn(
    model: PurchaseModel,
    source: ir.Table,
    as_of: _dt.date,
    *,
    horizon_days: int = 90,
    weeks: bool = True,
    current: pa.Table | None = None,
    lines: ir.Table | None = None,
    features: ir.Table | None = None,
) -> ChurnCalibration:
    """Calibrate ``model``'s churn numbers on the history before ``as_of`` (module docstring).

    ``source`` is the invoice lines or the purchase-day rollup; ``current`` the distinct
    (x, t_x, T) rows to score at ``as_of`` (default: asked from the engine). With ``lines``
    (the invoice lines) and ``features`` (``customer_features`` at ``as_of``) the supervised
    churn model is trained too and kept when it scores better.
    """
    from sklearn.metrics import brier_score_loss

    if horizon_days < 7:
        raise ModelError(
            f"horizon_days={horizon_days} is too short", "use 7 days or more (90 is usual)"
        )
    first = source[("day" if "timestamp" not in source.columns else "timestamp")].min()
    first_value = first.to_pyarrow().as_py()
    if first_value is None:
        raise ModelError("there is no history to calibrate churn on")
    first_day = first_value.date() if isinstance(first_value, _dt.datetime) else first_value
    horizon = _dt.timedelta(days=horizon_days)
    fit_as_of, check_as_of = as_of - 2 * horizon, as_of - horizon
    if fit_as_of - first_day < horizon:
        raise ModelError(
            f"churn cannot be calibrated: the history ({(as_of - first_day).days} days) is "
            f"shorter than three {horizon_days}-day horizons",
            "wait for more history, or use a shorter churn horizon",
        )
    unit = 7.0 if weeks else 1.0
    h = horizon_days / unit
    train, test = (_outcomes(source, d, horizon_days, weeks) for d in (fit_as_of, check_as_of))
    iso = _isotonic_map(_raw(model, train, h), train.churned.to_numpy())
    raw_test = _raw(model, test, h)
    cal_test = np.interp(raw_test, *iso)
    y = test.churned.to_numpy()
    name = f"calibrated {model.label}"
    rows = {
        "base rate": (brier_score_loss(y, np.full(len(y), train.churned.mean())), float("nan")),
        f"{model.label} (raw)": (brier_score_loss(y, raw_test), _auc(y, raw_test)),
        name: (brier_score_loss(y, cal_test), _auc(y, cal_test)),
    }
    source_name = name
    supervised = None
    weak = not (rows[name][1] >= GOOD_AUC and rows[name][0] < 0.9 * rows["base rate"][0])
    if weak and lines is not None and features is not None:
        supervised = _supervised(lines, fit_as_of, check_as_of, horizon_days, weeks)
        if supervised is not None:
            p_sup, y_sup, clf, iso_sup = supervised
            label = "supervised churn model"
            rows[label] = (brier_score_loss(y_sup, p_sup), _auc(y_sup, p_sup))
            if rows[label][0] < rows[name][0]:
                source_name = label
    metrics = pd.DataFrame.from_dict(rows, orient="index", columns=["Brier score", "AUC"])
    metrics.index.name = "model"
    reliability = _reliability(raw_test, cal_test, y)
    if source_name == name:
        if current is None:
            s = btyd_summary(source, as_of, weeks=weeks)
            current = s.select("x", "t_x", "T").distinct().to_pyarrow()
        (x, tx, t), _, _ = unique_rows(
            current["x"].to_numpy(), current["t_x"].to_numpy(), current["T"].to_numpy()
        )
        p = np.interp(no_purchase_probability(model, x, tx, t, h), *iso)
        scores = pa.table(
            {"x": x, "t_x": tx, "T": t, "churn_probability": p, "churn_source": [name] * len(x)}
        )
    else:
        assert supervised is not None and features is not None
        from segmentum.models.churn import FEATURES

        _, _, clf, iso_sup = supervised
        now = features.select("customer_id", *FEATURES).to_pandas()
        p = np.interp(clf.predict_proba(now[list(FEATURES)].astype(float))[:, 1], *iso_sup)
        scores = pa.table(
            {
                "customer_id": now.customer_id.astype(str).to_numpy(),
                "churn_probability": p,
                "churn_source": [source_name] * len(now),
            }
        )
    mapping = (iso[0].tolist(), iso[1].tolist()) if source_name == name else None
    return ChurnCalibration(
        horizon_days, fit_as_of, check_as_of, source_name, reliability, metrics, scores, mapping
    )


def _supervised(
    lines: ir.Table, fit_as_of: _dt.date, check_as_of: _dt.date, horizon_days: int, weeks: bool
) -> tuple[np.ndarray, np.ndarray, HistGradientBoostingClassifier, Steps] | None:
    """Gradient boosting trained at ``fit_as_of`` (isotonic-calibrated on a held-out part),
    judged at ``check_as_of``: predictions, outcomes, the model and its calibration."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from segmentum.models.churn import FEATURES, labelled

    train = labelled(lines, fit_as_of, horizon_days, weeks=weeks)
    test = labelled(lines, check_as_of, horizon_days, weeks=weeks)
    if train.churned.nunique() < 2 or len(train) < 50:
        return None
    rng = np.random.default_rng(0)
    hold = rng.random(len(train)) < 0.3
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.08, random_state=0)
    xs = train[list(FEATURES)].astype(float)
    clf.fit(xs[~hold], train.churned[~hold])
    iso = _isotonic_map(clf.predict_proba(xs[hold])[:, 1], train.churned[hold].to_numpy())
    p = np.interp(clf.predict_proba(test[list(FEATURES)].astype(float))[:, 1], *iso)
    return p, test.churned.to_numpy(), clf, iso
