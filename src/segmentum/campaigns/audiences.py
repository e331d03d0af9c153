"""Tactical audiences: who should get a campaign, and why, one builder per tactic.

Every builder returns an Ibis table ``(customer_id, reason, priority)`` computed in the engine
from the customer view (features, classes, CLV, profile): the reason is a sentence a marketer
can read, the priority orders the audience (highest first).

- ``retention``: valuable customers (high value tier, or a Stars / Maintain / Grow cell) whose
  churn risk is high and rising (compared with the previous CLV run when there is one).
- ``winback``: lapsed or lost customers who were valuable (high or medium value tier).
- ``cross_sell``: customers who bought X but not what is usually bought with X (association
  rules mined from baskets with FP-growth), with the next best item.
- ``up_sell``: customers whose ticket or frequency is below the median of their RFM segment and
  whose potential (predicted CLV) is high.
- ``acquisition``: prospects ranked by the look-alike model (``prospect_scores``).
- ``segment``: every member of a saved rule segment or a discovered cluster.
- ``detractors``: valuable customers whose latest NPS answer is 0-6, with what they said.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from segmentum.campaigns.fpgrowth import Rule, association_rules, basket_items, fpgrowth
from segmentum.errors import InputError
from segmentum.features.customer import window_lines
from segmentum.ingest.returns import links
from segmentum.models.cluster import sample_rows
from segmentum.segments.view import customer_view
from segmentum.warehouse import Warehouse

TACTICS = ("retention", "winback", "cross_sell", "up_sell", "acquisition", "segment", "detractors")


def _money(v: ir.NumericValue) -> ir.StringValue:
    return v.fill_null(0).round(0).cast("int64").cast("string")


def _pct(v: ir.NumericValue) -> ir.StringValue:
    return (v.fill_null(0) * 100).round(0).cast("int64").cast("string") + "%"


def retention(wh: Warehouse, as_of: _dt.date | None = None, min_risk: float = 0.5) -> ir.Table:
    v, as_of = customer_view(wh, as_of)
    if "churn_probability" not in v.columns:
        raise InputError("retention needs churn risk from the CLV models", "run: segmentum run")
    valuable = (v.value_tier == "high") | v.value_potential.isin(["Stars", "Maintain", "Grow"])
    prev_risk = ibis.null("float64")
    clv = wh.table("customer_clv")
    before = clv.filter(clv.as_of < ibis.literal(as_of, "date"))
    last = before.as_of.max().to_pyarrow().as_py()
    if last is not None:
        p = before.filter(before.as_of == ibis.literal(last, "date")).select(
            "customer_id", _prev_risk="churn_probability"
        )
        v = v.left_join(p, "customer_id").drop("customer_id_right")
        prev_risk = v._prev_risk
    rising = prev_risk.isnull() | (v.churn_probability > prev_risk)
    pick = v.filter(valuable & (v.churn_probability >= min_risk) & rising & (v.frequency > 0))
    was: ir.StringValue = ibis.literal("")
    if last is not None:
        was = ibis.ifelse(pick._prev_risk.isnull(), "", " (was " + _pct(pick._prev_risk) + ")")
    reason = (
        "valuable ("
        + pick.value_tier.fill_null("?")
        + " value, spent "
        + _money(pick.monetary)
        + "), churn risk "
        + _pct(pick.churn_probability)
        + was
    )
    return pick.select(
        "customer_id",
        reason=reason,
        priority=pick.monetary * pick.churn_probability,
        why_tier=pick.value_tier,
        why_spent=pick.monetary.cast("float64"),
        why_risk=pick.churn_probability.cast("float64"),
        why_was=pick._prev_risk.cast("float64") if last is not None else ibis.null("float64"),
    )


def winback(wh: Warehouse, as_of: _dt.date | None = None) -> ir.Table:
    v, _ = customer_view(wh, as_of)
    pick = v.filter(
        v.lifecycle_stage.isin(["lapsed", "lost"]) & v.value_tier.isin(["high", "medium"])
    )
    reason = (
        pick.lifecycle_stage
        + " after spending "
        + _money(pick.monetary)
        + " ("
        + pick.value_tier
        + " value); last purchase "
        + pick.recency_days.cast("string")
        + " days ago"
    )
    return pick.select(
        "customer_id",
        reason=reason,
        priority=pick.monetary,
        why_stage=pick.lifecycle_stage,
        why_spent=pick.monetary.cast("float64"),
        why_tier=pick.value_tier,
        why_days=pick.recency_days.cast("int64"),
    )


def up_sell(wh: Warehouse, as_of: _dt.date | None = None) -> ir.Table:
    v, _ = customer_view(wh, as_of)
    v = v.filter(v.frequency > 0)
    w = ibis.window(group_by=v.rfm_segment)
    v = v.mutate(
        _aov_med=v.avg_order_value.median().over(w), _freq_med=v.frequency.median().over(w)
    )
    high_potential = (v.potential_tier == "high") if "potential_tier" in v.columns else False
    low_ticket = v.avg_order_value < v._aov_med
    low_freq = v.frequency < v._freq_med
    pick = v.filter(high_potential & (low_ticket | low_freq))
    reason = (
        "high potential (CLV "
        + _money(pick.clv)
        + ") but "
        + ibis.ifelse(
            pick.avg_order_value < pick._aov_med,
            "ticket "
            + _money(pick.avg_order_value)
            + " below the "
            + pick.rfm_segment
            + " median "
            + _money(pick._aov_med),
            "frequency "
            + pick.frequency.cast("string")
            + " below the "
            + pick.rfm_segment
            + " median "
            + pick._freq_med.cast("int64").cast("string"),
        )
    )
    ticket = pick.avg_order_value < pick._aov_med
    return pick.select(
        "customer_id",
        reason=reason,
        priority=pick.clv.fill_null(0) - pick.monetary.fill_null(0),
        why_kind=ibis.ifelse(ticket, "ticket", "frequency"),
        why_clv=pick.clv.cast("float64"),
        why_value=ibis.ifelse(ticket, pick.avg_order_value, pick.frequency).cast("float64"),
        why_median=ibis.ifelse(ticket, pick._aov_med, pick._freq_med).cast("float64"),
        why_segment=pick.rfm_segment,
    )


@dataclass
class BasketRules:
    rules: list[Rule]
    baskets: int
    level: str


def mine_rules(
    wh: Warehouse,
    as_of: _dt.date,
    *,
    level: str = "category",
    min_support: float = 0.005,
    min_confidence: float = 0.05,
    sample: int = 200_000,
) -> BasketRules:
    """Association rules between items bought in the same invoice (a sample of invoices)."""
    if level not in ("category", "product_id"):
        raise InputError(f"unknown basket level {level!r}", "use category or product_id")
    # Baskets net of returns: a cancelled item is not in its basket.
    bought = basket_items(window_lines(wh.table("transactions"), as_of), links(wh), level)
    pairs = bought.select(customer_id=bought.invoice_id, item=bought.item).distinct()
    # sample_rows samples by the id column: here whole invoices, about `sample` of them.
    invoices = pairs.select("customer_id").distinct()
    kept = sample_rows(invoices, sample)
    chosen = wh.from_arrow(kept[["customer_id"]], "baskets")
    df = pairs.semi_join(chosen, "customer_id").to_pandas()
    baskets = df.groupby("customer_id")["item"].apply(list).tolist()
    itemsets, n = fpgrowth(baskets, min_support=min_support, max_len=3)
    return BasketRules(association_rules(itemsets, min_confidence, 1.0), n, level)


def cross_sell(
    wh: Warehouse,
    as_of: _dt.date | None = None,
    *,
    rules: BasketRules | None = None,
    level: str = "category",
) -> tuple[ir.Table, BasketRules]:
    """Customers who bought X but not Y where X -> Y is a strong rule; the best Y per customer."""
    v, as_of = customer_view(wh, as_of)
    rules = rules or mine_rules(wh, as_of, level=level)
    single = [r for r in rules.rules if len(r.antecedent) == 1 and r.lift > 1.0]
    if not single:
        raise InputError(
            "no association rule is strong enough to suggest a cross-sell",
            "lower the minimum support or use --level product_id",
        )
    rt = ibis.memtable(
        {
            "antecedent": [r.antecedent[0] for r in single],
            "consequent": [r.consequent for r in single],
            "confidence": [r.confidence for r in single],
            "lift": [r.lift for r in single],
        }
    )
    rt = wh.from_arrow(rt.to_pyarrow(), "rules")
    lines = window_lines(wh.table("transactions"), as_of)
    owned = basket_items(lines, links(wh), level).select("customer_id", "item").distinct()
    cand = owned.join(rt, owned.item == rt.antecedent).select(
        "customer_id", "antecedent", "consequent", "confidence", "lift"
    )
    # Never suggest what they already tried, even if they returned it.
    tried = lines.filter((lines.quantity > 0) & lines[level].notnull())
    has = tried.select("customer_id", consequent=tried[level]).distinct()
    cand = cand.anti_join(has, ["customer_id", "consequent"])
    w = ibis.window(
        group_by=cand.customer_id,
        order_by=[ibis.desc(cand.lift * cand.confidence), cand.consequent, cand.antecedent],
    )
    best = cand.mutate(_rk=ibis.row_number().over(w))
    best = best.filter(best._rk == 0)
    best = best.join(v.select("customer_id", "monetary"), "customer_id")
    reason = (
        "bought "
        + best.antecedent
        + " but never "
        + best.consequent
        + " (bought together "
        + best.lift.round(1).cast("string")
        + "x more often than chance)"
    )
    return (
        best.select(
            "customer_id",
            reason=reason,
            priority=best.lift * best.confidence * best.monetary.fill_null(0),
            recommendation=best.consequent,
            why_bought=best.antecedent,
            why_missing=best.consequent,
            why_lift=best.lift.cast("float64"),
        ),
        rules,
    )


def acquisition(wh: Warehouse, top: int | None = None) -> ir.Table:
    if not wh.has("prospect_scores"):
        raise InputError(
            "no prospects have been scored", "run: segmentum segment lookalike --target ..."
        )
    s = wh.table("prospect_scores")
    latest = s.filter(s.run_id == s.order_by(ibis.desc("as_of")).run_id.first())
    if top:
        latest = latest.filter(latest["rank"] <= top)
    return latest.select(
        customer_id="prospect_id",
        reason="looks like " + latest.target + ": " + latest.reasons,
        priority=latest.score,
        why_target=latest.target,
    )


def segment(wh: Warehouse, name: str, as_of: _dt.date | None = None) -> ir.Table:
    if name.startswith("cluster:"):
        c = wh.table("customer_clusters")
        cid = int(name.split(":", 1)[1])
        c = c.filter(c.run_id == c.order_by(ibis.desc("as_of")).run_id.first())
        c = c.filter(c.cluster == cid)
        return c.select(
            "customer_id",
            reason="in discovered segment " + c.cluster_name,
            priority=ibis.literal(0.0),
            why_kind=ibis.literal("cluster"),
            why_segment=c.cluster_name,
        )
    from segmentum.segments.store import Segments

    m = Segments(wh).members(name, as_of)
    return m.select(
        "customer_id",
        reason=ibis.literal(f"in segment {name}"),
        priority=ibis.literal(0.0),
        why_kind=ibis.literal("segment"),
        why_segment=ibis.literal(name),
    )


def build(wh: Warehouse, tactic: str, target: str = "", as_of: _dt.date | None = None) -> ir.Table:
    """The audience of a tactic: customer_id, reason, priority, recommendation and the facts
    behind the reason (``why_*`` columns, see :mod:`segmentum.campaigns.reasons`)."""
    if tactic == "retention":
        t = retention(wh, as_of)
    elif tactic == "winback":
        t = winback(wh, as_of)
    elif tactic == "up_sell":
        t = up_sell(wh, as_of)
    elif tactic == "cross_sell":
        t, _ = cross_sell(wh, as_of, level=target or "category")
        return t
    elif tactic == "acquisition":
        t = acquisition(wh)
    elif tactic == "detractors":
        # Valuable customers whose latest NPS is 0-6 (see segmentum.satisfaction.audience).
        from segmentum.satisfaction.audience import detractors

        t = detractors(wh, as_of)
    elif tactic == "segment":
        if not target:
            raise InputError("a segment campaign needs --target NAME (or cluster:N)")
        t = segment(wh, target, as_of)
    else:
        raise InputError(f"unknown tactic {tactic!r}", f"use one of {', '.join(TACTICS)}")
    return t.mutate(recommendation=ibis.null("string"))
