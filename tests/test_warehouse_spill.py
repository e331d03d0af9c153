"""DuckDB's spill settings: where it spills beyond memory_limit and how much disk it may take."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from segmentum.cli import main
from segmentum.errors import ExitCode, WarehouseError
from segmentum.warehouse import connect, resource_error


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


@pytest.mark.parametrize(
    ("memory", "says"),
    [("30MB", "raise the memory_limit setting"), ("60MB", "raise the max_temp_size setting")],
)
def test_a_load_beyond_memory_and_spill_says_which_limit_to_raise(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    memory: str,
    says: str,
) -> None:
    """A real export too big for the limits set (not a bad file, not a bug): the error names
    the file and the limit to raise, with the warehouse's exit code and no traceback."""
    n = 400_000
    rng = np.random.default_rng(1)
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")
    export = tmp_path / "ventas.csv"
    pd.DataFrame(
        {
            "InvoiceNo": np.arange(n).astype(str),
            "StockCode": rng.integers(1, 5000, n).astype(str),
            "Quantity": rng.integers(1, 5, n),
            "InvoiceDate": when,
            "UnitPrice": rng.random(n) * 20,
            "CustomerID": rng.integers(1, 50000, n).astype(float),
        }
    ).to_csv(export, index=False)
    monkeypatch.setenv("SEGMENTUM_MEMORY_LIMIT", memory)
    monkeypatch.setenv("SEGMENTUM_MAX_TEMP_SIZE", "2MB")
    code = main(["ingest", "transactions", str(export), "-w", f"duckdb:///{tmp_path / 'w.db'}"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == ExitCode.WAREHOUSE, err
    assert "ventas.csv: the engine ran out of memory" in err and says in err
    assert "Traceback" not in err and "bug" not in err


def test_a_full_disk_is_said_plainly() -> None:
    """Writing to /dev/full fails as a full disk does (ENOSPC); so does DuckDB's spill."""
    with pytest.raises(OSError) as raised, open("/dev/full", "w") as full:
        full.write("x" * 10_000)
        full.flush()
    found = resource_error(raised.value)
    assert found is not None and found.message.startswith("the disk is full")
    assert "temp_directory" in found.hint
    spill = duckdb.IOException(
        'IO Error: Could not write file "/data/shop.duckdb.tmp/duckdb_temp_storage_S128K-2.tmp": '
        "No space left on device"
    )
    found = resource_error(spill)
    assert found is not None
    assert found.message == (
        'the disk is full: could not write "/data/shop.duckdb.tmp/duckdb_temp_storage_S128K-2.tmp"'
    )
    assert resource_error(ValueError("something else")) is None
