"""DuckDB's spill settings: where it spills beyond memory_limit and how much disk it may take."""

from __future__ import annotations

from pathlib import Path

import pytest

from segmentum.errors import WarehouseError
from segmentum.warehouse import connect


def test_spills_to_the_configured_folder_within_the_configured_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTUM_TEMP_DIRECTORY", str(tmp_path / "spill"))
    monkeypatch.setenv("SEGMENTUM_MAX_TEMP_SIZE", "2GB")
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}", memory_limit="100MB")
    try:
        folder, size = wh.con.con.execute(
            "SELECT current_setting('temp_directory'), current_setting('max_temp_directory_size')"
        ).fetchone()
        assert folder == str(tmp_path / "spill")
        assert size == "1.8 GiB"  # 2GB as DuckDB shows it
    finally:
        wh.close()


def test_a_max_temp_size_that_is_not_a_size_is_refused_and_the_file_is_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTUM_MAX_TEMP_SIZE", "lots")
    db = tmp_path / "w.duckdb"
    with pytest.raises(WarehouseError, match="max_temp_size 'lots' is not a size"):
        connect(f"duckdb:///{db}")
    monkeypatch.delenv("SEGMENTUM_MAX_TEMP_SIZE")
    connect(f"duckdb:///{db}").close()  # nobody holds the file now
