"""Customer lifetime value: fit BG/NBD and Gamma-Gamma on what the engine hands back, score in it.

Only the compressed summary comes out of the warehouse: the unique (x, t_x, T) rows with their
counts, and the repeat buyers' (x, mean spend). The part of the forecast that needs the
hypergeometric function depends on (x, T) only: it is computed once per distinct pair, uploaded
as a small table and joined back in the engine, where P(alive) and spend are closed forms, so
scoring a million customers on Spark never collects them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from segmentum.errors import InputError, ModelError
from segmentum.i18n import percent
from segmentum.i18n import significant as sig
from segmentum.models.btyd import (
    WEEKS_PER_MONTH,
    BetaGeo,
    GammaGamma,
    ModifiedBetaGeo,
    PurchaseModel,
    dropout_identified,
    unique_rows,
)
from segmentum.models.calibrate import ChurnCalibration, calibrate_churn
from segmentum.models.validate import (
    CRITERION,
    PURCHASE_MODELS,
    Validation,
    choose,
    validate,
)
from segmentum.warehouse import Warehouse

#: A holdout shorter than this (days) says too little to choose a model by.
MIN_HOLDOUT_DAYS = 28
#: Above this correlation between frequency and spend per purchase, Gamma-Gamma is not used.
STRONG_CORRELATION = 0.5
#: What a run on sales without amounts says (English, Spanish).
NO_AMOUNTS = (
    "spend models skipped: the sales were loaded without amounts (--no-amount); purchase "
    "frequency, P(alive) and lifecycle are computed, spend, value tiers and lifetime value "
    "are not",
    "modelos de gasto omitidos: las ventas se cargaron sin importes (--no-amount); se "
    "calculan la frecuencia de compra, P(activo) y el ciclo de vida, pero no el gasto, los "
    "niveles de valor ni el valor del cliente",
)


def _es(x: float, spec: str) -> str:
    """A number the Spanish way (1.234,56) for the notes' Spanish text."""
    return format(x, spec).translate(str.maketrans(",.", ".,"))


@dataclass
class ClvModels:
    """The fitted models, what they were fitted on, and which purchase model was chosen why."""

    purchases: PurchaseModel
    #: None when spend is forecast by the empirical mean (see ``spend_basis``).
    spend: GammaGamma | None
    customers: int
    repeat_buyers: int
    notes: list[str] = field(default_factory=list)
    #: The distinct (x, t_x, T) rows of the features fitted on, and those features: scoring
    #: the same features reuses the rows instead of asking the engine again.
    summary: pa.Table | None = None
    fitted_on: ir.Table | None = None
    #: Every purchase model fitted on all the data, by name; the chosen one and why.
    candidates: dict[str, PurchaseModel] = field(default_factory=dict)
    purchase_model: str = "BG/NBD"
    reason: str = ""
    reason_es: str = ""
    #: The holdout comparison the choice rests on (``Validation.errors``), when there was one.
    holdout: pd.DataFrame | None = None
    #: ``gamma_gamma``, ``empirical_mean`` when the spend model cannot be trusted, or
    #: ``no_amounts`` when the sales carry no amounts (spend is not modelled).
    spend_basis: str = "gamma_gamma"
    mean_spend: float = 0.0
    #: False when the fit ran to a bound: the dropout process is not identified, so P(alive)
    #: is not a probability (churn is then calibrated on the data's own history).
    dropout_identified: bool = True
    notes_es: list[str] = field(default_factory=list)
    #: Every model compared: log-likelihood, holdout error, identified, what it was fitted on.
    comparison: list[dict[str, Any]] = field(default_factory=list)
    #: How churn was calibrated when the dropout process is not identified.
    churn_calibration: ChurnCalibration | None = None

    def note(self, en: str, es: str) -> None:
        if en in self.notes:
            return
        self.notes.append(en)
        self.notes_es.append(es)

    def choice(self) -> dict[str, Any]:
        """The purchase model chosen, why, and every candidate's fit (for the run summary)."""
        return {
            "model": self.purchase_model,
            "reason": self.reason,
            "reason_es": self.reason_es,
            "dropout_identified": self.dropout_identified,
            "spend_basis": self.spend_basis,
            "candidates": {row["model"]: row for row in self.comparison},
            "churn_calibration": (
                None
                if self.churn_calibration is None
                else {
                    "source": self.churn_calibration.source,
                    "horizon_days": self.churn_calibration.horizon_days,
                    "check_as_of": self.churn_calibration.check_as_of.isoformat(),
                    "reliability": self.churn_calibration.reliability.to_dict(orient="records"),
                }
            ),
        }


