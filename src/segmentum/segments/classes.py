"""Classes a marketer acts on: RFM scores and named segments, value tiers, lifecycle stages.

All computed in the engine from ``customer_features``. Ties are handled by rank, so customers
with equal values get equal scores on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import yaml

from segmentum.errors import ConfigError


@dataclass(frozen=True)
class RfmRule:
    """A named RFM segment: the recency and frequency score ranges it covers (inclusive)."""

    name: str
    name_es: str
    r: tuple[int, int]
    f: tuple[int, int]
    description: str = ""


# First matching rule wins. Every (R, F) pair from 1-5 x 1-5 is covered exactly once.
RFM_RULES: tuple[RfmRule, ...] = (
    RfmRule("Champions", "Campeones", (5, 5), (4, 5), "Bought recently, buy often."),
    RfmRule("Loyal", "Leales", (3, 4), (4, 5), "Buy often; not the very latest buyers."),
    RfmRule(
        "Potential Loyalist", "Potenciales leales", (4, 5), (2, 3), "Recent, with a few purchases."
    ),
    RfmRule("New", "Nuevos", (5, 5), (1, 1), "First purchase very recently."),
    RfmRule("Promising", "Prometedores", (4, 4), (1, 1), "Recent first purchase."),
    RfmRule("Need Attention", "Requieren atención", (3, 3), (3, 3), "Average on both; slipping."),
    RfmRule(
        "About to Sleep",
        "A punto de dormirse",
        (3, 3),
        (1, 2),
        "Below average recency and frequency.",
    ),
    RfmRule(
        "Can't Lose Them", "No podemos perderlos", (1, 2), (5, 5), "Bought the most, long ago."
    ),
    RfmRule("At Risk", "En riesgo", (1, 2), (3, 4), "Bought often, long ago."),
    RfmRule("Lost", "Perdidos", (1, 1), (1, 1), "One purchase, long ago."),
    RfmRule("Hibernating", "Hibernando", (1, 2), (1, 2), "Few purchases, long ago."),
)


def load_rfm_rules(path: str | Path) -> tuple[RfmRule, ...]:
    """Read an edited rule table (YAML list of name, name_es, r: [lo, hi], f: [lo, hi])."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        rules = tuple(
            RfmRule(
                d["name"],
                d.get("name_es", d["name"]),
                tuple(d["r"]),
                tuple(d["f"]),
                d.get("description", ""),
            )
            for d in data
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"RFM rule file {path} cannot be used: {exc}", "see docs/classes.md for the format"
        ) from exc
    check_rfm_rules(rules)
    return rules


def check_rfm_rules(rules: Sequence[RfmRule]) -> None:
    """Every (R, F) score pair must fall in some rule, so no customer is left unnamed."""
    uncovered = [
        f"R{r}F{f}"
        for r in range(1, 6)
        for f in range(1, 6)
        if not any(x.r[0] <= r <= x.r[1] and x.f[0] <= f <= x.f[1] for x in rules)
    ]
    if uncovered:
        raise ConfigError(
            f"the RFM rules leave {', '.join(uncovered)} without a segment", "add or widen a rule"
        )


def _quintiles(
    t: ir.Table, column: str, name: str, *, descending: bool, by: str | None
) -> ir.Table:
    """Scores 1-5 of ``column`` by rank for every row of ``t`` (its keys and ``name``; equal
    values share the score of their lowest rank, no value scores NULL; ``by`` scores each
    group apart, e.g. every snapshot date in one pass), from its distinct values: each
    value's rank is the count of the values before it, summed over a
    window of the distinct values (a few hundred days or visit counts; at most one a row for
    money) and joined back, instead of a window over every row (at 8.7M customers, three
    sorts of every row, spilling)."""
    keys = ["customer_id", *([by] if by else [])]
    grp = [*([by] if by else []), column]
    v = t.filter(t[column].notnull())
    levels = v.group_by(grp).aggregate(_c=v.count())
    part = [levels[by]] if by else None
    order = ibis.desc(levels[column]) if descending else levels[column]
    upto = ibis.window(group_by=part, order_by=order, preceding=None, following=0)
    before = levels._c.sum().over(upto) - levels._c  # values strictly before: the min rank
    n = levels._c.sum().over(ibis.window(group_by=part))
    levels = levels.select(*grp, _score=(before * 5 / n).floor().cast("int64") + 1)
    j = t.select(*keys, column).left_join(levels, grp)
    return j.select(*keys, **{name: j._score})


