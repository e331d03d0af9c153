"""The serving store in PostgreSQL: read models published from a warehouse into a new schema
per generation, switched atomically, read by the service through a small pool as from the
DuckDB store; errors name the setting. Runs on the session's real PostgreSQL server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.conftest import SERVICE_SETTINGS, _free_port

import segmentum
from segmentum import i18n
from segmentum.errors import ConfigError, WarehouseError
from segmentum.page_models import PAGE_MODELS
from segmentum.precompute import DOCUMENTS, LOOKUP, READ_MODELS, overview
from segmentum.serving import ServingStore, publish, serving_path
from segmentum.serving_postgres import PostgresServingStore
from segmentum.warehouse import Warehouse

pytestmark = pytest.mark.postgres
MODELS = {**READ_MODELS, **PAGE_MODELS}


@pytest.fixture(scope="module")
def stores(
    service_db: Path, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A private copy of the demo warehouse with its read models published twice: into a
    DuckDB file and into a PostgreSQL database (the module's tests only read them)."""
    import psycopg

    root = tmp_path_factory.mktemp("pg-serving")
    db = root / "shop.duckdb"
    shutil.copyfile(service_db, db)
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con:
        con.execute("CREATE DATABASE serving_module")
    pg = f"{postgres_server.replace('postgres://', 'postgresql://')}/serving_module"
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        duck_out = publish(wh, root / "shop.serving.duckdb", MODELS, documents=DOCUMENTS)
        pg_out = publish(wh, pg, MODELS, run_id="r1", documents=DOCUMENTS)
        ids = [
            str(r[0])
            for r in wh.con.con.execute(
                f"SELECT customer_id FROM {LOOKUP} ORDER BY customer_id"
            ).fetchall()
        ]
    finally:
        wh.close()
    yield {
        "db": db,
        "pg": pg,
        "duck_path": root / "shop.serving.duckdb",
        "duck_out": duck_out,
        "pg_out": pg_out,
        "ids": ids,
    }


def test_the_postgres_store_holds_what_the_duckdb_store_holds(stores: dict[str, Any]) -> None:
    """Every read model with the same rows; each customer's JSON document the same text; the
    overview, segment members and campaign results the same through Ibis."""
    duck, pg = ServingStore(stores["duck_path"]), ServingStore(stores["pg"])
    assert isinstance(pg, PostgresServingStore)
    assert stores["pg_out"].tables == stores["duck_out"].tables
    assert stores["pg_out"].tables[LOOKUP] == 800
    info = pg.info()
    assert info is not None and info["run_id"] == "r1" and info["tables"] == stores["pg_out"].tables
    for cid in stores["ids"][::40]:
        doc = pg.document(LOOKUP, cid)
        assert isinstance(doc, str) and doc == duck.document(LOOKUP, cid), cid
    assert pg.document(LOOKUP, "nobody") is None
    assert pg.document("dashboard_cache", "x") is False  # published without documents
    assert pg.read(overview) == duck.read(overview)

    def rows(name: str, *order: str) -> Any:
        def fn(wh: Warehouse) -> Any:
            t = wh.table(name)
            return t.order_by(*order).to_pandas()

        return fn

    for name, order in (
        ("segment_members", ("as_of", "segment", "customer_id")),
        ("campaign_results", tuple()),
        ("customer_invoices", ("customer_id", "invoice_id")),
    ):
        duck_rows = duck.read(rows(name, *(order or _all_columns(duck, name))))
        pg_rows = pg.read(rows(name, *(order or _all_columns(duck, name))))
        assert duck_rows is not None and pg_rows is not None
        assert len(pg_rows) == len(duck_rows) > 0, name
        assert list(pg_rows.columns) == list(duck_rows.columns), name
        for col in duck_rows.columns:
            a, b = duck_rows[col].tolist(), pg_rows[col].tolist()
            assert [str(x) for x in a] == [str(x) for x in b], (name, col)


def _all_columns(store: ServingStore, name: str) -> tuple[str, ...]:
    cols = store.read(lambda wh: tuple(wh.table(name).columns))
    assert cols is not None
    return cols


def _signed_in(app: Any) -> tuple[dict[str, str], dict[str, str]]:
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session

    svc = app.state.svc
    key = create_key(svc.state, "admin", ["admin"])
    session = create_session(svc.sessions, key)
    assert session is not None
    return {"X-API-Key": key}, {SESSION_COOKIE: session.sid}


