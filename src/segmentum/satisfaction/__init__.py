"""Customer satisfaction per segment: NPS, CSAT and reviews joined to value, tested, explained.

See ``docs/satisfaction.md``. :func:`compute` is the pipeline step; :mod:`.text` finds the words
that set a group's comments apart; :mod:`.audience` turns valuable detractors into a campaign
audience.
"""

from segmentum.satisfaction.compute import (
    DIMENSIONS,
    SatisfactionRun,
    compute,
    has_responses,
    per_customer,
    segment_stats,
    stored_segments,
)
from segmentum.satisfaction.stats import Nps, nps_of

__all__ = [
    "DIMENSIONS",
    "Nps",
    "SatisfactionRun",
    "compute",
    "has_responses",
    "nps_of",
    "per_customer",
    "segment_stats",
    "stored_segments",
]
