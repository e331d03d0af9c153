"""CLV scoring in the engine, the too-new label, and the value x potential grid."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import segmentum
from segmentum import demo, incremental, pipeline
from segmentum.config import load_settings
from segmentum.features import customer_features
from segmentum.models.clv import fit_models, score
from segmentum.segments.classes import GRID, classify
from segmentum.warehouse import Warehouse


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demo.generate(tmp_path_factory.mktemp("demo"), customers=1500, seed=5)


_INGESTED: dict[Path, pa.Table] = {}


def load(wh: Warehouse, files: dict[str, Path]) -> None:
    """The demo's transactions, ingested once for the module, written into ``wh``."""
    path = files["transactions"]
    if path not in _INGESTED:
        duck = segmentum.connect("duckdb://")
        segmentum.ingest("transactions", path, warehouse=duck)
        _INGESTED[path] = duck.table("transactions").to_pyarrow()
    wh.write("transactions", _INGESTED[path])


def test_clv_is_scored_in_the_engine_and_agrees_with_the_models(
    backend: Warehouse, demo_files: dict[str, Path]
) -> None:
    load(backend, demo_files)
    as_of = dt.date(2026, 1, 1)
    feats = customer_features(backend.table("transactions"), as_of)
    models = fit_models(feats)
    clv = score(backend, feats, models, as_of, horizon_months=12, monthly_discount=0.0).execute()
    f = feats.execute().set_index("customer_id")
    c = clv.set_index("customer_id").loc[f.index]
    scored = c.clv_status == "scored"
    assert (c.loc[~scored].index == f.index[f["T"] < 4]).all()
    assert c.loc[~scored, "clv"].isna().all()
    ff = f[scored]
    p_alive = models.purchases.probability_alive(ff.x, ff.t_x, ff["T"])
    np.testing.assert_allclose(c.loc[scored, "p_alive"], p_alive, rtol=1e-9)
    np.testing.assert_allclose(c.loc[scored, "churn_probability"], 1 - p_alive, rtol=1e-9)
    purchases = models.purchases.expected_purchases(12 * 365.25 / 12 / 7, ff.x, ff.t_x, ff["T"])
    spend = models.spend.expected_spend(ff.x, ff.monetary_value)
    # Undiscounted CLV is spend x purchases over the horizon.
    np.testing.assert_allclose(c.loc[scored, "clv"], spend * purchases, rtol=1e-6)
    assert (c.loc[scored, "expected_next_purchase"] > as_of.isoformat()).all()
    # Discounted: the engine's CLV is the in-memory API's, customer by customer.
    discounted = score(backend, feats, models, as_of, monthly_discount=0.02).execute()
    d = discounted.set_index("customer_id").loc[ff.index]
    in_memory = models.spend.customer_lifetime_value(
        models.purchases, ff.x, ff.t_x, ff["T"], ff.monetary_value.fillna(0), monthly_discount=0.02
    )
    np.testing.assert_allclose(d.clv, in_memory, rtol=1e-6)
    assert (d.clv < c.loc[scored, "clv"] + 1e-9).all()


def test_the_value_potential_grid_names_every_scored_customer(
    wh: Warehouse, demo_files: dict[str, Path]
) -> None:
    load(wh, demo_files)
    as_of = dt.date(2026, 1, 1)
    feats = customer_features(wh.table("transactions"), as_of)
    clv = score(wh, feats, fit_models(feats), as_of)
    c = classify(feats, clv=clv).execute()
    english = {v[0] for v in GRID.values()} | {"Too new to judge"}
    assert set(c.value_potential) <= english and c.value_potential.notna().all()
    stars = c[c.value_potential == "Stars"]
    assert (stars.value_tier == "high").all() and (stars.potential_tier == "high").all()
    assert (c.value_potential_es[c.value_potential == "Stars"] == "Estrellas").all()


def test_discounting_lowers_clv(wh: Warehouse, demo_files: dict[str, Path]) -> None:
    load(wh, demo_files)
    as_of = dt.date(2026, 1, 1)
    feats = customer_features(wh.table("transactions"), as_of)
    models = fit_models(feats)
    plain = score(wh, feats, models, as_of, monthly_discount=0.0).clv.sum().execute()
    discounted = score(wh, feats, models, as_of, monthly_discount=0.02).clv.sum().execute()
    assert discounted < plain


