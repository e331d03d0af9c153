"""Journey: a shop's real export in, numbers a marketer can trust out.

``segmentum demo-data --messy`` writes the invoice lines the way shops' systems export them
(Spanish headers with symbols, customer ids as floats while the customers file has integers,
``C``-prefixed cancellations including a huge order cancelled the same day, local times with
UTC offsets, decimal commas, a currency column, dates out of range, a bad-debt line). The
journey loads the folder with ``segmentum run --data`` (the Python API of the same command) and
checks what the summary and the warehouse say against the file itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import segmentum
from segmentum import demo, pipeline
from segmentum.cli import app
from segmentum.config import load_settings
from segmentum.warehouse import Warehouse

CUSTOMERS, SEED = 600, 11


@dataclass
class Journey:
    folder: Path
    notes: dict[str, Any]
    summary: pipeline.RunSummary
    wh: Warehouse
    export: pd.DataFrame  # the invoice file as a person would read it in a spreadsheet


def _read_export(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep=";", decimal=",", dtype={"Nº factura": str, "Cliente": str})
    df["amount"] = (df["Uds."].abs() * df["Precio unitario"] - df["Dto."].fillna(0)) * df[
        "Uds."
    ].apply(lambda q: -1 if q < 0 else 1)
    df["customer"] = df["Cliente"].str.replace(r"\.0$", "", regex=True)
    return df


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    root = tmp_path_factory.mktemp("messy")
    folder = root / "export"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # no segmentum.toml of the checkout's
        done = CliRunner().invoke(
            app,
            [
                "demo-data",
                "--out",
                str(folder),
                "--customers",
                str(CUSTOMERS),
                "--seed",
                str(SEED),
                "--messy",
            ],
        )
        assert done.exit_code == 0, done.output
        wh = segmentum.connect(f"duckdb:///{root / 'shop.duckdb'}")
        settings = load_settings().with_overrides(discover_segments=False)
        summary = pipeline.run(wh, data=folder, settings=settings)
    notes = json.loads((folder / "messy.json").read_text(encoding="utf-8"))
    yield Journey(folder, notes, summary, wh, _read_export(folder / "facturas.csv"))
    wh.close()


def test_messy_demo_is_deterministic_and_shaped_like_an_export(tmp_path: Path) -> None:
    a = demo.generate(tmp_path / "a", customers=150, seed=4, messy=True)
    b = demo.generate(tmp_path / "b", customers=150, seed=4, messy=True)
    digest = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in a.items()}
    assert digest == {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in b.items()}
    head = a["transactions"].read_text(encoding="utf-8").splitlines()[:2]
    assert head[0].startswith("Nº factura;Cód. artículo;")
    assert "Uds.;Fecha factura;Precio unitario" in head[0] and head[0].endswith(";Divisa;País")
    assert head[1].count(";GBP;") == 1 and ".0;" in head[1]  # a float id
    assert any(f"T{h}" in head[1] for h in range(24)) and "+0" in head[1]  # an offset
    customers = pd.read_csv(a["customers"], sep=";", encoding="latin-1", dtype=str)
    assert customers.id_cliente.str.fullmatch(r"\d+").all()  # integers there
    export = _read_export(a["transactions"])
    cancelled = export[export["Nº factura"].str.startswith("C")]
    assert len(cancelled) > 0 and (cancelled["Uds."] < 0).all()


def test_every_line_is_loaded_or_quarantined_with_its_reason(journey: Journey) -> None:
    [tx] = [r for r in journey.summary.ingest if r.table == "transactions"]
    assert tx.balanced and tx.rows_read == len(journey.export)
    assert tx.quarantined == 3  # two dates out of range and the bad-debt line
    reasons = " | ".join(tx.reasons)
    assert "future" in reasons and "before 1990" in reasons and "negative" in reasons


def test_every_buyer_finds_their_customer_record(journey: Journey) -> None:
    match = journey.summary.id_match
    assert match["buyers"] > 0.9 * CUSTOMERS
    assert match["buyers_without_record"] == 0 and match["matched"] == match["buyers"]
    tx = journey.wh.table("transactions")
    ids = tx.filter(tx.customer_id.notnull()).customer_id.to_pyarrow().to_pylist()
    assert not [i for i in ids if i.endswith(".0")]


def test_revenue_is_the_sum_of_the_stored_net_lines(journey: Journey) -> None:
    s = journey.summary
    stored = journey.wh.table("transactions").amount.sum().to_pyarrow().as_py()
    assert s.revenue + s.anonymous_revenue == pytest.approx(stored, abs=0.01)
    # And what the file says, read independently (the three quarantined lines left out).
    e = journey.export
    kept = e[~e["Nº factura"].isin(["9000002", "9000003", *journey.notes["bad_debt_invoices"]])]
    assert stored == pytest.approx(kept.amount.sum(), abs=0.01)
    identified = kept[kept.customer.notna()].amount.sum()
    assert s.revenue == pytest.approx(identified, abs=0.01)


def test_cancellations_are_linked_to_the_lines_they_cancel(journey: Journey) -> None:
    r = journey.summary.returns
    cancellations = journey.export[
        journey.export["Nº factura"].str.startswith("C") & journey.export.customer.notna()
    ]
    assert r["return_lines"] == len(cancellations) and r["linked"] == r["return_lines"]
    assert r["cancelled_orders"] >= 1


def test_the_huge_cancelled_order_does_not_make_a_high_value_customer(journey: Journey) -> None:
    huge = journey.notes["huge_cancelled_order"]
    who = huge["customer_id"]
    e = journey.export
    mine = e[(e.customer == who) & ~e["Nº factura"].isin([huge["invoice"], huge["cancellation"]])]
    real_orders = mine[~mine["Nº factura"].str.startswith("C")]["Nº factura"].nunique()
    as_of = journey.summary.as_of
    wh = journey.wh
    f = wh.table("customer_features").execute()
    f = f[f.as_of == pd.Timestamp(as_of)].set_index("customer_id") if "as_of" in f else f
    me = f.loc[who]
    assert me.monetary == pytest.approx(mine.amount.sum(), abs=0.01)
    assert me.frequency == real_orders
    assert me.monetary < f.monetary.quantile(0.99) and f.monetary.max() < huge["amount"]
    classes = wh.table("customer_classes").execute().set_index("customer_id")
    assert classes.loc[who, "value_tier"] != "high"
    clv = wh.table("customer_clv").execute().set_index("customer_id").clv.dropna()
    assert clv[who] < clv.quantile(0.99)


def test_local_times_are_kept_and_bad_dates_do_not_move_the_as_of(journey: Journey) -> None:
    assert journey.summary.as_of is not None and journey.summary.as_of <= demo.END + dt.timedelta(
        days=1
    )
    first = journey.export.iloc[0]
    tx = journey.wh.table("transactions")
    line = tx.filter(tx.invoice_id == first["Nº factura"]).timestamp.min().to_pyarrow().as_py()
    written = dt.datetime.fromisoformat(first["Fecha factura"]).replace(tzinfo=None)
    assert line == written  # 19:28 in Madrid stays 19:28, not 17:28 UTC


def test_amounts_are_labelled_in_the_exports_currency(journey: Journey) -> None:
    assert journey.summary.currency == journey.notes["currency"] == "GBP"


def wh_customers(url: str) -> int:
    """Customers with features (buyers) in the warehouse at ``url``."""
    with segmentum.connect(url) as wh:
        return int(wh.table("customer_features").count().to_pyarrow().as_py())


def test_a_shop_with_only_its_invoice_export_can_save_segments(
    journey: Journey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The invoice file alone (no customer list): the run, a saved segment computed and
    backfilled; an account segment (which needs the customers' companies) is refused with
    what to load, in either language, never a traceback."""
    from segmentum.cli import main

    folder = tmp_path / "only-invoices"
    folder.mkdir()
    (folder / "facturas.csv").write_bytes((journey.folder / "facturas.csv").read_bytes())
    url = f"duckdb:///{tmp_path / 'only.duckdb'}"
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--warehouse", url])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("run", "--data", str(folder))[0] == 0
    assert run("segment", "create", "loyal", "frequency >= 3")[0] == 0
    for lang, said, hint in (
        ("en", "an account segment needs the companies", "company_id column"),
        ("es", "un segmento de cuentas necesita las empresas", "columna company_id"),
    ):
        rule = ("segment", "create", "big_co", "contacts > 5", "--level", "account")
        code, out, err = run(*rule, "--lang", lang)
        assert code == 2 and "Traceback" not in out + err, err
        assert said in " ".join(err.split()) and hint in " ".join(err.split()), err
    # A Spanish rule word is answered in Spanish, the segment's name first.
    code, _, err = run("segment", "create", "mayores", "edad >= 30", "--lang", "es")
    assert code == 2 and "segmento mayores: columna o segmento desconocido 'edad'" in err, err
    code, out, _ = run("segment", "compute", "--json")
    assert code == 0
    with segmentum.connect(url) as wh:
        f = wh.table("customer_features")
        loyal = f.filter(f.frequency >= 3).count().to_pyarrow().as_py()
    assert json.loads(out)["sizes"] == {"loyal": loyal} and loyal > 0
    # Micro-segments by default: no place or age without a customers file, so the classes.
    code, out, _ = run("segment", "micro", "--json")
    tree = json.loads(out)
    assert code == 0 and tree["dimensions"] == ["value_tier", "lifecycle_stage", "rfm_segment"]
    assert tree["nodes"][0]["customers"] == wh_customers(url)
    # A win-back to a file: recipients without a country read the shop's language (setting).
    monkeypatch.setenv("SEGMENTUM_LANGUAGE", "es")
    code, _, err = run("campaign", "create", "vuelve", "--tactic", "winback", "--channel", "file")
    assert code == 0, err
    code, _, err = run("campaign", "send", "vuelve", "--out", str(tmp_path / "sends"))
    assert code == 0, err
    sent = pd.read_csv(next((tmp_path / "sends").glob("*.csv")))
    assert len(sent) > 0 and set(sent.language) == {"es"}
    # An acquisition campaign is saved, and told at once that there are no prospects yet.
    code, out, err = run(
        "campaign", "create", "nuevos", "--tactic", "acquisition", "--channel", "file"
    )
    assert code == 0 and "aún no se ha puntuado ningún cliente potencial" in " ".join(out.split())
    monkeypatch.delenv("SEGMENTUM_LANGUAGE")
    code, out, err = run("history", "backfill", "--periods", "2")
    assert code == 0 and "loyal" in out, out + err
    # The dashboard's builder and micro page offer the columns this shop has: the classes,
    # not a region or age band; its default tree opens, in Spanish.
    import httpx
    from tests.conftest import serving

    from segmentum.service.app import create_app
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session

    app = create_app(url, load_settings())
    svc = app.state.svc
    session = create_session(svc.sessions, create_key(svc.state, "shop", ["read"]))
    assert session is not None
    jar = {SESSION_COOKIE: session.sid}
    with serving(app) as base:
        builder = httpx.get(f"{base}/dashboard/segments", params={"lang": "es"}, cookies=jar)
        micro = httpx.get(f"{base}/dashboard/micro", params={"lang": "es"}, cookies=jar)
        data = httpx.get(f"{base}/dashboard/data", params={"lang": "es"}, cookies=jar)
    assert builder.status_code == 200 and micro.status_code == 200
    # The rejected lines name their column as the export does (the dates out of range).
    assert "Fecha factura (timestamp)" in data.text, data.text[-3000:]
    assert 'value="value_tier"' in builder.text and 'value="region"' not in builder.text
    assert 'value="age_band"' not in builder.text and 'id="error"' not in micro.text
    assert 'value="value_tier,lifecycle_stage,rfm_segment"' in micro.text


