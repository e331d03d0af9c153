"""Ingestion: read user files, map their columns, validate, and load them with a quarantine."""

from segmentum.ingest.core import IngestReport, ingest

__all__ = ["IngestReport", "ingest"]
