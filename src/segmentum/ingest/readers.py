"""Open a user file as a table inside the engine: CSV, Parquet, Excel or JSON lines.

Text files are sniffed (encoding, delimiter) from their first bytes and read by the engine's own
CSV reader, so files larger than memory stream through it. Excel sheets are small by nature
(at most about a million rows) and are uploaded as text columns.
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

SNIFF_BYTES = 64 * 1024
_CHUNK = 8 * 1024 * 1024
FORMATS = ("csv", "parquet", "excel", "jsonl")


@dataclass
class RawSource:
    """A file opened in the engine: its rows (with ``_row``) and lines that could not be split."""

    table: ir.Table
    file: str
    sheet: str | None
    fmt: str
    encoding: str | None = None
    delimiter: str | None = None
    malformed: pd.DataFrame = field(default_factory=pd.DataFrame)
    cleanup: list[Path] = field(default_factory=list)
    temp_tables: list[str] = field(default_factory=list)
    #: The engine holding ``table`` (see :meth:`Warehouse.reader`); None: the warehouse.
    reader: Warehouse | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c in self.table.columns if c != "_row"]


def file_format(path: Path) -> str:
    """The format a file is read as, from its extension."""
    ext = path.suffix.lower()
    if ext in {".csv", ".txt", ".tsv", ".dat"}:
        return "csv"
    if ext in {".parquet", ".pq"}:
        return "parquet"
    if ext in {".xlsx", ".xlsm", ".xls", ".ods"}:
        return "excel"
    if ext in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    raise InputError(
        f"{path}: unknown file type '{ext or '(none)'}'",
        "use .csv, .parquet, .xlsx or .jsonl (rename the file if its content is one of these)",
    )


def file_sha256(path: Path, sheet: str | None = None) -> str:
    """Content hash of a file (and sheet): the same content is never loaded twice."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    if sheet:
        h.update(b"\0sheet:" + sheet.encode())
    return h.hexdigest()


