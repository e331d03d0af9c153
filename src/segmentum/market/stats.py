"""Intervals for penetration and its index: the Wilson score interval, carried to the index.

Penetration is customers / population in a cell. Read as the rate at which the cell's people
become customers, it is a binomial proportion; the Wilson interval (Wilson 1927) keeps its
coverage for the small counts and rates near zero that market cells have, where the Wald
interval collapses to zero width or goes negative. Newcombe (1998, *Statistics in Medicine*
17:857) lists it as method 3 with worked examples that the tests reproduce.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Two-sided 95 %: the normal quantile 0.975.
Z95 = 1.959963984540054


def wilson_interval(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n``.

    Parameters
    ----------
    k, n
        Successes (customers) and trials (population); ``0 <= k <= n``, ``n > 0``.
    z
        Normal quantile (1.96 for 95 %).

    Returns
    -------
    tuple of float
        Lower and upper bound.

    Examples
    --------
    >>> lo, hi = wilson_interval(81, 263)  # Newcombe (1998), example (i)
    >>> round(lo, 4), round(hi, 4)
    (0.2553, 0.3662)
    """
    lo, hi = wilson_arrays([k], [n], z)
    return float(lo[0]), float(hi[0])


def wilson_arrays(
    k: ArrayLike, n: ArrayLike, z: float = Z95
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`wilson_interval` for arrays; NaN where ``n <= 0`` or ``k > n``."""
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    ok = (n_arr > 0) & (k_arr >= 0) & (k_arr <= n_arr)
    n_safe = np.where(ok, n_arr, 1.0)
    p = np.where(ok, k_arr / n_safe, 0.0)
    z2 = z * z
    denom = 1 + z2 / n_safe
    centre = (p + z2 / (2 * n_safe)) / denom
    half = z * np.sqrt(np.maximum(p * (1 - p) / n_safe + z2 / (4 * n_safe * n_safe), 0.0)) / denom
    lo = np.where(ok, np.clip(centre - half, 0.0, 1.0), np.nan)
    hi = np.where(ok, np.clip(centre + half, 0.0, 1.0), np.nan)
    # Exact ends: no customers means the lower bound is 0, everyone means the upper bound is 1.
    lo = np.where(ok & (k_arr == 0), 0.0, lo)
    hi = np.where(ok & (k_arr == n_arr), 1.0, hi)
    return lo, hi


def index_interval(
    k: ArrayLike, n: ArrayLike, overall: float, z: float = Z95
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Index (cell penetration / overall penetration x 100) with its interval.

    The bounds are the cell's Wilson bounds divided by the overall penetration. The overall
    rate is held fixed: it pools every cell, so its own error is small beside one cell's
    (docs/market.md says when that stops being true).
    """
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    lo, hi = wilson_arrays(k_arr, n_arr, z)
    if not overall or not math.isfinite(overall) or overall <= 0:
        nan = np.full(k_arr.shape, np.nan)
        return nan, nan, nan
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = np.where(
            n_arr > 0, 100.0 * (k_arr / np.where(n_arr > 0, n_arr, 1.0)) / overall, np.nan
        )
    return idx, 100.0 * lo / overall, 100.0 * hi / overall
