"""Real exports give true numbers: ids written as floats, unrecognised columns, Spanish headers,
time zones, dates out of range, logs without amounts, currencies, and the quarantine summary.

The files are shaped like the exports users send: Online Retail II (``Invoice, StockCode,
Description, Quantity, InvoiceDate, Price, Customer ID, Country``, ids as ``13085.0``,
cancellations prefixed ``C``, a bad-debt adjustment), Spanish invoicing programs (``Nº factura``,
``Cód. artículo``, ``Uds.``, decimal commas, ``€``) and loyalty-card logs without amounts.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum import pipeline
from segmentum.errors import InputError
from segmentum.features import customer_features, default_as_of
from segmentum.ingest import id_match, quarantine_summary
from segmentum.ingest.core import data_currency, has_amounts, revenue_totals
from segmentum.warehouse import Warehouse

RETAIL_II = (
    "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
    "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom\n"
    "489434,79323P,PINK CHERRY LIGHTS,12,2009-12-01 07:45:00,6.75,13085.0,United Kingdom\n"
    "489435,22350,CAT BOWL ,12,2009-12-01 07:46:00,2.55,1.3085E+04,United Kingdom\n"
    "489436,21232,STRAWBERRY CERAMIC TRINKET BOX,12,2009-12-01 09:06:00,1.25,13078.0,United Kingdom\n"
    "C489449,22087,PAPER BUNTING WHITE LACE,-12,2009-12-01 10:33:00,2.95,16321.0,Australia\n"
    "489450,22087,PAPER BUNTING WHITE LACE,24,2009-11-30 10:00:00,2.95,16321.0,Australia\n"
    "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,-11062.06,,United Kingdom\n"
    "489451,84879,ASSORTED COLOUR BIRD ORNAMENT,8,2009-12-02 12:00:00,1.69,,United Kingdom\n"
)
CUSTOMERS = "Customer ID,Country\n13085,United Kingdom\n13078,United Kingdom\n99999,Spain\n"


def load(wh: Warehouse, table: str, path: Path, **kw: object) -> segmentum.IngestReport:
    [report] = segmentum.ingest(table, path, warehouse=wh, **kw)  # type: ignore[arg-type]
    assert report.balanced
    return report


def quarantine(wh: Warehouse) -> pd.DataFrame:
    return wh.table("quarantine").order_by("source_row").execute()


# ------------------------------------------------------------------------------ identifiers
def test_ids_written_as_floats_join_ids_written_as_integers(wh: Warehouse, tmp_path: Path) -> None:
    load(wh, "customers", write(tmp_path / "customers.csv", CUSTOMERS))
    r = load(wh, "transactions", write(tmp_path / "online_retail_II.csv", RETAIL_II))
    tx = wh.table("transactions").execute()
    assert set(tx.customer_id.dropna()) == {"13085", "13078", "16321"}
    assert "489434" in set(tx.invoice_id) and "C489449" in set(tx.invoice_id)
    # 13085.0 and 1.3085E+04 in the sales are the customer 13085 of the customers file.
    assert r.id_match == {
        "buyers": 3,
        "buyers_without_record": 1,
        "customers": 3,
        "customers_without_purchase": 1,
        "example_buyer": "16321",
        "example_customer": "99999",
        "matched": 2,
    }
    assert not [w for w in r.warnings if "buyers have a customer record" in w]


def test_a_float_parquet_id_column_matches_text_ids(wh: Warehouse, tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "CustomerID": [17850.0, 17850.0, 13047.0, None],
            "InvoiceDate": pd.to_datetime(["2010-12-01 08:26"] * 4),
            "Quantity": [6, 6, 12, 2],
            "UnitPrice": [2.55, 3.39, 1.65, 0.85],
            "StockCode": [85123.0, 71053.0, 22745.0, 22748.0],
        }
    ).to_parquet(tmp_path / "t.parquet")
    load(wh, "customers", write(tmp_path / "c.csv", "CustomerID,Country\n17850,UK\n13047,UK\n"))
    r = load(wh, "transactions", tmp_path / "t.parquet")
    tx = wh.table("transactions").order_by("source_row").execute()
    assert tx.customer_id.tolist()[:3] == ["17850", "17850", "13047"]
    assert tx.product_id.tolist() == ["85123", "71053", "22745", "22748"]
    assert (r.id_match["matched"], r.id_match["buyers_without_record"]) == (2, 0)


def test_fewer_than_half_buyers_matching_a_customer_warns_with_a_hint(
    wh: Warehouse, tmp_path: Path
) -> None:
    load(wh, "transactions", write(tmp_path / "online_retail_II.csv", RETAIL_II))
    # The CRM writes its ids with a prefix: nothing matches.
    [r] = segmentum.ingest(
        "customers", write(tmp_path / "crm.csv", "id_cliente\nC-13085\nC-13078\n"), warehouse=wh
    )
    [warning] = [w for w in r.warnings if "buyers have a customer record" in w]
    assert warning.startswith("only 0 of 3 buyers have a customer record")
    assert "same customer id" in warning and "'C-13078'" in warning
    m = id_match(wh)
    assert m is not None and (m.matched, m.customers_without_purchase) == (0, 2)
    # The run summary says the same in Spanish (rule 9).
    es = m.warning("es")
    assert es is not None and es.startswith("solo 0 de 3 compradores tienen ficha de cliente")
    assert "mismo id de cliente" in es and "'C-13078'" in es


# ---------------------------------------------------------------------- unrecognised columns
def test_unrecognised_columns_are_listed_as_ignored(wh: Warehouse, tmp_path: Path) -> None:
    r = load(wh, "transactions", write(tmp_path / "online_retail_II.csv", RETAIL_II))
    assert r.ignored_columns == ["Country"]
    assert r.mapping["customer_id"] == "Customer ID" and "Country" not in r.mapping.values()


@pytest.mark.parametrize(
    "column", ["socio", "id_socio", "cust", "member_no", "Nº tarjeta fidelización"]
)
def test_a_sales_file_whose_customer_column_is_not_recognised_is_refused(
    wh: Warehouse, tmp_path: Path, column: str
) -> None:
    path = write(tmp_path / "s.csv", f"{column},fecha,importe\n881,05/03/2024,12.50\n")
    with pytest.raises(InputError) as exc:
        segmentum.ingest("transactions", path, warehouse=wh)
    assert f"'{column}' looks like one" in str(exc.value)
    assert "--anonymous" in (exc.value.hint or "") and "--mapping" in (exc.value.hint or "")
    assert wh.table("transactions").count().execute() == 0


def test_anonymous_loads_the_sales_without_customers(wh: Warehouse, tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.csv", "socio,fecha,importe\n881,05/03/2024,12.50\n882,06/03/2024,3\n"
    )
    r = load(wh, "transactions", path, anonymous=True)
    assert (r.accepted, r.anonymous) == (2, 2)
    assert r.ignored_columns == ["socio"]
    assert "--anonymous" in r.conventions["customer_id"]


def test_customer_no_and_cliente_num_are_recognised(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_no,cliente_num,date,amount\n17850.0,X,2024-03-05,10\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert r.mapping["customer_id"] == "customer_no"
    assert wh.table("transactions").customer_id.execute().tolist() == ["17850"]


def test_duplicates_are_judged_on_every_column_of_the_file(wh: Warehouse, tmp_path: Path) -> None:
    # Same day, amount and product, different members: two sales, not one sale twice, even
    # though the member column is not loaded.
    text = (
        "socio,fecha,importe,producto\n"
        "881,05/03/2024,12.50,P1\n"
        "882,05/03/2024,12.50,P1\n"
        "882,05/03/2024,12.50,P1\n"
    )
    r = load(wh, "transactions", write(tmp_path / "s.csv", text), anonymous=True)
    assert (r.accepted, r.duplicates) == (2, 1)
    assert r.duplicate_columns == ["socio", "fecha", "importe", "producto"]
    assert r.conventions["exact duplicates"].startswith("same value in all 4 columns")
    assert quarantine(wh).reason.tolist() == ["exact duplicate of row 2"]


def test_a_file_that_is_mostly_duplicates_warns_that_a_column_may_be_missing(
    wh: Warehouse, tmp_path: Path
) -> None:
    rows = "".join("A1,05/03/2024,12.50\n" for _ in range(10))
    r = load(wh, "transactions", write(tmp_path / "s.csv", "cliente,fecha,importe\n" + rows))
    assert r.duplicates == 9
    [warning] = [w for w in r.warnings if "repeat an earlier row" in w]
    assert "9 of 10 rows (90%)" in warning and "left out a column" in warning


# --------------------------------------------------------------------------- Spanish headers
def test_a_spanish_invoice_export_with_abbreviated_headers_loads(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = (
        "Nº factura;Fecha factura;Nº cliente;Cód. artículo;Descripción;Uds.;Precio unitario;"
        "Dto. %;Importe total\n"
        "F-2024/001;05/03/2024 10:15;4301;ART-7;Zapatilla running;2;45,00 €;10;81,00 €\n"
        "F-2024/002;13/03/2024 18:40;4302;ART-9;Camiseta técnica;1;19,90 €;0;19,90 €\n"
    )
    r = load(wh, "transactions", write(tmp_path / "facturas.csv", text))
    assert r.mapping == {
        "invoice_id": "Nº factura",
        "customer_id": "Nº cliente",
        "timestamp": "Fecha factura",
        "product_id": "Cód. artículo",
        "product_name": "Descripción",
        "quantity": "Uds.",
        "unit_price": "Precio unitario",
        "amount": "Importe total",
    }
    assert r.ignored_columns == ["Dto. %"]
    tx = wh.table("transactions").order_by("source_row").execute()
    assert tx.amount.tolist() == [81.0, 19.9]
    assert tx.currency.tolist() == ["EUR", "EUR"]
    assert r.currency == "EUR"


# -------------------------------------------------------------------------------- time zones
def test_offsets_keep_the_customers_local_time_for_hour_and_weekday(
    wh: Warehouse, tmp_path: Path
) -> None:
    # Shopify-style export of a Mexican shop: Friday evenings local time, which in UTC
    # would be Saturday night ("late").
    text = (
        "Name,Customer ID,Created at,Total\n"
        "#1001,M1,2024-07-05T19:30:00-06:00,40.00\n"
        "#1002,M1,2024-07-12T18:10:00-06:00,25.00\n"
        "#1003,M1,2024-07-19T19:05:00-06:00,31.00\n"
    )
    r = load(wh, "transactions", write(tmp_path / "orders_export.csv", text))
    tx = wh.table("transactions").order_by("source_row").execute()
    assert tx.timestamp.tolist()[0] == pd.Timestamp("2024-07-05 19:30")
    assert r.time_zone == "UTC"
    assert (
        "3 with an offset (-06:00) kept at the local time written"
        in (r.conventions["timestamp time zone"])
    )
    f = customer_features(wh.table("transactions"), dt.date(2024, 8, 1)).execute()
    assert (f.preferred_hour_band[0], f.preferred_weekday[0]) == ("evening", "fri")


def test_utc_times_move_to_the_business_zone_and_local_ones_stay(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = (
        "customer_id,date,amount\n"
        "A1,2024-01-15T10:00:00Z,5\n"
        "A2,2024-01-15T10:00:00+00:00,5\n"
        "A3,2024-01-15T10:00:00+01:00,5\n"
        "A4,2024-01-15 10:00,5\n"
    )
    settings = segmentum.load_settings(env={}).with_overrides(timezone="America/Mexico_City")
    r = load(wh, "transactions", write(tmp_path / "s.csv", text), settings=settings)
    t = wh.table("transactions").order_by("source_row").execute()
    assert t.timestamp.dt.hour.tolist() == [4, 4, 10, 10]
    assert "2 in UTC (Z) converted to America/Mexico_City" in r.conventions["timestamp time zone"]


def _parquet_sales(path: Path, times: list[dt.datetime], zone: str) -> Path:
    """A Parquet export as pyarrow writes it: float customer ids, a zone-aware timestamp
    column (``timestamp[us, tz=...]``), a cancellation."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(times)
    table = pa.table(
        {
            "InvoiceNo": [f"{536365 + i}" for i in range(n - 1)] + ["C536365"],
            "StockCode": ["85123A"] * n,
            "Quantity": [6.0] * (n - 1) + [-6.0],
            "InvoiceDate": pa.array(times, pa.timestamp("us", tz=zone)),
            "UnitPrice": [2.55] * n,
            "CustomerID": [17850.0] * n,
        }
    )
    pq.write_table(table, path)
    assert str(pq.read_schema(path).field("InvoiceDate").type) == f"timestamp[us, tz={zone}]"
    return path