def sniff_encoding(path: Path) -> str:
    """utf-8, cp1252 or latin-1, checking the whole file for UTF-8 validity in chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
        fh.seek(0)
        while chunk := fh.read(_CHUNK):
            # Bytes 0x80-0x9f are control codes in Latin-1 but letters and symbols (€, ‘) in cp1252.
            if any(0x80 <= b <= 0x9F for b in chunk):
                return "cp1252"
    return "latin-1"


def sniff_delimiter(sample: str) -> str:
    """The column delimiter: the candidate that splits the first lines most consistently."""
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        pass
    best, best_score = ",", -1.0
    for cand in (",", ";", "\t", "|"):
        counts = [len(next(csv.reader([ln], delimiter=cand))) for ln in lines]
        if counts[0] <= 1:
            continue
        score = sum(c == counts[0] for c in counts) / len(counts) + counts[0] / 1000
        if score > best_score:
            best, best_score = cand, score
    return best


def _transcode(path: Path, encoding: str) -> Path:
    """Stream a non-UTF-8 text file into a UTF-8 temporary copy (bounded memory)."""
    out = Path(tempfile.mkstemp(prefix="segmentum-", suffix=".csv")[1])
    with (
        path.open("r", encoding=encoding, newline="") as src,
        out.open("w", encoding="utf-8", newline="") as dst,
    ):
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
    return out


def read_csv(wh: Warehouse, path: Path) -> RawSource:
    encoding = sniff_encoding(path)
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    sample = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if not sample.strip():
        raise InputError(
            f"{path}: the file is empty", "export the data again; the file has no rows"
        )
    delimiter = sniff_delimiter(sample)
    cleanup: list[Path] = []
    readable = path
    if encoding != "utf-8":
        readable = _transcode(path, encoding)
        cleanup.append(readable)
    rejects = wh.temp_name("rejects")
    rd = wh.reader()
    try:
        view = rd.read_csv(readable, delimiter=delimiter, rejects=rejects)
        # One parse of the file: later steps scan this copy, and the scan fills ``rejects``.
        with rd.file_order():
            table = rd.materialize(view.mutate(_row=ibis.row_number() + 1), "raw")
        malformed = rd.csv_rejects(rejects)
    except Exception as exc:
        raise InputError(
            f"{path}: cannot be read as CSV ({str(exc).splitlines()[0]})",
            "check that it is a text export with a header row",
        ) from exc
    if malformed.shape[0]:
        # Reader line numbers count the header; report data rows like everywhere else.
        malformed = malformed.assign(line=malformed["line"].astype("int64") - 1)
    return RawSource(
        table,
        str(path),
        None,
        "csv",
        encoding,
        delimiter,
        malformed,
        cleanup,
        [table.get_name()],
        rd,
    )


def _cell_text(v: object) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, _dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, _dt.time):
        return v.isoformat()
    return str(v)


def excel_sheets(path: Path) -> list[str]:
    from python_calamine import CalamineWorkbook

    try:
        return list(CalamineWorkbook.from_path(str(path)).sheet_names)
    except Exception as exc:
        raise InputError(
            f"{path}: cannot be opened as an Excel workbook ({exc})",
            "save it again from Excel as .xlsx",
        ) from exc


def read_excel(wh: Warehouse, path: Path, sheet: str) -> RawSource:
    from python_calamine import CalamineWorkbook

    try:
        rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).to_python()
    except Exception as exc:
        raise InputError(
            f"{path} [{sheet}]: cannot read the sheet ({exc})", "check the sheet name"
        ) from exc
    rows = [r for r in rows if any(c not in (None, "") for c in r)]
    if not rows:
        raise InputError(
            f"{path} [{sheet}]: the sheet is empty", "choose another sheet with --sheet"
        )
    header = [_cell_text(c) or f"column_{i + 1}" for i, c in enumerate(rows[0])]
    body = rows[1:]
    columns = {
        name: pa.array([_cell_text(r[i]) if i < len(r) else None for r in body], pa.string())
        for i, name in enumerate(header)
    }
    columns["_row"] = pa.array(range(1, len(body) + 1), pa.int64())
    rd = wh.reader()
    table = rd.from_arrow(pa.table(columns), "excel")
    return RawSource(table, str(path), sheet, "excel", temp_tables=[table.get_name()], reader=rd)


def read_parquet(wh: Warehouse, path: Path) -> RawSource:
    rd = wh.reader()
    try:
        table = rd.read_parquet(path)
    except Exception as exc:
        raise InputError(
            f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]})",
            "check that the file is complete (not cut off by a failed copy)",
        ) from exc
    return RawSource(table, str(path), None, "parquet", reader=rd)


def read_jsonl(wh: Warehouse, path: Path) -> RawSource:
    try:
        rd = wh.reader()
        with rd.file_order():
            view = rd.read_json(path)
            table = rd.materialize(view.mutate(_row=ibis.row_number() + 1), "raw")
    except Exception as exc:
        raise InputError(
            f"{path}: cannot be read as JSON lines ({str(exc).splitlines()[0]})",
            "each line must be one JSON object with the same keys",
        ) from exc
    return RawSource(table, str(path), None, "jsonl", temp_tables=[table.get_name()], reader=rd)


def open_sources(
    wh: Warehouse, path: Path, sheet: str | None = None
) -> list[tuple[Path, str | None]]:
    """The (file, sheet) pairs to load: every sheet of a workbook unless one is chosen."""
    if not path.exists():
        raise InputError(
            f"{path}: no such file",
            "check the path (relative paths start where you run the command)",
        )
    if path.is_dir():
        raise InputError(
            f"{path}: is a folder, not a file", "give the files inside it, e.g. folder/*.csv"
        )
    if path.stat().st_size == 0:
        raise InputError(
            f"{path}: the file is empty", "export the data again; the file has no rows"
        )
    if file_format(path) != "excel":
        return [(path, None)]
    sheets = excel_sheets(path)
    if sheet is not None:
        if sheet not in sheets:
            raise InputError(
                f"{path}: no sheet named '{sheet}'", f"the sheets are: {', '.join(sheets)}"
            )
        return [(path, sheet)]
    return [(path, s) for s in sheets]


def read(wh: Warehouse, path: Path, sheet: str | None) -> RawSource:
    fmt = file_format(path)
    if fmt == "csv":
        return read_csv(wh, path)
    if fmt == "parquet":
        return read_parquet(wh, path)
    if fmt == "excel":
        assert sheet is not None
        return read_excel(wh, path, sheet)
    return read_jsonl(wh, path)
