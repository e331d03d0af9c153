"""Keeping a warehouse healthy: stray files, checks and repairs (doctor), backup and restore.

A process killed in the middle of a load leaves the warehouse itself intact (loads are
transactions) but can leave debris: DuckDB's spill folder beside the file (hundreds of MB),
free space inside the file, a purchase-day rollup that no longer matches the invoice lines, rows
of a batch that never committed (engines without transactions), messages claimed by a send that
never finished. :func:`clean_stray_files` runs at every open; :func:`doctor` checks the rest and,
asked to, repairs it. :func:`backup` and :func:`restore` copy a DuckDB warehouse to a folder and
back, checking every table's row count.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmentum.errors import InputError, WarehouseError

if TYPE_CHECKING:
    from segmentum.warehouse import Warehouse

MANIFEST = "segmentum-backup.json"
# A DuckDB file with more free space than this share (and at least FREE_MIN_BYTES) is compacted.
FREE_SHARE = 0.3
FREE_MIN_BYTES = 32 * 2**20
# Text copies made while reading non-UTF-8 files; older than this, no load can still be using one.
STRAY_COPY_AGE_S = 24 * 3600


def spill_folder(db_path: Path) -> Path:
    """DuckDB's default spill folder for a database file: ``<file>.tmp`` beside it."""
    return db_path.with_name(db_path.name + ".tmp")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def clean_stray_files(db_path: Path) -> list[str]:
    """Remove what a killed process left beside the database file; the paths removed.

    Call it only while holding the file's lock (just after opening it): then no other
    process can be spilling into the folder.
    """
    folder = spill_folder(db_path)
    removed: list[str] = []
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            removed.append(f"{f} ({_mb(_size(f))})")
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        # DuckDB recreates the folder when it next spills.
        shutil.rmtree(folder, ignore_errors=True)
    return removed


# ------------------------------------------------------------------------------------ doctor


@dataclass
class Finding:
    """One check of :func:`doctor`: ``ok``, ``info``, ``problem`` or ``repaired``."""

    check: str
    status: str
    message: str
    hint: str | None = None


@dataclass
class DoctorReport:
    """What :func:`doctor` found and did."""

    url: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "problem"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": not self.problems,
            "findings": [asdict(f) for f in self.findings],
        }


def _stray(wh: Warehouse, repair: bool) -> list[Finding]:
    out: list[Finding] = []
    if wh.cleaned_on_open:
        out.append(
            Finding(
                "stray files",
                "repaired",
                f"removed {len(wh.cleaned_on_open)} leftover(s) of a killed process (spill "
                f"files beside the database, staging tables in it): "
                f"{', '.join(wh.cleaned_on_open[:3])}",
            )
        )
    # Copies of non-UTF-8 files made for reading; a killed load leaves its copy behind.
    cutoff = time.time() - STRAY_COPY_AGE_S
    old = [
        p
        for p in Path(tempfile.gettempdir()).glob("segmentum-*.csv")
        if p.is_file() and p.stat().st_mtime < cutoff
    ]
    if old:
        size = sum(p.stat().st_size for p in old)
        if repair:
            for p in old:
                p.unlink(missing_ok=True)
        out.append(
            Finding(
                "stray files",
                "repaired" if repair else "problem",
                f"{len(old)} temporary copies of loaded files ({_mb(size)}) in "
                f"{tempfile.gettempdir()}" + (": removed" if repair else ""),
                None if repair else "remove them: segmentum doctor --repair",
            )
        )
    # Staging tables are temporary on DuckDB; on other engines a killed step leaves them.
    staging = [t for t in wh.con.list_tables() if t.startswith("_seg_")]
    if staging:
        if repair:
            for t in staging:
                wh.drop(t)
        out.append(
            Finding(
                "stray files",
                "repaired" if repair else "problem",
                f"{len(staging)} staging tables left by interrupted steps"
                + (": dropped" if repair else ""),
                None if repair else "drop them: segmentum doctor --repair",
            )
        )
    if not out:
        out.append(Finding("stray files", "ok", "no stray files or staging tables"))
    return out


