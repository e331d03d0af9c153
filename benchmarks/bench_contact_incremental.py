"""Contact times on a new day: a full count against the incremental path, on a warehouse that
a full ``segmentum run`` left (its stored ``contact_counts``).

The customers who bought on the run's last day are taken as the changed ones; everybody
else's counts are carried. Both answers are staged and compared row by row.

    cd benchmarks && ../.venv/bin/python bench_contact_incremental.py ../bench-data/w.duckdb
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

import ibis

from segmentum.campaigns import timing
from segmentum.warehouse import connect


def main(path: str, memory_limit: str = "4GB") -> dict[str, object]:
    wh = connect(f"duckdb:///{path}", memory_limit=memory_limit)
    as_of = timing.counts_as_of(wh)
    assert as_of is not None, "run segmentum run first: no stored signal counts"
    day = as_of - dt.timedelta(days=1)

    def cut(d: dt.date) -> ibis.Expr:
        return ibis.literal(dt.datetime(d.year, d.month, d.day), "timestamp")

    tx = wh.table("transactions")
    bought = tx.filter((tx.timestamp >= cut(day)) & (tx.timestamp < cut(as_of)))
    changed = wh.materialize(
        bought.filter(bought.customer_id.notnull()).select("customer_id").distinct(), "changed"
    )
    seconds: dict[str, list[float]] = {"full": [], "incremental": []}
    staged = {}
    for kind in ("full", "incremental", "full", "incremental"):
        t = time.perf_counter()
        if kind == "full":
            out = timing.contact_times(wh, as_of, store=False)
        else:
            out = timing.contact_times(wh, as_of, store=False, changed=changed, since=as_of)
        staged[kind] = wh.materialize(out, f"ct_{kind}")
        seconds[kind].append(round(time.perf_counter() - t, 1))
    cols = [c for c in staged["full"].columns if c != "as_of"]
    a, b = staged["full"].select(cols), staged["incremental"].select(cols)
    return {
        "as_of": str(as_of),
        "changed": int(changed.count().to_pyarrow().as_py()),
        "seconds": seconds,
        "rows": int(a.count().to_pyarrow().as_py()),
        "rows_differing": int(a.difference(b).count().to_pyarrow().as_py()),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
