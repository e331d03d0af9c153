"""``segmentum run --data FOLDER``: which files of a folder of exports a run loads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import segmentum
from segmentum import demo, pipeline
from segmentum.config import load_settings
from segmentum.pipeline import data_files


def test_exports_named_after_a_table_are_found_in_name_order(tmp_path: Path) -> None:
    for name in (
        "ventas.csv",
        "ventas_2025-06-30.csv",
        "ventas_2025-06-29.csv",
        "ventas-2.csv",
        "ventasx.csv",  # not a separator after the name
        "ventas_.csv",  # nothing after it
        "ventas_2025-07-01.xlsx",  # not a kind of file the table is read from
        "clientes.2.csv",
        "notas.csv",
        ".ventas_oculto.csv",
    ):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    found = {t: [p.name for p in ps] for t, ps in data_files(tmp_path).items()}
    assert found == {
        "customers": ["clientes.2.csv"],
        "transactions": [
            "ventas.csv",
            "ventas-2.csv",
            "ventas_2025-06-29.csv",
            "ventas_2025-06-30.csv",
        ],
    }


def test_a_folder_of_dated_daily_exports_is_loaded_day_by_day_once(tmp_path: Path) -> None:
    """A walk: the nightly job's folder held ventas_2.csv and the run said "nothing changed"
    (exit 0), the only sign a warning after the tables. Exports named after a table with
    anything after a separator are loaded, in name order, each once."""
    files = demo.generate(tmp_path / "demo", customers=150, seed=5)
    lines = pd.read_csv(files["transactions"], dtype=str)
    day = pd.to_datetime(lines["InvoiceDate"]).dt.date
    last = day.max()
    folder = tmp_path / "exports"
    folder.mkdir()
    lines[day < last].to_csv(folder / "ventas_2025-12-30.csv", index=False)
    lines[day == last].to_csv(folder / "ventas_2025-12-31.csv", index=False)
    settings = load_settings(env={})
    with segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        first = pipeline.run(wh, data=folder, settings=settings)
        stored = int(wh.table("transactions").count().execute())
        again = pipeline.run(wh, data=folder, settings=settings)
        assert int(wh.table("transactions").count().execute()) == stored
    loaded = [r for r in first.ingest if r.table == "transactions"]
    assert [Path(r.file).name for r in loaded] == ["ventas_2025-12-30.csv", "ventas_2025-12-31.csv"]
    assert sum(r.accepted for r in loaded) == stored
    assert sum(r.rows_read for r in loaded) == len(lines)
    assert not any("not ones the run reads" in w for w in first.warnings), first.warnings
    # The second run recognises both files: nothing is loaded twice.
    assert all(r.skipped for r in again.ingest if r.table == "transactions"), again.ingest