def _rollup(wh: Warehouse, repair: bool) -> Finding:
    from segmentum.features import rollup

    if not wh.has("transactions"):
        return Finding("rollup", "ok", "no invoice lines loaded yet")
    if not wh.has(rollup.PURCHASE_DAYS) or not wh.has(rollup.ROLLUP_STATE):
        return Finding("rollup", "info", "the purchase-day rollup is built on first use")
    # The rollup's own record of the lines it was built from (the same check its readers make).
    stored = rollup._stored_fingerprint(wh)
    current = wh.fingerprint(wh.table("transactions"), rollup.SOURCE_COLUMNS)
    if stored == current:
        return Finding("rollup", "ok", f"the purchase-day rollup matches {current[0]:,} lines")
    if repair:
        rollup.purchase_days(wh)  # rebuilds a stale rollup, and whatever it depends on
        return Finding("rollup", "repaired", "the purchase-day rollup was out of date: rebuilt")
    return Finding(
        "rollup",
        "problem",
        "the purchase-day rollup does not match the invoice lines (changed outside ingest)",
        "rebuild it: segmentum doctor --repair (the next features run would also do it)",
    )


def _orphans(wh: Warehouse, repair: bool) -> Finding:
    from segmentum.schema import INGESTIBLE

    if not wh.has("ingest_batches"):
        return Finding("orphan batches", "ok", "nothing loaded yet")
    committed = wh.table("ingest_batches").select("batch_id")
    found: dict[str, int] = {}
    for name in INGESTIBLE:
        if not wh.has(name) or "batch_id" not in wh.table(name).columns:
            continue
        t = wh.table(name)
        orphans = t.filter(t.batch_id.notnull()).anti_join(committed, "batch_id")
        n = int(orphans.count().to_pyarrow().as_py())
        if n:
            found[name] = n
            if repair:
                wh.delete_keys(name, orphans.select("batch_id").distinct(), ["batch_id"])
    if not found:
        return Finding("orphan batches", "ok", "every loaded row belongs to a recorded batch")
    what = ", ".join(f"{n:,} in {t}" for t, n in found.items())
    if repair:
        return Finding("orphan batches", "repaired", f"removed rows of unfinished loads: {what}")
    return Finding(
        "orphan batches",
        "problem",
        f"rows of loads that never finished: {what}",
        "remove them: segmentum doctor --repair, then load those files again",
    )


def _sends(wh: Warehouse) -> Finding:
    table = "campaign_sends"
    if not wh.has(table) or "status" not in wh.table(table).columns:
        return Finding("pending sends", "ok", "no campaign has been sent yet")
    t = wh.table(table)
    open_ = t.filter(t.status.isin(["pending", "sending"]))
    counts = open_.group_by(["campaign_id", "status"]).aggregate(n=open_.count())
    rows = counts.to_pyarrow().to_pylist()
    if not rows:
        return Finding("pending sends", "ok", "nothing waits to be sent")
    campaigns = sorted({str(r["campaign_id"]) for r in rows})
    pending = sum(int(r["n"]) for r in rows if r["status"] == "pending")
    in_flight = sum(int(r["n"]) for r in rows if r["status"] == "sending")
    message = f"{pending:,} messages wait to be sent in {', '.join(campaigns)}"
    if in_flight:
        message += f"; {in_flight:,} were being sent when a send stopped"
    return Finding(
        "pending sends",
        "problem" if in_flight else "info",
        message,
        f"send what is due: segmentum campaign send {campaigns[0]}",
    )


