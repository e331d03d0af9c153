"""The serving store in PostgreSQL: read models published into a fresh schema per generation.

For several service replicas, or a Spark cluster whose driver shares no disk with the service,
the read models go to PostgreSQL instead of a DuckDB file (``serving_store =
"postgresql://user@host/db"``). Each publish writes a new schema ``segmentum_serving_g<N>``
(tables and the JSON documents of point lookups, rows streamed in COPY batches from any
warehouse), then repoints the one-row table ``segmentum_serving.current`` in one statement:
a reader resolves the generation once per request and reads only that schema, so it sees the
old snapshot or the new one, never a mix. Readers hold a shared advisory lock on their
generation; a publish drops generations older than the previous one only when it can take
that lock exclusively (else the next publish does).

A last path segment names the store, so two stores can share a database:
``postgresql://user@host/db/shop`` publishes ``shop.current`` and ``shop_g<N>``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from segmentum.errors import ConfigError, StoreUnreachableError, WarehouseError
from segmentum.serving import (
    DATED,
    META,
    Published,
    ServingStore,
    _drop_handoff,
    _json_column,
    _quote,
    _spark_parquet,
    dates_unchanged,
)
from segmentum.warehouse import Warehouse, without_password

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
DEFAULT_NAME = "segmentum_serving"
# Connections one process keeps to the store: a point lookup holds one for one short query,
# a page for its few; more would only add server processes per replica.
POOL_SIZE = 4
# How long a request waits for a free connection before it is told the store is busy.
POOL_WAIT_SECONDS = 30.0
# Seconds to wait for the server to answer a connection (an unreachable host fails fast).
CONNECT_TIMEOUT = 10
# Rows per COPY batch (one Arrow batch of the warehouse's result).
BATCH_ROWS = 100_000
_HINT_REACH = (
    "check the host, port and database in the serving_store setting "
    "(SEGMENTUM_SERVING_STORE) and that PostgreSQL is running there"
)
_HINT_LOGIN = (
    "check the user name and password in the serving_store setting (SEGMENTUM_SERVING_STORE)"
)


@dataclass(frozen=True)
class Location:
    """Where a PostgreSQL serving store lives: what psycopg connects to, the store's name
    (its control schema; generations are ``<name>_g<N>``) and the URL without its password."""

    conninfo: str
    name: str
    shown: str

    @property
    def lock_class(self) -> int:
        """The advisory-lock class of this store's generations (a signed 32-bit integer)."""
        return zlib.crc32(self.name.encode()) & 0x7FFFFFFF

    def generation_schema(self, generation: int) -> str:
        return f"{self.name}_g{generation}"


def location(url: str) -> Location:
    """Parse ``postgresql://user:password@host:port/database[/store_name][?options]``."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    query = f"?{parts.query}" if parts.query else ""
    shown = without_password(url)  # the password never goes into a message or a log
    name = segments[1] if len(segments) == 2 else DEFAULT_NAME
    if len(segments) > 2 or not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
        raise ConfigError(
            f"the serving_store setting {shown} is not postgresql://user@host/database "
            "or postgresql://user@host/database/name",
            "a name is lower-case letters, digits and _ (at most 41), starting with a letter",
        )
    database = f"/{segments[0]}" if segments else ""
    return Location(f"{parts.scheme}://{parts.netloc}{database}{query}", name, shown)


def store_error(where: Location, exc: BaseException) -> WarehouseError:
    """One line naming the setting: the server cannot be reached, or it refused the login."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    cause = text.removeprefix("connection failed: ")
    if re.search(r"password|authentication|role \S+ does not exist", cause):
        return WarehouseError(
            f"the serving store {where.shown} (setting serving_store) refused the login: {cause}",
            _HINT_LOGIN,
        )
    return StoreUnreachableError(
        f"cannot reach the serving store {where.shown} (setting serving_store): {cause}",
        _HINT_REACH,
    )


