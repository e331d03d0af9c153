"""Net purchases everywhere: the history backfill, the holdout check and the category mix
count a cancelled order as no purchase, as the daily run's features do.

Data shaped like real exports: customer ids written as floats (``17850.0``), ``C``-prefixed
cancellations with negative quantities (UCI Online Retail), timestamps with a UTC offset.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum.config import load_settings
from segmentum.features import customer_features, purchase_days
from segmentum.features.customer import category_mix, top_categories
from segmentum.history.snapshots import backfill, history_summary
from segmentum.ingest import returns
from segmentum.models.validate import validate
from segmentum.warehouse import Warehouse

HEADER = (
    "InvoiceNo,StockCode,Description,Category,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)
EXPORT = HEADER + (
    # 17850: a mug in January, a sofa in February cancelled the next morning, a mug in March
    # (bought at 00:30 local time, still the 1st of March: the day stays the customer's).
    "100,A1,MUG,Kitchen,2,2024-01-10T10:00:00+01:00,5.00,17850.0,ES\n"
    "200,B2,SOFA,Furniture,1,2024-02-10T19:00:00+01:00,900.00,17850.0,ES\n"
    "C201,B2,SOFA,Furniture,-1,2024-02-11T09:00:00+01:00,900.00,17850.0,ES\n"
    "300,A1,MUG,Kitchen,1,2024-03-01T00:30:00+01:00,5.00,17850.0,ES\n"
    # 13047: their only order, two sofas, cancelled twenty minutes later.
    "400,B2,SOFA,Furniture,2,2024-01-20T12:00:00+01:00,900.00,13047.0,ES\n"
    "C401,B2,SOFA,Furniture,-2,2024-01-20T12:20:00+01:00,900.00,13047.0,ES\n"
    # 12583: three lamps and a mug; two lamps come back in February; mugs in March.
    "500,L1,LAMP,Lighting,3,2024-01-15T18:00:00+01:00,40.00,12583.0,ES\n"
    "500,A1,MUG,Kitchen,1,2024-01-15T18:00:00+01:00,5.00,12583.0,ES\n"
    "C501,L1,LAMP,Lighting,-2,2024-02-02T10:00:00+01:00,40.00,12583.0,ES\n"
    "510,A1,MUG,Kitchen,2,2024-03-12T10:00:00+01:00,5.00,12583.0,ES\n"
    # 15100: a sofa in January, then a sofa in March returned in April (after the last
    # snapshot: netting restates the past, as in a daily run).
    "600,B2,SOFA,Furniture,1,2024-01-05T11:00:00+01:00,900.00,15100.0,ES\n"
    "700,B2,SOFA,Furniture,1,2024-03-20T11:00:00+01:00,950.00,15100.0,ES\n"
    "C701,B2,SOFA,Furniture,-1,2024-04-15T11:00:00+01:00,950.00,15100.0,ES\n"
)
DATES = [dt.date(2024, 2, 1), dt.date(2024, 3, 1), dt.date(2024, 4, 1)]
COMPARED = [
    "frequency",
    "monetary",
    "recency_days",
    "tenure_days",
    "x",
    "avg_order_value",
    "first_purchase",
    "last_purchase",
]


@pytest.fixture(scope="module")
def export_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("net")
    path = root / "w.duckdb"
    with segmentum.connect(f"duckdb:///{path}") as wh:
        [report] = segmentum.ingest(
            "transactions", write(root / "export.csv", EXPORT), warehouse=wh
        )
    assert report.balanced and report.quarantined == 0, report.reasons
    assert (report.return_lines, report.returns_linked) == (4, 4)
    return path


@pytest.fixture
def export(export_db: Path, copy_of: Any) -> Warehouse:
    return copy_of(export_db)


def test_history_summary_counts_net_purchases_as_a_daily_run_does(export: Warehouse) -> None:
    wh = export
    tx = wh.table("transactions")
    days = purchase_days(wh)
    hist = history_summary(tx, DATES, links=returns.links(wh), days=days).execute()
    hist["as_of"] = pd.to_datetime(hist.as_of).dt.date
    for d in DATES:
        daily = customer_features(tx, d, links=returns.links(wh)).execute()
        back = hist[hist.as_of == d]
        assert sorted(back.customer_id) == sorted(daily.customer_id), d
        a = back.set_index("customer_id").sort_index()[COMPARED]
        b = daily.set_index("customer_id").sort_index()[COMPARED]
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_index_type=False)
    h = hist.set_index(["customer_id", "as_of"])
    # The customer whose only order was cancelled is never a customer.
    assert "13047" not in set(hist.customer_id)
    # The cancelled sofa is neither an order nor a purchase day; the mugs are.
    assert h.loc[("17850", dt.date(2024, 3, 1)), ["frequency", "monetary", "x"]].tolist() == [
        1,
        10.0,
        0.0,
    ]
    assert h.loc[("17850", dt.date(2024, 4, 1)), ["frequency", "monetary", "x"]].tolist() == [
        2,
        15.0,
        1.0,
    ]
    # The March sofa returned in April is no purchase as of April either.
    assert h.loc[("15100", dt.date(2024, 4, 1)), "frequency"] == 1
    last = h.loc[("15100", dt.date(2024, 4, 1)), "last_purchase"]
    assert pd.Timestamp(last).date() == dt.date(2024, 1, 5)


def test_backfilled_snapshots_leave_out_customers_whose_orders_were_cancelled(
    export: Warehouse,
) -> None:
    settings = load_settings(env={}).with_overrides(discover_segments=False)
    r = backfill(export, periods=None, settings=settings, segments=False)
    assert r.dates == DATES
    c = export.table("customer_classes").execute()
    c["as_of"] = pd.to_datetime(c.as_of).dt.date
    per_date = c.groupby("as_of").customer_id.apply(sorted).to_dict()
    assert per_date == {
        dt.date(2024, 2, 1): ["12583", "15100", "17850"],
        dt.date(2024, 3, 1): ["12583", "15100", "17850"],
        dt.date(2024, 4, 1): ["12583", "15100", "17850"],
    }


def test_category_mix_and_top_categories_count_only_what_was_kept(export: Warehouse) -> None:
    wh = export
    tx = wh.table("transactions")
    links = returns.links(wh)
    as_of = dt.date(2024, 4, 1)
    # Kept: Furniture 900 (15100's January sofa; the other sofas were cancelled or came
    # back), Lighting 40 (one lamp of three), Kitchen 10 + 5 + 5 + 10.
    assert top_categories(tx, as_of, 8, links) == ["Furniture", "Lighting", "Kitchen"]
    assert top_categories(tx, as_of, 8) == ["Furniture", "Lighting", "Kitchen"]
    mix = category_mix(tx, as_of, ["Furniture", "Lighting", "Kitchen"], links).execute()
    m = mix.set_index("customer_id").round(6)
    assert "13047" not in m.index
    assert m.loc["17850"].tolist() == [0.0, 0.0, 1.0]  # the sofa was cancelled
    assert m.loc["12583"].tolist() == [0.0, round(40 / 55, 6), round(15 / 55, 6)]
    assert m.loc["15100"].tolist() == [1.0, 0.0, 0.0]


def _with_cancelled_orders(cd: pd.DataFrame, days: list[dt.date]) -> pd.DataFrame:
    """CDNOW lines plus, for the first customers, a big order on each of ``days`` cancelled
    an hour later (``C``-prefixed, negative quantity): none of them is a purchase."""
    rows = []
    customers = sorted(cd.customer_id.unique())[:60]
    for i, cust in enumerate(customers):
        day = days[i % len(days)]
        ts = pd.Timestamp(day) + pd.Timedelta(hours=10)
        inv = f"9{i:05d}"
        rows.append((inv, cust, ts, 5.0, 500.0))
        rows.append(("C" + inv, cust, ts + pd.Timedelta(hours=1), -5.0, -500.0))
    extra = pd.DataFrame(
        rows, columns=["invoice_id", "customer_id", "timestamp", "quantity", "amount"]
    )
    # A customer who already bought that day keeps the day, with or without netting.
    mine = cd.assign(day=cd.timestamp.dt.date)
    busy = set(zip(mine.customer_id, mine.day, strict=True))
    extra = extra[
        [(c, t.date()) not in busy for c, t in zip(extra.customer_id, extra.timestamp, strict=True)]
    ]
    out = pd.concat([cd, extra], ignore_index=True)
    none = pd.Series([None] * len(out), dtype="string")
    return out.assign(line=1, product_id="CD", original_invoice_id=none)


def test_holdout_check_counts_net_purchases_in_calibration_and_holdout(
    wh: Warehouse, cdnow_lines: ir.Table
) -> None:
    cd = cdnow_lines.execute()
    clean = validate(cdnow_lines, dt.date(1997, 9, 30), models=("BG/NBD",))
    # Cancelled orders in the calibration period (1997) and in the holdout (1998).
    days = [dt.date(1997, 5, 14), dt.date(1997, 8, 2), dt.date(1998, 1, 20), dt.date(1998, 4, 7)]
    wh.con.create_table("transactions", _with_cancelled_orders(cd, days))
    assert int(wh.table("transactions").count().execute()) > len(cd) + 100
    for source in (wh.table("transactions"), purchase_days(wh)):
        v = validate(source, dt.date(1997, 9, 30), dt.date(1998, 6, 30), models=("BG/NBD",))
        # The published CDNOW holdout count and the same fit: cancellations change nothing.
        assert v.weekly.actual.iloc[-1] == clean.weekly.actual.iloc[-1] == 1882
        assert v.weekly.actual.tolist() == clean.weekly.actual.tolist()
        assert v.by_frequency.actual.tolist() == clean.by_frequency.actual.tolist()
        assert v.by_frequency.customers.sum() == 2357
        assert v.model.params_ == pytest.approx(clean.model.params_, rel=1e-9)


def test_churn_labels_count_an_order_returned_later_as_no_purchase(export: Warehouse) -> None:
    from segmentum.models.churn import labelled

    df = labelled(export.table("transactions"), dt.date(2024, 3, 1), 30, weeks=False)
    churned = df.set_index("customer_id").churned.to_dict()
    # 15100's March sofa came back in April: not a purchase in the horizon; the mugs are.
    assert churned == {"12583": 0, "15100": 1, "17850": 0}


def test_a_cancelled_order_is_no_campaign_conversion(export: Warehouse) -> None:
    import pyarrow as pa

    from segmentum.campaigns.measure import member_outcomes

    # A campaign sent on 1 February 2024; 14 days to convert. 17850's sofa (10 February) was
    # cancelled the next morning; 12583's two lamps came back (a return, not an order);
    # 15100 bought nothing then.
    sent = dt.datetime(2024, 2, 1, 8, 0)
    members = ["17850", "12583", "15100"]
    export.write(
        "campaign_sends",
        pa.table(
            {
                "campaign_id": ["spring"] * 3,
                "customer_id": members,
                "group": ["treatment", "treatment", "control"],
                "status": ["sent", "sent", "held_out"],
                "rfm_segment": ["Loyal"] * 3,
                "sent_at": pa.array([sent, sent, None], pa.timestamp("us")),
                "scheduled_at": pa.array([sent] * 3, pa.timestamp("us")),
                "logged_at": pa.array([sent] * 3, pa.timestamp("us")),
            }
        ),
    )
    df, source = member_outcomes(export, "spring", 14)
    got = df.set_index("customer_id").loc[members]
    assert source == "derived"
    assert got.converted.tolist() == [0, 0, 0] and got.revenue.tolist() == [0.0, 0.0, 0.0]
    # Within a month, 17850's March mug counts: what was kept, not what was ordered.
    df, _ = member_outcomes(export, "spring", 31)
    got = df.set_index("customer_id").loc[members]
    assert got.converted.tolist() == [1, 0, 0] and got.revenue.tolist() == [5.0, 0.0, 0.0]


def test_rule_counts_of_purchases_leave_out_cancelled_orders(export: Warehouse) -> None:
    from segmentum.segments import rules as R

    text = "count(purchases, last 60 days) >= 1 and exists(category == 'Furniture')"
    calls = {c: text for c in R.calls(R.parse(text))}
    cancelled = returns.cancelled_invoices(returns.links(export))
    agg = R.window_aggregates(
        calls, export.table("transactions"), "transactions", dt.date(2024, 3, 1), calls, cancelled
    )
    got = agg.execute().set_index("customer_id").sort_index()
    count_key, exists_key = (R.call_key(c) for c in calls)
    # In the 60 days before March: 17850's mug counts, their sofa was cancelled (1, not 2);
    # 13047's only order was cancelled (0, not 1); only 15100 kept a piece of furniture.
    assert got[count_key].to_dict() == {"12583": 1.0, "13047": 0.0, "15100": 1.0, "17850": 1.0}
    assert got[exists_key].to_dict() == {"12583": 0.0, "13047": 0.0, "15100": 1.0, "17850": 0.0}


def test_rule_windows_at_many_dates_equal_the_windows_of_each_date(export: Warehouse) -> None:
    """The backfill adds up each customer's days (``_windows_by_day``) instead of joining every
    line with every date whose window holds it; both must give each date's own answer: for
    windows of days, over all time, of hours (the line-level join), and for an invoice whose
    lines fall on two days (distinct invoices do not add up over days: the line-level join)."""
    from segmentum.history.segment_backfill import dates_table
    from segmentum.segments import rules as R

    wh = export
    # Events, one on the last day before a date and one at midnight (the next day's).
    wh.con.raw_sql(
        "create table events as select * from (values "
        "('17850', TIMESTAMP '2024-02-29 23:59:00', 'product_view'), "
        "('17850', TIMESTAMP '2024-03-01 00:00:00', 'product_view'), "
        "('12583', TIMESTAMP '2024-01-31 08:00:00', 'product_view'), "
        "('12583', TIMESTAMP '2024-01-31 09:00:00', 'cart_abandoned'), "
        "('15100', TIMESTAMP '2023-12-01 10:00:00', 'product_view')) t(customer_id, timestamp, "
        "event_type)"
    )
    # A copy of the lines where order 510 has a second line the next day.
    wh.con.raw_sql(
        "create table split_tx as select * from transactions union all "
        "select * replace (timestamp + interval 1 day as timestamp, 99 as line) "
        "from transactions where invoice_id = '510'"
    )
    tx_rules = [
        "count(purchases, last 60 days) >= 1 and sum(spend, category == 'Kitchen', last 30 days) > 1",
        "count(returns, last 45 days) >= 1 and exists(category == 'Furniture')",
        "sum(quantity, last 31 days) > 0 and count(purchases) >= 2",
    ]
    ev_rules = [
        "count(events, event == 'product_view', last 1 days) >= 1",
        "exists(event == 'cart_abandoned', last 30 days) and count(events) >= 1",
    ]
    hour_rule = ["count(events, event == 'product_view', last 6 hours) >= 1"]
    dates = [dt.date(2024, 2, 1), dt.date(2024, 3, 1), dt.date(2024, 3, 13), dt.date(2024, 5, 1)]
    cancelled = returns.cancelled_invoices(returns.links(wh))
    assert R.invoices_within_a_day(wh.table("transactions"))
    assert not R.invoices_within_a_day(wh.table("split_tx"))
    compared = 0
    for tname, table, texts in [
        ("transactions", "transactions", tx_rules),
        ("transactions", "split_tx", tx_rules),
        ("events", "events", ev_rules),
        ("events", "events", ev_rules + hour_rule),
    ]:
        calls = {c: t for t in texts for c in R.calls(R.parse(t))}
        gone = cancelled if tname == "transactions" else None
        keys = list(dict.fromkeys(map(R.call_key, calls)))
        many = R.window_aggregates(
            calls, wh.table(table), tname, dates[-1], calls, gone, dates=dates_table(dates)
        ).execute()
        for d in dates:
            one = R.window_aggregates(calls, wh.table(table), tname, d, calls, gone).execute()
            got = many[many.as_of.astype(str) == d.isoformat()].set_index("customer_id")[keys]
            want = one.set_index("customer_id")[keys]
            got = got.reindex(want.index.union(got.index)).fillna(0.0).sort_index()
            want = want.reindex(got.index).fillna(0.0)
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
            compared += int((want != 0).to_numpy().sum())
    assert compared > 20  # the windows hold lines at these dates: not a comparison of zeros


def test_a_cancelled_order_says_nothing_about_when_a_customer_buys(export: Warehouse) -> None:
    from segmentum.campaigns.timing import _signals

    s = _signals(export, dt.date(2024, 4, 1)).execute()
    # 13047 ordered only once, and cancelled: no purchase signal. 17850's sofa ordered on a
    # Saturday evening was cancelled: only their mugs (Wednesday, Friday) say when they buy.
    assert "13047" not in set(s.customer_id)
    mine = s[s.customer_id == "17850"]
    assert sorted(zip(mine.weekday, mine.hour_band, strict=True)) == [
        ("fri", "night"),
        ("wed", "morning"),
    ]