def test_the_invoice_export_given_as_the_customers_file_is_called_what_it_is(
    journey: Journey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``segmentum ingest customers facturas.csv``: the invoice lines load as a few customers
    and thousands of quarantined repeats, and the report says this is an invoice export and
    how to load it, in both languages; the real customers file gets no such warning."""
    from rich.console import Console

    from segmentum import cli
    from segmentum.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "console", Console(width=400, force_terminal=False))  # no wraps
    monkeypatch.delenv("SEGMENTUM_LANGUAGE", raising=False)
    invoices = str(journey.folder / "facturas.csv")
    for lang, says in (
        ("es", "parece un fichero de líneas de factura, no una lista de clientes"),
        ("en", "this looks like a file of invoice lines, not a customer list"),
    ):
        url = f"duckdb:///{tmp_path / f'{lang}.duckdb'}"
        assert main(["ingest", "customers", invoices, "-w", url, "--lang", lang]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert says in out, out
        assert f"segmentum ingest transactions {invoices}" in out, out
        assert "Nº factura" in out and "Uds." in out, out
    url = f"duckdb:///{tmp_path / 'es.duckdb'}"
    assert main(["quarantine", "-w", url, "--lang", "es"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "customer_id ya aparece en la fila" in said and "repeats row" not in said, said
    customers = str(journey.folder / "clientes.csv")
    assert main(["ingest", "customers", customers, "-w", f"duckdb:///{tmp_path / 'c.duckdb'}"]) == 0
    assert "invoice lines" not in " ".join(capsys.readouterr().out.split())
