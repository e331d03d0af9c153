"""Ingestion: read user files, map their columns, validate, and load them with a quarantine."""

from segmentum.ingest.core import IngestReport, id_match, ingest, quarantine_summary

__all__ = ["IngestReport", "id_match", "ingest", "quarantine_summary"]
