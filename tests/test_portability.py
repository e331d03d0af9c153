"""The same pipeline code gives the same answers on DuckDB, on Spark and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import html
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from tests.conftest import serving, write

import segmentum
from segmentum import demo, pipeline
from segmentum.config import Settings, load_settings
from segmentum.features import customer_features
from segmentum.segments.classes import classify
from segmentum.warehouse import Warehouse


@pytest.mark.spark_core
def test_ingest_reports_the_same_on_every_backend(backend: Warehouse, tmp_path: Path) -> None:
    text = "id_cliente;fecha;importe\nA1;05/03/2024 10:00;12,50\nA1;05/03/2024 10:00;12,50\nA2;31/02/2024;3\n;06/03/2024;1.234,50\n"
    [r] = segmentum.ingest("transactions", write(tmp_path / "s.csv", text), warehouse=backend)
    assert (r.rows_read, r.accepted, r.quarantined, r.anonymous, r.duplicates) == (4, 2, 2, 1, 1)
    q = backend.table("quarantine").order_by("source_row").execute()
    assert q.reason.tolist() == ["exact duplicate of row 1", "timestamp is not a date/time"]
    assert sorted(backend.table("transactions").amount.execute()) == [12.5, 1234.5]


@pytest.mark.spark_core
def test_loading_again_adds_only_new_facts_and_replaces_corrected_cells_on_every_backend(
    backend: Warehouse, tmp_path: Path
) -> None:
    """An overlapping survey export adds only its new answers (empty comments match), and a
    corrected census replaces the cells it corrects (a cell without a period is a cell)."""
    head = "cliente;fecha;nps;comentario\n"
    rows = "A1;05/03/2024;9;\nA2;05/03/2024;3;lento\n"
    segmentum.ingest("responses", write(tmp_path / "r1.csv", head + rows), warehouse=backend)
    more = rows + "A3;06/03/2024;10;\n"
    [r] = segmentum.ingest("responses", write(tmp_path / "r2.csv", head + more), warehouse=backend)
    assert (r.accepted, r.already_loaded) == (1, 2)
    assert int(backend.table("responses").count().execute()) == 3
    for n in (7000, 7100):
        text = f"region;population\nMadrid;{n}\nCeuta;80\n"
        segmentum.ingest("population", write(tmp_path / f"p{n}.csv", text), warehouse=backend)
    got = backend.table("population").execute().sort_values("region")
    assert got.population.tolist() == [80, 7100]


# In `make test-spark` only: the whole-product comparison below covers features and classes.
@pytest.mark.spark
def test_features_and_classes_are_identical_on_duckdb_and_spark(
    tmp_path: Path, spark_session: object
) -> None:
    files = demo.generate(tmp_path / "demo", customers=400, seed=11)
    duck = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    segmentum.ingest("transactions", files["transactions"], warehouse=duck)
    spark = segmentum.connect("pyspark", spark_session=spark_session)
    spark.write("transactions", duck.table("transactions").to_pyarrow())
    as_of = dt.date(2025, 7, 1)
    results = []
    for wh in (duck, spark):
        f = customer_features(wh.table("transactions"), as_of)
        joined = f.join(classify(f).drop("as_of"), "customer_id")
        results.append(joined.execute().sort_values("customer_id").reset_index(drop=True))
    a, b = results
    assert len(a) > 300
    pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False, check_exact=False, rtol=1e-9)


@pytest.mark.postgres
def test_the_whole_pipeline_gives_the_same_answers_on_duckdb_and_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL cannot read the user's files: they are parsed and checked in an embedded
    DuckDB and streamed in; every step after that runs in PostgreSQL."""
    files = demo.generate(tmp_path / "demo", customers=400, seed=5)
    duck = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    pg = segmentum.connect(postgres_url)
    runs = [pipeline.run(wh, data=files["transactions"].parent) for wh in (duck, pg)]
    first, second = ([s["step"] for s in r.steps] for r in runs)
    assert first == second
    counts = [
        {(b.table_name, b.rows_read, b.accepted, b.quarantined, b.duplicates) for b in batches}
        for batches in (wh.table("ingest_batches").execute().itertuples() for wh in (duck, pg))
    ]
    assert counts[0] == counts[1] and len(counts[0]) >= 4
    for name, key in (
        ("customer_features", "customer_id"),
        ("customer_classes", "customer_id"),
        ("customer_clv", "customer_id"),
        ("segment_members", ["segment", "customer_id"]),
    ):
        a, b = (
            wh.table(name)
            .drop("run_id" if "run_id" in wh.table(name).columns else [])
            .execute()
            .sort_values(key)
            .reset_index(drop=True)
            for wh in (duck, pg)
        )
        assert len(a) > 0, name
        # The model fits agree to the optimiser's tolerance, not to the last digit.
        rtol = 1e-4 if name == "customer_clv" else 1e-9
        pd.testing.assert_frame_equal(
            a, b[a.columns], check_dtype=False, check_exact=False, rtol=rtol, obj=name
        )
    # A second run of the same files loads nothing twice.
    [again] = segmentum.ingest("transactions", files["transactions"], warehouse=pg)
    assert again.skipped
    assert int(pg.table("transactions").count().execute()) == int(
        duck.table("transactions").count().execute()
    )