def fit_models(
    features: ir.Table,
    *,
    penalizer: float = 0.0,
    transactions: ir.Table | None = None,
    as_of: _dt.date | None = None,
    models: tuple[str, ...] = tuple(PURCHASE_MODELS),
    weeks: bool = True,
) -> ClvModels:
    """Fit the purchase ``models`` on the unique (x, t_x, T) rows, choose one, and fit
    Gamma-Gamma on the repeat buyers.

    With ``transactions`` and ``as_of`` the choice rests on a calibration / holdout split of
    the data's own history (:func:`segmentum.models.validate.validate`: the last third of the
    history, at most a year, is the holdout); without them, or when the history is too short,
    on the likelihood alone. The choice and its reason are in ``purchase_model`` and ``reason``.
    """
    f = features
    summary = f.group_by(["x", "t_x", "T"]).aggregate(n=f.count()).to_pyarrow()
    x, tx, t, n = (summary[c].to_numpy() for c in ("x", "t_x", "T", "n"))
    seen = t > 0  # customers observed for no time yet say nothing about rates
    if len(t) and not seen.any():
        raise ModelError(
            "every customer first bought on the data's last day: no time to learn purchase "
            "rates from",
            "lifetime values need weeks of purchases; they are computed once the history is longer",
        )
    candidates: dict[str, PurchaseModel] = {}
    failures: dict[str, str] = {}

    def fit(name: str) -> PurchaseModel | None:
        try:
            model = PURCHASE_MODELS[name](penalizer=penalizer)
            candidates[name] = model.fit(x[seen], tx[seen], t[seen], weights=n[seen])
        except ModelError as exc:
            failures[name] = str(exc)
            return None
        return candidates[name]

    # With a holdout the models are compared on the calibration period (their fits there give
    # the likelihoods too): only the chosen one is then fitted on all the data.
    check, why_none = _holdout_check(transactions, as_of, models, weeks)
    if check is not None:
        failures.update(check.skipped)
        fitted = check.models
        holdout: pd.DataFrame | None = check.errors.drop(
            index=[k for k in check.skipped if k in check.errors.index]
        )
    else:
        fitted = {k: m for k in models if (m := fit(k)) is not None}
        holdout = None
        if not fitted:
            raise ModelError(next(iter(failures.values())))
    loglik = {k: m.log_likelihood_ for k, m in fitted.items()}
    identified = {k: dropout_identified(m) for k, m in fitted.items()}
    errors: dict[Any, float] = {} if holdout is None else holdout[CRITERION].astype(float).to_dict()
    chosen, reason, reason_es = choose(holdout, loglik, identified)
    if why_none:
        reason += f" ({why_none[0]})"
        reason_es += f" ({why_none[1]})"
    if chosen not in candidates and fit(chosen) is None:
        raise ModelError(f"{chosen} could not be fitted on all the data: {failures[chosen]}")
    comparison = [
        {
            "model": k,
            "log_likelihood": loglik[k],
            "holdout_error": errors.get(k),
            "identified": identified[k],
            "fitted_on": "all the data" if holdout is None else "calibration period",
            "params": m.params_,
        }
        for k, m in fitted.items()
    ]
    bg = candidates[chosen]
    f = f.filter(f["T"] > 0)
    rep = f.filter((f.x > 0) & (f.monetary_value > 0))
    spend = rep.group_by(["x", "monetary_value"]).aggregate(n=rep.count()).to_pyarrow()
    n_total = int(np.sum(n[seen]))
    repeat = int(np.sum(spend["n"].to_numpy()))
    out = ClvModels(
        candidates[chosen],
        None,
        n_total,
        repeat,
        summary=summary,
        fitted_on=features,
        candidates=candidates,
        purchase_model=chosen,
        reason=reason,
        reason_es=reason_es,
        holdout=holdout,
        comparison=comparison,
    )
    for name, failure in failures.items():
        out.note(
            f"{name} could not be fitted: {failure}.", f"No se pudo ajustar {name}: {failure}."
        )
    dropout = dropout_note(bg)
    if dropout is not None:
        out.dropout_identified = False
        out.note(*dropout)
    # A log loaded without amounts has no spend at all (not too few repeat buyers).
    amounts = "monetary" not in f.columns or bool(f.monetary.notnull().any().execute())
    _fit_spend(out, spend, penalizer, amounts)
    return out


