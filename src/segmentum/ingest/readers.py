"""Open user files as tables inside the engine: CSV (plain, .gz, .zip), Parquet, Excel, JSON lines.

Text files are sniffed (encoding, delimiter) from their first bytes and read by the engine's own
CSV reader, so files larger than memory stream through it. The engine's count of what it read
is checked against an independent count of the file's lines: when they differ (a quote that
never closes swallows the rest of the file, a line too long for the engine) the file is split
into records by a scanner that sets each broken line aside on its own, and the clean records are
read again. Nothing is dropped without a line in quarantine. Many small files of the same shape
(daily exports) are read in one pass with their file kept on every row. Excel sheets are small
by nature (at most about a million rows) and are uploaded as text columns.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import datetime as _dt
import glob
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from segmentum.errors import InputError, WarehouseError
from segmentum.warehouse import Warehouse, resource_error

SNIFF_BYTES = 64 * 1024
_CHUNK = 8 * 1024 * 1024
FORMATS = ("csv", "parquet", "excel", "jsonl")
#: The longest line (record) read, in bytes: the engine's own limit. A sales line is well under
#: a kilobyte; a line this long is a runaway field and is quarantined on its own.
MAX_LINE_BYTES = 2_000_000
#: A quoted value may span at most this many lines; a quote still open after that is broken.
MAX_RECORD_LINES = 200
_SUFFIXES = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".dat": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".ods": "excel",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_PACKED = (".gz", ".zip")
_MALFORMED_COLUMNS = ["part", "line", "error_message", "csv_line"]


@dataclass
class RawSource:
    """Files opened in the engine: their rows (with ``_row``, and ``_file`` when several files
    were read together) and the lines that could not be split."""

    table: ir.Table
    file: str
    sheet: str | None
    fmt: str
    encoding: str | None = None
    delimiter: str | None = None
    #: Lines set aside while reading: part (index in ``files``), line (data row), cause, text.
    malformed: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=_MALFORMED_COLUMNS)
    )
    cleanup: list[Path] = field(default_factory=list)
    temp_tables: list[str] = field(default_factory=list)
    #: The engine holding ``table`` (see :meth:`Warehouse.reader`); None: the warehouse.
    reader: Warehouse | None = None
    #: The files read together, in the order of ``_file``; empty: only ``file``.
    files: list[str] = field(default_factory=list)
    #: Time zone of each zone-aware timestamp column (Parquet ``timestamp[us, tz=...]``):
    #: the engine reads its values as instants in UTC, the zone says where they were local.
    zones: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.table.columns if c not in ("_row", "_file")]

    @property
    def parts(self) -> list[str]:
        """The files behind the rows, indexed by ``_file`` (a single file is part 0)."""
        return self.files or [self.file]


# ------------------------------------------------------------------------------ file names
def _inner_name(path: Path) -> str:
    """The name the content is read by: ``x.csv.gz`` is a CSV; a zip is its one data file."""
    name = path.name
    low = name.lower()
    if low.endswith(".gz"):
        return name[:-3]
    if low.endswith(".zip"):
        return _zip_member(path).filename
    return name


def file_format(path: Path) -> str:
    """The format a file is read as, from its extension (inside .gz and .zip)."""
    ext = Path(_inner_name(path)).suffix.lower()
    fmt = _SUFFIXES.get(ext)
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type '{ext or '(none)'}'",
            "use .csv, .parquet, .xlsx or .jsonl, optionally compressed as .gz or .zip "
            "(rename the file if its content is one of these)",
        )
    return fmt


def _zip_member(path: Path) -> zipfile.ZipInfo:
    """The one data file inside a zip archive (folders and operating-system clutter ignored)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [
                m
                for m in zf.infolist()
                if not m.is_dir()
                and not m.filename.startswith("__MACOSX/")
                and not Path(m.filename).name.startswith(".")
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            f"{path}: is not a readable zip archive ({exc})",
            "check that the download finished, or unzip it yourself and load the file inside",
        ) from exc
    if not members:
        raise InputError(f"{path}: the zip archive is empty", "export the data again")
    if len(members) > 1:
        names = ", ".join(m.filename for m in members[:5]) + (", ..." if len(members) > 5 else "")
        raise InputError(
            f"{path}: the zip archive holds {len(members)} files ({names}); "
            "segmentum reads a zip with exactly one file",
            f"unzip it and load the folder: segmentum ingest TABLE {path.stem}/",
        )
    return members[0]


