"""Shared fixtures: real DuckDB files, a real local Spark session, a real PostgreSQL server,
small readable data files."""

from __future__ import annotations

import os

# One thread per numeric library, set before numpy and scikit-learn load (the CLI and server
# processes the tests start inherit it). The tests run beside servers and subprocesses on two
# cores, where OpenMP's spinning threads made a 2 s gradient-boosting fit take 34 s.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Spark tuned for the tests' small data (and inherited by the CLI processes they start): a
# JVM that stops at the quick JIT tier and no whole-stage code generation spend seconds less
# compiling per query than they lose running it on a few thousand rows (the Spark feature test
# took 130 s with the defaults and 44 s with these); one shuffle partition for a few rows.
os.environ.setdefault(
    "SEGMENTUM_SPARK_CONF",
    "spark.sql.codegen.wholeStage=false;spark.sql.shuffle.partitions=1;"
    "spark.sql.adaptive.enabled=false;"
    "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
)

import contextlib
import functools
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import pandas as pd
import pytest

import segmentum
from segmentum import demo, pipeline
from segmentum.config import load_settings
from segmentum.history.snapshots import backfill
from segmentum.precompute import publish_read_models
from segmentum.service.app import create_app
from segmentum.service.auth import create_key
from segmentum.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
# Pipeline runs in tests skip clustering unless a test asks for it (tests/test_segments.py does).
os.environ.setdefault("SEGMENTUM_DISCOVER_SEGMENTS", "false")
# ...and fit one purchase model instead of choosing among three on a holdout (the choice is
# tested directly in tests/test_models.py and tests/test_model_truth.py; on a busy two-core
# machine it multiplies the CLV step's time by about ten).
os.environ.setdefault("SEGMENTUM_PURCHASE_MODEL", "MBG/NBD")
# The CDNOW logs ship with the tests (public data, see tests/data/cdnow/README.md).
CDNOW = ROOT / "tests" / "data" / "cdnow"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-spark",
        action="store_true",
        help="run every test on the local Spark session, not only those marked spark_core",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test`` runs Spark on one test per layer (marked ``spark_core``: ingest, features
    and classes, read models); ``make test-spark`` (``--all-spark``, CI runs it next) the
    other Spark cases. A Spark query on test-sized data costs seconds of planning: those cases
    take about 8 minutes on two cores."""
    if config.getoption("--all-spark"):
        return
    kept: list[pytest.Item] = []
    skipped: list[pytest.Item] = []
    for item in items:
        spark = item.get_closest_marker("spark") and not item.get_closest_marker("spark_core")
        (skipped if spark else kept).append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = kept


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    """A fresh warehouse in a real DuckDB file."""
    w = segmentum.connect(f"duckdb:///{tmp_path / 'test.duckdb'}")
    yield w
    w.close()


@pytest.fixture(scope="session")
def spark_session():  # type: ignore[no-untyped-def]
    if shutil.which("java") is None:
        pytest.fail("Java is not installed: `make test` installs it with apt-get")
    from segmentum.warehouse import _local_spark_session

    session = _local_spark_session()
    yield session
    session.stop()


def copy_served(service_db: Path, folder: Path) -> None:
    """The warehouse ``service_db``, its serving store and the lookup's documents (with the base
    files they read, named in them) copied into ``folder`` under the same names."""
    from segmentum.serving import _bases

    for name in ("w.duckdb", "w.serving.duckdb", "w.serving.duckdb.docs.sqlite"):
        if service_db.with_name(name).exists():
            shutil.copyfile(service_db.with_name(name), folder / name)
    for base in _bases(service_db.with_name("w.serving.duckdb")):
        shutil.copyfile(base, folder / base.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1, started from Debian's binaries for the session.

    Yields ``postgres://segmentum@127.0.0.1:PORT``; tests create their own database in it.
    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
    """
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = str(found[-1]) if found else shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it with apt-get")
    bindir = Path(initdb).parent
    # Not under pytest's temporary folder: as root that one is closed to other users.
    home = Path(tempfile.mkdtemp(prefix="segmentum-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run([*as_user, str(initdb), "-D", str(data), "-A", "trust", "-U", "segmentum"])
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = str(bindir / "pg_ctl")
    run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"])
    try:
        yield f"postgres://segmentum@127.0.0.1:{port}"
    finally:
        run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the test server."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("pyspark", marks=pytest.mark.spark),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """The same test body on the embedded DuckDB warehouse, a local Spark session and a
    PostgreSQL server."""
    if request.param == "duckdb":
        w = segmentum.connect(f"duckdb:///{tmp_path / 'test.duckdb'}")
        yield w
        w.close()
    elif request.param == "postgres":
        w = segmentum.connect(request.getfixturevalue("postgres_url"))
        yield w
        w.close()
    else:
        session = request.getfixturevalue("spark_session")
        w = segmentum.connect("pyspark", spark_session=session)
        yield w
        for name in w.con.list_tables():
            w.drop(name)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def cdnow_sample() -> Path:
    """The CDNOW 1/10 sample (gzipped), shipped in tests/data so every clone runs on it."""
    return CDNOW / "CDNOW_sample.txt.gz"


@pytest.fixture
def cdnow_raw(cdnow_sample: Path) -> pd.DataFrame:
    """The CDNOW 1/10 sample as published: one row per purchase record."""
    raw = pd.read_csv(
        cdnow_sample,
        sep=r"\s+",
        header=None,
        names=["master", "cust", "date", "cds", "value"],
        dtype={"master": str, "cust": str, "date": str},
    )
    raw["timestamp"] = pd.to_datetime(raw.date, format="%Y%m%d")
    return raw


@pytest.fixture
def cdnow_lines(wh: Warehouse, cdnow_raw: pd.DataFrame) -> ir.Table:
    """The CDNOW sample as transaction lines in the warehouse (table ``cd``)."""
    rows = pd.DataFrame(
        {
            "invoice_id": cdnow_raw.index.astype(str),
            "customer_id": cdnow_raw.cust,
            "timestamp": cdnow_raw.timestamp,
            "quantity": cdnow_raw.cds.astype(float),
            "amount": cdnow_raw.value,
        }
    )
    wh.con.create_table("cd", rows)
    return wh.table("cd")


class Receiver:
    """A real HTTP endpoint on 127.0.0.1: fails the first ``fail`` requests on purpose, then
    checks each body's HMAC signature and records it with its idempotency key."""

    def __init__(self, secret: str = "s3cret") -> None:
        self.secret = secret
        self.fail = 0
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                mac = hmac.new(outer.secret.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest("sha256=" + mac, self.headers["X-Segmentum-Signature"])
                outer.seen.append(
                    {
                        "key": self.headers["X-Segmentum-Delivery"],
                        "ok": ok,
                        "body": json.loads(body),
                    }
                )
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


SERVICE_SETTINGS = load_settings(env={}).with_overrides(discover_segments=True)


@pytest.fixture(scope="session")
def service_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo warehouse run through the whole pipeline, shared by the service tests.

    Built once for the whole run: under pytest-xdist the first worker to need it builds it
    (holding a file lock) in the folder the workers share, and every worker, that one
    included, serves and changes its own copy of the folder (the warehouse with its serving
    store and demo files), so no two workers ever open one DuckDB file.
    """
    root = tmp_path_factory.mktemp("service")
    shutil.copytree(_built_service(tmp_path_factory), root, dirs_exist_ok=True, ignore=_DONE)
    return root / "w.duckdb"


@pytest.fixture(scope="module")
def built_service_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warehouse of :func:`service_db` as built, before any test changed it: for a
    module whose answers depend on what nobody sent yet. The tests served on ``service_db``
    create and send campaigns there, and a campaign sent today counted against a flow's
    frequency cap in test_flows whenever one of them ran first on the same worker."""
    root = tmp_path_factory.mktemp("built-service")
    shutil.copytree(_built_service(tmp_path_factory), root, dirs_exist_ok=True, ignore=_DONE)
    return root / "w.duckdb"


_DONE = shutil.ignore_patterns("done")


def _built_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder :func:`service_db` copies, built once for the whole run."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    built = shared / "service-built"
    with open(shared / "service-built.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "done").exists():
            shutil.rmtree(built, ignore_errors=True)
            files = demo.generate(built / "demo", customers=800, seed=2)
            wh = segmentum.connect(f"duckdb:///{built / 'w.duckdb'}")
            pipeline.run(wh, data=files["transactions"].parent, settings=SERVICE_SETTINGS)
            backfill(wh, periods=3, settings=SERVICE_SETTINGS)  # past snapshots for the Sankey
            # Published again with the backfill's snapshots: else every app served on it (or
            # on a copy) finds its read models stale and publishes them at start-up (8 s each).
            publish_read_models(wh, SERVICE_SETTINGS)
            wh.close()
            (built / "done").touch()
    return built


@pytest.fixture(scope="session")
def server(service_db: Path) -> Iterator[dict[str, Any]]:
    """uvicorn serving the app on a free port, with a read key and an admin key.

    The app gets the warehouse's URL, as ``segmentum serve`` does: it opens the file only while
    a request needs it, and runs jobs in their own process. ``wh`` is a private copy of the
    demo warehouse for tests to read what it holds without locking the served file.
    """
    from segmentum.service.state import StateStore

    url = f"duckdb:///{service_db}"
    state = StateStore.for_warehouse(url, SERVICE_SETTINGS)
    keys = {
        "read": create_key(state, "reader", ["read"]),
        "admin": create_key(state, "admin", ["admin"]),
    }
    copy = service_db.with_name("read-copy.duckdb")
    shutil.copyfile(service_db, copy)
    wh = segmentum.connect(f"duckdb:///{copy}")
    app = create_app(url, SERVICE_SETTINGS)
    with serving(app) as base:
        yield {"url": base, "keys": keys, "wh": wh, "app": app, "db": service_db}
    wh.close()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn serving ``app`` on a free port of 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{srv.config.port}"
    finally:
        srv.should_exit = True
        thread.join(5)


@pytest.fixture(scope="session")
def build_demo() -> Any:
    """Generate the demo and run the pipeline into a DuckDB file (a module builds it once).

    ``after`` runs on the open warehouse before it is closed (a backfill, contact times...).
    Returns the file and the demo folder.
    """

    def build(
        root: Path,
        *,
        customers: int,
        seed: int,
        b2b: bool = False,
        settings: Any,
        after: Any = None,
    ) -> tuple[Path, Path]:
        files = demo.generate(root / "demo", customers=customers, seed=seed, b2b=b2b)
        path = root / "w.duckdb"
        wh = segmentum.connect(f"duckdb:///{path}")
        pipeline.run(wh, data=files["transactions"].parent, settings=settings)
        if after is not None:
            after(wh)
        wh.close()
        return path, files["transactions"].parent

    return build


@pytest.fixture
def copy_of(tmp_path: Path) -> Iterator[Any]:
    """Open a private copy of a built warehouse, so a test can write without meeting others."""
    opened: list[Warehouse] = []

    def copy(path: Path) -> Warehouse:
        target = tmp_path / f"copy-{len(opened)}.duckdb"
        target.write_bytes(path.read_bytes())
        opened.append(segmentum.connect(f"duckdb:///{target}"))
        return opened[-1]

    yield copy
    for w in opened:
        w.close()


def held(db: Path) -> subprocess.Popen[str]:
    """Another process holding the DuckDB file ``db``, as a pipeline run does (kill it)."""
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(120)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder
