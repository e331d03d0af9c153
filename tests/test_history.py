"""Segment history: backfill, migration, membership log with real webhooks, cohorts, forecast."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import segmentum
from segmentum import i18n, pipeline
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.features import purchase_days
from segmentum.history.charts import report_html
from segmentum.history.cohorts import cohorts, forecast
from segmentum.history.log import deliver, log_changes
from segmentum.history.migration import migration
from segmentum.history.snapshots import backfill, period_ends, snapshot_dates
from segmentum.segments.store import Segments
from segmentum.warehouse import Warehouse

SETTINGS = load_settings(env={}).with_overrides(discover_segments=False)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory, build_demo: Any) -> Path:
    path, _ = build_demo(
        tmp_path_factory.mktemp("history"),
        customers=1500,
        seed=5,
        settings=SETTINGS,
        after=lambda wh: backfill(wh, periods=12, settings=SETTINGS),
    )
    return path


@pytest.fixture
def hwh(history_db: Path, copy_of: Any) -> Warehouse:
    return copy_of(history_db)


def test_a_backfill_in_batches_of_dates_equals_one_pass(
    hwh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base too big for one pass over every date (millions of customers x 24 dates) is
    backfilled a few dates at a time: the same classes and saved segments at every date."""
    from segmentum.history import snapshots

    def table(name: str) -> pd.DataFrame:
        df: pd.DataFrame = hwh.table(name).drop("run_id").to_pandas()
        key = [c for c in ("as_of", "segment", "customer_id") if c in df.columns]
        return df.sort_values(key, ignore_index=True)

    one = backfill(hwh, periods=6, settings=SETTINGS)
    whole = {n: table(n) for n in ("customer_classes", "segment_members")}
    customers = int(hwh.table("customer_classes").customer_id.nunique().to_pyarrow().as_py())
    monkeypatch.setattr(snapshots, "BATCH_ROWS", 2 * customers)  # two dates a pass
    assert len(snapshots.date_batches(one.dates, customers)) == 3
    staged = hwh.temp_tables()
    batched = backfill(hwh, periods=6, settings=SETTINGS)
    assert hwh.temp_tables() <= staged  # what the batches shared is dropped at the end
    assert batched.dates == one.dates and batched.rows == one.rows
    assert batched.customers_last == one.customers_last
    assert batched.segments == one.segments and batched.skipped == one.skipped
    for name, want in whole.items():
        got = table(name)
        assert len(got) > 1000, name
        pd.testing.assert_frame_equal(got, want, check_like=True)


def test_period_ends() -> None:
    assert period_ends(dt.date(2024, 11, 15), dt.date(2025, 2, 1)) == [
        dt.date(2024, 12, 1),
        dt.date(2025, 1, 1),
        dt.date(2025, 2, 1),
    ]
    weeks = period_ends(dt.date(2025, 1, 1), dt.date(2025, 1, 31), "week")
    assert weeks[0] == dt.date(2025, 1, 6) and all(d.weekday() == 0 for d in weeks)


def test_backfilled_snapshots_equal_what_a_daily_run_would_have_said(hwh: Warehouse) -> None:
    runs = hwh.table("customer_classes").select("as_of", "run_id").distinct().to_pandas()
    back_dates = sorted(pd.to_datetime(runs[runs.run_id.str.startswith("backfill")].as_of).dt.date)
    assert len(back_dates) == 12 and all(d.day == 1 for d in back_dates)
    assert len(snapshot_dates(hwh)) == 13  # and the pipeline run's own date
    d = back_dates[6]
    stored = hwh.table("customer_classes")
    back = stored.filter(stored.as_of == d).to_pandas().set_index("customer_id").sort_index()
    # A daily run at that date, from the full feature computation.
    _, feats = pipeline.compute_features(hwh, d, SETTINGS, "check")
    from segmentum.segments.classes import classify

    daily = classify(feats).to_pandas().set_index("customer_id").sort_index()
    assert len(back) == len(daily) > 500
    for col in ("rfm_segment", "value_tier", "lifecycle_stage", "rfm_code"):
        assert (back[col] == daily[col]).all(), col
    # Point in time: nobody whose first purchase is on or after d is in the snapshot.
    tx = hwh.table("transactions").to_pandas()
    starts = tx[tx.quantity > 0].groupby("customer_id").timestamp.min()
    assert not set(starts[starts >= pd.Timestamp(d)].index) & set(back.index)


def test_a_backfill_keeps_the_snapshot_a_pipeline_run_wrote(hwh: Warehouse) -> None:
    """A backfill through the run's own date keeps the run's classes (CLV, potential and
    value x potential, which lines alone cannot rebuild) instead of emptying them."""
    c = hwh.table("customer_classes")
    runs = c.filter(~c.run_id.startswith("backfill-"))
    latest = runs.as_of.max().to_pyarrow().as_py()
    # A run dated on a month's first day (as the 800-customer demo's is): a backfill's date.
    as_of = dt.date(latest.year, latest.month, 1)
    run = runs.filter(runs.as_of == latest).mutate(as_of=ibis.literal(as_of, "date"))
    hwh.replace_where("customer_classes", run, "as_of", as_of)
    before = run.count().to_pyarrow().as_py()
    r = backfill(hwh, periods=2, end=latest, settings=SETTINGS)
    assert r.kept == [as_of] and as_of not in r.dates and r.dates
    c = hwh.table("customer_classes")
    at = c.filter(c.as_of == as_of)
    assert at.count().to_pyarrow().as_py() == before
    assert at.filter(at.run_id.startswith("backfill-")).count().to_pyarrow().as_py() == 0
    assert at.potential_tier.notnull().sum().to_pyarrow().as_py() > 0
    assert at.value_potential.notnull().sum().to_pyarrow().as_py() > 0


