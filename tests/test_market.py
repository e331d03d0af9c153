"""The market beyond the customer base: known answers on a hand-made population (penetration,
index, Wilson intervals, unplaced customers, quarantine), the demo's planted white space, the
API with a key, the CLI, the Market page in both languages and the report's map."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import segmentum
from segmentum import demo
from segmentum.cli import app as cli
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.ingest import ingest
from segmentum.market import compute_market, parse_band, read_market, rollup, wilson_interval
from segmentum.market.export import export_market
from segmentum.market.geo import choropleth_svg, load_geojson
from segmentum.report import build_report
from segmentum.service.auth import SESSION_COOKIE, create_key, create_session
from segmentum.warehouse import Warehouse

HERE = Path(__file__).parent
GEOJSON = HERE / "data" / "market" / "demo_regions.geojson"
RAW = re.compile(r"\b(nan|NaN|None|NaT|null|undefined|inf)\b")
http = httpx.Client(timeout=120)

# A census export with Spanish headers: a total row (left out), a negative count and a count
# that is not a number (both quarantined).
POPULATION_CSV = """\
Comunidad;Sexo;Población;Gasto potencial;Crecimiento;Año
Norte;Mujer;1.000;50.000,00;0,02;2025
Norte;Hombre;1.000;40.000,00;0,04;2025
Sur;Mujer;2.000;60.000,00;;2025
Sur;Hombre;2.000;60.000,00;;2025
Total;Total;6.000;;;2025
Este;Mujer;-300;;;2025
Oeste;Mujer;muchos;;;2025
"""


def _customers_csv() -> str:
    rows = ["id_cliente;sexo;comunidad"]
    n = 0

    def add(k: int, sexo: str, region: str) -> None:
        nonlocal n
        for _ in range(k):
            n += 1
            rows.append(f"C{n:03d};{sexo};{region}")

    add(12, "Mujer", "NORTE")  # places match without regard to case or accents
    add(8, "mujer", "norte")
    add(10, "Hombre", "Norte")
    add(10, "Mujer", "Sur")
    add(10, "H", "sur")
    add(3, "", "Sur")  # no gender
    add(2, "Mujer", "Este")  # a region the population does not have
    add(1, "Otro", "Norte")  # a gender the population does not count
    return "\n".join(rows) + "\n"


def _hand_made(wh: Warehouse, root: Path) -> list[Any]:
    """Load the hand-made census and customers into ``wh``, with one feature row per buyer."""
    import datetime as dt

    (root / "poblacion.csv").write_text(POPULATION_CSV, encoding="utf-8")
    (root / "clientes.csv").write_text(_customers_csv(), encoding="utf-8")
    settings = load_settings(env={})
    reports = ingest("population", root / "poblacion.csv", warehouse=wh, settings=settings)
    ingest("customers", root / "clientes.csv", warehouse=wh, settings=settings)
    ids = [f"C{i:03d}" for i in range(1, 57)] + ["X999"]
    wh.write(
        "customer_features",
        pa.table(
            {
                "customer_id": ids,
                "as_of": pa.array([dt.date(2026, 1, 1)] * len(ids), pa.date32()),
                "run_id": ["r"] * len(ids),
                "frequency": [2] * len(ids),
                "monetary": [100.0 if i.startswith("C00") else 50.0 for i in ids],
            }
        ),
    )
    return reports


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A warehouse with 57 customers (50 placeable), 1 buyer without a record, 4 cells."""
    root = tmp_path_factory.mktemp("market")
    path = root / "m.duckdb"
    wh = segmentum.connect(f"duckdb:///{path}")
    reports = _hand_made(wh, root)
    result = compute_market(wh, settings=load_settings(env={}), run_id="t")
    wh.close()
    yield {"path": path, "result": result, "reports": reports, "root": root}


def test_wilson_interval_matches_newcombe_1998() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (score interval).
    for k, n, lo, hi in (
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ):
        got = wilson_interval(k, n)
        assert got == pytest.approx((lo, hi), abs=5e-5), (k, n, got)


def test_band_labels_in_spanish_and_english_are_read_as_ranges() -> None:
    assert parse_band("18-24") == (18, 24)
    assert parse_band("De 25 a 34 años") == (25, 34)
    assert parse_band("65 y más") == (65, float("inf"))
    assert parse_band("65+") == (65, float("inf"))
    assert parse_band("Menos de 10 empleados") == (0, 9)
    assert parse_band("Total") is None


