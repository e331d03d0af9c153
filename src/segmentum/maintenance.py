"""Keeping a warehouse healthy: stray files, checks and repairs (doctor), backup and restore."""

from __future__ import annotations

import shutil
from pathlib import Path


def spill_folder(db_path: Path) -> Path:
    """DuckDB's default spill folder for a database file: ``<file>.tmp`` beside it."""
    return db_path.with_name(db_path.name + ".tmp")


def clean_stray_files(db_path: Path) -> list[str]:
    """Remove what a killed process left beside the database file; the paths removed.

    Call it only while holding the file's lock (just after opening it): then no other
    process can be spilling into the folder.
    """
    folder = spill_folder(db_path)
    removed: list[str] = []
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            removed.append(str(f))
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        # DuckDB recreates the folder when it next spills.
        shutil.rmtree(folder, ignore_errors=True)
    return removed