def rfm(
    features: ir.Table, rules: Sequence[RfmRule] = RFM_RULES, by: str | None = None
) -> ir.Table:
    """R, F and M quintile scores, the RFM code and the named segment (English and Spanish)."""
    f = features
    keys = ["customer_id", *([by] if by else [])]
    # Recency: fewer days scores higher (ranked in descending order).
    parts = [
        _quintiles(f, "recency_days", "r_score", descending=True, by=by),
        _quintiles(f, "frequency", "f_score", descending=False, by=by),
        _quintiles(f, "monetary", "m_score", descending=False, by=by),
    ]
    scored = parts[0].join(parts[1], keys).join(parts[2], keys)
    r, fr = scored.r_score, scored.f_score
    cond = [(r.between(x.r[0], x.r[1]) & fr.between(x.f[0], x.f[1])) for x in rules]
    return scored.mutate(
        rfm_code=r.cast("string") + fr.cast("string") + scored.m_score.cast("string"),
        rfm_segment=ibis.cases(
            *((c, x.name) for c, x in zip(cond, rules, strict=True)), else_=ibis.null("string")
        ),
        rfm_segment_es=ibis.cases(
            *((c, x.name_es) for c, x in zip(cond, rules, strict=True)), else_=ibis.null("string")
        ),
    )


def pareto_tiers(
    t: ir.Table, column: str, cuts: tuple[float, float], name: str, by: str | None = None
) -> ir.Table:
    """high / medium / low by cumulative share of ``column`` (Pareto / ABC).

    Customers are sorted by ``column``; those that make up the first ``cuts[0]`` of the total
    are high, up to ``cuts[1]`` medium, the rest (and anyone at or below zero) low. The share
    before a customer counts only customers with a strictly larger value, so customers with
    equal values always get the same tier (an order by id would split a tie across a cut).
    """
    keys = ["customer_id", *([by] if by else [])]
    # Rounded to a millionth: a sum of the same lines added in another order (another pass,
    # another engine, more threads) differs in its last bits, and would split a tie in two.
    keyed = t.select(*keys, _v=t[column].cast("float64").fill_null(0.0).round(6))
    level_keys = [*([by] if by else []), "_v"]
    levels = keyed.group_by(level_keys).aggregate(_s=ibis.greatest(keyed._v, 0.0).sum())
    group = [levels[by]] if by else None
    w = ibis.window(order_by=ibis.desc(levels._v), group_by=group, preceding=None, following=0)
    total = levels._s.sum().over(ibis.window(group_by=group))
    levels = levels.mutate(
        _share_before=ibis.ifelse(total > 0, (levels._s.sum().over(w) - levels._s) / total, 1.0)
    )
    j = keyed.join(levels, level_keys)
    share_before = j._share_before
    tier = ibis.cases(
        ((share_before < cuts[0]) & (j._v > 0), "high"),
        ((share_before < cuts[1]) & (j._v > 0), "medium"),
        else_="low",
    )
    return j.select(*keys, **{name: tier, f"{column}_share_before": share_before})


def value_tiers(
    features: ir.Table, cuts: tuple[float, float] = (0.80, 0.95), by: str | None = None
) -> ir.Table:
    """Value tier by cumulative share of revenue (net spend), see :func:`pareto_tiers`."""
    out = pareto_tiers(features, "monetary", cuts, "value_tier", by)
    return out.rename(revenue_share_before="monetary_share_before")


# Value (past) x potential (predicted future value): what to do with each cell.
GRID: dict[tuple[str, str], tuple[str, str]] = {
    ("high", "high"): ("Stars", "Estrellas"),
    ("high", "medium"): ("Maintain", "Mantener"),
    ("high", "low"): ("Re-activate", "Reactivar"),
    ("medium", "high"): ("Grow", "Hacer crecer"),
    ("medium", "medium"): ("Develop", "Desarrollar"),
    ("medium", "low"): ("Harvest", "Cosechar"),
    ("low", "high"): ("Rising", "Promesas"),
    ("low", "medium"): ("Nurture", "Cultivar"),
    ("low", "low"): ("Low priority", "Baja prioridad"),
}