def test_backfill_computes_saved_segments_point_in_time(hwh: Warehouse) -> None:
    segs = Segments(hwh, SETTINGS)
    if hwh.has("segment_definitions"):
        hwh.drop("segment_definitions")
    segs.create("big", "value_tier == 'high' and frequency >= 3")
    segs.create("big_recent", "big and count(purchases, last 30 days) >= 1")
    segs.create("rich_future", "clv > 100")  # CLV is not known at past dates
    r = backfill(hwh, periods=3, settings=SETTINGS)
    assert r.segments == ["big", "big_recent"]
    assert "clv" in r.skipped["rich_future"]
    d = r.dates[0]
    m = hwh.table("segment_members").to_pandas()
    m["as_of"] = pd.to_datetime(m.as_of).dt.date
    got = set(m[(m.segment == "big_recent") & (m.as_of == d)].customer_id)
    c = hwh.table("customer_classes").to_pandas()
    c["as_of"] = pd.to_datetime(c.as_of).dt.date
    tx = hwh.table("transactions").to_pandas()
    tx = tx[tx.customer_id.notna() & (tx.timestamp < pd.Timestamp(d))]
    # Purchases are net: orders that their linked returns cancel in full are not purchases.
    lk = hwh.table("return_links").to_pandas()
    lk = lk[lk.invoice_cancelled]
    gone = set(zip(lk.customer_id, lk.original_invoice_id, strict=True))
    kept = [(c, i) not in gone for c, i in zip(tx.customer_id, tx.invoice_id, strict=True)]
    tx = tx[(tx.quantity > 0) & pd.Series(kept, index=tx.index)]
    freq = tx.groupby("customer_id").invoice_id.nunique()
    recent = tx[tx.timestamp >= pd.Timestamp(d) - pd.Timedelta(days=30)]
    high = set(c[(c.as_of == d) & (c.value_tier == "high")].customer_id)
    expected = high & set(freq[freq >= 3].index) & set(recent.customer_id)
    assert got == expected and len(got) > 10


def test_migration_matrix_adds_up_and_matches_pandas(hwh: Warehouse) -> None:
    dates = snapshot_dates(hwh)
    a, b = dates[5], dates[-1]
    m = migration(hwh, a, b, "rfm_segment")
    c = hwh.table("customer_classes").to_pandas()
    c["as_of"] = pd.to_datetime(c.as_of).dt.date
    x = c[c.as_of == a].set_index("customer_id").rfm_segment
    y = c[c.as_of == b].set_index("customer_id").rfm_segment
    both = pd.concat([x.rename("a"), y.rename("b")], axis=1)
    both = both.fillna({"a": "(not yet a customer)", "b": "(gone)"})
    expected = both.groupby(["a", "b"]).size()
    for (s, t), n in expected.items():
        assert m.counts[s][t] == n
    assert sum(sum(r.values()) for r in m.counts.values()) == len(both)
    for row in m.percentages.values():
        total = sum(row.values())
        assert total == 0 or abs(total - 100) < 1e-9
    # Alerts: exactly the valuable customers who became risky, biggest spenders first.
    good = {"Champions", "Loyal", "Potential Loyalist"}
    bad = {"At Risk", "Can't Lose Them", "Hibernating", "Lost", "About to Sleep"}
    moved = both[both.a.isin(good) & both.b.isin(bad)]
    assert {r["customer_id"] for r in m.alerts} == set(moved.index)
    spends = [r["lifetime_spend"] or 0 for r in m.alerts]
    assert spends == sorted(spends, reverse=True)
    page = report_html(migration=m)
    assert "<svg" in page and "Transition matrix" in page and "<script" not in page
    # The same page in Spanish: words, class names, dates and numbers (no English left).
    es = report_html(migration=m, lang="es", state=lambda x: i18n.label("es", "rfm_segment", x))
    text = " ".join(re.sub(r"<style>.*?</style>|<[^>]+>", " ", es).split())
    assert '<html lang="es">' in es and "Matriz de transición" in text, text[:300]
    assert i18n.date(m.date_from, "es") in text and "Campeones" in text, text[:600]
    for english in ("Transition", "Net change", "Champions", "customers", "from \\ to"):
        assert english not in text, english
    assert not re.search(r"\d,\d{3}\b", text), text  # thousands with a dot in Spanish


def test_membership_log_and_signed_webhooks_lose_nothing(hwh: Warehouse, receiver: Any) -> None:
    segs = Segments(hwh, SETTINGS)
    if hwh.has("segment_definitions"):
        hwh.drop("segment_definitions")
    segs.create("active", "recency_days <= 30")
    d1, d2 = dt.date(2025, 12, 1), snapshot_dates(hwh)[-1]
    pipeline.compute_features(hwh, d1, SETTINGS, "r1")
    segs.compute(d1)
    segs.compute(d2)
    counts = log_changes(hwh, d2, "r2", queue=True)
    m = hwh.table("segment_members").to_pandas()
    m["as_of"] = pd.to_datetime(m.as_of).dt.date
    before = set(m[(m.segment == "active") & (m.as_of == d1)].customer_id)
    after = set(m[(m.segment == "active") & (m.as_of == d2)].customer_id)
    assert counts == {"enter": len(after - before), "exit": len(before - after)}
    assert counts["enter"] > 0 and counts["exit"] > 0
    # The endpoint is down for 2 tries of 2: nothing is lost, everything stays pending.
    receiver.fail = 2
    r = deliver(hwh, receiver.url, "s3cret", retries=1, backoff=0.01, batch_size=100_000)
    assert r.delivered == 0 and r.pending == counts["enter"] + counts["exit"]
    out = hwh.table("webhook_outbox").to_pandas()
    assert (out.attempts == 2).all() and out.last_error.str.contains("503").all()
    # Back up: delivered once, signed, with the same idempotency key as the failed tries.
    r = deliver(hwh, receiver.url, "s3cret", retries=1, backoff=0.01, batch_size=100_000)
    assert r.delivered == counts["enter"] + counts["exit"] and r.pending == 0
    assert len(receiver.seen) == 1 and receiver.seen[0]["ok"]
    sent = receiver.seen[0]["body"]["events"]
    assert {e["customer_id"] for e in sent if e["event"] == "enter"} == after - before
    # Logging the same change again queues nothing new, so nothing is sent twice.
    log_changes(hwh, d2, "r3", queue=True)
    r = deliver(hwh, receiver.url, "s3cret")
    assert r.delivered == 0 and len(receiver.seen) == 1


