"""The pipeline step: statistics per group, then the distinguishing terms of the groups a
reader will look at (those flagged as different, and the saved segments), stored for pages."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import ibis
import pyarrow as pa

from segmentum.errors import WarehouseError
from segmentum.satisfaction.compute import SatisfactionRun, compute
from segmentum.satisfaction.text import segment_terms
from segmentum.warehouse import Warehouse

TERMS = "satisfaction_terms"
# Groups whose terms are precomputed, at most (flagged ones first).
TERM_GROUPS = 20
# Terms kept per group.
TERMS_PER_GROUP = 10
# The tables the service reads (published with the other read models).
READ_MODELS = ("satisfaction_segments", "satisfaction_trend", TERMS)

_TERMS_SCHEMA = pa.schema(
    [
        ("dimension", pa.string()),
        ("segment", pa.string()),
        ("rank", pa.int64()),
        ("term", pa.string()),
        ("z", pa.float64()),
        ("delta", pa.float64()),
        ("count", pa.int64()),
        ("rest_count", pa.int64()),
        ("quotes", pa.string()),
    ]
)


def run(wh: Warehouse, as_of: _dt.date, run_id: str = "") -> SatisfactionRun:
    """Compute satisfaction for ``as_of`` and the terms of the groups worth reading."""
    result = compute(wh, as_of, run_id)
    groups = [r for r in result.rows if r["flag"]]
    groups += [
        r
        for r in result.rows
        if not r["flag"] and r["dimension"] == "segment" and (r["respondents"] or 0) >= 10
    ]
    rows: list[dict[str, Any]] = []
    for g in groups[:TERM_GROUPS]:
        found = segment_terms(wh, as_of, g["dimension"], g["segment"], TERMS_PER_GROUP)
        for i, t in enumerate(found):
            rows.append(
                {
                    "dimension": g["dimension"],
                    "segment": g["segment"],
                    "rank": i + 1,
                    "term": t.term,
                    "z": t.z,
                    "delta": t.delta,
                    "count": t.count,
                    "rest_count": t.rest_count,
                    "quotes": json.dumps(t.quotes, ensure_ascii=False),
                }
            )
    table = wh.from_arrow(pa.Table.from_pylist(rows, schema=_TERMS_SCHEMA), "satterms")
    wh.write(
        TERMS,
        table.mutate(as_of=ibis.literal(as_of, "date"), run_id=ibis.literal(run_id)),
    )
    return result


def stored_terms(wh: Warehouse, dimension: str, segment: str) -> list[dict[str, Any]]:
    """The precomputed terms of one group (empty when it had none worth showing)."""
    if not wh.has(TERMS):
        raise WarehouseError("satisfaction has not been computed", "run: segmentum run")
    t = wh.table(TERMS)
    t = t.filter((t.dimension == dimension) & (t.segment == segment)).order_by("rank")
    rows: list[dict[str, Any]] = t.to_pyarrow().to_pylist()
    for r in rows:
        r["quotes"] = json.loads(r["quotes"] or "[]")
    return rows