def _unpack(path: Path) -> Path | None:
    """A plain temporary copy of a compressed file's content (None when it is not packed)."""
    low = path.name.lower()
    if not low.endswith(_PACKED):
        return None
    inner = _inner_name(path)
    out = Path(tempfile.mkstemp(prefix="segmentum-", suffix=Path(inner).suffix or ".csv")[1])
    try:
        if low.endswith(".gz"):
            with gzip.open(path, "rb") as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        else:
            with zipfile.ZipFile(path) as zf, zf.open(inner) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        out.unlink(missing_ok=True)
        raise InputError(
            f"{path}: cannot be decompressed ({exc})",
            "check that the download finished (the archive may be cut off)",
        ) from exc
    return out


def expand(path: Path) -> list[Path]:
    """The files a path names: itself, the data files of a folder, or the matches of a glob."""
    if path.is_dir():
        found = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith((".", "~$")) and _is_data_name(p.name)
        )
        if not found:
            raise InputError(
                f"{path}: the folder holds no data files",
                "put .csv, .csv.gz, .zip, .parquet, .xlsx or .jsonl files in it, or name files",
            )
        return found
    if not path.exists() and any(ch in str(path) for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not matches:
            raise InputError(
                f"{path}: no file matches", "check the pattern (e.g. exports/ventas_*.csv)"
            )
        return matches
    return [path]


def _is_data_name(name: str) -> bool:
    low = name.lower()
    if low.endswith(".zip"):
        return True
    return Path(low.removesuffix(".gz")).suffix in _SUFFIXES


def file_sha256(path: Path, sheet: str | None = None) -> str:
    """Content hash of a file (and sheet): the same content is never loaded twice."""
    if not sheet:
        return _scan(path).sha256
    h = _scan(path).hasher.copy()
    h.update(b"\0sheet:" + sheet.encode())
    return h.hexdigest()


@dataclass(frozen=True)
class _Scanned:
    """What one read of a file's bytes tells: its hash, whether it is UTF-8, its lines."""

    hasher: Any  # hashlib's sha256 of the bytes (copied to hash a sheet's name after them)
    utf8: bool
    lines: int  # lines holding anything (blank lines at the end left out)

    @property
    def sha256(self) -> str:
        return str(self.hasher.hexdigest())


_SCANNED: dict[tuple[str, int, int], _Scanned] = {}


def _scan(path: Path) -> _Scanned:
    """Hash, UTF-8 check and line count of ``path`` in one read (kept while the file is unchanged).

    A load asks for all three (the hash first, to skip content loaded before; the encoding; the
    lines, to check the engine's count): one read instead of three. ASCII chunks, nearly all of
    an export, skip the UTF-8 decoder.
    """
    st = path.stat()
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _SCANNED:
        return _SCANNED[key]
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    newlines = 0
    tail = b""
    # hashlib lets go of the interpreter on large buffers: the hash runs beside the counting.
    with path.open("rb") as fh, ThreadPoolExecutor(1) as hashing:
        hashed = None
        while chunk := fh.read(_CHUNK):
            if hashed is not None:
                hashed.result()
            hashed = hashing.submit(h.update, chunk)
            newlines += int(np.count_nonzero(np.frombuffer(chunk, np.uint8) == 10))
            tail = chunk[-4096:] if len(chunk) >= 4096 else (tail + chunk)[-4096:]
            if utf8 and not (chunk.isascii() and not decoder.getstate()[0]):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
        if hashed is not None:
            hashed.result()
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    if not tail.strip(b"\r\n\t "):
        lines = 0
    else:
        lines = newlines - tail[len(tail.rstrip(b"\r\n")) :].count(b"\n") + 1
    if len(_SCANNED) > 256:
        _SCANNED.clear()
    _SCANNED[key] = scanned = _Scanned(h, utf8, lines)
    return scanned


# ----------------------------------------------------------------------------- sniffing
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file (rename it to .parquet)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (rename it to .xls)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive (rename it to .csv.gz)"),
    (b"SQLite format 3", "an SQLite database"),
)


