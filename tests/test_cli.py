"""The segmentum command, run as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write

BIN = [sys.executable, "-m", "segmentum.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BIN, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    for cmd in (
        "ingest",
        "demo-data",
        "run",
        "features",
        "classify",
        "quarantine",
        "batches",
        "settings",
    ):
        assert cmd in out.stdout


def test_bad_input_is_one_line_with_a_hint_and_no_traceback(tmp_path: Path) -> None:
    write(tmp_path / "s.csv", "customer,product\nA1,P1\n")
    out = run("ingest", "transactions", "s.csv", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error: " in out.stderr and "missing required column" in out.stderr
    assert "hint: " in out.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = run("--debug", "ingest", "transactions", "missing.csv", cwd=tmp_path)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_unknown_table_and_bad_setting_have_exit_codes(tmp_path: Path) -> None:
    write(tmp_path / "s.csv", "customer_id,date,amount\nA1,2024-01-01,3\n")
    assert run("ingest", "clients", "s.csv", cwd=tmp_path).returncode == 2
    out = run("ingest", "transactions", "s.csv", "--date-order", "ymd", cwd=tmp_path)
    assert out.returncode == 3 and "date_order" in out.stderr


def test_ingest_json_report_adds_up(tmp_path: Path) -> None:
    write(tmp_path / "s.csv", "customer_id,date,amount\nA1,2024-01-01,3\nA2,2024-01-02,x\n")
    out = run("ingest", "transactions", "s.csv", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [report] = json.loads(out.stdout)
    assert (report["rows_read"], report["accepted"], report["quarantined"], report["balanced"]) == (
        2,
        1,
        1,
        True,
    )
    q = json.loads(run("quarantine", "--json", cwd=tmp_path).stdout)
    assert q[0]["reason"] == "amount is not a number"


def test_demo_and_run_print_a_summary(tmp_path: Path) -> None:
    assert run("demo-data", "--out", "demo", "--customers", "300", cwd=tmp_path).returncode == 0
    out = run("run", "--data", "demo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "ingest summary" in out.stdout
        and "RFM segments" in out.stdout
        and "Value tiers" in out.stdout
    )
    summary = json.loads(run("run", "--json", cwd=tmp_path).stdout)
    assert summary["customers"] > 250
    assert abs(sum(r["revenue_share"] for r in summary["value_tiers"]) - 1) < 1e-9


def test_clv_validate_and_churn_evaluate_run_from_the_command_line(tmp_path: Path) -> None:
    assert run("demo-data", "--out", "demo", "--customers", "600", cwd=tmp_path).returncode == 0
    assert run("run", "--data", "demo", cwd=tmp_path).returncode == 0
    out = run(
        "clv",
        "validate",
        "--calibration-end",
        "2025-06-30",
        "--out",
        "check.html",
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    methods = [e["method"] for e in payload["errors"]]
    assert methods == ["actual", "BG/NBD", "naive (calibration rate)"]
    assert (tmp_path / "check.html").read_text().count("<svg") == 2
    bad = run("clv", "validate", "--calibration-end", "2030-01-01", cwd=tmp_path)
    assert bad.returncode == 2 and "not after the calibration end" in bad.stderr
    churn = run("churn", "evaluate", "--train-as-of", "2025-04-01", "--json", cwd=tmp_path)
    assert churn.returncode == 0, churn.stderr
    assert [m["model"] for m in json.loads(churn.stdout)["metrics"]] == [
        "gradient boosting",
        "BG/NBD",
    ]
