"""Check the purchase model on your own data: fit on a calibration period, predict the holdout.

The standard checks of the customer-base-analysis literature: cumulative repeat purchases week
by week (predicted vs actual) and the conditional expectation of holdout purchases by number
of calibration purchases, each against a naive baseline (every customer keeps buying at their
calibration rate). Only aggregates leave the engine.

Every purchase model (BG/NBD, MBG/NBD, Pareto/NBD) is fitted on the same calibration period;
:func:`choose` picks the one whose holdout forecast by number of calibration purchases is
closest, the likelihood deciding between forecasts within 5% of each other, and says why.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from segmentum import i18n
from segmentum.errors import InputError, ModelError
from segmentum.features.customer import btyd_summary, purchase_days_before
from segmentum.models.btyd import (
    BetaGeo,
    ModifiedBetaGeo,
    ParetoNBD,
    PurchaseModel,
    dropout_identified,
)

#: The purchase models compared, by the name used in reports.
PURCHASE_MODELS: dict[str, type[BetaGeo] | type[ParetoNBD]] = {
    "BG/NBD": BetaGeo,
    "MBG/NBD": ModifiedBetaGeo,
    "Pareto/NBD": ParetoNBD,
}
#: The holdout error that decides (the literature's conditional-expectation check).
CRITERION = "mean absolute error, by calibration purchases"
NAIVE = "naive (calibration rate)"


@dataclass
class Validation:
    """The fitted models, the chosen one and the tracking tables.

    ``weekly`` and ``by_frequency`` hold ``predicted`` (the chosen model), ``naive`` and one
    column per model fitted (named as in :data:`PURCHASE_MODELS`).
    """

    model: PurchaseModel
    calibration_end: _dt.date
    holdout_end: _dt.date
    weekly: pd.DataFrame  # week, actual, predicted, naive (cumulative repeat purchases)
    by_frequency: pd.DataFrame  # x, customers, actual, predicted, naive (mean per customer)
    errors: pd.DataFrame  # metric by method
    models: dict[str, PurchaseModel] = field(default_factory=dict)
    chosen: str = "BG/NBD"
    reason_en: str = ""
    reason_es: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # model: why it could not be fitted

    def verdict(self, lang: str = "en") -> str:
        """The chosen model's holdout forecast in words, against the naive baseline."""
        return verdict(self.errors, self.chosen, lang)

    def to_html(self, lang: str = "en") -> str:
        """A self-contained page in ``lang``: the two tracking charts (inline SVG) and the
        tables, numbers and dates as the language writes them."""
        _ = i18n.translations(lang).ugettext
        words = {
            "actual": _("actual"),
            "predicted": _("predicted"),
            "naive": _("naive"),
            NAIVE: _("naive (calibration rate)"),
            "week": _("week"),
            "x": _("calibration purchases"),
            "customers": _("customers"),
        }
        charts = [
            _svg_lines(
                _("Cumulative repeat purchases in the holdout"), self.weekly, "week", words, lang
            ),
            _svg_lines(
                _("Holdout purchases per customer by calibration purchases"),
                self.by_frequency,
                "x",
                words,
                lang,
            ),
        ]
        heads = [_("method"), _("holdout purchases"), _("error of total")]
        heads += [_("MAE weekly"), _("MAE by x")]
        errors = [
            [
                words.get(str(method), str(method)),
                i18n.number(row.iloc[0], lang, 0),
                i18n.percent(row.iloc[1], lang),
                i18n.number(row.iloc[2], lang, 1),
                i18n.number(row.iloc[3], lang, 3),
            ]
            for method, row in self.errors.iterrows()
        ]
        tables = [
            _table(heads, errors),
            _frame_table(self.by_frequency, words, lang, 3),
            _frame_table(self.weekly, words, lang, 1),
        ]
        params = ", ".join(
            f"{k} = {i18n.significant(v, lang, 4)}" for k, v in self.model.params_.items()
        )
        start = self.calibration_end + _dt.timedelta(days=1)
        fitted = _(
            "%(model)s fitted on data before %(start)s; holdout to %(end)s. Parameters: %(params)s."
        ) % {
            "model": self.chosen,
            "start": i18n.date(start, lang),
            "end": i18n.date(self.holdout_end, lang),
            "params": params,
        }
        reason = self.reason_es if lang == "es" else self.reason_en
        title, check = _("segmentum: CLV validation"), _("Purchase model check")
        sections = (_("Errors"), _("By number of calibration purchases"), _("Week by week"))
        e = html.escape
        return (
            f"<!doctype html><html lang='{e(lang)}'><meta charset='utf-8'><title>{e(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:auto}table{border-collapse:collapse}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>"
            f"<h1>{e(check)}</h1><p>{e(fitted)}</p><p><strong>{e(self.verdict(lang))}</strong></p>"
            f"<p>{e(reason)}</p>"
            + "".join(charts)
            + "".join(f"<h2>{e(h)}</h2>{t}" for h, t in zip(sections, tables, strict=True))
        )