def test_a_parquet_time_zone_keeps_the_local_wall_clock_time_as_offsets_in_text_do(
    wh: Warehouse, tmp_path: Path
) -> None:
    madrid = zoneinfo.ZoneInfo("Europe/Madrid")
    # A Tuesday morning in winter (UTC+1); 01:30 on the night the clocks go forward (00:30
    # UTC, half an hour before the change); a Saturday just after midnight in summer (UTC+2:
    # still Friday evening in UTC), and its cancellation.
    times = [
        dt.datetime(2024, 3, 5, 9, 30, tzinfo=madrid),
        dt.datetime(2024, 3, 31, 1, 30, tzinfo=madrid),
        dt.datetime(2024, 7, 6, 0, 30, tzinfo=madrid),
        dt.datetime(2024, 7, 6, 1, 0, tzinfo=madrid),
    ]
    path = _parquet_sales(tmp_path / "ventas.parquet", times, "Europe/Madrid")
    r = load(wh, "transactions", path)
    stored = wh.table("transactions").order_by("source_row").execute()
    assert stored.timestamp.tolist() == [
        pd.Timestamp("2024-03-05 09:30"),
        pd.Timestamp("2024-03-31 01:30"),
        pd.Timestamp("2024-07-06 00:30"),
        pd.Timestamp("2024-07-06 01:00"),
    ]
    assert stored.customer_id.tolist() == ["17850"] * 4
    note = r.conventions["timestamp time zone"]
    assert (
        note == "'InvoiceDate' is stored with time zone Europe/Madrid: kept at the local time there"
    )
    # The same sales exported as text with offsets are stored the same.
    text = "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID\n" + "".join(
        f"{inv},85123A,{q},{t.isoformat()},2.55,17850.0\n"
        for inv, q, t in zip(
            ["536365", "536366", "536367", "C536365"], [6, 6, 6, -6], times, strict=True
        )
    )
    other = segmentum.connect(f"duckdb:///{tmp_path / 'csv.duckdb'}")
    load(other, "transactions", write(tmp_path / "ventas.csv", text))
    from_csv = other.table("transactions").order_by("source_row").execute()
    other.close()
    assert from_csv.timestamp.tolist() == stored.timestamp.tolist()


