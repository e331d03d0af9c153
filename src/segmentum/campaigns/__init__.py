"""Campaigns: audiences, timing, consent, control groups, channels and measurement."""
