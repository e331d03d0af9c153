"""Numbers a marketer acts on stay true on awkward data: tied spend, nobody buying twice, a
silent customer the model still calls alive."""

from __future__ import annotations

import re

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from segmentum.segments.classes import classify, lifecycle, lifecycle_note, value_tiers
from segmentum.warehouse import Warehouse


def features(**cols: object) -> ibis.Table:
    return ibis.memtable(pd.DataFrame(cols))


def test_customers_with_equal_spend_get_the_same_value_tier() -> None:
    # 20 customers at 100 make up most of the revenue; the cut at 80% falls inside the tie.
    spend = [100.0] * 20 + [10.0] * 30 + [1.0] * 50
    f = features(customer_id=[f"c{i:03d}" for i in range(len(spend))], monetary=spend)
    tiers = value_tiers(f).execute()
    by_spend = tiers.assign(spend=spend).groupby("spend").value_tier.nunique()
    assert (by_spend == 1).all(), tiers.groupby(["value_tier"]).size()
    assert set(tiers.value_tier[np.array(spend) == 100.0]) == {"high"}


def test_lifecycle_without_repeat_buyers_uses_recency_bands_and_says_so() -> None:
    """561 won deals, nobody bought twice: the deal won 8 days ago is new, not lost."""
    n = 561
    recency = np.linspace(0, 700, n).round()
    f = features(
        customer_id=[f"d{i}" for i in range(n)],
        x=np.zeros(n),
        interpurchase_mean=np.full(n, np.nan),
        recency_days=recency.astype(int),
        tenure_days=recency.astype(int),
    )
    stages = lifecycle(f).execute().set_index("customer_id")
    counts = stages.lifecycle_stage.value_counts()
    assert counts.get("lost", 0) < n / 10, counts
    eight = stages.loc[f"d{int(np.argmin(np.abs(recency - 8)))}"]
    assert eight.lifecycle_stage == "new"
    assert set(stages.lifecycle_basis) == {"population_recency"}
    note = lifecycle_note(f)
    assert note is not None and "Nobody has bought twice" in note[0] and "Nadie" in note[1]


def test_lifecycle_with_repeat_buyers_keeps_their_own_rhythm() -> None:
    f = features(
        customer_id=["a", "b", "c"],
        x=[3.0, 2.0, 0.0],
        interpurchase_mean=[10.0, 30.0, np.nan],
        recency_days=[5, 200, 3],
        tenure_days=[40, 260, 3],
    )
    stages = lifecycle(f).execute().set_index("customer_id")
    assert stages.loc["a", "lifecycle_stage"] == "active"
    assert stages.loc["b", "lifecycle_stage"] in {"lapsed", "lost"}
    assert set(stages.lifecycle_basis) == {"purchase_rhythm"}
    assert lifecycle_note(f) is None


def test_a_silent_customer_the_model_calls_alive_is_flagged() -> None:
    """Bought every 10 days, silent for 120: a P(alive) of 0.98 is not left unremarked."""
    n = 50
    ids = [f"c{i}" for i in range(n)]
    rng = np.random.default_rng(1)
    f = features(
        customer_id=ids,
        x=np.full(n, 5.0),
        interpurchase_mean=np.full(n, 10.0),
        recency_days=np.r_[120, rng.integers(0, 12, n - 1)],
        tenure_days=np.full(n, 200),
        frequency=np.full(n, 6),
        monetary=np.r_[5000.0, rng.uniform(10, 100, n - 1)],
        as_of=[pd.Timestamp("2025-01-01").date()] * n,
    )
    clv = ibis.memtable(
        pd.DataFrame(
            {
                "customer_id": ids,
                "clv_status": "scored",
                "clv": np.r_[9000.0, rng.uniform(10, 100, n - 1)],
                "p_alive": np.r_[0.98, np.full(n - 1, 0.9)],
            }
        )
    )
    c = classify(f, clv=clv).execute().set_index("customer_id")
    assert c.loc["c0", "value_potential"] == "Stars"
    assert (
        "silent 12.0x" in c.loc["c0", "alive_flag"]
        and "no es fiable" in c.loc["c0", "alive_flag_es"]
    )
    assert c.drop("c0").alive_flag.isna().all()