def potential_tiers(clv: ir.Table, cuts: tuple[float, float] = (0.80, 0.95)) -> ir.Table:
    """Potential tier by cumulative share of predicted CLV; ``too_new`` when not scored."""
    scored = pareto_tiers(clv.filter(clv.clv_status == "scored"), "clv", cuts, "potential_tier")
    j = clv.select("customer_id").left_join(scored, "customer_id").drop("customer_id_right")
    return j.select("customer_id", potential_tier=j.potential_tier.fill_null("too_new"))


def score_tiers(
    rfm_scores: ir.Table, cuts: tuple[float, float] = (12, 8), by: str | None = None
) -> ir.Table:
    """high / medium / low by the RFM score sum R+F+M (3-15) against two thresholds."""
    total = rfm_scores.r_score + rfm_scores.f_score + rfm_scores.m_score
    tier = ibis.cases((total >= cuts[0], "high"), (total >= cuts[1], "medium"), else_="low")
    keys = ["customer_id", *([by] if by else [])]
    return rfm_scores.select(*keys, value_tier=tier, rfm_score_sum=total)


@dataclass(frozen=True)
class LifecycleCuts:
    """Recency, in units of the customer's own expected gap between purchases."""

    at_risk: float = 1.5
    lapsed: float = 3.0
    lost: float = 6.0
    prior_weight: float = 2.0  # how many gaps the population's median gap counts for


def lifecycle(
    features: ir.Table, cuts: LifecycleCuts = LifecycleCuts(), by: str | None = None
) -> ir.Table:
    """new / active / at_risk / lapsed / lost, judged against each customer's own rhythm.

    The expected gap is the customer's mean time between purchase days, shrunk toward the
    median gap of all repeat customers (few gaps, more shrinkage). A one-time buyer is *new*
    while their tenure is within one typical gap, and is judged on the population gap after.

    When nobody has bought twice (a B2B funnel of won deals, a first month of data) there is no
    rhythm to learn: the typical gap is then the population's median recency, so stages are
    recency bands relative to the base (``lifecycle_basis`` says which was used), instead of
    calling every customer lost.
    """
    # Aggregates joined back, not windows: PostgreSQL has no windowed median.
    aggs = {
        "_median_gap": features.interpurchase_mean.median(),  # exact
        "_median_recency": features.recency_days.cast("float64").median(),
    }
    medians = features.group_by(by).aggregate(**aggs) if by else features.aggregate(**aggs)
    f = features.join(medians, [by]) if by else features.cross_join(medians)
    no_rhythm = f._median_gap.isnull()
    median_gap = f._median_gap.fill_null(ibis.greatest(f._median_recency, 1.0))
    n_gaps = (f.x.fill_null(0)).cast("float64")
    own = f.interpurchase_mean.fill_null(0.0)
    expected = (n_gaps * own + cuts.prior_weight * median_gap) / (n_gaps + cuts.prior_weight)
    ratio = f.recency_days.cast("float64") / ibis.greatest(expected, 1.0)
    stage = ibis.cases(
        ((n_gaps == 0) & (f.tenure_days <= median_gap), "new"),
        (ratio <= cuts.at_risk, "active"),
        (ratio <= cuts.lapsed, "at_risk"),
        (ratio <= cuts.lost, "lapsed"),
        else_="lost",
    )
    return f.select(
        "customer_id",
        *([by] if by else []),
        lifecycle_stage=stage,
        expected_gap_days=expected,
        recency_ratio=ratio,
        lifecycle_basis=ibis.ifelse(no_rhythm, "population_recency", "purchase_rhythm"),
    )


def lifecycle_note(features: ir.Table) -> tuple[str, str] | None:
    """A note (English, Spanish) when lifecycle stages could not use purchase rhythms."""
    repeat = features.aggregate(n=(features.x.fill_null(0) > 0).cast("int64").sum())
    if int(repeat.to_pyarrow().column(0)[0].as_py() or 0) > 0:
        return None
    return (
        "Nobody has bought twice yet, so there is no purchase rhythm to judge lifecycle "
        "stages by: they are recency bands against the median time since the last purchase "
        "(new: bought within it; lost: more than 6 times it).",
        "Nadie ha comprado dos veces todavía, así que no hay ritmo de compra con el que juzgar "
        "la etapa del ciclo de vida: son franjas de recencia frente a la mediana del tiempo "
        "desde la última compra (nuevo: compró dentro de ella; perdido: más de 6 veces).",
    )


def computed_once(t: ir.Table) -> ir.Table:
    """``t`` cached in the engine when it still aggregates raw lines.

    Every class reads the features three or four times; left as an expression, the engine would
    plan and run the whole feature computation that many times (on Spark, minutes for ten
    customers). The pipeline passes stored features, which are read as they are.
    """
    if t.op().find(ops.Aggregate):
        return t.cache()
    return t


