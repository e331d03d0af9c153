"""Migration between segments: who moved where between two dates, and who is slipping.

Works for any classification stored by date: a column of ``customer_classes`` (``rfm_segment``,
``value_tier``, ``lifecycle_stage``, ``value_potential``), a saved rule segment
(``segment:NAME``: in / out) or the discovered clusters (``cluster``). Customers present at
only one of the two dates appear as ``(not yet a customer)`` or ``(gone)``; a date with no
snapshot (or, for clusters, none that holds them) is an error naming the nearest dates that have
one.

All counting happens in the engine; only the matrix (states x states) and the alert list
come back.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

ABSENT_FROM = "(not yet a customer)"
ABSENT_TO = "(gone)"

# Valuable -> risky moves worth an alert, per classification.
ALERTS: dict[str, tuple[set[str], set[str]]] = {
    "rfm_segment": (
        {"Champions", "Loyal", "Potential Loyalist"},
        {"At Risk", "Can't Lose Them", "Hibernating", "Lost", "About to Sleep"},
    ),
    "value_tier": ({"high"}, {"medium", "low"}),
    "lifecycle_stage": ({"active", "new"}, {"at_risk", "lapsed", "lost"}),
    "value_potential": ({"Stars", "Maintain", "Grow", "Rising"}, {"Re-activate", "Harvest"}),
}


@dataclass
class Migration:
    classification: str
    date_from: _dt.date
    date_to: _dt.date
    states: list[str]
    counts: dict[str, dict[str, int]]  # from -> to -> customers
    revenue: dict[str, dict[str, float]]  # from -> to -> revenue between the dates
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def percentages(self) -> dict[str, dict[str, float]]:
        """Row percentages: of the customers in a state at the start, where they ended."""
        out = {}
        for a, row in self.counts.items():
            total = sum(row.values())
            out[a] = {b: (100.0 * n / total if total else 0.0) for b, n in row.items()}
        return out

    def net_change(self) -> dict[str, int]:
        before = {s: sum(self.counts.get(s, {}).values()) for s in self.states}
        after = {s: sum(row.get(s, 0) for row in self.counts.values()) for s in self.states}
        return {s: after[s] - before[s] for s in self.states if s not in (ABSENT_FROM, ABSENT_TO)}

    def flows(self) -> list[dict[str, Any]]:
        """Links for a Sankey chart: every non-empty (from, to) pair."""
        return [
            {"source": a, "target": b, "customers": n, "revenue": self.revenue[a][b]}
            for a, row in self.counts.items()
            for b, n in row.items()
            if n
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": self.classification,
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "states": self.states,
            "counts": self.counts,
            "percentages": self.percentages,
            "revenue": self.revenue,
            "net_change": self.net_change(),
            "flows": self.flows(),
            "alerts": self.alerts,
        }


def labels_at(wh: Warehouse, classification: str, as_of: _dt.date) -> ir.Table:
    """customer_id and ``state`` for one date, for any supported classification."""
    when = ibis.literal(as_of, "date")
    if classification.startswith("segment:"):
        name = classification.split(":", 1)[1]
        if not wh.has("segment_members"):
            raise InputError("no segment has been computed yet", "run: segmentum segment compute")
        m = wh.table("segment_members")
        m = m.filter((m.segment == name) & (m.as_of == when))
        c = wh.table("customer_classes")
        base = c.filter(c.as_of == when).select("customer_id")
        return base.select(
            "customer_id",
            state=ibis.ifelse(base.customer_id.isin(m.customer_id), "in", "out"),
        )
    if classification == "cluster":
        t = wh.table("customer_clusters")
        t = t.filter(t.as_of == when)
        return t.select("customer_id", state=t.cluster_name.fill_null(t.cluster.cast("string")))
    c = wh.table("customer_classes")
    if classification not in c.columns:
        raise InputError(
            f"unknown classification {classification!r}",
            "use one of the classes (rfm_segment, value_tier, lifecycle_stage...), "
            "segment:NAME or cluster",
        )
    c = c.filter(c.as_of == when)
    return c.select("customer_id", state=c[classification].cast("string").fill_null("(none)"))


def _held_dates(wh: Warehouse, classification: str) -> list[_dt.date]:
    """The snapshot dates that hold ``classification``: the dates of ``customer_classes``, or
    for ``cluster`` those of ``customer_clusters`` (the runs store clusters, the backfill
    does not)."""
    table = "customer_clusters" if classification == "cluster" else "customer_classes"
    if not wh.has(table):
        return []
    found = wh.table(table).select("as_of").distinct().as_of.to_pyarrow().to_pylist()
    return sorted(d.date() if isinstance(d, _dt.datetime) else d for d in found)


def _nearest(dates: list[_dt.date], day: _dt.date) -> list[_dt.date]:
    """The dates of ``dates`` (oldest first) just before and just after ``day``."""
    before = [d for d in dates if d < day]
    after = [d for d in dates if d > day]
    return before[-1:] + after[:1]


def check_dates(wh: Warehouse, classification: str, *days: _dt.date) -> None:
    """Raise a user error naming each of ``days`` without a snapshot of ``classification``,
    with the nearest dates that have one: a date without a snapshot would otherwise read as
    a base where everyone is new (or gone)."""
    snapshots = _held_dates(wh, "rfm_segment")
    if not snapshots:
        raise InputError(
            "there are no snapshots yet",
            "run the pipeline (segmentum run) or build past ones: segmentum history backfill",
        )
    for day in days:
        if day in snapshots:
            continue
        near = _nearest(snapshots, day)
        raise InputError(
            f"there is no snapshot on {day}: the nearest "
            + (f"are {near[0]} and {near[1]}" if len(near) == 2 else f"is {near[0]}"),
            "choose a date that has one (segmentum history dates lists them), or build "
            "snapshots for past dates: segmentum history backfill",
        )
    if classification != "cluster":
        return
    held = _held_dates(wh, "cluster")
    for day in days:
        if day in held:
            continue
        if len(held) < 2:
            said = (
                f"the discovered clusters are stored on {held[0]} only"
                if held
                else "no snapshot holds discovered clusters"
            )
            raise InputError(
                said + ": a migration of clusters needs two dates that hold them",
                "clusters are stored by pipeline runs, not by the backfill: compare a class "
                "instead (--by rfm_segment, value_tier or lifecycle_stage)",
            )
        raise InputError(
            f"the snapshot of {day} holds no discovered clusters; the dates that do: "
            + ", ".join(str(d) for d in held[-12:]),
            "clusters are stored by pipeline runs, not by the backfill: choose two of those "
            "dates, or compare a class (--by rfm_segment, value_tier or lifecycle_stage)",
        )


def _spend_lines(wh: Warehouse) -> ir.Table:
    """Lines with ``customer_id``, ``timestamp`` and ``amount``: the transactions, or in the
    serving store (which has none) their per-invoice totals, which sum to the same spend."""
    if wh.has("transactions") or not wh.has("customer_invoices"):
        return wh.table("transactions")
    return wh.table("customer_invoices")


def _spend_between(wh: Warehouse, start: _dt.date, end: _dt.date) -> ir.Table:
    t = _spend_lines(wh)
    lo = ibis.literal(_dt.datetime(start.year, start.month, start.day), "timestamp")
    hi = ibis.literal(_dt.datetime(end.year, end.month, end.day), "timestamp")
    t = t.filter(t.customer_id.notnull() & (t.timestamp >= lo) & (t.timestamp < hi))
    return t.group_by("customer_id").aggregate(spend=t.amount.sum())


def migration(
    wh: Warehouse,
    date_from: _dt.date,
    date_to: _dt.date,
    classification: str = "rfm_segment",
    *,
    alert_limit: int = 100,
) -> Migration:
    """The transition matrix between two snapshot dates, and the valuable-to-risky alerts."""
    if date_to <= date_from:
        raise InputError("--to must be after --from")
    if classification != "cluster":  # a mistyped name is said before any date
        labels_at(wh, classification, date_from)
    check_dates(wh, classification, date_from, date_to)
    a = labels_at(wh, classification, date_from).rename(state_from="state")
    b = labels_at(wh, classification, date_to).rename(state_to="state").view()
    j = a.outer_join(b, "customer_id")
    j = j.select(
        customer_id=ibis.coalesce(j.customer_id, j.customer_id_right),
        state_from=j.state_from.fill_null(ABSENT_FROM),
        state_to=j.state_to.fill_null(ABSENT_TO),
    )
    j = j.filter(j.customer_id.notnull())  # ends the join chain (ibis would merge the next join)
    j = j.left_join(_spend_between(wh, date_from, date_to), "customer_id").drop("customer_id_right")
    g = j.group_by(["state_from", "state_to"]).aggregate(
        n=j.count(), revenue=j.spend.fill_null(0).sum()
    )
    rows = g.to_pyarrow().to_pylist()
    if not rows:
        raise InputError(
            f"no snapshots of {classification} on {date_from} or {date_to}",
            "list the dates with: segmentum history dates",
        )
    states = sorted({r["state_from"] for r in rows} | {r["state_to"] for r in rows})
    counts = {s: {t: 0 for t in states} for s in states}
    revenue = {s: {t: 0.0 for t in states} for s in states}
    for r in rows:
        counts[r["state_from"]][r["state_to"]] = int(r["n"])
        revenue[r["state_from"]][r["state_to"]] = float(r["revenue"] or 0.0)
    alerts: list[dict[str, Any]] = []
    key = classification if classification in ALERTS else None
    if key:
        good, bad = ALERTS[key]
        moved = j.filter(j.state_from.isin(list(good)) & j.state_to.isin(list(bad)))
        t = _spend_lines(wh)
        hi = ibis.literal(_dt.datetime(date_to.year, date_to.month, date_to.day), "timestamp")
        t = t.filter(t.customer_id.notnull() & (t.timestamp < hi))
        lifetime = t.group_by("customer_id").aggregate(lifetime_spend=t.amount.sum())
        moved = moved.left_join(lifetime, "customer_id").drop("customer_id_right")
        if wh.has("customer_clv"):
            clv = wh.table("customer_clv")
            clv = clv.filter(clv.as_of == ibis.literal(date_to, "date")).select(
                "customer_id", "clv"
            )
            moved = moved.left_join(clv, "customer_id").drop("customer_id_right")
        moved = moved.order_by([ibis.desc(moved.lifetime_spend.fill_null(0)), "customer_id"])
        alerts = moved.limit(alert_limit).to_pyarrow().to_pylist()
    return Migration(classification, date_from, date_to, states, counts, revenue, alerts)
