"""BTYD and spend models: the published CDNOW estimates, known-parameter recovery, and the
estimator contract every model shares."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pytest

from segmentum.errors import InputError, ModelError
from segmentum.features import btyd_summary
from segmentum.models import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD
from segmentum.models.btyd import compress, dropout_identified


@pytest.fixture
def cdnow_summary(cdnow_lines: ir.Table) -> pd.DataFrame:
    return btyd_summary(cdnow_lines, dt.date(1997, 10, 1)).execute()


def test_bgnbd_reproduces_fader_hardie_lee_2005_on_cdnow(cdnow_summary: pd.DataFrame) -> None:
    m = BetaGeo().fit(cdnow_summary.x, cdnow_summary.t_x, cdnow_summary["T"])
    expected = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for k, v in expected.items():
        assert m.params_[k] == pytest.approx(v, rel=0.01)
    assert m.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)
    s = m.summary()
    assert (s.lower < s.estimate).all() and (s.estimate < s.upper).all()
    assert s.loc["r", "std_error"] == pytest.approx(0.0126, rel=0.05)


def test_mbgnbd_agrees_with_lifetimes_modified_beta_geo_fitter_on_cdnow(
    cdnow_summary: pd.DataFrame,
) -> None:
    """Batislam, Denizel and Filiztekin (2007) on CDNOW's 39-week calibration: the estimates
    of an independent implementation (lifetimes 0.11.3, ModifiedBetaGeoFitter)."""
    m = ModifiedBetaGeo().fit(cdnow_summary.x, cdnow_summary.t_x, cdnow_summary["T"])
    expected = {"r": 0.5248, "alpha": 6.183, "a": 0.8914, "b": 1.614}
    for k, v in expected.items():
        assert m.params_[k] == pytest.approx(v, rel=1e-3), k
    assert m.converged_ and not m.at_bound_
    s = m.summary()
    assert (s.std_error > 0).all() and (s.lower < s.estimate).all()
    # One-time buyers are no longer certainly alive, and the longer they are silent the less.
    alive = m.probability_alive([0, 0, 0], [0.0, 0.0, 0.0], [5.0, 20.0, 38.0])
    assert np.all(alive < 1) and np.all(np.diff(alive) < 0)
    # BG/NBD's same customer: 1 whatever the silence.
    bg = BetaGeo().fit(cdnow_summary.x, cdnow_summary.t_x, cdnow_summary["T"])
    assert bg.probability_alive([0], [0.0], [38.0])[0] == 1.0


def test_pareto_nbd_reproduces_the_published_fit_on_cdnow(cdnow_summary: pd.DataFrame) -> None:
    m = ParetoNBD().fit(cdnow_summary.x, cdnow_summary.t_x, cdnow_summary["T"])
    expected = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
    for k, v in expected.items():
        assert m.params_[k] == pytest.approx(v, rel=0.01)
    assert m.log_likelihood_ == pytest.approx(-9594.98, abs=0.1)


def test_gamma_gamma_reproduces_the_iso_value_paper_on_cdnow(cdnow_summary: pd.DataFrame) -> None:
    repeat = cdnow_summary[cdnow_summary.x > 0]
    assert len(repeat) == 946
    m = GammaGamma().fit(repeat.x, repeat.monetary_value)
    for k, v in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert m.params_[k] == pytest.approx(v, rel=0.01)
    assert abs(m.frequency_spend_correlation_) < 0.2


@pytest.mark.parametrize("model", [BetaGeo(), ModifiedBetaGeo(), GammaGamma()])
def test_analytic_gradient_and_hessian_match_finite_differences(
    model: BetaGeo | GammaGamma,
) -> None:
    """The Newton polish and the standard errors rest on these derivatives."""
    rng = np.random.default_rng(1)
    x = rng.poisson(2, 3000).astype(float)
    if isinstance(model, BetaGeo):
        t = rng.uniform(10, 50, len(x)).round(1)
        rows = (x, np.where(x > 0, t * rng.uniform(0, 1, len(x)), 0).round(1), t)
        theta = np.array([0.5, 4.0, 0.8, 2.5])
    else:
        rows = (x[x > 0], rng.gamma(5, 10, int((x > 0).sum())))
        theta = np.array([6.0, 3.7, 15.0])
    w = np.ones(len(rows[0]))
    data = model._prepare(rows, w)
    _, grad, hess = model._terms(theta, data, w, True)
    eps = 1e-6
    steps = eps * np.eye(len(theta))
    value = [
        model._terms(theta + d, data, w, False)[0] - model._terms(theta - d, data, w, False)[0]
        for d in steps
    ]
    slope = [
        model._terms(theta + d, data, w, False)[1] - model._terms(theta - d, data, w, False)[1]
        for d in steps
    ]
    np.testing.assert_allclose(grad, np.array(value) / (2 * eps), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(hess, np.array(slope) / (2 * eps), rtol=1e-6, atol=1e-4)


def test_bgnbd_predictions_match_the_papers_closed_forms(
    cdnow_summary: pd.DataFrame, cdnow_raw: pd.DataFrame
) -> None:
    m = BetaGeo().fit(cdnow_summary.x, cdnow_summary.t_x, cdnow_summary["T"])
    # Fader, Hardie & Lee (2005), section 5: a customer with x=2, t_x=30.43, T=38.86 is expected
    # to make 1.226 purchases in the next 39 weeks.
    assert m.expected_purchases(39, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=0.01)
    assert m.probability_alive([0], [0], [38.0])[0] == 1.0
    total = m.expected_purchases(39, cdnow_summary.x, cdnow_summary.t_x, cdnow_summary["T"]).sum()
    holdout = cdnow_raw[cdnow_raw.timestamp >= "1997-10-01"]
    actual = len(holdout.drop_duplicates(["cust", "timestamp"]))
    # Measured: 1,653 predicted vs 1,882 purchase days in the 39-week holdout (-12%).
    assert actual == 1882 and abs(total / actual - 1) < 0.15


def simulate_bgnbd(
    n: int, r: float, alpha: float, a: float, b: float, T: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x, tx = np.zeros(n), np.zeros(n)
    for i in range(n):
        t, alive = 0.0, True
        while alive:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            tx[i] = t
            alive = rng.random() > p[i]
    return x, tx, np.full(n, T)


def simulate_mbgnbd(
    n: int, r: float, alpha: float, a: float, b: float, T: float, horizon: float, seed: int
) -> dict[str, np.ndarray]:
    """MBG/NBD customers observed for ``T`` after their first purchase, then for ``horizon``
    more: the calibration summary, the holdout purchases and whether each was alive at T."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x, tx, future = np.zeros(n), np.zeros(n), np.zeros(n)
    alive_at_t = np.zeros(n, dtype=bool)
    for i in range(n):
        alive = rng.random() > p[i]  # the chance to drop out at time zero
        t = 0.0
        while alive:
            t += rng.exponential(1 / lam[i])
            if t > T + horizon:
                break
            if t <= T:
                x[i] += 1
                tx[i] = t
            else:
                future[i] += 1
            alive = rng.random() > p[i]
        alive_at_t[i] = alive or t > T
    return {"x": x, "t_x": tx, "T": np.full(n, T), "future": future, "alive": alive_at_t}


