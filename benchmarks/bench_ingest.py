"""Ingest benchmark: segmentum's validated ingest vs the raw engine copy (the practical limit).

    python benchmarks/bench_ingest.py [--customers N]

Writes its table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import pyarrow.parquet as pq

from common import DATA, ensure_demo, machine, measure, table, update_doc

SEGMENTUM = """
import os, time, segmentum
import ibis.backends.duckdb  # an import, like the limit's import duckdb (loaded lazily otherwise)
for p in ({db!r}, {db!r} + ".wal"):  # a fresh file each run: a second load would be skipped
    if os.path.exists(p):
        os.unlink(p)
t0 = time.perf_counter()
[r] = segmentum.ingest("transactions", {path!r}, warehouse="duckdb:///{db}")
print("SECONDS=%f" % (time.perf_counter() - t0))
print("ROWS", r.rows_read, r.accepted, r.quarantined, r.balanced)
"""

RAW_PARQUET = """
import os, time, duckdb
for p in ({db!r}, {db!r} + ".wal"):
    if os.path.exists(p):
        os.unlink(p)
con = duckdb.connect({db!r})
t0 = time.perf_counter()
con.execute("CREATE TABLE transactions AS SELECT * FROM read_parquet({path!r})")
print("SECONDS=%f" % (time.perf_counter() - t0))
"""

RAW_CSV = """
import os, time, duckdb
for p in ({db!r}, {db!r} + ".wal"):
    if os.path.exists(p):
        os.unlink(p)
