"""Ingestion into a real DuckDB file: what is accepted, what is quarantined and why."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import ibis
import openpyxl
import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

SPANISH = (
    "id_cliente;fecha;importe;cantidad;canal\n"
    "A1;05/03/2024 10:00;12,50;1;Tienda\n"
    "A2;13/03/2024;1.234,50;2;web\n"
    "A3;14/03/2024;7,00;1;app\n"
)


def load(wh: Warehouse, table: str, path: Path, **kw: object) -> segmentum.IngestReport:
    [report] = segmentum.ingest(table, path, warehouse=wh, **kw)  # type: ignore[arg-type]
    assert report.balanced
    return report


def quarantine(wh: Warehouse) -> pd.DataFrame:
    return wh.table("quarantine").order_by("source_row").execute()


def test_loads_a_spanish_export_with_decimal_commas_and_day_first_dates(
    wh: Warehouse, tmp_path: Path
) -> None:
    r = load(wh, "transactions", write(tmp_path / "ventas.csv", SPANISH))
    assert (r.rows_read, r.accepted, r.quarantined) == (3, 3, 0)
    assert r.delimiter == ";"
    assert r.mapping == {
        "customer_id": "id_cliente",
        "timestamp": "fecha",
        "quantity": "cantidad",
        "amount": "importe",
        "sales_channel": "canal",
    }
    t = wh.table("transactions").order_by("source_row").execute()
    assert t.amount.tolist() == [12.5, 1234.5, 7.0]
    assert t.timestamp.tolist()[0] == pd.Timestamp("2024-03-05 10:00")
    assert t.sales_channel.tolist() == ["store", "web", "app"]
    assert t.unit_price.tolist() == [12.5, 617.25, 7.0]
    assert r.conventions["timestamp"] == "dates dd/mm/yyyy (detected)"


def test_every_rejected_row_is_kept_with_file_row_column_and_reason(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = "customer_id,date,amount\nA1,2024-03-05,10\nA2,2024-02-31,5\nA3,2024-03-07,abc\nA4,,3\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert (r.rows_read, r.accepted, r.quarantined) == (4, 1, 3)
    q = quarantine(wh)
    assert q.source_row.tolist() == [2, 3, 4]
    assert q.column.tolist() == ["timestamp", "amount", "timestamp"]
    assert q.value.tolist()[:2] == ["2024-02-31", "abc"]
    assert q.reason.tolist() == [
        "timestamp is not a date/time",
        "amount is not a number",
        "timestamp is missing",
    ]
    assert json.loads(q.raw[1]) == {"customer_id": "A3", "date": "2024-03-07", "amount": "abc"}
    assert set(q.file) == {str(tmp_path / "s.csv")}


def test_quarantines_rows_with_negative_price(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,quantity,price\nA1,2024-03-05,1,10\nA2,2024-03-05,1,-4\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert (r.accepted, r.quarantined) == (1, 1)
    assert quarantine(wh).reason.tolist() == [
        "unit_price is negative (an adjustment such as bad debt, not a sale)"
    ]


def test_returns_are_negative_lines_linked_to_their_invoice(wh: Warehouse, tmp_path: Path) -> None:
    text = "invoice,customer_id,date,quantity,price,factura_original\nF1,A1,2024-03-05,2,10,\nR1,A1,2024-03-09,-1,10,F1\n"
    load(wh, "transactions", write(tmp_path / "s.csv", text))
    t = wh.table("transactions").order_by("source_row").execute()
    assert t.amount.tolist() == [20.0, -10.0]
    assert t.original_invoice_id.tolist()[1] == "F1"


def test_rows_without_customer_are_kept_as_anonymous_sales(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,amount\nA1,2024-03-05,10\n,2024-03-05,4\n,2024-03-06,6\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert (r.accepted, r.anonymous) == (3, 2)
    t = wh.table("transactions")
    assert t.amount.sum().execute() == 20
    assert t.filter(t.customer_id.isnull()).invoice_id.nunique().execute() == 2


def test_exact_duplicate_lines_are_quarantined_by_default(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,amount\nA1,2024-03-05,10\nA1,2024-03-05,10\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert (r.accepted, r.quarantined, r.duplicates) == (1, 1, 1)
    assert quarantine(wh).reason.tolist() == ["exact duplicate of row 1"]


def test_exact_duplicates_can_be_kept(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,amount\nA1,2024-03-05,10\nA1,2024-03-05,10\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text), duplicates="keep")
    assert (r.accepted, r.quarantined, r.duplicates) == (2, 0, 1)


def test_reingesting_the_same_file_changes_nothing(backend: Warehouse, tmp_path: Path) -> None:
    wh = backend  # DuckDB, Spark and PostgreSQL
    path = write(tmp_path / "ventas.csv", SPANISH)
    load(wh, "transactions", path)
    again = load(wh, "transactions", path)
    assert again.skipped and "already loaded" in again.warnings[0]
    assert wh.table("transactions").count().execute() == 3
    assert wh.table("ingest_batches").count().execute() == 1


def test_an_overlapping_export_does_not_double_count(backend: Warehouse, tmp_path: Path) -> None:
    wh = backend  # DuckDB, Spark and PostgreSQL
    load(
        wh,
        "transactions",
        write(
            tmp_path / "jan.csv",
            "invoice,customer_id,date,amount\nF1,A1,2024-01-05,10\nF2,A2,2024-01-06,5\n",
        ),
    )
    r = load(
        wh,
        "transactions",
        write(
            tmp_path / "jan_feb.csv",
            "invoice,customer_id,date,amount\nF1,A1,2024-01-05,10\nF2,A2,2024-01-06,5\nF3,A1,2024-02-01,7\n",
        ),
    )
    assert (r.accepted, r.already_loaded, r.quarantined) == (1, 2, 2)
    assert wh.table("transactions").amount.sum().execute() == 22


def test_new_files_append(wh: Warehouse, tmp_path: Path) -> None:
    load(
        wh, "transactions", write(tmp_path / "a.csv", "customer_id,date,amount\nA1,2024-01-05,10\n")
    )
    load(
        wh, "transactions", write(tmp_path / "b.csv", "customer_id,date,amount\nA2,2024-01-06,5\n")
    )
    assert wh.table("transactions").count().execute() == 2


def test_a_few_lines_dated_long_after_every_other_sale_are_flagged(
    wh: Warehouse, tmp_path: Path
) -> None:
    """Walked as a daily load: one line of the day's file had its year mistyped (2026 for
    2025). It was accepted without a word (it is before the load day), and the next run dated
    the analysis a year on: every customer lapsed. The load now says so, in both languages,
    and keeps the line (nothing is lost); an ordinary next day says nothing."""
    days = [dt.date(2025, 6, 1) + dt.timedelta(days=i) for i in range(23)]
    rows = "".join(f"F{i},C{i % 9},{d},{10 + i}\n" for i, d in enumerate(days))
    first = load(
        wh, "transactions", write(tmp_path / "a.csv", "invoice,customer_id,date,amount\n" + rows)
    )
    assert not any("mistyped" in w for w in first.warnings)
    normal = load(
        wh,
        "transactions",
        write(tmp_path / "b.csv", "invoice,customer_id,date,amount\nG1,C1,2025-06-24,5\n"),
    )
    assert not any("mistyped" in w for w in normal.warnings)
    typo = load(
        wh,
        "transactions",
        write(
            tmp_path / "c.csv",
            "invoice,customer_id,date,amount\nH1,C2,2025-06-25,7\nH2,C3,2026-06-25,9\n",
        ),
    )
    assert typo.accepted == 2 and typo.quarantined == 0
    [said] = [w for w in typo.warnings if "mistyped" in w]
    assert "1 line(s) dated 2026-06-25 to 2026-06-25 come 365 days after" in said, said
    assert "--as-of 2025-06-26" in said, said
    [dicho] = [w for w in typo.warnings_es if "mal escrito" in w]
    assert "la última, el 2025-06-25" in dicho, dicho
    # On a first load too: three stragglers a year after everything else.
    other = segmentum.connect(f"duckdb:///{tmp_path / 'other.duckdb'}")
    late = "".join(f"L{i},C{i},2026-06-0{i + 1},5\n" for i in range(3))
    r = load(
        other,
        "transactions",
        write(tmp_path / "d.csv", "invoice,customer_id,date,amount\n" + rows + late),
    )
    assert any("3 line(s) dated 2026-06-01 to 2026-06-03" in w for w in r.warnings), r.warnings
    other.close()


def test_missing_required_columns_are_all_named_with_a_hint(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        segmentum.ingest(
            "transactions", write(tmp_path / "s.csv", "customer,product\nA1,P1\n"), warehouse=wh
        )
    assert "timestamp" in err.value.message and "amount or unit_price" in err.value.message
    assert "--mapping" in (err.value.hint or "")
    assert not wh.has("transactions") or wh.table("transactions").count().execute() == 0


@pytest.mark.parametrize(("name", "content"), [("empty.csv", b""), ("blank.csv", b"\n\n  \n")])
def test_an_empty_file_is_refused(wh: Warehouse, tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match="empty"):
        segmentum.ingest("transactions", tmp_path / name, warehouse=wh)


def test_a_header_without_rows_is_refused(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no rows"):
        segmentum.ingest(
            "transactions", write(tmp_path / "s.csv", "customer_id,date,amount\n"), warehouse=wh
        )


def test_an_unreadable_parquet_file_is_refused(wh: Warehouse, tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="cannot be read as Parquet"):
        segmentum.ingest("transactions", tmp_path / "broken.parquet", warehouse=wh)


def test_a_missing_file_and_an_unknown_type_are_refused(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        segmentum.ingest("transactions", tmp_path / "nope.csv", warehouse=wh)
    with pytest.raises(InputError, match="unknown file type"):
        segmentum.ingest("transactions", write(tmp_path / "x.doc", "hello"), warehouse=wh)


def test_a_column_with_no_readable_value_is_a_mapping_error(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,amount\nA1,yesterday,10\nA2,today,5\n"
    with pytest.raises(InputError, match="holds no readable"):
        segmentum.ingest("transactions", write(tmp_path / "s.csv", text), warehouse=wh)


@pytest.mark.parametrize(("encoding", "city"), [("latin-1", "Córdoba"), ("cp1252", "Córdoba €")])
def test_reads_latin1_and_cp1252_exports(
    wh: Warehouse, tmp_path: Path, encoding: str, city: str
) -> None:
    text = f"código_cliente;ciudad;país\nA1;Málaga;España\nA2;{city} ;Perú\n"
    r = load(wh, "customers", write(tmp_path / "c.csv", text, encoding))
    assert r.encoding == encoding
    assert sorted(wh.table("customers").city.execute()) == [city, "Málaga"]


def test_reads_every_sheet_of_a_workbook_or_the_chosen_one(wh: Warehouse, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    s1 = book.active
    s1.title = "enero"
    s1.append(["Cliente", "Fecha", "Importe"])
    s1.append(["A1", dt.datetime(2024, 1, 5, 10, 30), 12.5])
    s2 = book.create_sheet("febrero")
    s2.append(["Cliente", "Fecha", "Importe"])
    s2.append(["A2", "06/02/2024", "7,25"])
    book.save(tmp_path / "ventas.xlsx")
    reports = segmentum.ingest("transactions", tmp_path / "ventas.xlsx", warehouse=wh)
    assert [r.sheet for r in reports] == ["enero", "febrero"]
    t = wh.table("transactions").order_by("amount").execute()
    assert t.amount.tolist() == [7.25, 12.5]
    assert t.timestamp.tolist()[1] == pd.Timestamp("2024-01-05 10:30")
    with pytest.raises(InputError, match="no sheet named"):
        segmentum.ingest("transactions", tmp_path / "ventas.xlsx", warehouse=wh, sheet="marzo")


def test_reads_json_lines(wh: Warehouse, tmp_path: Path) -> None:
    lines = [
        {"user_id": "A1", "event": "cart_abandoned", "time": "2024-03-05T10:00:00"},
        {"cookie_id": "z9", "event": "page_view", "time": "2024-03-05T10:01:00"},
    ]
    path = write(tmp_path / "ev.jsonl", "\n".join(json.dumps(x) for x in lines))
    r = load(wh, "events", path)
    assert r.accepted == 2
    assert wh.table("events").anonymous_id.execute().tolist()[1] == "z9"


def test_ambiguous_dates_are_reported_and_can_be_overridden(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,amount\nA1,03/04/2024,10\n"
    r = load(wh, "transactions", write(tmp_path / "a.csv", text))
    assert "read both ways" in r.warnings[0]
    assert wh.table("transactions").timestamp.execute()[0] == pd.Timestamp("2024-04-03")
    r = load(
        wh, "transactions", write(tmp_path / "b.csv", text.replace("A1", "A2")), date_order="mdy"
    )
    t = wh.table("transactions")
    assert t.filter(t.customer_id == "A2").timestamp.execute()[0] == pd.Timestamp("2024-03-04")


def test_mixed_date_orders_stop_with_examples(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,amount\nA1,13/01/2024,10\nA2,01/13/2024,5\n"
    with pytest.raises(InputError, match="mixes day-first and month-first"):
        segmentum.ingest("transactions", write(tmp_path / "s.csv", text), warehouse=wh)


def test_a_mapping_file_overrides_the_automatic_match(wh: Warehouse, tmp_path: Path) -> None:
    write(tmp_path / "map.yaml", 'customer_id: "Socio"\ntimestamp: "Momento"\namount: "Pagado"\n')
    path = write(tmp_path / "s.csv", "Socio,Momento,Pagado\nA1,2024-03-05,10\n")
    r = load(wh, "transactions", path, mapping=tmp_path / "map.yaml")
    assert r.accepted == 1 and r.mapping["customer_id"] == "Socio"


def test_malformed_lines_are_quarantined_not_lost(wh: Warehouse, tmp_path: Path) -> None:
    text = (
        "customer_id,date,amount\nA1,2024-03-05,10\nA2,2024-03-06,5,extra,fields\nA3,2024-03-07,7\n"
    )
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert (r.rows_read, r.accepted, r.quarantined) == (3, 2, 1)
    q = quarantine(wh)
    assert q.reason[0].startswith("malformed line")
    assert "extra,fields" in q.raw[0]


def test_timestamps_with_an_offset_move_to_the_business_time_zone(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = "customer_id,date,amount\nA1,2024-07-01T10:00:00+02:00,10\nA2,2024-01-15T10:00:00Z,5\nA3,2024-07-01 09:00,1\n"
    settings = segmentum.load_settings(env={}).with_overrides(timezone="Europe/Madrid")
    load(wh, "transactions", write(tmp_path / "s.csv", text), settings=settings)
    t = wh.table("transactions").order_by("source_row").execute()
    assert t.timestamp.tolist() == [
        pd.Timestamp("2024-07-01 10:00"),
        pd.Timestamp("2024-01-15 11:00"),
        pd.Timestamp("2024-07-01 09:00"),
    ]


def test_a_newer_customer_row_replaces_the_stored_one(backend: Warehouse, tmp_path: Path) -> None:
    wh = backend  # DuckDB, Spark and PostgreSQL
    load(
        wh,
        "customers",
        write(
            tmp_path / "a.csv", "customer_id,city,email\nA1,Madrid,a1@x.es\nA2,Sevilla,a2@x.es\n"
        ),
    )
    r = load(
        wh, "customers", write(tmp_path / "b.csv", "customer_id,city,email\nA1,Bilbao,a1@x.es\n")
    )
    assert r.updated == 1
    c = wh.table("customers").order_by("customer_id").execute()
    assert c.city.tolist() == ["Bilbao", "Sevilla"]


def test_customer_fields_are_normalised_and_checked(wh: Warehouse, tmp_path: Path) -> None:
    text = "id_cliente,sexo,email,acepta_email,edad,intereses\nA1,Mujer,A1@X.ES,sí,34,Running; Viajes|Cocina\nA2,H,not-an-email,no,30,\nA3,hombre,a3@x.es,quizá,200,\n"
    r = load(wh, "customers", write(tmp_path / "c.csv", text))
    assert (r.accepted, r.quarantined) == (1, 2)
    c = wh.table("customers").execute().iloc[0]
    assert (c.gender, c.email, c.consent_email, c.tags) == (
        "female",
        "a1@x.es",
        True,
        "running,viajes,cocina",
    )
    assert quarantine(wh).reason.tolist() == [
        "email is not an email address",
        "consent_email is not yes/no; age is not between 0 and 120",
    ]


def test_parquet_keeps_types_and_row_numbers(wh: Warehouse, tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "CustomerID": ["A1", "A2"],
            "InvoiceDate": [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02")],
            "Quantity": [1, 0],
            "UnitPrice": [2.5, 3.0],
        }
    )
    df.to_parquet(tmp_path / "t.parquet")
    r = load(wh, "transactions", tmp_path / "t.parquet")
    assert (r.accepted, r.quarantined) == (1, 1)
    assert quarantine(wh).source_row.tolist() == [2]


MESSY_LINES = (
    "Factura;Línea;Cliente;Fecha;Cantidad;Precio;Canal\n"
    "F1;1;17850.0;2024-03-05T10:00:00+01:00;2;3,50;Tienda\n"
    "F1;2;17850.0;2024-03-05T10:00:00+01:00;1;10,00;Tienda\n"
    "F1;2;17850.0;2024-03-05T10:00:00+01:00;1;10,00;Tienda\n"  # exported twice
    "F2;1;13047;2024-03-31;1;abc;web\n"  # no price
    "F3;1;13047;2024-02-31;1;4,00;web\n"  # no such day
    "CF1;1;17850.0;2024-03-09;-1;3,50;Tienda\n"  # a return of F1's first line
    "F4;1;;2024-03-10 18:30;3;1,25;app\n"  # an anonymous sale
)


def _stored(wh: Warehouse, batch_id: str) -> pd.DataFrame:
    t = wh.table("transactions")
    return t.filter(t.batch_id == batch_id).drop("batch_id").order_by("source_row").execute()


def _without_line_column(text: str) -> str:
    return "\n".join(
        ";".join(p for i, p in enumerate(ln.split(";")) if i != 1) for ln in text.split("\n")
    )


@pytest.mark.parametrize("numbered", [False, True], ids=["line-column", "lines-numbered"])
def test_a_first_load_keeps_its_checked_parse_as_the_lines_table(
    wh: Warehouse, tmp_path: Path, numbered: bool
) -> None:
    """A first load of text writes its parse as the table itself (no second copy of every
    line): the same rows, columns and quarantine as a load into a table that holds lines.
    The rows it rejects are parsed again from the file for their reasons' details (the
    value at fault, the row's text, the line number given where the file has none)."""
    text = _without_line_column(MESSY_LINES) if numbered else MESSY_LINES
    path = write(tmp_path / "ventas.csv", text)
    first = load(wh, "transactions", path)
    assert (first.rows_read, first.accepted, first.quarantined) == (7, 4, 3)
    assert (first.duplicates, first.anonymous, first.return_lines) == (1, 1, 1)
    # The decimal comma is said where it was read; whole-number columns have none to read.
    assert first.conventions["unit_price"] == "decimal ','"
    # In Spanish, named by the file's own headers, as the warnings name them.
    assert first.conventions_es["Precio"] == "separador decimal ','"
    assert "zona horaria de Fecha" in first.conventions_es
    assert "line" not in first.conventions and "quantity" not in first.conventions
    # The table has its own columns only, in the schema's order.
    assert wh.table("transactions").columns == tuple(segmentum.schema.TRANSACTIONS.ibis_schema)
    staging = wh.con.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND starts_with(table_name, '_seg_')"
    ).fetchall()
    assert staging == []
    assert wh.temp_tables() == set()  # nothing of the load's left on the connection either

    # The same file loaded where lines are already stored takes the plain insert.
    other = segmentum.connect(f"duckdb:///{tmp_path / 'other.duckdb'}")
    try:
        load(
            other,
            "transactions",
            write(tmp_path / "antes.csv", "Factura;Cliente;Fecha;Precio\nF0;1;2023-01-02;5\n"),
        )
        second = load(other, "transactions", path)
        assert (second.accepted, second.quarantined, second.duplicates) == (4, 3, 1)
        assert second.returns_linked == first.returns_linked
        # ... and the same types as a table created empty.
        describe = "SELECT column_name, column_type FROM (DESCRIBE transactions)"
        assert wh.run_sql(describe) == other.run_sql(describe)
        mine, theirs = _stored(wh, first.batch_id or ""), _stored(other, second.batch_id or "")
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), theirs.reset_index(drop=True))
        assert mine.source_row.tolist() == [1, 2, 6, 7]
        assert mine.customer_id.tolist()[:3] == ["17850", "17850", "17850"]
        assert pd.isna(mine.customer_id.iloc[3])
        keep = ["source_row", "column", "value", "reason", "raw"]
        pd.testing.assert_frame_equal(quarantine(wh)[keep], quarantine(other)[keep])
        assert quarantine(wh).value.tolist() == ["F1", "abc", "2024-02-31"]
        if numbered:  # numbered in file order within each invoice: F1's lines 1 and 2
            assert mine.line.tolist() == [1, 2, 1, 1]
    finally:
        other.close()
    # A later load into the adopted table appends as usual.
    later = load(
        wh,
        "transactions",
        write(tmp_path / "abril.csv", "Factura;Cliente;Fecha;Precio\nF9;1;2024-04-02;5\n"),
    )
    assert later.accepted == 1
    assert wh.table("transactions").count().execute() == 5