def _holdout_check(
    transactions: ir.Table | None, as_of: _dt.date | None, names: tuple[str, ...], weeks: bool
) -> tuple[Validation | None, tuple[str, str] | None]:
    """Every model fitted on a calibration period and judged on the holdout after it (the
    last third of the history, at most a year), or why there is none (English, Spanish)."""
    if transactions is None or as_of is None:
        return None, None
    ts = "day" if "timestamp" not in transactions.columns else "timestamp"
    first = transactions[ts].min().to_pyarrow().as_py()
    if first is None:
        return None, None
    first_day = first.date() if isinstance(first, _dt.datetime) else first
    last_day = as_of - _dt.timedelta(days=1)
    span = (last_day - first_day).days
    holdout_days = min(365, span // 3)
    if holdout_days < MIN_HOLDOUT_DAYS:
        return None, (
            f"the history covers {span} days; a holdout check needs at least "
            f"{3 * MIN_HOLDOUT_DAYS}",
            f"la historia cubre {span} días; comprobar con un periodo de control requiere al "
            f"menos {3 * MIN_HOLDOUT_DAYS}",
        )
    try:
        check = validate(
            transactions,
            last_day - _dt.timedelta(days=holdout_days),
            last_day,
            models=names,
            weeks=weeks,
            curves=False,  # the choice reads the criterion alone
        )
    except (ModelError, InputError) as exc:
        return None, (
            f"the holdout check could not run: {exc}",
            f"no se pudo comprobar con un periodo de control: {exc}",
        )
    return check, None


def dropout_note(model: PurchaseModel) -> tuple[str, str] | None:
    """Whole sentences (English, Spanish) when the fit ran to a bound of the dropout
    parameters, so P(alive) is not identified; None when it is."""
    if dropout_identified(model):
        return None
    p = model.params_
    name = model.label
    if isinstance(model, BetaGeo):
        a, b = p["a"], p["b"]
        en = {"a": sig(a, "en"), "b": sig(b, "en"), "share": percent(a / (a + b), "en")}
        es = {"a": sig(a, "es"), "b": sig(b, "es"), "share": percent(a / (a + b), "es")}
        if a + b > 1e4 or {"a", "b"} & set(model.at_bound_):
            # Beta(a, b) with a + b this large is nearly a point mass: the likelihood keeps
            # rising slowly as a and b grow together, so only their ratio means something.
            return (
                f"{name} could not tell customers' chances of dropping out apart: the fit ran "
                "to a bound (a = {a}, b = {b}), which means everyone gets the same {share} "
                "chance after each purchase. P(alive) is therefore not a probability to act "
                "on; churn probabilities are calibrated on this data's own history "
                "instead.".format(**en),
                f"{name} no distingue la probabilidad de abandono de cada cliente: el ajuste "
                "llegó a un límite (a = {a}, b = {b}), es decir, todos tienen la misma "
                "probabilidad, {share}, tras cada compra. P(activo) no es por tanto una "
                "probabilidad en la que basarse; la probabilidad de fuga se calibra con la "
                "propia historia de estos datos.".format(**es),
            )
        if a < 1e-3:
            return (
                f"{name} estimates that almost nobody drops out (a = {sig(a, 'en', 2)}, at "
                "the bound near zero): the data show no dropout to learn from, so P(alive) is "
                "close to 1 for everyone and is not a probability to act on; churn "
                "probabilities are calibrated on this data's own history instead.",
                f"{name} estima que casi nadie abandona (a = {sig(a, 'es', 2)}, en el límite "
                "cercano a cero): los datos no muestran abandonos de los que aprender, así que "
                "P(activo) ronda 1 para todos y no es una probabilidad en la que basarse; la "
                "probabilidad de fuga se calibra con la propia historia de estos datos.",
            )
        return None
    s, beta = p["s"], p["beta"]
    if s < 1e-3 or beta > 1e6 or model.at_bound_:
        return (
            f"{name} could not estimate how long customers stay: the fit ran to a bound "
            f"(s = {sig(s, 'en')}, beta = {sig(beta, 'en')}). P(alive) is therefore not a "
            "probability to act on; churn probabilities are calibrated on this data's own "
            "history instead.",
            f"{name} no pudo estimar cuánto tiempo siguen los clientes: el ajuste llegó a un "
            f"límite (s = {sig(s, 'es')}, beta = {sig(beta, 'es')}). P(activo) no es por tanto "
            "una probabilidad en la que basarse; la probabilidad de fuga se calibra con la "
            "propia historia de estos datos.",
        )
    return None


def _fit_spend(out: ClvModels, spend: pa.Table, penalizer: float, amounts: bool = True) -> None:
    """Gamma-Gamma on the repeat buyers' (x, mean spend), or the empirical mean with a note
    when its assumptions fail: spend the same for everyone, spend tied to frequency, too few
    repeat buyers, or a fit that runs off to absurd parameters. Without ``amounts`` (a log
    loaded with ``--no-amount``) there is no spend to model: skipped, and the note says why."""
    if not amounts:
        out.spend, out.spend_basis, out.mean_spend = None, "no_amounts", 0.0
        out.note(*NO_AMOUNTS)
        return
    x = spend["x"].to_numpy().astype(float)
    m = spend["monetary_value"].to_numpy().astype(float)
    w = spend["n"].to_numpy().astype(float)
    out.mean_spend = float(np.average(m, weights=w)) if w.sum() else 0.0
    mean = out.mean_spend
    fallback = (
        "Expected spend per purchase is each customer's own mean repeat spend (the "
        f"average, {mean:,.2f}, for one-time buyers) instead of a Gamma-Gamma forecast.",
        "El gasto esperado por compra es la media de las compras repetidas de cada cliente "
        f"(la media general, {_es(mean, ',.2f')}, para quien compró una vez) en lugar de la "
        "previsión Gamma-Gamma.",
    )

    def empirical(en: str, es: str) -> None:
        out.spend, out.spend_basis = None, "empirical_mean"
        out.note(f"{en} {fallback[0]}", f"{es} {fallback[1]}")

    if not w.sum():
        # Repeat buyers whose purchases are all worth nothing are not counted here: saying
        # "only 0 repeat buyers" sent people looking for a frequency problem.
        return empirical(
            "No repeat buyer spent anything (their purchases' amounts are zero or missing): "
            "there is no spend to model. A log without amounts loads with --no-amount.",
            "Ningún cliente que repitió gastó nada (los importes de sus compras son cero o "
            "faltan): no hay gasto que modelar. Un registro sin importes se carga con "
            "--no-amount.",
        )
    if w.sum() < 10:
        return empirical(
            f"Only {int(w.sum())} repeat buyers: too few to fit a spend model.",
            f"Solo {int(w.sum())} clientes repitieron: demasiado pocos para un modelo de gasto.",
        )
    spread = float(np.sqrt(np.average((m - mean) ** 2, weights=w))) / mean if mean else 0.0
    if spread < 1e-3:
        return empirical(
            f"Every repeat buyer spends the same per purchase ({mean:,.2f}): there is no "
            "variation for a spend model to learn.",
            "Todos los clientes que repiten gastan lo mismo por compra "
            f"({_es(mean, ',.2f')}): no hay variación de la que aprender un modelo de gasto.",
        )
    corr = _weighted_corr(x, m, w)
    if abs(corr) > STRONG_CORRELATION:
        return empirical(
            f"Spend per purchase is strongly correlated with purchase frequency (r = {corr:.2f}); "
            "Gamma-Gamma assumes they are independent, so its forecasts would be biased.",
            "El gasto por compra está muy correlacionado con la frecuencia "
            f"(r = {_es(corr, '.2f')}); Gamma-Gamma supone que son independientes y sus "
            "previsiones estarían sesgadas.",
        )
    try:
        gg = GammaGamma(penalizer=penalizer).fit(x, m, weights=w)
    except ModelError as exc:
        return empirical(
            f"The spend model could not be fitted ({exc}).",
            f"No se pudo ajustar el modelo de gasto ({exc}).",
        )
    p, q, g = (gg.params_[k] for k in ("p", "q", "gamma"))
    if not gg.converged_ or q <= 1 or max(p, q, g) > 1e8:
        return empirical(
            f"The spend model ran off to absurd parameters (p = {sig(p, 'en')}, "
            f"q = {sig(q, 'en')}, gamma = {sig(g, 'en')}).",
            f"El modelo de gasto dio parámetros absurdos (p = {sig(p, 'es')}, "
            f"q = {sig(q, 'es')}, gamma = {sig(g, 'es')}).",
        )
    out.spend = gg
    if abs(corr) > 0.3:
        out.note(
            f"Spend per purchase is correlated with purchase frequency (r = {corr:.2f}); "
            "Gamma-Gamma assumes independence, so spend forecasts for frequent buyers are "
            "less reliable.",
            f"El gasto por compra está correlacionado con la frecuencia (r = {_es(corr, '.2f')}); "
            "Gamma-Gamma supone independencia, así que la previsión de gasto de los clientes "
            "frecuentes es menos fiable.",
        )


def _weighted_corr(x: np.ndarray, m: np.ndarray, w: np.ndarray) -> float:
    mx, mm = np.average(x, weights=w), np.average(m, weights=w)
    cov = np.average((x - mx) * (m - mm), weights=w)
    vx, vm = np.average((x - mx) ** 2, weights=w), np.average((m - mm) ** 2, weights=w)
    return float(cov / np.sqrt(vx * vm)) if vx > 0 and vm > 0 else 0.0


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
    models.purchases.bounded_pairs_ = 0
    expected, discounted = models.purchases.purchases_if_alive(
        x, t, horizon_months, monthly_discount, month
    )
    bounded = models.purchases.bounded_pairs_
    if bounded:
        models.note(
            f"The {models.purchase_model} forecast formula overflowed for {bounded:,} of "
            f"{len(x):,} purchase histories (the fit is at the edge of its parameter space); "
            "their expected purchases assume they stay active through the horizon, an upper "
            "bound.",
            f"La fórmula de previsión de {models.purchase_model} se desbordó en "
            f"{_es(bounded, ',d')} de {_es(len(x), ',d')} historias de compra (el ajuste está "
            "en el borde de su espacio de parámetros); sus compras esperadas suponen que siguen "
            "activos durante todo el horizonte, una cota superior.",
        )
    return pa.table(
        {"x": x, "T": t, "_expected_if_alive": expected, "_discounted_if_alive": discounted}
    )


def _p_alive(
    model: PurchaseModel, x: ir.NumericValue, tx: ir.NumericValue, t: ir.NumericValue
) -> Any:
    """P(alive | x, t_x, T) as an engine expression for the BG/NBD family (eq. 13 of the
    paper; MBG/NBD without the x > 0 case), in logs so that large x cannot overflow. None for
    Pareto/NBD, whose P(alive) needs the hypergeometric function (computed per distinct row)."""
    if not isinstance(model, BetaGeo):
        return None
    r, alpha, a, b = (model.params_[k] for k in model.param_names)
    shift = 0.0 if isinstance(model, ModifiedBetaGeo) else -1.0
    log_ratio = (
        math.log(a)
        - (ibis.greatest(x + (b + shift), 1e-300)).ln()
        + (x + r) * ((t + alpha).ln() - (tx + alpha).ln())
    )
    odds = ibis.least(log_ratio, 700.0).exp()
    if isinstance(model, ModifiedBetaGeo):
        return 1.0 / (1.0 + odds)
    return ibis.ifelse(x > 0, 1.0 / (1.0 + odds), 1.0)


def _alive_rows(models: ClvModels, features: ir.Table) -> pa.Table:
    """P(alive) per distinct (x, t_x, T), for models without an engine expression."""
    u = models.summary
    if u is None or models.fitted_on is None or not features.equals(models.fitted_on):
        u = features.select("x", "t_x", "T").distinct().to_pyarrow()
    (x, tx, t), _, _ = unique_rows(u["x"].to_numpy(), u["t_x"].to_numpy(), u["T"].to_numpy())
    alive = models.purchases.probability_alive(x, tx, np.maximum(t, 1e-9))
    return pa.table({"x": x, "t_x": tx, "T": t, "_alive": alive})


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
    churn: ir.Table | None = None,
) -> ir.Table:
    """``customer_clv`` rows: P(alive), churn probability, expected purchases and spend, CLV.

    CLV is the expected spend per purchase times the expected purchases in each of the next
    ``horizon_months`` months, discounted at ``monthly_discount`` per month. Customers observed
    for less than ``min_weeks`` are labelled ``too_new`` and get no forecast: the models have
    nothing to judge them on yet.

    ``purchase_model`` and ``spend_basis`` say which models made each number. When the
    dropout process is not identified, ``p_alive`` is left empty (it is not a probability
    then) and ``churn_probability`` comes from ``churn`` (customer_id, churn_probability,
    churn_source: calibrated on the data's own history, see :mod:`segmentum.models.calibrate`).
    """
    if horizon_months < 1:
        raise ModelError(f"horizon_months={horizon_months} is not allowed", "use 1 or more months")
    preds = wh.from_arrow(
        _pair_predictions(models, features, horizon_months, monthly_discount, weeks), "clv"
    )
    f = features.select("customer_id", "x", "t_x", "T", "monetary_value")
    # The distinct (x, T) pairs are few (tens of thousands for a million customers): a small
    # table to upload and a small side to build the join on.
    j = f.join(preds, ["x", "T"])
    engine_alive = _p_alive(models.purchases, j.x, j.t_x, j["T"])
    if engine_alive is not None:
        j = j.mutate(_alive=engine_alive)
    else:
        rows = wh.from_arrow(_alive_rows(models, features), "clv_alive")
        j = j.join(rows, ["x", "t_x", "T"])
        j = j.drop(*[c for c in ("x_right", "t_x_right", "T_right") if c in j.columns])
    churn_p: Any = None
    churn_source: Any = ibis.literal(models.purchase_model)
    if churn is not None:
        # Calibrated churn: keyed by (x, t_x, T) for a purchase model, by customer otherwise.
        # Joined before any value below is built: every value must come from this ``j``
        # (values of the table before the join cannot be projected from it).
        keys = ["customer_id"] if "customer_id" in churn.columns else ["x", "t_x", "T"]
        c = churn.select(*keys, _churn="churn_probability", _churn_source="churn_source")
        j = j.left_join(c, keys)
        j = j.drop(*[f"{k}_right" for k in keys if f"{k}_right" in j.columns])
        churn_p = j._churn.fill_null(1 - j._alive)
        churn_source = j._churn_source.fill_null(models.purchase_model)
    alive = j._alive
    if churn_p is None:
        churn_p = 1 - alive
    m = j.monetary_value.fill_null(0.0)
    if models.spend is not None:
        p, q, g = (models.spend.params_[k] for k in ("p", "q", "gamma"))
        spend = (p * (g + j.x * m)) / (p * j.x + q - 1)
    else:
        spend = ibis.ifelse((j.x > 0) & (m > 0), m, models.mean_spend)
    t_weeks = j["T"] if weeks else j["T"] / 7.0
    too_new = t_weeks < min_weeks
    none = ibis.null("float64")
    # Typical time to the next purchase if still active: 1 / posterior mean purchase rate.
    r, alpha = models.purchases.params_["r"], models.purchases.params_["alpha"]
    gap_days = (j["T"] + alpha) / (j.x + r) * (7.0 if weeks else 1.0)
    next_date = ibis.literal(as_of, "date") + gap_days.round().cast("int64").as_interval("D")
    identified = models.dropout_identified
    out = j.select(
        "customer_id",
        clv_status=ibis.ifelse(too_new, "too_new", "scored"),
        p_alive=ibis.ifelse(too_new, none, alive) if identified else none,
        churn_probability=ibis.ifelse(too_new, none, churn_p),
        churn_source=ibis.ifelse(too_new, ibis.null("string"), churn_source),
        expected_purchases=ibis.ifelse(too_new, none, alive * j._expected_if_alive),
        expected_spend=ibis.ifelse(too_new, none, spend),
        clv=ibis.ifelse(too_new, none, spend * alive * j._discounted_if_alive),
        expected_next_purchase=ibis.ifelse(too_new, ibis.null("date"), next_date),
        horizon_months=ibis.literal(horizon_months, "int64"),
        purchase_model=ibis.literal(models.purchase_model),
        spend_basis=ibis.literal(models.spend_basis),
        as_of=ibis.literal(as_of, "date"),
    )
    return out


