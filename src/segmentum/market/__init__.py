"""The market beyond the customer base: penetration, index and white space per population cell.

See docs/market.md. ``compute_market`` runs inside ``segmentum run`` when a ``population``
table exists; ``read_market`` gives the stored result to the API, the dashboard and the report.
"""

from segmentum.market.core import (
    CELLS,
    DIMENSIONS,
    GEO,
    RUNS,
    MarketResult,
    compute_market,
    geo_levels,
    parse_band,
    read_market,
    rollup,
)
from segmentum.market.stats import index_interval, wilson_interval

__all__ = [
    "CELLS",
    "DIMENSIONS",
    "GEO",
    "RUNS",
    "MarketResult",
    "compute_market",
    "geo_levels",
    "index_interval",
    "parse_band",
    "read_market",
    "rollup",
    "wilson_interval",
]
