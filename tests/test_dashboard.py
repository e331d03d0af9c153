"""The dashboard in a real headless Chromium (Debian's), driven by Playwright: every page in
both languages, sessions and CSRF, the builder, the charts' layout, accessibility (axe-core)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from segmentum.config import load_settings
from segmentum.report import build_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
AXE = ROOT / "tests" / "assets" / "axe.min.js"
PAGES = [
    ("overview", "/dashboard", "#chart-rfm_segment"),
    ("customer", "/dashboard/customer", "h1"),
    ("segments", "/dashboard/segments", "#rule"),
    ("explorer", "/dashboard/explorer?segment=vip", "#profile"),
    ("micro", "/dashboard/micro", "#micro"),  # the cached default tree
    ("geography", "/dashboard/geography", "#chart-geo"),
    ("market", "/dashboard/market", "#white-space"),
    ("satisfaction", "/dashboard/satisfaction", "#satisfaction-groups"),
    ("migration", "/dashboard/migration", "#chart-sankey"),
    ("campaigns", "/dashboard/campaigns", "h1"),
    ("flows", "/dashboard/flows", "#flow-templates"),
    ("data", "/dashboard/data", "#runs"),
]
# What must never reach a person.
RAW = re.compile(r"\b(nan|NaN|None|NaT|null|undefined|inf)\b")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed: `make test` installs it with apt-get")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Tab:
    """A page with what it fetched and every console message and script error it raised."""

    def __init__(self, browser: Browser, lang: str, width: int = 1280, axe: bool = False) -> None:
        self.ctx = browser.new_context(
            bypass_csp=axe,  # only to add axe-core, a test's own script, to the page
            locale="es-ES" if lang == "es" else "en-US",
            extra_http_headers={"Accept-Language": "es-ES" if lang == "es" else "en-US"},
            viewport={"width": width, "height": 900},
        )
        self.page: Page = self.ctx.new_page()
        self.page.set_default_timeout(60_000)  # pages computed live on a busy two-core machine
        self.hosts: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.hosts.append(urlparse(r.url).hostname or ""))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def sign_in(self, server: dict[str, Any], key: str = "read") -> Page:
        self.page.goto(server["url"] + "/dashboard")
        assert "/login" in self.page.url
        self.page.fill("#key", server["keys"][key])
        self.page.click("#sign-in")
        self.page.wait_for_url("**/dashboard")
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Any]:
    opened: list[Tab] = []

    def make(lang: str = "en", width: int = 1280, axe: bool = False) -> Tab:
        opened.append(Tab(browser, lang, width, axe))
        return opened[-1]

    yield make
    for t in opened:
        t.close()


def _errors(t: Tab) -> list[str]:
    return [c for c in t.console if c.startswith(("error", "pageerror"))]


def test_sign_in_rejects_a_wrong_key(tab: Any, server: dict[str, Any]) -> None:
    t = tab("en")
    t.page.goto(server["url"] + "/login")
    t.page.fill("#key", "sgm_nope_nope")
    t.page.click("#sign-in")
    assert t.page.locator("#error").is_visible()


@pytest.mark.parametrize("lang", ["es", "en"])
def test_every_page_renders_in_both_languages_without_raw_values_or_accessibility_issues(
    tab: Any, server: dict[str, Any], lang: str
) -> None:
    t = tab(lang)
    page = t.sign_in(server)
    serious: list[str] = []
    for name, path, selector in PAGES:
        resp = page.goto(server["url"] + path)
        assert resp is not None and resp.status == 200, path
        page.wait_for_selector(selector, timeout=15_000)
        if page.locator("[data-chart]").count():
            page.wait_for_selector("[data-chart][data-drawn]", timeout=15_000)
        text = page.inner_text("body")
        assert not RAW.findall(text), (path, RAW.findall(text))
        assert page.locator("[aria-current=page]").first.inner_text() != ""
        t.shot(f"{lang}-{name}")
        serious += [f"{path}: {v}" for v in _serious_accessibility_issues(page)]
    assert not serious, serious  # no serious or critical accessibility issue (axe-core)
    assert set(t.hosts) == {"127.0.0.1"}  # no CDN: everything is served by the app
    assert not _errors(t), _errors(t)  # no script error, no CSP violation


def test_spanish_pages_use_spanish_words_and_numbers(tab: Any, server: dict[str, Any]) -> None:
    t = tab("es")
    page = t.sign_in(server)
    assert "Resumen" in page.inner_text("h1")
    kpi = page.inner_text("#kpi-customers .kpi-value")
    assert re.fullmatch(r"\d{1,3}(\.\d{3})*", kpi), kpi
    page.wait_for_selector("#chart-rfm_segment[data-drawn]")
    ticks = page.locator("#chart-rfm_segment .xtick text").all_text_contents()
    assert "Campeones" in ticks or "Leales" in ticks, ticks
    for english in ("Champions", "Loyal", "high", "medium", "Stars", "Customers", "Revenue"):
        assert english not in page.inner_text("main"), english
    page.goto(server["url"] + "/dashboard/migration")
    assert "high" not in page.inner_text("main")
    page.goto(server["url"] + "/dashboard/data")  # loaded tables by their Spanish names
    tables = page.locator("#batches tbody tr td:nth-child(2)").all_text_contents()
    assert "ventas" in tables and "transactions" not in tables, tables


@pytest.mark.parametrize("width", [390, 1024, 1400, 1920])
def test_overview_charts_fit_their_cards_on_first_load(
    tab: Any, server: dict[str, Any], width: int
) -> None:
    t = tab("en", width)
    page = t.sign_in(server)
    page.wait_for_selector("#chart-rfm_segment[data-drawn]")
    for chart in page.locator("[data-chart]").all():
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        svg = chart.locator(".main-svg").first.bounding_box()
        assert box and svg
        assert svg["width"] <= box["width"] + 1 and svg["x"] >= box["x"] - 1
        assert svg["width"] >= box["width"] - 2  # drawn at the card's width, not a default
    # All eleven RFM segments, a title, a legend and the revenue axis.
    rfm = page.locator("#chart-rfm_segment")
    assert (
        rfm.locator(".xtick").count()
        == len(server["wh"].table("customer_classes").rfm_segment.name("s").to_pyarrow().unique())
        or rfm.locator(".xtick").count() >= 9
    )
    assert rfm.locator(".gtitle").text_content() == "RFM segments"
    assert rfm.locator(".legend .traces").count() == 2
    assert "Revenue share" in (rfm.locator(".y2title").text_content() or "")
    if width == 390:
        assert page.evaluate("document.documentElement.scrollWidth") <= 392
        t.shot("en-overview-390px")


def test_pages_with_wide_tables_fit_a_phone(tab: Any, server: dict[str, Any]) -> None:
    """At 390 px the explorer's tests table and decision tree, the satisfaction page's row of
    tabs and the keys table's hidden header made the page 667-732 px wide: they now scroll
    in their own box or wrap, and the page does not."""
    from segmentum.segments.store import Segments

    [seg, *_] = Segments(server["wh"], load_settings(env={})).list()
    t = tab("es", 390)
    page = t.sign_in(server, "admin")
    for path in (f"/dashboard/explorer?segment={seg.name}", "/dashboard/satisfaction"):
        page.goto(server["url"] + path)
        for details in page.locator("main details").all():
            details.evaluate("d => { d.open = true; }")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 392, (path, width)
    page.goto(server["url"] + "/dashboard/keys")
    assert page.evaluate("document.documentElement.scrollWidth") <= 392


def test_axis_labels_are_drawn_inside_their_chart(tab: Any, server: dict[str, Any]) -> None:
    # The satisfaction page's group names and months were cut off at the card's bottom edge.
    t = tab("es")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/satisfaction")
    for chart_id in ("#chart-nps", "#chart-trend"):
        chart = page.locator(chart_id)
        page.wait_for_selector(f"{chart_id}[data-drawn]")
        svg = chart.locator(".main-svg").first.bounding_box()
        ticks = chart.locator(".xtick text").all()
        assert svg and ticks
        for tick in ticks:
            label = tick.bounding_box()
            assert label and label["y"] + label["height"] <= svg["y"] + svg["height"] + 1, (
                chart_id,
                tick.text_content(),
            )


def test_clicking_an_rfm_bar_opens_those_customers_in_the_explorer(
    tab: Any, server: dict[str, Any]
) -> None:
    t = tab("en")
    page = t.sign_in(server)
    page.wait_for_selector("#chart-rfm_segment[data-drawn]")
    page.locator("#chart-rfm_segment .bars path").first.click(force=True)
    page.wait_for_url("**/dashboard/explorer?rule=*")
    assert "rfm_segment ==" in page.inner_text("#selection h2")
    assert int(page.inner_text("#selection-size").replace(",", "")) > 0


def test_language_switch_keeps_the_page_and_its_query(tab: Any, server: dict[str, Any]) -> None:
    t = tab("es")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/explorer?segment=vip")
    page.click("#lang")
    page.wait_for_load_state()
    assert "segment=vip" in page.url and "lang=en" in page.url
    assert page.inner_text("h1") == "Segment explorer"
    assert page.locator("#profile").count() == 1
    page.goto(server["url"] + "/dashboard/customer")  # the choice is remembered
    assert page.inner_text("h1") == "Customers"


def test_builder_shows_size_revenue_and_reach_live(tab: Any, server: dict[str, Any]) -> None:
    t = tab("en")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/segments")
    page.fill("#rule", "value_tier == 'high'")
    page.wait_for_selector("#summary")
    assert page.inner_text("#size").startswith("Size")
    # The base is said ("of 1,500 customers"), as the explorer says its own.
    assert re.search(r"^Size: [\d,]+ of [\d,]+ customers \(", page.inner_text("#size"))
    assert "of revenue" in page.inner_text("#revenue")
    assert page.locator("#reach tr").count() > 1


def test_builder_error_keeps_the_hint_and_the_caret_under_the_fault(
    tab: Any, server: dict[str, Any]
) -> None:
    t = tab("es")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/segments")
    page.fill("#rule", "frequncy >= 2")
    page.wait_for_selector("#result.error #caret")
    assert "La regla tiene un error en la posición 1" in page.inner_text("#result")
    lines = page.inner_text("#caret").split("\n")
    assert lines[0] == "frequncy >= 2" and lines[1] == "^"
    assert "frequency" in page.inner_text("#result")  # the server's "did you mean"
    page.fill("#rule", "frequency >= 2 and  monetary > 'x'")
    page.wait_for_selector("#result.error #caret")
    expect(page.locator("#caret")).to_contain_text("monetary", timeout=60_000)
    rule, caret = page.inner_text("#caret").split("\n")[:2]
    reported = int(re.search(r"(\d+):", page.inner_text("#result strong")).group(1))
    assert caret.strip() == "^" and caret.index("^") + 1 == reported  # same offsets
    assert rule == "frequency >= 2 and  monetary > 'x'"
    assert (
        page.evaluate("getComputedStyle(document.getElementById('caret')).fontFamily")
        .lower()
        .count("mono")
    )


def test_builder_warns_on_a_value_no_customer_has(tab: Any, server: dict[str, Any]) -> None:
    t = tab("es")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/segments")
    page.fill("#rule", "value_tier == 'hihg'")
    page.wait_for_selector(".unknown-value")
    assert "'high'" in page.inner_text(".unknown-value")
    page.click(".unknown-value button")
    expect(page.locator("#rule")).to_have_value(re.compile("'high'"), timeout=60_000)
    page.select_option("#suggest-column", "lifecycle_stage")
    page.wait_for_selector("#suggestions button")
    assert page.locator("#suggestions button").count() >= 2


def test_saving_a_segment_computes_its_members_at_once(
    tab: Any, server: dict[str, Any], tmp_path: Path
) -> None:
    t = tab("en")
    page = t.sign_in(server, key="admin")
    page.goto(server["url"] + "/dashboard/segments")
    page.fill("#rule", "monetary > 500 and frequency >= 2")
    page.wait_for_selector("#summary")
    size = int(page.inner_text("#size b").replace(",", ""))
    page.fill("#name", "browser_made")
    page.click("#save")
    page.wait_for_selector("#saved-msg a")
    # What has it now and what waits for the next run (the overview's list, a customer's).
    assert "after the next run" in page.inner_text("#saved-msg")
    page.click("#saved-msg a")
    page.wait_for_selector("#profile")
    assert int(page.inner_text("#segment-size").replace(",", "")) == size
    with page.expect_download() as dl:
        page.click("#export")
    path = tmp_path / "audience.csv"
    dl.value.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("customer_id") and len(lines) - 1 == size


def test_a_saved_segment_is_edited_and_deleted_from_the_explorer_in_spanish(
    tab: Any, server: dict[str, Any]
) -> None:
    """The explorer's "edit or delete" opens the builder on the saved rule; a new rule and a
    hostile description are saved under the same name, the members (and those of a segment
    built on it) computed at once; deleting is refused while another segment uses it, then
    done, all said in Spanish."""
    admin = {"X-API-Key": server["keys"]["admin"]}
    base = server["url"]
    for name, rule in (("ed_base", "frequency >= 2"), ("ed_top", "ed_base and monetary > 100")):
        r = httpx.post(
            f"{base}/v1/segments", json={"name": name, "rule": rule}, headers=admin, timeout=120
        )
        assert r.status_code == 201, r.text

    def size(rule: str) -> int:
        r = httpx.post(
            f"{base}/v1/segments/preview", json={"rule": rule}, headers=admin, timeout=120
        )
        return int(r.json()["size"])

    t = tab("es")
    page = t.sign_in(server, key="admin")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.goto(base + "/dashboard/explorer?segment=ed_base")
    page.click("#edit-segment")
    page.wait_for_selector("#editing-name")
    assert page.inner_text("h1").startswith("Editar segmento")
    expect(page.locator("#rule")).to_have_value("frequency >= 2")
    assert page.locator("#name").count() == 0  # the name stays: it is what others use
    page.fill("#rule", "frequency >= 4")
    page.wait_for_selector("#summary")
    t.shot("es-segment-edit")
    hostile = "<script>alert('x')</script> & <b>VIP</b>"
    page.fill("#description", hostile)
    page.click("#save")
    page.wait_for_selector("#saved-msg a")
    want = size("frequency >= 4")
    assert f"{want:,}".replace(",", ".") in page.inner_text("#saved-msg")
    page.click("#saved-msg a")
    page.wait_for_selector("#profile")
    assert int(page.inner_text("#segment-size").replace(".", "")) == want
    assert page.inner_text("#segment-rule") == "frequency >= 4"
    assert page.inner_text("#segment-description") == hostile  # shown as text, not run
    page.goto(base + "/dashboard/explorer?segment=ed_top")
    page.wait_for_selector("#profile")
    expected = size("frequency >= 4 and monetary > 100")
    assert int(page.inner_text("#segment-size").replace(".", "")) == expected
    # Deleting the one another segment uses: refused, said why, nothing deleted.
    page.goto(base + "/dashboard/segments?edit=ed_base")
    expect(page.locator("#description")).to_have_value(hostile)
    page.click("#delete")
    page.wait_for_selector("#delete-error")
    said = page.inner_text("#delete-error")
    assert "ed_top" in said and "usa" in said, said
    t.shot("es-segment-delete-refused")
    assert page.inner_text("#segment-rule") == "frequency >= 4"
    for name in ("ed_top", "ed_base"):
        page.goto(base + f"/dashboard/segments?edit={name}")
        page.click("#delete")
        page.wait_for_selector("#deleted")
        assert name in page.inner_text("#deleted")
        assert name not in page.inner_text("#segment-list")
    assert len(dialogs) == 3 and all(d.startswith("¿Eliminar el segmento") for d in dialogs)
    page.goto(base + "/dashboard/segments?edit=ed_base")
    assert "ed_base" in page.inner_text("#edit-error")
    text = page.inner_text("body")
    assert not RAW.findall(text), RAW.findall(text)
    # The refusals (409, 404) are answered on purpose; the browser logs their status.
    assert not [e for e in _errors(t) if "status of 409" not in e and "status of 404" not in e]


def test_a_segment_a_draft_campaign_targets_is_deleted_after_the_campaign_in_spanish(
    tab: Any, server: dict[str, Any]
) -> None:
    """Deleting a segment that a campaign not sent yet targets is refused, naming the
    campaign; the campaign's page deletes it (asked first), and then the segment goes."""
    admin = {"X-API-Key": server["keys"]["admin"]}
    base = server["url"]
    r = httpx.post(
        f"{base}/v1/segments",
        json={"name": "dc_fans", "rule": "frequency >= 3"},
        headers=admin,
        timeout=120,
    )
    assert r.status_code == 201, r.text
    body = {
        "name": "Vuelta <b>dc</b>",
        "tactic": "segment",
        "channel": "email",
        "target": "dc_fans",
    }
    r = httpx.post(f"{base}/v1/campaigns", json=body, headers=admin, timeout=120)
    assert r.status_code == 201, r.text
    cid = r.json()["campaign_id"]
    t = tab("es")
    page = t.sign_in(server, key="admin")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.goto(base + "/dashboard/segments?edit=dc_fans")
    page.click("#delete")
    page.wait_for_selector("#delete-error")
    said = page.inner_text("#delete-error")
    assert "audiencia de campañas aún no enviadas" in said and cid in said, said
    page.goto(base + f"/dashboard/campaigns?c={cid}")
    page.wait_for_selector("#delete-campaign")
    t.shot("es-campaign-delete")
    page.click("#delete-campaign")
    page.wait_for_selector("#deleted")
    assert page.inner_text("#deleted") == "Se eliminó la campaña Vuelta <b>dc</b>."
    assert "Vuelta" not in page.inner_text("#campaigns")
    page.goto(base + "/dashboard/segments?edit=dc_fans")
    page.click("#delete")
    page.wait_for_selector("#deleted")
    assert "dc_fans" in page.inner_text("#deleted")
    assert dialogs == [
        "¿Eliminar el segmento dc_fans?",
        "¿Eliminar la campaña Vuelta <b>dc</b>?",
        "¿Eliminar el segmento dc_fans?",
    ], dialogs
    assert not RAW.findall(page.inner_text("body"))
    assert not [e for e in _errors(t) if "status of 409" not in e]