def _refuse_binary(path: Path, head: bytes) -> None:
    """Binary content under a text name: one clear line, before any engine sees it."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    what = next((label for magic, label in _MAGIC if head.startswith(magic)), None)
    if what == "a zip archive" and (b"[Content_Types].xml" in head or b"xl/" in head):
        what = "an Excel workbook (rename it to .xlsx)"
    if what is None:
        sample = head[:SNIFF_BYTES]
        control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
        if b"\0" in sample or control > len(sample) // 100:
            what = "binary data"
    if what is not None:
        raise InputError(
            f"{path}: is not a text file (it looks like {what})",
            "export the data as CSV text and load that file",
        )


def sniff_encoding(path: Path) -> str:
    """utf-8, utf-16 (by its byte-order mark), cp1252 or latin-1, checking the whole file."""
    with path.open("rb") as fh:
        if fh.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return "utf-16"
    if _scan(path).utf8:
        return "utf-8"
    with path.open("rb") as fh:
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


@dataclass
class _Text:
    """A CSV file made ready for the engine: UTF-8, uncompressed, its shape known."""

    path: Path  # the file the user named
    readable: Path  # what the engine reads (the file itself or a temporary copy)
    encoding: str
    delimiter: str
    header: str
    cleanup: list[Path]


def _prepare(path: Path) -> _Text:
    cleanup: list[Path] = []
    try:
        unpacked = _unpack(path)
        readable = unpacked or path
        if unpacked is not None:
            cleanup.append(unpacked)
        with readable.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        _refuse_binary(path, head)
        encoding = sniff_encoding(readable)
        sample = head.decode(encoding, errors="replace").lstrip("\ufeff")
        if not sample.strip():
            raise InputError(
                f"{path}: the file is empty", "export the data again; the file has no rows"
            )
        delimiter = sniff_delimiter(sample)
        if encoding != "utf-8":
            readable = _transcode(readable, encoding)
            cleanup.append(readable)
    except BaseException:
        for p in cleanup:
            p.unlink(missing_ok=True)
        raise
    header = next((ln for ln in sample.splitlines() if ln.strip()), "").strip()
    return _Text(path, readable, encoding, delimiter, header, cleanup)


def _content_lines(path: Path) -> int:
    """Lines holding anything, counted by newlines (blank lines at the end left out)."""
    return _scan(path).lines


# ----------------------------------------------------------------------- broken lines
@dataclass
class _Repair:
    """A file split into records by the scanner: a clean copy and the lines set aside."""

    clean: Path
    records: int
    bad: list[tuple[int, int, str, str]]  # data row, physical line, cause, text
    breaks: list[tuple[int, int]]  # (data row, physical line - data row) where it changes

    def line_of(self, row: int) -> int:
        i = bisect.bisect_right(self.breaks, (row, 1 << 62)) - 1
        return row + (self.breaks[i][1] if i >= 0 else 1)


def _one_record(text: bytes, delimiter: str, fields: int) -> bool:
    """Whether ``text`` is exactly one well-quoted record with the header's number of fields."""
    try:
        rows = list(
            csv.reader(
                io.StringIO(text.decode("utf-8", "replace"), newline=""),
                delimiter=delimiter,
                quotechar='"',
                doublequote=True,
                strict=True,
            )
        )
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == fields


def _short(text: bytes) -> str:
    shown = text[:1000].decode("utf-8", "replace")
    return shown + (" ..." if len(text) > 1000 else "")


