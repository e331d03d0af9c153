"""Shared fixtures: real DuckDB files, a real local Spark session, small readable data files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import ibis.expr.types as ir
import pandas as pd
import pytest

import segmentum
from segmentum.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
# Pipeline runs in tests skip clustering unless a test asks for it (tests/test_segments.py does).
os.environ.setdefault("SEGMENTUM_DISCOVER_SEGMENTS", "false")
CDNOW = ROOT.parent / "shared" / "datasets" / "cdnow"


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    """A fresh warehouse in a real DuckDB file."""
    w = segmentum.connect(f"duckdb:///{tmp_path / 'test.duckdb'}")
    yield w
    w.close()


@pytest.fixture(scope="session")
def spark_session():  # type: ignore[no-untyped-def]
    if shutil.which("java") is None:
        pytest.fail("Java is not installed: `make test` installs it with apt-get")
    from segmentum.warehouse import _local_spark_session

    session = _local_spark_session()
    yield session
    session.stop()


@pytest.fixture(params=["duckdb", pytest.param("pyspark", marks=pytest.mark.spark)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """The same test body on the embedded DuckDB warehouse and on a local Spark session."""
    if request.param == "duckdb":
        w = segmentum.connect(f"duckdb:///{tmp_path / 'test.duckdb'}")
        yield w
        w.close()
    else:
        session = request.getfixturevalue("spark_session")
        w = segmentum.connect("pyspark", spark_session=session)
        yield w
        for name in w.con.list_tables():
            w.drop(name)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def cdnow_sample() -> Path:
    path = CDNOW / "CDNOW_sample.txt"
    if not path.is_file():
        pytest.skip("../shared/datasets/cdnow is not beside this checkout")
    return path


@pytest.fixture
def cdnow_raw(cdnow_sample: Path) -> pd.DataFrame:
    """The CDNOW 1/10 sample as published: one row per purchase record."""
    raw = pd.read_csv(
        cdnow_sample,
        sep=r"\s+",
        header=None,
        names=["master", "cust", "date", "cds", "value"],
        dtype={"master": str, "cust": str, "date": str},
    )
    raw["timestamp"] = pd.to_datetime(raw.date, format="%Y%m%d")
    return raw


@pytest.fixture
def cdnow_lines(wh: Warehouse, cdnow_raw: pd.DataFrame) -> ir.Table:
    """The CDNOW sample as transaction lines in the warehouse (table ``cd``)."""
    rows = pd.DataFrame(
        {
            "invoice_id": cdnow_raw.index.astype(str),
            "customer_id": cdnow_raw.cust,
            "timestamp": cdnow_raw.timestamp,
            "quantity": cdnow_raw.cds.astype(float),
            "amount": cdnow_raw.value,
        }
    )
    wh.con.create_table("cd", rows)
    return wh.table("cd")
