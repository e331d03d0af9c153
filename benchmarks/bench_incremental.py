"""Incremental runs: the run after one new day of invoices against a full run, at 10M lines.

    cd benchmarks && nice -n 19 ../.venv/bin/python bench_incremental.py   # 870,000 customers, 3 days

The demo data for 870,000 customers (about 12M invoice lines, ``segmentum demo-data --format
parquet``, reused from ``bench-data/``) is split before its last ``--days`` whole days. On a fresh
DuckDB file, each step is one ``segmentum`` command in its own process, as a user would type it:

1. ``segmentum ingest`` of the lines and events before those days (no profile files);
2. ``segmentum run``: the first run (full);
3. for each new day: ``segmentum ingest`` of its lines and events, then ``segmentum run``
   (incremental: the measured new-day runs);
4. ``segmentum run --full`` on the same data: the full run they are compared with.

Per-step seconds come from each run's log (``--json``). The incremental run's features, CLV
scores and classes are then compared with the full run's (rows differing by more than 1e-9
relative), and the section ``incremental`` of docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import DATA, ensure_demo, machine, update_doc

SEGMENTUM = str(Path(sys.executable).with_name("segmentum"))
MEMORY_LIMIT = "4GB"
TARGET = 0.15


def _sh(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    print(f"  {' '.join(Path(a).name for a in args[:3]):<50} {took:8.1f} s", flush=True)
    return took, proc.stdout


def _split(files: dict[str, Path], out: Path, days: int) -> dict[str, Any]:
    """The demo's lines and events before its last ``days`` whole days, and each of those
    days, as Parquet (``history*.parquet``, ``day{k}*.parquet``)."""
    import datetime as dt

    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    tx, ev = str(files["transactions"]), str(files["events"])
    # The demo's very last day is partial (a few hundred lines, and a million message events
    # stamped on it): the days before it are ordinary days, and the new days here.
    last = con.execute(
        f"SELECT max(InvoiceDate)::DATE - INTERVAL 1 DAY FROM read_parquet('{tx}')"
    ).fetchone()
    assert last is not None
    end = last[0].date() if hasattr(last[0], "date") else last[0]
    first = end - dt.timedelta(days=days - 1)
    parts = {
        "history.parquet": (tx, "InvoiceDate", f"< DATE '{first}'"),
        "history_events.parquet": (ev, "timestamp", f"< DATE '{first}'"),
    }
    for k in range(days):
        d = first + dt.timedelta(days=k)
        parts[f"day{k}.parquet"] = (tx, "InvoiceDate", f"= DATE '{d}'")
        parts[f"day{k}_events.parquet"] = (ev, "timestamp", f"= DATE '{d}'")
    counts = {}
    for name, (src, col, cond) in parts.items():
        if not (out / name).exists():
            con.execute(
                f"COPY (SELECT * FROM read_parquet('{src}') WHERE {col}::DATE {cond}) "
                f"TO '{out / name}' (FORMAT parquet)"
            )
        row = con.execute(f"SELECT count(*) FROM read_parquet('{out / name}')").fetchone()
        counts[name] = int(row[0]) if row else 0
    return {
        "day": str(end),
        "days": [str(first + dt.timedelta(days=k)) for k in range(days)],
        "counts": counts,
    }


def _steps(stdout: str) -> tuple[dict[str, float], dict[str, Any]]:
    summary = json.loads(stdout[stdout.index("{") :])
    steps: dict[str, float] = {}
    for s in summary["steps"]:
        steps[s["step"]] = steps.get(s["step"], 0.0) + float(s.get("seconds") or 0.0)
    return steps, summary


def _compare(db: Path) -> dict[str, int]:
    """Rows of the incremental run's tables (kept aside) that differ from the full run's."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    out = {}
    for table in ("customer_features", "customer_clv", "customer_classes"):
        cols = [
            (r[0], r[1])
            for r in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? AND column_name NOT IN ('run_id', 'as_of')",
                [table],
            ).fetchall()
        ]
        conds = []
        for c, t in cols:
            a, b = f'i."{c}"', f'f."{c}"'
            if t in ("DOUBLE", "FLOAT"):
                conds.append(
                    f"NOT ((isnan({a}) AND isnan({b})) OR ({a} IS NULL AND {b} IS NULL) OR "
                    f"abs({a} - {b}) <= 1e-9 * greatest(abs({b}), 1e-12))"
                )
            else:
                conds.append(f"{a} IS DISTINCT FROM {b}")
        where = " OR ".join(conds)
        full = f"(SELECT * FROM {table} WHERE as_of = (SELECT max(as_of) FROM {table}))"
        row = con.execute(
            f"SELECT count(*) FILTER (WHERE f.customer_id IS NULL OR i.customer_id IS NULL), "
            f"count(*) FILTER (WHERE {where}) FROM inc_{table} i "
            f"FULL JOIN {full} f ON i.customer_id = f.customer_id"
        ).fetchone()
        assert row is not None
        out[table] = int(row[0]) + int(row[1])
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=870_000)
    ap.add_argument("--days", type=int, default=3, help="new days, each ingested then run")
    args = ap.parse_args()
    files = ensure_demo(args.customers)
    folder = DATA / f"incremental-{args.customers}-{args.days}d"
    split = _split(files, folder, args.days)
    db = DATA / f"incremental-{args.customers}.duckdb"
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    url = f"duckdb:///{db}"
    # No saved segments: the demo's rules read the customer profiles, not loaded here.
    env = {**os.environ, "SEGMENTUM_MEMORY_LIMIT": MEMORY_LIMIT, "SEGMENTUM_SEGMENTS_FILE": ""}
    ing = [SEGMENTUM, "ingest"]
    load = 0.0
    # Invoice lines and events only: what changes daily (the profile files take minutes to
    # load here and weigh the same on both runs).
    for table, path in (
        ("transactions", folder / "history.parquet"),
        ("events", folder / "history_events.parquet"),
    ):
        load += _sh([*ing, table, str(path), "-w", url], env)[0]
    first, out = _sh([SEGMENTUM, "run", "--json", "-w", url], env)
    first_steps, first_summary = _steps(out)
    daily = []
    for k, day in enumerate(split["days"]):
        day_ingest = 0.0
        for table, path in (
            ("transactions", folder / f"day{k}.parquet"),
            ("events", folder / f"day{k}_events.parquet"),
        ):
            day_ingest += _sh([*ing, table, str(path), "-w", url], env)[0]
        inc, out = _sh([SEGMENTUM, "run", "--json", "-w", url], env)
        inc_steps, inc_summary = _steps(out)
        daily.append(
            {
                "day": day,
                "ingest_s": day_ingest,
                "run_s": inc,
                "kind": inc_summary["plan"]["kind"],
                "models": inc_summary["plan"].get("models"),
                "changed": inc_summary["plan"].get("changed_customers"),
                "steps": inc_steps,
            }
        )
    import duckdb

    con = duckdb.connect(str(db))
    for table in ("customer_features", "customer_clv", "customer_classes"):
        con.execute(
            f"CREATE OR REPLACE TABLE inc_{table} AS SELECT * FROM {table} "
            f"WHERE as_of = (SELECT max(as_of) FROM {table})"
        )
    con.close()
    full, out = _sh([SEGMENTUM, "run", "--full", "--json", "-w", url], env)
    full_steps, full_summary = _steps(out)
    diff = _compare(db)
    load_avg = os.getloadavg()
    result = {
        "customers": args.customers,
        "split": split,
        "history_ingest_s": load,
        "first_run_s": first,
        "day_ingest_s": day_ingest,
        "incremental_s": inc,
        "daily": daily,
        "full_s": full,
        "first_steps": first_steps,
        "incremental_steps": inc_steps,
        "full_steps": full_steps,
        "plan": inc_summary["plan"],
        "full_plan": full_summary["plan"],
        "first_plan": first_summary["plan"],
        "differences": diff,
        "load_average": load_avg,
        "machine": machine(),
    }
    (DATA / "incremental-results.json").write_text(json.dumps(result, indent=1, default=str))
    write_doc(result)