# ------------------------------------------------------------------ the whole product on Spark
# Columns that name a run, a batch or when it happened: they differ between any two runs.
_PER_RUN = {
    "run_id",
    "batch_id",
    "started_at",
    "finished_at",
    "created_at",
    "updated_at",
    "refreshed_at",
    "loaded_at",
    "published_at",
    "steps",  # the seconds each step took
    "export_id",
    "path",  # files written, each run in its own folder
}
# The model fits (CLV, churn) agree to the optimiser's tolerance, not to the last digit, as on
# PostgreSQL, and so does what is computed from them; everything else to 1e-9.
_FITTED = {
    "customer_clv",
    "clv_models",
    "churn_calibration",
    "market_cells",
    "market_runs",
    "dashboard_cache",
    "campaign_pages",
}
_FITTED_COLUMNS = {"clv", "expected_purchases", "p_alive", "churn_probability"}
_FITTED_COLUMNS |= {"expected_next_purchase"}
# Each engine's own row hash: a change detector, equal only within one engine.
_ENGINE_OWN = {("rollup_state", "checksum")}
# The incremental run's saved state: that engine's fingerprints of the lines, the run id and
# the fitted models (as in customer_clv, to the optimiser's tolerance).
_ENGINE_OWN |= {("run_state", "state")}


def _close(a: object, b: object, rtol: float) -> bool:
    """Equal values, numbers within ``rtol`` (NaN and None alike), JSON text compared parsed."""
    import json
    import math

    if isinstance(a, str) and isinstance(b, str) and a[:1] in "[{" and a != b:
        try:
            a, b = json.loads(a), json.loads(b)
        except ValueError:
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - _PER_RUN
        return all(_close(a.get(k), b.get(k), rtol) for k in keys)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b, strict=True))
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (a, b)]
    if any(missing):
        return all(missing)
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)
    return a == b


def _rows(wh: Warehouse, name: str) -> tuple[list[str], list[tuple[object, ...]]]:
    t = wh.table(name)
    cols = sorted(c for c in t.columns if c not in _PER_RUN and (name, c) not in _ENGINE_OWN)
    data = t.select(*cols).to_pyarrow().to_pylist()

    def key(r: dict[str, object]) -> tuple[str, ...]:
        return tuple(str(r[c]) for c in cols if not isinstance(r[c], float))

    ordered = sorted(data, key=key)
    return cols, [
        tuple(sorted(v) if isinstance(v, list) else v for v in r.values()) for r in ordered
    ]


def differences(a: Warehouse, b: Warehouse) -> list[str]:
    """Every table of ``a`` and ``b`` compared: same tables, columns and rows; numbers within
    1e-9 relative (1e-4 for model fits and what derives from them)."""
    problems = []
    # Staged results (_seg_*) and ibis's in-memory uploads (ibis_*) are not outputs.
    names = [
        sorted(n for n in wh.con.list_tables() if not n.startswith(("_", "ibis_"))) for wh in (a, b)
    ]
    if names[0] != names[1]:
        problems.append(f"tables differ: {sorted(set(names[0]) ^ set(names[1]))}")
    for name in sorted(set(names[0]) & set(names[1])):
        (cols, x), (cols_b, y) = _rows(a, name), _rows(b, name)
        if cols != cols_b:
            problems.append(f"{name}: columns differ: {sorted(set(cols) ^ set(cols_b))}")
            continue
        if len(x) != len(y):
            problems.append(f"{name}: {len(x)} rows against {len(y)}")
            continue
        for i, c in enumerate(cols):
            rtol = 1e-4 if name in _FITTED or c in _FITTED_COLUMNS else 1e-9
            bad = [(r[i], s[i]) for r, s in zip(x, y, strict=True) if not _close(r[i], s[i], rtol)]
            if bad:
                problems.append(f"{name}.{c}: {len(bad)} rows differ, e.g. {bad[0]!r}"[:400])
    return problems