def test_a_parquet_column_in_utc_moves_to_the_business_zone(wh: Warehouse, tmp_path: Path) -> None:
    settings = segmentum.load_settings(env={}).with_overrides(timezone="America/Mexico_City")
    utc = dt.UTC
    times = [
        dt.datetime(2024, 1, 15, 10, 0, tzinfo=utc),
        dt.datetime(2024, 1, 15, 11, 0, tzinfo=utc),
    ]
    path = _parquet_sales(tmp_path / "orders.parquet", times, "UTC")
    r = load(wh, "transactions", path, settings=settings)
    hours = wh.table("transactions").order_by("source_row").execute().timestamp.dt.hour
    assert hours.tolist() == [4, 5]  # UTC-6, as '2024-01-15T10:00:00Z' in text
    assert r.conventions["timestamp time zone"] == (
        "'InvoiceDate' is stored in UTC: converted to America/Mexico_City (setting timezone)"
    )
    # pandas writes a fixed offset as the zone (+05:30): the local time there is kept.
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    times = [dt.datetime(2024, 2, 1, 9, 0, tzinfo=ist), dt.datetime(2024, 2, 1, 9, 5, tzinfo=ist)]
    other = segmentum.connect(f"duckdb:///{tmp_path / 'ist.duckdb'}")
    load(other, "transactions", _parquet_sales(tmp_path / "ist.parquet", times, "+05:30"))
    ts = other.table("transactions").order_by("source_row").execute().timestamp
    other.close()
    assert ts.tolist() == [pd.Timestamp("2024-02-01 09:00"), pd.Timestamp("2024-02-01 09:05")]


