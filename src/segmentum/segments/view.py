"""The customer view: one row per customer with everything a segment rule may use.

It joins, in the engine, the stored features, classes and CLV of one ``as_of`` date with the
customer profile (demographics, geography, lifestyle tags, consent), adds age and age band, and
never carries contact data itself (only whether an email or phone is known). The account view
aggregates it per company for B2B segments.
"""

from __future__ import annotations

import datetime as _dt

import ibis
import ibis.expr.types as ir

from segmentum.errors import WarehouseError
from segmentum.warehouse import Warehouse

AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64))
PROFILE_COLUMNS = (
    "gender",
    "country",
    "region",
    "state",
    "city",
    "postal_code",
    "neighbourhood",
    "signup_date",
    "acquisition_channel",
    "income_band",
    "occupation",
    "tags",
    "timezone",
    "company_id",
    "company",
    "industry",
    "employees",
    "annual_revenue",
    "consent_email",
    "consent_sms",
    "consent_push",
    "consent_inapp",
    "consent_web",
    "consent_ads",
)
CLASS_COLUMNS = (
    "r_score",
    "f_score",
    "m_score",
    "rfm_code",
    "rfm_segment",
    "rfm_segment_es",
    "value_tier",
    "lifecycle_stage",
    "potential_tier",
    "value_potential",
    "value_potential_es",
    "lifecycle_basis",
    "alive_flag",
    "alive_flag_es",
)
CLV_COLUMNS = (
    "clv_status",
    "p_alive",
    "churn_probability",
    "churn_source",
    "purchase_model",
    "spend_basis",
    "expected_purchases",
    "expected_spend",
    "clv",
    "expected_next_purchase",
)
GEO_LEVELS = ("country", "region", "state", "city", "neighbourhood")


def latest_as_of(wh: Warehouse) -> _dt.date:
    """The most recent ``as_of`` with stored features."""
    if not wh.has("customer_features"):
        raise WarehouseError(
            "there are no customer features yet", "run the pipeline first: segmentum run"
        )
    value = wh.table("customer_features").as_of.max().to_pyarrow().as_py()
    if value is None:
        raise WarehouseError("customer_features is empty", "run the pipeline: segmentum run")
    return value


def age_band(age: ir.NumericValue) -> ir.StringValue:
    """'18-24', '25-34', ... '65+' ('<18' below, NULL when unknown)."""
    cases = [(age < 18, "<18")] + [(age.between(lo, hi), f"{lo}-{hi}") for lo, hi in AGE_BANDS]
    return ibis.cases(*cases, (age >= 65, "65+"), else_=ibis.null("string"))


def _at(wh: Warehouse, name: str, as_of: _dt.date, cols: tuple[str, ...]) -> ir.Table | None:
    if not wh.has(name):
        return None
    t = wh.table(name)
    t = t.filter(t.as_of == ibis.literal(as_of, "date"))
    keep = [c for c in cols if c in t.columns]
    return t.select("customer_id", *keep)


def customer_view(
    wh: Warehouse,
    as_of: _dt.date | None = None,
    *,
    features: ir.Table | None = None,
    with_clv: bool = True,
) -> tuple[ir.Table, _dt.date]:
    """Features, classes, CLV and profile of every customer as of ``as_of`` (default: latest).

    Customers in the profile table who never bought are included, with frequency and monetary 0.
    ``features`` replaces the stored features (the history backfill passes its own summary).
    """
    if features is None:
        as_of = as_of or latest_as_of(wh)
        feats = wh.table("customer_features")
        feats = feats.filter(feats.as_of == ibis.literal(as_of, "date")).drop("as_of", "run_id")
    else:
        if as_of is None:
            raise ValueError("as_of is required with features")
        feats = features
    ids = feats.select("customer_id")
    profile = wh.table("customers") if wh.has("customers") else None
    if profile is not None:
        ids = ids.union(profile.select("customer_id"), distinct=True)
    view = ids.left_join(feats, "customer_id").drop("customer_id_right")
    view = view.mutate(frequency=view.frequency.fill_null(0), monetary=view.monetary.fill_null(0.0))
    parts: list[tuple[str, tuple[str, ...]]] = [("customer_classes", CLASS_COLUMNS)]
    if with_clv:
        parts.append(("customer_clv", CLV_COLUMNS))
    for name, cols in parts:
        part = _at(wh, name, as_of, cols)
        if part is not None:
            view = view.left_join(part, "customer_id").drop("customer_id_right")
    if wh.has("responses"):
        # Survey answers as attributes: nps / csat (mean of the last 12 months), last_nps.
        from segmentum.satisfaction.compute import per_customer

        sat = per_customer(wh, as_of).select("customer_id", "nps", "csat", "last_nps")
        view = view.left_join(sat, "customer_id").drop("customer_id_right")
    if profile is not None:
        p = profile
        end = ibis.literal(as_of, "date")
        born = p.birth_date
        years = (end.year() - born.year()) - ibis.ifelse(
            (end.month() < born.month())
            | ((end.month() == born.month()) & (end.day() < born.day())),
            1,
            0,
        )
        age = ibis.coalesce(years.cast("int64"), p.age.cast("int64"))
        keep = {c: p[c] for c in PROFILE_COLUMNS if c in p.columns}
        prof = p.select(
            "customer_id",
            age=age,
            has_email=p.email.notnull() & (p.email.strip() != ""),
            has_phone=p.phone.notnull() & (p.phone.strip() != ""),
            in_profile=ibis.literal(True),
            **keep,
        )
        prof = prof.mutate(age_band=age_band(prof.age))
        view = view.left_join(prof, "customer_id").drop("customer_id_right")
        view = view.mutate(in_profile=view.in_profile.fill_null(False))
    return view, as_of


def account_view(customers: ir.Table) -> ir.Table:
    """One row per company: firmographics and the aggregated behaviour of its contacts."""
    v = customers.filter(customers.company_id.notnull())
    agg = {
        "company": v.company.arbitrary() if "company" in v.columns else None,
        "industry": v.industry.arbitrary() if "industry" in v.columns else None,
        "employees": v.employees.max() if "employees" in v.columns else None,
        "annual_revenue": v.annual_revenue.max() if "annual_revenue" in v.columns else None,
        "country": v.country.arbitrary() if "country" in v.columns else None,
        "contacts": v.count(),
        "buying_contacts": v.count(where=v.frequency > 0),
        "revenue": v.monetary.sum(),
        "frequency": v.frequency.sum(),
        "recency_days": v.recency_days.min(),
        "avg_order_value": v.monetary.sum() / ibis.greatest(v.frequency.sum(), 1),
    }
    if "clv" in v.columns:
        agg["clv"] = v.clv.sum()
        agg["p_alive"] = v.p_alive.max()
    return v.group_by("company_id").aggregate(**{k: e for k, e in agg.items() if e is not None})
