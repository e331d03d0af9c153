"""Ingest benchmark: segmentum's validated ingest vs the raw engine copy (the practical limit).

    python benchmarks/bench_ingest.py [--customers N]

Writes its table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil

import pyarrow.parquet as pq

from common import DATA, ensure_demo, machine, measure, table, update_doc

SEGMENTUM = """
import time, segmentum
t0 = time.perf_counter()
[r] = segmentum.ingest("transactions", {path!r}, warehouse="duckdb:///{db}")
print("SECONDS=%f" % (time.perf_counter() - t0))
print("ROWS", r.rows_read, r.accepted, r.quarantined, r.balanced)
"""

RAW_PARQUET = """
import time, duckdb
con = duckdb.connect({db!r})
t0 = time.perf_counter()
con.execute("CREATE TABLE transactions AS SELECT * FROM read_parquet({path!r})")
print("SECONDS=%f" % (time.perf_counter() - t0))
"""

RAW_CSV = """
import time, duckdb
con = duckdb.connect({db!r})
t0 = time.perf_counter()
con.execute("CREATE TABLE transactions AS SELECT * FROM read_csv({path!r}, header=true)")
print("SECONDS=%f" % (time.perf_counter() - t0))
"""


def fresh(name: str) -> str:
    db = DATA / name
    for p in (db, db.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    return str(db)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=870_000)
    ap.add_argument("--csv-customers", type=int, default=100_000)
    args = ap.parse_args()
    files = ensure_demo(args.customers)
    path = str(files["transactions"])
    lines = pq.ParquetFile(path).metadata.num_rows
    print(f"ingest benchmark: {lines:,} invoice lines (Parquet)")
    seg = measure(
        "segmentum ingest (map, validate, dedupe, quarantine)",
        SEGMENTUM.format(path=path, db=fresh("ingest-seg.duckdb")),
    )
    raw = measure(
        "limit: DuckDB CREATE TABLE AS read_parquet",
        RAW_PARQUET.format(path=path, db=fresh("ingest-raw.duckdb")),
    )
    shutil.copy(DATA / "ingest-seg.duckdb", DATA / "warehouse.duckdb")

    from segmentum import demo

    csv_dir = DATA / f"demo-csv-{args.csv_customers}"
    csv_path = str(csv_dir / "transactions.csv")
    if not (csv_dir / ".done").exists():  # generated once, then reused like the Parquet data
        csv_path = str(
            demo.generate(csv_dir, customers=args.csv_customers, fmt="csv")["transactions"]
        )
        (csv_dir / ".done").write_text("ok")
    with open(csv_path, "rb") as fh:
        csv_lines = sum(1 for _ in fh) - 1
    print(f"ingest benchmark: {csv_lines:,} invoice lines (CSV, every value parsed from text)")
    seg_csv = measure(
        "segmentum ingest of CSV text",
        SEGMENTUM.format(path=csv_path, db=fresh("ingest-seg-csv.duckdb")),
    )
    raw_csv = measure(
        "limit: DuckDB CREATE TABLE AS read_csv (types sniffed)",
        RAW_CSV.format(path=csv_path, db=fresh("ingest-raw-csv.duckdb")),
    )

    body = f"""## Ingest

Measured on {machine()}. Each contender runs in its own process; time excludes Python start-up
and imports; peak memory is the process's maximum resident set size.

**{lines:,} invoice lines from Parquet** (`segmentum demo-data --format parquet --customers {args.customers}`):

{table([seg, raw], raw)}

**{csv_lines:,} invoice lines from CSV** (all values parsed from text: numbers, dates):

{table([seg_csv, raw_csv], raw_csv)}

What segmentum does on top of the raw copy: maps columns, parses and checks every value,
derives missing amounts, numbers lines, finds exact duplicates and keys already stored, writes
rejected rows to quarantine with their reasons, and commits all of it in one transaction.
Target from the foundation issue: peak RSS under 2 GB for 10M lines.
"""
    update_doc("ingest", body)


if __name__ == "__main__":
    main()
