"""segmentum: customer segmentation and classification on an embedded or distributed warehouse."""

from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError, InputError, ModelError, SegmentumError, WarehouseError
from segmentum.ingest import IngestReport, ingest
from segmentum.warehouse import Warehouse, connect

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "IngestReport",
    "InputError",
    "ModelError",
    "SegmentumError",
    "Settings",
    "Warehouse",
    "WarehouseError",
    "__version__",
    "connect",
    "ingest",
    "load_settings",
]
