"""Reading real-world files: broken quotes, runaway lines, archives, folders, many daily exports.

Every messy file is built here, in a temporary folder, as a real file on disk.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum.cli import main
from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

HEADER = "invoice,customer_id,date,amount,note\n"


def sales(n: int, start: int = 1, day: str = "2024-03-05") -> list[str]:
    """``n`` well-formed invoice lines, one per physical line."""
    return [f"F{i},C{i % 97},{day},{i % 50 + 1}.5,ok\n" for i in range(start, start + n)]


def data_lines(path: Path) -> int:
    """The file's data lines, counted without any CSV parser (header and blanks left out)."""
    return sum(1 for ln in path.read_bytes().splitlines() if ln.strip()) - 1


def load(wh: Warehouse, files: object, **kw: object) -> list[segmentum.IngestReport]:
    reports = segmentum.ingest("transactions", files, warehouse=wh, **kw)  # type: ignore[arg-type]
    assert all(r.balanced for r in reports)
    return reports


def quarantine(wh: Warehouse) -> pd.DataFrame:
    return wh.table("quarantine").order_by(["file", "source_row"]).execute()


# ------------------------------------------------------------------------- broken lines
def test_an_unterminated_quote_quarantines_only_its_own_line(wh: Warehouse, tmp_path: Path) -> None:
    lines = sales(20_000)
    lines[4999] = 'F5000,C5,2024-03-05,7.5,"note that never closes\n'
    path = write(tmp_path / "ventas.csv", HEADER + "".join(lines))
    [r] = load(wh, path)
    assert r.rows_read == data_lines(path) == 20_000
    assert (r.accepted, r.quarantined) == (19_999, 1)
    [q] = quarantine(wh).to_dict("records")
    assert q["file"] == str(path) and q["source_row"] == 5000
    assert "line 5001" in q["reason"] and "never closes" in q["reason"]
    assert q["raw"].startswith("F5000,C5")
    assert wh.table("transactions").count().execute() == 19_999


def test_two_broken_quotes_do_not_pair_up_and_swallow_the_lines_between(
    wh: Warehouse, tmp_path: Path
) -> None:
    lines = sales(400)
    lines[99] = 'F100,C3,2024-03-05,7.5,"opens here\n'
    lines[149] = 'F150,C3,2024-03-05,7.5,and "closes, far away\n'
    path = write(tmp_path / "s.csv", HEADER + "".join(lines))
    [r] = load(wh, path)
    assert (r.rows_read, r.accepted, r.quarantined) == (400, 398, 2)
    assert quarantine(wh).source_row.tolist() == [100, 150]


def test_values_spanning_lines_that_close_properly_still_load(
    wh: Warehouse, tmp_path: Path
) -> None:
    lines = sales(30)
    lines[9] = 'F10,C1,2024-03-05,3.5,"first line\nsecond line, with ""quotes"""\n'
    lines[19] = 'F20,C1,2024-03-05,3.5,"a\n\nb"\n'
    path = write(tmp_path / "s.csv", HEADER + "".join(lines) + "F31,C2,2024-03-05,1,x\n")
    [r] = load(wh, path)
    assert (r.rows_read, r.accepted, r.quarantined) == (31, 31, 0)
    tx = wh.table("transactions").execute().set_index("invoice_id")
    assert tx.loc["F31", "source_row"] == 31


