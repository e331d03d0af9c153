"""Satisfaction per segment, computed in the engine: each customer's latest answers, the groups
they belong to, and per group only counts and sums come back to Python.

Segment statistics use each customer's **latest** answer in the window (one answer per
person, so the answers are independent and a customer who answers often does not weigh more).
A group is compared with **the rest**: every other identified respondent.

Tables written (each with ``as_of`` and ``run_id``):

- ``customer_satisfaction``: one row per customer who answered (latest NPS, CSAT, comment...);
- ``satisfaction_segments``: one row per dimension and group: NPS and its interval, CSAT,
  response share, the test against the rest (kept per ``as_of``: the trend over runs);
- ``satisfaction_trend``: NPS per month and group, for the dimensions in ``TREND_DIMENSIONS``;
- ``satisfaction_history``: NPS per snapshot date and group, each customer placed in the group
  they belonged to at that date (when ``segmentum history backfill`` wrote snapshots).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.errors import InputError, WarehouseError
from segmentum.satisfaction.stats import (
    Nps,
    benjamini_hochberg,
    mean_interval,
    nps_difference,
    wilson,
)
from segmentum.warehouse import Warehouse

RESPONSES = "responses"
CUSTOMERS = "customer_satisfaction"
SEGMENTS = "satisfaction_segments"
TREND = "satisfaction_trend"
HISTORY = "satisfaction_history"
# Groups of customers the statistics are given for, in the order pages show them.
DIMENSIONS = (
    "all",
    "segment",
    "value_tier",
    "lifecycle_stage",
    "rfm_segment",
    "cluster",
    "micro",
    "campaign",
)
CLASS_DIMENSIONS = ("value_tier", "lifecycle_stage", "rfm_segment")
TREND_DIMENSIONS = ("all", "segment", "value_tier", "lifecycle_stage")
# Answers older than this (days before as_of) do not describe how customers feel now.
WINDOW_DAYS = 365
# Months of history in the trend.
TREND_MONTHS = 24
# Snapshots of the classes (segmentum history backfill) the history reaches back over, at most.
MAX_SNAPSHOTS = 12
# A group is flagged worse or better than the rest below this false-discovery rate.
ALPHA = 0.05
# Fewer NPS answers than this (in the group or the rest) are shown but not tested: the normal
# approximation of the test needs some answers on each side.
MIN_ANSWERS = 30


@dataclass
class SatisfactionRun:
    """What one computation found: how many answers and which groups stand out."""

    as_of: _dt.date
    responses: int = 0
    respondents: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: Of ``respondents``, those in no group: not customers with a purchase as of ``as_of``.
    outside: int = 0
    outside_example: str | None = None

    @property
    def flagged(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["flag"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "responses": self.responses,
            "respondents": self.respondents,
            "outside": self.outside,
            "outside_example": self.outside_example,
            "flagged": [
                {k: r[k] for k in ("dimension", "segment", "nps", "rest_nps", "q_value", "flag")}
                for r in self.flagged
            ],
        }


def has_responses(wh: Warehouse) -> bool:
    """Whether the warehouse holds any survey answer."""
    if not wh.has(RESPONSES):
        return False
    return bool(int(wh.table(RESPONSES).count().to_pyarrow().as_py()))


def _cutoff(as_of: _dt.date) -> ir.TimestampValue:
    return ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")


def answered(wh: Warehouse, as_of: _dt.date, window_days: int | None = WINDOW_DAYS) -> ir.Table:
    """The answers given before ``as_of`` (within ``window_days`` of it, when given)."""
    if not wh.has(RESPONSES):
        raise WarehouseError(
            "there are no survey responses", "load them: segmentum ingest responses FILE"
        )
    r = wh.table(RESPONSES)
    cut = _cutoff(as_of)
    r = r.filter(r.timestamp.notnull() & (r.timestamp < cut))
    if window_days is not None:
        r = r.filter(r.timestamp >= cut - ibis.interval(days=window_days))
    return r


def per_customer(wh: Warehouse, as_of: _dt.date, window_days: int | None = WINDOW_DAYS) -> ir.Table:
    """One row per identified customer who answered: latest scores, averages, latest comment.

    These are the ``nps``, ``csat`` and ``last_nps`` attributes of the rule language.
    """
    r = answered(wh, as_of, window_days)
    r = r.filter(r.customer_id.notnull())
    text = r.comment.strip()
    has_text = text.notnull() & (text != "")
    return r.group_by("customer_id").aggregate(
        responses=r.count(),
        last_response_at=r.timestamp.max(),
        last_nps=r.nps.argmax(r.timestamp, where=r.nps.notnull()),
        nps=r.nps.mean().cast("float64"),
        nps_answers=r.nps.count(),
        detractor_answers=(r.nps <= 6).sum(where=r.nps.notnull()).fill_null(0),
        last_csat=r.csat.argmax(r.timestamp, where=r.csat.notnull()),
        csat=r.csat.mean().cast("float64"),
        last_ces=r.ces.argmax(r.timestamp, where=r.ces.notnull()),
        rating=r.rating.mean().cast("float64"),
        last_comment=text.argmax(r.timestamp, where=has_text),
    )


def churn_features(responses: ir.Table, as_of: _dt.date) -> ir.Table:
    """``(customer_id, last_nps, had_response)`` from the answers before ``as_of``: what the
    supervised churn model may add to the purchase features (no answer: ``last_nps`` null)."""
    r = responses.filter(
        responses.customer_id.notnull()
        & responses.timestamp.notnull()
        & (responses.timestamp < _cutoff(as_of))
    )
    return r.group_by("customer_id").aggregate(
        last_nps=r.nps.argmax(r.timestamp, where=r.nps.notnull()).cast("float64"),
        had_response=(r.count() > 0).cast("int64"),
    )


def _latest(wh: Warehouse, name: str, as_of: _dt.date) -> ir.Table | None:
    if not wh.has(name):
        return None
    t = wh.table(name)
    if "as_of" not in t.columns:
        return t
    return t.filter(t.as_of == ibis.literal(as_of, "date"))


def membership(wh: Warehouse, as_of: _dt.date) -> ir.Table:
    """``(customer_id, dimension, segment)``: every group each customer belongs to."""
    parts: list[ir.Table] = []

    def part(t: ir.Table, dimension: str, value: ir.Value) -> None:
        parts.append(
            t.select(
                customer_id=t.customer_id.cast("string"),
                dimension=ibis.literal(dimension),
                segment=value.cast("string"),
            )
        )

    classes = _latest(wh, "customer_classes", as_of)
    if classes is None:
        raise WarehouseError(
            f"there are no customer classes for {as_of}", "run the pipeline first: segmentum run"
        )
    part(classes, "all", ibis.literal("all"))
    for col in CLASS_DIMENSIONS:
        if col in classes.columns:
            part(classes.filter(classes[col].notnull()), col, classes[col])
    members = _latest(wh, "segment_members", as_of)
    if members is not None:
        part(members, "segment", members.segment)
    clusters = _latest(wh, "customer_clusters", as_of)
    if clusters is not None:
        part(clusters, "cluster", clusters.cluster_name.fill_null(clusters.cluster.cast("string")))
    if wh.has("customers") and "region" in wh.table("customers").columns:
        c = wh.table("customers").select("customer_id", "region")
        j = classes.select("customer_id", "value_tier").join(c, "customer_id")
        j = j.filter(j.region.notnull() & j.value_tier.notnull())
        part(j, "micro", j.value_tier + ibis.literal(" > ") + j.region)
    sent: list[ir.Table] = []
    if wh.has("campaign_results"):  # imported results: the treatment group was contacted
        cr = wh.table("campaign_results")
        cr = cr.filter((cr.group == "treatment") & cr.customer_id.notnull())
        sent.append(cr.select(customer_id=cr.customer_id.cast("string"), campaign=cr.campaign_id))
    if wh.has("campaign_sends"):  # campaigns sent by segmentum (a web survey's audience too)
        cs = wh.table("campaign_sends")
        cs = cs.filter((cs.status == "sent") & cs.customer_id.notnull())
        sent.append(cs.select(customer_id=cs.customer_id.cast("string"), campaign=cs.campaign_id))
    if sent:
        everyone = sent[0].union(sent[1]) if len(sent) > 1 else sent[0]
        everyone = everyone.distinct()
        part(everyone, "campaign", everyone.campaign)
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p)
    return out


def _group_counts(t: ir.Table, by: list[str]) -> ir.Table:
    """The sufficient statistics of a group: counts and sums of its latest answers."""
    nps, csat = t.last_nps, t.last_csat
    aggs = {
        "respondents": t.count(),
        "responses": t.responses.sum(),
        "nps_n": nps.count(),
        "promoters": (nps >= 9).sum(where=nps.notnull()).fill_null(0),
        "detractors": (nps <= 6).sum(where=nps.notnull()).fill_null(0),
        "csat_n": csat.count(),
        "csat_sum": csat.sum().cast("float64"),
        "csat_sq": (csat * csat).sum().cast("float64"),
        "csat_top2": (csat >= 4).sum(where=csat.notnull()).fill_null(0),
        "ces_mean": t.last_ces.mean().cast("float64"),
        "rating_mean": t.rating.mean().cast("float64"),
    }
    if by:
        return t.group_by(by).aggregate(**aggs)
    return t.aggregate(**aggs)


def _ints(row: dict[str, Any], *keys: str) -> list[int]:
    return [int(row.get(k) or 0) for k in keys]


def describe(row: dict[str, Any], rest: dict[str, Any] | None) -> dict[str, Any]:
    """A group's counts turned into what a person reads: NPS with its interval, CSAT mean and
    top-2-box share with theirs, the share that answered, and the test against ``rest``."""
    n, p, d = _ints(row, "nps_n", "promoters", "detractors")
    me = Nps(n, p, n - p - d, d)
    lo, hi = me.interval()
    customers, respondents = _ints(row, "customers", "respondents")
    cn, top2 = _ints(row, "csat_n", "csat_top2")
    cmean, clo, chi = mean_interval(cn, row.get("csat_sum") or 0.0, row.get("csat_sq") or 0.0)
    share, slo, shi = wilson(top2, cn)
    out = {
        "dimension": row["dimension"],
        "segment": row["segment"],
        "customers": customers,
        "respondents": respondents,
        "responses": int(row.get("responses") or 0),
        "response_share": respondents / customers if customers else None,
        "nps_n": n,
        "promoters": p,
        "passives": n - p - d,
        "detractors": d,
        "nps": me.score,
        "nps_low": lo,
        "nps_high": hi,
        "nps_se": me.se,
        "csat_n": cn,
        "csat_mean": cmean,
        "csat_low": clo,
        "csat_high": chi,
        "csat_top2": share,
        "csat_top2_low": slo,
        "csat_top2_high": shi,
        "ces_mean": row.get("ces_mean"),
        "rating_mean": row.get("rating_mean"),
        "rest_nps": None,
        "nps_diff": None,
        "z": None,
        "p_value": None,
    }
    if rest is not None:
        rn, rp, rd = _ints(rest, "nps_n", "promoters", "detractors")
        other = Nps(rn, rp, rn - rp - rd, rd)
        diff, z, pv = nps_difference(me, other, MIN_ANSWERS)
        out.update(rest_nps=other.score, nps_diff=diff, z=z, p_value=pv)
    return out


def segment_stats(
    wh: Warehouse, as_of: _dt.date, window_days: int | None = WINDOW_DAYS
) -> list[dict[str, Any]]:
    """Every group of every dimension with its satisfaction and its test against the rest."""
    pc = per_customer(wh, as_of, window_days)
    m = membership(wh, as_of)
    sizes = m.group_by(["dimension", "segment"]).aggregate(customers=m.count())
    counts = _group_counts(m.join(pc, "customer_id"), ["dimension", "segment"])
    joined = sizes.left_join(counts, ["dimension", "segment"]).drop(
        "dimension_right", "segment_right"
    )
    groups = joined.to_pyarrow().to_pylist()
    # Every identified respondent, whether or not the classes know them (rest = all - group).
    everyone = _group_counts(pc, []).to_pyarrow().to_pylist()[0]
    rows: list[dict[str, Any]] = []
    for g in groups:
        rest = {
            k: int(everyone.get(k) or 0) - int(g.get(k) or 0)
            for k in ("nps_n", "promoters", "detractors")
        }
        rows.append(describe(g, None if g["dimension"] == "all" else rest))
    for dim in {r["dimension"] for r in rows}:
        mine = [r for r in rows if r["dimension"] == dim]
        for r, q in zip(mine, benjamini_hochberg([r["p_value"] for r in mine]), strict=True):
            r["q_value"] = q
            worse = q is not None and q < ALPHA
            r["flag"] = ("worse" if (r["nps_diff"] or 0) < 0 else "better") if worse else ""
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    rows.sort(key=lambda r: (order.get(r["dimension"], 99), -(r["customers"] or 0), r["segment"]))
    return rows


def trend(wh: Warehouse, as_of: _dt.date, months: int = TREND_MONTHS) -> list[dict[str, Any]]:
    """NPS per calendar month and group (groups as of ``as_of``), answers as given."""
    r = answered(wh, as_of, months * 31)
    r = r.filter(r.nps.notnull())
    r = r.mutate(period=r.timestamp.truncate("M").date())
    m = membership(wh, as_of)
    m = m.filter(m.dimension.isin(list(TREND_DIMENSIONS)))
    cols = ["dimension", "segment", "period"]
    j = r.join(m, r.customer_id == m.customer_id).select(m.dimension, m.segment, r.period, r.nps)
    # Anonymous answers count in the whole, not in any group.
    allr = r.select(
        dimension=ibis.literal("all"), segment=ibis.literal("all"), period=r.period, nps=r.nps
    )
    j = j.filter(j.dimension != "all").union(allr)
    g = j.group_by(cols).aggregate(
        n=j.count(),
        promoters=(j.nps >= 9).sum().fill_null(0),
        detractors=(j.nps <= 6).sum().fill_null(0),
    )
    out = []
    for row in g.order_by(cols).to_pyarrow().to_pylist():
        n, p, d = _ints(row, "n", "promoters", "detractors")
        me = Nps(n, p, n - p - d, d)
        lo, hi = me.interval()
        out.append({**row, "nps": me.score, "nps_low": lo, "nps_high": hi})
    return out


def snapshot_dates(wh: Warehouse, most: int = MAX_SNAPSHOTS) -> list[_dt.date]:
    """The latest ``most`` dates with stored classes, oldest first."""
    if not wh.has("customer_classes"):
        return []
    c = wh.table("customer_classes")
    found = c.select("as_of").distinct().order_by(ibis.desc("as_of")).limit(most)
    return sorted(found.to_pyarrow().column(0).to_pylist())


def snapshot_trend(
    wh: Warehouse,
    dimension: str | None = None,
    window_days: int | None = WINDOW_DAYS,
    most: int = MAX_SNAPSHOTS,
) -> list[dict[str, Any]]:
    """NPS per snapshot date and group: at each date, the latest answer of the year before it of
    each customer, grouped as the customer was classified at that date."""
    if dimension:
        check_dimension(dimension, TREND_DIMENSIONS)
    dims = [dimension] if dimension else list(TREND_DIMENSIONS)
    out: list[dict[str, Any]] = []
    for day in snapshot_dates(wh, most):
        m = membership(wh, day)
        m = m.filter(m.dimension.isin(dims))
        sizes = m.group_by(["dimension", "segment"]).aggregate(customers=m.count())
        counts = _group_counts(
            m.join(per_customer(wh, day, window_days), "customer_id"), ["dimension", "segment"]
        )
        joined = sizes.left_join(counts, ["dimension", "segment"]).drop(
            "dimension_right", "segment_right"
        )
        for g in joined.to_pyarrow().to_pylist():
            d = describe(g, None)
            out.append(
                {
                    "snapshot": day,
                    **{
                        k: d[k]
                        for k in (
                            "dimension",
                            "segment",
                            "customers",
                            "respondents",
                            "nps_n",
                            "nps",
                            "nps_low",
                            "nps_high",
                            "csat_mean",
                        )
                    },
                }
            )
    out.sort(key=lambda r: (r["dimension"], r["segment"], r["snapshot"]))
    return out


def _arrow(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


_SEGMENT_SCHEMA = pa.schema(
    [
        ("dimension", pa.string()),
        ("segment", pa.string()),
        *[(c, pa.int64()) for c in ("customers", "respondents", "responses", "nps_n", "promoters")],
        ("passives", pa.int64()),
        ("detractors", pa.int64()),
        ("response_share", pa.float64()),
        *[(c, pa.float64()) for c in ("nps", "nps_low", "nps_high", "nps_se")],
        ("csat_n", pa.int64()),
        *[
            (c, pa.float64())
            for c in (
                "csat_mean",
                "csat_low",
                "csat_high",
                "csat_top2",
                "csat_top2_low",
                "csat_top2_high",
                "ces_mean",
                "rating_mean",
                "rest_nps",
                "nps_diff",
                "z",
                "p_value",
                "q_value",
            )
        ],
        ("flag", pa.string()),
    ]
)
_HISTORY_SCHEMA = pa.schema(
    [
        ("snapshot", pa.date32()),
        ("dimension", pa.string()),
        ("segment", pa.string()),
        ("customers", pa.int64()),
        ("respondents", pa.int64()),
        ("nps_n", pa.int64()),
        ("nps", pa.float64()),
        ("nps_low", pa.float64()),
        ("nps_high", pa.float64()),
        ("csat_mean", pa.float64()),
    ]
)
_TREND_SCHEMA = pa.schema(
    [
        ("dimension", pa.string()),
        ("segment", pa.string()),
        ("period", pa.date32()),
        ("n", pa.int64()),
        ("promoters", pa.int64()),
        ("detractors", pa.int64()),
        ("nps", pa.float64()),
        ("nps_low", pa.float64()),
        ("nps_high", pa.float64()),
    ]
)


def compute(
    wh: Warehouse,
    as_of: _dt.date,
    run_id: str = "",
    window_days: int | None = WINDOW_DAYS,
) -> SatisfactionRun:
    """Compute and store ``customer_satisfaction``, ``satisfaction_segments``,
    ``satisfaction_trend`` and (with snapshots) ``satisfaction_history`` for ``as_of``.

    Everything uses the answers of the ``window_days`` before ``as_of`` (the trend, its months),
    as the rule attributes ``nps``, ``csat`` and ``last_nps`` do. ``result.flagged`` are the
    groups whose NPS differs from the rest's.
    """
    stamp = {"as_of": ibis.literal(as_of, "date"), "run_id": ibis.literal(run_id)}
    pc = per_customer(wh, as_of, window_days).mutate(**stamp)
    wh.replace_where(CUSTOMERS, pc, "as_of", as_of)
    rows = segment_stats(wh, as_of, window_days)
    seg = wh.from_arrow(_arrow(rows, _SEGMENT_SCHEMA), "satseg").mutate(**stamp)
    wh.replace_where(SEGMENTS, seg, "as_of", as_of)
    tr = trend(wh, as_of)
    wh.write(TREND, wh.from_arrow(_arrow(tr, _TREND_SCHEMA), "sattrend").mutate(**stamp))
    if len(snapshot_dates(wh, 2)) > 1:
        hist = snapshot_trend(wh)
        wh.write(HISTORY, wh.from_arrow(_arrow(hist, _HISTORY_SCHEMA), "sathist").mutate(**stamp))
    r = answered(wh, as_of, window_days)
    counts = r.aggregate(n=r.count(), people=r.customer_id.nunique()).to_pyarrow().to_pylist()[0]
    # Respondents outside every group: ids no customer with a purchase has (unknown ids, or
    # customers who never bought); the groups, "all" included, count without them.
    out = SatisfactionRun(as_of, int(counts["n"]), int(counts["people"] or 0), rows)
    base = _latest(wh, "customer_classes", as_of)
    if base is not None:
        who = r.filter(r.customer_id.notnull())
        who = who.select(customer_id=who.customer_id.cast("string")).distinct()
        outside = who.anti_join(
            base.select(customer_id=base.customer_id.cast("string")), "customer_id"
        )
        o = outside.aggregate(n=outside.count(), e=outside.customer_id.min())
        row = o.to_pyarrow().to_pylist()[0]
        out.outside, out.outside_example = int(row["n"] or 0), row["e"]
    return out


def cluster_names_es(wh: Warehouse) -> dict[str, str]:
    """English -> Spanish names of the latest discovered segments (groups are stored in English)."""
    if not wh.has("customer_clusters"):
        return {}
    c = wh.table("customer_clusters")
    if "cluster_name_es" not in c.columns:
        return {}
    c = c.filter(c.as_of == c.as_of.max())
    pairs = c.select("cluster_name", "cluster_name_es").distinct().to_pyarrow().to_pylist()
    return {str(p["cluster_name"]): str(p["cluster_name_es"]) for p in pairs}


def check_dimension(dimension: str, allowed: tuple[str, ...] = DIMENSIONS) -> None:
    """Refuse a dimension that is not one of ``allowed``: the user mistyped it, and an empty
    table would read as "no customer answered"."""
    if dimension not in allowed:
        raise InputError(
            f"{dimension!r} is not a satisfaction dimension",
            f"use one of: {', '.join(allowed)}",
        )


def stored_segments(
    wh: Warehouse, dimension: str | None = None, as_of: _dt.date | None = None
) -> list[dict[str, Any]]:
    """The stored statistics of the latest (or given) ``as_of``, optionally one dimension
    (an unknown one is an :class:`InputError` naming those there are)."""
    if dimension:
        check_dimension(dimension)
    if not wh.has(SEGMENTS):
        raise WarehouseError(
            "satisfaction has not been computed",
            "load responses (segmentum ingest responses FILE), then run: segmentum run",
        )
    t = wh.table(SEGMENTS)
    day = as_of or t.as_of.max().to_pyarrow().as_py()
    t = t.filter(t.as_of == ibis.literal(day, "date"))
    if dimension:
        t = t.filter(t.dimension == dimension)
    rows: list[dict[str, Any]] = t.to_pyarrow().to_pylist()
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    rows.sort(key=lambda r: (order.get(r["dimension"], 99), -(r["customers"] or 0), r["segment"]))
    return rows