def test_cluster_names_cite_only_traits_a_real_part_of_the_cluster_shares() -> None:
    """A rare income band over-represented in a cluster (0.4% of it) must not name the
    cluster; a trait all of it shares does."""
    from segmentum.segments.profile import profile_segments

    rng = np.random.default_rng(0)
    n = 1000
    seg = np.repeat(["0", "1"], n)
    income = np.r_[
        np.where(np.arange(n) < 200, "low", "mid"),
        np.where(np.arange(n) < 596, "low", np.where(np.arange(n) < 996, "mid", "top")),
    ]
    spend = rng.gamma(2.0, 50.0, 2 * n)
    channel = np.r_[np.where(np.arange(n) < 150, "web", "store"), np.full(n, "web")]
    df = pd.DataFrame(
        {"seg": seg, "income_band": income, "monetary": spend, "preferred_channel": channel}
    )
    profiles = profile_segments(df, "seg", ["monetary"], ["income_band", "preferred_channel"])
    one = next(p for p in profiles.segments if p.segment == "1")
    tests = {t.feature: t for t in one.tests}
    assert tests["income_band"].q_value < 0.05 and tests["income_band"].effect >= 0.1
    assert tests["income_band"].segment_value == "low" and tests["income_band"].share > 0.5
    assert "income" not in one.name_en.lower()
    assert one.name_en == "Channel web"  # 100% of cluster 1 buy on the web, 57% overall
    assert one.name_es == "Canal web"


def test_a_cluster_is_never_named_after_a_missing_value() -> None:
    """Most of cluster 1 has no device on record (apps that do not send one): the missing
    value is still tested as a category, but "device (missing)" names nothing a marketer can
    use; the device the rest of the cluster does have may name it."""
    from segmentum.segments.profile import profile_segments

    rng = np.random.default_rng(1)
    n = 1000
    seg = np.repeat(["0", "1"], n)
    device = np.r_[
        np.where(np.arange(n) < 500, "desktop", "mobile"),
        np.where(np.arange(n) < 700, None, "tablet"),
    ]
    df = pd.DataFrame({"seg": seg, "preferred_device": device, "monetary": rng.gamma(2, 50, 2 * n)})
    profiles = profile_segments(df, "seg", ["monetary"], ["preferred_device"])
    one = next(p for p in profiles.segments if p.segment == "1")
    test = next(t for t in one.tests if t.feature == "preferred_device")
    assert test.q_value < 0.05 and test.segment_value == "tablet"
    assert "missing" not in one.name_en.lower() and "missing" not in one.name_es.lower()


def test_the_shared_rank_tests_give_scipys_numbers() -> None:
    """The profiles rank a column once for every labelling of the same rows (the dashboard
    profiles 20 saved segments on one sample): Kruskal-Wallis and Mann-Whitney from those
    ranks equal scipy's on each group's values, with ties, missing values, three groups, and
    tiny groups (scipy's exact test, which the shared ranks leave to scipy)."""
    from scipy import stats

    from segmentum.segments.profile import _Ranks

    rng = np.random.default_rng(7)
    n = 3000
    values = pd.Series(rng.integers(0, 40, n).astype(float))  # many ties
    values[rng.random(n) < 0.1] = np.nan
    labels = rng.choice(np.array(["a", "b", "c"]), n, p=[0.5, 0.3, 0.2])
    ranks = _Ranks(values)
    groups = [values[labels == g].dropna().to_numpy() for g in ("a", "b", "c")]
    h, p = ranks.kruskal([labels == g for g in ("a", "b", "c")])
    want = stats.kruskal(*groups)
    assert np.isclose(h, want.statistic, rtol=1e-12) and np.isclose(p, want.pvalue, rtol=1e-9)
    for inside in (labels == "b", labels != "b"):
        got = ranks.mann_whitney(inside)
        assert got is not None
        w = stats.mannwhitneyu(
            values[inside].dropna(), values[~inside].dropna(), alternative="two-sided"
        )
        assert got[0] == w.statistic and np.isclose(got[1], w.pvalue, rtol=1e-12)
    # Continuous values without ties, a group of 5 against 6: scipy's exact distribution.
    small = _Ranks(pd.Series(rng.normal(size=11)))
    assert small.mann_whitney(np.arange(11) < 5) is None
    # The profile as a whole: its tests on shared ranks are scipy's.
    df = pd.DataFrame({"seg": np.where(labels == "b", "in", "out"), "monetary": values})
    prof = profile_segments_tests(df)
    u = stats.mannwhitneyu(groups[1], values[labels != "b"].dropna(), alternative="two-sided")
    assert prof["in"].statistic == u.statistic and np.isclose(prof["in"].p_value, u.pvalue)


