"""An ingest killed half-way leaves the warehouse exactly as it was before that batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
