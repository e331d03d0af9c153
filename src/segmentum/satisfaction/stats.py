"""The statistics of satisfaction scores: NPS and its interval, CSAT, shares, tests between groups.

Everything here works on counts and sums that the engine hands back, never on responses.

NPS is the share of promoters (9-10) minus the share of detractors (0-6), in points (-100 to
100). Each answer scores +1, 0 or -1, so the NPS is a mean and its variance per answer is
``p_P + p_D - (p_P - p_D)^2``; the standard error is the square root of that over ``n``
(the interval checked against a bootstrap in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from segmentum.stats import Z95, normal_two_sided_p, wilson_interval

# Two-sided 95 % intervals.


@dataclass(frozen=True)
class Nps:
    """An NPS with its interval, from the counts of promoters, passives and detractors."""

    n: int
    promoters: int
    passives: int
    detractors: int

    @property
    def score(self) -> float | None:
        """NPS in points, -100 to 100 (None without answers)."""
        if self.n == 0:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.n

    @property
    def variance(self) -> float | None:
        """Variance of one answer's score (+1 / 0 / -1)."""
        if self.n == 0:
            return None
        p, d = self.promoters / self.n, self.detractors / self.n
        return max(p + d - (p - d) ** 2, 0.0)

    @property
    def se(self) -> float | None:
        """Standard error of the NPS, in points."""
        var = self.variance
        if var is None:
            return None
        return 100.0 * math.sqrt(var / self.n)

    def interval(self, z: float = Z95) -> tuple[float | None, float | None]:
        """The adjusted-Wald interval of Rocks (2016, The American Statistician 70(4)), the
        best of the methods compared there: 3 answers added to ``n``, 3/4 of one to the
        promoters and to the detractors, and the normal interval around the adjusted score,
        clipped to [-100, 100]. The plain interval (``score`` +- z ``se``) has no width when
        every answer is the same (six passives: "0 (0 to 0)"), and covers far less than 95%
        in small groups.

        >>> lo, hi = Nps(6, 0, 6, 0).interval()
        >>> round(lo, 1), round(hi, 1)
        (-26.7, 26.7)
        """
        if self.n == 0:
            return None, None
        n = self.n + 3
        p, d = (self.promoters + 0.75) / n, (self.detractors + 0.75) / n
        half = 100.0 * z * math.sqrt(max(p + d - (p - d) ** 2, 0.0) / n)
        mid, score = 100.0 * (p - d), self.score or 0.0
        # One answer (+-100) can fall outside; the interval always holds the score it is of.
        return max(-100.0, min(mid - half, score)), min(100.0, max(mid + half, score))


def nps_of(scores: Sequence[int]) -> Nps:
    """The :class:`Nps` of a list of 0-10 answers.

    >>> nps_of([10, 9, 8, 3]).score
    25.0
    """
    p = sum(1 for s in scores if s >= 9)
    d = sum(1 for s in scores if s <= 6)
    return Nps(len(scores), p, len(scores) - p - d, d)


def mean_interval(
    n: int, total: float, total_sq: float, z: float = Z95
) -> tuple[float | None, float | None, float | None]:
    """Mean and its normal interval from the count, sum and sum of squares."""
    if n == 0:
        return None, None, None
    mean = total / n
    if n < 2:
        return mean, None, None
    var = max((total_sq - n * mean * mean) / (n - 1), 0.0)
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half


def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None, float | None]:
    """A share and its Wilson interval (well-behaved near 0 and 1 and for small ``n``)."""
    if n == 0:
        return None, None, None
    low, high = wilson_interval(k, n, z)
    return k / n, low, high


def nps_difference(
    a: Nps, b: Nps, min_n: int = 2
) -> tuple[float | None, float | None, float | None]:
    """Difference of two independent NPS (``a - b``, points), its z statistic and two-sided
    p-value; None where either side has fewer than ``min_n`` answers or no spread.

    The test assumes, as its null hypothesis, that both groups answer alike, so the variance
    comes from the pooled answers (as in the two-proportion z test): a small group where
    everyone happened to give a 10 has no spread of its own, but is no certainty either.
    """
    if a.n < min_n or b.n < min_n or a.score is None or b.score is None:
        return (None if a.score is None or b.score is None else a.score - b.score), None, None
    diff = a.score - b.score
    pooled = Nps(
        a.n + b.n, a.promoters + b.promoters, a.passives + b.passives, a.detractors + b.detractors
    )
    var = (pooled.variance or 0.0) * (1 / a.n + 1 / b.n)
    if var <= 0:
        return diff, None, None
    z = diff / (100.0 * math.sqrt(var))
    return diff, z, normal_two_sided_p(z)


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float | None]:
    """False-discovery-rate q-values (Benjamini-Hochberg) for many segments tested at once."""
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(ranked)
    out: list[float | None] = [None] * len(pvalues)
    running = 1.0
    for rank in range(m, 0, -1):
        p, i = ranked[rank - 1]
        running = min(running, p * m / rank)
        out[i] = running
    return out