def _daily_table(days: list[dict[str, Any]], full: float) -> str:
    """One row a new day: the day's ingest and run, against the full run."""
    if not days:
        return ""
    rows = [
        "| new day | ingest (s) | `segmentum run` (s) | kind | models | customers recomputed "
        "| share of the full run |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    for d in days:
        rows.append(
            f"| {d['day']} | {d['ingest_s']:.1f} | {d['run_s']:.1f} | {d['kind']} | "
            f"{d['models'] or ''} | {d['changed'] or 0:,} | {d['run_s'] / full:.0%} |"
        )
    return "\n".join(rows) + (
        "\n\nEvery run adds a snapshot to the tables kept per date, so the days show whether "
        "a daily run grows with the history it keeps (it should not)."
    )


def _medians(days: list[dict[str, Any]], full: float) -> str:
    """Rows of the median new day with the stored fit and with a refit (over several days)."""
    import statistics

    out = []
    for label, refit in (("with the stored fit", False), ("that refits the models", True)):
        runs = [d["run_s"] for d in days if str(d["models"] or "").startswith("refit") == refit]
        if len(runs) > 1:
            m = statistics.median(runs)
            out.append(
                f"| median new day {label} ({len(runs)} days, {min(runs):.1f}-{max(runs):.1f} s) "
                f"| {m:.1f} | {m / full:.0%} |"
            )
    return "\n".join(out)


def write_doc(r: dict[str, Any]) -> None:
    inc, full = r["incremental_steps"], r["full_steps"]
    counts = r["split"]["counts"]
    lines_total = sum(v for k, v in counts.items() if "events" not in k)
    days = r.get("daily") or []
    last_lines = counts.get(f"day{len(days) - 1}.parquet", counts.get("day.parquet", 0))
    last_events = counts.get(
        f"day{len(days) - 1}_events.parquet", counts.get("day_events.parquet", 0)
    )
    rows = [
        "| step | full run (s) | new-day run (s) | share of full |",
        "|---|---:|---:|---:|",
    ]
    for step in full:
        a, b = full[step], inc.get(step)
        share = f"{b / a:.0%}" if b is not None and a > 0.05 else ""
        rows.append(f"| {step} | {a:.2f} | {'' if b is None else f'{b:.2f}'} | {share} |")
    for step in inc:
        if step not in full:
            rows.append(f"| {step} | | {inc[step]:.2f} | |")
    ratio = r["incremental_s"] / r["full_s"]
    plan = r["plan"]
    busy = (
        "nothing else ran"
        if max(r["load_average"]) <= 3
        else "shared with other jobs: the absolute times are inflated"
    )
    body = f"""## Incremental runs: the new-day run against a full run

`benchmarks/bench_incremental.py`: the demo data for {r["customers"]:,} customers
({lines_total:,} invoice lines) split before its last {max(len(days), 1)} whole days (the last,
{r["split"]["day"]}, has {last_lines:,} lines and {last_events:,} events). The history is ingested and run
once (full, {r["first_run_s"]:.0f} s; invoice lines and events only: no customer profiles, so no saved segments); then each new day is ingested and
`segmentum run` runs incrementally; after the last day `segmentum run --full` recomputes the
same day. Each command in its own process, DuckDB with a {MEMORY_LIMIT} memory limit, wall
time of the command (per-step seconds from the run log).

{_daily_table(days, r["full_s"])}

| run | time (s) | share of the full run (target under {TARGET:.0%}) |
|---|---:|---:|
| `segmentum run --full` | {r["full_s"]:.1f} | 100% |
| `segmentum run` after the last new day (incremental) | {r["incremental_s"]:.1f} | {ratio:.0%} |
{_medians(days, r["full_s"])}

The incremental run: {plan["why"]}; {plan["models_why"]}.
Rows of the incremental run's tables that differ from the full run's (beyond 1e-9 relative):
{", ".join(f"{k} {v:,}" for k, v in r["differences"].items())}. The features that differ are
90-day spend sums that cancel to zero (a purchase and its return), 1e-14 against 0: the order
of a floating-point sum, which differs between two full runs too. CLV and the classes that
read it differ because `--full` refits the models while the new-day run scores with the stored
fit (the test compares both with the same fit: identical).

{chr(10).join(rows)}

Machine: {r["machine"]}; load average {r["load_average"][0]:.1f} / {r["load_average"][1]:.1f} /
{r["load_average"][2]:.1f} at the end, on 2 cores ({busy}). The two runs measured back to back
are what to compare.
"""
    update_doc("incremental", body)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--doc":
        write_doc(json.loads((DATA / "incremental-results.json").read_text()))
    else:
        main()
