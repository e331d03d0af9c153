"""Returns and cancellations: linked to the purchase they undo, and netted out of purchases.

Data shaped like the UCI Online Retail export (``C``-prefixed cancellations with negative
quantities, the same customer and StockCode, a later date), loaded through ingest.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum import demo, pipeline
from segmentum.campaigns.fpgrowth import basket_items
from segmentum.config import load_settings
from segmentum.features import customer_features, purchase_days, rollup
from segmentum.features.customer import window_lines
from segmentum.ingest import returns
from segmentum.warehouse import Warehouse

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
RETAIL = HEADER + (
    "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26,2.55,17850.0,United Kingdom\n"
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26,3.39,17850.0,United Kingdom\n"
    "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28,1.85,17850.0,United Kingdom\n"
    "536390,85123A,WHITE HANGING HEART,6,2010-12-02 10:00,2.95,17850.0,United Kingdom\n"
    # Cancels the first line of 536365 (same customer, StockCode, quantity and price).
    "C536379,85123A,WHITE HANGING HEART,-6,2010-12-03 09:41,2.55,17850.0,United Kingdom\n"
    "536400,22633,HAND WARMER UNION JACK,12,2010-12-05 10:00,1.85,13047.0,United Kingdom\n"
    # Four of the twelve come back: a partial return.
    "C536401,22633,HAND WARMER UNION JACK,-4,2010-12-06 10:00,1.85,13047.0,United Kingdom\n"
    # Never bought here (before the data starts): cannot be linked.
    "C536402,22960,JAM MAKING SET,-1,2010-12-06 11:00,4.25,13047.0,United Kingdom\n"
)


def load(wh: Warehouse, path: Path) -> segmentum.IngestReport:
    [report] = segmentum.ingest("transactions", path, warehouse=wh)
    assert report.balanced and report.quarantined == 0, report.reasons
    return report


def link_rows(wh: Warehouse) -> list[tuple[str, int, str, int, str]]:
    df = wh.table("return_links").execute()
    return sorted(
        (r.invoice_id, int(r.line), r.original_invoice_id, int(r.original_line), r.match)
        for r in df.itertuples()
    )


def day_rows(t: object) -> list[tuple[str, dt.date, float, int]]:
    df: pd.DataFrame = t.execute()  # type: ignore[attr-defined]
    return sorted(
        (r.customer_id, pd.Timestamp(r.day).date(), round(float(r.value), 6), int(r.lines))
        for r in df.itertuples()
    )


def test_online_retail_cancellations_link_to_the_line_they_cancel(
    backend: Warehouse, tmp_path: Path
) -> None:
    wh = backend
    report = load(wh, write(tmp_path / "retail.csv", RETAIL))
    assert (report.return_lines, report.returns_linked) == (3, 2)
    assert link_rows(wh) == [
        ("C536379", 1, "536365", 1, "exact"),  # not 536390: another price, and exact wins
        ("C536401", 1, "536400", 1, "partial"),
    ]
    linked = wh.table("return_links").execute().set_index("invoice_id")
    assert not linked.loc["C536379", "invoice_cancelled"]  # 536365 keeps its lantern
    assert linked.loc["C536401", "quantity"] == -4


def test_an_order_cancelled_in_full_is_not_a_purchase(wh: Warehouse, tmp_path: Path) -> None:
    text = HEADER + (
        "100,A1,MUG,2,2024-01-10 10:00,5.00,7,ES\n"
        "200,A1,MUG,3,2024-02-10 10:00,5.00,7,ES\n"
        "200,B2,PLATE,1,2024-02-10 10:00,9.00,7,ES\n"
        "C201,A1,MUG,-3,2024-02-11 09:00,5.00,7,ES\n"
        "C202,B2,PLATE,-1,2024-02-11 09:00,9.00,7,ES\n"
    )
    load(wh, write(tmp_path / "t.csv", text))
    assert link_rows(wh) == [("C201", 1, "200", 1, "exact"), ("C202", 1, "200", 2, "exact")]
    f = customer_features(wh.table("transactions"), dt.date(2024, 3, 1), weeks=False).execute()
    row = f.set_index("customer_id").loc["7"]
    # One real order of 10: the February order and its day are gone.
    assert (row.frequency, row.monetary, row.avg_order_value) == (1, 10.0, 10.0)
    assert (row.x, pd.Timestamp(row.last_purchase).date()) == (0.0, dt.date(2024, 1, 10))
    assert row.return_rate == pytest.approx(24 / 34)


def test_a_huge_order_cancelled_the_same_day_leaves_the_real_small_spend(
    wh: Warehouse, tmp_path: Path
) -> None:
    files = demo.generate(tmp_path / "demo", customers=400, seed=5)
    load(wh, files["transactions"])
    # Customer X999: one small real order, and a 50,000 order cancelled twenty minutes later.
    extra = HEADER + (
        "9001,P0001,MUG,1,2025-06-01 12:00,15.00,X999,ES\n"
        "9002,P0002,PALLET,500,2025-06-20 10:00,100.00,X999,ES\n"
        "C9002,P0002,PALLET,-500,2025-06-20 10:20,100.00,X999,ES\n"
    )
    load(wh, write(tmp_path / "extra.csv", extra))
    settings = load_settings(env={}).with_overrides(discover_segments=False)
    summary = pipeline.run(wh, settings=settings)
    assert summary.returns["linked"] > 0.9 * summary.returns["return_lines"]
    assert summary.returns["cancelled_orders"] >= 1
    f = wh.table("customer_features").execute().set_index("customer_id")
    big = f.loc["X999"]
    assert (big.frequency, big.monetary, big.x) == (1, 15.0, 0.0)
    assert big.avg_order_value == 15.0
    assert pd.Timestamp(big.last_purchase).date() == dt.date(2025, 6, 1)
    classes = wh.table("customer_classes").execute().set_index("customer_id")
    assert classes.loc["X999", "value_tier"] != "high"
    clv = wh.table("customer_clv").execute().set_index("customer_id").clv
    assert clv["X999"] < clv.quantile(0.99)
    # Gross of the cancellation the 50,015 ordered would have been the top spend by far.
    assert f.monetary.max() < 50_000


def test_a_return_in_a_later_file_nets_against_the_earlier_files_day(
    backend: Warehouse, tmp_path: Path
) -> None:
    wh = backend
    jan = HEADER + (
        "1,A1,MUG,2,2024-01-10 10:00,5.00,7,ES\n"
        "2,A1,MUG,1,2024-01-20 10:00,5.00,7,ES\n"
        "3,B2,PLATE,1,2024-01-20 12:00,9.00,8,ES\n"
    )
    feb = HEADER + (
        "C4,A1,MUG,-1,2024-02-02 10:00,5.00,7,ES\n"  # cancels the 20th's mug (most recent)
        "5,B2,PLATE,1,2024-02-03 12:00,9.00,8,ES\n"
    )
    load(wh, write(tmp_path / "jan.csv", jan))
    purchase_days(wh)  # the first reader builds the rollup; ingest keeps it from then on
    report = load(wh, write(tmp_path / "feb.csv", feb))
    assert (report.return_lines, report.returns_linked) == (1, 1)
    assert link_rows(wh) == [("C4", 1, "2", 1, "exact")]
    tx = wh.table("transactions")
    # Kept by ingest, not rebuilt: the stored fingerprint matches the lines.
    assert rollup._stored_fingerprint(wh) == wh.fingerprint(tx, rollup.SOURCE_COLUMNS)
    kept = day_rows(wh.table(rollup.PURCHASE_DAYS))
    assert kept == day_rows(rollup.day_rollup(tx))
    assert ("7", dt.date(2024, 1, 20), 0.0, 1) in kept
    assert [d[1] for d in day_rows(purchase_days(wh)) if d[0] == "7"] == [dt.date(2024, 1, 10)]
    fresh = day_rows(rollup.rebuild(wh))
    assert fresh == kept


def test_a_purchase_that_arrives_after_its_return_is_linked_then(
    wh: Warehouse, tmp_path: Path
) -> None:
    later = HEADER + "C9,A1,MUG,-2,2024-03-01 10:00,5.00,7,ES\n"
    earlier = HEADER + "8,A1,MUG,2,2024-02-01 10:00,5.00,7,ES\n9,B2,PLATE,1,2024-02-01,9,7,ES\n"
    load(wh, write(tmp_path / "march.csv", later))
    purchase_days(wh)
    assert link_rows(wh) == []
    load(wh, write(tmp_path / "feb.csv", earlier))
    assert link_rows(wh) == [("C9", 1, "8", 1, "exact")]
    tx = wh.table("transactions")
    assert day_rows(wh.table(rollup.PURCHASE_DAYS)) == day_rows(rollup.day_rollup(tx))
    assert day_rows(purchase_days(wh)) == [("7", dt.date(2024, 2, 1), 9.0, 2)]
    # Rebuilding the links from scratch gives the same table ingest kept.
    kept = link_rows(wh)
    returns.rebuild(wh)
    assert link_rows(wh) == kept


def test_rollup_kept_by_ingest_equals_the_rollup_rebuilt(wh: Warehouse, tmp_path: Path) -> None:
    parts = RETAIL.splitlines()[1:]
    purchase_days_built = False
    for i in range(0, len(parts), 3):
        load(wh, write(tmp_path / f"part{i}.csv", HEADER + "\n".join(parts[i : i + 3]) + "\n"))
        if not purchase_days_built:
            purchase_days(wh)
            purchase_days_built = True
    kept = day_rows(wh.table(rollup.PURCHASE_DAYS))
    links_kept = link_rows(wh)
    assert kept == day_rows(rollup.rebuild(wh))
    assert links_kept == link_rows(wh) and len(links_kept) == 2
    one = segmentum.connect(f"duckdb:///{tmp_path / 'one.duckdb'}")
    load(one, write(tmp_path / "all.csv", RETAIL))
    assert day_rows(purchase_days(one)) == day_rows(purchase_days(wh))
    one.close()


def test_baskets_leave_out_cancelled_items(backend: Warehouse, tmp_path: Path) -> None:
    wh = backend
    text = HEADER + (
        "10,A1,MUG,1,2024-01-10 10:00,5.00,7,ES\n"
        "10,B2,PLATE,2,2024-01-10 10:00,9.00,7,ES\n"
        "10,C3,BOWL,2,2024-01-10 10:00,4.00,7,ES\n"
        "C11,B2,PLATE,-2,2024-01-10 10:05,9.00,7,ES\n"  # the plates: cancelled in full
        "C12,C3,BOWL,-1,2024-01-12 10:00,4.00,7,ES\n"  # one bowl of two: still bought
        "20,A1,MUG,1,2024-01-15 10:00,5.00,8,ES\n"
        "C21,A1,MUG,-1,2024-01-15 10:01,5.00,8,ES\n"  # customer 8's only order: cancelled
    )
    load(wh, write(tmp_path / "t.csv", text))
    lines = window_lines(wh.table("transactions"), dt.date(2024, 2, 1))
    items = basket_items(lines, returns.links(wh), "product_id").execute()
    assert sorted(zip(items.invoice_id, items.item, strict=True)) == [("10", "A1"), ("10", "C3")]


def test_a_type_column_saying_devolucion_makes_a_return(wh: Warehouse, tmp_path: Path) -> None:
    text = (
        "factura;tipo_documento;cliente;fecha;producto;cantidad;importe\n"
        "F1;Factura;C7;2024-01-10 10:00;A1;2;10,00\n"
        "R1;Devolución;C7;2024-01-12 10:00;A1;2;10,00\n"
        "R2;Abono;C8;2024-01-12 10:00;A1;1;5,00\n"
    )
    report = load(wh, write(tmp_path / "ventas.csv", text))
    assert report.mapping["line_type"] == "tipo_documento"
    tx = wh.table("transactions").execute().set_index("invoice_id")
    assert tx.loc["R1", "quantity"] == -2 and tx.loc["R1", "amount"] == -10
    assert tx.loc["F1", "quantity"] == 2
    assert (report.return_lines, report.returns_linked) == (2, 1)
    assert link_rows(wh) == [("R1", 1, "F1", 1, "exact")]
    assert any("could be linked" in w for w in report.warnings) is False


def test_a_return_naming_its_invoice_links_to_it_first(wh: Warehouse, tmp_path: Path) -> None:
    text = (
        "invoice,customer_id,date,product_id,quantity,amount,original_invoice\n"
        "F1,A,2024-01-10 10:00,P1,1,10,\n"
        "F2,A,2024-01-11 10:00,P1,1,10,\n"
        "R1,A,2024-01-12 10:00,P1,-1,-10,F1\n"  # says F1; without that it would take F2
        "R2,A,2024-01-12 10:00,,-1,-10,F2\n"  # no product: linked only by its invoice
    )
    load(wh, write(tmp_path / "t.csv", text))
    assert link_rows(wh) == [("R1", 1, "F1", 1, "invoice"), ("R2", 1, "F2", 1, "invoice")]


def test_c_prefixed_invoices_with_positive_quantities_are_flagged(
    wh: Warehouse, tmp_path: Path
) -> None:
    text = HEADER + "C100,A1,MUG,1,2024-01-10 10:00,5.00,7,ES\n"
    report = load(wh, write(tmp_path / "t.csv", text))
    assert any("numbered like cancellations" in w for w in report.warnings)