def _connect(where: Location) -> psycopg.Connection[Any]:
    import psycopg

    try:
        return psycopg.connect(where.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise store_error(where, exc) from None


# ------------------------------------------------------------------------------ publishing
def publish(
    wh: Warehouse,
    url: str,
    tables: Mapping[str, str | None],
    *,
    run_id: str | None = None,
    documents: Mapping[str, str] | None = None,
) -> Published:
    """Copy ``tables`` of ``wh`` into a new generation schema, then make it the current one.

    The same contract as :func:`segmentum.serving.publish` (tables the warehouse lacks are left
    out; ``documents`` are also written as one JSON document per key value).
    """
    import psycopg

    where = location(url)
    present = {name: key for name, key in tables.items() if wh.has(name)}
    wanted = {n: k for n, k in (documents or {}).items() if n in present}
    out = Published(where.shown, run_id=run_id)  # no password in what is logged
    con = _connect(where)
    try:
        con.execute("SELECT pg_advisory_lock(%s, 0)", [where.lock_class])  # one publish at a time
        _ensure_control(con, where)
        row = con.execute(f"SELECT nextval('{where.name}.generation_seq')").fetchone()
        generation = int(row[0]) if row else 0
        schema = where.generation_schema(generation)
        last = _current_schema(con, where)
        # All or nothing: a publish that fails or is killed leaves no schema behind.
        with con.transaction():
            con.execute(
                f"INSERT INTO {where.name}.generations VALUES (%s, %s, now())", [generation, schema]
            )
            con.execute(f"CREATE SCHEMA {schema}")
            local = duckdb.connect()  # turns other engines' Arrow batches into COPY text
            # The dates of the history the last generation holds stay out of what is sent;
            # Spark hands the rest over as Parquet where it can (as for a DuckDB store).
            kept = {n: _dates_kept(con, wh, last, n) for n in present if last and n in DATED}
            staged = _spark_parquet(wh, present, _handoff_near(), kept)
            try:
                for name, key in present.items():
                    out.tables[name], carried = _copy_table(
                        con,
                        local,
                        wh,
                        schema,
                        name,
                        key,
                        wanted,
                        staged.get(name),
                        (last, kept.get(name, [])),
                    )
                    if carried:
                        out.carried.append(name)
            finally:
                local.close()
                _drop_handoff(staged)
            out.published_at = _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat()
            con.execute(
                f"CREATE TABLE {schema}.{META} AS SELECT %s::timestamp AS published_at, "
                "%s::text AS run_id, %s::text AS tables",
                [out.published_at, run_id, json.dumps(out.tables)],
            )
            for name in present:  # the planner's statistics, for the pages' queries
                con.execute(f"ANALYZE {schema}.{_quote(name)}")
        row = con.execute(f"SELECT generation FROM {where.name}.current").fetchone()
        previous = int(row[0]) if row else None
        # The switch: one statement, so a reader resolves the old generation or the new.
        con.execute(
            f"INSERT INTO {where.name}.current VALUES (true, %s, %s, %s, %s, %s) "
            "ON CONFLICT (only_row) DO UPDATE SET generation = EXCLUDED.generation, "
            "published_at = EXCLUDED.published_at, run_id = EXCLUDED.run_id, "
            "tables = EXCLUDED.tables, documents = EXCLUDED.documents",
            [
                generation,
                out.published_at,
                run_id,
                json.dumps({**out.tables, META: 1}),
                json.dumps(sorted(wanted)),
            ],
        )
        _drop_old(con, where, keep={generation, previous})
    except psycopg.OperationalError as exc:
        raise store_error(where, exc) from None
    except psycopg.Error as exc:
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise WarehouseError(
            f"cannot publish to the serving store {where.shown}: {cause}",
            "the current generation was kept; see the PostgreSQL server's log",
        ) from exc
    finally:
        con.close()  # ends the session: its advisory locks go with it
    return out


def _current_schema(con: psycopg.Connection[Any], where: Location) -> str | None:
    """The schema of the generation readers see now (None before the first publish)."""
    row = con.execute(
        f"SELECT g.schema_name FROM {where.name}.current c "
        f"JOIN {where.name}.generations g ON g.generation = c.generation"
    ).fetchone()
    return str(row[0]) if row else None


def _dates_kept(con: psycopg.Connection[Any], wh: Warehouse, last: str, name: str) -> list[Any]:
    """The dates of ``name`` (a table kept per date, ``DATED``) whose rows the last generation
    already holds: the same runs with the same row counts in the warehouse and in ``last``.
    A daily run adds one date, so the history is copied inside PostgreSQL instead of sent
    again from the warehouse every day."""
    exists = con.execute("SELECT to_regclass(%s)", [f"{last}.{_quote(name)}"]).fetchone()
    t = wh.table(name)
    if not exists or exists[0] is None or not {"as_of", "run_id"} <= set(t.columns):
        return []

    try:
        with con.transaction():  # a savepoint: a failed read leaves the publish going
            held = con.execute(
                f"SELECT as_of, run_id, count(*) FROM {last}.{_quote(name)} GROUP BY 1, 2"
            ).fetchall()
    except Exception:  # the last generation's table has no such columns: copy it whole
        return []
    return dates_unchanged(t, held)


def _carry_dates(
    con: psycopg.Connection[Any], last: str, target: str, name: str, kept: list[Any]
) -> int | None:
    """Copy the rows of the dates ``kept`` from the last generation's ``name`` into ``target``
    (just created with the same columns) inside PostgreSQL; None (nothing copied) when the
    two tables' columns differ, e.g. after an upgrade added one."""
    import psycopg

    def columns(table: str) -> list[tuple[str, str]]:
        return [
            (str(a), str(b))
            for a, b in con.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                [table],
            ).fetchall()
        ]

    if columns(target) != columns(f"{last}.{_quote(name)}"):
        return None
    try:
        with con.transaction():  # a savepoint: a failure leaves the new table empty
            cur = con.execute(
                f"INSERT INTO {target} SELECT * FROM {last}.{_quote(name)} WHERE as_of = ANY(%s)",
                [kept],
            )
    except psycopg.Error:
        return None
    return int(cur.rowcount)


