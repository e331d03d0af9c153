"""Open the warehouse (an Ibis backend) from a URL; the only module that knows about engines.

Everything else receives a :class:`Warehouse` and works with Ibis table expressions.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import tempfile
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from segmentum.errors import WarehouseBusyError, WarehouseError
from segmentum.schema import ALL_TABLES, INGESTIBLE, Table

DEFAULT_URL = "duckdb:///segmentum.duckdb"
_TRANSACTIONAL = {"duckdb", "postgres"}
_DUCKDB_HAS = (
    "SELECT 1 FROM duckdb_tables() WHERE table_name = $1 "
    "AND database_name IN (current_database(), 'temp') AND schema_name = current_schema() "
    "UNION ALL SELECT 1 FROM duckdb_views() WHERE view_name = $1 "
    "AND database_name IN (current_database(), 'temp') AND schema_name = current_schema() "
    "LIMIT 1"
)


def _ident(name: str) -> str:
    """A quoted SQL identifier (DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def _reads_only_others(expr: ir.Table, name: str) -> bool:
    """Whether ``expr`` reads warehouse tables only, and not ``name``: its query can then feed
    a delete-and-insert of ``name`` directly (no rows of Ibis's own to register first, no SQL
    text whose tables are unknown)."""
    return _reads_stored_only(expr) and name not in _tables_read(expr)


def _reads_stored_only(expr: ir.Table) -> bool:
    """Whether ``expr`` reads stored tables only (no rows Ibis holds, no SQL text)."""
    import ibis.expr.operations as ops

    kinds = (ops.InMemoryTable, ops.SQLQueryResult, ops.SQLStringView, ops.UnboundTable)
    return not expr.op().find(kinds)


def _flag(cond: ir.BooleanValue | None) -> ir.BooleanValue:
    """A part's condition as a column: true where it holds, false where it does not or is NULL
    (the rows a filter on it drops)."""
    return ibis.literal(True) if cond is None else cond.fill_null(False)


def _reads_only_tables(expr: ir.Table, names: frozenset[str]) -> bool:
    """Whether ``expr`` reads stored tables among ``names`` and nothing else."""
    read = _tables_read(expr) if _reads_stored_only(expr) else set()
    return bool(read) and read <= names


def _tables_read(obj: Any, seen: set[int] | None = None, depth: int = 0) -> set[str]:
    """Names of the tables that the Ibis expressions inside ``obj`` read."""
    import ibis.expr.operations as ops

    seen = set() if seen is None else seen
    if obj is None or isinstance(obj, str | bytes | int | float | bool) or depth > 6:
        return set()
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, ir.Expr):
        return {op.name for op in obj.op().find(ops.DatabaseTable)}
    if isinstance(obj, pd.DataFrame | pa.Table):
        return set()
    if isinstance(obj, Mapping):
        items: Iterable[Any] = obj.values()
    elif isinstance(obj, list | tuple | set | frozenset):
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return set()
    names: set[str] = set()
    for item in items:
        names |= _tables_read(item, seen, depth + 1)
    return names


