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


# Said with every run: the machine is shared, so ratios within one run are what to read.
SHARED = """Measured on a quiet machine (nothing else ran; load average about 1). Earlier figures
(4.19x Parquet and 4.39x CSV, 2026-12-01) were taken under load (10 and more on 2 cores), which
slowed the raw copy more than segmentum's ingest: the ratios here are the ones to compare.

What changed for issue #18 (profiled with DuckDB's JSON profiler and per-step CPU time; CPU
seconds on 1.38M Parquet lines unless said):

- Exact duplicates and repeated keys: a window over every row (it shuffled every column, 7 of
  the 18 s of the parse query) became one aggregate of the keys that keeps groups of two rows
  or more; the rules then run on those few rows (12M lines: 6.4 CPU-s, all rows checked).
- Keys already stored: the stored keys are probed with the file's keys instead of taking the
  distinct keys of the whole stored table.
- Text cleaning: the trim of white space ran on every value (0.19 microseconds each); a test of
  both ends sends only padded values to it (0.05). Null spellings are compared only for text
  of 4 characters or less, canonical channel and device words skip the searches, and values
  that cast as plain numbers skip the currency and decimal searches.
- Failing values are written as text only for the rows that fail (a cast of every number).
- Parse query: 3.06 -> 2.60 CPU-s on one thread; whole ingest 16.3 -> 12.5 CPU-s.
- Return links on a first load: purchases are read only for customers with a return line,
  and the relinked-customers table is not built (12M lines: same 337,835 links).
- Before these changes (2026-11-24, a quiet machine): 6.48x for Parquet (10.07M lines) and
  7.71x for CSV (1.15M lines). **The 3x target is not reached yet.**
- Where the time goes now (1.38M Parquet lines, quiet machine, wall seconds; the raw copy
  takes 1.67): parse and check into the staged copy 1.79, repeats 0.43, insert into the lines
  table 2.00, return links 0.88, reading and counting 0.44. The insert is the INSERT operator
  itself (DuckDB's profiler: the scan and the join feeding it take under 0.1 s): the lines
  table has 20 columns against the file's 13 (amount, line type, currency, batch, source row
  and the optional columns), so writing it costs more than the whole raw copy. What is left to
  cut is the parse into the staged copy and the return links; a two-pass load (check, then
  insert straight from the file) would save the staged copy's write and read but parse twice.
- At 12M lines the parsed file (about 2 GB before compression) no longer fits in the 1 GB
  memory_limit and spills: the ratio is worse there (4.9x) than at 1.38M lines (3.7x on the
  same quiet machine). With memory_limit 8GB the 12M-line load took 32.7 s against 42.8 s,
  but in the run just before 54.9 s against 46.8 s: the machine's noise is as large as the
  effect, and the 8 GB peak breaks the memory target. Measure the 12M-line rows more than
  once before reading a trend into them."""


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
    # The raw copy runs with DuckDB's own memory limit (80% of RAM); segmentum keeps to its
    # memory_limit setting (1GB by default) and spills the rest: this row shows what that costs.
    seg_big = measure(
        "segmentum ingest, memory_limit 8GB",
        "import os; os.environ['SEGMENTUM_MEMORY_LIMIT'] = '8GB'\n"
        + SEGMENTUM.format(path=path, db=fresh("ingest-seg-8gb.duckdb")),
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

{table([seg, seg_big, raw], raw)}

**{csv_lines:,} invoice lines from CSV** (all values parsed from text: numbers, dates):

{table([seg_csv, raw_csv], raw_csv)}

What segmentum does on top of the raw copy: maps columns, parses and checks every value,
derives missing amounts, numbers lines, finds exact duplicates and keys already stored, writes
rejected rows to quarantine with their reasons, links returns to their purchases, and commits
all of it in one transaction. Target from the foundation issue: peak RSS under 2 GB for 10M
lines.

{SHARED}
"""
    update_doc("ingest", body)


if __name__ == "__main__":
    main()
