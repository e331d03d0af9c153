"""Buy-till-you-die models: BG/NBD, MBG/NBD, Pareto/NBD and the Gamma-Gamma spend model.

Fitted by maximum likelihood on the summary (x, t_x, T) the engine hands back, compressed to
its unique rows with counts, so the cost depends on the number of distinct summaries, not
customers. Parameters are optimised on the log scale (they are all positive); standard errors
come from the Hessian of the log-likelihood at the optimum (delta method to the natural scale).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from segmentum.errors import ModelError

Array = NDArray[np.float64]
#: A month in weeks (the unit of T in the literature).
WEEKS_PER_MONTH = 365.25 / 12 / 7


def unique_rows(*columns: ArrayLike) -> tuple[list[Array], NDArray[np.intp], Array]:
    """Distinct rows of the given columns, each row's index among them, and their counts.

    Hash grouping (pandas) rather than ``np.unique(axis=0)``, which sorts a structured view
    and is about ten times slower on a few hundred thousand rows.
    """
    cols = [np.asarray(c, dtype=float) for c in columns]
    frame = pd.DataFrame({i: c for i, c in enumerate(cols)})
    groups = frame.groupby(list(frame.columns), sort=False).ngroup()
    inverse: NDArray[np.intp] = np.asarray(groups, dtype=np.intp)
    k = int(inverse.max()) + 1 if len(inverse) else 0
    first = np.empty(k, dtype=np.intp)
    first[inverse[::-1]] = np.arange(len(inverse) - 1, -1, -1)  # earliest row of each group
    counts: Array = np.bincount(inverse, minlength=k).astype(float)
    return [c[first] for c in cols], inverse, counts


def compress(*columns: ArrayLike) -> tuple[list[Array], Array]:
    """Unique rows of the given columns and how many customers share each."""
    unique, _, counts = unique_rows(*columns)
    return unique, counts


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


class _Model:
    """The shared fitting machinery: log-parameters, optimisation, Hessian, summaries."""

    param_names: tuple[str, ...] = ()
    _start: tuple[float, ...] = ()

    def __init__(
        self, penalizer: float = 0.0, max_iter: int = 500, standard_errors: bool = True
    ) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter
        #: False: skip the standard errors (and polish less tightly) when only the fit's
        #: predictions and likelihood are needed, as when models are compared on a holdout;
        #: Pareto/NBD's errors need a Hessian by differences, the slowest part of its fit.
        self.standard_errors = standard_errors

    #: Models with an analytic Hessian provide ``_terms`` and set this.
    _analytic = False
    #: Upper bounds of the parameters (natural scale; None: unbounded up to e^25).
    _upper: tuple[float | None, ...] = ()

    def _log_upper(self) -> Array:
        n = len(self.param_names)
        ups = [*self._upper, *([None] * (n - len(self._upper)))][:n]
        return np.array([25.0 if u is None else np.log(u) for u in ups])

    def _terms(
        self, theta: Array, data: tuple[NDArray[Any], ...], w: Array, hessian: bool
    ) -> tuple[float, Array, Array | None]:
        """Log-likelihood, its gradient and (with ``hessian``) its Hessian, all with respect
        to the natural parameters ``theta``."""
        raise NotImplementedError

    def _nll(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[float, Array]:
        """Negative log-likelihood and its gradient with respect to the log-parameters."""
        theta = np.exp(lp)
        ll, g, _ = self._terms(theta, data, w, False)
        return -ll, -g * theta

    def _loglik_hess(
        self, theta: Array, data: tuple[NDArray[Any], ...], w: Array
    ) -> tuple[float, Array, Array]:
        ll, g, h = self._terms(theta, data, w, True)
        assert h is not None
        return ll, g, h

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

    def _minimise(
        self, rows: tuple[Array, ...], w: Array, starts: list[Array], *, rough: bool = False
    ) -> Any:
        """L-BFGS from each start until one succeeds; ``rough``: a looser tolerance (a Newton
        polish on all the rows follows)."""
        data = self._prepare(rows, w)
        ftol, gtol = (1e-10, 1e-6) if rough else (1e-14, 1e-9)

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

        from scipy import optimize  # a second to import: only a fit needs it

        best = None
        upper = self._log_upper()
        for start in starts:
            res = optimize.minimize(
                objective,
                np.minimum(start, upper),
                jac=True,
                method="L-BFGS-B",
                # Only real bounds: with box bounds L-BFGS-B's first trial can jump to a
                # corner where the likelihood is not finite.
                bounds=[(None, u) for u in upper] if self._upper else None,
                options={"maxiter": self.max_iter, "ftol": ftol, "gtol": gtol},
            )
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
            if best is not None and best.success:
                break  # later starts are only fallbacks
        return best

    def _penalised(self, theta: Array, data: tuple[NDArray[Any], ...], w: Array) -> Any:
        """Negative penalised log-likelihood, its gradient and Hessian in log-parameters."""
        with np.errstate(all="ignore"):
            ll, g, h = self._loglik_hess(theta, data, w)
        value = -ll + self.penalizer * float(np.sum(theta**2))
        g = -g + self.penalizer * 2 * theta
        h = -h + self.penalizer * 2 * np.eye(len(theta))
        # chain rule for theta = exp(phi)
        g_phi = theta * g
        h_phi = h * np.outer(theta, theta) + np.diag(g_phi)
        return value, g_phi, h_phi

    def _newton(
        self,
        lp: Array,
        data: tuple[NDArray[Any], ...],
        w: Array,
        fixed: NDArray[np.bool_] | None = None,
    ) -> tuple[Array, bool]:
        """Polish an estimate with Newton steps on the analytic Hessian (a few iterations).

        Returns the new log-parameters and whether they converged. A step that does not lower
        the objective is halved; far from the optimum, where the Hessian is not positive
        definite, it is shifted (Levenberg-Marquardt), which turns the step toward the
        gradient. Convergence is quadratic: after a step below 1e-6 (relative, on every
        parameter) the error left is of the order of its square.

        Upper bounds (an active set): a parameter in ``fixed``, or one a step would carry past
        its bound, is held on the bound and Newton works on the others, the maximum on that
        face of the box (BG/NBD with every customer the same dropout chance: b on 1e7, a
        following it). The result is accepted only where the likelihood still rises through
        the bound in every held parameter (the bound binds: a Karush-Kuhn-Tucker point of the
        bounded problem); otherwise it gives up and bounded L-BFGS takes over.
        """
        upper = self._log_upper()
        bounded = upper < 25.0  # the models' real bounds (25 only keeps exp() finite)
        held = np.zeros(len(lp), dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
        lp = np.where(held, upper, np.minimum(lp, upper))
        value, g, h = self._penalised(np.exp(lp), data, w)
        for _ in range(100):
            free = ~held
            if not free.any() or not (np.isfinite(value) and np.all(np.isfinite(h))):
                return lp, False
            hf, gf = h[np.ix_(free, free)], g[free]
            eig_min = float(np.linalg.eigvalsh(hf)[0])
            scale = max(1.0, float(np.max(np.abs(hf))))
            shifted = eig_min <= 1e-8 * scale
            if shifted:
                hf = hf + (abs(eig_min) + 1e-3 * scale) * np.eye(len(gf))
            step = np.zeros_like(lp)
            step[free] = -np.linalg.solve(hf, gf)
            if not shifted and np.max(np.abs(step)) < 1e-6:
                # A held parameter that would rather come back inside: not the maximum. (Slopes
                # below the likelihood's rounding, 1e-8 relative per factor e, are flat.)
                if np.any(g[held] > 1e-8 * max(1.0, abs(value))):
                    return lp, False
                return np.clip(lp + step, -25.0, 25.0), True
            crossing = bounded & free & (lp + step >= upper)
            if crossing.any():  # hold it on its bound and go on with the others
                held = held | crossing
                lp = np.where(held, upper, lp)
                value, g, h = self._penalised(np.exp(lp), data, w)
                continue
            # Near the optimum the decrease a step promises can be smaller than the rounding
            # of the log-likelihood (BG/NBD on its bound: lnG of 1e7 summed over every
            # customer moves by 2e-9 relative): such a step is taken on the slope alone.
            promised = -0.5 * float(g @ step)
            slack = 1e-8 * abs(value) if 0 <= promised <= 1e-8 * abs(value) else 1e-12 * abs(value)
            for _ in range(30):
                trial = np.clip(lp + step, -25.0, 25.0)
                v2, g2, h2 = self._penalised(np.exp(trial), data, w)
                if np.isfinite(v2) and v2 <= value + slack:
                    break
                step = step / 2
            else:
                return lp, False
            lp, value, g, h = trial, v2, g2, h2
        return lp, False

    def _polish(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[Array, bool]:
        """Newton from ``lp``; where it does not converge and a parameter is within a factor
        100 of its upper bound, Newton again with the one nearest its bound held there (the
        likelihood rising along a ridge toward the bound, as BG/NBD's when every customer has
        the same dropout chance: a and b grow together, and L-BFGS crawls after them in
        hundreds of passes over every row, or stops short)."""
        polished, ok = self._newton(lp, data, w)
        upper = self._log_upper()
        gap = np.where(upper < 25.0, upper - lp, np.inf)
        if not ok and gap.min() <= np.log(100.0):
            polished, ok = self._newton(lp, data, w, fixed=gap == gap.min())
        return polished, ok

    def _optimise(self, rows: tuple[Array, ...], w: Array) -> None:
        if self.penalizer < 0:
            raise ModelError(f"penalizer={self.penalizer!r} is not allowed", "use a value >= 0")
        starts = [np.log(self._start), np.zeros(len(self._start))]
        analytic = self._analytic
        # The rows in a fixed order (the engine returns grouped rows in any order): the
        # sample below, and so the fit, are then the same on every run of the same data.
        order = np.lexsort(tuple(np.asarray(r, dtype=float) for r in reversed(rows)))
        rows = tuple(np.asarray(r)[order] for r in rows)
        w = np.asarray(w)[order]
        data = self._prepare(rows, w)
        converged = False
        lp: Array | None = None
        if len(w) > 40_000:
            # Most iterations are spent far from the optimum: walk there on a sample of the
            # distinct rows, then finish on all of them (Newton: a few iterations).
            pick = np.random.default_rng(0).choice(len(w), size=20_000, replace=False)
            sample = tuple(r[pick] for r in rows)
            prepared = self._prepare(sample, w[pick])
            # Newton from the default start can stop on an interior stationary point while
            # the likelihood keeps rising toward a boundary (MBG/NBD on the demo data: 25,000
            # log-likelihood units short); L-BFGS on the sample goes there. The better of the
            # two on the sample is the start on all the rows.
            found: list[Array] = []
            if analytic:
                newton, ok = self._newton(starts[0], prepared, w[pick])
                if ok:
                    found.append(newton)
            rough = self._minimise(sample, w[pick], starts, rough=analytic)
            if rough is not None and np.all(np.isfinite(rough.x)):
                found.append(rough.x)
            near: Array | None = None
            if found:
                with np.errstate(all="ignore"):
                    values = [self._nll(lp_, prepared, w[pick])[0] for lp_ in found]
                near = found[int(np.nanargmin(values))] if np.isfinite(values).any() else None
            if near is not None:
                starts = [near, *starts]
                if analytic:
                    lp, converged = self._polish(near, data, w)
        if not converged:
            best = self._minimise(rows, w, starts, rough=not self.standard_errors)
            if best is None or not np.all(np.isfinite(best.x)):
                raise ModelError(
                    f"{type(self).__name__} did not converge",
                    "check the data, or add a small penalizer",
                )
            lp, converged = best.x, bool(best.success)
            if analytic:
                polished, ok = self._polish(best.x, data, w)
                if ok:
                    lp, converged = polished, True
        assert lp is not None
        self.params_ = {n: float(v) for n, v in zip(self.param_names, np.exp(lp), strict=True)}
        self.log_likelihood_ = -float(self._nll(lp, data, w)[0])
        self.converged_ = converged
        #: Parameters that ended on their upper bound (the likelihood still rose toward it).
        self.at_bound_ = [
            n
            for n, v, u in zip(self.param_names, lp, self._log_upper(), strict=True)
            if v >= u - 1e-6
        ]
        if not self.standard_errors:
            k = len(self.param_names)
            self.covariance_ = np.full((k, k), np.nan)
            self.standard_errors_ = {n: float("nan") for n in self.param_names}
        elif analytic:
            theta = np.exp(lp)
            with np.errstate(all="ignore"):
                h = self._loglik_hess(theta, data, w)[2]
            self._covariance(-h + self.penalizer * 2 * np.eye(len(theta)))
        else:
            self._hessian(lp, data, w)
        for n in self.at_bound_:  # no Wald interval for an estimate on its bound
            self.standard_errors_[n] = float("nan")

    def _covariance(self, h: Array) -> None:
        """Covariance and standard errors from the observed information ``h`` (natural scale)."""
        k = len(h)
        try:
            cov = np.linalg.inv((h + h.T) / 2)
            se = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            cov = np.full((k, k), np.nan)
            se = np.full(k, np.nan)
        self.covariance_ = cov
        self.standard_errors_ = {n: float(v) for n, v in zip(self.param_names, se, strict=True)}

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
        self._covariance(h)

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


class PurchaseModel(_Model):
    """What every purchase model (BG/NBD, MBG/NBD, Pareto/NBD) offers the CLV step: P(alive),
    expected purchases, and the part of the forecast that does not depend on t_x."""

    #: The model's name in messages and reports.
    label = ""
    #: Distinct (x, T) pairs whose forecast overflowed in the last purchases_if_alive call.
    bounded_pairs_: int = 0

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> PurchaseModel:
        """Fit on the BTYD summary (x, t_x, T); ``weights`` counts customers per row."""
        raise NotImplementedError

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(still a customer | x, t_x, T)."""
        raise NotImplementedError

    def expected_if_alive(self, t_future: float, frequency: ArrayLike, T: ArrayLike) -> Array:
        """E[purchases in the next ``t_future`` periods | alive, x, T]."""
        raise NotImplementedError

    def expected_purchases(
        self, t_future: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[purchases in the next ``t_future`` periods | x, t_x, T]."""
        self._check_fitted()
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        return self.expected_if_alive(t_future, x, t) * self.probability_alive(x, tx, t)

    def _if_alive_or_bound(self, t_future: float, x: Array, t: Array) -> Array:
        """:meth:`expected_if_alive`, and where its hypergeometric function overflows (a fit
        at the edge of the parameter space, e.g. r and b in the millions), the purchases of a
        customer who stays active through the horizon: (r + x) / (alpha + T) * t, the limit
        the forecast tends to as dropout vanishes, and an upper bound otherwise. How many
        distinct (x, T) pairs needed it is kept in ``bounded_pairs_``."""
        with np.errstate(all="ignore"):
            out = np.asarray(self.expected_if_alive(t_future, x, t), dtype=float)
        bad = ~np.isfinite(out) | (out < 0)
        if bad.any():
            r, alpha = self.params_["r"], self.params_["alpha"]
            out = np.where(bad, (r + x) / (alpha + t) * t_future, out)
            self.bounded_pairs_ = max(self.bounded_pairs_, int(bad.sum()))
        return out

    def purchases_if_alive(
        self,
        frequency: ArrayLike,
        T: ArrayLike,
        months: int,
        monthly_discount: float = 0.0,
        month_length: float = WEEKS_PER_MONTH,
    ) -> tuple[Array, Array]:
        """Expected purchases in the next ``months`` months for a customer still alive, and
        the same with month k discounted by ``(1 + monthly_discount) ** -k``.

        Both depend on (x, T) only, so the hypergeometric function is evaluated once per
        distinct pair. ``month_length`` is a month in the unit of T (weeks by default).
        """
        self._check_fitted()
        (ux, ut), inverse, _ = unique_rows(frequency, T)
        cumulative = np.vstack(
            [np.zeros(len(ux))]
            + [self._if_alive_or_bound(k * month_length, ux, ut) for k in range(1, months + 1)]
        )
        discount = (1 + monthly_discount) ** -np.arange(1, months + 1)
        discounted = (np.diff(cumulative, axis=0) * discount[:, None]).sum(axis=0)
        return cumulative[-1][inverse], discounted[inverse]


class BetaGeo(PurchaseModel):
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
    # When every customer has about the same dropout probability p, the likelihood keeps rising
    # as a and b grow together (Beta(a, b) tends to a point mass at p = a / (a + b)): no finite
    # maximum. Past 1e7 the predictions no longer change; stop there and say so (``at_bound_``).
    _upper = (None, None, 1e7, 1e7)

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BetaGeo:
        """Fit on the BTYD summary (x, t_x, T); ``weights`` counts customers per row."""
        self._fit_summary(self.label, frequency, recency, T, weights)
        return self

    _analytic = True
    #: The model's name in messages and reports.
    label = "BG/NBD"
    #: Whether a customer can drop out at time zero, before any repeat purchase (MBG/NBD).
    _drop_at_zero = False

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        x, tx, t = rows
        # The gamma functions depend on x alone, which takes few distinct values: they are
        # evaluated once per distinct x (a lookup per row costs more than a log, so T and
        # t_x are used as they are).
        ux, ix = np.unique(x, return_inverse=True)
        wx = np.bincount(ix, weights=w, minlength=len(ux)).astype(float)
        return (x, tx, t, ux, wx, ix)

    def _terms(
        self, theta: Array, data: tuple[NDArray[Any], ...], w: Array, hessian: bool
    ) -> tuple[float, Array, Array | None]:
        """Eq. 6 of the paper: LL = A(x) + log(exp(a3) + [x > 0] exp(a4)), with
        A = lnG(r+x) - lnG(r) + r ln(alpha) + lnB(a, b+x) - lnB(a, b) terms, a3 = -(r+x) ln(alpha+T)
        and a4 = ln(a) - ln(b+x-1) - (r+x) ln(alpha+t_x)."""
        r, alpha, a, b = theta
        x, tx, t, ux, wx, ix = data
        dg, tg = special.digamma, special.polygamma
        # MBG/NBD: one more chance to drop out (at time zero), so B(a, b + x + 1) and the
        # dropout term a / (b + x) apply to every customer, one-time buyers included.
        k = 1.0 if self._drop_at_zero else 0.0
        # Per distinct x.
        a_x = (
            special.gammaln(r + ux)
            - special.gammaln(r)
            + r * np.log(alpha)
            + special.gammaln(a + b)
            + special.gammaln(b + ux + k)
            - special.gammaln(b)
            - special.gammaln(a + b + ux + k)
        )
        psi_ab = dg(a + b) - dg(a + b + ux + k)
        if self._drop_at_zero:
            inv_b_u = 1.0 / (b + ux)
            log_a4_u = np.log(a) + np.log(inv_b_u)
        else:
            inv_b_u = np.where(ux > 0, 1.0 / np.where(ux > 0, b + ux - 1, 1.0), 0.0)
            log_a4_u = np.where(ux > 0, np.log(a) + np.log(np.where(ux > 0, inv_b_u, 1.0)), -np.inf)
        # Per row, through the lookups.
        log_t = np.log(alpha + t)
        log_tx = np.log(alpha + tx)
        rx = r + x
        a3 = -rx * log_t
        a4 = log_a4_u[ix] - rx * log_tx
        # log(exp(a3) + exp(a4)) by hand: np.logaddexp and expit are ~20x slower than this.
        mx = np.maximum(a3, a4)
        e3, e4 = np.exp(a3 - mx), np.exp(a4 - mx)
        total = e3 + e4
        w3, w4 = e3 / total, e4 / total
        ll = float(wx @ a_x + w @ (mx + np.log(total)))
        inv_t = 1.0 / (alpha + t)
        inv_tx = 1.0 / (alpha + tx)
        inv_b = inv_b_u[ix]
        ww4 = w * w4
        sum_w4 = float(np.sum(ww4))
        g = np.array(
            [
                wx @ (dg(r + ux) - dg(r) + np.log(alpha)) - w @ (w3 * log_t + w4 * log_tx),
                wx.sum() * r / alpha - (w * rx) @ (w3 * inv_t + w4 * inv_tx),
                wx @ psi_ab + sum_w4 / a,
                wx @ (psi_ab + dg(b + ux + k) - dg(b)) - ww4 @ inv_b,
            ]
        )
        if not hessian:
            return ll, g, None
        tri_ab = tg(1, a + b) - tg(1, a + b + ux + k)
        h = np.zeros((4, 4))
        h[0, 0] = wx @ (tg(1, r + ux) - tg(1, r))
        h[0, 1] = wx.sum() / alpha - w @ (w3 * inv_t + w4 * inv_tx)
        h[1, 1] = -wx.sum() * r / alpha**2 + (w * rx) @ (w3 * inv_t**2 + w4 * inv_tx**2)
        h[2, 2] = wx @ tri_ab - sum_w4 / a**2
        h[2, 3] = wx @ tri_ab
        h[3, 3] = wx @ (tri_ab + tg(1, b + ux + k) - tg(1, b)) + ww4 @ inv_b**2
        # The mixing term w3 w4 (grad a3 - grad a4)(grad a3 - grad a4)'.
        c = w * w3 * w4
        diff = np.vstack([log_tx - log_t, -rx * (inv_t - inv_tx), np.full_like(x, -1.0 / a), inv_b])
        h += (diff * c) @ diff.T
        return ll, g, np.triu(h) + np.triu(h, 1).T

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


class ModifiedBetaGeo(BetaGeo):
    """The MBG/NBD model (Batislam, Denizel and Filiztekin 2007).

    BG/NBD with one change: a customer can also drop out at time zero, right after the first
    purchase, with the same probability p ~ Beta(a, b) as after every later purchase. So a
    one-time buyer is not certainly alive (in BG/NBD their P(alive) is 1 whatever their
    silence); their P(alive) falls the longer they stay silent. Same API as :class:`BetaGeo`.

    Examples
    --------
    >>> m = ModifiedBetaGeo().fit([0, 2, 5, 1], [0, 10.0, 30.0, 3.0], [40.0, 38.0, 39.0, 20.0])
    >>> bool(m.probability_alive([0], [0.0], [40.0])[0] < 1)
    True
    """

    label = "MBG/NBD"
    _drop_at_zero = True

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> ModifiedBetaGeo:
        """Fit on the BTYD summary (x, t_x, T); ``weights`` counts customers per row."""
        self._fit_summary(self.label, frequency, recency, T, weights)
        return self

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(still a customer | x, t_x, T) = 1 / (1 + a / (b + x) ((alpha + T) /
        (alpha + t_x))^(r + x)), for every x (one-time buyers included)."""
        self._check_fitted()
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        log_ratio = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + t) - np.log(alpha + tx))
        return np.asarray(1.0 / (1.0 + np.exp(np.clip(log_ratio, -700, 700))), dtype=float)

    def expected_if_alive(self, t_future: float, frequency: ArrayLike, T: ArrayLike) -> Array:
        """E[purchases in the next ``t_future`` periods | alive, x, T]: a customer alive after
        x purchases has survived x + 1 dropout chances, so p ~ Beta(a, b + x + 1)."""
        self._check_fitted()
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        x, t = np.asarray(frequency, dtype=float), np.asarray(T, dtype=float)
        z = t_future / (alpha + t + t_future)
        hyp = special.hyp2f1(r + x, b + x + 1, a + b + x, z)
        decay = np.exp((r + x) * np.log((alpha + t) / (alpha + t + t_future)))
        return np.asarray((a + b + x) / (a - 1) * (1 - decay * hyp), dtype=float)

    def expected_purchases_new(self, t_future: float) -> float:
        """E[repeat purchases in ``t_future`` periods] for a customer just acquired."""
        self._check_fitted()
        r, alpha, a, b = (self.params_[k] for k in self.param_names)
        hyp = special.hyp2f1(r, b + 1, a + b, t_future / (alpha + t_future))
        return float(b / (a - 1) * (1 - (alpha / (alpha + t_future)) ** r * hyp))


