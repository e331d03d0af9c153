"""The ``segmentum`` command: a thin layer that parses arguments, calls the library, prints.

Every way a command can end maps to one exit code of ``segmentum.errors.ExitCode`` (the table in
docs/cli.md): user mistakes and usage errors become one line and a hint, never a traceback;
unexpected errors write their traceback to a log file and print its path; ``--debug`` shows
tracebacks instead. ``--json`` output is written as plain text, never wrapped to the terminal.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import ibis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segmentum import demo, i18n, pipeline
from segmentum.config import SETTINGS, load_settings
from segmentum.errors import ExitCode, InputError, PartialFailure, SegmentumError
from segmentum.ingest import IngestReport, ingest
from segmentum.ingest.core import data_currency
from segmentum.schema import INGESTIBLE
from segmentum.warehouse import (
    Warehouse,
    busy_error,
    duckdb_file,
    engine_error,
    resource_error,
    spark_folder,
)
from segmentum.warehouse import connect as _open_warehouse

# Commands that may start a warehouse where there is none; every other one reads one, and a
# path that leads nowhere is a typo to say, not a new empty warehouse to create.
_STARTS = {"ingest", "run", "restore", "demo-data", "schedule", "settings"}
_may_start = [True]


def connect(url: str | None = None, **kwargs: Any) -> Warehouse:
    """Open the warehouse a command names; refused when it is not there and the command
    does not start one (a mistyped ``-w`` created an empty warehouse, and said "0 segments")."""
    target = url or load_settings().warehouse
    if not _may_start[0]:
        folder = spark_folder(target)
        file = duckdb_file(target) if folder is None else None
        missing = folder if folder is not None and not folder.is_dir() else None
        if file is not None and not file.exists():
            missing = file
        if missing is not None:
            raise InputError(
                f"there is no warehouse at {missing}",
                "check the path (--warehouse or the warehouse setting); segmentum run --data "
                "FOLDER or segmentum ingest starts one",
            )
    wh = _open_warehouse(target, **kwargs)
    # Held to the command's end: a command's own objects are gone when it returns, and with
    # them what the warehouse changed, which the end of the command publishes (on Spark).
    _this_command.append(wh)
    return wh


# The warehouses the running command opened (cleared when it ends).
_this_command: list[Warehouse] = []


app = typer.Typer(
    help="segmentum: customer segmentation and classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _plain(value: Any) -> Any:
    """``value`` with NaN and infinities as null: they are not JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Print ``data`` (an object, or JSON text) as JSON on stdout: plain text, whatever the
    terminal width (a console would wrap long strings and break the JSON)."""
    obj = json.loads(data) if isinstance(data, str) else data
    text = json.dumps(_plain(obj), default=str, ensure_ascii=False, indent=2, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


WarehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse URL (default from settings: duckdb:///segmentum.duckdb).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Reference date YYYY-MM-DD (default: the day after the last sale)."
    ),
]


LangOpt = Annotated[
    str | None,
    typer.Option(help="Language of what is printed: es or en (default: the language setting)."),
]


def _check_lang(lang: str | None) -> str:
    """The language asked for with --lang, or else the ``language`` setting's."""
    if lang is None:
        return _language_setting()
    if lang not in i18n.LANGUAGES:
        raise InputError(f"--lang {lang!r} is not known", "use es or en")
    return lang


def _language_setting() -> str:
    """The ``language`` setting; English when the settings cannot be read (that error is
    reported by the command that reads them)."""
    try:
        return load_settings().language
    except SegmentumError:
        return "en"


class ConsoleProgress:
    """Prints the library's progress steps as dim lines, in ``lang``."""

    def __init__(self, quiet: bool = False, lang: str = "en") -> None:
        self.quiet = quiet
        self.lang = lang

    def step(self, name: str, detail: str = "") -> None:
        if not self.quiet and name not in ("before_commit",):
            text = i18n.translate_message(self.lang, detail) if detail else ""
            err.print(f"[dim]· {escape(i18n.step_name(self.lang, name))} {escape(text)}[/dim]")


def _read_text(path: Path) -> str:
    """A text file the user named; a path that is not there is their mistake, said as such."""
    if not path.is_file():
        raise InputError(
            f"{path}: no such file",
            "check the path (relative paths start where you run the command)",
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read {path}: {exc}".splitlines()[0], "save it as UTF-8 text"
        ) from exc


def _as_of(value: str | None) -> _dt.date | None:
    if value is None:
        return None
    try:
        return _dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD") from exc


def _money(x: float | None, lang: str = "en") -> str:
    # A sum that rounds to zero has no sign.
    v = 0.0 if round(x or 0, 2) == 0 else float(x or 0)
    return f"{v:,.2f}" if lang == "en" else i18n.number(v, lang, 2)


def _amount(x: float | None, currency: str, lang: str = "en") -> str:
    """An amount with its currency when the data has one (no dangling space when not)."""
    return f"{_money(x, lang)} {currency}" if currency else _money(x, lang)


def _pct(x: float | None, lang: str = "en") -> str:
    if i18n.is_missing(x):  # a share of nothing (no revenue at all): not "nan%"
        return i18n.MISSING
    return f"{100 * (x or 0):.1f}%" if lang == "en" else i18n.percent(x or 0, lang)


def _count(n: int | float, lang: str = "en") -> str:
    return f"{int(n):,}" if lang == "en" else i18n.number(n, lang, 0)


# More files than this (a folder of daily exports) are summarised one line per file.
_MANY_FILES = 5


def print_ingest_files(reports: list[IngestReport], lang: str = "en") -> None:
    """Many files: the column mapping once, one line per file, totals and reasons summed."""
    _ = i18n.translations(lang).ugettext
    loaded = [r for r in reports if not r.skipped]
    if loaded and loaded[0].mapping:
        _print_mapping(_("%(table)s: column mapping") % {"table": loaded[0].table}, loaded[0], lang)
    # Files are named from their common folder so the table fits a terminal.
    folder = os.path.commonpath([os.path.dirname(os.path.abspath(r.file)) for r in reports])
    t = Table(
        title=_("%(n)s files in %(folder)s: ingest summary")
        % {"n": _count(len(reports), lang), "folder": escape(folder)},
        title_justify="left",
    )
    for c in (_("file"), _("rows read"), _("accepted"), _("quarantined"), _("batch")):
        t.add_column(c, justify="left" if c in (_("file"), _("batch")) else "right")
    for r in reports:
        where = os.path.relpath(os.path.abspath(r.file), folder)
        where = escape(where + (f" [{r.sheet}]" if r.sheet else ""))
        if r.skipped:
            t.add_row(where, "", "", "", "[yellow]" + _("already loaded, skipped") + "[/yellow]")
            continue
        t.add_row(
            where,
            _count(r.rows_read, lang),
            _count(r.accepted, lang),
            _count(r.quarantined, lang),
            r.batch_id,
        )
    total = {
        k: sum(getattr(r, k) for r in loaded) for k in ("rows_read", "accepted", "quarantined")
    }
    t.add_row(
        "[bold]" + _("total") + "[/bold]",
        _count(total["rows_read"], lang),
        _count(total["accepted"], lang),
        _count(total["quarantined"], lang),
        _balanced(all(r.balanced for r in loaded), lang),
    )
    console.print(t)
    for w in dict.fromkeys(w for r in loaded for w in _report_warnings(r, lang)):
        console.print("  [yellow]" + _("warning:") + f"[/yellow] {escape(w)}")
    reasons: dict[str, int] = {}
    for r in loaded:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    _print_reasons(sorted(reasons.items(), key=lambda kv: -kv[1]), lang)


def _report_warnings(r: IngestReport, lang: str) -> list[str]:
    """The report's warnings in the language asked (English when a translation is missing)."""
    if lang == "es" and len(r.warnings_es) == len(r.warnings):
        return r.warnings_es
    return r.warnings


def _report_conventions(r: IngestReport, lang: str) -> dict[str, str]:
    if lang == "es" and len(r.conventions_es) == len(r.conventions):
        return r.conventions_es
    return r.conventions


def _print_mapping(title: str, r: IngestReport, lang: str) -> None:
    _ = i18n.translations(lang).ugettext
    m = Table(title=title, title_justify="left")
    m.add_column(_("column in file"))
    m.add_column(_("canonical column"))
    # Headers, file names and values come from the user's files: escaped, never read as markup.
    for canon, src in r.mapping.items():
        m.add_row(escape(src), canon)
    for src in r.ignored_columns:
        m.add_row(escape(src), "[dim]" + _("(ignored)") + "[/dim]")
    console.print(m)


def _balanced(ok: bool, lang: str) -> str:
    _ = i18n.translations(lang).ugettext
    if ok:
        return "[green]" + _("read = accepted + quarantined") + "[/green]"
    return "[red]" + _("counts do not add up") + "[/red]"


def _print_reasons(reasons: list[tuple[str, int]], lang: str) -> None:
    """Why rows were quarantined, most frequent first (the reasons are the checks' own words)."""
    if not reasons:
        return
    _ = i18n.translations(lang).ugettext
    q = Table(
        title=_("why rows were quarantined (see: segmentum quarantine)"), title_justify="left"
    )
    q.add_column(_("reason"))
    q.add_column(_("rows"), justify="right")
    for reason, n in reasons:
        q.add_row(escape(i18n.translate_reason(lang, reason)), _count(n, lang))
    console.print(q)


def print_ingest_report(r: IngestReport, lang: str = "en") -> None:
    _ = i18n.translations(lang).ugettext
    where = escape(r.file + (f" [{r.sheet}]" if r.sheet else ""))
    if r.skipped:
        console.print(f"[yellow]{where}[/yellow]: {escape('; '.join(_report_warnings(r, lang)))}")
        return
    if r.mapping:
        _print_mapping(
            _("%(file)s → %(table)s: column mapping") % {"file": where, "table": r.table}, r, lang
        )
    t = Table(
        title=_("%(file)s: ingest summary") % {"file": where},
        title_justify="left",
        show_header=False,
    )
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row(_("rows read"), _count(r.rows_read, lang))
    t.add_row(_("accepted"), _count(r.accepted, lang))
    t.add_row(_("quarantined"), _count(r.quarantined, lang))
    if r.table in ("transactions", "events"):
        t.add_row("  " + _("anonymous (no customer id)"), _count(r.anonymous, lang))
    if r.updated:
        t.add_row("  " + _("replaced an earlier row"), _count(r.updated, lang))
    t.add_row(_("exact duplicates"), _count(r.duplicates, lang))
    if r.already_loaded:
        t.add_row(_("already in the warehouse"), _count(r.already_loaded, lang))
    if r.return_lines:
        t.add_row(
            _("return lines linked to their purchase"),
            _("%(linked)s of %(lines)s (%(share)s)")
            % {
                "linked": _count(r.returns_linked, lang),
                "lines": _count(r.return_lines, lang),
                "share": _pct(r.returns_linked / r.return_lines, lang),
            },
        )
    t.add_row(_("check"), _balanced(r.balanced, lang))
    t.add_row(_("batch"), r.batch_id or "")
    console.print(t)
    for k, v in _report_conventions(r, lang).items():
        console.print(f"  [dim]{escape(k)}: {escape(v)}[/dim]")
    for w in _report_warnings(r, lang):
        console.print("  [yellow]" + _("warning:") + f"[/yellow] {escape(w)}")
    _print_reasons(list(r.reasons.items()), lang)


def print_id_match(m: dict[str, Any], lang: str = "en") -> None:
    """Buyers without a customer record and customers without a purchase, in one line."""
    _ = i18n.translations(lang).ugettext
    if not m.get("customers"):
        text = _("%(buyers)s buyers; no customer records loaded") % {
            "buyers": _count(m["buyers"], lang)
        }
        console.print(f"[dim]{text}[/dim]")
        return
    text = _(
        "customers: %(matched)s of %(buyers)s buyers have a customer record (%(without)s "
        "without); %(idle)s of %(customers)s customers have no purchase"
    ) % {
        "matched": _count(m["matched"], lang),
        "buyers": _count(m["buyers"], lang),
        "without": _count(m["buyers_without_record"], lang),
        "idle": _count(m["customers_without_purchase"], lang),
        "customers": _count(m["customers"], lang),
    }
    console.print(f"[dim]{text}[/dim]")


@app.command("ingest")
def ingest_cmd(
    table: Annotated[str, typer.Argument(help=f"Target table: {', '.join(INGESTIBLE)}.")],
    files: Annotated[list[Path], typer.Argument(help="CSV, Parquet, Excel or JSON-lines files.")],
    mapping: Annotated[
        Path | None, typer.Option(help="YAML/TOML file of canonical_column: 'Column In File'.")
    ] = None,
    sheet: Annotated[
        str | None, typer.Option(help="Excel sheet to load (default: every sheet).")
    ] = None,
    date_order: Annotated[str | None, typer.Option(help="auto, dmy or mdy.")] = None,
    decimal: Annotated[str | None, typer.Option(help="auto, '.' or ','.")] = None,
    duplicates: Annotated[
        str | None, typer.Option(help="quarantine or keep exact duplicate rows.")
    ] = None,
    anonymous: Annotated[
        bool, typer.Option(help="The sales have no customer id: load them as anonymous.")
    ] = False,
    no_amount: Annotated[
        bool, typer.Option(help="A log of purchases without amounts (loyalty-card data).")
    ] = False,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: Annotated[
        str | None,
        typer.Option(help="Language of the report: es or en (default: the language setting)."),
    ] = None,
) -> None:
    """Load files into a table; rejected rows go to quarantine with their reasons."""
    lang = _check_lang(lang)
    settings = load_settings()
    reports = ingest(
        table,
        files,
        warehouse=warehouse or settings.warehouse,
        mapping=mapping,
        sheet=sheet,
        settings=settings,
        date_order=date_order,
        decimal=decimal,
        duplicates=duplicates,
        anonymous=anonymous,
        no_amount=no_amount,
        progress=ConsoleProgress(quiet=as_json, lang=lang),
    )
    if as_json:
        print_json(json.dumps([r.to_dict() for r in reports], default=str))
        return
    if len(reports) > _MANY_FILES:
        print_ingest_files(reports, lang)
    else:
        for r in reports:
            print_ingest_report(r, lang)
    if reports and reports[-1].id_match:
        print_id_match(reports[-1].id_match, lang)