def test_profiles_counted_from_codes_give_what_pandas_gives_ties_included() -> None:
    """The profiles count categories with bincount over codes and compare labels once a
    segment: every segment's traits are those the plain pandas expressions give, including
    ties (two values wholly inside a segment have the same lift: the first in the aligned
    order names it), missing values, and three groups; the tree is scikit-learn's on the
    names."""
    from scipy import stats
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    from segmentum.segments.profile import MIN_TRAIT_SHARE, profile_segments

    rng = np.random.default_rng(11)
    for trial in range(24):
        n = int(rng.integers(40, 2500))
        df = pd.DataFrame(
            {
                "monetary": rng.gamma(2, 50, n).round(0),
                "age": np.where(rng.random(n) < 0.1, np.nan, rng.integers(18, 80, n)),
                "gender": rng.choice(np.array(["female", "male", None], object), n),
                "city": rng.choice(list("abcdefg"), n),
            }
        )
        df["seg"] = (
            np.where(df.city.isin(["a", "b"]), "in", "out")  # a and b: the same lift
            if trial % 3 == 0
            else rng.choice(["x", "y", "z"], n)
            if trial % 3 == 1
            else np.where(rng.random(n) < 0.15, "in", "out")
        )
        shared: dict[str, object] = {}
        for _ in range(2):  # the second call reads what the first shared
            prof = profile_segments(
                df, "seg", ["monetary", "age"], ["gender", "city"], shared=shared
            )
        for seg in prof.segments:
            inside = df.seg == seg.segment
            got = {t.feature: t for t in seg.tests}
            for c in ("monetary", "age"):
                a, b = df[c][inside].dropna(), df[c][~inside].dropna()
                assert got[c].segment_value == a.mean() and got[c].rest_value == b.mean()
            for c in ("gender", "city"):
                col = df[c].fillna("(missing)").astype(str)
                share = col[inside].value_counts(normalize=True)
                lift = (
                    (share / col.value_counts(normalize=True))
                    .dropna()
                    .drop("(missing)", errors="ignore")
                )
                named = share.drop("(missing)", errors="ignore")
                common = lift[named.reindex(lift.index).fillna(0) >= MIN_TRAIT_SHARE]
                top = str(common.idxmax()) if len(common) else str(named.idxmax())
                t = got[c]
                assert (t.segment_value, t.lift, t.share) == (top, lift[top], share[top]), c
                assert t.rest_value == col[~inside].mode().iat[0]
                chi2 = stats.chi2_contingency(pd.crosstab(inside, col))[0]
                assert t.statistic == pytest.approx(chi2, rel=1e-12)
        y = df.seg.astype(str)
        strat = y if y.value_counts().min() >= 2 else None
        xtr, xte, ytr, yte = train_test_split(
            shared["x"], y, test_size=0.3, random_state=0, stratify=strat
        )
        tree = DecisionTreeClassifier(
            max_depth=3, min_samples_leaf=max(5, n // 200), random_state=0
        )
        tree.fit(xtr, ytr)
        assert prof.tree_accuracy == (tree.predict(xte) == yte).mean()
        assert prof.tree_baseline == yte.value_counts(normalize=True).max()
        assert all(f"class: {s}" in prof.tree_rules for s in set(tree.predict(xte)))


def profile_segments_tests(df: pd.DataFrame) -> dict[str, object]:
    from segmentum.segments.profile import profile_segments

    profiles = profile_segments(df, "seg", ["monetary"], min_size=10)
    return {
        p.segment: next(t for t in p.tests if t.feature == "monetary") for p in profiles.segments
    }


def simulated_lines(
    n: int, r: float, alpha: float, a: float, b: float, weeks: int, seed: int
) -> pd.DataFrame:
    """Invoice lines of BG/NBD customers acquired over the first half of ``weeks`` weeks."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-02")
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    rows = []
    for i in range(n):
        t = rng.uniform(0, weeks / 2)
        while t < weeks:
            rows.append((f"c{i}", start + pd.Timedelta(days=int(t * 7)), 10.0 + i % 7))
            if rng.random() < p[i]:
                break
            t += rng.exponential(1 / lam[i])
    df = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    return df.assign(quantity=1.0, invoice_id=[str(k) for k in range(len(df))])


def test_churn_is_calibrated_on_history_when_dropout_is_not_identified(wh: Warehouse) -> None:
    """Everyone has the same 10% chance of leaving after a purchase: BG/NBD's a and b run to
    their bound. P(alive) is then not shown; churn is the calibrated chance of no purchase in
    90 days, and on a date the calibration never saw it matches what happened."""
    import datetime as dt

    from segmentum.features import btyd_summary
    from segmentum.models.clv import fit_for_run, record, score

    lines = simulated_lines(2500, r=0.8, alpha=4.0, a=1e5, b=9e5, weeks=104, seed=2)
    wh.write("transactions", pa.Table.from_pandas(lines, preserve_index=False))
    tx = wh.table("transactions")
    as_of = dt.date(2024, 12, 30)
    feats = btyd_summary(tx, as_of)
    models, churn = fit_for_run(wh, feats, as_of, source=tx, purchase_model="BG/NBD")
    assert not models.dropout_identified and churn is not None
    cal = models.churn_calibration
    assert cal is not None and cal.source == "calibrated BG/NBD"
    rel = cal.reliability
    assert rel.customers.sum() > 1000 and len(rel) == 10
    # Out of time: calibrated predictions within 0.08 of the observed rate in every decile.
    assert (rel.predicted - rel.observed).abs().max() < 0.08, rel
    brier = cal.metrics["Brier score"]
    assert brier["calibrated BG/NBD"] < brier["base rate"]
    assert "a date it never saw" in cal.sentence() and "nunca" not in cal.sentence()
    out = score(wh, feats, models, as_of, churn=churn).execute()
    scored = out[out.clv_status == "scored"]
    assert scored.p_alive.isna().all()
    assert (scored.churn_source == "calibrated BG/NBD").all()
    # A probability from a finite sample is never exactly 0 or 1 (Jeffreys' prior per step).
    assert scored.churn_probability.between(0, 1, inclusive="neither").all()
    record(wh, models, as_of, "r1")
    stored = wh.table("churn_calibration").execute()
    assert len(stored) == 10 and set(stored.source) == {"calibrated BG/NBD"}
    stored = wh.table("clv_models").execute()
    assert stored.chosen.tolist() == [True]
    # The fit that scores (all the data) ran to its bound: the row says so of final_params.
    assert stored.final_dropout_identified.tolist() == [False]


def test_the_churn_map_gives_each_step_its_posterior_mean_and_stays_monotone() -> None:
    """Known answer: raw scores in bands whose customers churn 0 of 40, 30 of 60 and 40 of 40
    (the churners first in each band, so each band is one isotonic step). Each step says
    (k + 1/2) / (n + 1), not 0%, 50% and 100%. Then 1 of 10 below 12 of 100: shrunk, the small
    step (13.6%) would sit above the big one (12.4%); they are pooled, weighted by size."""
    from segmentum.models.calibrate import _isotonic_map

    def bands(*counts: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        ys = [np.r_[np.ones(k), np.zeros(n - k)] for k, n in counts]
        return np.linspace(0, 1, sum(n for _, n in counts)), np.concatenate(ys)

    raw, churned = bands((0, 40), (30, 60), (40, 40))
    p = np.interp(raw, *_isotonic_map(raw, churned))
    assert np.allclose(np.unique(p), [0.5 / 41, 30.5 / 61, 40.5 / 41])
    assert (np.diff(p) >= 0).all()
    raw, churned = bands((1, 10), (12, 100))
    p = np.interp(raw, *_isotonic_map(raw, churned))
    pooled = (10 * 1.5 / 11 + 100 * 12.5 / 101) / 110
    assert np.allclose(p, pooled)


def summary_frame(x: np.ndarray, tx: np.ndarray, t: np.ndarray, spend: np.ndarray) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame(
            {
                "customer_id": [f"c{i}" for i in range(len(x))],
                "x": x,
                "t_x": tx,
                "T": t,
                "monetary_value": np.where(x > 0, spend, np.nan),
            }
        )
    )


def test_constant_spend_uses_the_empirical_mean_with_a_label(wh: Warehouse) -> None:
    import datetime as dt

    from tests.test_models import simulate_bgnbd

    from segmentum.models.clv import fit_models, score

    x, tx, t = simulate_bgnbd(1500, 0.5, 5.0, 0.8, 2.5, 52.0, seed=1)
    feats = summary_frame(x, tx, t, np.full(len(x), 19.99))
    models = fit_models(feats, models=("BG/NBD",))
    assert models.spend is None and models.spend_basis == "empirical_mean"
    assert any("spends the same per purchase (19.99)" in n for n in models.notes)
    out = score(wh, feats, models, dt.date(2025, 1, 1)).execute()
    assert np.allclose(out.expected_spend.dropna(), 19.99)
    assert set(out.spend_basis) == {"empirical_mean"}


def test_sales_without_amounts_skip_the_spend_model_and_say_so() -> None:
    from tests.test_models import simulate_bgnbd

    from segmentum.models.clv import fit_models

    x, tx, t = simulate_bgnbd(800, 0.5, 5.0, 0.8, 2.5, 52.0, seed=2)
    feats = summary_frame(x, tx, t, np.full(len(x), np.nan))
    feats = feats.mutate(monetary=ibis.null("float64"))  # a log loaded with --no-amount
    models = fit_models(feats, models=("BG/NBD",))
    assert models.spend is None and models.spend_basis == "no_amounts"
    assert models.notes == [
        "spend models skipped: the sales were loaded without amounts (--no-amount); purchase "
        "frequency, P(alive) and lifecycle are computed, spend, value tiers and lifetime value "
        "are not"
    ]
    assert models.notes_es[0].startswith("modelos de gasto omitidos: las ventas se cargaron sin")


def test_spend_tied_to_frequency_is_not_given_to_gamma_gamma() -> None:
    from tests.test_models import simulate_bgnbd

    from segmentum.models.clv import fit_models

    x, tx, t = simulate_bgnbd(1500, 0.5, 5.0, 0.8, 2.5, 52.0, seed=1)
    rng = np.random.default_rng(3)
    spend = 10.0 * x + rng.uniform(0, 5, len(x))  # frequent buyers spend more per purchase
    models = fit_models(summary_frame(x, tx, t, spend), models=("BG/NBD",))
    assert models.spend is None and models.spend_basis == "empirical_mean"
    assert any("strongly correlated with purchase frequency" in n for n in models.notes)
    assert any("muy correlacionado" in n for n in models.notes_es)


def test_spend_that_varies_independently_keeps_gamma_gamma() -> None:
    from tests.test_models import simulate_bgnbd

    from segmentum.models.clv import fit_models

    x, tx, t = simulate_bgnbd(1500, 0.5, 5.0, 0.8, 2.5, 52.0, seed=1)
    spend = np.random.default_rng(4).gamma(4.0, 10.0, len(x))
    models = fit_models(summary_frame(x, tx, t, spend), models=("BG/NBD",))
    assert models.spend is not None and models.spend_basis == "gamma_gamma"


def test_pareto_nbd_is_scored_in_the_engine_like_in_memory(wh: Warehouse) -> None:
    import datetime as dt

    from tests.test_models import simulate_bgnbd

    from segmentum.models.clv import fit_models, score

    x, tx, t = simulate_bgnbd(800, 0.5, 5.0, 0.8, 2.5, 52.0, seed=6)
    spend = np.random.default_rng(4).gamma(4.0, 10.0, len(x))
    feats = summary_frame(x, tx, t, spend)
    models = fit_models(feats, models=("Pareto/NBD",))
    out = score(wh, feats, models, dt.date(2025, 1, 1), monthly_discount=0.0).execute()
    out = out.set_index("customer_id").loc[[f"c{i}" for i in range(len(x))]]
    alive = models.purchases.probability_alive(x, tx, t)
    np.testing.assert_allclose(out.p_alive, alive, rtol=1e-9)
    expected = models.purchases.expected_purchases(12 * 365.25 / 12 / 7, x, tx, t)
    np.testing.assert_allclose(out.expected_purchases, expected, rtol=1e-6)
    assert set(out.purchase_model) == {"Pareto/NBD"}


def test_the_run_chooses_its_purchase_model_on_a_holdout_and_says_why(wh: Warehouse) -> None:
    import datetime as dt

    from segmentum.features import btyd_summary
    from segmentum.models.clv import fit_for_run, record

    lines = simulated_lines(1200, r=0.8, alpha=4.0, a=0.8, b=2.5, weeks=104, seed=5)
    wh.write("transactions", pa.Table.from_pandas(lines, preserve_index=False))
    tx = wh.table("transactions")
    as_of = dt.date(2024, 12, 30)
    models, churn = fit_for_run(wh, btyd_summary(tx, as_of), as_of, source=tx)
    assert {c["model"] for c in models.comparison} == {"BG/NBD", "MBG/NBD", "Pareto/NBD"}
    assert all(c["holdout_error"] is not None for c in models.comparison)
    assert all(c["fitted_on"] == "calibration period" for c in models.comparison)
    assert models.reason.startswith(f"{models.purchase_model} was chosen")
    assert models.reason_es.startswith(f"Se eligió {models.purchase_model}")
    assert models.dropout_identified and churn is None
    # The chosen model is refitted on all the data, with standard errors.
    assert not np.isnan(list(models.purchases.standard_errors_.values())).any()
    record(wh, models, as_of, "r1")
    stored = wh.table("clv_models").execute()
    assert len(stored) == 3 and stored.chosen.sum() == 1
    assert stored.loc[stored.chosen, "reason"].iloc[0] == models.reason


def test_a_segments_description_names_its_columns_in_words_and_writes_numbers_in_its_language() -> (
    None
):
    """The descriptions the dashboard, the report and `segment profile` show: column titles,
    not column names; 1.234,5 and 12,3 % in Spanish; labels of stored codes translated."""
    from segmentum.segments.profile import profile_segments

    rng = np.random.default_rng(3)
    n = 2000
    inside = rng.random(n) < 0.2
    df = pd.DataFrame(
        {
            "recency_days": np.where(inside, rng.normal(20, 5, n), rng.normal(1500, 300, n)),
            "mix_shoes": np.where(inside, 0.6, 0.1) + rng.normal(0, 0.02, n),
            "gender": np.where(inside, "female", rng.choice(["female", "male"], n)),
            "seg": np.where(inside, "in", "out"),
        }
    )
    found = profile_segments(df, "seg", ["recency_days", "mix_shoes"], ["gender"])
    [p] = [p for p in found.segments if p.segment == "in"]
    en, es = p.description_en, p.description_es
    assert "recency_days" not in en + es and "mix_shoes" not in en + es, (en, es)
    assert "Days since last purchase" in en and "share of spend on shoes" in en, en
    assert "Días desde la última compra" in es and "parte del gasto en shoes" in es, es
    assert re.search(r"\d\.\d{3},\d", es) and re.search(r"\d{1,2},\d\xa0%", es), es
    assert re.search(r"\d,\d{3}\.\d", en) and re.search(r"\(\d{1,2}\.\d%\)", en), en
    # A spend-mix column is named by its category as the data writes it (the column's name
    # lost the accents: "compran moviles").
    found = profile_segments(
        df,
        "seg",
        ["recency_days", "mix_shoes"],
        ["gender"],
        categories={"mix_shoes": "Moda > Niño"},
    )
    [p] = [p for p in found.segments if p.segment == "in"]
    assert "parte del gasto en Moda > Niño" in p.description_es, p.description_es
    assert "compran niño" in p.name_es.lower() and "buy niño" in p.name_en.lower(), p.name_es
