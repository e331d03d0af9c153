"""An ingest killed half-way leaves the warehouse exactly as it was before that batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write

import segmentum
from segmentum.features import purchase_days, rollup

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import segmentum

    class DieBeforeCommit:
        def step(self, name, detail=""):
            if name == "before_commit":
                # The rows of this batch are written but not committed: die the hard way.
                os.kill(os.getpid(), signal.SIGKILL)

    segmentum.ingest("transactions", sys.argv[2], warehouse=sys.argv[1], progress=DieBeforeCommit())
    """
)


def snapshot(url: str) -> dict[str, object]:
    wh = segmentum.connect(url)
    try:
        counts: dict[str, object] = {
            name: int(wh.table(name).count().execute())
            for name in ("transactions", "quarantine", "ingest_batches", rollup.PURCHASE_DAYS)
        }
        counts["rollup_fingerprint"] = rollup._stored_fingerprint(wh)
        return counts
    finally:
        wh.close()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"duckdb:///{tmp_path / 'w.duckdb'}"


def test_a_killed_ingest_leaves_the_warehouse_unchanged(tmp_path: Path, url: str) -> None:
    first = write(
        tmp_path / "jan.csv", "customer_id,date,amount\nA1,2024-01-05,10\nA2,2024-01-06,x\n"
    )
    rows = "".join(f"B{i},2024-02-{1 + i % 28:02d},{i}\n" for i in range(2000))
    second = write(tmp_path / "feb.csv", "customer_id,date,amount\n" + rows + "B1,not a date,3\n")
    segmentum.ingest("transactions", first, warehouse=url)
    with segmentum.connect(url) as wh:
        purchase_days(wh)  # the rollup exists, so the killed batch was merging into it
        built = rollup._stored_fingerprint(wh)
    before = snapshot(url)

    script = write(tmp_path / "killer.py", KILLER)
    proc = subprocess.run(
        [sys.executable, str(script), url, str(second)], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]

    assert (
        snapshot(url)
        == before
        == {
            "transactions": 1,
            "quarantine": 1,
            "ingest_batches": 1,
            rollup.PURCHASE_DAYS: 1,
            "rollup_fingerprint": built,
        }
    )
    [report] = segmentum.ingest("transactions", second, warehouse=url)
    assert (report.accepted, report.quarantined) == (2000, 1)
    with segmentum.connect(url) as wh:
        tx = wh.table("transactions")
        assert rollup._stored_fingerprint(wh) == wh.fingerprint(tx, rollup.SOURCE_COLUMNS)
        assert wh.table(rollup.PURCHASE_DAYS).count().execute() == 1 + 2000


def test_replacing_a_date_keeps_every_other_row_on_every_engine(backend: Any) -> None:
    """``replace_where``: the rows of the dates replaced go, the new ones come, every other
    date and a row without a date stay; the new rows may be computed from the rows they
    replace. DuckDB and PostgreSQL do it in place, in one transaction; new rows that cannot be
    stored leave the table as it was."""
    import datetime as dt

    import ibis
    import pyarrow as pa

    wh = backend
    d1, d2, d3 = dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)
    wh.write(
        "snap",
        pa.table(
            {
                "customer_id": ["a", "b", "a", "b", "z"],
                "as_of": pa.array([d1, d1, d2, d2, None], pa.date32()),
                "score": [1.0, 2.0, 3.0, 4.0, 9.0],
            }
        ),
    )
    t = wh.table("snap")
    # d2 again, from its own rows (doubled), plus a new customer; columns in another order.
    again = t.filter(t.as_of == ibis.literal(d2)).mutate(score=t.score * 2)
    again = again.select("score", "as_of", "customer_id").union(
        ibis.memtable({"score": [5.0], "as_of": [d2], "customer_id": ["c"]}).cast(again.schema())
    )
    wh.replace_where("snap", again, "as_of", d2)
    nodate = ("z", None, 9.0)

    def rows() -> list[tuple[Any, ...]]:
        got = wh.table("snap").to_pyarrow().to_pylist()
        return sorted(
            ((r["customer_id"], r["as_of"], r["score"]) for r in got), key=lambda r: str(r)
        )

    assert rows() == sorted(
        [("a", d1, 1.0), ("b", d1, 2.0), ("a", d2, 6.0), ("b", d2, 8.0), ("c", d2, 5.0), nodate],
        key=lambda r: str(r),
    )
    # Several dates at once; one of them not stored yet.
    new = ibis.memtable({"customer_id": ["a", "q"], "as_of": [d1, d3], "score": [7.0, 8.0]}).cast(
        wh.table("snap").schema()
    )
    wh.replace_where("snap", new, "as_of", [d1, d3])
    assert rows() == sorted(
        [("a", d1, 7.0), ("a", d2, 6.0), ("b", d2, 8.0), ("c", d2, 5.0), ("q", d3, 8.0), nodate],
        key=lambda r: str(r),
    )
    # New rows without one of the table's columns (a backfill has no CLV): empty there, and
    # on DuckDB the other dates' rows are not rewritten (they keep their row ids).
    if wh.engine == "duckdb":
        ids = "select customer_id, as_of, rowid from snap where as_of = DATE '2025-02-01'"
        kept_ids = sorted(wh.con.raw_sql(ids).fetchall())
    fewer = ibis.memtable({"customer_id": ["r"], "as_of": [d3]}).cast(
        {"customer_id": "string", "as_of": "date"}
    )
    wh.replace_where("snap", fewer, "as_of", [d3])
    assert rows() == sorted(
        [("a", d1, 7.0), ("a", d2, 6.0), ("b", d2, 8.0), ("c", d2, 5.0), ("r", d3, None), nodate],
        key=lambda r: str(r),
    )
    if wh.engine == "duckdb":
        assert sorted(wh.con.raw_sql(ids).fetchall()) == kept_ids
    if wh.engine in ("duckdb", "postgres"):
        before = rows()
        broken = ibis.memtable({"customer_id": ["x"], "as_of": [d1], "score": ["not a number"]})
        with pytest.raises(Exception):  # noqa: B017 - the engine's own conversion error
            wh.replace_where("snap", broken, "as_of", d1)
        assert rows() == before
    # A backfill deletes the dates it replaces first, in one statement (DuckDB, PostgreSQL);
    # Spark rewrites the table in replace_where instead and deletes nothing here.
    deleted = wh.delete_where("snap", "as_of", [d1, d3])
    assert deleted == (wh.engine in ("duckdb", "postgres"))
    if deleted:
        assert rows() == sorted(
            [("a", d2, 6.0), ("b", d2, 8.0), ("c", d2, 5.0), nodate], key=lambda r: str(r)
        )
    assert not wh.delete_where("not_there", "as_of", [d1])