def test_population_rows_with_bad_counts_go_to_quarantine_and_nothing_is_lost(
    hand_made: dict[str, Any],
) -> None:
    (r,) = hand_made["reports"]
    assert (r.rows_read, r.accepted, r.quarantined) == (7, 5, 2)
    wh = segmentum.connect(f"duckdb:///{hand_made['path']}")
    q = wh.table("quarantine").to_pyarrow().to_pylist()
    wh.close()
    got = {(row["source_row"], row["column"], row["reason"]) for row in q}
    assert got == {
        (6, "population", "population is negative"),
        (7, "population", "population is not a number"),
    }
    assert {row["file"] for row in q} == {str(hand_made["root"] / "poblacion.csv")}


def test_penetration_and_index_have_their_known_values(hand_made: dict[str, Any]) -> None:
    r = hand_made["result"]
    assert r.dimensions == ["region", "gender"] and r.period == "2025"
    assert r.skipped_rows == 1  # the Total row
    assert r.overall_penetration == pytest.approx(50 / 6000)
    cells = {(c["region"], c["gender"]): c for c in r.cells.to_dict("records")}
    north_women = cells[("Norte", "female")]
    assert north_women["customers"] == 20 and north_women["population"] == 1000
    assert north_women["penetration"] == pytest.approx(0.02)
    assert north_women["index"] == pytest.approx(240.0)
    lo, hi = wilson_interval(20, 1000)
    assert north_women["penetration_low"] == pytest.approx(lo)
    assert north_women["index_low"] == pytest.approx(100 * lo * 120)
    assert north_women["index_high"] == pytest.approx(100 * hi * 120)
    assert cells[("Sur", "male")]["index"] == pytest.approx(60.0)
    # C001-C009 spent 100, the other 11 women of the north 50 (no sales table: lifetime spend).
    assert north_women["market_share"] == pytest.approx((9 * 100 + 11 * 50) / 50_000)
    # Index 100 is the population-weighted average of the cells.
    c = r.cells
    assert (c["index"] * c["population"]).sum() / c["population"].sum() == pytest.approx(100)


def test_customers_that_cannot_be_placed_are_counted_with_their_reason(
    hand_made: dict[str, Any],
) -> None:
    r = hand_made["result"]
    assert r.unplaced == {
        "no gender": 3,
        "region not in the population": 2,
        "gender not in the population": 1,
        "no customer record": 1,
    }
    assert r.customers == 57 and r.placed == 50 and r.unplaced_total == 7


def test_region_rollup_recomputes_rates_from_sums(hand_made: dict[str, Any]) -> None:
    r = hand_made["result"]
    by = rollup(r.cells, "region", r.overall_penetration).set_index("place")
    assert by.loc["Norte", "customers"] == 30 and by.loc["Norte", "population"] == 2000
    assert by.loc["Norte", "index"] == pytest.approx(0.015 / (50 / 6000) * 100)
    assert by.loc["Sur", "penetration_high"] == pytest.approx(wilson_interval(20, 4000)[1])
    assert by.loc["Norte", "growth"] == pytest.approx(0.03)  # averaged by population
    assert by.loc["Norte", "market_share"] == pytest.approx(by.loc["Norte", "revenue"] / 90_000)
    assert math.isnan(by.loc["Sur", "growth"])