def test_a_broken_quote_after_a_multiline_value_reports_the_physical_line(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = (
        HEADER
        + 'F1,C1,2024-03-05,1,"two\nlines"\n'
        + "\n"
        + 'F2,C1,2024-03-05,1,"broken\n'
        + "F3,C1,2024-03-05,1,ok\n"
    )
    [r] = load(wh, write(tmp_path / "s.csv", text))
    assert (r.rows_read, r.accepted, r.quarantined) == (3, 2, 1)
    [q] = quarantine(wh).to_dict("records")
    assert q["source_row"] == 2 and "at line 5 of the file" in q["reason"]


def test_a_huge_field_rejects_that_row_and_loads_the_others(wh: Warehouse, tmp_path: Path) -> None:
    lines = sales(1000)
    lines[499] = f"F500,C1,2024-03-05,2.5,{'x' * 5_000_000}\n"
    path = write(tmp_path / "s.csv", HEADER + "".join(lines))
    [r] = load(wh, path)
    assert (r.rows_read, r.accepted, r.quarantined) == (1000, 999, 1)
    [q] = quarantine(wh).to_dict("records")
    assert q["source_row"] == 500 and "line 501" in q["reason"] and "5.0 MB" in q["reason"]
    assert len(q["raw"]) < 2000  # the runaway value is not copied whole into quarantine


def test_blank_lines_are_not_rows_and_lines_with_wrong_fields_are_kept(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = HEADER + "".join(sales(3)) + "\n\n" + "F9,C1,2024-03-05\n" + "".join(sales(2, 4))
    path = write(tmp_path / "s.csv", text + "\n\n")
    [r] = load(wh, path)
    assert (r.rows_read, r.accepted, r.quarantined) == (6, 5, 1) == (data_lines(path), 5, 1)
    [q] = quarantine(wh).to_dict("records")
    assert "fewer fields than the header" in q["reason"] and q["raw"] == "F9,C1,2024-03-05"


# ---------------------------------------------------------------------- archives, names
def test_reads_a_gzipped_csv(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "ventas.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "".join(sales(50))).encode()))
    [r] = load(wh, path)
    assert (r.file, r.rows_read, r.accepted) == (str(path), 50, 50)


def test_reads_a_zip_holding_one_file(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ventas_2024.csv", (HEADER + "".join(sales(20))).encode("cp1252"))
        zf.writestr("__MACOSX/._ventas_2024.csv", b"\0\1junk")
    [r] = load(wh, path)
    assert (r.rows_read, r.accepted) == (20, 20)


def test_a_zip_with_several_files_is_refused_with_a_hint(wh: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "exports.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", HEADER)
        zf.writestr("b.csv", HEADER)
    with pytest.raises(InputError, match="holds 2 files") as exc:
        load(wh, path)
    assert exc.value.hint and "unzip" in exc.value.hint


def png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(random.Random(1).randrange(256) for _ in range(4000))


def xlsx() -> bytes:
    book = openpyxl.Workbook()
    book.active.append(["customer_id", "date", "amount"])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (png, "PNG image"),
        (lambda: bytes(random.Random(2).randrange(256) for _ in range(20_000)), "binary data"),
        (xlsx, "Excel workbook"),
        (lambda: b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "PDF"),
    ],
)
def test_binary_content_named_csv_gets_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object, says: str
) -> None:
    path = tmp_path / "ventas.csv"
    path.write_bytes(content())  # type: ignore[operator]
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    code = main(["ingest", "transactions", str(path), "--warehouse", url])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert str(path) in line and "not a text file" in line and says in line


def test_a_folder_of_daily_exports_and_a_glob_load_every_file(
    wh: Warehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    for d in range(1, 6):
        write(folder / f"ventas_2024-03-0{d}.csv", HEADER + "".join(sales(10, 10 * d)))
    (folder / "notes.md").write_text("not data")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    reports = load(wh, folder)
    assert [Path(r.file).name for r in reports] == [f"ventas_2024-03-0{d}.csv" for d in range(1, 6)]
    assert sum(r.accepted for r in reports) == 50
    # The same files named by a pattern (as the shell would not expand it on Windows):
    again = load(wh, str(folder / "ventas_*.csv"))
    assert len(again) == 5 and all(r.skipped for r in again)


def test_a_glob_that_matches_nothing_is_an_input_error(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file matches"):
        load(wh, str(tmp_path / "ventas_*.csv"))


# ----------------------------------------------------------------- many files together
def test_300_daily_files_keep_their_own_batch_counts_and_quarantine(
    wh: Warehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    for d in range(300):
        lines = sales(4, 1 + 4 * d, day="2024-01-01")
        if d == 7:
            lines[2] = f"F{1 + 4 * d + 2},C1,2024-01-01,not a number,ok\n"
        if d == 8:
            lines[1] = f'F{1 + 4 * d + 1},C1,2024-01-01,1,"broken\n'
        write(folder / f"ventas_{d:03d}.csv", HEADER + "".join(lines))
    reports = load(wh, folder)
    assert len(reports) == 300 and len({r.batch_id for r in reports}) == 300
    assert all(r.rows_read == 4 for r in reports)
    assert [r.quarantined for r in reports[6:10]] == [0, 1, 1, 0]
    q = quarantine(wh)
    assert q.file.map(lambda f: Path(f).name).tolist() == ["ventas_007.csv", "ventas_008.csv"]
    assert q.source_row.tolist() == [3, 2]
    assert set(q.batch_id) == {reports[7].batch_id, reports[8].batch_id}
    batches = wh.table("ingest_batches").execute().set_index("file")
    assert len(batches) == 300 and batches.accepted.sum() == 1198
    tx = wh.table("transactions").execute()
    per_batch = tx.groupby("batch_id").size()
    assert per_batch[reports[0].batch_id] == 4 and per_batch[reports[7].batch_id] == 3
    last = tx[tx.batch_id == reports[299].batch_id].set_index("source_row").invoice_id
    assert last.sort_index().to_dict() == {1: "F1197", 2: "F1198", 3: "F1199", 4: "F1200"}


def test_files_read_together_check_duplicates_per_file_and_overlaps_across_files(
    backend: Warehouse, tmp_path: Path
) -> None:
    # On PostgreSQL the files are read together in the embedded reader; Spark reads them one
    # by one: the outcome is the same.
    wh = backend
    head = "invoice,line,customer_id,date,amount\n"
    a = write(tmp_path / "a.csv", head + "F1,1,C1,2024-03-05,10\nF2,1,C2,2024-03-05,5\n")
    b = write(
        tmp_path / "b.csv",
        head + "F2,1,C2,2024-03-05,5\nF3,1,C3,2024-03-06,7\nF3,1,C3,2024-03-06,7\n",
    )
    ra, rb = load(wh, [a, b])
    assert (ra.accepted, rb.accepted, rb.quarantined) == (2, 1, 2)
    reasons = quarantine(wh).set_index("source_row").reason
    assert reasons[1] == "already in the warehouse"
    assert reasons[3] == "exact duplicate of row 2"  # row 2 of b.csv, not of a.csv
    assert wh.table("transactions").count().execute() == 3


def test_loading_a_folder_again_loads_only_the_new_file(wh: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    for d in range(3):
        write(folder / f"d{d}.csv", HEADER + "".join(sales(5, 1 + 5 * d)))
    load(wh, folder)
    write(folder / "d3.csv", HEADER + "".join(sales(5, 16)))
    reports = load(wh, folder)
    assert [r.skipped for r in reports] == [True, True, True, False]
    assert reports[3].accepted == 5 and wh.table("transactions").count().execute() == 20


def test_files_that_cannot_share_a_read_still_load_each_on_its_own(
    wh: Warehouse, tmp_path: Path
) -> None:
    semi = write(tmp_path / "a.csv", "invoice;customer_id;date;amount\nF1;C1;05/03/2024;1,5\n")
    comma = write(tmp_path / "b.csv", HEADER + "".join(sales(3, 2)))
    long_line = write(
        tmp_path / "c.csv",
        HEADER + "".join(sales(2, 5)) + f"F9,C1,2024-03-05,1,{'y' * 2_500_000}\n",
    )
    reports = load(wh, [semi, comma, long_line])
    assert [(r.rows_read, r.accepted) for r in reports] == [(1, 1), (3, 3), (3, 2)]


def test_the_command_line_summarises_many_files_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    for d in range(6):
        write(folder / f"v{d}.csv", HEADER + "".join(sales(3, 1 + 3 * d)))
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    assert main(["ingest", "transactions", str(folder), "--warehouse", url]) == 0
    out = capsys.readouterr().out
    assert "6 files in" in out and out.count("v5.csv") == 1
    assert main(["ingest", "transactions", str(folder), "--warehouse", url]) == 0
    assert capsys.readouterr().out.count("already loaded, skipped") == 6


def test_reads_a_utf16_export_with_a_broken_quote(wh: Warehouse, tmp_path: Path) -> None:
    # Excel's "Unicode text" export: UTF-16 with a byte-order mark, tab-separated.
    lines = [ln.replace(",", "\t") for ln in [HEADER, *sales(10)]]
    lines[4] = 'F4\tC4\t2024-03-05\t2,5\t"sin cerrar\n'
    path = tmp_path / "ventas.txt"
    path.write_bytes("".join(lines).encode("utf-16"))
    [r] = load(wh, path)
    assert (r.encoding, r.delimiter) == ("utf-16", "\t")
    assert (r.rows_read, r.accepted, r.quarantined) == (10, 9, 1)
    assert quarantine(wh).source_row.tolist() == [4]
