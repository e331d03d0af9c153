"""Valuable detractors as a retention audience: who said they would not recommend us, is worth
keeping, and what they told us.

A detractor is a customer whose latest NPS answer (within the window) is 0 to 6. Valuable means
a high value tier, or a predicted CLV in the top ``clv_share`` of customers. Each member comes
with the reason a marketer reads (score, date, latest comment, CLV) and the facts behind it
(``why_*`` columns), as every campaign audience does (:mod:`segmentum.campaigns.audiences`).
"""

from __future__ import annotations

import datetime as _dt

import ibis
import ibis.expr.types as ir

from segmentum.satisfaction.compute import WINDOW_DAYS, per_customer
from segmentum.segments.view import customer_view
from segmentum.warehouse import Warehouse

# Customers with a predicted CLV in this top share count as valuable.
CLV_SHARE = 0.2
# A comment longer than this is cut in the reason (the whole text stays in the facts).
QUOTE_CHARS = 120


def detractors(
    wh: Warehouse,
    as_of: _dt.date | None = None,
    clv_share: float = CLV_SHARE,
    window_days: int | None = WINDOW_DAYS,
) -> ir.Table:
    """``(customer_id, reason, priority, why_*)`` of valuable detractors, in the engine.

    Priority is the customer's CLV (spend when no CLV was computed): the most valuable first.
    """
    v, as_of = customer_view(wh, as_of)
    s = per_customer(wh, as_of, window_days)
    s = s.filter(s.last_nps <= 6)
    j = v.join(s, "customer_id")
    worth = j.clv if "clv" in j.columns else j.monetary
    j = j.mutate(_worth=worth.cast("float64").fill_null(0.0))
    # The top share of every customer's CLV, not of the detractors' (the value tier beside
    # it is judged against everybody too).
    cut = v.aggregate(q=v.clv.quantile(1 - clv_share)) if "clv" in v.columns else None
    valuable = j.value_tier == "high"
    if cut is not None:
        j = j.cross_join(cut)
        valuable = valuable | (j._worth >= j.q)
    pick = j.filter(valuable.fill_null(False))
    said = pick.last_comment.substr(0, QUOTE_CHARS)
    reason = (
        "detractor (NPS "
        + pick.last_nps.cast("string")
        + " on "
        + pick.last_response_at.date().cast("string")
        + ")"
        + ibis.ifelse(pick.last_comment.isnull(), "", ': "' + said + '"')
        + ", CLV "
        + pick._worth.round(0).cast("int64").cast("string")
        + " ("
        + pick.value_tier.fill_null("?")
        + " value)"
    )
    return pick.select(
        "customer_id",
        reason=reason,
        priority=pick._worth,
        why_nps=pick.last_nps.cast("int64"),
        why_when=pick.last_response_at.date().cast("string"),
        why_comment=pick.last_comment,
        why_clv=pick._worth,
        why_tier=pick.value_tier,
    )
