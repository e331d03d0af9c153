"""The segmentum command, run as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import write

from segmentum.cli import main

BIN = [sys.executable, "-m", "segmentum.cli"]


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BIN, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, **env},
    )


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
    # The same summary in Spanish: headings, labels and numbers (12,3 %, 1.234,56).
    es = run("run", "--data", "demo", "--lang", "es", cwd=tmp_path)
    assert es.returncode == 0, es.stderr
    text = " ".join(es.stdout.split())  # rich wraps long lines at the terminal's width
    for words in ("clientes, ingresos", "Segmentos RFM", "Niveles de valor", "% clientes"):
        assert words in text, words
    for words in ("customers, revenue", "RFM segments", "Value tiers", "% customers", "warning:"):
        assert words not in text, words
    assert re.search(r"\b\d{1,3},\d %", text) and re.search(r"\d\.\d{3},\d{2}\b", text), text
    # Model parameters in the language's digits, never "2.74e+05"; the market's dimensions
    # and white-space cells in words, not column names and stored codes.
    assert not re.search(r"\de[+-]\d", text) and re.search(r"modelos: \S+ r=\d+,\d", text), text
    assert "celdas por país, región" in text and "age_band" not in text, text
    assert re.search(r"espacio en blanco n\.º 1: [^:]*· (mujer|hombre)", text), text
    # Its progress lines name the steps in Spanish too (the run log keeps the English names).
    steps = " ".join(es.stderr.split())
    for words in ("· variables de cliente", "· clasificaciones", "· publicar modelos de lectura"):
        assert words in steps, steps
    for words in ("· features", "· classes", "· publish read models", "· contact times"):
        assert words not in steps, steps
    # `run --json`, `clv validate --json` and `churn evaluate --json` are checked, content
    # included, in test_every_json_output_is_valid_json_on_a_narrow_terminal.


def test_the_spanish_run_summary_gives_its_warnings_in_spanish(tmp_path: Path) -> None:
    # Real-export shape: float ids in the sales, a CRM that writes its ids with a prefix.
    data = tmp_path / "exports"
    data.mkdir()
    lines = "".join(
        f"{17850 + i % 4}.0,2024-0{1 + i % 6}-{10 + i % 9}T10:00:00+01:00,{5 + i}\n"
        for i in range(24)
    )
    write(data / "ventas.csv", "Customer ID,InvoiceDate,Amount\n" + lines)
    write(data / "clientes.csv", "id_cliente,pais\nC-17850,ES\nC-17851,MX\n")
    # A file whose name the run does not read: said, not skipped silently.
    write(data / "notas_2024-07.csv", "Customer ID,InvoiceDate,Amount\n" + lines)
    out = run("run", "--data", "exports", "--lang", "es", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "aviso: solo 0 de 4 compradores tienen ficha de cliente" in text, text
    assert "warning:" not in text and "buyers have a customer record" not in text, text
    assert "archivos no cargados" in text and "notas_2024-07.csv" in text, text
    # A folder that is not there is an error (the run went on without loading anything).
    missing = run("run", "--data", "exportz", cwd=tmp_path)
    assert missing.returncode == 2 and "exportz: no such folder" in missing.stderr, missing


def test_hostile_headers_values_and_file_names_print_as_written(tmp_path: Path) -> None:
    # Rich reads [tags] in text: a header, value or file name with "[/...]" used to end the
    # ingest report and `segmentum quarantine` with a MarkupError traceback.
    name = "ventas [b].csv"  # a file name cannot hold "/": an opening tag, read as bold
    write(
        tmp_path / name,
        "customer_id,date,amount,[/red]nota\nA1,2024-01-01,3,x\nA2,2024-01-02,[/bold]7,y\n",
    )
    out = run("ingest", "transactions", name, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "ventas [b].csv" in text and "[/red]nota" in text, text
    # The same file again, in Spanish: skipped, and said so with its name as written.
    again = run("ingest", "transactions", name, "--lang", "es", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "ventas [b].csv: este contenido ya se cargó" in " ".join(again.stdout.split())
    rows = run("quarantine", "--rows", cwd=tmp_path)
    assert rows.returncode == 0, rows.stderr
    assert "[/bold]7" in rows.stdout and "Traceback" not in rows.stderr
    summary = run("quarantine", cwd=tmp_path)
    assert summary.returncode == 0 and "[/bold]7" in summary.stdout, summary.stderr
    # In Spanish: the tables and the reasons.
    es = run("quarantine", "--lang", "es", cwd=tmp_path)
    assert es.returncode == 0, es.stderr
    text = " ".join(es.stdout.split())
    assert "cuarentena: 1 fila por motivo" in text and "amount no es un número" in text, text
    es_rows = run("quarantine", "--rows", "--lang", "es", cwd=tmp_path)
    assert "amount no es un número" in " ".join(es_rows.stdout.split()), es_rows.stdout


def test_the_language_setting_and_lang_give_error_lines_and_tables_in_spanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGMENTUM_LANGUAGE", raising=False)
    # English by default: the error and what to do.
    assert main(["run", "--data", "nope"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: nope: no such folder hint: give the folder your exports are in" in err, err
    # --lang es: the same lines in Spanish.
    assert main(["run", "--data", "nope", "--lang", "es"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: nope: no existe esa carpeta sugerencia: indica la carpeta" in err, err
    # The language setting: every command's error lines, and the tables of those with --lang.
    monkeypatch.setenv("SEGMENTUM_LANGUAGE", "es")
    assert main(["ingest", "transactions", "nada.csv"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "nada.csv: no existe ese archivo sugerencia: revisa la ruta" in err, err
    write(tmp_path / "ventas.csv", "customer_id,date,amount\nA1,2024-01-01,3\nA2,2024-01-02,x\n")
    assert main(["ingest", "transactions", "ventas.csv"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "leídas = aceptadas + en cuarentena" in out and "rows read" not in out, out
    assert main(["ingest", "transactions", "ventas.csv", "--lang", "en"]) == 0  # --lang wins
    assert "already loaded" in " ".join(capsys.readouterr().out.split())
    # A setting that is not a language is said in English, with the setting named.
    monkeypatch.setenv("SEGMENTUM_LANGUAGE", "fr")
    assert main(["batches"]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "error: setting language='fr' is not allowed hint: use one of en, es" in err, err


# ---------------------------------------------------------------------------- the contract


def _commands() -> list[tuple[list[str], Any]]:
    """Every leaf command of the Typer app with its path (a new command is covered as added)."""
    import typer

    from segmentum.cli import app

    def walk(cmd: Any, path: list[str]) -> Any:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    return list(walk(typer.main.get_command(app), []))


def _filled(cmd: Any) -> list[str]:
    """Placeholder values for a command's required arguments and options."""
    args: list[str] = []
    for p in cmd.params:
        if p.required:
            args += ["x"] if p.param_type_name == "argument" else [p.opts[0], "x"]
    return args


