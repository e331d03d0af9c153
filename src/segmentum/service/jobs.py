"""Pipeline runs and file loads started from the API or the dashboard, each in its own process.

A job is a row in the state store (kind, parameters, status, steps, result or error). The
server starts ``python -m segmentum.service.jobs STATE JOB_ID`` and answers at once; the child
opens the warehouse, does the work, records each step as it goes, and ends. Heavy work thus
never shares the server's interpreter (its GIL, its memory, its DuckDB connection), so lookups
keep answering in milliseconds while a run takes minutes. A job whose process died (killed,
out of memory) is reported as failed the next time someone reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from segmentum.config import Settings, load_settings
from segmentum.errors import SegmentumError, WarehouseBusyError
from segmentum.service.state import StateStore

KINDS = ("pipeline", "ingest")
# How long a job waits for the warehouse when a command holds it, before giving up.
WAIT_FOR_WAREHOUSE_SECONDS = 300.0


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def _settings_to_json(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def _settings_from_json(values: dict[str, Any]) -> Settings:
    base = load_settings(env={})
    fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return dataclasses.replace(base, **fixed)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it (parameters stay private: they hold paths and settings)."""
    out: dict[str, Any] = {
        "job_id": row["job_id"],
        "kind": row["kind"],
        "status": row["status"],
        "steps": json.loads(row["steps"] or "[]"),
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "pid": row["pid"],  # the job's own process
    }
    if row["result"]:
        out["result"] = json.loads(row["result"])
        if row["kind"] == "pipeline":
            out["summary"] = out["result"]
        else:
            out["reports"] = out["result"]
    if row["error"]:
        out["error"] = row["error"]
        out["error_kind"] = row["error_kind"]
    return out


class Jobs:
    """Starts jobs in child processes and reads their status.

    Parameters
    ----------
    store
        The state store where jobs are recorded.
    url
        The warehouse the jobs work on.
    settings
        Passed to the child as they are (overrides included).
    """

    def __init__(self, store: StateStore, url: str, settings: Settings) -> None:
        self.store, self.url, self.settings = store, url, settings
        # Set by a service embedded around an open DuckDB warehouse (its file is locked).
        self.held_open = False
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record a job and start its process; returns the job as :meth:`get` would."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        if self.held_open:
            raise SegmentumError(
                "jobs cannot run here: this program holds the DuckDB warehouse open, so a job's "
                "process could not open it",
                "serve it with segmentum serve, or pass create_app the warehouse URL",
            )
        if self.store.path is None:
            raise SegmentumError(
                "jobs need a state store file, and this warehouse is in memory",
                "use a DuckDB file warehouse, or set state_store",
            )
        job_id = secrets.token_hex(6)
        payload = {
            "warehouse": self.url,
            "settings": _settings_to_json(self.settings),
            **(params or {}),
        }
        self.store.execute(
            "INSERT INTO jobs (job_id, kind, status, params, started_at) VALUES (?, ?, ?, ?, ?)",
            (job_id, kind, "running", json.dumps(payload, default=str), _now()),
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "segmentum.service.jobs", str(self.store.path), job_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the server does not kill a run midway
        )
        self._children[job_id] = child
        self.store.execute("UPDATE jobs SET pid = ? WHERE job_id = ?", (child.pid, job_id))
        found = self.get(job_id)
        assert found is not None
        return found

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            return None
        row = rows[0]
        if row["status"] == "running" and not self._alive(job_id, row["pid"]):
            # The process is gone without writing its end: killed or crashed.
            again = self.store.query("SELECT * FROM jobs WHERE job_id = ?", (job_id,))[0]
            if again["status"] == "running":
                self.store.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? "
                    "WHERE job_id = ? AND status = 'running'",
                    ("the job's process ended without finishing it", _now(), job_id),
                )
            row = self.store.query("SELECT * FROM jobs WHERE job_id = ?", (job_id,))[0]
        return _public(row)

    def _alive(self, job_id: str, pid: int | None) -> bool:
        child = self._children.get(job_id)
        if child is not None:
            return child.poll() is None
        if pid is None:
            return True  # being started by another server process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def wait(self, job_id: str, timeout: float) -> dict[str, Any] | None:
        """Poll until the job ends or ``timeout`` seconds pass; the job as it then stands."""
        end = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job["status"] != "running" or time.monotonic() > end:
                return job
            time.sleep(0.05)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM jobs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [self.get(r["job_id"]) or _public(r) for r in rows]


