"""Customer-match audiences: each platform's published normalisation, E.164 phones from local
forms, consent, a drop report that adds up, the CLI and the API."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import ibis
import pytest
from tests.conftest import serving

from segmentum.campaigns.adaudiences import (
    HEADERS,
    build,
    country_code,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_zip,
    sha256,
)
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.errors import ConfigError
from segmentum.ingest import ingest
from segmentum.privacy import exports_of
from segmentum.service.app import create_app
from segmentum.service.auth import create_key
from segmentum.warehouse import Warehouse

ON = load_settings(env={}).with_overrides(export_personal_data=True)


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_tiktok_email_hash_matches_its_published_example() -> None:
    # TikTok's customer-file guide: "janedoe@gmail.com" hashes to d611...c69.
    published = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
    assert sha256(normalize_email("janedoe@gmail.com", "tiktok")) == published
    # Spaces, capitals and a +suffix (TikTok drops it) give the same hash.
    assert sha256(normalize_email("  JaneDoe+promo@Gmail.COM ", "tiktok")) == published


def test_google_drops_periods_only_in_gmail_addresses() -> None:
    assert normalize_email(" Jane.Doe@GoogleMail.com", "google") == "janedoe@googlemail.com"
    assert normalize_email("jane.doe@gmail.com", "google") == "janedoe@gmail.com"
    assert normalize_email("jane.doe@empresa.es", "google") == "jane.doe@empresa.es"
    # Meta asks for trimming and lower case, nothing else.
    assert normalize_email(" Jane.Doe+x@Gmail.com ", "meta") == "jane.doe+x@gmail.com"
    assert normalize_email("not an email", "google") == ""


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("612 34 56 78", "es", "+34612345678"),
        ("91 123 45 67", "ES", "+34911234567"),
        ("0034 612-345-678", "ES", "+34612345678"),
        ("55 1234 5678", "MX", "+525512345678"),
        ("(33) 1234-5678", "MX", "+523312345678"),
        ("044 55 1234 5678", "MX", "+525512345678"),  # dialled before 2019
        ("+52 1 55 1234 5678", "ES", "+525512345678"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("+1 650 253 0000", "ES", "+16502530000"),
    ],
)
def test_local_phones_become_e164_with_the_customers_country(
    raw: str, region: str, e164: str
) -> None:
    assert normalize_phone(raw, region) == e164


def test_phones_that_are_not_numbers_are_invalid_and_blank_ones_empty() -> None:
    assert normalize_phone("12345", "ES") is None
    assert normalize_phone("llámame", "ES") is None
    assert normalize_phone("  ", "ES") == ""


def test_meta_and_tiktok_phones_are_digits_with_the_country_code() -> None:
    # TikTok's example: the US number (657)777-0000 is normalised to "16577770000".
    rec = {"email": "", "phone": "(657)777-0000", "country": "United States"}
    text, _, _ = build_rows([rec], "tiktok")
    assert list(csv.reader(io.StringIO(text)))[1] == ["", h("16577770000")]
    text, _, _ = build_rows([rec], "meta")
    assert list(csv.reader(io.StringIO(text)))[1][1] == h("16577770000")


def test_meta_names_places_and_zips_follow_its_rules() -> None:
    assert normalize_name(" María-José O'Neil ", "meta") == "maríajoséoneil"
    assert normalize_name(" María   José ", "google") == "maría josé"
    assert normalize_zip("94303-5300", "meta", "us") == "94303"
    assert normalize_zip("WC2H 8LG", "meta", "gb") == "wc2h8lg"
    assert normalize_zip(" 28010 ", "google", "es") == "28010"
    assert [country_code(x) for x in ("España", "MEXICO", "México", "es", "Perú", "Narnia")] == [
        "es",
        "mx",
        "mx",
        "es",
        "pe",
        "",
    ]


CUSTOMERS = """id_cliente,nombre,apellidos,email,telefono,pais,provincia,ciudad,codigo_postal,permiso_publicidad
C1,Lucía,García,Lucia.Garcia@Gmail.com,612 34 56 78,España,Madrid,Madrid,28010,sí
C2,Mateo,López,,55 1234 5678,México,CDMX,Ciudad de México,06700,sí
C3,Ana,Ruiz,,123 456 789,España,Sevilla,Sevilla,41010,sí
C4,Leo,Sanz,,,España,Madrid,Madrid,28001,sí
C5,Eva,Gil,eva@example.com,,España,Madrid,Madrid,28001,no
C6,Hugo,Paz,hugo@example.com,,España,Madrid,Madrid,28001,
C7,Sara,Vidal,sara@example.com,+34 000 000 000,España,Madrid,Madrid,28001,sí
"""


def build_rows(recs: list[dict[str, Any]], fmt: str) -> tuple[str, Any, list[str]]:
    """Run the file-writing half on hand-made rows in an in-memory warehouse."""
    import segmentum

    wh = segmentum.connect("duckdb://")
    rows = [{"customer_id": f"X{i}", "consent_ads": True, **r} for i, r in enumerate(recs)]
    wh.write("customers", ibis.memtable(rows).to_pyarrow())
    members = ibis.memtable({"customer_id": [r["customer_id"] for r in rows]})
    return build(wh, "hand", fmt, ON, members=members)


def loaded(wh: Warehouse, tmp_path: Path) -> Warehouse:
    path = tmp_path / "clientes.csv"
    path.write_text(CUSTOMERS, encoding="utf-8")
    ingest("customers", path, warehouse=wh, settings=ON)
    return wh


def test_only_consenting_customers_go_out_and_the_report_adds_up(
    wh: Warehouse, tmp_path: Path
) -> None:
    loaded(wh, tmp_path)
    ids = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C99"]  # C99: no profile at all
    members = ibis.memtable({"customer_id": ids})
    text, r, exported = build(wh, "test", "google", ON, members=members)
    assert r.size == len(ids)
    assert r.dropped == {"no_consent": 3, "invalid_phone": 1, "no_contact": 1}
    assert r.exported + sum(r.dropped.values()) == r.size
    assert exported == ["C1", "C2", "C7"] and r.phones_invalid_kept == 1
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == HEADERS["google"]
    assert rows[0]["Email"] == h("luciagarcia@gmail.com")
    assert rows[0]["Phone"] == h("+34612345678")
    assert rows[0]["First Name"] == h("lucía") and rows[0]["Country"] == "es"
    assert rows[0]["Zip"] == "28010"
    assert rows[1]["Email"] == "" and rows[1]["Phone"] == h("+525512345678")
    assert rows[2]["Phone"] == ""  # +34 000... is no phone: exported by email only
    for raw in ("lucia", "garcia", "612", "5512345678", "eva@", "sara@"):
        assert raw.lower() not in text.lower()


def test_an_export_needs_the_personal_data_setting(wh: Warehouse, tmp_path: Path) -> None:
    loaded(wh, tmp_path)
    off = load_settings(env={})
    with pytest.raises(ConfigError, match="export_personal_data"):
        build(wh, "test", "meta", off, members=ibis.memtable({"customer_id": ["C1"]}))


def test_the_cli_writes_the_file_reports_and_records_the_export(
    service_db: Path, copy_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    wh = copy_of(service_db)
    url = wh.url
    wh.close()
    monkeypatch.setenv("SEGMENTUM_EXPORT_PERSONAL_DATA", "true")
    out = tmp_path / "vip-meta.csv"
    args = ["audience", "export", "vip", "--format", "meta", "--out", str(out), "-w", url]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert tuple(rows[0]) == HEADERS["meta"]
    assert len(rows) - 1 == report["exported"] > 0
    assert report["dropped"]["no_consent"] > 0
    assert report["exported"] + sum(report["dropped"].values()) == report["size"]
    assert all(len(v) == 64 for v in rows[1][:2])
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"{report['exported']:,} of {report['size']:,}" in printed
    assert "no advertising consent" in printed
    monkeypatch.delenv("SEGMENTUM_EXPORT_PERSONAL_DATA")
    assert main([*args, "--format", "google"]) != 0
    assert "export_personal_data" in capsys.readouterr().err
    import segmentum

    again = segmentum.connect(url)
    try:  # both files are listed for the right to erasure of everyone in them
        m = again.table("export_members").to_pyarrow()
        assert m.num_rows == 2 * report["exported"]
        one = m.column("customer_id")[0].as_py()
        assert [Path(e["path"]).name for e in exports_of(again, one)] == [out.name] * 2
    finally:
        again.close()
    # In Spanish: the report's lines through the catalogs, counts as Spanish writes them.
    monkeypatch.setenv("SEGMENTUM_EXPORT_PERSONAL_DATA", "true")
    assert main([*args, "--lang", "es"]) == 0
    printed = capsys.readouterr().out
    assert "sin consentimiento publicitario" in printed and "excluidos:" in printed
    assert "clientes de 'vip' escritos en" in printed and "left out" not in printed


def test_the_api_needs_write_scope_and_the_personal_data_setting(server: dict[str, Any]) -> None:
    base = f"{server['url']}/v1/segments/vip/ad-audience"
    read = {"X-API-Key": server["keys"]["read"]}
    admin = {"X-API-Key": server["keys"]["admin"]}
    assert httpx.get(base, headers=read, timeout=60).status_code == 403
    r = httpx.get(base, params={"format": "meta"}, headers=admin, timeout=60)
    assert r.status_code == 409 and "export_personal_data" in r.json()["detail"]
    bad = httpx.get(base, params={"format": "myspace"}, headers=admin, timeout=60)
    assert bad.status_code == 422


def test_the_api_returns_the_file_with_its_report(service_db: Path) -> None:
    app = create_app(f"duckdb:///{service_db}", ON)
    key = {"X-API-Key": create_key(app.state.svc.state, "ads", ["write"])}
    with serving(app) as base, httpx.Client(base_url=base, headers=key, timeout=60) as client:
        path = "/v1/segments/vip/ad-audience"
        r = client.get(path, params={"format": "tiktok"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        report = json.loads(r.headers["X-Segmentum-Report"])
        rows = list(csv.reader(io.StringIO(r.text)))
        assert tuple(rows[0]) == HEADERS["tiktok"] and len(rows) - 1 == report["exported"] > 0
        assert report["exported"] + sum(report["dropped"].values()) == report["size"]
        assert client.get(path, params={"format": "tiktok", "summary": "true"}).json() == report


# ------------------------------------------------------------------ consent in the rule view


def test_rules_can_use_advertising_consent_like_the_other_consents(
    service_db: Path, copy_of: Any
) -> None:
    from segmentum.segments import rules
    from segmentum.segments.view import customer_view

    wh = copy_of(service_db)
    view, _ = customer_view(wh)
    assert "consent_ads" in view.columns and "consent_sms" in view.columns
    c = wh.table("customers")
    consenting = int(c.filter(c.consent_ads).count().to_pyarrow().as_py())
    assert consenting == 508  # the demo's share
    # The rule is parsed, type-checked against the view's columns and compiled, as saved
    # segments are (an unknown column would be an error here).
    text = "consent_ads == true and consent_sms == true"
    node = rules.parse(text)
    kinds = {name: rules.kind_of(t) for name, t in view.schema().items()}
    rules.check(text, node, rules.Scope(kinds))
    expr = rules.compile_node(text, node, lambda name: view[name], kinds)
    both = int(view.filter(expr).count().to_pyarrow().as_py())
    assert both == int(c.filter(c.consent_ads & c.consent_sms).count().to_pyarrow().as_py())
    assert 0 < both < consenting


# ------------------------------------------------------------------ retargeting

RT_CUSTOMERS = [
    ("R1", "r1@example.com", True),
    ("R2", "r2@example.com", True),
    ("R3", "r3@example.com", True),
    ("R4", "r4@example.com", True),
    ("R5", "r5@example.com", True),
    ("R6", "r6@example.com", False),
]
# (customer, event, product, when): the window is the 7 days to 2026-03-31 12:00.
RT_EVENTS = [
    ("R1", "product_view", "P1", "2026-03-30 10:00"),  # never bought: in
    ("R1", "product_view", "P2", "2026-03-29 10:00"),  # bought the next day: out
    ("R2", "product_view", "P1", "2026-03-25 09:00"),  # in
    ("R2", "add_to_cart", "P3", "2026-03-28 18:00"),  # bought P3 before, not since: in
    ("R3", "add_to_cart", "P3", "2026-03-28 18:00"),  # bought, then cancelled the order: in
    ("R4", "product_view", "P1", "2026-03-20 10:00"),  # before the window: out
    ("R5", "cart_abandoned", None, "2026-03-30 20:00"),  # no product, bought something: out
    ("R6", "cart_abandoned", "P4", "2026-03-30 21:00"),  # in, but no advertising consent
    (None, "add_to_cart", "P4", "2026-03-30 21:00"),  # anonymous: out
]
# (invoice, customer, product, quantity, when, original invoice)
RT_SALES = [
    ("I1", "R1", "P2", 1.0, "2026-03-30 09:00", None),
    ("I2", "R2", "P3", 1.0, "2026-03-27 09:00", None),
    ("I3", "R3", "P3", 2.0, "2026-03-29 09:00", None),
    ("C3", "R3", "P3", -2.0, "2026-03-30 09:00", "I3"),
    ("I5", "R5", "P9", 1.0, "2026-03-31 08:00", None),
]
UNTIL = dt.datetime(2026, 3, 31, 12, 0)


@pytest.fixture
def shop(wh: Warehouse) -> Warehouse:
    import pandas as pd

    wh.write(
        "customers",
        pd.DataFrame(
            {
                "customer_id": [c for c, _, _ in RT_CUSTOMERS],
                "email": [e for _, e, _ in RT_CUSTOMERS],
                "country": "España",
                "consent_ads": [a for _, _, a in RT_CUSTOMERS],
            }
        ),
    )
    wh.write(
        "events",
        pd.DataFrame(
            {
                "customer_id": [e[0] for e in RT_EVENTS],
                "event_type": [e[1] for e in RT_EVENTS],
                "product_id": [e[2] for e in RT_EVENTS],
                "timestamp": pd.to_datetime([e[3] for e in RT_EVENTS]),
            }
        ),
    )
    wh.write(
        "transactions",
        pd.DataFrame(
            {
                "invoice_id": [s[0] for s in RT_SALES],
                "line": 1,
                "customer_id": [s[1] for s in RT_SALES],
                "product_id": [s[2] for s in RT_SALES],
                "quantity": [s[3] for s in RT_SALES],
                "amount": [10.0 * s[3] for s in RT_SALES],
                "timestamp": pd.to_datetime([s[4] for s in RT_SALES]),
                "original_invoice_id": [s[5] for s in RT_SALES],
            }
        ),
    )
    return wh


def test_retargeting_finds_who_viewed_or_carted_and_did_not_buy_it(shop: Warehouse) -> None:
    from segmentum.campaigns.adaudiences import retargeting

    def who(kind: str) -> dict[str, list[str]]:
        members, _, start, end = retargeting(shop, kind, 7, until=UNTIL)
        assert (start, end) == (UNTIL - dt.timedelta(days=7), UNTIL)
        rows = members.order_by("customer_id").to_pyarrow().to_pylist()
        return {r["customer_id"]: r["products"] or [] for r in rows}

    assert who("viewed") == {"R1": ["P1"], "R2": ["P1"]}
    assert who("carted") == {"R2": ["P3"], "R3": ["P3"], "R6": ["P4"]}


def test_a_retargeting_export_keeps_consenting_customers_and_lists_the_products(
    shop: Warehouse, tmp_path: Path
) -> None:
    from segmentum.campaigns.adaudiences import export_retargeting

    out = tmp_path / "carted.csv"
    text, products, r = export_retargeting(shop, "carted", 7, "meta", ON, out=out, until=UNTIL)
    assert (r.size, r.exported, r.dropped["no_consent"]) == (3, 2, 1)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [x["email"] for x in rows] == [h("r2@example.com"), h("r3@example.com")]
    assert tuple(rows[0]) == HEADERS["meta"]  # no product column: Meta's file has none
    assert list(csv.reader(io.StringIO(products))) == [
        ["product_id", "customers", "last_event_at"],
        ["P3", "2", "2026-03-28T18:00:00"],
        ["P4", "1", "2026-03-30T21:00:00"],
    ]
    assert out.read_text(encoding="utf-8") == text
    assert Path(str(r.products_path)).read_text(encoding="utf-8") == products
    assert "r2@example.com" not in text


def test_retargeting_says_what_is_missing() -> None:
    import segmentum
    from segmentum.campaigns.adaudiences import retargeting
    from segmentum.errors import InputError

    empty = segmentum.connect("duckdb://")
    with pytest.raises(InputError, match="no events"):
        retargeting(empty, "viewed", 7)
    with pytest.raises(InputError, match="viewed or carted"):
        retargeting(empty, "bought", 7)


# ------------------------------------------------------------------ look-alike seeds


def test_the_seed_is_the_best_customers_by_clv_with_the_value_for_meta(
    service_db: Path, copy_of: Any
) -> None:
    from segmentum.campaigns.adaudiences import export_seed

    wh = copy_of(service_db)
    clv = wh.table("customer_clv").to_pandas()  # one summary row per customer
    clv = clv[(clv.as_of == clv.as_of.max()) & (clv.clv_status == "scored")]
    best = clv.sort_values(["clv", "customer_id"], ascending=[False, True]).head(50)
    cust = wh.table("customers").to_pandas().set_index("customer_id")
    expected = best[cust.loc[best.customer_id, "consent_ads"].fillna(False).to_numpy()]
    text, r = export_seed(wh, "meta", ON, top=50, write=False)
    assert (r.top, r.scored, r.size) == (50, len(clv), 50)
    assert r.exported == len(expected) and r.dropped["no_consent"] == 50 - len(expected)
    assert r.min_clv == pytest.approx(best.clv.min()) and r.value_column
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == (*HEADERS["meta"], "value")
    values = [float(x["value"]) for x in rows]
    assert sorted(values, reverse=True) == [round(v, 2) for v in expected.clv]
    top_email = cust.loc[expected.customer_id.iloc[0], "email"].strip().lower()
    assert max(rows, key=lambda x: float(x["value"]))["email"] == h(top_email)
    # Google's Customer Match file has no value column; 5% of the scored, rounded up.
    g_text, g = export_seed(wh, "google", ON, top_percent=5, write=False)
    assert g.top == -(-len(clv) * 5 // 100) and "value" not in g_text.splitlines()[0]


def test_the_cli_and_the_api_export_retargeting_and_seeds(
    service_db: Path, copy_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    wh = copy_of(service_db)
    url = wh.url
    wh.close()
    monkeypatch.setenv("SEGMENTUM_EXPORT_PERSONAL_DATA", "true")
    out = tmp_path / "rt.csv"
    args = ["audience", "retarget", "--carted", "--days", "30", "--platform", "google"]
    assert main([*args, "--out", str(out), "-w", url, "--json"]) == 0
    rt = json.loads(capsys.readouterr().out)
    assert rt["exported"] + sum(rt["dropped"].values()) == rt["size"] > 0
    assert len(out.read_text().splitlines()) == rt["exported"] + 1
    assert main(["audience", "retarget", "--days", "30", "-w", url]) != 0  # which kind?
    assert "--viewed or --carted" in capsys.readouterr().err
    seed_out = tmp_path / "seed.csv"
    assert main(["audience", "seed", "--top", "20", "--out", str(seed_out), "-w", url]) == 0
    printed = capsys.readouterr().out
    assert "of 20 best customers by CLV" in printed and "value column" in printed
    # The same in Spanish: every line through the catalogs, counts and dates as Spanish writes.
    assert main([*args, "--out", str(out), "-w", url, "--lang", "es"]) == 0
    printed = capsys.readouterr().out
    assert "ventana: del" in printed and "añadieron al carrito sin comprar" in printed
    assert "productos en" in printed and "written" not in printed and "window" not in printed
    es_seed = ["audience", "seed", "--top", "20", "--out", str(seed_out), "--lang", "es"]
    assert main([*es_seed, "-w", url]) == 0
    printed = capsys.readouterr().out
    assert "de 20 mejores clientes por CLV" in printed and "columna de valor" in printed
    assert "CLV desde" in printed and "best customers" not in printed
    # The API on the shared demo itself (it writes nothing; a copy would publish read models).
    app = create_app(f"duckdb:///{service_db}", ON)
    key = {"X-API-Key": create_key(app.state.svc.state, "ads", ["write"])}
    with serving(app) as base, httpx.Client(base_url=base, headers=key, timeout=60) as client:
        r = client.get("/v1/audiences/seed", params={"top": 20, "platform": "meta"})
        assert r.status_code == 200 and r.text == seed_out.read_text(encoding="utf-8")
        report = json.loads(r.headers["X-Segmentum-Report"])
        assert report["top"] == 20 and report["value_column"]
        rt_api = client.get(
            "/v1/audiences/retargeting",
            params={"kind": "carted", "days": 30, "platform": "google", "summary": "true"},
        ).json()
        assert {k: rt_api[k] for k in ("size", "exported")} == {
            k: rt[k] for k in ("size", "exported")
        }
        assert client.get("/v1/audiences/seed", params={"platform": "meta"}).status_code == 422
