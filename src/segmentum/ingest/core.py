"""Load user files into the canonical tables: map, parse, validate, quarantine, write atomically.

Every row read ends up in exactly one place: the target table or the ``quarantine`` table with
its reasons, so ``read = accepted + quarantined`` holds for every batch. All parsing and checking
runs in the engine as one Ibis expression per file; only counts and small samples come back.
"""

from __future__ import annotations

import datetime as _dt
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
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
from segmentum.ingest import parsers, readers
from segmentum.ingest.mapping import auto_map, load_mapping_file, missing_required
from segmentum.progress import Progress, Silent
from segmentum.schema import (
    INGEST_BATCHES,
    INGESTIBLE,
    QUARANTINE,
    Column,
    Table,
)
from segmentum.warehouse import Warehouse, connect

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# Tables whose rows describe an entity: a newer row for the same key replaces the stored one.
_UPSERT = {"customers", "products", "prospects", "campaign_results"}


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
    skipped: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    conventions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.accepted + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "balanced": self.balanced
        }


@dataclass
class _Check:
    """One thing that can be wrong with a row: where, why, and the offending text."""

    column: str
    bad: ir.BooleanValue
    message: str
    value: ir.StringValue


@dataclass
class _Plan:
    """The parsed columns and the checks of one file, ready to be evaluated together."""

    values: dict[str, ir.Value]
    checks: list[_Check]
    typed: dict[str, ir.BooleanValue]  # per-column "unreadable" flags, for whole-column errors


# ------------------------------------------------------------------------------- helpers
def _as_text(v: ir.Value) -> ir.StringValue:
    return v if v.type().is_string() else v.cast("string")


