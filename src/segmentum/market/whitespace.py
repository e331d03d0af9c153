"""White space: large, under-penetrated cells that resemble the best cells (a cell look-alike).

Each cell is described by who lives there (its non-geographic dimensions: age band, gender,
industry, size band), what the population file says of it (market size per head, growth), and
what its customers are worth (expected value per customer and share of high-value customers,
shrunk towards the base's average by ``prior`` customers so that a cell with three customers
does not look like the best one by luck). The best cells are the top ``best_share`` of cells
with at least ``min_customers`` customers, by expected value per customer. A cell's similarity
is its mean Gower similarity (Gower 1971: matching for categories, 1 - |difference| / range for
numbers) to the best cells; its headroom the customers it would gain at the best cells' pooled
penetration. The score is headroom x expected value x similarity: money, weighted by resemblance.
Geography is left out of the resemblance on purpose: where people live is what is being searched.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import NDArray

# Rows compared with the best cells at a time (memory stays bounded with many cells).
_CHUNK = 4096


def _shrunk(
    values: NDArray[np.float64], weights: NDArray[np.float64], prior: float
) -> tuple[NDArray[np.float64], float]:
    v = np.nan_to_num(values, nan=0.0)
    total = float(weights.sum())
    mean = float((v * weights).sum() / total) if total > 0 else math.nan
    if not math.isfinite(mean):
        return np.full(values.shape, np.nan), mean
    return (weights * v + prior * mean) / (weights + prior), mean


def _gower_to(
    cat: list[NDArray[np.object_]],
    num: list[NDArray[np.float64]],
    ranges: list[float],
    rows: NDArray[np.int64],
    best: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Mean Gower similarity of each of ``rows`` to the ``best`` cells (itself left out)."""
    total = np.zeros((len(rows), len(best)))
    count = np.zeros((len(rows), len(best)))
    for col in cat:
        a, b = col[rows][:, None], col[best][None, :]
        ok = pd.notna(a) & pd.notna(b)
        total += np.where(ok, (a == b).astype(float), 0.0)
        count += ok
    for vals, r in zip(num, ranges, strict=True):
        x, y = vals[rows][:, None], vals[best][None, :]
        ok = np.isfinite(x) & np.isfinite(y)
        sim = 1.0 - np.abs(x - y) / r if r > 0 else np.ones_like(x - y)
        total += np.where(ok, sim, 0.0)
        count += ok
    with np.errstate(divide="ignore", invalid="ignore"):
        pair: NDArray[np.float64] = np.where(
            count > 0, total / np.where(count > 0, count, 1), np.nan
        )
    pair = np.where(rows[:, None] == best[None, :], np.nan, pair)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row whose only match is itself
        out: NDArray[np.float64] = np.nanmean(pair, axis=1)
    return out


def score_white_space(
    df: pd.DataFrame,
    *,
    categorical: list[str],
    overall_penetration: float,
    best_share: float,
    min_customers: int,
    prior: float,
    value_weights: NDArray[np.float64],
    notes: list[str],
) -> pd.DataFrame:
    """Add ``expected_value``, ``similarity``, ``headroom``, ``potential_value``,
    ``white_space_score`` and ``white_space_rank`` (1 = best target) to the cells."""
    n = len(df)
    pop = df["population"].to_numpy(float)
    k = df["customers"].to_numpy(float)
    weights = np.asarray(value_weights, float)
    expected, _ = _shrunk(df["value_per_customer"].to_numpy(float), weights, prior)
    high, _ = _shrunk(df["high_value_share"].to_numpy(float), weights, prior)
    df["expected_value"] = expected
    nan = np.full(n, np.nan)
    df["similarity"], df["headroom"] = nan, nan
    df["potential_value"], df["white_space_score"] = nan, nan
    df["white_space_rank"] = pd.array([None] * n, dtype="Int64")
    eligible = np.flatnonzero((k >= min_customers) & np.isfinite(expected))
    if len(eligible) < 2:
        notes.append(
            f"white space not scored: fewer than two cells have {min_customers} customers "
            "(lower the market_min_customers setting, or use coarser cells)"
        )
        return df
    n_best = max(1, math.ceil(best_share * len(eligible)))
    order = eligible[np.argsort(-expected[eligible], kind="stable")]
    best = order[:n_best]
    best_pen = float(k[best].sum() / pop[best].sum()) if pop[best].sum() > 0 else 0.0
    benchmark = max(overall_penetration, best_pen)
    headroom = np.maximum(0.0, pop * benchmark - k)
    cat = [df[c].astype(object).to_numpy() for c in categorical if c in df.columns]
    num: list[NDArray[np.float64]] = [expected, high]
    ms = df["market_size"].to_numpy(float)
    if np.isfinite(ms).any():
        with np.errstate(divide="ignore", invalid="ignore"):
            num.append(np.where(pop > 0, ms / np.where(pop > 0, pop, 1), np.nan))
    growth = df["growth"].to_numpy(float)
    if np.isfinite(growth).any():
        num.append(growth)
    ranges = [float(np.nanmax(x) - np.nanmin(x)) if np.isfinite(x).any() else 0.0 for x in num]
    sim = np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = np.arange(start, min(n, start + _CHUNK))
        sim[rows] = _gower_to(cat, num, ranges, rows, best)
    sim = np.nan_to_num(sim, nan=0.0)
    potential = headroom * np.nan_to_num(expected, nan=0.0)
    score = potential * sim
    df["similarity"], df["headroom"] = sim, headroom
    df["potential_value"], df["white_space_score"] = potential, score
    ranked = np.flatnonzero(score > 0)
    ranked = ranked[np.argsort(-score[ranked], kind="stable")]
    rank = pd.array([None] * n, dtype="Int64")
    rank[ranked] = np.arange(1, len(ranked) + 1)
    df["white_space_rank"] = rank
    best_cells = f"{n_best:,} best cells" if n_best != 1 else "the best cell"
    notes.append(
        f"white space: {best_cells} by value per customer, pooled penetration "
        f"{_share(best_pen)}; headroom measured against {_share(benchmark)}"
    )
    return df


def _share(x: float) -> str:
    """A penetration for a note: one decimal, as shares are shown everywhere ("2.0%"); two
    significant digits below 0.1 %, where one decimal would read 0.0% ("0.021%")."""
    if x == 0 or x >= 0.001:
        return f"{x:.1%}"
    return f"{x:.{1 - math.floor(math.log10(x * 100))}%}"