def test_cohorts_retention_and_revenue(hwh: Warehouse) -> None:
    c = cohorts(hwh)
    df = pd.DataFrame(c.rows)
    assert (df[df.period == 0].retention == 1.0).all()
    sizes = df[df.period == 0].set_index("cohort").customers
    # Net purchase days (the rollup, checked against the lines in test_returns): customers
    # whose every order was cancelled are in no cohort.
    days = purchase_days(hwh).to_pandas()
    days["day"] = pd.to_datetime(days.day)
    first = days.groupby("customer_id").day.min().dt.to_period("M")
    assert sizes.sum() == first.size
    tx = hwh.table("transactions").to_pandas()
    buyers = tx[tx.customer_id.notna() & (tx.quantity > 0)].customer_id.nunique()
    assert first.size < buyers  # the demo cancels some customers' only orders
    cohort0 = first[first == first.min()].index
    months = days[days.customer_id.isin(cohort0)].day.dt.to_period("M")
    mine = days[days.customer_id.isin(cohort0) & (months == first.min() + 1)]
    active1 = mine.customer_id.nunique()
    row = df[(df.cohort == str(first.min().start_time.date())) & (df.period == 1)].iloc[0]
    assert row.active == active1
    by_seg = cohorts(hwh, by="segment", classification="value_tier")
    assert {r["cohort"] for r in by_seg.rows} <= {"high", "medium", "low", "(none)"}


def test_forecast_recovers_a_known_markov_chain(wh: Warehouse) -> None:
    rng = np.random.default_rng(0)
    p = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.05, 0.05, 0.9]])
    names = np.array(["a", "b", "c"])
    n, periods = 20_000, 8
    state = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    rows = []
    for t in range(periods):
        d = dt.date(2025, 1 + t, 1)
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "as_of": d,
                    "rfm_segment": names[state],
                }
            )
        )
        state = np.array([rng.choice(3, p=p[s]) for s in state])
    df = pd.concat(rows)
    wh.write("customer_classes", pa.Table.from_pandas(df, preserve_index=False))
    f = forecast(wh, "rfm_segment", periods=2)
    assert np.allclose(np.array(f.transition)[:, :3], p, atol=0.01)
    assert f.backtest_mape is not None and f.backtest_mape < f.baseline_mape  # type: ignore[operator]
    last = np.array([f.observed[-1][s] for s in "abc"], float)
    assert np.allclose([f.projected[0][s] for s in "abc"], last @ np.array(f.transition)[:, :3])


def test_forecast_steps_a_month_whatever_daily_snapshots_lie_between(wh: Warehouse) -> None:
    """Monthly snapshots from a known chain, and daily runs in the last months (nobody moves
    in a day here): the chain still steps a month, and it recovers the monthly matrix; stepping
    from every snapshot instead mixes days with months (what the forecast did before)."""
    rng = np.random.default_rng(1)
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    names = np.array(["a", "b", "c"])
    n = 20_000
    state = rng.choice(3, n, p=[0.4, 0.4, 0.2])
    ids = [f"c{i}" for i in range(n)]
    frames = []
    for t in range(8):
        month = dt.date(2025, 1 + t, 1)
        days = [month] + ([month + dt.timedelta(days=k) for k in range(1, 6)] if t >= 5 else [])
        for d in days:  # a daily run's snapshot: the same classes as the month's first
            frames.append(
                pd.DataFrame({"customer_id": ids, "as_of": d, "rfm_segment": names[state]})
            )
        state = np.array([rng.choice(3, p=p[s]) for s in state])
    wh.write("customer_classes", pa.Table.from_pandas(pd.concat(frames), preserve_index=False))
    monthly = forecast(wh, "rfm_segment", periods=2)
    assert monthly.freq == "month" and len(monthly.dates) == 8
    assert all(d.day == 1 for d in monthly.dates)
    assert np.allclose(np.array(monthly.transition)[:, :3], p, atol=0.015)
    every = forecast(wh, "rfm_segment", periods=2, freq="all")
    assert len(every.dates) == 8 + 3 * 5
    stay = np.diag(np.array(every.transition)[:, :3])
    assert (stay > np.diag(p) + 0.1).all()  # pulled toward "nobody moves": days, not months
    with pytest.raises(segmentum.errors.InputError, match="unknown forecast step"):
        forecast(wh, "rfm_segment", freq="fortnight")


def test_the_default_migration_is_month_on_month_with_daily_snapshots() -> None:
    from segmentum.history.snapshots import month_before

    d = dt.date
    daily = [d(2025, 11, 1), d(2025, 12, 1)] + [d(2026, 1, k) for k in range(1, 16)]
    assert month_before(daily) == d(2025, 12, 1)  # not Jan 14
    assert month_before([d(2026, 2, 28), d(2026, 3, 30), d(2026, 3, 31)]) == d(2026, 2, 28)
    assert month_before([d(2026, 3, 20), d(2026, 3, 31)]) == d(2026, 3, 20)  # none that old
    assert month_before([d(2025, 10, 1), d(2025, 11, 1), d(2025, 12, 1)]) == d(2025, 11, 1)