def test_the_service_answers_from_postgres_as_from_duckdb(stores: dict[str, Any]) -> None:
    """The same app on the same warehouse, once reading each store, while another process
    holds the warehouse (a run): lookups, the overview, the serving info, and the dashboard's
    explorer (segment members) and campaigns pages answer from the published copy, alike."""
    from segmentum.service.app import create_app

    db, ids = stores["db"], stores["ids"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    answers = {}
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for kind, target in (("duckdb", str(stores["duck_path"])), ("pg", stores["pg"])):
            settings = SERVICE_SETTINGS.with_overrides(serving_store=target, busy_wait_seconds=0.1)
            app = create_app(f"duckdb:///{db}", settings)
            head, cookies = _signed_in(app)
            with TestClient(app) as http:
                got: dict[str, Any] = {
                    cid: http.get(f"/v1/customers/{cid}", headers=head).json() for cid in ids[:3]
                }
                got["nobody"] = http.get("/v1/customers/nobody", headers=head).status_code
                got["overview"] = http.get("/v1/overview", headers=head).json()
                serving = http.get("/v1/serving", headers=head).json()
                assert serving["published"] and serving["tables"][LOOKUP] == 800
                for page in ("/dashboard/explorer?segment=vip", "/dashboard/campaigns"):
                    resp = http.get(page, cookies=cookies)
                    assert resp.status_code == 200, (kind, page)
                    assert 'id="published-note"' in resp.text, (kind, page)  # the published copy
                    got[page] = _visible_text(resp.text)
            answers[kind] = got
        # The store going away while the service runs: a 503 to retry, naming the setting.
        closed = f"postgresql://segmentum@127.0.0.1:{_free_port()}/shop"
        app = create_app(f"duckdb:///{db}", SERVICE_SETTINGS.with_overrides(serving_store=closed))
        head, _ = _signed_in(app)
        with TestClient(app) as http:
            down = http.get(f"/v1/customers/{ids[0]}", headers=head)
        assert down.status_code == 503 and down.headers["Retry-After"] == "5", down.text
        assert "cannot reach the serving store" in down.json()["detail"]
    finally:
        holder.communicate("", timeout=30)
    assert answers["pg"] == answers["duckdb"]
    assert answers["pg"]["nobody"] == 404
    assert answers["pg"][ids[0]]["customer_id"] == ids[0]


def _visible_text(html: str) -> str:
    """A page's text without its per-session tokens and the time it was published."""
    html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    html = re.sub(r'name="csrf[^"]*" content="[^"]*"', "", html)
    text = re.sub(r"<[^>]+>", " ", html)
    text = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?(\.\d+)?", "TIME", text)
    # The published note's time as the page writes it ("5 dic 2026 19:40 (UTC)"): the two
    # stores are published a minute apart on a busy machine.
    text = re.sub(r"\d{1,2}:\d{2} \(UTC\)", "TIME (UTC)", text)
    return " ".join(text.split())


def test_a_daily_publish_sends_only_the_dates_of_the_history_that_changed(
    service_db: Path, postgres_url: str, tmp_path: Path
) -> None:
    """The tables kept per date (classes, CLV, clusters, segment members) grow by a snapshot
    a run: the next generation copies the dates the last one holds inside PostgreSQL and is
    sent only the new date, a date rerun since (another run id) and any table whose columns
    changed; what readers see equals the warehouse, date by date and row by row."""
    from segmentum.serving import DATED

    db = tmp_path / "shop.duckdb"
    shutil.copyfile(service_db, db)
    pg = postgres_url.replace("postgres://", "postgresql://")
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        first = publish(wh, pg, MODELS, run_id="r1", documents=DOCUMENTS)
        assert first.carried == []
        con = wh.con.con
        for table in ("customer_classes", "customer_clusters", "customer_clv"):
            (last,) = con.execute(f"SELECT max(as_of) FROM {table}").fetchone() or (None,)
            con.execute(  # the next day's snapshot
                f"INSERT INTO {table} SELECT * REPLACE (as_of + 1 AS as_of, 'r2' AS run_id) "
                f"FROM {table} WHERE as_of = ?",
                [last],
            )
        # the clusters' earliest date rerun (another run id), the CLV given a column
        con.execute(
            "UPDATE customer_clusters SET run_id = 'again' WHERE as_of = (SELECT "
            "min(as_of) FROM customer_clusters)"
        )
        con.execute("ALTER TABLE customer_clv ADD COLUMN uplift DOUBLE DEFAULT 1.5")
        second = publish(wh, pg, MODELS, run_id="r2", documents=DOCUMENTS)
        # the clusters' only earlier date was rerun: nothing of theirs to carry
        assert set(second.carried) == {"customer_classes", "segment_members"}
        store = ServingStore(pg)
        for table in DATED:
            if not wh.has(table):
                continue
            cols = [c for c in wh.table(table).columns]
            want = wh.table(table).execute().sort_values(cols).reset_index(drop=True)
            got = store.read(lambda w, t=table: w.table(t).execute())
            assert got is not None and second.tables[table] == len(want) == len(got), table
            got = got[cols].sort_values(cols).reset_index(drop=True)
            pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=table)
        store.close()
    finally:
        wh.close()


