"""Features and classes, one test body on DuckDB and on Spark, checked against hand-computed values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pytest

from segmentum.features import btyd_summary, customer_features
from segmentum.schema import TRANSACTIONS
from segmentum.segments.classes import RFM_RULES, check_rfm_rules, classify
from segmentum.warehouse import Warehouse

AS_OF = dt.date(2024, 2, 1)


def line(
    inv: str,
    cust: str | None,
    ts: str,
    qty: float,
    price: float,
    cat: str = "X",
    prod: str = "P1",
    channel: str = "web",
    promo: str | None = None,
) -> dict[str, object]:
    return {
        "invoice_id": inv,
        "line": 1,
        "customer_id": cust,
        "timestamp": pd.Timestamp(ts),
        "product_id": prod,
        "category": cat,
        "quantity": qty,
        "unit_price": price,
        "discount": 0.0,
        "amount": qty * price,
        "promo_code": promo,
        "sales_channel": channel,
        "device": "mobile" if channel == "web" else None,
    }


def transactions(wh: Warehouse, rows: list[dict[str, object]]) -> object:
    df = pd.DataFrame(rows)
    for c in TRANSACTIONS.ibis_schema.names:
        if c not in df:
            df[c] = None
    df["line"] = df.groupby("invoice_id").cumcount() + 1
    df = df[list(TRANSACTIONS.ibis_schema.names)]
    table = pa.Table.from_pandas(
        df, schema=TRANSACTIONS.ibis_schema.to_pyarrow(), preserve_index=False
    )
    wh.write("transactions", table)
    return wh.table("transactions")


ROWS = [
    line("F1", "A", "2024-01-01 10:00", 1, 10, "X", "P1"),
    line("F1", "A", "2024-01-01 10:00", 2, 5, "Y", "P2"),
    line("F2", "A", "2024-01-11 12:00", 1, 30, "X", "P1", promo="P1"),
    line("F3", "A", "2024-01-11 18:00", 1, 10, "Y", "P3", channel="store"),
    line("F4", "A", "2024-01-21 21:00", 1, 40, "X", "P1"),
    line("R1", "A", "2024-01-25 09:00", -1, 10, "X", "P1"),
    line("F5", "B", "2024-01-15 11:00", 1, 100, "Z", "P9", channel="store"),
    line("F6", "A", "2024-02-05 10:00", 1, 999),  # after as_of: must not count
    line("F7", None, "2024-01-10 10:00", 1, 50),  # anonymous: not a customer
]


def test_features_match_hand_computed_values(backend: Warehouse) -> None:
    tx = transactions(backend, ROWS)
    f = customer_features(tx, AS_OF, weeks=False).execute().set_index("customer_id").sort_index()
    assert list(f.index) == ["A", "B"]
    a, b = f.loc["A"], f.loc["B"]
    assert (a.frequency, a.monetary, a.recency_days, a.tenure_days) == (4, 90.0, 10, 30)
    assert a.avg_order_value == pytest.approx(22.5)
    assert a.items_per_order == pytest.approx(1.5)
    assert a.return_rate == pytest.approx(0.1)
    assert a.promo_share == pytest.approx(0.3)
    assert a.distinct_products == 3
    assert (a.interpurchase_mean, a.interpurchase_std) == (10.0, 0.0)
    assert (a.preferred_channel, a.preferred_device, a.top_category) == ("web", "mobile", "X")
    assert a.top_category_share == pytest.approx(0.8)
    assert (a.x, a.t_x, a["T"], a.monetary_value) == (2.0, 20.0, 30.0, 40.0)
    assert (b.frequency, b.recency_days, b.x, b["T"]) == (1, 16, 0.0, 16.0)
    assert pd.isna(b.monetary_value)
    assert a.trend == pytest.approx(1.0)


def test_money_sums_are_the_sums_of_the_prices(backend: Warehouse) -> None:
    """Prices in cents do not add up exactly in binary floating point: 0.10 + 0.20 is
    0.30000000000000004, and 3,000 lines of 0.10 add up to a neighbour of 300 that depends on
    the order of addition (engines add in whatever order their threads finish). Money sums
    are rounded to a millionth: the features, the history summary and a rule's time window
    say 0.3 and 300.0, so ``monetary > 0.3`` leaves the first customer out and
    ``monetary >= 300`` takes the second in, on every run."""
    import math

    from segmentum.history.snapshots import history_summary
    from segmentum.segments import rules as R

    assert 0.1 + 0.2 != 0.3 and sum([0.1] * 3000) != 300.0 and math.fsum([0.1] * 3000) == 300.0
    rows = [
        line("F1", "A", "2024-01-10 10:00", 1, 0.1),
        line("F2", "A", "2024-01-12 10:00", 1, 0.2),
    ]
    rows += [line(f"G{i}", "B", f"2024-01-{1 + i % 28:02d} 10:00", 1, 0.1) for i in range(3000)]
    tx = transactions(backend, rows)
    want = {"A": 0.3, "B": 300.0}
    f = customer_features(tx, AS_OF, weeks=False).execute().set_index("customer_id")
    assert f.monetary.to_dict() == want and f.spend_last_90.to_dict() == want
    h = history_summary(tx, [AS_OF]).execute().set_index("customer_id")
    assert h.monetary.to_dict() == want
    text = "sum(spend, last 60 days) > 0.3"
    calls = {c: text for c in R.calls(R.parse(text))}
    w = R.window_aggregates(calls, tx, "transactions", AS_OF, calls).execute()
    assert w.set_index("customer_id")[R.call_key(next(iter(calls)))].to_dict() == want


def test_btyd_summary_in_weeks(backend: Warehouse) -> None:
    tx = transactions(backend, ROWS)
    s = btyd_summary(tx, AS_OF).execute().set_index("customer_id")
    assert s.loc["A", "t_x"] == pytest.approx(20 / 7)
    assert s.loc["A", "T"] == pytest.approx(30 / 7)


def test_equal_values_get_equal_scores_on_every_backend(backend: Warehouse) -> None:
    rows = [
        line(f"I{i}", f"C{i:02d}", f"2024-01-{1 + i % 3:02d}", 1, 10 * (1 + i // 5))
        for i in range(20)
    ]
    tx = transactions(backend, rows)
    classes = classify(customer_features(tx, AS_OF)).execute().set_index("customer_id").sort_index()
    assert classes.f_score.nunique() == 1  # everyone bought once: one tie, one score
    by_money = classes.groupby("m_score").size()
    assert (
        list(by_money) == [5, 5, 5, 5] and list(by_money.index) == [1, 2, 4, 5]
    ) or by_money.sum() == 20
    for _, group in classes.groupby(classes.index.str.slice(1).astype(int) // 5):
        assert group.m_score.nunique() == 1
    assert classes.rfm_segment.notna().all()


def test_value_tiers_follow_cumulative_revenue(backend: Warehouse) -> None:
    spends = [500, 300, 100, 50, 30, 20]
    rows = [line(f"I{i}", f"C{i}", "2024-01-05", 1, s) for i, s in enumerate(spends)]
    classes = (
        classify(customer_features(transactions(backend, rows), AS_OF))
        .execute()
        .set_index("customer_id")
        .sort_index()
    )
    # Shares before each customer: 0, .5, .8, .9, .95, .98 of 1000.
    assert classes.value_tier.tolist() == ["high", "high", "medium", "medium", "low", "low"]


def test_lifecycle_is_judged_against_each_customers_rhythm(backend: Warehouse) -> None:
    rows = []
    # Weekly buyer silent for 59 days: lapsed. Buyer every ~60 days silent for 30 days: active.
    for k in range(10):
        rows.append(
            line(f"W{k}", "weekly", str(dt.date(2023, 10, 1) + dt.timedelta(days=7 * k)), 1, 10)
        )
    for k in range(4):
        rows.append(
            line(f"S{k}", "slow", str(dt.date(2023, 7, 4) + dt.timedelta(days=60 * k)), 1, 10)
        )
    rows.append(line("N0", "newbie", "2024-01-28", 1, 10))
    c = (
        classify(customer_features(transactions(backend, rows), AS_OF))
        .execute()
        .set_index("customer_id")
    )
    assert c.loc["slow", "lifecycle_stage"] == "active"
    assert c.loc["weekly", "lifecycle_stage"] == "lapsed"
    assert c.loc["newbie", "lifecycle_stage"] == "new"


def test_the_default_rfm_rules_name_every_score_pair() -> None:
    check_rfm_rules(RFM_RULES)
    assert len({r.name for r in RFM_RULES}) == 11


def test_btyd_summary_matches_an_independent_computation_on_cdnow(
    cdnow_lines: ir.Table, cdnow_raw: pd.DataFrame
) -> None:
    raw = cdnow_raw
    got = (
        btyd_summary(cdnow_lines, dt.date(1997, 10, 1))
        .execute()
        .set_index("customer_id")
        .sort_index()
    )

    # Independent: pandas on the calibration period, days / 7, purchases per distinct day.
    cal = raw[raw.timestamp <= "1997-09-30"]
    days = cal.groupby(["cust", "timestamp"]).value.sum().reset_index()
    g = days.groupby("cust")
    first, last, n = g.timestamp.min(), g.timestamp.max(), g.size()
    exp = pd.DataFrame(
        {
            "x": n - 1,
            "t_x": (last - first).dt.days / 7,
            "T": (pd.Timestamp("1997-09-30") - first).dt.days / 7,
        }
    )
    repeat = days[days.timestamp != days.cust.map(first)].groupby("cust").value.mean()
    exp["monetary_value"] = repeat
    assert len(got) == 2357 and got.x.sum() == 2457 and (got.x > 0).sum() == 946
    pd.testing.assert_frame_equal(
        got[["x", "t_x", "T", "monetary_value"]],
        exp.sort_index(),
        check_names=False,
        check_dtype=False,
    )


def test_value_tiers_by_score_thresholds(backend: Warehouse) -> None:
    rows = [line(f"I{i}", f"C{i:02d}", f"2024-01-{1 + i:02d}", 1, 10 * (i + 1)) for i in range(10)]
    f = customer_features(transactions(backend, rows), AS_OF)
    c = classify(f, tier_method="score", score_cuts=(9, 6)).execute()
    total = c.r_score + c.f_score + c.m_score
    expected = ["high" if t >= 9 else "medium" if t >= 6 else "low" for t in total]
    assert c.value_tier.tolist() == expected and set(expected) == {"high", "medium", "low"}


def test_an_edited_rfm_rule_table_is_used_and_checked(tmp_path: Path, wh: Warehouse) -> None:
    from segmentum.errors import ConfigError
    from segmentum.segments.classes import load_rfm_rules

    (tmp_path / "rules.yaml").write_text(
        "- {name: Everyone, name_es: Todos, r: [1, 5], f: [1, 5]}\n"
    )
    rules = load_rfm_rules(tmp_path / "rules.yaml")
    rows = [line(f"I{i}", f"C{i}", "2024-01-05", 1, 10 + i) for i in range(5)]
    c = classify(customer_features(transactions(wh, rows), AS_OF), rules=rules).execute()
    assert set(c.rfm_segment) == {"Everyone"} and set(c.rfm_segment_es) == {"Todos"}
    (tmp_path / "bad.yaml").write_text("- {name: Top, r: [5, 5], f: [5, 5]}\n")
    with pytest.raises(ConfigError, match="R1F1"):
        load_rfm_rules(tmp_path / "bad.yaml")


def test_the_trend_stays_between_minus_one_and_one_when_returns_exceed_purchases(
    backend: Warehouse,
) -> None:
    """A docs walk found trends of -3.14 and an empty one where the two 90-day periods were not
    both 0: returns made a period's net spend negative. Such a period counts as no spend."""
    tx = transactions(
        backend,
        [
            line("G1", "C", "2023-09-01 10:00", 1, 100, "X", "P1"),  # the 90 days before
            line("G2", "C", "2023-12-20 10:00", 1, 40, "X", "P2"),
            line("S1", "C", "2024-01-10 10:00", -2, 75, "X", "P3"),  # returns: net -110 lately
            line("G3", "D", "2023-10-01 10:00", 1, 136, "X", "P1"),
            line("S2", "D", "2024-01-10 10:00", -1, 136, "X", "P1"),  # the 90 days: net -136
            line("G4", "D", "2023-08-20 10:00", 1, 50, "X", "P4"),
        ],
    )
    f = customer_features(tx, AS_OF, weeks=False).execute().set_index("customer_id")
    assert f.loc["C", "spend_last_90"] < 0 < f.loc["C", "spend_prev_90"]
    assert f.loc["C", "trend"] == pytest.approx(-1.0)
    assert f.trend.dropna().between(-1, 1).all(), f[["spend_last_90", "spend_prev_90", "trend"]]