class ParetoNBD(PurchaseModel):
    """The Pareto/NBD model (Schmittlein, Morrison and Colombo 1987).

    Purchases follow a Poisson process with rate ~ Gamma(r, alpha); lifetimes are exponential
    with rate ~ Gamma(s, beta). The likelihood is evaluated in log space with the Gaussian
    hypergeometric function written so that its argument stays in [0, 1) (Fader, Hardie and
    Lee 2005, "A note on deriving the Pareto/NBD model").
    """

    param_names = ("r", "alpha", "s", "beta")
    _start = (0.5, 10.0, 0.5, 10.0)
    # When every customer has about the same dropout rate mu, the likelihood keeps rising as s
    # and beta grow together (Gamma(s, beta) tends to a point mass at mu = s / beta): no
    # finite maximum. Past 1e7 the predictions no longer change; stop there and say so
    # (``at_bound_``), as for BG/NBD's a and b.
    _upper = (None, None, 1e7, 1e7)
    label = "Pareto/NBD"

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
        # Written so that the hypergeometric argument stays in [0, 1).
        big = max(alpha, beta)
        diff = abs(alpha - beta)

        def log_f(xs: Array, ts: Array) -> Array:
            rsx_u = r + s + xs
            b_u: Array | float = s + 1 if alpha >= beta else r + xs
            w = (min(alpha, beta) + ts) / (big + ts)
            return _log_h(rsx_u, b_u, diff / (big + ts), w) - rsx_u * np.log(big + ts)

        if pairs is None:
            log_f1, log_f2 = log_f(x, tx), log_f(x, t)
        else:
            x1, tx1, inv1, x2, t2, inv2 = pairs
            log_f1, log_f2 = log_f(x1, tx1)[inv1], log_f(x2, t2)[inv2]
        # A0 = F1 - F2 (F1 >= F2 > 0), in logs.
        log_a0 = log_f1 + np.log1p(-np.exp(np.minimum(log_f2 - log_f1, -1e-16)))
        return ParetoNBD._combine(r, alpha, s, beta, x, t, log_a0)[0]

    @staticmethod
    def _combine(
        r: float, alpha: float, s: float, beta: float, x: Array, t: Array, log_a0: Array
    ) -> tuple[Array, Array, Array]:
        """Per-row log-likelihood from log A0: C x [1 / ((alpha+T)^(r+x) (beta+T)^s)
        + s / (r+s+x) A0] in logs, and the two terms' shares of the sum (the gradient's
        weights)."""
        log_first = -(r + x) * np.log(alpha + t) - s * np.log(beta + t)
        log_second = np.log(s) - np.log(r + s + x) + log_a0
        mx = np.maximum(log_first, log_second)
        e1, e2 = np.exp(log_first - mx), np.exp(log_second - mx)
        total = e1 + e2
        ll = (
            special.gammaln(r + x)
            - special.gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            + mx
            + np.log(total)
        )
        return ll, e1 / total, e2 / total

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        x, tx, t = rows
        return (x, tx, t, *_pairs(x, tx), *_pairs(x, t))

    def _nll(self, lp: Array, data: tuple[NDArray[Any], ...], w: Array) -> tuple[float, Array]:
        """Negative log-likelihood and its analytic gradient in the log-parameters.

        The derivatives of the hypergeometric terms in their parameters come from their power
        series (see :func:`_log_hyp2f1_slopes`); the rows whose series would need more than a
        few thousand terms (an argument very close to 1) take central differences of those
        terms, on those rows alone. Only when a slope is not finite does the whole gradient
        fall back to central differences of the log-likelihood.
        """
        x, tx, t = data[:3]
        pairs = data[3:]
        theta = np.exp(lp)
        r, alpha, s, beta = theta
        out = self._loglik_grad(r, alpha, s, beta, x, tx, t, pairs)
        if out is not None:
            ll_rows, grad_rows = out
            return -float(w @ ll_rows), -(grad_rows @ w) * theta

        def f(v: Array) -> float:
            r_, a_, s_, b_ = np.exp(v)
            return -float(w @ self._log_terms(r_, a_, s_, b_, x, tx, t, tuple(pairs)))

        grad = np.zeros_like(lp)
        for j in range(len(lp)):
            e = np.zeros_like(lp)
            e[j] = 1e-6
            grad[j] = (f(lp + e) - f(lp - e)) / 2e-6
        return f(lp), grad

    @staticmethod
    def _loglik_grad(
        r: float,
        alpha: float,
        s: float,
        beta: float,
        x: Array,
        tx: Array,
        t: Array,
        pairs: tuple[NDArray[Any], ...],
    ) -> tuple[Array, Array] | None:
        """Per-row log-likelihood and its gradient (4 x rows) in (r, alpha, s, beta)."""
        big, diff = max(alpha, beta), abs(alpha - beta)
        case_a = alpha >= beta  # the hypergeometric's b is s + 1, else r + x

        def log_f(xs: Array, ts: Array) -> tuple[Array, Array] | None:
            """log F(t) and its gradient, F = 2F1(a, b; a+1; z) / (big + t)^a."""
            a = r + s + xs
            b = s + 1 + 0 * xs if case_a else r + xs
            z = diff / (big + ts)
            slopes = _log_hyp2f1_slopes(a, b, z, w=(min(alpha, beta) + ts) / (big + ts))
            if slopes is None:
                return None
            log_h, la, lb, lz = slopes
            log_big = np.log(big + ts)
            value = log_h - a * log_big
            if case_a:  # big = alpha, z = (alpha - beta) / (alpha + t)
                g = [
                    la - log_big,
                    lz * (beta + ts) / (alpha + ts) ** 2 - a / (alpha + ts),
                    la + lb - log_big,
                    -lz / (alpha + ts),
                ]
            else:  # big = beta, z = (beta - alpha) / (beta + t)
                g = [
                    la + lb - log_big,
                    -lz / (beta + ts),
                    la - log_big,
                    lz * (alpha + ts) / (beta + ts) ** 2 - a / (beta + ts),
                ]
            return value, np.vstack(g)

        x1, tx1, inv1, x2, t2, inv2 = pairs
        first_f, second_f = log_f(x1, tx1), log_f(x2, t2)
        if first_f is None or second_f is None:
            return None
        log_f1, g_f1 = first_f[0][inv1], first_f[1][:, inv1]
        log_f2, g_f2 = second_f[0][inv2], second_f[1][:, inv2]
        # A0 = F1 - F2 (F1 >= F2 > 0), in logs; rho = F2 / F1.
        rho = np.exp(np.minimum(log_f2 - log_f1, -1e-16))
        log_a0 = log_f1 + np.log1p(-rho)
        g_a0 = (g_f1 - rho * g_f2) / np.maximum(1 - rho, 1e-300)
        ll, w1, w2 = ParetoNBD._combine(r, alpha, s, beta, x, t, log_a0)
        rsx = r + s + x
        g_first = np.vstack(
            [-np.log(alpha + t), -(r + x) / (alpha + t), -np.log(beta + t), -s / (beta + t)]
        )
        g_second = g_a0 + np.vstack([-1 / rsx, 0 * x, 1 / s - 1 / rsx, 0 * x])
        # Rows where A0 vanishes (t_x = T) give the second term no weight: no slope from it.
        g_second = np.where(np.isfinite(g_second), g_second, 0.0)
        grad = w1 * g_first + w2 * g_second
        grad[0] += special.digamma(r + x) - special.digamma(r) + np.log(alpha)
        grad[1] += r / alpha
        grad[2] += np.log(beta)
        grad[3] += s / beta
        return ll, grad

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

    def expected_if_alive(self, t_future: float, frequency: ArrayLike, T: ArrayLike) -> Array:
        """E[purchases in the next ``t_future`` periods | alive, x, T]: (r+x)(beta+T) /
        ((alpha+T)(s-1)) [1 - ((beta+T) / (beta+T+t))^(s-1)], its limit at s = 1 a log."""
        self._check_fitted()
        r, alpha, s, beta = (self.params_[k] for k in self.param_names)
        x, t = np.asarray(frequency, dtype=float), np.asarray(T, dtype=float)
        rate = (r + x) / (alpha + t)
        ratio = np.log((beta + t + t_future) / (beta + t))
        if abs(s - 1) < 1e-8:
            return np.asarray(rate * (beta + t) * ratio, dtype=float)
        return np.asarray(rate * (beta + t) / (s - 1) * -np.expm1(-(s - 1) * ratio), dtype=float)