def spark_conf_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extra Spark settings for the local session from ``SEGMENTUM_SPARK_CONF``:
    ``key=value`` pairs separated by ``;`` (a value may hold spaces and ``=``), e.g.
    ``spark.driver.memory=8g;spark.sql.shuffle.partitions=16``."""
    text = (os.environ if environ is None else environ).get("SEGMENTUM_SPARK_CONF", "")
    conf: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not part.strip():
            continue
        if not sep or not key.strip():
            raise WarehouseError(
                f"SEGMENTUM_SPARK_CONF: {part.strip()!r} is not key=value",
                "write pairs like spark.driver.memory=8g, separated by ';'",
            )
        conf[key.strip()] = value.strip()
    return conf


SPARK_LOG_CONFIG = "spark-log4j2.properties"


def _local_spark_session(warehouse_dir: str | None = None) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise WarehouseError(
            "pyspark is not installed", "install the spark extra: pip install 'segmentum[spark]'"
        ) from exc
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("segmentum")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # bars would tear our own output
    )
    # The local workers run this interpreter (with pyarrow), not whatever python3 is first on
    # the PATH: reading a read model in batches runs Python on them. PySpark reads the
    # variable when the context starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # A local session binds to this machine: Spark would otherwise warn on every command
    # that the host name resolves to a loopback address.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    for key, value in spark_conf_from_env().items():
        builder = builder.config(key, value)
    # Spark's own log lines (warnings, "Setting default log level") stay off the terminal.
    java = [spark_conf_from_env().get("spark.driver.extraJavaOptions", "")]
    if "log4j2.configurationFile" not in java[0]:  # the user's own log settings win
        java.append(f"-Dlog4j2.configurationFile={Path(__file__).with_name(SPARK_LOG_CONFIG)}")
    # Without a metastore Spark forgets its tables when the session ends but keeps their files,
    # and a later session then refuses to create them again: by default use a fresh folder.
    folder = warehouse_dir or tempfile.mkdtemp(prefix="segmentum-spark-")
    builder = builder.config("spark.sql.warehouse.dir", folder)
    if warehouse_dir:
        # A named folder is a warehouse that outlives the process (`segmentum run`, then
        # `segmentum history backfill`...): its table catalog lives in an embedded Derby
        # metastore inside it, which, like a DuckDB file, one process at a time may open.
        Path(folder).mkdir(parents=True, exist_ok=True)
        builder = builder.config("spark.sql.catalogImplementation", "hive").config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={Path(folder) / 'metastore_db'};create=true",
        )
        java.append(f"-Dderby.stream.error.file={Path(folder) / 'derby.log'}")  # not in the cwd
    builder = builder.config("spark.driver.extraJavaOptions", " ".join(j for j in java if j))
    session = builder.getOrCreate()
    # Not ERROR: a failed task would print its Java stack on the terminal; the failed step
    # reports the cause itself (engine_error).
    session.sparkContext.setLogLevel("FATAL")
    return session


class Warehouse:
    """A connection to the warehouse: canonical tables, atomic batches, result writes.

    Parameters
    ----------
    backend
        An Ibis backend.
    url
        The URL it was opened from (for messages).
    """

    def __init__(self, backend: Any, url: str, *, read_only: bool = False) -> None:
        self.con = backend
        self.url = url
        # A published copy (the serving store): pages read it during a run, and skip what
        # would need the warehouse itself (previews, dry runs, secrets).
        self.read_only = read_only
        self.engine: str = backend.name
        self._reader: Warehouse | None = None
        # Numbered views (:meth:`numbered`) and the temporary table under each.
        self._numbered: dict[str, str] = {}
        # What a killed process had left (spill files beside the database, staging tables in
        # it), removed when it was opened.
        self.cleaned_on_open: list[str] = []
        # Tables only read for now (:meth:`reading_only`), and the fingerprints taken over them.
        self._frozen: frozenset[str] = frozenset()
        self._fingerprints: dict[str, tuple[int, int]] = {}
        # Tables written since it was opened or last published into its serving store: what
        # a command changed that the pages of a Spark warehouse read from the published copy
        # (:func:`segmentum.precompute.refresh_published`).
        self.changed: set[str] = set()
        # The DuckDB file, resolved (set by connect): staging tables are dropped on open only
        # when no other warehouse of this process holds the same file.
        self._file: str | None = None
        _OPENED.add(self)

    @property
    def placeholder(self) -> str:
        """How a query parameter is written on a raw cursor of this engine's driver."""
        return "%s" if self.engine == "postgres" else "?"

    def run_sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One parametrised statement (``?`` placeholders) on DuckDB or PostgreSQL, committed
        at once unless inside :meth:`batch`: the row-level updates of send logs and outboxes.
        Values only ever travel as parameters, never pasted into the text."""
        statement = statement.replace("?", self.placeholder)
        if self.engine == "duckdb":
            cur = self.con.con.execute(statement, list(params))
            return cur.fetchall() if cur.description else []
        if self.engine == "postgres":
            with self.con.con.cursor() as c:
                c.execute(statement, list(params))
                return c.fetchall() if c.description else []
        raise WarehouseError(f"row-level statements are not available on {self.engine}")

    # ------------------------------------------------------------------ tables
    def has(self, name: str) -> bool:
        if self.engine == "duckdb":
            # What ibis's list_tables answers, without building and listing them all: a step
            # asks this for every table it touches, and the listing cost 7% of a run.
            return bool(self.con.con.execute(_DUCKDB_HAS, [name]).fetchall())
        if self.engine == "pyspark":  # one catalog lookup (temporary views too), not a listing
            return bool(self.con._session.catalog.tableExists(name))
        return name in self.con.list_tables()

    def table(self, name: str) -> ir.Table:
        """The table ``name``; a clear error when it has not been loaded yet."""
        if not self.has(name):
            if name in INGESTIBLE:
                hint = f"load it first: segmentum ingest {name} FILE"
            elif name in ALL_TABLES:  # ingest's own bookkeeping (batches, quarantine...)
                hint = "nothing has been loaded yet: segmentum ingest TABLE FILE"
            else:
                hint = "run the pipeline first: segmentum run"
            raise WarehouseError(f"the warehouse {self.url} has no table '{name}'", hint)
        return self.con.table(name)

    def ensure(self, spec: Table) -> ir.Table:
        """Create the canonical table ``spec`` empty if it does not exist yet.

        A table written by an earlier version of segmentum gets the columns added since
        (``currency`` and ``line_type`` on ``transactions``), empty on the rows already there,
        so new batches can be written beside old ones. Running it again changes nothing.
        """
        if not self.has(spec.name):
            self.con.create_table(spec.name, schema=spec.ibis_schema)
            return self.con.table(spec.name)
        have = set(self.con.table(spec.name).columns)
        missing = [(c, t) for c, t in spec.ibis_schema.items() if c not in have]
        if missing:
            self._add_columns(spec.name, missing)
        return self.con.table(spec.name)

    def _add_columns(self, name: str, columns: Sequence[tuple[str, Any]]) -> None:
        """``ALTER TABLE`` ``name`` to add empty ``columns`` (name, ibis type); names come
        from the schema, never from a user, and are quoted all the same."""
        dialect = self.con.compiler.dialect
        mapper = self.con.compiler.type_mapper
        ident = self._ident
        defs = [f"{ident(c)} {mapper.from_ibis(t).sql(dialect)}" for c, t in columns]
        if self.engine == "pyspark":
            self.con._session.sql(f"ALTER TABLE {ident(name)} ADD COLUMNS ({', '.join(defs)})")
            return
        for d in defs:
            self.run_sql(f"ALTER TABLE {ident(name)} ADD COLUMN IF NOT EXISTS {d}")

    def _ident(self, name: str) -> str:
        """``name`` quoted as an identifier of this engine's SQL (names of our own tables and
        columns, quoted all the same)."""
        import sqlglot as sg

        return str(sg.to_identifier(name, quoted=True).sql(self.con.compiler.dialect))

    def _spark_frame(self, data: pa.Table | pd.DataFrame) -> Any:
        """A Spark DataFrame straight from Arrow (the pandas route turns NULL text into 'NaN')."""
        table = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        return self.con._session.createDataFrame(table)

    def write(self, name: str, obj: ir.Table | pd.DataFrame | pa.Table) -> ir.Table:
        """Replace table ``name`` with ``obj`` (results of a step: features, classes...)."""
        self._writable(name)
        if self.engine == "pyspark" and not isinstance(obj, ir.Table):
            self._spark_frame(obj).write.mode("overwrite").saveAsTable(name)
            return self.con.table(name)
        if self.engine == "pyspark" and isinstance(obj, ir.Table) and self.has(name):
            # Spark cannot overwrite a table it is reading from: go through a checkpointed
            # stage (its rows no longer read the table's files).
            staged = self.materialize(obj, "rewrite")
            self.con.create_table(name, staged, overwrite=True)
            self.drop(staged.get_name())
        else:
            self.con.create_table(name, obj, overwrite=True)
        self._gather_statistics(name)
        return self.con.table(name)

    def _gather_statistics(self, name: str) -> None:
        """PostgreSQL plans from table statistics, which a table written a moment ago does not
        have yet: it then assumes one row and picks nested loops that re-run a window for every
        row (the classes of 800 customers took 15 minutes). ANALYZE reads a sample, so it costs
        little next to the write."""
        if self.engine == "postgres":
            self.run_sql(f'ANALYZE "{name.replace(chr(34), chr(34) * 2)}"')

    def replace_where(
        self,
        name: str,
        obj: ir.Table,
        column: str,
        value: Any,
        *,
        reads_other_values: bool = False,
    ) -> ir.Table:
        """Replace the rows of ``name`` whose ``column`` equals ``value`` by ``obj``'s rows.

        Used for results keyed by ``as_of``: a rerun for the same date replaces, other dates stay.
        When the columns differ (a new version adds one, or a step was skipped), both sides are
        widened to the union of the columns, missing values empty: the history is never dropped.
        ``reads_other_values``: ``obj`` reads ``name`` only where ``column`` holds other values
        (a new day's features carried from the last day's): its query then feeds the insert
        directly, as the rows it reads are not those replaced.
        """
        self._writable(name)
        if not self.has(name):
            return self.write(name, obj)
        current = self.con.table(name)
        values = list(value) if isinstance(value, list | tuple) else [value]
        if (
            self.engine in _TRANSACTIONAL
            and set(obj.columns) <= set(current.columns)
            and all(v is not None for v in values)
        ):
            # Columns the new rows lack are empty in them (a history backfill has no CLV):
            # the other dates' rows stay where they are, not rewritten with the table.
            schema = current.schema()
            obj = obj.mutate(
                **{c: ibis.null(schema[c]) for c in current.columns if c not in obj.columns}
            )
            return self._replace_in_place(name, obj, column, values, reads_other_values)
        # Several keys at once (e.g. backfilled dates); rows without a key are kept.
        hit = current[column].isin([ibis.literal(v) for v in values])
        kept = current.filter(~hit | current[column].isnull())
        if set(obj.columns) == set(current.columns):
            return self.write(name, kept.union(obj.select(current.columns).cast(current.schema())))
        schema = dict(current.schema().items())
        for col, dtype in obj.schema().items():
            schema.setdefault(col, dtype)

        def widen(t: ir.Table) -> ir.Table:
            return t.select(
                **{c: t[c].cast(d) if c in t.columns else ibis.null(d) for c, d in schema.items()}
            )

        combined = self.materialize(widen(kept).union(widen(obj)), "widen")
        return self.write(name, combined)

    def _replace_in_place(
        self,
        name: str,
        obj: ir.Table,
        column: str,
        values: Sequence[Any],
        reads_other_values: bool = False,
    ) -> ir.Table:
        """DuckDB, PostgreSQL: delete the replaced rows and insert the new ones, in one
        transaction. The rows of other dates are not rewritten: a daily run adds a snapshot a
        day to the history tables, and rewriting them whole made every run dearer than the
        last. ``obj`` is inserted straight from its query when it reads only other warehouse
        tables; when it reads ``name`` itself (or rows Ibis holds, or SQL text), it is staged
        first, so that it reads the rows it replaces as they were."""
        current = self.con.table(name)
        shaped = obj.select(*current.columns).cast(current.schema())
        direct = _reads_only_others(shaped, name) or (
            reads_other_values and _reads_stored_only(shaped)
        )
        staged = None if direct else self.materialize(shaped, "replace")
        source = f"({self.con.compile(shaped)})" if staged is None else _ident(staged.get_name())
        table, col = _ident(name), _ident(column)
        cols = ", ".join(_ident(c) for c in current.columns)
        marks = ", ".join("?" for _ in values)
        try:
            with self._transaction():
                self.run_sql(f"DELETE FROM {table} WHERE {col} IN ({marks})", values)
                self.run_sql(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {source} AS _new")
        finally:
            if staged is not None:
                self.drop(staged.get_name())
        self._gather_statistics(name)
        return self.con.table(name)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction around the block (DuckDB, PostgreSQL); inside :meth:`batch`, that
        batch's transaction."""
        if self.engine == "postgres":
            with self.con.con.transaction():
                yield
            return
        import duckdb

        try:
            self.con.con.execute("BEGIN TRANSACTION")
        except duckdb.TransactionException:  # already in one: it commits or rolls back all
            yield
            return
        try:
            yield
        except BaseException:
            self.con.con.execute("ROLLBACK")
            raise
        self.con.con.execute("COMMIT")

    def insert(self, name: str, obj: ir.Table | pd.DataFrame | pa.Table) -> None:
        self._writable(name)
        if self.engine == "pyspark":
            t = obj if isinstance(obj, ir.Table) else self.from_arrow(obj, "insert")
            # ibis writes the query as SQL text and parses it back to wrap it in an INSERT;
            # sqlglot's recursive parser runs out of stack on the ingest's deep queries (the
            # quarantine of a B2B customers file). Spark takes the query itself instead;
            # insertInto matches columns by position, so select them in the table's order.
            schema = self.con.table(name).schema()
            t = t.select(*(t[c].cast(dtype).name(c) for c, dtype in schema.items()))
            self.con._run_pre_execute_hooks(t)
            self.con._session.sql(self.con.compile(t)).write.insertInto(name)
            return
        self.con.insert(name, obj)
        self._gather_statistics(name)

    def materialize(self, expr: ir.Table, prefix: str = "stage") -> ir.Table:
        """Compute ``expr`` once into a temporary table and return it."""
        name = self.temp_name(prefix)
        if self.engine == "duckdb":
            self.con.create_table(name, expr, temp=True)
        elif self.engine == "pyspark":
            # A temporary view of a checkpointed result: computed once, now, and kept by the
            # executors (memory, spilling to disk) for this session only; a table would leave
            # its Parquet files and a catalog entry behind after every step.
            self.con._run_pre_execute_hooks(expr)
            frame = self.con._session.sql(self.con.compile(expr)).localCheckpoint(eager=True)
            frame.createOrReplaceTempView(name)
        else:
            self.con.create_table(name, expr)
        self._gather_statistics(name)
        return self.con.table(name)

    def staging_table(self, expr: ir.Table, prefix: str) -> ir.Table:
        """Compute ``expr`` once into a table of the database (DuckDB), not a temporary one,
        so that :meth:`become` can make it a table of the warehouse without copying its rows.

        Named like every staging table: one that a killed process left behind is dropped
        when the file is next opened (:func:`connect`).
        """
        if self.engine != "duckdb":
            raise WarehouseError(f"staging tables are a DuckDB feature, not {self.engine}'s")
        name = self.temp_name(prefix)
        with self.without_fsst():
            self.con.create_table(name, expr)
        return self.con.table(name)

    @contextlib.contextmanager
    def without_fsst(self) -> Iterator[None]:
        """Inside the block, DuckDB writes text without FSST (string compression): its analysis
        is an eighth of writing a table of invoice lines (8.8 s -> 7.8 s to copy 12M lines;
        their ids then take dictionaries, 9% more space). For the large tables written whole."""
        if self.engine != "duckdb":
            yield
            return
        self.run_sql("SET disabled_compression_methods = 'fsst'")
        try:
            yield
        finally:
            self.run_sql("RESET disabled_compression_methods")

    def become(self, stage: str, name: str, gone: ir.Table | None) -> None:
        """Make table ``stage`` the table ``name`` in place (DuckDB, inside a transaction).

        ``stage`` holds ``name``'s columns first and in order, then columns of its own, which
        are dropped; ``gone`` (one column) lists the ``source_row`` values of rows to delete
        afterwards. ``name`` must be empty: its rows would be lost. DuckDB refuses to commit a
        delete made before the columns were dropped, hence the order.
        """
        ident = self._ident
        self._writable(name)
        keep = self.con.table(name).columns
        have = self.con.table(stage).columns
        if list(have[: len(keep)]) != list(keep):
            raise WarehouseError(f"{stage} does not start with the columns of {name}")
        for c in have[len(keep) :]:
            self.run_sql(f"ALTER TABLE {ident(stage)} DROP COLUMN {ident(c)}")
        self.run_sql(f"DROP TABLE {ident(name)}")
        self.run_sql(f"ALTER TABLE {ident(stage)} RENAME TO {ident(name)}")
        if gone is not None:
            [col] = gone.columns
            self.run_sql(
                f"DELETE FROM {ident(name)} WHERE source_row IN "
                f"(SELECT {ident(col)} FROM {ident(gone.get_name())})"
            )

    def numbered(self, expr: ir.Table, prefix: str = "raw") -> ir.Table:
        """``expr`` computed once into a temporary table, each row with ``_row``: its position
        (1, 2, ...) in the order ``expr`` yields them (call it inside :meth:`file_order`).

        On DuckDB the position is the table's own row id, read through a view: numbering the
        rows with a window over all of them took as long as reading a CSV file did.
        """
        if self.engine != "duckdb":
            return self.materialize(expr.mutate(_row=ibis.row_number() + 1), prefix)
        base = self.materialize(expr, prefix).get_name()
        view = f"{base}_rows"
        self.con.raw_sql(
            f'CREATE TEMP VIEW "{view}" AS SELECT *, CAST(rowid + 1 AS BIGINT) AS "_row" '
            f'FROM "{base}"'
        )
        self._numbered[view] = base
        return self.con.table(view)

    def drop(self, name: str) -> None:
        if name in self._numbered:
            self.con.drop_view(name, force=True)
            name = self._numbered.pop(name)
        self.con.drop_table(name, force=True)

    def temp_tables(self) -> set[str]:
        """The temporary tables this connection holds (``materialize``, ``from_arrow``, staged
        files): DuckDB keeps them in its buffer pool, Spark in the executors' block stores."""
        if self.engine == "duckdb":
            rows = self.con.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE temporary "
                "AND starts_with(table_name, '_seg_')"
            ).fetchall()
            return {r[0] for r in rows}
        if self.engine == "pyspark":
            return {
                t.name
                for t in self.con._session.catalog.listTables()
                if t.isTemporary and t.name.startswith("_seg_")
            }
        return set()

    def release(self, before: set[str], keep: Any = None) -> list[str]:
        """Drop the temporary tables made since ``before`` (a :meth:`temp_tables` answer)
        that no table expression inside ``keep`` reads; return their names.

        A long run made hundreds of them and held them all to the end: at 10M lines they
        filled DuckDB's memory limit by the last steps. ``keep`` is searched through tuples,
        lists, dicts and objects' attributes, so a step's result keeps what it refers to.
        """
        made = self.temp_tables() - before
        if not made:
            return []
        dropped = sorted(made - _tables_read(keep))
        for name in dropped:
            self.drop(name)
        return dropped

    @staticmethod
    def temp_name(prefix: str) -> str:
        return f"_seg_{prefix}_{uuid.uuid4().hex[:10]}"

    def from_arrow(self, data: pa.Table | pd.DataFrame, prefix: str = "mem") -> ir.Table:
        """Upload an in-memory table (models' outputs, Excel sheets) and return it."""
        name = self.temp_name(prefix)
        if self.engine == "duckdb":
            self.con.create_table(name, data, temp=True)
        elif self.engine == "pyspark":
            self._spark_frame(data).createOrReplaceTempView(name)
        elif self.engine == "postgres":
            table = (
                data
                if isinstance(data, pa.Table)
                else pa.Table.from_pandas(data, preserve_index=False)
            )
            return self._copy_in(name, table.schema, table.to_batches())
        else:
            self.con.create_table(name, data)
        return self.con.table(name)

    def batches(self, t: ir.Table, chunk_size: int = 100_000) -> pa.RecordBatchReader:
        """The rows of ``t`` as Arrow batches, read as they come.

        On Spark, Ibis collects the whole result into the driver (through pandas) before the
        first batch; here each executor turns its partition into Arrow and the driver fetches
        one partition at a time, so its memory follows the largest partition, not the table
        (a read model of millions of rows on a cluster whose executors share no folder with
        the driver)."""
        if self.engine != "pyspark":
            return t.to_pyarrow_batches(chunk_size=chunk_size)
        return _spark_batches(self.con, t)

    # ----------------------------------------------------- engines that cannot read files
    def reader(self) -> Warehouse:
        """Where user files are opened: this warehouse, or, for PostgreSQL (whose server
        cannot see the user's files), an embedded in-memory DuckDB; :meth:`adopt` then
        streams what it read into this warehouse."""
        if self.engine != "postgres":
            return self
        if self._reader is None:
            self._reader = connect("duckdb://")
        return self._reader

    def adopt(self, t: ir.Table, prefix: str = "raw") -> ir.Table:
        """``t`` (a table of :meth:`reader`) as a table of this warehouse."""
        if self.engine != "postgres":
            return t
        return self._copy_in(
            self.temp_name(prefix),
            t.schema().to_pyarrow(),
            t.to_pyarrow_batches(chunk_size=100_000),
        )

    def _copy_in(self, name: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> ir.Table:
        """PostgreSQL: a session-temporary table filled with COPY, one CSV chunk at a time
        (``INSERT`` row by row would take minutes for a million lines)."""
        import pyarrow.csv as pacsv

        self.con.create_table(name, schema=ibis.schema(schema), temp=True)
        cols = ", ".join(f'"{c}"' for c in schema.names)
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        statement = f'COPY "{name}" ({cols}) FROM STDIN WITH (FORMAT csv)'
        with self.con.con.cursor() as cur, cur.copy(statement) as copy:
            for batch in batches:
                if batch.num_rows:
                    sink = pa.BufferOutputStream()
                    pacsv.write_csv(pa.Table.from_batches([batch]), sink, options)
                    copy.write(sink.getvalue().to_pybytes())
        self._gather_statistics(name)
        return self.con.table(name)

    def delete_where(self, name: str, column: str, values: Sequence[Any]) -> bool:
        """Delete the rows of ``name`` whose ``column`` is one of ``values``, in one statement,
        on engines that delete in place (DuckDB, PostgreSQL); False elsewhere (Spark rewrites
        the table in :meth:`replace_where` anyway), or when there is no such table."""
        if self.engine not in _TRANSACTIONAL or not values or not self.has(name):
            return False
        self._writable(name)
        marks = ", ".join("?" for _ in values)
        with self._transaction():
            self.run_sql(f"DELETE FROM {_ident(name)} WHERE {_ident(column)} IN ({marks})", values)
        return True

    def delete_keys(
        self, name: str, keys: ir.Table, key: Sequence[str], *, empty_matches: bool = False
    ) -> None:
        """Delete from ``name`` the rows whose ``key`` columns appear in ``keys``; with
        ``empty_matches``, an empty value matches an empty value (a population cell without a
        period is the same cell again), else it matches nothing (SQL's equality)."""
        self._writable(name)
        if self.engine in _TRANSACTIONAL:
            staged = self.materialize(keys.select(*key).distinct(), "keys")
            other = f'"{staged.get_name()}"'
            cols = ", ".join(f'"{k}"' for k in key)
            if empty_matches:
                same = " AND ".join(f'k."{c}" IS NOT DISTINCT FROM "{name}"."{c}"' for c in key)
                where = f"EXISTS (SELECT 1 FROM {other} AS k WHERE {same})"
            else:
                where = f"({cols}) IN (SELECT {cols} FROM {other})"
            self.con.raw_sql(f'DELETE FROM "{name}" WHERE {where}')
            self.drop(staged.get_name())
            return
        current = self.con.table(name)
        gone = keys.select(*key).distinct()
        on = [current[k].identical_to(gone[k]) for k in key] if empty_matches else list(key)
        self.write(name, current.anti_join(gone, on))

    def delete_batch(self, names: Sequence[str], batch_id: str) -> None:
        """Remove every row a batch wrote (the compensation of engines without transactions)."""
        for name in names:
            if self.has(name):
                t = self.con.table(name)
                if "batch_id" in t.columns:
                    self.write(name, t.filter((t.batch_id != batch_id) | t.batch_id.isnull()))

    # ------------------------------------------------------------- atomicity
    @contextlib.contextmanager
    def batch(self, touched: Sequence[str], batch_id: str) -> Iterator[None]:
        """Make the writes inside the block all-or-nothing.

        DuckDB and PostgreSQL use a real transaction, so even a killed process leaves the
        warehouse as it was. Spark has no transactions: on an error the rows the batch wrote are
        removed again, and :meth:`recover` removes what a killed process left behind.
        """
        if self.engine == "postgres":
            # psycopg's transaction: ibis's own statements inside become savepoints.
            with self.con.con.transaction():
                yield
            return
        if self.engine in _TRANSACTIONAL:
            self.con.raw_sql("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self.con.raw_sql("ROLLBACK")
                raise
            self.con.raw_sql("COMMIT")
            return
        try:
            yield
        except BaseException:
            self.delete_batch(touched, batch_id)
            raise

    def recover(self, names: Sequence[str]) -> int:
        """Remove rows of batches that never committed (only possible without transactions)."""
        if self.engine in _TRANSACTIONAL or not self.has("ingest_batches"):
            return 0
        committed = self.con.table("ingest_batches").select("batch_id")
        removed = 0
        for name in names:
            if not self.has(name):
                continue
            t = self.con.table(name)
            orphans = t.anti_join(committed, "batch_id").count().execute()
            if orphans:
                self.write(name, t.semi_join(committed, "batch_id"))
                removed += int(orphans)
        return removed

    @contextlib.contextmanager
    def file_order(self) -> Iterator[None]:
        """Inside the block, scans keep file order (row numbers then match the file's rows)."""
        if self.engine != "duckdb":
            yield
            return
        self.con.raw_sql("SET preserve_insertion_order = true")
        try:
            yield
        finally:
            self.con.raw_sql("SET preserve_insertion_order = false")

    # ---------------------------------------------------------------- reading
    def read_csv(
        self,
        path: Path | Sequence[Path],
        *,
        delimiter: str,
        rejects: str,
        filename: bool = False,
        max_line_bytes: int = 2 * 1024 * 1024,
    ) -> ir.Table:
        """Read UTF-8 CSV files of one shape with every column as text.

        Malformed lines go to ``rejects``; ``filename`` adds each row's file (several files);
        a line longer than ``max_line_bytes`` stops the read (the caller sets it aside).
        """
        paths = [str(p) for p in ([path] if isinstance(path, Path) else path)]
        if self.engine == "duckdb":
            return self.con.read_csv(
                paths if len(paths) > 1 else paths[0],
                table_name=self.temp_name("csv"),
                all_varchar=True,
                delim=delimiter,
                header=True,
                quote='"',
                escape='"',
                null_padding=False,
                store_rejects=True,
                rejects_table=rejects,
                rejects_scan=f"{rejects}_scan",
                strict_mode=True,
                filename=filename,
                max_line_size=max_line_bytes,
            )
        if self.engine == "pyspark":
            if len(paths) > 1 or filename:
                raise WarehouseError(
                    "Spark reads one CSV file at a time here", "pass the files one by one"
                )
            return self.con.read_csv(
                paths[0],
                table_name=self.temp_name("csv"),
                header=True,
                sep=delimiter,
                inferSchema=False,
                multiLine=True,
                escape='"',
            )
        raise WarehouseError(
            f"reading files on the {self.engine} engine is not supported",
            "ingest into DuckDB or Spark, or load the table in your database directly",
        )

    def csv_rejects(self, rejects: str) -> pd.DataFrame:
        """Malformed lines DuckDB set aside while reading: file (index in the list read),
        line number (counting the header), error type, cause and text, one row per line."""
        columns = ["file_id", "line", "error_type", "error_message", "csv_line"]
        if self.engine != "duckdb":
            return pd.DataFrame(columns=columns)
        df: pd.DataFrame = self.con.raw_sql(
            f'SELECT file_id, line, error_type, error_message, csv_line FROM "{rejects}" '
            "ORDER BY file_id, line"
        ).df()
        for name in (rejects, f"{rejects}_scan"):
            self.con.raw_sql(f'DROP TABLE IF EXISTS "{name}"')
        return df.drop_duplicates(["file_id", "line"])

    def read_parquet(self, path: Path) -> ir.Table:
        if self.engine == "duckdb":
            t: ir.Table = self.con.read_parquet(
                str(path), table_name=self.temp_name("parquet"), file_row_number=True
            )
            return t.rename(_row="file_row_number").mutate(_row=ibis._["_row"] + 1)
        t = self.con.read_parquet(str(path), table_name=self.temp_name("parquet"))
        return t.mutate(_row=ibis.row_number() + 1)

    def read_json(self, path: Path) -> ir.Table:
        if self.engine == "duckdb":
            return self.con.read_json(
                str(path), table_name=self.temp_name("json"), format="newline_delimited"
            )
        return self.con.read_json(str(path), table_name=self.temp_name("json"))

    # ------------------------------------------------------------- change detection
    def marked(self, name: str) -> dict[str, Any] | None:
        """The state a step recorded in the one-row table ``name`` (:meth:`mark`), if any."""
        if not self.has(name):
            return None
        t = self.table(name)
        if "state" not in t.columns:  # written by an older version: nothing to trust
            return None
        rows = t.to_pyarrow().column("state").to_pylist()
        try:
            found = json.loads(rows[0]) if len(rows) == 1 else None
        except (TypeError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def mark(self, name: str, state: dict[str, Any] | None) -> None:
        """Record what a kept table holds (``state``, JSON) in the one-row table ``name``;
        None removes it, so that a step stopped while it rewrites that table leaves nothing
        a later step trusts."""
        if state is None:
            if self.has(name):
                self.drop(name)
            return
        self.write(name, pa.table({"state": [json.dumps(state, sort_keys=True)]}))

    @contextlib.contextmanager
    def reading_only(self, names: Sequence[str]) -> Iterator[None]:
        """Within the block, the tables ``names`` are only read (a pipeline run after its
        ingest: the invoice lines, events and campaign results). A fingerprint of a query over
        them alone is then taken once and remembered until the block ends; any write to them
        through this warehouse inside the block is a programming error and raises."""
        before, memo = self._frozen, self._fingerprints
        self._frozen, self._fingerprints = before | frozenset(names), {}
        try:
            yield
        finally:
            self._frozen, self._fingerprints = before, memo

    def _writable(self, *names: str) -> None:
        hit = sorted(set(names) & self._frozen)
        if hit:
            raise WarehouseError(
                f"{', '.join(hit)} cannot be written now: it is only read during this step",
                "this is a defect in segmentum: please report it",
            )
        self.changed.update(names)

    def fingerprint(self, t: ir.Table, columns: Sequence[str]) -> tuple[int, int]:
        """The row count and an order-free checksum of ``columns`` of ``t``.

        The checksum is the sum of a per-row hash (31 bits of the engine's own row hash), so it
        is additive: the fingerprint of a table after an insert is its old fingerprint plus
        the inserted rows'. Any insert, delete or change of one of the columns changes it,
        except for a hash coincidence (about 1 in 2 billion per change). Costs one scan of the
        columns (0.2 s for 10M invoice lines on DuckDB).
        """
        return self.fingerprints(t, [(None, columns)])[0]

    def fingerprints(
        self,
        base: ir.Table,
        parts: Sequence[tuple[ir.BooleanValue | None, Sequence[str]]],
    ) -> list[tuple[int, int]]:
        """Several fingerprints of ``base`` in one scan: for each part, that of the rows where
        its condition holds (every row for None) over its columns, the same numbers as
        :meth:`fingerprint` of ``base.filter(condition)`` gives, and remembered as it would
        be (a run fingerprints the lines for its plan and for the return links: one scan of
        12M lines, 1.4 s, instead of two)."""
        keyed = [
            (self.con.compile((base if cond is None else base.filter(cond)).select(*cols)), cols)
            for cond, cols in parts
        ]
        memo = bool(self._frozen) and _reads_only_tables(base, self._frozen)
        got = {
            key: self._fingerprints[key] for key, _ in keyed if memo and key in self._fingerprints
        }
        todo = [i for i, (key, _) in enumerate(keyed) if key not in got]
        if len(todo) == 1:  # a filter, not a flag: the engine skips the blocks it rules out
            got[keyed[todo[0]][0]] = self._fingerprint(*keyed[todo[0]])
        elif todo:
            names = list(dict.fromkeys(c for i in todo for c in parts[i][1]))
            flags = {f"_fp{i}": _flag(parts[i][0]) for i in todo}
            inner = self.con.compile(base.select(*names, **flags))
            found = self._fingerprint_rows(inner, [(f"_fp{i}", parts[i][1]) for i in todo])
            got.update((keyed[i][0], f) for i, f in zip(todo, found, strict=True))
        if memo:
            self._fingerprints.update(got)
        return [got[key] for key, _ in keyed]

    def _row_hash(self, columns: Sequence[str]) -> str:
        quote = "`" if self.engine == "pyspark" else '"'
        cols = ", ".join(f"{quote}{c}{quote}" for c in columns)
        if self.engine == "duckdb":
            return f"hash({cols}) >> 33"
        if self.engine == "pyspark":
            return f"CAST(hash({cols}) AS BIGINT)"
        if self.engine == "postgres":
            text = ", ".join(f"COALESCE(\"{c}\"::text, '\\N')" for c in columns)
            return f"hashtextextended(concat_ws('|', {text}), 0) >> 33"
        raise WarehouseError(f"no row hash for the {self.engine} engine")  # pragma: no cover

    def _fingerprint_rows(
        self, inner: str, parts: Sequence[tuple[str, Sequence[str]]]
    ) -> list[tuple[int, int]]:
        """Count and checksum of the rows of ``inner`` where each part's flag column holds."""
        quote = "`" if self.engine == "pyspark" else '"'
        sums = []
        for flag, columns in parts:
            on = f"{quote}{flag}{quote}"
            sums.append(f"SUM(CASE WHEN {on} THEN 1 ELSE 0 END)")
            sums.append(
                f"CAST(COALESCE(SUM(CASE WHEN {on} THEN {self._row_hash(columns)} END), 0)"
                " AS BIGINT)"
            )
        row = self._one_row(f"SELECT {', '.join(sums)} FROM ({inner}) AS _fp")
        return [(int(row[2 * i] or 0), int(row[2 * i + 1])) for i in range(len(parts))]

    def _fingerprint(self, inner: str, columns: Sequence[str]) -> tuple[int, int]:
        row_hash = self._row_hash(columns)
        sql = f"SELECT COUNT(*), CAST(COALESCE(SUM({row_hash}), 0) AS BIGINT) FROM ({inner}) AS _fp"
        row = self._one_row(sql)
        return int(row[0]), int(row[1])

    def _one_row(self, sql: str) -> Sequence[Any]:
        if self.engine == "pyspark":
            row = self.con._session.sql(sql).collect()[0]
        elif self.engine == "duckdb":
            row = self.con.con.execute(sql).fetchone()
        else:
            with self.con.con.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
        assert row is not None
        return tuple(row)

    def close(self) -> None:
        self._file = None  # no longer holds it (see _drop_staging_tables)
        with contextlib.suppress(Exception):
            if self.engine != "pyspark":
                self.con.disconnect()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _postgres_compat() -> None:
    """Teach ibis's PostgreSQL compiler what the other engines do without help.

    PostgreSQL casts a boolean to ``int`` but not to ``bigint``; ibis 12 emits the latter for
    ``flag.cast("int64")`` (used to count rows that pass a check), so go through ``int``.
    """
    from ibis.backends.sql.compilers.postgres import PostgresCompiler

    original = PostgresCompiler.visit_Cast
    if getattr(original, "_segmentum", False):
        return

    def visit_cast(self: Any, op: Any, *, arg: Any, to: Any) -> Any:
        if op.arg.dtype.is_boolean() and to.is_integer():
            arg = self.cast(arg, ibis.dtype("int32"))
        return original(self, op, arg=arg, to=to)

    visit_cast._segmentum = True  # type: ignore[attr-defined]
    PostgresCompiler.visit_Cast = visit_cast

    # Integer division and averages come back as ``numeric`` (Python Decimals, which ibis
    # then fails to turn into the float64 it promised): compute them in double precision.
    divide, mean = PostgresCompiler.visit_Divide, PostgresCompiler.visit_Mean
    double = ibis.dtype("float64")

    def visit_divide(self: Any, op: Any, *, left: Any, right: Any) -> Any:
        return divide(self, op, left=self.cast(left, double), right=self.cast(right, double))

    def visit_mean(self: Any, op: Any, *, arg: Any, where: Any) -> Any:
        if op.arg.dtype.is_boolean():
            arg = self.cast(arg, ibis.dtype("int32"))
        elif not op.arg.dtype.is_numeric():
            return mean(self, op, arg=arg, where=where)
        return self.agg.avg(self.cast(arg, double), where=where)

    PostgresCompiler.visit_Divide = visit_divide
    PostgresCompiler.visit_Mean = visit_mean


def _pyspark_compat() -> None:
    """Teach ibis's PySpark compiler to trim the same characters as the other engines.

    ibis 12 writes ``strip()`` as ``TRIM(' \\t\\n\\r\\v\\f' FROM s)``, but Spark SQL reads
    ``\\v`` and ``\\f`` in a literal as the letters ``v`` and ``f``: every value lost its
    leading and trailing f's and v's ("false" became "alse" and was quarantined as not yes/no,
    "staff" became "sta"). ``lstrip``/``rstrip`` became Spark's ``ltrim``/``rtrim``, which trim only
    spaces. Build the set from character codes instead (Python's ``string.whitespace``).
    """
    import sqlglot.expressions as sge
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    if getattr(PySparkCompiler.visit_Strip, "_segmentum", False):
        return

    def trim(position: str) -> Any:
        def visit(self: Any, op: Any, *, arg: Any) -> Any:
            codes = (sge.convert(ord(c)) for c in " \t\n\r\x0b\x0c")
            chars = self.f.concat(*(sge.Anonymous(this="char", expressions=[n]) for n in codes))
            return sge.Trim(this=arg, expression=chars, position=position)

        visit._segmentum = True  # type: ignore[attr-defined]
        return visit

    PySparkCompiler.visit_Strip = trim("BOTH")
    PySparkCompiler.visit_LStrip = trim("LEADING")
    PySparkCompiler.visit_RStrip = trim("TRAILING")


def _duckdb_path(rest: str) -> str:
    """The file of ``duckdb://REST``: ``/segmentum.duckdb`` is relative to the working folder,
    ``//srv/shop.duckdb`` absolute; ``/tmp/x.duckdb`` is absolute where its folder exists and
    relative where the working folder has it.

    A folder that exists on neither side is about to be created: the path is absolute when
    its first folder is one of the root's (``/tmp``, ``/home``) and not one of the working
    folder's. Read as relative, ``duckdb:///tmp/new/shop.duckdb`` made ``./tmp/new/``.
    """
    if rest.startswith("//"):
        return rest[1:]
    if not rest.startswith("/"):
        return rest
    path, relative = Path(rest), rest[1:]
    if str(path.parent) == "/":
        return relative
    if path.parent.is_dir():
        return rest
    if Path(relative).parent.is_dir():
        return relative
    top = Path(relative).parts[0]
    return rest if Path("/", top).is_dir() and not Path(top).exists() else relative


def spark_folder(url: str | None) -> Path | None:
    """The folder a local Spark warehouse keeps its tables in (``pyspark:///data/wh``), or
    None (another engine, or ``pyspark`` alone: a temporary folder)."""
    if not url or not url.startswith(("pyspark://", "spark://")):
        return None
    rest = url.split("://", 1)[1]
    if rest.startswith("//"):  # pyspark:////data/wh: POSIX would keep the two slashes
        rest = "/" + rest.lstrip("/")
    return Path(rest).absolute() if rest else None


def duckdb_file(url: str | None) -> Path | None:
    """The database file a DuckDB URL opens (None in memory or for other engines)."""
    url = url or DEFAULT_URL
    if url.endswith(".duckdb") and "://" not in url:
        url = f"duckdb:///{url}"
    if not url.startswith("duckdb://"):
        return None
    path = _duckdb_path(url[len("duckdb://") :])
    return Path(path) if path and path != ":memory:" else None


_JAVA_FRAME = re.compile(r"^\s*at [\w$.<>]+\(")
_JAVA_CLASS = re.compile(r"^(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error): ")


def engine_error(exc: BaseException, where: str = "") -> WarehouseError | None:
    """The plain error to show for a failure inside the Spark engine (a query Spark refused,
    a lost executor, a file gone from under a table), or None for any other exception.

    Spark's errors arrive as Python exceptions wrapping a Java one, hundreds of lines long
    with the JVM's stack: keep the line that names the cause, drop the stack.
    """
    module = type(exc).__module__ or ""
    if not module.startswith(("pyspark", "py4j")):
        return None
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # A Py4JJavaError starts with "An error occurred while calling o123.sql." and puts the
    # Java exception on the next line after ": "; the stack frames ("at ...") follow.
    lines = [
        ln.lstrip(": ").strip()
        for ln in lines
        if not _JAVA_FRAME.match(ln) and not ln.startswith(("An error occurred while", "JVM st"))
    ]
    cause = lines[0] if lines else type(exc).__name__
    # "org.apache.spark.SparkException: [FAILED_READ_FILE...] ...": Spark's own error class
    # says it; otherwise keep the exception's short name ("OutOfMemoryError: Java heap space").
    found = _JAVA_CLASS.match(cause)
    if found:
        rest = cause[found.end() :]
        short = found.group(0).rstrip(": ").rsplit(".", 1)[-1]
        cause = rest if rest.startswith("[") or not rest else f"{short}: {rest}"
    if len(cause) > 300:
        cause = cause[:297] + "..."
    return WarehouseError(
        f"{where} failed on Spark: {cause}" if where else f"Spark failed: {cause}",
        "the Spark driver log has the details; run again with --debug for the traceback",
    )


def resource_error(exc: BaseException) -> WarehouseError | None:
    """The plain error to show when the engine ran out of memory or of disk (a machine's
    limits, not a bug), or None for any other exception.

    >>> import duckdb
    >>> e = duckdb.IOException('IO Error: Could not write file "/d/w.duckdb.tmp/x.tmp": '
    ...                        "No space left on device")
    >>> resource_error(e).message
    'the disk is full: could not write "/d/w.duckdb.tmp/x.tmp"'
    """
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    full = "No space left on device" in text or getattr(exc, "errno", None) == errno.ENOSPC
    if full:
        written = re.search(r'Could not write file "([^"]+)"', text)
        where = f': could not write "{written.group(1)}"' if written else f" ({first})"
        return WarehouseError(
            f"the disk is full{where}",
            "free space on that disk, or point the temp_directory setting at a bigger one "
            "(DuckDB spills what does not fit in memory_limit there; by default a folder beside "
            "the warehouse file, <file>.tmp); then run the command again",
        )
    if type(exc).__name__ == "OutOfMemoryException":
        temp = "max_temp_directory_size" in text
        return WarehouseError(
            f"the engine ran out of memory ({first})",
            "raise the max_temp_size setting, or free disk space, so that it can spill more"
            if temp
            else "raise the memory_limit setting, e.g. SEGMENTUM_MEMORY_LIMIT=4GB",
        )
    return None


def busy_error(exc: BaseException, url: str | None = None) -> WarehouseBusyError | None:
    """The plain error to show when ``exc`` means another process holds the DuckDB file."""
    text = str(exc)
    if "Could not set lock on file" not in text and "Conflicting lock" not in text:
        return None
    held = re.search(r"\(PID (\d+)\)", text)
    where = f" {url}" if url else ""
    return WarehouseBusyError(
        f"the warehouse{where} is busy: segmentum serve or another command has it open"
        + (f" (process {held.group(1)})" if held else ""),
        "wait for that command to finish, or stop segmentum serve, then run this again",
    )


def _open_duckdb(path: str, wait: float) -> Any:
    import time

    end = time.monotonic() + wait
    while True:
        try:
            return ibis.duckdb.connect(path)
        except Exception as exc:
            if busy_error(exc) is None or time.monotonic() >= end:
                raise
            time.sleep(0.05)


def _spill_settings(backend: Any) -> None:
    """Where DuckDB spills beyond memory_limit and how much disk it may take (settings
    ``temp_directory`` and ``max_temp_size``; DuckDB's own defaults when empty): left alone, a
    big query may fill 90% of the free disk."""
    from segmentum.config import load_settings

    settings = load_settings()
    if settings.temp_directory:
        folder = settings.temp_directory.replace("'", "''")
        backend.raw_sql(f"SET temp_directory = '{folder}'")
    size = settings.max_temp_size.strip()
    if size:
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", size, re.I):
            backend.disconnect()  # the file's lock goes with it
            raise WarehouseError(
                f"max_temp_size {size!r} is not a size", "write it like 50GB or 500MB"
            )
        backend.raw_sql(f"SET max_temp_directory_size = '{size}'")


# The Spark folders this process holds (its session's embedded metastore stays booted until
# the process ends, so the hold does too).
_SPARK_FOLDERS: dict[str, Any] = {}


def _hold_spark_folder(folder: Path, wait: float, url: str) -> None:
    """Hold a local Spark warehouse's folder for this process, waiting up to ``wait`` seconds
    for another process to let it go. Its Derby metastore admits one process at a time: the
    second one failed deep inside Spark ("Unable to instantiate SessionHiveMetaStoreClient")
    and now hears, like a busy DuckDB file, who holds it and what to do."""
    import fcntl
    import time

    key = str(folder.resolve())
    if key in _SPARK_FOLDERS:
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".segmentum.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held
    end = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= end:
                handle.seek(0)
                holder = handle.read().strip()
                handle.close()
                raise WarehouseBusyError(
                    f"the warehouse {url} is busy: segmentum serve or another command has it "
                    "open" + (f" (process {holder})" if holder.isdigit() else ""),
                    "wait for that command to finish, or stop segmentum serve, then run this again",
                ) from None
            time.sleep(0.1)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _SPARK_FOLDERS[key] = handle


def release_spark_folder(wh: Warehouse) -> bool:
    """Let a local Spark warehouse's folder go: its session stopped, its Derby metastore shut
    down, the folder's lock released, so that another process (the nightly ``segmentum run``)
    may open it. ``wh`` is done with; a later :func:`connect` in this process starts a new
    session (about a second: the JVM stays). False when this process did not hold it."""
    folder = spark_folder(wh.url) if wh.engine == "pyspark" else None
    if folder is None:
        return False
    handle = _SPARK_FOLDERS.pop(str(Path(folder).resolve()), None)
    if handle is None:
        return False
    session = wh.con._session
    jvm = session._jvm
    try:
        session.stop()
        with contextlib.suppress(Exception):  # Derby says it has shut down by raising
            jvm.java.sql.DriverManager.getConnection("jdbc:derby:;shutdown=true")
        jvm.org.apache.derby.jdbc.EmbeddedDriver()  # registered again for the next session
    finally:
        handle.close()  # the lock goes with the file
    _OPENED.discard(wh)
    return True


def _drop_staging_tables(wh: Warehouse, path: str) -> list[str]:
    """Drop the staging tables (:meth:`Warehouse.staging_table`) a killed load left in the
    DuckDB file at ``path``; what was dropped.

    Holding the file's lock, no other process can be loading into it; another warehouse of
    this process on the same file might be, so then nothing is dropped.
    """
    me = str(Path(path).resolve())
    if any(w is not wh and w._file == me for w in list(_OPENED)):
        wh._file = me
        return []
    wh._file = me
    stale = wh.con.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
        "AND database_name = current_database() AND starts_with(table_name, '_seg_')"
    ).fetchall()
    for (name,) in stale:
        wh.drop(name)
    return [name for (name,) in stale]


# Every warehouse this process opened and still holds (the CLI publishes what each changed).
_OPENED: weakref.WeakSet[Warehouse] = weakref.WeakSet()


def opened() -> list[Warehouse]:
    """The warehouses this process has opened and still references."""
    return list(_OPENED)


def connect(
    url: str | None = None,
    *,
    spark_session: Any = None,
    memory_limit: str | None = None,
    lock_wait: float | None = None,
) -> Warehouse:
    """Open the warehouse at ``url``.

    Parameters
    ----------
    url
        ``duckdb:///path/to/file.duckdb`` (default ``duckdb:///segmentum.duckdb``; ``duckdb://``
        alone is in memory), ``pyspark`` for a local Spark session (``pyspark:///dir`` keeps its
        tables in ``dir``), or ``postgres://user:password@host/db``.
    spark_session
        An existing SparkSession to use (a cluster's), instead of starting a local one.
    memory_limit
        DuckDB only: the most memory the engine may use before spilling to disk ("2GB").
    lock_wait
        DuckDB file only: seconds to wait while another process has the file open (the
        server answering a request) before raising :class:`WarehouseBusyError` (default: the
        ``lock_wait_seconds`` setting, 10).

    Examples
    --------
    >>> wh = connect("duckdb://")
    >>> wh.engine
    'duckdb'
    """
    url = url or DEFAULT_URL
    if memory_limit is None or lock_wait is None:
        from segmentum.config import load_settings

        settings = load_settings()
        memory_limit = settings.memory_limit if memory_limit is None else memory_limit
        lock_wait = settings.lock_wait_seconds if lock_wait is None else lock_wait
    if memory_limit and not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit.strip(), re.I):
        raise WarehouseError(
            f"memory_limit {memory_limit!r} is not a size", "write it like 1GB or 512MB"
        )
    try:
        if url.startswith("duckdb://"):
            path = _duckdb_path(url[len("duckdb://") :])
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            backend = _open_duckdb(path or ":memory:", lock_wait)
            # Stored tables need no particular row order; dropping it lets big inserts stream.
            backend.raw_sql("SET preserve_insertion_order = false")
            backend.raw_sql("SET enable_progress_bar = false")
            if memory_limit:
                backend.raw_sql(f"SET memory_limit = '{memory_limit}'")
            _spill_settings(backend)
            wh = Warehouse(backend, url)
            if path and path != ":memory:":
                # Holding the file's lock now, nobody else can be using its spill folder: what
                # a killed process left there (hundreds of MB) goes.
                from segmentum.maintenance import clean_stray_files

                wh.cleaned_on_open = clean_stray_files(Path(path))
                wh.cleaned_on_open += _drop_staging_tables(wh, path)
            return wh
        if url.endswith(".duckdb"):
            return connect(f"duckdb:///{url}")
        if url.startswith(("pyspark", "spark")) or spark_session is not None:
            folder = spark_folder(url)
            if folder is not None and spark_session is None:
                _hold_spark_folder(Path(folder), lock_wait, url)
            session = spark_session or _local_spark_session(str(folder) if folder else None)
            _pyspark_compat()
            return Warehouse(ibis.pyspark.connect(session), url)
        if url.startswith(("postgres://", "postgresql://")):
            _postgres_compat()
            try:
                backend = ibis.connect(url)
            except Exception as exc:
                raise _postgres_error(url, exc) from exc
            # The warehouse runs analytic statements over whole tables. PostgreSQL estimates
            # correlated filters (a return line: negative quantity and an original invoice)
            # at a few rows, then plans nested loops that scan a table once per row (linking
            # the returns of 1,500 customers took 4.7 s instead of 0.24 s). Hash and merge
            # joins are then preferred; a join with no alternative still loops. (Ibis's
            # connection autocommits: a later rollback does not undo the setting.)
            backend.raw_sql("SET enable_nestloop = off").close()
            return Warehouse(backend, url)
    except WarehouseError:
        raise
    except Exception as exc:
        busy = busy_error(exc, url)
        if busy is not None:
            raise busy from exc
        raise WarehouseError(
            f"cannot open the warehouse {without_password(url)}: {exc}".splitlines()[0],
            "check the URL and that no other process holds the DuckDB file open",
        ) from exc
    raise WarehouseError(
        f"unknown warehouse URL {without_password(url)!r}",
        "use duckdb:///path.duckdb, pyspark, or postgres://user:password@host/db",
    )


def without_password(url: str) -> str:
    """``url`` as it may be shown or logged: its password, if any, replaced by ``***``.

    >>> without_password("postgresql://ana:s3cret@db.example.com:5432/shop")
    'postgresql://ana:***@db.example.com:5432/shop'
    """
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not (at and ":" in userinfo):
        return url
    netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


def _postgres_error(url: str, exc: BaseException) -> WarehouseError:
    """One line for a PostgreSQL warehouse that cannot be used: the server cannot be reached,
    or it refused the login (never the password, never a hint about DuckDB files)."""
    shown = without_password(url)
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***")
    cause = text.removeprefix("connection failed: ")
    if re.search(r"password|authentication|role \S+ does not exist", cause):
        return WarehouseError(
            f"the PostgreSQL warehouse {shown} refused the login: {cause}",
            "check the user name and password in the warehouse URL",
        )
    return WarehouseError(
        f"cannot reach the PostgreSQL warehouse {shown}: {cause}",
        "check the host, port and database in the warehouse URL, and that PostgreSQL is "
        "running there and accepts connections from this machine",
    )


def _spark_batches(con: Any, t: ir.Table) -> pa.RecordBatchReader:
    """``t`` from a PySpark backend ``con`` as a stream of Arrow batches (see
    :meth:`Warehouse.batches`): each partition is serialised to Arrow IPC on its executor
    (``mapInArrow``) and fetched on its own (``toLocalIterator``)."""
    schema = t.schema().to_pyarrow()
    frame = con._session.sql(con.compile(t))

    def to_ipc(parts: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa  # on the executor

        for part in parts:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, part.schema) as out:
                out.write_batch(part)
            yield pa.record_batch([pa.array([sink.getvalue().to_pybytes()], pa.binary())], ["ipc"])

    def fetched() -> Iterator[pa.RecordBatch]:
        for row in frame.mapInArrow(to_ipc, "ipc binary").toLocalIterator():
            for part in pa.ipc.open_stream(row.ipc):
                if part.num_rows:
                    yield _as_ibis_gives(part, schema)

    return pa.RecordBatchReader.from_batches(schema, fetched())


def _as_ibis_gives(part: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch of Spark's Arrow as Ibis's own conversion gives it: the expression's types
    (timestamps in the session's zone, 32-bit integers...) and a float NaN as a null (Ibis
    goes through pandas, where the two are one)."""
    import pyarrow.compute as pc

    table = pa.Table.from_batches([part]).cast(schema)
    for i, field in enumerate(schema):
        if pa.types.is_floating(field.type):
            col = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_nan(col), None, col))
    return table.combine_chunks().to_batches()[0]
