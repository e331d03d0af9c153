"""An ingest killed half-way leaves the warehouse exactly as it was before that batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import write

import segmentum

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import segmentum

    class DieBeforeCommit:
        def step(self, name, detail=""):
            if name == "before_commit":
                # The rows of this batch are written but not committed: die the hard way.
                os.kill(os.getpid(), signal.SIGKILL)

    segmentum.ingest("transactions", sys.argv[2], warehouse=f"duckdb:///{sys.argv[1]}", progress=DieBeforeCommit())
    """
)


def snapshot(db: Path) -> dict[str, int]:
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        return {
            name: int(wh.table(name).count().execute())
            for name in ("transactions", "quarantine", "ingest_batches")
        }
    finally:
        wh.close()


def test_a_killed_ingest_leaves_the_warehouse_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    first = write(
        tmp_path / "jan.csv", "customer_id,date,amount\nA1,2024-01-05,10\nA2,2024-01-06,x\n"
    )
    rows = "".join(f"B{i},2024-02-{1 + i % 28:02d},{i}\n" for i in range(2000))
    second = write(tmp_path / "feb.csv", "customer_id,date,amount\n" + rows + "B1,not a date,3\n")
    segmentum.ingest("transactions", first, warehouse=f"duckdb:///{db}")
    before = snapshot(db)

    script = write(tmp_path / "killer.py", KILLER)
    proc = subprocess.run(
        [sys.executable, str(script), str(db), str(second)], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]

    assert snapshot(db) == before == {"transactions": 1, "quarantine": 1, "ingest_batches": 1}
    [report] = segmentum.ingest("transactions", second, warehouse=f"duckdb:///{db}")
    assert (report.accepted, report.quarantined) == (2000, 1)
