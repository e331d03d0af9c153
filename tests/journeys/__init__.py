"""End-to-end journeys on data shaped like real exports."""
