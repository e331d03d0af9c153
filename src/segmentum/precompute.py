"""What the API and the dashboard read, precomputed by the pipeline so pages stay fast.

``build_lookup`` writes ``customer_lookup``: one row per customer (features, classes, CLV and
churn, best time and channel, saved segments, discovered segment), sorted by id so a point
lookup reads one small block. ``build_overview`` writes ``dashboard_cache``: the aggregates
of every dashboard page as JSON, per ``as_of``. ``publish_read_models`` copies both (the
``READ_MODELS``) into the serving store that the service reads (:mod:`segmentum.serving`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
from collections.abc import Collection
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from segmentum.config import Settings, load_settings
from segmentum.errors import SegmentumError
from segmentum.segments.view import customer_view
from segmentum.serving import Published, publish, published_before, refresh, serving_path
from segmentum.warehouse import Warehouse

LOOKUP = "customer_lookup"
# The classes the overview shows as shares of the buyers.
SHARES = ("rfm_segment", "value_tier", "lifecycle_stage", "value_potential")
CACHE = "dashboard_cache"
# What the service reads on the request path, with the key each is sorted and indexed on.
# realtime_history: each customer's recent orders, for the live segment rules (segmentum.realtime).
READ_MODELS: dict[str, str | None] = {
    LOOKUP: "customer_id",
    CACHE: None,
    "realtime_history": "customer_id",
}
# Read models also published as one JSON document per key, for the API's point lookups.
DOCUMENTS: dict[str, str] = {LOOKUP: "customer_id", "realtime_history": "customer_id"}
# The lookup's columns that move every day for nearly every customer (the days since the first
# and the last purchase grow, and the model scores with them): the lookup holds them last, and
# its documents keep them apart, so that a day's publish writes the rest of a document only for
# the customers it changed (serving._write_documents).
LOOKUP_DAILY = (
    "recency_days",
    "tenure_days",
    "p_alive",
    "churn_probability",
    "expected_purchases",
    "clv",
    "expected_next_purchase",
    "as_of",
)


def publish_read_models(
    wh: Warehouse,
    settings: Settings | None = None,
    run_id: str | None = None,
    *,
    changed: ir.Table | None = None,
    since: _dt.date | None = None,
    last_run: str | None = None,
    only: Collection[str] | None = None,
    documents_anew: bool = False,
) -> Published | None:
    """Publish the ``READ_MODELS`` of ``wh`` into its serving store (None when it has none:
    an in-memory, Spark or PostgreSQL warehouse without the ``serving_store`` setting).
    ``changed``, ``since`` and ``last_run``: an incremental run's changed customers, the last
    run's date and id. Only those customers' page rows are rebuilt
    (:func:`segmentum.page_models.build_page_models`), and when the serving store still holds
    the last run's generation, only their rows are copied into the next one.

    ``only``: a command that changed no invoice lines, events or customers (a history
    backfill, the market, satisfaction) names the page models it changed; only those are
    built again, and every table the serving store already holds unchanged is kept there,
    with the lookup's documents (:func:`segmentum.serving.publish`, ``reuse``).

    ``documents_anew``: no document kept from the last generation's files (``segmentum
    forget``)."""
    from segmentum.page_models import ACTIVITY, INVOICES, PAGE_MODELS, build_page_models, page_keys
    from segmentum.realtime.sync import build_history, sync

    settings = settings or load_settings()
    keys = page_keys(wh, changed, since) if changed is not None and since is not None else None
    target = serving_path(wh.url, settings.serving_store)
    if only is not None and (target is None or not published_before(target)):
        only = None  # nothing published yet (or no store): every read model, as a run does
    try:
        # Written even without a serving store: the service then reads them in the warehouse.
        build_page_models(wh, keys, only=only)
        if target is None:
            return None
        if only is None:  # the live rules' history comes from the lines
            with contextlib.suppress(SegmentumError):  # no usable sales: the live rules see none
                build_history(wh, settings)
        # Kept in parts in the serving store (serving._PARTS), synced by key after a run that
        # follows the last published one; None: copied whole.
        keyed = dict.fromkeys((INVOICES, ACTIVITY), keys if last_run else None)
        out = publish(
            wh,
            target,
            {**READ_MODELS, **PAGE_MODELS},
            run_id=run_id,
            documents=DOCUMENTS,
            keyed=keyed,
            base_run=last_run,
            reuse=only is not None,
            presorted=(LOOKUP,),  # build_lookup writes it sorted by id
            daily={LOOKUP: LOOKUP_DAILY},
            documents_anew=documents_anew,
        )
    finally:
        if keys is not None:
            wh.drop(keys.get_name())
    sync(wh, settings)  # the live side's copy of the segments and webhook subscriptions
    return out


def refresh_published(wh: Warehouse, settings: Settings | None = None) -> list[str]:
    """Bring what a command changed into the serving store of a Spark warehouse, whose pages
    read the published copy (a Spark job per request would take seconds): a segment saved or
    computed, a campaign created or sent, a file loaded. Only the read models it changed are
    copied (the campaigns' and the quarantine's pages built again first); a change to the
    customers' own rows publishes everything, as a run does. Nothing for other engines (their
    pages read the warehouse), before the first publish, or when nothing changed. Returns the
    tables published."""
    from segmentum.campaigns.sendlog import SENDS
    from segmentum.page_models import (
        CAMPAIGN_PAGES,
        PAGE_MODELS,
        QUARANTINE_RECENT,
        SMS_STATUS,
        build_page_models,
    )

    if wh.engine != "pyspark" or wh.read_only or not wh.changed:
        return []
    settings = settings or load_settings()
    target = serving_path(wh.url, settings.serving_store)
    if target is None or str(target).startswith(("postgres://", "postgresql://")):
        return []
    if not published_before(target):
        return []
    changed = set(wh.changed)
    if changed & set(DOCUMENTS):
        published = publish_read_models(wh, settings)
        return sorted(published.tables) if published is not None else []
    derived = {
        CAMPAIGN_PAGES: {"campaigns", SENDS, "campaign_results"},
        QUARANTINE_RECENT: {"quarantine"},
        SMS_STATUS: {SENDS, "sms_receipts"},
    }
    build_page_models(wh, only=[m for m, sources in derived.items() if changed & sources])
    names = set(wh.changed) & (set(READ_MODELS) | set(PAGE_MODELS))
    if names:
        refresh(wh, target, names)
    wh.changed.clear()
    return sorted(names)


def build_lookup(wh: Warehouse, as_of: _dt.date | None = None, *, indexed: bool = True) -> int:
    """Write ``customer_lookup`` for ``as_of``; returns its rows. ``indexed``: a DuckDB
    warehouse also indexes it on the id, for the service's point lookups there. A run whose
    warehouse publishes a serving store passes False: the service reads the store's copy
    (indexed there), and the warehouse's index cost a second of every run (870,000 rows)."""
    view, as_of = customer_view(wh, as_of)
    keep = [
        c
        for c in (
            "customer_id",
            "frequency",
            "monetary",
            "recency_days",
            "tenure_days",
            "avg_order_value",
            "promo_share",
            "return_rate",
            "top_category",
            "preferred_channel",
            "preferred_device",
            "rfm_segment",
            "rfm_segment_es",
            "rfm_code",
            "value_tier",
            "lifecycle_stage",
            "potential_tier",
            "value_potential",
            "value_potential_es",
            "clv_status",
            "p_alive",
            "churn_probability",
            "churn_source",
            "alive_flag",
            "alive_flag_es",
            "purchase_model",
            "expected_purchases",
            "clv",
            "expected_next_purchase",
            "age_band",
            "gender",
            "country",
            "region",
            "city",
            "age",
            "income_band",
            "trend",
            "interpurchase_mean",
            "preferred_hour_band",
        )
        if c in view.columns
    ]
    # Computed once into a table before the joins below: joined as an expression, the wide
    # view's plan held more than a 1GB memory limit at 870,000 customers (out of memory).
    t = wh.materialize(view.select(*keep), "lookup")
    # The other parts (contact times, saved segments, discovered segment) are joined to the
    # ids first, narrow, one join a statement, and then to the wide base in one 1:1 join:
    # joined to the base one by one, the plan held more than a 4GB limit at 8.7M customers
    # (600MB at 870,000); the three narrow joins in one statement still held three hash
    # tables of 8.7M rows at once (out of memory at 8.7M customers, 4GB).
    parts: list[ir.Table] = []
    if wh.has("contact_times"):
        ct = wh.table("contact_times")
        ct = ct.filter(ct.as_of == ct.as_of.max()).select(
            "customer_id", "best_hour_band", "best_weekday", "best_device", "best_channel"
        )
        parts.append(ct)
    if wh.has("segment_members"):
        m = wh.table("segment_members")
        m = m.filter(m.as_of == ibis.literal(as_of, "date"))
        # collect() then sort(): Spark cannot order an order-sensitive aggregate (issue 18).
        parts.append(m.group_by("customer_id").aggregate(segments=m.segment.collect().sort()))
    if wh.has("customer_clusters"):
        c = wh.table("customer_clusters")
        parts.append(
            c.filter(c.as_of == ibis.literal(as_of, "date")).select(
                "customer_id", "cluster_name", "cluster_name_es"
            )
        )
    extra: ir.Table | None = None
    for part in parts:
        base = t.select("customer_id") if extra is None else extra
        staged = wh.materialize(
            base.left_join(part, "customer_id").drop("customer_id_right"), "lookup_extra"
        )
        if extra is not None:
            wh.drop(extra.get_name())
        extra = staged
    if extra is not None:
        t = t.left_join(extra, "customer_id").drop("customer_id_right")
    t = t.mutate(as_of=ibis.literal(as_of, "date"))
    # What moves every day last (LOOKUP_DAILY): a document's part that changes only with the
    # customer comes first, in one piece.
    t = t.select(
        *[c for c in t.columns if c not in LOOKUP_DAILY],
        *[c for c in LOOKUP_DAILY if c in t.columns],
    ).order_by("customer_id")
    # Written whole every run, one copy kept: FSST's analysis cost a fifth of the write (1.8
    # -> 1.5 s at 870,000 customers).
    with wh.without_fsst():
        out = wh.write(LOOKUP, t)
    if indexed and wh.url.startswith("duckdb"):
        # An ART index makes a point lookup read a few blocks instead of scanning the table.
        wh.con.raw_sql(f"CREATE INDEX IF NOT EXISTS {LOOKUP}_id ON {LOOKUP} (customer_id)")
    return int(out.count().to_pyarrow().as_py())


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, _dt.date | _dt.datetime):
        return v.isoformat()
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def customer_lookup(svc: Any, customer_id: str) -> dict[str, Any] | None:
    """One customer of ``customer_lookup``, as the service reads it (the serving store when
    published, else the warehouse)."""
    found: dict[str, Any] | None = svc.customer(customer_id)
    return found


