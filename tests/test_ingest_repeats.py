"""Ingest checks that compare rows: exact duplicates, repeated keys and keys already stored,
found by aggregates over a whole batch (not only neighbouring rows), and the cheap paths the
parsers take for clean values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tests.conftest import write

import segmentum
from segmentum.warehouse import Warehouse

HEADER = "InvoiceNo,Line,CustomerID,InvoiceDate,StockCode,Quantity,UnitPrice\n"


def line(invoice: str, n: int, customer: str = "C1", qty: str = "1") -> str:
    return f"{invoice},{n},{customer},2024-01-02 10:00,P1,{qty},3.5\n"


def load(wh: Warehouse, path: Path) -> segmentum.IngestReport:
    [report] = segmentum.ingest("transactions", path, warehouse=wh)
    assert report.balanced
    return report


def reasons(wh: Warehouse) -> dict[int, str]:
    q = wh.table("quarantine").execute()
    return dict(zip(q.source_row.tolist(), q.reason.tolist(), strict=True))


def test_duplicates_and_repeated_keys_far_apart_in_a_big_batch_are_each_quarantined(
    wh: Warehouse, tmp_path: Path
) -> None:
    rows = [line(f"F{i}", 1) for i in range(2000)]
    rows[1900] = line("F10", 1)  # the same text as row 11: an exact duplicate
    rows[1999] = line("F20", 1, customer="C9")  # the key of row 21 with other values
    rows[1000] = line("", 1)  # no invoice: missing, reported once
    rows[1200] = line("", 1)  # the same text again: missing and a duplicate of row 1501
    r = load(wh, write(tmp_path / "big.csv", HEADER + "".join(rows)))
    assert (r.rows_read, r.accepted, r.quarantined, r.duplicates) == (2000, 1996, 4, 2)
    assert reasons(wh) == {
        1901: "exact duplicate of row 11",
        2000: "invoice_id/line repeats row 21",
        1001: "invoice_id is missing",
        1201: "invoice_id is missing; exact duplicate of row 1001",
    }
    assert wh.table("transactions").count().execute() == 1996


def test_only_the_lines_already_stored_are_refused_when_an_export_overlaps_the_last(
    wh: Warehouse, tmp_path: Path
) -> None:
    load(wh, write(tmp_path / "monday.csv", HEADER + "".join(line(f"M{i}", 1) for i in range(50))))
    overlap = [line(f"M{i}", 1) for i in range(40, 50)] + [line(f"T{i}", 1) for i in range(20)]
    r = load(wh, write(tmp_path / "tuesday.csv", HEADER + "".join(overlap)))
    assert (r.rows_read, r.accepted, r.quarantined, r.already_loaded) == (30, 20, 10, 10)
    assert set(reasons(wh).values()) == {"already in the warehouse"}
    assert sorted(reasons(wh)) == list(range(1, 11))
    q = wh.table("quarantine").execute()
    assert set(q.column) == {"invoice_id"}
    assert wh.table("transactions").count().execute() == 70


def test_events_and_survey_answers_of_an_overlapping_export_are_added_once(
    wh: Warehouse, tmp_path: Path
) -> None:
    """Facts without a key (events, survey answers): a row equal in every column to a stored
    one is the same fact exported again, not a second one. Loading December's export, which
    repeats November's answers, added all of them again (every NPS counted twice). Empty
    values (no comment, no campaign) match empty values."""
    ev = "customer_id,timestamp,event_type,product_id\n"
    nov = [
        f"C{i},2024-11-0{1 + i % 9} 10:00:00,page_view,{'' if i % 2 else 'P1'}\n" for i in range(30)
    ]
    dec = [*nov[20:], "C1,2024-12-01 09:00:00,add_to_cart,P2\n"]
    [a] = segmentum.ingest(
        "events", write(tmp_path / "ev_nov.csv", ev + "".join(nov)), warehouse=wh
    )
    [b] = segmentum.ingest(
        "events", write(tmp_path / "ev_dic.csv", ev + "".join(dec)), warehouse=wh
    )
    assert (a.accepted, b.rows_read, b.accepted, b.already_loaded) == (30, 11, 1, 10)
    assert b.rows_read == b.accepted + b.quarantined
    assert wh.table("events").count().execute() == 31
    head = "Cliente;Fecha;Recomendación;Comentario\n"
    answers = [
        f"C{i};0{1 + i % 9}/11/2024;{i % 11};{'' if i % 3 else 'muy bien'}\n" for i in range(40)
    ]
    more = [*answers, "C7;02/12/2024;9;\n", "C8;02/12/2024;9;\n"]
    [c] = segmentum.ingest(
        "responses", write(tmp_path / "enc.csv", head + "".join(answers)), warehouse=wh
    )
    [d] = segmentum.ingest(
        "responses", write(tmp_path / "enc_dic.csv", head + "".join(more)), warehouse=wh
    )
    assert (c.accepted, d.rows_read, d.accepted, d.already_loaded) == (40, 42, 2, 40)
    assert wh.table("responses").count().execute() == 42
    q = wh.table("quarantine").execute()
    assert set(q.reason) == {"already in the warehouse"} and len(q) == 50


def test_a_value_out_of_range_is_shown_as_the_file_wrote_it(wh: Warehouse, tmp_path: Path) -> None:
    """The quarantine showed a rating of '6' as '6.0' (the parsed number), which is not in
    the file the user searches."""
    text = "cliente;fecha;valoracion;edad\nC1;01/03/2025;6;\n"
    segmentum.ingest("responses", write(tmp_path / "r.csv", text), warehouse=wh)
    segmentum.ingest("customers", write(tmp_path / "c.csv", "cliente;edad\nC1;150\n"), warehouse=wh)
    q = wh.table("quarantine").execute()
    assert sorted(zip(q.column, q.value, strict=True)) == [("age", "150"), ("rating", "6")]
    # The example names the column as the file does, which is what the user searches for.
    from segmentum.ingest import quarantine_summary

    named = {r["column"]: r["header"] for r in quarantine_summary(wh)}
    assert named == {"rating": "valoracion", "age": "edad"}


def test_a_corrected_census_replaces_the_cells_it_corrects(wh: Warehouse, tmp_path: Path) -> None:
    """A population count is a cell (its place, band and period) and its numbers: loading a
    corrected file replaced nothing and added every row again (every penetration halved, and
    no way back). A later row for the same cell now replaces the stored one; a new cell is
    added; two rows of one cell in one file (one per sex) are still summed by the market."""
    head = "CCAA;Habitantes;Año\n"
    first = "Madrid;7000;2025\nGalicia;n/d;2025\nAndalucía;8000;2025\n"
    a = segmentum.ingest("population", write(tmp_path / "p.csv", head + first), warehouse=wh)[0]
    assert (a.accepted, a.quarantined) == (2, 1)
    fixed = "Madrid;7100;2025\nGalicia;2000;2025\nAndalucía;8000;2025\nMadrid;6900;2024\n"
    b = segmentum.ingest("population", write(tmp_path / "p2.csv", head + fixed), warehouse=wh)[0]
    assert (b.rows_read, b.accepted, b.updated) == (4, 4, 2)
    rows = wh.table("population").execute()
    got = {(r.region, r.period): r.population for r in rows.itertuples()}
    assert got == {
        ("Madrid", "2025"): 7100,
        ("Galicia", "2025"): 2000,
        ("Andalucía", "2025"): 8000,
        ("Madrid", "2024"): 6900,
    }
    # A file without a period: its cells (no period) replace the cells without one.
    head = "CCAA;Habitantes\n"
    for n in (100, 120):
        segmentum.ingest(
            "population", write(tmp_path / f"np{n}.csv", f"{head}Ceuta;{n}\n"), warehouse=wh
        )
    ceuta = wh.table("population").execute().query("region == 'Ceuta'")
    assert ceuta.population.tolist() == [120]


def test_padded_text_is_trimmed_and_null_spellings_are_empty(wh: Warehouse, tmp_path: Path) -> None:
    text = (
        "invoice,customer_id,date,amount,channel\n"
        "I1,\t C1 \t,2024-01-02,5,  web\n"
        "I2,C2\t,2024-01-02 , 6 ,N/A\n"
        "I3,  null ,2024-01-03,7,Tienda \n"
        "I4,C4,2024-01-03,8,store\n"
    )
    r = load(wh, write(tmp_path / "padded.csv", text))
    assert (r.accepted, r.quarantined) == (4, 0)
    t = wh.table("transactions").order_by("source_row").execute()
    assert t.customer_id.tolist()[:2] == ["C1", "C2"]
    assert pd.isna(t.customer_id.tolist()[2])
    assert t.customer_id.tolist()[3] == "C4"
    assert t.sales_channel.tolist()[0] == "web"
    assert pd.isna(t.sales_channel.tolist()[1])
    assert t.sales_channel.tolist()[2:] == ["store", "store"]
    assert t.amount.tolist() == [5.0, 6.0, 7.0, 8.0]


def test_a_bad_number_in_a_typed_parquet_column_is_shown_as_text(
    wh: Warehouse, tmp_path: Path
) -> None:
    path = tmp_path / "sales.parquet"
    pq.write_table(
        pa.table(
            {
                "invoice": ["I1", "I2", "I3"],
                "customer_id": ["C1", "C2", "C3"],
                "date": pa.array([pd.Timestamp("2024-01-02")] * 3, pa.timestamp("us")),
                "quantity": [1, 2, 1],
                "unit_price": [2.5, -4.25, 3.0],
            }
        ),
        path,
    )
    r = load(wh, path)
    assert (r.accepted, r.quarantined) == (2, 1)
    q = wh.table("quarantine").execute()
    assert (q.source_row[0], q.column[0], q.value[0]) == (2, "unit_price", "-4.25")
    assert q.reason[0].startswith("unit_price is negative")


def _repeat_rows(wh: Warehouse, path: Path) -> list[int]:
    """The rows the repeat checks look at again for ``path`` (the step before the rules)."""
    from segmentum.config import load_settings
    from segmentum.ingest import core, readers
    from segmentum.ingest.mapping import auto_map
    from segmentum.schema import TRANSACTIONS

    wh.ensure(TRANSACTIONS)
    raw = readers.read(wh, path, None)
    report = core.IngestReport(table="transactions", file=str(path))
    mapping = auto_map(raw.columns, TRANSACTIONS, None)
    job = core._FileIngest(wh, TRANSACTIONS, raw, mapping, load_settings(), report, core._Options())
    job._conventions = job.decide_conventions()
    rows, hit = job.repeat_rows(job.staged(job._conventions[2]), wh)
    assert hit is None  # nothing stored yet
    return [] if rows is None else sorted(rows.execute()._row.tolist())


def test_one_repeated_key_sends_only_its_own_rows_to_the_repeat_checks(
    wh: Warehouse, tmp_path: Path
) -> None:
    # The rows of the groups that repeat, not every row of the file: a join that compared the
    # groups' hash with itself once sent all 2,000 rows as soon as one key repeated (the
    # answers stayed right, the checks ran on the whole file).
    rows = [line(f"F{i}", 1) for i in range(2000)]
    rows[1500] = line("F7", 1, customer="C9")
    csv = write(tmp_path / "sales.csv", HEADER + "".join(rows))
    assert _repeat_rows(wh, csv) == [8, 1501]
    parquet = tmp_path / "sales.parquet"
    pd.read_csv(csv, dtype=str).to_parquet(parquet)
    assert _repeat_rows(wh, parquet) == [8, 1501]
    assert _repeat_rows(wh, write(tmp_path / "clean.csv", HEADER + line("A", 1))) == []
    r = load(wh, csv)
    assert (r.accepted, r.quarantined) == (1999, 1)
    assert reasons(wh) == {1501: "invoice_id/line repeats row 8"}


def _as_csv_and_parquet(
    tmp_path: Path, header: str, loads: list[list[str]], stored_columns: list[str]
) -> list[tuple[list[tuple[int, ...]], list[tuple[Any, ...]], list[list[Any]]]]:
    """Each load of ``loads`` (rows of text under ``header``) into a CSV warehouse and into a
    Parquet one: per format, the counts of each load, the quarantine rows (source row, column,
    value, reason) and the stored lines' ``stored_columns``."""
    seen = []
    for fmt in ("csv", "parquet"):
        w = segmentum.connect(f"duckdb:///{tmp_path / f'{fmt}.duckdb'}")
        counts = []
        for i, rows in enumerate(loads):
            path = write(tmp_path / f"load{i}.csv", header + "".join(rows))
            if fmt == "parquet":
                csv, path = path, tmp_path / f"load{i}.parquet"
                pd.read_csv(csv, dtype=str, keep_default_na=False).to_parquet(path)
            r = load(w, path)
            counts.append((r.rows_read, r.accepted, r.quarantined, r.duplicates, r.already_loaded))
        q = w.table("quarantine").execute()
        stored = w.table("transactions").execute().sort_values(["invoice_id", "line"])
        seen.append(
            (
                counts,
                sorted(zip(q.source_row, q.column, q.value, q.reason, strict=True), key=str),
                stored[stored_columns].to_numpy().tolist(),
            )
        )
        w.close()
    return seen


