"""The same pipeline code gives the same answers on DuckDB and on Spark."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import write

import segmentum
from segmentum import demo
from segmentum.features import customer_features
from segmentum.segments.classes import classify
from segmentum.warehouse import Warehouse


def test_ingest_reports_the_same_on_every_backend(backend: Warehouse, tmp_path: Path) -> None:
    text = "id_cliente;fecha;importe\nA1;05/03/2024 10:00;12,50\nA1;05/03/2024 10:00;12,50\nA2;31/02/2024;3\n;06/03/2024;1.234,50\n"
    [r] = segmentum.ingest("transactions", write(tmp_path / "s.csv", text), warehouse=backend)
    assert (r.rows_read, r.accepted, r.quarantined, r.anonymous, r.duplicates) == (4, 2, 2, 1, 1)
    q = backend.table("quarantine").order_by("source_row").execute()
    assert q.reason.tolist() == ["exact duplicate of row 1", "timestamp is not a date/time"]
    assert sorted(backend.table("transactions").amount.execute()) == [12.5, 1234.5]


@pytest.mark.spark
def test_features_and_classes_are_identical_on_duckdb_and_spark(
    tmp_path: Path, spark_session: object
) -> None:
    files = demo.generate(tmp_path / "demo", customers=400, seed=11)
    duck = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    segmentum.ingest("transactions", files["transactions"], warehouse=duck)
    spark = segmentum.connect("pyspark", spark_session=spark_session)
    spark.write("transactions", duck.table("transactions").to_pyarrow())
    as_of = dt.date(2025, 7, 1)
    results = []
    for wh in (duck, spark):
        f = customer_features(wh.table("transactions"), as_of)
        joined = f.join(classify(f).drop("as_of"), "customer_id")
        results.append(joined.execute().sort_values("customer_id").reset_index(drop=True))
    a, b = results
    assert len(a) > 300
    pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False, check_exact=False, rtol=1e-9)