def _whole_product(wh: Warehouse, data: Path, settings: Settings, out: Path) -> dict[str, Any]:
    """Everything a user does after loading: the run, history, a campaign (audience, dry run,
    a send to files), look-alikes and the report. Returns what does not land in a table."""
    from segmentum.campaigns.core import Campaigns
    from segmentum.history.cohorts import cohorts, forecast
    from segmentum.history.migration import migration
    from segmentum.history.snapshots import backfill, snapshot_dates
    from segmentum.report import write_report
    from segmentum.segments.lookalike import find_lookalikes

    summary = pipeline.run(wh, data=data, settings=settings)
    backfill(wh, periods=3, settings=settings)
    dates = snapshot_dates(wh)
    cs = Campaigns(wh, settings)
    # The id seeds the control group: the same on both engines.
    campaign = cs.create("vuelve", "winback", "file", seed=1, campaign_id="vuelve-e2e")
    now = dt.datetime(2026, 1, 5, 9, 0)
    plan = cs.dry_run(campaign, now=now)
    sent = cs.send(campaign, now=now, immediately=True, out_dir=out / "sends")
    files = sorted(p for p in (out / "sends").iterdir() if p.suffix in (".csv", ".json"))
    alike = find_lookalikes(wh, "value_tier == 'high'", top=5)
    report = write_report(wh, out / "report.html", "es")
    return {
        "steps": [(s["step"], s["status"]) for s in summary.steps],
        "migration": migration(wh, dates[-2], dates[-1], "value_tier").to_dict(),
        "cohorts": cohorts(wh).rows,
        "forecast": forecast(wh, "value_tier").to_dict(),
        "dry run": {k: v for k, v in plan.items() if k != "examples"},
        "sent": (sent.delivered, sent.control, sent.failed),
        # The same lines; their order in a file is the engine's.
        "sent files": [(f.name, sorted(f.read_text(encoding="utf-8").splitlines())) for f in files],
        "look-alikes": alike.top.drop(columns=["why"], errors="ignore").to_dict("records"),
        "report": len(report.read_text()) > 10_000,
    }


@pytest.fixture(scope="module")
def spark_and_duckdb(
    tmp_path_factory: pytest.TempPathFactory, spark_session: Any
) -> Iterator[dict[str, Any]]:
    """The B2B demo (200 customers: prospects and look-alikes included) through the whole
    product once on DuckDB and once on the session's Spark, which publishes a serving store."""
    root = tmp_path_factory.mktemp("spark-e2e")
    data = demo.generate(root / "demo", customers=200, seed=3, b2b=True)["transactions"].parent
    settings = load_settings()
    duck = segmentum.connect(f"duckdb:///{root / 'w.duckdb'}")
    spark = segmentum.connect("pyspark", spark_session=spark_session)
    spark_settings = settings.with_overrides(
        serving_store=str(root / "spark.serving.duckdb"), state_store=str(root / "state.sqlite")
    )
    out = {
        "duckdb": _whole_product(duck, data, settings, root / "duckdb"),
        "pyspark": _whole_product(spark, data, spark_settings, root / "pyspark"),
    }
    yield {"duck": duck, "spark": spark, "settings": spark_settings, "out": out}
    duck.close()
    for name in spark.con.list_tables():
        spark.drop(name)


@pytest.mark.spark
@pytest.mark.spark_core
def test_the_whole_product_gives_the_same_answers_on_duckdb_and_spark(
    spark_and_duckdb: dict[str, Any],
) -> None:
    """Every step of the run, history, a campaign, look-alikes and the report on a local Spark
    session, against DuckDB: every table compared (numbers to 1e-9, model fits to 1e-4)."""
    duck, spark, out = (spark_and_duckdb[k] for k in ("duck", "spark", "out"))
    assert all(status == "ok" for _, status in out["duckdb"]["steps"]), out["duckdb"]["steps"]
    assert out["duckdb"]["sent"][0] > 0 and out["duckdb"]["report"]
    for key in out["duckdb"]:
        assert _close(out["duckdb"][key], out["pyspark"][key], 1e-4), key
    assert differences(duck, spark) == []