def _handoff_near() -> Path:
    """Where a local Spark session's Parquet hand-off goes (beside this name): the
    temp_directory setting, else the system's temporary folder."""
    import tempfile

    from segmentum.config import load_settings

    folder = Path(load_settings().temp_directory or tempfile.gettempdir()).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "serving"


def _ensure_control(con: psycopg.Connection[Any], where: Location) -> None:
    """The store's control schema: the generation counter, the generations made, and the
    one-row pointer to the current one."""
    n = where.name
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {n}")
    con.execute(f"CREATE SEQUENCE IF NOT EXISTS {n}.generation_seq")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {n}.generations (generation integer PRIMARY KEY, "
        "schema_name text NOT NULL, created_at timestamptz NOT NULL)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {n}.current ("
        "only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
        "generation integer NOT NULL, published_at timestamp NOT NULL, run_id text, "
        "tables jsonb NOT NULL, documents jsonb NOT NULL)"
    )


def _drop_old(con: psycopg.Connection[Any], where: Location, keep: set[int | None]) -> None:
    """Drop the generations before the previous one that no reader holds (a held one waits
    for the next publish); a killed publish's half-written schema goes the same way."""
    rows = con.execute(f"SELECT generation, schema_name FROM {where.name}.generations").fetchall()
    for generation, schema in rows:
        if generation in keep:
            continue
        got = con.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", [where.lock_class, generation]
        ).fetchone()
        if not got or not got[0]:
            continue
        try:
            con.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
            con.execute(f"DELETE FROM {where.name}.generations WHERE generation = %s", [generation])
        finally:
            con.execute("SELECT pg_advisory_unlock(%s, %s)", [where.lock_class, generation])


_INTEGERS = {
    "TINYINT": "smallint",
    "UTINYINT": "smallint",
    "SMALLINT": "smallint",
    "USMALLINT": "integer",
    "INTEGER": "integer",
    "UINTEGER": "bigint",
    "BIGINT": "bigint",
    "UBIGINT": "numeric",
    "HUGEINT": "numeric",
    "UHUGEINT": "numeric",
}
_SCALARS = {
    **_INTEGERS,
    "BOOLEAN": "boolean",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "UUID": "uuid",
    "BLOB": "bytea",
    "JSON": "jsonb",
    '"NULL"': "text",
    "NULL": "text",
}


def _scalar(dtype: str) -> str | None:
    if dtype in _SCALARS:
        return _SCALARS[dtype]
    m = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", dtype.replace(" ", ""))
    return f"numeric({m[1]},{m[2]})" if m else None


