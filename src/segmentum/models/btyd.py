"""Buy-till-you-die models: BG/NBD, Pareto/NBD and the Gamma-Gamma spend model.

Fitted by maximum likelihood on the summary (x, t_x, T) the engine hands back, compressed to
its unique rows with counts, so the cost depends on the number of distinct summaries, not
customers. Parameters are optimised on the log scale (they are all positive); standard errors
come from the Hessian of the log-likelihood at the optimum (delta method to the natural scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from segmentum.errors import ModelError

Array = NDArray[np.float64]


def compress(*columns: ArrayLike) -> tuple[list[Array], Array]:
    """Unique rows of the given columns and how many customers share each."""
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(float)


def _check_summary(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[Array, Array, Array]:
    """Validate the BTYD summary in layers; every problem is reported at once."""
    x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    problems = []
    if not (len(x) == len(tx) == len(t)):
        raise ModelError(
            f"frequency, recency and T have different lengths ({len(x)}, {len(tx)}, {len(t)})"
        )
    if len(x) == 0:
        raise ModelError("no customers to fit on", "load transactions and compute features first")
    for name, v in (("frequency", x), ("recency", tx), ("T", t)):
        if not np.all(np.isfinite(v)):
            problems.append(f"{name} has missing or infinite values")
    if np.any(x < 0) or np.any(x != np.round(x)):
        problems.append("frequency must be a non-negative whole number of repeat purchases")
    if np.any(tx < 0):
        problems.append("recency (t_x) must be >= 0")
    if np.any(tx > t + 1e-9):
        problems.append(f"recency (t_x) exceeds T for {int(np.sum(tx > t + 1e-9))} customers")
    if np.any((x == 0) & (tx > 0)):
        problems.append("customers with no repeat purchase must have recency 0")
    if np.any(t <= 0):
        problems.append(f"T must be > 0 ({int(np.sum(t <= 0))} customers observed for no time)")
    if problems:
        raise ModelError("the BTYD summary is not valid: " + "; ".join(problems))
    return x, tx, t


def _with_unique_x(x: Array, *rest: Array) -> tuple[Array, ...]:
    """``(x, *others)`` plus the distinct x values and the total weight at each.

    The last of ``rest`` is the row weights. Terms that depend on x alone (the gamma functions)
    are then evaluated once per distinct x instead of once per row.
    """
    *others, w = rest
    ux, inverse = np.unique(x, return_inverse=True)
    wx = np.bincount(inverse, weights=w, minlength=len(ux)).astype(float)
    return (x, *others, ux, wx)


class _Model:
    """The shared fitting machinery: log-parameters, optimisation, Hessian, summaries."""

    param_names: tuple[str, ...] = ()
    _start: tuple[float, ...] = ()

    def __init__(self, penalizer: float = 0.0, max_iter: int = 500) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    # to be provided: _nll(log_params, data, weights) -> (value, gradient w.r.t. log params)
    def _nll(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[float, Array]:
        raise NotImplementedError

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        """What ``_nll`` needs from the rows (models add precomputed distinct values)."""
        return rows

    def _fit_summary(
        self,
        name: str,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None,
    ) -> None:
        """Validate and compress the BTYD summary, refuse it without repeat buyers, fit."""
        x, tx, t = _check_summary(frequency, recency, T)
        if weights is None:
            (x, tx, t), w = compress(x, tx, t)
        else:
            w = np.asarray(weights, dtype=float)
        if np.sum(w[x > 0]) < 2:
            raise ModelError(
                f"{name} needs repeat buyers to learn from: "
                f"{int(np.sum(w[x > 0]))} of {int(w.sum())} customers bought again",
                "wait for more history, or use a longer period",
            )
        self._optimise((x, tx, t), w)

    def _minimise(self, rows: tuple[Array, ...], w: Array, starts: list[Array]) -> Any:
        data = self._prepare(rows, w)

        def objective(lp: Array) -> tuple[float, Array]:
            lp = np.clip(lp, -25.0, 25.0)  # keep exp() finite while the optimiser explores
            with np.errstate(all="ignore"):
                value, grad = self._nll(lp, data, w)
            if not np.isfinite(value):
                return 1e300, np.zeros_like(lp)
            params = np.exp(lp)
            # L2 penalty on the natural parameters keeps fits sane on tiny data sets.
            value = value + self.penalizer * float(np.sum(params**2))
            grad = grad + self.penalizer * 2 * params**2
            return value, grad

        best = None
        for start in starts:
            res = optimize.minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter, "ftol": 1e-14, "gtol": 1e-9},
            )
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
            if best is not None and best.success:
                break  # later starts are only fallbacks
        return best

    def _optimise(self, rows: tuple[Array, ...], w: Array) -> None:
        if self.penalizer < 0:
            raise ModelError(f"penalizer={self.penalizer!r} is not allowed", "use a value >= 0")
        starts = [np.log(self._start), np.zeros(len(self._start))]
        if len(w) > 40_000:
            # Most iterations are spent far from the optimum: walk there on a sample of the
            # distinct rows, then finish on all of them (a few iterations).
            pick = np.random.default_rng(0).choice(len(w), size=20_000, replace=False)
            rough = self._minimise(tuple(r[pick] for r in rows), w[pick], starts)
            if rough is not None and np.all(np.isfinite(rough.x)):
                starts = [rough.x, *starts]
        best = self._minimise(rows, w, starts)
        if best is None or not np.all(np.isfinite(best.x)):
            raise ModelError(
                f"{type(self).__name__} did not converge",
                "check the data, or add a small penalizer",
            )
        data = self._prepare(rows, w)
        lp = best.x
        self.params_ = {n: float(v) for n, v in zip(self.param_names, np.exp(lp), strict=True)}
        self.log_likelihood_ = -float(self._nll(lp, data, w)[0])
        self.converged_ = bool(best.success)
        self._hessian(lp, data, w)

    def _hessian(self, lp: Array, data: tuple[Array, ...], w: Array) -> None:
        """Observed information on the natural scale, by central differences of the gradient."""
        k = len(lp)
        theta = np.exp(lp)

        def grad_natural(th: Array) -> Array:
            g = self._nll(np.log(th), data, w)[1]
            return g / th  # d/dtheta = d/dlog(theta) / theta

        h = np.zeros((k, k))
        for j in range(k):
            step = 1e-5 * theta[j]
            up, down = theta.copy(), theta.copy()
            up[j] += step
            down[j] -= step
            h[:, j] = (grad_natural(up) - grad_natural(down)) / (2 * step)
        h = (h + h.T) / 2
        try:
            cov = np.linalg.inv(h)
            se = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            cov = np.full((k, k), np.nan)
            se = np.full(k, np.nan)
        self.covariance_ = cov
        self.standard_errors_ = {n: float(v) for n, v in zip(self.param_names, se, strict=True)}

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ModelError(f"this {type(self).__name__} is not fitted yet", "call fit(...) first")

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Estimates with standard errors and Wald confidence intervals."""
        self._check_fitted()
        z = special.ndtri(0.5 + level / 2)
        rows = []
        for n in self.param_names:
            est, se = self.params_[n], self.standard_errors_[n]
            rows.append(
                {
                    "parameter": n,
                    "estimate": est,
                    "std_error": se,
                    "lower": est - z * se,
                    "upper": est + z * se,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(penalizer={self.penalizer})"
        ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({ps}, log_likelihood={self.log_likelihood_:.2f})"


class BetaGeo(_Model):
    """The BG/NBD model (Fader, Hardie and Lee 2005, "Counting your customers the easy way").

    Purchases follow a Poisson process with rate ~ Gamma(r, alpha) while alive; after each
    purchase the customer drops out with probability p ~ Beta(a, b).

    Examples
    --------
    >>> m = BetaGeo().fit([0, 2, 5, 1], [0, 10.0, 30.0, 3.0], [40.0, 38.0, 39.0, 20.0])
    >>> sorted(m.params_)
    ['a', 'alpha', 'b', 'r']
    """

    param_names = ("r", "alpha", "a", "b")
    _start = (1.0, 1.0, 1.0, 1.0)

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BetaGeo:
        """Fit on the BTYD summary (x, t_x, T); ``weights`` counts customers per row."""
        self._fit_summary("BG/NBD", frequency, recency, T, weights)
        return self

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        return _with_unique_x(*rows, w)

    def _nll(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[float, Array]:
        r, alpha, a, b = np.exp(lp)
        x, tx, t, ux, wx = data
        # The gamma-function terms depend on x alone: evaluate them once per distinct x.
        a12 = (
            special.gammaln(r + ux)
            - special.gammaln(r)
            + r * np.log(alpha)
            + special.gammaln(a + b)
            + special.gammaln(b + ux)
            - special.gammaln(b)
            - special.gammaln(a + b + ux)
        )
        dr_x = special.digamma(r + ux) - special.digamma(r) + np.log(alpha)
        dpsi_ab = special.digamma(a + b) - special.digamma(a + b + ux)
        db_x = dpsi_ab + special.digamma(b + ux) - special.digamma(b)
        pos = x > 0
        a3 = -(r + x) * np.log(alpha + t)
        a4 = np.where(
            pos,
            np.log(a) - np.log(np.where(pos, b + x - 1, 1.0)) - (r + x) * np.log(alpha + tx),
            -np.inf,
        )
        mx = np.maximum(a3, a4)
        e3, e4 = np.exp(a3 - mx), np.exp(a4 - mx)
        ll_rows = mx + np.log(e3 + e4)
        w3, w4 = e3 / (e3 + e4), e4 / (e3 + e4)
        value = float(np.sum(wx * a12) + np.sum(w * ll_rows))
        dr = np.sum(wx * dr_x) - np.sum(w * (w3 * np.log(alpha + t) + w4 * np.log(alpha + tx)))
        dalpha = np.sum(wx) * r / alpha - np.sum(
            w * (r + x) * (w3 / (alpha + t) + w4 / (alpha + tx))
        )
        da = np.sum(wx * dpsi_ab) + np.sum(w * w4) / a
        db = np.sum(wx * db_x) - np.sum(w * w4 / np.where(pos, b + x - 1, 1.0))
        grad = np.array([dr, dalpha, da, db]) * np.exp(lp)
        return -value, -grad

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(still a customer | x, t_x, T)."""
        self._check_fitted()
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        log_ratio = (
            np.log(a)
            - np.log(np.maximum(b + x - 1, 1e-300))
            + (r + x) * (np.log(alpha + t) - np.log(alpha + tx))
        )
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.clip(log_ratio, -700, 700))), 1.0)

    def expected_purchases(
        self, t_future: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in the next ``t_future`` periods | x, t_x, T] (eq. 10 of the paper)."""
        self._check_fitted()
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        return self.expected_if_alive(t_future, x, t) * self.probability_alive(x, tx, t)

    def expected_if_alive(self, t_future: float, frequency: ArrayLike, T: ArrayLike) -> Array:
        """The factor of eq. 10 that does not involve t_x (so it can be computed per (x, T))."""
        self._check_fitted()
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, t = np.asarray(frequency, dtype=float), np.asarray(T, dtype=float)
        z = t_future / (alpha + t + t_future)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        decay = np.exp((r + x) * np.log((alpha + t) / (alpha + t + t_future)))
        return (a + b + x - 1) / (a - 1) * (1 - decay * hyp)

    def expected_purchases_new(self, t_future: float) -> float:
        """E[purchases in ``t_future`` periods] for a customer just acquired (eq. 7)."""
        self._check_fitted()
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        hyp = special.hyp2f1(r, b, a + b - 1, t_future / (alpha + t_future))
        return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t_future)) ** r * hyp))