def test_mbgnbd_recovers_known_parameters_from_simulated_data() -> None:
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    d = simulate_mbgnbd(6000, **truth, T=52.0, horizon=39.0, seed=3)
    m = ModifiedBetaGeo().fit(d["x"], d["t_x"], d["T"])
    for k, v in truth.items():
        lo, hi = m.summary().loc[k, ["lower", "upper"]]
        assert lo - 0.1 * v < v < hi + 0.1 * v, (k, m.params_[k])


def test_mbgnbd_predictions_match_simulated_customers_at_the_true_parameters() -> None:
    """Conditional expectation, P(alive) and a new customer's purchases, each against what
    simulated customers with the true parameters did (so the closed forms are checked, not
    the fit)."""
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    d = simulate_mbgnbd(30_000, **truth, T=52.0, horizon=39.0, seed=8)
    m = ModifiedBetaGeo()
    m.params_ = dict(truth)
    x, tx, t = d["x"], d["t_x"], d["T"]
    expected = m.expected_purchases(39.0, x, tx, t)
    alive = m.probability_alive(x, tx, t)
    for k in (0, 1, 2, 3):
        sel = x == k
        assert expected[sel].mean() == pytest.approx(d["future"][sel].mean(), rel=0.06), k
        assert alive[sel].mean() == pytest.approx(d["alive"][sel].mean(), abs=0.02), k
    # P(alive) is calibrated across its range, not only on average.
    bands = np.digitize(alive, [0.2, 0.4, 0.6, 0.8])
    for band in range(5):
        sel = bands == band
        assert alive[sel].mean() == pytest.approx(d["alive"][sel].mean(), abs=0.03), band
    new = simulate_mbgnbd(20_000, **truth, T=1e-9, horizon=30.0, seed=4)
    assert m.expected_purchases_new(30.0) == pytest.approx(new["future"].mean(), rel=0.04)


def test_bgnbd_recovers_known_parameters_from_simulated_data() -> None:
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    x, tx, t = simulate_bgnbd(6000, **truth, T=52.0, seed=3)
    m = BetaGeo().fit(x, tx, t)
    for k, v in truth.items():
        lo, hi = m.summary().loc[k, ["lower", "upper"]]
        assert lo - 0.1 * v < v < hi + 0.1 * v, (k, m.params_[k])