def fit_for_run(
    wh: Warehouse,
    features: ir.Table,
    as_of: _dt.date,
    *,
    source: ir.Table,
    lines: ir.Table | None = None,
    purchase_model: str = "auto",
    churn_horizon_days: int = 90,
    weeks: bool = True,
) -> tuple[ClvModels, ir.Table | None]:
    """What the pipeline's CLV step fits: the models (chosen on ``source``'s history, the
    purchase-day rollup or the lines) and, when the dropout process is not identified, churn
    probabilities calibrated on that history (an engine table for :func:`score`'s ``churn``).
    """
    if purchase_model != "auto" and purchase_model not in PURCHASE_MODELS:
        raise ModelError(
            f"purchase_model={purchase_model!r} is not allowed",
            f"use auto or one of {', '.join(PURCHASE_MODELS)}",
        )
    names = tuple(PURCHASE_MODELS) if purchase_model == "auto" else (purchase_model,)
    models = fit_models(features, transactions=source, as_of=as_of, models=names, weeks=weeks)
    if purchase_model != "auto":
        models.reason = f"{purchase_model} was set by the purchase_model setting."
        models.reason_es = f"{purchase_model} está fijado por el ajuste purchase_model."
    if models.dropout_identified:
        return models, None
    try:
        cal = calibrate_churn(
            models.purchases,
            source,
            as_of,
            horizon_days=churn_horizon_days,
            weeks=weeks,
            current=models.summary,
            lines=lines,
            features=features,
        )
    except ModelError as exc:
        models.note(
            f"Churn could not be calibrated on the history ({exc}); churn_probability is "
            "1 - P(alive) and should be read as a ranking, not as a probability.",
            f"No se pudo calibrar la fuga con la historia ({exc}); churn_probability es "
            "1 - P(activo) y debe leerse como un orden, no como una probabilidad.",
        )
        return models, None
    models.churn_calibration = cal
    models.note(cal.sentence(), cal.sentence("es"))
    return models, wh.from_arrow(cal.scores, "clv_churn")


