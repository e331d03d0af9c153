"""The serving store: read models copied out of the warehouse into their own DuckDB file.

The service must never hold the warehouse open (DuckDB lets one process write a file, and then
nobody else may even read it), so what it reads on every request is *published*: after a
pipeline run the named read-model tables are copied from the warehouse, whatever its engine
(DuckDB, Spark, PostgreSQL), into a new DuckDB file that is then renamed over the old one.
Readers attach the file read-only and notice the rename on their next query (the file's inode
changes), so a publish never waits for a reader and a reader never sees half a publish.

Point lookups (one customer per API request, hundreds a second) are also published as JSON
*documents* in a SQLite file beside it (``shop.serving.duckdb.docs.sqlite``): a primary-key read
there costs tens of microseconds, against a millisecond or more for any DuckDB query, and the
API sends the document as it is. It is renamed into place just before the DuckDB file, so one
request reads one generation.

For several service replicas, or a cluster whose driver shares no disk with the service, the
``serving_store`` setting may be a ``postgresql://`` URL instead: :func:`publish` and
:class:`ServingStore` then hand over to :mod:`segmentum.serving_postgres` (a schema per
generation, switched in one statement), with the same reading interface.

    >>> import segmentum, tempfile, pathlib
    >>> wh = segmentum.connect("duckdb://")
    >>> _ = wh.write("customer_lookup", wh.con.sql("select 'C1' as customer_id, 3 as frequency"))
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "shop.serving.duckdb"
    >>> publish(wh, target, {"customer_lookup": "customer_id"}).tables
    {'customer_lookup': 1}
    >>> store = ServingStore(target)
    >>> store.cursor().execute("select frequency from customer_lookup").fetchone()
    (3,)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from segmentum.config import load_settings
from segmentum.errors import WarehouseError
from segmentum.warehouse import Warehouse, _duckdb_path, spark_folder

META = "_published"
# Results kept per date (``as_of``, ``run_id``), only ever written a whole date at a time
# (``Warehouse.replace_where``, the history backfill) or deleted from (``segmentum forget``):
# a publish copies only their dates whose runs or row counts changed.
DATED = ("customer_classes", "customer_clusters", "customer_clv", "segment_members")
_PG_SCHEMES = ("postgres://", "postgresql://")
# A table synced by key (``publish``'s ``keyed``) is kept in a DuckDB serving store as three
# tables and a view of its name over them: ``base`` (every row at the last whole copy, sorted
# and indexed by the key), ``recent`` (the rows of the keys changed since then) and ``keys``
# (those keys): the view reads base's rows of the other keys and recent's. A daily publish
# then rewrites only recent and its index (a new day's 26,000 changed customers: 0.3 s),
# where syncing one table meant deleting from it and building its index again (6.4 s a day
# for the invoices and the activity at 870,000 customers: DuckDB updates an index row by row
# on a delete). A point read through the view: 3.2 ms p50 against 1.3 ms from the indexed
# table, whatever recent's size (both sides read through their indexes).
_PARTS = ("base", "recent", "keys")
# The whole table is copied again (base anew, recent empty) once recent holds more rows than
# this share of base's: a week of new days at 870,000 customers.
RECENT_SHARE = 0.25
# A DuckDB warehouse's tables published as documents (``publish``'s ``documents``) are not
# copied into the file too: the API, the customer page and the live rules read the documents,
# and nothing reads those copies (the lookup's: 3.3 s of a new day's publish at 870,000
# customers, copied and indexed). This table holds, per such table, what its documents were
# written from (columns, rows, checksum): a command that publishes a few read models
# (``reuse``) keeps the documents when the warehouse's rows are still those.
SOURCES = "_documents_source"
T = TypeVar("T")


def serving_path(url: str, configured: str = "") -> Path | str | None:
    """Where the serving store of the warehouse at ``url`` lives.

    ``configured`` (the ``serving_store`` setting) wins: a file, or a ``postgresql://`` URL
    (returned as it is: :mod:`segmentum.serving_postgres`). Otherwise a DuckDB file warehouse gets
    one beside it (``shop.duckdb`` -> ``shop.serving.duckdb``), a Spark warehouse kept in a
    folder (``pyspark:///data/wh``) one inside it (``/data/wh/segmentum.serving.duckdb``); an
    in-memory DuckDB, a temporary Spark or a PostgreSQL warehouse has none unless configured
    (the service then reads the warehouse).
    """
    if configured:
        return configured if configured.startswith(_PG_SCHEMES) else Path(configured)
    folder = spark_folder(url)
    if folder is not None:  # a Spark warehouse kept in a folder: the store goes inside it
        return folder / "segmentum.serving.duckdb"
    warehouse = warehouse_file(url)
    if warehouse is None:
        return None
    return warehouse.with_name(warehouse.stem + ".serving.duckdb")


def sidecar_sqlite(url: str, kind: str) -> str:
    """Where a SQLite file of ``kind`` (state, realtime, flows) belonging to the warehouse at
    ``url`` goes when no setting says: beside a DuckDB file (``shop.duckdb`` ->
    ``shop.KIND.sqlite``), inside a Spark warehouse's folder, in memory for an in-memory
    warehouse, else ``segmentum.KIND.sqlite`` in the working folder."""
    if url in ("duckdb://", "duckdb:///:memory:"):
        return ":memory:"
    found = warehouse_file(url)
    if found is not None:
        return str(found.with_name(f"{found.stem}.{kind}.sqlite"))
    folder = spark_folder(url)
    if folder is not None:
        return str(folder / f"segmentum.{kind}.sqlite")
    return f"segmentum.{kind}.sqlite"


def warehouse_file(url: str) -> Path | None:
    """The DuckDB file behind ``url``, or None when the warehouse is not a local file."""
    if url.startswith("duckdb://"):
        path = _duckdb_path(url[len("duckdb://") :])
        return Path(path) if path and path != ":memory:" else None
    if url.endswith(".duckdb") and "://" not in url:
        return Path(url)
    return None


@dataclass
class Published:
    """What one publish wrote: rows per table, when, and from which pipeline run."""

    path: Path | str
    tables: dict[str, int] = field(default_factory=dict)
    published_at: str = ""
    run_id: str | None = None
    # Tables carried from the last generation: only their changed dates (``DATED``) or their
    # changed keys (``keyed``) were copied.
    carried: list[str] = field(default_factory=list)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish(
    wh: Warehouse,
    target: str | Path,
    tables: Mapping[str, str | None] | Sequence[str],
    *,
    run_id: str | None = None,
    documents: Mapping[str, str] | None = None,
    keyed: Mapping[str, Any] | None = None,
    base_run: str | None = None,
    reuse: bool = False,
    presorted: Collection[str] = (),
    daily: Mapping[str, Collection[str]] | None = None,
    documents_anew: bool = False,
) -> Published:
    """Copy ``tables`` from ``wh`` into a new DuckDB file and rename it over ``target``.

    Parameters
    ----------
    wh
        The warehouse holding the read models (any engine).
    target
        The serving store's file, or a ``postgresql://`` URL: the tables then go into a new
        schema of that database (:mod:`segmentum.serving_postgres`).
    tables
        Table names, or a mapping of name to a key column: the copy is sorted by that column and
        indexed on it, so a point lookup reads a few blocks. Tables the warehouse lacks are
        left out (a read model that a run skipped).
    run_id
        The pipeline run that produced them, kept in the ``_published`` table; None: the last
        generation's (a command between runs, e.g. a history backfill, publishes what is still
        that run's results with the rows it added).
    documents
        Tables (among ``tables``) also written as one JSON document per key column value into
        :func:`documents_path`, for :meth:`ServingStore.document`.
    keyed, base_run
        Tables (among ``tables``) whose rows changed since the publish of run ``base_run``
        only for the key values in an Ibis table of the warehouse (its column named as the
        table's key; None: any may have changed): when the store holds that run's generation,
        only those keys' rows are copied into the next one (DuckDB warehouses, which keep
        these tables in parts, see ``_PARTS``; the others copy everything).
    reuse
        A command that changed a few read models (a history backfill, the market): every
        table whose rows the last generation already holds (the same fingerprint on both
        sides) is kept as it is, and so are the documents when every table they come from is
        (DuckDB warehouses). At 100M invoice lines the lookup's documents alone are 12 GB.
    presorted
        Tables the warehouse holds already sorted by their key: copied in their order, not
        sorted again (DuckDB warehouses).
    daily
        Columns of the ``documents`` tables whose values move every day (see
        :func:`_write_documents`): kept apart, so that the rest of each document is written
        again only where it changed.
    documents_anew
        Write every document anew, none kept from the last generation's files (``segmentum
        forget``: no file may keep an erased customer's document).

    Returns
    -------
    Published
        Rows written per table.
    """
    specs = dict(tables) if isinstance(tables, Mapping) else dict.fromkeys(tables)
    if str(target).startswith(_PG_SCHEMES):
        from segmentum import serving_postgres

        if run_id is None and published_before(target):
            run_id = (ServingStore(target).info() or {}).get("run_id")
        return serving_postgres.publish(wh, str(target), specs, run_id=run_id, documents=documents)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _publishing(target):
        run_id = run_id if run_id is not None else _last_run(target)
        out = _publish_file(
            wh,
            target,
            specs,
            run_id,
            documents,
            keyed,
            base_run,
            reuse and not documents_anew,
            presorted,
            daily,
            documents_anew,
        )
    wh.changed.clear()  # everything the pages read is as the warehouse now holds it
    return out


def _last_run(target: Path) -> str | None:
    """The run of the generation ``target`` holds (None: none published, or no run named)."""
    if not target.is_file():
        return None
    try:
        with duckdb.connect(str(target), read_only=True) as con:
            row = con.execute(f"SELECT run_id FROM {META}").fetchone()
    except duckdb.Error:  # an unreadable or older generation: a new one names no run
        return None
    return None if row is None or row[0] is None else str(row[0])


def _publish_file(
    wh: Warehouse,
    target: Path,
    specs: dict[str, str | None],
    run_id: str | None,
    documents: Mapping[str, str] | None,
    keyed: Mapping[str, Any] | None,
    base_run: str | None,
    reuse: bool,
    presorted: Collection[str],
    daily: Mapping[str, Collection[str]] | None = None,
    documents_anew: bool = False,
) -> Published:
    generation = uuid.uuid4().hex[:8]
    tmp = target.with_name(f".{target.name}.{generation}.tmp")
    # Beside the documents file it becomes; the bases it writes keep its name without ".tmp".
    docs_tmp = documents_path(target).with_name(f"{documents_path(target).name}.{generation}.tmp")
    present = {name: key for name, key in specs.items() if wh.has(name)}
    wanted = {n: k for n, k in (documents or {}).items() if n in present}
    out = Published(target, run_id=run_id)
    # A DuckDB warehouse writes the documents from its own tables, on a second connection, while
    # the tables are copied: the documents cost as much as the copy and mostly wait on the disk.
    reuse = reuse and wh.engine == "duckdb" and documents_path(target).is_file()
    # The last generation's documents: what did not change is kept from them.
    previous = documents_path(target) if documents_path(target).is_file() else None
    if documents_anew:
        previous = None
    background = (
        _Documents(wh, docs_tmp, wanted, daily, previous)
        if wanted and wh.engine == "duckdb" and not reuse
        else None
    )
    kept_docs = False
    # Tables read only as documents (see SOURCES): counted, not copied.
    only_docs = set(wanted) if wh.engine == "duckdb" else set()
    counts: dict[str, int] = {}
    try:
        if wh.engine == "duckdb":
            try:
                out.carried = _copy_in_engine(
                    wh,
                    tmp,
                    present,
                    target,
                    keyed=keyed or {},
                    base_run=base_run,
                    reuse=reuse,
                    presorted=presorted,
                    only_docs=only_docs,
                    counts=counts,
                )
            finally:
                done = background.wait() if background is not None else False
            # The documents stay when every table they are written from is unchanged.
            kept_docs = reuse and bool(wanted) and set(wanted) <= set(out.carried)
            con = duckdb.connect(str(tmp))
        else:
            # Within the memory_limit setting, spilling beside the file: the copy sorts every
            # table by its key, and DuckDB's default (80% of the machine) held a 10M-line run's
            # tables in the Spark driver's Python process (5.6 GB beside the JVM).
            limit = load_settings().memory_limit
            if target.is_file():  # the history kept per date is carried from the last one
                shutil.copyfile(target, tmp)
            try:
                con = duckdb.connect(str(tmp), config={"memory_limit": limit} if limit else {})
            except duckdb.Error:  # the last generation cannot be opened (another version)
                tmp.unlink(missing_ok=True)
                con = duckdb.connect(str(tmp), config={"memory_limit": limit} if limit else {})
            try:  # the hand-off's files are removed by _copy_through_arrow, whatever happens
                out.carried = _copy_through_arrow(wh, con, present, tmp)
            except BaseException:
                con.close()
                raise
        try:
            for name, key in present.items():
                if name in only_docs:
                    out.tables[name] = counts[name]
                    continue
                if key and wh.engine != "duckdb":  # a DuckDB warehouse indexed them as it copied
                    con.execute(_create_index(name, key))
                row = con.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()
                out.tables[name] = int(row[0]) if row else 0
            _stamp(con, out)
            con.execute("CHECKPOINT")
            if wanted and not kept_docs:
                if background is not None and done:
                    _stamp_documents(docs_tmp, out.published_at)
                else:  # another engine's copy; a DuckDB warehouse's own tables (the background
                    # writer failed, or a command's publish whose lookup changed)
                    source = wh.con.con if only_docs else con
                    _write_documents(source, docs_tmp, wanted, out.published_at, daily, previous)
        finally:
            con.close()
        _fsync(tmp)
        # Kept documents go with the new generation as they are (their stamp the last one's).
        if wanted and not kept_docs:
            os.replace(docs_tmp, documents_path(target))
        elif not wanted:  # none this time: an older generation's documents must not outlive it
            with contextlib.suppress(FileNotFoundError):
                documents_path(target).unlink()
        os.replace(tmp, target)  # atomic: a reader sees the old file or the new one, never half
        _fsync(target.parent)
        _drop_old_bases(target)
        _drop_old_dated(target, at_once=documents_anew)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), docs_tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return out


def _stamp(con: duckdb.DuckDBPyConnection, out: Published) -> None:
    """Write the generation's ``_published`` row: now, the run, the rows per table."""
    out.published_at = _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat()
    con.execute(f"DROP TABLE IF EXISTS {META}")
    con.execute(
        f"CREATE TABLE {META} AS SELECT ?::TIMESTAMP AS published_at, ? AS run_id, ? AS tables",
        [out.published_at, out.run_id, json.dumps(out.tables)],
    )


@contextlib.contextmanager
def _publishing(target: Path) -> Iterator[None]:
    """One publish of ``target`` at a time across processes: a command's :func:`refresh`
    copies the generation a run's publish has finished, never one it is replacing."""
    import fcntl

    with open(target.with_name(f".{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def refresh(wh: Warehouse, target: str | Path, names: Collection[str]) -> Published | None:
    """Replace the tables ``names`` of the last published generation by the warehouse's rows,
    keeping every other table and the documents as they are: what a command changed (a segment
    saved, a campaign sent) reaches the pages that read the serving store without publishing
    everything again. A new generation renamed over the old one, as :func:`publish` makes it;
    None when nothing was published yet (the next run publishes everything). Tables the
    warehouse no longer has are dropped. Not for the tables published as documents."""
    target = Path(target)
    if not target.is_file():
        return None
    with _publishing(target):
        if not target.is_file():
            return None
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        out = Published(target)
        try:
            shutil.copyfile(target, tmp)
            limit = load_settings().memory_limit
            con = duckdb.connect(str(tmp), config={"memory_limit": limit} if limit else {})
            try:
                row = con.execute(f"SELECT run_id, tables FROM {META}").fetchone()
                out.run_id = row[0] if row else None
                out.tables = dict(json.loads(row[1])) if row and row[1] else {}
                views = {
                    str(r[0])
                    for r in con.execute(
                        "SELECT view_name FROM duckdb_views() WHERE NOT internal"
                    ).fetchall()
                }
                for name in sorted(names):
                    kind = "VIEW" if name in views else "TABLE"
                    con.execute(f"DROP {kind} IF EXISTS {_quote(name)}")
                    out.tables.pop(name, None)
                    if not wh.has(name):
                        continue
                    con.register("_incoming", wh.batches(wh.table(name)))
                    try:
                        con.execute(f"CREATE TABLE {_quote(name)} AS SELECT * FROM _incoming")
                    finally:
                        con.unregister("_incoming")
                    got = con.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()
                    out.tables[name] = int(got[0]) if got else 0
                _stamp(con, out)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            _fsync(tmp)
            os.replace(tmp, target)
            _fsync(target.parent)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
    return out


def documents_path(target: str | Path) -> Path:
    """The SQLite file of JSON documents published beside the serving store ``target``."""
    target = Path(target)
    return target.with_name(target.name + ".docs.sqlite")


def _json_column(name: str, dtype: str) -> str:
    """A column as it goes into a JSON document: what the API returned when it built the dict
    in Python (NaN and infinities as null, timestamps in ISO form with a T)."""
    q = _quote(name)
    if dtype in ("DOUBLE", "FLOAT", "REAL") or dtype.startswith("DECIMAL"):
        return f"CASE WHEN isfinite({q}::DOUBLE) THEN {q}::DOUBLE END"
    if dtype.startswith("TIMESTAMP"):
        return f"replace(CAST({q} AS VARCHAR), ' ', 'T')"
    return q


class _Documents:
    """:func:`_write_documents` from a DuckDB warehouse's tables, in a thread of its own with its
    own connection (a cursor of the warehouse's database), while the caller goes on."""

    def __init__(
        self,
        wh: Warehouse,
        path: Path,
        tables: Mapping[str, str],
        daily: Mapping[str, Collection[str]] | None = None,
        previous: Path | None = None,
    ) -> None:
        self.error: BaseException | None = None
        self._cur = wh.con.con.cursor()
        self._path = path
        self._thread = threading.Thread(
            target=self._run,
            args=(tables, daily, previous),
            name="segmentum-documents",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self,
        tables: Mapping[str, str],
        daily: Mapping[str, Collection[str]] | None,
        previous: Path | None,
    ) -> None:
        try:
            _write_documents(self._cur, self._path, tables, None, daily, previous)
        except BaseException as exc:  # reported by wait(); written again by the caller
            self.error = exc
        finally:
            self._cur.close()

    def wait(self) -> bool:
        """Whether the documents were written (False: write them again on the main connection)."""
        self._thread.join()
        if self.error is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            return False
        return True


def _stamp_documents(path: Path, published_at: str) -> None:
    """Record in the documents when the generation they go with was published."""
    docs = sqlite3.connect(path)
    try:
        docs.execute("DELETE FROM _published")
        docs.execute("INSERT INTO _published VALUES (?)", (published_at,))
        docs.commit()
    finally:
        docs.close()
    _fsync(path)


#: The documents' layout (kept in their ``_layout`` table): a file written with another one is
#: not updated in place but written whole.
DOCUMENTS_LAYOUT = 3
#: The table of a document table's daily part (see :func:`_write_documents`).
DAILY = "__daily"
#: The table of a document table's rows changed since its base (see :func:`_write_documents`).
DELTA = "__delta"
#: The table naming the base file the documents read (see :func:`_write_documents`).
BASE = "_base"
_HASH_MASK = 9223372036854775807  # DuckDB's hash is unsigned; SQLite keeps signed integers


def _layout_of(docs: sqlite3.Connection) -> dict[str, str]:
    """Each document table's columns (stable part, then daily part) as the file was written
    with them; empty for a file of another layout."""
    try:
        row = docs.execute("SELECT version FROM _layout_version").fetchone()
        if row is None or int(row[0]) != DOCUMENTS_LAYOUT:
            return {}
        return {str(r[0]): str(r[1]) for r in docs.execute("SELECT name, columns FROM _layout")}
    except sqlite3.Error:
        return {}


#: The share of the documents that may have changed since their base was written for the
#: base to be kept (the changed rows then go into the delta); more (a run that refits the models
#: moves every customer's potential), and a new base is written whole: a delta of most rows
#: would cost a base's writing every day.
REWRITE_SHARE = 1 / 3


@dataclass
class _DocTable:
    """How one table's documents are written: its columns, split into the stable part and the
    daily part, the signature the file records, and, where the last generation's documents
    have it with that signature, their base file, its hashes (a table registered on the
    connection), how many rows changed or arrived since it was written and how many keys are
    gone."""

    name: str
    key: str
    stable: list[Any]
    moving: list[Any]
    signature: str
    rows: int = 0
    old: str | None = None
    changed: int = 0
    gone: int = 0
    base: Path | None = None


def _doc_table(
    con: duckdb.DuckDBPyConnection, name: str, key: str, daily: Collection[str]
) -> _DocTable:
    cols = con.execute(f"DESCRIBE {_quote(name)}").fetchall()
    names = [str(c[0]) for c in cols]
    at = max(1, min((names.index(c) for c in daily if c in names), default=len(names)))
    signature = json.dumps([[str(c[0]), str(c[1])] for c in cols]) + f"|{at}"
    row = con.execute(f"SELECT count(*) FROM {_quote(name)} WHERE {_quote(key)} IS NOT NULL")
    got = row.fetchone()
    return _DocTable(name, key, cols[:at], cols[at:], signature, int(got[0]) if got else 0)


def _fields(cols: list[Any]) -> str:
    return ", ".join(f"{_quote(c[0])} := {_json_column(c[0], c[1])}" for c in cols)


def _json_of(cols: list[Any]) -> str:
    """The SQL of one JSON object text of ``cols`` (a document, or its stable or daily part)."""
    return f"to_json(struct_pack({_fields(cols)}))::VARCHAR"


def _read_only(path: Path) -> str:
    """The URI that opens SQLite file ``path`` read-only (``uri=True``, or inside an ATTACH)."""
    return f"{path.absolute().as_uri()}?mode=ro"


def _stream(cur: duckdb.DuckDBPyConnection, docs: sqlite3.Connection, insert: str) -> None:
    """The rows of DuckDB query ``cur`` into SQLite by ``insert``, 50,000 at a time."""
    while batch := cur.fetchmany(50_000):
        docs.executemany(insert, batch)


def _digest(t: _DocTable) -> str:
    """A row's hash over its stable part (a changed value changes it: two rows alike by chance
    once in 2^63)."""
    return f"(hash({', '.join(_quote(c[0]) for c in t.stable)}) & {_HASH_MASK})::BIGINT"


def _held_hashes(
    con: duckdb.DuckDBPyConnection, previous: Path, specs: list[_DocTable]
) -> list[_DocTable]:
    """The tables of ``specs`` whose base the last generation's documents (``previous``) read
    with the same columns: each with its base file (``t.base``), its hashes read into ``con``
    (``t.old``), how many rows changed or arrived since (``t.changed``) and how many keys are
    gone (``t.gone``)."""
    try:
        docs = sqlite3.connect(_read_only(previous), uri=True)
    except sqlite3.Error:
        return []
    try:
        layouts = _layout_of(docs)
        files = (
            {str(r[0]): str(r[1]) for r in docs.execute(f"SELECT name, file FROM {BASE}")}
            if layouts
            else {}
        )
    except sqlite3.Error:
        return []
    finally:
        docs.close()
    found = []
    for t in specs:
        base = previous.parent / files[t.name] if t.name in files else None
        if layouts.get(t.name) != t.signature or base is None or not base.is_file():
            continue
        old = _base_hashes(base, t.name)
        if old is None:
            continue
        t.base, t.old = base, f"_seg_docs_{uuid.uuid4().hex[:8]}"
        con.register(t.old, old)
        q = _quote(t.key)
        (changed,) = con.execute(
            f"SELECT count(*) FROM {_quote(t.name)} n LEFT JOIN {t.old} o "
            f"ON o.k = CAST(n.{q} AS VARCHAR) "
            f"WHERE n.{q} IS NOT NULL AND o.h IS DISTINCT FROM {_digest(t)}"
        ).fetchone() or (t.rows,)
        (gone,) = con.execute(
            f"SELECT count(*) FROM (SELECT k FROM {t.old} "
            f"EXCEPT SELECT CAST({q} AS VARCHAR) FROM {_quote(t.name)})"
        ).fetchone() or (0,)
        t.changed, t.gone = int(changed), int(gone)
        found.append(t)
    return found


def _hashes_path(base: Path) -> Path:
    """The Parquet file beside a documents' base holding its keys and hashes (``k``, ``h``):
    what a publish compares the new rows with, read in a few milliseconds where reading them
    out of the base took a second at 870,000 customers."""
    return base.with_name(f"{base.name}.hashes.parquet")


def _base_hashes(base: Path, table: str) -> Any:
    """The keys and hashes of ``base`` (an Arrow table of ``k``, ``h``): from its Parquet
    file, or else (an older store's base) from the base itself; None when neither reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with contextlib.suppress(OSError, pa.ArrowException):
        got = pq.read_table(_hashes_path(base))
        if got.schema.names == ["k", "h"]:
            return got.cast(pa.schema([("k", pa.string()), ("h", pa.int64())]))
    try:
        held_in = sqlite3.connect(_read_only(base), uri=True)
        try:
            held = held_in.execute(f"SELECT k, h FROM {_quote(table)}").fetchall()
        finally:
            held_in.close()
    except sqlite3.Error:
        return None
    return pa.table(
        {
            "k": pa.array([r[0] for r in held], pa.string()),
            "h": pa.array([r[1] for r in held], pa.int64()),
        }
    )


def _write_documents(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    tables: Mapping[str, str],
    published_at: str | None,
    daily: Mapping[str, Collection[str]] | None = None,
    previous: Path | None = None,
) -> None:
    """The documents of ``tables`` (read models keyed by a column): one JSON text a key, built by
    DuckDB, read by :meth:`ServingStore.document`. Without ``published_at``,
    :func:`_stamp_documents` records it later (the file is not synced until then).

    Each table has a **base** (a SQLite file written whole, never changed after) holding
    ``(k, doc, h)``: the key, the JSON of the row's stable columns and their hash. The file at
    ``path`` (written anew every time, renamed in as the generation) names each table's base
    and holds ``<name>__delta``: the rows changed or arrived since the base was written, and
    ``<name>__daily``: the columns from the first of the table's ``daily`` on (the lookup puts
    them last: recency, tenure and the model scores move every day for every customer), whole.
    A reader joins the parts into the text the whole row gives.

    ``previous``: the last generation's file. A table whose base holds it with these columns
    and at most :data:`REWRITE_SHARE` of its rows changed, arrived or gone since (by the hash)
    keeps its base, not copied (the lookup's, 1 GB at 870,000 customers: copying the whole
    file took 3.5 s of a new day's publish), and gets only its delta (a key gone: a row
    without a document) and daily part written; otherwise a new base of it is written whole
    beside ``path``. None (``segmentum forget``: no file of the store may keep an erased
    customer's document): every base written anew."""
    specs = [_doc_table(con, n, k, (daily or {}).get(n, ())) for n, k in tables.items()]
    try:
        if previous is not None and previous.is_file():
            for t in _held_hashes(con, previous, specs):
                if t.changed + t.gone > REWRITE_SHARE * t.rows:
                    t.base = None
        docs = sqlite3.connect(path)
        try:
            for pragma in _PRIVATE_FILE:
                docs.execute(pragma)
            docs.execute("CREATE TABLE _published (published_at TEXT)")
            if published_at is not None:
                docs.execute("INSERT INTO _published VALUES (?)", (published_at,))
            docs.execute("CREATE TABLE _layout_version (version INTEGER)")
            docs.execute("INSERT INTO _layout_version VALUES (?)", (DOCUMENTS_LAYOUT,))
            docs.execute("CREATE TABLE _layout (name TEXT PRIMARY KEY, columns TEXT)")
            docs.execute(f"CREATE TABLE {BASE} (name TEXT PRIMARY KEY, file TEXT)")
            for t in specs:
                in_place = t.base is not None
                if t.base is None:
                    t.base = path.with_name(f"{path.name.removesuffix('.tmp')}.{t.name}.base")
                    _write_base(con, t.base, t)
                docs.execute("INSERT INTO _layout VALUES (?, ?)", (t.name, t.signature))
                docs.execute(f"INSERT INTO {BASE} VALUES (?, ?)", (t.name, t.base.name))
                _write_delta_and_daily(con, docs, t, in_place)
            docs.commit()
        finally:
            docs.close()
    finally:
        for t in specs:
            if t.old is not None:
                con.unregister(t.old)
    _fsync(path)


#: A file only this process writes, renamed in when whole: no journal, no syncing on the way
#: (the file is synced once at the end), a 256 MB page cache that keeps the b-trees' upper
#: pages while a million rows go in (4.3 -> 2.7 s).
_PRIVATE_FILE = (
    "PRAGMA journal_mode=OFF",
    "PRAGMA synchronous=OFF",
    "PRAGMA locking_mode=EXCLUSIVE",
    "PRAGMA cache_size=-262144",
)


def _write_base(con: duckdb.DuckDBPyConnection, base: Path, t: _DocTable) -> None:
    """Every row's stable part of table ``t``: its new base (see :func:`_write_documents`)."""
    base.unlink(missing_ok=True)  # a failed attempt's
    docs = sqlite3.connect(base)
    try:
        # Pages of 16 KB, set before the first table: a document is about 1 KB, more than a
        # 4 KB page keeps inside a WITHOUT ROWID b-tree, so every row spilled into an overflow
        # page of its own (4.0 GB for 870,000 customers; 16 KB pages: a quarter of it, written
        # four times faster, and point reads as fast).
        docs.execute("PRAGMA page_size=16384")
        for pragma in _PRIVATE_FILE:
            docs.execute(pragma)
        table, q = _quote(t.name), _quote(t.key)
        docs.execute(
            f"CREATE TABLE {table} (k TEXT PRIMARY KEY, doc TEXT NOT NULL, h INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        cur = con.execute(
            f"SELECT CAST({q} AS VARCHAR), {_json_of(t.stable)}, {_digest(t)} "
            f"FROM {table} WHERE {q} IS NOT NULL"
        )
        _stream(cur, docs, f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)")
        docs.commit()
    finally:
        docs.close()
    hashes = _hashes_path(base)
    part = hashes.with_name(f".{hashes.name}.tmp")
    try:  # the keys and hashes again, for the next publish to compare with (_base_hashes)
        con.execute(
            f"COPY (SELECT CAST({q} AS VARCHAR) AS k, {_digest(t)} AS h FROM {table} "
            f"WHERE {q} IS NOT NULL) TO {_sql_string(str(part))} (FORMAT parquet)"
        )
        os.replace(part, hashes)
        _fsync(hashes)
    finally:
        part.unlink(missing_ok=True)
    _fsync(base)


def _write_delta_and_daily(
    con: duckdb.DuckDBPyConnection, docs: sqlite3.Connection, t: _DocTable, in_place: bool
) -> None:
    """One table's delta (with ``in_place``: the rows whose hash differs from the base's or
    that it lacks, and the keys gone, without a document; else empty) and daily part (see
    :func:`_write_documents`)."""
    q, table = _quote(t.key), _quote(t.name)
    delta, part = _quote(t.name + DELTA), _quote(t.name + DAILY)
    docs.execute(f"CREATE TABLE {delta} (k TEXT PRIMARY KEY, doc TEXT, h INTEGER) WITHOUT ROWID")
    if in_place and t.old is not None and t.gone:  # no document: gone since the base
        gone = con.execute(
            f"SELECT k FROM {t.old} EXCEPT SELECT CAST({q} AS VARCHAR) FROM {table}"
        ).fetchall()
        docs.executemany(f"INSERT INTO {delta} VALUES (?, NULL, NULL)", gone)
    if in_place and t.old is not None and t.changed:
        # The changed keys found by hash first, their documents built after: DuckDB built every
        # row's JSON before the join kept a few (0.94 s against 0.26 s at 870,000 customers).
        cur = con.execute(
            f"WITH changed AS (SELECT n.k FROM (SELECT CAST({q} AS VARCHAR) AS k, "
            f"{_digest(t)} AS h FROM {table} WHERE {q} IS NOT NULL) n "
            f"LEFT JOIN {t.old} o ON o.k = n.k WHERE o.h IS DISTINCT FROM n.h) "
            f"SELECT CAST({q} AS VARCHAR), {_json_of(t.stable)}, {_digest(t)} FROM {table} "
            f"WHERE CAST({q} AS VARCHAR) IN (SELECT k FROM changed)"
        )
        _stream(cur, docs, f"INSERT INTO {delta} VALUES (?, ?, ?)")
    if t.moving:
        docs.execute(f"CREATE TABLE {part} (k TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")
        cur = con.execute(
            f"SELECT CAST({q} AS VARCHAR), {_json_of(t.moving)} FROM {table} WHERE {q} IS NOT NULL"
        )
        _stream(cur, docs, f"INSERT OR REPLACE INTO {part} VALUES (?, ?)")


def _bases(target: Path) -> list[Path]:
    """The documents' base files of the serving store ``target`` (see :func:`_write_documents`):
    beside the documents file, named after it, the generation that wrote them and their table
    (``segmentum.serving.duckdb.docs.sqlite.<id>.customer_lookup.base``)."""
    return sorted(target.parent.glob(f"{glob.escape(documents_path(target).name)}.*.base"))


def _drop_old_bases(target: Path) -> None:
    """Delete the base files the current documents do not read (a reader still holding an
    older generation keeps its open file: deleting a file does not close it)."""
    keep: set[str] = set()
    docs_file = documents_path(target)
    if docs_file.is_file():
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(_read_only(docs_file), uri=True)
            try:
                keep = {str(r[0]) for r in con.execute(f"SELECT file FROM {BASE}")}
            finally:
                con.close()
    for base in _bases(target):
        if base.name not in keep:
            base.unlink(missing_ok=True)
            _hashes_path(base).unlink(missing_ok=True)
    for hashes in target.parent.glob(f"{glob.escape(documents_path(target).name)}.*.parquet"):
        if hashes.name.removesuffix(".hashes.parquet") not in keep:  # its base is gone
            hashes.unlink(missing_ok=True)


def _copy_in_engine(
    wh: Warehouse,
    tmp: Path,
    specs: Mapping[str, str | None],
    last: Path | None = None,
    *,
    keyed: Mapping[str, Any] | None = None,
    base_run: str | None = None,
    reuse: bool = False,
    presorted: Collection[str] = (),
    only_docs: Collection[str] = (),
    counts: dict[str, int] | None = None,
) -> list[str]:
    """DuckDB: the warehouse attaches the new file and copies with one statement a table.

    With ``last`` (the generation being replaced), the new file starts as a copy of it; the
    tables kept per date (``DATED``: classes, clusters, CLV, segment members, a snapshot a
    run) lie beside it as a Parquet file a date, and only the dates that changed are written
    (:func:`_publish_dated`), instead of their whole history every day. The ``keyed``
    tables (see :func:`publish`) are kept in parts (``_PARTS``) and get only their changed
    keys' rows when the last generation is run ``base_run``'s. With ``reuse``, a table whose
    rows the last generation holds already (:func:`_unchanged`) is kept. Every other table is
    copied whole, except ``only_docs``, published as documents only: their rows are counted
    into ``counts`` and their source recorded (``SOURCES``); with ``reuse``, one whose rows
    are those its last documents were written from counts as carried. Returns the tables
    carried over.
    """
    carried: list[str] = []
    keyed = keyed or {}
    # A generation that holds its dated tables in the file (written before they went into
    # Parquet files, or from another engine) is not copied: dropped there, they would leave
    # their space in every copy made from it.
    fresh = last is None or not last.is_file() or _dated_in_file(last)
    if not fresh:
        assert last is not None
        shutil.copyfile(last, tmp)
    alias = f"_publish_{uuid.uuid4().hex[:8]}"
    try:
        wh.con.raw_sql(f"ATTACH {_sql_string(str(tmp))} AS {alias}")
    except duckdb.Error:  # the last generation cannot be opened (another version): start anew
        tmp.unlink(missing_ok=True)
        fresh = True
        wh.con.raw_sql(f"ATTACH {_sql_string(str(tmp))} AS {alias}")
    try:
        held = set() if fresh else _tables_of(wh, alias)
        views = set() if fresh else _views_of(wh, alias)
        docs_only = [n for n in specs if n in only_docs]
        if docs_only:
            carried += _record_sources(wh, alias, docs_only, held, reuse, counts)
            held.discard(SOURCES)
        follows = bool(base_run) and META in held and _published_run(wh, alias) == base_run
        split = {n: k for n, k in specs.items() if n in keyed and k}
        parts = {_part(n, p) for n in split for p in _PARTS}
        for name in views - set(split) - set(specs):  # a read model no longer there
            wh.con.raw_sql(f"DROP VIEW {alias}.{_quote(name)}")
        for name in held - set(specs) - parts - {SOURCES, DATED_FILES}:  # one no longer there
            wh.con.raw_sql(f"DROP TABLE {alias}.{_quote(name)}")
        if DATED_FILES in held:  # kept, not carried: each dated table writes its own rows again
            wh.con.raw_sql(f"DELETE FROM {alias}.{DATED_FILES} WHERE state = 'retired'")
            # What the last generation read is retired: deleted once no generation reads it.
            wh.con.raw_sql(f"UPDATE {alias}.{DATED_FILES} SET state = 'retired'")
        else:
            wh.con.raw_sql(
                f"CREATE TABLE {alias}.{DATED_FILES} "
                "(name VARCHAR, as_of DATE, file VARCHAR, state VARCHAR)"
            )
        whole: dict[str, str | None] = {}  # copied whole, once the old copies are dropped
        in_parts_whole: dict[str, str] = {}  # the same for tables kept in parts
        for name, key in specs.items():
            keys = keyed.get(name)
            if name in docs_only:
                if name in held:  # a copy an earlier version published
                    wh.con.raw_sql(f"DROP TABLE {alias}.{_quote(name)}")
                continue
            if name in split:
                in_parts = name in views and {_part(name, p) for p in _PARTS} <= held
                if in_parts and (
                    (follows and keys is not None and _sync_parts(wh, alias, name, str(key), keys))
                    or (reuse and _unchanged(wh, alias, name))
                ):
                    carried.append(name)
                else:
                    # Copied whole below, in new parts: the old ones go first (see there).
                    kind = "VIEW" if name in views else "TABLE"
                    wh.con.raw_sql(f"DROP {kind} IF EXISTS {alias}.{_quote(name)}")
                    for p in _PARTS:
                        wh.con.raw_sql(f"DROP TABLE IF EXISTS {alias}.{_quote(_part(name, p))}")
                    in_parts_whole[name] = str(key)
                continue
            shape = _dated_columns(wh, name) if last is not None else None
            if shape is not None:
                assert last is not None
                held_here = name in held or name in views
                if _publish_dated(wh, alias, _dated_folder(last), name, shape, held_here):
                    carried.append(name)
                continue
            if name in views:  # published by date before (_publish_dated), copied whole now
                wh.con.raw_sql(f"DROP VIEW {alias}.{_quote(name)}")
            if name in held:
                if reuse and _unchanged(wh, alias, name):
                    carried.append(name)
                    continue
                wh.con.raw_sql(f"DROP TABLE {alias}.{_quote(name)}")
            whole[name] = key
        if whole.keys() & held or {_part(n, "base") for n in in_parts_whole} & held:
            # The dropped copies' space is only used again after a checkpoint: written over
            # them (CREATE OR REPLACE), the file kept both (1.17 GB -> 1.63 GB on 10M lines
            # after a history backfill; a table kept in parts, copied whole again about once
            # a week, doubled its space), and the next publish copies the file.
            wh.con.raw_sql(f"CHECKPOINT {alias}")
        for name, key in in_parts_whole.items():
            _copy_in_parts(wh, alias, name, key)
        for name, key in whole.items():
            # A table written sorted by its key is copied in its order, not sorted again.
            in_order = bool(key) and name in presorted
            order = f" ORDER BY {_quote(key)}" if key and not in_order else ""
            with wh.file_order() if in_order else contextlib.nullcontext():
                wh.con.raw_sql(
                    f"CREATE TABLE {alias}.{_quote(name)} AS SELECT * FROM {_quote(name)}{order}"
                )
        # The key indexes are built here, while the documents are still being written on the
        # other connection, not after waiting for them (publish's own pass then finds them).
        for name, key in specs.items():
            if key and name not in docs_only:
                for sql in _index_statements(name, key, name in split, alias):
                    wh.con.raw_sql(sql)
    finally:
        wh.con.raw_sql(f"DETACH {alias}")
    return carried


def _record_sources(
    wh: Warehouse,
    alias: str,
    names: list[str],
    held: set[str],
    reuse: bool,
    counts: dict[str, int] | None,
) -> list[str]:
    """Record in ``alias`` (the new file, a copy of the last generation unless fresh) what the
    documents of ``names`` are written from: each table's columns, rows and checksum
    (:meth:`Warehouse.fingerprint`, one scan). Their rows go into ``counts``. Returns, with
    ``reuse``, the tables whose last documents were written from the rows they hold now."""
    last: dict[str, tuple[str, int, int]] = {}
    if SOURCES in held:
        for name, cols, rows, checksum in wh.run_sql(
            f"SELECT name, columns, rows, checksum FROM {alias}.{SOURCES}"
        ):
            last[str(name)] = (str(cols), int(rows), int(checksum))
    mine = str(wh.run_sql("SELECT current_database()")[0][0])
    now: dict[str, tuple[str, int, int]] = {}
    for name in names:
        cols = [c for c, _ in _columns(wh, mine, name)]
        rows, checksum = wh.fingerprint(wh.table(name), cols)
        now[name] = (json.dumps(cols), int(rows), int(checksum))
        if counts is not None:
            counts[name] = int(rows)
    wh.con.raw_sql(
        f"CREATE OR REPLACE TABLE {alias}.{SOURCES} "
        "(name VARCHAR, columns VARCHAR, rows BIGINT, checksum BIGINT)"
    )
    for name, (cols, rows, checksum) in now.items():
        wh.run_sql(
            f"INSERT INTO {alias}.{SOURCES} VALUES (?, ?, ?, ?)", [name, cols, rows, checksum]
        )
    return [n for n in names if reuse and last.get(n) == now[n]]


def _part(name: str, part: str) -> str:
    """The table holding ``part`` (one of ``_PARTS``) of a table kept in parts."""
    return f"{name}__{part}"


def _copy_in_parts(wh: Warehouse, alias: str, name: str, key: str) -> None:
    """Copy ``name`` whole into ``alias`` as its parts: base sorted by ``key``, recent and keys
    empty, and the view of its name over them (none of them there yet)."""
    base, recent, keys = (f"{alias}.{_quote(_part(name, p))}" for p in _PARTS)
    b, r, ks = (_quote(_part(name, p)) for p in _PARTS)
    k = _quote(key)
    src = _quote(name)
    wh.con.raw_sql(f"CREATE TABLE {base} AS SELECT * FROM {src} ORDER BY {k}")
    wh.con.raw_sql(f"CREATE TABLE {recent} AS SELECT * FROM {src} LIMIT 0")
    wh.con.raw_sql(f"CREATE TABLE {keys} AS SELECT {k} FROM {src} LIMIT 0")
    # Unqualified: a view reads the tables of its own database (the file, once renamed).
    wh.con.raw_sql(
        f"CREATE VIEW {alias}.{src} AS SELECT * FROM {b} AS b WHERE NOT EXISTS "
        f"(SELECT 1 FROM {ks} AS c WHERE c.{k} = b.{k}) UNION ALL SELECT * FROM {r}"
    )


def _sync_parts(wh: Warehouse, alias: str, name: str, key: str, keys: Any) -> bool:
    """Replace the rows of ``keys`` (an Ibis table of key values) in recent, the part of
    ``alias.name`` (the last generation's copy) that holds the keys changed since its base;
    False when the columns changed, recent would outgrow ``RECENT_SHARE`` of base, or the row
    counts then disagree (the table is then copied whole)."""
    if not _columns_kept(wh, alias, name):
        return False
    base, recent, held = (f"{alias}.{_quote(_part(name, p))}" for p in _PARTS)
    source, k = _quote(name), _quote(key)
    chosen = f"SELECT {k} FROM {_quote(keys.get_name())}"
    (in_base,), (in_recent,), (coming,) = (
        wh.run_sql(f"SELECT count(*) FROM {t}")[0]
        for t in (base, recent, f"{source} WHERE {k} IN ({chosen})")
    )
    if in_recent + coming > RECENT_SHARE * max(in_base, 1):
        return False
    # Without recent's index while its rows of these keys go (DuckDB updates an index row by
    # row on a delete); it is built again with the others.
    for schema, index in wh.run_sql(
        "SELECT schema_name, index_name FROM duckdb_indexes() "
        "WHERE database_name = ? AND table_name = ?",
        [alias, _part(name, "recent")],
    ):
        wh.run_sql(f"DROP INDEX {alias}.{_quote(str(schema))}.{_quote(str(index))}")
    wh.run_sql(f"DELETE FROM {recent} WHERE {k} IN ({chosen})")
    wh.run_sql(f"INSERT INTO {recent} SELECT * FROM {source} WHERE {k} IN ({chosen}) ORDER BY {k}")
    wh.run_sql(f"INSERT INTO {held} {chosen} EXCEPT SELECT {k} FROM {held}")
    here = wh.run_sql(f"SELECT count(*) FROM {alias}.{_quote(name)}")[0][0]
    return bool(here == wh.run_sql(f"SELECT count(*) FROM {source}")[0][0])


def _create_index(name: str, key: str, database: str | None = None) -> str:
    """The statement that indexes table ``name`` on ``key`` (in ``database`` when given), once."""
    table = f"{database}.{_quote(name)}" if database else _quote(name)
    return f"CREATE INDEX IF NOT EXISTS {_quote(f'{name}_{key}')} ON {table} ({_quote(key)})"


def _index_statements(
    name: str, key: str, in_parts: bool, database: str | None = None
) -> list[str]:
    """The statements that index table ``name`` on ``key`` (in ``database`` when given), once;
    a table kept in parts: each part."""
    names = [_part(name, p) for p in _PARTS] if in_parts else [name]
    return [_create_index(n, key, database) for n in names]


def _tables_of(wh: Warehouse, alias: str) -> set[str]:
    rows = wh.run_sql("SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [alias])
    return {str(r[0]) for r in rows}


def _views_of(wh: Warehouse, alias: str) -> set[str]:
    rows = wh.run_sql(
        "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal", [alias]
    )
    return {str(r[0]) for r in rows}


def _columns(wh: Warehouse, database: str, name: str) -> list[tuple[str, str]]:
    rows = wh.run_sql(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND table_name = ? AND schema_name = 'main' "
        "ORDER BY column_index",
        [database, name],
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def _columns_kept(wh: Warehouse, alias: str, name: str) -> bool:
    """Whether ``alias.name`` (the last generation's copy) has the warehouse table's columns."""
    mine = str(wh.run_sql("SELECT current_database()")[0][0])
    return _columns(wh, mine, name) == _columns(wh, alias, name)


def _published_run(wh: Warehouse, alias: str) -> str | None:
    rows = wh.run_sql(f"SELECT run_id FROM {alias}.{META}")
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def _unchanged(wh: Warehouse, alias: str, name: str) -> bool:
    """Whether ``alias.name`` (the last generation's copy) holds the warehouse's rows of
    ``name``: the same columns, row count and order-free checksum
    (:meth:`Warehouse.fingerprint`: a scan of each side, no copy)."""
    if not _columns_kept(wh, alias, name):
        return False
    cols = [c for c, _ in _columns(wh, alias, name)]
    mine = wh.fingerprint(wh.table(name), cols)
    theirs = wh.fingerprint(wh.con.sql(f"SELECT * FROM {alias}.{_quote(name)}"), cols)
    return mine == theirs


#: The serving store's record of the Parquet files its dated tables read (see
#: :func:`_publish_dated`): ``current`` ones the generation reads, ``retired`` ones the one
#: before it read (kept until the next publish: a reader may still hold that generation).
DATED_FILES = "_dated_files"


def _dated_folder(target: Path) -> Path:
    """Where the serving store ``target`` keeps its dated tables' Parquet files."""
    return target.with_name(f"{target.name}.dated")


def _dated_columns(wh: Warehouse, name: str) -> list[tuple[str, str]] | None:
    """The columns of warehouse table ``name`` when it is kept per date (``DATED``, with the
    columns that say so), else None."""
    if name not in DATED:
        return None
    mine = str(wh.run_sql("SELECT current_database()")[0][0])
    cols = _columns(wh, mine, name)
    return cols if {"as_of", "run_id"} <= {c for c, _ in cols} else None


def _dated_in_file(target: Path) -> bool:
    """Whether the generation ``target`` holds rows of a dated table (``DATED``) in a table of
    its own (a table without rows is how :func:`_publish_dated` publishes one without; an
    unreadable generation: False, the caller finds out)."""
    try:
        with duckdb.connect(str(target), read_only=True) as con:
            row = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name IN (SELECT unnest(?)) "
                "AND estimated_size > 0",
                [list(DATED)],
            ).fetchone()
    except duckdb.Error:
        return False
    return bool(row and row[0])


def _publish_dated(
    wh: Warehouse, alias: str, folder: Path, name: str, columns: list[tuple[str, str]], held: bool
) -> bool:
    """Publish ``name`` (a table kept per date, with ``columns``) as one Parquet file a date in
    ``folder``, read by a view of its name in ``alias`` (the new generation); returns
    whether any date's file was kept from the last generation (the table then counts as
    carried).

    A date's file is named after its rows' runs and counts and the table's columns, and is
    never written again: a new day writes only its own date (870,000 customers: 0.3-0.4 s a
    table, where copying the rows into the new file took twice as long), and the serving file
    that every publish copies no longer holds a snapshot per date (35 daily snapshots and one a
    month of three tables: 2 GB at 870,000 customers, copied every day). Files the new
    generation no longer reads are recorded as retired and deleted a publish later
    (:func:`_drop_old_dated`)."""
    import hashlib

    shape = json.dumps(columns)
    runs: dict[Any, list[tuple[str, int]]] = {}
    for as_of, run_id, n in wh.run_sql(
        f"SELECT as_of, run_id, count(*) FROM {_quote(name)} GROUP BY ALL"
    ):
        runs.setdefault(as_of, []).append((str(run_id), int(n)))
    before = {
        (str(f), a)
        for a, f in wh.run_sql(
            f"SELECT as_of, file FROM {alias}.{DATED_FILES} WHERE name = ?", [name]
        )
    }
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[Any, str] = {}
    reused = 0
    for as_of, sig in sorted(runs.items(), key=lambda kv: (kv[0] is None, str(kv[0]))):
        token = hashlib.sha1(f"{shape}|{sorted(sig)}".encode()).hexdigest()[:12]
        day = as_of.isoformat() if as_of is not None else "undated"
        file = f"{name}.{day}.{token}.parquet"
        files[as_of] = file
        if (file, as_of) in before and (folder / file).is_file():
            reused += 1
            continue
        part = folder / f".{file}.{uuid.uuid4().hex[:8]}.tmp"
        cond, params = ("as_of IS NULL", []) if as_of is None else ("as_of = ?", [as_of])
        try:
            wh.run_sql(
                f"COPY (SELECT * FROM {_quote(name)} WHERE {cond}) TO {_sql_string(str(part))} "
                "(FORMAT parquet, COMPRESSION zstd)",
                params,
            )
            _fsync(part)
            os.replace(part, folder / file)
        finally:
            part.unlink(missing_ok=True)
    if held:
        kind = "VIEW" if name in _views_of(wh, alias) else "TABLE"
        wh.con.raw_sql(f"DROP {kind} {alias}.{_quote(name)}")
    if files:
        listed = ", ".join(_sql_string(str((folder / f).absolute())) for f in files.values())
        wh.con.raw_sql(
            f"CREATE VIEW {alias}.{_quote(name)} AS SELECT * FROM read_parquet([{listed}])"
        )
    else:  # no rows: an empty table of its columns
        wh.con.raw_sql(f"CREATE TABLE {alias}.{_quote(name)} AS FROM {_quote(name)} LIMIT 0")
    wh.run_sql(
        f"DELETE FROM {alias}.{DATED_FILES} WHERE name = ? AND state = 'retired' "
        "AND file IN (SELECT unnest(?))",
        [name, list(files.values())],
    )
    for as_of, file in files.items():
        wh.run_sql(
            f"INSERT INTO {alias}.{DATED_FILES} VALUES (?, ?, ?, 'current')", [name, as_of, file]
        )
    _fsync(folder)
    return bool(reused)


def _drop_old_dated(target: Path, *, at_once: bool = False) -> None:
    """Delete the dated tables' Parquet files (:func:`_publish_dated`) that neither the
    generation ``target`` holds nor the one before it read (``at_once``: the one before's too:
    ``segmentum forget`` leaves no file with an erased customer's rows)."""
    folder = _dated_folder(target)
    if not folder.is_dir():
        return
    states = ["current"] if at_once else ["current", "retired"]
    try:
        with duckdb.connect(str(target), read_only=True) as con:
            has = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [DATED_FILES]
            ).fetchone()
            rows = (
                con.execute(
                    f"SELECT file FROM {DATED_FILES} WHERE state IN (SELECT unnest(?))", [states]
                ).fetchall()
                if has and has[0]
                else []
            )
    except duckdb.Error:  # unreadable: nothing is deleted (the next publish tries again)
        return
    keep = {str(r[0]) for r in rows}
    for path in folder.iterdir():
        # A ".tmp" file is a killed publish's (publishes take turns: none is writing now).
        if path.name not in keep and path.suffix in (".parquet", ".tmp"):
            path.unlink(missing_ok=True)


def _copy_through_arrow(
    wh: Warehouse, con: duckdb.DuckDBPyConnection, specs: Mapping[str, str | None], near: Path
) -> list[str]:
    """Other engines (Spark, PostgreSQL): the rows come over as Arrow. A Spark session hands
    each table over as Parquet instead (:func:`_spark_parquet`) where it can.

    ``con`` is the new generation, a copy of the last one where there was one: of the tables
    kept per date (``DATED``), the dates it already holds (:func:`_dates_held`) stay, and only
    the other dates' rows come over. Every other table is replaced whole. Returns the tables
    carried."""
    # Tables kept in parts by a DuckDB warehouse's publish (``_PARTS``) come over whole here.
    for (view,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall():
        con.execute(f"DROP VIEW {_quote(str(view))}")
    held = {str(r[0]) for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    for name in held - set(specs) - {META}:  # a read model the warehouse no longer has
        con.execute(f"DROP TABLE {_quote(name)}")
    kept = {n: _dates_held(wh, con, n) for n in specs if n in DATED and n in held}
    kept = {n: d for n, d in kept.items() if d}
    for name in set(specs) & held - set(kept):
        con.execute(f"DROP TABLE {_quote(name)}")
    staged = _spark_parquet(wh, specs, near, kept)
    try:
        for name, key in specs.items():
            order = f" ORDER BY {_quote(key)}" if key else ""
            dates = kept.get(name)
            if dates:  # the dates not kept go, and come again from the warehouse
                listed = ", ".join(f"DATE '{d.isoformat()}'" for d in dates)
                con.execute(
                    f"DELETE FROM {_quote(name)} WHERE as_of IS NULL OR as_of NOT IN ({listed})"
                )
            into = (
                f"INSERT INTO {_quote(name)} BY NAME"
                if dates
                else f"CREATE TABLE {_quote(name)} AS"
            )
            files = staged.get(name)
            if files is not None:
                con.execute(
                    f"{into} SELECT * FROM "
                    f"read_parquet({_sql_string(str(files / '*.parquet'))}){order}"
                )
                shutil.rmtree(files, ignore_errors=True)
                continue
            # A Spark session whose executors write nowhere this machine reads: the rows come
            # through the driver a partition at a time (Warehouse.batches).
            t = wh.table(name)
            if dates:
                t = t.filter(t.as_of.isnull() | ~t.as_of.isin(dates))
            reader = wh.batches(t)
            con.register("_incoming", reader)
            try:
                con.execute(f"{into} SELECT * FROM _incoming{order}")
            finally:
                con.unregister("_incoming")
    finally:
        _drop_handoff(staged)
    return sorted(kept)


def _dates_held(wh: Warehouse, con: duckdb.DuckDBPyConnection, name: str) -> list[Any]:
    """The dates of ``name`` that the last generation (``con``) holds as the warehouse does:
    the same runs with the same row counts, and the same columns."""
    t = wh.table(name)
    if not {"as_of", "run_id"} <= set(t.columns):
        return []
    mine = [str(r[0]) for r in con.execute(f"DESCRIBE {_quote(name)}").fetchall()]
    if mine != list(t.columns):
        return []

    held = con.execute(f"SELECT as_of, run_id, count(*) FROM {_quote(name)} GROUP BY ALL")
    return dates_unchanged(t, held.fetchall())


def dates_unchanged(t: Any, held: Iterable[tuple[Any, Any, int]]) -> list[Any]:
    """The dates of ``t`` (an Ibis table kept per date) that a copy holds as it does: ``held``
    lists the copy's (as_of, run_id, rows); a date is unchanged when it has the same runs with
    the same row counts on both sides."""

    def runs(rows: Iterable[tuple[Any, Any, int]]) -> dict[Any, set[tuple[Any, int]]]:
        out: dict[Any, set[tuple[Any, int]]] = {}
        for as_of, run, n in rows:
            if as_of is not None:
                out.setdefault(as_of, set()).add((run, int(n)))
        return out

    here = t.group_by(["as_of", "run_id"]).aggregate(n=t.count()).to_pyarrow().to_pylist()
    now, before = runs((r["as_of"], r["run_id"], r["n"]) for r in here), runs(held)
    return sorted(d for d in now if now[d] == before.get(d))


def _spark_parquet(
    wh: Warehouse,
    specs: Mapping[str, str | None],
    near: Path,
    kept: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Path]:
    """Each table of ``specs`` written by Spark as Parquet into a folder that this process
    reads too, for DuckDB to read: collected through the driver instead, the 10M-line run's
    read models (5M invoice rows, 5.5M activity rows) took 789 s and 5.9 GB of Python.

    The folder is the ``spark_handoff`` setting's (a filesystem the executors and this machine
    both mount; ``spark_handoff_uri`` names it as Spark does), else one beside ``near`` when
    the executors share this disk (``local`` master). Neither, or ``driver``: nothing (the
    rows are then streamed through the driver, :meth:`Warehouse.batches`).
    ``kept``: dates of a table already published (only the other dates are written).
    The caller removes the folders with :func:`_drop_handoff`."""
    if wh.engine != "pyspark":
        return {}
    session = wh.con._session
    settings = load_settings()
    run = f"segmentum-{uuid.uuid4().hex[:12]}.parquet"
    if settings.spark_handoff == "driver":  # no folder: through the driver (Warehouse.batches)
        return {}
    if settings.spark_handoff:
        folder = Path(settings.spark_handoff).expanduser() / run
        uri = settings.spark_handoff_uri or str(Path(settings.spark_handoff).expanduser())
        uri = f"{uri.rstrip('/')}/{run}"
    elif str(session.sparkContext.master).startswith("local"):
        folder = near.with_name(f".{near.name}.{run}")
        uri = str(folder)
    else:
        return {}
    out: dict[str, Path] = {}
    try:
        for name in specs:
            frame = session.table(name)
            dates = (kept or {}).get(name)
            if dates:
                from pyspark.sql import functions as F

                frame = frame.where(F.col("as_of").isNull() | ~F.col("as_of").isin(list(dates)))
            frame.write.mode("overwrite").parquet(f"{uri}/{name}")
            files = folder / name
            if not files.is_dir():  # written, but not where this machine looks
                _handoff_error(folder, uri)
            if any(files.glob("*.parquet")):  # an empty table may leave no file to read
                out[name] = files
        if not out:  # nothing to read: _drop_handoff would not find the folder
            shutil.rmtree(folder, ignore_errors=True)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(Exception):  # where Spark wrote, when this machine cannot see it
            path = session._jvm.org.apache.hadoop.fs.Path(uri)
            path.getFileSystem(session._jsc.hadoopConfiguration()).delete(path, True)
        raise
    return out


def _handoff_error(folder: Path, uri: str) -> None:
    """Spark wrote a read model where this machine does not see it."""
    raise WarehouseError(
        f"Spark wrote the read models to {uri}, but {folder} is not there on this machine",
        "set spark_handoff to the folder as this machine sees it, and spark_handoff_uri to "
        "the same folder as the Spark executors name it (a filesystem both mount)",
    )


def _drop_handoff(staged: Mapping[str, Path]) -> None:
    """Remove the folder that :func:`_spark_parquet` wrote (the parent of its tables)."""
    for parent in {p.parent for p in staged.values()}:
        shutil.rmtree(parent, ignore_errors=True)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk, so a crash after the rename finds it whole."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Generation:
    """One published file, attached read-only (a publish creates the next generation)."""

    def __init__(self, path: Path, signature: tuple[int, int, int]) -> None:
        self.signature = signature
        # An in-memory database that ATTACHes the file: duckdb.connect(path) would hand back
        # the instance cached for that path, the old file, after a rename.
        self.con = duckdb.connect(":memory:")
        self.con.execute(f"ATTACH {_sql_string(str(path))} AS serving (READ_ONLY)")
        self.con.execute("USE serving")
        self.tables = {r[0] for r in self.con.execute("SHOW TABLES").fetchall()}
        self.lock = threading.Lock()
        self._warehouse: Warehouse | None = None

    def warehouse(self, url: str) -> Warehouse:
        if self._warehouse is None:
            import ibis

            self._warehouse = Warehouse(ibis.duckdb.from_connection(self.con), url, read_only=True)
        return self._warehouse


class ThreadReader:
    """A read-only-use SQLite connection per thread to one file, opened on first use and again
    when the file is replaced (a new inode): hot paths read without a connect per request.

    Each statement runs in autocommit, so it sees every write committed before it.
    """

    def __init__(self, path: Path, uri: str, timeout: float = 5.0) -> None:
        self.path, self.uri, self.timeout = path, uri, timeout
        self._local = threading.local()

    def get(self) -> tuple[sqlite3.Connection, bool] | None:
        """This thread's connection and whether it was just (re)opened; None when the file
        does not exist."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return None
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == inode:
            return held[1], False
        con = sqlite3.connect(self.uri, uri=True, timeout=self.timeout)
        con.row_factory = sqlite3.Row
        con.isolation_level = None  # autocommit: no read transaction left open
        if held is not None:
            held[1].close()
        self._local.held = (inode, con)
        return con, True


def published_before(target: str | Path) -> bool:
    """Whether anything was ever published to the serving store ``target``."""
    if str(target).startswith(_PG_SCHEMES):
        return ServingStore(target).published
    return Path(target).exists()


def _document_tables(con: sqlite3.Connection, target: Path) -> set[str]:
    """The tables of a generation of documents just opened on ``con``, each table's base file
    attached as ``"base:<table>"`` (none when one cannot be read: the documents then count as
    absent)."""
    try:
        tables = {str(r[0]) for r in con.execute("SELECT name FROM sqlite_master")}
        if BASE in tables:
            folder = documents_path(target).parent
            for name, file in con.execute(f"SELECT name, file FROM {BASE}").fetchall():
                uri = _read_only(folder / str(file))
                con.execute(f"ATTACH DATABASE ? AS {_quote('base:' + str(name))}", (uri,))
        return tables
    except sqlite3.Error:  # a base deleted between the two opens: the next read reopens
        return set()


def _document_in_parts(con: sqlite3.Connection, table: str, key: str, daily: bool) -> str | None:
    """One key's document from the delta or else the base, with its daily part spliced in."""
    t, delta, part = _quote(table), _quote(table + DELTA), _quote(table + DAILY)
    base = _quote("base:" + table)
    row = con.execute(
        f"SELECT CASE WHEN d.k IS NULL THEN b.doc ELSE d.doc END"
        f"{', p.doc' if daily else ''} FROM (SELECT ? AS k) q "
        f"LEFT JOIN {delta} d ON d.k = q.k LEFT JOIN {base}.{t} b ON b.k = q.k"
        + (f" LEFT JOIN {part} p ON p.k = q.k" if daily else ""),
        (key,),
    ).fetchone()
    if row is None or row[0] is None:  # no such key, or one gone since the base was written
        return None
    if daily and row[1] is not None:  # one row's columns, in their order
        return f"{str(row[0])[:-1]},{str(row[1])[1:]}"
    return str(row[0])


class ServingStore:
    """Reads a serving store, following each publish without ever blocking it.

    Parameters
    ----------
    path
        The serving store's file (it may not exist yet: every read then says so with None),
        or a ``postgresql://`` URL, which gives a
        :class:`segmentum.serving_postgres.PostgresServingStore`.
    """

    path: Path | str
    # How a parameter is written in a query on :meth:`cursor`.
    placeholder = "?"

    def __new__(cls, path: str | Path) -> ServingStore:
        if cls is ServingStore and str(path).startswith(_PG_SCHEMES):
            from segmentum.serving_postgres import PostgresServingStore

            return super().__new__(PostgresServingStore)
        return super().__new__(cls)

    def __init__(self, path: str | Path) -> None:
        self.path = self._file = Path(path)
        self._lock = threading.Lock()
        self._gen: _Generation | None = None
        self._local = threading.local()
        docs = documents_path(self._file)
        self._docs = ThreadReader(docs, _read_only(docs))

    def _current(self) -> _Generation | None:
        try:
            st = os.stat(self._file)
        except FileNotFoundError:
            return None
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        gen = self._gen
        if gen is None or gen.signature != signature:
            with self._lock:
                if self._gen is None or self._gen.signature != signature:
                    try:
                        self._gen = _Generation(self._file, signature)
                    except duckdb.Error as exc:
                        raise WarehouseError(
                            f"cannot read the serving store {self.path}: {exc}".splitlines()[0],
                            "publish it again: segmentum run (or segmentum publish)",
                        ) from exc
                gen = self._gen
        return gen

    @property
    def published(self) -> bool:
        return self._current() is not None

    def has(self, name: str) -> bool:
        gen = self._current()
        return gen is not None and name in gen.tables

    def cursor(self) -> duckdb.DuckDBPyConnection | None:
        """This thread's cursor on the latest generation (None before the first publish).

        Point queries on per-thread cursors run in parallel; a cursor is replaced when a new
        generation is published.
        """
        gen = self._current()
        if gen is None:
            return None
        cur = getattr(self._local, "cur", None)
        if cur is None or getattr(self._local, "signature", None) != gen.signature:
            cur = gen.con.cursor()
            cur.execute("USE serving")
            self._local.cur, self._local.signature = cur, gen.signature
        return cur

    def document(self, table: str, key: str) -> str | bool | None:
        """The JSON document of ``key`` in ``table`` (published with ``documents=``); None when
        there is no such key, False when no documents of ``table`` are published."""
        for _attempt in range(2):  # again once when a publish replaced them meanwhile
            found = self._docs.get()
            if found is None:
                return False
            con, fresh = found
            if not fresh:
                break
            # A new generation of documents: which tables it holds, and their bases.
            self._local.doc_tables = _document_tables(con, self._file)
            if self._local.doc_tables:
                break
        tables = self._local.doc_tables
        if table + DELTA in tables:  # in parts (see _write_documents)
            return _document_in_parts(con, table, key, table + DAILY in tables)
        if table not in tables:
            return False
        if table + DAILY in tables:  # (an older layout) the part that moves every day, apart
            row = con.execute(
                f"SELECT d.doc, p.doc FROM {_quote(table)} d "
                f"LEFT JOIN {_quote(table + DAILY)} p ON p.k = d.k WHERE d.k = ?",
                (key,),
            ).fetchone()
            if row is not None and row[1] is not None:  # one row's columns, in their order
                return f"{str(row[0])[:-1]},{str(row[1])[1:]}"
        else:
            row = con.execute(f"SELECT doc FROM {_quote(table)} WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def read(self, fn: Callable[[Warehouse], T]) -> T | None:
        """``fn`` on an Ibis warehouse over the latest generation (one query at a time: Ibis
        shares one connection), or None before the first publish."""
        gen = self._current()
        if gen is None:
            return None
        with gen.lock:
            return fn(gen.warehouse(f"duckdb:///{self.path}"))

    def info(self) -> dict[str, Any] | None:
        """When the store was published, by which run, with how many rows per table."""
        cur = self.cursor()
        if cur is None or not self.has(META):
            return None
        row = cur.execute(f"SELECT published_at, run_id, tables FROM {META}").fetchone()
        if row is None:
            return None
        return {
            "published_at": row[0].isoformat() if row[0] else None,
            "run_id": row[1],
            "tables": json.loads(row[2]),
        }