# ----------------------------------------------------------------------- dates out of range
def test_dates_out_of_range_are_quarantined_and_never_move_as_of(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = (
        "customer_id,date,amount\n"
        "A1,2024-03-05,10\n"
        "A2,2099-01-01,5\n"
        "A3,1899-12-31,5\n"
        "A4,2024-03-06,7\n"
    )
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert (r.accepted, r.quarantined) == (2, 2)
    q = quarantine(wh)
    # A walk read "after 7 Dec, the load day" on 6 Dec: the day is today 14 hours ahead of UTC
    # (a time written with any zone's offset passes), and the reason says so.
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=14)).date()
    assert q.reason[0] in {
        f"timestamp is in the future (later than {d}, today in the time zone furthest ahead)"
        for d in (ahead, ahead - dt.timedelta(days=1))  # the test may straddle midnight
    }, q.reason[0]
    assert q.reason[1] == "timestamp is before 1990-01-01 (setting earliest_date)"
    assert default_as_of(wh.table("transactions")) == dt.date(2024, 3, 7)


def test_the_earliest_plausible_date_is_a_setting(wh: Warehouse, tmp_path: Path) -> None:
    settings = segmentum.load_settings(env={}).with_overrides(earliest_date="1850-01-01")
    text = "customer_id,date,amount\nA3,1899-12-31,5\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text), settings=settings)
    assert r.accepted == 1