con = duckdb.connect({db!r})
t0 = time.perf_counter()
con.execute("CREATE TABLE transactions AS SELECT * FROM read_csv({path!r}, header=true)")
print("SECONDS=%f" % (time.perf_counter() - t0))
"""


# Said with every run: the machine is shared, so ratios within one run are what to read.
SHARED = """Ratios are what to read: the limit runs in the same session, each row is the best of two
runs (Parquet) or three (CSV), each run loading into a fresh file (a second load of the same
content into the same file is skipped, and would measure nothing), imports outside the
timing on both sides (the limit's `import duckdb`, segmentum's DuckDB backend). This
machine's speed moves from run to run, and the ratios with it. The tables above are one run
of 2026-12-07 evening: Parquet 1.91x, Parquet without a line column 2.63x, CSV of 1.4M lines
2.94x, CSV of 12M lines 2.42x. The last ratio flatters: the limit's best of three took
13.2 s in this run, against 10.5 s to 11.1 s in the other runs of the day (the machine was
slower during it; segmentum's 32.0 s is within its usual range). The run just before the
last change below (the row's hash kept where duplicates are found by it, no second parse of
zero rows): Parquet 2.11x, without a line column 2.85x, CSV 3.18x and 2.97x. The
afternoon's run, before the evening's change: 2.29x, 2.62x, 2.99x, 2.93x. So Parquet is
within 3x with room; CSV is at or just under 3x, and by about 4% more than in the afternoon.

What changed on 2026-12-07 evening: **the first load's staging table holds the values and
the reasons only.** The afternoon's staging table (below) held, besides the lines table's
columns, the checks' columns for every row: the row again, its hash, its reasons, the first
column at fault and its value, one flag per typed column. Written for every row of 12M CSV
lines they cost 1.9 s of the 17.9 s write. The table now holds the reasons (what picks the
rows that may be rejected) and, where exact duplicates are found by the hash of every column
(no line column, events), the hash; the rest is computed again from the file for the rows
that may be rejected, or not at all when there are none (compiling that second parse costs
0.3 s of Python). Back to back with the afternoon's code, one load each in turn, wall and CPU
seconds: CSV of 12M lines 36.5/69.2 -> 35.1/67.0 and 37.9/72.2 -> 36.7/69.1 (a slow hour);
CSV of 1.4M lines and Parquet without a line column within the noise of each other. Tested:
a first load of a messy export with and without a line column gives the same rows, line
numbers, quarantine values and raw text as the plain insert.

What changed on 2026-12-07 afternoon: **a first load keeps its checked parse as the
table.** A first load of invoice lines or events (the table empty) wrote its parse into a
temporary table, checked it, and then inserted every accepted line into the lines table: a
second write of every line (10.6 s of a 43 s load of 12M CSV lines). The parse is now
written once, into a staging table shaped like the lines table (its columns first and in
order, with the batch and the row, then the checks' columns); the write drops the checks'
columns, renames it over the empty table and deletes the rejected rows, in the load's
transaction. DuckDB commits only in that order (a delete before the columns are dropped is
refused at commit). The write also skips FSST's analysis (string compression; an eighth of
writing 12M lines: a copy of the lines table took 8.8 s with it, 7.8 s without), so the ids
take dictionaries, 9% more space. Parquet files with a line column take the same path
instead of reading the file again in each pass, and so do those without one, numbered apart
first as before (numbering the parse would sort every parsed column): 22.2 s -> 18.4-18.7 s
(3.09x -> 2.60x, single loads after the table above was measured). Loads into a table that
already holds lines, and Spark and PostgreSQL, insert as before. A staging table left by a killed load is dropped when
the file is next opened (holding its lock, no other process can be loading into it; another
warehouse of the same process on the file keeps it). Back to back with the code before,
single loads: CSV of 12M lines 43.1 s -> 30.8-31.1 s (3.97x -> 2.79x-2.98x), CSV of 1.4M
lines 4.4-4.6 s -> 4.3 s, Parquet 19.2 s -> 17.0 s (2.56x -> 2.20x). Tested: the same rows,
columns, types and quarantine as a load into a table that holds lines; a killed load's
staging table. Where a 12M-line CSV load goes now (statement times of one load): the parse
and checks written 17.6 s (of it the write of 30 columns, about 10 s of two cores' time),
the text 6.2 s (reading the file takes 1.7 s of it; writing 13 text columns the rest), the
repeat check 2.0 s, return links 2.1 s, the conventions' evidence 1.4 s.

Earlier (2026-12-07 morning, before the change above): Parquet 2.77x, Parquet without a line
column 3.04x, CSV of 1.4M lines 3.39x, CSV of 12M lines 3.77x. Parsing from the text table in
each pass, as the Parquet load reads its file
again, instead of writing the parse once was measured on 2026-12-07: at 12M lines
39.6-42.6 s against 42.4-43.1 s (within the noise), at 1.4M lines slower (6.5 s against
5.25 s, where the parse fits in memory), so it was not kept. Two runs of 2026-12-06
morning, back to back with the same code (ratio in the first run / the second): Parquet
3.97x / 2.83x (the first run's
8GB row, 3.11x, shows that its default row was the outlier: one load of the same file, timed
alone between the runs, took 36.0 s), Parquet without a line column 3.10x / 3.53x, CSV of
1.4M lines 3.21x / 3.74x, CSV of 12M lines 3.32x / 3.50x. Across the runs since 2026-12-05
afternoon: Parquet 2.3x to 3.1x (one run 4.0x), Parquet without a line column 2.9x to 3.9x,
CSV 3.2x to 4.0x. So none of the three loads is reliably within 3x of the raw read yet; the
Parquet load with a line column is, on most runs.

The CSV file of the Parquet rows' size (12M lines, measured by the benchmark since
2026-12-06) is no closer to the limit than the 1.4M-line file: the fixed cost (opening,
building and compiling the queries, about 1.5 s) is not what keeps CSV above 3x. Per line
the load writes three times (the text, the parse, the lines table) where the limit writes
once; one write fewer means parsing straight from the file, which costs a parse per pass
over it (the conventions' evidence, the repeat checks, the insert): see the 2026-12-05
night paragraph below.

What changed on 2026-12-06 (statement times of one load of the 12M lines without a line
column, the old and the new code back to back, seconds): a group of repeating rows that is a
pair (the usual repeat: a line exported twice) is now taken from the aggregate that finds it
(its first and last row) instead of a second pass over the file (the repeating rows 2.02 ->
0.01; the aggregate, now with the rows' min and max, 3.61 -> 4.42 in that run, within the
noise); a group of three or more still takes the second pass. Lines without a line column
are numbered from their invoice's first row when each invoice's lines are contiguous in the
file (an aggregate of a million invoices instead of a window that sorts 12M rows: 3.85 ->
2.94), and the insert joins the invoices' first rows (a million) instead of every row's
number (12M); files that interleave invoices are numbered by the window as before. In all:
56.3 -> 53.2 s in that back-to-back pair (the hour was slow: the best of the benchmark's two
runs was 37.3 s). A test covers pairs, a triple, contiguous and interleaved invoices, from
CSV and from Parquet.

CSV at the Parquet benchmark's size (2026-12-05 night, measured by hand once, not by
`bench_ingest.py`): the same 12,027,921 lines written as a 1.1 GB CSV file. segmentum's load
took 71.5 s (peak 1.5 GB); the limit's `read_csv` took 18.6 s just before it and 24.3 s just
after: 2.9x to 3.8x. So the CSV load is not further from the limit at 1.4M lines because of a
fixed cost (opening, building the queries: about 1.5 s there); per line, it does three writes
(the text, the parse, the lines table) where the limit does one. Where the parse's time goes
(1.4M lines, DuckDB's profile, CPU seconds over both threads): trimming 13 text columns 1.2
(the test of both ends, already the cheapest of four ways measured: `right(s, 1)` 1.2x,
a slice 1.6x, trimming every value 4.6x slower), the null spellings 0.55, the date text
0.54, the parse and checks 0.77, the rest under 0.3 each.

What changed for Parquet without a line column (UCI Online Retail's shape; 2026-12-05
afternoon): its lines were numbered by a window over every parsed column, so the parse was
written down and sorted (52.7 s in the morning). The numbers are now computed once in a
narrow table (row, file, number: the window sorts the invoice and the row only; 2.2 s for
12M lines), each pass reads the file again like a Parquet file with a line column, and the
numbers are joined where a pass needs them (the insert, the keys already stored, the flagged
rows). A test loads the same export without a line column as CSV and as Parquet and gets
the same numbers, rejects and stored keys, on a first and an overlapping load.

What changed for CSV on 2026-12-05 afternoon (1.4M lines, wall seconds of the step):

- The file's hash, UTF-8 check and line count come from one read (the hash computed beside
  the count): 0.41 -> 0.17 s.
- Date/time text is cleaned (trimmed, null spellings made NULL) once, like every other
  column, instead of inside each of its nine date/time parts; null spellings are looked for
  only in short values that do not start with a digit, the case ignored by the regex
  instead of lowering every value (12 columns: 0.39 -> 0.23 s of computing).
- The offset evidence of a date column computes each distinct value's offset once instead
  of once per aggregate (0.24 -> 0.11 s).
- A first load counts its linked returns without joining the links to every line, and the
  C-prefix test reads only invoice numbers that start with a C (return links 0.85 -> 0.72 s).
- Where the CSV time goes now (best run): opening the warehouse and checking the file 0.5,
  reading the text 1.0, conventions 0.5, parse and checks written once 1.7 (1.2 of it
  computing 13 text columns), the repeat checks 0.2, insert 1.6 (the write of the 20-column
  lines table; the limit's write of 13 columns takes about 1.4), return links 0.7.
  Tried and dropped: writing only the values and a flag (the reasons re-parsed for the
  flagged rows): no gain, the write is the values; disabling DuckDB's FSST compression for
  the insert: slower.

What changed on 2026-12-05 morning (issue #18; wall seconds on 12M Parquet lines, quiet
machine):

- The parsed rows are no longer written to a temporary table when the file is Parquet. Writing
  the parse (every column of 12M lines) took longer than the parse itself (8.1 s against 4.7 s
  for computing it), so each pass reads what it needs from the file again: the keys that
  repeat (an aggregate of the key's hash: 2.2 s), the rows that fail a check (the checks
  alone, 1.3 s), and the insert (parse and write, 15.8 s, of which the write of the 20
  columns of the lines table is 12.7 s: a plain copy of that table inside DuckDB takes as
  long). The few flagged rows are parsed again in full from those rows of the file only.
  CSV keeps writing the parse once: text costs more to parse than to write (two parses of
  the 1.4M-line CSV took 10.9 s against 8.9 s).
- A join of the repeat check compared the key groups' hash with itself: as soon as one key
  repeated, every row of the file went through the repeat rules (the answers were right,
  the cost was a window over the whole file). It now sends the rows of the repeating groups
  only (tested), and a file with no repeated key and no stored key skips the second pass.
- After the insert, the batch's counts (anonymous lines, return lines) read the new rows of
  the lines table instead of parsing the file once more.
- CSV: rows are numbered by the temporary table's own row ids (numbering them with a window
  took as long as reading the file: 1.9 s -> 1.1 s), and the decimal, currency and date-order
  evidence is read once per distinct value, weighted by its rows (1.4 s -> 0.6 s).
- Before the changes of 2026-11-24: 6.48x for Parquet (10.07M lines) and 7.71x for CSV."""


def fresh(name: str) -> str:
    db = DATA / name
    for p in (db, db.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    return str(db)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=870_000)
    ap.add_argument(
        "--csv-customers",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[100_000, 870_000],
        help="customers of each CSV file measured, comma-separated",
    )
    args = ap.parse_args()
    files = ensure_demo(args.customers)
    path = str(files["transactions"])
    lines = pq.ParquetFile(path).metadata.num_rows
    print(f"ingest benchmark: {lines:,} invoice lines (Parquet)")
    seg = measure(
        "segmentum ingest (map, validate, dedupe, quarantine) (best of 2)",
        SEGMENTUM.format(path=path, db=fresh("ingest-seg.duckdb")),
        repeat=2,
    )
    # The raw copy runs with DuckDB's own memory limit (80% of RAM); segmentum keeps to its
    # memory_limit setting (1GB by default) and spills the rest: this row shows what that costs.
    seg_big = measure(
        "segmentum ingest, memory_limit 8GB (best of 2)",
        "import os; os.environ['SEGMENTUM_MEMORY_LIMIT'] = '8GB'\n"
        + SEGMENTUM.format(path=path, db=fresh("ingest-seg-8gb.duckdb")),
        repeat=2,
    )
    raw = measure(
        "limit: DuckDB CREATE TABLE AS read_parquet (best of 2)",
        RAW_PARQUET.format(path=path, db=fresh("ingest-raw.duckdb")),
        repeat=2,
    )
    shutil.copy(DATA / "ingest-seg.duckdb", DATA / "warehouse.duckdb")

    # The same lines without their line column (UCI Online Retail's shape): numbered here, in
    # file order within each invoice.
    noline = DATA / f"noline-{args.customers}.parquet"
    if not noline.exists():
        # In a process of its own: a child's peak memory (wait4) counts what it inherits from
        # this process, so a copy done here would show up in every row measured after it.
        copy = (
            f"COPY (SELECT * EXCLUDE (Line) FROM read_parquet('{path}')) TO '{noline}' "
            "(FORMAT parquet)"
        )
        subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.execute({copy!r})"], check=True
        )
    seg_noline = measure(
        "segmentum ingest, no line column (lines numbered) (best of 2)",
        SEGMENTUM.format(path=str(noline), db=fresh("ingest-seg-noline.duckdb")),
        repeat=2,
    )
    raw_noline = measure(
        "limit: DuckDB CREATE TABLE AS read_parquet, no line column (best of 2)",
        RAW_PARQUET.format(path=str(noline), db=fresh("ingest-raw-noline.duckdb")),
        repeat=2,
    )

    from segmentum import demo

    # Two CSV sizes: the 1.4M-line file (segmentum's fixed cost, about 1.5 s of building and
    # compiling its queries, is a fifth of its load) and the Parquet rows' customers as text
    # (12M lines), where the per-line work is all that counts.
    csv_tables = []
    for customers in args.csv_customers:
        csv_dir = DATA / f"demo-csv-{customers}"
        csv_path = str(csv_dir / "transactions.csv")
        if not (csv_dir / ".done").exists():  # generated once, reused like the Parquet data
            csv_path = str(demo.generate(csv_dir, customers=customers, fmt="csv")["transactions"])
            (csv_dir / ".done").write_text("ok")
        with open(csv_path, "rb") as fh:
            csv_lines = sum(1 for _ in fh) - 1
        print(f"ingest benchmark: {csv_lines:,} invoice lines (CSV, every value parsed from text)")
        # The best of three runs of each (two for the Parquet rows): one noisy run decides
        # nothing.
        seg_csv = measure(
            "segmentum ingest of CSV text (best of 3)",
            SEGMENTUM.format(path=csv_path, db=fresh("ingest-seg-csv.duckdb")),
            repeat=3,
        )
        if f"ROWS {csv_lines} {csv_lines} 0" not in seg_csv.output:
            raise RuntimeError(f"the CSV load did not accept every line: {seg_csv.output}")
        raw_csv = measure(
            "limit: DuckDB CREATE TABLE AS read_csv (types sniffed, best of 3)",
            RAW_CSV.format(path=csv_path, db=fresh("ingest-raw-csv.duckdb")),
            repeat=3,
        )
        csv_tables.append(
            f"**{csv_lines:,} invoice lines from CSV** (`--customers {customers}`, all values "
            f"parsed from text: numbers, dates):\n\n{table([seg_csv, raw_csv], raw_csv)}"
        )
    csv_body = "\n\n".join(csv_tables)

    body = f"""## Ingest

Measured on {machine()}. Each contender runs in its own process; time excludes Python start-up
and imports; peak memory is the process's maximum resident set size.

**{lines:,} invoice lines from Parquet** (`segmentum demo-data --format parquet --customers {args.customers}`):

{table([seg, seg_big, raw], raw)}

**The same lines without a line column** (each invoice's lines numbered in file order):

{table([seg_noline, raw_noline], raw_noline)}

{csv_body}

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