def _column(name: str, dtype: str) -> tuple[str, str]:
    """A column's PostgreSQL type and the DuckDB expression that writes it as COPY text: lists
    of scalars become arrays, structs and deeper nesting JSON, the rest their text form."""
    q = _quote(name)
    base = _scalar(dtype)
    if base is not None:
        if base == "bytea":
            return base, f"'\\x' || hex({q})"
        return base, q if dtype == "VARCHAR" else f"CAST({q} AS VARCHAR)"
    inner = dtype[:-2] if dtype.endswith("[]") else None
    element = _scalar(inner) if inner is not None else None
    if element is not None and element not in ("bytea", "jsonb"):
        quoted = (
            "CASE WHEN x IS NULL THEN 'NULL' ELSE '\"' || "
            "replace(replace(CAST(x AS VARCHAR), '\\', '\\\\'), '\"', '\\\"') || '\"' END"
        )
        return f"{element}[]", (
            f"CASE WHEN {q} IS NOT NULL THEN "
            f"'{{' || array_to_string(list_transform({q}, lambda x: {quoted}), ',') || '}}' END"
        )
    if element is None and inner is None and not dtype.startswith(("STRUCT", "MAP", "UNION")):
        return "text", f"CAST({q} AS VARCHAR)"  # ENUM and the like: their text
    return "jsonb", f"CAST(to_json({q}) AS VARCHAR)"


def _copy_table(
    con: psycopg.Connection[Any],
    local: duckdb.DuckDBPyConnection,
    wh: Warehouse,
    schema: str,
    name: str,
    key: str | None,
    documents: Mapping[str, str],
    parquet: Path | None = None,
    carry: tuple[str | None, list[Any]] = (None, []),
) -> tuple[int, int]:
    """Copy ``name`` into ``schema`` with COPY, with its JSON documents built by DuckDB as the
    DuckDB store builds them; returns the rows, and those of them carried. A DuckDB warehouse
    writes the COPY text itself; other engines hand over Arrow batches that ``local`` (DuckDB)
    turns into it, read from ``parquet`` (the folder of the table's files that Spark wrote,
    without the dates carried) where given.

    ``carry``: the last generation's schema and the dates of ``name`` it already holds
    (:func:`_dates_kept`): those rows are copied from there inside PostgreSQL, and only the
    other dates' rows are sent."""
    last, kept = carry
    skip = ""  # the dates carried, left out of what is sent
    if last and kept:
        listed = ", ".join(f"DATE '{d.isoformat()}'" for d in kept)
        skip = f" WHERE as_of IS NULL OR as_of NOT IN ({listed})"
    reader: pa.RecordBatchReader | None = None
    if wh.engine == "duckdb":
        src, relation = wh.con.con.cursor(), _quote(name)
        if skip:
            src.execute(
                f"CREATE OR REPLACE TEMP VIEW _publish_part AS SELECT * FROM {relation}{skip}"
            )
            relation = "_publish_part"
    else:
        if parquet is not None:  # a cursor of its own: ``local`` runs the COPY queries
            files = str(parquet / "*.parquet").replace("'", "''")
            reader = (
                local.cursor()
                .execute(f"SELECT * FROM read_parquet('{files}')")
                .fetch_record_batch(BATCH_ROWS)
            )
        else:
            t = wh.table(name)
            if skip:
                t = t.filter(t.as_of.isnull() | ~t.as_of.isin(kept))
            reader = wh.batches(t, BATCH_ROWS)
        src, relation = local, "_batch"
        local.register("_batch", pa.Table.from_batches([], schema=reader.schema))
    try:
        described = [(r[0], r[1]) for r in src.execute(f"DESCRIBE {relation}").fetchall()]
        columns = [(c, *_column(c, t)) for c, t in described]
        target = f"{schema}.{_quote(name)}"
        ddl = ", ".join(f"{_quote(c)} {t}" for c, t, _ in columns)
        con.execute(f"CREATE TABLE {target} ({ddl})")
        names = ", ".join(_quote(c) for c, _, _ in columns)
        carried = _carry_dates(con, last, target, name, kept) if last and kept else 0
        if carried is None:  # the columns changed: everything is sent
            carried = 0
            if reader is None:
                relation = _quote(name)
            else:  # the hand-off lacks the dates that were to be carried: collected whole
                reader = wh.batches(wh.table(name), BATCH_ROWS)
        copies = [
            (
                f"COPY {target} ({names}) FROM STDIN (FORMAT csv)",
                f"SELECT {', '.join(expr for _, _, expr in columns)} FROM {relation}",
            )
        ]
        doc_key = documents.get(name)
        docs = f"{schema}.{_quote('_documents_' + name)}"
        if doc_key:
            con.execute(f"CREATE TABLE {docs} (k text NOT NULL, doc text NOT NULL)")
            fields = ", ".join(f"{_quote(c)} := {_json_column(c, t)}" for c, t in described)
            copies.append(
                (
                    f"COPY {docs} (k, doc) FROM STDIN (FORMAT csv)",
                    f"SELECT CAST({_quote(doc_key)} AS VARCHAR), "
                    f"CAST(to_json(struct_pack({fields})) AS VARCHAR) "
                    f"FROM {relation} WHERE {_quote(doc_key)} IS NOT NULL",
                )
            )
        if reader is None:
            rows = sum(_copy_rows(con, statement, src, query) for statement, query in copies[:1])
            for statement, query in copies[1:]:
                _copy_rows(con, statement, src, query)
        else:
            local.unregister("_batch")
            rows = 0
            for batch in reader:
                if not batch.num_rows:
                    continue
                rows += batch.num_rows
                local.register("_batch", pa.Table.from_batches([batch]))
                try:
                    for statement, query in copies:
                        _copy_rows(con, statement, local, query)
                finally:
                    local.unregister("_batch")
    finally:
        if reader is None:
            src.close()
    if key:
        con.execute(f"CREATE INDEX ON {target} ({_quote(key)})")
    if doc_key:
        _primary_key(con, docs)
    return rows + carried, carried


