"""Personal data: the exports written to disk, and erasing one customer (right to erasure).

``forget`` removes a customer from every table of the warehouse that names them:

- rows keyed by the customer (profile, features, classes, CLV, memberships, snapshots, the
  send log, the webhook outbox, campaign results, the lookup...) are deleted;
- their purchase lines and events stay, without the customer id, so revenue totals do not
  change (they count as anonymous sales, as lines without a customer do on ingest);
- rejected rows in ``quarantine`` that hold their id are deleted;
- ``suppressions`` entries are kept: they are what stops a re-imported copy of the person from
  being contacted again (a suppression holds an id or an address and a reason, nothing else);
- files written to disk cannot be edited from here: the exports that contained them (recorded
  by :func:`record_export` whenever segmentum writes an audience file) are listed, for the user
  to delete or regenerate;
- files downloaded from the service (segment exports, ad audiences: recorded in the service's
  state file, ``downloads`` and ``download_members``) are listed with the key that asked and
  when, and the customer's membership rows are deleted (the download's record stays, without
  them);
- the serving store (the read models ``segmentum serve`` reads, copied out of the warehouse)
  is published again from the erased warehouse.

docs/privacy.md lists what personal data each table holds and for how long.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from segmentum.campaigns.sendlog import sql
from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

EXPORTS = "exports"
EXPORT_MEMBERS = "export_members"
# In the service's state file (segmentum.service.state): what left through the API and dashboard.
DOWNLOADS = "service downloads"
# Lines whose customer link is removed rather than the line itself (the sale happened).
ANONYMIZED = ("transactions", "events")
# Kept on purpose (see the module docstring).
KEPT = ("suppressions",)

_EXPORTS_SCHEMA = pa.schema(
    [
        ("export_id", pa.string()),
        ("path", pa.string()),
        ("source", pa.string()),
        ("rows", pa.int64()),
        ("personal_data", pa.bool_()),
        ("written_at", pa.timestamp("us")),
    ]
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def record_export(
    wh: Warehouse,
    paths: Sequence[Path | str],
    *,
    source: str,
    customer_ids: Iterable[Any],
    personal_data: bool,
    at: _dt.datetime | None = None,
) -> str:
    """Remember that ``paths`` were written with these customers, so :func:`forget` can list
    them. Call it from anything that writes customer rows to disk. Returns the export id."""
    export_id = uuid.uuid4().hex[:12]
    ids = sorted({str(x) for x in customer_ids if x is not None})
    files = pa.Table.from_pylist(
        [
            {
                "export_id": export_id,
                "path": str(Path(p).absolute()),
                "source": source,
                "rows": len(ids),
                "personal_data": personal_data,
                "written_at": at or _now(),
            }
            for p in paths
        ],
        schema=_EXPORTS_SCHEMA,
    )
    members = pa.table(
        {
            "export_id": pa.array([export_id] * len(ids), pa.string()),
            "customer_id": pa.array(ids, pa.string()),  # typed: an empty export has none
        }
    )
    for name, data in ((EXPORTS, files), (EXPORT_MEMBERS, members)):
        if wh.has(name):
            wh.insert(name, data)
        else:
            wh.write(name, data)
    return export_id


def exports_of(wh: Warehouse, customer_id: str) -> list[dict[str, Any]]:
    """The files written with this customer in them (path, source, when, personal data)."""
    if not (wh.has(EXPORTS) and wh.has(EXPORT_MEMBERS)):
        return []
    m = wh.table(EXPORT_MEMBERS)
    m = m.filter(m.customer_id == customer_id).select("export_id").distinct()
    e = wh.table(EXPORTS).semi_join(m, "export_id")
    rows: list[dict[str, Any]] = (
        e.order_by(["written_at", "path"]).drop("export_id").to_pyarrow().to_pylist()
    )
    for r in rows:
        r["exists"] = Path(r["path"]).exists()
    return rows


def state_file(url: str, settings: Settings | None = None) -> Path | None:
    """The service's state file of the warehouse at ``url``, found as the service finds it
    (``segmentum.service.state.state_path``: the ``state_store`` setting, else beside a DuckDB
    file); None for an in-memory warehouse, whose service state lives and dies with it."""
    from segmentum.serving import sidecar_sqlite

    path = (settings or load_settings()).state_store or sidecar_sqlite(url, "state")
    return None if path == ":memory:" else Path(path)


@contextlib.contextmanager
def _state(url: str, settings: Settings | None) -> Iterator[sqlite3.Connection | None]:
    """The state file's open connection (one transaction), or None when there is no file or
    no download was ever recorded in it: reading never creates it."""
    settings = settings or load_settings()
    path = state_file(url, settings)
    if path is None or not path.is_file():
        yield None
        return
    con = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=settings.busy_wait_seconds
    )
    con.row_factory = sqlite3.Row
    try:
        with con:
            tables = {
                r[0]
                for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name IN ('downloads', 'download_members')"
                )
            }
            yield con if len(tables) == 2 else None
    finally:
        con.close()


def _downloads(con: sqlite3.Connection, customer_id: str) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT d.download_id, d.at, d.key_id, d.key_name, d.via, d.endpoint, d.kind, "
        "d.segment, d.platform, d.rows, d.personal_data FROM downloads d "
        "JOIN download_members m ON m.download_id = d.download_id "
        "WHERE m.customer_id = ? ORDER BY d.at, d.download_id",
        (customer_id,),
    ).fetchall()
    out = [dict(r) for r in rows]
    for r in out:
        r["at"] = _dt.datetime.fromisoformat(r["at"])
        r["personal_data"] = bool(r["personal_data"])
    return out


def downloads_of(
    url: str, customer_id: str, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """The files downloaded from the service with this customer in them, oldest first: when
    (``at``, UTC), who (``key_id``, ``key_name``), through what (``via``: api or dashboard,
    ``endpoint``, ``kind``, ``segment``, ``platform``), ``rows`` and ``personal_data``."""
    with _state(url, settings) as con:
        return [] if con is None else _downloads(con, str(customer_id))


def purge_downloads(con: sqlite3.Connection, before: _dt.datetime) -> int:
    """Delete the download records made before ``before`` (UTC) with their members, on an
    open connection to the state file; how many downloads went."""
    cutoff = (before.isoformat(timespec="seconds"),)
    if con.execute("SELECT 1 FROM downloads WHERE at < ? LIMIT 1", cutoff).fetchone() is None:
        return 0  # the common case, checked at every download: no scan of the members
    con.execute(
        "DELETE FROM download_members WHERE download_id IN "
        "(SELECT download_id FROM downloads WHERE at < ?)",
        cutoff,
    )
    return int(con.execute("DELETE FROM downloads WHERE at < ?", cutoff).rowcount)


def purge_old_downloads(
    url: str, settings: Settings | None = None, *, days: int | None = None
) -> int:
    """Delete the service's download records older than ``days`` (default: the
    ``download_retention_days`` setting, where 0 keeps them all; ``days=0`` deletes them all);
    how many went. The service does it on its own at every download; this is for a state file
    no download has touched for a while, or for a shorter period once."""
    settings = settings or load_settings()
    keep = settings.download_retention_days if days is None else days
    if days is None and keep == 0:  # the setting's 0: kept until purged by hand
        return 0
    if keep < 0:
        raise InputError(f"days must be 0 or more (got {keep})", "e.g. --days 365")
    with _state(url, settings) as con:
        return 0 if con is None else purge_downloads(con, _now() - _dt.timedelta(days=keep))


@dataclass
class ForgetReport:
    """What :func:`forget` did (or would do, with ``dry_run``): rows per table."""

    customer_id: str
    deleted: dict[str, int] = field(default_factory=dict)
    anonymized: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    republished: bool = False

    @property
    def found(self) -> bool:
        return any((*self.deleted.values(), *self.anonymized.values(), *self.kept.values()))


def _tables(wh: Warehouse) -> list[str]:
    """The stored tables (not the scratch tables and in-memory views of this session)."""
    names = set(wh.con.list_tables())
    if wh.engine in ("duckdb", "postgres"):
        names &= {
            str(r[0])
            for r in sql(
                wh,
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_catalog = current_database()",
            )
        }
    return sorted(n for n in names if not n.startswith(("_seg_", "ibis_")))


def forget(
    wh: Warehouse,
    customer_id: str,
    *,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> ForgetReport:
    """Erase ``customer_id`` from the warehouse (see the module docstring for what that means).

    Examples
    --------
    >>> import segmentum
    >>> wh = segmentum.connect("duckdb://")
    >>> forget(wh, "C1").found
    False
    """
    customer_id = str(customer_id).strip()
    if not customer_id:
        raise InputError("give the id of the customer to forget", "segmentum forget C000123")
    report = ForgetReport(customer_id, exports=exports_of(wh, customer_id), dry_run=dry_run)
    plan: list[tuple[str, str]] = []
    for name in _tables(wh):
        t = wh.con.table(name)
        hit = _hit(t, name, customer_id)
        if hit is None:
            continue
        n = int(t.filter(hit).count().to_pyarrow().as_py())
        if not n:
            continue
        action = "kept" if name in KEPT else "anonymized" if name in ANONYMIZED else "deleted"
        getattr(report, action)[name] = n
        if action != "kept":
            plan.append((name, action))
    from segmentum.realtime.sync import open_for  # events tracked live, not yet in the tables

    live = open_for(wh, settings, create=False)
    if live is not None:
        for name, n in live.forget(customer_id, dry_run=dry_run).items():
            report.deleted[f"realtime {name}"] = n
    with _state(wh.url, settings) as con:
        if con is not None:
            report.downloads = _downloads(con, customer_id)
    if report.downloads:
        report.deleted[DOWNLOADS] = len(report.downloads)
    if dry_run:
        return report
    if wh.engine in ("duckdb", "postgres"):
        with wh.batch([], "forget"):
            for name, action in plan:
                where = (
                    "strpos(raw, ?) > 0"
                    if name == "quarantine"
                    else "CAST(customer_id AS VARCHAR) = ?"
                )
                arg = f'"{customer_id}"' if name == "quarantine" else customer_id
                verb = (
                    "UPDATE {} SET customer_id = NULL"
                    if action == "anonymized"
                    else "DELETE FROM {}"
                )
                sql(wh, f"{verb.format(_quote(name))} WHERE {where}", [arg])
        return _republish(wh, _forget_downloads(wh, report, settings), settings)
    for name, action in plan:  # Spark: no row updates, rewrite the table
        t = wh.con.table(name)
        hit = _hit(t, name, customer_id)
        if action == "anonymized":
            new = t.mutate(
                customer_id=ibis.ifelse(hit, ibis.null(t.customer_id.type()), t.customer_id)
            )
        else:
            new = t.filter(~hit)
        wh.write(name, wh.materialize(new, "forget"))
    return _republish(wh, _forget_downloads(wh, report, settings), settings)


def _forget_downloads(
    wh: Warehouse, report: ForgetReport, settings: Settings | None
) -> ForgetReport:
    """Take the customer out of the service's download records, once the warehouse is done
    (a failed erase leaves them listed for the next try). The downloads stay, without them."""
    if report.downloads:
        with _state(wh.url, settings) as con:
            if con is not None:
                con.execute(
                    "DELETE FROM download_members WHERE customer_id = ?", (report.customer_id,)
                )
    return report


def _republish(wh: Warehouse, report: ForgetReport, settings: Settings | None) -> ForgetReport:
    """Publish the serving store again, when there is one, so it no longer holds them."""
    from segmentum.precompute import publish_read_models
    from segmentum.serving import published_before, serving_path

    settings = settings or load_settings()
    target = serving_path(wh.url, settings.serving_store)
    if report.found and target is not None and published_before(target):
        # Documents written anew: the ones kept from the last publish would hold the customer.
        publish_read_models(wh, settings, documents_anew=True)
        report.republished = True
    return report


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _hit(t: ibis.expr.types.Table, name: str, customer_id: str) -> Any:
    """The rows of ``t`` that name the customer (None: the table cannot name anyone)."""
    if name == "quarantine" and "raw" in t.columns:
        return t.raw.contains(f'"{customer_id}"')
    if "customer_id" in t.columns:
        return t.customer_id.cast("string") == ibis.literal(customer_id)
    return None
