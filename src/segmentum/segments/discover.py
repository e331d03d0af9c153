"""Discovered segments end to end: sample, fit, choose k, assign in-engine, profile, store.

``discover`` writes ``customer_clusters`` (customer_id, cluster, cluster_name, method, as_of,
run_id) and one row per run in ``cluster_runs`` with every score as JSON.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.features.customer import category_mix, mix_column
from segmentum.ingest.returns import links as return_links
from segmentum.models.cluster import (
    DEFAULT_NUMERIC,
    ClusterResult,
    clustering_frame,
    fit_clusters,
    mix_categories,
    restore,
    sample_rows,
)
from segmentum.segments.profile import Profiles, profile_segments
from segmentum.segments.view import customer_view
from segmentum.warehouse import Warehouse

#: Every customer's category spend mix, kept for the next day's run, and what it was made for.
MIX, MIX_STATE = "cluster_mix", "cluster_mix_state"
PROFILE_NUMERIC = (
    "monetary",
    "frequency",
    "recency_days",
    "tenure_days",
    "avg_order_value",
    "promo_share",
    "interpurchase_mean",
    "trend",
    "return_rate",
    "clv",
    "churn_probability",
    "age",
)
PROFILE_CATEGORICAL = (
    "age_band",
    "gender",
    "region",
    "city",
    "income_band",
    "preferred_channel",
    "preferred_device",
    "preferred_hour_band",
    "top_category",
)


@dataclass
class Discovery:
    run_id: str
    as_of: _dt.date
    result: ClusterResult
    profiles: Profiles
    sizes: dict[int, int]
    # The day the model was fitted: this run's, or an earlier one's when it was kept (reuse).
    fitted_as_of: _dt.date | None = None
    refitted: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "fitted_as_of": (self.fitted_as_of or self.as_of).isoformat(),
            "refitted": self.refitted,
            **self.result.to_dict(),
            "sizes": self.sizes,
            "profiles": self.profiles.to_dict(),
        }


def discover(
    wh: Warehouse,
    as_of: _dt.date | None = None,
    *,
    method: str = "gmm",
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    k_range: Sequence[int] = range(2, 11),
    k: int | None = None,
    mix: int = 8,
    sample_size: int = 20_000,
    bootstrap: int = 5,
    seed: int = 0,
    run_id: str | None = None,
    reuse: bool = False,
    changed: ir.Table | None = None,
    since: _dt.date | None = None,
) -> Discovery:
    """Find segments nobody defined, and store every customer's cluster.

    Parameters
    ----------
    method
        ``gmm`` (default), ``kmeans`` or ``kprototypes``.
    numeric, categorical
        Columns of the customer view to cluster on (default: a behavioural set, see
        ``DEFAULT_NUMERIC``, plus the category spend mix).
    mix
        Add each customer's spend share in the ``mix`` biggest categories (0: none). The block
        is weighted to count as three features together.
    sample_size
        Customers the models are fitted on; every customer is then assigned in the engine.
    reuse
        Keep the model the last discovery fitted, when it was fitted with these settings (an
        incremental daily run between refits): every customer is assigned again, without
        fitting (nor choosing k, nor the bootstrap) again. The clusters then keep their
        meaning, their profiles and their names from day to day until the next refit; the
        stability reported is the fit's.
    changed, since
        An incremental day's changed customers and the last run's date: the category spend
        mix, kept in ``cluster_mix``, is then computed again only for them (it follows from a
        customer's own lines alone).
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    view, as_of = customer_view(wh, as_of)
    view = view.filter(view.frequency > 0)
    tx = wh.table("transactions") if wh.has("transactions") else None
    links = return_links(wh) if tx is not None and mix > 0 else None
    cols = list(numeric or DEFAULT_NUMERIC)
    asked = {"method": method, "numeric": cols, "categorical": list(categorical), "mix": mix}
    if k is not None:
        asked["k"] = k
    kept = stored_model(wh, asked, as_of) if reuse else None
    cats = kept["categories"] if kept else mix_categories(tx, as_of, mix, links)
    shares = _spend_mix(wh, tx, as_of, cats, links, changed, since) if tx is not None else None
    frame, mix_cols = clustering_frame(view, tx, as_of, mix, links, categories=cats, shares=shares)
    weights = {c: math.sqrt(3 / len(mix_cols)) for c in mix_cols}
    wanted = list(
        dict.fromkeys(
            ["customer_id", *cols, *mix_cols, *categorical, *PROFILE_NUMERIC, *PROFILE_CATEGORICAL]
        )
    )
    # Computed once: the sample, the assignment of every customer and the sizes read it (the
    # spend mix alone is a grouping of every invoice line, and the view joins five tables).
    frame = wh.materialize(frame.select(*[c for c in wanted if c in frame.columns]), "discover")
    sample = sample_rows(frame, sample_size, seed)
    if kept:
        result, fitted_as_of = restore(kept["model"], sample), kept["fitted_as_of"]
    else:
        result = fit_clusters(
            sample,
            method=method,
            numeric=[*cols, *mix_cols],
            categorical=categorical,
            weights=weights,
            k_range=k_range,
            k=k,
            bootstrap=bootstrap,
            seed=seed,
        )
        fitted_as_of = as_of.isoformat()
    if kept and kept.get("profiles"):
        # Between refits the clusters keep the fit's profiles, and with them their names: a
        # cluster is not renamed on a day a trait's share crossed a threshold in a new sample
        # (and the tests, the rule tree and their imports cost 1.3 s of a new day's run).
        profiles = Profiles.from_dict(kept["profiles"])
    else:
        labelled = sample.assign(cluster=result.sample_labels)
        profiles = profile_segments(
            labelled,
            "cluster",
            [c for c in [*PROFILE_NUMERIC, *mix_cols] if c in labelled.columns],
            [c for c in PROFILE_CATEGORICAL if c in labelled.columns],
            seed=seed,
            categories={mix_column(c): c for c in cats},
        )
        for p in profiles.segments:
            if result.stability_ari < 0.6:
                p.flags.append("unstable")
    names = {int(p.segment): p for p in profiles.segments}
    assigned = result.assign(frame)
    name_map = ibis.cases(
        *[(assigned.cluster == i, f"{i}: {p.name_en}") for i, p in names.items()],
        else_=ibis.null("string"),
    )
    name_es = ibis.cases(
        *[(assigned.cluster == i, f"{i}: {p.name_es}") for i, p in names.items()],
        else_=ibis.null("string"),
    )
    out = assigned.mutate(
        cluster_name=name_map,
        cluster_name_es=name_es,
        method=ibis.literal(method),
        as_of=ibis.literal(as_of, "date"),
        run_id=ibis.literal(run_id),
    )
    stored = wh.replace_where("customer_clusters", out, "as_of", as_of)
    cur = stored.filter(stored.run_id == run_id)
    rows = cur.group_by("cluster").aggregate(n=cur.count()).to_pyarrow().to_pylist()
    sizes = {int(r["cluster"]): int(r["n"]) for r in rows}
    disc = Discovery(
        run_id, as_of, result, profiles, sizes, _dt.date.fromisoformat(fitted_as_of), not kept
    )
    model = {**asked, "categories": cats, "fitted_as_of": fitted_as_of, "model": result.state()}
    record = pa.table(
        {
            "run_id": [run_id],
            "as_of": pa.array([as_of], pa.date32()),
            "method": [method],
            "k": [result.k],
            "created_at": pa.array(
                [_dt.datetime.now(_dt.UTC).replace(tzinfo=None)], pa.timestamp("us")
            ),
            "summary": [json.dumps({**disc.to_dict(), "kept": model}, default=str)],
        }
    )
    if wh.has("cluster_runs"):
        wh.insert("cluster_runs", record)
    else:
        wh.write("cluster_runs", record)
    return disc


def _spend_mix(
    wh: Warehouse,
    tx: ir.Table,
    as_of: _dt.date,
    categories: list[str],
    links: ir.Table | None,
    changed: ir.Table | None,
    since: _dt.date | None,
) -> ir.Table | None:
    """Every customer's spend mix in ``categories``, kept in ``cluster_mix`` for the next day:
    when the kept mix is the last run's (``since``) for the same categories, only the
    ``changed`` customers' rows are computed again; otherwise everybody's."""
    if len(categories) < 2 or links is None or "category" not in tx.columns:
        return None
    mine = {"as_of": since.isoformat() if since else None, "categories": categories}
    ids = changed.select("customer_id") if changed is not None else None
    if ids is not None and since is not None and wh.has(MIX) and _mix_state(wh) == mine:
        fresh = wh.materialize(
            category_mix(
                tx.semi_join(ids, "customer_id"),
                as_of,
                categories,
                links.semi_join(ids, "customer_id"),
            ),
            "mix_fresh",
        )
        if fresh.schema() == wh.table(MIX).schema():
            wh.mark(MIX_STATE, None)
            wh.delete_keys(MIX, ids, ["customer_id"])
            wh.insert(MIX, fresh.select(*wh.table(MIX).columns))
            wh.mark(MIX_STATE, {"as_of": as_of.isoformat(), "categories": categories})
            return wh.table(MIX)
    wh.mark(MIX_STATE, None)
    wh.write(MIX, category_mix(tx, as_of, categories, links))
    wh.mark(MIX_STATE, {"as_of": as_of.isoformat(), "categories": categories})
    return wh.table(MIX)


def _mix_state(wh: Warehouse) -> dict[str, Any] | None:
    """Which date and categories ``cluster_mix`` holds."""
    return wh.marked(MIX_STATE)


def stored_model(wh: Warehouse, asked: dict[str, object], as_of: _dt.date) -> dict[str, Any] | None:
    """The model the latest discovery kept (``cluster_runs``), when it was fitted with the
    settings ``asked`` on or before ``as_of``; None otherwise (then a fit is due)."""
    if not wh.has("cluster_runs"):
        return None
    runs = wh.table("cluster_runs")
    runs = runs.filter(runs.as_of <= ibis.literal(as_of, "date"))
    rows = runs.order_by(ibis.desc("created_at")).limit(1).to_pyarrow().to_pylist()
    if not rows:
        return None
    try:
        summary = json.loads(rows[0]["summary"])
        kept = summary.get("kept")
    except (TypeError, ValueError, AttributeError):
        return None
    if not isinstance(kept, dict) or any(kept.get(key) != v for key, v in asked.items()):
        return None
    if "k" not in asked and "k" in kept:
        return None
    # The fit's profiles (names, tests), carried by every run that kept it.
    return {**kept, "profiles": summary.get("profiles")}


def profile_labels(
    wh: Warehouse,
    labels: ir.Table,
    label: str,
    as_of: _dt.date | None = None,
    *,
    sample_size: int = 50_000,
    min_size: int = 50,
) -> Profiles:
    """Profile any labelling (``labels``: customer_id and ``label``) against the customer view."""
    view = _profile_source(wh, as_of)
    j = view.left_join(labels.select("customer_id", label), "customer_id").drop("customer_id_right")
    keep = [
        c for c in ["customer_id", label, *PROFILE_NUMERIC, *PROFILE_CATEGORICAL] if c in j.columns
    ]
    df = sample_rows(j.filter(j.frequency > 0).select(*keep), sample_size)
    return profile_segments(
        df,
        label,
        [c for c in PROFILE_NUMERIC if c in df.columns],
        [c for c in PROFILE_CATEGORICAL if c in df.columns],
        min_size=min_size,
    )


def segment_labels(wh: Warehouse, name: str, as_of: _dt.date | None = None) -> ir.Table:
    """A saved segment as a labelling: 'in' for members, 'out' for every other customer."""
    from segmentum.segments.store import Segments

    members = Segments(wh).members(name, as_of)
    view = _profile_source(wh, as_of)
    flag = view.customer_id.isin(members.customer_id)
    return view.select("customer_id", segment=ibis.ifelse(flag, "in", "out"))


def _profile_source(wh: Warehouse, as_of: _dt.date | None) -> ir.Table:
    """The pipeline's precomputed ``customer_lookup`` when it is for ``as_of`` (one wide,
    indexed table: much cheaper than joining the view at a million customers), else the view."""
    if wh.has("customer_lookup"):
        lk = wh.table("customer_lookup")
        latest = lk.as_of.max().to_pyarrow().as_py()
        if as_of is None or as_of == latest:
            return lk
    return customer_view(wh, as_of)[0]