def _copy_rows(
    con: psycopg.Connection[Any], statement: str, src: duckdb.DuckDBPyConnection, query: str
) -> int:
    """One COPY of what DuckDB's ``query`` returns, as CSV text in batches (values quoted,
    NULL left empty); returns the rows."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    rows = 0
    with con.cursor() as cur, cur.copy(statement) as copy:
        for batch in src.execute(query).fetch_record_batch(BATCH_ROWS):
            if batch.num_rows:
                sink = pa.BufferOutputStream()
                pacsv.write_csv(pa.Table.from_batches([batch]), sink, options)
                copy.write(sink.getvalue().to_pybytes())
                rows += batch.num_rows
    return rows


def _primary_key(con: psycopg.Connection[Any], docs: str) -> None:
    """Key the documents; a key given twice keeps its last row, as the DuckDB store does."""
    import psycopg

    try:
        con.execute(f"ALTER TABLE {docs} ADD PRIMARY KEY (k)")
    except psycopg.errors.UniqueViolation:
        con.execute(f"DELETE FROM {docs} a USING {docs} b WHERE a.k = b.k AND a.ctid < b.ctid")
        con.execute(f"ALTER TABLE {docs} ADD PRIMARY KEY (k)")


# ------------------------------------------------------------------------------ reading
@dataclass
class _Pointer:
    generation: int
    published_at: _dt.datetime
    run_id: str | None
    tables: dict[str, int]
    documents: list[str]


class _Held:
    """One pooled connection, the search path it was last pointed at, its Ibis warehouse and
    the generation its last document lookup read."""

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self.con = con
        self.schema: str | None = None
        self.wh: Warehouse | None = None
        self.pointer: _Pointer | None = None


class _Pool:
    """At most ``size`` connections shared by a process's threads; a broken one is replaced."""

    def __init__(self, where: Location, size: int = POOL_SIZE) -> None:
        self.where, self.size = where, size
        self._idle: list[_Held] = []
        self._open = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def connection(self) -> Iterator[_Held]:
        held = self._take()
        try:
            yield held
        finally:
            self._give(held)

    def _take(self) -> _Held:
        with self._cond:
            while True:
                while self._idle:
                    held = self._idle.pop()
                    if not held.con.closed and not held.con.broken:
                        return held
                    self._open -= 1
                if self._open < self.size:
                    self._open += 1
                    break
                if not self._cond.wait(POOL_WAIT_SECONDS):
                    raise WarehouseError(
                        f"all {self.size} connections to the serving store {self.where.shown} "
                        "are busy",
                        "retry in a few seconds",
                    )
        try:
            return _Held(_connect(self.where))
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _give(self, held: _Held) -> None:
        with self._cond:
            if held.con.closed or held.con.broken:
                self._open -= 1
            else:
                self._idle.append(held)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            for held in self._idle:
                held.con.close()
            self._open -= len(self._idle)
            self._idle.clear()


