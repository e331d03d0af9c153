"""segmentum schedule: the daily job's systemd timer and cron line, and the run lock."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segmentum import schedule
from segmentum.cli import main
from segmentum.errors import InputError, WarehouseBusyError

SEGMENTUM = Path(sys.executable).with_name("segmentum")


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "ventas diarias 100%"  # a space and a % sign: both need escaping
    folder.mkdir()
    return folder


def _systemd_argv(line: str) -> list[str]:
    """ExecStart's arguments as systemd reads them: its double quotes take the same backslash
    escapes as the shell's, and it turns %% into % and $$ into $."""
    value = line.removeprefix("ExecStart=").replace("%%", "%").replace("$$", "$")
    return shlex.split(value)


def test_the_systemd_units_run_this_segmentum_on_the_folder_with_the_lock(
    exports: Path, tmp_path: Path
) -> None:
    plan = schedule.make(
        exports, "duckdb:///shop.duckdb", "3:05", workdir=tmp_path, timezone="Europe/Madrid"
    )
    units = schedule.systemd_units(plan)
    service, timer = units["segmentum-daily.service"], units["segmentum-daily.timer"]
    [exec_line] = [x for x in service.splitlines() if x.startswith("ExecStart=")]
    argv = _systemd_argv(exec_line)
    assert argv == [
        str(SEGMENTUM),
        "run",
        "--data",
        str(exports),
        "--warehouse",
        f"duckdb:///{tmp_path / 'shop.duckdb'}",  # pinned to where it was scheduled from
        "--lock",
        str(tmp_path / ".segmentum-daily.lock"),
    ]
    assert "Type=oneshot" in service and "ventas diarias 100%%" in service
    assert "OnCalendar=*-*-* 03:05:00 Europe/Madrid" in timer and "Persistent=true" in timer


def test_the_cron_line_runs_through_a_real_shell_and_stops_when_a_run_holds_the_lock(
    exports: Path, tmp_path: Path
) -> None:
    plan = schedule.make(exports, "duckdb:///shop.duckdb", "02:30", workdir=tmp_path)
    line = schedule.cron_line(plan)
    (
        minute,
        hour,
        *_,
    ) = line.split()[:5]
    assert (minute, hour) == ("30", "2")
    # cron hands everything after the fifth field to sh, with \% turned back into %.
    command = line.split(" ", 5)[5].replace("\\%", "%")
    with schedule.run_lock(plan.lock):
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 4
    log = (tmp_path / "segmentum-daily.log").read_text()
    assert "another segmentum run holds the lock" in log and f"process {os.getpid()}" in log
    assert "Traceback" not in log
    assert not (tmp_path / "shop.duckdb").exists()  # the second run never started


def test_a_killed_run_leaves_no_stale_lock(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from segmentum.schedule import run_lock\n"
            f"with run_lock(Path({str(lock)!r})):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(WarehouseBusyError, match=f"process {holder.pid}"),
            schedule.run_lock(lock),
        ):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.time() + 10
        while True:  # the kernel drops the lock with the process
            try:
                with schedule.run_lock(lock):
                    break
            except WarehouseBusyError:
                assert time.time() < deadline
                time.sleep(0.05)
    finally:
        holder.kill()


def test_install_writes_the_units_and_the_cron_file(exports: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            str(SEGMENTUM),
            "schedule",
            "--data",
            str(exports),
            "--install",
            "--dir",
            str(tmp_path / "u"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "u").iterdir()) == [
        "segmentum-daily.service",
        "segmentum-daily.timer",
    ]
    assert "now run: systemctl --user enable --now segmentum-daily.timer" in out.stdout
    plan = schedule.make(exports, "duckdb:///x.duckdb", workdir=tmp_path, name="tienda")
    [cron] = schedule.install(plan, "cron", target=tmp_path / "cron.d").files
    entry = cron.read_text().splitlines()[1].split()
    assert entry[:5] == ["30", "2", "*", "*", "*"] and entry[5] == (
        os.environ.get("USER") or "root"
    )


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"at": "25:00"}, "is not a time of day"),
        ({"name": "../etc/x"}, "cannot name a unit"),
        ({"timezone": "Mars/Olympus"}, "is not a time zone"),
    ],
)
def test_bad_values_are_named(exports: Path, kwargs: dict[str, str], says: str) -> None:
    with pytest.raises(InputError, match=says):
        schedule.make(exports, "duckdb:///x.duckdb", **kwargs)


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        schedule.make(tmp_path / "nope", "duckdb:///x.duckdb")