def test_cli_prints_penetration_white_space_and_map_ready_exports(
    hand_made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{hand_made['path']}"
    run = CliRunner().invoke
    out = run(cli, ["market", "penetration", "-w", url, "--level", "region"])
    assert out.exit_code == 0, out.output
    assert "Norte" in out.output and "(" in out.output
    out = run(cli, ["market", "penetration", "-w", url, "--cells", "--json"])
    rows = json.loads(out.output)["rows"]
    assert rows[0]["cell"] == "Norte · female" and rows[0]["index"] == pytest.approx(240)
    out = run(cli, ["market", "export", "-w", url, "--format", "csv", "--level", "region"])
    assert out.exit_code == 0 and out.output.splitlines()[0].startswith("place,population")
    out = run(cli, ["market", "export", "-w", url, "--format", "geojson-properties"])
    props = json.loads(out.output)
    assert props["level"] == "region" and set(props["properties"]) == {"Norte", "Sur"}
    out = run(cli, ["market", "white-space", "-w", url, "--json"])
    assert out.exit_code == 0 and len(json.loads(out.output)) >= 1
    assert main(["market", "export", "-w", url, "--format", "xml"]) == 2
    err = capsys.readouterr().err
    assert "unknown format 'xml'" in err and "csv, geojson-properties" in err


@pytest.mark.parametrize(
    ("lang", "said", "not_said"),
    [
        (
            "es",
            (
                "sin ubicar: 1 cliente (",
                "1 fila de población excluida",
                "la mejor celda por valor por cliente (penetración 2,0 %)",
            ),
            ("1 clientes", "1 filas", "las 1 mejores", "2,0000"),
        ),
        (
            "en",
            (
                "not placed: 1 customer (",
                "1 population row left out",
                "the best cell by value per customer (penetration 2.0%)",
            ),
            ("1 customers", "1 population rows", "1 best cells", "2.0000"),
        ),
    ],
)
def test_market_compute_says_one_as_one_and_shares_with_one_decimal(
    hand_made: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lang: str,
    said: tuple[str, ...],
    not_said: tuple[str, ...],
) -> None:
    db = tmp_path / "m.duckdb"
    shutil.copyfile(hand_made["path"], db)
    assert main(["market", "compute", "-w", f"duckdb:///{db}", "--lang", lang]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    for text in said:
        assert text in out, (text, out)
    for text in not_said:
        assert text not in out, (text, out)


def test_the_same_market_on_every_backend(backend: Warehouse, tmp_path: Path) -> None:
    if backend.engine == "duckdb":
        pytest.skip("DuckDB: the known-answer tests above run on the same data (hand_made)")
    _hand_made(backend, tmp_path)
    r = compute_market(backend, settings=load_settings(env={}))
    cells = {(c["region"], c["gender"]): c for c in r.cells.to_dict("records")}
    assert cells[("Norte", "female")]["index"] == pytest.approx(240.0)
    assert cells[("Sur", "male")]["customers"] == 10
    assert r.unplaced_total == 7 and r.placed == 50
    stored = read_market(backend)
    assert stored is not None and len(stored[0]) == 4


def test_market_without_a_population_says_how_to_load_one() -> None:
    wh = segmentum.connect("duckdb://")
    with pytest.raises(segmentum.errors.InputError, match="no reference population"):
        compute_market(wh)


# ----------------------------------------------------------------- the demo (shared server)
def _demo_copy(server: dict[str, Any], tmp_path: Path) -> Warehouse:
    target = tmp_path / "demo.duckdb"
    shutil.copyfile(server["db"], target)
    return segmentum.connect(f"duckdb:///{target}")


def test_the_planted_region_tops_the_white_space(server: dict[str, Any], tmp_path: Path) -> None:
    wh = _demo_copy(server, tmp_path)
    found = read_market(wh)
    assert found is not None
    cells, summary = found
    by = rollup(cells, "region", summary["overall_penetration"])
    assert by.iloc[0]["place"] == demo.POPULATION_PLANTED, by[["place", "white_space_score"]]
    # The decoy is as large and under-penetrated among the young, but worth less and unlike
    # the best cells: it comes after the planted region.
    planted = by.set_index("place").loc[demo.POPULATION_PLANTED]
    decoy = by.set_index("place").loc[demo.POPULATION_DECOY]
    assert planted["white_space_score"] > 2 * decoy["white_space_score"]
    assert planted["index_high"] < 100  # under-penetrated beyond chance
    top = cells[cells["white_space_rank"] <= 3]
    assert set(top["region"]) == {demo.POPULATION_PLANTED}
    # Customers of the demo's third gender are not in the census: counted, not lost.
    assert summary["unplaced_reasons"].get("gender not in the population", 0) > 0
    assert summary["placed"] + summary["unplaced"] == summary["customers"]
    wh.close()


def test_api_answers_the_market_with_a_key_only(server: dict[str, Any]) -> None:
    url = server["url"] + "/v1/market"
    assert http.get(url).status_code == 401
    r = http.get(url, headers={"X-API-Key": server["keys"]["read"]}, params={"top": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["level"] == "region" and len(body["white_space"]) == 5
    assert body["white_space"][0]["region"] == demo.POPULATION_PLANTED
    assert {p["place"] for p in body["places"]} >= {demo.POPULATION_PLANTED, "Andalucía"}
    bad = http.get(url, headers={"X-API-Key": server["keys"]["read"]}, params={"level": "x"})
    assert bad.status_code == 400 and "region" in bad.json()["hint"]
    csv = http.get(
        url + "/export",
        headers={"X-API-Key": server["keys"]["read"]},
        params={"format": "csv", "level": "country"},
    )
    assert csv.status_code == 200 and "España" in csv.text


@pytest.mark.parametrize(
    ("lang", "title", "number"),
    [("es", "Mercado", r"\d,\d{3}\xa0%"), ("en", "Market", r"\d\.\d{3}%")],
)
def test_market_page_in_both_languages(
    server: dict[str, Any], lang: str, title: str, number: str
) -> None:
    svc = server["app"].state.svc
    s = create_session(svc.sessions, server["keys"]["read"])
    assert s is not None
    try:
        r = http.get(
            server["url"] + "/dashboard/market",
            params={"lang": lang},
            cookies={SESSION_COOKIE: s.sid},
        )
    finally:
        svc.sessions.end(s.sid)
    assert r.status_code == 200
    html = r.text
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script\b.*?</script>", " ", html, flags=re.S))
    assert not RAW.findall(text), RAW.findall(text)
    assert f"<h1>{title}</h1>" in html and 'id="white-space"' in html
    assert demo.POPULATION_PLANTED in text and re.search(number, text)
    assert 'id="chart-market"' in html  # no GeoJSON configured: sorted bars
    spec = re.search(r'id="chart-market-spec">(.*?)</script>', html, flags=re.S)
    assert spec is not None and "<" not in spec.group(1)  # JSON in a script is escaped


def test_report_draws_the_users_geojson_as_a_map(server: dict[str, Any], tmp_path: Path) -> None:
    wh = _demo_copy(server, tmp_path)
    settings = load_settings(env={}).with_overrides(market_geojson=str(GEOJSON))
    html = build_report(wh, "es", settings)
    wh.close()
    assert "<h2>Mercado</h2>" in html
    svg = html[html.index('class="market-map"') :]
    places = re.findall(r'data-place="([^"]*)"', svg[: svg.index("</svg>")])
    # Every region has a shape (the first written in capitals in the file); one shape has no data.
    assert demo.POPULATION_PLANTED in places and "Comunidad de Madrid" in places
    assert places.count("") == 1
    planted = re.search(r'fill="(#[0-9A-F]+)"[^>]*data-place="Comunitat Valenciana"', svg)
    assert planted is not None and planted.group(1) == "#D55E00"  # index below 50


def test_choropleth_escapes_what_it_writes() -> None:
    geo = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "<script>x</script>"},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            }
        ],
    }
    svg = choropleth_svg(
        geo, "name", {"<script>x</script>": 150.0}, lambda p: f"{p} & co", ["a"] * 6, "t<"
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp; co" in svg
    assert 'fill="#56B4E9"' in svg


def test_geojson_export_merges_the_numbers_into_the_users_features(
    server: dict[str, Any], tmp_path: Path
) -> None:
    wh = _demo_copy(server, tmp_path)
    merged = json.loads(export_market(wh, "geojson-properties", geojson=GEOJSON))
    wh.close()
    by = {f["properties"]["name"]: f["properties"] for f in merged["features"]}
    assert by["COMUNIDAD DE MADRID"]["penetration"] > 0  # matched without regard to case
    assert "penetration" not in by["Atlántida"]
    assert load_geojson(GEOJSON)["type"] == "FeatureCollection"


def test_market_page_draws_the_configured_geojson_or_says_why_not(server: dict[str, Any]) -> None:
    svc = server["app"].state.svc
    before = svc.settings
    s = create_session(svc.sessions, server["keys"]["read"])
    assert s is not None

    def page(**settings: str) -> str:
        svc.settings = before.with_overrides(market_geojson=str(GEOJSON), **settings)
        r = http.get(
            server["url"] + "/dashboard/market",
            params={"lang": "es"},
            cookies={SESSION_COOKIE: s.sid},
        )
        assert r.status_code == 200
        return r.text

    try:
        html = page()
        wrong_key = page(market_geojson_key="codigo")
    finally:
        svc.settings = before
        svc.sessions.end(s.sid)
    assert 'class="market-map"' in html and 'id="chart-market"' not in html
    shape = re.search(r'<path [^>]*data-place="Comunitat Valenciana"><title>([^<]*)</title>', html)
    assert shape is not None and shape.group(1).startswith("Comunitat Valenciana: índice ")
    assert "índice por debajo de 50" in html  # the legend, in Spanish
    assert 'id="map-error"' in wrong_key and "market_geojson_key" in wrong_key
    assert 'id="chart-market"' in wrong_key  # the bars instead


B2B_POPULATION = """\
sector;estrato asalariados;empresas
retail;1-9;100
retail;10-49;50
software;1-9;40
software;10-49;10
"""
B2B_CUSTOMERS = """\
id_cliente;id_empresa;sector;empleados
K1;E1;Retail;5
K2;E1;Retail;5
K3;E2;retail;20
K4;E3;Software;30
K5;E4;software;400
K6;E5;;3
"""


def test_b2b_cells_count_companies_by_industry_and_size_band(tmp_path: Path) -> None:
    (tmp_path / "empresas.csv").write_text(B2B_POPULATION, encoding="utf-8")
    (tmp_path / "clientes.csv").write_text(B2B_CUSTOMERS, encoding="utf-8")
    wh = segmentum.connect("duckdb://")
    ingest("population", tmp_path / "empresas.csv", warehouse=wh)
    ingest("customers", tmp_path / "clientes.csv", warehouse=wh)
    import datetime as dt

    ids = [f"K{i}" for i in range(1, 7)]
    wh.write(
        "customer_features",
        pa.table(
            {
                "customer_id": ids,
                "as_of": pa.array([dt.date(2026, 1, 1)] * 6, pa.date32()),
                "run_id": ["r"] * 6,
                "frequency": [1] * 6,
                "monetary": [10.0] * 6,
            }
        ),
    )
    r = compute_market(wh, store=False)
    assert r.dimensions == ["industry", "company_size"]
    cells = {(c["industry"], c["company_size"]): c for c in r.cells.to_dict("records")}
    assert cells[("retail", "1-9")]["customers"] == 1  # two contacts of one company
    assert cells[("retail", "1-9")]["penetration"] == pytest.approx(0.01)
    assert cells[("retail", "10-49")]["customers"] == 1
    assert cells[("software", "10-49")]["customers"] == 1
    assert r.overall_penetration == pytest.approx(3 / 200)
    assert r.unplaced == {"company_size not in the population": 1, "no industry": 1}


def test_a_cell_counted_in_two_rows_is_said_on_the_page_and_in_the_api_in_spanish(
    hand_made: dict[str, Any], tmp_path: Path
) -> None:
    """The market sums the rows of a cell that one file writes twice, and says so; only the
    command line said it (the API in English only, the Market page not at all), so a reader
    of the page took the halved penetrations at face value."""
    from tests.conftest import serving

    from segmentum.service.app import create_app

    shutil.copyfile(hand_made["path"], tmp_path / "m.duckdb")
    url = f"duckdb:///{tmp_path / 'm.duckdb'}"
    wh = segmentum.connect(url)
    text = "Comunidad;Sexo;Población;Año\nNorte;Mujer;600;2025\nNorte;Mujer;400;2025\n"
    (tmp_path / "norte.csv").write_text(text, encoding="utf-8")
    settings = load_settings(env={})
    [r] = ingest("population", tmp_path / "norte.csv", warehouse=wh, settings=settings)
    assert r.updated == 2  # the stored cell replaced by the file's two rows of it
    result = compute_market(wh, settings=settings, run_id="t2")
    assert any("more than one population row" in n for n in result.notes), result.notes
    wh.close()
    app = create_app(url, settings)
    svc = app.state.svc
    key = create_key(svc.state, "reader", ["read"])
    s = create_session(svc.sessions, key)
    assert s is not None
    with serving(app) as base:
        page = http.get(
            base + "/dashboard/market", params={"lang": "es"}, cookies={SESSION_COOKIE: s.sid}
        )
        api = http.get(base + "/v1/market", headers={"X-API-Key": key}).json()
    assert page.status_code == 200
    assert "aparecen en más de una fila de población" in page.text, page.text[-2000:]
    # A note that warns looks like a warning; one that says how a figure was measured does
    # not (the white space's benchmark was shown as a warning).
    notes = re.findall(r'<p class="notice (\w+) market-note">([^<]*)</p>', page.text)
    kinds = {kind for kind, text in notes if "más de una fila de población" in text}
    assert kinds == {"warn"}, notes
    assert all(kind == "info" for kind, text in notes if text.startswith("espacio en blanco")), (
        notes
    )
    assert any("se sumaron sus cifras" in n for n in api["notes_es"]), api