def test_micro_segment_typo_is_a_friendly_message(tab: Any, server: dict[str, Any]) -> None:
    t = tab("es")
    page = t.sign_in(server)
    resp = page.goto(server["url"] + "/dashboard/micro?dimensions=value_tier,regoin")
    assert resp is not None and resp.headers["content-type"].startswith("text/html")
    assert "Una de esas dimensiones no existe" in page.inner_text("#error")
    assert "{" not in page.inner_text("#error")


def test_micro_segments_are_a_collapsible_tree(tab: Any, server: dict[str, Any]) -> None:
    t = tab("en")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/micro")
    tree = page.locator("#micro")
    closed = tree.bounding_box()
    assert closed and closed["height"] < 1200
    first = tree.locator("details details > summary").first
    first.click()
    assert tree.locator("details details[open]").count() >= 1
    # Its figures are labelled, and its base said (the overview counts buyers only).
    figures = tree.locator(".node-figures").first.inner_text()
    assert " customers · revenue " in figures, figures
    assert "not bought yet" in page.inner_text("#micro-base")


def test_customer_search_by_email_opens_the_profile(tab: Any, server: dict[str, Any]) -> None:
    wh = server["wh"]
    row = (
        wh.table("customers")
        .filter(lambda c: c.email.notnull())
        .order_by("customer_id")
        .limit(1)
        .to_pyarrow()
        .to_pylist()[0]
    )
    t = tab("es")
    page = t.sign_in(server)
    page.goto(server["url"] + "/dashboard/customer")
    page.fill("#customer-id", "  " + row["email"].upper() + " ")
    page.click("#search")
    page.wait_for_selector("#customer")
    assert row["customer_id"] in page.inner_text("#profile-title")
    assert page.locator("#timeline li").count() >= 1
    assert page.locator("[data-field=rfm_segment]").inner_text() not in ("", "—")
    # Chances as percentages, as the audiences' reasons say them ("87,5 %", not "0,875").
    churn = page.locator("[data-field=churn_probability]").inner_text()
    assert re.fullmatch(r"\d{1,3},\d\xa0%", churn), churn
    page.fill("#customer-id", "nobody-at-all")
    page.click("#search")
    page.wait_for_selector("#not-found")