def dropout_identified(model: PurchaseModel) -> bool:
    """Whether the fit learned the dropout process: False when it ran to a bound (BG/NBD
    family: a + b huge, every customer the same dropout chance, or a near 0, nobody drops
    out; Pareto/NBD: s near 0 or beta huge). P(alive) is not a probability then."""
    p = model.params_
    if isinstance(model, BetaGeo):
        a, b = p["a"], p["b"]
        return not (a + b > 1e4 or a < 1e-3 or {"a", "b"} & set(model.at_bound_))
    return not (p["s"] < 1e-3 or p["beta"] > 1e6 or model.at_bound_)


def _pairs(a: Array, b: Array) -> tuple[Array, Array, NDArray[np.intp]]:
    """Distinct (a, b) pairs and, for every row, the index of its pair."""
    (ua, ub), inverse, _ = unique_rows(a, b)
    return ua, ub, inverse


# Rows above which SciPy's 2F1 is split across threads: it releases the GIL, and near z = 1
# (Pareto/NBD with one scale many times the other) it costs microseconds a row (a fit calls
# it on 8,000 to 21,000 distinct pairs at a time at 870,000 customers).
_HYP2F1_SPLIT = 4_000
_hyp2f1_pool: Any = None


def _hyp2f1(a: Any, b: Any, c: Any, z: Any) -> Array:
    """``special.hyp2f1`` element by element, large arrays in one chunk per core (the same
    values: every element is computed alone). 2F1 alone runs twice as fast on 2 cores; the
    Pareto/NBD holdout fit of 870,000 demo customers went from 17.5 s to 15.3 s (the series
    and the array arithmetic around it stay on one core)."""
    global _hyp2f1_pool
    a, b, c, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, c, z)))
    workers = min(4, os.cpu_count() or 1)
    if a.ndim != 1 or a.size < _HYP2F1_SPLIT or workers < 2:
        return np.asarray(special.hyp2f1(a, b, c, z), dtype=float)
    # A forked child inherits the pool object but not its threads: it makes its own.
    if _hyp2f1_pool is None or _hyp2f1_pool[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers, thread_name_prefix="segmentum-hyp2f1")
        _hyp2f1_pool = (os.getpid(), pool)
    edges = np.linspace(0, a.size, workers + 1).astype(int)

    def chunk(ij: tuple[int, int]) -> Array:
        i, j = ij
        return np.asarray(special.hyp2f1(a[i:j], b[i:j], c[i:j], z[i:j]), dtype=float)

    parts = list(_hyp2f1_pool[1].map(chunk, itertools.pairwise(edges)))
    return np.concatenate(parts)


