"""Personal data: the send log keeps only what a send needs, and ``forget`` erases a customer
from every table (real DuckDB file, real SMTP server, files written to disk)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import segmentum
from killsends import TEMPLATE, SlowInbox, plan, start_smtp
from segmentum.campaigns.core import Campaign, Campaigns
from segmentum.cli import main
from segmentum.config import Settings, load_settings
from segmentum.history.log import OUTBOX
from segmentum.ingest import ingest
from segmentum.privacy import _tables, exports_of, forget
from segmentum.warehouse import Warehouse

SETTINGS = load_settings(env={}).with_overrides(
    discover_segments=False, smtp_host="127.0.0.1", smtp_starttls=False
)
PERSONAL = ("email", "phone", "first_name", "last_name")

CLIENTES = """id_cliente;nombre;apellidos;correo;telefono;pais;acepta_email
C0001;Martina;García;c0001@example.com;+34600000001;España;si
C0002;;López;c0002@example.com;+34600000002;España;si
C0003;Lucía;Pérez;c0003@example.com;+34600000003;España;si
C0004;Oliver;Smith;c0004@example.com;+44700000004;United Kingdom;si
C0005;Hugo;Ruiz;c0005@example.com;+34600000005;España;si
C0006;Emma;Jones;c0006@example.com;+44700000006;United Kingdom;si
C0007;Pablo;Sanz;no-es-un-correo;+34600000007;España;talvez
"""
VENTAS = """factura;id_cliente;fecha;cantidad;importe
F1;C0003;2025-01-05;1;20,00
F2;C0003;2025-02-05;2;35,50
F3;C0004;2025-02-06;1;12,00
F4;C0005;fecha-mala;1;9,00
F5;;2025-03-01;1;5,00
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Customers and sales loaded from Spanish exports, with a few rows quarantined."""
    folder = tmp_path_factory.mktemp("privacy")
    (folder / "clientes.csv").write_text(CLIENTES, encoding="utf-8")
    (folder / "ventas.csv").write_text(VENTAS, encoding="utf-8")
    w = segmentum.connect(f"duckdb:///{folder / 'p.duckdb'}")
    ingest("customers", folder / "clientes.csv", warehouse=w, settings=SETTINGS)
    ingest("transactions", folder / "ventas.csv", warehouse=w, settings=SETTINGS)
    w.close()
    return folder / "p.duckdb"


@pytest.fixture
def pwh(loaded: Path, copy_of: Any) -> Warehouse:
    w: Warehouse = copy_of(loaded)
    return w


@pytest.fixture
def inbox() -> Iterator[tuple[SlowInbox, int]]:
    box = SlowInbox()
    ctl, port = start_smtp(box)
    yield box, port
    ctl.stop()


def _email_campaign(w: Warehouse, settings: Settings, name: str = "Vuelve") -> Campaign:
    cs = Campaigns(w, settings)
    c = cs.create(name, "winback", "email", template=TEMPLATE, control_share=0.2)
    cust = w.table("customers").order_by("customer_id").to_pandas()
    cust["consent_email"] = cust.consent_email.fillna(False).astype(bool)
    cs.record_plan(c, plan(cust), dt.datetime(2026, 1, 5))
    return c


def test_the_send_log_holds_no_contact_data_and_addresses_only_when_retention_says_so(
    pwh: Warehouse, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    cs = Campaigns(pwh, SETTINGS.with_overrides(smtp_port=port))
    c = _email_campaign(pwh, cs.settings)
    r = cs.send(c, immediately=True)
    assert r.delivered == len(box.got) > 0
    log = cs.log(c)
    assert not set(PERSONAL) & set(log.columns)  # the log never copies them
    assert log.address.isna().all()  # contact_retention_days = 0: nothing kept
    emails = set(pwh.table("customers").to_pandas().email.dropna())
    text = log.astype(str).to_csv()
    assert not [e for e in emails if e in text]
    # With a retention period the address a message went to is kept, on delivered rows only.
    keep = Campaigns(pwh, cs.settings.with_overrides(contact_retention_days=30))
    c2 = _email_campaign(pwh, keep.settings, "Vuelve 2")
    keep.send(c2, immediately=True)
    log2 = keep.log(c2)
    sent = log2[log2.status == "sent"]
    assert sent.address.notna().all() and log2[log2.status != "sent"].address.isna().all()
    assert set(log2[log2.group == "control"].address.dropna()) == set()
    # Lowering the retention clears them at the next send.
    Campaigns(pwh, cs.settings).send(c2, immediately=True)
    assert Campaigns(pwh, cs.settings).log(c2).address.isna().all()


def test_forget_erases_a_customer_everywhere_and_lists_the_files_that_held_them(
    pwh: Warehouse, inbox: tuple[SlowInbox, int], tmp_path: Path
) -> None:
    _, port = inbox
    settings = SETTINGS.with_overrides(smtp_port=port, export_personal_data=True)
    cs = Campaigns(pwh, settings)
    c = _email_campaign(pwh, settings)
    cs.send(c, immediately=True)
    # A file campaign writes the audience to disk (recorded in `exports`).
    f = cs.create("Fichero", "winback", "file")
    cust = pwh.table("customers").order_by("customer_id").to_pandas()
    cust["consent_email"] = True
    p = plan(cust).assign(outcome=lambda d: d.outcome.replace({"scheduled": "file"}))
    cs.record_plan(f, p, dt.datetime(2026, 1, 5))
    files = cs.send(f, out_dir=tmp_path / "out").files
    assert "C0003" in Path(files[0]).read_text()
    # Segment events queued for a webhook.
    pwh.write(
        OUTBOX,
        pd.DataFrame(
            {
                "event_id": ["vip:C0003:enter:2026-01-01", "vip:C0004:enter:2026-01-01"],
                "segment": "vip",
                "customer_id": ["C0003", "C0004"],
                "event": "enter",
                "as_of": dt.date(2026, 1, 1),
                "status": "pending",
                "attempts": 0,
                "last_error": pd.Series([None, None], dtype="string"),
                "delivered_at": pd.NaT,
                "batch_id": pd.Series([None, None], dtype="string"),
            }
        ),
    )
    revenue = pwh.table("transactions").amount.sum().to_pyarrow().as_py()
    dry = forget(pwh, "C0003", dry_run=True)
    assert dry.deleted["customers"] == 1 and dry.anonymized["transactions"] == 2
    customers = pwh.table("customers")
    assert customers.filter(customers.customer_id == "C0003").count().to_pyarrow().as_py() == 1
    r = forget(pwh, "C0003")
    assert {"customers", "campaign_sends", OUTBOX, "export_members"} <= set(r.deleted)
    assert r.anonymized == {"transactions": 2}
    assert sorted(Path(e["path"]).name for e in r.exports) == sorted(Path(x).name for x in files)
    assert all(e["exists"] and e["personal_data"] for e in r.exports)
    for name in _tables(pwh):  # every stored table
        t = pwh.con.table(name)
        if "customer_id" in t.columns:
            assert not t.filter(t.customer_id == "C0003").count().to_pyarrow().as_py(), name
    # Sales stay, now anonymous: revenue totals do not move.
    assert pwh.table("transactions").amount.sum().to_pyarrow().as_py() == pytest.approx(revenue)
    assert exports_of(pwh, "C0003") == [] and exports_of(pwh, "C0004")
    assert not forget(pwh, "C0003").found


def test_forget_on_the_command_line(pwh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    url = pwh.url
    quarantined = pwh.table("quarantine").to_pandas()
    assert quarantined.raw.str.contains('"C0005"').any()  # the bad date row
    pwh.close()
    assert main(["forget", "C0005", "--dry-run", "-w", url]) == 0
    out = capsys.readouterr().out
    assert "customers: 1 row would be deleted" in out and "quarantine" in out
    assert main(["forget", "C0005", "-w", url]) == 0
    assert "customers: 1 row was deleted" in capsys.readouterr().out
    assert main(["forget", "C0005", "-w", url]) == 0
    assert "nothing to erase" in capsys.readouterr().out
    w = segmentum.connect(url)
    try:
        q = w.table("quarantine").to_pandas()
        assert not q.raw.str.contains('"C0005"').any()
    finally:
        w.close()


def test_forget_counts_rows_in_the_singular_and_plural_of_the_command_language(
    pwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pwh.url
    pwh.close()
    assert main(["forget", "C0003", "--dry-run", "-w", url, "--lang", "es"]) == 0
    out = capsys.readouterr().out
    assert "customers: se borraría 1 fila\n" in out, out
    assert "transactions: se desvincularían 2 filas (se conservan como anónimas)" in out, out
    assert main(["forget", "C0003", "-w", url, "--lang", "es"]) == 0
    out = capsys.readouterr().out
    assert "customers: 1 fila borrada\n" in out, out
    assert "transactions: 2 filas desvinculadas" in out, out
    assert "1 filas" not in out


def test_forget_names_the_files_written_with_a_readable_date(
    pwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from segmentum.privacy import record_export

    f = tmp_path / "audiencia.csv"
    f.write_text("customer_id\nC0005\n", encoding="utf-8")
    at = dt.datetime(2026, 12, 6, 6, 33, 0, 544544)
    record_export(pwh, [f], source="test", customer_ids=["C0005"], personal_data=False, at=at)
    url = pwh.url
    pwh.close()
    assert main(["forget", "C0005", "--dry-run", "-w", url, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ": escrito el 6 dic 2026 06:33 UTC" in out, out  # the path may wrap on a terminal
    assert ".544544" not in out


def test_forget_leaves_no_document_of_the_customer_in_the_serving_store(
    service_db: Path, tmp_path: Path
) -> None:
    """The lookup's documents keep their unchanged part in a base file read where it lies: an
    erased customer's document must not stay there, hidden behind a mark. After ``forget``
    no file of the serving store's documents holds the customer's id."""
    import shutil

    from segmentum.serving import ServingStore, _bases, _dated_folder, documents_path, serving_path

    root = tmp_path / "served"
    shutil.copytree(service_db.parent, root, ignore=shutil.ignore_patterns("demo"))
    url = f"duckdb:///{root / service_db.name}"
    target = serving_path(url)
    assert target is not None
    wh = segmentum.connect(url)
    try:
        cid = str(wh.table("customer_lookup").customer_id.max().to_pyarrow().as_py())
        store = ServingStore(target)
        assert isinstance(store.document("customer_lookup", cid), str)
        before = set(_bases(target))
        assert before and any(cid.encode() in p.read_bytes() for p in before)
        assert _in_dated(_dated_folder(target), cid)
        report = forget(wh, cid)
    finally:
        wh.close()
    assert report.republished and store.document("customer_lookup", cid) is None
    files = [documents_path(target), *_bases(target)]
    assert set(files[1:]).isdisjoint(before)  # the old bases are gone
    for f in files:
        assert cid.encode() not in f.read_bytes(), f
    # Nor any file of the history (one Parquet file a date, compressed: read, not searched).
    assert not _in_dated(_dated_folder(target), cid)


def _in_dated(folder: Path, cid: str) -> int:
    """Rows of customer ``cid`` in the serving store's dated Parquet files (there must be some)."""
    import duckdb

    dated = sorted(folder.glob("*.parquet"))
    assert dated
    found = duckdb.connect().execute(
        "select count(*) from read_parquet(?, union_by_name = true) where customer_id = ?",
        [[str(p) for p in dated], cid],
    )
    row = found.fetchone()
    return int(row[0]) if row else 0
