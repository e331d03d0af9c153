"""Scale benchmark: the whole product at 1M, 10M and 100M invoice lines on one machine.

    cd benchmarks && ../.venv/bin/python bench_scale.py --lines 1M 10M
    nohup nice -n 19 ../.venv/bin/python bench_scale.py --lines 100M --deadline 12:10 &
    cd benchmarks && ../.venv/bin/python bench_scale.py --spark 10M   # Spark local[2] against DuckDB
    cd benchmarks && ../.venv/bin/python bench_scale.py --doc          # rewrite the doc section

For each size, on a fresh DuckDB file, each step is one ``segmentum`` command in its own
process, as a user would type it (wall time, peak resident memory of the process and its
children sampled together):

1. ``segmentum ingest`` of every file of the demo folder (invoice lines and events from Parquet);
2. the full ``segmentum run`` (every step, the 20 saved rules of the segments benchmark loaded
   from ``SEGMENTUM_SEGMENTS_FILE`` and computed; per-step seconds from its run log);
3. ``segmentum segment compute``: the 20 saved segments alone;
4. ``segmentum history backfill``: 24 monthly snapshots of the classes and the saved segments.

DuckDB runs with ``SEGMENTUM_MEMORY_LIMIT`` (4GB here) and spills to the folder beside the file
(``<file>.tmp``); the target is a peak under 8 GB for every step. Results accumulate in
``benchmarks/scale-results.json`` (kept in the repository: one run may add the 100M size while
another adds Spark, on another day or machine) and the doc section is written from everything
there.

With ``--spark``, the same ingest and run (and, time allowing, segments and backfill) on a local
Spark session (``pyspark:///folder``, ``local[2]``, the driver's memory set through
``SEGMENTUM_SPARK_CONF``), for the ratio to DuckDB per step.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import DATA, ensure_demo, machine, update_doc

SIZES = {"1M": 87_000, "10M": 870_000, "100M": 8_700_000}
# Kept in the repository, not in bench-data/: a 100M run takes hours, and its figures must
# outlive the machine that measured them (the doc section is rendered from every size here).
RESULTS = Path(__file__).resolve().parent / "scale-results.json"
# The Spark subsection of the last Spark measurement, shown while no newer one is in RESULTS.
SPARK_BEFORE = Path(__file__).resolve().parent / "scale_spark_1M.md"
SEGMENTUM = str(Path(sys.executable).with_name("segmentum"))
MEMORY_LIMIT = "4GB"
TARGET_MB = 8 * 1024
SPARK_CONF = "spark.driver.memory=5g;spark.sql.shuffle.partitions=8"


# ------------------------------------------------------------------ measuring one command
def _tree_rss(pid: int, cpu: dict[int, float]) -> int:
    """Resident bytes of a process and all its children (the JVM of a Spark session too);
    updates ``cpu`` with each process's CPU seconds so far (the last seen value is kept)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
            t = p.cpu_times()
            cpu[p.pid] = t.user + t.system
    return total