def _log_hyp2f1(a: Array, b: Array | float, c: Array, z: Array) -> Array:
    """log 2F1(a, b; c; z) for 0 <= z < 1, switching to a transformation when it overflows."""
    direct = _hyp2f1(a, b, c, z)
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
        out[bad] = -bb * np.log1p(-zb) + np.log(_hyp2f1(cb - ab, bb, cb, zb / (zb - 1)))
    return out


def _log_h(a: Array, b: Array | float, z: Array, w: Array) -> Array:
    """log 2F1(a, b; a+1; z), ``w`` = 1 - z: rows with z near 1 from the connection of z with
    1 - z (:func:`_connection_slopes`), the others (and any it cannot take) from SciPy."""
    a, b, z, w = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, z, w))
    out = np.empty_like(a)
    near = np.flatnonzero(w < 0.1)
    done = np.zeros(len(a), dtype=bool)
    if len(near):
        log_h, _, _, ok = _connection_slopes(a[near], b[near], w[near])
        out[near[ok]] = log_h[ok]
        done[near[ok]] = True
    rest = ~done
    if rest.any():
        out[rest] = _log_hyp2f1(a[rest], b[rest], a[rest] + 1, z[rest])
    return out


def _log_hyp2f1_slopes(
    a: Array, b: Array, z: Array, max_terms: int = 300, w: Array | None = None
) -> tuple[Array, Array, Array, Array] | None:
    """log H and d log H / da, db, dz for H = 2F1(a, b; a+1; z), 0 <= z < 1, every row.

    Rows whose power series converges within ``max_terms`` take their slopes from it
    (:func:`_hyp2f1_and_slopes`); the others (z close to 1 or a large b: one of the Pareto/NBD
    scales many times the other) from central differences of log H in a and b, on those rows
    alone: summing thousands of terms in numpy costs more than SciPy's 2F1 at a few points
    (a Pareto/NBD fit on 293,000 distinct rows of 870,000 customers: 53 s with every slope
    from differences of the whole likelihood, 75 s with series up to 5,000 terms, 29 s
    so). Most of those rows (z near 1) take the connection of z with 1 - z instead
    (:func:`_connection_slopes`, a short series in 1 - z: no SciPy 2F1 at all); only the rows
    it cannot take (b near a whole number) are left to the differences. ``w`` is 1 - z when
    the caller has it more exactly than 1 - z. dH/dz is in closed form for all. None when a
    slope is not finite.
    """
    a, b, z = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, z))
    w = 1 - z if w is None else np.broadcast_to(np.asarray(w, dtype=float), z.shape)
    log_h, la, lb, lz = (np.zeros_like(a) for _ in range(4))
    # The series' terms grow until n ~ b z / (1 - z), then fall no faster than z^n (1e-17 after
    # ln(1e17) / -ln(z) more): rows that cannot finish within max_terms are not started.
    with np.errstate(divide="ignore"):
        needed = b * z / np.maximum(1 - z, 1e-300) + 39.2 / -np.log(np.where(z > 0, z, 0.5))
    quick = needed <= max_terms
    series = _hyp2f1_and_slopes(a[quick], b[quick], z[quick], max_terms) if quick.any() else None
    if series is None:  # some row of the series needed more terms: the differences for all
        quick[:] = False
    else:
        h, h_a, h_b = series
        aq, bq, zq = a[quick], b[quick], z[quick]
        log_h[quick], la[quick], lb[quick] = np.log(h), h_a / h, h_b / h
        lz[quick] = aq * bq / (aq + 1) * _hyp2f1(aq + 1, bq + 1, aq + 2, zq) / h
    slow = ~quick
    if slow.any():
        far = np.flatnonzero(slow)
        c_log_h, c_la, c_lb, c_ok = _connection_slopes(a[far], b[far], w[far])
        took = far[c_ok]
        log_h[took], la[took], lb[took] = c_log_h[c_ok], c_la[c_ok], c_lb[c_ok]
        # dH/dz = a / z ((1 - z)^-b - H) (from z^a H = a * integral_0^z t^(a-1) (1-t)^-b dt).
        lz[took] = a[took] / z[took] * np.expm1(-b[took] * np.log(w[took]) - log_h[took])
        slow[took] = False
    if slow.any():
        a_, b_, z_ = a[slow], b[slow], z[slow]
        log_h[slow] = _log_hyp2f1(a_, b_, a_ + 1, z_)
        da, db = 1e-6 * np.maximum(1.0, a_), 1e-6 * np.maximum(1.0, b_)
        up, down = (
            _log_hyp2f1(a_ + da, b_, a_ + 1 + da, z_),
            _log_hyp2f1(a_ - da, b_, a_ + 1 - da, z_),
        )
        la[slow] = (up - down) / (2 * da)
        up, down = _log_hyp2f1(a_, b_ + db, a_ + 1, z_), _log_hyp2f1(a_, b_ - db, a_ + 1, z_)
        lb[slow] = (up - down) / (2 * db)
        lz[slow] = (
            a_ * b_ / (a_ + 1) * np.exp(_log_hyp2f1(a_ + 1, b_ + 1, a_ + 2, z_) - log_h[slow])
        )
    if not (np.all(np.isfinite(la[slow])) and np.all(np.isfinite(lb[slow]))):
        return None
    if not np.all(np.isfinite(lz[slow])):
        return None
    return log_h, la, lb, lz