@pytest.mark.spark
@pytest.mark.spark_core
def test_spark_serves_lookups_and_pages_from_the_serving_store_without_spark_jobs(
    spark_and_duckdb: dict[str, Any], spark_session: Any
) -> None:
    """The Spark run published its read models into a DuckDB file: the API's lookups and the
    dashboard's pages answer from it, and no request starts a Spark job."""
    import httpx

    from segmentum.campaigns.core import Campaigns
    from segmentum.history.snapshots import snapshot_dates
    from segmentum.precompute import refresh_published
    from segmentum.segments.store import Segments
    from segmentum.service.app import create_app
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session
    from segmentum.service.state import StateStore

    duck, spark, settings = (spark_and_duckdb[k] for k in ("duck", "spark", "settings"))
    assert Path(settings.serving_store).is_file()
    # A local session hands the read models over as Parquet files, removed once copied.
    assert not list(Path(settings.serving_store).parent.glob(".*.parquet"))
    key = create_key(StateStore(settings.state_store), "admin", ["admin"])
    # What the commands after the run changed (the campaign, its send) is published, as each
    # command does at its end: the app below would otherwise publish it at its first page.
    refresh_published(spark, settings)
    app = create_app(spark, settings)
    session = create_session(app.state.svc.sessions, key)
    assert session is not None
    expected = duck.table("customer_lookup").execute().set_index("customer_id")
    ids = [str(expected.index.min()), str(expected.index.max())]
    tracker = spark_session.sparkContext.statusTracker()
    jobs_before = max(tracker.getJobIdsForGroup(None), default=-1)
    with serving(app) as base, httpx.Client(timeout=120) as http:
        head = {"X-API-Key": key}
        for cid in ids:
            got = http.get(f"{base}/v1/customers/{cid}", headers=head).json()
            assert got["customer_id"] == cid
            assert got["monetary"] == pytest.approx(expected.loc[cid, "monetary"], rel=1e-9)
            assert got["rfm_segment"] == expected.loc[cid, "rfm_segment"]
        assert http.get(f"{base}/v1/customers/nobody", headers=head).status_code == 404
        overview = http.get(f"{base}/v1/overview", headers=head).json()
        assert overview["customers"] == int((expected.frequency > 0).sum())
        signed_in = {SESSION_COOKIE: session.sid}
        for page in ("", "/migration", f"/customer?id={ids[0]}"):
            resp = http.get(f"{base}/dashboard{page}", cookies=signed_in)
            assert resp.status_code == 200 and "<html" in resp.text, page
        # The sent campaign's plan (the dry run of the sends made) is published with it.
        dry = http.post(f"{base}/v1/campaigns/vuelve-e2e/dry-run", headers=head).json()
        page = http.get(f"{base}/dashboard/campaigns?c=vuelve-e2e&lang=es", cookies=signed_in)
        # Its results and SMS receipt counts too (published with the campaign's page).
        measured = http.get(f"{base}/v1/campaigns/vuelve-e2e/results", headers=head)
        receipts = http.get(f"{base}/v1/campaigns/vuelve-e2e/sms-receipts", headers=head)
        # The saved segments, their members, the campaigns and the migration: published too.
        listed = http.get(f"{base}/v1/segments", headers=head).json()
        assert listed, "the demo saves segments"
        name = listed[0]["name"]
        members = http.get(f"{base}/v1/segments/{name}/members?limit=10000", headers=head)
        profile = http.get(f"{base}/v1/segments/{name}/profile", headers=head)
        micro = http.get(f"{base}/v1/micro-segments", headers=head)
        campaigns = http.get(f"{base}/v1/campaigns", headers=head).json()
        dates = snapshot_dates(duck)
        moved = http.get(
            f"{base}/v1/migration",
            params={"from": str(dates[-2]), "to": str(dates[-1]), "by": "value_tier"},
            headers=head,
        )
    assert max(tracker.getJobIdsForGroup(None), default=-1) == jobs_before
    assert [s["name"] for s in listed] == [s.name for s in Segments(duck, settings).list()]
    want_members = Segments(duck, settings).members(name).customer_id.to_pyarrow().to_pylist()
    assert members.status_code == 200, members.text
    assert sorted(members.json()["members"]) == sorted(want_members)[:10000]
    assert members.json()["size"] == len(want_members)
    assert [c["campaign_id"] for c in campaigns] == [
        c.campaign_id for c in Campaigns(duck, settings).list()
    ]
    assert moved.status_code == 200, moved.text
    # The explorer's profile and the default micro-segment tree, as the run cached them.
    from segmentum.precompute import cached, cached_profile

    assert profile.status_code == 200 and micro.status_code == 200, (profile.text, micro.text)
    assert _close(profile.json(), cached_profile(duck, name), 1e-9)
    assert _close(micro.json(), cached(duck, "micro"), 1e-9)
    assert "x-segmentum-published-at" not in moved.headers  # Spark's store is kept current
    want_moved = json.loads(json.dumps(spark_and_duckdb["out"]["duckdb"]["migration"], default=str))
    assert _close(moved.json(), want_moved, 1e-9)
    cs = Campaigns(duck, settings)
    from segmentum.campaigns.measure import results

    assert measured.status_code == 200
    # As the Spark warehouse computes them (a job each, after the requests).
    cost = cs.get("vuelve-e2e").cost_per_contact
    want_results = results(spark, "vuelve-e2e", settings, cost).to_dict()
    assert measured.json() == json.loads(json.dumps(want_results, default=str))
    # A file campaign has no SMS receipts: said (all zeros read as "none arrived yet").
    assert receipts.status_code == 422 and "not SMS" in receipts.json()["detail"]
    want = cs.dry_run(cs.get("vuelve-e2e"), lang="en")
    assert dry["logged"] and want["logged"] and dry["examples"]
    assert [pd.Timestamp(x.pop("when")) for x in dry["examples"]] == [
        pd.Timestamp(x.pop("when")) for x in want["examples"]
    ]
    assert dry == want
    assert page.status_code == 200 and 'id="published-note"' not in page.text
    audience = f"{want['audience']:,}".replace(",", ".")
    assert f": {audience} clientes en la audiencia</h2>" in page.text
    assert all(f">{html.escape(x['customer_id'])}</a>" in page.text for x in want["examples"])