def _table(heads: list[str], rows: list[list[str]]) -> str:
    """An HTML table of texts already formatted (escaped here)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _frame_table(df: pd.DataFrame, words: dict[str, str], lang: str, digits: int) -> str:
    """A tracking table: its columns named in ``lang`` (a model keeps its name), the counts
    whole, the purchases to ``digits`` decimals."""
    whole = ("week", "customers")
    rows = [
        [
            str(v) if c == "x" else i18n.number(v, lang, 0 if c in whole else digits)
            for c, v in r.items()
        ]
        for r in df.to_dict("records")
    ]
    return _table([words.get(str(c), str(c)) for c in df.columns], rows)


def _svg_lines(
    title: str,
    df: pd.DataFrame,
    xcol: str,
    words: dict[str, str],
    lang: str,
    width: int = 900,
    height: int = 300,
) -> str:
    series = [("actual", "#222"), ("predicted", "#d62728"), ("naive", "#1f77b4")]
    xs = pd.to_numeric(df[xcol].astype(str).str.rstrip("+")).to_numpy(dtype=float)
    ymax = float(max(df[c].max() for c, _ in series)) or 1.0
    xmin, xmax = float(xs.min()), float(xs.max()) if len(xs) > 1 else float(xs.min()) + 1

    def pt(x: float, y: float) -> str:
        px = 50 + (x - xmin) / ((xmax - xmin) or 1) * (width - 70)
        py = height - 30 - y / ymax * (height - 50)
        return f"{px:.1f},{py:.1f}"

    def e(col: str) -> str:
        return html.escape(words.get(col, col))

    lines = "".join(
        f"<polyline fill='none' stroke='{color}' stroke-width='2' points='"
        + " ".join(pt(x, y) for x, y in zip(xs, df[col].to_numpy(dtype=float), strict=True))
        + f"'><title>{e(col)}</title></polyline>"
        for col, color in series
    )
    legend = "".join(
        f"<text x='{60 + 110 * i}' y='15' fill='{c}'>{e(n)}</text>"
        for i, (n, c) in enumerate(series)
    )
    span = i18n.translations(lang).ugettext("%(x)s: %(low)s to %(high)s; at most %(max)s") % {
        "x": words.get(xcol, xcol),
        "low": i18n.number(xmin, lang),
        "high": i18n.number(xmax, lang),
        "max": i18n.number(ymax, lang, 1),
    }
    return (
        f"<h2>{html.escape(title)}</h2><svg width='{width}' height='{height}' role='img'>"
        f"{legend}<text x='5' y='{height - 10}'>{html.escape(span)}</text>{lines}</svg>"
    )


def validate(
    transactions: ir.Table,
    calibration_end: _dt.date,
    holdout_end: _dt.date | None = None,
    *,
    models: tuple[str, ...] = tuple(PURCHASE_MODELS),
    weeks: bool = True,
    curves: bool = True,
) -> Validation:
    """Fit the purchase ``models`` on purchases up to ``calibration_end``, compare their
    holdout predictions with what happened and choose one (see :func:`choose`).

    ``curves=False`` (the run's choice of model, which reads only the criterion): ``weekly``
    holds the holdout's end alone, and the weekly error is left empty; every model's
    expectations week by week cost more than the rest of the comparison but the fits.

    ``transactions`` is the invoice lines or the warehouse's purchase-day rollup.
    ``holdout_end`` defaults to the last purchase day. Times are in weeks (or days).
    """
    unknown = [m for m in models if m not in PURCHASE_MODELS]
    if unknown or not models:
        raise InputError(
            f"unknown purchase model {', '.join(unknown) or '(none)'}",
            f"use one or more of {', '.join(PURCHASE_MODELS)}",
        )
    as_of = calibration_end + _dt.timedelta(days=1)
    ts = "day" if "timestamp" not in transactions.columns else "timestamp"
    last = transactions[ts].max().to_pyarrow().as_py()
    if last is None:
        raise InputError("there are no transactions to validate on")
    last_day = last.date() if isinstance(last, _dt.datetime) else last
    holdout_end = holdout_end or last_day
    if holdout_end <= calibration_end:
        raise InputError(
            f"the holdout ends {holdout_end}, not after the calibration end {calibration_end}",
            "choose an earlier --calibration-end so some purchases fall after it",
        )
    summary = btyd_summary(transactions, as_of, weeks=weeks)
    # A customer whose first purchase is on the calibration end has not been observed yet.
    summary = summary.filter(summary["T"] > 0)
    grouped = summary.group_by(["x", "t_x", "T"]).aggregate(n=summary.count()).to_pyarrow()
    x, tx, t, n = (grouped[c].to_numpy().astype(float) for c in ("x", "t_x", "T", "n"))
    fitted: dict[str, PurchaseModel] = {}
    skipped: dict[str, str] = {}
    for name in models:
        try:
            # Compared on predictions and likelihood only: no standard errors needed.
            fitted[name] = PURCHASE_MODELS[name](standard_errors=False).fit(x, tx, t, weights=n)
        except ModelError as exc:
            skipped[name] = str(exc)
    if not fitted:
        raise ModelError(
            "no purchase model could be fitted on the calibration period: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
            "choose a later --calibration-end so more customers have bought twice",
        )

    # Holdout purchase days of calibration customers, by customer and by week (the same
    # purchase days as the summary: net of returns, one a day).
    days = purchase_days_before(transactions, holdout_end + _dt.timedelta(days=1))
    start = ibis.literal(as_of, "date")
    days = days.filter(days.day >= start).select("customer_id", "day").distinct()
    days = days.semi_join(summary, "customer_id")
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

    unit = 7.0 if weeks else 1.0
    horizon = (holdout_end - calibration_end).days / unit
    n_weeks = int(np.ceil((holdout_end - calibration_end).days / 7.0))
    weeks_idx = np.arange(1, n_weeks + 1) if curves else np.array([n_weeks])
    rate = np.where(t > 0, x / np.maximum(t, 1e-9), 0.0)
    spans = [min(float(k) * 7.0 / unit, horizon) for k in weeks_idx]
    actual = (
        per_week.set_index("week")
        .reindex(np.arange(1, n_weeks + 1), fill_value=0)
        .purchases.cumsum()
        .reindex(weeks_idx)
        .to_numpy()
    )
    weekly = pd.DataFrame({"week": weeks_idx, "actual": actual})
    weekly["naive"] = [float(np.sum(n * rate * h)) for h in spans]
    per_row = {"naive": rate * horizon}
    for name, model in fitted.items():
        # expected_purchases = expected_if_alive(h) * P(alive): P(alive) does not depend on
        # the horizon, and for Pareto/NBD it is the costly part (a hypergeometric function per
        # row), so it is computed once, not once per week of the holdout.
        # The forecasts the scores use: where the hypergeometric function overflows (a fit at
        # the edge of the parameter space) its bound, not NaN, which the sums below skipped,
        # so such a model was judged as forecasting no purchases and looked best.
        with np.errstate(all="ignore"):
            alive = model.probability_alive(x, tx, t)
        weekly[name] = [float(np.sum(n * model._if_alive_or_bound(h, x, t) * alive)) for h in spans]
        per_row[name] = model._if_alive_or_bound(horizon, x, t) * alive

    rows = pd.DataFrame({"x": x, "n": n, **{k: v * n for k, v in per_row.items()}})
    sums = rows.groupby("x").sum()
    by_x = sums[list(per_row)].div(sums.n, axis=0)
    table = by_x_actual.set_index("x").join(by_x).reset_index().sort_values("x")
    table["x"] = table.x.astype(int)
    capped = table.assign(x=np.minimum(table.x, 7))
    w = capped.customers
    cols = ["actual", *per_row]
    by_frequency = capped.assign(**{c: capped[c] * w for c in cols}).groupby("x").sum()
    by_frequency = by_frequency.reset_index()
    for c in cols:
        by_frequency[c] = by_frequency[c] / by_frequency.customers
    by_frequency["x"] = by_frequency.x.map(lambda v: f"{v}+" if v == 7 else str(v))

    total_actual = float(actual[-1]) if len(actual) else 0.0
    methods = [*fitted, "naive"]
    errors = pd.DataFrame(
        {
            "total holdout purchases": [total_actual, *(weekly[m].iloc[-1] for m in methods)],
            "relative error of the total": [
                0.0,
                *(
                    weekly[m].iloc[-1] / total_actual - 1 if total_actual else float("nan")
                    for m in methods
                ),
            ],
            "mean absolute error, weekly cumulative": [
                0.0,
                *(
                    float(np.mean(np.abs(weekly[m].to_numpy() - actual)))
                    if curves
                    else float("nan")
                    for m in methods
                ),
            ],
            CRITERION: [
                0.0,
                *(
                    float(np.average(np.abs(table[m] - table.actual), weights=table.customers))
                    for m in methods
                ),
            ],
        },
        index=pd.Index(["actual", *fitted, NAIVE], name="method"),
    )
    loglik = {k: m.log_likelihood_ for k, m in fitted.items()}
    identified = {k: dropout_identified(m) for k, m in fitted.items()}
    chosen, reason_en, reason_es = choose(errors, loglik, identified)
    weekly["predicted"] = weekly[chosen]
    by_frequency["predicted"] = by_frequency[chosen]
    front = ["week", "actual", "predicted", "naive"]
    weekly = weekly[front + [c for c in weekly.columns if c not in front]]
    front = ["x", "customers", "actual", "predicted", "naive"]
    by_frequency = by_frequency[front + [c for c in by_frequency.columns if c not in front]]
    return Validation(
        fitted[chosen],
        calibration_end,
        holdout_end,
        weekly,
        by_frequency,
        errors,
        fitted,
        chosen,
        reason_en,
        reason_es,
        skipped,
    )


def choose(
    errors: pd.DataFrame | None,
    loglik: dict[str, float],
    identified: dict[str, bool] | None = None,
) -> tuple[str, str, str]:
    """The purchase model to use, and why (English, Spanish).

    With a holdout (``errors`` from :func:`validate`): the smallest error of the holdout
    forecast by number of calibration purchases; models within 5% of it are told apart by
    whether their dropout process is ``identified`` (a fit that ran to a bound gives no usable
    P(alive)), then by their log-likelihood (all have four parameters). Without a holdout:
    identified first, then the likelihood.
    """
    names = list(loglik)
    ok = identified or {}
    if errors is None:
        pool = [k for k in names if ok.get(k, True)] or names
        best = max(pool, key=lambda k: loglik[k])
        left = [k for k in names if k not in pool]
        en, es = (_likelihood_reason(lang, best, pool, loglik, left) for lang in ("en", "es"))
        return best, en, es
    crit: dict[Any, float] = errors[CRITERION].astype(float).to_dict()
    err = {k: crit[k] for k in names}
    lowest = min(err.values())
    close = [k for k in names if err[k] <= lowest * 1.05 + 1e-12]
    pool = [k for k in close if ok.get(k, True)] or close
    best = max(pool, key=lambda k: loglik[k])
    unidentified = [k for k in close if k not in pool]
    why = {
        lang: _holdout_reason(
            lang, best, names, err, crit[NAIVE], loglik, len(pool) > 1, unidentified
        )
        for lang in ("en", "es")
    }
    return best, why["en"], why["es"]


def _likelihood_reason(
    lang: str, best: str, names: list[str], loglik: dict[str, float], left: list[str]
) -> str:
    """Why ``best`` was chosen without a holdout, in ``lang``: the highest log-likelihood of
    ``names``; ``left``, whose fits could not identify who drops out, are named apart (their
    log-likelihood may be higher: they were not candidates)."""
    t = i18n.translations(lang)
    said = i18n.number(loglik[best], lang, 1)
    others = ", ".join(f"{k} {i18n.number(loglik[k], lang, 1)}" for k in names if k != best)
    values = {"model": best, "loglik": f"{said}; {others}" if others else said}
    if left:
        return t.ungettext(
            "%(model)s was chosen for the highest log-likelihood (%(loglik)s) of the models "
            "that could identify who drops out (%(left)s could not: its fit ran to a bound); "
            "there was not enough history for a holdout check.",
            "%(model)s was chosen for the highest log-likelihood (%(loglik)s) of the models "
            "that could identify who drops out (%(left)s could not: their fits ran to a bound); "
            "there was not enough history for a holdout check.",
            len(left),
        ) % {**values, "left": ", ".join(left)}
    return (
        t.ugettext(
            "%(model)s was chosen for the highest log-likelihood (%(loglik)s); there was not "
            "enough history for a holdout check."
        )
        % values
    )


def _holdout_reason(
    lang: str,
    best: str,
    names: list[str],
    err: dict[str, float],
    naive: float,
    loglik: dict[str, float],
    tied: bool,
    unidentified: list[str],
) -> str:
    """Why ``best`` was chosen on the holdout, in ``lang``."""
    t = i18n.translations(lang)
    if tied:
        why = t.ugettext(
            "its holdout forecast is as close as the best (within 5%%) and its log-likelihood "
            "is the highest (%(loglik)s)"
        ) % {"loglik": i18n.number(loglik[best], lang, 1)}
    else:
        why = t.ugettext("its holdout forecast is the closest")
    if unidentified:
        why += t.ugettext(
            ", and %(models)s, as close, could not identify who drops out (its fit ran to a bound)"
        ) % {"models": ", ".join(unidentified)}
    listing = ", ".join(f"{k} {i18n.number(err[k], lang, 3)}" for k in names if k != best)
    against = (
        t.ugettext(" (against %(others)s; naive baseline %(naive)s).")
        % {"others": listing, "naive": i18n.number(naive, lang, 3)}
        if listing
        else "."
    )
    return (
        t.ugettext(
            "%(model)s was chosen: %(why)s. Mean error of holdout purchases per customer, by "
            "number of calibration purchases: %(error)s"
        )
        % {"model": best, "why": why, "error": i18n.number(err[best], lang, 3)}
        + against
    )


def verdict(errors: pd.DataFrame, model: str, lang: str = "en") -> str:
    """One sentence on ``model``'s holdout forecast: the error of the total and the naive
    baseline compared by the error by number of calibration purchases."""
    t = i18n.translations(lang)
    totals: dict[Any, float] = errors["total holdout purchases"].astype(float).to_dict()
    crit: dict[Any, float] = errors[CRITERION].astype(float).to_dict()
    actual, predicted = totals["actual"], totals[model]
    rel = predicted / actual - 1 if actual else float("nan")
    mine, naive = crit[model], crit[NAIVE]
    counts = t.ugettext("(%(predicted)s predicted, %(actual)s actual)") % {
        "predicted": i18n.number(predicted, lang, 0),
        "actual": i18n.number(actual, lang, 0),
    }
    said = {"counts": counts, "pct": i18n.percent(abs(rel), lang, 0)}
    if not np.isfinite(rel):
        total = t.ugettext("there were no repeat purchases in the holdout")
    elif abs(rel) < 0.02:
        total = t.ugettext("matches repeat purchases in the holdout within 2%% %(counts)s") % said
    elif rel < 0:
        total = t.ugettext("under-predicts repeat purchases in the holdout by %(pct)s %(counts)s")
        total %= said
    else:
        total = t.ugettext("over-predicts repeat purchases in the holdout by %(pct)s %(counts)s")
        total %= said
    errs = {"mine": i18n.number(mine, lang, 3), "naive": i18n.number(naive, lang, 3)}
    if mine < naive:
        baseline = t.ugettext(
            "better than the naive baseline (mean error per customer %(mine)s against %(naive)s)"
        )
    else:
        baseline = t.ugettext(
            "no better than the naive baseline (mean error per customer %(mine)s against %(naive)s)"
        )
    return f"{model} {total}; {baseline % errs}."