def _connection_slopes(
    a: Array, b: Array, w: Array, max_terms: int = 400
) -> tuple[Array, Array, Array, NDArray[np.bool_]]:
    """log H and d log H / da, db for H = 2F1(a, b; a+1; z), z = 1 - ``w`` close to 1,
    from the connection of z with 1 - z (DLMF 15.8.4 with c = a + 1):

    H = G(a+1) G(1-b) / G(a+1-b) z^-a + a / (b-1) w^(1-b) 2F1(1, a+1-b; 2-b; w),

    the second function a power series in the small w (terms t_n+1 = t_n (a+1-b+n) / (2-b+n)
    w), its slopes in a and b summed with it (digamma differences as running sums). Here
    a + 1 - b > 0 (Pareto/NBD: r + x or s + 1). Rows are ``ok`` where the series settled
    within ``max_terms`` and neither the two terms nor the series' own terms cancel by more
    than four digits (b near a whole number puts both terms near a pole); the caller takes
    the others another way.
    """
    # Rows whose series or terms overflow are not ``ok`` (checked at the end): the overflow
    # is expected there, not a warning for whoever runs a fit (8 lines of numpy on stderr).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _connection_series(a, b, w, max_terms)


def _connection_series(
    a: Array, b: Array, w: Array, max_terms: int
) -> tuple[Array, Array, Array, NDArray[np.bool_]]:
    a, b, w = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, w))
    n_rows = len(a)
    log_h, la, lb = np.zeros(n_rows), np.zeros(n_rows), np.zeros(n_rows)
    ok = (w > 0) & (w < 0.5) & (np.abs(b - np.round(b)) > 1e-6)
    u = a + 1 - b
    ok &= u > 0
    # The series, on the rows that can use it.
    idx = np.flatnonzero(ok)
    au, bu, uu, wu = a[idx], b[idx], u[idx], w[idx]
    f, fa, fb = np.ones(len(idx)), np.zeros(len(idx)), np.zeros(len(idx))
    term, s1, s2, size = (
        np.ones(len(idx)),
        np.zeros(len(idx)),
        np.zeros(len(idx)),
        np.ones(len(idx)),
    )
    active = np.arange(len(idx))
    for n in range(max_terms):
        if len(active) == 0:
            break
        ua, ba, wa = uu[active], bu[active], wu[active]
        s1[active] += 1.0 / (ua + n)
        s2[active] += 1.0 / (2 - ba + n)
        ratio = (ua + n) / (2 - ba + n) * wa
        term[active] *= ratio
        t = term[active]
        f[active] += t
        fa[active] += t * s1[active]
        fb[active] += t * (s2[active] - s1[active])
        size[active] += np.abs(t)
        # Past the terms whose sign turns (n > b - 2) and falling: done once negligible.
        done = (n > ba - 2) & (np.abs(ratio) < 1) & (np.abs(t) <= 1e-17 * np.abs(f[active]))
        active = active[~done]
    settled = np.ones(len(idx), dtype=bool)
    settled[active] = False
    # The two terms in logs, scaled together, with their signs: P, and Q = q0 F2.
    log_z = np.log1p(-wu)
    log_p = special.gammaln(au + 1) + special.gammaln(1 - bu) - special.gammaln(uu) - au * log_z
    log_q0 = np.log(au) - np.log(np.abs(bu - 1)) + (1 - bu) * np.log(wu)
    top = np.maximum(log_p, log_q0 + np.log(size))
    p_ = special.gammasgn(1 - bu) * np.exp(log_p - top)
    q0 = np.sign(bu - 1) * np.exp(log_q0 - top)
    h = p_ + q0 * f
    # Rounding: about 1e-16 of P and of the series' terms (their sizes summed), against H.
    good = settled & (h > 0) & (np.abs(p_) + np.abs(q0) * size <= 1e4 * h)
    # Slopes: P's from the gamma functions and z^-a; Q's from q0 = a / (b-1) w^(1-b) and the
    # series' sums (no division by F2, which can be near 0 while Q is a small correction).
    dp_a = special.digamma(au + 1) - special.digamma(uu) - log_z
    dp_b = special.digamma(uu) - special.digamma(1 - bu)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_safe = np.where(good, h, 1.0)
        slope_a = (p_ * dp_a + q0 * (f / au + fa)) / h_safe
        slope_b = (p_ * dp_b + q0 * (f * (-1.0 / (bu - 1) - np.log(wu)) + fb)) / h_safe
        value = top + np.log(h_safe)
    good &= np.isfinite(slope_a) & np.isfinite(slope_b) & np.isfinite(value)
    rows = idx[good]
    log_h[rows], la[rows], lb[rows] = value[good], slope_a[good], slope_b[good]
    ok[:] = False
    ok[rows] = True
    return log_h, la, lb, ok