def _duckdb_size(wh: Warehouse, path: Path) -> tuple[int, int, int]:
    """File size, free bytes inside it, and the write-ahead log's size.

    Free: the blocks DuckDB lists as free, and the file's tail beyond its last block, which a
    write killed before its commit leaves (the blocks it had written are nobody's; DuckDB does
    not count them, and the file does not shrink).
    """
    row = wh.con.raw_sql("PRAGMA database_size").fetchone()
    block_size, total_blocks, free_blocks = int(row[2]), int(row[3]), int(row[5])
    wal = path.with_name(path.name + ".wal")
    size = _size(path)
    tail = max(0, size - _DUCKDB_HEADERS - total_blocks * block_size)
    return size, block_size * free_blocks + tail, _size(wal)


# A DuckDB file starts with its main header and two database headers, 4 KiB each.
_DUCKDB_HEADERS = 3 * 4096


def _size_finding(wh: Warehouse, path: Path, repair: bool) -> tuple[Finding, bool]:
    """The size check, and whether the file should be compacted."""
    if repair:
        wh.con.raw_sql("CHECKPOINT")
    total, free, wal = _duckdb_size(wh, path)
    text = f"{_mb(total)} on disk, {_mb(free)} of it free space" + (
        f", {_mb(wal)} of log not yet folded in" if wal else ""
    )
    if free >= FREE_MIN_BYTES and free > FREE_SHARE * total:
        if repair:
            return Finding("size", "repaired", text), True
        return (
            Finding(
                "size",
                "problem",
                text + " (left by interrupted or replaced loads)",
                "compact it: segmentum doctor --repair (nothing else may use it meanwhile)",
            ),
            False,
        )
    return Finding("size", "ok", text), False


def doctor(wh: Warehouse, *, repair: bool = False) -> DoctorReport:
    """Check the warehouse for what interrupted processes leave behind; repair it if asked.

    With ``repair`` a DuckDB file with much free space is compacted into a new file at the end,
    which closes ``wh``: open the warehouse again afterwards.

    Examples
    --------
    >>> from segmentum.warehouse import connect
    >>> [f.check for f in doctor(connect("duckdb://")).findings]
    ['stray files', 'orphan batches', 'rollup', 'pending sends']
    """
    from segmentum.warehouse import duckdb_file

    report = DoctorReport(wh.url)
    report.findings += _stray(wh, repair)
    # Orphan rows go before the rollup is checked: removing them changes the invoice lines.
    report.findings.append(_orphans(wh, repair))
    report.findings.append(_rollup(wh, repair))
    report.findings.append(_sends(wh))
    path = duckdb_file(wh.url) if wh.engine == "duckdb" else None
    if path is not None:
        finding, shrink = _size_finding(wh, path, repair)
        report.findings.append(finding)
        if shrink:
            before, after = compact(wh, path)
            finding.message += f"; compacted from {_mb(before)} to {_mb(after)}"
    return report


def compact(wh: Warehouse, path: Path) -> tuple[int, int]:
    """Copy a DuckDB warehouse into a new file without its free space and put it in place.

    Closes ``wh``. Returns the file sizes before and after.
    """
    before = _size(path)
    fresh = path.with_name(path.name + ".compact")
    fresh.unlink(missing_ok=True)
    name = wh.con.raw_sql("SELECT current_database()").fetchone()[0]
    wh.con.raw_sql(f"ATTACH '{_sql_text(fresh)}' AS _segmentum_compact")
    try:
        wh.con.raw_sql(f'COPY FROM DATABASE "{name}" TO _segmentum_compact')
    finally:
        wh.con.raw_sql("DETACH _segmentum_compact")
    wh.con.raw_sql("CHECKPOINT")
    wh.close()
    os.replace(fresh, path)
    return before, _size(path)


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


# ------------------------------------------------------------------------------ backups


