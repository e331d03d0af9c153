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

from segmentum.stats import Z95, wilson_arrays, wilson_interval

__all__ = ["Z95", "index_interval", "wilson_arrays", "wilson_interval"]


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