@pytest.mark.spark
@pytest.mark.spark_core
def test_spark_pages_show_what_a_command_changed_since_the_run(
    spark_and_duckdb: dict[str, Any], spark_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Spark the explorer, campaigns and data pages read the published copy: a segment
    saved and a campaign created after the run were missing, under a banner saying that a run
    was updating the data (none was), and the explorer refused a rule's preview. What a
    command changes is now published at its end (only those tables; the customers' documents
    stay); the pages list it without a banner and read no Spark table, and a preview asked
    for runs on Spark."""
    import httpx

    from segmentum.campaigns.core import Campaigns
    from segmentum.precompute import refresh_published
    from segmentum.segments.store import Segments
    from segmentum.service.app import create_app
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session
    from segmentum.service.state import StateStore
    from segmentum.serving import ServingStore, documents_path

    spark, settings = spark_and_duckdb["spark"], spark_and_duckdb["settings"]
    refresh_published(spark, settings)  # what the fixture's commands left (run alone too)
    docs = documents_path(settings.serving_store).stat().st_mtime_ns
    Segments(spark, settings).create_and_compute("grandes_e2e", "monetary > 100")
    Campaigns(spark, settings).create("Vuelve e2e", "winback", "file", seed=2)
    assert {"segment_definitions", "segment_members", "campaigns"} <= spark.changed
    published = refresh_published(spark, settings)
    assert (
        {"segment_definitions", "segment_members", "campaigns", "campaign_pages"}
        >= set(published)
        >= {"segment_definitions", "segment_members", "campaigns"}
    )
    assert not spark.changed and refresh_published(spark, settings) == []
    assert documents_path(settings.serving_store).stat().st_mtime_ns == docs
    store = ServingStore(settings.serving_store)
    names = store.read(lambda w: set(w.table("segment_definitions").execute().name))
    assert names is not None and "grandes_e2e" in names
    members = spark.table("segment_members")
    size = int(members.filter(members.segment == "grandes_e2e").count().execute())
    held = store.read(lambda w: w.table("segment_members").execute())
    assert held is not None and int((held.segment == "grandes_e2e").sum()) == size > 0
    assert store.document("customer_lookup", str(held.customer_id.iloc[0])) is not None
    # The command line publishes what its command changed when it ends (a campaign created
    # there was missing from the pages and the API until the next run: the command's own
    # objects, and what they changed, were gone by then).
    from segmentum.cli import main

    monkeypatch.setenv("SEGMENTUM_SERVING_STORE", settings.serving_store)
    monkeypatch.setenv("SEGMENTUM_STATE_STORE", settings.state_store)
    made = ["campaign", "create", "Desde la consola", "--tactic", "winback", "--channel", "file"]
    assert main([*made, "-w", "pyspark"]) == 0
    listed = store.read(lambda w: set(w.table("campaigns").execute().name))
    assert listed is not None and "Desde la consola" in listed

    key = create_key(StateStore(settings.state_store), "admin", ["admin"])
    app = create_app(spark, settings)
    session = create_session(app.state.svc.sessions, key)
    assert session is not None
    tracker = spark_session.sparkContext.statusTracker()
    jobs_before = max(tracker.getJobIdsForGroup(None), default=-1)
    with serving(app) as base, httpx.Client(timeout=300) as http:
        jar = {SESSION_COOKIE: session.sid}
        for page, shown in (("explorer", "grandes_e2e"), ("campaigns", "Vuelve e2e"), ("data", "")):
            resp = http.get(f"{base}/dashboard/{page}", cookies=jar)
            assert resp.status_code == 200 and shown in resp.text, page
            assert 'id="published-note"' not in resp.text, page
        assert max(tracker.getJobIdsForGroup(None), default=-1) == jobs_before
        preview = http.get(
            f"{base}/dashboard/explorer", params={"rule": "monetary > 100"}, cookies=jar
        )
        assert preview.status_code == 200
        assert "this needs the warehouse it holds" not in preview.text
        assert f"{size:,}" in preview.text or str(size) in preview.text


HANDED = {
    "customer_lookup": "customer_id",
    "segment_members": "customer_id",
    "dashboard_cache": None,
}


def _sorted_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The rows as plain values, in one order: lists as tuples, missing values as None,
    numbers as floats to 12 significant digits, times as pandas timestamps."""

    def plain(v: Any) -> Any:
        if hasattr(v, "tolist") and not isinstance(v, str):
            v = v.tolist()
        if isinstance(v, list | tuple):
            return tuple(plain(x) for x in v)
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, bool | str):
            return v
        if isinstance(v, int | float):
            return float(f"{v:.12g}")
        if isinstance(v, dt.date):
            return pd.Timestamp(v)
        return v

    return sorted((tuple(plain(v) for v in row) for row in frame.itertuples(index=False)), key=repr)