def _repair(text: _Text) -> _Repair:
    """Split the file into records one physical line at a time, setting broken lines aside.

    A line with an odd number of quotes opens a value that spans lines; it is one record with
    the lines up to the next such line only if that span parses as one record with the header's
    number of fields (and stays within the size limits). Otherwise the opening line alone is
    set aside and reading resumes on the line after it, so one stray quote costs one line.
    Every record is written to a clean copy prefixed with its data row number.
    """
    delim = text.delimiter.encode()
    clean = Path(tempfile.mkstemp(prefix="segmentum-clean-", suffix=".csv")[1])
    bad: list[tuple[int, int, str, str]] = []
    breaks: list[tuple[int, int]] = []
    with text.readable.open("rb") as src, clean.open("wb") as dst:
        numbered = ((n, ln.rstrip(b"\r\n")) for n, ln in enumerate(src, start=1))
        pending: deque[tuple[int, bytes]] = deque()

        def take() -> tuple[int, bytes] | None:
            return pending.popleft() if pending else next(numbered, None)

        first = take()
        while first is not None and not first[1].strip():
            first = take()
        if first is None:
            return _Repair(clean, 0, [], [])
        header = first[1].removeprefix(codecs.BOM_UTF8)
        fields = len(
            next(csv.reader([header.decode("utf-8", "replace")], delimiter=text.delimiter))
        )
        dst.write(b"_row" + delim + header + b"\n")
        row, delta = 0, 1
        while (item := take()) is not None:
            n, line = item
            if not line:
                continue  # blank lines are not rows (the engine skips them too)
            row += 1
            if n - row != delta:
                delta = n - row
                breaks.append((row, delta))
            if len(line) > MAX_LINE_BYTES:
                long = f"{len(line) / 1e6:.1f} MB"
                limit = f"{MAX_LINE_BYTES / 1e6:g} MB"
                bad.append(
                    (
                        row,
                        n,
                        f"the line is {long} long, more than the {limit} a line may hold",
                        _short(line),
                    )
                )
                continue
            if line.count(b'"') % 2 == 0:
                dst.write(str(row).encode() + delim + line + b"\n")
                continue
            span = [line]
            size = len(line)
            closed = False
            taken: list[tuple[int, bytes]] = []
            while len(span) < MAX_RECORD_LINES and size <= MAX_LINE_BYTES:
                nxt = take()
                if nxt is None:
                    break
                taken.append(nxt)
                span.append(nxt[1])
                size += len(nxt[1]) + 1
                if nxt[1].count(b'"') % 2:
                    closed = True
                    break
            record = b"\n".join(span)
            if closed and size <= MAX_LINE_BYTES and _one_record(record, text.delimiter, fields):
                dst.write(str(row).encode() + delim + record + b"\n")
                continue
            bad.append((row, n, "a quote opens a value that never closes", _short(line)))
            pending.extendleft(reversed(taken))
    return _Repair(clean, row, bad, breaks)


_ENGINE_CAUSES = {
    "TOO MANY COLUMNS": "more fields than the header (check the delimiter and the quotes)",
    "MISSING COLUMNS": "fewer fields than the header",
    "UNQUOTED VALUE": "a quote inside a value that is not quoted",
    "INVALID UNICODE": "characters that are not valid text",
    "INVALID ENCODING": "characters that are not valid text",
    "LINE SIZE OVER MAXIMUM": "the line is longer than a line may be",
}


def _cause(error_type: object, message: object) -> str:
    return _ENGINE_CAUSES.get(str(error_type), str(message).splitlines()[0])


# ---------------------------------------------------------------------------- reading CSV
def _engine_read(
    rd: Warehouse, readables: Sequence[Path], delimiter: str, numbered: bool = False
) -> tuple[ir.Table, pd.DataFrame]:
    """One engine read of same-shaped files: rows with ``_row`` (and ``_file``), rejects.

    ``numbered``: the file carries its rows' numbers in a leading ``_row`` column.
    """
    rejects = rd.temp_name("rejects")
    several = len(readables) > 1
    view = rd.read_csv(readables, delimiter=delimiter, rejects=rejects, filename=several)
    # One parse of the files: later steps scan this copy, and the scan fills ``rejects``.
    with rd.file_order():
        if several:
            names = rd.from_arrow(
                # The engine names each row's file by its absolute path.
                pa.table(
                    {
                        "_name": [os.path.abspath(p) for p in readables],
                        "_file": pa.array(range(len(readables)), pa.int64()),
                    }
                ),
                "files",
            )
            v = view.mutate(_g=ibis.row_number())
            v = v.join(names, v.filename == names._name).drop("filename", "_name")
            v = v.mutate(_row=v._g - v._g.min().over(group_by=v._file) + 1).drop("_g")
            table = rd.materialize(v, "raw")
            rd.drop(names.get_name())
        else:
            if numbered:
                table = rd.materialize(view.mutate(_row=view._row.cast("int64")), "raw")
            else:
                table = rd.numbered(view, "raw")
    return table, rd.csv_rejects(rejects)


def _fast_rejects(rejects: pd.DataFrame) -> pd.DataFrame:
    """Engine rejects of a file with one record a line: its line numbers are the file's."""
    if not rejects.shape[0]:
        return pd.DataFrame(columns=_MALFORMED_COLUMNS)
    # Reader line numbers count the header; report data rows like everywhere else.
    line = rejects["line"].astype("int64")
    message = [
        f"at line {n} of the file, {_cause(t, m)}"
        for n, t, m in zip(line, rejects["error_type"], rejects["error_message"], strict=True)
    ]
    return pd.DataFrame(
        {
            "part": rejects["file_id"].astype("int64"),
            "line": line - 1,
            "error_message": message,
            "csv_line": rejects["csv_line"].astype(str),
        }
    )


