"""Dimensions and micro-segments: cross chosen dimensions into a tree of cells, merging upward.

Dimensions are columns of the customer view, ordered from coarse to fine, for example
``value_tier > lifecycle_stage > region > city > age_band`` or the geography
``country > region > state > city > neighbourhood``. Every prefix of the list is a node of the
tree. A cell smaller than ``min_size`` is not dropped: its customers stay in the nearest
ancestor that is big enough (a small neighbourhood is merged into its city, a small city into
its region...). Each customer belongs to exactly one leaf; each node reports its size, revenue
and average CLV; each leaf gets a persona card (dominant age band, gender, place, lifestyle tag,
behaviour, best contact time and channel).

Everything is computed in the engine; only the tree (one row per node) comes back.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from segmentum.errors import InputError
from segmentum.segments.view import GEO_LEVELS, customer_view
from segmentum.warehouse import Warehouse

SEP = " > "
MISSING = "(unknown)"
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "demographic": ("age_band", "gender", "income_band", "occupation"),
    "geographic": GEO_LEVELS,
    "behavioural": (
        "rfm_segment",
        "value_tier",
        "lifecycle_stage",
        "preferred_channel",
        "preferred_device",
    ),
    "lifestyle": ("tags",),
}
PERSONA = {
    "age_band": "age band",
    "gender": "gender",
    "city": "place",
    "rfm_segment": "behaviour",
    "value_tier": "value",
    "preferred_hour_band": "best time",
    "preferred_weekday": "best day",
    "preferred_channel": "channel",
    "preferred_device": "device",
}


@dataclass
class Node:
    path: str
    depth: int
    dimension: str | None
    value: str | None
    customers: int
    revenue: float
    avg_clv: float | None
    own: int = 0  # customers who stay here because their finer cell was too small
    persona: dict[str, Any] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        if self.depth == 0:
            return None
        return SEP.join(self.path.split(SEP)[:-1]) if self.depth > 1 else ""


@dataclass
class MicroTree:
    dimensions: list[str]
    min_size: int
    as_of: _dt.date
    nodes: list[Node]

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.own > 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimensions": self.dimensions,
            "min_size": self.min_size,
            "as_of": self.as_of.isoformat(),
            "nodes": [n.__dict__ | {"parent": n.parent} for n in self.nodes],
        }


#: The dimensions a micro-segment tree crosses when none are asked for: value, then where the
#: customer lives and their age (from the customers file).
DEFAULT_DIMENSIONS = ("value_tier", "region", "city", "age_band")
#: Without a customers file (only the invoice export) there is no place or age: the classes.
BEHAVIOUR_DIMENSIONS = ("value_tier", "lifecycle_stage", "rfm_segment")


def default_dimensions(columns: Iterable[str]) -> list[str]:
    """The default dimensions the customer view's ``columns`` hold: :data:`DEFAULT_DIMENSIONS`
    when the customers file gives at least one besides the value tier, else the classes.

    >>> default_dimensions(["value_tier", "city", "lifecycle_stage", "rfm_segment"])
    ['value_tier', 'city']
    >>> default_dimensions(["value_tier", "lifecycle_stage", "rfm_segment"])
    ['value_tier', 'lifecycle_stage', 'rfm_segment']
    """
    have = set(columns)
    found = [d for d in DEFAULT_DIMENSIONS if d in have]
    if len(found) > 1:
        return found
    return [d for d in BEHAVIOUR_DIMENSIONS if d in have]


def _labels(view: ir.Table, dims: Sequence[str], keep: Sequence[str] = ()) -> ir.Table:
    missing = [d for d in dims if d not in view.columns]
    if missing:
        known = ", ".join(sorted(c for c in view.columns if not c.startswith("_")))
        raise InputError(
            f"unknown dimension(s): {', '.join(missing)}",
            f"dimensions are columns of the customer view: {known}",
        )
    cols = {f"_d{i}": view[d].cast("string").fill_null(MISSING) for i, d in enumerate(dims)}
    extra = {"_rev": view.monetary.fill_null(0.0).cast("float64")}
    extra["_clv"] = view.clv.cast("float64") if "clv" in view.columns else ibis.null("float64")
    carried = [c for c in keep if c in view.columns and c not in ("customer_id", *cols, *extra)]
    return view.select("customer_id", *carried, **cols, **extra)


def assign(
    view: ir.Table, dims: Sequence[str], min_size: int, keep: Sequence[str] = ()
) -> ir.Table:
    """customer_id, micro_segment (the path of the deepest big-enough cell) and its depth;
    ``keep``: columns of the view carried along (the personas' columns)."""
    t = _labels(view, dims, keep)
    # Size of every prefix cell (depth d counts the customers sharing _d0.._dd): the finest
    # cells counted once, the coarser ones summed from them, joined back on the cell. (A
    # window count per depth sorted every customer once per depth: 1.4 s against 0.45 s at
    # 870,000 customers.)
    keys = [f"_d{i}" for i in range(len(dims))]
    cells = t.group_by(keys).aggregate(**{f"_n{len(dims) - 1}": t.count()})
    for d in range(len(dims) - 1):
        prefix = keys[: d + 1]
        sizes = cells.group_by(prefix).aggregate(**{f"_n{d}": cells[f"_n{len(dims) - 1}"].sum()})
        cells = cells.join(sizes, prefix)
    t = t.join(cells, keys)
    # Depth kept = number of leading levels whose cell is big enough (monotone: cells only shrink).
    depth: ir.IntegerValue = ibis.literal(0)
    ok: ir.BooleanValue = ibis.literal(True)
    for d in range(len(dims)):
        ok = ok & (t[f"_n{d}"] >= min_size)
        depth = depth + ok.cast("int64")
    t = t.mutate(_depth=depth)
    path = ibis.cases(
        *[
            (
                t._depth == d,
                ibis.literal(SEP).join([t[f"_d{i}"] for i in range(d)])
                if d > 0
                else ibis.literal(""),
            )
            for d in range(len(dims) + 1)
        ],
        else_=ibis.literal(""),
    )
    return t.mutate(micro_segment=path)


def micro_segments(
    wh: Warehouse,
    dimensions: Sequence[str] | None,
    *,
    min_size: int = 50,
    as_of: _dt.date | None = None,
    store: bool = True,
    personas: bool = True,
    view: ir.Table | None = None,
) -> MicroTree:
    """Build the micro-segment tree over ``dimensions`` (coarse to fine) and store the leaves.

    Writes ``micro_segments`` (customer_id, micro_segment, depth, as_of) when ``store``.
    ``dimensions`` None: :func:`default_dimensions` of the customer view.
    """
    if dimensions is not None and not list(dimensions):
        raise InputError("give at least one dimension", "e.g. --dimensions region,city,age_band")
    if min_size < 1:
        raise InputError("the minimum cell size must be at least 1")
    if view is None or as_of is None:
        # Computed once: every count below reads the stored cells, not the view's joins again.
        view, as_of = customer_view(wh, as_of)
        view = wh.materialize(view, "microview")
    dims = list(dimensions) if dimensions is not None else default_dimensions(view.columns)
    # (else ``view``: the customer view for ``as_of``, already computed by the caller)
    keep = [*PERSONA, "tags"] if personas else []
    a = wh.materialize(assign(view, dims, min_size, keep), "micro")
    if store:
        out = a.select(
            "customer_id",
            "micro_segment",
            depth=a._depth,
            dimensions=ibis.literal(SEP.join(dims)),
            as_of=ibis.literal(as_of, "date"),
        )
        wh.replace_where("micro_segments", out, "as_of", as_of)
    # Every node: big-enough prefix cells (and the root), with totals and "own" members.
    nodes: dict[str, Node] = {}
    root = a.aggregate(n=a.count(), rev=a._rev.sum(), clv=a._clv.mean()).to_pyarrow()
    r = root.to_pylist()[0]
    nodes[""] = Node("", 0, None, None, int(r["n"]), float(r["rev"] or 0), r["clv"])
    for d in range(len(dims)):
        keys = [f"_d{i}" for i in range(d + 1)]
        big = a.filter(a[f"_n{d}"] >= min_size)
        g = big.group_by(keys).aggregate(n=big.count(), rev=big._rev.sum(), clv=big._clv.mean())
        for row in g.to_pyarrow().to_pylist():
            parts = [str(row[k]) for k in keys]
            if d > 0 and SEP.join(parts[:-1]) not in nodes:
                continue  # its parent was too small: merged upward already
            path = SEP.join(parts)
            nodes[path] = Node(
                path,
                d + 1,
                dims[d],
                parts[-1],
                int(row["n"]),
                float(row["rev"] or 0.0),
                row["clv"],
            )
    own = a.group_by("micro_segment").aggregate(n=a.count()).to_pyarrow().to_pylist()
    for row in own:
        if row["micro_segment"] in nodes:
            nodes[row["micro_segment"]].own = int(row["n"])
    tree = MicroTree(dims, min_size, as_of, sorted(nodes.values(), key=lambda n: n.path))
    if personas:
        cards = persona_cards(view, a, wh)
        for n in tree.nodes:
            if n.path in cards:
                n.persona = cards[n.path]
    return tree


def persona_cards(
    view: ir.Table, assigned: ir.Table, wh: Warehouse | None = None
) -> dict[str, dict[str, Any]]:
    """For each leaf: the most common value of each persona column and the top lifestyle tag;
    for the root (path ""), everyone's, not only the members too few to form a cell (its
    "own": a card of those described "everyone" by a small group's traits).

    ``wh``: the members joined to their persona columns are computed once there, so each
    column's count reads one narrow table instead of joining the view again.
    """
    cols = ["customer_id", *(c for c in (*PERSONA, "tags") if c in view.columns)]
    if all(c in assigned.columns for c in cols):  # assigned with the persona columns kept
        j = assigned
    else:
        j = assigned.select("customer_id", "micro_segment").join(view.select(*cols), "customer_id")
        if wh is not None:
            j = wh.materialize(j, "persona")
    cards = _top_values(j)
    everyone = _top_values(j.mutate(micro_segment=ibis.literal("")))
    cards[""] = everyone.get("", {})
    return cards


def _top_values(j: ir.Table) -> dict[str, dict[str, Any]]:
    """Each ``micro_segment`` of ``j``'s most common value of every persona column and its
    top lifestyle tag."""
    cards: dict[str, dict[str, Any]] = {}
    # Every persona column's counts in one query (one statement instead of one per column);
    # the top value ranks on the column's own values (numbers as numbers), then is written
    # as text.
    parts = []
    for col, label in PERSONA.items():
        if col not in j.columns:
            continue
        src = j.filter(j[col].notnull())
        counts = src.group_by(["micro_segment", col]).aggregate(n=src.count())
        w = ibis.window(group_by=counts.micro_segment, order_by=[ibis.desc(counts.n), counts[col]])
        tot = counts.n.sum().over(ibis.window(group_by=counts.micro_segment))
        top = counts.mutate(_rk=ibis.row_number().over(w), _share=counts.n / tot)
        top = top.filter(top._rk == 0)
        parts.append(
            top.select(
                "micro_segment",
                _label=ibis.literal(label),
                _value=top[col].cast("string"),
                _share=top._share,
            )
        )
    if parts:
        tops = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        for row in tops.to_pyarrow().to_pylist():
            cards.setdefault(row["micro_segment"], {})[row["_label"]] = {
                "value": str(row["_value"]),
                "share": round(float(row["_share"]), 3),
            }
    if "tags" in j.columns:
        tags = j.filter(j.tags.notnull()).select(
            "micro_segment", tag=j.tags.replace("|", ",").split(",").unnest()
        )
        tags = tags.mutate(tag=tags.tag.strip().lower()).filter(ibis._.tag != "")
        counts = tags.group_by(["micro_segment", "tag"]).aggregate(n=tags.count())
        w = ibis.window(group_by=counts.micro_segment, order_by=[ibis.desc(counts.n), counts.tag])
        top = counts.mutate(_rk=ibis.row_number().over(w))
        for row in top.filter(top._rk == 0).to_pyarrow().to_pylist():
            cards.setdefault(row["micro_segment"], {})["lifestyle"] = {"value": row["tag"]}
    return cards


def drilldown(
    wh: Warehouse,
    levels: Sequence[str] = GEO_LEVELS,
    as_of: _dt.date | None = None,
    view: ir.Table | None = None,
) -> list[dict[str, Any]]:
    """Customers, revenue and average CLV at every level of a hierarchy (default: geography).

    ``view``: the customer view for ``as_of`` when the caller has it computed already.
    """
    if view is None or as_of is None:
        view, as_of = customer_view(wh, as_of)
    levels = [lvl for lvl in levels if lvl in view.columns]
    if not levels:
        raise InputError("the customers table has no geography columns", "load customers first")
    t = wh.materialize(_labels(view, levels), "drill")
    rows: list[dict[str, Any]] = []
    for d in range(len(levels)):
        keys = [f"_d{i}" for i in range(d + 1)]
        g = t.group_by(keys).aggregate(
            customers=t.count(), revenue=t._rev.sum(), avg_clv=t._clv.mean()
        )
        for row in g.order_by(keys).to_pyarrow().to_pylist():
            parts = [str(row[k]) for k in keys]
            rows.append(
                {
                    "level": levels[d],
                    "path": SEP.join(parts),
                    "name": parts[-1],
                    "customers": int(row["customers"]),
                    "revenue": float(row["revenue"] or 0.0),
                    "avg_clv": row["avg_clv"],
                }
            )
    return rows


def tree_json(tree: MicroTree) -> str:
    return json.dumps(tree.to_dict(), default=str, ensure_ascii=False)
