"""The daily run that costs what changed: a month of new days, each run incrementally, gives
the same features, classes and CLV scores as a full recompute; fallbacks say why."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest

import segmentum
from segmentum import cli, incremental, pipeline
from segmentum.campaigns import timing
from segmentum.config import Settings, load_settings
from segmentum.features import customer_features, default_as_of, rollup
from segmentum.history.snapshots import snapshot_dates, snapshot_parts, snapshot_totals
from segmentum.ingest import returns
from segmentum.segments.classes import classify
from segmentum.serving import _PARTS, ServingStore, serving_path
from segmentum.warehouse import Warehouse, connect

FIRST_DAY = dt.date(2024, 1, 1)
SPLIT = dt.date(2024, 12, 1)  # the first (full) run sees every line before this day
DAYS = 30
CATEGORIES = ("Moda", "Calzado", "Hogar", "Electrónica", "Belleza", "Deporte")
DEVICES = ("mobile", "desktop", "tablet")


def _generate(customers: int = 300, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A year of invoice lines and events shaped like a real export: float ids, offsets in
    the timestamps, returns linked to their purchase, a cancelled order, promo codes."""
    rng = np.random.default_rng(seed)
    lines: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    n_inv = 0
    span = (dt.date(2024, 12, 31) - FIRST_DAY).days
    for c in range(customers):
        cid = f"{10000 + c}.0"
        start = int(rng.integers(0, span))
        rate = rng.gamma(1.2, 1 / 25)  # purchase days per day
        day = start
        while day <= span:
            n_inv += 1
            inv = f"F{n_inv:06d}"
            hour = int(rng.integers(7, 23))
            when = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day), dt.time(hour, 15))
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + ("+01:00" if c % 3 else "")
            device = DEVICES[int(rng.integers(0, 3))]
            promo = "VERANO10" if rng.random() < 0.2 else ""
            for ln in range(1, int(rng.integers(1, 4)) + 1):
                q = int(rng.integers(1, 4))
                price = round(float(rng.gamma(2.0, 15.0)) + 1, 2)
                product = f"P{int(rng.integers(1, 60)):03d}"
                lines.append(
                    {
                        "invoice": inv,
                        "line": ln,
                        "customer_id": cid,
                        "date": stamp,
                        "product_id": product,
                        "category": CATEGORIES[int(product[1:]) % len(CATEGORIES)],
                        "quantity": q,
                        "amount": round(q * price, 2),
                        "promo_code": promo,
                        "device": device,
                        "channel": "online" if device != "desktop" or c % 2 else "store",
                        "original_invoice": "",
                        "_day": when.date(),
                    }
                )
                back = rng.random()
                if back < 0.08:  # returned a few days later (a cancellation when whole)
                    later = when + dt.timedelta(days=int(rng.integers(0, 12)), hours=1)
                    lines.append(
                        {
                            **lines[-1],
                            "invoice": f"R{n_inv:06d}{ln}",
                            "line": 1,
                            "date": later.strftime("%Y-%m-%dT%H:%M:%S"),
                            "quantity": -q,
                            "amount": -lines[-1]["amount"],
                            "original_invoice": inv,
                            "_day": later.date(),
                        }
                    )
            if rng.random() < 0.5:
                ev_day = when + dt.timedelta(days=int(rng.integers(0, 5)), minutes=30)
                events.append(
                    {
                        "event_id": f"E{len(events):06d}",
                        "customer_id": cid,
                        "event_type": ("cart_abandoned", "email_open", "email_click")[
                            int(rng.integers(0, 3))
                        ],
                        "timestamp": ev_day.strftime("%Y-%m-%dT%H:%M:%S"),
                        "device": device,
                        "_day": ev_day.date(),
                    }
                )
            day += max(1, int(rng.exponential(1 / rate)))
    # One whole order cancelled on the day it was placed.
    first = next(r for r in lines if r["_day"] >= SPLIT + dt.timedelta(days=3))
    lines.append(
        {
            **first,
            "invoice": "CANCEL1",
            "quantity": -first["quantity"],
            "amount": -first["amount"],
            "original_invoice": first["invoice"],
        }
    )
    return pd.DataFrame(lines), pd.DataFrame(events)


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.drop(columns="_day").to_csv(path, index=False)
    return path