def test_a_parquet_export_is_checked_like_the_same_rows_in_csv(tmp_path: Path) -> None:
    # Parquet is read again by each pass (the parse is not written down) and the flagged rows
    # are parsed again from those rows of the file; CSV writes its parse once. Both must
    # reject the same rows for the same reasons, on a first load and on an overlapping one.
    first = [line(f"F{i}", 1) for i in range(300)]
    first[120] = line("F7", 1)  # an exact duplicate of row 8
    first[200] = line("F9", 1, customer="C2")  # the key of row 10 with other values
    first[250] = line("F250", 1, qty="x")  # not a number
    second = [line(f"F{i}", 1) for i in range(290, 300)] + [line(f"G{i}", 1) for i in range(5)]
    seen = _as_csv_and_parquet(
        tmp_path, HEADER, [first, second], ["invoice_id", "customer_id", "quantity", "source_row"]
    )
    assert seen[0][0] == [(300, 297, 3, 1, 0), (15, 5, 10, 0, 10)]
    assert seen[0] == seen[1]


def test_lines_without_a_line_column_are_numbered_alike_from_parquet_and_csv(
    tmp_path: Path,
) -> None:
    # Parquet read again by each pass numbers its lines once in a narrow table joined where
    # needed; CSV numbers them in its written parse. Same numbers (file order within each
    # invoice, lines of an invoice far apart), same rejects, same keys found already stored.
    header = "InvoiceNo,CustomerID,InvoiceDate,StockCode,Quantity,UnitPrice\n"

    def row(invoice: str, product: str, qty: str = "1") -> str:
        return f"{invoice},C1,2024-01-02 10:00,{product},{qty},3.5\n"

    first = [row(f"F{i}", "P1") for i in range(200)]
    first[10] = row("M1", "P1")
    first[90] = row("M1", "P2")  # the same invoice, 80 rows later: its line 2
    first[150] = row("M1", "P3", qty="x")  # line 3, not a number
    first[160] = row("M1", "P2")  # an exact duplicate of row 91 (line 4 of M1)
    second = [row("M1", "P1"), row("M1", "P2"), row("N1", "P1")]  # M1/1 and M1/2 are stored
    seen = _as_csv_and_parquet(
        tmp_path, header, [first, second], ["invoice_id", "line", "product_id", "source_row"]
    )
    counts, rejected, stored = seen[0]
    assert counts == [(200, 198, 2, 1, 0), (3, 1, 2, 0, 2)]
    m1 = [r for r in stored if r[0] == "M1"]
    assert m1 == [["M1", 1, "P1", 11], ["M1", 2, "P2", 91]]
    assert ["N1", 1, "P1", 3] in stored
    assert sorted((r[0], r[3]) for r in rejected) == [
        (1, "already in the warehouse"),
        (2, "already in the warehouse"),
        (151, "quantity is not a number"),
        (161, "exact duplicate of row 91"),
    ]
    assert seen[0] == seen[1]