# ------------------------------------------------------------------------------- no amounts
LOYALTY = (
    "Nº socio,Fecha,Tienda\n"
    "1001.0,02/01/2024 10:00,T1\n"
    "1001.0,20/01/2024 11:00,T1\n"
    "1001.0,03/03/2024 12:00,T2\n"
    "1002.0,05/01/2024 18:00,T1\n"
    "1002.0,15/02/2024 18:30,T1\n"
    "1003.0,09/01/2024 09:00,T3\n"
)


def test_a_log_without_amounts_is_refused_with_a_hint_and_loads_with_no_amount(
    wh: Warehouse, tmp_path: Path
) -> None:
    path = write(tmp_path / "tarjeta.csv", LOYALTY)
    mapping = {"customer_id": "Nº socio"}
    with pytest.raises(InputError) as exc:
        segmentum.ingest("transactions", path, warehouse=wh, mapping=mapping)
    assert "--no-amount" in (exc.value.hint or "")
    r = load(wh, "transactions", path, mapping=mapping, no_amount=True)
    assert (r.accepted, r.quarantined) == (6, 0)
    tx = wh.table("transactions").execute()
    assert tx.amount.isna().all() and tx.quantity.tolist() == [1.0] * 6
    assert not has_amounts(wh)
    f = customer_features(wh.table("transactions"), dt.date(2024, 4, 1)).execute()
    assert sorted(f.frequency.tolist()) == [1, 2, 3]


def test_a_run_on_a_log_without_amounts_fits_frequency_and_skips_spend(
    wh: Warehouse, tmp_path: Path
) -> None:
    # 120 loyalty-card members, each visiting every 9 to 40 days over a year.
    lines = ["Nº socio,Fecha"]
    for member in range(120):
        day = dt.date(2023, 1, 2) + dt.timedelta(days=member % 30)
        while day < dt.date(2023, 12, 20) and len(lines) < 40 * (member + 1):
            lines.append(f"{5000 + member}.0,{day:%d/%m/%Y} 1{member % 10}:00")
            day += dt.timedelta(days=9 + (member * 7) % 32)
            if member % 4 == 0 and day > dt.date(2023, 6, 1):
                break  # a quarter of them stop coming
    path = write(tmp_path / "tarjeta.csv", "\n".join(lines) + "\n")
    load(wh, "transactions", path, mapping={"customer_id": "Nº socio"}, no_amount=True)
    s = pipeline.run(wh, as_of=dt.date(2024, 1, 1))
    # Said once, plainly: the file has no amounts (not "only 0 repeat buyers").
    skipped = [w for w in s.warnings if "spend" in w.lower()]
    assert len(skipped) == 1 and skipped[0].startswith("spend models skipped"), s.warnings
    assert "without amounts" in skipped[0]
    assert not any("repeat buyers" in w for w in s.warnings), s.warnings
    assert s.models, "a purchase model is fitted on the visits"
    clv = wh.table("customer_clv").execute()
    assert set(clv.spend_basis) == {"no_amounts"}
    assert len(clv) == 120 and clv.expected_purchases.gt(0).all()
    assert s.revenue_check["has_amounts"] is False and s.revenue == 0.0