def test_old_daily_snapshots_are_thinned_to_one_a_month(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The retention rule on a known calendar: every day of the last history_daily_days, then
    the first snapshot of each month for history_months months; the two newest dates and the
    backfilled ones always stay; --dry-run removes nothing."""
    from segmentum.history.retention import keep_dates

    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(100)]  # to Apr 10
    kept = keep_dates(days, daily_days=7, months=3)
    week = {dt.date(2026, 4, d) for d in range(4, 11)}
    assert kept == {dt.date(2026, 2, 1), dt.date(2026, 3, 1), dt.date(2026, 4, 1)} | week
    assert keep_dates(days, daily_days=7, months=0) == kept | {dt.date(2026, 1, 1)}
    assert keep_dates(days, daily_days=0, months=1) == {
        dt.date(2026, 4, 1),
        dt.date(2026, 4, 9),
        dt.date(2026, 4, 10),
    }
    with pytest.raises(segmentum.errors.InputError, match="cannot be negative"):
        keep_dates(days, daily_days=-1, months=0)
    # In a warehouse: run-written days of two months, and a backfilled month start.
    runs = [dt.date(2026, 2, 20) + dt.timedelta(days=i) for i in range(20)]  # to Mar 11
    rows = [("c1", d, "Loyal", f"run{i}") for i, d in enumerate(runs)]
    rows += [("c1", dt.date(2026, 1, 1), "New", "backfill-1a2b3c4d")]
    for name in ("customer_classes", "customer_features"):
        wh.write(
            name,
            pa.table(
                {
                    "customer_id": [r[0] for r in rows],
                    "as_of": pa.array([r[1] for r in rows], pa.date32()),
                    "rfm_segment": [r[2] for r in rows],
                    "run_id": [r[3] for r in rows],
                }
            ),
        )
    monkeypatch.setenv("SEGMENTUM_HISTORY_DAILY_DAYS", "5")
    assert main(["history", "prune", "--dry-run", "--json", "-w", wh.url]) == 0
    plan = json.loads(capsys.readouterr().out)
    gone = [  # Feb 20 and Mar 1 open their months; Mar 7 to 11 are the last five days
        d.isoformat()
        for d in runs
        if dt.date(2026, 2, 20) < d <= dt.date(2026, 3, 6) and d != dt.date(2026, 3, 1)
    ]
    assert plan["dry_run"] and plan["dates"] == gone and plan["rows"] == 2 * len(gone)
    assert len(snapshot_dates(wh)) == 21  # nothing removed yet
    assert main(["history", "prune", "--dry-run", "--lang", "es", "-w", wh.url]) == 0
    said = capsys.readouterr().out
    assert f"se eliminarían {len(gone)} fechas de fotos" in said and "días" in said, said
    assert main(["history", "prune", "-w", wh.url]) == 0
    assert f"removed {len(gone)} snapshot dates" in capsys.readouterr().out
    left = [d.isoformat() for d in snapshot_dates(wh)]
    assert left == ["2026-01-01", "2026-02-20", "2026-03-01"] + [
        f"2026-03-{d:02d}" for d in range(7, 12)
    ]
    f = wh.table("customer_features").as_of.nunique().to_pyarrow().as_py()
    assert f == len(left)
    assert main(["history", "prune", "-w", wh.url]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert main(["history", "prune", "--lang", "es", "-w", wh.url]) == 0
    assert "nada que eliminar" in capsys.readouterr().out


def test_failed_runs_are_recorded_and_shown(
    wh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(segmentum.errors.SegmentumError):
        pipeline.run(wh, settings=SETTINGS)
    runs = wh.table("pipeline_runs").to_pandas()
    assert runs.status.tolist() == ["failed"]
    steps = json.loads(runs.steps[0])
    assert steps[-1]["status"] == "failed" and "transactions" in steps[-1]["error"]
    assert main(["history", "runs", "-w", wh.url]) == 0
    assert "failed" in capsys.readouterr().out
    # In Spanish: the step, its state and the run's state are Spanish words (the run log
    # stores English), on the command line and on the dashboard's data page.
    assert main(["history", "runs", "--lang", "es", "-w", wh.url]) == 0
    # The table folds long cells over lines: read its words without the folds and borders.
    out = re.sub(r"[\s│┃]+", "", capsys.readouterr().out)
    failed_step = steps[-1]["step"]
    assert i18n.step_name("es", failed_step) != failed_step
    assert i18n.step_name("es", failed_step) in out and "fallido" in out, out
    assert "failed:" not in out and "pipelineruns" not in out and "hint" not in out, out
    from segmentum.service.dashboard_pages import _data, _failed_step

    shown = _failed_step("es", _data(wh, "")["runs"][0]["failed_step"])
    assert shown.startswith(i18n.step_name("es", failed_step) + ": "), shown
    assert _failed_step("en", _data(wh, "")["runs"][0]["failed_step"]).startswith(failed_step)


def test_history_cli(hwh: Warehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = hwh.url
    newest = str(snapshot_dates(hwh)[-1])  # the run's date (a day without one is refused)
    page = tmp_path / "m.html"
    assert (
        main(
            [
                "history",
                "migration",
                "--from",
                "2025-07-01",
                "--to",
                newest,
                "--by",
                "value_tier",
                "--html",
                str(page),
                "-w",
                url,
            ]
        )
        == 0
    )
    assert "net change" in capsys.readouterr().out and page.stat().st_size > 1000
    assert main(["history", "forecast", "--by", "lifecycle_stage", "--json", "-w", url]) == 0
    assert '"backtest_mape"' in capsys.readouterr().out
    assert main(["history", "cohorts", "-w", url]) == 0
    assert "retention by cohort" in capsys.readouterr().out
    # The same in Spanish: words, class names, numbers and dates (1 jul 2025, 12,5 %).
    es = ["--lang", "es", "-w", url]
    assert main(["history", "migration", "--from", "2025-07-01", "--to", newest, *es]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "cambio neto" in out and "1 jul 2025" in out and "Campeones" in out, out
    assert "net change" not in out and "Champions" not in out, out
    # Eleven RFM segments do not fit 80 columns by name: the states are numbered, each name
    # whole on its row (it was cut to "Ca…" in every column).
    assert "…" not in out and "Las columnas van numeradas como las filas" in out, out
    rows = [i18n.label("es", "rfm_segment", x) for x in ("Champions", "At Risk", "Hibernating")]
    assert all(re.search(rf"\b\d+ {re.escape(r)}\b", out) for r in rows), out
    a, b = (d.isoformat() for d in snapshot_dates(hwh)[-2:])  # the run's date holds CLV
    migrate = ["history", "migration", "--from", a, "--to", b, "--by", "value_potential"]
    assert main([*migrate, *es]) == 0
    out = " ".join(capsys.readouterr().out.split())
    english = [m for k, m in i18n.LABELS if k == "value_potential" and f" {m} " in out]
    assert "Valor x potencial" in out and not english, out
    fc = tmp_path / "f.html"
    assert main(["history", "forecast", "--by", "lifecycle_stage", "--html", str(fc), *es]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"escrito {fc}" in out and "Continua: observado" in fc.read_text(), out
    assert "ahora y los próximos 3 meses" in out and "error de la prueba" in out, out
    assert re.search(r"MAPE\) \d+,\d\s%", out) and "active" not in out, out
    assert main(["history", "cohorts", *es]) == 0
    out = capsys.readouterr().out
    assert "cohorte" in out and re.search(r"\d\s%", out) and "retention" not in out, out
    assert "ene 2025" in out and "2025-01-01" not in out, out
    assert main(["history", "events", *es]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "cambios de pertenencia" in out and " enter " not in out, out
    assert main(["history", "runs", *es]) == 0
    out = re.sub(r"[\s│┃]+", "", capsys.readouterr().out)
    assert "variablesdecliente(correcto)" in out and "features" not in out, out
    assert (
        main(["history", "migration", "--from", "2026-01-01", "--to", "2025-01-01", "-w", url]) == 2
    )
    assert main(["history", "backfill", "--freq", "fortnight", "-w", url]) == 2


def test_one_pass_segment_backfill_equals_computing_each_date(
    hwh: Warehouse, tmp_path: Path
) -> None:
    import yaml

    from segmentum.features import rollup
    from segmentum.history.segment_backfill import view_by_date
    from segmentum.history.snapshots import backfill_segments, history_summary
    from segmentum.segments.view import customer_view

    if hwh.has("segment_definitions"):
        hwh.drop("segment_definitions")
    rules = {
        "vip": "value_tier == 'high' and frequency >= 3",
        "active_30": "count(purchases, last 30 days) >= 2",
        "active_90": "count(purchases, last 90 days) >= 1",
        "returners": "count(returns, last 90 days) >= 1",
        "big_spend_90": "sum(spend, last 90 days) > 150",
        "viewers": "exists(event == 'product_view', last 14 days)",
        "ever_returned": "exists(returns)",
        "winback": "vip and not active_90 and consent_email",
        "loyal_active": "active_30 and rfm_segment in ('Champions', 'Loyal') and age_band != '65+'",
        "promoters": "nps >= 9",  # survey answers before each date
        "in_big_account": "big_accounts and active_90",
        "rich_future": "clv > 100",  # CLV is not known at past dates: skipped
        "rich_and_active": "rich_future and active_30",  # references a skipped segment
    }
    # B2B: every customer of the copy in one of 40 companies, for an account segment.
    hwh.con.raw_sql(
        "update customers set company_id = 'CO' || (hash(customer_id) % 40)::varchar, "
        "company = 'Company ' || (hash(customer_id) % 40)::varchar"
    )
    items = [{"name": n, "rule": r} for n, r in rules.items()]
    items.append({"name": "big_accounts", "rule": "revenue > 5000", "level": "account"})
    defs = tmp_path / "segments.yaml"
    defs.write_text(yaml.safe_dump({"segments": items}))
    Segments(hwh, SETTINGS).load_yaml(defs)  # one check and one save for all
    # The module fixture's backfill already wrote the classes of these dates.
    dates = snapshot_dates(hwh)[-3:-1]
    summary = hwh.materialize(
        history_summary(
            hwh.table("transactions"),
            dates,
            links=hwh.table("return_links"),
            days=rollup.purchase_days(hwh),
        )
    )
    done, skipped = backfill_segments(hwh, dates, summary, SETTINGS, "backfill-one-pass")
    assert set(skipped) == {"rich_future", "rich_and_active"} and "clv" in skipped["rich_future"]
    assert done == sorted({*rules, "big_accounts"} - set(skipped))

    def stored() -> pd.DataFrame:
        m = hwh.table("segment_members").to_pandas()
        m["as_of"] = pd.to_datetime(m.as_of).dt.date
        return m[m.as_of.isin(dates)]

    one_pass = stored()
    assert set(one_pass.run_id) == {"backfill-one-pass"}
    # The per-date path: Segments.compute at each date over that date's point-in-time summary.
    at = Segments(hwh, SETTINGS)
    at.features_at = lambda d: summary.filter(summary.as_of == d).drop("as_of")
    # The by-date view offers every column of a date's view (a new view column must reach it).
    one = customer_view(hwh, dates[0], features=at.features_at(dates[0]), with_clv=False)[0]
    assert set(view_by_date(hwh, dates, summary).columns) == {*one.columns, "as_of"}
    for d in dates:
        at.compute(d, "per-date", only=done)
    per_date = stored()
    assert set(per_date.run_id) == {"per-date"}
    done = [n for n in done if n != "big_accounts"]  # account flags feed customer segments
    for d in dates:
        for name in done:
            got = one_pass[(one_pass.as_of == d) & (one_pass.segment == name)].customer_id
            want = per_date[(per_date.as_of == d) & (per_date.segment == name)].customer_id
            assert sorted(got) == sorted(want), (d, name)
    sizes = one_pass.groupby("segment").size()
    # Every kind of rule selects somebody, so the comparison is not between empty sets.
    assert all(sizes.get(n, 0) > 0 for n in done), sizes.to_dict()
    # Without account segments the view holds only the columns the rules read, its parts
    # stored as they are joined: the same members.
    from segmentum.history.segment_backfill import members_by_date

    store = Segments(hwh, SETTINGS)
    alone = {s.name: s for s in store.list() if s.name in done and s.name != "in_big_account"}
    assert "promoters" in alone and "loyal_active" in alone  # survey, profile, classes, windows
    got_all = members_by_date(store, alone, dates, summary).to_pandas()
    got_all["as_of"] = pd.to_datetime(got_all.as_of).dt.date
    for d in dates:
        for name in alone:
            got = got_all[(got_all.as_of == d) & (got_all.segment == name)].customer_id
            want = per_date[(per_date.as_of == d) & (per_date.segment == name)].customer_id
            assert sorted(got) == sorted(want), (d, name)


def test_snapshot_totals_add_up_what_the_per_customer_summary_says(hwh: Warehouse) -> None:
    """The overview's change against earlier snapshots (``snapshot_kpis``) is summed without a
    row per customer and date; it must equal the point-in-time summary summed per date, on
    demo lines with returns that cancel earlier orders, at the 12 backfilled dates and a run's."""
    from segmentum.features import rollup
    from segmentum.history.snapshots import history_summary, snapshot_totals
    from segmentum.page_models import SNAPSHOT_KPIS, build_page_models

    dates = snapshot_dates(hwh)
    assert len(dates) >= 12
    tx, links, days = hwh.table("transactions"), hwh.table("return_links"), purchase_days(hwh)
    h = history_summary(tx, dates, links=links, days=days)
    want = (
        h.group_by("as_of")
        .aggregate(customers=h.count(), revenue=h.monetary.sum())
        .to_pandas()
        .sort_values("as_of", ignore_index=True)
    )
    got = snapshot_totals(tx, dates, links=links, days=rollup.purchase_days(hwh))
    got = got.to_pandas().sort_values("as_of", ignore_index=True)
    assert len(want) == len(dates)
    assert got.as_of.tolist() == want.as_of.tolist()
    assert got.customers.tolist() == want.customers.tolist()
    np.testing.assert_allclose(got.revenue, want.revenue, rtol=1e-12)
    assert (hwh.table("return_links").count().to_pyarrow().as_py() or 0) > 0  # returns linked
    assert want.customers.is_monotonic_increasing and want.customers.iloc[0] > 0
    build_page_models(hwh)  # what the published page model holds
    k = hwh.table(SNAPSHOT_KPIS).to_pandas().sort_values("as_of", ignore_index=True)
    assert k.customers.tolist() == want.customers.tolist()


def _write_clusters(hwh: Warehouse, at: dict[dt.date, list[str]]) -> None:
    """``customer_clusters`` (written again whole): on each date, its customers in three
    clusters by turn, named "group N" ("grupo N" in Spanish)."""
    rows = [(c, d, i % 3) for d, who in at.items() for i, c in enumerate(who)]
    hwh.write(
        "customer_clusters",
        pa.table(
            {
                "customer_id": [r[0] for r in rows],
                "as_of": pa.array([r[1] for r in rows], pa.date32()),
                "cluster": [r[2] for r in rows],
                "cluster_name": [f"group {r[2]}" for r in rows],
                "cluster_name_es": [f"grupo {r[2]}" for r in rows],
            }
        ),
    )


def test_a_forecast_of_clusters_steps_between_the_snapshots_that_hold_them(hwh: Warehouse) -> None:
    """The discovered clusters are stored by the runs, not backfilled: a forecast of them steps
    between the dates that have them, and says so when fewer than two do (it printed numpy
    warnings and an empty table)."""
    from segmentum.history.cohorts import grid

    dates = grid(snapshot_dates(hwh), "month")
    ids = hwh.table("customer_classes").customer_id.to_pyarrow().to_pylist()[:60]

    def clusters(days: list[dt.date]) -> None:
        _write_clusters(hwh, {d: ids for d in days})

    clusters(dates[-1:])
    with pytest.raises(segmentum.errors.InputError, match="stored at 1 of the"):
        forecast(hwh, "cluster")
    clusters(dates[-3:])  # three months of the grid (the table written again)
    f = forecast(hwh, "cluster", periods=2)
    assert f.states == ["group 0", "group 1", "group 2"] and len(f.dates) == 3
    assert sum(f.observed[-1].values()) == len(ids) and len(f.projected) == 2


def test_a_backfill_publishes_its_snapshots_and_keeps_what_it_did_not_change(
    hwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """`segmentum history backfill` on a warehouse whose serving store is published: the new
    snapshots and the overview's comparison with them reach the store; the lookup and its
    JSON documents (12 GB at 100M lines), the invoices and the other pages stay as they were
    (not rebuilt, not copied), and the snapshot KPIs are summed from the stored parts."""
    from segmentum.page_models import KPI_PARTS, SNAPSHOT_KPIS
    from segmentum.precompute import publish_read_models
    from segmentum.serving import ServingStore, documents_path, serving_path

    publish_read_models(hwh, SETTINGS)  # as the last run left it
    target = serving_path(hwh.url)
    assert target is not None
    docs = documents_path(target).stat().st_ino
    store = ServingStore(target)
    cur = store.cursor()
    assert cur is not None
    before = {r[0] for r in cur.execute("select distinct as_of from customer_classes").fetchall()}
    invoices = cur.execute("select count(*) from customer_invoices").fetchone()
    parts = hwh.table(KPI_PARTS).count().to_pyarrow().as_py()
    assert main(["history", "backfill", "--periods", "18", "-w", hwh.url]) == 0
    capsys.readouterr()
    cur = store.cursor()
    assert cur is not None
    after = {r[0] for r in cur.execute("select distinct as_of from customer_classes").fetchall()}
    assert before < after and len(after - before) == 6  # 18 month ends, 12 there already
    stored = hwh.table("customer_classes").as_of.value_counts().to_pyarrow().to_pylist()
    published = dict(
        cur.execute("select as_of, count(*) from customer_classes group by 1").fetchall()
    )
    assert published == {r["as_of"]: r["as_of_count"] for r in stored}
    kpis = dict(cur.execute(f"select as_of, customers from {SNAPSHOT_KPIS}").fetchall())
    assert set(kpis) == after and all(kpis[d] > 0 for d in after)
    # The same numbers a full recompute of the parts gives.
    hwh.drop(KPI_PARTS)
    from segmentum.page_models import _snapshot_kpis

    fresh = _snapshot_kpis(hwh)
    assert fresh is not None
    assert {r["as_of"]: r["customers"] for r in fresh.to_pyarrow().to_pylist()} == kpis
    assert hwh.table(KPI_PARTS).count().to_pyarrow().as_py() == parts
    assert documents_path(target).stat().st_ino == docs  # the documents were kept
    assert cur.execute("select count(*) from customer_invoices").fetchone() == invoices
    assert isinstance(store.document("customer_lookup", a_customer_id(hwh)), str)


def test_a_backfill_before_anything_was_published_publishes_every_read_model(
    history_db: Path, copy_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing to keep yet: the first publish, after a backfill, builds and publishes every
    read model, as a run's would (the customer pages' invoices too)."""
    from segmentum.serving import ServingStore, documents_path, serving_path

    wh = copy_of(history_db)  # the copy has no serving store beside it
    target = serving_path(wh.url)
    assert target is not None and not target.exists()
    assert main(["history", "backfill", "--periods", "3", "-w", wh.url]) == 0
    capsys.readouterr()
    cur = ServingStore(target).cursor()
    assert cur is not None
    for table in ("customer_invoices", "snapshot_kpis", "customer_classes"):
        assert cur.execute(f"select count(*) from {table}").fetchone()[0] > 0, table
    assert documents_path(target).exists()  # the lookup: published as its documents
    assert isinstance(ServingStore(target).document("customer_lookup", a_customer_id(wh)), str)


def a_customer_id(wh: Warehouse) -> str:
    return str(wh.table("customer_lookup").customer_id.min().to_pyarrow().as_py())


def test_a_migration_from_a_day_without_a_snapshot_names_the_nearest_dates(
    hwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """A day between two monthly snapshots was read as a base where everyone was new (exit
    0, the whole base "(not yet a customer)"): it is an error naming the nearest snapshots."""
    dates = snapshot_dates(hwh)
    assert dt.date(2025, 7, 1) in dates and dt.date(2025, 8, 1) in dates
    with pytest.raises(
        segmentum.errors.InputError,
        match=r"there is no snapshot on 2025-07-15: the nearest are 2025-07-01 and 2025-08-01",
    ):
        migration(hwh, dt.date(2025, 7, 15), dates[-1], "value_tier")
    later = dates[-1] + dt.timedelta(days=10)
    with pytest.raises(segmentum.errors.InputError, match=rf"the nearest is {dates[-1]} \(hint"):
        migration(hwh, dates[0], later, "value_tier")
    cmd = ["history", "migration", "--from", "2025-07-15", "--to", str(dates[-1])]
    assert main([*cmd, "--by", "value_tier", "--lang", "es", "-w", hwh.url]) == 2
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())
    assert "no hay foto del 15 jul 2025: las más cercanas son del 1 jul 2025 y del 1 ago 2025" in (
        text
    ), text
    assert "segmentum history backfill" in text and "aún no era cliente" not in text, text


def test_a_migration_of_clusters_says_which_dates_hold_them(
    hwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clusters are not backfilled: a migration from a date without them made everyone new.
    It names the dates that hold clusters; between two of them, the states that are not
    clusters read in the page's language ("(not yet a customer)" was shown under --lang es)."""
    dates = snapshot_dates(hwh)
    ids = hwh.table("customer_classes").customer_id.to_pyarrow().to_pylist()[:60]

    def clusters(at: dict[dt.date, list[str]]) -> None:
        _write_clusters(hwh, at)

    clusters({dates[-1]: ids})
    with pytest.raises(
        segmentum.errors.InputError, match=f"clusters are stored on {dates[-1]} only"
    ):
        migration(hwh, dates[0], dates[-1], "cluster")
    clusters({dates[-2]: ids[:40], dates[-1]: ids})
    with pytest.raises(
        segmentum.errors.InputError,
        match=f"the snapshot of {dates[0]} holds no discovered clusters; the dates that do: "
        f"{dates[-2]}, {dates[-1]}",
    ):
        migration(hwh, dates[0], dates[-1], "cluster")
    m = migration(hwh, dates[-2], dates[-1], "cluster")
    assert sum(m.counts["(not yet a customer)"].values()) == 20
    es = ["--by", "cluster", "--lang", "es", "-w", hwh.url]
    assert main(["history", "migration", "--from", str(dates[0]), "--to", str(dates[-1]), *es]) == 2
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())
    assert f"la foto del {i18n.date(dates[0], 'es')} no tiene grupos descubiertos" in text, text
    assert (
        main(["history", "migration", "--from", str(dates[-2]), "--to", str(dates[-1]), *es]) == 0
    )
    out = re.sub(r"[\s│┃]+", " ", capsys.readouterr().out)
    assert "grupo 0" in out and "(aún no era cliente)" in out.replace("( ", "("), out
    assert "not yet" not in out and "customer)" not in out, out


RETAIL = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n" + (
    # 17850 and 13047 first buy in January; nobody of January buys in February.
    "536365,85123A,WHITE HANGING HEART,6,2025-01-10 08:26,2.55,17850.0,United Kingdom\n"
    "536366,22633,HAND WARMER UNION JACK,6,2025-01-15 08:28,1.85,13047.0,United Kingdom\n"
    "536390,85123A,WHITE HANGING HEART,6,2025-03-05 10:00,2.95,17850.0,United Kingdom\n"
    # 12583 first buys in March and never again; April is the newest month.
    "536400,22633,HAND WARMER UNION JACK,12,2025-03-02 10:00,1.85,12583.0,France\n"
    "536410,22960,JAM MAKING SET,1,2025-04-20 11:00,4.25,13047.0,United Kingdom\n"
)


