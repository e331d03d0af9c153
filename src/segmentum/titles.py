"""Column names as people read them, in either language: table headers, lookup fields, the
features a segment's description cites. The library's texts (a profile's description) and the
dashboard share them."""

from __future__ import annotations

import functools
from collections.abc import Callable

from segmentum import i18n


def column_titles(_: Callable[[str], str]) -> dict[str, str]:
    """Table headers and lookup field names in the page's language."""
    return {
        "customer_id": _("Customer"),
        "customers": _("Customers"),
        "revenue": _("Revenue"),
        "revenue_share": _("Revenue share"),
        "customer_share": _("Customer share"),
        "segment": _("Segment"),
        "name": _("Name"),
        "rule": _("Rule"),
        "frequency": _("Purchases"),
        "monetary": _("Spend"),
        "recency_days": _("Days since last purchase"),
        "tenure_days": _("Days as a customer"),
        "avg_order_value": _("Average order"),
        "promo_share": _("Bought on promotion"),
        "return_rate": _("Return rate"),
        "top_category": _("Top category"),
        "preferred_channel": _("Preferred channel"),
        "preferred_device": _("Preferred device"),
        "preferred_hour_band": _("Preferred time of day"),
        "rfm_segment": _("RFM segment"),
        "rfm_segment_es": _("RFM segment (Spanish)"),
        "rfm_code": _("RFM code"),
        "value_tier": _("Value tier"),
        "lifecycle_stage": _("Lifecycle stage"),
        "potential_tier": _("Potential tier"),
        "value_potential": _("Value x potential"),
        "value_potential_es": _("Value x potential (Spanish)"),
        "clv_status": _("CLV status"),
        "p_alive": _("Probability still active"),
        "churn_probability": _("Churn probability"),
        "expected_purchases": _("Expected purchases (12 months)"),
        "clv": _("Customer lifetime value"),
        "expected_next_purchase": _("Next purchase, if still active"),
        "age_band": _("Age band"),
        "gender": _("Gender"),
        "country": _("Country"),
        "region": _("Region"),
        "state": _("State or province"),
        "city": _("City"),
        "age": _("Age"),
        "income_band": _("Income band"),
        "trend": _("Trend"),
        "interpurchase_mean": _("Days between purchases"),
        "best_hour_band": _("Best time of day"),
        "best_weekday": _("Best weekday"),
        "best_device": _("Best device"),
        "best_channel": _("Best channel"),
        "segments": _("Saved segments"),
        "cluster_name": _("Cluster"),
        "cluster_name_es": _("Cluster (Spanish)"),
        "as_of": _("As of"),
        "feature": _("Feature"),
        "test": _("Test"),
        "effect": _("Effect size"),
        "q": _("q (adjusted p)"),
        "rest": _("Everyone else"),
        "outcome": _("Outcome"),
        "when": _("When"),
        "why": _("Why"),
        "subject": _("Subject"),
        "campaign": _("Campaign"),
        "tactic": _("Tactic"),
        "channel": _("Channel"),
        "treated": _("Treated"),
        "control": _("Control"),
        "uplift": _("Uplift"),
        "p": _("p-value"),
        "roi": _("Return on investment"),
        "run_id": _("Run"),
        "started_at": _("Started"),
        "status": _("Status"),
        "failed_step": _("Failed step"),
        "error": _("Error"),
        "batch_id": _("Batch"),
        "table_name": _("Table"),
        "file": _("File"),
        "rows_read": _("Rows read"),
        "accepted": _("Accepted"),
        "quarantined": _("Rejected"),
        "anonymous": _("Anonymous"),
        "duplicates": _("Duplicates"),
        "loaded_at": _("Loaded"),
        "source_row": _("Row"),
        "column": _("Column"),
        "value": _("Value"),
        "reason": _("Reason"),
        "now": _("Now"),
        "email": _("Email"),
        "first_name": _("First name"),
        "last_name": _("Last name"),
        "phone": _("Phone"),
        "own": _("Only here"),
        "avg_clv": _("Average CLV"),
        "persona": _("Persona"),
        "size": _("Size"),
        "from": _("From"),
        "to": _("To"),
        "change": _("Change"),
        "state_from": _("Before"),
        "state_to": _("After"),
        "spend": _("Spend between the dates"),
        "lifetime_spend": _("Lifetime spend"),
        "preferred_weekday": _("Preferred weekday"),
        "tags": _("Lifestyle"),
    }


@functools.cache
def _titles(lang: str) -> dict[str, str]:
    return column_titles(i18n.translations(lang).ugettext)


def column_title(lang: str, column: str) -> str:
    """``recency_days`` as ``Días desde la última compra`` / ``Days since last purchase``;
    a column without a title as its words (``orders_90d`` -> ``orders 90d``)."""
    return _titles(lang).get(column, column.replace("_", " "))
