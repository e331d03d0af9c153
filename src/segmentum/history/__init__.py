"""Segment history: snapshots, backfill, migration, membership log, cohorts and forecasts."""
