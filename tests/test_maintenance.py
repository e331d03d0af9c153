"""Storage hygiene on real DuckDB files: a killed load leaves nothing behind after the next open,
doctor finds and repairs what interrupted processes leave, backups restore every table."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import segmentum
from segmentum.cli import main
from segmentum.errors import InputError
from segmentum.maintenance import backup, doctor, restore, spill_folder
from segmentum.warehouse import Warehouse


@pytest.fixture(scope="module")
def demo_db(service_db: Path) -> Path:
    """The small demo warehouse the service tests share (tests work on copies of it)."""
    return service_db


def _copy(src: Path, dst: Path) -> str:
    shutil.copy(src, dst)
    return f"duckdb:///{dst}"


def _contents(wh: Warehouse) -> dict[str, tuple[int, int]]:
    """Every table with its row count and a checksum over all its columns."""
    return {
        name: wh.fingerprint(wh.con.table(name), wh.con.table(name).columns)
        for name in sorted(wh.con.list_tables())
    }


# ---------------------------------------------------------------------------- killed loads


def _big_csv(path: Path, lines: int) -> None:
    rng = random.Random(1)
    with path.open("w", encoding="utf-8") as f:
        f.write("invoice_id,customer_id,timestamp,product_id,quantity,amount\n")
        for i in range(lines):
            f.write(
                f"I{i // 3},C{rng.randint(1, 50_000)},2024-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d} 10:00:00,P{rng.randint(1, 3000)},"
                f"{rng.randint(1, 5)},{rng.uniform(1, 200):.2f}\n"
            )


def test_a_killed_ingest_leaves_no_stray_files_after_the_next_open(tmp_path: Path) -> None:
    _big_csv(tmp_path / "lines.csv", 600_000)
    db = tmp_path / "w.duckdb"
    url = f"duckdb:///{db}"
    with segmentum.connect(url) as wh:  # an earlier, committed load
        wh.con.raw_sql("CREATE TABLE kept AS SELECT range AS i FROM range(1000)")
    # Little memory: the engine spills to <file>.tmp, as a big load does on a small machine.
    env = {**os.environ, "SEGMENTUM_MEMORY_LIMIT": "100MB"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmentum.cli", "ingest", "transactions", "lines.csv", "-w", url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    spill = spill_folder(db)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if spill.is_dir() and any(spill.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the load ended before it spilled: {proc.stderr.read()!r}"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sum(f.stat().st_size for f in spill.iterdir())
    assert left > 0  # what the kill left behind

    with segmentum.connect(url) as wh:
        assert not spill.exists()
        assert wh.cleaned_on_open and str(spill) in wh.cleaned_on_open[0]
        assert wh.con.table("kept").count().execute() == 1000
        assert not wh.has("ingest_batches") or wh.table("ingest_batches").count().execute() == 0
        report = doctor(wh)
    assert [f.status for f in report.findings if f.check == "stray files"] == ["repaired"]
    assert not report.problems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.csv", "w.duckdb"]


# ---------------------------------------------------------------------------- doctor


def test_doctor_finds_and_repairs_a_stale_rollup_and_rows_of_an_unfinished_load(
    demo_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _copy(demo_db, tmp_path / "w.duckdb")
    with segmentum.connect(url) as wh:
        assert not doctor(wh).problems
        # What a load on an engine without transactions leaves when killed: rows whose batch
        # was never recorded (and invoice lines the purchase-day rollup has not seen).
        wh.con.raw_sql(
            "INSERT INTO transactions BY NAME SELECT * REPLACE ('ghost' AS batch_id) "
            "FROM transactions LIMIT 25"
        )
        found = {f.check: f for f in doctor(wh).problems}
        assert set(found) == {"rollup", "orphan batches"}
        assert "25 in transactions" in found["orphan batches"].message
    assert main(["doctor", "-w", url]) == 1  # problems: exit 1, "some items failed"
    capsys.readouterr()
    assert main(["doctor", "-w", url, "--lang", "es"]) == 1
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    assert "se encontraron 2 problemas" in said and "repáralos: segmentum doctor" in said, said
    assert main(["doctor", "--repair", "-w", url]) == 0
    with segmentum.connect(url) as wh:
        report = doctor(wh)
        assert not report.problems
        t = wh.table("transactions")
        assert t.filter(t.batch_id == "ghost").count().execute() == 0


def test_doctor_compacts_a_file_full_of_free_space(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with segmentum.connect(url) as wh:
        wh.con.raw_sql("CREATE TABLE kept AS SELECT range AS i FROM range(1000)")
        # A big load that was replaced: its blocks stay in the file as free space.
        wh.con.raw_sql("CREATE TABLE gone AS SELECT range AS i, random() AS r FROM range(6000000)")
        wh.con.raw_sql("CHECKPOINT")
        wh.con.raw_sql("DROP TABLE gone")
        wh.con.raw_sql("CHECKPOINT")
        before = (tmp_path / "w.duckdb").stat().st_size
        [size] = [f for f in doctor(wh).findings if f.check == "size"]
        assert size.status == "problem" and "free space" in size.message
        report = doctor(wh, repair=True)  # compacts, and closes wh
    after = (tmp_path / "w.duckdb").stat().st_size
    assert after < before / 4
    assert "compacted" in next(f for f in report.findings if f.check == "size").message
    with segmentum.connect(url) as wh:
        assert wh.con.table("kept").count().execute() == 1000
        assert not doctor(wh).problems


def test_doctor_counts_the_space_a_write_killed_before_its_commit_left(tmp_path: Path) -> None:
    """A big write killed before its commit leaves the blocks it wrote at the end of the file:
    DuckDB counts them neither used nor free, and the file keeps its size."""
    db = tmp_path / "w.duckdb"
    url = f"duckdb:///{db}"
    code = (
        "import os, segmentum\n"
        f"wh = segmentum.connect({url!r})\n"
        "wh.con.raw_sql('CREATE TABLE kept AS SELECT range AS i FROM range(1000)')\n"
        "wh.con.raw_sql('BEGIN TRANSACTION')\n"
        "wh.con.raw_sql('CREATE TABLE big AS SELECT range AS i, random() AS r FROM range(8000000)')\n"
        "os._exit(9)  # killed before the commit\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    before = db.stat().st_size
    assert before > 40 * 2**20  # the uncommitted blocks are in the file
    with segmentum.connect(url) as wh:
        assert not wh.has("big")
        [size] = [f for f in doctor(wh).findings if f.check == "size"]
        assert size.status == "problem" and "free space" in size.message, size.message
        doctor(wh, repair=True)  # compacts, and closes wh
    assert db.stat().st_size < before / 4
    with segmentum.connect(url) as wh:
        assert wh.con.table("kept").count().execute() == 1000
        assert not doctor(wh).problems


def test_doctor_reports_messages_left_pending(demo_db: Path, tmp_path: Path) -> None:
    url = _copy(demo_db, tmp_path / "w.duckdb")
    with segmentum.connect(url) as wh:
        wh.con.raw_sql(
            "CREATE TABLE campaign_sends AS SELECT * FROM (VALUES "
            "('c1', 'pending'), ('c1', 'pending'), ('c1', 'sending'), ('c1', 'sent')) "
            "AS t(campaign_id, status)"
        )
        [f] = [f for f in doctor(wh).findings if f.check == "pending sends"]
    assert f.status == "problem"
    assert "2 messages wait to be sent in c1; 1 were being sent" in f.message
    assert f.hint == "send what is due: segmentum campaign send c1"


# ---------------------------------------------------------------------------- backups


def test_backup_and_restore_into_a_fresh_folder_give_every_table_back(
    demo_db: Path, tmp_path: Path
) -> None:
    url = _copy(demo_db, tmp_path / "w.duckdb")
    with segmentum.connect(url) as wh:
        original = _contents(wh)
        report = backup(wh, tmp_path / "backups" / "monday")
    assert report.tables.keys() == original.keys() and len(original) > 10
    manifest = json.loads((tmp_path / "backups" / "monday" / "segmentum-backup.json").read_text())
    assert manifest["tables"] == {k: v[0] for k, v in original.items()}

    fresh = tmp_path / "elsewhere" / "restored.duckdb"
    restore(tmp_path / "backups" / "monday", f"duckdb:///{fresh}")
    with segmentum.connect(f"duckdb:///{fresh}") as wh:
        assert _contents(wh) == original  # every table, every row, every column


def test_restore_never_overwrites_data_unasked_and_a_damaged_backup_changes_nothing(
    demo_db: Path, tmp_path: Path
) -> None:
    url = _copy(demo_db, tmp_path / "w.duckdb")
    with segmentum.connect(url) as wh:
        backup(wh, tmp_path / "b")
        before = _contents(wh)
    with pytest.raises(InputError, match="already holds data"):
        restore(tmp_path / "b", url)
    (tmp_path / "b" / "customers.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot be imported"):
        restore(tmp_path / "b", url, replace=True)
    with pytest.raises(InputError, match="not a segmentum backup"):
        restore(tmp_path, url, replace=True)
    with segmentum.connect(url) as wh:
        assert _contents(wh) == before
    assert not list(tmp_path.glob("*.restoring*"))


def test_backup_and_restore_from_the_command_line(demo_db: Path, tmp_path: Path) -> None:
    url = _copy(demo_db, tmp_path / "w.duckdb")
    assert main(["backup", str(tmp_path / "b"), "-w", url]) == 0
    assert main(["backup", str(tmp_path / "b"), "-w", url]) == 2  # never into a used folder
    target = f"duckdb:///{tmp_path / 'r.duckdb'}"
    assert main(["restore", str(tmp_path / "b"), "-w", target]) == 0
    assert main(["restore", str(tmp_path / "b"), "-w", target]) == 2
    assert main(["restore", str(tmp_path / "b"), "-w", target, "--replace"]) == 0