def simulate_same_dropout(n: int, p: float, seed: int) -> tuple[np.ndarray, ...]:
    """BG/NBD customers who all share one dropout chance ``p`` (Beta(a, b) a point mass: the
    likelihood rises toward a, b -> infinity), each observed for their own T."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.4, 1 / 2.0, n)
    T = rng.uniform(5.0, 100.0, n)
    x, tx, t = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        t = np.where(alive, t + rng.exponential(1 / lam), t)
        alive &= t <= T
        x += alive
        tx = np.where(alive, t, tx)
        alive &= rng.random(n) > p
    return x, tx, T


@pytest.mark.parametrize("n", [3_000, 60_000])  # fitted on all rows; walked on a sample first
def test_bgnbd_on_its_bound_converges_on_the_face_of_the_box(n: int) -> None:
    """When every customer has the same dropout chance, BG/NBD's b runs to its bound (1e7)
    and a follows it: the fit holds b there and finishes on the other parameters (Newton on
    the face). It must converge, say which parameter is on its bound, find the true dropout
    chance, and be the bounded problem's maximum: no better point from bounded L-BFGS, no
    slope left in the free parameters, and the likelihood still rising through the bound."""
    x, tx, T = simulate_same_dropout(n, 0.1, seed=5)
    m = BetaGeo().fit(x, tx, T)
    assert m.converged_ and "b" in m.at_bound_
    assert m.params_["b"] == pytest.approx(1e7)
    p = m.params_["a"] / (m.params_["a"] + m.params_["b"])
    assert p == pytest.approx(0.1, rel=0.2)
    assert not dropout_identified(m)
    from scipy import optimize

    (cx, ctx, ct), w = compress(x, tx, T)
    data = m._prepare((cx, ctx, ct), w)
    lp = np.log([m.params_[k] for k in m.param_names])
    upper = m._log_upper()
    with np.errstate(all="ignore"):  # bounded L-BFGS's trial points overflow on the way
        ref = optimize.minimize(
            lambda v: m._nll(np.clip(v, -25, 25), data, w),
            np.log([1.0, 1.0, 1.0, 1.0]),
            jac=True,
            method="L-BFGS-B",
            bounds=[(None, u if u < 25 else None) for u in upper],
            options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
        )
    ours, grad = m._nll(lp, data, w)
    # Not worse than bounded L-BFGS (beyond the rounding of lnG at 1e7, 1e-8 relative).
    assert ours <= ref.fun + 1e-8 * abs(ref.fun)
    # The slope (negative log-likelihood, per log-parameter) is flat in r, alpha and a, and
    # the likelihood does not fall toward b's bound (beyond its rounding: flat there).
    scale = abs(ours) * 1e-8
    assert np.all(np.abs(grad[:3]) < max(scale, 1e-3)), grad
    assert grad[3] < scale


@pytest.mark.parametrize(
    "theta",
    [
        (0.55, 10.58, 0.61, 11.67),
        (1.26, 9.5, 0.23, 1.53),
        # One scale hundreds of times the other: for customers seen on one day only the
        # hypergeometric argument is within 0.003 of 1, and those rows' slopes come from
        # differences, the others' from the series (both branches).
        (0.8, 0.08, 0.5, 30.0),
        (0.8, 40.0, 0.5, 0.1),
    ],
)
def test_pareto_nbd_gradient_matches_finite_differences(theta: tuple[float, ...]) -> None:
    """Both branches (alpha below and above beta) of the analytic Pareto/NBD gradient, whose
    hypergeometric slopes come from their power series."""
    rng = np.random.default_rng(4)
    x = rng.poisson(1.5, 2000).astype(float)
    t = rng.uniform(5, 60, len(x)).round(1)
    tx = np.where(x > 0, t * rng.uniform(0, 1, len(x)), 0).round(1)
    model = ParetoNBD()
    w = np.ones(len(x))
    data = model._prepare((x, tx, t), w)
    lp = np.log(theta)
    _, grad = model._nll(lp, data, w)

    def value(v: np.ndarray) -> float:
        r, alpha, s, beta = np.exp(v)
        return -float(w @ model._log_terms(r, alpha, s, beta, x, tx, t))

    steps = 1e-6 * np.eye(4)
    numeric = [(value(lp + d) - value(lp - d)) / 2e-6 for d in steps]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-3)
    r, alpha, s, beta = theta
    near_one = abs(alpha - beta) / max(alpha, beta) > np.exp(-39.2 / 5000)
    # Every row has its slopes: the whole-likelihood differences are not needed.
    assert model._loglik_grad(r, alpha, s, beta, x, tx, t, data[3:]) is not None, near_one


def test_the_hypergeometric_series_matches_scipy() -> None:
    from scipy import special

    from segmentum.models.btyd import _hyp2f1_and_slopes

    a = np.array([1.5, 3.0, 20.0, 0.7])
    b = np.array([1.2, 2.0, 1.3, 5.0])
    z = np.array([0.0, 0.5, 0.84, 0.95])
    series = _hyp2f1_and_slopes(a, b, z)
    assert series is not None
    h, h_a, h_b = series
    np.testing.assert_allclose(h, special.hyp2f1(a, b, a + 1, z), rtol=1e-13)
    e = 1e-6
    slope_a = (special.hyp2f1(a + e, b, a + 1 + e, z) - special.hyp2f1(a - e, b, a + 1 - e, z)) / (
        2 * e
    )
    slope_b = (special.hyp2f1(a, b + e, a + 1, z) - special.hyp2f1(a, b - e, a + 1, z)) / (2 * e)
    np.testing.assert_allclose(h_a, slope_a, rtol=1e-7)
    np.testing.assert_allclose(h_b, slope_b, rtol=1e-7)
    assert _hyp2f1_and_slopes(a, b, np.full(4, 0.9999), max_terms=50) is None


def test_the_connection_to_one_minus_z_matches_scipy_near_one() -> None:
    """Near z = 1 (Pareto/NBD with one scale many times the other) log H and its slopes come
    from the connection of z with 1 - z: the same values as SciPy's 2F1 and its differences,
    and dH/dz in closed form; b near a whole number (both terms near a pole) is left to the
    caller. Checked at 40 digits with mpmath while it was written: 1e-14 (log H), 3e-13
    (slope in a), 5e-11 (slope in b) over 400 random rows, a up to 300 and b up to 200."""
    from scipy import special

    from segmentum.models.btyd import _connection_slopes, _log_hyp2f1_slopes

    rng = np.random.default_rng(3)
    a = rng.uniform(0.3, 40.0, 300)
    b = rng.uniform(0.1, 6.0, 300)
    b = np.where(np.abs(b - np.round(b)) < 0.05, b + 0.1, b)
    a = np.maximum(a, b - 1 + 0.1)  # a + 1 - b > 0, as in Pareto/NBD (r + x or s + 1)
    w = 10 ** rng.uniform(-4, np.log10(0.05), 300)  # where the power series in z is long
    z = 1 - w
    log_h, la, lb, ok = _connection_slopes(a, b, w)
    assert ok.mean() > 0.95

    def ref(a_: np.ndarray, b_: np.ndarray, z_: np.ndarray) -> np.ndarray:
        return np.asarray(np.log(special.hyp2f1(a_, b_, a_ + 1, z_)))

    np.testing.assert_allclose(log_h[ok], ref(a, b, z)[ok], rtol=1e-11)
    # The slopes against H = a * integral_0^1 t^(a-1) (1 - z t)^-b dt differentiated under
    # the integral (SciPy's 2F1 near z = 1 is itself off in the 4th digit of these slopes,
    # which is what the differences the connection replaced inherited).
    from scipy.integrate import quad

    def integral(i: int, f: Any) -> float:
        a_, b_, z_ = a[i], b[i], z[i]
        g = lambda t: t ** (a_ - 1) * (1 - z_ * t) ** -b_ * f(t, a_, z_)  # noqa: E731
        return float(quad(g, 0, 1, points=[1 - 10 * w[i], 1 - w[i]], epsrel=1e-12, limit=200)[0])

    for i in np.flatnonzero(ok)[::10]:
        h = a[i] * integral(i, lambda t, a_, z_: 1.0)
        h_a = h / a[i] + a[i] * integral(i, lambda t, a_, z_: np.log(t))
        h_b = a[i] * integral(i, lambda t, a_, z_: -np.log1p(-z_ * t))
        assert la[i] == pytest.approx(h_a / h, rel=1e-8), i
        assert lb[i] == pytest.approx(h_b / h, rel=1e-8), i
    # Through the front door, with the closed-form slope in z.
    out = _log_hyp2f1_slopes(a, b, z, w=w)
    assert out is not None
    np.testing.assert_allclose(out[0][ok], log_h[ok], rtol=1e-14)
    diff_z = (ref(a, b, z + 1e-9) - ref(a, b, z - 1e-9)) / 2e-9
    np.testing.assert_allclose(out[3], diff_z, rtol=1e-4)
    # Near a pole of the two terms: not taken.
    assert not _connection_slopes(np.array([5.0]), np.array([2.0000001]), np.array([0.01]))[3][0]


def test_large_fits_take_newton_steps_to_the_same_optimum_as_lbfgs() -> None:
    """Above 40,000 distinct rows the fit walks there on a sample and finishes with Newton
    steps on the analytic Hessian; plain L-BFGS with a finite-difference Hessian (what the
    models without an analytic Hessian use) must land on the same estimates and errors."""
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    # Two cohorts (observed 52 and 39 weeks): about 48,000 distinct (x, t_x, T) rows.
    cohorts = [simulate_bgnbd(40_000, **truth, T=T, seed=7 + i) for i, T in enumerate((52, 39))]
    x, tx, t = (np.concatenate(parts) for parts in zip(*cohorts, strict=True))
    rng = np.random.default_rng(2)
    nu = rng.gamma(3.0, 1 / 20.0, len(x))
    spend = rng.gamma(np.maximum(x, 1) * 4.0, 1 / (np.maximum(x, 1) * nu))

    class Plain(BetaGeo):
        _analytic = False

    class PlainGG(GammaGamma):
        _analytic = False

    for fast, slow in (
        (BetaGeo().fit(x, tx, t), Plain().fit(x, tx, t)),
        (GammaGamma().fit(x, spend), PlainGG().fit(x, spend)),
    ):
        assert fast.converged_
        for k in fast.params_:
            assert fast.params_[k] == pytest.approx(slow.params_[k], rel=1e-5), k
            se_fast, se_slow = fast.standard_errors_[k], slow.standard_errors_[k]
            assert se_fast == pytest.approx(se_slow, rel=1e-3), k
    bg = BetaGeo().fit(x, tx, t)
    for k, v in truth.items():
        lo, hi = bg.summary().loc[k, ["lower", "upper"]]
        assert lo - 0.1 * v < v < hi + 0.1 * v, (k, bg.params_[k])


def test_a_common_dropout_probability_is_reported_not_hidden() -> None:
    """When every customer has the same dropout chance the likelihood has no finite maximum
    in a and b (it rises as they grow together): the fit stops, keeps their ratio, and the
    CLV step says what that means."""
    import ibis

    from segmentum.models.btyd import dropout_identified
    from segmentum.models.clv import fit_models

    x, tx, t = simulate_bgnbd(6000, r=0.5, alpha=5.0, a=1e5, b=9e5, T=52.0, seed=5)
    m = BetaGeo().fit(x, tx, t)
    a, b = m.params_["a"], m.params_["b"]
    assert a + b > 1e4 and a / (a + b) == pytest.approx(0.1, abs=0.02)
    assert m.params_["r"] == pytest.approx(0.5, rel=0.15)
    spend = np.where(x > 0, 20.0 + (np.arange(len(x)) % 7), np.nan)
    features = ibis.memtable({"x": x, "t_x": tx, "T": t, "monetary_value": spend})
    only_bg = fit_models(features, models=("BG/NBD",))
    assert not only_bg.dropout_identified
    [note] = [n for n in only_bg.notes if "dropping out" in n]
    # One whole sentence after another, none cut off (the run printed "...their ratio is").
    assert note.startswith("BG/NBD could not tell customers' chances of dropping out apart")
    assert note.endswith("calibrated on this data's own history instead.")
    assert "10.0% chance after each purchase" in note or "chance after each purchase" in note
    assert only_bg.notes_es[0].startswith("BG/NBD no distingue")
    # Given the choice, none identifies who drops out: with every customer the same dropout
    # chance, Pareto/NBD's dropout rates run to a point mass too (s and beta on their bound,
    # their ratio kept), and so does MBG/NBD's. The choice says so rather than trusting a fit
    # that stopped short of its maximum (Pareto/NBD's did, with slopes by differences).
    chosen = fit_models(features)
    assert not chosen.dropout_identified, chosen.reason
    pnbd = chosen.candidates["Pareto/NBD"]
    assert pnbd.params_["beta"] > 1e6 and not dropout_identified(pnbd), pnbd.params_


@pytest.mark.parametrize("model", [BetaGeo(), ModifiedBetaGeo(), ParetoNBD()])
def test_models_refuse_data_without_repeat_buyers(model: BetaGeo | ParetoNBD) -> None:
    with pytest.raises(ModelError, match="repeat buyers"):
        model.fit([0, 0, 0], [0, 0, 0], [10.0, 12.0, 5.0])


@pytest.mark.parametrize("model", [BetaGeo(), ModifiedBetaGeo(), ParetoNBD()])
def test_models_report_every_problem_in_the_summary_at_once(model: BetaGeo | ParetoNBD) -> None:
    with pytest.raises(ModelError) as err:
        model.fit([1, -1, 2], [5.0, 0.0, 20.0], [4.0, 3.0, 10.0])
    msg = str(err.value)
    assert "non-negative whole number" in msg and "exceeds T" in msg


@pytest.mark.parametrize(
    ("model", "method"),
    [
        (BetaGeo(), "probability_alive"),
        (ModifiedBetaGeo(), "probability_alive"),
        (ParetoNBD(), "probability_alive"),
        (GammaGamma(), "expected_spend"),
    ],
)
def test_unfitted_models_say_so(model: BetaGeo | ParetoNBD | GammaGamma, method: str) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        getattr(model, method)([1], [1.0]) if method == "expected_spend" else getattr(
            model, method
        )([1], [1.0], [2.0])


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo, ParetoNBD, GammaGamma])
def test_estimator_contract(cls: type) -> None:
    model = cls(penalizer=0.0)
    assert model.penalizer == 0.0 and not hasattr(model, "params_")
    x, tx, t = simulate_bgnbd(500, 0.5, 5.0, 0.8, 2.5, 52.0, seed=1)
    fitted = model.fit(x, np.maximum(x * 3.0, 1.0)) if cls is GammaGamma else model.fit(x, tx, t)
    assert fitted is model
    assert set(model.params_) == set(cls.param_names)
    assert all(isinstance(v, float) and v > 0 for v in model.params_.values())
    assert isinstance(model.log_likelihood_, float)
    assert "estimate" in model.summary().columns


def test_gamma_gamma_refuses_non_positive_spend() -> None:
    with pytest.raises(ModelError, match="mean spend <= 0"):
        GammaGamma().fit([1, 2, 3] * 5, [10.0, -5.0, 3.0] * 5)


def test_validation_on_cdnow_tracks_the_holdout_better_than_the_naive_baseline(
    cdnow_lines: ir.Table,
) -> None:
    from segmentum.models.validate import validate

    v = validate(cdnow_lines, dt.date(1997, 9, 30))
    assert v.holdout_end == dt.date(1998, 6, 30)
    assert set(v.models) == {"BG/NBD", "MBG/NBD", "Pareto/NBD"}
    assert v.models["BG/NBD"].params_["r"] == pytest.approx(0.243, rel=0.01)
    assert v.models["MBG/NBD"].params_["r"] == pytest.approx(0.5248, rel=1e-3)
    assert v.weekly.actual.iloc[-1] == 1882 and len(v.weekly) == 39
    assert v.weekly.actual.is_monotonic_increasing and v.weekly.predicted.is_monotonic_increasing
    err = v.errors
    naive = err.loc["naive (calibration rate)", "mean absolute error, by calibration purchases"]
    for name in v.models:
        assert err.loc[name, "mean absolute error, by calibration purchases"] < naive
        assert abs(err.loc[name, "relative error of the total"]) < 0.18
    # Measured on CDNOW: by calibration purchases BG/NBD is off by 0.151 purchases per
    # customer, Pareto/NBD 0.161, MBG/NBD 0.174: BG/NBD is chosen, and the page says why.
    assert v.chosen == "BG/NBD" and v.model is v.models["BG/NBD"]
    assert "closest" in v.reason_en and "Pareto/NBD 0.161" in v.reason_en
    assert "0,151" in v.reason_es
    assert v.verdict() == (
        "BG/NBD under-predicts repeat purchases in the holdout by 12% (1,653 predicted, "
        "1,882 actual); better than the naive baseline (mean error per customer 0.151 "
        "against 0.729)."
    )
    assert v.verdict("es").startswith("BG/NBD subestima las compras repetidas")
    assert list(v.by_frequency.x) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert v.by_frequency.customers.sum() == 2357
    page = v.to_html()
    assert page.count("<svg") == 2 and "under-predicts" in page
    # The run's choice reads the criterion alone: without the week-by-week curves the
    # criterion, the totals and the choice are the same, and only the holdout's end is kept.
    quick = validate(cdnow_lines, dt.date(1997, 9, 30), curves=False)
    assert quick.chosen == v.chosen and list(quick.weekly.week) == [39]
    assert quick.weekly.actual.iloc[-1] == 1882
    crit = "mean absolute error, by calibration purchases"
    for col in (crit, "total holdout purchases", "relative error of the total"):
        assert quick.errors[col].to_numpy() == pytest.approx(err[col].to_numpy(), rel=1e-12)
    assert quick.errors["mean absolute error, weekly cumulative"].iloc[1:].isna().all()


def test_model_choice_lets_the_likelihood_decide_between_equally_good_forecasts() -> None:
    from segmentum.models.validate import NAIVE, choose

    errors = pd.DataFrame(
        {"mean absolute error, by calibration purchases": [0.0, 0.100, 0.103, 0.2, 0.5]},
        index=["actual", "BG/NBD", "MBG/NBD", "Pareto/NBD", NAIVE],
    )
    loglik = {"BG/NBD": -9600.0, "MBG/NBD": -9580.0, "Pareto/NBD": -9590.0}
    name, why, why_es = choose(errors, loglik)
    assert name == "MBG/NBD" and "log-likelihood is the highest (-9,580.0)" in why
    assert "log-verosimilitud es la mayor (-9.580,0)" in why_es
    name, why, _ = choose(None, loglik)
    assert name == "MBG/NBD" and "not enough history" in why
    # Of forecasts as good, a fit whose dropout process is identified comes first.
    identified = {"BG/NBD": True, "MBG/NBD": False, "Pareto/NBD": True}
    name, why, _ = choose(errors, loglik, identified)
    assert name == "BG/NBD", why
    # Without a holdout too; the sentence names the fit left out instead of ranking its
    # (higher) log-likelihood beside the chosen one's.
    name, why, why_es = choose(None, loglik, identified)
    assert name == "Pareto/NBD"
    assert why == (
        "Pareto/NBD was chosen for the highest log-likelihood (-9,590.0; BG/NBD -9,600.0) of "
        "the models that could identify who drops out (MBG/NBD could not: its fit ran to a "
        "bound); there was not enough history for a holdout check."
    )
    assert "(MBG/NBD no pudo: su ajuste" in why_es and "-9.590,0" in why_es, why_es
    _, _, two = choose(None, loglik, {**identified, "BG/NBD": False})
    assert "(BG/NBD, MBG/NBD no pudieron: sus ajustes llegaron" in two, two


def test_validation_needs_a_holdout(cdnow_lines: ir.Table) -> None:
    from segmentum.models.validate import validate

    with pytest.raises(InputError, match="not after the calibration end"):
        validate(cdnow_lines, dt.date(1998, 7, 1), dt.date(1998, 6, 30))


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo, ParetoNBD])
def test_a_fit_without_standard_errors_lands_on_the_same_estimates(
    cls: type[BetaGeo] | type[ParetoNBD], cdnow_summary: pd.DataFrame
) -> None:
    """What the holdout comparison uses: the same optimum, no (costly) standard errors."""
    s = cdnow_summary
    full = cls().fit(s.x, s.t_x, s["T"])
    quick = cls(standard_errors=False).fit(s.x, s.t_x, s["T"])
    for k, v in full.params_.items():
        assert quick.params_[k] == pytest.approx(v, rel=1e-3), k
    assert quick.log_likelihood_ == pytest.approx(full.log_likelihood_, abs=1e-3)
    assert all(np.isnan(v) for v in quick.standard_errors_.values())


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo])
def test_a_forecast_that_overflows_falls_back_to_the_no_dropout_limit(cls: type) -> None:
    # Known answer: as dropout vanishes (mean p = a / (a + b) -> 0) the forecast of a
    # customer alive tends to the NBD one, (r + x) / (alpha + T) * t.
    x, t = np.array([0.0, 2.0, 5.0]), np.array([20.0, 30.0, 40.0])
    m = cls()
    m.params_ = {"r": 3.0, "alpha": 10.0, "a": 0.01, "b": 1e4}
    assert np.allclose(m.expected_if_alive(8.0, x, t), (3 + x) / (10 + t) * 8, rtol=1e-5)
    # A fit at the edge of the parameter space (seen on a 4-customer export): r and b so
    # large that the hypergeometric function overflows. The forecast stays a number, equal
    # to that limit, and the model says how many histories needed it.
    r, alpha = 1.98e7, 8.14e7
    m.params_ = {"r": r, "alpha": alpha, "a": 7.75e-8, "b": 7.57e4}
    with np.errstate(all="ignore"):
        assert np.isnan(m.expected_if_alive(8.0, x, t)).all()
    expected, discounted = m.purchases_if_alive(x, t, 12, 0.01, 4.0)
    assert np.allclose(expected, (r + x) / (alpha + t) * 48.0, rtol=1e-12)
    assert np.isfinite(discounted).all() and (discounted < expected).all()
    assert m.bounded_pairs_ == 3


def test_a_large_fit_is_the_same_whatever_the_row_order_and_reaches_the_best_optimum() -> None:
    # Over 40,000 distinct rows the fit walks on a 20,000-row sample first. The engine hands
    # grouped rows back in any order, so the sample (and once, the optimum reached: MBG/NBD
    # 25,000 log-likelihood units apart between two runs on the demo data) depended on it.
    rng = np.random.default_rng(7)
    n = 60_000
    t = rng.integers(1, 520, n) / 7.0  # days observed, in weeks: many distinct values
    x = rng.poisson(rng.gamma(0.6, 1 / 4.0, n) * t).astype(float)
    x = np.minimum(x, 40.0)
    tx = np.where(x > 0, rng.uniform(0, 1, n) * t, 0.0).round(3)
    w = np.ones(n)
    order = rng.permutation(n)
    a = ModifiedBetaGeo(standard_errors=False).fit(x, tx, t, weights=w)
    b = ModifiedBetaGeo(standard_errors=False).fit(x[order], tx[order], t[order], weights=w)
    assert a.params_ == pytest.approx(b.params_, rel=1e-9)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)
    # No worse than L-BFGS from the default starts on every row (the slow, sure path).
    full = ModifiedBetaGeo(standard_errors=False)
    res = full._minimise((x, tx, t), w, [np.log(full._start), np.zeros(4)])
    assert a.log_likelihood_ >= -res.fun - 1e-6 * abs(res.fun)


def test_the_threaded_hypergeometric_gives_scipys_values_exactly() -> None:
    """Large arrays are split across threads (2F1 releases the GIL): the values are SciPy's,
    element for element, in order, for arrays on either side of the split size."""
    from scipy import special

    from segmentum.models import btyd

    rng = np.random.default_rng(11)
    for n in (btyd._HYP2F1_SPLIT - 1, btyd._HYP2F1_SPLIT * 3 + 7):
        a = 150 + rng.uniform(0, 20, n)
        b = 0.65 + rng.integers(0, 30, n)
        z = rng.uniform(0.9, 0.9995, n)
        np.testing.assert_array_equal(btyd._hyp2f1(a, b, a + 1, z), special.hyp2f1(a, b, a + 1, z))


def test_the_threaded_hypergeometric_works_in_a_forked_child() -> None:
    """A child forked after the pool started gets a pool of its own (threads do not survive a
    fork): it answers instead of waiting for threads that are not there."""
    import multiprocessing

    from segmentum.models import btyd

    n = btyd._HYP2F1_SPLIT * 2
    a, z = np.full(n, 160.0), np.full(n, 0.99)
    expected = btyd._hyp2f1(a, 1.5, a + 1, z)  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(btyd._hyp2f1, (a, 1.5, a + 1, z)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def _lines_warehouse(rows: list[tuple[str, dt.datetime, float]]) -> Any:
    """An in-memory warehouse whose invoice lines are ``rows`` (customer, time, amount), one
    line an invoice."""
    import pyarrow as pa

    import segmentum

    wh = segmentum.connect("duckdb://")
    n = len(rows)
    wh.write(
        "transactions",
        pa.table(
            {
                "invoice_id": [f"I{i:07d}" for i in range(n)],
                "line": [1] * n,
                "customer_id": [r[0] for r in rows],
                "timestamp": [r[1] for r in rows],
                "quantity": [1.0] * n,
                "amount": [r[2] for r in rows],
            }
        ),
    )
    return wh


def test_the_model_comparison_scores_fits_at_the_edge_of_the_parameter_space() -> None:
    """Known answer: customers who buy at one steady rate and never drop out. The BG/NBD
    family's fit then runs to the edge of its parameter space (r and alpha in the millions),
    where the hypergeometric function of the forecast overflows: the comparison summed those
    forecasts as NaN (skipped), judged BG/NBD and MBG/NBD as forecasting almost nothing (a
    mean error of 7.8 purchases against 0.25) and dropped them. With the bound the scores
    use, every model forecasts the holdout within a few percent, as it should here."""
    from segmentum.models.validate import validate

    rng = np.random.default_rng(11)
    start = dt.datetime(2023, 7, 1)
    rows: list[tuple[str, dt.datetime]] = []
    for c in range(1500):
        day = float(rng.uniform(0, 30))
        while day < 730:
            rows.append((f"P{c:05d}", start + dt.timedelta(days=day)))
            day += float(rng.exponential(50.0))
    wh = _lines_warehouse([(c, when, 50.0) for c, when in rows])
    v = validate(wh.table("transactions"), dt.date(2024, 12, 31), curves=False)
    e = v.errors
    actual = e.loc["actual", "total holdout purchases"]
    for model in ("BG/NBD", "MBG/NBD", "Pareto/NBD"):
        total = e.loc[model, "total holdout purchases"]
        assert np.isfinite(total) and abs(total / actual - 1) < 0.05, (model, total, actual)
        by_x = e.loc[model, "mean absolute error, by calibration purchases"]
        assert (
            by_x
            < e.loc["naive (calibration rate)", "mean absolute error, by calibration purchases"]
        )
    wh.close()


def test_fitting_five_customers_prints_no_numpy_warning() -> None:
    """Five customers (tests/data/five_customers.csv, from a walk of tiny exports): the
    Pareto/NBD likelihood's series overflows on some rows, which it sets aside by design,
    but numpy printed "RuntimeWarning: overflow encountered in multiply" and the source
    line, eight times a run, on the user's terminal."""
    import warnings
    from pathlib import Path

    import segmentum
    from segmentum.features import customer_features
    from segmentum.models.clv import fit_models

    wh = segmentum.connect("duckdb://")
    data = Path(__file__).parent / "data" / "five_customers.csv"
    segmentum.ingest("transactions", data, warehouse=wh)
    t = wh.table("transactions")
    as_of = dt.date(2025, 6, 21)  # the day after the last line
    f = customer_features(t, as_of)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        models = fit_models(f, transactions=t, as_of=as_of)
    assert models.purchase_model in ("BG/NBD", "MBG/NBD", "Pareto/NBD")


