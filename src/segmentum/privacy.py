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
- the serving store (the read models ``segmentum serve`` reads, copied out of the warehouse)
  is published again from the erased warehouse.

docs/privacy.md lists what personal data each table holds and for how long.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterable, Sequence
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
        {"export_id": pa.array([export_id] * len(ids), pa.string()), "customer_id": ids}
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


@dataclass
class ForgetReport:
    """What :func:`forget` did (or would do, with ``dry_run``): rows per table."""

    customer_id: str
    deleted: dict[str, int] = field(default_factory=dict)
    anonymized: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)
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
        return _republish(wh, report, settings)
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
    return _republish(wh, report, settings)


def _republish(wh: Warehouse, report: ForgetReport, settings: Settings | None) -> ForgetReport:
    """Publish the serving store again, when there is one, so it no longer holds them."""
    from segmentum.precompute import publish_read_models
    from segmentum.serving import published_before, serving_path

    settings = settings or load_settings()
    target = serving_path(wh.url, settings.serving_store)
    if report.found and target is not None and published_before(target):
        publish_read_models(wh, settings)
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