# ------------------------------------------------------------------------------------ money
def test_pound_signs_label_the_amounts_gbp_never_eur(wh: Warehouse, tmp_path: Path) -> None:
    text = "customer_id,date,quantity,price\nA1,2024-03-05,2,£3.50\nA2,2024-03-05,1,£10.00\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert r.currency == "GBP" and "£ signs" not in r.conventions["currency"]
    assert r.conventions["currency"] == "GBP (from the signs in 'price')"
    assert set(wh.table("transactions").currency.execute()) == {"GBP"}
    assert data_currency(wh, segmentum.load_settings(env={})) == ("GBP", None)


def test_a_currency_column_labels_each_line(wh: Warehouse, tmp_path: Path) -> None:
    text = "cliente,fecha,importe,Moneda\nA1,05/03/2024,10,€\nA2,05/03/2024,7,MXN\nA3,05/03/2024,2,eur\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    t = wh.table("transactions").order_by("source_row").execute()
    assert t.currency.tolist() == ["EUR", "MXN", "EUR"]
    assert r.currency == "EUR" and r.conventions["currency"] == "EUR, MXN (from column 'Moneda')"
    assert any("holds several currencies (EUR, MXN)" in w for w in r.warnings)
    _, warning = data_currency(wh, segmentum.load_settings(env={}))
    assert warning is not None and "several currencies" in warning
    _, es = data_currency(wh, segmentum.load_settings(env={}), lang="es")
    assert es is not None and "varias monedas (EUR (2 líneas), MXN (1 líneas))" in es


def test_without_any_sign_the_amounts_stay_unlabelled(wh: Warehouse, tmp_path: Path) -> None:
    r = load(wh, "transactions", write(tmp_path / "online_retail_II.csv", RETAIL_II))
    assert r.currency is None and "not stated" in r.conventions["currency"]
    assert data_currency(wh, segmentum.load_settings(env={})) == ("", None)
    gbp = segmentum.load_settings(env={"SEGMENTUM_CURRENCY": "GBP"})
    assert data_currency(wh, gbp) == ("GBP", None)


def test_a_currency_setting_that_contradicts_the_signs_warns(wh: Warehouse, tmp_path: Path) -> None:
    settings = segmentum.load_settings(env={"SEGMENTUM_CURRENCY": "EUR"})
    text = "customer_id,date,amount\nA1,2024-03-05,£3.50\n"
    r = load(wh, "transactions", write(tmp_path / "s.csv", text), settings=settings)
    assert any("in GBP" in w and "setting says EUR" in w for w in r.warnings)


def test_bad_debt_adjustments_are_quarantined_with_their_own_reason(
    wh: Warehouse, tmp_path: Path
) -> None:
    load(wh, "transactions", write(tmp_path / "online_retail_II.csv", RETAIL_II))
    q = quarantine(wh)
    assert q.reason.tolist() == [
        "unit_price is negative (an adjustment such as bad debt, not a sale)"
    ]
    assert json.loads(q.raw[0])["Description"] == "Adjust bad debt"


