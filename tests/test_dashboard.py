"""The dashboard in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from segmentum.report import build_report

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"


@pytest.fixture(autouse=True)
def _screenshots(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every page a test opened is kept as a screenshot in test-artifacts/screenshots."""
    OPENED.clear()
    yield
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("/", "_").replace("?", "_")
    for i, page in enumerate(OPENED):
        if not page.is_closed():
            page.screenshot(path=str(ARTIFACTS / f"{name}-{i}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed: `make test` installs it with apt-get")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


OPENED: list[Page] = []


def _page(browser: Browser, server: dict[str, Any], lang: str = "en") -> tuple[Page, list[str]]:
    ctx = browser.new_context(
        locale="es-ES" if lang == "es" else "en-US",
        extra_http_headers={"Accept-Language": "es-ES" if lang == "es" else "en-US"},
    )
    page = ctx.new_page()
    OPENED.append(page)
    hosts: list[str] = []
    page.on("request", lambda r: hosts.append(urlparse(r.url).hostname or ""))
    return page, hosts


def _sign_in(page: Page, server: dict[str, Any], key: str = "read") -> None:
    page.goto(server["url"] + "/dashboard")
    assert page.url.endswith("/login")
    page.fill("#key", server["keys"][key])
    page.click("#sign-in")
    page.wait_for_url("**/dashboard")


def test_sign_in_rejects_a_wrong_key(browser: Browser, server: dict[str, Any]) -> None:
    page, _ = _page(browser, server)
    page.goto(server["url"] + "/login")
    page.fill("#key", "sgm_nope_nope")
    page.click("#sign-in")
    assert page.locator("#error").is_visible()


def test_overview_draws_its_charts_offline(browser: Browser, server: dict[str, Any]) -> None:
    page, hosts = _page(browser, server)
    _sign_in(page, server)
    assert "Overview" in page.inner_text("h1")
    assert page.inner_text("#kpi-customers").replace(",", "").split()[-1].isdigit()
    for chart in ("rfm_segment", "value_tier", "value_potential", "heatmap", "clv_histogram"):
        page.wait_for_selector(f"#chart-{chart} .main-svg", timeout=10_000)
    assert set(hosts) == {"127.0.0.1"}  # no CDN: everything is served by the app


def test_language_follows_the_browser_and_can_be_switched(
    browser: Browser, server: dict[str, Any]
) -> None:
    page, _ = _page(browser, server, lang="es")
    _sign_in(page, server)
    assert "Resumen" in page.inner_text("h1")
    page.click("#lang")
    page.wait_for_load_state()
    assert "Overview" in page.inner_text("h1")
    page.goto(server["url"] + "/dashboard/customer")  # the choice is remembered
    assert "Customer lookup" in page.inner_text("h1")


def test_segment_builder_shows_live_size_and_errors(
    browser: Browser, server: dict[str, Any]
) -> None:
    page, _ = _page(browser, server)
    _sign_in(page, server)
    page.goto(server["url"] + "/dashboard/segments")
    page.fill("#rule", "value_tier == 'high'")
    page.wait_for_function("document.getElementById('result').textContent.startsWith('Size')")
    assert "%" in page.inner_text("#result")
    page.fill("#rule", "frequency >= 'x'")
    page.wait_for_selector("#result.error")
    assert "position" in page.inner_text("#result")


def test_customer_lookup_page(browser: Browser, server: dict[str, Any]) -> None:
    page, _ = _page(browser, server)
    _sign_in(page, server)
    cid = server["wh"].table("customer_features").customer_id.min().to_pyarrow().as_py()
    page.goto(server["url"] + "/dashboard/customer")
    page.fill("#customer-id", cid)
    page.click("#search")
    page.wait_for_selector("#customer")
    text = page.inner_text("#customer")
    assert "rfm_segment" in text and "best_hour_band" in text
    page.fill("#customer-id", "nobody")
    page.click("#search")
    page.wait_for_selector("#not-found")


def test_report_opens_offline_in_both_languages(
    browser: Browser, server: dict[str, Any], tmp_path: Any
) -> None:
    for lang, word in (("es", "Resumen"), ("en", "Overview")):
        f = tmp_path / f"report-{lang}.html"
        f.write_text(build_report(server["wh"], lang), encoding="utf-8")
        page, hosts = _page(browser, server)
        page.goto(f.as_uri())
        assert word in page.inner_text("h2")
        assert page.locator("svg").count() >= 3
        assert all(h == "" for h in hosts)  # file:// only, nothing fetched


@pytest.mark.parametrize(
    ("path", "selector"),
    [
        ("/dashboard/explorer?segment=vip", "#profile"),
        ("/dashboard/micro?dimensions=value_tier,region", "#micro"),
        ("/dashboard/geography", "#chart-geo .main-svg"),
        ("/dashboard/migration", "h1"),
        ("/dashboard/campaigns", "h1"),
        ("/dashboard/data", "#runs"),
    ],
)
def test_every_page_renders(
    browser: Browser, server: dict[str, Any], path: str, selector: str
) -> None:
    page, hosts = _page(browser, server, lang="es")
    _sign_in(page, server)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    resp = page.goto(server["url"] + path)
    assert resp is not None and resp.status == 200
    page.wait_for_selector(selector, timeout=10_000)
    assert not errors and set(hosts) == {"127.0.0.1"}


def test_build_and_save_a_segment_then_export_its_audience(
    browser: Browser, server: dict[str, Any], tmp_path: Path
) -> None:
    page, _ = _page(browser, server)
    _sign_in(page, server, key="admin")
    page.goto(server["url"] + "/dashboard/segments")
    page.fill("#rule", "monetary > 500 and frequency >= 2")
    page.wait_for_function("document.getElementById('result').textContent.startsWith('Size')")
    size = int(page.inner_text("#result").split(":")[1].split("/")[0].replace(",", ""))
    page.fill("#name", "browser_made")
    page.click("#save")
    page.wait_for_function(
        "document.getElementById('saved-msg').textContent.includes('browser_made')"
    )
    # Compute it, then export its members from the explorer.
    import httpx

    job = httpx.post(
        server["url"] + "/v1/jobs/pipeline", headers={"X-API-Key": server["keys"]["admin"]}
    ).json()
    for _ in range(600):
        if (
            httpx.get(
                server["url"] + f"/v1/jobs/{job['job_id']}",
                headers={"X-API-Key": server["keys"]["admin"]},
            ).json()["status"]
            != "running"
        ):
            break
        page.wait_for_timeout(100)
    page.goto(server["url"] + "/dashboard/explorer?segment=browser_made")
    with page.expect_download() as dl:
        page.click("#export")
    path = tmp_path / "audience.csv"
    dl.value.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "customer_id" and len(lines) - 1 == size


def test_open_the_sankey(browser: Browser, server: dict[str, Any]) -> None:
    page, _ = _page(browser, server)
    _sign_in(page, server)
    page.goto(server["url"] + "/dashboard/migration?by=value_tier")
    page.wait_for_selector("#chart-sankey .main-svg", timeout=10_000)
    assert page.locator("#chart-sankey .sankey-node").count() >= 3
    assert page.locator("#forecast").count() == 1


def test_campaign_audience_and_schedule_page(browser: Browser, server: dict[str, Any]) -> None:
    import httpx

    c = httpx.post(
        server["url"] + "/v1/campaigns",
        json={"name": "Dashboard winback", "tactic": "winback", "channel": "email"},
        headers={"X-API-Key": server["keys"]["admin"]},
    ).json()
    page, _ = _page(browser, server)
    _sign_in(page, server)
    page.goto(server["url"] + f"/dashboard/campaigns?c={c['campaign_id']}")
    page.wait_for_selector("#plan")
    text = page.inner_text("#outcomes")
    assert "scheduled" in text and "control" in text
    assert page.locator("#examples tr").count() > 1
