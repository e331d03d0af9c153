"""Benchmark helpers: run each contender in its own process, measure wall time and peak memory.

Each measurement is a fresh process so peak RSS belongs to that contender alone (os.wait4 gives
the child's own maximum resident set size).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data"
DOC = ROOT / "docs" / "benchmarks.md"
PY = sys.executable
PEERS_PY = ROOT / ".venv-peers" / "bin" / "python"


@dataclass
class Result:
    name: str
    seconds: float
    peak_mb: float
    output: str = ""


def measure(name: str, code: str, python: str | Path = PY, repeat: int = 1) -> Result:
    """Run ``code`` in a new Python process; best wall time of ``repeat`` runs and its peak RSS."""
    best: Result | None = None
    for _ in range(repeat):
        with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
            start = time.perf_counter()
            proc = subprocess.Popen([str(python), "-c", code], stdout=fout, stderr=ferr, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
            fout.seek(0)
            ferr.seek(0)
            out, err = fout.read().decode(), ferr.read().decode()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{name} failed:\n{err[-3000:]}")
        # The process reports its own timing of the measured part (setup and imports excluded).
        match = re.search(r"SECONDS=([0-9.]+)", out)
        seconds = float(match.group(1)) if match else elapsed
        r = Result(name, seconds, usage.ru_maxrss / 1024, out)
        if best is None or r.seconds < best.seconds:
            best = r
    assert best is not None
    print(f"  {name:<58} {best.seconds:8.2f} s  {best.peak_mb:8.0f} MB", flush=True)
    return best


def update_doc(section: str, body: str) -> None:
    """Replace the block between the section's markers in docs/benchmarks.md (or append it)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def table(rows: list[Result], baseline: Result, note: str = "ratio to the limit") -> str:
    lines = [f"| contender | time (s) | {note} | peak memory (MB) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.seconds:.2f} | {r.seconds / baseline.seconds:.2f}x | {r.peak_mb:,.0f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    import platform

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def ensure_demo(customers: int) -> dict[str, Path]:
    """Demo data as Parquet for ``customers`` customers (generated once, then reused)."""
    out = DATA / f"demo-{customers}"
    marker = out / "files.json"
    if marker.exists():
        return {k: Path(v) for k, v in json.loads(marker.read_text()).items()}
    # Generated in a process of its own: a child started from this one inherits its peak
    # memory as a starting point, so every later measurement would report the generator's.
    t0 = time.perf_counter()
    code = (
        "import json, sys; from segmentum import demo; "
        f"files = demo.generate({str(out)!r}, customers={customers}, fmt='parquet', "
        "chunk=100_000); print(json.dumps({k: str(v) for k, v in files.items()}))"
    )
    done = subprocess.run([str(PY), "-c", code], check=True, capture_output=True, text=True)
    files = {k: Path(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    print(f"  generated demo data for {customers:,} customers in {time.perf_counter() - t0:.1f} s")
    marker.write_text(json.dumps({k: str(v) for k, v in files.items()}))
    return files