def test_pages_need_a_session_and_logout_ends_it(tab: Any, server: dict[str, Any]) -> None:
    t = tab("en")
    page = t.sign_in(server)
    cookies = {c["name"]: c for c in t.ctx.cookies()}
    assert cookies["segmentum_session"]["httpOnly"]
    assert server["keys"]["read"] not in str(cookies)  # the key never sits in a cookie
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(server["url"] + "/dashboard/data")
    assert "/login" in page.url
    # The old session id no longer opens anything.
    r = httpx.get(
        server["url"] + "/dashboard",
        cookies={"segmentum_session": cookies["segmentum_session"]["value"]},
    )
    assert r.status_code == 303 and "/login" in r.headers["location"]


def test_state_changes_without_the_csrf_token_are_refused(tab: Any, server: dict[str, Any]) -> None:
    t = tab("en")
    t.sign_in(server, key="admin")
    sid = {c["name"]: c["value"] for c in t.ctx.cookies()}["segmentum_session"]
    jar = {"segmentum_session": sid}
    base = server["url"]
    r = httpx.post(
        base + "/dashboard/api/segments", json={"name": "x", "rule": "frequency > 1"}, cookies=jar
    )
    assert r.status_code == 403
    r = httpx.post(
        base + "/dashboard/campaigns",
        data={"name": "x", "tactic": "winback", "channel": "email"},
        cookies=jar,
    )
    assert r.status_code == 403
    r = httpx.post(base + "/v1/segments", json={"name": "x", "rule": "frequency > 1"}, cookies=jar)
    assert r.status_code == 403  # the API refuses a cookie without the token too
    r = httpx.post(base + "/login", data={"key": server["keys"]["admin"]})
    assert "error" in r.headers.get("location", "")  # the sign-in form has its own token