def test_a_cron_entry_with_a_time_zone_is_read_in_that_zone_through_cron_tz(
    exports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["schedule", "--data", str(exports), "--format", "cron", "--timezone", "Europe/Madrid"]
    assert main([*argv, "--at", "02:30"]) == 0
    zone, entry, *notes = capsys.readouterr().out.splitlines()
    assert zone == "CRON_TZ=Europe/Madrid" and entry.startswith("30 2 * * * cd ")
    assert any("Debian's classic cron ignores CRON_TZ" in n for n in notes)
    plan = schedule.make(exports, "duckdb:///x.duckdb", workdir=tmp_path, timezone="Asia/Tokyo")
    [cron] = schedule.install(plan, "cron", target=tmp_path / "cron.d").files
    assert cron.read_text().splitlines()[1:3][0] == "CRON_TZ=Asia/Tokyo"
    assert "CRON_TZ" not in schedule.cron_line(schedule.make(exports, "duckdb:///x.duckdb"))


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--at", "25:99"], "no es una hora del día"),
        (["--timezone", "Marte/Olympus"], "no es una zona horaria"),
        (["--name", "../x"], "no sirve como nombre"),
        (["--format", "crontab"], "no es un formato conocido"),
    ],
)
def test_a_bad_schedule_value_is_a_usage_error_in_the_users_language(
    exports: Path, option: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", "--data", str(exports), *option, "--lang", "es"]) == 2
    err = capsys.readouterr().err
    assert says in err and "sugerencia: " in err and "Traceback" not in err
    assert not re.search(r"\b(use|write|give)\b", err), err


def test_a_missing_data_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", "--data", str(tmp_path / "nope"), "--lang", "es"]) == 2
    assert "no existe esa carpeta" in capsys.readouterr().err


def test_a_run_killed_after_its_publish_is_shown_interrupted_not_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run writes its row before publishing (so the published copy lists it): a run killed
    after that reads "running" until the next run, which marks it interrupted."""
    from segmentum import demo, pipeline
    from segmentum.warehouse import connect

    data = tmp_path / "demo"
    demo.generate(data, customers=150, fmt="csv")
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    code = (
        "import os, segmentum\n"
        "from segmentum import pipeline\n"
        "class Kill:\n"
        "    def step(self, name, detail=''):\n"
        "        if name == 'summary':\n"
        "            os._exit(9)  # killed after the publish\n"
        "    def __getattr__(self, name):\n"
        "        return lambda *a, **k: None\n"
        f"pipeline.run({url!r}, data={str(data)!r}, progress=Kill())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    with connect(url) as wh:
        [row] = wh.table("pipeline_runs").to_pyarrow().to_pylist()
        assert row["status"] == "running"
        killed = row["run_id"]
        later = pipeline.run(wh)
        runs = {r["run_id"]: r for r in wh.table("pipeline_runs").to_pyarrow().to_pylist()}
    assert runs[later.run_id]["status"] == "ok"
    assert runs[killed]["status"] == "interrupted"
    assert runs[killed]["error"] == pipeline.INTERRUPTED
    # Said in the reader's language: the run log and the Data page's error column.
    from rich.console import Console

    from segmentum import cli, i18n

    monkeypatch.setattr(cli, "console", Console(width=300, force_terminal=False))
    assert main(["history", "runs", "-w", url, "--lang", "es"]) == 0
    assert "interrumpida" in capsys.readouterr().out
    assert i18n.translate_message("es", pipeline.INTERRUPTED) == (
        "la ejecución se detuvo antes de terminar: su proceso se cortó o su máquina se paró "
        "(sugerencia: vuelve a ejecutarla: segmentum run)"
    )
