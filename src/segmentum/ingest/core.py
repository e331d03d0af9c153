"""Load user files into the canonical tables: map, parse, validate, quarantine, write atomically.

Every row read ends up in exactly one place: the target table or the ``quarantine`` table with
its reasons, so ``read = accepted + quarantined`` holds for every batch. All parsing and checking
runs in the engine as one Ibis expression per file; only counts and small samples come back.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import re
import uuid
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError, InputError
from segmentum.features import rollup
from segmentum.ingest import parsers, readers, returns
from segmentum.ingest.mapping import (
    auto_map,
    load_mapping_file,
    looks_like_customer,
    missing_required,
)
from segmentum.progress import Progress, Silent
from segmentum.schema import (
    INGEST_BATCHES,
    INGESTIBLE,
    QUARANTINE,
    TRANSACTIONS,
    Column,
    Table,
)
from segmentum.warehouse import Warehouse, connect

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# The column that says when a row happened, per table: checked against a plausible range.
_EVENT_TIME = {
    "transactions": "timestamp",
    "events": "timestamp",
    "campaign_results": "sent_at",
    "responses": "timestamp",
}
# Survey scores and the range each must fall in (inclusive), per canonical column.
_SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "rating": (0, 5)}
# Columns holding money, per table: their signs tell the currency.
_MONEY = {"transactions": ("amount", "unit_price", "discount")}
# Fewer buyers than this share matching a customer record is almost always an id format problem.
_MIN_ID_MATCH = 0.5
# A share of exact duplicates above this usually means the export left out a column.
_MANY_DUPLICATES = 0.1
# Tables whose rows describe an entity: a newer row for the same key replaces the stored one.
_UPSERT = {"customers", "products", "prospects", "campaign_results"}
#: Tables of facts without a key: a row equal in every column to a stored one is the same
#: fact exported again (an export that overlaps an earlier one), not a second fact.
_APPEND_ONLY = {"events", "responses", "suppressions"}
#: The counts of a population cell, not cells of their own: a later file's row for the same
#: cell (every other column equal, empty or not) replaces the stored one.
_POPULATION_MEASURES = {"population", "market_size", "growth"}


def _replaced_by(spec: Table, accepted: ir.Table) -> list[str]:
    """The columns whose values, when already stored, make a new row replace the stored one:
    the key of customers, products, prospects and campaign results; the cell of a population
    count (a corrected census replaces the numbers it corrects; rows of one cell in one file,
    such as one per sex, are summed as before). Empty for the tables that only append."""
    if spec.name in _UPSERT:
        return list(spec.key)
    if spec.name == "population":
        return [
            c.name
            for c in spec.columns
            if c.name in accepted.columns and c.name not in _POPULATION_MEASURES
        ]
    return []


@dataclass
class IngestReport:
    """What happened to one file (or sheet): counts that add up, and why rows were rejected."""

    table: str
    file: str
    sheet: str | None = None
    batch_id: str | None = None
    fmt: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    rows_read: int = 0
    accepted: int = 0
    quarantined: int = 0
    anonymous: int = 0
    duplicates: int = 0
    already_loaded: int = 0
    updated: int = 0
    return_lines: int = 0  # return lines of identified customers
    returns_linked: int = 0  # of which linked to the purchase they undo
    skipped: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    #: The file's columns that define an "exact duplicate" (all of them, always).
    duplicate_columns: list[str] = field(default_factory=list)
    #: Zone assumed for times written without an offset, and what happened to those with one.
    time_zone: str | None = None
    #: Currency of the amounts (ISO code), from a currency column, signs in the amounts or the
    #: ``currency`` setting; None when nothing says.
    currency: str | None = None
    #: Buyers without a customer record and customers without a purchase, after this batch.
    id_match: dict[str, int] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    #: The conventions and warnings in Spanish (keys in Spanish too), for ``--lang es``.
    conventions_es: dict[str, str] = field(default_factory=dict)
    warnings_es: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.accepted + self.quarantined

    def warn(self, en: str, es: str) -> None:
        """A warning for the report, in English and Spanish."""
        self.warnings.append(en)
        self.warnings_es.append(es)

    def convention(self, key: str, en: str, key_es: str, es: str) -> None:
        """How something in the file was read, in English and Spanish."""
        self.conventions[key] = en
        self.conventions_es[key_es] = es

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "balanced": self.balanced
        }


@dataclass(frozen=True)
class _Options:
    """Per-call choices that change what a file must hold."""

    anonymous: bool = False  # sales without a customer id are expected
    no_amount: bool = False  # a log of purchases without amounts
    load_day: _dt.date | None = None  # None: today


@dataclass
class _Check:
    """One thing that can be wrong with a row: where, why, and the offending text."""

    column: str
    bad: ir.BooleanValue
    message: str
    # The offending value, in any type: written as text only for the rows that fail (a cast
    # of every number and date to text cost more than the check).
    value: ir.Value


def _as_written(checks: list[_Check], column: str, parsed: ir.Value) -> ir.Value:
    """``column``'s value as the file wrote it, for a reason's example: the text its parse
    check keeps (the first check of the column), else ``parsed``."""
    return next((c.value for c in checks if c.column == column), parsed)


@dataclass
class _Plan:
    """The parsed columns and the checks of one file, ready to be evaluated together."""

    values: dict[str, ir.Value]
    checks: list[_Check]
    typed: dict[str, ir.BooleanValue]  # per-column "unreadable" flags, for whole-column errors


# ------------------------------------------------------------------------------- helpers
def _row_key(t: ir.Table) -> list[str]:
    """The columns that name a row of the source: its number, and its file when several
    files are read together."""
    return ["_row", *(["_file"] if "_file" in t.columns else [])]


def _own_file(t: ir.Table) -> list[ir.Value]:
    """Files read together (``_file``): checks that compare rows stay within each file."""
    return [t._file] if "_file" in t.columns else []


def _as_text(v: ir.Value) -> ir.StringValue:
    return v if v.type().is_string() else v.cast("string")


def _zone_offsets(tz: str, start: _dt.date, end: _dt.date) -> pa.Table:
    """Minutes to add to UTC to get the time zone ``tz``, per UTC date: ``_zone_min`` from
    the start of the day, and on a day the clocks change, ``_zone_min_after`` from the
    instant ``_switch_at`` (UTC) on, so times around the change land on the right hour."""
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {tz!r}", "use an IANA name such as Europe/Madrid or UTC"
        ) from exc

    def offset(at: _dt.datetime) -> int:
        delta = at.astimezone(zone).utcoffset() or _dt.timedelta(0)
        return int(delta.total_seconds() // 60)

    days = (end - start).days + 1
    dates = [start + _dt.timedelta(days=i) for i in range(max(days, 0))]
    before, after, switch = [], [], []
    for d in dates:
        midnight = _dt.datetime(d.year, d.month, d.day, tzinfo=_dt.UTC)
        first, last = offset(midnight), offset(midnight + _dt.timedelta(minutes=1439))
        at = None
        if first != last:  # the first minute of the day with the new offset
            lo, hi = 0, 1439
            while lo < hi:
                mid = (lo + hi) // 2
                if offset(midnight + _dt.timedelta(minutes=mid)) == last:
                    hi = mid
                else:
                    lo = mid + 1
            at = (midnight + _dt.timedelta(minutes=lo)).replace(tzinfo=None)
        before.append(first)
        after.append(last)
        switch.append(at)
    return pa.table(
        {
            "_utc_date": pa.array(dates, pa.date32()),
            "_zone_min": pa.array(before, pa.int64()),
            "_zone_min_after": pa.array(after, pa.int64()),
            "_switch_at": pa.array(switch, pa.timestamp("us")),
        }
    )


def _offset_columns(g: ir.Table, v: str, p: str) -> ir.Table:
    """``g`` with, for the text column ``v``, its trimmed text (``{p}t``), the UTC offset it
    holds (``{p}off``), whether it holds one (``{p}has``) and whether that is UTC (``{p}utc``),
    and its first two numbers when it is written ``nn/nn/yyyy`` (``{p}a``, ``{p}b``).

    Each step is a subquery of its own (``view``): merged into one projection, every use of a
    column repeated the expressions it came from, and a date column's query was 45 KB of SQL
    (Spark took seconds to analyse it).
    """
    g = g.mutate(**{f"{p}t": parsers.strip(g[v])}).view()
    text = g[f"{p}t"]
    # An offset follows a time (h:mm): Z at the end, or a sign after the first colon. Other
    # values skip the regular expressions.
    after = text.substr(text.find(":"))
    maybe = text.contains(":") & (text.endswith("Z") | after.contains("+") | after.contains("-"))
    off = ibis.ifelse(maybe, text.re_extract(parsers._OFFSET, 1), ibis.null("string"))
    g = g.mutate(**{f"{p}off": off}).view()
    off = g[f"{p}off"]
    g = g.mutate(**{f"{p}has": (off.notnull() & (off != "")).fill_null(False)}).view()
    has = g[f"{p}has"]
    utc = has & g[f"{p}off"].re_search(r"^(Z|[+-]00:?00)$").fill_null(False)
    a, b = parsers.date_parts(g[f"{p}t"])
    return g.mutate(**{f"{p}utc": utc, f"{p}a": a, f"{p}b": b}).view()


def _evidence(
    g: ir.Table,
    name: str,
    v: str,
    p: str,
    n: ir.IntegerColumn | None,
    number: bool,
    money: bool,
) -> dict[str, ir.Scalar]:
    """The aggregates that decide the conventions of column ``name`` (text ``v`` of ``g``; a
    date's columns from :func:`_offset_columns` with prefix ``p``), each row counting ``n``
    times (once without it)."""
    if number:
        comma, dot = parsers.decimal_evidence(g[v], n)
        aggs: dict[str, ir.Scalar] = {f"{name}__comma": comma, f"{name}__dot": dot}
        if money:
            for code, k in parsers.currency_evidence(g[v], n).items():
                aggs[f"{name}__cur__{code}"] = k
        return aggs
    has, utc, off = g[f"{p}has"], g[f"{p}utc"], g[f"{p}off"]
    parts = (g[f"{p}a"], g[f"{p}b"])
    weight = n if n is not None else ibis.literal(1)
    aggs = {f"{name}__{k}": e for k, e in parsers.date_evidence(g[f"{p}t"], n, parts).items()}
    aggs[f"{name}__utc"] = ibis.ifelse(utc, weight, 0).sum().fill_null(0)
    aggs[f"{name}__local"] = ibis.ifelse(has & ~utc, weight, 0).sum().fill_null(0)
    aggs[f"{name}__off_lo"] = off.min(where=has & ~utc)
    aggs[f"{name}__off_hi"] = off.max(where=has & ~utc)
    return aggs


class _FileIngest:
    """The work for one source: decide conventions, build the plan, stage, check, write."""

    def __init__(
        self,
        wh: Warehouse,
        spec: Table,
        raw: readers.RawSource,
        mapping: dict[str, str],
        settings: Settings,
        report: IngestReport,
        opts: _Options | None = None,
    ) -> None:
        self.wh, self.spec, self.raw, self.mapping = wh, spec, raw, mapping
        self.settings, self.report = settings, report
        self.opts = opts or _Options()
        self.currency: str | None = None
        self.t = raw.table
        self._conventions: tuple[dict[str, str], dict[str, str], bool] = ({}, {}, False)
        self._plan = _Plan({}, [], {})
        self._offsets: dict[str, ir.IntegerValue] = {}
        self._clean: dict[str, str] = {}  # source column -> its cleaned-text column
        #: The zone a column's UTC times are moved to, when not the ``timezone`` setting:
        #: a Parquet column stored with its own zone (``timestamp[us, tz=Europe/Madrid]``).
        self._zones: dict[str, str] = {}
        #: Lines without a line column numbered apart (``_row``, ``line``; a temporary
        #: table) when the parse is not written down: see :meth:`_number_lines`.
        self.defer_numbers = False
        self.line_numbers: ir.Table | None = None
        #: The parse of :meth:`staged` when the table written from it holds the values and
        #: ``_reasons`` only (a first load, see :func:`_load`): the checks' other columns are
        #: computed again from the file for the few rows that need them.
        self.parse: ir.Table | None = None

    # ---------------------------------------------------------------- conventions
    def decide_conventions(self) -> tuple[dict[str, str], dict[str, str], bool]:
        """Decimal separator per number column, date order per date column, any UTC offsets.

        The evidence is read once per distinct value of a column, weighted by how many rows
        hold it: quantities and prices repeat, and the lines of an invoice share its time
        (a fraction of the time of reading every row).
        """
        number_cols, date_cols = [], []
        for name, src in self.mapping.items():
            kind = self.spec.column(name).kind
            if self.t[src].type().is_string():
                if kind in ("number", "integer"):
                    number_cols.append(name)
                elif kind in ("date", "timestamp"):
                    date_cols.append(name)
        row: dict[str, Any] = {}
        money = _MONEY.get(self.spec.name, ())
        if self.wh.engine == "duckdb":
            # Each distinct value read once, weighted by its rows: a query a column.
            for name in [*number_cols, *date_cols]:
                t = self.t
                g = t.group_by(_v=t[self.mapping[name]]).aggregate(_n=t.count())
                if name in date_cols:
                    g = _offset_columns(g, "_v", "_")
                aggs = _evidence(g, name, "_v", "_", g._n, name in number_cols, name in money)
                row.update(g.aggregate(**aggs).to_pyarrow().to_pylist()[0])
        elif number_cols or date_cols:
            # Other engines (Spark) run one aggregate over the rows for every column at once:
            # each query there is a job or more, about a second each however small the file
            # (12 to 15 jobs for the demo's files before).
            rows = self.t
            prefix = {c: f"_e{i}_" for i, c in enumerate(date_cols)}
            for name in date_cols:
                rows = _offset_columns(rows, self.mapping[name], prefix[name])
            aggs = {}
            for name in [*number_cols, *date_cols]:
                src, p = self.mapping[name], prefix.get(name, "")
                aggs.update(_evidence(rows, name, src, p, None, name in number_cols, name in money))
            row.update(rows.aggregate(**aggs).to_pyarrow().to_pylist()[0])
        if self.spec.name in _MONEY:
            self._decide_currency(row)

        decimals: dict[str, str] = {}
        # Said for the columns where it decided something: a column of whole numbers has no
        # decimal separator to read ("line: decimal ','" only puzzled).
        said = set(number_cols)
        if self.settings.decimal != "auto":
            decimals = {c: self.settings.decimal for c in number_cols}
        else:
            said = {c for c in number_cols if int(row[f"{c}__comma"]) or int(row[f"{c}__dot"])}
            total_comma = sum(int(row[f"{c}__comma"]) for c in number_cols)
            total_dot = sum(int(row[f"{c}__dot"]) for c in number_cols)
            file_default = parsers.decide_decimal(total_comma, total_dot, ".")
            for c in number_cols:
                comma, dot = int(row[f"{c}__comma"]), int(row[f"{c}__dot"])
                decimals[c] = parsers.decide_decimal(comma, dot, file_default)
                if comma and dot:
                    self.report.warn(
                        f"column '{self.mapping[c]}' mixes decimal conventions ({dot} values read "
                        f"with '.', {comma} with ','); reading '{decimals[c]}' as the decimal "
                        "separator, the others are quarantined (set --decimal to choose)",
                        f"la columna '{self.mapping[c]}' mezcla separadores decimales ({dot} "
                        f"valores leídos con '.', {comma} con ','); se lee '{decimals[c]}' como "
                        "separador decimal y los demás van a cuarentena (usa --decimal para "
                        "elegir)",
                    )
        for c, d in decimals.items():
            if c in said:
                # The Spanish summary names the file's own columns, as its warnings do.
                self.report.convention(
                    c, f"decimal '{d}'", self.mapping[c], f"separador decimal '{d}'"
                )

        orders: dict[str, str] = {}
        any_utc = False
        tz = self.settings.timezone
        if any(self.spec.column(n).kind == "timestamp" for n in self.mapping):
            self.report.time_zone = tz
        for c, src in self.mapping.items():
            zone = self.raw.zones.get(src)
            if zone is not None and self.spec.column(c).kind == "timestamp":
                # Instants in UTC, as a Parquet column with a time zone holds them: the same
                # rule as offsets written in text (UTC to the business zone, any other zone
                # kept at the local time there).
                any_utc = True
                self.report.time_zone = tz
                self.report.convention(
                    f"{c} time zone",
                    _stored_zone_note(src, zone, tz),
                    f"zona horaria de {src}",
                    _stored_zone_note(src, zone, tz, "es"),
                )
        for c in date_cols:
            n_utc, n_local = int(row[f"{c}__utc"]), int(row[f"{c}__local"])
            any_utc |= n_utc > 0
            if self.spec.column(c).kind == "timestamp":
                lo, hi = row[f"{c}__off_lo"], row[f"{c}__off_hi"]
                self.report.convention(
                    f"{c} time zone",
                    _zone_note(tz, n_local, n_utc, lo, hi),
                    f"zona horaria de {self.mapping[c]}",
                    _zone_note(tz, n_local, n_utc, lo, hi, "es"),
                )
            dayf, monthf = int(row[f"{c}__day_first"]), int(row[f"{c}__month_first"])
            amb = int(row[f"{c}__ambiguous"])
            if self.settings.date_order != "auto":
                orders[c] = self.settings.date_order
                label = "set"
            elif dayf and monthf:
                raise InputError(
                    f"{self.raw.file}: column '{self.mapping[c]}' mixes day-first and "
                    f"month-first dates (e.g. '{row[f'{c}__example_day_first']}' and "
                    f"'{row[f'{c}__example_month_first']}')",
                    "choose one with --date-order dmy or --date-order mdy; values that do not "
                    "fit are quarantined",
                )
            elif dayf:
                orders[c], label = "dmy", "detected"
            elif monthf:
                orders[c], label = "mdy", "detected"
            else:
                orders[c] = self.settings.ambiguous_date_order
                label = "assumed"
                if amb:
                    self.report.warn(
                        f"column '{self.mapping[c]}': all {amb} dates like 03/04/2024 read both "
                        f"ways; assumed {'day' if orders[c] == 'dmy' else 'month'} first "
                        "(override with --date-order)",
                        f"columna '{self.mapping[c]}': las {amb} fechas como 03/04/2024 se leen "
                        "de las dos maneras; se supuso "
                        f"{'el día' if orders[c] == 'dmy' else 'el mes'} primero (cámbialo con "
                        "--date-order)",
                    )
            if amb or dayf or monthf:
                fmt = "dd/mm/yyyy" if orders[c] == "dmy" else "mm/dd/yyyy"
                fmt_es = "dd/mm/aaaa" if orders[c] == "dmy" else "mm/dd/aaaa"
                label_es = _LABELS_ES.get(label, label)
                self.report.convention(
                    c, f"dates {fmt} ({label})", self.mapping[c], f"fechas {fmt_es} ({label_es})"
                )
        return decimals, orders, any_utc

    # ----------------------------------------------------------------------- plan
    def build_plan(self, decimals: dict[str, str], orders: dict[str, str]) -> _Plan:
        values: dict[str, ir.Value] = {}
        checks: list[_Check] = []
        typed: dict[str, ir.BooleanValue] = {}
        for col in self.spec.columns:
            src = self.mapping.get(col.name)
            if src is None:
                values[col.name] = ibis.null(col.dtype)
                continue
            value, bad, message = self._parse(
                col, self.t[self._clean.get(src, src)], decimals, orders
            )
            values[col.name] = value
            if bad is not None:
                text = self.t[src]
                checks.append(_Check(col.name, bad, message, text))
                if col.kind in ("number", "integer", "date", "timestamp", "bool"):
                    typed[col.name] = bad
        return _Plan(values, checks, typed)

    def _parse(
        self, col: Column, v: ir.Value, decimals: dict[str, str], orders: dict[str, str]
    ) -> tuple[ir.Value, ir.BooleanValue | None, str]:
        kind, dtype = col.kind, v.type()
        if kind in ("number", "integer"):
            if dtype.is_numeric():
                num: ir.Value = v.cast("float64")
                bad: ir.BooleanValue = ibis.literal(False)
            else:
                num, bad = parsers.parse_number(_as_text(v), decimals.get(col.name, "."))
            if kind == "integer":
                frac = num.notnull() & (num != num.floor())
                return (
                    ibis.ifelse(frac, ibis.null("int64"), num.round().cast("int64")),
                    bad | frac.fill_null(False),
                    "is not a whole number",
                )
            return num, bad, "is not a number"
        if kind in ("date", "timestamp"):
            if dtype.is_timestamp() or dtype.is_date():
                # A zone-aware column reads as UTC wall-clock time (the engine's session zone).
                ts: ir.Value = v.cast("timestamp")
                bad = ibis.literal(False)
                zone = self.raw.zones.get(v.get_name()) if dtype.is_timestamp() else None
                if zone is not None and kind == "timestamp":
                    self._offsets[col.name] = ibis.literal(0, "int64")
                    if not _is_utc(zone):
                        self._zones[col.name] = zone
            else:
                parts = {k: self.t[f"_p__{col.name}__{k}"] for k in parsers.PARTS}
                ts, bad = parsers.assemble_timestamp(parts, self.t[f"_f__{col.name}"])
                self._offsets[col.name] = parts["offset"]
            if kind == "date":
                return ts.date(), bad, "is not a date"
            return ts, bad, "is not a date/time"
        if kind == "bool":
            if dtype.is_boolean():
                return v, ibis.literal(False), ""
            if dtype.is_numeric():
                return v != 0, ibis.literal(False), ""
            return (*parsers.parse_bool(_as_text(v)), "is not yes/no")
        if kind == "id":
            # 17850, "17850.0" and a float column holding 17850 are one customer.
            return parsers.normalise_id(v), None, ""
        text = parsers.blank_to_null(_as_text(v))
        if kind == "email":
            e = text.lower()
            return e, e.notnull() & ~e.re_search(_EMAIL), "is not an email address"
        if kind == "phone":
            digits = text.re_replace(r"\D", "").length()
            return text, text.notnull() & ~digits.between(6, 15), "is not a phone number"
        if kind == "gender":
            return parsers.normalise_gender(text), None, ""
        if kind == "tags":
            return parsers.normalise_tags(text), None, ""
        if kind == "category" and col.name in ("sales_channel", "channel"):
            return parsers.normalise_channel(text), None, ""
        if kind == "category" and col.name == "device":
            return parsers.normalise_device(text), None, ""
        return text, None, ""

    # ------------------------------------------------------------ table rules
    def table_rules(self, values: dict[str, ir.Value], checks: list[_Check], t: ir.Table) -> None:
        """Rules that involve several columns or derive missing ones, per table."""
        name, m = self.spec.name, self.mapping
        empty = ibis.literal("")

        def required(col: str, message: str = "is missing") -> None:
            if col in m:
                checks.append(_Check(col, values[col].isnull(), message, empty))

        when = _EVENT_TIME.get(name)
        if when is not None and when in m:
            self._date_range_checks(values[when], when, checks)
        if "currency" in values:
            label = ibis.literal(self.currency, "string")
            given = (
                parsers.normalise_currency(values["currency"], self.currency)
                if "currency" in m
                else label
            )
            values["currency"] = given.fill_null(label)
        if name == "transactions":
            required("timestamp")
            qty, price, amount = values["quantity"], values["unit_price"], values["amount"]
            disc = values["discount"].fill_null(0)
            sign = ibis.ifelse(amount < 0, -1.0, 1.0)
            qty = qty.fill_null(sign) if "quantity" in m else sign
            is_return = (qty < 0) | (amount < 0).fill_null(False)
            if "line_type" in m:  # a type column saying devolución / abono / credit note
                is_return = is_return | returns.says_return(values["line_type"])
            qty = ibis.ifelse(is_return, -qty.abs(), qty)
            if "amount" in m:
                amount = ibis.ifelse(is_return, -amount.abs(), amount)
                if "unit_price" not in m:
                    price = ibis.ifelse(qty != 0, (amount + disc) / qty, ibis.null("float64"))
                checks.append(_Check("amount", amount.isnull(), "is missing", empty))
            elif not self.opts.no_amount:
                amount = ibis.ifelse(is_return, -1, 1) * (qty.abs() * price - disc)
                checks.append(_Check("unit_price", price.isnull(), "is missing", empty))
            checks.append(
                _Check(
                    "unit_price",
                    (price < 0).fill_null(False),
                    "is negative (an adjustment such as bad debt, not a sale)",
                    price,
                )
            )
            checks.append(_Check("quantity", (qty == 0).fill_null(False), "is zero", qty))
            values["quantity"], values["unit_price"], values["amount"] = qty, price, amount
            values["discount"] = values["discount"].fill_null(0.0)
            cid = values["customer_id"]
            if "invoice_id" in m:
                required("invoice_id")
            else:
                day = values["timestamp"].date().cast("string")
                values["invoice_id"] = ibis.ifelse(
                    cid.isnull(),
                    ibis.literal("anon-") + t._row.cast("string"),
                    cid + ibis.literal("|") + day.fill_null("?"),
                )
            if "line" in m:
                required("line")
        elif name == "customers":
            required("customer_id")
            if "age" in m:
                age = values["age"]
                checks.append(
                    _Check(
                        "age",
                        (~age.between(0, 120)).fill_null(False),
                        "is not between 0 and 120",
                        _as_written(checks, "age", age),
                    )
                )
            if "birth_date" in m:
                bd = values["birth_date"]
                checks.append(
                    _Check(
                        "birth_date",
                        (bd > ibis.today()).fill_null(False),
                        "is in the future",
                        bd,
                    )
                )
        else:
            for group in self.spec.required:
                if len(group) == 1:
                    required(group[0])
            if name == "events":
                present = [values[c] for c in ("customer_id", "anonymous_id")]
                checks.append(
                    _Check(
                        "customer_id",
                        present[0].isnull() & present[1].isnull(),
                        "is missing (and so is anonymous_id)",
                        empty,
                    )
                )
            if name == "responses":
                self._response_rules(values, checks)
            if name == "population":
                # A negative count or market size is a typo or a net change, never a size.
                for col in ("population", "market_size"):
                    if col in m:
                        v = values[col]
                        written = _as_written(checks, col, v)
                        checks.append(_Check(col, (v < 0).fill_null(False), "is negative", written))
            if name == "campaign_results":
                g = values["group"].lower()
                g = ibis.cases(
                    (
                        parsers.one_of(g, ["treatment", "tratamiento", "test", "target"]),
                        "treatment",
                    ),
                    (parsers.one_of(g, ["control", "holdout", "grupo control"]), "control"),
                    else_=g,
                )
                values["group"] = g
                checks.append(
                    _Check(
                        "group",
                        ~parsers.one_of(g, ["treatment", "control"]),
                        "is not treatment or control",
                        g,
                    )
                )

    def _response_rules(self, values: dict[str, ir.Value], checks: list[_Check]) -> None:
        """Scores outside their scale are typing mistakes (an 11 for NPS, a 0 for CSAT), and
        an answer with no score, comment or option says nothing."""
        for col, (lo, hi) in _SCORE_RANGES.items():
            if col in self.mapping:
                v = values[col]
                checks.append(
                    _Check(
                        col,
                        (~v.between(lo, hi)).fill_null(False),
                        f"is not between {lo} and {hi}",
                        _as_written(checks, col, v),  # '6', not the parsed 6.0
                    )
                )
        said = [values[c].notnull() for c in ("nps", "csat", "ces", "rating", "answer")]
        said.append(values["comment"].notnull() & (values["comment"].strip() != ""))
        anything = said[0]
        for s in said[1:]:
            anything = anything | s
        first = next(
            (c for c in ("nps", "csat", "ces", "rating", "comment", "answer") if c in self.mapping),
            "nps",
        )
        checks.append(
            _Check(
                first,
                ~anything.fill_null(False),
                "is empty, and so are the other scores, the comment and the answer",
                ibis.literal(""),
            )
        )

    def _decide_currency(self, row: Mapping[str, Any]) -> None:
        """The currency of the file's amounts: a currency column, else the signs written in
        the amounts or their headers (``12,50 €``, ``Total (£)``), else the setting."""
        setting = self.settings.currency.upper()
        if "currency" in self.mapping:
            src = self.mapping["currency"]
            self.currency = None if setting == "AUTO" else setting
            code = parsers.normalise_currency(_as_text(self.t[src]), self.currency)
            top = (
                self.t.select(_c=code)
                .group_by("_c")
                .aggregate(_n=ibis._.count())
                .order_by(ibis.desc("_n"))
                .limit(3)
                .to_pyarrow()
                .to_pylist()
            )
            codes = [str(r["_c"]) for r in top if r["_c"] is not None]
            self.report.currency = codes[0] if codes else self.currency
            self.report.convention(
                "currency",
                f"{', '.join(codes) or 'none given'} (from column '{src}')",
                "moneda",
                f"{', '.join(codes) or 'no indicada'} (de la columna '{src}')",
            )
            if len(codes) > 1:
                self.report.warn(
                    f"column '{src}' holds several currencies ({', '.join(codes)}): amounts in "
                    "different currencies are added together in summaries; convert them first",
                    f"la columna '{src}' contiene varias monedas ({', '.join(codes)}): los "
                    "importes en monedas distintas se suman juntos en los resúmenes; conviértelos "
                    "antes",
                )
            return
        found: dict[str, list[str]] = {}
        found_es: dict[str, list[str]] = {}
        for key, n in row.items():
            if "__cur__" in key and n:
                name, code = key.split("__cur__")
                found.setdefault(code, []).append(f"signs in '{self.mapping[name]}'")
                found_es.setdefault(code, []).append(f"los signos de '{self.mapping[name]}'")
        for name in _MONEY[self.spec.name]:
            if name in self.mapping:
                for code in parsers.currency_in_header(self.mapping[name]):
                    found.setdefault(code, []).append(f"header '{self.mapping[name]}'")
                    found_es.setdefault(code, []).append(f"el encabezado '{self.mapping[name]}'")
        if "USD" in found:
            found.pop("$", None)
            found_es.pop("$", None)
        if "$" in found:
            # "$" is also the peso sign: the setting decides which dollar or peso it is.
            code = setting if setting in parsers.DOLLAR_CODES else "USD"
            found.setdefault(code, []).extend(found.pop("$"))
            found_es.setdefault(code, []).extend(found_es.pop("$"))
            if code == "USD":
                self.report.warn(
                    "'$' in the amounts read as US dollars; set currency (e.g. MXN, COP, ARS, "
                    "CLP) if they are pesos",
                    "'$' en los importes se lee como dólares estadounidenses; fija currency "
                    "(p. ej. MXN, COP, ARS, CLP) si son pesos",
                )
        if not found:
            self.currency = None if setting == "AUTO" else setting
            if self.currency is None:
                self.report.convention(
                    "currency",
                    "not stated in the file: amounts unlabelled (set currency, e.g. GBP, to "
                    "label them)",
                    "moneda",
                    "el fichero no la indica: importes sin moneda (fija currency, p. ej. EUR, "
                    "para etiquetarlos)",
                )
            else:
                self.report.convention(
                    "currency",
                    f"{self.currency} (setting currency)",
                    "moneda",
                    f"{self.currency} (ajuste currency)",
                )
            self.report.currency = self.currency
            return
        ranked = sorted(found, key=lambda c: -len(found[c]))
        code = ranked[0]
        self.currency = code
        self.report.currency = code
        self.report.convention(
            "currency",
            f"{code} (from the {', '.join(found[code])})",
            "moneda",
            f"{code} (según {', '.join(found_es[code])})",
        )
        if len(ranked) > 1:
            self.report.warn(
                f"the amounts carry several currencies ({', '.join(ranked)}); every line is "
                f"labelled {code}: load each currency into its own warehouse, or convert first",
                f"los importes llevan varias monedas ({', '.join(ranked)}); todas las líneas se "
                f"etiquetan {code}: carga cada moneda en su propio almacén, o convierte antes",
            )
        if setting not in ("AUTO", code):
            self.report.warn(
                f"the amounts are in {code} ({', '.join(found[code])}) but the currency "
                f"setting says {setting}: lines are labelled {code}; change the setting to "
                "match",
                f"los importes están en {code} ({', '.join(found_es[code])}) pero el ajuste "
                f"currency dice {setting}: las líneas se etiquetan {code}; cambia el ajuste "
                "para que coincida",
            )

    def _date_range_checks(self, ts: ir.Value, column: str, checks: list[_Check]) -> None:
        """Dates after the load day or before ``earliest_date`` are typos, not history.

        Left in, one line dated 2099 would move the default ``as_of`` and make every customer
        look lapsed; one dated 1900 would stretch every customer's observed life.
        """
        # Wall-clock times run up to 14 hours ahead of UTC (Kiribati): the load day ends there.
        ahead = _dt.datetime.now(_dt.UTC) + _dt.timedelta(hours=14)
        last_day = self.opts.load_day or ahead.date()
        after = _dt.datetime.combine(last_day + _dt.timedelta(days=1), _dt.time())
        earliest = _dt.date.fromisoformat(str(self.settings.earliest_date))
        start = _dt.datetime.combine(earliest, _dt.time())
        # The value as written in the file (the parse check of the column carries it).
        text = next((c.value for c in checks if c.column == column), ts)
        checks.append(
            _Check(
                column,
                (ts >= ibis.literal(after, "timestamp")).fill_null(False),
                # Not "the load day": it may already be tomorrow in the zones ahead of UTC.
                f"is in the future (later than {last_day.isoformat()}, today in the time zone "
                "furthest ahead)",
                text,
            )
        )
        checks.append(
            _Check(
                column,
                (ts < ibis.literal(start, "timestamp")).fill_null(False),
                f"is before {earliest.isoformat()} (setting earliest_date)",
                text,
            )
        )

    # ------------------------------------------------------------------- stage
    def staged(self, any_offset: bool) -> ir.Table:
        """The file as canonical rows plus ``_reasons`` (empty when the row is accepted).

        Built in layers, each a plain projection of the one before, so a parsed value used by
        several checks is computed once instead of being inlined into every check.
        """
        self._offsets = {}
        decimals, orders, _ = self._conventions
        # Layer 0: each text column trimmed and its null spellings made NULL, once.
        strings = [src for src in self.mapping.values() if self.t[src].type().is_string()]
        self._clean = {
            src: f"{parsers.CLEAN_PREFIX}{i}" for i, src in enumerate(dict.fromkeys(strings))
        }
        if self._clean:
            self.t = self.t.mutate(
                **{c: parsers.blank_to_null(self.t[src]) for src, c in self._clean.items()}
            )
        # Layer 1: date/time text (cleaned) split into integer parts, one column each.
        texts = {
            name: self._clean[src]
            for name, src in self.mapping.items()
            if self.spec.column(name).kind in ("date", "timestamp") and src in self._clean
        }
        if texts:
            t = self.t.mutate(
                **{f"_f__{n}": parsers.fast_timestamp(self.t[s]) for n, s in texts.items()}
            )
            pre: dict[str, ir.Value] = {}
            for name, src in texts.items():
                parts = parsers.timestamp_parts(
                    t[src], orders.get(name, "dmy"), t[f"_f__{name}"].notnull()
                )
                pre.update({f"_p__{name}__{k}": v for k, v in parts.items()})
            self.t = t.mutate(**pre)
        plan = self.build_plan(decimals, orders)
        base = self.t
        # "Exact duplicate" means the same value in every column of the file, mapped or not:
        # two sales that differ only in a column we do not load are still two sales.
        self.report.duplicate_columns = list(self.raw.columns)
        dup_keys = self._dup_keys(base)
        if "_file" in base.columns:
            # Files read together: every check below stays within its own file.
            dup_keys["_file"] = base._file

        l1 = base.select(
            _row=base._row.cast("int64"),
            **dup_keys,
            **plan.values,
            **{f"_b{i}": c.bad.fill_null(False) for i, c in enumerate(plan.checks)},
            **{f"_v{i}": c.value for i, c in enumerate(plan.checks)},
            **{f"_off__{k}": off for k, off in self._offsets.items()},
        )
        values: dict[str, ir.Value] = {name: l1[name] for name in plan.values}
        checks = [
            _Check(c.column, l1[f"_b{i}"], c.message, l1[f"_v{i}"])
            for i, c in enumerate(plan.checks)
        ]
        self._offsets = {k: l1[f"_off__{k}"] for k in self._offsets}
        if any_offset and self._offsets:
            values, l1 = self._apply_offsets(values, l1)
        typed_index = {
            name: next(i for i, c in enumerate(plan.checks) if c.bad is flag)
            for name, flag in plan.typed.items()
        }
        self.table_rules(values, checks, l1)
        self._plan = plan

        l2 = l1.select(
            "_row",
            *dup_keys,
            **{name: v.cast(self.spec.column(name).dtype) for name, v in values.items()},
            **{f"_c{i}": c.bad.fill_null(False) for i, c in enumerate(checks)},
            **{f"_w{i}": c.value for i, c in enumerate(checks)},
        )
        # Every row gets all its reasons, the first column at fault and the value there.
        flags = [l2[f"_c{i}"] for i in range(len(checks))]
        reasons: ir.StringValue = ibis.literal("")
        for i, (flag, c) in enumerate(zip(flags, checks, strict=True)):
            # One reason per column: "is missing" adds nothing after "is not a date".
            earlier = [flags[j] for j in range(i) if checks[j].column == c.column]
            fires = flag
            for e in earlier:
                fires = fires & ~e
            reasons = reasons + ibis.ifelse(fires, f"{c.column} {c.message}; ", "")
        none = ibis.null("string")
        first_col = (
            ibis.cases(*((f, c.column) for f, c in zip(flags, checks, strict=True)), else_=none)
            if checks
            else none
        )
        first_val = (
            ibis.cases(*((f, _as_text(l2[f"_w{i}"])) for i, f in enumerate(flags)), else_=none)
            if checks
            else none
        )
        if checks:
            # Nearly every row passes: one test of the flags spares it building the texts.
            failed = flags[0]
            for f in flags[1:]:
                failed = failed | f
            reasons = ibis.ifelse(failed, reasons, "")
            first_col = ibis.ifelse(failed, first_col, none)
            first_val = ibis.ifelse(failed, first_val, none)
        expr = l2.select(
            "_row",
            *dup_keys,
            *[name for name in values],
            _reasons=reasons,
            _first_col=first_col,
            _first_val=first_val,
            **{f"_bad__{k}": l2[f"_c{i}"] for k, i in typed_index.items()},
        )
        return self._number_lines(expr)

    def _dup_keys(self, t: ir.Table) -> dict[str, ir.Value]:
        """What makes two rows of ``t`` (the file's columns) exact duplicates: ``_dk...``."""
        source_cols = self.raw.columns
        if self.wh.engine == "duckdb":
            # One 64-bit hash of the row partitions several times faster than every column.
            # Two different rows match only on a hash collision (about 3 in a million for a
            # 10M-row file), and even then the row is quarantined, not lost.
            return {"_dk0": ibis.struct({f"c{i}": t[c] for i, c in enumerate(source_cols)}).hash()}
        return {f"_dk{i}": t[c] for i, c in enumerate(source_cols)}

    def _apply_offsets(
        self, values: dict[str, ir.Value], base: ir.Table
    ) -> tuple[dict[str, ir.Value], ir.Table]:
        """Timestamps written in UTC (``Z``, ``+00:00``) move to the business time zone.

        A time written with any other offset is already the local time where the sale
        happened: it is kept as written, so hour bands and weekdays describe the customer's
        day, not the server's. A column stored with its own zone (Parquet) holds instants in
        UTC: they move to that zone's local time.
        """
        in_utc = {k: (off == 0).fill_null(False) for k, off in self._offsets.items()}
        target = {k: self._zones.get(k, self.settings.timezone) for k in self._offsets}
        utc = {k: values[k] for k in self._offsets if not _is_utc(target[k])}
        fixed = {k: m for k in utc if (m := _fixed_minutes(target[k])) is not None}
        for k, minutes in fixed.items():
            local = utc.pop(k) + ibis.literal(minutes, "int64").as_interval("m")
            values[k] = ibis.ifelse(in_utc[k], local, values[k])
        if not utc:
            return values, base
        bounds_expr = base.aggregate(
            **{f"lo_{k}": v.date().min(where=in_utc[k]) for k, v in utc.items()},
            **{f"hi_{k}": v.date().max(where=in_utc[k]) for k, v in utc.items()},
        )
        bounds = bounds_expr.to_pyarrow().to_pylist()[0]
        zones: dict[str, ir.Table] = {}
        for k, v in utc.items():
            if bounds[f"lo_{k}"] is None:  # no time in UTC in this column
                continue
            zone = target[k]
            if zone not in zones:
                span = [bounds[f"{e}_{j}"] for j in utc if target[j] == zone for e in ("lo", "hi")]
                days = [d for d in span if d is not None]
                zones[zone] = self.wh.from_arrow(_zone_offsets(zone, min(days), max(days)), "zones")
            alias = zones[zone].rename(
                **{
                    f"_utc_date_{k}": "_utc_date",
                    f"_zone_min_{k}": "_zone_min",
                    f"_zone_after_{k}": "_zone_min_after",
                    f"_switch_at_{k}": "_switch_at",
                }
            )
            base = base.mutate(**{f"_utc_{k}": v})
            base = base.left_join(alias, base[f"_utc_{k}"].date() == alias[f"_utc_date_{k}"])
            at = base[f"_utc_{k}"]
            switched = (
                base[f"_switch_at_{k}"].notnull() & (at >= base[f"_switch_at_{k}"])
            ).fill_null(False)
            minutes = ibis.ifelse(switched, base[f"_zone_after_{k}"], base[f"_zone_min_{k}"])
            local = at + minutes.fill_null(0).as_interval("m")
            values[k] = ibis.ifelse(in_utc[k], local, values[k])
        return values, base

    @property
    def numbers_lines(self) -> bool:
        """Whether the invoice lines get their numbers here (the file has no line column)."""
        return self.spec.name == "transactions" and "line" not in self.mapping

    def _number_lines(self, s: ir.Table) -> ir.Table:
        """Invoice lines without a line column are numbered in file order within each invoice.

        With ``defer_numbers`` (each pass reads the file again instead of a written parse) the
        numbers are computed once into a narrow table (the row, its file, its number: the
        window sorts the invoice and the row only, not every parsed column) and
        :meth:`numbered` joins them where a pass needs them.
        """
        if not self.numbers_lines:
            return s
        w = ibis.window(group_by=[*_own_file(s), s.invoice_id], order_by=s._row)
        number = (ibis.row_number().over(w) + 1).cast("int64")
        if not self.defer_numbers:
            return s.mutate(line=number)
        # Exports list an invoice's lines one after another: then a line's number is its row
        # less its invoice's first row, and an aggregate of the invoices (a million rows for
        # 12M lines) replaces a window that sorts every row. Files that interleave invoices
        # are numbered by the window.
        by = [*_own_file(s), s.invoice_id]
        firsts = s.group_by(*by).aggregate(
            _first=s._row.min(), _spread=s._row.max() - s._row.min() + 1 - s.count()
        )
        firsts = self.wh.materialize(firsts, "line_firsts")
        if not int(firsts.filter(firsts._spread != 0).count().execute()):
            self.line_numbers = firsts  # each invoice's first row (_first), not row numbers
            return s
        self.wh.drop(firsts.get_name())
        keys = _row_key(s)
        self.line_numbers = self.wh.materialize(
            s.select(*keys, "invoice_id").mutate(line=number).drop("invoice_id"), "line_numbers"
        )
        return s

    @property
    def key_check(self) -> bool:
        """Whether rows whose key repeats are checked: line numbers we assign ourselves are
        unique within an invoice, no need to check them."""
        return bool(self.spec.key) and not self.numbers_lines

    @property
    def duplicates_by_key(self) -> bool:
        """Whether the groups of a repeated key hold every exact duplicate: two rows with the
        same text in every column have the same key when the key is read straight from the
        file. Otherwise exact duplicates are found by the hash of every column (``_dk0``)."""
        return self.key_check and all(k in self.mapping for k in self.spec.key)

    def numbered(self, t: ir.Table) -> ir.Table:
        """``t`` (rows of the parse) with the line numbers of :meth:`_number_lines` in ``line``."""
        if self.line_numbers is None:
            return t
        if "_first" in self.line_numbers.columns:  # contiguous invoices: see _number_lines
            by = [*(c.get_name() for c in _own_file(t)), "invoice_id"]
            firsts = self.line_numbers.drop("_spread").rename(**{f"_n{k}": k for k in by})
            rest = t.drop("line")
            j = rest.join(firsts, [rest[k].identical_to(firsts[f"_n{k}"]) for k in by])
            return j.mutate(line=(j._row - j._first + 1).cast("int64")).select(*t.columns)
        keys = _row_key(t)
        nums = self.line_numbers.rename(**{f"_n{k}": k for k in keys})
        rest = t.drop("line")
        j = rest.join(nums, [rest[k] == nums[f"_n{k}"] for k in keys])
        return j.select(*t.columns)

    def _stored_columns(self, t: ir.Table, wh: Warehouse) -> list[str]:
        """The columns that tell a row of ``t`` is already stored: the key of invoice lines;
        every column of the table for facts without a key (events, survey answers,
        suppressions), where an overlapping export repeats whole rows (those the stored table
        has too: one written by an earlier version may lack a newer column). Empty for the
        tables whose newer rows replace the stored ones (customers, products, population
        cells: see :func:`_replaced_by`)."""
        if self.spec.name == "transactions":
            return list(self.spec.key)
        if self.spec.name in _APPEND_ONLY:
            name = self.spec.name  # ``wh`` is the target (on PostgreSQL not the staging DuckDB)
            stored = set(wh.table(name).columns) if wh.has(name) else set()
            return [c.name for c in self.spec.columns if c.name in t.columns and c.name in stored]
        return []

    def _same(self, a: ir.Table, b: ir.Table, cols: list[str]) -> list[ir.BooleanValue]:
        """Join conditions for :meth:`_stored_columns`: keys are never empty; the columns of
        a fact without a key often are, and two empty values are the same value."""
        if self.spec.name == "transactions":
            return [a[c] == b[c] for c in cols]
        return [a[c].identical_to(b[c]) for c in cols]

    def repeat_rows(
        self, stage: ir.Table, wh: Warehouse
    ) -> tuple[ir.Table | None, ir.Table | None]:
        """The rows of ``stage`` that may repeat others or be already stored (``_row``, and
        ``_file``; a temporary table) and the stored keys the file brings (a temporary table,
        or None on a first load). ``(None, None)`` when the table has no such check to make.
        :meth:`repeats` then decides, on those rows alone, which of them are repeats.

        Exact duplicates (same value in every column of the file, within each file),
        repeated keys (within each file), keys the warehouse already holds (invoice lines),
        and, for files read together, keys an earlier file of the group brings.

        A window over every row would shuffle every column (7 of the 18 seconds of a
        1.4M-line file). Repeats are rare: aggregates of the keys alone find the groups of
        two rows or more, a semi-join finds the stored keys, and the rules then run on those
        few rows only. Rows outside them have a key and a content of their own: none of the
        rules can fire for them.
        """
        spec = self.spec
        files = _own_file(stage)
        dup_keys = [stage[c] for c in stage.columns if c.startswith("_dk")]
        dups = stage
        if not dup_keys:  # not written down (see :attr:`duplicates_by_key`): from the file
            dups = self.raw.table
            dup_keys = list(self._dup_keys(dups).values())
        key = list(spec.key)
        key_check = self.key_check
        together = spec.name == "transactions" and bool(files)
        stored_cols = self._stored_columns(stage, wh)
        stored = (
            wh.table(spec.name)
            if stored_cols and int(wh.table(spec.name).count().execute()) > 0
            else None
        )
        by_key = self.duplicates_by_key
        groups: list[tuple[ir.Table, list[ir.Value]]] = []
        if key_check or together:
            # Across files: holds each file's groups. On DuckDB one 64-bit hash of the key
            # groups faster than its columns; a collision only adds rows to check below.
            keys = [stage[k] for k in key]
            if wh.engine == "duckdb":
                keys = [ibis.struct({f"k{i}": k for i, k in enumerate(keys)}).hash()]
            groups.append((stage, keys))
        if not by_key:
            groups.append((dups, [*files, *dup_keys]))
        parts = []
        temps: list[ir.Table] = []
        for of, cols in groups:
            names = {f"_g{i}": c for i, c in enumerate(cols)}
            # The group columns are named on both sides: written against ``stage`` in the
            # join, Ibis took them for the aggregate's own columns and the condition compared
            # those with themselves (every row matched as soon as one group repeated).
            tagged = of.select("_row", *files, **names)
            many = tagged.group_by(*names).aggregate(
                _n=tagged.count(), _lo=tagged._row.min(), _hi=tagged._row.max()
            )
            many = wh.materialize(many.filter(many._n > 1), "repeat_groups")
            temps.append(many)
            sizes = many.aggregate(groups=many.count(), most=many._n.max()).to_pyarrow()
            if not sizes["groups"][0].as_py():  # nothing repeats: no rows to find
                continue
            if not files and sizes["most"][0].as_py() == 2:
                # Pairs only (the usual repeat: a line exported twice): their rows are the
                # first and the last of each group, with no second pass over the file (1.65 s
                # of 12M lines).
                parts.append(many.select(_row=many._lo).union(many.select(_row=many._hi)))
                continue
            parts.append(
                tagged.semi_join(many, [tagged[n].identical_to(many[n]) for n in names]).select(
                    "_row", *files
                )
            )
        hit: ir.Table | None = None
        if stored is not None:
            # The stored keys the file brings (a table built from the file's keys, probed by
            # the stored lines), then the rows that bring them.
            keyed = self.numbered(stage)  # lines numbered here: the numbers are the key
            mine = keyed.select(*stored_cols)
            theirs = stored.select(*stored_cols)
            if spec.name in _APPEND_ONLY and "timestamp" in stored_cols:
                # Only stored rows within the file's dates can equal its rows: the stored
                # table is read by its zone maps, not whole (a new day of events against
                # millions stored).
                span = mine.aggregate(lo=mine.timestamp.min(), hi=mine.timestamp.max())
                lo, hi = span.to_pyarrow().to_pylist()[0].values()
                if lo is not None:
                    theirs = theirs.filter(theirs.timestamp.between(lo, hi))
            hit = wh.materialize(
                theirs.semi_join(mine, self._same(theirs, mine, stored_cols)).distinct(),
                "stored_keys",
            )
            if int(hit.count().execute()):
                parts.append(
                    keyed.semi_join(hit, self._same(keyed, hit, stored_cols)).select("_row", *files)
                )
            else:  # the usual new day: none of its keys is stored
                wh.drop(hit.get_name())
                hit = None
        if not parts:
            for t in temps:
                wh.drop(t.get_name())
            return None, None
        rows = parts[0]
        for other in parts[1:]:
            rows = rows.union(other)  # distinct
        try:
            return wh.materialize(rows, "repeat_rows"), hit
        finally:
            for t in temps:
                wh.drop(t.get_name())

    def repeats(self, flagged: ir.Table, rows: ir.Table, hit: ir.Table | None) -> ir.Table:
        """Of the ``rows`` found by :meth:`repeat_rows` (all of them among ``flagged``), those
        that repeat others or are already stored, with the reasons to add: ``_row`` (and
        ``_file``), ``_extra``, ``_dup``, ``_loaded``."""
        spec, policy = self.spec, self.settings.duplicates
        files = _own_file(flagged)
        dup_keys = [flagged[c] for c in flagged.columns if c.startswith("_dk")]
        key = list(spec.key)
        key_check = self.key_check
        together = spec.name == "transactions" and bool(files)
        on = _row_key(flagged)
        few = flagged.semi_join(rows, on)
        if hit is not None:
            cols = list(hit.columns)  # the stored columns compared (:meth:`repeat_rows`)
            marked = hit.mutate(_hit=ibis.literal(True))
            few = few.left_join(marked, self._same(few, marked, cols))
            few = few.drop(*[f"{k}_right" for k in cols if f"{k}_right" in few.columns])
            few = few.mutate(_hit=few._hit.fill_null(False))
        else:
            few = few.mutate(_hit=ibis.literal(False))
        first_same = few._row.min().over(
            ibis.window(group_by=[*_own_file(few), *(few[c.get_name()] for c in dup_keys)])
        )
        few = few.mutate(_first_same=first_same)
        exact = few._first_same != few._row
        extra = ibis.literal("")
        if policy == "quarantine":
            extra = extra + ibis.ifelse(
                exact,
                ibis.literal("exact duplicate of row ") + few._first_same.cast("string") + "; ",
                "",
            )
        few = few.mutate(_dup=exact, _extra=extra)
        if key_check:
            first_key = few._row.min().over(
                ibis.window(group_by=[*_own_file(few), *(few[k] for k in key)])
            )
            few = few.mutate(_first_key=first_key)
            repeated = (few._first_key != few._row) & ~few._dup
            few = few.mutate(
                _extra=few._extra
                + ibis.ifelse(
                    repeated,
                    ibis.literal(f"{'/'.join(key)} repeats row ")
                    + few._first_key.cast("string")
                    + "; ",
                    "",
                )
            )
        few = few.mutate(
            _extra=few._extra + ibis.ifelse(few._hit, "already in the warehouse; ", ""),
            _loaded=few._hit,
        )
        if together:
            # Files read together: a line that an earlier file of the group brings is stored
            # by the time this file's turn would have come, as if they were loaded one by one.
            kept = ibis.ifelse(few._reasons + few._extra == "", few._file, ibis.null("int64"))
            first = kept.min().over(ibis.window(group_by=[few[k] for k in key]))
            earlier = (first < few._file).fill_null(False)
            few = few.mutate(
                _loaded=few._loaded | earlier,
                _extra=few._extra + ibis.ifelse(earlier, "already in the warehouse; ", ""),
            )
        return few.select(*on, "_extra", "_dup", "_loaded")

    def flagged(self, stage: ir.Table, rows: ir.Table | None, wh: Warehouse) -> ir.Table:
        """The rows of ``stage`` that fail a check or are among ``rows`` (:meth:`repeat_rows`):
        every row that may be rejected, with all its columns (a temporary table). Every other
        row is accepted as parsed.

        Which rows those are takes the checks alone; their columns are then parsed again from
        those rows of the file only (every value of a row depends on that row alone), instead
        of parsing every column of every row to keep a few.
        """
        on = _row_key(stage)
        if rows is None:
            which = stage.filter(stage._reasons != "").select(*on)
        else:
            mark = rows.select(**{f"_h{c}": rows[c] for c in on}).mutate(_hit=ibis.literal(True))
            both = stage.left_join(mark, [stage[c] == mark[f"_h{c}"] for c in on])
            which = both.filter((both._reasons != "") | both._hit.notnull()).select(*on)
        ids = wh.materialize(which, "flagged_rows")
        try:
            source = self.raw.table
            parse = stage if self.parse is None else self.parse
            if self.parse is not None and not int(ids.count().execute()):
                # No row to parse again: compiling the parse would cost 0.3 s for nothing.
                empty = parse.schema().to_pyarrow().empty_table()
                return wh.from_arrow(empty, "flagged")
            few = parse.op().replace({source.op(): source.semi_join(ids, on).op()}).to_expr()
            if few.equals(stage):  # the parsed rows were written down: read them from there
                few = stage.semi_join(ids, on)
            # Parsed again (``self.parse``), lines without a line column are numbered among
            # these rows only: their numbers serve no check (the key is not checked where
            # the numbers are ours) and these rows are written from the staging table.
            return wh.materialize(self.numbered(few), "flagged")
        finally:
            wh.drop(ids.get_name())

    def checked(self, stage: ir.Table, extra: ir.Table | None) -> ir.Table:
        """``stage`` with the reasons of :meth:`repeats` added, ``_dup`` and ``_loaded``."""
        key = list(self.spec.key)
        if extra is None:
            s = stage.mutate(_dup=ibis.literal(False), _loaded=ibis.literal(False))
        else:
            on = _row_key(stage)
            x = extra.rename(**{f"_x{c}": c for c in on})
            s = stage.left_join(x, [stage[c] == x[f"_x{c}"] for c in on])
            s = s.mutate(
                _reasons=s._reasons + s._extra.fill_null(""),
                _dup=s._dup.fill_null(False),
                _loaded=s._loaded.fill_null(False),
            ).drop("_extra", *[f"_x{c}" for c in on])
        # A repeat or a line already stored fails no check of its own: its example is the
        # (first) key column and its value (customer_id = 'C1'), not an empty value.
        repeat = s._first_col.isnull() & (s._reasons != "")
        if key:
            return s.mutate(
                _first_col=ibis.ifelse(repeat, key[0], s._first_col),
                _first_val=ibis.ifelse(repeat, _as_text(s[key[0]]), s._first_val),
            )
        return s.mutate(_first_col=ibis.ifelse(repeat, "row", s._first_col))


_UTC_NAMES = {"UTC", "ETC/UTC", "Z", "GMT", "ETC/GMT", "UCT", "ETC/UCT", "ZULU", "UNIVERSAL"}


def _is_utc(zone: str) -> bool:
    return zone.strip().upper() in _UTC_NAMES or _fixed_minutes(zone) == 0


def _fixed_minutes(zone: str) -> int | None:
    """Minutes east of UTC of a fixed-offset zone such as ``+01:00`` (Arrow writes these for
    pandas times with an offset); None for a named zone."""
    m = re.fullmatch(r"\s*([+-])(\d{2}):?(\d{2})\s*", zone)
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return -minutes if m.group(1) == "-" else minutes


#: How a date order was decided, in Spanish.
_LABELS_ES = {"set": "fijado", "detected": "detectado", "assumed": "supuesto"}


def _stored_zone_note(src: str, zone: str, tz: str, lang: str = "en") -> str:
    """One sentence on a column stored with a time zone (Parquet)."""
    if lang == "es":
        if _is_utc(zone):
            where = (
                "se mantiene en UTC" if _is_utc(tz) else f"se convierte a {tz} (ajuste timezone)"
            )
            return f"'{src}' está guardada en UTC: {where}"
        return f"'{src}' está guardada con zona horaria {zone}: se mantiene la hora local de allí"
    if _is_utc(zone):
        where = "kept in UTC" if _is_utc(tz) else f"converted to {tz} (setting timezone)"
        return f"'{src}' is stored in UTC: {where}"
    return f"'{src}' is stored with time zone {zone}: kept at the local time there"


def _zone_note(
    tz: str, n_local: int, n_utc: int, lo: str | None, hi: str | None, lang: str = "en"
) -> str:
    """One sentence on how the times of a column were placed in time zones."""
    if lang == "es":
        parts = [f"horas sin desfase tomadas tal como están escritas ({tz}, ajuste timezone)"]
        if n_local:
            span = lo if lo == hi else f"{lo} a {hi}"
            parts.append(
                f"{_n_es(n_local)} con desfase ({span}) se mantienen a la hora local escrita"
            )
        if n_utc:
            parts.append(
                f"{_n_es(n_utc)} en UTC (Z) "
                + ("se mantienen en UTC" if tz.upper() == "UTC" else f"se convierten a {tz}")
            )
        return "; ".join(parts)
    parts = [f"times without an offset taken as written ({tz}, setting timezone)"]
    if n_local:
        span = lo if lo == hi else f"{lo} to {hi}"
        parts.append(f"{n_local:,} with an offset ({span}) kept at the local time written")
    if n_utc:
        parts.append(
            f"{n_utc:,} in UTC (Z) "
            + ("kept in UTC" if tz.upper() == "UTC" else f"converted to {tz}")
        )
    return "; ".join(parts)


def _raw_json(t: ir.Table, columns: list[str]) -> ir.StringValue:
    """The row as read, as a JSON object of strings (so a rejected row can be rebuilt)."""
    parts: list[ir.StringValue] = []
    for i, c in enumerate(columns):
        v = _as_text(t[c])
        esc = (
            v.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("\t", "\\t")
        )
        key = c.replace("\\", "\\\\").replace('"', '\\"')
        item = ibis.literal(("" if i == 0 else ", ") + f'"{key}": ') + ibis.ifelse(
            v.isnull(), "null", ibis.literal('"') + esc + '"'
        )
        parts.append(item)
    out = ibis.literal("{")
    for p in parts:
        out = out + p
    return out + "}"


@dataclass(frozen=True)
class IdMatch:
    """How the buyers in ``transactions`` and the records in ``customers`` find each other."""

    buyers: int  # distinct customer ids with at least one line
    buyers_without_record: int
    customers: int  # customer records
    customers_without_purchase: int
    example_buyer: str | None = None  # a buyer id without a record
    example_customer: str | None = None  # a customer id without a purchase

    @property
    def matched(self) -> int:
        return self.buyers - self.buyers_without_record

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"matched": self.matched}

    def sentence(self) -> str:
        """The counts in words, for summaries."""
        if not self.customers:
            return f"{self.buyers:,} buyers; no customer records loaded"
        return (
            f"{self.matched:,} of {self.buyers:,} buyers have a customer record "
            f"({self.buyers_without_record:,} without); {self.customers_without_purchase:,} of "
            f"{self.customers:,} customers have no purchase"
        )

    def warning(self, lang: str = "en") -> str | None:
        """A plain warning when fewer than half of the buyers match a customer record."""
        if not self.customers or not self.buyers or self.matched >= _MIN_ID_MATCH * self.buyers:
            return None
        es = lang == "es"
        examples = ""
        if self.example_buyer is not None and self.example_customer is not None:
            examples = (
                f" (por ejemplo, el comprador '{self.example_buyer}' no tiene ficha y el cliente "
                f"'{self.example_customer}' no tiene compras)"
                if es
                else f" (for example buyer '{self.example_buyer}' has no record, and customer "
                f"'{self.example_customer}' no purchase)"
            )
        if es:
            return (
                f"solo {_n_es(self.matched)} de {_n_es(self.buyers)} compradores tienen ficha de "
                f"cliente{examples}: a los demás les faltarán perfil, país y consentimientos. "
                "Comprueba que el fichero de clientes y las ventas usan el mismo id de cliente "
                "(misma columna, mismo formato, sin prefijo); los números escritos como 17850.0 "
                "ya coinciden con 17850"
            )
        return (
            f"only {self.matched:,} of {self.buyers:,} buyers have a customer record"
            f"{examples}: profiles, countries and consents will be missing for the others. "
            "Check that the customers file and the sales use the same customer id (same "
            "column, same format, no prefix); numbers written as 17850.0 already match 17850"
        )


def _n_es(n: int) -> str:
    """A count the Spanish way (1.234)."""
    return f"{n:,}".replace(",", ".")


def id_match(wh: Warehouse) -> IdMatch | None:
    """Buyers without a customer record and customers without a purchase (None: a table is
    missing). Counted in the engine; only the counts and one example of each come back."""
    if not (wh.has("transactions") and wh.has("customers")):
        return None
    tx = wh.table("transactions")
    buyers = tx.filter(tx.customer_id.notnull()).select("customer_id").distinct()
    cust = wh.table("customers")
    records = cust.filter(cust.customer_id.notnull()).select("customer_id").distinct()
    lonely_buyers = buyers.anti_join(records, "customer_id")
    idle = records.anti_join(buyers, "customer_id")
    row = (
        buyers.aggregate(n=buyers.count())
        .cross_join(records.aggregate(c=records.count()))
        .cross_join(
            lonely_buyers.aggregate(lb=lonely_buyers.count(), eb=lonely_buyers.customer_id.min())
        )
        .cross_join(idle.aggregate(ic=idle.count(), ec=idle.customer_id.min()))
        .to_pyarrow()
        .to_pylist()[0]
    )
    return IdMatch(
        buyers=int(row["n"]),
        buyers_without_record=int(row["lb"]),
        customers=int(row["c"]),
        customers_without_purchase=int(row["ic"]),
        example_buyer=row["eb"],
        example_customer=row["ec"],
    )


def revenue_totals(wh: Warehouse, as_of: _dt.date | None = None) -> dict[str, Any]:
    """Revenue from the stored net lines (sales minus returns) before ``as_of``, split into
    identified and anonymous customers, with the customers whose lines net to zero or less.

    ``identified + anonymous == total`` by construction: every stored line counts once.
    Computed in the engine; only the totals come back.
    """
    tx = wh.table("transactions")
    if as_of is not None:
        cutoff = _dt.datetime(as_of.year, as_of.month, as_of.day)
        tx = tx.filter(tx.timestamp < ibis.literal(cutoff, "timestamp"))
    known = tx.customer_id.notnull()
    totals = tx.aggregate(
        total=tx.amount.sum(),
        identified=tx.amount.sum(where=known),
        anonymous=tx.amount.sum(where=~known),
        lines_without_amount=tx.amount.isnull().cast("int64").sum(),
        lines=tx.count(),
    )
    per = (
        tx.filter(known)
        .group_by("customer_id")
        .aggregate(net=tx.amount.sum(), returned=(tx.amount < 0).any())
    )
    worse = per.aggregate(
        nonpositive=(per.net <= 0).cast("int64").sum().fill_null(0),
        nonpositive_amount=per.net.sum(where=per.net <= 0),
        # Every line at zero and none returned: free items or prices missing, not returns.
        only_zero=((per.net == 0) & ~per.returned.fill_null(False)).cast("int64").sum(),
    )
    row = totals.cross_join(worse).to_pyarrow().to_pylist()[0]
    return {
        "total": float(row["total"] or 0.0),
        "identified": float(row["identified"] or 0.0),
        "anonymous": float(row["anonymous"] or 0.0),
        "customers_net_nonpositive": int(row["nonpositive"] or 0),
        "net_nonpositive_amount": float(row["nonpositive_amount"] or 0.0),
        "customers_only_zero_lines": int(row["only_zero"] or 0),
        "has_amounts": int(row["lines_without_amount"] or 0) < int(row["lines"] or 0),
    }


def has_amounts(wh: Warehouse) -> bool:
    """Whether any stored sale carries an amount (False for logs loaded with ``no_amount``)."""
    tx = wh.table("transactions")
    return bool(tx.amount.notnull().any().to_pyarrow().as_py())


def data_currency(wh: Warehouse, settings: Settings, lang: str = "en") -> tuple[str, str | None]:
    """The currency label of the stored amounts and a warning when they mix currencies.

    The ``currency`` setting wins when it names one; with ``auto`` the labels ingest put on
    the lines decide; an empty label means nothing said which currency it is.
    """
    code, notes = currency_check(wh, settings)
    return code, (notes[1] if lang == "es" else notes[0]) if notes else None


def currency_check(wh: Warehouse, settings: Settings) -> tuple[str, tuple[str, str] | None]:
    """The currency label and, when the amounts mix currencies, a warning (English, Spanish)."""
    setting = settings.currency.upper()
    if setting != "AUTO":
        return setting, None
    if not wh.has("transactions") or "currency" not in wh.table("transactions").columns:
        return "", None
    tx = wh.table("transactions")
    tx = tx.filter(tx.amount.notnull())
    counts = (
        tx.group_by("currency")
        .aggregate(n=tx.count())
        .order_by(ibis.desc("n"))
        .to_pyarrow()
        .to_pylist()
    )
    found = [r for r in counts if r["currency"] is not None][:5]
    unlabelled = sum(int(r["n"]) for r in counts if r["currency"] is None)
    if not found:
        return "", None
    code = str(found[0]["currency"])
    en: list[str] = []
    es: list[str] = []
    if len(found) > 1:
        codes = ", ".join(f"{r['currency']} ({int(r['n']):,} lines)" for r in found)
        en.append(
            f"the stored amounts are in several currencies ({codes}) and are added together "
            "as if they were one; keep one currency per warehouse, or convert before loading"
        )
        codes = ", ".join(f"{r['currency']} ({_n_es(int(r['n']))} líneas)" for r in found)
        es.append(
            f"los importes guardados están en varias monedas ({codes}) y se suman como si "
            "fueran una; guarda una sola moneda por almacén, o convierte antes de cargar"
        )
    if unlabelled:
        # Lines loaded by a version before currencies were recorded, or from files that did
        # not say: their label is a guess, so say which one was made.
        en.append(
            f"{unlabelled:,} stored lines have no currency (loaded before segmentum recorded "
            f"currencies, or from files that did not say) and are counted as {code}; if they "
            'are in another currency, set currency (e.g. currency = "EUR" in segmentum.toml)'
        )
        es.append(
            f"{_n_es(unlabelled)} líneas guardadas no tienen moneda (cargadas antes de que "
            f"segmentum registrara monedas, o de ficheros que no la indicaban) y se cuentan "
            f'como {code}; si están en otra moneda, fija currency (p. ej. currency = "EUR" '
            "en segmentum.toml)"
        )
    return code, ("; ".join(en), "; ".join(es)) if en else None


_REASON_KIND = (
    (r"row \d+", "row N"),  # "exact duplicate of row 12" and "row 40" are one reason
    (r"^malformed line:.*$", "malformed line"),
)


def _reason_kind(reason: ir.StringValue) -> ir.StringValue:
    for pattern, replacement in _REASON_KIND:
        reason = reason.re_replace(pattern, replacement)
    return reason


def _quarantine_rows(
    wh: Warehouse,
    reason: str | None = None,
    file: str | None = None,
    batch: str | None = None,
    table: str | None = None,
) -> ir.Table:
    q = wh.table(QUARANTINE.name)
    if reason:
        q = q.filter(q.reason.lower().contains(reason.lower()))
    if file:
        q = q.filter(q.file.contains(file))
    if batch:
        q = q.filter(q.batch_id == batch)
    if table:
        q = q.filter(q.table_name == table)
    return q


def quarantine_summary(
    wh: Warehouse | str | None = None,
    *,
    reason: str | None = None,
    file: str | None = None,
    batch: str | None = None,
    table: str | None = None,
) -> list[dict[str, Any]]:
    """Rejected rows grouped by reason: how many, and the first one as an example.

    Parameters
    ----------
    wh
        An open warehouse or its URL (default from settings).
    reason, file
        Keep only rows whose reason (case-insensitive) or file path contains this text.
    batch, table
        Keep only one ingest batch, or one target table.

    Returns
    -------
    list of dict
        One per reason, most rows first: ``reason``, ``rows``, ``files`` (how many files),
        and the first example's ``file``, ``source_row``, ``column`` and ``value``.

    Examples
    --------
    >>> import segmentum, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> text = "customer_id,date,amount\\nA1,2024-01-01,x\\nA2,2024-01-02,y\\nA3,2024-01-03,5\\n"
    >>> _ = (d / "s.csv").write_text(text)
    >>> wh = segmentum.connect("duckdb://")
    >>> _ = segmentum.ingest("transactions", d / "s.csv", warehouse=wh)
    >>> [(r["reason"], r["rows"], r["source_row"]) for r in quarantine_summary(wh)]
    [('amount is not a number', 2, 1)]
    """
    wh = wh if isinstance(wh, Warehouse) else connect(wh or load_settings().warehouse)
    if not wh.has(QUARANTINE.name):
        return []
    q = _quarantine_rows(wh, reason, file, batch, table)
    q = q.mutate(_kind=_reason_kind(q.reason))
    w = ibis.window(group_by=q._kind, order_by=[q.file, q.source_row])
    q = q.mutate(_n=ibis.row_number().over(w))
    groups = q.group_by("_kind").aggregate(
        rows=q.count(), files=q.file.nunique(), tables=q.table_name.nunique()
    )
    first = q.filter(q._n == 0).select(
        "_kind", "table_name", "file", "source_row", "column", "value", "reason", "raw"
    )
    out = groups.join(first, "_kind").order_by([ibis.desc("rows"), "_kind"])
    rows = out.to_pyarrow().to_pylist()
    return [
        {
            "reason": r["_kind"],
            "rows": int(r["rows"]),
            "files": int(r["files"]),
            "table": r["table_name"],
            "file": r["file"],
            "source_row": r["source_row"],
            "column": r["column"],
            "value": r["value"],
            # The column as the file names it ("Recomendación" for nps), when it differs.
            "header": _file_column(r["raw"], r["table_name"], r["column"], r["value"]),
            "example_reason": r["reason"],
        }
        for r in rows
    ]


def named_column(r: Mapping[str, Any]) -> str:
    """A quarantined row's column as the file names it, with the canonical name after it
    ("Recomendación (nps)"): the header is what the user searches their export for."""
    column = r.get("column") or ""
    header = (
        r["header"]
        if "header" in r
        else _file_column(r.get("raw"), r.get("table_name") or "", column, r.get("value"))
    )
    return f"{header} ({column})" if header else column


def _file_column(raw: str | None, table: str, column: str | None, value: str | None) -> str | None:
    """The file's own name for the canonical ``column`` of a quarantined row: its header that
    maps to ``column`` as ingest maps headers, checked against the value shown (a load with
    an explicit mapping may have used another). None when it is the same name or unknown."""
    spec = INGESTIBLE.get(table)
    if not raw or not column or spec is None:
        return None
    try:
        row = json.loads(raw)
        header = auto_map(list(row), spec).get(column) if isinstance(row, dict) else None
    except (ValueError, InputError):
        return None
    if header is None or header.strip().lower() == column.lower():
        return None
    if value not in (None, "") and str(row.get(header)).strip() != str(value).strip():
        return None
    return str(header)


def quarantine_rows(
    wh: Warehouse | str | None = None,
    *,
    reason: str | None = None,
    file: str | None = None,
    batch: str | None = None,
    table: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The first ``limit`` rejected rows (by file and row) matching the same filters as
    :func:`quarantine_summary`, each with its reason and the raw row as read."""
    wh = wh if isinstance(wh, Warehouse) else connect(wh or load_settings().warehouse)
    if not wh.has(QUARANTINE.name):
        return []
    q = _quarantine_rows(wh, reason, file, batch, table)
    rows: list[dict[str, Any]] = (
        q.order_by(["file", "source_row"]).limit(limit).to_pyarrow().to_pylist()
    )
    for r in rows:
        r["header"] = _file_column(r["raw"], r["table_name"], r["column"], r["value"])
    return rows


# -------------------------------------------------------------------------------- public
def ingest(
    table: str,
    files: str | Path | Sequence[str | Path],
    *,
    warehouse: Warehouse | str | None = None,
    mapping: str | Path | Mapping[str, str | None] | None = None,
    sheet: str | None = None,
    settings: Settings | None = None,
    date_order: str | None = None,
    decimal: str | None = None,
    duplicates: str | None = None,
    anonymous: bool = False,
    no_amount: bool = False,
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Load files into the canonical table ``table``, one atomic batch per file (or sheet).

    Parameters
    ----------
    table
        ``customers``, ``transactions``, ``events``, ``products``, ``prospects``,
        ``campaign_results``, ``suppressions``, ``responses`` (survey answers) or ``population``.
    files
        CSV, Parquet, Excel (.xlsx, every sheet unless ``sheet`` is given) or JSON-lines files.
    warehouse
        An open :class:`~segmentum.warehouse.Warehouse` or a URL (default from settings).
    mapping
        Canonical column -> column in the file, or a YAML/TOML file with those pairs.
    date_order, decimal, duplicates
        Override the settings of the same name for this call.
    anonymous
        The sales really have no customer id: load them as anonymous even when a column
        looks like a customer id (without it such a file is refused).
    no_amount
        The file is a log of purchases without amounts (loyalty-card data): amounts are left
        empty, frequency models run and spend models are skipped.

    Returns
    -------
    list of IngestReport
        One per file or sheet; ``report.balanced`` is always true.

    Examples
    --------
    >>> import segmentum, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "sales.csv").write_text("cliente;fecha;importe\\nA1;05/03/2024;12,50\\n")
    >>> [r.accepted for r in segmentum.ingest("transactions", d / "sales.csv", warehouse="duckdb://")]
    [1]
    """
    if table not in INGESTIBLE:
        raise InputError(f"unknown table '{table}'", f"choose one of: {', '.join(INGESTIBLE)}")
    settings = (settings or load_settings()).with_overrides(
        date_order=date_order, decimal=decimal, duplicates=duplicates
    )
    progress = progress or Silent()
    wh = warehouse if isinstance(warehouse, Warehouse) else connect(warehouse or settings.warehouse)
    overrides = load_mapping_file(mapping) if isinstance(mapping, str | Path) else mapping
    paths = [Path(files)] if isinstance(files, str | Path) else [Path(f) for f in files]
    if not paths:
        raise InputError("no files given", "name at least one file to load")
    spec = INGESTIBLE[table]
    for t in (spec, QUARANTINE, INGEST_BATCHES):
        wh.ensure(t)
    removed = wh.recover([spec.name, QUARANTINE.name])
    if removed:
        progress.step("recovered", f"removed {removed:,} rows of an interrupted batch")
    opts = _Options(anonymous=anonymous, no_amount=no_amount)
    sources = [pair for path in paths for pair in readers.open_sources(wh, path, sheet)]
    reports = _ingest_files(wh, spec, sources, overrides, settings, progress, opts)
    if reports and spec.name in ("transactions", "customers"):
        match = id_match(wh)
        for r in reports:
            if not r.skipped:
                r.id_match = match.to_dict() if match else {}
        if match is not None and match.warning():
            reports[-1].warn(match.warning() or "", match.warning("es") or "")
    return reports


def _ingest_files(
    wh: Warehouse,
    spec: Table,
    sources: list[tuple[Path, str | None]],
    overrides: Mapping[str, str | None] | None,
    settings: Settings,
    progress: Progress,
    opts: _Options,
) -> list[IngestReport]:
    """Load every (file, sheet) not loaded before; same-shaped CSV files are read together.

    Reading and checking a file costs mostly fixed work (building and compiling one large
    query), so 300 daily exports read as one source load about as fast as one file holding
    their lines. Files read together commit together; each keeps its own batch, counts and
    quarantine rows. Tables whose newer rows replace stored ones load file by file, in order.
    """
    reports = [IngestReport(table=spec.name, file=str(p), sheet=sh) for p, sh in sources]
    shas = [readers.file_sha256(p, sh) for p, sh in sources]
    batches = wh.table(INGEST_BATCHES.name)
    seen = batches.filter((batches.table_name == spec.name) & batches.file_sha256.isin(shas))
    prior = {r["file_sha256"]: r for r in seen.to_pyarrow().to_pylist()}
    first: dict[str, int] = {}
    todo: list[int] = []
    for i, (report, sha) in enumerate(zip(reports, shas, strict=True)):
        if sha in prior:
            report.skipped = True
            report.batch_id = prior[sha]["batch_id"]
            report.warn(
                f"this content was already loaded as batch {report.batch_id} "
                f"on {prior[sha]['loaded_at']:%Y-%m-%d %H:%M}; nothing done",
                f"este contenido ya se cargó como lote {report.batch_id} "
                f"el {prior[sha]['loaded_at']:%d/%m/%Y %H:%M}; no se hizo nada",
            )
        elif sha in first:
            report.skipped = True
            report.warn(
                f"same content as {reports[first[sha]].file}, loaded in this run; nothing done",
                f"mismo contenido que {reports[first[sha]].file}, cargado en esta ejecución; no "
                "se hizo nada",
            )
        else:
            first[sha] = i
            todo.append(i)
    together = [
        i for i in todo if spec.name not in _UPSERT and readers.file_format(sources[i][0]) == "csv"
    ]
    for i in todo:
        if i not in together:
            p, sh = sources[i]
            progress.step("read", f"{p}" + (f" [{sh}]" if sh else ""))
            _load_source(
                wh,
                spec,
                readers.read(wh, p, sh),
                [reports[i]],
                [shas[i]],
                overrides,
                settings,
                progress,
                opts,
            )
    if together:
        index = {str(sources[i][0]): i for i in together}
        progress.step(
            "read",
            f"{len(together):,} CSV files" if len(together) > 1 else str(sources[together[0]][0]),
        )
        for raw in readers.read_csvs(wh, [sources[i][0] for i in together]):
            mine = [index[f] for f in raw.parts]
            try:
                _load_source(
                    wh,
                    spec,
                    raw,
                    [reports[i] for i in mine],
                    [shas[i] for i in mine],
                    overrides,
                    settings,
                    progress,
                    opts,
                )
            except InputError:
                if len(mine) == 1:
                    raise
                # A problem in the files as a whole (say, mixed date orders across them):
                # load them one by one so the error, if any, names its own file.
                for i in mine:
                    _load_source(
                        wh,
                        spec,
                        readers.read_csv(wh, sources[i][0]),
                        [reports[i]],
                        [shas[i]],
                        overrides,
                        settings,
                        progress,
                        opts,
                    )
    return reports


def _load_source(
    wh: Warehouse,
    spec: Table,
    raw: readers.RawSource,
    reports: list[IngestReport],
    shas: list[str],
    overrides: Mapping[str, str | None] | None,
    settings: Settings,
    progress: Progress,
    opts: _Options,
) -> None:
    """Load one source (a file, a sheet, or CSV files read together), then drop its copies."""
    for report in reports:
        report.fmt, report.encoding, report.delimiter = raw.fmt, raw.encoding, raw.delimiter
    first = reports[0]
    where = first.file + (f" [{first.sheet}]" if first.sheet else "")
    if len(reports) > 1:
        where += f" (and {len(reports) - 1} more files read with it)"
    try:
        _load(wh, spec, raw, reports, where, shas, overrides, settings, progress, opts)
    finally:
        for tmp in raw.cleanup:
            tmp.unlink(missing_ok=True)
        for name in raw.temp_tables:
            (raw.reader or wh).drop(name)


def _load(
    wh: Warehouse,
    spec: Table,
    raw: readers.RawSource,
    reports: list[IngestReport],
    where: str,
    shas: list[str],
    overrides: Mapping[str, str | None] | None,
    settings: Settings,
    progress: Progress,
    opts: _Options,
) -> list[IngestReport]:
    # Files read together share one mapping and one set of conventions: the first file's
    # report collects them and the others receive a copy before the counts are written.
    report = reports[0]
    columns = raw.columns
    mapping = auto_map(columns, spec, overrides)
    if spec.name == "transactions" and opts.no_amount:
        dropped = [mapping.pop(c) for c in ("amount", "unit_price", "discount") if c in mapping]
        if dropped:
            cols = ", ".join(repr(c) for c in dropped)
            report.warn(
                f"--no-amount: column(s) {cols} not loaded; leave out --no-amount to load the "
                "amounts",
                f"--no-amount: columna(s) {cols} no cargadas; quita --no-amount para cargar los "
                "importes",
            )
    missing = missing_required(mapping, spec)
    if spec.name == "transactions" and opts.no_amount:
        missing = [g for g in missing if "amount" not in g]
    if missing:
        no_amount_hint = (
            "; a log of purchases without amounts loads with --no-amount"
            if spec.name == "transactions" and any("amount" in g for g in missing)
            else ""
        )
        needed = [" or ".join(g) for g in missing]
        examples = "; ".join(
            f"{g[0]}: e.g. {', '.join(spec.column(g[0]).synonyms[:3])}" for g in missing
        )
        raise InputError(
            f"{where}: missing required column(s) {', '.join(needed)} for table '{spec.name}' "
            f"(the file has: {', '.join(columns)})",
            f"rename the column ({examples}) or pass --mapping with lines like "
            f"'{missing[0][0]}: \"Your Column\"'{no_amount_hint}",
        )
    report.mapping = dict(mapping)
    report.ignored_columns = [c for c in columns if c not in mapping.values()]
    if spec.name == "transactions":
        _check_customer_column(report, mapping, where, opts)
    n_rows = int(raw.table.count().execute())
    n_bad_lines = int(raw.malformed.shape[0])
    if n_rows == 0 and n_bad_lines == 0:
        raise InputError(f"{where}: the file has a header but no rows", "export the data again")

    rd = raw.reader or wh
    job = _FileIngest(rd, spec, raw, mapping, settings, report, opts)
    job._conventions = job.decide_conventions()
    progress.step("validate", where)
    # Typed columns (Parquet) are cheaper to read again than parsed rows are to write down
    # (writing every column of a 12M-line file's parse took longer than the parse): on
    # DuckDB each pass below (the keys that repeat, the rows that fail, the insert) reads
    # what it needs straight from the file. Text (CSV) costs more to parse than to write;
    # Spark would run the parse again as a job per pass; PostgreSQL cannot read the file:
    # there the parsed rows are written once. Lines without a line column read this way are
    # numbered apart, once, in a narrow table (job.numbered joins the numbers where a pass
    # needs them): numbering the parse by a window moved every parsed column through a sort.
    #
    # A first load of lines or events on DuckDB writes its parse once, as the table will
    # hold it (its columns, with the batch and the row, then the reasons to reject a row),
    # and the write keeps that table (the reasons dropped, the rejected rows deleted)
    # instead of copying every accepted row into the empty table (10.6 s of a 43 s load of
    # 12M lines of CSV). The checks' other columns (the first column at fault and its value,
    # which columns could not be read, the row's hash where the key finds the duplicates)
    # are computed again from the file for the rows that need them: written for every row,
    # they cost 1.9 s of 17.9 at 12M lines. Lines without a line column from Parquet are
    # numbered apart first, as when read directly (numbering the parse would sort every
    # column).
    adopt = (
        wh.engine == "duckdb"
        and rd is wh
        and len(reports) == 1
        and spec.name in ("transactions", "events")
        and wh.has(spec.name)
        and not int(wh.table(spec.name).count().execute())
    )
    reads_file = wh.engine == "duckdb" and rd is wh and raw.fmt == "parquet"
    direct = reads_file and not adopt
    job.defer_numbers = reads_file
    staged = job.staged(job._conventions[2])
    ids = [uuid.uuid4().hex[:12] for _ in reports]
    temps: list[str] = []
    if job.line_numbers is not None:
        temps.append(job.line_numbers.get_name())
    staging: str | None = None
    if direct:
        stage = staged
    elif adopt:
        own = wh.table(spec.name).schema()  # the empty table's own order and types
        lines = job.numbered(staged)
        body = lines.mutate(batch_id=ibis.literal(ids[0], "string"), source_row=lines._row)
        # The row's hash is kept where exact duplicates are found by it: hashing every
        # column of the file again cost more (a no-line Parquet file: 19 s -> 21.6 s).
        hashes = [] if job.duplicates_by_key else [c for c in staged.columns if c.startswith("_dk")]
        written = wh.staging_table(
            body.select(*(body[c].cast(t).name(c) for c, t in own.items()), "_reasons", *hashes),
            "ingest",
        )
        staging = written.get_name()
        temps.append(staging)
        stage = written.mutate(_row=written.source_row)
        job.parse = staged
        job.line_numbers = None  # the staging table holds them: nothing to join any more
    else:
        stage = rd.materialize(staged, "ingest")
        temps.append(stage.get_name())
        if rd is not wh:
            # Rows are parsed and checked where the file was read (regular expressions by
            # the hundred are what an embedded engine is fast at); the warehouse then
            # receives the checked rows and the source, and adds the checks against what it
            # already holds.
            adopted = wh.adopt(stage, "checked")
            rd.drop(stage.get_name())
            stage = adopted
            raw.table = wh.adopt(raw.table)
            temps = [stage.get_name(), raw.table.get_name()]
    try:
        rows, hit = job.repeat_rows(stage, wh)
        temps += [t.get_name() for t in (rows, hit) if t is not None]
        flagged = job.flagged(stage, rows, wh)
        temps.append(flagged.get_name())
        _refuse_unreadable_columns(stage, flagged, job, where)
        extra: ir.Table | None = None
        if rows is not None:
            extra = wh.materialize(job.repeats(flagged, rows, hit), "repeats")
            temps.append(extra.get_name())
        checked = wh.materialize(job.checked(flagged, extra), "checked")
        temps.append(checked.get_name())
        for other in reports[1:]:
            for f in dataclasses.fields(IngestReport):
                if f.name not in ("file", "sheet"):
                    setattr(other, f.name, copy.deepcopy(getattr(report, f.name)))
        read = (
            {0: n_rows}
            if "_file" not in raw.table.columns
            else {
                int(r["_file"]): int(r["n"])
                for r in raw.table.group_by("_file")
                .aggregate(n=raw.table.count())
                .to_pyarrow()
                .to_pylist()
            }
        )
        return _write(
            wh,
            spec,
            raw,
            stage,
            checked,
            read,
            reports,
            shas,
            progress,
            job.numbered,
            ids=ids,
            adopt=staging,
        )
    finally:
        for name in temps:
            wh.drop(name)


def _check_customer_column(
    report: IngestReport, mapping: Mapping[str, str], where: str, opts: _Options
) -> None:
    """A sales file whose customer column went unrecognised must not load as anonymous sales.

    Loaded silently, every sale would be anonymous and every customer would look like a
    one-off buyer of nothing; refusing costs the user one flag.
    """
    if "customer_id" in mapping:
        return
    if opts.anonymous:
        report.convention(
            "customer_id",
            "none: every sale loaded as anonymous (--anonymous)",
            "customer_id",
            "ninguno: todas las ventas se cargan como anónimas (--anonymous)",
        )
        return
    lookalikes = [c for c in report.ignored_columns if looks_like_customer(c)]
    if lookalikes:
        col = lookalikes[0]
        raise InputError(
            f"{where}: no customer id column recognised, but '{col}' looks like one",
            f"if '{col}' identifies the buyer, pass --mapping with the line "
            f"'customer_id: \"{col}\"'; if these sales really have no customer, pass --anonymous",
        )
    report.warn(
        "no customer id column: every sale is loaded as anonymous (it counts in revenue, not "
        "in any customer); pass --anonymous to say this is expected, or --mapping to name the "
        "column",
        "no hay columna de id de cliente: todas las ventas se cargan como anónimas (cuentan en "
        "los ingresos, no en ningún cliente); usa --anonymous para indicar que es lo esperado, "
        "o --mapping para nombrar la columna",
    )


def _note_duplicates(report: IngestReport, n_rows: int) -> None:
    """Say what "exact duplicate" meant, and warn when it caught a large share of the file."""
    cols = report.duplicate_columns
    if not report.duplicates or not cols:
        return
    report.convention(
        "exact duplicates",
        f"same value in all {len(cols)} columns of the file ({', '.join(cols)})",
        "duplicados exactos",
        f"mismo valor en las {len(cols)} columnas del fichero ({', '.join(cols)})",
    )
    if report.duplicates > _MANY_DUPLICATES * n_rows:
        share = report.duplicates / n_rows
        report.warn(
            f"{report.duplicates:,} of {n_rows:,} rows ({share:.0%}) repeat "
            f"an earlier row in every one of the file's {len(cols)} columns; if the export left "
            "out a column that tells them apart (an invoice, line or customer id), export it "
            "again with that column; --duplicates keep loads them as they are",
            f"{_n_es(report.duplicates)} de {_n_es(n_rows)} filas ({share * 100:.0f} %) repiten "
            f"una fila anterior en las {len(cols)} columnas del fichero; si la exportación omitió "
            "una columna que las distingue (un id de factura, de línea o de cliente), exporta "
            "de nuevo con esa columna; --duplicates keep las carga tal cual",
        )


# Columns only invoice lines carry: a customers file with two of them is an invoice export.
_INVOICE_COLUMNS = ("invoice_id", "quantity", "unit_price", "amount")


def _note_invoice_lines(report: IngestReport, n_rows: int, repeats: int) -> None:
    """Warn when a customers file looks like invoice lines: invoice columns among those it
    ignored (read from the header), or most rows repeating a customer id (counted already)."""
    sales = auto_map(report.ignored_columns, TRANSACTIONS)
    found = [sales[c] for c in _INVOICE_COLUMNS if c in sales]
    if len(found) < 2 and not (n_rows and repeats > n_rows / 2):
        return
    said_en, said_es = [], []
    if len(found) >= 2:
        names = ", ".join(found)
        said_en.append(f"it has invoice-line columns ({names})")
        said_es.append(f"tiene columnas de líneas de factura ({names})")
    if repeats:
        said_en.append(f"{repeats:,} of {n_rows:,} rows repeat a customer id")
        said_es.append(f"{_n_es(repeats)} de {_n_es(n_rows)} filas repiten un id de cliente")
    report.warn(
        "this looks like a file of invoice lines, not a customer list: "
        + "; ".join(said_en)
        + f"; load invoice lines with: segmentum ingest transactions {report.file} (a customers "
        "file has one row per customer)",
        "parece un fichero de líneas de factura, no una lista de clientes: "
        + "; ".join(said_es)
        + f"; carga las líneas de factura con: segmentum ingest transactions {report.file} (un "
        "fichero de clientes tiene una fila por cliente)",
    )


def _refuse_unreadable_columns(
    stage: ir.Table, flagged: ir.Table, job: _FileIngest, where: str
) -> None:
    """A column of which no value can be read is a wrong mapping, not a row problem.

    Every unreadable value is among the ``flagged`` rows; the other rows are read only for
    the columns that have unreadable values, to see whether any value of theirs was read.
    """
    flags = list(job._plan.typed)
    if not flags:
        return
    aggs = {}
    for c in flags:
        aggs[f"bad_{c}"] = flagged[f"_bad__{c}"].cast("int64").sum().fill_null(0)
        aggs[f"present_{c}"] = flagged[c].notnull().cast("int64").sum().fill_null(0)
        aggs[f"example_{c}"] = flagged._first_val.min(
            where=flagged[f"_bad__{c}"] & (flagged._first_col == c)
        )
    row = flagged.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    suspects = [c for c in flags if row[f"bad_{c}"] > 0 and row[f"present_{c}"] == 0]
    if not suspects:
        return
    present = (
        stage.aggregate(**{c: stage[c].notnull().cast("int64").sum() for c in suspects})
        .to_pyarrow()
        .to_pylist()[0]
    )
    for c in suspects:
        if not present[c]:
            kind = job.spec.column(c).kind
            raise InputError(
                f"{where}: column '{job.mapping[c]}' (mapped to {c}) holds no readable "
                f"{'number' if kind in ('number', 'integer') else kind} "
                f"(e.g. '{row[f'example_{c}']}')",
                "check the column mapping (--mapping) or the export format",
            )


# A few lines dated this long after all the others are most likely a mistyped year.
LATE_GAP_DAYS = 60


def _warn_late_lines(report: IngestReport, new: ir.Table, before: _dt.date | None) -> None:
    """Warn when a few of the loaded lines are dated long after all the others (a mistyped
    year: 2026-06-23 for 2025-06-23). Such a line is accepted (it is before the load day),
    and the next run would date the whole analysis from it: every customer would lapse.

    ``before``: the latest line stored before this load (None on a first load). Reads the
    load's newest lines (a top-N of one column, at most 1,001) for a gap of more than
    ``LATE_GAP_DAYS`` after which at most 3 lines, or 0.5% of the load, remain.
    """
    total = int(new.count().to_pyarrow().as_py())
    allowed = min(1000, max(3, int(0.005 * total)))
    dated = new.filter(new.timestamp.notnull())
    newest = dated.order_by(ibis.desc("timestamp")).limit(allowed + 1).timestamp
    points = [(t.date(), True) for t in newest.to_pyarrow().to_pylist()]
    if before is not None:
        points.append((before, False))  # the stored history
    points.sort(key=lambda p: p[0], reverse=True)
    for k in range(1, min(len(points), allowed + 1)):
        (d, loaded), (prev, _) = points[k - 1], points[k]
        if not loaded:  # the stored history is among the newest: nothing loaded stands out
            return
        if (d - prev).days > LATE_GAP_DAYS:  # newest first: d is the oldest of the late days
            first_late, last_late, gap = d, points[0][0], (d - prev).days
            report.warn(
                f"{k} line(s) dated {first_late} to {last_late} come {gap} days after every "
                f"other sale (the latest on {prev}): a mistyped year? The next run would date "
                "the analysis from them, and every customer would look lapsed; check them in "
                f"the file, or run with --as-of {prev + _dt.timedelta(days=1)}",
                f"{k} línea(s) con fecha del {first_late} al {last_late} llegan {gap} días "
                f"después de todas las demás ventas (la última, el {prev}): ¿un año mal "
                "escrito? La próxima ejecución fecharía el análisis a partir de ellas y todos "
                "los clientes parecerían perdidos; revísalas en el fichero, o ejecuta con "
                f"--as-of {prev + _dt.timedelta(days=1)}",
            )
            return


def _warn_unknown_respondents(wh: Warehouse, report: IngestReport, new: ir.Table) -> None:
    """Warn when answers come from ids that neither the customers nor the invoice lines know
    (a survey tool's own ids, a typo): they are kept, and count in the overall answers but in
    no segment, so the groups' numbers rest on fewer people than the file holds."""
    known = [
        wh.table(t).select(customer_id=wh.table(t).customer_id.cast("string"))
        for t in ("customers", "transactions")
        if wh.has(t)
    ]
    if not known:  # nothing to compare with yet (answers loaded first)
        return
    ids = known[0] if len(known) == 1 else known[0].union(known[1], distinct=False)
    who = new.filter(new.customer_id.notnull())
    who = who.select(customer_id=who.customer_id.cast("string"))
    unknown = who.anti_join(ids, "customer_id")
    row = (
        unknown.aggregate(
            answers=unknown.count(), ids=unknown.customer_id.nunique(), e=unknown.customer_id.min()
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    if not row["answers"]:
        return
    n, people, example = int(row["answers"]), int(row["ids"]), row["e"]
    answers = (
        (f"{n} answer" if n == 1 else f"{n:,} answers")
        + f" from {people:,} id"
        + ("" if people == 1 else "s")
    )
    respuestas = (f"{n} respuesta" if n == 1 else f"{_n_es(n)} respuestas") + (
        f" de {_n_es(people)} id" + ("" if people == 1 else "s")
    )
    report.warn(
        f"{answers} that {'is' if people == 1 else 'are'} neither in the customers nor in the "
        f"invoice lines (e.g. '{example}'): kept, they count in the overall answers and in no "
        "segment; check that the survey export uses your customer ids",
        f"{respuestas} que no {'está' if people == 1 else 'están'} ni en los clientes ni en "
        f"las líneas de factura (por ejemplo, '{example}'): se guardan y cuentan en el total "
        "de respuestas, en ningún segmento; comprueba que la exportación de la encuesta usa "
        "tus ids de cliente",
    )


def _write(
    wh: Warehouse,
    spec: Table,
    raw: readers.RawSource,
    stage: ir.Table,
    checked: ir.Table,
    read: Mapping[int, int],
    reports: list[IngestReport],
    shas: list[str],
    progress: Progress,
    numbered: Callable[[ir.Table], ir.Table] = lambda t: t,
    *,
    ids: list[str],
    adopt: str | None = None,
) -> list[IngestReport]:
    """Write accepted rows, quarantine and one batch per file of the source, all or nothing.

    ``stage`` holds every parsed row; ``checked`` those that may be rejected, with their final
    reasons (:meth:`_FileIngest.checked`); every row of ``stage`` outside ``checked`` is
    accepted as it is. ``read``: rows read per file (``_file``). ``ids``: the batch of each
    file. ``adopt``: the staging table that ``stage`` reads, shaped like the empty table
    ``spec`` (see :func:`_load`), which becomes it, less the rejected rows.
    """
    for r, bid in zip(reports, ids, strict=True):
        r.batch_id = bid
    # Files read together commit together; the first file's batch names the transaction.
    report, batch_id = reports[0], ids[0]
    files: ir.Table | None = None
    on = _row_key(stage)

    def with_batch(t: ir.Table) -> ir.Table:
        if files is None:
            # One file: its batch and name are constants, not a join.
            return t.mutate(
                _file=ibis.literal(0, "int64"),
                _batch_id=ibis.literal(batch_id, "string"),
                _file_name=ibis.literal(raw.parts[0], "string"),
            )
        return t.join(files, "_file")

    if "_file" in stage.columns:
        files = wh.from_arrow(
            pa.table(
                {
                    "_file": pa.array(range(len(ids)), pa.int64()),
                    "_batch_id": ids,
                    "_file_name": raw.parts,
                }
            ),
            "files",
        )
    few = with_batch(checked)
    ok = few._reasons == ""
    counted = (
        few.group_by("_file")
        .aggregate(
            rows=few.count(),
            quarantined=(~ok).cast("int64").sum().fill_null(0),
            duplicates=few._dup.cast("int64").sum().fill_null(0),
            loaded=few._loaded.cast("int64").sum().fill_null(0),
        )
        .to_pyarrow()
        .to_pylist()
    )
    by_file = {int(r["_file"]): r for r in counted}
    canonical = [c.name for c in spec.columns]

    def lines(t: ir.Table) -> ir.Table:
        return t.select(*canonical, batch_id=t._batch_id, source_row=t._row).cast(spec.ibis_schema)

    # The rows outside ``checked`` are accepted as parsed; of those in it, the ones that
    # passed every check (the first of a group of repeats).
    n_few = sum(int(c["rows"]) for c in counted)
    # ``numbered``: line numbers assigned apart join the rows written (the checked rows have
    # theirs already).
    accepted = lines(with_batch(numbered(stage if not n_few else stage.anti_join(checked, on))))
    if n_few > sum(int(c["quarantined"]) for c in counted):
        accepted = accepted.union(lines(few.filter(ok)), distinct=False)
    # The raw text of rejected rows is rebuilt from the source by row number: carrying it for
    # every row through the checks would cost memory for rows that are accepted anyway.
    # Those rows are picked first: the text of every row was built and then joined (8 s for
    # four rejected rows of a 12M-line file).
    bad = few.filter(~ok)
    source = raw.table
    src_file = source._file if "_file" in source.columns else ibis.literal(0, "int64")
    keys = bad.select(_k_row=bad._row, _k_file=bad._file)
    source = source.semi_join(keys, [source._row == keys._k_row, src_file == keys._k_file])
    source_json = source.select(
        _src_row=source._row,
        _src_file=source._file if "_file" in source.columns else ibis.literal(0, "int64"),
        _raw=_raw_json(source, raw.columns),
    )
    bad = bad.join(
        source_json, (bad._row == source_json._src_row) & (bad._file == source_json._src_file)
    )
    rejected = bad.select(
        batch_id=bad._batch_id,
        table_name=ibis.literal(spec.name),
        file=bad._file_name,
        source_row=bad._row,
        column=bad._first_col,
        value=bad._first_val,
        reason=bad._reasons.re_replace(r";\s*$", ""),
        raw=bad._raw,
    ).cast(QUARANTINE.ibis_schema)
    malformed_lines = raw.malformed
    bad_lines = malformed_lines.groupby("part").size().to_dict() if malformed_lines.shape[0] else {}
    any_bad = any(int(c["quarantined"]) for c in counted)
    why = (
        bad.group_by(bad._file, reason=bad._reasons.re_replace(r";\s*$", ""))
        .aggregate(n=bad.count())
        .to_pyarrow()
        .to_pylist()
        if any_bad
        else []
    )
    for i, r in enumerate(reports):
        c = by_file.get(i, {})
        n_rows, n_bad = int(read.get(i, 0)), int(bad_lines.get(i, 0))
        r.rows_read = n_rows + n_bad
        r.quarantined = int(c.get("quarantined", 0)) + n_bad
        r.accepted = n_rows - int(c.get("quarantined", 0))
        r.duplicates, r.already_loaded = int(c.get("duplicates", 0)), int(c.get("loaded", 0))
        _note_duplicates(r, n_rows)
        # Most rows first; ties by reason, so every engine lists them in the same order.
        mine = sorted(
            (w for w in why if w["_file"] == i), key=lambda w: (-int(w["n"]), str(w["reason"]))
        )
        r.reasons = {w["reason"]: int(w["n"]) for w in mine[:10]}
        if spec.name == "customers":
            repeats = sum(int(w["n"]) for w in mine if "customer_id repeats row" in w["reason"])
            _note_invoice_lines(r, n_rows, repeats)
        if n_bad:
            r.reasons["malformed line (wrong number of fields or bad quoting)"] = n_bad
    replace_by = _replaced_by(spec, accepted)
    if len(reports) == 1 and replace_by and wh.has(spec.name) and report.accepted:
        stored = wh.table(spec.name).select(*replace_by)
        same = [accepted[k].identical_to(stored[k]) for k in replace_by]
        report.updated = int(accepted.semi_join(stored, same).count().execute())

    malformed = _malformed_rows(raw, ids, spec.name)
    touched = [spec.name, QUARANTINE.name, INGEST_BATCHES.name]
    progress.step("write", f"{sum(r.accepted for r in reports):,} rows")
    # On a first load the batch is the whole table: no filter on the batch to read it back.
    first = spec.name in ("transactions", "events") and not int(
        wh.table(spec.name).count().execute()
    )
    before: _dt.date | None = None
    if spec.name == "transactions" and not first:
        latest = wh.table(spec.name).timestamp.max().to_pyarrow().as_py()
        before = latest.date() if latest is not None else None
    with wh.batch(touched, batch_id):
        if report.updated:
            wh.delete_keys(spec.name, accepted, replace_by, empty_matches=not spec.key)
        if adopt:
            gone = (
                wh.materialize(few.filter(~ok).select(_gone=few._row), "gone") if any_bad else None
            )
            try:
                wh.become(adopt, spec.name, gone)
            finally:
                if gone is not None:
                    wh.drop(gone.get_name())
        else:
            wh.insert(spec.name, accepted)
        # What follows reads the batch's rows as stored (a scan of a few columns of the new
        # rows), not the parse of the file again.
        target = wh.table(spec.name)
        new = target if first else target.filter(target.batch_id.isin(ids))
        if spec.name in ("transactions", "events") and "customer_id" in stage.columns:
            nameless = new.filter(new.customer_id.isnull())
            anonymous = {
                r["batch_id"]: int(r["n"])
                for r in nameless.group_by("batch_id")
                .aggregate(n=nameless.count())
                .to_pyarrow()
                .to_pylist()
            }
            for r in reports:
                r.anonymous = anonymous.get(r.batch_id or "", 0)
        if spec.name == "responses":
            _warn_unknown_respondents(wh, report, new)
        if spec.name == "transactions":
            _warn_late_lines(report, new, before)
            # Returns are linked to their purchases and the purchase-day rollup follows the
            # lines, in the same transaction.
            linked = returns.update_links(wh, new, batch_id, whole=first)
            try:
                rollup.absorb(wh, new, relinked=linked.customers)
            finally:
                linked.drop(wh)
            report.return_lines, report.returns_linked = linked.return_lines, linked.linked
            for en, es in linked.warnings():
                report.warn(en, es)
        if any_bad:
            wh.insert(QUARANTINE.name, rejected)
        if malformed is not None:
            wh.insert(QUARANTINE.name, malformed)
        # Listeners may stop here (tests kill the process) to prove the batch is all-or-nothing.
        progress.step("before_commit", batch_id)
        batch = wh.from_arrow(_batch_rows(reports, ids, spec, shas), "batch")
        wh.insert(INGEST_BATCHES.name, batch.cast(INGEST_BATCHES.ibis_schema))
    wh.drop(batch.get_name())  # a temporary table: it stayed until the connection closed
    if files is not None:
        wh.drop(files.get_name())
    accepted_n, quarantined_n = (
        sum(getattr(r, k) for r in reports) for k in ("accepted", "quarantined")
    )
    progress.step("done", f"{accepted_n:,} accepted, {quarantined_n:,} quarantined")
    return reports


def _batch_rows(
    reports: list[IngestReport], ids: list[str], spec: Table, shas: list[str]
) -> pa.Table:
    """The ``ingest_batches`` rows of one write, one per file."""
    now = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    return pa.table(
        {
            "batch_id": ids,
            "table_name": [spec.name] * len(ids),
            "file": [r.file for r in reports],
            "sheet": pa.array([r.sheet for r in reports], pa.string()),
            "file_sha256": shas,
            "loaded_at": pa.array([now] * len(ids), pa.timestamp("us")),
            "rows_read": [r.rows_read for r in reports],
            "accepted": [r.accepted for r in reports],
            "quarantined": [r.quarantined for r in reports],
            "anonymous": [r.anonymous for r in reports],
            "duplicates": [r.duplicates for r in reports],
            "already_loaded": [r.already_loaded for r in reports],
        }
    )


def _malformed_rows(raw: readers.RawSource, ids: list[str], table: str) -> pd.DataFrame | None:
    """Lines the reader set aside, each with its own file's batch."""
    m = raw.malformed
    if not m.shape[0]:
        return None
    part = m["part"].astype("int64")
    return pd.DataFrame(
        {
            "batch_id": part.map(dict(enumerate(ids))),
            "table_name": table,
            "file": part.map(dict(enumerate(raw.parts))),
            "source_row": m["line"].astype("int64"),
            "column": None,
            "value": None,
            "reason": "malformed line: " + m["error_message"].astype(str).str.slice(0, 200),
            "raw": m["csv_line"].astype(str),
        }
    ).astype({"column": "string", "value": "string"})
