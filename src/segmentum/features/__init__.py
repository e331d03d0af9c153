"""Customer features computed in the engine as of a reference date."""

from segmentum.features.customer import btyd_summary, customer_features, default_as_of
from segmentum.features.rollup import purchase_days

__all__ = ["btyd_summary", "customer_features", "default_as_of", "purchase_days"]