def _load(wh: Warehouse, table: str, df: pd.DataFrame, path: Path) -> None:
    if len(df):
        [report] = segmentum.ingest(table, _write(df, path), warehouse=wh)
        assert report.quarantined == 0, report.to_dict()


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _generate()


@pytest.fixture
def settings() -> Settings:
    return load_settings()


def _cut(day: dt.date) -> Any:
    return ibis.literal(dt.datetime(day.year, day.month, day.day), "timestamp")


@pytest.fixture(scope="module")
def source(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[pd.DataFrame, pd.DataFrame]
) -> Path:
    """The year's lines and events, ingested once from export-shaped CSV files."""
    d = tmp_path_factory.mktemp("incremental")
    lines, events = data
    wh = connect(f"duckdb:///{d / 'source.duckdb'}")
    _load(wh, "transactions", lines, d / "lines.csv")
    _load(wh, "events", events, d / "events.csv")
    wh.close()
    return d / "source.duckdb"


def _copy_days(src: Warehouse, wh: Warehouse, lo: dt.date | None, hi: dt.date) -> None:
    """Add the source's lines and events dated in [lo, hi) to ``wh`` as stored rows."""
    for name in ("transactions", "events"):
        t = src.table(name)
        cond = t.timestamp < _cut(hi)
        if lo is not None:
            cond &= t.timestamp >= _cut(lo)
        rows = t.filter(cond).to_pyarrow()
        if not wh.has(name):
            wh.write(name, rows)
        elif rows.num_rows:
            wh.insert(name, rows)
            if name == "transactions":  # as an ingest does: the links and the rollup follow
                new = wh.from_arrow(rows, "day")
                linked = returns.update_links(wh, new, "day")
                try:
                    rollup.absorb(wh, new, relinked=linked.customers)
                finally:
                    linked.drop(wh)
                wh.drop(new.get_name())


