"""The pipeline step: statistics per group, then the distinguishing terms of the groups a
reader will look at (those flagged as different, and the saved segments), stored for pages."""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from typing import Any

import ibis
import pyarrow as pa

from segmentum.errors import WarehouseError
from segmentum.satisfaction.compute import SatisfactionRun, answered, compute, membership
from segmentum.satisfaction.text import MAX_COMMENTS, rank_terms, terms_of
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
    chosen = [(g["dimension"], g["segment"]) for g in groups[:TERM_GROUPS]]
    said, members = _comments_and_members(wh, as_of, chosen)
    # Each comment is split into terms once; a group's counts are its comments', the rest's
    # what remains.
    per_comment = [terms_of(text) for _, text in said]
    total: Counter[str] = Counter()
    for terms in per_comment:
        total.update(terms)
    for dim, seg in chosen:
        mine = members.get((dim, seg), set())
        inside = [i for i, (who, _) in enumerate(said) if who in mine]
        fc: Counter[str] = Counter()
        for i in inside:
            fc.update(per_comment[i])
        texts = [said[i][1] for i in inside]
        for rank, t in enumerate(rank_terms(fc, total - fc, texts, top=TERMS_PER_GROUP), 1):
            rows.append(
                {
                    "dimension": dim,
                    "segment": seg,
                    "rank": rank,
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


def _comments_and_members(
    wh: Warehouse, as_of: _dt.date, groups: list[tuple[str, str]]
) -> tuple[list[tuple[str | None, str]], dict[tuple[str, str], set[str]]]:
    """The latest comments (at most ``MAX_COMMENTS``, with who wrote them) and, for each group,
    which of their writers belong to it: two queries for every group at once."""
    r = answered(wh, as_of)
    text = r.comment.strip()
    r = r.filter(text.notnull() & (text != ""))
    r = r.order_by(ibis.desc("timestamp")).limit(MAX_COMMENTS)
    r = wh.materialize(r.select("customer_id", comment=r.comment.strip()), "satcomments")
    said = [(x["customer_id"], str(x["comment"])) for x in r.to_pyarrow().to_pylist()]
    members: dict[tuple[str, str], set[str]] = {}
    if groups:
        m = membership(wh, as_of)
        writers = r.filter(r.customer_id.notnull()).select("customer_id").distinct()
        m = m.filter(m.dimension.isin(sorted({d for d, _ in groups}))).semi_join(
            writers, "customer_id"
        )
        wanted = set(groups)
        for x in m.to_pyarrow().to_pylist():
            key = (x["dimension"], x["segment"])
            if key in wanted:
                members.setdefault(key, set()).add(x["customer_id"])
    return said, members


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