@app.command("demo-data")
def demo_data_cmd(
    out: Annotated[Path, typer.Option(help="Folder to write the files to.")] = Path("demo-data"),
    customers: Annotated[
        int, typer.Option(help="Number of customers (about 10 invoice lines each).")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 7,
    fmt: Annotated[
        str, typer.Option("--format", help="csv or parquet (for invoice lines and events).")
    ] = "csv",
    b2b: Annotated[bool, typer.Option(help="Add firmographics and a prospects file.")] = False,
    messy: Annotated[
        bool,
        typer.Option(
            help="Invoices as real exports look: Spanish headers, float ids, C-cancellations, "
            "UTC offsets, decimal commas, a currency column, bad dates (see messy.json)."
        ),
    ] = False,
    lang: LangOpt = None,
) -> None:
    """Generate the synthetic demo retailer (planted segments, deterministic)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    files = demo.generate(out, customers=customers, seed=seed, fmt=fmt, b2b=b2b, messy=messy)
    t = Table(title=escape(_("demo data in %(folder)s") % {"folder": out}), title_justify="left")
    t.add_column(_("table"))
    t.add_column(_("file"))
    t.add_column(_("size"), justify="right")
    for name, path in files.items():
        t.add_row(
            escape(i18n.label(lang, "table_name", name)),
            escape(str(path)),
            f"{i18n.number(path.stat().st_size / 1e6, lang, 1)} MB",
        )
    console.print(t)


def _print_shares(title: str, rows: list[dict[str, Any]], key: str, lang: str = "en") -> None:
    _ = i18n.translations(lang).ugettext
    t = Table(title=title, title_justify="left")
    for c in ("", _("customers"), _("% customers"), _("revenue"), _("% revenue")):
        t.add_column(c, justify="left" if not c else "right")
    for r in rows:
        t.add_row(
            str(r[key]) if lang == "en" else i18n.label(lang, key, r[key]),
            _count(r["customers"], lang),
            _pct(r["customer_share"], lang),
            _money(r["revenue"], lang),
            _pct(r["revenue_share"], lang),
        )
    console.print(t)


def print_summary(s: pipeline.RunSummary, currency: str, lang: str = "en") -> None:
    _ = i18n.translations(lang).ugettext
    # The amounts' own currency (from ingest) wins over a label the caller passes in.
    currency = s.currency if s.currency or currency.lower() == "auto" else currency
    head = _(
        "run %(run)s as of %(as_of)s: %(customers)s customers, revenue %(revenue)s "
        "(+ %(anonymous)s from anonymous sales = %(total)s in the stored lines)"
    ) % {
        "run": s.run_id,
        "as_of": s.as_of if lang == "en" else i18n.date(s.as_of, lang),
        "customers": _count(s.customers, lang),
        "revenue": _amount(s.revenue, currency, lang),
        "anonymous": _money(s.anonymous_revenue, lang),
        "total": _amount(s.revenue + s.anonymous_revenue, currency, lang),
    }
    console.print(f"\n[bold]segmentum[/bold] {head}")
    rc = s.revenue_check
    free = int(rc.get("customers_only_zero_lines") or 0)
    returned = int(rc.get("customers_net_nonpositive") or 0) - free
    if returned > 0:
        console.print(
            i18n.translations(lang).ungettext(
                "%(n)s customer returned as much as they bought, or more (their lines net to "
                "%(amount)s)",
                "%(n)s customers returned as much as they bought, or more (their lines net to "
                "%(amount)s)",
                returned,
            )
            % {
                "n": _count(returned, lang),
                "amount": _amount(rc["net_nonpositive_amount"], currency, lang),
            }
        )
    if free > 0:
        console.print(
            i18n.translations(lang).ungettext(
                "%(n)s customer has only lines of amount zero (free items, or prices missing "
                "from the export)",
                "%(n)s customers have only lines of amount zero (free items, or prices missing "
                "from the export)",
                free,
            )
            % {"n": _count(free, lang)}
        )
    if s.id_match:
        print_id_match(s.id_match, lang)
    if s.returns.get("return_lines"):
        rt = s.returns
        console.print(
            _(
                "returns: %(linked)s of %(lines)s return lines linked to the purchase they "
                "undo (%(share)s); %(cancelled)s orders cancelled in full are not counted as "
                "purchases"
            )
            % {
                "linked": _count(rt["linked"], lang),
                "lines": _count(rt["return_lines"], lang),
                "share": _pct(rt["linked_share"], lang),
                "cancelled": _count(rt["cancelled_orders"], lang),
            }
        )
    kept = next((x for x in s.steps if x.get("removed_dates")), None)
    if kept is not None:
        ngettext = i18n.translations(lang).ungettext
        console.print(
            ngettext(
                "history: %(n)s older daily snapshot (%(rows)s rows) thinned to the first of "
                "its month: %(dates)s; every day of the last %(days)s days is kept",
                "history: %(n)s older daily snapshots (%(rows)s rows) thinned to the first of "
                "their month: %(dates)s; every day of the last %(days)s days is kept",
                len(kept["removed_dates"]),
            )
            % {
                "n": _count(len(kept["removed_dates"]), lang),
                "rows": _count(kept.get("removed_rows", 0), lang),
                "dates": ", ".join(kept["removed_dates"]),
                "days": _count(kept.get("kept_days", 0), lang),
            }
        )
    _print_shares(_("RFM segments"), s.rfm_segments, "rfm_segment", lang)
    _print_shares(_("Value tiers (Pareto 80/15/5)"), s.value_tiers, "value_tier", lang)
    _print_shares(
        _("Lifecycle stages (against each customer's own rhythm)"),
        s.lifecycle,
        "lifecycle_stage",
        lang,
    )
    if s.value_potential:
        _print_shares(
            _("Value x potential (past spend x predicted 12-month value)"),
            s.value_potential,
            "value_potential",
            lang,
        )
    if s.purchase_model:
        chosen = s.purchase_model["model"]

        def params(values: dict[str, float]) -> str:
            return ", ".join(f"{k}={i18n.significant(v, lang)}" for k, v in values.items())

        parts = [f"{chosen} {params(s.models[chosen])}"]
        if "gamma_gamma" in s.models:
            parts.append(f"Gamma-Gamma {params(s.models['gamma_gamma'])}")
        console.print("[dim]" + _("models:") + f" {escape('; '.join(parts))}[/dim]")
        reason = s.purchase_model.get("reason_es" if lang == "es" else "reason")
        reason = reason or s.purchase_model["reason"]
        console.print(_("purchase model:") + f" {escape(reason)}")
    if s.segments:
        t = Table(title=_("Saved segments"), title_justify="left")
        t.add_column(_("segment"))
        t.add_column(_("customers"), justify="right")
        for name, n in s.segments.items():
            t.add_row(escape(name), _count(n, lang))
        console.print(t)
    if s.clusters:
        t = Table(title=_("Discovered segments (clustering)"), title_justify="left")
        t.add_column(_("cluster"))
        t.add_column(_("name"))
        if lang == "en":
            t.add_column("nombre")
        t.add_column(_("customers"), justify="right")
        for row in s.clusters:
            flags = f" ({', '.join(row['flags'])})" if row["flags"] else ""
            names = [row["name"] + flags, row["name_es"]] if lang == "en" else [row["name_es"]]
            t.add_row(str(row["cluster"]), *names, _count(row["customers"], lang))
        console.print(t)
    if s.market:
        from segmentum.titles import column_titles

        m = s.market
        titles = column_titles(_)
        rate = _market_rate(None, m["overall_penetration"], None, lang=lang).split(" (")[0]
        console.print(
            _(
                "market: %(cells)s cells by %(dims)s; overall penetration %(rate)s; "
                "%(unplaced)s of %(customers)s customers not placed (segmentum market compute "
                "says why)"
            )
            % {
                "cells": _count(m["cells"], lang),
                "dims": ", ".join(
                    escape(titles.get(d, d.replace("_", " ")).lower()) for d in m["dimensions"]
                ),
                "rate": rate,
                "unplaced": _count(m["unplaced"], lang),
                "customers": _count(m["customers"], lang),
            }
        )
        parts = m.get("white_space_parts") or [None] * len(m.get("white_space") or [])
        for i, (cell, by_dim) in enumerate(zip(m.get("white_space") or [], parts, strict=True), 1):
            if by_dim:
                cell = " · ".join(i18n.label(lang, d, v) for d, v in by_dim.items())
            console.print(
                "  " + _("white space #%(i)s: %(cell)s") % {"i": i, "cell": escape(str(cell))}
            )
    sat = s.satisfaction
    if sat:
        console.print(
            _(
                "satisfaction: %(answers)s answers from %(customers)s customers in the last 12 "
                "months (segmentum satisfaction summary)"
            )
            % {
                "answers": _count(sat["responses"], lang),
                "customers": _count(sat["respondents"], lang),
            }
        )
        if sat.get("outside"):
            console.print(
                "  "
                + i18n.translations(lang).ungettext(
                    "%(n)s of them is in no group: not a customer with a purchase (e.g. "
                    "%(id)s); the groups' numbers count without them",
                    "%(n)s of them are in no group: not customers with a purchase (e.g. "
                    "%(id)s); the groups' numbers count without them",
                    int(sat["outside"]),
                )
                % {"n": _count(sat["outside"], lang), "id": escape(str(sat["outside_example"]))}
            )
        # A discovered segment's Spanish name, as the clusters table above writes it.
        spanish_clusters = {
            pre + str(c["name"]): pre + str(c.get("name_es") or c["name"])
            for c in s.clusters or []
            for pre in ("", f"{c['cluster']}: ")
        }
        for f in sat.get("flagged") or []:
            console.print(
                "  "
                + _(
                    "%(segment)s (%(dimension)s): NPS %(nps)s against %(rest)s for the rest, "
                    "%(flag)s (q %(q)s)"
                )
                % {
                    "segment": escape(
                        str(f["segment"])
                        if lang == "en"
                        else spanish_clusters.get(str(f["segment"]))
                        or i18n.satisfaction_group(lang, f["dimension"], f["segment"])
                    ),
                    "dimension": _sat_dimension(lang, f["dimension"]),
                    "nps": f"{f['nps']:.1f}" if lang == "en" else i18n.number(f["nps"], lang, 1),
                    "rest": f"{f['rest_nps']:.1f}"
                    if lang == "en"
                    else i18n.number(f["rest_nps"], lang, 1),
                    "flag": {"better": _("better"), "worse": _("worse")}.get(f["flag"], f["flag"]),
                    "q": _q_value(f["q_value"], lang),
                }
            )
    shown = s.warnings_es if lang == "es" and len(s.warnings_es) == len(s.warnings) else s.warnings
    for w in shown:
        console.print("[yellow]" + _("warning:") + f"[/yellow] {w}")


@app.command("run")
def run_cmd(
    data: Annotated[
        Path | None, typer.Option(help="Folder with files to ingest first (e.g. the demo data).")
    ] = None,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lock: Annotated[
        Path | None,
        typer.Option(
            help="Hold this lock file for the run; if another run holds it, stop at once "
            "(exit 4). Scheduled runs use it (segmentum schedule)."
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Recompute everything, not only what changed since the last run.",
        ),
    ] = False,
    lang: Annotated[
        str | None,
        typer.Option(help="Language of the summary: es or en (default: the language setting)."),
    ] = None,
) -> None:
    """Run the main job: ingest new files, compute features and classes, print a summary.

    After the first run only what changed since the last one is computed again (a full run
    when that cannot be exact; the summary says which kind ran and why)."""
    import contextlib

    lang = _check_lang(lang)

    from segmentum.schedule import run_lock

    settings = load_settings()
    with run_lock(lock) if lock is not None else contextlib.nullcontext():
        summary = pipeline.run(
            warehouse or settings.warehouse,
            data=data,
            as_of=_as_of(as_of),
            settings=settings,
            progress=ConsoleProgress(quiet=as_json, lang=lang),
            full=full,
        )
    if as_json:
        print_json(json.dumps(summary.to_dict(), default=str))
        return
    for r in summary.ingest:
        print_ingest_report(r, lang)
    print_summary(summary, settings.currency, lang)
    print_run_kind(summary, lang)


def print_run_kind(s: pipeline.RunSummary, lang: str) -> None:
    """Which kind of run this was and why, and what the CLV models did, in ``lang``."""
    from segmentum import i18n, incremental

    if not s.plan:
        return
    suffix = "_es" if lang == "es" else ""
    kind = i18n.translations(lang).upgettext("run", incremental.KINDS[s.kind][1])
    console.print(f"[bold]{escape(kind)}[/bold]: {escape(s.plan['why' + suffix])}")
    console.print(f"[dim]{escape(s.plan['models_why' + suffix])}[/dim]")


@app.command("schedule")
def schedule_cmd(
    data: Annotated[Path, typer.Option(help="The folder your daily exports are written to.")],
    warehouse: WarehouseOpt = None,
    at: Annotated[
        str, typer.Option(help="Time of day, HH:MM (the machine's time, or --timezone's).")
    ] = "02:30",
    fmt: Annotated[
        str, typer.Option("--format", help="systemd (a timer) or cron (a crontab line).")
    ] = "systemd",
    name: Annotated[str, typer.Option(help="The job's name (unit or cron file).")] = (
        "segmentum-daily"
    ),
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone for --at (cron: a CRON_TZ line).")
    ] = None,
    install: Annotated[
        bool, typer.Option("--install", help="Write the files (or the crontab line) too.")
    ] = False,
    system: Annotated[
        bool,
        typer.Option("--system", help="With --install: the system folders (/etc/...), needs root."),
    ] = False,
    target: Annotated[
        Path | None,
        typer.Option("--dir", help="With --install: write the files into this folder instead."),
    ] = None,
    lang: LangOpt = None,
) -> None:
    """Print (and with --install write) a daily ingest-and-run of a folder of exports, as a
    systemd timer or a cron entry, locked so two runs never overlap."""
    from segmentum import schedule as sched

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    if fmt not in sched.FORMATS:
        raise InputError(f"--format {fmt!r} is not known", "use systemd or cron")
    settings = load_settings()
    plan = sched.make(data, warehouse or settings.warehouse, at, name, timezone=timezone)
    if fmt == "systemd":
        for file, text in sched.systemd_units(plan).items():
            typer.echo(f"# {file}\n{text}")
    else:
        typer.echo(sched.cron_line(plan))
        if plan.timezone:
            typer.echo(
                "# "
                + _(
                    "CRON_TZ: cronie and systemd-cron run it at %(at)s in %(zone)s; Debian's "
                    "classic cron ignores CRON_TZ and runs it at %(at)s in the machine's zone"
                )
                % {"at": plan.at.strftime("%H:%M"), "zone": plan.timezone}
            )
    if not install:
        typer.echo(
            "# "
            + (
                _("add --install to write the unit files")
                if fmt == "systemd"
                else _("add --install to write the crontab entry")
            )
        )
        return
    done = sched.install(plan, fmt, target=target, system=system)
    for path in done.files:
        typer.echo(_("wrote %(path)s") % {"path": path})
    for step in done.next_steps:
        said = _("now run: %(step)s") if fmt == "systemd" else _("installed; see: %(step)s")
        typer.echo(said % {"step": step})


@app.command("features")
def features_cmd(
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Compute customer_features as of a date (only data before it is used)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    used, feats = pipeline.compute_features(wh, _as_of(as_of), settings, "features-cli")
    stats = (
        feats.aggregate(
            customers=feats.count(),
            revenue=feats.monetary.sum(),
            median_recency=feats.recency_days.median(),
            mean_frequency=feats.frequency.mean(),
            repeat_buyers=(feats.x > 0).cast("int64").sum(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    if as_json:
        print_json(json.dumps({"as_of": used.isoformat(), **stats}, default=str))
        return
    console.print(
        _(
            "customer_features as of %(date)s: %(customers)s customers, revenue %(revenue)s, "
            "%(repeat)s repeat buyers, median recency %(days)s days"
        )
        % {
            "date": used.isoformat() if lang == "en" else i18n.date(used, lang),
            "customers": _count(stats["customers"] or 0, lang),
            "revenue": _money(stats["revenue"], lang),
            "repeat": _count(stats["repeat_buyers"] or 0, lang),
            "days": i18n.number(stats["median_recency"], lang, 0),
        }
    )


@app.command("classify")
def classify_cmd(
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Compute customer_classes (RFM, value tier, lifecycle) and show their sizes and revenue."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    used, feats = pipeline.current_features(wh, _as_of(as_of), settings, "classify-cli")
    classes = pipeline.compute_classes(wh, feats, used, settings, "classify-cli", reuse_clv=True)
    pipeline.refresh_read_models(wh, used)
    rfm = pipeline._share_table(classes, feats, "rfm_segment")
    tiers = pipeline._share_table(classes, feats, "value_tier")
    if as_json:
        print_json(
            json.dumps(
                {"as_of": used.isoformat(), "rfm_segments": rfm, "value_tiers": tiers}, default=str
            )
        )
        return
    day = used.isoformat() if lang == "en" else i18n.date(used, lang)
    _print_shares(_("RFM segments as of %(date)s") % {"date": day}, rfm, "rfm_segment", lang)
    _print_shares(_("Value tiers"), tiers, "value_tier", lang)


clv_app = typer.Typer(help="Customer lifetime value: check the purchase model on your data.")
app.add_typer(clv_app, name="clv")


@clv_app.command("validate")
def clv_validate_cmd(
    calibration_end: Annotated[
        str, typer.Option(help="Last day of the calibration period (YYYY-MM-DD).")
    ],
    holdout_end: Annotated[
        str | None, typer.Option(help="Last day of the holdout (default: last sale).")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="HTML file with the tracking charts and tables.")
    ] = Path("clv-validation.html"),
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Fit BG/NBD, MBG/NBD and Pareto/NBD on the calibration period, compare their holdout
    forecasts with what happened, choose one and say how it did."""
    from segmentum.features import purchase_days
    from segmentum.models.validate import NAIVE, validate

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    cal = _as_of(calibration_end)
    assert cal is not None
    wh = connect(warehouse or load_settings().warehouse)
    # The stored purchase days: net of the stored return links, not relinked twice here.
    v = validate(purchase_days(wh), cal, _as_of(holdout_end))
    out.write_text(v.to_html(lang), encoding="utf-8")
    if as_json:
        payload = {
            "model": v.chosen,
            "params": v.model.params_,
            "verdict": v.verdict(),
            "verdict_es": v.verdict("es"),
            "reason": v.reason_en,
            "reason_es": v.reason_es,
            "errors": v.errors.reset_index().to_dict(orient="records"),
            "by_frequency": v.by_frequency.to_dict(orient="records"),
            "weekly": v.weekly.to_dict(orient="records"),
            "html": str(out),
        }
        print_json(json.dumps(payload, default=float))
        return
    day = (lambda d: str(d)) if lang == "en" else (lambda d: i18n.date(d, lang))
    t = Table(
        title=_("Purchase models fitted to %(cal)s, holdout to %(end)s")
        % {"cal": day(cal), "end": day(v.holdout_end)},
        title_justify="left",
    )
    for c, left in (
        (_("method"), True),
        (_("holdout purchases"), False),
        (_("error of total"), False),
        (_("MAE weekly"), False),
        (_("MAE by x"), False),
    ):
        t.add_column(c, justify="left" if left else "right")
    methods = {"actual": _("actual"), NAIVE: _("naive (calibration rate)")}
    for method, row in v.errors.iterrows():
        t.add_row(
            escape(methods.get(str(method), str(method))),
            _count(row.iloc[0], lang),
            _pct(row.iloc[1], lang),
            i18n.number(row.iloc[2], lang, 1),
            i18n.number(row.iloc[3], lang, 3),
        )
    console.print(t)
    console.print(f"[bold]{escape(v.verdict(lang))}[/bold]")
    console.print(escape(v.reason_en if lang == "en" else v.reason_es))
    console.print(_("charts and tables: %(path)s") % {"path": escape(str(out))})


churn_app = typer.Typer(help="Churn: a supervised model checked on a later date, beside BG/NBD.")
app.add_typer(churn_app, name="churn")


@churn_app.command("evaluate")
def churn_evaluate_cmd(
    train_as_of: Annotated[str, typer.Option(help="Date the model learns at (YYYY-MM-DD).")],
    horizon_days: Annotated[
        int, typer.Option(help="Churned = no purchase within this many days.")
    ] = 90,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Train gradient boosting at one date, test it on the next horizon, compare with BG/NBD."""
    from segmentum.models.churn import evaluate

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    train = _as_of(train_as_of)
    assert train is not None
    wh = connect(warehouse or load_settings().warehouse)
    # Survey answers, when loaded, become features of a second model: the AUC change is shown.
    answers = wh.table("responses") if wh.has("responses") else None
    e = evaluate(wh.table("transactions"), train, horizon_days, responses=answers)
    if as_json:
        payload = {
            "train_as_of": e.train_as_of.isoformat(),
            "test_as_of": e.test_as_of.isoformat(),
            "customers": e.customers,
            "churn_rate": e.churn_rate,
            "metrics": e.metrics.reset_index().to_dict(orient="records"),
            "calibration": e.calibration.to_dict(orient="records"),
        }
        print_json(json.dumps(payload, default=float))
        return
    day = (lambda d: str(d)) if lang == "en" else (lambda d: i18n.date(d, lang))
    t = Table(
        title=_(
            "churn = no purchase in %(days)s days; trained at %(train)s, tested at %(test)s on "
            "%(n)s customers (%(rate)s churned)"
        )
        % {
            "days": _count(horizon_days, lang),
            "train": day(e.train_as_of),
            "test": day(e.test_as_of),
            "n": _count(e.customers, lang),
            "rate": _pct(e.churn_rate, lang),
        },
        title_justify="left",
    )
    for c, left in (
        (_("model"), True),
        ("AUC", False),
        (_("Brier score"), False),
        (_("mean predicted churn"), False),
    ):
        t.add_column(c, justify="left" if left else "right")
    models = {
        "gradient boosting": _("gradient boosting"),
        "gradient boosting + satisfaction": _("gradient boosting + satisfaction"),
    }
    for name, row in e.metrics.iterrows():
        t.add_row(
            escape(models.get(str(name), str(name))),
            i18n.number(row["AUC"], lang, 3),
            i18n.number(row["Brier score"], lang, 3),
            _pct(row["mean predicted churn"], lang),
        )
    console.print(t)


segment_app = typer.Typer(help="Rule segments: create, preview, list, show, edit, delete, compute.")
app.add_typer(segment_app, name="segment")


def _segments(warehouse: str | None) -> Any:
    from segmentum.segments.store import Segments

    settings = load_settings()
    return Segments(connect(warehouse or settings.warehouse), settings)


def _reach_buckets(_: Callable[[str], str]) -> dict[str, str]:
    """The columns of a segment's reach by channel, as a person reads them."""
    return {
        "reachable": _("reachable"),
        "no_contact": _("no contact"),
        "no_consent": _("no consent"),
        "suppressed": _("suppressed"),
        "capped": _("capped"),
    }


def print_preview(p: Any, currency: str, lang: str = "en") -> None:
    _ = i18n.translations(lang).ugettext
    day = str(p.as_of) if lang == "en" else i18n.date(p.as_of, lang)
    t = Table(
        title=_("%(rule)s  (as of %(date)s)") % {"rule": escape(p.rule), "date": day},
        title_justify="left",
        show_header=False,
    )
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row(
        _("customers"),
        _("%(size)s of %(total)s (%(share)s)")
        % {
            "size": _count(p.size, lang),
            "total": _count(p.customers, lang),
            "share": _pct(p.share, lang),
        },
    )
    t.add_row(
        _("revenue"),
        f"{_amount(p.revenue, currency, lang)} ({_pct(p.revenue_share, lang)})",
    )
    if p.reach:
        t.add_row(_("identified (email or phone)"), _count(p.reach.identified, lang))
        t.add_row(_("anonymous (no contact data)"), _count(p.reach.anonymous, lang))
    console.print(t)
    if p.reach:
        buckets = _reach_buckets(_)
        r = Table(title=_("reach by channel"), title_justify="left")
        r.add_column(_("channel"))
        for b in buckets.values():
            r.add_column(b, justify="right")
        for ch, counts in p.reach.channels.items():
            r.add_row(
                escape(ch if lang == "en" else i18n.label(lang, "channel", ch)),
                *(_count(counts.get(b, 0), lang) for b in buckets),
            )
        console.print(r)
    if p.sample:
        sample = escape(", ".join(p.sample))
        console.print("[dim]" + _("e.g. %(ids)s") % {"ids": sample} + "[/dim]")
    _print_rule_warnings(p.warnings, lang)


def _rule_warning(w: Any, lang: str) -> str:
    """A rule's warning ("no customer has ... (position 7); did you mean ...?") in ``lang``."""
    if lang == "en" or not hasattr(w, "message"):
        return str(w)
    _ = i18n.translations(lang).ugettext
    text = _("%(message)s (position %(n)s)") % {
        "message": i18n.translate_message(lang, w.message),
        "n": _count(w.position + 1, lang),
    }
    return text + (f"; {i18n.translate_message(lang, w.hint)}" if w.hint else "")


def _print_rule_warnings(warnings: list[Any], lang: str = "en") -> None:
    word = i18n.translations(lang).ugettext("warning:")
    for w in warnings:
        text = _rule_warning(w, lang)
        err.print(f"[yellow]{word}[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


@segment_app.command("create")
def segment_create_cmd(
    name: Annotated[str, typer.Argument(help="Segment name: letters, digits and _.")],
    rule: Annotated[str, typer.Argument(help='The rule, e.g. "recency_days <= 30".')],
    description: Annotated[str, typer.Option(help="What the segment is for.")] = "",
    level: Annotated[str, typer.Option(help="customer or account (B2B companies).")] = "customer",
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Check a rule and save it as a segment (nothing is saved when the rule has an error)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    segments = _segments(warehouse)
    seg = segments.create(name, rule, description, level)
    console.print(
        _("saved segment %(name)s: %(rule)s")
        % {"name": f"[bold]{escape(seg.name)}[/bold]", "rule": escape(seg.rule)}
    )
    if level == "customer":
        _print_rule_warnings(segments.warnings(seg.rule), lang)


@segment_app.command("edit")
def segment_edit_cmd(
    name: str,
    rule: Annotated[str | None, typer.Option(help="New rule.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Change a segment's rule or description (checked before it is saved)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    seg = _segments(warehouse).edit(name, rule, description)
    console.print(
        _("updated segment %(name)s: %(rule)s")
        % {"name": f"[bold]{escape(seg.name)}[/bold]", "rule": escape(seg.rule)}
    )


@segment_app.command("delete")
def segment_delete_cmd(name: str, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Delete a segment and its stored membership (refused while others reference it)."""
    lang = _check_lang(lang)
    _segments(warehouse).delete(name)
    console.print(
        i18n.translations(lang).ugettext("deleted segment %(name)s") % {"name": escape(name)}
    )


@segment_app.command("subscribe")
def segment_subscribe_cmd(
    name: Annotated[str, typer.Argument(help="The saved segment.")],
    url: Annotated[str, typer.Argument(help="Your endpoint, e.g. https://crm.example.com/hook")],
    since: Annotated[
        str | None, typer.Option(help="Also send changes after this date (YYYY-MM-DD).")
    ] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Send this segment's enter / exit events to URL after each run, signed (secret shown once)."""
    from segmentum.history.webhooks import subscribe

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    day = _date(since, "--since") if since else None
    sub = subscribe(connect(warehouse or settings.warehouse), name, url, since=day)
    if as_json:  # as POST /v1/segments/{name}/webhooks answers it: the secret, this once
        print_json(json.dumps(sub.public()))
        return
    console.print(
        _("subscribed %(url)s to %(segment)s (id %(id)s)")
        % {"url": escape(sub.url), "segment": escape(sub.segment), "id": sub.subscription_id}
    )
    console.print(
        _("signing secret (shown once): %(secret)s") % {"secret": sub.secret}, soft_wrap=True
    )


@segment_app.command("webhooks")
def segment_webhooks_cmd(
    name: Annotated[str | None, typer.Argument(help="Only this segment's.")] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Webhook subscriptions: id, segment, address, changes sent up to, last error."""
    from segmentum.history.webhooks import subscriptions

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    found = subscriptions(connect(warehouse or settings.warehouse), name)
    if as_json:  # as GET /v1/webhooks answers them: never the secret
        print_json(json.dumps([w.public() for w in found]))
        return
    t = Table(title=_("webhook subscriptions"), title_justify="left")
    for c in (_("id"), _("segment"), _("address"), _("sent up to"), _("last error")):
        t.add_column(c)
    for w in found:
        sent = "" if w.delivered_through is None else i18n.date(w.delivered_through, lang)
        error = i18n.translate_message(lang, w.last_error) if w.last_error else ""
        t.add_row(escape(w.subscription_id), escape(w.segment), escape(w.url), sent, escape(error))
    console.print(t)


@segment_app.command("unsubscribe")
def segment_unsubscribe_cmd(
    subscription_id: Annotated[str, typer.Argument(help="The id shown by: segment webhooks")],
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Stop a webhook subscription."""
    from segmentum.history.webhooks import unsubscribe

    lang = _check_lang(lang)
    settings = load_settings()
    unsubscribe(connect(warehouse or settings.warehouse), subscription_id)
    console.print(
        i18n.translations(lang).ugettext("unsubscribed %(id)s") % {"id": escape(subscription_id)}
    )


@segment_app.command("list")
def segment_list_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """List saved segments."""
    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    _ = tr.ugettext
    segs = _segments(warehouse).list()
    if as_json:
        print_json(json.dumps([s.__dict__ for s in segs], default=str))
        return
    title = tr.ungettext("%(n)s segment", "%(n)s segments", len(segs)) % {
        "n": _count(len(segs), lang)
    }
    t = Table(title=title, title_justify="left")
    for c in (_("name"), _("level"), _("rule"), _("description")):
        t.add_column(c)
    for s in segs:
        t.add_row(
            escape(s.name),
            s.level if lang == "en" else i18n.label(lang, "level", s.level),
            escape(s.rule),
            escape(s.description or ""),
        )
    console.print(t)


@segment_app.command("show")
def segment_show_cmd(
    name: str,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """A segment's definition and its current size, revenue and reach."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    segments = _segments(warehouse)
    seg = segments.get(name)
    if seg.level == "account":
        console.print(
            _("%(name)s (account): %(rule)s")
            % {"name": f"[bold]{escape(seg.name)}[/bold]", "rule": escape(seg.rule)}
        )
        return
    p = segments.preview(name, _as_of(as_of))
    if as_json:
        print_json(json.dumps({"segment": seg.__dict__, **p.to_dict()}, default=str))
        return
    console.print(f"[bold]{escape(seg.name)}[/bold]: {escape(seg.description or '')}")
    print_preview(p, data_currency(segments.wh, segments.settings)[0], lang)


@segment_app.command("preview")
def segment_preview_cmd(
    rule: Annotated[str, typer.Argument(help="A rule, or the name of a saved segment.")],
    as_of: AsOfOpt = None,
    level: Annotated[
        str, typer.Option(help="customer, or account: the customers of the accounts it holds.")
    ] = "customer",
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Size, revenue and reach of a rule, without saving anything."""
    lang = _check_lang(lang)
    segments = _segments(warehouse)
    p = segments.preview(rule, _as_of(as_of), level=level)
    if as_json:
        print_json(json.dumps(p.to_dict(), default=str))
        return
    print_preview(p, data_currency(segments.wh, segments.settings)[0], lang)


@segment_app.command("compute")
def segment_compute_cmd(
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Compute the membership of every saved segment (stored in segment_members)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    rep = _segments(warehouse).compute(_as_of(as_of))
    if as_json:
        print_json(json.dumps(rep.__dict__, default=str))
        return
    t = Table(
        title=_("segments as of %(date)s") % {"date": i18n.date(rep.as_of, lang)},
        title_justify="left",
    )
    t.add_column(_("segment"))
    t.add_column(_("customers"), justify="right")
    for n in rep.order:
        if n in rep.sizes:
            t.add_row(escape(n), _count(rep.sizes[n], lang))
    console.print(t)


@segment_app.command("import")
def segment_import_cmd(file: Path, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Create or replace the segments listed in a YAML file (all are checked first)."""
    lang = _check_lang(lang)
    segs = _segments(warehouse).load_yaml(file)
    text = i18n.translations(lang).ungettext(
        "loaded %(n)s segment from %(file)s", "loaded %(n)s segments from %(file)s", len(segs)
    )
    console.print(text % {"n": _count(len(segs), lang), "file": escape(str(file))})


@segment_app.command("export")
def segment_export_cmd(file: Path, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Write every saved segment to a YAML file."""
    lang = _check_lang(lang)
    _segments(warehouse).dump_yaml(file)
    console.print(i18n.translations(lang).ugettext("wrote %(path)s") % {"path": escape(str(file))})


def _print_profiles(profiles: Any, lang: str = "en", kind: str = "") -> None:
    """Each segment's names and description (English: both names), then the rule tree's fit.

    ``kind``: the column the segments are values of, so their labels read in ``lang``."""
    _ = i18n.translations(lang).ugettext
    for sp in profiles.segments:
        flags = ", ".join(i18n.segment_flag(lang, f) if lang != "en" else f for f in sp.flags)
        flags = f" [yellow]({escape(flags)})[/yellow]" if flags else ""
        if lang == "en":
            console.print(f"[bold]{sp.segment}[/bold] {sp.name_en} / {sp.name_es}{flags}")
            console.print(f"  {sp.description_en}")
            continue
        seg = i18n.label(lang, kind, sp.segment) if kind else str(sp.segment)
        # A group nothing sets apart is named after itself: its label says it once.
        name = "" if sp.name_es == f"segmento {sp.segment}" else f" {escape(sp.name_es)}"
        console.print(f"[bold]{escape(seg)}[/bold]{name}{flags}")
        console.print(f"  {escape(sp.description_es)}")
    text = _(
        "rule tree (depth 3) reproduces the labels with accuracy %(accuracy)s "
        "(majority class: %(baseline)s)"
    ) % {
        "accuracy": _pct(profiles.tree_accuracy, lang),
        "baseline": _pct(profiles.tree_baseline, lang),
    }
    console.print(f"[dim]{text}[/dim]")


@segment_app.command("discover")
def segment_discover_cmd(
    method: Annotated[str, typer.Option(help="gmm, kmeans or kprototypes.")] = "gmm",
    k_min: Annotated[int, typer.Option(help="Smallest number of clusters tried.")] = 2,
    k_max: Annotated[int, typer.Option(help="Largest number of clusters tried.")] = 10,
    k: Annotated[int | None, typer.Option(help="Use exactly this many clusters.")] = None,
    sample: Annotated[int, typer.Option(help="Customers the models are fitted on.")] = 20_000,
    features: Annotated[
        str | None, typer.Option(help="Comma-separated numeric columns (default: behaviour).")
    ] = None,
    categorical: Annotated[
        str, typer.Option(help="Comma-separated categorical columns (k-prototypes, one-hot).")
    ] = "",
    rules: Annotated[bool, typer.Option(help="Print the rule tree.")] = False,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Find segments nobody defined: clustering with k chosen automatically, then profiled."""
    from segmentum.segments.discover import discover

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    d = discover(
        connect(warehouse or settings.warehouse),
        _as_of(as_of),
        method=method,
        numeric=features.split(",") if features else None,
        categorical=[c for c in categorical.split(",") if c],
        k_range=range(k_min, k_max + 1),
        k=k,
        sample_size=sample,
    )
    if as_json:
        print_json(json.dumps(d.to_dict(), default=str))
        return
    t = Table(
        title=_("%(method)s: scores by number of clusters") % {"method": escape(method)},
        title_justify="left",
    )
    for c in ("k", _("silhouette"), "Calinski-Harabasz", "Davies-Bouldin", "BIC"):
        t.add_column(c, justify="right")

    def num(v: Any, digits: int) -> str:
        if lang == "en":
            return "" if v is None else f"{v:,.{digits}f}"
        return i18n.number(v, lang, digits)

    for sc in d.result.scores:
        mark = " ◀" if sc.k == d.result.k else ""
        t.add_row(
            f"{sc.k}{mark}",
            num(sc.silhouette, 3),
            num(sc.calinski_harabasz, 0),
            num(sc.davies_bouldin, 3),
            num(sc.bic, 0),
        )
    console.print(t)
    console.print(
        _(
            "chose k = %(k)s (best mean rank of the three indices); stability (bootstrap mean "
            "adjusted Rand index): %(ari)s ± %(sd)s; fitted on %(sample)s customers, assigned "
            "in the engine: %(assigned)s"
        )
        % {
            "k": d.result.k,
            "ari": num(d.result.stability_ari, 2),
            "sd": num(d.result.stability_sd, 2),
            "sample": _count(d.result.sample_size, lang),
            "assigned": _count(sum(d.sizes.values()), lang),
        }
    )
    _print_profiles(d.profiles, lang)
    if rules:
        console.print(d.profiles.tree_rules)


@segment_app.command("profile")
def segment_profile_cmd(
    name: Annotated[
        str | None, typer.Argument(help="A saved segment (members against the rest).")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(help="Profile a column's groups instead, e.g. rfm_segment or cluster."),
    ] = None,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Significance tests, effect sizes, names and a rule tree for segments."""
    from segmentum.segments.discover import profile_labels, segment_labels
    from segmentum.segments.view import customer_view

    lang = _check_lang(lang)
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    when = _as_of(as_of)
    if name:
        labels, label = segment_labels(wh, name, when), "segment"
    elif by == "cluster":
        c = wh.table("customer_clusters")
        latest = c.filter(c.run_id == c.order_by(ibis.desc("as_of")).run_id.first())
        labels, label = latest.select("customer_id", "cluster"), "cluster"
    elif by:
        view, _ = customer_view(wh, when)
        if by not in view.columns:
            raise InputError(f"unknown column {by!r}", "use a column of the customer view")
        labels, label = view.select("customer_id", by), by
    else:
        raise InputError("name a segment or give --by COLUMN", "e.g. segmentum segment profile vip")
    profiles = profile_labels(wh, labels, label, when)
    if as_json:
        print_json(json.dumps(profiles.to_dict(), default=str))
        return
    # A saved segment's groups are "in" and "out"; a column's, its stored values.
    _print_profiles(profiles, lang, "state" if label == "segment" else label)


@segment_app.command("micro")
def segment_micro_cmd(
    dimensions: Annotated[
        str,
        typer.Option(
            help="Comma-separated columns, coarse to fine (default: value_tier,region,city,"
            "age_band; without a customers file value_tier,lifecycle_stage,rfm_segment)."
        ),
    ] = "",
    min_size: Annotated[
        int | None, typer.Option(help="Smallest cell (default: setting micro_segment_min_size).")
    ] = None,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Micro-segments: the dimensions crossed into a tree; small cells merged upward."""
    from segmentum.segments.micro import MISSING, PERSONA, micro_segments, tree_json
    from segmentum.titles import column_titles

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    tree = micro_segments(
        connect(warehouse or settings.warehouse),
        [d.strip() for d in dimensions.split(",") if d.strip()] or None,
        min_size=min_size or settings.micro_segment_min_size,
        as_of=_as_of(as_of),
    )
    if as_json:
        print_json(tree_json(tree))
        return
    titles = column_titles(_)
    dims = [
        d if lang == "en" else titles.get(d, d.replace("_", " ")).lower() for d in tree.dimensions
    ]
    t = Table(
        title=_("micro-segments (%(dimensions)s; min %(min)s)")
        % {"dimensions": escape(" > ".join(dims)), "min": _count(tree.min_size, lang)}
    )
    heads = (_("segment"), _("customers"), _("stay here"), _("revenue"), _("avg CLV"))
    for c in (*heads, _("persona")):
        t.add_column(c, justify="left" if c in (_("segment"), _("persona")) else "right")
    # The persona's fields: their column (for the value's label) and their name in ``lang``.
    column = {v: k for k, v in PERSONA.items()}
    fields = {
        "age band": _("age band"),
        "gender": _("gender"),
        "place": _("place"),
        "behaviour": _("behaviour"),
        "value": _("value"),
        "best time": _("best time"),
        "best day": _("best day"),
        "channel": _("channel"),
        "device": _("device"),
        "lifestyle": _("lifestyle"),
    }

    def value(dimension: str, v: Any) -> str:
        if lang == "en":
            return str(v)
        return i18n.label(lang, "value" if v == MISSING else dimension, v)

    for n in tree.nodes:
        persona = ", ".join(
            f"{fields.get(k, k)}: {value(column.get(k, ''), v['value'])}"
            for k, v in n.persona.items()
        )
        dimension = tree.dimensions[n.depth - 1] if 0 < n.depth <= len(tree.dimensions) else ""
        name = value(dimension, n.value) if n.value else _("all customers")
        t.add_row(
            ("  " * n.depth) + escape(name),
            _count(n.customers, lang),
            _count(n.own, lang) if n.own else "",
            _money(n.revenue, lang),
            "" if n.avg_clv is None else _money(n.avg_clv, lang),
            escape(persona),
        )
    console.print(t)


@segment_app.command("geo")
def segment_geo_cmd(
    levels: Annotated[
        str, typer.Option(help="Comma-separated levels.")
    ] = "country,region,state,city,neighbourhood",
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Geography drill-down: customers, revenue and average CLV at every level."""
    from segmentum.segments.micro import drilldown

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    rows = drilldown(connect(warehouse or settings.warehouse), levels.split(","), _as_of(as_of))
    if as_json:
        print_json(json.dumps(rows, default=str))
        return
    t = Table(title=_("geography"))
    for c in (_("place"), _("customers"), _("revenue"), _("avg CLV")):
        t.add_column(c, justify="left" if c == _("place") else "right")
    depth = {lvl: i for i, lvl in enumerate(levels.split(","))}
    for r in rows:
        t.add_row(
            "  " * depth.get(r["level"], 0) + escape(str(r["name"])),
            _count(r["customers"], lang),
            _money(r["revenue"], lang),
            "" if r["avg_clv"] is None else _money(r["avg_clv"], lang),
        )
    console.print(t)


@segment_app.command("lookalike")
def segment_lookalike_cmd(
    target: Annotated[
        str, typer.Option(help="A rule or saved segment the prospects should resemble.")
    ] = "value_tier == 'high'",
    top: Annotated[int, typer.Option(help="How many prospects to show.")] = 20,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Rank prospects by resemblance to a segment (stored in prospect_scores)."""
    from segmentum.segments.lookalike import find_lookalikes

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    r = find_lookalikes(
        connect(warehouse or settings.warehouse), target, as_of=_as_of(as_of), top=top
    )
    if as_json:
        print_json(
            json.dumps(
                {"model": r.model.to_dict(), "top": r.top.to_dict("records"), "scored": r.scored},
                default=str,
            )
        )
        return
    m = r.model
    console.print(
        _(
            "look-alikes of %(target)s: cross-validated AUC %(auc)s ± %(sd)s (gradient boosting "
            "for reference: %(gbm)s); trained on %(members)s members and %(others)s others; "
            "%(scored)s prospects scored"
        )
        % {
            "target": f"[bold]{escape(target)}[/bold]",
            "auc": i18n.number(m.cv_auc, lang, 3),
            "sd": i18n.number(m.cv_auc_sd, lang, 3),
            "gbm": i18n.number(m.gbm_auc, lang, 3),
            "members": _count(m.positives, lang),
            "others": _count(m.negatives, lang),
            "scored": _count(r.scored, lang),
        }
    )
    t = Table()
    for c, right in ((_("rank"), True), (_("prospect"), False), (_("score"), True)):
        t.add_column(c, justify="right" if right else "left")
    t.add_column(_("why"))
    for row in r.top.to_dict("records"):
        t.add_row(
            _count(row["rank"], lang),
            escape(str(row["prospect_id"])),
            i18n.number(row["score"], lang, 3),
            escape(_lookalike_reasons(str(row["reasons"]), lang)),
        )
    console.print(t)


def _lookalike_reasons(text: str, lang: str) -> str:
    """A prospect's reasons ("region = Andalucía; age; tag deporte", the model's feature
    names) with the columns and values as ``lang`` writes them."""
    if lang == "en" or not text:
        return text
    from segmentum.titles import column_title

    _ = i18n.translations(lang).ugettext
    out = []
    for part in text.split("; "):
        if " = " in part:
            col, value = part.split(" = ", 1)
            out.append(f"{column_title(lang, col)} = {i18n.label(lang, col, value)}")
        elif part.startswith("tag "):
            out.append(_("tag %(tag)s") % {"tag": part[4:]})
        elif part.endswith(" unknown"):
            out.append(_("%(column)s unknown") % {"column": column_title(lang, part[:-8])})
        else:
            out.append(column_title(lang, part))
    return "; ".join(out)


market_app = typer.Typer(
    help="The market beyond the customer base: penetration, index and white space per cell "
    "of a reference population (docs/market.md)."
)
app.add_typer(market_app, name="market")


def _market_rate(lo: Any, mid: Any, hi: Any, index: bool = False, lang: str = "en") -> str:
    """'1.23% (0.98–1.51)' or '112 (95–131)'; a dash where there is no value."""

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return i18n.MISSING
        if lang != "en":
            return i18n.number(v, lang, 0) if index else i18n.percent(v, lang, 3)
        return f"{v:,.0f}" if index else f"{100 * v:.3f}%"

    return f"{one(mid)} ({one(lo)}–{one(hi)})"


def _market_cells(df: Any, lang: str) -> list[str]:
    """Each market cell's name, its labels in ``lang`` ('España · Andalucía · 35-44 · mujer')."""
    from segmentum.market.core import DIMENSIONS

    if lang == "en" or "cell" not in df.columns:
        return [str(c) for c in df["cell"]] if "cell" in df.columns else []
    dims = [d for d in DIMENSIONS if d in df.columns]
    return [
        " · ".join(
            i18n.label(lang, d, r[d]) for d in dims if not i18n.is_missing(r[d]) and r[d] != ""
        )
        or str(r["cell"])
        for r in df[[*dims, "cell"]].to_dict("records")
    ]


@market_app.command("compute")
def market_compute_cmd(
    as_of: AsOfOpt = None, warehouse: WarehouseOpt = None, lang: LangOpt = None
) -> None:
    """Compute the market now (segmentum run does it when a population is loaded)."""
    from segmentum.market import compute_market
    from segmentum.precompute import publish_read_models
    from segmentum.service.market import dimension_titles, reason_text

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    _ = tr.ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    r = compute_market(wh, _as_of(as_of), settings=settings)
    # The service reads the published copy: publish, so the Market page shows these numbers
    # (only what changed: the market's tables).
    publish_read_models(wh, settings, only=())
    dims = dimension_titles(_) if lang != "en" else {}
    period = _(" (period %(period)s)") % {"period": r.period} if r.period else ""
    console.print(
        escape(
            _(
                "%(cells)s cells by %(dimensions)s%(period)s; %(placed)s of %(customers)s "
                "customers placed; overall penetration %(rate)s"
            )
            % {
                "cells": _count(len(r.cells), lang),
                "dimensions": ", ".join(dims.get(d, d) for d in r.dimensions),
                "period": period,
                "placed": _count(r.placed, lang),
                "customers": _count(r.customers, lang),
                "rate": _market_rate(None, r.overall_penetration, None, lang=lang).split(" (")[0],
            }
        )
    )
    why = reason_text(_)
    for reason, n in r.unplaced.items():
        console.print(
            "  "
            + escape(
                i18n.translations(lang).ungettext(
                    "not placed: %(n)s customer (%(why)s)",
                    "not placed: %(n)s customers (%(why)s)",
                    n,
                )
                % {"n": _count(n, lang), "why": why.get(reason, reason)}
            )
        )
    if r.skipped_rows:
        console.print(
            "  "
            + i18n.translations(lang).ungettext(
                "%(n)s population row left out (a total or an empty cell)",
                "%(n)s population rows left out (totals or empty cells)",
                r.skipped_rows,
            )
            % {"n": _count(r.skipped_rows, lang)}
        )
    for note in r.notes:
        console.print(f"  [dim]{escape(i18n.translate_message(lang, note))}[/dim]")


@market_app.command("penetration")
def market_penetration_cmd(
    level: Annotated[
        str | None,
        typer.Option(help="Geography level (country, region, state, city); default the finest."),
    ] = None,
    cells: Annotated[bool, typer.Option("--cells", help="Every cell instead of places.")] = False,
    top: Annotated[int, typer.Option(help="How many rows to show.")] = 30,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Penetration and index (100 = the base's average) per place or cell, with 95% intervals."""
    from segmentum.market.export import PLACE_COLUMNS, places, records, stored
    from segmentum.titles import column_titles

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    if cells:
        df, _info = stored(wh)
        df = df.sort_values("index", ascending=False)
        name, cols = "cell", ["cell", *PLACE_COLUMNS[1:]]
    else:
        name, df = places(wh, level)
        df = df.sort_values("index", ascending=False)
        cols = list(PLACE_COLUMNS)
    rows = records(df, cols)
    if as_json:
        print_json({"level": name, "rows": rows})
        return
    titles = column_titles(_)
    where = _("cell") if cells else titles.get(name, name.replace("_", " ")).lower()
    if lang == "en":
        where = name  # as --level takes it
    names = _market_cells(df, lang) if cells else [str(r["place"]) for r in rows]
    t = Table(title=_("penetration by %(level)s") % {"level": escape(where)})
    heads = (where, _("population"), _("customers"), _("penetration (95%)"), _("index (95%)"))
    for c in heads:
        t.add_column(escape(c), justify="left" if c == where else "right")
    for r, place in zip(rows[:top], names, strict=False):
        t.add_row(
            escape(place),
            _count(round(r["population"] or 0), lang),
            _count(r["customers"] or 0, lang),
            _market_rate(r["penetration_low"], r["penetration"], r["penetration_high"], lang=lang),
            _market_rate(r["index_low"], r["index"], r["index_high"], index=True, lang=lang),
        )
    console.print(t)


@market_app.command("white-space")
def market_white_space_cmd(
    top: Annotated[int, typer.Option(help="How many cells to show.")] = 20,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Acquisition targets: large, under-penetrated cells that resemble the best cells."""
    from segmentum.market.export import records, stored

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    df, _info = stored(connect(warehouse or settings.warehouse))
    df = df[df["white_space_rank"].notna()].sort_values("white_space_rank").head(top)
    cols = [
        "white_space_rank",
        "cell",
        "population",
        "customers",
        "penetration",
        "index",
        "expected_value",
        "similarity",
        "headroom",
        "potential_value",
        "white_space_score",
    ]
    rows = records(df, cols)
    if as_json:
        print_json(rows)
        return
    t = Table(title=_("white space (headroom x expected value x similarity)"))
    heads = (
        _("rank"),
        _("cell"),
        _("population"),
        _("index"),
        _("value/customer"),
        _("similarity"),
        _("score"),
    )
    for c in heads:
        t.add_column(c, justify="left" if c == _("cell") else "right")
    for r, cell in zip(rows, _market_cells(df, lang), strict=True):
        t.add_row(
            _count(r["white_space_rank"], lang),
            escape(cell),
            _count(round(r["population"] or 0), lang),
            _market_rate(None, r["index"], None, index=True, lang=lang).split(" (")[0],
            _money(r["expected_value"], lang),
            i18n.number(r["similarity"] or 0, lang, 2),
            _count(round(r["white_space_score"] or 0), lang),
        )
    console.print(t)


@market_app.command("export")
def market_export_cmd(
    fmt: Annotated[
        str, typer.Option("--format", help="csv or geojson-properties (numbers per place).")
    ] = "csv",
    level: Annotated[
        str | None,
        typer.Option(help="Sum cells to a geography level (region...); CSV default: cells."),
    ] = None,
    geojson: Annotated[
        Path | None,
        typer.Option(help="A GeoJSON file: written back with the numbers in its properties."),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="GeoJSON property holding the place (market_geojson_key).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Map-ready output: places keep the names or codes written in the population file."""
    from segmentum.market.export import export_market

    lang = _check_lang(lang)
    settings = load_settings()
    text = export_market(
        connect(warehouse or settings.warehouse),
        fmt,
        level=level,
        geojson=geojson,
        key=key or settings.market_geojson_key,
    )
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.write_text(text, encoding="utf-8")
        err.print(i18n.translations(lang).ugettext("wrote %(path)s") % {"path": escape(str(out))})


history_app = typer.Typer(help="Segment history: snapshots, migration, cohorts, forecasts, runs.")
app.add_typer(history_app, name="history")


def _date(value: str, flag: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{flag} {value!r} is not a date", "write it as YYYY-MM-DD") from exc


@history_app.command("backfill")
def history_backfill_cmd(
    freq: Annotated[str, typer.Option(help="month or week.")] = "month",
    periods: Annotated[int, typer.Option(help="How many past period ends.")] = 24,
    segments: Annotated[
        bool, typer.Option(help="Also compute the saved segments at every date.")
    ] = True,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Build past snapshots of the classes from the transaction history alone (point in time)."""
    from segmentum.history.snapshots import backfill
    from segmentum.page_models import SNAPSHOT_KPIS
    from segmentum.precompute import publish_read_models

    lang = _check_lang(lang)
    t = i18n.translations(lang)
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    r = backfill(wh, freq=freq, periods=periods, settings=settings, segments=segments)
    # A server reads history from the serving store: publish the new snapshots to it (and
    # the overview's comparison with them); what the backfill did not change stays there.
    publish_read_models(wh, settings, only=(SNAPSHOT_KPIS,))
    if as_json:
        print_json(json.dumps(r.__dict__, default=str))
        return
    if r.dates:
        console.print(
            t.ungettext(
                "backfilled %(n)s snapshot (%(first)s to %(last)s): %(rows)s customer-dates; "
                "%(customers)s customers at the last one",
                "backfilled %(n)s snapshots (%(first)s to %(last)s): %(rows)s customer-dates; "
                "%(customers)s customers at the last one",
                len(r.dates),
            )
            % {
                "n": len(r.dates),
                "first": i18n.date(r.dates[0], lang),
                "last": i18n.date(r.dates[-1], lang),
                "rows": _count(r.rows, lang),
                "customers": _count(r.customers_last, lang),
            }
        )
    if r.kept:
        console.print(
            t.ungettext(
                "kept %(n)s snapshot a pipeline run wrote (%(dates)s): it holds CLV and potential",
                "kept %(n)s snapshots a pipeline run wrote (%(dates)s): they hold CLV and "
                "potential",
                len(r.kept),
            )
            % {"n": len(r.kept), "dates": ", ".join(i18n.date(d, lang) for d in r.kept)}
        )
    if r.segments:
        console.print(
            t.ugettext("saved segments backfilled: %(names)s")
            % {"names": escape(", ".join(r.segments))}
        )
    for name, why in r.skipped.items():
        word = t.ugettext("skipped")
        console.print(
            f"[yellow]{word}[/yellow] {escape(name)}: {escape(i18n.translate_message(lang, why))}"
        )


@history_app.command("dates")
def history_dates_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """The dates with stored snapshots."""
    from segmentum.history.snapshots import snapshot_dates

    lang = _check_lang(lang)
    settings = load_settings()
    dates = snapshot_dates(connect(warehouse or settings.warehouse))
    if as_json:
        print_json(json.dumps([d.isoformat() for d in dates]))
        return
    _ = i18n.translations(lang).ugettext
    if not dates:
        console.print(_("no snapshots yet"))
        return
    # Each date as the language writes it, beside the value --from and --to take.
    t = Table(title=_("snapshot dates"))
    t.add_column(_("date"))
    t.add_column(_("--from / --to"))
    for d in dates:
        t.add_row(i18n.date(d, lang), d.isoformat())
    console.print(t)


@history_app.command("prune")
def history_prune_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go; remove nothing.")
    ] = False,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Thin old daily snapshots to one a month (history_daily_days, history_months); every
    run does it too."""
    from segmentum.history.retention import prune

    lang = _check_lang(lang)
    t = i18n.translations(lang)
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    out = prune(wh, settings, dry_run=dry_run)
    if as_json:
        print_json(json.dumps(out.to_dict()))
        return
    keep = t.ungettext(
        "every snapshot of the last %(n)s day, then the first of each month",
        "every snapshot of the last %(n)s days, then the first of each month",
        out.daily_days,
    ) % {"n": out.daily_days}
    if out.months:
        keep += t.ungettext(" for %(n)s month", " for %(n)s months", out.months) % {"n": out.months}
    if not out.removed:
        console.print(t.ugettext("nothing to remove (kept: %(keep)s)") % {"keep": keep})
        return
    said = {
        "n": len(out.dates),
        "rows": _count(out.rows, lang),
        "dates": ", ".join(i18n.date(d, lang) for d in out.dates),
        "keep": keep,
    }
    if dry_run:
        text = t.ungettext(
            "would remove %(n)s snapshot date (%(rows)s rows): %(dates)s; kept: %(keep)s",
            "would remove %(n)s snapshot dates (%(rows)s rows): %(dates)s; kept: %(keep)s",
            len(out.dates),
        )
    else:
        text = t.ungettext(
            "removed %(n)s snapshot date (%(rows)s rows): %(dates)s; kept: %(keep)s",
            "removed %(n)s snapshot dates (%(rows)s rows): %(dates)s; kept: %(keep)s",
            len(out.dates),
        )
    console.print(text % said)


def _class_title(by: str, lang: str) -> str:
    """A classification (``--by``) as a person reads it: "Segmento RFM", "Segmento vip"."""
    from segmentum.titles import column_titles

    _ = i18n.translations(lang).ugettext
    titles = column_titles(_)
    if by.startswith("segment:"):
        return f"{titles['segment']} {by.split(':', 1)[1]}"
    return titles.get("cluster_name" if by == "cluster" else by, by)


def _class_words(wh: Warehouse, by: str, lang: str) -> Callable[[str], str]:
    """The states of a classification in ``lang``: class names, in / out of a saved segment,
    the discovered clusters by their Spanish names."""
    if by == "cluster":
        names: dict[str, str] = {}
        if lang == "es" and wh.has("customer_clusters"):
            c = wh.table("customer_clusters")
            pairs = c.select("cluster_name", "cluster_name_es").distinct().to_pyarrow()
            names = {
                str(a): str(b)
                for a, b in zip(*pairs.to_pydict().values(), strict=True)
                if a is not None and b is not None
            }
        # "(not yet a customer)" and "(gone)" are words of the page, not cluster names.
        return lambda x: names.get(x) or (i18n.label(lang, "state", x) if x[:1] == "(" else x)
    kind = "state" if by.startswith("segment:") else by
    return lambda x: i18n.label(lang, kind, x)


@history_app.command("migration")
def history_migration_cmd(
    date_from: Annotated[str, typer.Option("--from", help="Start snapshot date.")],
    date_to: Annotated[str, typer.Option("--to", help="End snapshot date.")],
    by: Annotated[
        str, typer.Option(help="rfm_segment, value_tier, lifecycle_stage, segment:NAME, cluster.")
    ] = "rfm_segment",
    html: Annotated[Path | None, typer.Option(help="Write an HTML page with the Sankey.")] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Who moved between segments from one date to another, and who is slipping."""
    from segmentum.history.charts import report_html
    from segmentum.history.migration import migration

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    m = migration(wh, _date(date_from, "--from"), _date(date_to, "--to"), by)
    if html:
        page = report_html(
            migration=m, lang=lang, state=_class_words(wh, by, lang), by=_class_title(by, lang)
        )
        html.write_text(page, encoding="utf-8")
    if as_json:
        print_json(json.dumps(m.to_dict(), default=str))
        return
    words = _class_words(wh, by, lang)

    def state(x: str) -> str:
        return escape(words(x))

    title = tr.ugettext("%(by)s: %(from)s → %(to)s (customers)") % {
        "by": _class_title(by, lang),
        "from": i18n.date(m.date_from, lang),
        "to": i18n.date(m.date_to, lang),
    }
    t = Table(title=escape(title), title_justify="left")
    cells = {
        a: [_count(m.counts[a][b], lang) if m.counts[a][b] else "" for b in m.states]
        for a in m.states
    }
    # A column per state, as wide as its name or its largest count (3 for borders, padding).
    wide = max((len(words(a)) for a in m.states), default=0) + 3
    wide += sum(
        max(len(words(b)), *(len(cells[a][j]) for a in m.states)) + 3
        for j, b in enumerate(m.states)
    )
    numbered = wide > console.width  # the names would be cut ("Ca…"): number the states
    t.add_column(tr.ugettext("from \\ to"))
    for i, s_ in enumerate(m.states, 1):
        t.add_column(str(i) if numbered else state(s_), justify="right")
    for i, a in enumerate(m.states, 1):
        if sum(m.counts[a].values()):
            t.add_row(f"{i} {state(a)}" if numbered else state(a), *cells[a])
    console.print(t)
    if numbered:
        console.print(tr.ugettext("The columns are numbered as the rows."))
    net = ", ".join(
        f"{state(k)} {'+' if v > 0 else '-'}{_count(abs(v), lang)}"
        for k, v in m.net_change().items()
        if v
    )
    console.print(tr.ugettext("net change: %(net)s") % {"net": net or "0"})
    if m.alerts:
        top = escape(", ".join(str(a["customer_id"]) for a in m.alerts[:5]))
        said = tr.ungettext(
            "%(n)s valuable customer moved to a risky state (top: %(top)s)",
            "%(n)s valuable customers moved to a risky state (top: %(top)s)",
            len(m.alerts),
        ) % {"n": _count(len(m.alerts), lang), "top": top}
        alert = tr.ugettext("alert:")
        console.print(f"[yellow]{escape(alert)}[/yellow] {said}")
    if html:
        console.print(tr.ugettext("wrote %(file)s") % {"file": escape(str(html))})


@history_app.command("cohorts")
def history_cohorts_cmd(
    by: Annotated[str, typer.Option(help="month (of first purchase) or segment.")] = "month",
    classification: Annotated[str, typer.Option(help="With --by segment.")] = "value_tier",
    html: Annotated[Path | None, typer.Option(help="Write an HTML page.")] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Retention and revenue curves by cohort."""
    from segmentum.history.charts import report_html
    from segmentum.history.cohorts import cohorts

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    settings = load_settings()
    c = cohorts(connect(warehouse or settings.warehouse), by, classification)
    if html:
        page = report_html(
            cohorts=c,
            lang=lang,
            state=lambda x: i18n.label(lang, classification, x),
            by=_class_title(classification, lang),
        )
        html.write_text(page, encoding="utf-8")
    if as_json:
        print_json(json.dumps(c.rows, default=str))
        return
    mat = c.matrix()
    title = (
        tr.ugettext("retention by cohort of first purchase month (months since first purchase)")
        if by == "month"
        else tr.ugettext("retention by %(by)s cohort (months since first purchase)")
        % {"by": _class_title(classification, lang)}
    )
    t = Table(title=escape(title))
    t.add_column(tr.ugettext("cohort"))
    t.add_column(tr.ugettext("customers"), justify="right")
    for p_ in range(7):
        t.add_column(str(p_), justify="right")
    sizes = c.sizes()
    for cohort, vals in sorted(mat.items()):
        name = (
            i18n.month(cohort, lang) if by == "month" else i18n.label(lang, classification, cohort)
        )
        # Blank: a month not reached yet; a month reached with no buyer is 0 %.
        t.add_row(
            escape(name),
            _count(sizes[cohort], lang),
            *(i18n.percent(vals[p_], lang, 0) if p_ in vals else "" for p_ in range(7)),
        )
    console.print(t)
    if html:
        console.print(tr.ugettext("wrote %(file)s") % {"file": escape(str(html))})


@history_app.command("forecast")
def history_forecast_cmd(
    by: Annotated[str, typer.Option(help="The classification to project.")] = "rfm_segment",
    periods: Annotated[int, typer.Option(help="Periods ahead.")] = 3,
    freq: Annotated[
        str,
        typer.Option(
            help="A period: month (the first snapshot of each month), week, or all (every "
            "snapshot)."
        ),
    ] = "month",
    html: Annotated[Path | None, typer.Option(help="Write an HTML page.")] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Markov projection of segment sizes, with its backtest error."""
    from segmentum.history.charts import report_html
    from segmentum.history.cohorts import forecast

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    f = forecast(wh, by, periods, freq=freq)
    if html:
        page = report_html(
            forecast=f, lang=lang, state=_class_words(wh, by, lang), by=_class_title(by, lang)
        )
        html.write_text(page, encoding="utf-8")
    if as_json:
        print_json(json.dumps(f.to_dict(), default=str))
        return
    if freq == "month":
        ahead = tr.ungettext("the next %(n)s month", "the next %(n)s months", periods)
    elif freq == "week":
        ahead = tr.ungettext("the next %(n)s week", "the next %(n)s weeks", periods)
    else:
        ahead = tr.ungettext("the next %(n)s period", "the next %(n)s periods", periods)
    words = _class_words(wh, by, lang)
    title = tr.ugettext("%(by)s: now and %(ahead)s") % {
        "by": _class_title(by, lang),
        "ahead": ahead % {"n": periods},
    }
    t = Table(title=escape(title))
    t.add_column(tr.ugettext("segment"))
    t.add_column(tr.ugettext("now"), justify="right")
    for i in range(periods):
        t.add_column(f"+{i + 1}", justify="right")
    for s_ in f.states:
        t.add_row(
            escape(words(s_)),
            _count(f.observed[-1].get(s_, 0), lang),
            *(_count(round(p[s_]), lang) for p in f.projected),
        )
    console.print(t)
    if f.backtest_mape is not None and f.baseline_mape is not None:
        console.print(
            tr.ugettext("one-step backtest error (MAPE) %(mape)s against %(base)s for 'no change'")
            % {
                "mape": i18n.percent(f.backtest_mape / 100, lang),
                "base": i18n.percent(f.baseline_mape / 100, lang),
            }
        )
    if html:
        console.print(tr.ugettext("wrote %(file)s") % {"file": escape(str(html))})


@history_app.command("runs")
def history_runs_cmd(
    limit: Annotated[int, typer.Option(help="How many runs.")] = 10,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Pipeline runs with their steps; a failed step is shown with its error."""
    from segmentum import incremental

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    if not wh.has("pipeline_runs"):
        if as_json:
            print_json([])
            return
        console.print(_("no runs yet"))
        return
    runs = wh.table("pipeline_runs").order_by(ibis.desc("started_at")).limit(limit)
    rows = runs.to_pyarrow().to_pylist()
    if as_json:
        print_json(json.dumps(rows, default=str))
        return
    t = Table(title=_("pipeline runs"))
    for c in (_("run"), _("started"), _("as of"), _("status"), _("kind")):
        t.add_column(c)
    t.add_column(_("steps"), overflow="fold")  # a failed step's cause is read whole
    for r in rows:
        steps = json.loads(r["steps"] or "[]")
        desc = ", ".join(
            f"{escape(i18n.step_name(lang, s['step']))} [red]"
            f"{escape(i18n.label(lang, 'status', 'failed'))}: "
            f"{escape(i18n.translate_message(lang, s.get('error', '')))}[/red]"
            if s["status"] == "failed"
            else f"{escape(i18n.step_name(lang, s['step']))} "
            f"({escape(i18n.label(lang, 'status', s['status']))})"
            for s in steps
        )
        word = escape(i18n.label(lang, "status", r["status"]))
        colour = {"ok": "green", "running": "yellow"}.get(r["status"], "red")
        status = f"[{colour}]{word}[/{colour}]"
        # Runs of an earlier version have no kind: shown as a dash, never None.
        kind = "—"
        if r.get("kind") in incremental.KINDS:
            why = (r.get("why_es") if lang == "es" else None) or r.get("why") or ""
            kind = f"{i18n.translations(lang).upgettext('run', incremental.KINDS[r['kind']][1])}"
            kind += f": {why}" if why else ""
        t.add_row(
            r["run_id"],
            i18n.date(r["started_at"], lang) if r["started_at"] else "—",
            i18n.date(r["as_of"], lang) if r["as_of"] else "—",
            status,
            escape(kind),
            desc,
        )
    console.print(t)


@history_app.command("events")
def history_events_cmd(
    segment: Annotated[str | None, typer.Option(help="Only this segment.")] = None,
    limit: Annotated[int, typer.Option(help="How many events.")] = 20,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """The membership log: who entered or left a segment, and when."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    if not wh.has("segment_events"):
        if as_json:
            print_json([])
            return
        console.print(
            _(
                "no membership changes recorded yet: they are recorded when a run's date (the "
                "day of the latest purchase) is later than the previous run's, after new "
                "invoices are loaded"
            )
        )
        return
    ev = wh.table("segment_events")
    if segment:
        ev = ev.filter(ev.segment == segment)
    summary = ev.group_by(["as_of", "segment", "event"]).aggregate(n=ev.count())
    rows = summary.order_by([ibis.desc("as_of"), "segment", "event"]).limit(limit)
    data = rows.to_pyarrow().to_pylist()
    if as_json:
        print_json(json.dumps(data, default=str))
        return
    t = Table(title=_("segment membership changes"))
    for c in (_("as of"), _("segment"), _("event"), _("customers")):
        t.add_column(c)
    for r in data:
        t.add_row(
            i18n.date(r["as_of"], lang),
            escape(r["segment"]),
            i18n.label(lang, "event", r["event"]),
            _count(r["n"], lang),
        )
    console.print(t)


campaign_app = typer.Typer(help="Campaigns: audiences, dry runs, sending, results.")
app.add_typer(campaign_app, name="campaign")


def _campaigns(warehouse: str | None) -> Any:
    from segmentum.campaigns.core import Campaigns

    settings = load_settings()
    return Campaigns(connect(warehouse or settings.warehouse), settings)


@campaign_app.command("create")
def campaign_create_cmd(
    name: str,
    tactic: Annotated[
        str, typer.Option(help="retention, winback, cross_sell, up_sell, acquisition, segment.")
    ],
    channel: Annotated[str, typer.Option(help="email, sms, push, inapp, web or file.")],
    target: Annotated[
        str, typer.Option(help="Segment name (or cluster:N) for --tactic segment.")
    ] = "",
    template: Annotated[Path | None, typer.Option(help="YAML template (es / en).")] = None,
    control_share: Annotated[float | None, typer.Option(help="Share held out.")] = None,
    cost_per_contact: Annotated[float, typer.Option(help="Cost of one contact.")] = 0.0,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Define a campaign (nothing is sent)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    cs = _campaigns(warehouse)
    c = cs.create(
        name,
        tactic,
        channel,
        target=target,
        template=template,
        control_share=control_share,
        cost_per_contact=cost_per_contact,
    )
    # Saved, but its audience needs data the warehouse does not hold yet: say so now.
    needs = {
        "acquisition": (
            "prospect_scores",
            _(
                "no prospects have been scored yet: its audience is empty until you run "
                "segmentum segment lookalike --target ..."
            ),
        ),
        "detractors": (
            "responses",
            _(
                "there are no survey answers yet: its audience is empty until you load them "
                "(segmentum ingest responses FILE)"
            ),
        ),
    }
    lacking = (
        needs[c.tactic][0] if c.tactic in needs and not cs.wh.has(needs[c.tactic][0]) else None
    )
    if as_json:
        fields = ("campaign_id", "name", "tactic", "channel", "target", "control_share", "seed")
        row: dict[str, Any] = {k: getattr(c, k) for k in fields}
        # The table its audience waits for (None: it has what it needs).
        row.update(cost_per_contact=c.cost_per_contact, template=c.template_data, needs=lacking)
        row.update(default_subject=c.default_subject)
        print_json(json.dumps(row, default=str))
        return
    console.print(
        _("created campaign %(id)s (%(tactic)s by %(channel)s)")
        % {
            "id": f"[bold]{escape(c.campaign_id)}[/bold]",
            "tactic": escape(i18n.label(lang, "tactic", c.tactic)),
            "channel": escape(i18n.label(lang, "channel", c.channel)),
        }
    )
    if lacking:
        console.print(f"[yellow]{escape(needs[c.tactic][1])}[/yellow]")
    _say_default_subject(c, lang)


# Channels whose messages show a subject (a push's or web message's title).
_SUBJECT_CHANNELS = ("email", "push", "inapp", "web")


def _say_default_subject(c: Any, lang: str) -> None:
    """Name the subject a campaign without one in its template sends, and how to set one."""
    if c.channel not in _SUBJECT_CHANNELS or not c.default_subject:
        return
    from segmentum.campaigns import channels

    _ = i18n.translations(lang).ugettext
    subject = c.template_data["subject"][lang]
    # A template of the user's own that gives a body but no subject: the fix is in that file.
    own = c.template_data.get("body") != channels.DEFAULT_TEMPLATE.get("body")
    text = (
        _(
            "subject: %(subject)s (the default for this tactic, in each recipient's "
            "language): your template has no subject; to write your own, add one to it "
            "(subject: with es and en, see docs/campaigns.md) and create the campaign again"
        )
        if own
        else _(
            "subject: %(subject)s (the default for this tactic, in each recipient's "
            "language); to write your own, create the campaign with --template FILE.yaml "
            "(subject and body in es and en, see docs/campaigns.md)"
        )
    )
    console.print(
        escape(text % {"subject": subject}),
        style="dim",
        highlight=False,
    )


@campaign_app.command("list")
def campaign_list_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """List campaigns."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    if as_json:
        fields = ("campaign_id", "name", "tactic", "channel", "target", "control_share", "seed")
        rows = [{k: getattr(c, k) for k in fields} for c in _campaigns(warehouse).list()]
        print_json(json.dumps(rows, default=str))
        return
    t = Table(title=_("campaigns"))
    for c in (_("id"), _("name"), _("tactic"), _("channel"), _("control")):
        t.add_column(c)
    for c in _campaigns(warehouse).list():
        t.add_row(
            escape(c.campaign_id),
            escape(c.name),
            escape(i18n.label(lang, "tactic", c.tactic)),
            escape(i18n.label(lang, "channel", c.channel)),
            _pct(c.control_share, lang),
        )
    console.print(t)


@campaign_app.command("delete")
def campaign_delete_cmd(
    campaign: Annotated[str, typer.Argument(help="The campaign's id or name.")],
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Delete a campaign that was never sent (a sent one keeps its log and results)."""
    lang = _check_lang(lang)
    c = _campaigns(warehouse).delete(campaign)
    console.print(
        i18n.translations(lang).ugettext("deleted campaign %(name)s (%(id)s)")
        % {"name": escape(c.name), "id": escape(c.campaign_id)}
    )


@campaign_app.command("suppressions")
def campaign_suppressions_cmd(
    limit: Annotated[int, typer.Option(help="Rows to show, the latest first.")] = 50,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Who must not be contacted: unsubscribed (with the link in every email, folded in
    first), bounced, or loaded from a suppression list; the latest first."""
    from segmentum.campaigns import unsubscribe

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    _ = tr.ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    unsubscribe.fold_waiting(wh, settings)  # clicks since the last send or run
    got = unsubscribe.suppressed(wh, settings, limit)
    total, by_reason, rows, hidden = got.total, got.by_reason, got.rows, got.emails_hidden
    if not total:
        if as_json:
            print_json(json.dumps({"total": 0, "by_reason": {}, "rows": []}))
            return
        console.print(_("nobody is suppressed yet"))
        return
    if as_json:
        print_json(json.dumps({"total": total, "by_reason": by_reason, "rows": rows}, default=str))
        return
    title = tr.ungettext(
        "%(n)s person must not be contacted", "%(n)s people must not be contacted", total
    ) % {"n": _count(total, lang)}
    counts = ", ".join(
        f"{i18n.label(lang, 'suppression_reason', k) if k else '—'}: {_count(n, lang)}"
        for k, n in by_reason.items()
    )
    tab = Table(title=escape(f"{title} ({counts})"), title_justify="left")
    for c in (_("customer"), _("email"), _("channel"), _("reason"), _("since")):
        tab.add_column(c)
    for r in rows:
        tab.add_row(
            escape(r["customer_id"] or "—"),
            escape(r["email"] or "—"),
            escape(i18n.label(lang, "channel", r["channel"] or "all")),
            escape(i18n.label(lang, "suppression_reason", r["reason"] or "—")),
            i18n.date(r["added_at"].date() if r["added_at"] else None, lang),
        )
    console.print(tab)
    if got.listed > len(rows):
        console.print(
            _("the latest %(n)s of %(total)s shown; --limit shows more")
            % {"n": _count(len(rows), lang), "total": _count(got.listed, lang)}
        )
    if hidden:
        console.print(
            _("email addresses hidden: they are personal data (setting export_personal_data)")
        )


@campaign_app.command("audience")
def campaign_audience_cmd(
    campaign: str,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 10,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Who is in the audience and why."""
    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    cs = _campaigns(warehouse)
    c = cs.get(campaign)
    aud = cs.audience(c)
    n = int(aud.count().to_pyarrow().as_py())
    rows = aud.order_by(ibis.desc("priority")).limit(limit).to_pyarrow().to_pylist()
    if as_json:
        print_json(json.dumps({"size": n, "top": rows}, default=str))
        return
    title = tr.ungettext(
        "%(name)s: %(n)s customer (%(tactic)s)", "%(name)s: %(n)s customers (%(tactic)s)", n
    ) % {"name": c.name, "n": _count(n, lang), "tactic": i18n.label(lang, "tactic", c.tactic)}
    t = Table(title=escape(title))
    t.add_column(tr.ugettext("customer"))
    t.add_column(tr.ugettext("why"))
    for r in rows:
        t.add_row(escape(str(r["customer_id"])), escape(cs.why(c, r, lang)))
    console.print(t)


def _receipts(counts: dict[str, int], lang: str) -> str:
    """SMS delivery receipts as "10 delivered, 1 expired", in ``lang`` (each count agreeing
    with its word; ``no_receipt``: no receipt yet)."""
    tr = i18n.translations(lang)

    def one(status: str, n: int) -> str:
        if status == "delivered":
            said = tr.ungettext("%(n)s delivered", "%(n)s delivered", n)
        elif status == "failed":
            said = tr.ungettext("%(n)s failed", "%(n)s failed", n)
        elif status == "expired":
            said = tr.ungettext("%(n)s expired", "%(n)s expired", n)
        elif status == "no_receipt":
            said = tr.ungettext("%(n)s without a receipt yet", "%(n)s without a receipt yet", n)
        else:  # a status a provider added: its code, as stored
            said = f"%(n)s {status}"
        return str(said % {"n": _count(n, lang)})

    return ", ".join(one(k, int(v)) for k, v in counts.items())


@campaign_app.command("send")
def campaign_send_cmd(
    campaign: str,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, send nothing.")] = False,
    immediately: Annotated[
        bool, typer.Option(help="Send now instead of at each recipient's best time.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for file campaigns.")] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Send what is due (run it again later for the rest); --dry-run shows who, when and why.

    Exits 1 when some messages failed, 5 when none could be delivered (server unreachable or
    refusing); what failed stays pending for the next send, nothing is sent twice.
    """
    from segmentum.errors import DeliveryError, PartialFailure

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    cs = _campaigns(warehouse)
    c = cs.get(campaign)
    if dry_run:
        plan = cs.dry_run(c, lang=lang)
        if as_json:
            print_json(json.dumps(plan, default=str))
            return
        console.print(
            _("%(name)s: %(n)s in the audience")
            % {"name": f"[bold]{escape(c.name)}[/bold]", "n": _count(plan["audience"], lang)}
        )
        for k, v in plan["outcomes"].items():
            console.print(f"  {escape(i18n.label(lang, 'outcome', k))}: {_count(v, lang)}")
        compared = int(plan["outcomes"].get("control", 0))
        if plan.get("control_group", 0) > compared:
            console.print(
                "[dim]"
                + _(
                    "%(drawn)s drawn at random for the control group: the %(compared)s who "
                    "would have been messaged are compared with the treated; the others could "
                    "not have been (their reason is counted above)"
                )
                % {
                    "drawn": _count(plan["control_group"], lang),
                    "compared": _count(compared, lang),
                }
                + "[/dim]"
            )
        if plan["examples"]:
            _say_default_subject(c, lang)
        for e in plan["examples"]:
            when = (
                _("at %(when)s UTC") % {"when": i18n.date(e["when"], lang)}
                if e["when"] is not None
                else _("when sent")
            )
            console.print(f"[dim]{escape(str(e['customer_id']))} {when}: {escape(e['why'])}[/dim]")
            console.print(f"  {escape(e['subject'])} | {escape(e['body'])}")
            if "parts" in e:  # an SMS: what it is billed as, before it is sent
                parts = i18n.translations(lang).ungettext(
                    "%(encoding)s, %(n)s part", "%(encoding)s, %(n)s parts", int(e["parts"])
                ) % {"encoding": e["encoding"], "n": _count(e["parts"], lang)}
                console.print(f"  [dim]({escape(parts)})[/dim]")
        return
    r = cs.send(c, immediately=immediately, out_dir=out)
    if as_json:
        print_json(json.dumps(r.__dict__, default=str))
    else:
        console.print(
            _(
                "%(name)s: %(delivered)s delivered now, %(later)s scheduled later, %(failed)s "
                "failed (%(retrying)s kept pending for the next send), %(control)s in the "
                "control group"
            )
            % {
                "name": escape(c.name),
                "delivered": _count(r.delivered, lang),
                "later": _count(r.scheduled_later, lang),
                "failed": _count(r.failed, lang),
                "retrying": _count(r.retrying, lang),
                # Those compared with the treated, as the dry run's "control" counts them.
                "control": _count(r.outcomes.get("control", 0), lang),
            }
        )
        compared = int(r.outcomes.get("control", 0))
        if r.control > compared:
            console.print(
                "  [dim]"
                + _(
                    "%(drawn)s drawn at random for the control group: the %(compared)s who "
                    "would have been messaged are compared with the treated; the others could "
                    "not have been messaged (the dry run counts their reasons)"
                )
                % {"drawn": _count(r.control, lang), "compared": _count(compared, lang)}
                + "[/dim]"
            )
        if r.resumed:
            console.print(
                "  "
                + _("%(n)s interrupted by an earlier send: sent again")
                % {"n": _count(r.resumed, lang)}
            )
        if r.not_sent:
            console.print(
                "  "
                + _("%(n)s not sent: consent withdrawn or unsubscribed since the plan")
                % {"n": _count(r.not_sent, lang)}
            )
        if r.receipts:
            console.print(
                "  " + _("SMS receipts: %(counts)s") % {"counts": _receipts(r.receipts, lang)}
            )
        for k, v in r.outcomes.items():
            console.print(f"  {escape(i18n.label(lang, 'outcome', k))}: {_count(v, lang)}")
        for e in r.errors:
            word = i18n.translations(lang).upgettext(*i18n.ERROR_WORD)
            console.print(f"[yellow]{word}:[/yellow] {escape(i18n.failure_reason(lang, e))}")
        for f in r.files:
            console.print(_("wrote %(path)s") % {"path": escape(str(f))})
    if r.failed and not r.delivered:
        raise DeliveryError(
            f"{r.failed:,} of {r.failed:,} messages failed: {r.stopped or r.errors[0]}",
            "nothing failed is lost: fix the cause and run the send again",
        )
    if r.failed:
        raise PartialFailure(
            f"{r.failed:,} of {r.failed + r.delivered:,} messages failed",
            "run the send again to retry those kept pending",
            failed=r.failed,
            total=r.failed + r.delivered,
        )


@campaign_app.command("results")
def campaign_results_cmd(
    campaign: str, warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """Treatment against control: uplift with its interval and p-value, incremental revenue, ROI."""
    from segmentum.campaigns.measure import explain, results

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    cs = _campaigns(warehouse)
    c = cs.get(campaign)
    r = results(cs.wh, c.campaign_id, cs.settings, c.cost_per_contact)
    receipts = None
    if c.channel == "sms":  # delivery receipts the service stored meanwhile (docs/sms.md)
        from segmentum.campaigns.sms import receipt_counts

        cs.fold_sms_receipts()
        receipts = receipt_counts(cs.wh, c.campaign_id)
    if as_json:
        print_json(json.dumps({**r.to_dict(), "sms_receipts": receipts}, default=str))
        return
    if receipts is not None:
        console.print(
            _("%(name)s: SMS %(counts)s")
            % {"name": escape(c.name), "counts": _receipts(receipts, lang)}
        )
    if not r.ready:
        from segmentum.campaigns.measure import waiting

        note = i18n.translate_message(lang, r.note)
        console.print(f"{escape(c.name)}: {escape(note)}")
        console.print(escape(waiting(r.to_dict(), cs.settings, lang)))
        return

    def pp(x: float | None) -> str:
        return "" if x is None else i18n.points(x, lang).removesuffix(" pp")

    # Where the outcomes come from: loaded campaign results, or purchases after the send.
    source = {"results": _("loaded results"), "derived": _("purchases after the send")}.get(
        r.source, r.source
    )
    t = Table(
        title=escape(_("%(name)s: results (%(source)s)") % {"name": c.name, "source": source})
    )
    for col, left in (
        (_("group"), True),
        (_("treated"), False),
        (_("control"), False),
        (_("conv. T"), False),
        (_("conv. C"), False),
        (_("uplift (95% CI)"), False),
        ("p", False),
        (_("incr. revenue"), False),
        ("ROI", False),
    ):
        t.add_column(col, justify="left" if left else "right")
    for e in [r.overall, *r.by_segment]:
        # "all" and "(unknown)" are words of ours; the others RFM segments.
        kind = "value" if e.group in ("all", "(unknown)") else "rfm_segment"
        t.add_row(
            escape(i18n.label(lang, kind, e.group)),
            _count(e.treated, lang),
            _count(e.control, lang),
            _pct(e.conv_treated, lang),
            _pct(e.conv_control, lang),
            f"{pp(e.uplift)} pp ({pp(e.uplift_low)}, {pp(e.uplift_high)})"
            if e.uplift is not None
            else "",
            "" if e.p_value is None else i18n.number(e.p_value, lang, 3),
            _money(e.incremental_revenue, lang),
            "" if e.roi is None or not e.revenue_clear else i18n.percent(e.roi, lang),
        )
    console.print(t)
    if r.failed:  # treated counts them too: a message that bounced was still sent to try
        console.print(
            _("Treated: %(sent)s sent, %(failed)s failed (bounced or refused).")
            % {"sent": _count(r.sent, lang), "failed": _count(r.failed, lang)}
        )
    for line in explain(r.to_dict(), cs.settings, lang):
        console.print(escape(line))


@campaign_app.command("times")
def campaign_times_cmd(
    segment: Annotated[str | None, typer.Option(help="Only this RFM segment.")] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """When and where each segment buys and opens messages (hour band, weekday, device, channel)."""
    from segmentum.campaigns.timing import segment_times

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    rows = segment_times(connect(warehouse or settings.warehouse))
    if segment:
        rows = [r for r in rows if r["segment"] == segment]
    if as_json:
        print_json(json.dumps(rows, default=str))
        return
    best: dict[str, dict[str, str]] = {}
    for r in rows:  # rows come most common first
        dim = str(r["dimension"])
        best.setdefault(str(r["segment"]), {}).setdefault(
            dim,
            f"{i18n.label(lang, dim, r['value'])} ({_pct(float(r['share']), lang)})",  # type: ignore[arg-type]
        )
    t = Table(title=_("best time and channel by segment"))
    for c in (_("segment"), _("hour band"), _("weekday"), _("device"), _("channel")):
        t.add_column(c)
    for seg, d in best.items():
        t.add_row(
            escape(i18n.label(lang, "rfm_segment", seg)),
            *(escape(d.get(k, "")) for k in ("hour_band", "weekday", "device", "channel")),
        )
    console.print(t)


@campaign_app.command("serve-web")
def campaign_serve_web_cmd(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Serve web messages (GET /v1/web-message?visitor=ID), the snippet (/segmentum.js) and
    survey answers (POST /v1/web-message/answer)."""
    import time

    from segmentum.campaigns.channels import serve_web_messages
    from segmentum.satisfaction.survey import answer_web_survey

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    cs = _campaigns(warehouse)
    # Survey answers of web-message campaigns come back to the same server.
    server, _port = serve_web_messages(
        cs.web_message, port=port, answer=lambda body: answer_web_survey(cs, body)
    )
    console.print(
        _("serving web messages on %(url)s (Ctrl+C to stop)") % {"url": f"http://127.0.0.1:{port}"}
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


@app.command("forget")
def forget_cmd(
    customer_id: str,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be erased, erase nothing.")
    ] = False,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: Annotated[
        str | None, typer.Option(help="es or en (default: the language setting).")
    ] = None,
) -> None:
    """Erase one customer (right to erasure): every table, the outbox; lists files on disk and
    downloads from the service."""
    from segmentum import i18n
    from segmentum.privacy import forget

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    r = forget(connect(warehouse or settings.warehouse), customer_id, dry_run=dry_run)
    if as_json:
        print_json(json.dumps(r.__dict__, default=str))
        return
    if not r.found and not r.exports:
        console.print(
            escape(_("no table holds customer %(id)r: nothing to erase") % {"id": customer_id})
        )
        return
    ngettext = i18n.translations(lang).ungettext

    def say(text: str, table: str, n: int) -> None:
        console.print("  " + escape(text % {"table": table, "n": i18n.number(n, lang, 0)}))

    for table, n in r.deleted.items():
        if dry_run:
            text = ngettext(
                "%(table)s: %(n)s row would be deleted", "%(table)s: %(n)s rows would be deleted", n
            )
        else:
            text = ngettext(
                "%(table)s: %(n)s row was deleted", "%(table)s: %(n)s rows were deleted", n
            )
        say(text, table, n)
    for table, n in r.anonymized.items():
        if dry_run:
            text = ngettext(
                "%(table)s: %(n)s row would be unlinked (kept as anonymous)",
                "%(table)s: %(n)s rows would be unlinked (kept as anonymous)",
                n,
            )
        else:
            text = ngettext(
                "%(table)s: %(n)s row was unlinked (kept as anonymous)",
                "%(table)s: %(n)s rows were unlinked (kept as anonymous)",
                n,
            )
        say(text, table, n)
    for table, n in r.kept.items():
        text = ngettext(
            "%(table)s: %(n)s row kept (so it is never contacted again)",
            "%(table)s: %(n)s rows kept (so they are never contacted again)",
            n,
        )
        say(text, table, n)
    for e in r.exports:
        where = e["path"] if e["exists"] else _("%(path)s (no longer on disk)") % e
        at = e["written_at"]
        when = f"{i18n.date(at.date(), lang)} {at:%H:%M} UTC" if hasattr(at, "date") else str(at)
        line = _("file: %(path)s: written %(at)s") % {"path": where, "at": when}
        console.print(escape(line), style="yellow", highlight=False)
    if r.exports:
        console.print(_("delete or regenerate the files above: they may contain this customer"))
    kinds = {
        "segment export": _("segment export"),
        "ad audience": _("ad audience"),
        "retargeting audience": _("retargeting audience"),
        "look-alike seed": _("look-alike seed"),
    }
    for d in r.downloads:
        what = kinds.get(d["kind"], d["kind"]) + (f" {d['segment']}" if d["segment"] else "")
        what += f" ({d['platform']})" if d["platform"] else ""
        line = ngettext(
            "downloaded: %(what)s, %(rows)s row%(personal)s, by key %(name)s (%(key)s) "
            "through %(via)s (%(endpoint)s) on %(at)s UTC",
            "downloaded: %(what)s, %(rows)s rows%(personal)s, by key %(name)s (%(key)s) "
            "through %(via)s (%(endpoint)s) on %(at)s UTC",
            d["rows"],
        ) % {
            "what": what,
            "rows": i18n.number(d["rows"], lang, 0),
            "personal": _(" with personal data") if d["personal_data"] else "",
            "name": d["key_name"] or "?",
            "key": d["key_id"],
            "via": _("the API") if d["via"] == "api" else _("the dashboard"),
            "endpoint": d["endpoint"],
            "at": f"{i18n.date(d['at'].date(), lang)} {d['at']:%H:%M:%S}",
        }
        console.print(escape(line), style="yellow", highlight=False)
    if r.downloads:
        console.print(
            ngettext(
                "ask the person above to delete the downloaded file: it may contain this "
                "customer (%(n)s download)",
                "ask the people above to delete the downloaded files: they may contain this "
                "customer (%(n)s downloads)",
                len(r.downloads),
            )
            % {"n": i18n.number(len(r.downloads), lang, 0)}
        )


audience_app = typer.Typer(help="Ad audiences: segments as customer-match files (hashed).")
app.add_typer(audience_app, name="audience")


def _ad_drops(lang: str) -> dict[str, str]:
    """Why customers are left out of an ad audience, in ``lang``."""
    _ = i18n.translations(lang).ugettext
    return {
        "no_consent": _("no advertising consent (consent_ads)"),
        "invalid_phone": _("no usable email, and the phone is not a valid number"),
        "no_contact": _("no usable email or phone"),
    }


@audience_app.command("export")
def audience_export_cmd(
    segment: str,
    fmt: Annotated[str, typer.Option("--format", help="google, meta or tiktok.")] = "google",
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default SEGMENT-FORMAT.csv).")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="ISO-2 country for phones without + and no country."),
    ] = None,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Write a segment as a Google Ads, Meta or TikTok customer-match file (SHA-256 hashed)."""
    from segmentum.campaigns.adaudiences import export

    lang = _check_lang(lang)
    settings = load_settings()
    r = export(
        connect(warehouse or settings.warehouse),
        segment,
        fmt,
        settings,
        out=out,
        as_of=_as_of(as_of),
        default_region=region,
    )
    if as_json:
        print_json(r.to_dict())
        return
    what = i18n.translations(lang).ugettext("customers of %(segment)s") % {"segment": repr(segment)}
    _print_ad_report(r, what, lang)


def _print_ad_report(r: Any, what: str, lang: str = "en") -> None:
    _ = i18n.translations(lang).ugettext
    console.print(
        _("%(exported)s of %(size)s %(what)s written to %(path)s (%(format)s)")
        % {
            "exported": _count(r.exported, lang),
            "size": _count(r.size, lang),
            "what": escape(what),
            "path": escape(str(r.path)),
            "format": escape(r.format),
        }
    )
    drops = _ad_drops(lang)
    for reason, n in r.dropped.items():
        if n:
            console.print(
                "  " + _("left out: %(n)s %(why)s") % {"n": _count(n, lang), "why": drops[reason]}
            )
    if r.phones_invalid_kept:
        console.print(
            "  "
            + i18n.translations(lang).ungettext(
                "%(n)s exported by email only: their phone is not valid",
                "%(n)s exported by email only: their phones are not valid",
                r.phones_invalid_kept,
            )
            % {"n": _count(r.phones_invalid_kept, lang)}
        )


@audience_app.command("retarget")
def audience_retarget_cmd(
    viewed: Annotated[
        bool, typer.Option("--viewed", help="Viewed a product and did not buy it.")
    ] = False,
    carted: Annotated[
        bool, typer.Option("--carted", help="Added a product to the cart and did not buy it.")
    ] = False,
    days: Annotated[int, typer.Option("--days", help="Window: the last N days.")] = 30,
    platform: Annotated[str, typer.Option("--platform", help="google, meta or tiktok.")] = "meta",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="File to write (default retarget-KIND-Nd-PLATFORM.csv)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="End of the window YYYY-MM-DD (default: the last event)."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="ISO-2 country for phones without + and no country."),
    ] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Customers who viewed or carted products in the last N days without buying them, as a
    customer-match file, and the products in a second file."""
    from segmentum.campaigns.adaudiences import export_retargeting

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    if viewed == carted:
        raise InputError("say which: --viewed or --carted", "e.g. --carted --days 7")
    end = None
    if until is not None:
        day = _date(until, "--until")
        end = _dt.datetime(day.year, day.month, day.day, 23, 59, 59)
    settings = load_settings()
    _file, _products, r = export_retargeting(
        connect(warehouse or settings.warehouse),
        "viewed" if viewed else "carted",
        days,
        platform,
        settings,
        out=out,
        until=end,
        default_region=region,
    )
    if as_json:
        print_json(r.to_dict())
        return
    console.print(
        _("window: %(since)s to %(until)s")
        % {"since": i18n.date(r.since, lang), "until": i18n.date(r.until, lang)}
    )
    what = {
        "viewed": _("customers who viewed without buying"),
        "carted": _("customers who carted without buying"),
    }.get(r.kind, r.kind)
    _print_ad_report(r, what, lang)
    console.print(
        _("%(n)s products in %(path)s")
        % {"n": _count(r.products, lang), "path": escape(str(r.products_path))}
    )


@audience_app.command("seed")
def audience_seed_cmd(
    top: Annotated[int | None, typer.Option("--top", help="The N best customers by CLV.")] = None,
    top_percent: Annotated[
        float | None, typer.Option("--top-percent", help="The best P% of scored customers.")
    ] = None,
    platform: Annotated[str, typer.Option("--platform", help="google, meta or tiktok.")] = "meta",
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default seed-top-N-PLATFORM.csv).")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="ISO-2 country for phones without + and no country."),
    ] = None,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """The best customers by CLV as a look-alike seed (Meta: with the CLV as its value)."""
    from segmentum.campaigns.adaudiences import export_seed

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    _file, r = export_seed(
        connect(warehouse or settings.warehouse),
        platform,
        settings,
        top=top,
        top_percent=top_percent,
        out=out,
        as_of=_as_of(as_of),
        default_region=region,
    )
    if as_json:
        print_json(r.to_dict())
        return
    what = _("best customers by CLV (of %(n)s scored)") % {"n": _count(r.scored, lang)}
    _print_ad_report(r, what, lang)
    if r.min_clv is not None:
        console.print(
            "  "
            + _("CLV from %(low)s, %(total)s in all")
            % {"low": _money(r.min_clv, lang), "total": _money(r.total_clv, lang)}
        )
    if r.value_column:
        console.print("  " + _("the CLV is the value column, for a value-based look-alike"))


@app.command("playbook")
def playbook_cmd(
    by: Annotated[
        str, typer.Option("--by", help="rfm_segment, value_potential, lifecycle_stage or all.")
    ] = "all",
    lang: Annotated[
        str | None, typer.Option(help="es or en (default: the language setting).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Your playbook YAML (default: the shipped one).")
    ] = None,
    uplift: Annotated[
        float | None, typer.Option("--uplift", help="Assumed uplift, e.g. 0.05 (default: file).")
    ] = None,
    write_defaults: Annotated[
        Path | None,
        typer.Option("--write-defaults", help="Copy the default playbook here to edit, and stop."),
    ] = None,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What to do with each segment: tactic, channel, timing, message, incentive, value at stake."""
    import shutil

    from segmentum.campaigns.playbook import DEFAULT_FILE, DIMENSIONS, playbook

    lang = _check_lang(lang)
    if write_defaults is not None:
        if write_defaults.exists():
            raise InputError(f"{write_defaults} exists", "choose another name or delete it")
        shutil.copyfile(DEFAULT_FILE, write_defaults)
        said = i18n.translations(lang).ugettext(
            "wrote %(path)s: edit it, then segmentum playbook --file it"
        )
        console.print(said % {"path": escape(str(write_defaults))})
        return
    dims = DIMENSIONS if by == "all" else (by,)
    settings = load_settings()
    plays, used = playbook(
        connect(warehouse or settings.warehouse),
        as_of=_as_of(as_of),
        dimensions=dims,
        path=file,
        uplift=uplift,
    )
    if not plays:  # a date without stored classes: say so, not an empty page
        raise InputError(
            f"no customer classes are stored at {used.isoformat()}",
            "use a date with snapshots (segmentum history dates), or leave out --as-of for "
            "the latest",
        )
    if as_json:
        print_json({"as_of": used.isoformat(), "plays": [p.to_dict() for p in plays]})
        return
    from segmentum.campaigns.playbook import load_playbook

    words = load_playbook(file)["labels"][lang]
    for dim in dims:
        rows = [p for p in plays if p.dimension == dim]
        if not rows:
            continue
        title = f"{_class_title(dim, lang)} ({i18n.date(used, lang)})"
        t = Table(title=escape(title), show_lines=True)
        for col in ("segment", "customers", "value_at_stake", "what_to_do", "favours"):
            t.add_column(words[col], overflow="fold")
        for p in rows:
            todo = (
                f"{escape(p.tactic[lang])} · {escape(p.channel)} · {escape(p.timing[lang])}\n"
                f"[italic]{escape(p.message.get(lang, ''))}[/italic]\n"
                f"{escape(p.incentive_advice.get(lang, ''))}"
                if p.in_playbook
                else f"[dim]{escape(words['missing'])}[/dim]"
            )
            fav = ", ".join(
                f"{escape(str(f['category']))} ×{i18n.number(f['lift'], lang, 2)}"
                for f in p.favours
            )
            band = p.price_bands[0] if p.price_bands else None
            if band is not None and band["lift"] > 1:
                fav += f"\n{words[band['band']]} ×{i18n.number(band['lift'], lang, 2)}"
            t.add_row(
                escape(i18n.label(lang, dim, p.segment)),
                i18n.number(p.size, lang, 0),
                f"{i18n.number(p.value_at_stake, lang, 2)}\n"
                f"[dim]CLV {i18n.number(p.clv_total, lang, 2)} x "
                f"{i18n.percent(p.uplift, lang)}[/dim]",
                todo,
                fav.strip() or i18n.MISSING,
            )
        console.print(t)
    console.print(escape(words["assumption"]))


realtime_app = typer.Typer(help="Real-time segments: live membership, the event queue, webhooks.")
app.add_typer(realtime_app, name="realtime")
events_app = typer.Typer(help="Tracked events (what POST /v1/events records).")
app.add_typer(events_app, name="events")


def _realtime(warehouse: str | None) -> Any:
    from segmentum.realtime.store import RealtimeStore

    settings = load_settings()
    return RealtimeStore.for_warehouse(warehouse or settings.warehouse, settings), settings


@realtime_app.command("status")
def realtime_status_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """Which segments run live (and why the others do not), the last event, the events waiting
    for the next run, and the webhook outbox. Works while a pipeline job holds the warehouse."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    store, _settings = _realtime(warehouse)
    st = store.status()
    if as_json:
        print_json(st)
        return
    t = Table(title=_("segments"), title_justify="left")
    for c in (_("segment"), _("live"), _("why not")):
        t.add_column(c)
    for s in st["segments"]:
        t.add_row(
            escape(s["name"]),
            _("yes") if s["realtime"] else _("no"),
            escape(i18n.translate_message(lang, s["reason"])),
        )
    console.print(t)
    last = st["last_event"]
    line = _("events: %(n)s tracked, %(waiting)s waiting for the next run") % {
        "n": _count(st["events"], lang),
        "waiting": _count(st["pending_warehouse"], lang),
    }
    if last:
        at = last["at"] if lang == "en" else i18n.date(last["at"], lang)
        line += _("; last %(event)s at %(at)s") % {
            "event": escape(str(last["event_type"])),
            "at": at,
        }
    console.print(line)
    box = st["outbox"]
    console.print(
        _("webhooks: %(pending)s to send, %(delivered)s delivered, %(failed)s failed")
        % {
            "pending": _count(box["pending"], lang),
            "delivered": _count(box["delivered"], lang),
            "failed": _count(box["failed"], lang),
        }
    )
    for e in st["outbox_errors"]:
        where = escape(str(e["url"]))
        why = escape(i18n.translate_message(lang, str(e["last_error"])))
        err.print(f"[yellow]{_('last error:')}[/yellow] {where}: {why}")


@events_app.command("track")
def events_track_cmd(
    file: Annotated[str, typer.Argument(help="A JSON-lines file of events, or - for stdin.")],
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Record events from a file (one JSON object a line, as POST /v1/events takes them),
    re-evaluate the live segments of their customers and send the webhooks."""
    from segmentum.realtime.deliver import deliver_pending
    from segmentum.realtime.engine import Engine
    from segmentum.realtime.events import check_events
    from segmentum.serving import ServingStore, serving_path

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    store, settings = _realtime(warehouse)
    text = sys.stdin.read() if file == "-" else _read_text(Path(file))
    events: list[Any] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError as exc:
                raise InputError(
                    tr.ugettext("%(file)s, line %(n)s: not JSON (%(error)s)")
                    % {"file": file, "n": _count(n, lang), "error": exc},
                    tr.ugettext("write one event a line, each a JSON object"),
                ) from exc
    rows, problems = check_events(events, timezone=settings.timezone)
    if problems:
        first = problems[0]
        said = tr.ungettext(
            "%(file)s: %(n)s problem, nothing recorded; first: event %(event)s, %(field)s: "
            "%(message)s",
            "%(file)s: %(n)s problems, nothing recorded; first: event %(event)s, %(field)s: "
            "%(message)s",
            len(problems),
        )
        raise InputError(
            said
            % {
                "file": file,
                "n": _count(len(problems), lang),
                "event": _count(first.index + 1, lang),
                "field": first.field,
                "message": i18n.translate_message(lang, first.message),
            },
            first.hint,
        )
    target = serving_path(warehouse or settings.warehouse, settings.serving_store)
    engine = Engine(store, ServingStore(target) if target else None, settings)
    result = engine.track(rows)
    sent = deliver_pending(store)
    if as_json:
        print_json({**result.to_dict(), "webhooks_delivered": sent.delivered})
        return
    r = result.report
    console.print(
        i18n.translations(lang).ugettext(
            "%(read)s events read: %(accepted)s recorded, %(duplicates)s already recorded; "
            "%(changes)s segment changes, %(delivered)s webhooks delivered"
        )
        % {
            "read": _count(r.read, lang),
            "accepted": _count(r.accepted, lang),
            "duplicates": _count(r.duplicates, lang),
            "changes": _count(len(result.transitions), lang),
            "delivered": _count(sent.delivered, lang),
        }
    )


key_app = typer.Typer(help="API keys for the REST service and the dashboard.")
app.add_typer(key_app, name="api-key")


@key_app.command("create")
def key_create_cmd(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            "--scope",
            help="Comma-separated: read, write, admin, track (sends events only: for web pages).",
        ),
    ] = "read",
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Create a key; it is printed once and stored only as a hash (the key alone on stdout;
    what it is for on stderr, in ``--lang``)."""
    from segmentum.service.auth import create_key
    from segmentum.service.state import StateStore

    settings = load_settings()
    # Keys live in the state store beside the warehouse: this works while serve runs.
    store = StateStore.for_warehouse(warehouse or settings.warehouse, settings)
    lang = _check_lang(lang)
    key = create_key(store, name, [s.strip() for s in scopes.split(",")])
    console.print(key, soft_wrap=True)
    err.print(
        i18n.translations(lang).ugettext(
            "the key above is shown once: keep it now (only its hash is stored)"
        ),
        style="dim",
    )


@key_app.command("list")
def key_list_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """Keys with their scopes (never the secrets)."""
    from segmentum.service.auth import list_keys
    from segmentum.service.state import StateStore

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    keys = list_keys(StateStore.for_warehouse(warehouse or settings.warehouse, settings))
    split = [
        [x.strip() for x in str(k["scopes"]).strip("[]").replace("'", "").split(",") if x.strip()]
        for k in keys
    ]
    if as_json:
        rows = [
            {
                "key_id": str(k["key_id"]),
                "name": str(k["name"]),
                "scopes": scopes,
                "created_at": str(k["created_at"])[:19],
                "revoked": bool(k["revoked"]),
            }
            for k, scopes in zip(keys, split, strict=True)
        ]
        print_json(json.dumps(rows))
        return
    t = Table(title=_("API keys"))
    for c in (_("id"), _("name"), _("scopes"), _("created"), _("revoked")):
        t.add_column(c)
    for k, scopes in zip(keys, split, strict=True):
        created = (
            str(k["created_at"])[:19]
            if lang == "en"
            else i18n.date(str(k["created_at"])[:19], lang)
        )
        t.add_row(
            escape(str(k["key_id"])),
            escape(str(k["name"])),
            escape(", ".join(i18n.label(lang, "scope", x) for x in scopes if x)),
            created,
            _("yes") if k["revoked"] else "",
        )
    console.print(t)


@key_app.command("revoke")
def key_revoke_cmd(key_id: str, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Revoke a key by its id."""
    from segmentum.service.auth import revoke_key
    from segmentum.service.state import StateStore

    lang = _check_lang(lang)
    settings = load_settings()
    revoke_key(StateStore.for_warehouse(warehouse or settings.warehouse, settings), key_id)
    console.print(i18n.translations(lang).ugettext("revoked %(id)s") % {"id": escape(key_id)})


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    new_key: Annotated[
        bool, typer.Option(help="Create and print an admin key for the dashboard.")
    ] = False,
    warehouse: WarehouseOpt = None,
    serving: Annotated[
        str | None,
        typer.Option(
            help="Serving store to answer lookups and pages from (duckdb:///path.duckdb, or "
            "postgresql://user@host/db for several replicas); default: beside a DuckDB "
            "warehouse, inside a pyspark:///folder one."
        ),
    ] = None,
    lang: LangOpt = None,
) -> None:
    """Serve the REST API (docs at /docs) and the dashboard (/dashboard)."""
    import uvicorn

    from segmentum.service.app import create_app
    from segmentum.service.auth import create_key

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    if serving:  # duckdb:///abs/path.duckdb, a plain path or a postgresql:// URL
        settings = settings.with_overrides(serving_store=str(duckdb_file(serving) or serving))
    # The server opens a DuckDB warehouse only for the moment a request needs it, so every
    # other command keeps working on the same file while it runs (docs/service.md).
    app_ = create_app(warehouse or settings.warehouse, settings)
    console.print(
        _("dashboard: %(dashboard)s   API docs: %(docs)s")
        % {
            "dashboard": f"http://{host}:{port}/dashboard",
            "docs": f"http://{host}:{port}/docs",
        }
    )
    if new_key:
        key = create_key(app_.state.svc.state, "dashboard", ["admin"])
        console.print(_("login key: %(key)s") % {"key": key}, soft_wrap=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("segmentum-report.html"),
    lang: Annotated[
        str | None, typer.Option(help="es or en (default: the language setting).")
    ] = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Write one self-contained HTML report (charts embedded, opens offline)."""
    from segmentum.report import write_report

    lang = _check_lang(lang)
    settings = load_settings()
    p = write_report(connect(warehouse or settings.warehouse), out, lang)
    console.print(i18n.translations(lang).ugettext("wrote %(path)s") % {"path": escape(str(p))})


@app.command("quarantine")
def quarantine_cmd(
    reason: Annotated[
        str | None, typer.Option(help="Only reasons containing this text (e.g. future).")
    ] = None,
    file: Annotated[str | None, typer.Option(help="Only files whose path contains this.")] = None,
    batch: Annotated[str | None, typer.Option(help="Only this ingest batch.")] = None,
    rows_: Annotated[
        bool, typer.Option("--rows", help="List the rows instead of the summary by reason.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to show with --rows.")] = 20,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: Annotated[
        str | None,
        typer.Option(help="Language of the tables: es or en (default: the language setting)."),
    ] = None,
) -> None:
    """Rejected rows summarised by reason (count, first example); --rows lists them."""
    from segmentum.ingest.core import named_column, quarantine_rows, quarantine_summary

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    wh = connect(warehouse or load_settings().warehouse)
    if not rows_:
        summary = quarantine_summary(wh, reason=reason, file=file, batch=batch)
        if as_json:
            print_json(json.dumps(summary, default=str))
            return
        total = sum(r["rows"] for r in summary)
        t = Table(
            title=i18n.translations(lang).ungettext(
                "quarantine: %(n)s row by reason", "quarantine: %(n)s rows by reason", total
            )
            % {"n": _count(total, lang)},
            title_justify="left",
        )
        t.add_column(_("reason"))
        t.add_column(_("rows"), justify="right")
        t.add_column(_("files"), justify="right")
        t.add_column(_("first example (file, row, column, value)"))
        for r in summary:
            example = _("%(file)s row %(row)s") % {
                "file": Path(r["file"]).name,
                "row": r["source_row"],
            }
            if r["column"] and r["value"] is not None:
                example += f", {named_column(r)} = '{r['value']}'"
            if r["example_reason"] != r["reason"]:  # "repeats row N": which row it repeats
                example += f" ({i18n.translate_reason(lang, r['example_reason'])})"
            t.add_row(
                escape(i18n.translate_reason(lang, r["reason"])),
                _count(r["rows"], lang),
                _count(r["files"], lang),
                escape(example),
            )
        console.print(t)
        console.print(
            "[dim]"
            + escape(_("the rows themselves: segmentum quarantine --rows [--reason ...]"))
            + "[/dim]"
        )
        return
    rows = quarantine_rows(wh, reason=reason, file=file, batch=batch, limit=limit)
    if as_json:
        print_json(json.dumps(rows, default=str))
        return
    t = Table(title=_("quarantine (first %(n)s)") % {"n": limit}, title_justify="left")
    for c in (_("file"), _("row"), _("column"), _("value"), _("reason")):
        t.add_column(c)
    for r in rows:
        t.add_row(
            escape(Path(r["file"]).name),
            str(r["source_row"]),
            escape(named_column(r)),
            escape(r["value"] or ""),
            escape(i18n.translate_reason(lang, r["reason"])),
        )
    console.print(t)


@app.command("batches")
def batches_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """List ingested files with their counts."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    wh = connect(warehouse or load_settings().warehouse)
    rows = wh.table("ingest_batches").order_by("loaded_at").to_pyarrow().to_pylist()
    if as_json:
        print_json(json.dumps(rows, default=str))
        return
    t = Table(title=_("ingest batches"), title_justify="left")
    for c in (
        _("batch"),
        _("table"),
        _("file"),
        _("loaded (UTC)"),
        _("read"),
        _("accepted"),
        _("quarantined"),
    ):
        t.add_column(c)
    for r in rows:
        when = (
            f"{r['loaded_at']:%Y-%m-%d %H:%M}" if lang == "en" else i18n.date(r["loaded_at"], lang)
        )
        t.add_row(
            escape(r["batch_id"]),
            escape(i18n.label(lang, "table_name", r["table_name"])),
            escape(Path(r["file"]).name),
            when,
            _count(r["rows_read"], lang),
            _count(r["accepted"], lang),
            _count(r["quarantined"], lang),
        )
    console.print(t)


@app.command("settings")
def settings_cmd(as_json: JsonOpt = False, lang: LangOpt = None) -> None:
    """List every setting with its current value (segmentum.toml and SEGMENTUM_* variables)."""
    current = load_settings()
    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    # The help texts are catalog entries of context "setting" (i18n.extract_messages).
    rows = [
        {
            "name": s.name,
            "value": getattr(current, s.name),
            "default": s.default,
            "help": tr.upgettext("setting", s.help),
        }
        for s in SETTINGS
    ]
    if as_json:
        print_json(json.dumps(rows, default=str))
        return
    t = Table(title=tr.ugettext("settings"), title_justify="left")
    for c in (tr.ugettext("name"), tr.ugettext("value"), tr.ugettext("help")):
        t.add_column(c)
    for r in rows:
        t.add_row(r["name"], escape(_as_written(r["value"])), escape(r["help"]))
    console.print(t)


def _as_written(value: Any) -> str:
    """A setting's value as segmentum.toml writes it, in every language (it is what a user
    types there): ``true``, ``[12.0, 8.0]``, ``0.01``; nothing for an unset one.

    >>> [_as_written(v) for v in (True, (12.0, 8.0), 0.01, None, "es")]
    ['true', '[12.0, 8.0]', '0.01', '', 'es']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_as_written(v) for v in value) + "]"
    return str(value)


@app.command("doctor")
def doctor_cmd(
    repair: Annotated[
        bool, typer.Option("--repair", help="Repair what can be repaired (compacts the file).")
    ] = False,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Check the warehouse for what interrupted processes leave behind, and repair it."""
    from segmentum.maintenance import doctor

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    report = doctor(connect(warehouse or settings.warehouse), repair=repair)
    if as_json:
        print_json(report.to_dict())
    else:
        style = {"ok": "green", "info": "dim", "problem": "red", "repaired": "yellow"}
        words = {
            "ok": _("ok"),
            "info": _("info"),
            "problem": _("problem"),
            "repaired": _("repaired"),
        }
        t = Table(title=escape(_("doctor: %(url)s") % {"url": report.url}), title_justify="left")
        for c in (_("check"), _("status"), _("what was found")):
            t.add_column(c)
        for f in report.findings:
            message = i18n.translate_message(lang, f.message)
            hint = i18n.translate_message(lang, f.hint) if f.hint else ""
            text = escape(message) + (f"\n[dim]{escape(hint)}[/dim]" if hint else "")
            status = f"[{style[f.status]}]{words.get(f.status, f.status)}[/{style[f.status]}]"
            t.add_row(escape(i18n.translate_message(lang, f.check)), status, text)
        console.print(t)
    if report.problems:
        raise PartialFailure(
            "1 problem found"
            if len(report.problems) == 1
            else f"{len(report.problems)} problems found",
            "repair them: segmentum doctor --repair" if not repair else None,
            failed=len(report.problems),
            total=len(report.findings),
        )


@app.command("backup")
def backup_cmd(
    path: Annotated[Path, typer.Argument(help="A new folder for the backup.")],
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Copy every table of a DuckDB warehouse into a new folder (Parquet and a manifest)."""
    from segmentum.maintenance import backup

    lang = _check_lang(lang)
    settings = load_settings()
    with connect(warehouse or settings.warehouse) as wh:
        r = backup(wh, path)
    if as_json:
        print_json(r.to_dict())
        return
    rows = sum(r.tables.values())
    console.print(
        i18n.translations(lang).ugettext("backed up %(n)s tables (%(rows)s rows) to %(path)s")
        % {
            "n": _count(len(r.tables), lang),
            "rows": _count(rows, lang),
            "path": escape(str(r.path)),
        }
    )


@app.command("restore")
def restore_cmd(
    path: Annotated[Path, typer.Argument(help="A folder written by segmentum backup.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a warehouse that already holds data.")
    ] = False,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Restore a backup into a DuckDB warehouse (checked table by table before it is used)."""
    from segmentum.maintenance import restore

    lang = _check_lang(lang)
    settings = load_settings()
    r = restore(path, warehouse or settings.warehouse, replace=replace)
    if as_json:
        print_json(r.to_dict())
        return
    rows = sum(r.tables.values())
    console.print(
        i18n.translations(lang).ugettext("restored %(n)s tables (%(rows)s rows) into %(path)s")
        % {
            "n": _count(len(r.tables), lang),
            "rows": _count(rows, lang),
            "path": escape(str(r.path)),
        }
    )


def _error_log_dir() -> Path:
    """Where tracebacks of unexpected errors go: the ``error_log_dir`` setting, else the user's
    state folder (``$XDG_STATE_HOME/segmentum``, ``~/.local/state/segmentum``)."""
    try:
        configured = load_settings().error_log_dir
    except Exception:  # a broken settings file must not hide the original error
        configured = os.environ.get("SEGMENTUM_ERROR_LOG_DIR", "")
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "segmentum"


def _write_error_log(exc: BaseException, args: list[str]) -> Path | None:
    """Write the traceback of an unexpected error to a new log file; its path, or None."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (
        f"segmentum {' '.join(args)}\n"
        f"at {_dt.datetime.now().isoformat(timespec='seconds')}, python {sys.version.split()[0]}"
        f", in {Path.cwd()}\n\n" + "".join(traceback.format_exception(exc))
    )
    # The user's state folder first; the working folder when that cannot be written.
    for folder in (_error_log_dir(), Path.cwd()):
        path = folder / f"segmentum-error-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _say(message: str, hint: str | None = None, lang: str = "en") -> None:
    """An ``error:`` line and, when there is one, a ``hint:`` line, in ``lang`` where the
    message's pattern is known; never wrapped (a rule's error adds the rule and a caret under
    the position at fault)."""
    t = i18n.translations(lang)
    word, hint_word = t.upgettext(*i18n.ERROR_WORD), t.upgettext(*i18n.HINT_WORD)
    message = "\n".join(i18n.translate_message(lang, line) for line in message.split("\n"))
    err.print(f"[red]{word}:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        hint = i18n.translate_message(lang, hint)
        err.print(f"[dim]{hint_word}: {escape(hint)}[/dim]", highlight=False, soft_wrap=True)


def _asked_language(args: list[str]) -> str:
    """The language of a command's error lines: its --lang, else the language setting."""
    for i, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--lang=") else None
        if a == "--lang" and i + 1 < len(args):
            value = args[i + 1]
        if value is not None:
            return value if value in i18n.LANGUAGES else "en"
    return _language_setting()


def _usage_hint(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return "see segmentum --help"
    usage = " ".join(ctx.get_usage().split())
    return f"{usage[0].lower()}{usage[1:]}; see {ctx.command_path} --help"


def _usage_message(exc: typer.TyperException) -> str:
    text = " ".join(exc.format_message().split())
    return text[:1].lower() + text[1:] if text else "the command line is not valid"


satisfaction_app = typer.Typer(
    help="Satisfaction: NPS and CSAT per segment, the words of the comments, valuable detractors."
)
app.add_typer(satisfaction_app, name="satisfaction")


def _num(v: Any, digits: int = 0, lang: str = "en") -> str:
    if lang != "en":
        return i18n.number(v, lang, digits)
    return i18n.MISSING if i18n.is_missing(v) else f"{v:,.{digits}f}"


def _sat_dimension(lang: str, dimension: str) -> str:
    """A satisfaction dimension's name in ``lang`` (English: as stored, what --by takes)."""
    if lang == "en":
        return dimension
    from segmentum.service.satisfaction import dimension_titles

    titles = dimension_titles(i18n.translations(lang).ugettext)
    return str(titles.get(dimension, dimension.replace("_", " ")))


def _q_value(q: Any, lang: str) -> str:
    """A false-discovery q: two significant digits; in Spanish, below 0.001 as "< 0,001"."""
    if lang == "en":
        return i18n.MISSING if i18n.is_missing(q) else f"{q:.2g}"
    if not i18n.is_missing(q) and q < 0.001:
        return f"< {i18n.number(0.001, lang, 3)}"
    return i18n.significant(q, lang, 2)


@satisfaction_app.command("compute")
def satisfaction_compute_cmd(
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Compute satisfaction again (segmentum run does it when responses are loaded)."""
    from segmentum.precompute import publish_read_models
    from segmentum.satisfaction.step import run as satisfaction_run
    from segmentum.segments.view import latest_as_of

    lang = _check_lang(lang)
    tr = i18n.translations(lang)
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    result = satisfaction_run(wh, _as_of(as_of) or latest_as_of(wh))
    # The dashboard and the API read the new figures (only what changed is published).
    publish_read_models(wh, settings, only=())
    if as_json:
        print_json(result.to_dict())
        return
    flagged = tr.ungettext(
        "%(n)s group differs from the rest",
        "%(n)s groups differ from the rest",
        len(result.flagged),
    ) % {"n": _count(len(result.flagged), lang)}
    console.print(
        tr.ugettext("%(answers)s answers from %(customers)s customers as of %(date)s; %(flagged)s")
        % {
            "answers": _count(result.responses, lang),
            "customers": _count(result.respondents, lang),
            "date": str(result.as_of) if lang == "en" else i18n.date(result.as_of, lang),
            "flagged": flagged,
        }
    )


@satisfaction_app.command("summary")
def satisfaction_summary_cmd(
    by: Annotated[
        str | None,
        typer.Option(
            help="One dimension: all, segment, value_tier, lifecycle_stage, rfm_segment, "
            "cluster, micro, campaign (default: every one)."
        ),
    ] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """NPS with its 95% interval, CSAT, the share that answered, and the test against the rest."""
    from segmentum.satisfaction.compute import cluster_names_es, stored_segments

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    wh = connect(warehouse or load_settings().warehouse)
    rows = stored_segments(wh, by)
    if as_json:
        print_json(rows)
        return
    cluster_es = cluster_names_es(wh) if lang != "en" else {}
    t = Table(
        title=_(
            "satisfaction per group: NPS (-100 to 100) with its 95% interval, the NPS of "
            "everyone else, and the false-discovery q of the difference"
        ),
        title_justify="left",
    )
    left = {_("dimension"), _("group"), ""}
    cols = [_("group"), _("customers"), _("answered"), _("NPS (95%)"), "CSAT", _("vs rest")]
    for c in ([] if by else [_("dimension")]) + [*cols, "q", ""]:
        t.add_column(c, justify="left" if c in left else "right")
    flags = {
        "worse": "[red]" + _("worse") + "[/red]",
        "better": "[green]" + _("better") + "[/green]",
    }
    for r in rows:
        interval = _nps_interval(r["nps_low"], r["nps_high"], lang)
        t.add_row(
            *([] if by else [escape(_sat_dimension(lang, r["dimension"]))]),
            escape(i18n.satisfaction_group(lang, r["dimension"], r["segment"], cluster_es)),
            _count(r["customers"] or 0, lang),
            f"{_count(r['respondents'] or 0, lang)} ({_pct(r['response_share'], lang)})",
            _num(r["nps"], 1, lang) + interval,
            _num(r["csat_mean"], 2, lang),
            _num(r["rest_nps"], 1, lang),
            _q_value(r["q_value"], lang),
            flags.get(r["flag"], ""),
        )
    console.print(t)


def _nps_interval(low: float | None, high: float | None, lang: str = "en") -> str:
    """' (-3 to 12)': the ends rounded, never "-0"; empty when there is no interval."""
    if i18n.is_missing(low) or i18n.is_missing(high):
        return ""
    text = i18n.translations(lang).ugettext("%(low)s to %(high)s") % {
        "low": i18n.number(low, lang, 0),
        "high": i18n.number(high, lang, 0),
    }
    return f" ({text})"


@satisfaction_app.command("trend")
def satisfaction_trend_cmd(
    by: Annotated[
        str, typer.Option(help="all, segment, value_tier or lifecycle_stage.")
    ] = "value_tier",
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """NPS at each snapshot date (segmentum history backfill), customers grouped as they were
    then; with one snapshot only, NPS per month of all answers."""
    from segmentum.satisfaction.compute import (
        TREND,
        cluster_names_es,
        snapshot_dates,
        snapshot_trend,
    )

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    wh = connect(warehouse or load_settings().warehouse)
    if len(snapshot_dates(wh, 2)) > 1:
        rows = snapshot_trend(wh, by)
        dimension = by
        name = by if lang == "en" else _sat_dimension(lang, by).lower()
        when, label = (
            "snapshot",
            _("NPS by %(dimension)s at each snapshot (95%% interval)") % {"dimension": name},
        )
    else:
        if not wh.has(TREND):
            raise InputError("satisfaction has not been computed", "run: segmentum run")
        t = wh.table(TREND)
        rows = t.filter(t.dimension == "all").order_by("period").to_pyarrow().to_pylist()
        dimension = "all"
        when, label = (
            "period",
            _("NPS per month, all answers (one snapshot only: see history backfill)"),
        )
    if as_json:
        print_json(rows)
        return
    cluster_es = cluster_names_es(wh) if lang != "en" else {}
    t = Table(title=escape(label), title_justify="left")
    for c in (_("group"), _("date"), _("answers"), _("NPS (95%)")):
        t.add_column(c, justify="left" if c in (_("group"), _("date")) else "right")
    for r in rows:
        interval = _nps_interval(r["nps_low"], r["nps_high"], lang)
        day = r[when]
        if lang != "en":
            day = i18n.month(day, lang) if when == "period" else i18n.date(day, lang)
        t.add_row(
            escape(i18n.satisfaction_group(lang, dimension, r["segment"], cluster_es)),
            str(day),
            _count(r.get("nps_n", r.get("n")) or 0, lang),
            _num(r["nps"], 1, lang) + interval,
        )
    console.print(t)


@satisfaction_app.command("terms")
def satisfaction_terms_cmd(
    segment: Annotated[str, typer.Argument(help="The group, e.g. promo_hunters or high.")],
    by: Annotated[str, typer.Option(help="Its dimension (see summary).")] = "segment",
    top: Annotated[int, typer.Option(help="Terms to show.")] = 10,
    as_of: AsOfOpt = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """The words and phrases that set a group's comments apart, with example quotes."""
    from segmentum.satisfaction.text import segment_terms
    from segmentum.segments.view import latest_as_of

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    wh = connect(warehouse or load_settings().warehouse)
    found = segment_terms(wh, _as_of(as_of) or latest_as_of(wh), by, segment, top)
    if as_json:
        print_json([t.__dict__ for t in found])
        return
    group = i18n.label(lang, by, segment)
    if not found:
        console.print(
            _("no term sets the comments of %(group)s apart from the rest")
            % {"group": escape(group)}
        )
        return
    t = Table(
        title=escape(_("what %(group)s say more than the rest") % {"group": group}),
        title_justify="left",
    )
    for c, right in (
        (_("term"), False),
        ("z", True),
        (_("times"), True),
        (_("times in rest"), True),
        (_("for example"), False),
    ):
        t.add_column(c, justify="right" if right else "left")
    for x in found:
        t.add_row(
            escape(x.term),
            i18n.number(x.z, lang, 1),
            _count(x.count, lang),
            _count(x.rest_count, lang),
            escape(" | ".join(f'"{q}"' for q in x.quotes)),
        )
    console.print(t)


@satisfaction_app.command("detractors")
def satisfaction_detractors_cmd(
    top: Annotated[int, typer.Option(help="How many, most valuable first.")] = 20,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """Valuable customers whose latest NPS is 0-6, with what they said (a retention audience:
    segmentum campaign create --tactic detractors)."""
    from segmentum.campaigns import reasons
    from segmentum.satisfaction.audience import detractors

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    settings = load_settings()
    wh = connect(warehouse or settings.warehouse)
    aud = detractors(wh)
    rows = aud.order_by(ibis.desc("priority")).limit(top).to_pyarrow().to_pylist()
    if as_json:
        print_json(rows)
        return
    currency = data_currency(wh, settings)[0]
    t = Table(
        title=_("valuable detractors (top %(n)s)") % {"n": _count(top, lang)}, title_justify="left"
    )
    t.add_column(_("customer"))
    t.add_column(_("why"))
    for r in rows:
        why = reasons.text("detractors", reasons.facts(r), lang, currency) or str(r["reason"])
        t.add_row(escape(str(r["customer_id"])), escape(why))
    console.print(t)


# ------------------------------------------------------------------------------------ flows

flow_app = typer.Typer(
    help="Triggered flows: templates, create, validate, enable, run, results, a customer's path."
)
app.add_typer(flow_app, name="flow")


def _flows(warehouse: str | None) -> Any:
    from segmentum.flows import Flows

    settings = load_settings()
    return Flows.for_warehouse(warehouse or settings.warehouse, settings)


def _flow_errors(exc: SegmentumError, lang: str = "en") -> None:
    """Every problem of a flow's YAML in ``lang``, each with its hint: the first (with how
    many more there are) ends the command as its error."""
    from segmentum.flows import FlowError

    if not isinstance(exc, FlowError):
        raise exc
    said = [i18n.flow_problem(lang, p) for p in exc.problems]
    for text, hint in said[1:]:
        _say(text, hint, lang)
    first, hint = said[0]
    if len(said) > 1:
        first += " " + i18n.flow_more_problems(lang, len(said) - 1)
    raise InputError(first, hint) from exc


def _flow_words(lang: str) -> dict[str, dict[str, str]]:
    from segmentum.flows.words import flow_words

    return flow_words(lang)


def _flow_trigger(trigger: Any, lang: str) -> str:
    """A flow's trigger (a ``Trigger``, or a template's ``trigger:`` mapping) as the Flows page
    says it ("enters the segment vip")."""
    from segmentum.flows.spec import trigger_of
    from segmentum.flows.words import flow_words

    if isinstance(trigger, dict):
        trigger = trigger_of(trigger)
    if trigger is None:
        return ""
    _ = i18n.translations(lang).ugettext
    kind, name = trigger.kind, str(trigger.name)
    dates = flow_words(lang)["date"]
    if kind == "segment" and trigger.on == "exit":
        return _("leaves the segment %(name)s") % {"name": name}
    if kind == "segment":
        return _("enters the segment %(name)s") % {"name": name}
    if kind == "event":
        return _("event %(name)s") % {"name": name}
    days = int(trigger.offset_days or 0)
    date = dates.get(name, name)
    if days < 0:
        return _("%(days)s days before the %(date)s") % {"days": _count(-days, lang), "date": date}
    if days > 0:
        return _("%(days)s days after the %(date)s") % {"days": _count(days, lang), "date": date}
    return _("on the %(date)s") % {"date": date}


@flow_app.command("templates")
def flow_templates_cmd(as_json: JsonOpt = False, lang: LangOpt = None) -> None:
    """The flows shipped for the classic tactics (copy one with segmentum flow new --from)."""
    from segmentum.flows import catalog

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    rows = catalog.describe()
    if as_json:
        print_json(rows)
        return
    t = Table(_("template"), _("trigger"), _("what it does"))
    for r in rows:
        trig = _flow_trigger(r["trigger"], lang)
        desc = r["description"].get(lang) or r["description"].get("en", "")
        t.add_row(r["template"], escape(trig), escape(str(desc)))
    console.print(t)


@flow_app.command("new")
def flow_new_cmd(
    name: str,
    template: Annotated[str, typer.Option("--from", help="A template: segmentum flow templates.")],
    file: Annotated[Path | None, typer.Option("--file", help="Also write the YAML here.")] = None,
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Create a draft flow NAME from a template (edit it, then segmentum flow enable NAME)."""
    from segmentum.flows import catalog

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    text = catalog.from_template(template, name)
    if file is not None and file.exists():
        raise InputError(f"{file} exists", "choose another file or delete it")
    try:
        _flows(warehouse).save(text, source=f"template {template}", origin=template, replace=False)
    except SegmentumError as exc:
        _flow_errors(exc, lang)
    if file is not None:
        file.write_text(text, encoding="utf-8")
    line = _("created the draft flow %(name)s") % {"name": escape(name)}
    if file:
        line += _(" (YAML in %(file)s)") % {"file": escape(str(file))}
    console.print(line)


@flow_app.command("save")
def flow_save_cmd(file: Path, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Create or update a flow from its YAML file (customers in it keep their place)."""
    lang = _check_lang(lang)
    text = _read_text(file)
    try:
        f = _flows(warehouse).save(text, source=str(file))
    except SegmentumError as exc:
        _flow_errors(exc, lang)
    console.print(
        i18n.translations(lang).ugettext("saved the flow %(name)s") % {"name": escape(f.name)}
    )


@flow_app.command("validate")
def flow_validate_cmd(file: Path, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Check a flow's YAML file; every problem is listed with its line."""
    lang = _check_lang(lang)
    text = _read_text(file)
    try:
        f = _flows(warehouse).check(text, str(file))
    except SegmentumError as exc:
        _flow_errors(exc, lang)
    said = i18n.translations(lang).ungettext(
        "%(file)s: the flow %(name)s is valid (%(n)s step)",
        "%(file)s: the flow %(name)s is valid (%(n)s steps)",
        len(f.steps),
    )
    console.print(
        said % {"file": escape(str(file)), "name": escape(f.name), "n": _count(len(f.steps), lang)}
    )


@flow_app.command("list")
def flow_list_cmd(
    warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """Every flow with its state and counts."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    flows = _flows(warehouse)
    rows = flows.overview()
    if as_json:
        print_json(rows)
        return
    states = _flow_words(lang)["status"]
    t = Table(
        _("Flow"), _("Status"), _("Trigger"), _("Entered"), _("In the flow"), _("Sent"), _("Bought")
    )
    for r in rows:
        trig = ""
        if r.get("trigger"):
            with contextlib.suppress(SegmentumError):
                trig = _flow_trigger(flows.flow(r["name"]).trigger, lang)
        error = i18n.translate_message(lang, str(r.get("error") or ""))
        t.add_row(
            escape(r["name"]),
            states.get(r["status"], r["status"]),
            escape(trig or error),
            *(_count(int(r[k] or 0), lang) for k in ("entered", "active", "sent", "converted")),
        )
    console.print(t)


@flow_app.command("show")
def flow_show_cmd(
    name: str, warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """A flow's YAML and state."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    row = _flows(warehouse).row(name)
    if as_json:
        print_json(row)
        return
    status = _flow_words(lang)["status"].get(row["status"], row["status"])
    console.print(
        "# "
        + _("%(name)s: %(status)s, version %(version)s")
        % {"name": escape(name), "status": status, "version": _count(row["version"], lang)}
    )
    sys.stdout.write(row["yaml"] if row["yaml"].endswith("\n") else row["yaml"] + "\n")


@flow_app.command("enable")
def flow_enable_cmd(name: str, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Start a flow: customers enter on triggers from now on."""
    lang = _check_lang(lang)
    _flows(warehouse).set_status(name, "enabled")
    console.print(
        i18n.translations(lang).ugettext(
            "enabled %(name)s: run segmentum flow run (or flow_runner in serve)"
        )
        % {"name": escape(name)}
    )


@flow_app.command("disable")
def flow_disable_cmd(name: str, warehouse: WarehouseOpt = None, lang: LangOpt = None) -> None:
    """Stop a flow: nobody enters; customers in it wait where they are."""
    lang = _check_lang(lang)
    _flows(warehouse).set_status(name, "disabled")
    console.print(i18n.translations(lang).ugettext("disabled %(name)s") % {"name": escape(name)})


@flow_app.command("results")
def flow_results_cmd(
    name: str, warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """Per step: reached, sent, skipped, held for quiet hours, converted, and uplift against the
    control group."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    res = _flows(warehouse).results(name)
    if as_json:
        print_json(res)
        return
    words = _flow_words(lang)
    console.print(
        _(
            "%(entered)s entered, %(active)s in the flow now, %(sent)s messages sent, "
            "%(converted)s bought."
        )
        % {
            "entered": _count(res["entered"], lang),
            "active": _count(res["active"], lang),
            "sent": _count(res["sent"], lang),
            "converted": _count(res["converted"], lang),
        }
    )
    # Held for quiet hours: a column only while some are (the table is wide enough already).
    held = sum(int(s.get("waiting") or 0) for s in res["steps"])
    t = Table(
        _("Step"),
        _("Reached"),
        _("Sent"),
        _("Skipped"),
        *([_("Waiting")] if held else []),
        _("Bought, treated"),
        _("Bought, control"),
        _("Uplift (95%% interval)") % {},
        _("p-value"),
    )
    dash = "–"
    for s in res["steps"]:
        e = s["effect"]
        up = (
            f"{_pct(e['uplift'], lang)} ({_pct(e['uplift_low'], lang)} – "
            f"{_pct(e['uplift_high'], lang)})"
            if e["uplift"] is not None
            else dash
        )
        kind = words["kind"].get(s.get("kind", ""), s.get("kind", ""))
        if s.get("kind") == "send":
            detail = i18n.label(lang, "channel", s.get("channel"))
        elif s.get("kind") == "split":  # "control 10%": the share, as the locale writes it
            share = res.get("control_share")
            detail = str(s["detail"]) if share is None else _pct(share, lang)
        elif s.get("kind") == "wait" and s.get("seconds"):
            detail = i18n.duration(s["seconds"], lang)
        else:  # a condition as written in the flow's YAML
            detail = str(s["detail"])
        skipped = ", ".join(
            f"{words['reason'].get(k, k)} {_count(v, lang)}" for k, v in s["skipped"].items()
        )
        t.add_row(
            escape(f"{kind}: {detail}" if kind else f"{s['name']}: {detail}"),
            _count(s["reached"], lang),
            _count(s["sent"], lang) if s.get("kind") == "send" else dash,
            escape(skipped or dash),
            # Waiting for the quiet hours to end: sent then (reached = sent + skipped + these).
            *(
                [_count(s.get("waiting", 0), lang) if s.get("kind") == "send" else dash]
                * bool(held)
            ),
            _pct(e["conv_treated"], lang) if e["conv_treated"] is not None else dash,
            _pct(e["conv_control"], lang) if e["conv_control"] is not None else dash,
            up,
            i18n.number(e["p_value"], lang, 3) if e["p_value"] is not None else dash,
        )
    console.print(t)
    if held:
        tr = i18n.translations(lang)
        console.print(
            tr.ungettext(
                "Waiting: %(n)s message held for the quiet hours, sent when they end.",
                "Waiting: %(n)s messages held for the quiet hours, sent when they end.",
                held,
            )
            % {"n": _count(held, lang)}
        )


@flow_app.command("path")
def flow_path_cmd(
    customer: str, warehouse: WarehouseOpt = None, as_json: JsonOpt = False, lang: LangOpt = None
) -> None:
    """A customer's path through every flow: entered, each step, sent or skipped, exit."""
    from segmentum.flows.words import path_detail

    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    rows = _flows(warehouse).path(customer)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(_("This customer has not entered any flow."))
        return
    words = _flow_words(lang)
    t = Table(_("When (UTC)"), _("Flow"), _("Step"), _("What happened"), _("Detail"))
    for r in rows:
        step = "" if r["step"] is None else _count(r["step"] + 1, lang)
        detail = path_detail(lang, r["what"], r["detail"])
        t.add_row(
            r["at"] if lang == "en" else i18n.date(r["at"], lang),
            escape(r["flow"]),
            step,
            words["what"].get(r["what"], r["what"]),
            escape(detail),
        )
    console.print(t)


def _flow_runner(warehouse: str | None, every: float) -> Any:
    from segmentum.flows import Runner
    from segmentum.warehouse import WarehouseBusyError

    flows = _flows(warehouse)
    url = warehouse or load_settings().warehouse

    def with_warehouse(fn: Any) -> Any:
        try:
            wh = connect(url, lock_wait=0)
        except WarehouseBusyError:
            return None  # a pipeline job has it: flows go on with what they copied last
        try:
            return fn(wh)
        finally:
            wh.close()

    return Runner(flows, interval=every, with_warehouse=with_warehouse)


def _tick_line(rep: Any, lang: str) -> str:
    _ = i18n.translations(lang).ugettext
    line = _(
        "entered %(entered)s, steps %(steps)s, sent %(sent)s, skipped %(skipped)s, held for "
        "quiet hours %(deferred)s, exited %(exited)s, failed %(failed)s"
    ) % {
        k: _count(getattr(rep, k), lang)
        for k in ("entered", "steps", "sent", "skipped", "deferred", "exited", "failed")
    }
    return line + (_(" (another runner is ticking)") if rep.busy else "")


@flow_app.command("tick")
def flow_tick_cmd(
    now: Annotated[
        str | None,
        typer.Option("--now", help="Act as if it were this UTC time (YYYY-MM-DD HH:MM)."),
    ] = None,
    warehouse: WarehouseOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = None,
) -> None:
    """One round of every enabled flow (what flow run does every few seconds; for cron)."""
    lang = _check_lang(lang)
    runner = _flow_runner(warehouse, 0)
    if now is not None:
        try:
            at = _dt.datetime.fromisoformat(now)
        except ValueError as exc:
            raise InputError(
                f"--now {now!r} is not a time", "write it as 2026-01-14 10:00"
            ) from exc
        rep = runner.flows.tick(at)
    else:
        rep = runner.once(True)
    if as_json:
        print_json(rep.to_dict())
        return
    console.print(_tick_line(rep, lang))
    word = i18n.translations(lang).ugettext("warning:")
    for e in rep.errors:
        err.print(f"[yellow]{word}[/yellow] {escape(i18n.translate_message(lang, e))}")


@flow_app.command("run")
def flow_run_cmd(
    every: Annotated[float | None, typer.Option("--every", help="Seconds between ticks.")] = None,
    warehouse: WarehouseOpt = None,
    lang: LangOpt = None,
) -> None:
    """Run every enabled flow until Ctrl+C (safe to stop at any moment: it resumes)."""
    lang = _check_lang(lang)
    _ = i18n.translations(lang).ugettext
    runner = _flow_runner(warehouse, every or load_settings().flow_tick_seconds)
    word = _("warning:")

    def show(rep: Any) -> None:
        if rep.entered or rep.sent or rep.exited or rep.failed:
            err.print(f"[dim]· {_tick_line(rep, lang)}[/dim]")
        for e in rep.errors:
            err.print(f"[yellow]{word}[/yellow] {escape(i18n.translate_message(lang, e))}")

    console.print(
        _("running flows every %(seconds)s s; Ctrl+C stops")
        % {"seconds": i18n.number(runner.interval, lang)}
    )
    try:
        runner.run(show)
    except KeyboardInterrupt:
        runner.stop.set()
        console.print(_("stopped; the next run resumes every customer where they were"))


def _publish_changes(warehouses: list[Any], lang: str) -> None:
    """After a command that changed a Spark warehouse (a segment saved, a campaign sent), the
    pages' published copy gets those tables (:func:`segmentum.precompute.refresh_published`):
    they read it, not Spark. A failure there leaves the command done: said as a warning."""
    from segmentum.precompute import refresh_published

    for wh in warehouses:
        try:
            refresh_published(wh)
        except Exception as exc:  # the command's own work is done and stays
            found = engine_error(exc) or resource_error(exc)
            cause = found.message if found is not None else str(exc).splitlines()[0]
            _ = i18n.translations(lang).ugettext
            err.print(
                f"[yellow]{escape(_('warning:'))}[/yellow] "
                + escape(
                    _("the dashboard shows this change after the next run (%(cause)s)")
                    % {"cause": i18n.translate_message(lang, cause)}
                )
            )


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn every way it can end into an exit code.

    Returns the code (``ExitCode``): usage errors 2 with one line and the usage, user errors
    their own code with one line and a hint, unexpected errors 70 with a log file.
    """
    try:
        return _main(argv)
    finally:
        _may_start[0] = True  # a program calling the commands' functions itself opens freely
        _this_command.clear()


def _main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    lang = _asked_language(args)
    from segmentum.warehouse import opened

    before = {id(w) for w in opened()}
    _may_start[0] = not args or args[0] in _STARTS
    try:
        app(args=args, standalone_mode=False, prog_name="segmentum")
        _publish_changes([w for w in opened() if id(w) not in before], lang)
    except SegmentumError as exc:
        if debug:
            raise
        _say(exc.message, exc.hint, lang)
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.TyperException as exc:  # usage errors: unknown command or option, bad value
        if debug:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group named without a command
            exc.show()  # type: ignore[attr-defined]
            return int(ExitCode.USAGE)
        _say(_usage_message(exc), _usage_hint(exc), lang)
        return int(ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        return 130
    except Exception as exc:
        busy = busy_error(exc) or engine_error(exc)  # engine_error: Spark's, without the JVM stack
        if busy is not None and not debug:
            _say(busy.message, busy.hint, lang)
            return int(busy.exit_code)
        limits = resource_error(exc)  # out of memory or of disk: the machine's, not a bug
        if limits is not None and not debug:
            _say(limits.message, limits.hint, lang)
            return int(limits.exit_code)
        if debug:
            raise
        log = _write_error_log(exc, args)
        _say(
            f"unexpected error ({type(exc).__name__}): this is a bug in segmentum",
            f"the details are in {log}; please attach that file to a bug report"
            if log
            else "run the command again with --debug to see the details",
            lang,
        )
        return int(ExitCode.INTERNAL)
    return int(ExitCode.OK)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
