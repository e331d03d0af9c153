"""The purchase-day rollup: the same numbers as the lines, kept current by ingest, never stale.

One test body on DuckDB, Spark and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum.features import btyd_summary, customer_features, purchase_days, rollup
from segmentum.warehouse import Warehouse

AS_OF = dt.date(2024, 3, 1)

JAN = (
    "invoice,customer_id,date,quantity,amount\n"
    "F1,A,2024-01-05 10:00,1,10\n"
    "F1,A,2024-01-05 10:00,2,5\n"  # same invoice, same day: one purchase day worth 15
    "F2,A,2024-01-05 18:00,1,20\n"  # another invoice the same day: still one day, worth 35
    "F3,A,2024-01-20 09:00,1,40\n"
    "R1,A,2024-01-22 09:00,-1,-10\n"  # a return is not a purchase day
    "F4,B,2024-01-07 12:00,1,100\n"
    "F5,,2024-01-08 12:00,1,50\n"  # anonymous: no customer, no day
)
FEB = (
    "invoice,customer_id,date,quantity,amount\n"
    "F6,A,2024-01-20 15:00,1,60\n"  # a day the rollup already holds: merged, 40 + 60
    "F7,B,2024-02-10 11:00,1,30\n"
    "F8,C,2024-02-11 11:00,1,5\n"
)


def load(wh: Warehouse, path: Path) -> None:
    [report] = segmentum.ingest("transactions", path, warehouse=wh)
    assert report.balanced and report.quarantined == 0


def rows(t: object) -> list[tuple[str, dt.date, float, int]]:
    df: pd.DataFrame = t.execute()  # type: ignore[attr-defined]
    return sorted(
        (r.customer_id, pd.Timestamp(r.day).date(), round(float(r.value), 9), int(r.lines))
        for r in df.itertuples()
    )


def summary(t: object) -> pd.DataFrame:
    df: pd.DataFrame = btyd_summary(t, AS_OF).execute()  # type: ignore[arg-type]
    return df.set_index("customer_id").sort_index()[["x", "t_x", "T", "monetary_value"]]


def test_rollup_holds_each_customers_purchase_days(backend: Warehouse, tmp_path: Path) -> None:
    wh = backend
    load(wh, write(tmp_path / "jan.csv", JAN))
    days = purchase_days(wh)
    assert rows(days) == [
        ("A", dt.date(2024, 1, 5), 35.0, 3),
        ("A", dt.date(2024, 1, 20), 40.0, 1),
        ("B", dt.date(2024, 1, 7), 100.0, 1),
    ]
    # Read from the rollup or from the lines, the summary is the same.
    pd.testing.assert_frame_equal(summary(days), summary(wh.table("transactions")))


def test_ingest_keeps_the_rollup_current_without_a_rebuild(
    backend: Warehouse, tmp_path: Path
) -> None:
    wh = backend
    load(wh, write(tmp_path / "jan.csv", JAN))
    purchase_days(wh)  # the first reader builds it
    load(wh, write(tmp_path / "feb.csv", FEB))
    # Ingest merged the new days and advanced the stored fingerprint by the new lines': it
    # matches the lines as they are now, so readers use the rollup as it stands.
    tx = wh.table("transactions")
    assert rollup._stored_fingerprint(wh) == wh.fingerprint(tx, rollup.SOURCE_COLUMNS)
    absorbed = rows(wh.table(rollup.PURCHASE_DAYS))
    assert absorbed == rows(rollup.day_rollup(tx))
    assert ("A", dt.date(2024, 1, 20), 100.0, 2) in absorbed
    assert ("C", dt.date(2024, 2, 11), 5.0, 1) in absorbed
    pd.testing.assert_frame_equal(summary(purchase_days(wh)), summary(tx))
    # The features read through the rollup equal the features from the lines alone.
    via_rollup = customer_features(tx, AS_OF, days=purchase_days(wh)).execute()
    from_lines = customer_features(tx, AS_OF).execute()
    pd.testing.assert_frame_equal(
        via_rollup.set_index("customer_id").sort_index(),
        from_lines.set_index("customer_id").sort_index(),
    )


@pytest.mark.parametrize("change", ["insert", "update", "delete"])
def test_lines_changed_outside_ingest_are_noticed(
    backend: Warehouse, tmp_path: Path, change: str
) -> None:
    wh = backend
    load(wh, write(tmp_path / "jan.csv", JAN))
    stale = rows(purchase_days(wh))
    tx = wh.table("transactions")
    if change == "insert":  # a line appended by hand, without ingest
        new = tx.filter(tx.invoice_id == "F4").mutate(timestamp=tx.timestamp + dt.timedelta(days=3))
        wh.write("transactions", tx.union(new))
    elif change == "update":  # a correction: B's purchase was really customer A's
        fixed = tx.mutate(customer_id=tx.customer_id.substitute({"B": "A"}))
        wh.write("transactions", wh.materialize(fixed))
    else:
        wh.write("transactions", wh.materialize(tx.filter(tx.invoice_id != "F3")))
    fresh = rows(purchase_days(wh))
    assert fresh != stale
    assert fresh == rows(rollup.day_rollup(wh.table("transactions")))


def test_fingerprint_is_additive_and_order_free(backend: Warehouse, tmp_path: Path) -> None:
    wh = backend
    load(wh, write(tmp_path / "jan.csv", JAN))
    tx = wh.table("transactions")
    cols = rollup.SOURCE_COLUMNS
    whole = wh.fingerprint(tx, cols)
    a = wh.fingerprint(tx.filter(tx.invoice_id < "F3"), cols)
    b = wh.fingerprint(tx.filter(tx.invoice_id >= "F3"), cols)
    assert whole == (a[0] + b[0], a[1] + b[1])
    assert whole[0] == 7
    assert wh.fingerprint(tx.order_by(ibis.desc(tx.timestamp)), cols) == whole
    # One changed amount changes it.
    changed = tx.mutate(amount=(tx.invoice_id == "F4").ifelse(tx.amount + 1, tx.amount))
    assert wh.fingerprint(changed, cols) != whole
    assert wh.fingerprint(tx.filter(tx.invoice_id == "none"), cols) == (0, 0)


def test_several_fingerprints_of_one_table_in_one_scan_equal_each_taken_alone(
    backend: Warehouse, tmp_path: Path
) -> None:
    """A run's plan fingerprints the lines dated before its day (its own columns) and the
    return links check every line (theirs): one scan gives both, the same numbers as two, and
    inside ``reading_only`` both are remembered for the steps that ask again."""
    wh = backend
    load(wh, write(tmp_path / "jan.csv", JAN))
    tx = wh.table("transactions")
    cols = rollup.SOURCE_COLUMNS
    early = tx.timestamp < dt.datetime(2024, 1, 10)
    # NULL for the anonymous line: a filter drops that row, and so does the part.
    mine = tx.customer_id == "A"
    parts = [(early, ["invoice_id", "amount"]), (None, cols), (mine, cols)]
    alone = [wh.fingerprint(tx if c is None else tx.filter(c), cs) for c, cs in parts]
    assert 0 < alone[0][0] < alone[1][0] and alone[2][0] == 5
    assert wh.fingerprints(tx, parts) == alone
    with wh.reading_only(["transactions"]):
        assert wh.fingerprints(tx, parts[:2]) == alone[:2]
        assert len(wh._fingerprints) == 2
        assert wh.fingerprint(wh.table("transactions"), cols) == alone[1]  # remembered
        assert wh.fingerprints(tx, parts) == alone and len(wh._fingerprints) == 3


def test_fingerprints_are_taken_once_while_the_lines_are_only_read(
    backend: Warehouse, tmp_path: Path
) -> None:
    """A run reads the lines many times (the return links and the rollup check them each
    time): inside ``reading_only`` a fingerprint is remembered, and writing the lines there is
    refused, so a remembered fingerprint can never be stale."""
    from segmentum.errors import WarehouseError

    wh = backend
    load(wh, write(tmp_path / "jan.csv", JAN))
    tx = wh.table("transactions")
    cols = rollup.SOURCE_COLUMNS
    whole = wh.fingerprint(tx, cols)
    with wh.reading_only(["transactions"]):
        assert wh.fingerprint(tx, cols) == whole
        assert len(wh._fingerprints) == 1
        assert wh.fingerprint(wh.table("transactions"), cols) == whole  # the same query
        assert len(wh._fingerprints) == 1
        part = wh.fingerprint(tx.filter(tx.invoice_id < "F3"), cols)
        assert len(wh._fingerprints) == 2 and part[0] < whole[0]
        staged = wh.materialize(tx.select(*cols))  # another table: not remembered
        assert wh.fingerprint(staged, cols) == whole and len(wh._fingerprints) == 2
        with pytest.raises(WarehouseError, match="only read"):
            wh.write("transactions", tx.filter(tx.invoice_id != "F3"))
        with pytest.raises(WarehouseError, match="only read"):
            wh.insert("transactions", tx.limit(1))
        with pytest.raises(WarehouseError, match="only read"):
            wh.delete_keys("transactions", tx.select("customer_id").limit(1), ["customer_id"])
        assert rows(purchase_days(wh)) == rows(rollup.day_rollup(tx))
    assert wh._fingerprints == {}
    # Outside the block every call scans again and sees a change.
    wh.write("transactions", wh.materialize(tx.filter(tx.invoice_id != "F3")))
    assert wh.fingerprint(wh.table("transactions"), cols)[0] < whole[0]