class ParetoNBD(_Model):
    """The Pareto/NBD model (Schmittlein, Morrison and Colombo 1987).

    Purchases follow a Poisson process with rate ~ Gamma(r, alpha); lifetimes are exponential
    with rate ~ Gamma(s, beta). The likelihood is evaluated in log space with the Gaussian
    hypergeometric function written so that its argument stays in [0, 1) (Fader, Hardie and
    Lee 2005, "A note on deriving the Pareto/NBD model").
    """

    param_names = ("r", "alpha", "s", "beta")
    _start = (0.5, 10.0, 0.5, 10.0)

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> ParetoNBD:
        """Fit on the BTYD summary (x, t_x, T); ``weights`` counts customers per row."""
        self._fit_summary("Pareto/NBD", frequency, recency, T, weights)
        return self

    @staticmethod
    def _log_terms(
        r: float,
        alpha: float,
        s: float,
        beta: float,
        x: Array,
        tx: Array,
        t: Array,
        pairs: tuple[NDArray[Any], ...] | None = None,
    ) -> Array:
        """Per-row log-likelihood; ``pairs`` (from :func:`_pairs`) lets the hypergeometric
        terms be evaluated once per distinct (x, t_x) and (x, T) instead of once per row."""
        rsx = r + s + x
        # Written so that the hypergeometric argument stays in [0, 1).
        big = max(alpha, beta)
        diff = abs(alpha - beta)

        def log_f(xs: Array, ts: Array) -> Array:
            rsx_u = r + s + xs
            b_u: Array | float = s + 1 if alpha >= beta else r + xs
            return _log_hyp2f1(rsx_u, b_u, rsx_u + 1, diff / (big + ts)) - rsx_u * np.log(big + ts)

        if pairs is None:
            log_f1, log_f2 = log_f(x, tx), log_f(x, t)
        else:
            x1, tx1, inv1, x2, t2, inv2 = pairs
            log_f1, log_f2 = log_f(x1, tx1)[inv1], log_f(x2, t2)[inv2]
        # A0 = F1 - F2 (F1 >= F2 > 0), in logs.
        log_a0 = log_f1 + np.log1p(-np.exp(np.minimum(log_f2 - log_f1, -1e-16)))
        log_first = -(r + x) * np.log(alpha + t) - s * np.log(beta + t)
        log_second = np.log(s) - np.log(rsx) + log_a0
        mx = np.maximum(log_first, log_second)
        log_sum = mx + np.log(np.exp(log_first - mx) + np.exp(log_second - mx))
        return (
            special.gammaln(r + x)
            - special.gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            + log_sum
        )

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        x, tx, t = rows
        return (x, tx, t, *_pairs(x, tx), *_pairs(x, t))

    def _nll(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[float, Array]:
        x, tx, t = data[:3]
        pairs = tuple(data[3:]) or None

        def f(v: Array) -> float:
            r, alpha, s, beta = np.exp(v)
            return -float(np.sum(w * self._log_terms(r, alpha, s, beta, x, tx, t, pairs)))

        value = f(lp)
        # The derivatives of 2F1 in its parameters have no closed form that is cheaper than
        # this: central differences on the log scale, over the compressed rows only.
        grad = np.zeros_like(lp)
        for j in range(len(lp)):
            e = np.zeros_like(lp)
            e[j] = 1e-6
            grad[j] = (f(lp + e) - f(lp - e)) / 2e-6
        return value, grad

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(still a customer | x, t_x, T)."""
        self._check_fitted()
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        log_l = self._log_terms(r, alpha, s, beta, x, tx, t)
        log_alive = (
            special.gammaln(r + x)
            - special.gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            - (r + x) * np.log(alpha + t)
            - s * np.log(beta + t)
        )
        return np.exp(np.minimum(log_alive - log_l, 0.0))

    def expected_purchases(
        self, t_future: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in the next ``t_future`` periods | x, t_x, T]."""
        self._check_fitted()
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        p_alive = self.probability_alive(x, tx, t)
        return (
            p_alive
            * (r + x)
            * (beta + t)
            / ((alpha + t) * (s - 1))
            * (1 - ((beta + t) / (beta + t + t_future)) ** (s - 1))
        )


def _pairs(a: Array, b: Array) -> tuple[Array, Array, NDArray[np.intp]]:
    """Distinct (a, b) pairs and, for every row, the index of its pair."""
    pairs, inverse = np.unique(np.column_stack([a, b]), axis=0, return_inverse=True)
    return pairs[:, 0], pairs[:, 1], np.asarray(inverse, dtype=np.intp).ravel()


def _log_hyp2f1(a: Array, b: Array | float, c: Array, z: Array) -> Array:
    """log 2F1(a, b; c; z) for 0 <= z < 1, switching to a transformation when it overflows."""
    direct = special.hyp2f1(a, b, c, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(direct)
    bad = ~np.isfinite(out) | (direct <= 0)
    if np.any(bad):
        # Pfaff: 2F1(a,b;c;z) = (1-z)^(-b) 2F1(c-a, b; c; z/(z-1)); here c - a = 1.
        zb = np.broadcast_to(z, np.shape(out))[bad]
        ab = np.broadcast_to(a, np.shape(out))[bad]
        bb = np.broadcast_to(b, np.shape(out))[bad]
        cb = np.broadcast_to(c, np.shape(out))[bad]
        out = out.copy()
        out[bad] = -bb * np.log1p(-zb) + np.log(special.hyp2f1(cb - ab, bb, cb, zb / (zb - 1)))
    return out


class GammaGamma(_Model):
    """The Gamma-Gamma model of spend per transaction (Fader, Hardie and Lee 2005, iso-value).

    A customer's transaction values are Gamma(p, nu) with nu ~ Gamma(q, gamma); it assumes
    spend is independent of purchase frequency (checked in ``fit``: the correlation is stored).
    """

    param_names = ("p", "q", "gamma")
    _start = (1.0, 1.0, 1.0)

    def fit(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> GammaGamma:
        """Fit on repeat buyers: ``frequency`` = x > 0 and the mean value of their repeats."""
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        if len(x) != len(m):
            raise ModelError("frequency and monetary_value have different lengths")
        keep = (x > 0) & np.isfinite(m)
        if np.any(m[keep] <= 0):
            raise ModelError(
                f"{int(np.sum(m[keep] <= 0))} repeat buyers have a mean spend <= 0",
                "Gamma-Gamma needs positive spend: exclude them or fix their returns",
            )
        x, m = x[keep], m[keep]
        if len(x) < 10:
            raise ModelError(
                f"Gamma-Gamma needs repeat buyers: only {len(x)} found", "wait for more history"
            )
        self.frequency_spend_correlation_ = (
            float(np.corrcoef(x, m)[0, 1]) if np.std(x) > 0 and np.std(m) > 0 else 0.0
        )
        if weights is None:
            (x, m), w = compress(x, m)
        else:
            w = np.asarray(weights, dtype=float)[keep]
        self._optimise((x, m), w)
        return self

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        return _with_unique_x(*rows, w)

    def _nll(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[float, Array]:
        p, q, g = np.exp(lp)
        x, m, ux, wx = data
        pux = p * ux
        # Gamma-function terms depend on x alone: once per distinct x.
        by_x = (
            special.gammaln(pux + q)
            - special.gammaln(pux)
            - special.gammaln(q)
            + q * np.log(g)
            + pux * np.log(ux)
        )
        psi_pq = special.digamma(pux + q)
        dp_x = ux * (psi_pq - special.digamma(pux) + np.log(ux))
        dq_x = psi_pq - special.digamma(q) + np.log(g)
        px = p * x
        log_gxm = np.log(g + x * m)
        ll_rows = (px - 1) * np.log(m) - (px + q) * log_gxm
        value = float(np.sum(wx * by_x) + np.sum(w * ll_rows))
        dp = np.sum(wx * dp_x) + np.sum(w * x * (np.log(m) - log_gxm))
        dq = np.sum(wx * dq_x) - np.sum(w * log_gxm)
        dg = np.sum(w * (q / g - (px + q) / (g + x * m)))
        grad = np.array([dp, dq, dg]) * np.exp(lp)
        return -value, -grad

    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
        """E[value of a transaction | x, mean value]; the population mean when x = 0."""
        self._check_fitted()
        p, q, g = (self.params_[k] for k in self.param_names)
        x = np.asarray(frequency, dtype=float)
        m = np.nan_to_num(np.asarray(monetary_value, dtype=float))
        return (p * (g + x * m)) / (p * x + q - 1)