def lookup_row(cur: Any, placeholder: str, customer_id: str) -> dict[str, Any] | None:
    """One row of ``customer_lookup`` through a raw DB-API cursor (a parameterised point
    query: a millisecond, no Ibis compilation on the request path)."""
    res = cur.execute(f"select * from {LOOKUP} where customer_id = {placeholder}", [customer_id])
    row = res.fetchone()
    if row is None:
        return None
    cols = [d[0] for d in res.description]
    return {c: _clean(v) for c, v in zip(cols, row, strict=True)}


def _shares(t: Any, column: str) -> list[dict[str, Any]]:
    g = t.group_by(column).aggregate(customers=t.count(), revenue=t.monetary.sum())
    rows = g.order_by(ibis.desc("revenue")).to_pyarrow().to_pylist()
    total_c = sum(r["customers"] for r in rows) or 1
    total_r = sum((r["revenue"] or 0) for r in rows) or 1
    return [
        {
            "name": r[column],
            "customers": r["customers"],
            "revenue": r["revenue"] or 0.0,
            "customer_share": r["customers"] / total_c,
            "revenue_share": (r["revenue"] or 0.0) / total_r,
        }
        for r in rows
    ]


def _histogram(t: Any, column: str, bins: int = 20, log: bool = False) -> dict[str, Any]:
    # NaN is not a value to count (a model that could not score a customer may leave one).
    f = t.filter(t[column].notnull())
    f = f.filter(~f[column].cast("float64").isnan())
    v = f[column].cast("float64")
    v = (ibis.greatest(v, 0.0) + 1.0).ln() if log else v
    s = f.aggregate(lo=v.min(), hi=v.max()).to_pyarrow().to_pylist()[0]
    lo, hi = s["lo"], s["hi"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return {"edges": [], "counts": []}
    width = (hi - lo) / bins
    # Clamped at both ends: on Spark the values are computed again for this query, and a sum
    # added up in another order can land a hair below the minimum read above (a -1 bin once
    # overwrote the last bin's count).
    b = ibis.greatest(ibis.least(((v - lo) / width).floor().cast("int64"), bins - 1), 0)
    g = f.group_by(bin=b).aggregate(n=f.count())
    counts = [0] * bins
    for r in g.to_pyarrow().to_pylist():
        counts[int(r["bin"])] = int(r["n"])
    edges = [lo + i * width for i in range(bins + 1)]
    if log:
        edges = [math.exp(e) - 1.0 for e in edges]
    return {"edges": edges, "counts": counts}


def build_overview(wh: Warehouse, as_of: _dt.date | None = None) -> dict[str, Any]:
    """Every dashboard aggregate, stored as JSON in ``dashboard_cache``."""
    from segmentum.segments.micro import (
        BEHAVIOUR_DIMENSIONS,
        DEFAULT_DIMENSIONS,
        PERSONA,
        drilldown,
        micro_segments,
    )
    from segmentum.segments.view import GEO_LEVELS

    view, as_of = customer_view(wh, as_of)
    columns = sorted(view.columns)  # what rules and pages may use (the builder offers these)
    # Computed once, with only the columns read below: the aggregates, the geography and the
    # micro-segments then read one narrow table instead of joining the view again.
    used = {"customer_id", "frequency", "monetary", "r_score", "f_score", "clv", "tags"}
    used |= {
        *SHARES,
        "churn_probability",
        *GEO_LEVELS,
        *DEFAULT_DIMENSIONS,
        *BEHAVIOUR_DIMENSIONS,
        *PERSONA,
    }
    view = wh.materialize(view.select(*[c for c in view.columns if c in used]), "overview")
    # The buyers are nearly everybody: filtered as each aggregate reads them, not copied.
    buyers = view.filter(view.frequency > 0)
    totals = buyers.aggregate(n=buyers.count(), revenue=buyers.monetary.sum()).to_pyarrow()
    tot = totals.to_pylist()[0]
    out: dict[str, Any] = {
        "columns": columns,
        "as_of": as_of.isoformat(),
        "customers": int(tot["n"]),
        "revenue": float(tot["revenue"] or 0.0),
    }
    for col in SHARES:
        if col in buyers.columns:
            out[col] = _shares(buyers, col)
    if "r_score" in buyers.columns:
        g = buyers.group_by(["r_score", "f_score"]).aggregate(
            customers=buyers.count(), revenue=buyers.monetary.sum()
        )
        # In a stated order: engines hand groups back in any order (Spark's differs).
        out["rfm_heatmap"] = g.order_by(["r_score", "f_score"]).to_pyarrow().to_pylist()
    if "clv" in buyers.columns:
        out["clv_histogram"] = _histogram(buyers, "clv", log=True)
        out["churn_histogram"] = _histogram(buyers, "churn_probability")
    if wh.has("segment_members"):
        m = wh.table("segment_members")
        m = m.filter(m.as_of == ibis.literal(as_of, "date"))
        out["segments"] = (
            m.group_by("segment")
            .aggregate(customers=m.count())
            .order_by("segment")
            .to_pyarrow()
            .to_pylist()
        )
    if wh.has("customers"):
        with contextlib.suppress(SegmentumError):  # no geography columns
            out["geography"] = drilldown(wh, as_of=as_of, view=view)
    with contextlib.suppress(SegmentumError):
        # The default tree: place and age, or the classes without a customers file.
        out["micro"] = micro_segments(
            wh,
            None,
            min_size=load_settings().micro_segment_min_size,
            as_of=as_of,
            store=False,
            view=view,
        ).to_dict()
    out["profiles"] = _segment_profiles(wh, as_of)
    from segmentum.campaigns.core import Campaigns

    # The currency amounts are in, for the pages (read from here, not from the warehouse).
    out["currency"] = Campaigns(wh).currency
    out.update(_history(wh))
    row = pa.table(
        {
            "as_of": pa.array([as_of], pa.date32()),
            "payload": [json.dumps(out, default=str)],
        }
    )
    if wh.has(CACHE):
        c = wh.table(CACHE)
        kept = wh.materialize(c.filter(c.as_of != ibis.literal(as_of, "date")), "cache")
        wh.write(CACHE, wh.materialize(kept.union(wh.from_arrow(row, "cachenew")), "cache2"))
    else:
        wh.write(CACHE, row)
    return out


def _segment_profiles(wh: Warehouse, as_of: _dt.date) -> dict[str, Any]:
    """The explorer's profile of every saved customer segment (members against the rest).

    One sample of customers and one read of their memberships serve every segment (the same
    hash sample ``profile_labels`` draws), so the cost does not grow with the number of segments.
    """
    from segmentum.models.cluster import sample_rows
    from segmentum.segments.discover import PROFILE_CATEGORICAL, PROFILE_NUMERIC, _profile_source
    from segmentum.segments.profile import profile_segments
    from segmentum.segments.store import Segments

    out: dict[str, Any] = {}
    if not wh.has("segment_members"):
        return out
    rules = {s.name: s.rule for s in Segments(wh).list() if s.level == "customer"}
    names = list(rules)
    if not names:
        return out
    view = _profile_source(wh, as_of)
    keep = [c for c in ["customer_id", *PROFILE_NUMERIC, *PROFILE_CATEGORICAL] if c in view.columns]
    df = sample_rows(view.filter(view.frequency > 0).select(*keep), 20_000)
    if df.empty:
        return out
    ids = wh.from_arrow(pa.table({"customer_id": df.customer_id.astype(str)}), "sampled")
    m = wh.table("segment_members")
    m = m.filter(m.as_of == ibis.literal(as_of, "date")).select("segment", "customer_id")
    m = m.semi_join(ids, "customer_id")
    members: dict[str, set[str]] = {}
    for row in m.to_pyarrow().to_pylist():
        members.setdefault(row["segment"], set()).add(row["customer_id"])
    numeric = [c for c in PROFILE_NUMERIC if c in df.columns]
    categorical = [c for c in PROFILE_CATEGORICAL if c in df.columns]
    shared: dict[str, Any] = {}  # the sample's columns, prepared once for every segment
    for name in names:
        inside = df.customer_id.isin(members.get(name, set()))
        labelled = df.assign(segment=np.where(inside, "in", "out"))
        try:
            prof = profile_segments(
                labelled, "segment", numeric, categorical, min_size=50, shared=shared
            )
        except (SegmentumError, ValueError):
            continue  # too small to split
        # With the rule it describes: a segment edited since is profiled again when shown.
        out[name] = {**prof.to_dict(), "rule": rules[name]}
    return out


def _history(wh: Warehouse) -> dict[str, Any]:
    """The migration page's default view: value tiers from a month before the newest snapshot
    (:func:`~segmentum.history.snapshots.month_before`) to the newest, and the
    forecast of value tiers."""
    from segmentum.history.cohorts import forecast
    from segmentum.history.migration import migration
    from segmentum.history.snapshots import month_before, snapshot_dates

    dates = snapshot_dates(wh)
    if len(dates) < 2:
        return {}
    start = month_before(dates)
    out: dict[str, Any] = {"migration": migration(wh, start, dates[-1], "value_tier").to_dict()}
    with contextlib.suppress(SegmentumError):  # too few snapshots to backtest
        out["forecast"] = forecast(wh, "value_tier").to_dict()
    return out


def cached_profile(wh: Warehouse, name: str) -> dict[str, Any] | None:
    """The profile the last run cached for saved segment ``name``, when the segment's rule is
    still the one it describes (an edit since, or a cache from before rules were recorded:
    None, to profile it now)."""
    from segmentum.segments.store import Segments

    found = (cached(wh, "profiles") or {}).get(name)
    if not isinstance(found, dict) or found.get("rule") != Segments(wh).get(name).rule:
        return None
    return {k: v for k, v in found.items() if k != "rule"}


def cached(wh: Warehouse, part: str) -> Any:
    """One part of the latest cached overview (``micro``, ``profiles``...), as the last run
    built it; None when there is no cache (nothing is built here)."""
    if not wh.has(CACHE):
        return None
    return overview(wh).get(part)


def overview(wh: Warehouse) -> dict[str, Any]:
    """The latest cached overview (built when missing)."""
    if wh.has(CACHE):
        c = wh.table(CACHE)
        rows = c.order_by(ibis.desc("as_of")).limit(1).to_pyarrow().to_pylist()
        if rows:
            return json.loads(rows[0]["payload"])
    return build_overview(wh)
