"""Acquisition look-alikes: rank the ``prospects`` table by resemblance to a segment.

``find_lookalikes`` trains on a sample of customers (profile columns only, the target being
membership of a rule or saved segment; default: the high value tier), scores every prospect and
writes ``prospect_scores`` (prospect_id, score, rank, reasons, target, as_of, run_id).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass

import ibis
import pandas as pd

from segmentum.errors import InputError
from segmentum.models.cluster import sample_rows
from segmentum.models.lookalike import CATEGORICAL, NUMERIC, LookalikeModel, fit_lookalike
from segmentum.warehouse import Warehouse

DEFAULT_TARGET = "value_tier == 'high'"


@dataclass
class Lookalikes:
    run_id: str
    as_of: _dt.date
    model: LookalikeModel
    top: pd.DataFrame  # the best prospects with score, rank and reasons
    scored: int


def _age(t: ibis.expr.types.Table, as_of: _dt.date) -> ibis.expr.types.Value:
    end = ibis.literal(as_of, "date")
    born = t.birth_date
    years = (end.year() - born.year()) - ibis.ifelse(
        (end.month() < born.month()) | ((end.month() == born.month()) & (end.day() < born.day())),
        1,
        0,
    )
    return ibis.coalesce(years.cast("int64"), t.age.cast("int64"))


def find_lookalikes(
    wh: Warehouse,
    target: str = DEFAULT_TARGET,
    *,
    as_of: _dt.date | None = None,
    top: int = 20,
    sample_size: int = 100_000,
    seed: int = 0,
) -> Lookalikes:
    """Score every prospect by resemblance to ``target`` (a rule or a saved segment's name)."""
    from segmentum.segments.store import PREVIEW, Segment, Segments, _col

    if not wh.has("prospects"):
        raise InputError(
            "there are no prospects to score", "load them: segmentum ingest prospects FILE"
        )
    store = Segments(wh)
    segs = {s.name: s for s in store.list()}
    # A rule is evaluated as a preview is: its errors are the user's own text, named by no
    # segment (an internal name would show in them).
    name = target if target in segs else PREVIEW
    if name == PREVIEW:
        segs[name] = Segment(name, target)
    flags, as_of, _, _ = store._evaluate(segs, as_of, wanted=[name])
    profile = wh.table("customers")
    cols = [c for c in (*CATEGORICAL, "tags") if c in profile.columns]
    cust = profile.select(
        "customer_id",
        *cols,
        age=_age(profile, as_of),
        **{c: profile[c] for c in NUMERIC if c != "age" and c in profile.columns},
    )
    cust = cust.join(flags.select("customer_id", _y=flags[_col(name)]), "customer_id")
    df = sample_rows(cust, sample_size, seed)
    model = fit_lookalike(df, df["_y"].fillna(False).astype(bool), target, seed)
    p = wh.table("prospects")
    pcols = [c for c in (*CATEGORICAL, "tags") if c in p.columns]
    pros = p.select(
        "prospect_id",
        *pcols,
        age=_age(p, as_of),
        **{c: p[c] for c in NUMERIC if c != "age" and c in p.columns},
    ).to_pandas()
    scored = model.score(pros)
    run_id = uuid.uuid4().hex[:12]
    out = pd.DataFrame(
        {
            "prospect_id": pros["prospect_id"].astype(str),
            "score": scored["score"].astype(float),
            "rank": scored["rank"].astype("int64"),
            "reasons": scored["reasons"].astype(str),
            "target": target,
            "as_of": as_of,
            "run_id": run_id,
        }
    )
    wh.write("prospect_scores", out)
    best = out.sort_values("rank").head(top).reset_index(drop=True)
    return Lookalikes(run_id, as_of, model, best, len(out))