def _counts_by_part(table: ir.Table, parts: int) -> list[int]:
    if parts == 1:
        return [int(table.count().execute())]
    got = table.group_by("_file").aggregate(n=table.count()).to_pyarrow().to_pylist()
    counts = [0] * parts
    for r in got:
        counts[int(r["_file"])] = int(r["n"])
    return counts


def _limits(exc: BaseException, path: object) -> None:
    """Out of memory or of disk while reading ``path``: say that (the machine's limit), not
    that the file cannot be read."""
    limits = resource_error(exc)
    if limits is not None:
        raise WarehouseError(f"{path}: {limits.message}", limits.hint) from exc


def _read_repaired(rd: Warehouse, text: _Text) -> RawSource:
    """Read a file whose engine count did not match its lines: scan, set aside, read clean."""
    fixed = _repair(text)
    cleanup = [*text.cleanup, fixed.clean]
    try:
        table, rejects = _engine_read(rd, [fixed.clean], text.delimiter, numbered=True)
    except Exception as exc:
        for p in cleanup:
            p.unlink(missing_ok=True)
        _limits(exc, text.path)
        raise InputError(
            f"{text.path}: cannot be read as CSV ({str(exc).splitlines()[0]})",
            "check that it is a text export with a header row",
        ) from exc
    rows: list[dict[str, object]] = []
    for row, line, cause, raw in fixed.bad:
        rows.append(
            {
                "part": 0,
                "line": row,
                "error_message": f"at line {line} of the file, {cause}",
                "csv_line": raw,
            }
        )
    for r in rejects.to_dict("records"):
        prefix, _, raw_line = str(r["csv_line"]).partition(text.delimiter)
        if not prefix.isdigit():
            continue
        row = int(prefix)
        rows.append(
            {
                "part": 0,
                "line": row,
                "error_message": f"at line {fixed.line_of(row)} of the file, "
                + _cause(r["error_type"], r["error_message"]),
                "csv_line": raw_line,
            }
        )
    malformed = pd.DataFrame(rows, columns=_MALFORMED_COLUMNS).drop_duplicates("line")
    read = int(table.count().execute())
    if read + malformed.shape[0] != fixed.records:
        rd.drop(table.get_name())
        for p in cleanup:
            p.unlink(missing_ok=True)
        raise InputError(
            f"{text.path}: {fixed.records:,} data lines, but only {read + malformed.shape[0]:,} "
            "could be accounted for; nothing was loaded",
            "report this file to the segmentum maintainers; meanwhile re-export it",
        )
    return RawSource(
        table,
        str(text.path),
        None,
        "csv",
        text.encoding,
        text.delimiter,
        malformed.sort_values("line", ignore_index=True),
        cleanup,
        [table.get_name()],
        rd,
    )


def read_csv(wh: Warehouse, path: Path) -> RawSource:
    """One CSV file (plain, .gz or .zip) as a table of text columns; see :func:`read_csvs`."""
    [raw] = list(read_csvs(wh, [path]))
    return raw


def read_csvs(wh: Warehouse, paths: Sequence[Path]) -> Iterator[RawSource]:
    """CSV files read with as few engine passes as possible.

    Files with the same delimiter and header are read together (one source with ``_file``).
    Each file's rows plus its rejected lines must add up to its own count of lines; a file where
    they do not (broken quotes, runaway lines, blank lines in the middle, values spanning lines)
    is scanned and read again on its own, every broken line set aside with its line number.
    """
    texts: list[_Text] = []
    try:
        for p in paths:
            texts.append(_prepare(p))
    except BaseException:
        for t in texts:
            for c in t.cleanup:
                c.unlink(missing_ok=True)
        raise
    rd = wh.reader()
    shapes: dict[tuple[str, str] | int, list[_Text]] = {}
    for i, t in enumerate(texts):
        # Only DuckDB reads a list of files with each row's file name.
        shape = (t.delimiter, t.header) if rd.engine == "duckdb" else i
        shapes.setdefault(shape, []).append(t)
    pending = list(shapes.values())
    try:
        while pending:
            yield from _read_group(rd, pending.pop(0))
    finally:
        # The caller stopped early (an error in an earlier source): drop the copies not read.
        for t in (t for group in pending for t in group):
            for c in t.cleanup:
                c.unlink(missing_ok=True)