@pytest.mark.spark
@pytest.mark.spark_core
def test_spark_hands_read_models_over_through_a_folder_both_sides_mount(
    spark_and_duckdb: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's executors write the read models into the spark_handoff folder, named as
    Spark names it (spark_handoff_uri) and read by this machine under its own path (here a
    link to the same folder, as a mount): the store holds the Spark tables' rows, and the
    folder is left empty; a folder this machine does not see is an error naming both."""
    from segmentum.errors import WarehouseError
    from segmentum.serving import publish

    spark = spark_and_duckdb["spark"]
    shared = tmp_path / "shared"
    shared.mkdir()
    (tmp_path / "mount").symlink_to(shared)
    monkeypatch.setenv("SEGMENTUM_SPARK_HANDOFF", str(tmp_path / "mount"))
    monkeypatch.setenv("SEGMENTUM_SPARK_HANDOFF_URI", f"file://{shared}")
    out = publish(spark, tmp_path / "store.duckdb", HANDED, run_id="handed")
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    for name in HANDED:
        assert out.tables[name] == len(spark.table(name).execute()) > 0, name
        got = _sorted_rows(con.execute(f"SELECT * FROM {name}").df())
        assert got == _sorted_rows(spark.table(name).execute()), name
    con.close()
    assert list(shared.iterdir()) == []
    # The next publish keeps the membership's dates the store holds; Spark writes no rows.
    again = publish(spark, tmp_path / "store.duckdb", HANDED, run_id="again")
    assert again.carried == ["segment_members"] and again.tables == out.tables
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    got = _sorted_rows(con.execute("SELECT * FROM segment_members").df())
    assert got == _sorted_rows(spark.table("segment_members").execute())
    con.close()
    assert list(shared.iterdir()) == []

    monkeypatch.setenv("SEGMENTUM_SPARK_HANDOFF_URI", f"file://{tmp_path / 'elsewhere'}")
    with pytest.raises(WarehouseError) as err:
        publish(spark, tmp_path / "other.duckdb", HANDED)
    assert "is not there on this machine" in str(err.value) and "spark_handoff_uri" in str(
        err.value.hint
    )
    assert not (tmp_path / "other.duckdb").exists()
    assert list(shared.iterdir()) == [] and list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.spark
@pytest.mark.spark_core
def test_without_a_shared_folder_the_read_models_stream_through_the_driver(
    spark_and_duckdb: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster whose executors share no folder with this machine (forced here with
    spark_handoff = driver): each read model comes through the driver a partition at a time,
    as Arrow written on the executors, with the rows and types Ibis's own collection gives
    (a float NaN is a null there too); no Parquet folder is written."""
    import pyarrow as pa

    from segmentum.serving import publish

    spark = spark_and_duckdb["spark"]
    monkeypatch.setenv("SEGMENTUM_SPARK_HANDOFF", "driver")
    store = tmp_path / "store.duckdb"
    out = publish(spark, store, HANDED, run_id="streamed")
    con = duckdb.connect(str(store), read_only=True)
    for name in HANDED:
        want = spark.table(name).execute()
        assert out.tables[name] == len(want) > 0, name
        assert _sorted_rows(con.execute(f"SELECT * FROM {name}").df()) == _sorted_rows(want)
    con.close()
    assert [p.name for p in tmp_path.iterdir() if "parquet" in p.name] == []

    # Batches of a table with every kind of value, against Ibis's whole collection.
    probe = spark.from_arrow(
        pa.table(
            {
                "id": ["a", "b", None, "ñandú"] * 40,
                "n": pa.array([1, None, 3, 4] * 40, pa.int64()),
                "x": pa.array([1.5, float("nan"), None, -2.0] * 40, pa.float64()),
                "day": pa.array([dt.date(2025, 1, 1), None, dt.date(2024, 2, 29), None] * 40),
                "at": pa.array([dt.datetime(2025, 1, 1, 13, 5, 7, 123456), None] * 80),
                "ok": [True, False, None, True] * 40,
            }
        ),
        "probe",
    )
    probe = probe.mutate(small=probe.n.cast("int32"))
    streamed = spark.batches(probe, 7).read_all()
    whole = probe.to_pyarrow()
    assert streamed.schema == whole.schema
    key = [("id", "ascending"), ("n", "ascending"), ("at", "ascending")]
    assert streamed.sort_by(key).to_pylist() == whole.sort_by(key).to_pylist()
    assert streamed.column("x").null_count == whole.column("x").null_count == 80
    empty = spark.batches(probe.filter(probe.n > 100)).read_all()
    assert empty.num_rows == 0 and empty.schema == whole.schema


@pytest.mark.spark
@pytest.mark.spark_core
@pytest.mark.postgres
def test_spark_publishes_to_postgres_through_parquet(
    spark_and_duckdb: dict[str, Any], postgres_url: str, tmp_path: Path
) -> None:
    """A Spark session publishing into a PostgreSQL serving store hands the tables over as
    Parquet too (not collected through pandas): the same rows and JSON documents as the
    Spark tables, no hand-off folder left behind, and the next publish carries the dates of
    the membership history that did not change."""
    from segmentum.serving import ServingStore, publish

    spark = spark_and_duckdb["spark"]
    pg = postgres_url.replace("postgres://", "postgresql://")
    out = publish(spark, pg, HANDED, run_id="spark", documents={"customer_lookup": "customer_id"})
    lookup = spark.table("customer_lookup").execute()
    assert out.tables["customer_lookup"] == len(lookup)
    assert out.tables["segment_members"] == len(spark.table("segment_members").execute())
    store = ServingStore(pg)
    for cid in lookup.customer_id.astype(str)[:5]:
        doc = store.document("customer_lookup", cid)
        assert isinstance(doc, str) and json.loads(doc)["customer_id"] == cid
    store.close()
    # The next publish copies the membership's unchanged dates inside PostgreSQL.
    again = publish(spark, pg, HANDED, run_id="spark2")
    assert again.carried == ["segment_members"]
    assert again.tables == out.tables
    assert not list(Path(tempfile.gettempdir()).glob(".serving.segmentum-*.parquet"))


@pytest.mark.spark
@pytest.mark.spark_core
def test_a_failure_inside_spark_is_a_failed_step_with_its_cause(
    spark_and_duckdb: dict[str, Any], spark_session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The invoice files vanish from under the table (runs last: it breaks the warehouse):
    the run log and the command line name the step and Spark's cause, in one line."""
    from segmentum.cli import main

    spark = spark_and_duckdb["spark"]
    for uri in spark_session.table("transactions").inputFiles():
        Path(uri.removeprefix("file:")).unlink()
    code = main(["run", "--warehouse", "pyspark"])  # the same session: getOrCreate finds it
    said = capsys.readouterr().err
    assert code == 4, said
    assert "step 'plan' failed on Spark:" in said and "does not exist" in said, said
    assert "Traceback" not in said and "\tat " not in said and "org.apache" not in said
    runs = spark.table("pipeline_runs").order_by("started_at").execute()
    last = runs.iloc[-1]
    assert last.status == "failed" and last.error.startswith("step 'plan' failed on Spark")
    assert json.loads(last.steps)[-1] == {
        "step": "plan",
        "status": "failed",
        "error": last.error.split(" (hint:")[0],
    }


def _small_jvm() -> dict[str, str]:
    """The environment of a Spark process a test starts beside its own session: the tests'
    Spark settings (conftest: the quick JIT tier, about 5 s less a process) with a smaller
    driver, so that two JVMs fit beside the session's."""
    import os

    conf = os.environ.get("SEGMENTUM_SPARK_CONF", "")
    return {**os.environ, "SEGMENTUM_SPARK_CONF": f"{conf};spark.driver.memory=1g".lstrip(";")}


@pytest.mark.spark
@pytest.mark.spark_core
def test_a_second_command_on_a_spark_folder_in_use_is_told_who_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Spark folder's metastore admits one process at a time: a second command failed deep
    in Spark ("Unable to instantiate SessionHiveMetaStoreClient"). It now waits a moment
    (lock_wait_seconds), then says, in the user's language, that the warehouse is busy, which
    process holds it and what to do; nothing of Spark is started."""
    import subprocess
    import sys

    from segmentum.cli import main

    url = f"pyspark:///{tmp_path / 'wh'}"
    data = write(tmp_path / "clientes.csv", "customer_id,email\nC1,a@b.c\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, segmentum\n"
            "from segmentum.ingest import ingest\n"
            f"wh = segmentum.connect({url!r})\n"
            f"ingest('customers', {str(data)!r}, warehouse=wh)\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_small_jvm(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("SEGMENTUM_LOCK_WAIT_SECONDS", "1")
        code = main(["segment", "list", "-w", url, "--lang", "es"])
        said = capsys.readouterr()
        text = " ".join((said.err + said.out).split())
        assert code != 0 and "ocupado" in text and f"(proceso {holder.pid})" in text, text
        assert "Traceback" not in text and "HiveMetaStore" not in text, text
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder ends: the folder is free again
        holder.wait(timeout=120)
    from segmentum.warehouse import _SPARK_FOLDERS

    assert str((tmp_path / "wh").resolve()) not in _SPARK_FOLDERS  # this process held nothing


SERVE_AND_LET_GO = """
import fcntl, sys
from segmentum.config import load_settings
from segmentum.service.core import Service

url, lock = sys.argv[1], sys.argv[2]

def free():
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True

svc = Service(url, load_settings())
print("inside", svc.locked(lambda: (svc.wh.has("customers"), free())), flush=True)
print("after", free(), flush=True)
count = lambda: int(svc.wh.table("customers").count().execute())
print("again", svc.locked(lambda: svc.locked(count)), free(), flush=True)
"""


@pytest.mark.spark
@pytest.mark.spark_core
def test_a_server_on_a_spark_folder_lets_it_go_after_each_use(tmp_path: Path) -> None:
    """`segmentum serve` on a Spark folder held it from its first page that needed the
    warehouse (a rule's preview, a dry run) until it stopped, so the nightly `segmentum run`
    on that folder failed. The server now lets the folder go after each use (publishing
    what it wrote first) and opens it again when next needed."""
    import subprocess
    import sys

    url = f"pyspark:///{tmp_path / 'wh'}"
    data = write(tmp_path / "clientes.csv", "customer_id,email\nC1,a@b.c\nC2,d@e.f\n")
    env = _small_jvm()
    exe = Path(sys.executable).with_name("segmentum")
    made = subprocess.run(
        [str(exe), "ingest", "customers", str(data), "-w", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr
    lock = tmp_path / "wh" / ".segmentum.lock"
    served = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LET_GO, url, str(lock)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    said = dict(line.split(" ", 1) for line in served.stdout.splitlines() if " " in line)
    assert said["inside"] == "(True, False)", said  # held while in use
    assert said["after"] == "True", said  # free between uses: a run may take it
    assert said["again"] == "2 True", said  # opened again (nested uses: once), let go again


@pytest.mark.spark
@pytest.mark.spark_core
def test_a_command_on_spark_prints_only_its_own_lines(tmp_path: Path) -> None:
    """A walk: every command on a Spark folder printed Spark's own lines (a warning about the
    host name, 'Setting default log level to "WARN"'), --lang es too. Only segmentum's lines
    remain (and the JVM's one note about its incubator modules, which no setting silences)."""
    import subprocess
    import sys

    data = write(tmp_path / "clientes.csv", "customer_id,email\nC1,a@b.c\nC2,d@e.f\n")
    exe = Path(sys.executable).with_name("segmentum")
    import os

    done = subprocess.run(
        [str(exe), "ingest", "customers", str(data), "-w", f"pyspark:///{tmp_path / 'wh'}"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400"},  # no progress line wrapped into pieces
    )
    assert done.returncode == 0, done.stderr
    assert "2 accepted" in done.stderr
    said = [
        line
        for line in done.stderr.splitlines()
        if line.strip()
        and not line.startswith("·")  # segmentum's progress (a long path wraps: its rest)
        and str(tmp_path) not in line
        and "incubator modules" not in line
    ]
    assert said == [], said
    assert "log level" not in done.stdout and "WARN" not in done.stdout
