"""segmentum: customer segmentation and classification on an embedded or distributed warehouse."""

from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError, InputError, ModelError, SegmentumError, WarehouseError
from segmentum.ingest import IngestReport, ingest
from segmentum.warehouse import Warehouse, connect

__version__ = "0.1.0"

# Modules a program reaches from the package alone (``segmentum.pipeline.run(wh)``), imported
# the first time they are named: ``import segmentum`` stays light.
_LAZY = ("pipeline", "features", "history", "campaigns", "segments", "models", "precompute")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"segmentum.{name}")
    raise AttributeError(f"module 'segmentum' has no attribute {name!r}")


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