def _read_group(rd: Warehouse, group: list[_Text]) -> Iterator[RawSource]:
    delimiter = group[0].delimiter
    try:
        table, rejects = _engine_read(rd, [t.readable for t in group], delimiter)
    except Exception as exc:
        if len(group) == 1:
            # A line longer than the engine takes, or no CSV at all: the scanner tells which.
            yield _read_repaired(rd, group[0])
            return
        # Some file spoils the shared read (a runaway line, a dialect the engine cannot make
        # out): set aside the files the error names, or else halve the group, and read on.
        named = [t for t in group if f'"{os.path.abspath(t.readable)}"' in str(exc)]
        if named:
            yield from _read_group(rd, [t for t in group if t not in named])
            for t in named:
                yield from _read_group(rd, [t])
        else:
            half = len(group) // 2
            yield from _read_group(rd, group[:half])
            yield from _read_group(rd, group[half:])
        return
    malformed = _fast_rejects(rejects)
    read = _counts_by_part(table, len(group))
    bad = malformed.groupby("part").size().to_dict() if malformed.shape[0] else {}
    ok = [
        i
        for i, t in enumerate(group)
        if read[i] + int(bad.get(i, 0)) == _content_lines(t.readable) - 1
    ]
    if len(ok) < len(group):
        if len(group) == 1:
            rd.drop(table.get_name())
            yield _read_repaired(rd, group[0])
            return
        rd.drop(table.get_name())
        good = [group[i] for i in ok]
        if good:
            yield from _read_group(rd, good)
        for i, t in enumerate(group):
            if i not in ok:
                yield _read_repaired(rd, t)
        return
    first = group[0]
    yield RawSource(
        table,
        str(first.path),
        None,
        "csv",
        first.encoding,
        delimiter,
        malformed,
        [c for t in group for c in t.cleanup],
        [table.get_name()],
        rd,
        [str(t.path) for t in group] if len(group) > 1 else [],
    )


# ------------------------------------------------------------------------ other formats
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
    unpacked = _unpack(path)
    try:
        table = rd.read_parquet(unpacked or path)
    except Exception as exc:
        if unpacked is not None:
            unpacked.unlink(missing_ok=True)
        _limits(exc, path)
        raise InputError(
            f"{path}: cannot be read as Parquet ({str(exc).splitlines()[0]})",
            "check that the file is complete (not cut off by a failed copy)",
        ) from exc
    return RawSource(
        table,
        str(path),
        None,
        "parquet",
        cleanup=[unpacked] if unpacked else [],
        reader=rd,
        zones=parquet_zones(unpacked or path),
    )


def parquet_zones(path: Path) -> dict[str, str]:
    """The time zone of each zone-aware timestamp column of a Parquet file, from its schema
    (the engines keep only "in UTC"; Arrow keeps the zone's name, e.g. Europe/Madrid)."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return {}
    return {
        f.name: str(f.type.tz)
        for f in schema
        if pa.types.is_timestamp(f.type) and getattr(f.type, "tz", None)
    }


def read_jsonl(wh: Warehouse, path: Path) -> RawSource:
    unpacked = _unpack(path)
    try:
        rd = wh.reader()
        with rd.file_order():
            view = rd.read_json(unpacked or path)
            table = rd.materialize(view.mutate(_row=ibis.row_number() + 1), "raw")
    except Exception as exc:
        if unpacked is not None:
            unpacked.unlink(missing_ok=True)
        _limits(exc, path)
        raise InputError(
            f"{path}: cannot be read as JSON lines ({str(exc).splitlines()[0]})",
            "each line must be one JSON object with the same keys",
        ) from exc
    return RawSource(
        table,
        str(path),
        None,
        "jsonl",
        cleanup=[unpacked] if unpacked else [],
        temp_tables=[table.get_name()],
        reader=rd,
    )


def open_sources(
    wh: Warehouse, path: Path, sheet: str | None = None
) -> list[tuple[Path, str | None]]:
    """The (file, sheet) pairs to load: the files of a folder or a glob, every sheet of a
    workbook unless one is chosen."""
    files = expand(path)
    if len(files) > 1 or files[0] != path:
        return [pair for f in files for pair in open_sources(wh, f, sheet)]
    if not path.exists():
        raise InputError(
            f"{path}: no such file",
            "check the path (relative paths start where you run the command)",
        )
    if path.stat().st_size == 0:
        raise InputError(
            f"{path}: the file is empty", "export the data again; the file has no rows"
        )
    if file_format(path) != "excel":
        return [(path, None)]
    if path.name.lower().endswith(_PACKED):
        raise InputError(
            f"{path}: a workbook inside an archive", "unpack it and load the .xlsx file itself"
        )
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