@pytest.fixture(scope="module")
def first_db(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    """A warehouse with the history before SPLIT, run once (full); tests work on copies."""
    path = tmp_path_factory.mktemp("incremental_first") / "w.duckdb"
    src, wh = connect(f"duckdb:///{source}"), connect(f"duckdb:///{path}")
    _copy_days(src, wh, None, SPLIT)
    summary = pipeline.run(wh, settings=load_settings())
    assert summary.kind == "full" and summary.plan["reason"] == "first_run"
    src.close()
    wh.close()
    return path


@pytest.fixture
def first_run(first_db: Path, tmp_path: Path) -> Iterator[Warehouse]:
    shutil.copy(first_db, tmp_path / "w.duckdb")
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    yield wh
    wh.close()


def _day_run(
    wh: Warehouse, settings: Settings, run_id: str, contact: bool = False
) -> incremental.Plan:
    """The pipeline's core steps as a daily run does them: plan, features, CLV, classes
    (and contact times when ``contact``)."""
    target = default_as_of(wh.table("transactions"))
    p = incremental.plan(wh, target, settings)
    as_of, feats = pipeline.compute_features(wh, target, settings, run_id, p)
    assert p.previous is not None
    if not p.refit and p.previous.models is not None:
        clv, _ = pipeline.score_with_stored(wh, feats, as_of, settings, run_id, p.previous.models)
        fitted = None
    else:
        clv, models = pipeline.compute_clv(wh, feats, as_of, settings, run_id)
        fitted = incremental.models_state(models)
    pipeline.compute_classes(wh, feats, as_of, settings, run_id, clv)
    if contact:
        timing.contact_times(wh, as_of, changed=p.changed, since=p.previous.as_of)
    n = int(feats.count().to_pyarrow().as_py())
    incremental.save_state(wh, incremental.state_after(wh, p, run_id, settings, n, fitted))
    if p.changed is not None:
        wh.drop(p.changed.get_name())
    return p


def _frame(t: Any) -> pd.DataFrame:
    df: pd.DataFrame = t.drop(*[c for c in ("run_id", "as_of") if c in t.columns]).to_pandas()
    return df.sort_values("customer_id").reset_index(drop=True)


def _same(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    assert list(got.customer_id) == list(want.customer_id), what
    assert set(got.columns) == set(want.columns), what
    for c in want.columns:
        a, b = got[c], want[c]
        if pd.api.types.is_float_dtype(b):
            x, y = a.to_numpy(float), b.to_numpy(float)
            ok = (np.isnan(x) & np.isnan(y)) | np.isclose(x, y, rtol=1e-9, atol=1e-12)
            assert ok.all(), f"{what}.{c}: {got.customer_id[~ok].tolist()[:5]}"
        else:
            diff = ~((a == b) | (a.isna() & b.isna()))
            assert not diff.any(), f"{what}.{c}: {got.customer_id[diff].tolist()[:5]}"


def _full_recompute(wh: Warehouse, as_of: dt.date, settings: Settings) -> Any:
    """Every customer's features from every line, from scratch: the returns linked and the
    purchase days grouped here, not read from what the runs and the loads kept."""
    return customer_features(
        wh.table("transactions"), as_of, events=wh.table("events"), weeks=settings.weeks
    )


@pytest.mark.slow  # 30 runs and 30 full recomputes: see the report's measured time
def test_a_month_of_incremental_days_equals_a_full_recompute_every_day(
    first_run: Warehouse, source: Path, settings: Settings
) -> None:
    wh, src = first_run, connect(f"duckdb:///{source}")
    # Refits on the weekly schedule; drift is tested apart (300 customers move fast).
    settings = Settings(**{**settings.__dict__, "refit_drift_share": 0.9})
    kinds: list[str] = []
    refits: list[str] = []
    for i in range(DAYS):
        day = SPLIT + dt.timedelta(days=i)
        _copy_days(src, wh, day, day + dt.timedelta(days=1))
        p = _day_run(wh, settings, f"day{i:02d}")
        kinds.append(p.kind)
        refits.append(p.refit_reason)
        as_of = p.as_of
        at = ibis.literal(as_of, "date")
        stored = wh.table("customer_features")
        got = _frame(stored.filter(stored.as_of == at))
        full = wh.materialize(_full_recompute(wh, as_of, settings), "full")
        _same(got, _frame(full), f"features {as_of}")
        # CLV and classes from the full recompute, with the same fitted models.
        state = incremental.load_state(wh)
        assert state is not None and state.models is not None
        want_clv, _ = incremental.score_stored(wh, full, state.models, as_of, settings)
        want_clv = wh.materialize(want_clv, "clv")
        clv = wh.table("customer_clv")
        _same(_frame(clv.filter(clv.as_of == at)), _frame(want_clv), f"clv {as_of}")
        classes = wh.table("customer_classes")
        _same(
            _frame(classes.filter(classes.as_of == at)),
            _frame(classify(full, clv=want_clv)),
            f"classes {as_of}",
        )
    src.close()
    assert kinds == ["incremental"] * DAYS
    # Refitted on the schedule (every 7 days), scored with the stored fit in between.
    assert refits.count("refit_due") == DAYS // 7, refits
    assert refits.count("stored_fit") == DAYS - DAYS // 7, refits


def test_contact_times_of_incremental_days_equal_a_full_count(
    first_run: Warehouse, source: Path, settings: Settings
) -> None:
    """Only the changed customers' signals are counted again; the others' stored counts are
    carried, and the best times come out as a full count gives them (a cancelled order on
    the fourth day included)."""
    wh, src = first_run, connect(f"duckdb:///{source}")
    assert wh.has(timing.COUNTS)  # the first, full run stored its counts
    # Three days at once, then the fourth (two runs: the second starts from counts an
    # incremental run stored).
    for i, (lo, hi) in enumerate(((0, 3), (3, 4))):
        _copy_days(src, wh, SPLIT + dt.timedelta(days=lo), SPLIT + dt.timedelta(days=hi))
        p = _day_run(wh, settings, f"ct{i}", contact=True)
        assert p.kind == "incremental" and 0 < p.changed_count < p.customers
        at = ibis.literal(p.as_of, "date")
        stored = wh.table("contact_times")
        full = timing.contact_times(wh, p.as_of, store=False)
        _same(_frame(stored.filter(stored.as_of == at)), _frame(full), f"contact {p.as_of}")
    src.close()
    # The stored counts are what an unchanged customer's answer comes from: with their hour
    # counts ten times over, the same customer is surer of their best hour; the other
    # dimensions (shrunk apart) do not move.
    long = timing.stored_counts(wh)
    who = long.filter(long.dim == "hour_band").customer_id.max().to_pyarrow().as_py()
    before = _frame(wh.table("contact_times").filter(lambda t: t.as_of == at))
    # The counts are kept one row a customer, one column a dimension and value.
    values = (wh.marked(timing.COUNTS_AS_OF) or {})["values"]
    hours = [c for (d, _), c in timing._wide_columns(values).items() if d == "hour_band"]
    counts = wh.table(timing.COUNTS)
    mine = counts.customer_id == who
    wh.write(
        timing.COUNTS,
        wh.materialize(
            counts.mutate(**{c: ibis.ifelse(mine, counts[c] * 10, counts[c]) for c in hours})
        ),
    )
    nobody = wh.from_arrow(pd.DataFrame({"customer_id": pd.Series([], dtype=str)}))
    again = _frame(
        timing.contact_times(wh, p.as_of, store=False, changed=nobody, since=p.as_of)
    ).set_index("customer_id")
    was = before.set_index("customer_id")
    assert again.hour_band_confidence[who] > was.hour_band_confidence[who]
    others = again.index != who
    assert (again.best_weekday[others].fillna("") == was.best_weekday[others].fillna("")).all()


def test_page_models_of_incremental_days_equal_a_full_build(
    first_run: Warehouse, source: Path, settings: Settings
) -> None:
    """The customer pages' invoices and activity: an incremental run rebuilds only the changed
    customers' rows and keeps the others; the tables equal a build from every line and event
    (two runs: the second starts from rows an incremental run wrote)."""
    from segmentum import page_models

    wh, src = first_run, connect(f"duckdb:///{source}")
    assert wh.has(page_models.INVOICES) and wh.has(page_models.ACTIVITY)  # the first run's

    def rows(t: Any, *by: str) -> pd.DataFrame:
        df: pd.DataFrame = t.to_pandas()
        return df.sort_values(list(by), ignore_index=True)

    for i, (lo, hi) in enumerate(((0, 3), (3, 4))):
        _copy_days(src, wh, SPLIT + dt.timedelta(days=lo), SPLIT + dt.timedelta(days=hi))
        target = default_as_of(wh.table("transactions"))
        p = incremental.plan(wh, target, settings)
        assert p.kind == "incremental" and p.changed is not None and p.previous is not None
        keys = page_models.page_keys(wh, p.changed, p.previous.as_of)
        # The rows rebuilt have the stored tables' columns: the rows are updated, not rewritten.
        tx = wh.table("transactions")
        fresh = page_models._invoices(tx, keys)
        assert page_models._same_columns(fresh, wh.table(page_models.INVOICES))
        fresh_activity = page_models._activity(wh, keys)
        assert fresh_activity is not None
        assert page_models._same_columns(fresh_activity, wh.table(page_models.ACTIVITY))
        written = page_models.build_page_models(wh, keys)
        wh.drop(keys.get_name())
        assert {page_models.INVOICES, page_models.ACTIVITY} <= set(written)
        _same(
            rows(wh.table(page_models.INVOICES), "customer_id", "invoice_id"),
            rows(page_models._invoices(wh.table("transactions")), "customer_id", "invoice_id"),
            f"invoices day {hi}",
        )
        full = page_models._activity(wh)
        assert full is not None
        _same(
            rows(wh.table(page_models.ACTIVITY), "customer_id", "when", "kind", "what"),
            rows(full, "customer_id", "when", "kind", "what"),
            f"activity day {hi}",
        )
        # The snapshot KPIs' per-customer parts: only the keys' rows replaced, the same as
        # parts from every line; the KPIs of every snapshot date summed from them.
        assert page_models.SNAPSHOT_KPIS in written
        parts = snapshot_parts(tx, links=wh.table(returns.LINKS), days=rollup.purchase_days(wh))
        _same(
            rows(wh.table(page_models.KPI_PARTS), "customer_id", "day"),
            rows(parts, "customer_id", "day"),
            f"KPI parts day {hi}",
        )
        got = rows(wh.table(page_models.SNAPSHOT_KPIS), "as_of")
        want = rows(snapshot_totals(tx, snapshot_dates(wh)), "as_of")  # links made here
        assert len(got) >= 1 and list(got.as_of) == list(want.as_of)
        assert list(got.customers) == list(want.customers), f"KPI customers day {hi}"
        assert np.allclose(got.revenue, want.revenue, rtol=1e-9), f"KPI revenue day {hi}"
        changed = int(p.changed.count().to_pyarrow().as_py())
        assert 0 < changed < p.customers
        wh.drop(p.changed.get_name())
        _day_run(wh, settings, f"pages{i}")
    src.close()


def test_the_run_log_says_which_kind_ran_and_why(
    first_run: Warehouse,
    data: tuple[pd.DataFrame, pd.DataFrame],
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wh = first_run
    lines, _ = data
    day = SPLIT
    _load(wh, "transactions", lines[lines._day == day], tmp_path / "d0.csv")
    # With discovered segments (the first run had none: this day fits them); no drift refit.
    settings = settings.with_overrides(discover_segments=True, refit_drift_share=0.9)
    s = pipeline.run(wh, settings=settings)
    assert s.kind == "incremental" and s.plan["reason"] == "changed"
    assert 0 < s.plan["changed_customers"] < s.customers
    feats_step = next(x for x in s.steps if x["step"] == "features")
    assert feats_step["kind"] == "incremental"
    disc = next(x for x in s.steps if x["step"] == "discover segments")
    assert disc["kind"] == "refit"  # nothing kept yet
    assert feats_step["customers_computed"] == s.plan["changed_customers"]
    assert "customers changed since" in s.plan["why"]
    assert "clientes cambiaron desde" in s.plan["why_es"]
    # The command line says it in the language asked for.
    cli.print_run_kind(s, "es")
    out = capsys.readouterr().out
    assert "incremental:" in out and "clientes cambiaron desde" in out and "modelos" in out
    forced = pipeline.run(wh, settings=settings, full=True)
    assert forced.kind == "full" and forced.plan["reason"] == "forced"
    disc = next(x for x in forced.steps if x["step"] == "discover segments")
    assert disc["kind"] == "refit" and disc["fitted_as_of"] == forced.as_of.isoformat()
    # The forced run kept every customer's spend mix for the next day.
    from segmentum.features.customer import category_mix
    from segmentum.segments import discover as found

    kept_mix = found._mix_state(wh)
    assert kept_mix is not None and kept_mix["as_of"] == forced.as_of.isoformat()
    # The next day, between refits: the clusters of the forced run's fit, assigned again.
    nxt = SPLIT + dt.timedelta(days=1)
    _load(wh, "transactions", lines[lines._day == nxt], tmp_path / "d1.csv")
    later = pipeline.run(wh, settings=settings)
    assert later.kind == "incremental" and later.plan["models"] == "stored_fit"
    # The published copy lists this run (the Data page was a run behind); the warehouse keeps
    # one finished row of it.
    from segmentum.serving import ServingStore, serving_path

    target = serving_path(wh.url, settings.serving_store)
    assert target is not None
    shown = ServingStore(target).read(lambda w: w.table("pipeline_runs").to_pandas())
    assert shown is not None and later.run_id in set(shown.run_id)
    # ... as running: the copy was made before the run finished.
    assert shown.set_index("run_id").loc[later.run_id, "status"] == "running"
    kept = wh.table("pipeline_runs").to_pandas().set_index("run_id")
    assert kept.index.is_unique and kept.loc[later.run_id, "status"] == "ok"
    assert "save run state" in kept.loc[later.run_id, "steps"]
    disc = next(x for x in later.steps if x["step"] == "discover segments")
    assert disc["kind"] == "stored fit" and disc["fitted_as_of"] == forced.as_of.isoformat()
    cl = wh.table("customer_clusters")
    cl = cl.filter(cl.as_of == ibis.literal(later.as_of, "date")).to_pandas()
    assert cl.cluster.notna().all() and len(cl) > 0
    # Only the changed customers' mix was computed again (the same categories, the last run's
    # mix): it equals everybody's mix computed from every line.
    assert found._mix_state(wh) == {**kept_mix, "as_of": later.as_of.isoformat()}
    every = category_mix(
        wh.table("transactions"), later.as_of, kept_mix["categories"], wh.table(returns.LINKS)
    )
    _same(_frame(wh.table(found.MIX)), _frame(every), "spend mix")
    # The run read the changed customers' lines once, staged by its plan: the page rows and
    # the KPI parts it rebuilt from them equal a build from every line.
    from segmentum import page_models

    tx = wh.table("transactions")
    for name, want, by in (
        (page_models.INVOICES, page_models._invoices(tx), ["customer_id", "invoice_id"]),
        (
            page_models.KPI_PARTS,
            snapshot_parts(tx, links=wh.table(returns.LINKS), days=rollup.purchase_days(wh)),
            ["customer_id", "day"],
        ),
    ):
        got = wh.table(name).to_pandas().sort_values(by, ignore_index=True)
        _same(got, want.to_pandas().sort_values(by, ignore_index=True), f"{name} after the run")
    assert not any(t.startswith("_seg_changed") for t in wh.temp_tables())  # released
    # The serving store got only the changed customers' page rows and the new dates, and
    # holds what the warehouse holds.
    pub = next(x for x in later.steps if x["step"] == "publish read models")
    assert {"customer_invoices", "customer_activity", "customer_classes"} <= set(pub["carried"])
    store = ServingStore(serving_path(wh.url))
    cur = store.cursor()
    assert cur is not None
    for table in ("customer_invoices", "customer_activity", "customer_classes", "customer_clv"):
        got = sorted(cur.execute(f"select * from {table}").fetchall(), key=str)
        want = sorted(wh.con.con.execute(f"select * from {table}").fetchall(), key=str)
        assert got == want, table
    # The tables synced by key are kept in parts, each indexed (recent's index built again
    # after the sync), so a customer's rows are still read through indexes.
    indexed = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_indexes()").fetchall()}
    parts = {f"{t}__{p}" for t in ("customer_invoices", "customer_activity") for p in _PARTS}
    assert parts <= indexed
    # The lookup is published as its documents only: one per customer, the day's values.
    some = str(wh.table("customer_lookup").customer_id.min().to_pyarrow().as_py())
    doc = store.document("customer_lookup", some)
    assert isinstance(doc, str) and f'"customer_id":"{some}"' in doc.replace(" ", "")
    recent = cur.execute("SELECT count(*) FROM customer_invoices__recent").fetchone()
    assert recent is not None and recent[0] > 0  # synced, not copied whole
    assert forced.plan["models"] == "refit_full"
    runs = wh.table("pipeline_runs").order_by("started_at").to_pandas()
    assert list(runs.kind) == ["full", "incremental", "full", "incremental"]
    assert list(runs.why)[1:3] == [s.plan["why"], "a full run was asked for (--full)"]
    # Settings the numbers depend on changed (the plan alone: no further run needed).
    target = default_as_of(wh.table("transactions"))
    changed = Settings(**{**settings.__dict__, "clv_horizon_months": 6})
    p = incremental.plan(wh, target, changed)
    assert p.kind == "full" and p.reason == "settings" and "clv_horizon_months" in p.message()
    assert "cambiaron ajustes" in p.message("es")
    # A backfilled day: lines dated before the last run's date arrive.
    late = lines[(lines._day < SPLIT) & (lines._day > SPLIT - dt.timedelta(days=60))].head(3)
    late = late.assign(invoice=[f"LATE{i}" for i in range(len(late))])
    _load(wh, "transactions", late, tmp_path / "late.csv")
    p = incremental.plan(wh, target, settings)
    assert p.kind == "full" and p.reason == "backfill" and p.params["lines"] == 3
    assert "a backfilled day" in p.message() and "con retraso" in p.message("es")


def test_too_many_changed_customers_fall_back_to_a_full_run(
    first_run: Warehouse,
    data: tuple[pd.DataFrame, pd.DataFrame],
    settings: Settings,
    tmp_path: Path,
) -> None:
    wh = first_run
    lines, _ = data
    week = lines[(lines._day >= SPLIT) & (lines._day < SPLIT + dt.timedelta(days=7))]
    _load(wh, "transactions", week, tmp_path / "week.csv")
    strict = Settings(**{**settings.__dict__, "incremental_max_changed_share": 0.01})
    p = incremental.plan(wh, default_as_of(wh.table("transactions")), strict)
    assert p.kind == "full" and p.reason == "too_many_changed"
    assert "más de 1,0" in p.message("es") or "más de 1 " in p.message("es")
    assert math.isclose(p.params["limit"], 0.01)


def test_daily_runs_keep_recent_days_and_a_snapshot_a_month(
    first_run: Warehouse, source: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The retention journey: daily runs after the first; the run that ends the window
    removes the older days' snapshots (not the month's first, not the last two), says so in
    its run log, publishes the history without them, and the next day is still incremental."""
    wh, src = first_run, connect(f"duckdb:///{source}")
    settings = settings.with_overrides(history_daily_days=2, refit_drift_share=0.9)
    first = snapshot_dates(wh)[-1]
    for i in range(2):  # two more days, as the core steps of a daily run write them
        _copy_days(src, wh, SPLIT + dt.timedelta(days=i), SPLIT + dt.timedelta(days=i + 1))
        _day_run(wh, settings, f"keep{i}")
    days = snapshot_dates(wh)
    assert len(days) == 3 and days[0] == first
    _copy_days(src, wh, SPLIT + dt.timedelta(days=2), SPLIT + dt.timedelta(days=3))
    s = pipeline.run(wh, settings=settings)
    assert s.kind == "incremental" and s.as_of is not None
    step = next(x for x in s.steps if x["step"] == "history retention")
    # The newest two (today, yesterday) stay; so does the first of the month (the first run's).
    gone = [d for d in days if d not in (first, days[-1])]
    assert first.day == 1 and step["removed_dates"] == [d.isoformat() for d in gone]
    assert step["removed_rows"] > 0 and step["kept_days"] == 2
    # The summary says so, in the language asked for.
    cli.print_summary(s, "", "es")
    said = " ".join(capsys.readouterr().out.split())
    assert "historial: 1 foto diaria antigua" in said and gone[0].isoformat() in said
    left = [first, days[-1], s.as_of]
    for name in ("customer_features", "customer_classes", "customer_clv", "contact_times"):
        t = wh.table(name)
        stored = sorted(t.select("as_of").distinct().as_of.to_pyarrow().to_pylist())
        # (the core steps above write no contact times: the full runs' days only)
        assert stored == (left if name != "contact_times" else [first, s.as_of]), name
    # The serving store holds the same history (publish removed the gone date there too).
    store = ServingStore(serving_path(wh.url, settings.serving_store))
    cur = store.cursor()
    assert cur is not None
    served = cur.execute("SELECT DISTINCT as_of FROM customer_classes ORDER BY 1").fetchall()
    assert [r[0] for r in served] == left
    # The next day still runs incrementally from the kept newest snapshot.
    _copy_days(src, wh, SPLIT + dt.timedelta(days=3), SPLIT + dt.timedelta(days=4))
    nxt = pipeline.run(wh, settings=settings)
    assert nxt.kind == "incremental"
    src.close()