def test_rows_repeated_twice_or_three_times_are_found_with_or_without_a_line_column(
    tmp_path: Path,
) -> None:
    # Groups of two rows (the usual repeat) are taken from the aggregate that finds them;
    # a group of three needs a second pass for its middle row. Both, from CSV and Parquet.
    rows = [line(f"F{i}", 1) for i in range(60)]
    rows[10] = line("F3", 1)  # a pair: row 11 repeats row 4
    rows[20] = rows[30] = line("F5", 1)  # a triple: rows 21 and 31 repeat row 6
    seen = _as_csv_and_parquet(tmp_path / "pairs", HEADER, [rows], ["invoice_id", "source_row"])
    assert seen[0][0] == [(60, 57, 3, 3, 0)]
    assert [(r[0], r[3]) for r in seen[0][1]] == [
        (11, "exact duplicate of row 4"),
        (21, "exact duplicate of row 6"),
        (31, "exact duplicate of row 6"),
    ]
    assert seen[0] == seen[1]
    # Without a line column (lines numbered here), each invoice's lines one after another.
    header = "InvoiceNo,CustomerID,InvoiceDate,StockCode,Quantity,UnitPrice\n"
    bare = [f"F{i},C1,2024-01-02 10:00,P1,1,3.5\n" for i in range(60)]
    bare.insert(4, bare[3])  # rows 4 and 5: F3's lines 1 and 2, the same text
    bare.insert(43, bare[42].replace(",P1,", ",P2,"))  # rows 43 and 44: F41's two lines
    seen = _as_csv_and_parquet(
        tmp_path / "bare", header, [bare], ["invoice_id", "line", "product_id", "source_row"]
    )
    assert seen[0][0] == [(62, 61, 1, 1, 0)]
    assert [(r[0], r[3]) for r in seen[0][1]] == [(5, "exact duplicate of row 4")]
    assert ["F41", 1, "P1", 43] in seen[0][2] and ["F41", 2, "P2", 44] in seen[0][2]
    assert seen[0] == seen[1]


def test_the_quarantine_summary_shows_the_repeated_id_and_the_row_it_repeats(
    tmp_path: Path, capsys: Any
) -> None:
    from segmentum.cli import main
    from segmentum.ingest import quarantine_summary

    text = "customer_id,country\nC1,Spain\nC2,Spain\nC1,France\nC3,Spain\nC3,Italy\n"
    path = write(tmp_path / "clientes.csv", text)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with segmentum.connect(url) as wh:
        segmentum.ingest("customers", path, warehouse=wh)
        [first] = quarantine_summary(wh)
    assert first["reason"] == "customer_id repeats row N" and first["rows"] == 2
    assert (first["source_row"], first["column"], first["value"]) == (3, "customer_id", "C1")
    assert first["example_reason"] == "customer_id repeats row 1"
    assert main(["quarantine", "-w", url, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # The table wraps its cells on a narrow terminal: the pieces, in order.
    assert re.search(r"customer_id = 'C1' .*\(customer_id ya aparece en .*la fila 1\)", out), out
    assert "= ''" not in out