def classify(
    features: ir.Table,
    *,
    clv: ir.Table | None = None,
    rules: Sequence[RfmRule] = RFM_RULES,
    tier_cuts: tuple[float, float] = (0.80, 0.95),
    tier_method: str = "revenue_share",
    score_cuts: tuple[float, float] = (12, 8),
    lifecycle_cuts: LifecycleCuts = LifecycleCuts(),
    by_date: bool = False,
) -> ir.Table:
    """The ``customer_classes`` rows for one ``as_of``: RFM, value tier, lifecycle, and with
    ``clv`` (the ``customer_clv`` rows) the potential tier and the value x potential grid.

    ``by_date`` classifies many ``as_of`` dates in one pass: every rank and share is computed
    within its own date (used by the history backfill; ``clv`` is not supported then).
    """
    by = "as_of" if by_date else None
    keys = ["customer_id", *([by] if by else [])]
    features = computed_once(features)
    out = rfm(features, rules, by)
    tiers = (
        score_tiers(out, score_cuts, by)
        if tier_method == "score"
        else value_tiers(features, tier_cuts, by)
    )
    out = _join(out, tiers, keys)
    out = _join(out, lifecycle(features, lifecycle_cuts, by), keys)
    if by_date:
        return out
    if clv is not None:
        out = out.left_join(potential_tiers(clv, tier_cuts), "customer_id").drop(
            "customer_id_right"
        )
        out = _alive_flags(out, clv, lifecycle_cuts)
        cells = [
            ((out.value_tier == v) & (out.potential_tier == p), names)
            for (v, p), names in GRID.items()
        ]
        none = ibis.null("string")
        new = out.potential_tier == "too_new"
        out = out.mutate(
            value_potential=ibis.cases(
                (new, "Too new to judge"), *((c, n[0]) for c, n in cells), else_=none
            ),
            value_potential_es=ibis.cases(
                (new, "Demasiado nuevos"), *((c, n[1]) for c, n in cells), else_=none
            ),
        )
    out = out.left_join(features.select("customer_id", "as_of"), "customer_id")
    return out.drop("customer_id_right")


def _alive_flags(out: ir.Table, clv: ir.Table, cuts: LifecycleCuts) -> ir.Table:
    """``alive_flag`` (and ``alive_flag_es``): the model says probably alive while the
    customer has been silent for more than ``cuts.lapsed`` times their own rhythm.

    BG/NBD-type models judge silence against the population's purchase rate, not the
    customer's own rhythm; when the two disagree this much, P(alive) should not be acted on
    alone (a "Star" that stopped buying months ago)."""
    if "p_alive" not in clv.columns:
        return out.mutate(alive_flag=ibis.null("string"), alive_flag_es=ibis.null("string"))
    # When the model could not identify dropout, p_alive is empty: the calibrated churn
    # probability says the same thing.
    alive = (
        clv.p_alive.fill_null(1 - clv.churn_probability)
        if "churn_probability" in clv.columns
        else clv.p_alive
    )
    j = out.left_join(clv.select("customer_id", p_alive=alive), "customer_id").drop(
        "customer_id_right"
    )
    # One decimal written from integers: engines print a rounded float differently ("3.0" on
    # DuckDB, "3" on PostgreSQL), and this text reaches people.
    tenths = (j.recency_ratio * 10).round().cast("int64")
    whole, tenth = (tenths // 10).cast("string"), (tenths % 10).cast("string")
    times, veces = whole + "." + tenth, whole + "," + tenth  # 3.5x / 3,5 veces
    silent = (j.p_alive >= 0.5) & (j.recency_ratio > cuts.lapsed)
    none = ibis.null("string")
    return j.mutate(
        alive_flag=ibis.ifelse(
            silent,
            "silent " + times + "x their usual gap between purchases: P(alive) is not trusted",
            none,
        ),
        alive_flag_es=ibis.ifelse(
            silent,
            "sin comprar " + veces + " veces su intervalo habitual: P(activo) no es fiable",
            none,
        ),
    ).drop("p_alive")


def _join(a: ir.Table, b: ir.Table, keys: list[str]) -> ir.Table:
    j = a.left_join(b, keys)
    return j.drop(*[f"{k}_right" for k in keys if f"{k}_right" in j.columns])