def test_pages_carry_a_nonce_csp_and_cannot_be_framed(server: dict[str, Any]) -> None:
    a = httpx.get(server["url"] + "/login")
    b = httpx.get(server["url"] + "/login")
    csp = a.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'nonce-" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert csp != b.headers["content-security-policy"]  # a new nonce per response
    assert a.headers["x-frame-options"] == "DENY"


def test_keyboard_reaches_the_navigation_and_shows_the_current_page(
    tab: Any, server: dict[str, Any]
) -> None:
    t = tab("en")
    page = t.sign_in(server)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "nav-micro":
            break
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard/micro")
    assert page.locator("#nav-micro").get_attribute("aria-current") == "page"


def test_report_opens_offline_in_both_languages(
    tab: Any, server: dict[str, Any], tmp_path: Any
) -> None:
    for lang, word in (("es", "Resumen"), ("en", "Overview")):
        f = tmp_path / f"report-{lang}.html"
        html = build_report(server["wh"], lang)
        f.write_text(html, encoding="utf-8")
        # Dates, counts and money in the report's language ("31 dic 2025: 1.000 clientes,
        # 5.312.197 €"; it said "2025-12-31: 1,000 clientes, 5,312,197 EUR").
        head = re.search(r"<p>(a fecha de|as of) (.*?)</p>", html)
        assert head is not None, html[:500]
        if lang == "es":
            assert re.match(r"\d{1,2} \w{3} \d{4}: <b>[\d.]+</b> clientes, <b>[\d.]+", head[2])
        else:
            assert re.match(r"\w{3} \d{1,2}, \d{4}: <b>[\d,]+</b> customers", head[2])
        t = tab(lang)
        t.page.goto(f.as_uri())
        assert word in t.page.inner_text("h2")
        assert t.page.locator("svg").count() >= 3
        assert all(h == "" for h in t.hosts)  # file:// only, nothing fetched