def test_the_pipeline_skips_clv_when_nobody_bought_twice(wh: Warehouse, tmp_path: Path) -> None:
    rows = "".join(f"C{i},2024-01-{1 + i % 28:02d},{10 + i}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("customer_id,date,amount\n" + rows)
    segmentum.ingest("transactions", tmp_path / "t.csv", warehouse=wh)
    summary = pipeline.run(wh)
    assert any("lifetime value not computed" in w for w in summary.warnings)
    assert [s["status"] for s in summary.steps if s["step"] == "clv"] == ["skipped"]
    assert summary.customers == 40 and not summary.value_potential


def test_churn_model_is_judged_on_a_later_date_beside_bgnbd(
    wh: Warehouse, demo_files: dict[str, Path]
) -> None:
    from segmentum.models.churn import evaluate

    load(wh, demo_files)
    e = evaluate(wh.table("transactions"), dt.date(2025, 4, 1), 90)
    assert e.test_as_of == dt.date(2025, 6, 30)
    assert list(e.metrics.index) == ["gradient boosting", "BG/NBD"]
    assert (e.metrics.AUC > 0.75).all()  # planted segments make churn learnable
    assert 0 < e.churn_rate < 1
    assert set(e.calibration.model) == {"gradient boosting", "BG/NBD"}
    assert e.calibration.groupby("model").customers.sum().eq(e.customers).all()


def test_churn_evaluation_needs_history_after_the_test_date(
    wh: Warehouse, demo_files: dict[str, Path]
) -> None:
    from segmentum.errors import ModelError
    from segmentum.models.churn import evaluate

    load(wh, demo_files)
    with pytest.raises(ModelError, match="not enough history"):
        evaluate(wh.table("transactions"), dt.date(2025, 10, 1), 90)


def test_classify_after_a_run_keeps_the_potential_tier_and_the_lookup_agrees(
    tmp_path: Path, service_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`segmentum classify` recomputes classes on its own: it must reuse the run's CLV rows
    (today both the potential tier and the grid went from every customer to none) and refresh
    the service's lookup table. On a copy of the demo warehouse a whole run built."""
    from typer.testing import CliRunner

    from segmentum.cli import app

    (tmp_path / "w.duckdb").write_bytes(service_db.read_bytes())
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    wh = segmentum.connect(url)

    def filled() -> tuple[int, int, int]:
        c = wh.table("customer_classes")
        c = c.filter(c.as_of == c.as_of.max())
        lk = wh.table("customer_lookup")
        return (
            int(c.potential_tier.notnull().sum().execute()),
            int(c.value_potential.notnull().sum().execute()),
            int(lk.potential_tier.notnull().sum().execute()),
        )

    before = filled()
    assert before[0] > 500 and before[0] == before[1] == before[2]
    wh.close()
    for name in ("SEGMENTUM_DISCOVER_SEGMENTS", "SEGMENTUM_PURCHASE_MODEL"):
        monkeypatch.delenv(name)  # the settings the warehouse was run with (SERVICE_SETTINGS)
    out = CliRunner().invoke(app, ["classify", "--warehouse", url])
    assert out.exit_code == 0, out.output
    wh = segmentum.connect(url)
    assert filled() == before
    # The run's features were current, so they were kept: the next run is still incremental
    # (it was a full one, "the stored features ... were rewritten since the last run").
    day = incremental.load_state(wh).as_of
    plan = incremental.plan(wh, day, load_settings())
    assert (plan.kind, plan.changed_count) == (incremental.INCREMENTAL, 0), plan.reason
    wh.close()


@pytest.mark.parametrize("model", ["BG/NBD", "MBG/NBD", "Pareto/NBD"])
@pytest.mark.parametrize("keyed_by", ["customer", "summary"])
def test_a_calibrated_churn_table_scores_with_every_purchase_model(
    wh: Warehouse, demo_files: dict[str, Path], model: str, keyed_by: str
) -> None:
    """The run joins the calibrated churn model's probabilities to the scores. With Pareto/NBD
    (whose P(alive) is computed per distinct row, not in the engine) building the scores
    raised an Ibis IntegrityError, so `segmentum run` crashed wherever the automatic choice
    picked Pareto/NBD on data with enough history for the churn model."""
    load(wh, demo_files)
    as_of = dt.date(2026, 1, 1)
    feats = customer_features(wh.table("transactions"), as_of)
    models = fit_models(feats, models=(model,))
    assert models.purchase_model == model
    f = feats.select("customer_id", "x", "t_x", "T").execute()
    half = f.iloc[: len(f) // 2]  # the others fall back to 1 - P(alive)
    if keyed_by == "customer":
        churn = pa.table(
            {
                "customer_id": half.customer_id.to_numpy(),
                "churn_probability": np.full(len(half), 0.25),
                "churn_source": ["gradient boosting"] * len(half),
            }
        )
    else:
        keys = half[["x", "t_x", "T"]].drop_duplicates()
        f = f.merge(keys.assign(_in=True), on=["x", "t_x", "T"], how="left")
        half = f[f._in.fillna(False).astype(bool)]
        churn = pa.table(
            {
                **{k: keys[k].to_numpy() for k in ("x", "t_x", "T")},
                "churn_probability": np.full(len(keys), 0.25),
                "churn_source": ["gradient boosting"] * len(keys),
            }
        )
    scored = score(wh, feats, models, as_of, churn=wh.from_arrow(churn, "churn")).execute()
    c = scored.set_index("customer_id")
    ok = c.clv_status == "scored"
    calibrated = c.index.isin(half.customer_id) & ok
    assert calibrated.any() and (ok & ~calibrated).any()
    assert (c.churn_probability[calibrated] == 0.25).all()
    assert (c.churn_source[calibrated] == "gradient boosting").all()
    rest = ok & ~calibrated
    r = f.set_index("customer_id").loc[c.index[rest]]
    alive = models.purchases.probability_alive(r.x, r.t_x, r["T"])
    np.testing.assert_allclose(c.churn_probability[rest], 1 - alive, rtol=1e-9)
    assert (c.churn_source[rest] == model).all()
    assert len(c) == len(f)