# ---------------------------------------------------------------------- the child process
class _Recorder:
    """Progress of the pipeline, written to the job's row as each step starts."""

    def __init__(self, store: StateStore, job_id: str) -> None:
        self.store, self.job_id, self.steps = store, job_id, []  # type: ignore[var-annotated]

    def step(self, name: str, detail: str = "") -> None:
        if self.steps and self.steps[-1] == name:
            return  # the same step reporting its progress again
        self.steps.append(name)
        self.store.execute(
            "UPDATE jobs SET steps = ? WHERE job_id = ?", (json.dumps(self.steps), self.job_id)
        )


def _open_warehouse(url: str, settings: Settings, recorder: _Recorder, wait: float) -> Any:
    from segmentum.warehouse import connect

    end = time.monotonic() + wait
    waited = False
    while True:
        try:
            return connect(url, memory_limit=settings.memory_limit, lock_wait=0)
        except WarehouseBusyError:
            if time.monotonic() > end:
                raise
            if not waited:
                recorder.step("waiting for the warehouse")
                waited = True
            time.sleep(0.5)


def _work(kind: str, params: dict[str, Any], recorder: _Recorder) -> Any:
    settings = _settings_from_json(params["settings"])
    if settings.job_nice > 0 and hasattr(os, "nice"):
        # Below the server's priority: a run may use every core, and the lookups and pages
        # answered meanwhile take the CPU first (the run only waits for them, milliseconds).
        os.nice(min(19, settings.job_nice))
    wait = float(params.get("wait_seconds", WAIT_FOR_WAREHOUSE_SECONDS))
    wh = _open_warehouse(params["warehouse"], settings, recorder, wait)
    try:
        from segmentum.precompute import refresh_published

        out: Any
        if kind == "pipeline":
            from segmentum import pipeline

            out = pipeline.run(wh, settings=settings, progress=recorder).to_dict()
        else:
            from segmentum.ingest import ingest

            recorder.step(f"ingest {params['table']}")
            # Read the upload by its bare name from inside its folder: the report, the
            # quarantine and ingest_batches then name the user's file, never a temporary path
            # of the server.
            os.chdir(Path(params["path"]).parent)
            reports = ingest(params["table"], Path(params["name"]), warehouse=wh, settings=settings)
            out = [r.to_dict() for r in reports]
        # A Spark warehouse's pages read its serving store: what the job wrote after a run's
        # own publish (the run's finished row in the run log) or in a load (its batch, its
        # quarantine) goes there, as the command line does after each command. Nothing for
        # the other engines, whose pages read the warehouse.
        refresh_published(wh, settings)
        return out
    finally:
        wh.close()


def main(argv: list[str]) -> int:
    """Run job ``argv[1]`` recorded in the state store ``argv[0]``."""
    store = StateStore(argv[0])
    job_id = argv[1]
    rows = store.query("SELECT kind, params FROM jobs WHERE job_id = ?", (job_id,))
    if not rows:
        return 2
    params = json.loads(rows[0]["params"])
    recorder = _Recorder(store, job_id)
    try:
        result = _work(rows[0]["kind"], params, recorder)
    except Exception as exc:  # a failed job is reported, never silent
        message = exc.message if isinstance(exc, SegmentumError) else str(exc)
        if isinstance(exc, SegmentumError) and exc.hint:
            message += f" ({exc.hint})"
        store.execute(
            "UPDATE jobs SET status = 'failed', error = ?, error_kind = ?, finished_at = ? "
            "WHERE job_id = ?",
            ((message.splitlines() or [type(exc).__name__])[0], type(exc).__name__, _now(), job_id),
        )
        return 1
    finally:
        upload = params.get("upload_dir")
        if upload:
            os.chdir(Path(upload).parent)
            with contextlib.suppress(OSError):
                shutil.rmtree(upload)
    store.execute(
        "UPDATE jobs SET status = 'done', result = ?, finished_at = ? WHERE job_id = ?",
        (json.dumps(result, default=str), _now(), job_id),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