def test_the_reasons_given_when_a_model_cannot_be_fitted_name_the_real_cause() -> None:
    """Walked on tiny exports: every amount zero was explained as "only 0 repeat buyers"
    (most had bought again), and a shop whose customers all first bought on the last day
    was told to "load transactions and compute features first" (it had)."""
    from segmentum import i18n
    from segmentum.models.clv import fit_models

    first = dt.date(2025, 1, 6)
    noon = dt.datetime.combine(first, dt.time(12))
    free = [
        (f"Z{c:03d}", noon + dt.timedelta(days=7 * k + c % 5), 0.0)
        for c in range(120)
        for k in range(1 + c % 4)
    ]
    wh = _lines_warehouse(free)
    f = btyd_summary(wh.table("transactions"), dt.date(2025, 3, 1))
    notes = " ".join(fit_models(f).notes)
    assert "No repeat buyer spent anything" in notes and "Only 0" not in notes, notes
    one_day = [(f"D{c:03d}", dt.datetime(2025, 6, 15, 12), 20.0 + c) for c in range(50)]
    wh = _lines_warehouse(one_day)
    f = btyd_summary(wh.table("transactions"), dt.date(2025, 6, 16))
    with pytest.raises(ModelError, match="first bought on the data's last day") as caught:
        fit_models(f)
    assert "compute features first" not in str(caught.value)
    es = i18n.error_text("es", caught.value)
    assert es.startswith("todos los clientes compraron por primera vez"), es