def measure_cli(name: str, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``segmentum <args>``; wall seconds, peak MB (process tree), stdout, status."""
    peak = [0]
    cpu: dict[int, float] = {}
    done = threading.Event()
    start = time.perf_counter()
    err_path = DATA / f"scale-stderr-{os.getpid()}.log"  # one per run: runs go side by side
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [SEGMENTUM, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,  # its own process group: a timeout ends the JVM too
        )

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(proc.pid, cpu))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        status, timed_out = 0, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        reader.join(5)
    seconds = time.perf_counter() - start
    # ru_maxrss covers the process (and the largest waited-for child); the sampled sum covers
    # the whole tree at once (a Spark driver's JVM beside Python).
    peak_mb = max(peak[0] / 2**20, usage.ru_maxrss / 1024)
    # CPU seconds measure the work whatever else the shared machine runs: the process's own
    # (with its waited-for children) or, if more, the tree's as last sampled.
    cpu_s = max(usage.ru_utime + usage.ru_stime, sum(cpu.values()))
    stderr = err_path.read_text(errors="replace")
    result = {
        "step": name,
        "seconds": round(seconds, 2),
        "peak_mb": round(peak_mb),
        "cpu_seconds": round(cpu_s, 2),
        "status": "timed out" if timed_out else ("ok" if proc.returncode == 0 else "failed"),
        "stdout": (out[0] if out else b"").decode(errors="replace"),
    }
    if result["status"] != "ok":
        result["error"] = stderr[-2000:]
    flag = "" if result["status"] == "ok" else f"  ** {result['status']} **"
    print(f"  {name:<40} {seconds:9.1f} s {cpu_s:9.1f} cpu-s {peak_mb:8.0f} MB{flag}", flush=True)
    if result["status"] == "failed":
        print(stderr[-2000:], flush=True)
    return result


def _json(stdout: str) -> Any:
    """The JSON a ``--json`` command printed (whatever came before it ignored)."""
    i = stdout.find("{")
    return json.loads(stdout[i:]) if i >= 0 else {}


# ------------------------------------------------------------------ results file
@contextlib.contextmanager
def _results() -> Iterator[dict[str, Any]]:
    """The results file, locked while it is read and rewritten (two runs may add to it)."""
    DATA.mkdir(exist_ok=True)
    with open(DATA / "scale-results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        yield data
        RESULTS.write_text(json.dumps(data, indent=1))


def _record(engine: str, label: str, key: str, value: Any) -> None:
    with _results() as data:
        data.setdefault(engine, {}).setdefault(label, {})[key] = value


def _add_step(engine: str, label: str, step: dict[str, Any]) -> None:
    kept = {k: v for k, v in step.items() if k != "stdout"}
    with _results() as data:
        steps = data.setdefault(engine, {}).setdefault(label, {}).setdefault("steps", [])
        steps[:] = [s for s in steps if s["step"] != kept["step"]] + [kept]


# ------------------------------------------------------------------ one size
def _segments_yaml() -> Path:
    import bench_segments

    bench_segments.write_yaml()
    return bench_segments.YAML


def _demo(customers: int) -> dict[str, Path]:
    """The demo folder for ``customers`` (made once; another helper's copy is waited for)."""
    folder = DATA / f"demo-{customers}"
    busy = DATA / f"demo-{customers}.generating"
    while busy.exists() and not (folder / ".done").exists():
        print(f"  waiting for demo-{customers} (being generated by another run)", flush=True)
        time.sleep(30)
    files = ensure_demo(customers)
    (folder / ".done").write_text("ok")
    return files


def _ingest_order(files: dict[str, Path], parquet_first: bool) -> list[tuple[str, Path]]:
    from segmentum.pipeline import DATA_FILES

    folder = files["transactions"].parent
    order = []
    for table, names in DATA_FILES.items():
        found = next((folder / n for n in names if (folder / n).is_file()), None)
        if found is not None:
            order.append((table, found))
    if parquet_first:  # the invoice lines and events (the bulk) before the small CSV files
        order.sort(key=lambda tp: tp[1].suffix != ".parquet")
    return order


def _sidecars(db: Path) -> list[Path]:
    """The files beside a warehouse: DuckDB's own (``<name>.wal``) and those named after its
    stem (``<stem>.serving.duckdb`` and its documents, ``<stem>.realtime.sqlite``); the
    second kind was left behind, a gigabyte each at 10M."""
    found = {*DATA.glob(f"{db.name}.*"), *DATA.glob(f"{db.stem}.*")}
    return sorted(p for p in found if p != db)


def run_size(
    label: str,
    engine: str,
    steps: list[str],
    deadline: float,
    timeout: float,
    keep: bool,
    parquet_first: bool = False,
) -> None:
    customers = SIZES[label]
    files = _demo(customers)
    if engine == "duckdb":
        db = DATA / f"scale-{customers}.duckdb"
        url = f"duckdb:///{db}"
    else:
        db = DATA / f"scale-spark-{customers}"
        url = f"pyspark:///{db}"
    env = {
        **os.environ,
        "SEGMENTUM_MEMORY_LIMIT": MEMORY_LIMIT,
        "SEGMENTUM_SPARK_CONF": SPARK_CONF,
        "SEGMENTUM_CONFIG": str(DATA / "no-such-segmentum.toml"),  # defaults, not a local toml
    }
    print(f"scale [{engine}] {label} lines ({customers:,} customers): {url}", flush=True)
    if "ingest" in steps or "run-data" in steps:
        for suffix in ("", ".wal", ".tmp"):
            p = Path(f"{db}{suffix}")
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        for extra in _sidecars(db):  # serving store, realtime and state files
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        with _results() as data:
            # A fresh warehouse: the rows of the steps measured now are replaced; the others
            # (a run measured another day on the same data) stay, with their notes.
            kept = data.setdefault(engine, {}).get(label, {})
            again = {"run": "run", "segments": "segment compute", "backfill": "history backfill"}
            redo = [again[s] for s in steps if s in again]
            old = [
                x
                for x in kept.get("steps", [])
                if not x["step"].startswith(("ingest ", "run --data", *redo))
            ]
            entry = {**kept, "customers": customers, "steps": old}
            if "run" in steps:
                entry.pop("run_steps", None)
                entry.pop("run_failed_step", None)
            data[engine][label] = entry
    _record(engine, label, "machine", machine())

    def go(name: str, args: list[str]) -> dict[str, Any] | None:
        left = deadline - time.time()
        if left < 60:
            print(f"  {name}: not started, the deadline has passed", flush=True)
            _add_step(engine, label, {"step": name, "status": "not started (deadline)"})
            return None
        r = measure_cli(name, [*args, "-w", url], env, min(timeout, left))
        r["load"] = round(os.getloadavg()[0], 1)
        _add_step(engine, label, r)
        return r

    if "run-data" in steps:
        # One process, one session: `segmentum run --data` ingests the folder then runs (the
        # same files and the same 20 rules as the DuckDB runs; the demo's own rules left out).
        folder = DATA / f"scale-data-{customers}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for _, path in _ingest_order(files, False):
            (folder / path.name).symlink_to(path)
        env["SEGMENTUM_SEGMENTS_FILE"] = str(_segments_yaml())
        r = go("run --data (ingest + run)", ["run", "--data", str(folder), "--json"])
        del env["SEGMENTUM_SEGMENTS_FILE"]
        if r and r["status"] == "ok":
            summary = _json(r["stdout"])
            _record(
                engine,
                label,
                "run_steps",
                {s["step"]: s.get("seconds", 0.0) for s in summary.get("steps", [])},
            )
        shutil.rmtree(folder, ignore_errors=True)
    if "ingest" in steps:
        for table, path in _ingest_order(files, parquet_first):
            r = go(f"ingest {table}", ["ingest", table, str(path), "--json"])
            if not r or r["status"] != "ok":
                return
        if engine == "duckdb":
            import duckdb

            with duckdb.connect(str(db), read_only=True) as con:
                row = con.execute("select count(*) from transactions").fetchone()
            _record(engine, label, "lines", int(row[0]) if row else 0)
    if "run" in steps:
        # The run loads the 20 saved rules itself (segments_file) and computes them.
        env["SEGMENTUM_SEGMENTS_FILE"] = str(_segments_yaml())
        # On a kept warehouse that a run already went through, a plain run would find
        # nothing changed: SCALE_FULL_RUN=1 measures the full recompute again.
        again_full = ["--full"] if os.environ.get("SCALE_FULL_RUN") == "1" else []
        r = go("run", ["run", "--json", *again_full])
        del env["SEGMENTUM_SEGMENTS_FILE"]
        if r and r["status"] == "ok":
            summary = _json(r["stdout"])
            _record(
                engine,
                label,
                "run_steps",
                {s["step"]: s.get("seconds", 0.0) for s in summary.get("steps", [])},
            )
        if not r or r["status"] != "ok":
            return
    if "segments" in steps:
        r = go("segment compute (20 saved)", ["segment", "compute", "--json"])
    if "backfill" in steps:
        r = go("history backfill (24 months)", ["history", "backfill", "--periods", "24", "--json"])
    if not keep and engine == "duckdb" and label == "100M":
        db.unlink(missing_ok=True)
        for extra in _sidecars(db):  # its serving store and documents: 21 GB
            extra.unlink(missing_ok=True)


# ------------------------------------------------------------------ the doc section
STEP_ROWS = (
    "ingest (all files)",
    "run",
    "segment compute (20 saved)",
    "history backfill (24 months)",
    "history backfill (24 months, classes only)",
)


def _rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured steps, the ingest processes folded into one row (sums, max peak)."""
    steps = entry.get("steps", [])
    ingest = [s for s in steps if s["step"].startswith("ingest ")]
    rows = []
    if any(s.get("status") != "ok" for s in ingest):
        return list(steps)  # an unfinished ingest: each command as it went
    if ingest:
        bad = [s["status"] for s in ingest if s.get("status") != "ok"]
        loads = [s["load"] for s in ingest if "load" in s]
        rows.append(
            {
                "step": "ingest (all files)",
                "seconds": sum(s.get("seconds", 0.0) for s in ingest),
                "cpu_seconds": sum(s.get("cpu_seconds", 0.0) for s in ingest),
                "peak_mb": max(s.get("peak_mb", 0) for s in ingest),
                "status": bad[0] if bad else "ok",
                "load": round(sum(loads) / len(loads), 1) if loads else "",
            }
        )
    rows += [s for s in steps if s["step"] in STEP_ROWS[1:]]
    return rows


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def render() -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    duck = data.get("duckdb", {})
    out = [
        "## Scale: 1M, 10M and 100M invoice lines on one machine",
        "",
        "The demo retailer (`segmentum demo-data --format parquet`) at three sizes, on a fresh "
        "DuckDB file each, every step one `segmentum` command in its own process as a user "
        "would type it: `segmentum ingest` of every file of the demo folder (invoice lines and "
        "events from Parquet; customers, campaign results, survey answers, products and the "
        "population from CSV), the full `segmentum run` (every step, with the 20 saved rules "
        "of the segments benchmark), `segmentum segment compute` (the 20 saved segments alone) "
        "and `segmentum history backfill` (24 monthly snapshots of the classes and the saved "
        f"segments). DuckDB ran with `SEGMENTUM_MEMORY_LIMIT={MEMORY_LIMIT}`, spilling to the "
        "folder beside the file (`<file>.tmp`). Peak memory is the resident memory of the "
        "command and its children, sampled together; the target is under 8 GB for every step. "
        f"Machine: {machine()}, 24 GB; {_load_words(duck)} CPU seconds (user + system, the "
        "command and its children) measure the work itself, and the growth below is read "
        "from them.",
        "",
        "| lines | customers | step | wall (s) | CPU (s) | peak memory (MB) "
        "| CPU s per million lines | load |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for label in SIZES:
        entry = duck.get(label)
        if not entry:
            continue
        lines = entry.get("lines", 0)
        for r in _rows(entry):
            head = f"| {lines:,} | {entry['customers']:,} | {r['step']} |"
            status = r.get("status", "ok")
            if status != "ok":
                peak = f"{r['peak_mb']:,}" if "peak_mb" in r else ""
                spent = f" after {_fmt(r['seconds'])} s" if r.get("seconds") else ""
                cpu_so_far = _fmt(r["cpu_seconds"]) if r.get("cpu_seconds") else ""
                out.append(
                    f"{head} {status}{spent} | {cpu_so_far} | {peak} | | {r.get('load', '')} |"
                )
                continue
            cpu = r.get("cpu_seconds", 0.0)
            per = f"{cpu / (lines / 1e6):.1f}" if lines and cpu else ""
            over = " (over 8 GB)" if r["peak_mb"] > TARGET_MB else ""
            out.append(
                f"{head} {_fmt(r['seconds'])} | {_fmt(cpu) if cpu else ''} | "
                f"{r['peak_mb']:,}{over} | {per} | {r.get('load', '')} |"
            )
    when = {
        label: e.get("measured") or str(e.get("machine", ""))[-10:]
        for label, e in duck.items()
        if e.get("steps")
    }
    if len(set(when.values())) > 1:  # sizes measured on different days: say which
        out += ["", "Measured: " + "; ".join(f"{k} lines on {v}" for k, v in when.items()) + "."]
    out += ["", *_growth(duck), *_run_steps(duck), *_spark(data), *_notes(data)]
    update_doc("scale", "\n".join(out))


def _load_words(duck: dict[str, Any]) -> str:
    """What the machine was doing while the steps ran (the load when each ended)."""
    loads = [s["load"] for e in duck.values() for s in e.get("steps", []) if "load" in s]
    if not loads:
        return ""
    lo, hi = min(loads), max(loads)
    busy = (
        "**shared with other jobs** (wall times are inflated; read the CPU seconds)"
        if hi > 3
        else "nothing else ran"
    )
    return f"load average {lo:.1f} to {hi:.1f} when the steps ended (the last column): {busy}."


def _growth(duck: dict[str, Any]) -> list[str]:
    """How each step's cost (CPU seconds) grows from one size to the next, against the lines."""
    pairs = [(a, b) for a, b in (("1M", "10M"), ("10M", "100M")) if a in duck and b in duck]
    if not pairs:
        return []
    out = [
        "How cost grows: CPU seconds between sizes against the lines (the last figure is the "
        "one to read: 1.0 is linear, under 1.0 better than linear):",
        "",
        "| step | " + " | ".join(f"{a} to {b}: CPU x / lines x" for a, b in pairs) + " |",
        "|---|" + "---:|" * len(pairs),
    ]
    growth: list[tuple[float, str]] = []
    for step in STEP_ROWS:
        cells = []
        for a, b in pairs:
            ra = {r["step"]: r for r in _rows(duck[a])}.get(step)
            rb = {r["step"]: r for r in _rows(duck[b])}.get(step)
            la, lb = duck[a].get("lines", 0), duck[b].get("lines", 0)
            if not (ra and rb and la and lb) or ra["status"] != "ok" or rb["status"] != "ok":
                cells.append("not measured")
                continue
            ca, cb = ra.get("cpu_seconds", 0.0), rb.get("cpu_seconds", 0.0)
            if not (ca and cb):
                cells.append("not measured")
                continue
            tx, lx = cb / ca, lb / la
            cells.append(f"{tx:.1f}x / {lx:.1f}x = {tx / lx:.2f}")
            growth.append((tx / lx, f"{step} from {a} to {b}"))
        out.append(f"| {step} | " + " | ".join(cells) + " |")
    if growth:
        worst, where = max(growth)
        over = [w for g, w in growth if g > 1.05]
        if not over:
            words = (
                "every step measured at two sizes grew no faster than the lines (highest "
                f"figure {worst:.2f}, {where}): the fixed costs (starting Python and the "
                "engine, planning queries, fitting models on grouped summaries) weigh less as "
                "the data grows."
            )
        else:
            words = (
                f"{', '.join(over)} grew faster than the lines (highest figure {worst:.2f}); "
                "every other step grew no faster than the lines, within 5% (what two runs of "
                "the same step differ by): the fixed costs (starting Python and the engine, "
                "planning queries, fitting models on grouped summaries) weigh less as the "
                "data grows."
            )
        out += ["", f"So far {words}"]
    return [*out, ""]


def _run_steps(duck: dict[str, Any]) -> list[str]:
    """The run's own steps (from its run log) at every size measured."""
    sizes = [label for label in SIZES if duck.get(label, {}).get("run_steps")]
    if not sizes:
        return []
    names: list[str] = []
    for label in sizes:
        names += [n for n in duck[label]["run_steps"] if n not in names]
    out = [
        "Inside `segmentum run` (wall seconds per step, from `pipeline_runs`):",
        "",
        "| step | " + " | ".join(f"{s} lines" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for label in sizes:  # a failed run: its failing step, after those that finished
        failed = duck[label].get("run_failed_step")
        if failed and failed not in names:
            names.append(failed)

    def cell(label: str, n: str) -> str:
        c = duck[label]["run_steps"].get(n)
        if c is None:
            return "**failed**" if duck[label].get("run_failed_step") == n else ""
        return _fmt(float(c))

    for n in names:
        out.append(f"| {n} | " + " | ".join(cell(s, n) for s in sizes) + " |")
    return [*out, ""]


def _spark(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    ratios: list[str] = []
    for label in SIZES:
        spark = data.get("pyspark", {}).get(label)
        duck = data.get("duckdb", {}).get(label)
        if spark and duck and spark.get("steps"):
            out += _spark_size(label, spark, duck)
            ratios += _ratio_words(label, spark, duck)
        elif label == "1M" and SPARK_BEFORE.exists():
            # Not rerun: the last Spark measurement, kept with its date and conditions.
            out += [SPARK_BEFORE.read_text(encoding="utf-8")]
            ratios.append(SPARK_BEFORE_RATIO)
    return [*out, *_cluster_note(ratios)] if out else []


# The 1M-line Spark measurement's ratios (scale_spark_1M.md), for the crossover paragraph.
SPARK_BEFORE_RATIO = (
    "at 1M lines 5.3x the CPU seconds and 4.0x the wall time (on a machine loaded 10 to 18)"
)


def _ratio_words(label: str, spark: dict[str, Any], duck: dict[str, Any]) -> list[str]:
    d = {r["step"]: r for r in _rows(duck)}
    sp = {x["step"]: x for x in spark.get("steps", [])}.get("run --data (ingest + run)")
    both = [d.get("ingest (all files)"), d.get("run")]
    if not sp or sp.get("status") != "ok" or not all(both):
        return []
    dc = sum(x.get("cpu_seconds", 0.0) for x in both if x)
    dw = sum(x["seconds"] for x in both if x)
    return [
        f"at {label} lines {sp['cpu_seconds'] / dc:.1f}x the CPU seconds and "
        f"{sp['seconds'] / dw:.1f}x the wall time"
    ]


def _cluster_note(ratios: list[str]) -> list[str]:
    return [
        "**Where the crossover lies.** On one machine DuckDB wins at every size we measured: "
        f"Spark took {'; '.join(ratios)}. The gap does not close as the data grows: each Spark query pays planning, task scheduling and a JVM round trip (tenths of a "
        "second to seconds) whatever its size, a run is a few hundred queries, every "
        "`segmentum` command starts a session (about 15 s here), and the steps that grew "
        "most on Spark are those that move rows through the driver (publishing the serving "
        "store, the summary) or into Parquet (ingest). Both engines spill to disk, so neither "
        "hits a memory wall on one machine; the question is only wall time. A bigger single "
        "machine is the first step (DuckDB uses every core of it: `threads` follows the "
        "cores, and `SEGMENTUM_MEMORY_LIMIT` lets it keep more in memory). A Spark cluster "
        "wins once the nightly window is shorter than one machine's run: with the CPU seconds "
        "per million lines above, that is at billions of invoice lines (tens of millions of "
        "customers and up) for a daily run, or earlier when the data already lives in a lake "
        "and copying it to one machine costs more than the run.",
        "",
        "**What a cluster changes.** Executors on many machines run a query's tasks in "
        "parallel (`spark.executor.instances`, `spark.executor.cores`, "
        "`spark.executor.memory`; spilling per executor), so the per-query cost buys many "
        "machines' cores instead of two local threads. `spark.sql.shuffle.partitions` must "
        "grow with the data and the cores (2-3 per executor core; the local session uses 4, "
        "the run above 8). The data lives where every executor can read it (object storage "
        "or HDFS as Parquet or Delta, the platform's catalog), not in a local folder with a "
        "Derby metastore. What does not change: the models are fitted on the driver from "
        "summaries of at most one row per customer (grouped where purchase histories repeat), "
        "so the driver's memory follows the customers, not the lines; the serving store "
        "is published to a DuckDB file on the driver (the executors write each read model as "
        "Parquet into a folder the driver also mounts, the `spark_handoff` setting; without "
        "one each read model streams through the driver a partition at a time, so a "
        "partition, not a read model, sets what the driver needs), and the fixed cost per "
        "query stays: a cluster does not "
        "make small data faster (docs/running-on-spark.md).",
        "",
    ]


def _spark_size(label: str, spark: dict[str, Any], duck: dict[str, Any]) -> list[str]:
    loads = [s["load"] for s in spark.get("steps", []) if "load" in s]
    day = str(spark.get("machine", ""))[-10:]
    duck_day = duck.get("measured") or str(duck.get("machine", ""))[-10:]
    out = [
        f"### Spark local[2] against DuckDB at {label} lines (measured {day}"
        + (f", load {max(loads):.1f} when it ended" if loads else "")
        + ")",
        "",
        *(
            [f"DuckDB's figures are those of the table above, measured on {duck_day}.", ""]
            if duck_day and duck_day != day
            else []
        ),
        "The same work on `pyspark:///folder`: one `segmentum run --data` command (a local "
        f'session, `local[2]`, `SEGMENTUM_SPARK_CONF="{SPARK_CONF}"`, starting the session '
        "counted) ingests the same files and runs every step with the same 20 saved rules; "
        "DuckDB's side is its ingest commands and its run added up. Peak memory includes the "
        "driver's JVM.",
        "",
        "| work | DuckDB wall (s) | Spark wall (s) | wall ratio | DuckDB CPU (s) | Spark CPU (s) "
        "| CPU ratio | DuckDB peak (MB) | Spark peak (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    d_rows = {r["step"]: r for r in _rows(duck)}
    pairs = []
    sp = {x["step"]: x for x in spark.get("steps", [])}
    both = [d_rows.get("ingest (all files)"), d_rows.get("run")]
    if "run --data (ingest + run)" in sp and all(both):
        d = {
            "seconds": sum(x["seconds"] for x in both if x),
            "cpu_seconds": sum(x.get("cpu_seconds", 0.0) for x in both if x),
            "peak_mb": max(x["peak_mb"] for x in both if x),
            "status": "ok" if all(x and x["status"] == "ok" for x in both) else "failed",
        }
        pairs.append(("ingest + run", d, sp["run --data (ingest + run)"]))
    for name in STEP_ROWS[2:]:
        if name in sp and name in d_rows:
            pairs.append((name, d_rows[name], sp[name]))
    for name, d, r in pairs:
        dc = d.get("cpu_seconds", 0.0)
        if r.get("status") != "ok" or d.get("status") != "ok":
            out.append(
                f"| {name} | {_fmt(d['seconds'])} | {r.get('status')} | | {_fmt(dc)} | | | "
                f"{d['peak_mb']:,} | {r.get('peak_mb', '')} |"
            )
            continue
        rc = r.get("cpu_seconds", 0.0)
        cpu_ratio = f"{rc / dc:.1f}x" if dc and rc else ""
        out.append(
            f"| {name} | {_fmt(d['seconds'])} | {_fmt(r['seconds'])} | "
            f"{r['seconds'] / d['seconds']:.1f}x | {_fmt(dc)} | {_fmt(rc)} | {cpu_ratio} | "
            f"{d['peak_mb']:,} | {r['peak_mb']:,} |"
        )
    rs, rd = spark.get("run_steps", {}), dict(duck.get("run_steps", {}))
    rd.update({x["step"]: x["seconds"] for x in duck.get("steps", []) if x["step"] in rs})
    if rs and rd:
        out += [
            "",
            "Per step (wall seconds; DuckDB's ingest steps are its `segmentum ingest` commands):",
            "",
            "| step | DuckDB (s) | Spark (s) | ratio |",
            "|---|---:|---:|---:|",
        ]
        ingest_total = d_rows.get("ingest (all files)")
        if ingest_total and not any(n.startswith("ingest ") and n in rd for n in rs):
            b = sum(float(v) for n, v in rs.items() if n.startswith("ingest "))
            a = float(ingest_total["seconds"])
            out.append(f"| ingest (all files) | {_fmt(a)} | {_fmt(b)} | {b / a:.1f}x |")
        for n in rs:
            b = float(rs[n])
            if n not in rd:  # a DuckDB step not kept apart (its ingest commands as one row)
                out.append(f"| {n} |  | {_fmt(b)} |  |")
                continue
            a = float(rd[n])
            if a or b:
                ratio = f"{b / a:.1f}x" if a >= 0.05 else ""
                out.append(f"| {n} | {_fmt(a)} | {_fmt(b)} | {ratio} |")
    if spark.get("note"):  # what was measured after, or what the figures do not show
        out += ["", spark["note"]]
    return [*out, ""]


def _notes(data: dict[str, Any]) -> list[str]:
    said = [
        f"{label} lines: {e['note']}"
        for label, e in data.get("duckdb", {}).items()
        if e.get("note")
    ]
    missing = [
        f"{engine} {label}: {s['step']} ({s['status']})"
        for engine, sizes in data.items()
        for label, e in sizes.items()
        for s in e.get("steps", [])
        if s.get("status") != "ok"
    ]
    out = [f"Not finished: {'; '.join(missing)}.", ""] if missing else []
    return [*out, *(x for n in said for x in (n, ""))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", nargs="*", default=[], choices=list(SIZES))
    ap.add_argument("--spark", nargs="*", default=[], choices=list(SIZES))
    ap.add_argument(
        "--steps", default="ingest,run,segments,backfill", help="comma-separated subset"
    )
    ap.add_argument(
        "--spark-steps",
        default="",
        help="Spark runs `run --data` (ingest + run) in one process; add segments,backfill",
    )
    ap.add_argument("--deadline", default="", help="HH:MM UTC: no step runs past it")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per step")
    ap.add_argument("--keep", action="store_true", help="keep the 100M warehouse")
    ap.add_argument(
        "--parquet-first", action="store_true", help="ingest the Parquet files before the CSVs"
    )
    ap.add_argument("--doc", action="store_true", help="only rewrite the doc section")
    args = ap.parse_args()
    deadline = time.time() + 365 * 86400
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = dt.datetime.now(dt.UTC)
        at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if at <= now:  # past midnight: the next day's
            at += dt.timedelta(days=1)
        deadline = at.timestamp()
    steps = args.steps.split(",")
    for label in args.lines:
        run_size(label, "duckdb", steps, deadline, args.timeout, args.keep, args.parquet_first)
        render()
    for label in args.spark:
        spark_steps = ["run-data", *(s for s in args.spark_steps.split(",") if s)]
        run_size(label, "pyspark", spark_steps, deadline, args.timeout, args.keep)
        render()
    render()


if __name__ == "__main__":
    main()
