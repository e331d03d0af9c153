"""The daily ingest-and-run of a folder of exports: a systemd timer or a cron entry, and the
lock that keeps two runs from overlapping.

``segmentum schedule`` writes what an operator would otherwise copy from a wiki page: the
absolute path of this installation's ``segmentum``, the folder, the warehouse and the time,
quoted for systemd's and cron's own rules. Every scheduled run takes ``--lock``: a second run
that starts while one is still going (a slow day, someone running it by hand) stops at once
with exit code 4 and says who holds the lock, instead of meeting the first one mid-way. A
failed run is in the run log (``segmentum history runs``) and in its exit code, which
systemd shows in ``systemctl status`` and cron mails to the owner.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from segmentum.errors import ConfigError, InputError, WarehouseBusyError

FORMATS = ("systemd", "cron")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Schedule:
    """One daily job.

    Parameters
    ----------
    data
        The folder the exports land in (read by ``segmentum run --data``).
    warehouse
        The warehouse URL the run writes to.
    at
        Local time of day (the machine's zone, or ``timezone``).
    name
        The job's name: the unit files' and the cron file's.
    workdir
        The folder the job runs in (settings files are read from there).
    executable
        This installation's ``segmentum``.
    lock
        The lock file every scheduled run takes.
    timezone
        An IANA zone for the time: systemd's ``OnCalendar`` takes it, cron's line is preceded
        by ``CRON_TZ`` (cronie, systemd-cron; Debian's classic cron ignores it).
    """

    data: Path
    warehouse: str
    at: _dt.time
    name: str
    workdir: Path
    executable: Path
    lock: Path
    timezone: str | None = None

    def command(self) -> list[str]:
        return [
            str(self.executable),
            "run",
            "--data",
            str(self.data),
            "--warehouse",
            self.warehouse,
            "--lock",
            str(self.lock),
        ]


def make(
    data: Path,
    warehouse: str,
    at: str = "02:30",
    name: str = "segmentum-daily",
    workdir: Path | None = None,
    timezone: str | None = None,
) -> Schedule:
    """A :class:`Schedule` with every path made absolute and every value checked (a bad one is
    an :class:`InputError`, the user's to fix: exit code 2)."""
    hm = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", at)
    try:
        when = _dt.time(int(hm.group(1)), int(hm.group(2))) if hm else _dt.time.fromisoformat(at)
    except ValueError:
        raise InputError(
            f"--at {at!r} is not a time of day", "write it as HH:MM, e.g. --at 02:30"
        ) from None
    if not _NAME.match(name):
        raise InputError(
            f"--name {name!r} cannot name a unit or cron file",
            "use letters, digits, '-', '_' and '.', e.g. segmentum-daily",
        )
    if timezone is not None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InputError(
                f"--timezone {timezone!r} is not a time zone", "use an IANA name: Europe/Madrid"
            ) from None
    folder = data.expanduser().resolve()
    if not folder.is_dir():
        raise InputError(
            f"--data {data}: no such folder",
            "give the folder your daily exports are written to",
        )
    here = (workdir or Path.cwd()).resolve()
    return Schedule(
        data=folder,
        warehouse=_absolute_url(warehouse, here),
        at=when,
        name=name,
        workdir=here,
        executable=_executable(),
        lock=here / f".{name}.lock",
        timezone=timezone,
    )


def _absolute_url(url: str, here: Path) -> str:
    """A relative DuckDB file (``duckdb:///shop.duckdb``) pinned to the working folder, so the
    scheduled job writes where the person who scheduled it reads."""
    from segmentum.warehouse import duckdb_file

    found = duckdb_file(url)
    if found is None or found.is_absolute():
        return url
    return f"duckdb:///{(here / found).resolve()}"


def _executable() -> Path:
    """This installation's ``segmentum`` (beside the running Python, as pip installs it)."""
    beside = Path(sys.executable).with_name("segmentum")
    if beside.exists():
        return beside
    found = shutil.which("segmentum")
    if found is None:
        raise ConfigError(
            "cannot find the segmentum command to schedule",
            "install segmentum (pip install segmentum) into the environment you run this from",
        )
    return Path(found).resolve()


# ------------------------------------------------------------------------------------ systemd
def _systemd_value(text: str) -> str:
    """Text systemd reads literally: it expands ``%x`` specifiers (also inside quotes)."""
    return text.replace("%", "%%")


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument, double-quoted with systemd's escapes; ``$`` doubled too, since
    ExecStart expands ``$VARIABLE``."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{_systemd_value(escaped)}"'


def systemd_units(s: Schedule) -> dict[str, str]:
    """The ``.service`` and ``.timer`` files, by file name."""
    on = f"*-*-* {s.at.strftime('%H:%M:%S')}" + (f" {s.timezone}" if s.timezone else "")
    service = "\n".join(
        [
            "[Unit]",
            f"Description=segmentum: ingest the exports in {_systemd_value(str(s.data))} and run",
            "",
            "[Service]",
            "Type=oneshot",
            f"WorkingDirectory={_systemd_value(str(s.workdir))}",
            "ExecStart=" + " ".join(_systemd_quote(a) for a in s.command()),
            "Nice=10",
            "",
        ]
    )
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=segmentum daily run at {s.at.strftime('%H:%M')}",
            "",
            "[Timer]",
            f"OnCalendar={on}",
            # A machine that was off at that time runs the job when it is back.
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return {f"{s.name}.service": service, f"{s.name}.timer": timer}


# --------------------------------------------------------------------------------------- cron
def cron_line(s: Schedule, user: str | None = None) -> str:
    """One crontab line (with a user column for ``/etc/cron.d`` when ``user`` is given).

    The output goes to a log file beside the lock; ``%`` is escaped because cron turns it
    into a newline. With a time zone the line is preceded by ``CRON_TZ=zone``: cronie and
    systemd-cron then read the time in that zone, summer time included (a time converted
    once to the machine's zone would be an hour off half the year).
    """
    log = s.workdir / f"{s.name}.log"
    shell = (
        f"cd {shlex.quote(str(s.workdir))} && "
        + " ".join(shlex.quote(a) for a in s.command())
        + f" >> {shlex.quote(str(log))} 2>&1"
    ).replace("%", "\\%")
    who = f" {user}" if user else ""
    zone = f"CRON_TZ={s.timezone}\n" if s.timezone else ""
    return f"{zone}{s.at.minute} {s.at.hour} * * *{who} {shell}"


# ------------------------------------------------------------------------------------ install
@dataclass
class Installed:
    files: list[Path]
    next_steps: list[str]


def install(s: Schedule, fmt: str, target: Path | None = None, system: bool = False) -> Installed:
    """Write the schedule where ``fmt`` looks for it.

    systemd: the unit files into ``target`` (default ``~/.config/systemd/user``, or
    ``/etc/systemd/system`` with ``system``); the command to enable the timer is returned, not
    run. cron: with ``target`` or ``system``, a file in that folder (default ``/etc/cron.d``);
    otherwise the line is added to the user's crontab, replacing an earlier one of this name.
    """
    if fmt == "systemd":
        folder = target or (
            Path("/etc/systemd/system") if system else Path.home() / ".config/systemd/user"
        )
        written = _write_files(folder, systemd_units(s))
        ctl = "systemctl" if system else "systemctl --user"
        return Installed(written, [f"{ctl} daemon-reload", f"{ctl} enable --now {s.name}.timer"])
    if target is not None or system:
        folder = target or Path("/etc/cron.d")
        user = os.environ.get("USER") or "root"
        text = f"# segmentum daily run ({s.name})\n{cron_line(s, user)}\n"
        return Installed(_write_files(folder, {s.name: text}), [])
    return Installed([], [_add_to_crontab(s)])


def _write_files(folder: Path, files: dict[str, str]) -> list[Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in files.items():
            path = folder / name
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            written.append(path)
    except PermissionError:
        raise ConfigError(
            f"cannot write into {folder}: permission denied",
            "run it with sudo for the system folders, or leave out --system",
        ) from None
    return written


def _add_to_crontab(s: Schedule) -> str:
    if shutil.which("crontab") is None:
        raise ConfigError(
            "there is no crontab command on this machine",
            "install cron, or use --format systemd",
        )
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    marker = f"# segmentum: {s.name}"
    lines = current.stdout.splitlines() if current.returncode == 0 else []
    kept, skip = [], False
    for line in lines:
        if line == marker:
            skip = True  # the lines after the marker are the old entry (and its CRON_TZ)
            continue
        if skip:
            skip = line.startswith("CRON_TZ=")
            continue
        kept.append(line)
    text = "\n".join([*kept, marker, cron_line(s)]) + "\n"
    done = subprocess.run(["crontab", "-"], input=text, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"crontab refused the entry: {done.stderr.strip()}", "see crontab -l")
    return "crontab -l"


# --------------------------------------------------------------------------------------- lock
@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` locked for the length of a run; another holder means stop at once.

    An advisory ``flock``: the kernel releases it when the process ends however it ends, so a
    killed run never leaves a stale lock behind. The file keeps who holds it, for the message.
    """
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _holder(fh.read())
            raise WarehouseBusyError(
                f"another segmentum run holds the lock {path}{holder}; this run did not start",
                "wait for it to finish (segmentum history runs shows the runs); a killed run "
                "releases the lock by itself",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                }
            )
        )
        fh.flush()
        yield
    finally:
        fh.close()


def _holder(text: str) -> str:
    try:
        who = json.loads(text)
        return f" (process {who['pid']} on {who['host']}, since {who['since']})"
    except (ValueError, KeyError, TypeError):
        return ""