def _assert_usage_error(code: int, out: str, err: str, *expected: str) -> None:
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: usage: segmentum")
    for text in expected:
        assert text in lines[0], err


BAD_ARGUMENTS = [pytest.param(path, cmd, id=" ".join(path)) for path, cmd in _commands() if path]


@pytest.mark.parametrize(("path", "cmd"), BAD_ARGUMENTS)
def test_every_command_answers_bad_arguments_with_one_line_and_exit_2(
    path: list[str],
    cmd: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be created where the tests run
    code = main([*path, *_filled(cmd), "--no-such-option"])
    _assert_usage_error(code, *capsys.readouterr(), "--no-such-option")
    required = [p for p in cmd.params if p.required]
    if required:
        code = main(path)
        _assert_usage_error(code, *capsys.readouterr(), "missing")
    for p in cmd.params:
        if p.param_type_name == "option" and p.bare_type() in (int, float):
            code = main([*path, *_filled(cmd), p.opts[0], "not-a-number"])
            _assert_usage_error(code, *capsys.readouterr(), p.opts[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["nope"], ["segment"], ["segment", "nope"], ["--nope"]])
def test_unknown_commands_and_missing_subcommands_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _assert_usage_error(main(args), *capsys.readouterr())


def test_a_usage_error_in_a_real_process_is_two_lines_and_exit_2(tmp_path: Path) -> None:
    out = run("segment", "micro", "--min-size", "many", cwd=tmp_path)
    _assert_usage_error(out.returncode, out.stdout, out.stderr, "--min-size")


def test_an_unexpected_error_exits_70_and_writes_the_traceback_to_a_log(tmp_path: Path) -> None:
    # A command with a bug, added to the real app in a real process.
    program = (
        "import sys\n"
        "from segmentum import cli\n"
        "@cli.app.command('boom')\n"
        "def boom() -> None:\n"
        "    {}['missing']\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "SEGMENTUM_ERROR_LOG_DIR": str(tmp_path / "logs")}
    out = subprocess.run(
        [sys.executable, "-c", program, "boom"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 70 and "Traceback" not in out.stderr
    assert "unexpected error (KeyError)" in out.stderr
    [log] = (tmp_path / "logs").iterdir()
    assert str(log) in out.stderr
    assert "Traceback" in log.read_text() and "KeyError: 'missing'" in log.read_text()
    debug = subprocess.run(
        [sys.executable, "-c", program, "boom", "--debug"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_warehouse_held_by_another_process_is_exit_4_busy(tmp_path: Path) -> None:
    import segmentum

    path = tmp_path / "w.duckdb"
    holder = segmentum.connect(f"duckdb:///{path}")  # as segmentum serve would hold it
    try:
        # Wait one second for the lock, not the default (the wait is what makes it slow).
        out = run(
            "batches", "-w", f"duckdb:///{path}", cwd=tmp_path, SEGMENTUM_LOCK_WAIT_SECONDS="1"
        )
    finally:
        holder.close()
    assert out.returncode == 4 and "Traceback" not in out.stderr
    assert "is busy: segmentum serve or another command has it open" in out.stderr
    assert run("settings", cwd=tmp_path).returncode == 0


def test_an_unreachable_postgres_warehouse_is_said_in_the_users_language_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://ana:s3cret@127.0.0.1:{port}/shop"
    monkeypatch.setenv("SEGMENTUM_LANGUAGE", "es")
    assert main(["batches", "-w", url]) == 4
    err = " ".join(capsys.readouterr().err.split())
    said = f"no se puede conectar con el almacén PostgreSQL postgresql://ana:***@127.0.0.1:{port}"
    assert said in err, err
    assert "comprueba el host, el puerto y la base de datos de la URL del almacén" in err, err
    assert "s3cret" not in err and "DuckDB" not in err and "Traceback" not in err, err
    monkeypatch.setenv("SEGMENTUM_LANGUAGE", "en")
    assert main(["batches", "-w", url]) == 4
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot reach the PostgreSQL warehouse postgresql://ana:***@127.0.0.1:{port}" in err
    assert "check the host, port and database in the warehouse URL" in err, err
    assert "s3cret" not in err and "DuckDB" not in err, err


@pytest.mark.postgres
def test_a_refused_postgres_login_says_to_check_the_user_and_password(
    postgres_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_server.replace("postgres://segmentum@", "postgresql://nobody:s3cret@")
    assert main(["batches", "-w", f"{url}/postgres", "--lang", "es"]) == 4
    err = " ".join(capsys.readouterr().err.split())
    assert "el almacén PostgreSQL postgresql://nobody:***@127.0.0.1" in err, err
    assert "rechazó el inicio de sesión" in err and 'role "nobody" does not exist' in err, err
    assert "comprueba el usuario y la contraseña de la URL del almacén" in err, err
    assert "s3cret" not in err, err


def test_the_exit_code_table_in_the_docs_is_the_one_in_the_code() -> None:
    from tests.conftest import ROOT

    from segmentum.errors import DeliveryError, ExitCode, PartialFailure, WarehouseBusyError

    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| `{code.value}` \|", doc, re.M), code
    assert DeliveryError("x").exit_code == 5 and PartialFailure("x").exit_code == 1
    assert WarehouseBusyError("x").exit_code == 4


# ---------------------------------------------------------------------------- --json

# Arguments for the --json commands that need some; a new one fails below until it is added.
JSON_ARGS: dict[str, list[str]] = {
    "ingest": ["products", "{demo}/products.csv"],
    "clv validate": ["--calibration-end", "2025-06-30", "--out", "{tmp}/clv.html"],
    "churn evaluate": ["--train-as-of", "2025-04-01"],
    "segment show": ["big"],
    "segment preview": ["frequency >= 2 and value_tier == 'hihg'"],
    "segment profile": ["big"],
    "history migration": ["--from", "{first}", "--to", "{last}"],
    "history backfill": ["--periods", "2"],
    "campaign create": ["json_test", "--tactic", "acquisition", "--channel", "file"],
    "campaign audience": ["winback_test"],
    "campaign send": ["winback_test", "--dry-run"],
    "campaign results": ["winback_test"],
    "satisfaction terms": ["promo_hunters"],
    "audience export": ["big", "--format", "meta", "--out", "{tmp}/big-meta.csv"],
    "audience retarget": ["--carted", "--days", "30", "--out", "{tmp}/rt.csv"],
    "audience seed": ["--top", "20", "--out", "{tmp}/seed.csv"],
    "events track": ["{tmp}/events.jsonl"],
    "flow show": ["welcome_test"],
    "flow results": ["welcome_test"],
    "flow path": ["{customer}"],
    "forget": ["{customer}"],
    "segment subscribe": ["big", "https://crm.example.com/json-hook"],
    "backup": ["{tmp}/backup"],
    "restore": ["{tmp}/backup", "--replace"],
}
# Run first (others read what they write) or last (it deletes a customer).
# Commands whose data the (non-B2B) demo lacks: a clean user error, no output, is right there.
JSON_WITHOUT_DATA = {"segment lookalike"}  # no prospects to score
JSON_FIRST = ["history backfill", "backup"]
# After every command that could run the pipeline (it would deliver to the subscriptions).
JSON_LAST = ["segment subscribe", "segment webhooks", "restore", "forget"]


@pytest.fixture(scope="module")
def json_db(service_db: Path) -> tuple[Path, Path]:
    """The demo warehouse the service tests share, and its demo files."""
    return service_db, service_db.parent / "demo"


def test_every_json_output_is_valid_json_on_a_narrow_terminal(
    json_db: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    from rich.console import Console

    import segmentum
    from segmentum import cli
    from segmentum.history.snapshots import snapshot_dates

    db = tmp_path / "w.duckdb"
    shutil.copy(json_db[0], db)
    url = f"duckdb:///{db}"
    monkeypatch.chdir(tmp_path)
    # A terminal 40 columns wide: anything printed through the console would wrap.
    monkeypatch.setattr(cli, "console", Console(width=40, force_terminal=True))
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("SEGMENTUM_EXPORT_PERSONAL_DATA", "true")  # audience export needs it
    assert main(["segment", "create", "big", "monetary > 100", "-w", url]) == 0
    assert (
        main(
            [
                "campaign",
                "create",
                "winback_test",
                "--tactic",
                "winback",
                "--channel",
                "file",
                "-w",
                url,
            ]
        )
        == 0
    )
    assert main(["flow", "new", "welcome_test", "--from", "welcome", "-w", url]) == 0
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"anonymous_id": "v-1", "event_type": "page_view"}) + "\n", encoding="utf-8"
    )
    capsys.readouterr()

    commands = [
        " ".join(path) for path, cmd in _commands() if any("--json" in p.opts for p in cmd.params)
    ]
    by_name = {" ".join(path): cmd for path, cmd in _commands()}
    missing = [
        c for c in commands if any(p.required for p in by_name[c].params) and c not in JSON_ARGS
    ]
    assert not missing, f"add arguments for {missing} to JSON_ARGS"
    order = [*JSON_FIRST, *[c for c in commands if c not in JSON_FIRST + JSON_LAST], *JSON_LAST]
    values: dict[str, str] = {"demo": str(json_db[1]), "tmp": str(tmp_path)}
    with segmentum.connect(url) as wh:
        values["customer"] = str(wh.table("customers").customer_id.min().execute())
    for name in order:
        if name not in commands:
            continue
        if name == "history migration":
            with segmentum.connect(url) as wh:
                dates = snapshot_dates(wh)
            values.update(first=dates[0].isoformat(), last=dates[-1].isoformat())
        if name == "segment webhooks":  # one to list (no run follows that would deliver to it)
            hook = ["segment", "subscribe", "big", "https://crm.example.com/hook", "-w", url]
            assert main(hook) == 0
            capsys.readouterr()
        args = [a.format(**values) for a in JSON_ARGS.get(name, [])]
        where = ["-w", url] if any("--warehouse" in p.opts for p in by_name[name].params) else []
        code = main([*name.split(), *args, "--json", *where])
        out, err = capsys.readouterr()
        if name in JSON_WITHOUT_DATA and code == 2:
            assert out == "" and err.startswith("error: ") and "hint: " in err, name
            continue
        assert code == 0, f"{name}: {err}"
        try:
            json.loads(out)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"segmentum {name} --json is not JSON: {exc}\n{out[:400]}"
            ) from exc
        assert "NaN" not in out and "Infinity" not in out, name
        if name in JSON_CONTENT:
            JSON_CONTENT[name](json.loads(out), tmp_path)
    # A holdout that starts after the last sale is a user error, said in one line.
    assert main(["clv", "validate", "--calibration-end", "2030-01-01", "-w", url]) == 2
    assert "not after the calibration end" in capsys.readouterr().err


def _run_summary(summary: dict[str, Any], _: Path) -> None:
    assert summary["customers"] > 250
    assert abs(sum(r["revenue_share"] for r in summary["value_tiers"]) - 1) < 1e-9


def _clv_validation(payload: dict[str, Any], tmp: Path) -> None:
    methods = [e["method"] for e in payload["errors"]]
    assert methods == ["actual", "BG/NBD", "MBG/NBD", "Pareto/NBD", "naive (calibration rate)"]
    assert payload["model"] in methods and "the naive baseline" in payload["verdict"]
    assert (tmp / "clv.html").read_text().count("<svg") == 2


def _churn_evaluation(payload: dict[str, Any], _: Path) -> None:
    # The demo has survey answers: the model with satisfaction is evaluated beside the others.
    assert [m["model"] for m in payload["metrics"]] == [
        "gradient boosting",
        "gradient boosting + satisfaction",
        "BG/NBD",
    ]


def _created_campaign(payload: dict[str, Any], _: Path) -> None:
    # The demo has scored no prospects: the acquisition campaign is saved and says it waits.
    assert payload["name"] == "json_test" and payload["tactic"] == "acquisition"
    assert payload["needs"] == "prospect_scores" and payload["template"]


def _subscribed(payload: dict[str, Any], _: Path) -> None:
    assert payload["segment"] == "big" and payload["url"] == "https://crm.example.com/json-hook"
    assert payload["subscription_id"] and len(payload["secret"]) >= 32  # shown this once


def _webhooks(payload: list[dict[str, Any]], _: Path) -> None:
    assert [h["url"] for h in payload] == [
        "https://crm.example.com/json-hook",
        "https://crm.example.com/hook",
    ]
    assert all(h["segment"] == "big" and "secret" not in h for h in payload)  # never listed


# What some --json outputs must say, beyond being JSON.
JSON_CONTENT: dict[str, Any] = {
    "run": _run_summary,
    "clv validate": _clv_validation,
    "churn evaluate": _churn_evaluation,
    "campaign create": _created_campaign,
    "segment subscribe": _subscribed,
    "segment webhooks": _webhooks,
}


def test_micro_segments_json_in_a_real_40_column_terminal(
    json_db: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    shutil.copy(json_db[0], tmp_path / "w.duckdb")
    env = {**os.environ, "COLUMNS": "40"}
    out = subprocess.run(
        [*BIN, "segment", "micro", "--json", "-w", f"duckdb:///{tmp_path / 'w.duckdb'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert tree["dimensions"] and all("\n" not in str(v) for v in tree.values())


def test_amounts_have_their_currency_when_known_and_no_negative_zero() -> None:
    from segmentum import cli

    assert cli._amount(1234.5, "EUR") == "1,234.50 EUR"
    assert cli._amount(1234.5, "") == "1,234.50"  # no currency in the data: no dangling space
    assert cli._amount(-0.001, "") == "0.00"  # returns that cancel the purchases exactly
    assert cli._money(-12.5) == "-12.50"


# ------------------------------------------------------------------ tables in the language


@pytest.fixture
def spanish(
    json_db: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Runs a command on a copy of the demo warehouse; returns what it printed, one line."""
    import shutil

    from rich.console import Console

    from segmentum import cli

    shutil.copy(json_db[0], tmp_path / "w.duckdb")
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGMENTUM_LANGUAGE", raising=False)
    # Wide enough that no cell wraps: the texts are checked whole.
    monkeypatch.setattr(cli, "console", Console(width=400, force_terminal=False))
    capsys.readouterr()

    def run(*args: str) -> str:
        assert main([*args, "-w", url]) == 0, capsys.readouterr().err
        out, err = capsys.readouterr()
        text = " ".join((out + err).split())
        for word in ("nan", "None", "NaT"):
            assert not re.search(rf"\b{word}\b", text), (args, word, text)
        return text

    return run


SPANISH_MONEY = r"\d{1,3}(\.\d{3})+,\d{2}\b"  # 791.137,61
SPANISH_SHARE = r"\d+,\d %"  # 76,4 % (the no-break space is a space once split)


def test_segment_commands_and_classify_print_in_spanish(spanish: Any) -> None:
    listed = spanish("segment", "list", "--lang", "es")
    assert "segmentos" in listed and "nombre" in listed and "descripción" in listed, listed
    assert "│ cliente │" in listed and "│ customer │" not in listed, listed
    for english in ("┃ name", "level", "description"):
        assert english not in listed, english
    for show in (
        spanish("segment", "show", "vip", "--lang", "es"),
        spanish("segment", "preview", "value_tier == 'high'", "--lang", "es"),
    ):
        assert "(a fecha de 1 ene 2026)" in show and "clientes" in show, show
        assert re.search(r"\d+ de \d+ \(" + SPANISH_SHARE + r"\)", show), show
        assert re.search(SPANISH_MONEY, show) and "alcance por canal" in show, show
        assert "correo electrónico" in show and "sin consentimiento" in show, show
        assert "p. ej." in show, show
        for english in ("as of", "revenue", "identified", "reach by channel", "e.g.", "│ email"):
            assert english not in show, english
    # A rule's warning too.
    typo = spanish("segment", "preview", "value_tier == 'hihg'", "--lang", "es")
    assert "aviso: ningún cliente tiene value_tier = 'hihg'" in typo, typo
    assert "(posición 15)" in typo, typo
    classes = spanish("classify", "--lang", "es")
    assert "Segmentos RFM a fecha de" in classes and "Niveles de valor" in classes, classes
    assert "Campeones" in classes and "│ alto" in classes and "% ingresos" in classes, classes
    assert re.search(SPANISH_MONEY, classes) and re.search(SPANISH_SHARE, classes), classes
    for english in ("RFM segments", "Value tiers", "Champions", "% revenue", "│ high"):
        assert english not in classes, english
    # English stays the default.
    assert "reach by channel" in spanish("segment", "show", "vip")


def test_satisfaction_tables_print_in_spanish(spanish: Any) -> None:
    summary = spanish("satisfaction", "summary", "--lang", "es")
    assert "satisfacción por grupo" in summary and "respondieron" in summary, summary
    assert "Niveles de valor" in summary and "Segmentos RFM" in summary, summary
    assert "│ alto │" in summary and "Campeones" in summary and "Todos los clientes" in summary
    assert re.search(r"-?\d+,\d \(de -?\d+ a -?\d+\)", summary), summary  # 7,5 (de -3 a 18)
    assert re.search(r"\d+ \(" + SPANISH_SHARE + r"\)", summary), summary
    for english in ("per group", "answered", "vs rest", "value_tier", "│ high", " to ", "│ all"):
        assert english not in summary, english
    trend = spanish("satisfaction", "trend", "--lang", "es")
    assert "NPS por niveles de valor en cada foto" in trend and "respuestas" in trend, trend
    assert "1 ene 2026" in trend and "│ alto │" in trend, trend
    for english in ("snapshot", "answers", "2026-01-01", "│ high", " to "):
        assert english not in trend, english


def test_market_tables_print_in_spanish(spanish: Any) -> None:
    places = spanish("market", "penetration", "--lang", "es")
    assert "penetración por región" in places and "población" in places, places
    assert re.search(r"\d+,\d{3} % \(\d+,\d{3} %–\d+,\d{3} %\)", places), places  # 0,327 %
    cells = spanish("market", "penetration", "--cells", "--lang", "es")
    assert "penetración por celda" in cells and re.search(r"· (hombre|mujer) │", cells), cells
    space = spanish("market", "white-space", "--lang", "es")
    assert "espacio en blanco" in space and "similitud" in space and "puntuación" in space
    assert re.search(r"\d+,\d{2} │ 0,\d{2} │", space) and "· hombre" in space, space
    for text in (places, cells, space):
        for english in ("penetration", "population", "customers", "index", "male", "rank"):
            assert english not in text, english


def test_segment_profiles_micro_geo_and_discover_print_in_spanish(spanish: Any) -> None:
    geo = spanish("segment", "geo", "--lang", "es")
    assert "geografía" in geo and "lugar" in geo and "CLV medio" in geo, geo
    assert re.search(SPANISH_MONEY, geo), geo
    micro = spanish("segment", "micro", "--lang", "es")
    assert "microsegmentos (nivel de valor > región" in micro and "perfil tipo" in micro, micro
    assert "todos los clientes" in micro and "│ alto " in micro and "género: " in micro, micro
    assert re.search(SPANISH_MONEY, micro), micro
    profile = spanish("segment", "profile", "--by", "value_tier", "--lang", "es")
    assert "alto " in profile and "clientes (" in profile, profile
    assert "el árbol de reglas (profundidad 3)" in profile and "segmento medium" not in profile
    found = spanish("segment", "discover", "--k", "3", "--sample", "500", "--lang", "es")
    assert "puntuaciones por número de grupos" in found and "silueta" in found, found
    assert "k elegido = 3" in found and "ajustado con" in found, found
    for text in (geo, micro, profile, found):
        for english in ("customers", "revenue", "avg CLV", "persona", "rule tree", "age band"):
            assert english not in text, english
        assert "│ high" not in text and "geography" not in text and "silhouette" not in text


def test_the_model_and_data_commands_in_spanish(
    json_db: tuple[Path, Path],
    copy_of: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """features, clv validate, churn evaluate and batches with --lang es: titles, headers,
    model names, the verdict and its reason in Spanish; counts and dates as Spanish writes
    them; no English headers left, no nan/None/NaT."""
    import re

    wh = copy_of(json_db[0])
    url = wh.url
    wh.close()
    es = ["--lang", "es", "-w", url]
    assert main(["features", *es]) == 0
    assert (
        main(
            [
                "clv",
                "validate",
                "--calibration-end",
                "2025-06-30",
                "--out",
                str(tmp_path / "v.html"),
                *es,
            ]
        )
        == 0
    )
    assert main(["churn", "evaluate", "--train-as-of", "2025-04-01", *es]) == 0
    assert main(["batches", *es]) == 0
    out = capsys.readouterr().out
    for spanish in (
        "clientes, ingresos",
        "compradores recurrentes",
        "Modelos de compra ajustados hasta el",
        "ingenuo",
        "fuga = sin compra en 90 días",
        "fuga media",
        "lotes de carga",
        "ventas",
    ):
        assert spanish in out, spanish
    for english in (
        "repeat buyers",
        "Purchase models",
        "holdout purchases",
        "naive",
        "churned",
        "mean predicted",
        "ingest batches",
        "quarantined",
    ):
        assert english not in out, english
    assert not re.search(r"\b(nan|None|NaT)\b", out)


def test_clv_validate_writes_its_page_in_the_language(spanish: Any, tmp_path: Path) -> None:
    """The HTML page of clv validate: titles, chart legends, table headings, dates and numbers
    in Spanish with --lang es; English by default."""
    args = ["clv", "validate", "--calibration-end", "2025-07-01"]
    spanish(*args, "--out", str(tmp_path / "es.html"), "--lang", "es")
    page = (tmp_path / "es.html").read_text(encoding="utf-8")
    text = " ".join(re.sub(r"<style>.*?</style>|<[^>]+>", " ", page).split())
    assert "<html lang='es'>" in page and "Comprobación del modelo de compra" in text, text
    assert "validación del CLV" in text and "Semana a semana" in text and "Errores" in text
    assert re.search(r"datos anteriores al 2 jul 2025; validación hasta el \d+ \w+ \d{4}", text)
    assert re.search(r"Parámetros: r = \d+,\d+", text) and "semana: de 1 a" in text, text
    assert "ingenuo (ritmo de calibración)" in text and re.search(SPANISH_SHARE, text), text
    for english in (
        "Purchase model",
        "fitted on",
        "holdout",
        "Week by week",
        "predicted",
        "actual",
        "naive",
        "-predicts",
        "chosen",
        "max ",
    ):
        assert english not in text, english
    spanish(*args, "--out", str(tmp_path / "en.html"))
    english_page = (tmp_path / "en.html").read_text(encoding="utf-8")
    assert "Purchase model check" in english_page and "Week by week" in english_page


def test_satisfaction_and_market_commands_in_spanish(spanish: Any) -> None:
    """satisfaction compute, terms and detractors and market compute with --lang es."""
    computed = spanish("satisfaction", "compute", "--lang", "es")
    assert re.search(r"respuestas de [\d.]+ clientes a \d+ \w+ \d{4}", computed), computed
    assert "del resto" in computed and "answers" not in computed, computed
    terms = spanish("satisfaction", "terms", "promo_hunters", "--lang", "es")
    assert "dicen más que el resto" in terms or "ningún término" in terms, terms
    assert "say more" not in terms and "times in rest" not in terms, terms
    detractors = spanish("satisfaction", "detractors", "--top", "5", "--lang", "es")
    assert "detractores valiosos (los 5 primeros)" in detractors, detractors
    assert re.search(r"detractor \(NPS \d+ el \d+ \w+ \d{4}\), CLV [\d.]+ \(valor", detractors)
    assert " value)" not in detractors and " on 20" not in detractors, detractors
    market = spanish("market", "compute", "--lang", "es")
    assert "celdas por" in market and "clientes ubicados" in market, market
    assert "penetración global" in market and "cells by" not in market, market


def test_operations_commands_in_spanish(spanish: Any, tmp_path: Path) -> None:
    """doctor, backup and restore, API keys, the live segments' status and event tracking
    with --lang es."""
    doctor = spanish("doctor", "--lang", "es")
    assert "revisión:" in doctor and "lo encontrado" in doctor and "bien" in doctor, doctor
    assert "what was found" not in doctor, doctor
    saved = spanish("backup", str(tmp_path / "copia"), "--lang", "es")
    assert re.search(r"copiadas \d+ tablas \([\d.]+ filas\) en", saved), saved
    back = spanish("restore", str(tmp_path / "copia"), "--replace", "--lang", "es")
    assert re.search(r"restauradas \d+ tablas \([\d.]+ filas\) en", back), back
    made = spanish("api-key", "create", "--name", "equipo", "--scope", "read,track", "--lang", "es")
    assert "se muestra una sola vez" in made, made
    keys = spanish("api-key", "list", "--lang", "es")
    assert "permisos" in keys and "lectura" in keys and "equipo" in keys, keys
    key_id = made.split()[0].split("_")[1]
    assert f"{key_id} revocada" in spanish("api-key", "revoke", key_id, "--lang", "es")
    (tmp_path / "eventos.jsonl").write_text(
        json.dumps({"anonymous_id": "v-9", "event_type": "page_view"}) + "\n", encoding="utf-8"
    )
    tracked = spanish("events", "track", str(tmp_path / "eventos.jsonl"), "--lang", "es")
    assert "eventos leídos: 1 registrados" in tracked, tracked
    status = spanish("realtime", "status", "--lang", "es")
    assert "en vivo" in status and "eventos: " in status and "por enviar" in status, status
    for text in (doctor, saved, back, keys, tracked, status):
        for english in ("backed up", "restored", "scopes", "events read", "to send", "live "):
            assert english not in text, (english, text)


def test_demo_data_and_schedule_in_spanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    from segmentum import cli

    monkeypatch.setattr(cli, "console", Console(width=200, force_terminal=False))
    out = tmp_path / "demo"
    assert main(["demo-data", "--out", str(out), "--customers", "60", "--lang", "es"]) == 0
    made = capsys.readouterr().out
    assert "datos de demostración en" in made and "tamaño" in made and "ventas" in made, made
    assert re.search(r"\d+,\d MB", made) and "demo data in" not in made, made
    assert "respuestas verdaderas" in made and "ground truth" not in made, made
    args = ["schedule", "--data", str(out), "--format", "cron", "-w", "duckdb:///w.duckdb"]
    assert main([*args, "--lang", "es"]) == 0
    cron = capsys.readouterr().out
    assert "# añade --install para escribir la entrada de crontab" in cron, cron
    assert "add --install" not in cron, cron


def test_settings_list_in_spanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every setting's help is a catalog entry: segmentum settings --lang es reads in Spanish."""
    from rich.console import Console

    from segmentum import cli, i18n
    from segmentum.config import SETTINGS

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGMENTUM_LANGUAGE", raising=False)
    monkeypatch.setattr(cli, "console", Console(width=1000, force_terminal=False))
    assert main(["settings", "--lang", "es"]) == 0
    out = capsys.readouterr().out
    assert "ajustes" in out and "valor" in out and "Dónde están los datos" in out, out[:500]
    english = [s.name for s in SETTINGS if s.help in out]
    assert not english, f"still English: {english}"
    # Values as segmentum.toml writes them, not Python's True or tuples.
    assert " true " in out and "[12.0, 8.0]" in out and "True" not in out and "(12.0" not in out
    # --json too: the help of every setting in the language asked for, English by default.
    assert main(["settings", "--json", "--lang", "es"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [s.name for s in SETTINGS]
    still = [s.name for s, r in zip(SETTINGS, rows, strict=True) if r["help"] == s.help]
    assert not still, f"still English in --json: {still}"
    assert rows[0]["help"] == i18n.translations("es").upgettext("setting", SETTINGS[0].help)
    assert main(["settings", "--json"]) == 0
    assert [r["help"] for r in json.loads(capsys.readouterr().out)] == [s.help for s in SETTINGS]


# ------------------------------------------------------------------ user errors in the language

# Words of an English message; a Spanish line has none once commands, options, paths and
# quoted values (which stay as typed) are taken out.
_ENGLISH = re.compile(
    r"\b(the|is|are|there|has|have|not|must|cannot|yet|first|them|with|of|and|or|to|was|"
    r"hint|found|unknown|missing|invalid|see|usage|such|give|load|run|got|please)\b"
)


def _english_in(line: str) -> list[str]:
    text = re.sub(r"'[^']*'|\"[^\"]*\"", " ", line)
    text = re.sub(r"segmentum(?: [a-z][\w-]*)+(?: [A-Z]+)?", " ", text)  # a command to paste
    text = re.sub(r"--[\w-]+|\S*[/:=_.<>]\S*", " ", text)  # options, paths, URLs, settings
    return _ENGLISH.findall(text)


@dataclass
class SpanishErrors:
    """A copy of the demo warehouse (``full``), one with nothing in it (``empty``), and
    ``said``: a command run with --lang es that must fail as a user error, its error line."""

    full: str
    empty: str
    said: Any


@pytest.fixture
def spanish_errors(
    json_db: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> SpanishErrors:
    import shutil

    import segmentum

    shutil.copy(json_db[0], tmp_path / "w.duckdb")
    segmentum.connect(f"duckdb:///{tmp_path / 'vacio.duckdb'}").close()  # there, and empty
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGMENTUM_LANGUAGE", raising=False)
    monkeypatch.setenv("SEGMENTUM_ERROR_LOG_DIR", str(tmp_path / "logs"))
    capsys.readouterr()

    def said(*args: str) -> str:
        got = main([*args, "--lang", "es"])
        line = " ".join(capsys.readouterr().err.split())
        line = line[line.find("error: ") :]  # after any progress lines
        assert got in (2, 3, 4), (args, got, line)  # a usage, setting or warehouse error
        assert line.startswith("error: ") and not _english_in(line), (args, line)
        return line

    return SpanishErrors(
        f"duckdb:///{tmp_path / 'w.duckdb'}", f"duckdb:///{tmp_path / 'vacio.duckdb'}", said
    )


def test_user_errors_of_segment_history_market_satisfaction_audience_and_restore_in_spanish(
    spanish_errors: SpanishErrors,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The mistakes a user makes with these commands (a name that is not there, data not
    loaded yet, a bad value, a folder that is no backup) read in Spanish with --lang es: the
    error and what to do, the values as typed."""
    import segmentum

    full, empty, said = spanish_errors.full, spanish_errors.empty, spanish_errors.said
    dates = ["--from", "2020-01-01", "--to", "2020-06-01"]
    # A name that is not there, and a mistyped one.
    assert "no hay ningún segmento llamado 'nope' sugerencia: consulta la lista" in said(
        "segment", "show", "nope", "-w", full
    )
    assert "sugerencia: ¿querías decir vip?" in said("segment", "show", "vipp", "-w", full)
    # Data not loaded or computed yet.
    for args in (
        ["segment", "show", "vip"],
        ["segment", "lookalike"],
        ["history", "migration", *dates, "--by", "cluster"],
        ["market", "compute"],
        ["market", "penetration"],
        ["market", "white-space"],
        ["market", "export"],
        ["satisfaction", "compute"],
        ["satisfaction", "summary"],
        ["satisfaction", "trend"],
        ["satisfaction", "terms", "high"],
        ["satisfaction", "detractors"],
        ["audience", "seed", "--top", "10"],
    ):
        said(*args, "-w", empty)
    assert said("market", "compute", "-w", empty) == (
        "error: aún no hay población de referencia sugerencia: carga una: segmentum ingest "
        "population ARCHIVO (consulta docs/market.md)"
    )
    # Bad arguments.
    assert "no hay foto del 1 ene 2020: la más cercana es del " in said(
        "history", "migration", *dates, "--by", "cluster", "-w", full
    )
    said("history", "migration", "--from", "2020-06-01", "--to", "2020-01-01", "-w", full)
    assert "--from 'ayer' no es una fecha" in said(
        "history", "migration", "--from", "ayer", "--to", "2020-01-01", "-w", full
    )
    said("history", "migration", *dates, "--by", "tier", "-w", full)
    said("market", "penetration", "--level", "barrio", "-w", full)
    said("market", "export", "--format", "xml", "-w", full)
    said("market", "export", "--format", "geojson-properties", "--geojson", "mapa.json", "-w", full)
    said("audience", "retarget", "-w", full)
    # Ad audiences need the personal-data setting first, then good values.
    said("audience", "seed", "--top", "10", "-w", full)
    monkeypatch.setenv("SEGMENTUM_EXPORT_PERSONAL_DATA", "true")
    said("audience", "export", "vip", "--format", "tiktak", "-w", full)
    said("audience", "export", "nope", "-w", full)
    # A date the segment was not computed on writes an empty file (it once failed as a bug).
    assert main(["audience", "export", "vip", "--as-of", "2020-01-01", "-w", full]) == 0
    assert "0 of 0 customers of 'vip' written" in " ".join(capsys.readouterr().out.split())
    said("audience", "retarget", "--carted", "--days", "0", "-w", full)
    assert "--until 'ayer' no es una fecha" in said(
        "audience", "retarget", "--carted", "--until", "ayer", "-w", full
    )
    said("audience", "seed", "-w", full)
    said("audience", "seed", "--top", "0", "-w", full)
    assert "(se indicó 150)" in said("audience", "seed", "--top-percent", "150", "-w", full)
    said("audience", "retarget", "--carted", "-w", empty)
    # A look-alike target whose rule has a mistake: said as in a preview, no internal name.
    (tmp_path / "leads.csv").write_text("prospect_id,country\nP1,España\n", encoding="utf-8")
    assert main(["ingest", "prospects", "leads.csv", "-w", full]) == 0
    capsys.readouterr()
    typo = said("segment", "lookalike", "--target", "monetary > 1e12", "-w", full)
    assert "en la posición 13:" in typo and "_" not in typo.split("^")[0], typo
    # restore: a folder that is no backup, a damaged manifest, a warehouse with data.
    said("restore", "nada", "-w", f"duckdb:///{tmp_path / 'r.duckdb'}")
    (tmp_path / "copia").mkdir()
    (tmp_path / "copia" / "segmentum-backup.json").write_text("{}", encoding="utf-8")
    said("restore", "copia", "-w", f"duckdb:///{tmp_path / 'r.duckdb'}")
    with segmentum.connect(empty) as wh:
        from segmentum.maintenance import backup

        backup(wh, tmp_path / "buena")
    said("restore", "buena", "-w", full)
    said("restore", "buena", "-w", "postgres://u:p@localhost/db")
    # The command line's own refusals.
    said("restore")
    said("market", "penetration", "--top", "muchos")
    said("audience", "seed", "--nope")
    said("market", "nope")


def test_user_errors_of_campaigns_flows_keys_and_models_read_in_spanish(
    spanish_errors: SpanishErrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More mistakes, said in Spanish with --lang es; a file that is not there is a user error
    (exit 2), never an unexpected one."""
    full, empty, said = spanish_errors.full, spanish_errors.empty, spanish_errors.said
    assert "no hay ninguna campaña 'nope'" in said("campaign", "audience", "nope", "-w", full)
    said("campaign", "send", "nope", "--dry-run", "-w", full)
    said("campaign", "create", "x", "--tactic", "spam", "--channel", "file", "-w", full)
    said("campaign", "create", "x", "--tactic", "winback", "--channel", "fax", "-w", full)
    # A segment campaign without its segment is refused when created, not at its first send.
    no_target = ["campaign", "create", "y", "--tactic", "segment", "--channel", "file"]
    assert "necesita --target NOMBRE" in said(*no_target, "-w", full)
    assert main(["campaign", "list", "--json", "-w", full]) == 0
    assert "y" not in [c["name"] for c in json.loads(capsys.readouterr().out)]
    # Ingest's bookkeeping before any load: what to do is load something, not "ingest batches".
    assert "aún no se ha cargado nada: segmentum ingest TABLA ARCHIVO" in said(
        "batches", "-w", empty
    )
    said("flow", "show", "nope", "-w", full)
    said("flow", "new", "x", "--from", "nope", "-w", full)
    said("api-key", "revoke", "nope", "-w", full)
    said("api-key", "create", "--name", "x", "--scope", "todo", "-w", full)
    said("segment", "unsubscribe", "nope", "-w", full)
    said("playbook", "--by", "nope", "-w", full)
    said("ingest", "ventas", "x.csv", "-w", empty)
    write(tmp_path / "sin_importe.csv", "cliente,fecha\nA1,2024-01-01\n")
    missing = said("ingest", "transactions", "sin_importe.csv", "-w", empty)
    assert "necesita la columna amount o unit_price" in missing, missing
    assert "(amount: p. ej. amount," in missing and "--no-amount" in missing, missing
    said("demo-data", "--out", "demo", "--customers", "0")
    said("history", "forecast", "-w", empty)
    said("clv", "validate", "--calibration-end", "2030-01-01", "-w", full)
    said("churn", "evaluate", "--train-as-of", "2030-01-01", "-w", full)
    for args in (
        ["segment", "import", "nada.yaml"],
        ["events", "track", "nada.jsonl"],
        ["flow", "save", "nada.yaml"],
        ["flow", "validate", "nada.yaml"],
    ):
        assert "nada." in said(*args, "-w", full) and "no existe ese archivo" in said(
            *args, "-w", full
        )


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_summary_tells_returns_from_lines_of_amount_zero(
    lang: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Customers whose lines net to zero because every line is at zero (free items, prices
    missing; CDNOW has such lines) were said to have returned as much as they bought."""
    from segmentum import cli, pipeline

    s = pipeline.RunSummary("r1", revenue_check={})
    s.revenue_check = {
        "customers_net_nonpositive": 3,
        "net_nonpositive_amount": -5.9,
        "customers_only_zero_lines": 1,
    }
    cli.print_summary(s, "EUR", lang)
    said = " ".join(capsys.readouterr().out.split())
    if lang == "en":
        assert "2 customers returned as much as they bought, or more" in said, said
        assert "1 customer has only lines of amount zero" in said, said
    else:
        assert "2 clientes devolvieron tanto como compraron, o más" in said, said
        assert "1 cliente solo tiene líneas de importe cero" in said, said
    s.revenue_check["customers_only_zero_lines"] = 0
    cli.print_summary(s, "EUR", lang)
    said = " ".join(capsys.readouterr().out.split())
    assert ("3 customers returned" if lang == "en" else "3 clientes devolvieron") in said
    assert "zero" not in said and "cero" not in said


def test_the_summary_says_how_many_respondents_are_in_no_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from segmentum import cli, pipeline

    s = pipeline.RunSummary("r1")
    s.satisfaction = {"responses": 111, "respondents": 96, "outside": 3, "outside_example": "ZZ"}
    cli.print_summary(s, "EUR", "es")
    said = " ".join(capsys.readouterr().out.split())
    assert "111 respuestas de 96 clientes" in said, said
    assert (
        "3 de ellos no están en ningún grupo: no son clientes con compras (por ejemplo, ZZ)" in said
    )


def test_a_mistyped_warehouse_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A walk: `history cohorts -w pyspark:///.../mnie` (a typo) created an empty warehouse
    and said it had no transactions (exit 4); `segment list` said "0 segments". Commands that
    read a warehouse refuse one that is not there (exit 2) and create nothing; those that
    start one (ingest, run) still do."""
    for url, path in (
        (f"duckdb:///{tmp_path / 'mnie.duckdb'}", tmp_path / "mnie.duckdb"),
        (f"pyspark:///{tmp_path / 'mnie'}", tmp_path / "mnie"),
    ):
        for args in (["segment", "list"], ["history", "cohorts"], ["quarantine"]):
            assert main([*args, "-w", url, "--lang", "es"]) == 2, args
            said = capsys.readouterr().err
            assert f"no hay ningún almacén en {path}" in said, said
            assert "revisa la ruta" in said and "Traceback" not in said
        assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    data = tmp_path / "d.csv"
    data.write_text("customer_id,email\nC1,a@b.c\n", encoding="utf-8")
    assert main(["ingest", "customers", str(data), "-w", f"duckdb:///{tmp_path / 'w.duckdb'}"]) == 0
    assert (tmp_path / "w.duckdb").exists()


def test_campaign_suppressions_lists_who_must_not_be_contacted_in_spanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Who unsubscribed (the link's clicks, folded in first), bounced or was loaded from a
    suppression list; email addresses only where personal data may be shown."""
    from rich.console import Console

    from segmentum import cli
    from segmentum.campaigns import unsubscribe
    from segmentum.config import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGMENTUM_EXPORT_PERSONAL_DATA", raising=False)
    monkeypatch.setattr(cli, "console", Console(width=300, force_terminal=False))
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write(
        tmp_path / "bajas.csv",
        "id_cliente;correo;canal;motivo;fecha_baja\n"
        "C1;c1@ejemplo.es;email;bounced;2025-03-01\n"
        "C2;;;[/bold]queja por teléfono;2025-03-02\n"
        "C1;c1@ejemplo.es;sms;bounced;2025-03-03\n",
    )
    assert main(["ingest", "suppressions", "bajas.csv", "-w", url]) == 0
    # A click on the link in an email, recorded by the service, not yet folded in.
    unsubscribe.UnsubscribeStore(unsubscribe.store_path(url, load_settings())).add("C9")
    capsys.readouterr()
    assert main(["campaign", "suppressions", "-w", url, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 personas no deben ser contactadas" in out, out
    assert "se dio de baja: 1" in out and "rebotado: 2" in out, out
    # Every row fits under the default limit: nothing more to show, though C1 has two rows.
    assert "--limit" not in out, out
    assert "C9" in out and "[/bold]queja por teléfono" in out, out
    assert "c1@ejemplo.es" not in out and "correos ocultos" in out, out
    assert main(["campaign", "suppressions", "-w", url, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["total"] == 3 and got["rows"][0]["customer_id"] == "C9"
    assert all(r["email"] is None for r in got["rows"])
    monkeypatch.setenv("SEGMENTUM_EXPORT_PERSONAL_DATA", "true")
    assert main(["campaign", "suppressions", "-w", url, "--json", "--limit", "5"]) == 0
    shown = {r["customer_id"]: r["email"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert shown["C1"] == "c1@ejemplo.es"
    # Four rows for three people: three rows shown leave one out, which the line must say
    # (counted in rows, as the reasons add up to, not in people).
    assert main(["campaign", "suppressions", "-w", url, "--limit", "3", "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "se muestran los 3 últimos de 4" in out, out