def test_an_admin_makes_and_revokes_a_key_in_the_dashboard(
    tab: Any, server: dict[str, Any]
) -> None:
    t = tab("es")
    page = t.sign_in(server, key="admin")
    page.on("dialog", lambda d: d.accept())
    page.click("#nav-keys")
    page.wait_for_url("**/dashboard/keys")
    assert page.inner_text("h1") == "Claves de API"
    page.fill("#key-name", "crm de prueba")
    page.uncheck("#scope-read")
    page.check("#scope-write")
    page.click("#create-key-button")
    page.wait_for_selector("#new-key")
    key = page.inner_text("#new-key-value")
    key_id = key.split("_")[1]
    assert key.startswith("sgm_") and "/keys" in page.url and key not in page.url
    assert "escritura" in page.inner_text(f"#key-{key_id}")
    api = {"X-API-Key": key}
    assert httpx.get(server["url"] + "/v1/segments", headers=api, timeout=60).status_code == 200
    # Shown once: the list never shows it again.
    page.goto(server["url"] + "/dashboard/keys")
    assert key not in page.content()
    page.click(f"#key-{key_id} button.revoke")
    page.wait_for_selector("#revoked")
    assert "revocada" in page.inner_text(f"#key-{key_id}")
    assert httpx.get(server["url"] + "/v1/segments", headers=api, timeout=60).status_code == 401
    # The admin's own key cannot be revoked from its own session.
    own = server["keys"]["admin"].split("_")[1]
    assert page.locator(f"#key-{own} button.revoke").count() == 0
    assert not RAW.findall(page.inner_text("main"))
    assert not _serious_accessibility_issues(page)
    assert not _errors(t), _errors(t)


