"""Journey: a customers file full of script is loaded, and no dashboard page runs any of it.

Every text field of the demo's files (names, places, professions, interests, product names and
categories, campaign ids, event types) is replaced by markup that would set ``window.__xss`` if
a page ever placed it unescaped in HTML, in an attribute or inside a ``<script>`` (the city
named ``</script><script>...`` that once ran on the geography page). A saved segment and a
campaign carry it too. Each page is opened in headless Chromium; nothing may have run, and the
page's own scripts must raise no error and no CSP violation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pandas as pd
import pytest
from playwright.sync_api import sync_playwright

import segmentum
from segmentum import demo, pipeline
from segmentum.config import load_settings
from segmentum.history.snapshots import backfill

PAYLOADS = [
    "</script><script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=2>",
    "\"'><svg onload=window.__xss=3>",
    "{{7*7}}<script>window.__xss=4</script>",
]
SETTINGS = load_settings(env={}).with_overrides(discover_segments=False)


def _hostile(i: int, kind: str) -> str:
    # A different payload per row, and the row number so values stay distinct.
    return f"{kind}{i % 7}{PAYLOADS[i % len(PAYLOADS)]}"


def _poison(folder: Path) -> None:
    customers = folder / "clientes.csv"
    c = pd.read_csv(customers, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    for col in ("nombre", "apellidos", "comunidad", "provincia", "ciudad", "barrio", "profesion"):
        c[col] = [_hostile(i, col[:3]) for i in range(len(c))]
    c["intereses"] = [f"home,{_hostile(i, 'tag')}" for i in range(len(c))]
    c.to_csv(customers, sep=";", encoding="cp1252", index=False)
    products = folder / "products.csv"
    p = pd.read_csv(products, dtype=str, keep_default_na=False)
    p["name"] = [_hostile(i, "prod") for i in range(len(p))]
    p["category"] = [_hostile(i, "cat") for i in range(len(p))]
    p.to_csv(products, index=False)
    lines = folder / "transactions.csv"
    t = pd.read_csv(lines, dtype=str, keep_default_na=False)
    t["Category"] = [_hostile(i, "cat") for i in range(len(t))]
    t.to_csv(lines, index=False)
    events = folder / "events.csv"
    e = pd.read_csv(events, dtype=str, keep_default_na=False)
    e["event_type"] = [_hostile(i, "ev") for i in range(len(e))]
    e.to_csv(events, index=False)
    results = folder / "campaign_results.csv"
    r = pd.read_csv(results, dtype=str, keep_default_na=False)
    r["campaign_id"] = PAYLOADS[0]
    r.to_csv(results, index=False)
    (folder / "segments.yaml").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from conftest import serving
    from segmentum.campaigns.core import Campaigns
    from segmentum.segments.store import Segments
    from segmentum.service.app import create_app
    from segmentum.service.auth import create_key
    from segmentum.service.state import StateStore

    root = tmp_path_factory.mktemp("xss")
    files = demo.generate(root / "demo", customers=300, seed=5)
    folder = files["transactions"].parent
    _poison(folder)
    path = root / "w.duckdb"
    wh = segmentum.connect(f"duckdb:///{path}")
    pipeline.run(wh, data=folder, settings=SETTINGS)
    backfill(wh, periods=2, settings=SETTINGS)
    Segments(wh, SETTINGS).create("hostile", f"city == '{PAYLOADS[0]}'", description=PAYLOADS[1])
    Segments(wh, SETTINGS).compute()
    camp = Campaigns(wh, SETTINGS).create(PAYLOADS[2], "winback", "email")
    cid = wh.table("customers").customer_id.min().to_pyarrow().as_py()
    wh.close()
    url = f"duckdb:///{path}"
    from segmentum.flows import Flows  # a flow whose texts carry the payloads too

    said = {"es": PAYLOADS[0], "en": PAYLOADS[1]}
    send = {"channel": "email", "subject": said, "body": said}
    flow = {"name": "hostile", "description": said, "trigger": {"segment": PAYLOADS[2]}}
    Flows.for_warehouse(url, SETTINGS).save(json.dumps({**flow, "steps": [{"send": send}]}))
    key = create_key(StateStore.for_warehouse(url, SETTINGS), "admin", ["admin"])
    with serving(create_app(url, SETTINGS)) as base:
        yield {"url": base, "key": key, "campaign": camp.campaign_id, "customer": cid}


def test_no_page_runs_script_from_the_data(hostile_server: dict[str, Any]) -> None:
    s = hostile_server
    pages = [
        "/dashboard",
        "/dashboard/geography",
        f"/dashboard/customer?q={quote(s['customer'])}",
        "/dashboard/customer?q=" + quote(PAYLOADS[1]),
        "/dashboard/segments?rule=" + quote(f"city == '{PAYLOADS[0]}'"),
        "/dashboard/explorer?segment=hostile",
        "/dashboard/explorer?rule=" + quote(f"city == '{PAYLOADS[0]}'"),
        "/dashboard/micro?dimensions=region,city,age_band",
        "/dashboard/micro?dimensions=" + quote(PAYLOADS[3]),
        "/dashboard/migration",
        "/dashboard/migration?by=" + quote(PAYLOADS[0]),
        f"/dashboard/campaigns?c={quote(s['campaign'])}",
        "/dashboard/campaigns?c=" + quote(PAYLOADS[0]),
        "/dashboard/data",
        "/dashboard/keys",
        "/dashboard/flows",
        "/dashboard/flows/hostile",
        "/dashboard/flows?customer=" + quote(PAYLOADS[1]),
        "/dashboard/explorer?rule=" + quote("rfm_segment == 'Champions'"),  # its playbook
        "/login?next=" + quote("javascript:window.__xss=9"),
    ]
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is not installed: `make test` installs it with apt-get"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(120_000)  # some pages are computed live on a busy machine
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
        page.goto(s["url"] + "/login")
        page.fill("#key", s["key"])
        page.click("#sign-in")
        page.wait_for_url("**/dashboard")
        seen_payload = 0
        for path in pages:
            page.goto(s["url"] + path)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(300)  # let deferred scripts and charts run
            assert page.evaluate("typeof window.__xss") == "undefined", path
            seen_payload += page.content().count("window.__xss")
            assert urlparse(page.url).hostname == "127.0.0.1"
        browser.close()
    assert seen_payload > 20  # the hostile text did reach the pages, as text
    assert not problems, problems