def test_headline_revenue_is_identified_plus_anonymous_and_counts_net_negative_customers(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = RETAIL_II + (
        # Customer 17000 only returned goods bought before the export started.
        "C489500,22087,PAPER BUNTING WHITE LACE,-2,2009-12-02 10:00:00,2.95,17000.0,France\n"
        # Customer 17001 only got a free gift: nothing returned, nothing paid.
        "489600,22088,FREE GIFT,1,2009-12-02 11:00:00,0,17001.0,France\n"
    )
    load(wh, "transactions", write(tmp_path / "online_retail_II.csv", text))
    lines = wh.table("transactions").amount.sum().execute()
    totals = revenue_totals(wh)
    assert totals["identified"] + totals["anonymous"] == pytest.approx(totals["total"])
    assert totals["total"] == pytest.approx(lines)
    assert totals["anonymous"] == pytest.approx(8 * 1.69)
    assert totals["customers_net_nonpositive"] == 2
    assert totals["customers_only_zero_lines"] == 1  # not described as a return
    assert totals["net_nonpositive_amount"] == pytest.approx(-5.9)


# ------------------------------------------------------------------------------- quarantine
def test_the_quarantine_is_summarised_by_reason_with_a_first_example(
    wh: Warehouse, tmp_path: Path
) -> None:
    a = "customer_id,date,amount\nA1,2024-03-05,x\nA2,2024-03-05,y\nA3,2099-01-01,5\nA4,2024-03-05,5\nA4,2024-03-05,5\nA5,2024-03-06,1\n"
    load(wh, "transactions", write(tmp_path / "enero.csv", a))
    load(
        wh,
        "transactions",
        write(
            tmp_path / "febrero.csv", "customer_id,date,amount\nB1,2024-04-05,z\nB2,2024-04-06,2\n"
        ),
    )
    summary = quarantine_summary(wh)
    by_reason = {r["reason"]: r for r in summary}
    assert by_reason["amount is not a number"]["rows"] == 3
    assert by_reason["amount is not a number"]["files"] == 2
    first = by_reason["amount is not a number"]
    assert (Path(first["file"]).name, first["source_row"], first["value"]) == ("enero.csv", 1, "x")
    assert by_reason["exact duplicate of row N"]["rows"] == 1
    assert summary[0]["reason"] == "amount is not a number"  # most rows first
    only = quarantine_summary(wh, reason="NUMBER", file="febrero")
    assert [(r["reason"], r["rows"]) for r in only] == [("amount is not a number", 1)]


def test_the_quarantine_command_summarises_and_filters(tmp_path: Path) -> None:
    write(
        tmp_path / "s.csv",
        "customer_id,date,amount\nA1,2024-03-05,x\nA2,2099-03-05,1\nA3,2024-03-05,4\n",
    )
    cli = [sys.executable, "-m", "segmentum.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], capture_output=True, text=True, cwd=tmp_path, timeout=300
        )

    assert run("ingest", "transactions", "s.csv").returncode == 0
    out = run("quarantine", "--json")
    assert out.returncode == 0, out.stderr
    assert {r["reason"] for r in json.loads(out.stdout)} == {
        "amount is not a number",
        next(r for r in {x["reason"] for x in json.loads(out.stdout)} if "future" in r),
    }
    only = json.loads(run("quarantine", "--reason", "future", "--json").stdout)
    assert len(only) == 1 and only[0]["value"] == "2099-03-05"
    rows = json.loads(run("quarantine", "--rows", "--file", "s.csv", "--json").stdout)
    assert [r["source_row"] for r in rows] == [1, 2]
    text = run("quarantine").stdout
    assert "amount is not a number" in text and "s.csv row 1" in text


def test_a_socio_column_without_anonymous_exits_2_with_a_hint(tmp_path: Path) -> None:
    write(tmp_path / "s.csv", "socio,fecha,importe\n881,05/03/2024,12.50\n")
    cli = [sys.executable, "-m", "segmentum.cli"]
    out = subprocess.run(
        [*cli, "ingest", "transactions", "s.csv"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'socio' looks like one" in out.stderr and "--anonymous" in out.stderr
    ok = subprocess.run(
        [*cli, "ingest", "transactions", "s.csv", "--anonymous"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr


# ---------------------------------------------------------------------------------- the run
def test_the_run_summary_reports_matching_currency_and_revenue_that_adds_up(
    wh: Warehouse, tmp_path: Path
) -> None:
    load(wh, "customers", write(tmp_path / "customers.csv", CUSTOMERS))
    load(wh, "transactions", write(tmp_path / "online_retail_II.csv", RETAIL_II))
    s = pipeline.run(wh, as_of=dt.date(2009, 12, 10))
    lines = wh.table("transactions")
    lines = lines.filter(lines.timestamp < dt.datetime(2009, 12, 10)).amount.sum().execute()
    assert s.revenue + s.anonymous_revenue == pytest.approx(lines)
    assert s.revenue_check["total"] == pytest.approx(lines)
    assert (s.id_match["matched"], s.id_match["customers_without_purchase"]) == (2, 1)
    assert s.currency == ""


def test_reasons_with_as_many_rows_are_listed_in_one_order_on_every_engine(
    wh: Warehouse, tmp_path: Path
) -> None:
    """A walk saw the same file's reasons in another order on Spark than on DuckDB (equal
    counts came back in the engine's order): most rows first, ties by the reason."""
    text = (
        "customer_id,date,amount\n"
        "A1,2099-01-01,5\n"  # in the future
        "A2,1899-12-31,5\n"  # before earliest_date
        "A3,2024-03-06,7\n"
        "A4,2024-03-06,\n"  # no amount
    )
    r = load(wh, "transactions", write(tmp_path / "s.csv", text))
    assert r.quarantined >= 2
    counts = list(r.reasons.items())
    assert counts == sorted(counts, key=lambda kv: (-kv[1], kv[0])), counts
