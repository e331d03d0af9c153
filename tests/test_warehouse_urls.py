"""Where a ``duckdb://`` URL puts the warehouse file: where its user meant it."""

from __future__ import annotations

from pathlib import Path

import pytest

import segmentum
from segmentum.warehouse import duckdb_file


def test_a_duckdb_url_names_the_file_its_user_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    (work / "exportaciones").mkdir(parents=True)
    monkeypatch.chdir(work)
    # Three slashes and a file name: the working folder (the default URL's shape).
    assert duckdb_file("duckdb:///tienda.duckdb") == Path("tienda.duckdb")
    # A folder of the working folder.
    assert duckdb_file("duckdb:///exportaciones/tienda.duckdb") == Path(
        "exportaciones/tienda.duckdb"
    )
    # A new folder that is not one of the root's: created in the working folder.
    assert duckdb_file("duckdb:///nuevo/tienda.duckdb") == Path("nuevo/tienda.duckdb")
    # Four slashes: absolute, whatever exists.
    assert duckdb_file(f"duckdb:///{tmp_path}/x/tienda.duckdb") == tmp_path / "x/tienda.duckdb"
    # An absolute path whose folders do not exist yet (under /tmp, a folder of the root): it
    # was read as relative and the warehouse made ./tmp/... in the working folder.
    target = tmp_path / "nueva" / "sub" / "tienda.duckdb"
    assert str(target).startswith("/tmp/")
    assert duckdb_file(f"duckdb://{target}") == target
    wh = segmentum.connect(f"duckdb://{target}")
    try:
        wh.run_sql("CREATE TABLE t AS SELECT 1 AS x")
    finally:
        wh.close()
    assert target.is_file()
    assert not (work / "tmp").exists()