def test_a_month_nobody_bought_in_is_0_percent_and_each_cohort_shows_its_size(
    wh: Warehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A month a cohort was observed in with no buyer was left out (blank, and no JSON row:
    an average of the rows was biased up); only months not reached yet are absent."""
    (tmp_path / "retail.csv").write_text(RETAIL, encoding="utf-8")
    segmentum.ingest("transactions", tmp_path / "retail.csv", warehouse=wh)
    c = cohorts(wh)
    got = {(r["cohort"], r["period"]): (r["customers"], r["retention"]) for r in c.rows}
    assert got == {
        ("2025-01-01", 0): (2, 1.0),
        ("2025-01-01", 1): (2, 0.0),  # February: observed, nobody bought
        ("2025-01-01", 2): (2, 0.5),
        ("2025-01-01", 3): (2, 0.5),
        ("2025-03-01", 0): (1, 1.0),
        ("2025-03-01", 1): (1, 0.0),  # April: observed; May is not, so no row
    }, got
    assert main(["history", "cohorts", "--lang", "es", "-w", wh.url]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "2025" in line]
    cells = [[x.strip() for x in line.replace("\xa0", " ").split("│")[1:-1]] for line in rows]
    assert cells == [
        ["ene 2025", "2", "100 %", "0 %", "50 %", "50 %", "", "", ""],
        ["mar 2025", "1", "100 %", "0 %", "", "", "", "", ""],
    ], cells
    assert main(["history", "cohorts", "--json", "-w", wh.url]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6
    page = report_html(cohorts=c, lang="es")
    assert "<th>clientes</th>" in page and "<td>2</td>" in page and ">0\xa0%</td>" in page, page


def test_a_forecast_by_week_on_monthly_snapshots_is_refused(
    wh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """Monthly snapshots asked for --freq week gave the monthly forecast labelled as weeks
    ("the next 3 weeks", "freq": "week"): it is refused, saying why and what to do."""
    ids = [f"c{i}" for i in range(30)]
    months = [dt.date(2025, m, 1) for m in range(1, 7)]
    frames = [
        pd.DataFrame({"customer_id": ids, "as_of": d, "rfm_segment": ["Loyal", "Lost", "New"] * 10})
        for d in months
    ]
    wh.write("customer_classes", pa.Table.from_pandas(pd.concat(frames), preserve_index=False))
    assert forecast(wh, "rfm_segment", freq="month").freq == "month"
    with pytest.raises(
        segmentum.errors.InputError,
        match="the snapshots are 31 days apart: a forecast by week needs a snapshot every week",
    ):
        forecast(wh, "rfm_segment", freq="week")
    cmd = ["history", "forecast", "--freq", "week", "-w", wh.url]
    assert main([*cmd, "--json"]) == 2
    said = capsys.readouterr()
    assert '"freq"' not in said.out and "--freq month" in said.out + said.err
    assert main([*cmd, "--lang", "es"]) == 2
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())
    assert "una previsión por semanas necesita una foto cada semana" in text, text
    assert "próximas" not in text, text
    weeks = [dt.date(2025, 6, 2) + dt.timedelta(weeks=k) for k in range(5)]
    frames = [f.assign(as_of=d) for f, d in zip(frames, weeks, strict=False)]
    wh.write("customer_classes", pa.Table.from_pandas(pd.concat(frames), preserve_index=False))
    assert forecast(wh, "rfm_segment", freq="week").dates == weeks


def test_history_dates_and_runs_write_dates_as_the_language_does(
    hwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """`history dates --lang es` printed ISO dates only, `history runs --lang es` "6/12/26
    11:35" beside "1 ene 2026": one style, the language's (dates keeps the value --from takes)."""
    assert main(["history", "dates", "--lang", "es", "-w", hwh.url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"│ 1 jul 2025\s+│ 2025-07-01\s+│", out), out
    assert main(["history", "runs", "--lang", "es", "-w", hwh.url]) == 0
    out = re.sub(r"[\s│┃]+", "", capsys.readouterr().out)
    started = hwh.table("pipeline_runs").started_at.max().to_pyarrow().as_py()
    day, _, time = i18n.date(started, "es").rpartition(" ")  # "6 dic 2026", "11:35"
    assert day.replace(" ", "") in out and time in out, (day, time, out)
    assert not re.search(r"\d{1,2}/\d{1,2}/\d{2}", out), out