class PostgresServingStore(ServingStore):
    """Reads a PostgreSQL serving store through a small pool of connections.

    Every call resolves the current generation itself; :meth:`read` keeps one generation for
    all its queries (holding a shared advisory lock on it, so no publish drops it meanwhile).
    """

    placeholder = "%s"

    def __init__(self, path: str | Path) -> None:
        self.url = str(path)
        self.path = self.url
        self.where = location(self.url)
        self._pool = _Pool(self.where)

    def _pointer(self, held: _Held) -> _Pointer | None:
        import psycopg

        try:
            row = held.con.execute(
                "SELECT generation, published_at, run_id, tables, documents "
                f"FROM {self.where.name}.current"
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # never published
            return None
        return None if row is None else _Pointer(*row)

    def _run(self, fn: Callable[[_Held], T]) -> T:
        """``fn`` on a pooled connection. A connection the server closed while it sat idle (a
        restart, an idle timeout) fails on first use: it is dropped and ``fn`` runs again on
        another, so only an unreachable server reaches the caller, as one line."""
        import psycopg

        for attempt in range(self._pool.size + 1):
            held: _Held | None = None
            try:
                with self._pool.connection() as held:
                    return fn(held)
            except psycopg.OperationalError as exc:
                if held is None or not held.con.broken or attempt == self._pool.size:
                    raise store_error(self.where, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def current(self) -> _Pointer | None:
        """The current generation (None before the first publish)."""
        return self._run(self._pointer)

    @property
    def published(self) -> bool:
        return self.current() is not None

    def has(self, name: str) -> bool:
        found = self.current()
        return found is not None and name in found.tables

    def cursor(self) -> None:
        """None: point lookups read the published documents (:meth:`document`), pages
        :meth:`read`; a caller then falls back to the warehouse."""
        return None

    def document(self, table: str, key: str) -> str | bool | None:
        """The JSON document of ``key`` in ``table``: None when there is no such key, False
        when ``table`` has no published documents.

        One round trip: the query reads the pointer and the document of the generation this
        connection read last in one statement (one snapshot); when the pointer has moved on,
        it resolves the new generation and asks again.
        """
        import psycopg

        docs = _quote("_documents_" + table)

        def lookup(held: _Held) -> str | bool | None:
            for _ in range(3):
                known = held.pointer
                if known is None or table not in known.documents:
                    known = held.pointer = self._pointer(held)
                    if known is None or table not in known.documents:
                        return False
                schema = self.where.generation_schema(known.generation)
                try:
                    row = held.con.execute(
                        f"SELECT c.generation, (SELECT doc FROM {schema}.{docs} WHERE k = %s) "
                        f"FROM {self.where.name}.current c",
                        [key],
                    ).fetchone()
                except psycopg.errors.UndefinedTable:  # dropped since: resolve again
                    held.pointer = None
                    continue
                if row is not None and row[0] == known.generation:
                    return None if row[1] is None else str(row[1])
                held.pointer = None  # a publish switched generations: resolve again
            return False

        return self._run(lookup)

    def read(self, fn: Callable[[Warehouse], T]) -> T | None:
        """``fn`` on an Ibis warehouse over the current generation (None before the first
        publish); its queries all read that generation."""
        import psycopg

        cls = self.where.lock_class

        def on_generation(held: _Held) -> T | None:
            try:  # resolve and hold in one statement
                row = held.con.execute(
                    f"SELECT generation, pg_advisory_lock_shared(%s, generation) "
                    f"FROM {self.where.name}.current",
                    [cls],
                ).fetchone()
            except psycopg.errors.UndefinedTable:  # never published
                return None
            if row is None:
                return None
            generation = int(row[0])
            try:
                schema = self.where.generation_schema(generation)
                if held.schema != schema:
                    held.con.execute("SELECT set_config('search_path', %s, false)", [schema])
                    held.schema = schema
                return fn(self._warehouse(held))
            finally:
                if not held.con.closed and not held.con.broken:
                    held.con.execute("SELECT pg_advisory_unlock_shared(%s, %s)", [cls, generation])

        return self._run(on_generation)

    def _warehouse(self, held: _Held) -> Warehouse:
        if held.wh is None:
            import ibis

            from segmentum.warehouse import _postgres_compat

            _postgres_compat()
            backend = ibis.postgres.from_connection(held.con)
            held.wh = Warehouse(backend, self.where.shown, read_only=True)
        return held.wh

    def info(self) -> dict[str, Any] | None:
        found = self.current()
        if found is None:
            return None
        return {
            "published_at": found.published_at.isoformat(),
            "run_id": found.run_id,
            "tables": {k: v for k, v in found.tables.items() if k != META},
            "generation": found.generation,
        }

    def close(self) -> None:
        self._pool.close()