def test_a_reader_sees_whole_generations_while_publishes_run(postgres_url: str) -> None:
    """A PostgreSQL warehouse publishes into its own database three times while a reader thread
    reads continuously: every read sees one generation (its run id matches all its rows in
    two tables); a generation a reader holds outlives two publishes, then goes."""
    import psycopg

    wh = segmentum.connect(postgres_url)
    store_url = postgres_url.replace("postgres://", "postgresql://") + "/shop"
    store = ServingStore(store_url)
    assert store.read(lambda wh: 1) is None and store.document("a", "x") is False

    def publish_generation(g: int) -> None:
        for name in ("a", "b"):
            wh.con.raw_sql(f'DROP TABLE IF EXISTS "{name}"')
            wh.con.raw_sql(
                f"CREATE TABLE {name} AS SELECT 'K' || i AS k, {g} AS g, "
                f"ARRAY['x', 'y\"' || i] AS tags FROM generate_series(1, {100 * g}) AS i"
            )
        publish(wh, store_url, {"a": "k", "b": None}, run_id=f"r{g}", documents={"a": "k"})

    def snapshot(w: Warehouse) -> tuple[str, set[int], int, set[int], int]:
        run = w.table("_published").to_pyarrow().column("run_id")[0].as_py()
        a, b = w.table("a").to_pyarrow(), w.table("b").to_pyarrow()
        return run, set(a.column("g").to_pylist()), len(a), set(b.column("g").to_pylist()), len(b)

    publish_generation(1)
    seen: list[tuple[str, set[int], int, set[int], int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_reading() -> None:
        try:
            while not stop.is_set():
                got = store.read(snapshot)
                assert got is not None
                seen.append(got)
                assert store.document("a", "K1") is not None
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        for g in range(2, 5):
            publish_generation(g)
    finally:
        stop.set()
        reader.join(30)
    assert not errors, errors
    assert len({s[0] for s in seen}) >= 2  # the reader saw the generations change
    for run, a_gens, a_rows, b_gens, b_rows in seen:
        g = int(run[1:])
        assert (a_gens, a_rows, b_gens, b_rows) == ({g}, 100 * g, {g}, 100 * g), run

    # A reader in the middle of a read keeps its generation through two publishes.
    entered, release = threading.Event(), threading.Event()
    held: list[Any] = []

    def slow(w: Warehouse) -> Any:
        first = snapshot(w)
        entered.set()
        release.wait(30)
        return first, snapshot(w)

    slow_reader = threading.Thread(target=lambda: held.append(store.read(slow)))
    slow_reader.start()
    assert entered.wait(30)
    publish_generation(5)
    publish_generation(6)
    with psycopg.connect(postgres_url) as con:
        schemas = {r[0] for r in con.execute("SELECT nspname FROM pg_namespace").fetchall()}
    assert {"shop_g4", "shop_g5", "shop_g6"} <= schemas  # g4 held: not dropped yet
    assert not {"shop_g1", "shop_g2", "shop_g3"} & schemas  # older ones went
    release.set()
    slow_reader.join(30)
    assert held[0][0] == held[0][1] and held[0][0][0] == "r4"
    publish_generation(7)
    with psycopg.connect(postgres_url) as con:
        rows = con.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shop_g%'")
        assert {r[0] for r in rows.fetchall()} == {"shop_g6", "shop_g7"}
    doc = store.document("a", "K3")
    assert isinstance(doc, str) and '"tags":["x","y\\"3"]' in doc and '"g":7' in doc
    assert store.read(lambda w: w.table("a").tags.to_pyarrow().to_pylist()[0]) == ["x", 'y"1']
    info = store.info()
    assert info is not None and info["generation"] == 7 and info["run_id"] == "r7"
    # The server closes the pool's idle connections (a restart): the next reads reconnect.
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert store.document("a", "K3") == doc and store.has("b")
    wh.close()


def test_an_unreachable_store_or_a_refused_login_is_one_line_naming_the_setting(
    postgres_server: str, service_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segmentum.cli import main

    closed = f"postgresql://segmentum:s3cret@127.0.0.1:{_free_port()}/shop"
    with pytest.raises(WarehouseError) as unreachable:
        _ = ServingStore(closed).published
    said = unreachable.value.message
    assert said.startswith("cannot reach the serving store postgresql://segmentum:***@127.0.0.1")
    assert "(setting serving_store)" in said and "s3cret" not in said and "\n" not in said
    assert "SEGMENTUM_SERVING_STORE" in (unreachable.value.hint or "")
    spanish = i18n.translate_message("es", said)
    assert spanish.startswith("no se puede conectar con el almacén de servicio"), spanish
    assert "ajuste serving_store" in spanish
    assert i18n.translate_message("es", unreachable.value.hint) != unreachable.value.hint

    stranger = postgres_server.replace("postgres://segmentum@", "postgresql://nobody@") + "/x"
    with pytest.raises(WarehouseError) as refused:
        publish(segmentum.connect("duckdb://"), stranger, {"customer_lookup": "customer_id"})
    assert "(setting serving_store) refused the login" in refused.value.message
    assert 'role "nobody" does not exist' in refused.value.message
    assert i18n.translate_message("es", refused.value.message).startswith("el almacén de servicio")

    with pytest.raises(ConfigError, match=r"the serving_store setting .* is not postgresql://"):
        ServingStore(f"{closed}/Not-A-Name")

    # `segmentum serve` stops before listening, with the one line and the warehouse exit code.
    db = tmp_path / "shop.duckdb"
    shutil.copyfile(service_db, db)
    code = main(["serve", "-w", f"duckdb:///{db}", "--serving", closed, "--port", "1"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "cannot reach the serving store" in err and "Traceback" not in err, err
    assert serving_path(f"duckdb:///{db}", closed) == closed