def record(wh: Warehouse, models: ClvModels, as_of: _dt.date, run_id: str) -> None:
    """Store the choice: ``clv_models`` (one row per purchase model fitted: parameters,
    likelihood, holdout error, whether chosen and why) and, when churn was calibrated,
    ``churn_calibration`` (the reliability table on the check date)."""
    rows = pa.table(
        {
            "model": [c["model"] for c in models.comparison],
            "chosen": [c["model"] == models.purchase_model for c in models.comparison],
            "fitted_on": [c["fitted_on"] for c in models.comparison],
            "log_likelihood": [c["log_likelihood"] for c in models.comparison],
            "holdout_error": pa.array(
                [c["holdout_error"] for c in models.comparison], pa.float64()
            ),
            "dropout_identified": [c["identified"] for c in models.comparison],
            "params": [json.dumps(c["params"]) for c in models.comparison],
            "final_params": [
                json.dumps(models.purchases.params_) if c["model"] == models.purchase_model else ""
                for c in models.comparison
            ],
            # ``dropout_identified`` is said of ``params`` (the fit the choice compared, on the
            # calibration period where there was one); this, of ``final_params``, the fit the
            # scores use: one can run to a bound where the other did not.
            "final_dropout_identified": pa.array(
                [
                    models.dropout_identified if c["model"] == models.purchase_model else None
                    for c in models.comparison
                ],
                pa.bool_(),
            ),
            "reason": [
                models.reason if c["model"] == models.purchase_model else ""
                for c in models.comparison
            ],
            "reason_es": [
                models.reason_es if c["model"] == models.purchase_model else ""
                for c in models.comparison
            ],
            "spend_basis": [models.spend_basis] * len(models.comparison),
            "as_of": pa.array([as_of] * len(models.comparison), pa.date32()),
            "run_id": [run_id] * len(models.comparison),
        }
    )
    wh.replace_where("clv_models", wh.from_arrow(rows, "clv_models_new"), "as_of", as_of)
    cal = models.churn_calibration
    if cal is not None:
        table = cal.reliability.assign(
            source=cal.source,
            horizon_days=cal.horizon_days,
            check_as_of=cal.check_as_of,
            as_of=as_of,
            run_id=run_id,
        )
        wh.replace_where(
            "churn_calibration",
            wh.from_arrow(pa.Table.from_pandas(table, preserve_index=False), "churn_cal_new"),
            "as_of",
            as_of,
        )