def test_a_staging_table_left_by_a_killed_load_is_dropped_when_the_file_is_next_opened(
    tmp_path: Path,
) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    code = (
        "import os, ibis, segmentum\n"
        f"wh = segmentum.connect({url!r})\n"
        "wh.con.raw_sql('CREATE TABLE kept AS SELECT 1 AS i')\n"
        "t = wh.staging_table(ibis.memtable({'source_row': [1, 2, 3]}), 'ingest')\n"
        "print(t.get_name(), flush=True)\n"
        "os._exit(9)  # killed before the staging table became a table of the warehouse\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    name = done.stdout.split()[0]
    with segmentum.connect(url) as wh:
        assert not wh.has(name)
        assert name in wh.cleaned_on_open
        assert wh.table("kept").count().execute() == 1
        # The doctor says what went, in the reader's language.
        from segmentum import i18n
        from segmentum.maintenance import doctor

        [said] = [f for f in doctor(wh).findings if f.status == "repaired"]
        assert i18n.translate_message("es", said.message) == (
            "eliminados 1 restos de un proceso cortado (archivos de desbordamiento junto al "
            f"almacén, tablas de preparación dentro): {name}"
        )
        # A staging table of a warehouse this process still holds is someone's load: kept.
        live = wh.staging_table(ibis.memtable({"source_row": [1]}), "ingest").get_name()
        second = segmentum.connect(url)
        try:
            assert second.has(live) and second.cleaned_on_open == []
        finally:
            second.close()
        wh.drop(live)
