"""The service beside the CLI, with real processes: ``segmentum serve`` in its own process,
CLI commands as subprocesses on the same DuckDB file, jobs in their own process, the serving
store published atomically, keys revoked from another process, busy answers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from tests.conftest import _free_port

import segmentum
from segmentum.service.auth import create_key
from segmentum.service.state import StateStore
from segmentum.serving import ServingStore, _dated_folder, documents_path, publish, serving_path
from segmentum.warehouse import Warehouse

ENV = {**os.environ, "SEGMENTUM_DISCOVER_SEGMENTS": "false", "SEGMENTUM_BUSY_WAIT_SECONDS": "1"}
# Limits that only stop a hung test: a pipeline run on a busy shared machine takes minutes.
PATIENCE = 1800.0


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """``segmentum ARGS -w URL`` in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "segmentum.cli", *args, "-w", url],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=PATIENCE,
    )


@contextlib.contextmanager
def serve(url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``segmentum serve`` (uvicorn) in its own process; yields its base URL and process."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmentum.cli", "serve", "--port", str(port), "-w", url],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + PATIENCE
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def served(service_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private copy of the demo warehouse (no serving store yet) served by a real
    ``segmentum serve`` process, with an admin and a read key (one server for the module:
    starting one takes a while, and each test leaves state the others do not read)."""
    db = tmp_path_factory.mktemp("served") / "shop.duckdb"
    shutil.copyfile(service_db, db)
    url = f"duckdb:///{db}"
    state = StateStore.for_warehouse(url)
    keys = {
        "admin": create_key(state, "admin", ["admin"]),
        "read": create_key(state, "r", ["read"]),
    }
    with serve(url) as (base, proc):
        client = httpx.Client(base_url=base, timeout=120, headers={"X-API-Key": keys["admin"]})
        yield {"url": url, "db": db, "base": base, "keys": keys, "proc": proc, "http": client}
        client.close()


def a_customer(db: Path) -> str:
    """A customer of the published lookup (its documents: the file holds no copy of it)."""
    docs = sqlite3.connect(documents_path(str(serving_path(f"duckdb:///{db}"))))
    try:  # the days' customers: those of the base its documents read, with the delta's
        [(base,)] = docs.execute("select file from _base where name = 'customer_lookup'")
        docs.execute("attach database ? as base", (str(db.parent / base),))
        row = docs.execute(
            "select min(k) from (select k from base.customer_lookup union "
            "select k from customer_lookup__delta where doc is not null)"
        ).fetchone()
    finally:
        docs.close()
    assert row is not None
    return str(row[0])


def test_the_server_publishes_a_serving_store_and_holds_no_lock(served: dict[str, Any]) -> None:
    http, db = served["http"], served["db"]
    info = http.get("/v1/serving").json()
    assert info["published"] and info["tables"]["customer_lookup"] == 800
    # Between requests nobody holds the warehouse: another process can open it read-write.
    con = duckdb.connect(str(db))
    con.close()


def test_every_cli_command_works_while_serving(served: dict[str, Any]) -> None:
    http, url = served["http"], served["url"]
    cid = a_customer(served["db"])
    before = http.get("/v1/serving").json()
    answers: list[int] = []
    stop = threading.Event()

    def keep_looking_up() -> None:
        with httpx.Client(base_url=served["base"], timeout=60) as c:
            while not stop.is_set():
                r = c.get(f"/v1/customers/{cid}", headers={"X-API-Key": served["keys"]["read"]})
                answers.append(r.status_code)
                time.sleep(0.05)

    looker = threading.Thread(target=keep_looking_up)
    looker.start()
    try:
        for args in (
            ("segment", "create", "loyal_big", "frequency >= 3 and monetary > 500"),
            ("segment", "list"),
            ("api-key", "list"),
            ("api-key", "create", "--name", "ops", "--scopes", "read"),
            ("segment", "preview", "loyal_big"),
            ("run",),
        ):
            done = cli(*args, url=url)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
    finally:
        stop.set()
        looker.join()
    # The server answered every lookup while the commands (the whole run included) held the file.
    assert answers and set(answers) == {200}
    after = http.get("/v1/serving").json()
    assert after["run_id"] and after["run_id"] != before.get("run_id")
    # ... and it shows the new state that run published: the CLI's segment in the lookup.
    members = http.get("/v1/segments/loyal_big/members").json()
    assert members["size"] > 0
    row = http.get(f"/v1/customers/{members['members'][0]}").json()
    assert "loyal_big" in row["segments"]


def test_a_key_revoked_from_the_cli_is_refused_at_once(served: dict[str, Any]) -> None:
    base, url = served["base"], served["url"]
    made = cli("api-key", "create", "--name", "temp", "--scopes", "read", url=url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert (
        httpx.get(f"{base}/v1/overview", headers={"X-API-Key": key}, timeout=60).status_code == 200
    )
    revoked = cli("api-key", "revoke", key.split("_")[1], url=url)
    assert revoked.returncode == 0, revoked.stderr
    r = httpx.get(f"{base}/v1/overview", headers={"X-API-Key": key}, timeout=60)
    assert r.status_code == 401


def test_a_pipeline_job_runs_in_its_own_process_while_lookups_answer(
    served: dict[str, Any],
) -> None:
    http = served["http"]
    cid = a_customer(served["db"])
    before = http.get("/v1/serving").json()
    job = http.post("/v1/jobs/pipeline").json()
    assert job["status"] == "running" and job["pid"] != served["proc"].pid
    looked_up_while_running = 0
    end = time.monotonic() + PATIENCE
    while time.monotonic() < end:
        status = http.get(f"/v1/jobs/{job['job_id']}").json()
        if status["status"] != "running":
            break
        r = http.get(f"/v1/customers/{cid}")
        assert r.status_code == 200
        looked_up_while_running += 1
        time.sleep(0.1)
    assert status["status"] == "done", status
    assert looked_up_while_running > 0
    assert "publish read models" in status["steps"]
    assert status["summary"]["run_id"] == http.get("/v1/serving").json()["run_id"]
    assert status["summary"]["run_id"] != before.get("run_id")
    assert any(j["job_id"] == job["job_id"] for j in http.get("/v1/jobs").json())


def test_a_killed_job_is_reported_failed(served: dict[str, Any]) -> None:
    http = served["http"]
    job = http.post("/v1/jobs/pipeline").json()
    os.kill(job["pid"], 9)
    end = time.monotonic() + PATIENCE
    while time.monotonic() < end:
        status = http.get(f"/v1/jobs/{job['job_id']}").json()
        if status["status"] != "running":
            break
        time.sleep(0.1)
    assert status["status"] == "failed" and "ended without finishing" in status["error"]


def test_a_held_warehouse_gets_a_busy_answer_and_lookups_go_on(served: dict[str, Any]) -> None:
    http = served["http"]
    cid = a_customer(served["db"])
    saved = http.get("/v1/segments").json()
    segment = saved[0]["name"]
    size = http.get(f"/v1/segments/{segment}/members", params={"limit": 1}).json()["size"]
    campaign = http.get("/v1/campaigns").json()[0]["campaign_id"]
    profile = http.get(f"/v1/segments/{segment}/profile").json()
    micro = http.get("/v1/micro-segments").json()
    assert profile["segments"] and micro["nodes"]
    browser = httpx.Client(base_url=served["base"], timeout=120)
    browser.get("/login")
    browser.post(
        "/login",
        data={"key": served["keys"]["admin"], "csrf": browser.cookies.get("segmentum_login_csrf")},
    )

    def results_of(html: str) -> str:
        found = re.search(r'<dl id="results">.*?</dl>', html, re.S)
        return found.group(0) if found else ""

    live = browser.get(f"/dashboard/campaigns?c={campaign}&lang=es").text
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(60)",
            str(served["db"]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # What needs the warehouse itself (a rule's preview computes on it) waits, then says so.
        rule = {"rule": "frequency > 1"}
        r = http.post("/v1/segments/preview", json=rule)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == "application/problem+json"
        assert "busy" in r.json()["detail"] and "retry" in r.json()["hint"]
        r = http.post("/v1/segments/preview", json=rule, headers={"Accept-Language": "es"})
        assert r.status_code == 503 and r.json()["title"] == "Busy"
        assert "está ocupado" in r.json()["detail"], r.json()
        assert r.json()["hint"].startswith("vuelve a intentarlo en unos segundos"), r.json()
        assert http.get(f"/v1/customers/{cid}").status_code == 200
        assert http.get("/v1/overview").status_code == 200
        # The saved segments, their members and the campaigns answer from the last publish,
        # and say when it was.
        for path, same in (
            ("/v1/segments", saved),
            (f"/v1/segments/{segment}/profile", profile),
            ("/v1/micro-segments", micro),
            ("/v1/campaigns", None),
        ):
            r = http.get(path)
            assert r.status_code == 200 and r.headers["x-segmentum-published-at"], path
            assert same is None or r.json() == same, path
        assert r.json()[0]["campaign_id"] == campaign
        r = http.get(f"/v1/segments/{segment}/members", params={"limit": 1})
        assert r.status_code == 200 and r.json()["size"] == size
        # A tree the run did not cache is computed on the warehouse: busy until it is free.
        r = http.get("/v1/micro-segments", params={"dimensions": "value_tier"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        # A page meeting it shows a page in its language, not the API's JSON.
        r = browser.get("/dashboard/micro", params={"dimensions": "value_tier", "lang": "es"})
        assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
        assert "está ocupado" in r.text and int(r.headers["retry-after"]) >= 1
        # The pages that read the warehouse answer from what was published, and say so.
        for path in (
            f"/dashboard/explorer?segment={segment}&lang=es",
            f"/dashboard/explorer?segment={segment}&rule=frequency%20%3E%201&lang=en",
            f"/dashboard/campaigns?c={campaign}&lang=es",
            "/dashboard/data?lang=en",
        ):
            page = browser.get(path)
            assert page.status_code == 200, path
            assert 'id="published-note"' in page.text, path
            if "lang=es" in path:
                assert "esta página muestra lo publicado" in page.text
            if "segment=" in path:
                shown = re.search(r'id="segment-size">([^<]*)<', page.text)
                assert shown is not None and re.sub(r"\D", "", shown.group(1)) == str(size)
        assert (
            "this needs the warehouse it holds"
            in browser.get("/dashboard/explorer?rule=frequency%20%3E%201&lang=en").text
        )
        # The imported campaign's results, as published, are the ones measured live.
        held = browser.get(f"/dashboard/campaigns?c={campaign}&lang=es").text
        assert results_of(held) == results_of(live) and "<dd>" in results_of(live)
    finally:
        holder.kill()
        holder.wait()
    assert http.get("/v1/segments").status_code == 200
    fresh = browser.get(f"/dashboard/explorer?segment={segment}")
    assert fresh.status_code == 200 and 'id="published-note"' not in fresh.text


def test_uploads_run_as_jobs_and_keep_server_paths_private(
    served: dict[str, Any], tmp_path: Path
) -> None:
    http = served["http"]
    # Not the bytes test_service uploads to the shared demo warehouse this copy may come from
    # (the same file again would rightly be skipped as already loaded).
    body = b"customer_id,channel,reason\nC0000001,email,unsubscribed by phone\n,sms,\n"
    r = http.post("/v1/ingest/suppressions", files={"file": ("bajas.csv", body)})
    assert r.status_code == 200, r.text
    rep = r.json()[0]
    assert rep["rows_read"] == rep["accepted"] + rep["quarantined"] == 2
    assert rep["file"] == "bajas.csv" and "segmentum-upload" not in r.text
    r = http.post(
        "/v1/ingest/suppressions",
        files={"file": ("otra.csv", body + b"C0000002,sms,x\n")},
        params={"background": "true"},
    )
    assert r.status_code == 202
    job = http.get(f"/v1/jobs/{r.json()['job_id']}").json()
    end = time.monotonic() + PATIENCE
    while time.monotonic() < end:
        if job["status"] != "running":
            break
        time.sleep(0.1)
        job = http.get(f"/v1/jobs/{job['job_id']}").json()
    assert job["status"] == "done" and job["reports"][0]["file"] == "otra.csv"
    with segmentum.connect(served["url"]) as wh:
        files = wh.table("ingest_batches").file.to_pyarrow().to_pylist()
        quarantined = wh.table("quarantine").to_pandas().to_csv()
    assert "bajas.csv" in files and "otra.csv" in files
    # (the demo's own files were loaded by the CLI from their folder: those paths are the user's)
    assert not [
        f for f in files if "segmentum-upload" in f or f.startswith(tempfile.gettempdir() + "/segm")
    ]
    assert "segmentum-upload" not in quarantined


@pytest.mark.parametrize("name", [".", "..", "../../etc/passwd.csv", "a/b.csv", "..\\x.csv"])
def test_upload_names_that_are_paths_are_refused(served: dict[str, Any], name: str) -> None:
    r = served["http"].post("/v1/ingest/suppressions", files={"file": (name, b"a,b\n1,2\n")})
    assert r.status_code == 400 and r.json()["title"] == "Bad file name"


def test_uploads_over_the_size_limit_get_413(service_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "small.duckdb"
    shutil.copyfile(service_db, db)
    url = f"duckdb:///{db}"
    key = create_key(StateStore.for_warehouse(url), "admin", ["admin"])
    old = ENV.get("SEGMENTUM_UPLOAD_MAX_MB")
    ENV["SEGMENTUM_UPLOAD_MAX_MB"] = "1"
    try:
        with serve(url) as (base, _):
            big = b"customer_id,channel,reason\n" + b"C0000001,email,x\n" * 200_000  # 3.4 MB
            r = httpx.post(
                f"{base}/v1/ingest/suppressions",
                files={"file": ("big.csv", big)},
                headers={"X-API-Key": key},
                timeout=120,
            )
            assert r.status_code == 413 and "1 MB" in r.json()["detail"]
            r = httpx.post(
                f"{base}/v1/ingest/suppressions",
                files={"file": ("big.csv", big)},
                headers={"X-API-Key": key, "Accept-Language": "es"},
                timeout=120,
            )
            assert r.status_code == 413 and r.json()["title"] == "File too large"
            assert r.json()["detail"] == "la petición ocupa más de 1 MB", r.json()
            assert r.json()["hint"].startswith("divide el fichero, o sube el ajuste"), r.json()
    finally:
        if old is None:
            ENV.pop("SEGMENTUM_UPLOAD_MAX_MB")
        else:
            ENV["SEGMENTUM_UPLOAD_MAX_MB"] = old


def test_publish_replaces_the_store_atomically_under_a_reader(tmp_path: Path) -> None:
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    wh.write(
        "customer_lookup",
        wh.con.sql("select 'C' || range::varchar as customer_id, range as n from range(1000)"),
    )
    target = serving_path(wh.url)
    assert target == tmp_path / "w.serving.duckdb"
    first = publish(wh, target, {"customer_lookup": "customer_id", "missing": None})
    assert first.tables == {"customer_lookup": 1000}  # a read model a run skipped is left out
    store = ServingStore(target)
    cur = store.cursor()
    assert cur is not None and cur.execute("select count(*) from customer_lookup").fetchone() == (
        1000,
    )
    wh.write("customer_lookup", wh.con.sql("select 'D1' as customer_id, 7 as n"))
    publish(wh, target, {"customer_lookup": "customer_id"}, run_id="r2")
    # The old generation keeps answering whoever still holds its cursor; a new query sees the new.
    assert cur.execute("select count(*) from customer_lookup").fetchone() == (1000,)
    again = store.cursor()
    assert again is not None and again.execute("select n from customer_lookup").fetchall() == [(7,)]
    assert store.info() is not None and store.info()["run_id"] == "r2"  # type: ignore[index]
    # A publish between runs (a history backfill's) names no run: the store still holds that
    # run's results, and says so (it said null).
    publish(wh, target, {"customer_lookup": "customer_id"}, reuse=True)
    assert store.info()["run_id"] == "r2"  # type: ignore[index]
    assert not list(tmp_path.glob(".*.tmp*"))  # nothing left half-written
    wh.close()


def test_a_table_written_sorted_is_copied_in_its_order_and_others_are_sorted(
    tmp_path: Path,
) -> None:
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    rows = "select 'C' || lpad((range * 7919 % 20000)::varchar, 5, '0') as customer_id, range as n"
    wh.write("customer_lookup", wh.con.sql(f"{rows} from range(20000) order by customer_id"))
    wh.write("realtime_history", wh.con.sql(f"{rows} from range(20000)"))  # not sorted
    target = serving_path(wh.url)
    publish(
        wh,
        target,
        {"customer_lookup": "customer_id", "realtime_history": "customer_id"},
        presorted=("customer_lookup",),
    )
    con = duckdb.connect(str(target), read_only=True)
    for table in ("customer_lookup", "realtime_history"):
        ids = [
            r[0] for r in con.execute(f"select customer_id from {table} order by rowid").fetchall()
        ]
        assert len(ids) == 20000 and ids == sorted(ids), table  # a point lookup reads one block
    con.close()
    wh.close()


def test_published_documents_are_the_rows_the_api_built(tmp_path: Path) -> None:
    """The lookup's JSON documents (SQLite, read per request) say what the row did, with NaN
    and infinities as null, dates and timestamps in ISO form, lists as arrays; an unknown key
    is None; a publish without documents removes the old ones."""
    from segmentum.precompute import lookup_row

    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    wh.write(
        "customer_lookup",
        wh.con.sql(
            "select 'C' || range::varchar as customer_id, range as n, "
            "case when range % 3 = 0 then 'nan'::double when range % 3 = 1 then 'inf'::double "
            "else range / 7 end as x, date '2026-01-31' + range::int as d, "
            "timestamp '2026-03-01 10:30:00' as ts, ['a', 'b''c'] as segs, "
            "case when range = 2 then null else 'Zoë \"</script>' end as name from range(50)"
        ),
    )
    target = tmp_path / "w.serving.duckdb"
    publish(
        wh, target, {"customer_lookup": "customer_id"}, documents={"customer_lookup": "customer_id"}
    )
    store = ServingStore(target)
    cur = wh.con.con.cursor()  # the warehouse's rows: the file holds no copy of the lookup
    assert not store.has("customer_lookup")
    assert (store.info() or {})["tables"] == {"customer_lookup": 50}
    for i in range(50):
        doc = store.document("customer_lookup", f"C{i}")
        assert isinstance(doc, str)
        assert json.loads(doc) == lookup_row(cur, "?", f"C{i}")
    assert json.loads(store.document("customer_lookup", "C0"))["x"] is None  # type: ignore[arg-type]
    assert json.loads(store.document("customer_lookup", "C1"))["ts"] == "2026-03-01T10:30:00"  # type: ignore[arg-type]
    assert store.document("customer_lookup", "nobody") is None
    assert store.document("other", "C1") is False
    publish(wh, target, {"customer_lookup": "customer_id"})
    assert not documents_path(target).exists()
    assert store.document("customer_lookup", "C1") is False  # the caller falls back to DuckDB
    fallback = store.cursor()
    assert fallback is not None and lookup_row(fallback, "?", "C1") == lookup_row(cur, "?", "C1")
    wh.close()


def test_publish_copies_from_another_engine_through_arrow(tmp_path: Path) -> None:
    """The generic path (PostgreSQL, Spark on a cluster): rows come over as Arrow. An in-memory
    DuckDB warehouse opened through Ibis's generic route stands in for them here (a local Spark
    session hands Parquet files over instead: tests/test_portability.py)."""
    import ibis

    from segmentum.serving import _copy_through_arrow
    from segmentum.warehouse import Warehouse

    wh = Warehouse(ibis.duckdb.connect(), "other://")
    wh.write("dashboard_cache", wh.con.sql("select 1 as payload"))
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    _copy_through_arrow(wh, con, {"dashboard_cache": None}, tmp_path / "s.duckdb")
    assert con.execute("select payload from dashboard_cache").fetchall() == [(1,)]
    con.close()


def test_another_engine_sends_only_the_dates_of_the_history_that_changed(tmp_path: Path) -> None:
    """Publishing from another engine into the DuckDB store: the next generation starts from
    the last one, keeps the dates of a table kept per date that it holds as the warehouse does
    (same runs, same counts), and receives the new date and a date rerun since; the store
    then holds exactly the warehouse's rows. A read model no longer made leaves the store."""
    import ibis

    from segmentum.warehouse import Warehouse

    wh = Warehouse(ibis.duckdb.connect(), "other://")
    con = wh.con.con
    con.execute(
        "CREATE TABLE customer_classes AS SELECT * FROM (VALUES "
        "('a', DATE '2025-01-01', 'r1', 'high'), ('b', DATE '2025-01-01', 'r1', 'low'), "
        "('a', DATE '2025-01-02', 'r2', 'high'), ('b', DATE '2025-01-02', 'r2', 'low')) "
        "t(customer_id, as_of, run_id, value_tier)"
    )
    con.execute("CREATE TABLE dashboard_cache AS SELECT 1 AS payload")
    target = tmp_path / "s.duckdb"
    models = {"customer_classes": None, "dashboard_cache": None}
    assert publish(wh, target, models).carried == []
    con.execute(
        "UPDATE customer_classes SET run_id = 'r2b', value_tier = 'mid' "
        "WHERE as_of = DATE '2025-01-02' AND customer_id = 'b'"
    )
    con.execute("INSERT INTO customer_classes VALUES ('a', DATE '2025-01-03', 'r3', 'low')")
    con.execute("DROP TABLE dashboard_cache")
    out = publish(wh, target, models)
    assert out.carried == ["customer_classes"] and out.tables == {"customer_classes": 5}
    store = duckdb.connect(str(target), read_only=True)
    query = "SELECT * FROM customer_classes ORDER BY ALL"
    assert store.execute(query).fetchall() == con.execute(query).fetchall()
    tables = {r[0] for r in store.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "dashboard_cache" not in tables
    store.close()


def test_dashboard_histograms_skip_values_that_are_not_numbers(tmp_path: Path) -> None:
    # A model that could not score a customer may leave NaN: the histogram counts the
    # numbers, never crashes on a NaN bound, and a column of NaN alone has no histogram.
    from segmentum.precompute import _histogram

    wh = segmentum.connect(f"duckdb:///{tmp_path / 'h.duckdb'}")
    try:
        t = wh.from_arrow(
            pa.table({"clv": [float("nan"), 0.0, 10.0, 99.0, None], "nan": [float("nan")] * 5}),
            "hist",
        )
        h = _histogram(t, "clv", bins=4, log=True)
        assert sum(h["counts"]) == 3 and h["counts"][0] == 1 and h["counts"][-1] == 1
        assert h["edges"][0] == pytest.approx(0.0) and h["edges"][-1] == pytest.approx(99.0)
        assert _histogram(t, "nan") == {"edges": [], "counts": []}
    finally:
        wh.close()


def test_published_documents_take_about_their_own_size_on_disk(tmp_path: Path) -> None:
    # A lookup document is about 1 KB: on 4 KB pages each row of the WITHOUT ROWID table
    # spilled into an overflow page of its own (4.0 GB for 870,000 customers, 0.9 GB of text).
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        n = 3_000
        wh.write(
            "customer_lookup",
            wh.from_arrow(
                pa.table(
                    {
                        "customer_id": [f"C{i:07d}" for i in range(n)],
                        "note": [("segmento " * 110)[: 900 + i % 200] for i in range(n)],
                    }
                ),
                "lk",
            ),
        )
        target = tmp_path / "serving.duckdb"
        publish(
            wh,
            target,
            {"customer_lookup": "customer_id"},
            documents={"customer_lookup": "customer_id"},
        )
    finally:
        wh.close()
    from segmentum.serving import _bases

    [docs] = _bases(target)  # the documents' base: every row, written whole
    con = sqlite3.connect(docs)
    try:
        text = con.execute("SELECT sum(length(doc)) FROM customer_lookup").fetchone()[0]
        [doc] = con.execute("SELECT doc FROM customer_lookup WHERE k = 'C0000042'").fetchone()
    finally:
        con.close()
    assert json.loads(doc)["customer_id"] == "C0000042"
    assert docs.stat().st_size < 1.5 * text, (docs.stat().st_size, text)


def test_a_days_publish_writes_again_only_the_documents_whose_customer_changed(
    tmp_path: Path,
) -> None:
    """Every day moves every customer's recency and scores, nothing else for most of them: the
    documents keep those columns apart (written whole) and keep the rest in a base written
    whole once, read where it lies; a day writes only the rows changed since the base (a
    purchase, a new class, a new customer; a gone one is marked). What a reader gets is the
    whole row as the API built it, in the row's column order. When most rows changed (a
    refit), the columns did, or a customer is erased, a new base is written and the old one
    deleted."""
    import sqlite3

    from segmentum.precompute import lookup_row
    from segmentum.serving import _bases, _hashes_path, documents_path

    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    sql = (
        "select 'C' || range::varchar as customer_id, range % 4 as tier, "
        "'Zoë \"</script>' as name, [range::varchar] as segs, {day} - range::int as recency_days, "
        "1.0 / ({day} + range) as clv, date '2026-01-01' + {day}::int as as_of from range(40)"
    )
    wh.write("customer_lookup", wh.con.sql(sql.format(day=10)))
    target = tmp_path / "w.serving.duckdb"
    specs, docs = {"customer_lookup": "customer_id"}, {"customer_lookup": "customer_id"}
    daily = {"customer_lookup": ("recency_days", "clv", "as_of")}
    publish(wh, target, specs, documents=docs, daily=daily)
    path = documents_path(target)

    def base() -> Path:
        con = sqlite3.connect(path)
        [(name,)] = con.execute("select file from _base where name = 'customer_lookup'")
        con.close()
        [only] = _bases(target)  # the others were deleted
        assert only.name == name
        return only

    def delta() -> set[str]:
        con = sqlite3.connect(path)
        keys = {str(r[0]) for r in con.execute("select k from customer_lookup__delta")}
        con.close()
        return keys

    first = base()
    # Stamp the documents where they lie, in the base: rows read from the delta lack it.
    con = sqlite3.connect(first)
    con.execute("update customer_lookup set doc = replace(doc, '\"tier\"', '\"kept\"')")
    con.commit()
    con.close()
    assert delta() == set()
    # The next day: every recency and CLV moves; C3 changes tier, C40 arrives.

    def day(n: int, leaving: int = -1) -> str:
        moved = sql.format(day=n).replace("range(40)", f"range(41) where range <> {leaving}")
        return moved.replace(
            "range % 4 as tier", "case when range = 3 then 9 else range % 4 end as tier"
        )

    nxt = day(11)
    wh.write("customer_lookup", wh.con.sql(nxt))
    publish(wh, target, specs, documents=docs, daily=daily)
    store = ServingStore(target)
    cur = wh.con.con.cursor()  # the warehouse's rows, which the documents must say
    for i in range(41):
        doc = store.document("customer_lookup", f"C{i}")
        assert isinstance(doc, str)
        got = json.loads(doc.replace('"kept"', '"tier"'))
        assert got == lookup_row(cur, "?", f"C{i}"), i
        assert list(got) == [c for c in wh.table("customer_lookup").columns], i  # in order
        assert got["recency_days"] == 11 - i and got["as_of"] == "2026-01-12"
        # From the delta: the changed and the new customer only; the others from the base.
        assert ('"kept"' in doc) == (i not in (3, 40)), i
    assert base() == first and delta() == {"C3", "C40"}
    # A day later: the delta holds every change since the base, not since yesterday.
    wh.write(
        "customer_lookup",
        wh.con.sql(day(12).replace("'Zoë", "case when range = 5 then 'Zoe' else 'Zoë' end || '")),
    )
    publish(wh, target, specs, documents=docs, daily=daily)
    assert base() == first and delta() == {"C3", "C5", "C40"}
    doc = store.document("customer_lookup", "C5")
    assert isinstance(doc, str) and json.loads(doc) == lookup_row(cur, "?", "C5")
    # The base's keys and hashes lie beside it, what a day compares with; a base without
    # them (an older store's) is read for them.
    hashes = _hashes_path(first)
    assert hashes.is_file()
    hashes.unlink()
    # C39 leaves: marked gone in the delta, the base kept.
    wh.write("customer_lookup", wh.con.sql(day(13, leaving=39)))
    publish(wh, target, specs, documents=docs, daily=daily)
    assert store.document("customer_lookup", "C39") is None
    assert base() == first and delta() == {"C3", "C39", "C40"}  # C5 as it was again
    # Erased (segmentum forget): every document written anew, no file keeps theirs.
    publish(wh, target, specs, documents=docs, daily=daily, documents_anew=True)
    assert store.document("customer_lookup", "C39") is None
    rebased = base()
    assert rebased != first and not first.exists() and delta() == set()
    assert _hashes_path(rebased).is_file()
    con = sqlite3.connect(rebased)
    assert con.execute("select count(*) from customer_lookup where k = 'C39'").fetchone() == (0,)
    con.close()
    first = rebased
    # Most customers changed (a refit moves everybody's potential): a new base, written whole.
    most = nxt.replace("' as name", "!' as name")
    assert most != nxt
    wh.write("customer_lookup", wh.con.sql(most))
    publish(wh, target, specs, documents=docs, daily=daily)
    second = base()
    assert second != first and not first.exists() and delta() == set()
    assert not _hashes_path(first).exists() and _hashes_path(second).is_file()
    doc = store.document("customer_lookup", "C5")
    assert isinstance(doc, str) and json.loads(doc) == lookup_row(cur, "?", "C5")
    # A column more (a new version of the lookup): every document written again.
    wh.write("customer_lookup", wh.con.sql(f"select *, 1 as extra from ({most})"))
    publish(wh, target, specs, documents=docs, daily=daily)
    doc = store.document("customer_lookup", "C5")
    assert isinstance(doc, str) and json.loads(doc)["extra"] == 1
    assert base() != second and not second.exists()
    con = sqlite3.connect(base())
    assert con.execute("select count(*) from customer_lookup").fetchone() == (41,)
    con.close()
    con = sqlite3.connect(path)
    assert con.execute("select count(*) from customer_lookup__daily").fetchone() == (41,)
    con.close()
    # A publish without documents leaves none behind, base included.
    publish(wh, target, specs)
    assert not path.exists() and _bases(target) == []
    assert list(tmp_path.glob("*.parquet")) == []  # nor their hashes
    assert store.document("customer_lookup", "C5") is False
    wh.close()


def test_a_daily_publish_copies_only_the_dates_that_changed(tmp_path: Path) -> None:
    """Tables kept per date (a snapshot a run) start from the last generation and get only
    their changed dates; the store always equals the warehouse, old readers keep their
    generation, and the file does not grow with the publishes."""
    import datetime as dt

    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    target = serving_path(wh.url)
    assert target is not None
    specs = {"customer_lookup": "customer_id", "customer_classes": None}
    day0 = dt.date(2025, 1, 1)

    def snapshot(day: dt.date, run: str, n: int = 20_000) -> Any:
        return wh.con.sql(
            f"select 'C' || range::varchar as customer_id, DATE '{day}' as as_of, "
            f"'{run}' as run_id, (range % 3)::varchar as tier from range({n})"
        )

    def rows(cur: Any, table: str) -> list[tuple[Any, ...]]:
        return sorted(cur.execute(f"select * from {table}").fetchall(), key=str)

    def same_as_warehouse(store: ServingStore) -> None:
        cur = store.cursor()
        assert cur is not None
        for table in specs:
            want = sorted(wh.con.con.execute(f"select * from {table}").fetchall(), key=str)
            assert rows(cur, table) == want, table

    store = ServingStore(target)
    sizes = []
    for i in range(6):
        day = day0 + dt.timedelta(days=i)
        wh.write(
            "customer_lookup",
            wh.con.sql(f"select 'C' || range::varchar as customer_id, {i} as n from range(20000)"),
        )
        wh.replace_where("customer_classes", snapshot(day, f"run{i}"), "as_of", day)
        if i == 3:  # a rerun of an earlier day, and a day taken away
            wh.replace_where("customer_classes", snapshot(day0, "rerun", 500), "as_of", day0)
            wh.con.raw_sql(
                f"delete from customer_classes where as_of = DATE '{day0 + dt.timedelta(days=1)}'"
            )
        old = store.cursor()
        before = rows(old, "customer_classes") if old is not None else []
        out = publish(wh, target, specs, run_id=f"run{i}")
        # One Parquet file a date (_publish_dated): a new day writes its own date only, a rerun
        # writes that date again; the days kept are carried (day 3: day 2's file).
        assert out.carried == ([] if i == 0 else ["customer_classes"])
        written = {p.name for p in _dated_folder(target).glob("customer_classes.*.parquet")}
        # The files this generation reads, and those the one before read (a reader may still
        # hold it); none older.
        assert len(written) <= len(
            {d for d, _ in wh.run_sql("select distinct as_of, run_id from customer_classes")}
        ) + (2 if i >= 3 else 1)
        same_as_warehouse(store)
        if old is not None:  # the reader of the last generation still sees it whole
            assert rows(old, "customer_classes") == before
        sizes.append(target.stat().st_size)
        idx = (
            store.cursor()
            .execute(  # type: ignore[union-attr]
                "select count(*) from duckdb_indexes() where table_name = 'customer_lookup'"
            )
            .fetchone()
        )
        assert idx == (1,)  # the lookup is indexed on its key in every generation
    fresh = tmp_path / "fresh.serving.duckdb"
    publish(wh, fresh, specs)
    assert sizes[-1] < 2.5 * fresh.stat().st_size, (sizes, fresh.stat().st_size)
    # A history backfill replaces every date: every date's file written again; the old ones
    # are deleted a publish later.
    wh.con.raw_sql("update customer_classes set run_id = run_id || '-backfill'")
    out = publish(wh, target, specs)
    assert "customer_classes" not in out.carried
    same_as_warehouse(store)
    assert target.stat().st_size <= 1.1 * sizes[-1], (target.stat().st_size, sizes)
    dates = len(wh.run_sql("select distinct as_of from customer_classes"))
    assert len(list(_dated_folder(target).glob("*.parquet"))) == 2 * dates
    publish(wh, target, specs)
    assert len(list(_dated_folder(target).glob("*.parquet"))) == dates
    # Other columns than the last generation's: copied whole.
    wh.write("customer_classes", wh.table("customer_classes").mutate(extra=1))
    out = publish(wh, target, specs)
    assert out.carried == []
    cur = ServingStore(target).cursor()
    assert cur is not None and "extra" in [
        d[0] for d in cur.execute("select * from customer_classes limit 1").description
    ]
    wh.close()


def test_a_store_holding_its_history_in_the_file_is_written_anew(tmp_path: Path) -> None:
    """A serving store published before the history went into dated Parquet files holds it in
    the file: the next publish writes a new file (dropped there, the tables' space would be
    copied with every generation), with the history as files, and readers see the same rows."""
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    wh.write(
        "customer_classes",
        wh.con.sql(
            "select 'C' || range::varchar as customer_id, DATE '2025-01-01' + (range % 3)::int "
            "as as_of, 'r' || (range % 3)::varchar as run_id, range % 5 as tier "
            "from range(60000)"
        ),
    )
    target = tmp_path / "w.serving.duckdb"
    specs = {"customer_classes": None}
    publish(wh, target, specs)
    # As an older version left it: the history in the file, no Parquet files.
    con = duckdb.connect(str(target))
    con.execute("create table h as select * from customer_classes")
    con.execute("drop view customer_classes")
    con.execute("alter table h rename to customer_classes")
    con.close()
    shutil.rmtree(_dated_folder(target))
    old_size = target.stat().st_size
    out = publish(wh, target, specs)
    assert out.carried == [] and out.tables == {"customer_classes": 60000}
    assert target.stat().st_size < old_size
    assert len(list(_dated_folder(target).glob("customer_classes.*.parquet"))) == 3
    cur = ServingStore(target).cursor()
    assert cur is not None
    query = "select * from customer_classes order by all"
    assert cur.execute(query).fetchall() == wh.con.con.execute(query).fetchall()
    kinds = cur.execute(
        "select table_type from information_schema.tables where table_name = 'customer_classes'"
    ).fetchall()
    assert kinds == [("VIEW",)]
    wh.close()


def test_a_command_that_changed_little_keeps_what_the_store_already_holds(tmp_path: Path) -> None:
    """A history backfill or the market publishes with ``reuse``: the tables whose rows the
    serving store holds already stay there (the lookup and its documents untouched: 12 GB at
    100M lines), the changed ones come over, and a table changed behind the store's back is
    copied and its documents written again."""
    import datetime as dt

    from segmentum.serving import documents_path

    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    wh.write(
        "customer_lookup",
        wh.con.sql("select 'C' || range::varchar as customer_id, range as n from range(3000)"),
    )
    wh.write("market_cells", wh.con.sql("select range as cell, 1.5 as share from range(10)"))

    def snapshot(day: dt.date) -> Any:
        return wh.con.sql(
            f"select 'C' || range::varchar as customer_id, DATE '{day}' as as_of, "
            f"'run' as run_id, (range % 3)::varchar as tier from range(3000)"
        )

    wh.replace_where(
        "customer_classes", snapshot(dt.date(2025, 6, 1)), "as_of", dt.date(2025, 6, 1)
    )
    target = tmp_path / "w.serving.duckdb"
    specs = {"customer_lookup": "customer_id", "customer_classes": None, "market_cells": None}
    docs = {"customer_lookup": "customer_id"}
    publish(wh, target, specs, documents=docs)
    inode = documents_path(target).stat().st_ino
    store = ServingStore(target)
    # A backfill adds past snapshots; the market changes its cells.
    past = dt.date(2025, 1, 1)
    wh.replace_where("customer_classes", snapshot(past), "as_of", past)
    wh.write("market_cells", wh.con.sql("select range as cell, 2.5 as share from range(12)"))
    out = publish(wh, target, specs, documents=docs, reuse=True)
    assert sorted(out.carried) == ["customer_classes", "customer_lookup"]
    assert documents_path(target).stat().st_ino == inode  # the documents were not written
    cur = store.cursor()
    assert cur is not None
    for table in set(specs) - {"customer_lookup"}:  # the lookup is published as documents only
        want = sorted(wh.con.con.execute(f"select * from {table}").fetchall(), key=str)
        assert sorted(cur.execute(f"select * from {table}").fetchall(), key=str) == want, table
    assert json.loads(store.document("customer_lookup", "C7"))["n"] == 7  # type: ignore[arg-type]
    assert not store.has("customer_lookup") and out.tables["customer_lookup"] == 3000
    # The lookup changed without a publish (one row): copied, and its documents written again.
    wh.con.raw_sql("update customer_lookup set n = -1 where customer_id = 'C7'")
    out = publish(wh, target, specs, documents=docs, reuse=True)
    assert "customer_lookup" not in out.carried
    assert documents_path(target).stat().st_ino != inode
    assert json.loads(store.document("customer_lookup", "C7"))["n"] == -1  # type: ignore[arg-type]
    # A column more, the same rows otherwise: written again too (the documents say it).
    wh.con.raw_sql("alter table customer_lookup add column extra integer default 1")
    out = publish(wh, target, specs, documents=docs, reuse=True)
    assert "customer_lookup" not in out.carried
    assert json.loads(store.document("customer_lookup", "C7"))["extra"] == 1  # type: ignore[arg-type]
    wh.close()


def _invoices_by_customer(
    tmp_path: Path, columns: str, rows: int
) -> tuple[Warehouse, Path, dict[str, str | None]]:
    """A warehouse whose ``customer_invoices`` (three a customer, with ``columns``) the serving
    store keeps by customer: the warehouse, its store's path and the publish's specs."""
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    target = serving_path(wh.url)
    assert target is not None
    wh.write(
        "customer_invoices",
        wh.con.sql(
            "select 'C' || (range // 3)::varchar as customer_id, range as invoice, "
            f"{columns} from range({rows})"
        ),
    )
    return wh, Path(target), {"customer_invoices": "customer_id"}


def test_a_table_synced_by_key_is_kept_in_parts_that_read_as_the_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Customer invoices synced by key: the store keeps a sorted base, the rows of the keys
    changed since (recent) and those keys, behind a view of the table's name. Day by day only
    recent is rewritten; the view always equals the warehouse (a changed customer's rows
    replaced, a new one added, one whose rows went); once recent outgrows its share of base,
    the table is copied whole again. Every part is indexed on the key."""
    from segmentum import serving

    # Recent may hold 15 rows beside base's 3,000 (a day adds 4): copied whole on day 4.
    monkeypatch.setattr(serving, "RECENT_SHARE", 0.005)
    wh, target, specs = _invoices_by_customer(tmp_path, "0 as day", 3000)
    out = publish(wh, target, specs, run_id="r0", keyed={"customer_invoices": None})
    store = ServingStore(target)

    def parts() -> dict[str, int]:
        cur = store.cursor()
        assert cur is not None
        return {
            p: cur.execute(f"select count(*) from customer_invoices__{p}").fetchone()[0]  # type: ignore[index]
            for p in ("base", "recent", "keys")
        }

    assert out.carried == [] and parts() == {"base": 3000, "recent": 0, "keys": 0}
    base = 3000
    last, since, copies = "r0", 0, []
    for day in range(1, 9):
        changed = [f"C{day * 7}", f"C{day * 7 + 1}", f"N{day}"]  # N: a new customer
        ids = ", ".join(f"'{c}'" for c in changed)
        wh.con.raw_sql(f"delete from customer_invoices where customer_id in ({ids})")
        wh.con.raw_sql(
            "insert into customer_invoices select customer_id, 100000 * ? + range, ? "
            f"from (values {', '.join(f'({c!r})' for c in changed[:1] + changed[2:])}) "
            "as c(customer_id), range(2)".replace("?", str(day))
        )  # changed[1] lost its rows: its key is changed, it has none now
        keys = wh.materialize(wh.con.sql(f"select unnest([{ids}]) as customer_id"), "keys")
        run = f"r{day}"
        out = publish(
            wh, target, specs, run_id=run, keyed={"customer_invoices": keys}, base_run=last
        )
        last = run
        cur = store.cursor()
        assert cur is not None
        want = sorted(wh.con.con.execute("select * from customer_invoices").fetchall())
        assert sorted(cur.execute("select * from customer_invoices").fetchall()) == want, day
        got = cur.execute(
            "select invoice from customer_invoices where customer_id = ? order by 1", [changed[0]]
        ).fetchall()
        assert got == [(100000 * day,), (100000 * day + 1,)]
        sizes, since = parts(), since + 1
        if out.carried:  # synced: base untouched, recent holds the changed keys' rows
            assert out.carried == ["customer_invoices"] and sizes["base"] == base
            assert sizes["keys"] == 3 * since and sizes["recent"] == 4 * since
        else:  # copied whole again: base is the warehouse's table, recent empty
            assert sizes == {"base": len(want), "recent": 0, "keys": 0}
            copies.append(day)
            since = 0
        base = sizes["base"]
    assert copies == [4, 8]
    cur = store.cursor()
    assert cur is not None
    indexed = {r[0] for r in cur.execute("select table_name from duckdb_indexes()").fetchall()}
    assert indexed == {f"customer_invoices__{p}" for p in ("base", "recent", "keys")}
    # A publish that follows another run (or none): copied whole, in parts.
    out = publish(wh, target, specs, run_id="other", keyed={"customer_invoices": None})
    assert out.carried == [] and parts()["recent"] == 0
    wh.close()


def test_a_table_kept_in_parts_copied_whole_again_leaves_no_old_copy_in_the_file(
    tmp_path: Path,
) -> None:
    """A table kept in parts is copied whole again when recent outgrows its share (about
    weekly) or a run follows another: the new generation starts as a copy of the last file,
    and its old parts' space must be freed before the new ones are written, or the file
    holds both (30 MB -> 60 MB here)."""
    wh, target, specs = _invoices_by_customer(
        tmp_path, "range * 1.5 as amount, 'x' || range::varchar as note", 400_000
    )
    sizes = []
    for run in range(3):
        out = publish(wh, target, specs, run_id=f"r{run}", keyed={"customer_invoices": None})
        assert out.carried == []
        sizes.append(Path(target).stat().st_size)
    assert max(sizes) <= 1.1 * sizes[0], sizes
    cur = ServingStore(target).cursor()
    assert cur is not None
    want = wh.con.con.execute("select sum(invoice), count(*) from customer_invoices").fetchall()
    assert cur.execute("select sum(invoice), count(*) from customer_invoices").fetchall() == want
    wh.close()