def _zone_offsets(tz: str, start: _dt.date, end: _dt.date) -> pa.Table:
    """Minutes to add to UTC to get the business time zone, per UTC date (noon)."""
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {tz!r}", "use an IANA name such as Europe/Madrid or UTC"
        ) from exc
    days = (end - start).days + 1
    dates = [start + _dt.timedelta(days=i) for i in range(max(days, 0))]
    offsets = []
    for d in dates:
        noon = _dt.datetime(d.year, d.month, d.day, 12, tzinfo=_dt.UTC)
        delta = noon.astimezone(zone).utcoffset() or _dt.timedelta(0)
        offsets.append(int(delta.total_seconds() // 60))
    return pa.table({"_utc_date": pa.array(dates, pa.date32()), "_zone_min": offsets})


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
    ) -> None:
        self.wh, self.spec, self.raw, self.mapping = wh, spec, raw, mapping
        self.settings, self.report = settings, report
        self.t = raw.table
        self._conventions: tuple[dict[str, str], dict[str, str], bool] = ({}, {}, False)
        self._plan = _Plan({}, [], {})
        self._offsets: dict[str, ir.IntegerValue] = {}

    # ---------------------------------------------------------------- conventions
    def decide_conventions(self) -> tuple[dict[str, str], dict[str, str], bool]:
        """Decimal separator per number column, date order per date column, any UTC offsets."""
        aggs: dict[str, ir.Scalar] = {}
        number_cols, date_cols = [], []
        for name, src in self.mapping.items():
            kind = self.spec.column(name).kind
            col = self.t[src]
            if kind in ("number", "integer") and col.type().is_string():
                comma, dot = parsers.decimal_evidence(col)
                aggs[f"{name}__comma"], aggs[f"{name}__dot"] = comma, dot
                number_cols.append(name)
            if kind in ("date", "timestamp") and col.type().is_string():
                for k, v in parsers.date_evidence(col).items():
                    aggs[f"{name}__{k}"] = v
                aggs[f"{name}__offsets"] = (
                    col.strip().re_search(parsers._OFFSET).cast("int64").sum().fill_null(0)
                )
                date_cols.append(name)
        row: dict[str, Any] = {}
        if aggs:
            row = self.t.aggregate(**aggs).to_pyarrow().to_pylist()[0]

        decimals: dict[str, str] = {}
        if self.settings.decimal != "auto":
            decimals = {c: self.settings.decimal for c in number_cols}
        else:
            total_comma = sum(int(row[f"{c}__comma"]) for c in number_cols)
            total_dot = sum(int(row[f"{c}__dot"]) for c in number_cols)
            file_default = parsers.decide_decimal(total_comma, total_dot, ".")
            for c in number_cols:
                comma, dot = int(row[f"{c}__comma"]), int(row[f"{c}__dot"])
                decimals[c] = parsers.decide_decimal(comma, dot, file_default)
                if comma and dot:
                    self.report.warnings.append(
                        f"column '{self.mapping[c]}' mixes decimal conventions ({dot} values read "
                        f"with '.', {comma} with ','); reading '{decimals[c]}' as the decimal "
                        "separator, the others are quarantined (set --decimal to choose)"
                    )
        for c, d in decimals.items():
            self.report.conventions[c] = f"decimal '{d}'"

        orders: dict[str, str] = {}
        any_offset = False
        for c in date_cols:
            any_offset |= int(row[f"{c}__offsets"]) > 0
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
                    self.report.warnings.append(
                        f"column '{self.mapping[c]}': all {amb} dates like 03/04/2024 read both "
                        f"ways; assumed {'day' if orders[c] == 'dmy' else 'month'} first "
                        "(override with --date-order)"
                    )
            if amb or dayf or monthf:
                fmt = "dd/mm/yyyy" if orders[c] == "dmy" else "mm/dd/yyyy"
                self.report.conventions[c] = f"dates {fmt} ({label})"
        return decimals, orders, any_offset

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
            value, bad, message = self._parse(col, self.t[src], decimals, orders)
            values[col.name] = value
            if bad is not None:
                text = _as_text(self.t[src])
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
                ts: ir.Value = v.cast("timestamp")
                bad = ibis.literal(False)
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

        if name == "transactions":
            required("timestamp")
            qty, price, amount = values["quantity"], values["unit_price"], values["amount"]
            disc = values["discount"].fill_null(0)
            sign = ibis.ifelse(amount < 0, -1.0, 1.0)
            qty = qty.fill_null(sign) if "quantity" in m else sign
            is_return = (qty < 0) | (amount < 0).fill_null(False)
            qty = ibis.ifelse(is_return, -qty.abs(), qty)
            if "amount" in m:
                amount = ibis.ifelse(is_return, -amount.abs(), amount)
                if "unit_price" not in m:
                    price = ibis.ifelse(qty != 0, (amount + disc) / qty, ibis.null("float64"))
                checks.append(_Check("amount", amount.isnull(), "is missing", empty))
            else:
                amount = ibis.ifelse(is_return, -1, 1) * (qty.abs() * price - disc)
                checks.append(_Check("unit_price", price.isnull(), "is missing", empty))
            checks.append(
                _Check("unit_price", (price < 0).fill_null(False), "is negative", _as_text(price))
            )
            checks.append(_Check("quantity", (qty == 0).fill_null(False), "is zero", _as_text(qty)))
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
                        _as_text(age),
                    )
                )
            if "birth_date" in m:
                bd = values["birth_date"]
                checks.append(
                    _Check(
                        "birth_date",
                        (bd > ibis.today()).fill_null(False),
                        "is in the future",
                        _as_text(bd),
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
                        _as_text(g),
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
        # Layer 0: date/time text split into integer parts, one column each.
        texts = {
            name: src
            for name, src in self.mapping.items()
            if self.spec.column(name).kind in ("date", "timestamp")
            and self.t[src].type().is_string()
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

        l1 = base.select(
            _row=base._row.cast("int64"),
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
            _row=l1._row,
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
            ibis.cases(*((f, l2[f"_w{i}"]) for i, f in enumerate(flags)), else_=none)
            if checks
            else none
        )
        expr = l2.select(
            "_row",
            *[name for name in values],
            _reasons=reasons,
            _first_col=first_col,
            _first_val=first_val,
            **{f"_bad__{k}": l2[f"_c{i}"] for k, i in typed_index.items()},
        )
        return self._add_duplicate_checks(expr)

    def _apply_offsets(
        self, values: dict[str, ir.Value], base: ir.Table
    ) -> tuple[dict[str, ir.Value], ir.Table]:
        """Timestamps written with a UTC offset move to the business time zone."""
        tz = self.settings.timezone
        utc = {k: values[k] - off.fill_null(0).as_interval("m") for k, off in self._offsets.items()}
        if tz.upper() == "UTC":
            for k, v in utc.items():
                values[k] = ibis.ifelse(self._offsets[k].notnull(), v, values[k])
            return values, base
        bounds_expr = base.aggregate(
            **{f"lo_{k}": v.date().min() for k, v in utc.items()},
            **{f"hi_{k}": v.date().max() for k, v in utc.items()},
        )
        bounds = bounds_expr.to_pyarrow().to_pylist()[0]
        los = [d for k, d in bounds.items() if k.startswith("lo_") and d is not None]
        his = [d for k, d in bounds.items() if k.startswith("hi_") and d is not None]
        if not los:
            return values, base
        zones = self.wh.from_arrow(_zone_offsets(tz, min(los), max(his)), "zones")
        for k, v in utc.items():
            alias = zones.rename(**{f"_utc_date_{k}": "_utc_date", f"_zone_min_{k}": "_zone_min"})
            base = base.mutate(**{f"_utc_{k}": v})
            base = base.left_join(alias, base[f"_utc_{k}"].date() == alias[f"_utc_date_{k}"])
        for k in utc:
            local = base[f"_utc_{k}"] + base[f"_zone_min_{k}"].fill_null(0).as_interval("m")
            values[k] = ibis.ifelse(self._offsets[k].notnull(), local, values[k])
        return values, base

    def _add_duplicate_checks(self, s: ir.Table) -> ir.Table:
        """Exact duplicates, repeated keys, and (for invoice lines) keys already stored."""
        spec, policy = self.spec, self.settings.duplicates
        mapped = list(self.mapping)
        if spec.name == "transactions" and "line" not in self.mapping:
            w = ibis.window(group_by=s.invoice_id, order_by=s._row)
            s = s.mutate(line=(ibis.row_number().over(w) + 1).cast("int64"))
        content = [c for c in mapped if c in s.columns]
        # Window results become columns once, then are referenced (not recomputed) below.
        part: list[ir.Value] = [s[c] for c in content]
        if self.wh.engine == "duckdb":
            # One 64-bit hash of the content partitions several times faster than every
            # column. Two different rows match only on a hash collision (about 3 in a million
            # for a 10M-row file), and even then the row is quarantined, not lost.
            part = [ibis.struct({c: s[c] for c in content}).hash()]
        s = s.mutate(_first_same=s._row.min().over(ibis.window(group_by=part)))
        exact = s._first_same != s._row
        reason = s._reasons
        if policy == "quarantine":
            reason = reason + ibis.ifelse(
                exact,
                ibis.literal("exact duplicate of row ") + s._first_same.cast("string") + "; ",
                "",
            )
        s = s.mutate(_dup=exact)
        key = list(spec.key)
        # Line numbers we assign ourselves are unique within an invoice: no need to check them.
        own_keys = spec.name == "transactions" and "line" not in self.mapping
        if key and all(k in s.columns for k in key) and not own_keys:
            s = s.mutate(_first_key=s._row.min().over(ibis.window(group_by=[s[k] for k in key])))
            repeated = (s._first_key != s._row) & ~s._dup
            reason = reason + ibis.ifelse(
                repeated,
                ibis.literal(f"{'/'.join(key)} repeats row ") + s._first_key.cast("string") + "; ",
                "",
            )
        return s.mutate(_reasons=reason)

    def mark_stored(self, s: ir.Table, wh: Warehouse) -> ir.Table:
        """Invoice lines the warehouse already holds (``_loaded``), and the column at fault.

        Separate from the other checks because it reads the warehouse, which need not be the
        engine that parsed the file.
        """
        spec = self.spec
        key = list(spec.key)
        s = s.mutate(_loaded=ibis.literal(False))
        if spec.name == "transactions" and int(wh.table(spec.name).count().execute()) > 0:
            stored = wh.table(spec.name).select(*key).distinct().mutate(_hit=ibis.literal(True))
            s = s.left_join(stored, key).drop(
                [f"{k}_right" for k in key if f"{k}_right" in s.columns]
            )
            s = s.mutate(
                _loaded=s._hit.fill_null(False),
                _reasons=s._reasons
                + ibis.ifelse(s._hit.fill_null(False), "already in the warehouse; ", ""),
            ).drop("_hit")
        first_col = ibis.ifelse(
            s._first_col.isnull() & (s._reasons != ""),
            ibis.ifelse(s._loaded, key[0] if key else "row", "row"),
            s._first_col,
        )
        return s.mutate(
            _first_col=first_col,
        )


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
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Load files into the canonical table ``table``, one atomic batch per file (or sheet).

    Parameters
    ----------
    table
        ``customers``, ``transactions``, ``events``, ``products``, ``prospects`` or
        ``campaign_results``.
    files
        CSV, Parquet, Excel (.xlsx, every sheet unless ``sheet`` is given) or JSON-lines files.
    warehouse
        An open :class:`~segmentum.warehouse.Warehouse` or a URL (default from settings).
    mapping
        Canonical column -> column in the file, or a YAML/TOML file with those pairs.
    date_order, decimal, duplicates
        Override the settings of the same name for this call.

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
        progress.step("recovered", f"removed {removed} rows of an interrupted batch")
    reports = []
    for path in paths:
        for p, sh in readers.open_sources(wh, path, sheet):
            reports.append(_ingest_one(wh, spec, p, sh, overrides, settings, progress))
    return reports


def _ingest_one(
    wh: Warehouse,
    spec: Table,
    path: Path,
    sheet: str | None,
    overrides: Mapping[str, str | None] | None,
    settings: Settings,
    progress: Progress,
) -> IngestReport:
    report = IngestReport(table=spec.name, file=str(path), sheet=sheet)
    where = f"{path}" + (f" [{sheet}]" if sheet else "")
    sha = readers.file_sha256(path, sheet)
    batches = wh.table(INGEST_BATCHES.name)
    seen = batches.filter((batches.table_name == spec.name) & (batches.file_sha256 == sha))
    prior = seen.limit(1).to_pyarrow().to_pylist()
    if prior:
        report.skipped = True
        report.batch_id = prior[0]["batch_id"]
        report.warnings.append(
            f"this content was already loaded as batch {report.batch_id} "
            f"on {prior[0]['loaded_at']:%Y-%m-%d %H:%M}; nothing done"
        )
        return report

    progress.step("read", where)
    raw = readers.read(wh, path, sheet)
    report.fmt, report.encoding, report.delimiter = raw.fmt, raw.encoding, raw.delimiter
    try:
        return _load(wh, spec, raw, report, where, sha, overrides, settings, progress)
    finally:
        for tmp in raw.cleanup:
            tmp.unlink(missing_ok=True)
        for name in raw.temp_tables:
            (raw.reader or wh).drop(name)


def _load(
    wh: Warehouse,
    spec: Table,
    raw: readers.RawSource,
    report: IngestReport,
    where: str,
    sha: str,
    overrides: Mapping[str, str | None] | None,
    settings: Settings,
    progress: Progress,
) -> IngestReport:
    columns = raw.columns
    mapping = auto_map(columns, spec, overrides)
    missing = missing_required(mapping, spec)
    if missing:
        needed = [" or ".join(g) for g in missing]
        examples = "; ".join(
            f"{g[0]}: e.g. {', '.join(spec.column(g[0]).synonyms[:3])}" for g in missing
        )
        raise InputError(
            f"{where}: missing required column(s) {', '.join(needed)} for table '{spec.name}' "
            f"(the file has: {', '.join(columns)})",
            f"rename the column ({examples}) or pass --mapping with lines like "
            f"'{missing[0][0]}: \"Your Column\"'",
        )
    report.mapping = dict(mapping)
    report.ignored_columns = [c for c in columns if c not in mapping.values()]
    n_rows = int(raw.table.count().execute())
    n_bad_lines = int(raw.malformed.shape[0])
    if n_rows == 0 and n_bad_lines == 0:
        raise InputError(f"{where}: the file has a header but no rows", "export the data again")

    rd = raw.reader or wh
    job = _FileIngest(rd, spec, raw, mapping, settings, report)
    job._conventions = job.decide_conventions()
    progress.step("validate", where)
    staged = job.staged(job._conventions[2])
    moved: list[str] = []
    if rd is wh:
        stage = wh.materialize(job.mark_stored(staged, wh), "ingest")
    else:
        # Rows are parsed and checked where the file was read (regular expressions by the
        # hundred are what an embedded engine is fast at); the warehouse then receives the
        # checked rows and the source, and adds the checks against what it already holds.
        checked = rd.materialize(staged, "ingest")
        adopted = wh.adopt(checked, "checked")
        rd.drop(checked.get_name())
        stage = wh.materialize(job.mark_stored(adopted, wh), "ingest")
        wh.drop(adopted.get_name())
        raw.table = wh.adopt(raw.table)
        moved.append(raw.table.get_name())
    try:
        _refuse_unreadable_columns(stage, job, where)
        return _write(wh, spec, raw, stage, report, sha, n_rows, n_bad_lines, progress)
    finally:
        for name in [stage.get_name(), *moved]:
            wh.drop(name)


def _refuse_unreadable_columns(stage: ir.Table, job: _FileIngest, where: str) -> None:
    """A column of which no value can be read is a wrong mapping, not a row problem."""
    flags = list(job._plan.typed)
    if not flags:
        return
    aggs = {}
    for c in flags:
        aggs[f"bad_{c}"] = stage[f"_bad__{c}"].cast("int64").sum().fill_null(0)
        aggs[f"present_{c}"] = stage[c].notnull().cast("int64").sum().fill_null(0)
        aggs[f"example_{c}"] = stage._first_val.min(
            where=stage[f"_bad__{c}"] & (stage._first_col == c)
        )
    row = stage.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    for c in flags:
        if row[f"bad_{c}"] > 0 and row[f"present_{c}"] == 0:
            kind = job.spec.column(c).kind
            raise InputError(
                f"{where}: column '{job.mapping[c]}' (mapped to {c}) holds no readable "
                f"{'number' if kind in ('number', 'integer') else kind} "
                f"(e.g. '{row[f'example_{c}']}')",
                "check the column mapping (--mapping) or the export format",
            )


def _write(
    wh: Warehouse,
    spec: Table,
    raw: readers.RawSource,
    stage: ir.Table,
    report: IngestReport,
    sha: str,
    n_rows: int,
    n_bad_lines: int,
    progress: Progress,
) -> IngestReport:
    batch_id = uuid.uuid4().hex[:12]
    report.batch_id = batch_id
    ok = stage._reasons == ""
    has_cid = "customer_id" in stage.columns
    counts = (
        stage.aggregate(
            quarantined=(~ok).cast("int64").sum().fill_null(0),
            duplicates=stage._dup.cast("int64").sum().fill_null(0),
            loaded=stage._loaded.cast("int64").sum().fill_null(0),
            anonymous=(ok & stage.customer_id.isnull()).cast("int64").sum().fill_null(0)
            if has_cid and spec.name in ("transactions", "events")
            else ibis.literal(0, "int64"),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    canonical = [c.name for c in spec.columns]
    accepted = (
        stage.filter(ok)
        .select(*canonical, batch_id=ibis.literal(batch_id), source_row=stage._row)
        .cast(spec.ibis_schema)
    )
    # The raw text of rejected rows is rebuilt from the source by row number: carrying it for
    # every row through the checks would cost memory for rows that are accepted anyway.
    source = raw.table
    source_json = source.select(_src_row=source._row, _raw=_raw_json(source, raw.columns))
    bad = stage.filter(~ok)
    bad = bad.join(source_json, bad._row == source_json._src_row)
    rejected = bad.select(
        batch_id=ibis.literal(batch_id),
        table_name=ibis.literal(spec.name),
        file=ibis.literal(raw.file),
        source_row=bad._row,
        column=bad._first_col,
        value=bad._first_val,
        reason=bad._reasons.re_replace(r";\s*$", ""),
        raw=bad._raw,
    ).cast(QUARANTINE.ibis_schema)
    report.rows_read = n_rows + n_bad_lines
    report.quarantined = int(counts["quarantined"]) + n_bad_lines
    report.accepted = n_rows - int(counts["quarantined"])
    report.duplicates, report.already_loaded = int(counts["duplicates"]), int(counts["loaded"])
    report.anonymous = int(counts["anonymous"])
    if spec.name in _UPSERT and wh.has(spec.name) and report.accepted:
        stored = wh.table(spec.name).select(*spec.key)
        report.updated = int(accepted.semi_join(stored, list(spec.key)).count().execute())
    reasons = (
        rejected.group_by(rejected.reason)
        .aggregate(n=rejected.count())
        .order_by(ibis.desc("n"))
        .limit(10)
    )
    report.reasons = {r["reason"]: int(r["n"]) for r in reasons.to_pyarrow().to_pylist()}
    if n_bad_lines:
        report.reasons["malformed line (wrong number of fields or bad quoting)"] = n_bad_lines

    batch_row = pa.table(
        {
            "batch_id": [batch_id],
            "table_name": [spec.name],
            "file": [raw.file],
            "sheet": pa.array([raw.sheet], pa.string()),
            "file_sha256": [sha],
            "loaded_at": pa.array(
                [_dt.datetime.now(_dt.UTC).replace(tzinfo=None)], pa.timestamp("us")
            ),
            "rows_read": [report.rows_read],
            "accepted": [report.accepted],
            "quarantined": [report.quarantined],
            "anonymous": [report.anonymous],
            "duplicates": [report.duplicates],
            "already_loaded": [report.already_loaded],
        }
    )
    malformed = _malformed_rows(raw, batch_id, spec.name)
    touched = [spec.name, QUARANTINE.name, INGEST_BATCHES.name]
    progress.step("write", f"{report.accepted} rows")
    with wh.batch(touched, batch_id):
        if report.updated:
            wh.delete_keys(spec.name, accepted, spec.key)
        wh.insert(spec.name, accepted)
        if spec.name == "transactions":
            # The purchase-day rollup follows the lines in the same transaction.
            rollup.absorb(wh, accepted)
        wh.insert(QUARANTINE.name, rejected)
        if malformed is not None:
            wh.insert(QUARANTINE.name, malformed)
        # Listeners may stop here (tests kill the process) to prove the batch is all-or-nothing.
        progress.step("before_commit", batch_id)
        wh.insert(
            INGEST_BATCHES.name, wh.from_arrow(batch_row, "batch").cast(INGEST_BATCHES.ibis_schema)
        )
    progress.step("done", f"{report.accepted} accepted, {report.quarantined} quarantined")
    return report


def _malformed_rows(raw: readers.RawSource, batch_id: str, table: str) -> pd.DataFrame | None:
    m = raw.malformed
    if not m.shape[0]:
        return None
    return pd.DataFrame(
        {
            "batch_id": batch_id,
            "table_name": table,
            "file": raw.file,
            "source_row": m["line"].astype("int64"),
            "column": None,
            "value": None,
            "reason": "malformed line: " + m["error_message"].astype(str).str.slice(0, 200),
            "raw": m["csv_line"].astype(str),
        }
    ).astype({"column": "string", "value": "string"})