@dataclass
class BackupReport:
    """A backup folder and the tables it holds (name: rows)."""

    path: str
    tables: dict[str, int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _table_rows(wh: Warehouse) -> dict[str, int]:
    return {
        t: int(wh.con.table(t).count().to_pyarrow().as_py())
        for t in sorted(wh.con.list_tables())
        if not t.startswith("_seg_")
    }


def _require_duckdb(wh: Warehouse, what: str) -> Path:
    from segmentum.warehouse import duckdb_file

    path = duckdb_file(wh.url) if wh.engine == "duckdb" else None
    if path is None:
        raise WarehouseError(
            f"{what} works on a DuckDB warehouse file, not on {wh.url}",
            "use the engine's own tools (pg_dump for PostgreSQL, your lake's snapshots for Spark)",
        )
    return path


def backup(wh: Warehouse, target: str | Path) -> BackupReport:
    """Export every table of a DuckDB warehouse to the folder ``target`` (Parquet files, the
    schema, and a manifest with each table's row count); the folder must be new or empty.

    The warehouse stays open (and locked to other processes) for the whole copy, so the backup
    is one consistent state.
    """
    _require_duckdb(wh, "backup")
    out = Path(target)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(
            f"{out} already exists and is not an empty folder",
            "back up into a new folder, e.g. backups/2024-06-30",
        )
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    wh.con.raw_sql("CHECKPOINT")
    wh.con.raw_sql(f"EXPORT DATABASE '{_sql_text(out.absolute())}' (FORMAT parquet)")
    tables = _table_rows(wh)
    manifest = {
        "segmentum_backup": 1,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": wh.url,
        "tables": tables,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return BackupReport(str(out), tables, time.perf_counter() - start)


def restore(source: str | Path, url: str, *, replace: bool = False) -> BackupReport:
    """Restore a backup folder into the DuckDB warehouse at ``url``.

    The backup is imported into a new file beside the target and checked (every table, every
    row count) before it takes the target's place, so a failed restore changes nothing. An
    existing warehouse with tables is replaced only with ``replace``.
    """
    from segmentum.warehouse import connect, duckdb_file

    folder = Path(source)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InputError(
            f"{folder} is not a segmentum backup (no {MANIFEST} in it)",
            "give the folder that segmentum backup wrote",
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = {str(k): int(v) for k, v in manifest["tables"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{manifest_path} is damaged: it is not the manifest segmentum backup writes",
            "the backup folder is damaged; use another backup",
        ) from exc
    path = duckdb_file(url)
    if path is None:
        raise WarehouseError(
            f"restore works into a DuckDB warehouse file, not into {url}",
            "give a URL like duckdb:///restored.duckdb",
        )
    if path.exists():
        with connect(url) as current:  # refuses when another process holds it (busy)
            has_tables = bool(current.con.list_tables())
        if has_tables and not replace:
            raise InputError(
                f"the warehouse {url} already holds data",
                "restore into a new file (--warehouse duckdb:///restored.duckdb), "
                "or pass --replace to overwrite it",
            )
    start = time.perf_counter()
    staging = path.with_name(path.name + ".restoring")
    for leftover in (staging, staging.with_name(staging.name + ".wal")):
        leftover.unlink(missing_ok=True)
    new = connect(f"duckdb:///{staging.absolute()}")
    try:
        new.con.raw_sql(f"IMPORT DATABASE '{_sql_text(folder.absolute())}'")
        got = _table_rows(new)
        new.con.raw_sql("CHECKPOINT")
    except Exception as exc:
        new.close()
        staging.unlink(missing_ok=True)
        raise InputError(
            f"{folder}: the backup cannot be imported ({str(exc).splitlines()[0]})",
            "check that the folder is complete (every .parquet file the manifest lists)",
        ) from exc
    new.close()
    if got != expected:
        staging.unlink(missing_ok=True)
        differ = sorted(set(got.items()) ^ set(expected.items()))
        raise InputError(
            f"{folder}: the restored tables do not match the backup's manifest: {differ[:5]}",
            "the backup folder is damaged; use another backup",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # The old file's log belongs to the old database: never replay it onto the restored one.
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    os.replace(staging, path)
    return BackupReport(str(path), got, time.perf_counter() - start)