def test_an_admin_subscribes_a_webhook_from_a_segment(tab: Any, server: dict[str, Any]) -> None:
    import segmentum
    from segmentum.history.webhooks import subscriptions

    t = tab("en")
    page = t.sign_in(server, key="admin")
    page.on("dialog", lambda d: d.accept())
    page.goto(server["url"] + "/dashboard/explorer?segment=vip")
    page.wait_for_selector("#webhooks")
    page.fill("#webhook-url", "http://127.0.0.1:9/crm-hook")
    page.click("#subscribe-webhook")
    page.wait_for_selector("#new-webhook-secret")
    secret = page.inner_text("#new-webhook-secret")
    assert secret.startswith("whsec_")
    assert "127.0.0.1:9/crm-hook" in page.inner_text("#webhook-list")
    assert not _serious_accessibility_issues(page)
    page.fill("#webhook-url", "http://127.0.0.1:9/crm-hook")
    page.click("#subscribe-webhook")
    page.wait_for_selector("#webhook-error")
    assert "already subscribed" in page.inner_text("#webhook-error")
    with segmentum.connect(f"duckdb:///{server['db']}") as wh:
        subs = subscriptions(wh, "vip")
    assert [s.url for s in subs] == ["http://127.0.0.1:9/crm-hook"]
    assert secret not in page.content().split('id="webhook-list"')[1]  # shown once, above
    page.goto(server["url"] + "/dashboard/explorer?segment=vip")
    assert secret not in page.content()
    page.click("#webhook-list button.unsubscribe")
    page.wait_for_selector("#webhooks .empty")
    with segmentum.connect(f"duckdb:///{server['db']}") as wh:
        assert subscriptions(wh, "vip") == []
    # The repeated subscription is answered 422 on purpose; the browser logs that status.
    assert not [e for e in _errors(t) if "status of 422" not in e], _errors(t)


def _serious_accessibility_issues(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now.

    axe is evaluated through the browser's debugging protocol, so the page keeps its
    Content-Security-Policy (a <script> tag would be refused).
    """
    page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[str] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))"
    )
    return found