def _hyp2f1_and_slopes(
    a: Array, b: Array, z: Array, max_terms: int = 5000
) -> tuple[Array, Array, Array] | None:
    """H = 2F1(a, b; a+1; z) and its derivatives in a and b, for 0 <= z < 1.

    With c = a + 1 the series is H = sum_n a / (a + n) (b)_n z^n / n!, so
    dH/da = sum_n n / (a + n)^2 (b)_n z^n / n! and
    dH/db = sum_n a / (a + n) (b)_n z^n / n! (psi(b + n) - psi(b)), the digamma difference
    being sum_{k < n} 1 / (b + k). Summed until every row's next terms are below 1e-17 of its
    sums (rows drop out as they converge). None when some row needs more than ``max_terms``.
    """
    a, b, z = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, z))
    # The terms fall no faster than z^n: reaching 1e-17 takes at least ln(1e17) / -ln(z)
    # terms. When even that is over the limit, say so before summing thousands of terms for
    # nothing (met with beta >> alpha, where z is within 1e-3 of 1).
    z_max = float(np.max(z)) if z.size else 0.0
    if z_max > 0 and 39.2 / -np.log(z_max) > max_terms:
        return None
    h, h_a, h_b = np.ones_like(a), np.zeros_like(a), np.zeros_like(a)
    term = np.ones_like(a)  # (b)_n z^n / n!
    psi_gap = np.zeros_like(a)  # psi(b + n) - psi(b)
    active = np.arange(len(a))
    for n in range(1, max_terms + 1):
        aa, bb, zz = a[active], b[active], z[active]
        psi_gap[active] += 1.0 / (bb + n - 1)
        term[active] *= (bb + n - 1) * zz / n
        tn = term[active]
        c0 = aa / (aa + n) * tn
        c1 = n / (aa + n) ** 2 * tn
        c2 = c0 * psi_gap[active]
        h[active] += c0
        h_a[active] += c1
        h_b[active] += c2
        # Terms shrink geometrically once n > b z / (1 - z): stop when all three are negligible.
        small = (np.abs(c0) <= 1e-17 * h[active]) & (np.abs(c1) <= 1e-17 * np.abs(h_a[active]))
        small &= np.abs(c2) <= 1e-17 * np.abs(h_b[active]) + 1e-300
        small &= n > (bb * zz) / np.maximum(1 - zz, 1e-300)
        active = active[~small]
        if len(active) == 0:
            return h, h_a, h_b
    return None


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

    _analytic = True

    def _prepare(self, rows: tuple[Array, ...], w: Array) -> tuple[NDArray[Any], ...]:
        x, m = rows
        ux, ix = np.unique(x, return_inverse=True)
        wx = np.bincount(ix, weights=w, minlength=len(ux)).astype(float)
        log_m = np.log(m)
        w_x = w * x
        return (x, m, ux, wx, w_x, np.asarray(w @ log_m), np.asarray(w_x @ log_m))

    def _terms(
        self, theta: Array, data: tuple[NDArray[Any], ...], w: Array, hessian: bool
    ) -> tuple[float, Array, Array | None]:
        """LL = lnG(px+q) - lnG(px) - lnG(q) + q ln(gamma) + px ln(x) + (px-1) ln(m)
        - (px+q) ln(gamma + x m), summed over repeat buyers (x, mean spend m)."""
        p, q, gam = theta
        x, m, ux, wx, w_x, sum_log_m, sum_x_log_m = data
        dg, tg = special.digamma, special.polygamma
        pux = p * ux
        by_x = (
            special.gammaln(pux + q)
            - special.gammaln(pux)
            - special.gammaln(q)
            + q * np.log(gam)
            + pux * np.log(ux)
        )
        spend = gam + x * m
        log_s = np.log(spend)
        inv_s = 1.0 / spend
        wx_log_s, w_log_s = float(w_x @ log_s), float(w @ log_s)
        wx_inv, w_inv = float(w_x @ inv_s), float(w @ inv_s)
        ll = float(wx @ by_x + p * sum_x_log_m - sum_log_m - p * wx_log_s - q * w_log_s)
        psi = dg(pux + q)
        n = wx.sum()
        g = np.array(
            [
                wx @ (ux * (psi - dg(pux) + np.log(ux))) + sum_x_log_m - wx_log_s,
                wx @ (psi - dg(q) + np.log(gam)) - w_log_s,
                n * q / gam - p * wx_inv - q * w_inv,
            ]
        )
        if not hessian:
            return ll, g, None
        tri = tg(1, pux + q)
        h = np.empty((3, 3))
        h[0, 0] = wx @ (ux**2 * (tri - tg(1, pux)))
        h[0, 1] = h[1, 0] = wx @ (ux * tri)
        h[0, 2] = h[2, 0] = -wx_inv
        h[1, 1] = wx @ (tri - tg(1, q))
        h[1, 2] = h[2, 1] = n / gam - w_inv
        h[2, 2] = -n * q / gam**2 + p * float(w_x @ inv_s**2) + q * float(w @ inv_s**2)
        return ll, g, h

    def customer_lifetime_value(
        self,
        purchases: PurchaseModel,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        monetary_value: ArrayLike,
        *,
        months: int = 12,
        monthly_discount: float = 0.01,
        month_length: float = WEEKS_PER_MONTH,
    ) -> Array:
        """Discounted expected spend over the next ``months`` months, per customer.

        Expected spend per purchase (this model) times the expected purchases in each month
        (``purchases``, a fitted purchase model), month k discounted by
        ``(1 + monthly_discount) ** -k``. ``month_length`` is a month in the unit of T.

        Examples
        --------
        >>> bg = BetaGeo().fit([0, 2, 5, 1, 3], [0, 10.0, 30.0, 3.0, 20.0], [40.0, 38, 39, 20, 30])
        >>> gg = GammaGamma().fit([1, 2, 3] * 5, [10.0, 20.0, 15.0] * 5)
        >>> clv = gg.customer_lifetime_value(bg, [2], [10.0], [38.0], [20.0])
        >>> clv.shape
        (1,)
        """
        self._check_fitted()
        x, tx, t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        _, discounted = purchases.purchases_if_alive(x, t, months, monthly_discount, month_length)
        alive = purchases.probability_alive(x, tx, t)
        return self.expected_spend(x, monetary_value) * alive * discounted

    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
        """E[value of a transaction | x, mean value]; the population mean when x = 0."""
        self._check_fitted()
        p, q, g = (self.params_[k] for k in self.param_names)
        x = np.asarray(frequency, dtype=float)
        m = np.nan_to_num(np.asarray(monetary_value, dtype=float))
        return (p * (g + x * m)) / (p * x + q - 1)
