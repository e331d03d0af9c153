"""Journey: a marketer's day in the dashboard, in Spanish and in English, in headless Chromium.

Sign in, read the overview (every chart inside its card, locale numbers, nothing raw), click an
RFM bar into the explorer, create a win-back email campaign with a bilingual template, read its
dry run, send it to a real SMTP server on 127.0.0.1 and see the results; find a customer by
email and open the profile; mistype a rule in the builder and get the caret and the hint.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, sync_playwright

import segmentum

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
RAW = re.compile(r"\b(nan|NaN|None|NaT|undefined)\b")
WORDS = {
    "es": {"overview": "Resumen", "campaigns": "Campañas", "sent": "Enviada", "caret": "posición"},
    "en": {"overview": "Overview", "campaigns": "Campaigns", "sent": "Sent", "caret": "position"},
}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    box = Inbox()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


@pytest.fixture(scope="module")
def shop(
    service_db: Path, inbox: tuple[Inbox, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The shared demo warehouse, copied, served with email going to the local SMTP server."""
    from conftest import SERVICE_SETTINGS, serving
    from segmentum.service.app import create_app
    from segmentum.service.auth import create_key
    from segmentum.service.state import StateStore

    path = tmp_path_factory.mktemp("journey") / "shop.duckdb"
    shutil.copyfile(service_db, path)
    settings = SERVICE_SETTINGS.with_overrides(
        smtp_host="127.0.0.1", smtp_port=inbox[1], smtp_starttls=False, currency="EUR"
    )
    url = f"duckdb:///{path}"
    key = create_key(StateStore.for_warehouse(url, settings), "marketing", ["write"])
    with serving(create_app(url, settings)) as base:
        yield {"url": base, "key": key, "path": path}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed: `make test` installs it with apt-get")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _email_of_a_customer(service_db: Path) -> tuple[str, str]:
    copy = service_db.with_name("journey-read.duckdb")
    shutil.copyfile(service_db, copy)
    wh = segmentum.connect(f"duckdb:///{copy}")
    try:
        c = wh.table("customers")
        row = (
            c.filter(c.email.notnull()).order_by("customer_id").limit(1).to_pyarrow().to_pylist()
        )[0]
        return str(row["customer_id"]), str(row["email"])
    finally:
        wh.close()


@pytest.mark.parametrize("lang", ["es", "en"])
def test_a_marketers_day_in_the_dashboard(
    browser: Browser,
    shop: dict[str, Any],
    inbox: tuple[Inbox, int],
    service_db: Path,
    lang: str,
) -> None:
    w = WORDS[lang]
    ctx = browser.new_context(
        locale="es-ES" if lang == "es" else "en-US", viewport={"width": 1280, "height": 900}
    )
    page = ctx.new_page()
    page.set_default_timeout(120_000)  # a send and live pages on a busy two-core machine
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    shot = 0

    def snap(name: str) -> None:
        nonlocal shot
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot += 1
        page.screenshot(path=str(ARTIFACTS / f"journey-{lang}-{shot:02d}-{name}.png"))

    # Sign in.
    page.goto(shop["url"] + f"/dashboard?lang={lang}")
    page.fill("#key", shop["key"])
    page.click("#sign-in")
    page.wait_for_url("**/dashboard*")
    assert w["overview"] in page.inner_text("h1")

    # The overview: charts drawn inside their cards, locale numbers, nothing raw.
    page.wait_for_selector("#chart-rfm_segment[data-drawn]")
    for chart in page.locator("[data-chart]").all():
        card, svg = chart.bounding_box(), chart.locator(".main-svg").first.bounding_box()
        assert card and svg and svg["width"] <= card["width"] + 1
    kpi = page.inner_text("#kpi-customers .kpi-value")
    assert re.fullmatch(r"\d{1,3}(\.\d{3})*" if lang == "es" else r"\d{1,3}(,\d{3})*", kpi)
    revenue = page.inner_text("#kpi-revenue .kpi-value")
    assert revenue.endswith("€") if lang == "es" else revenue.startswith("€")
    assert not RAW.findall(page.inner_text("body"))
    snap("overview")

    # An RFM bar into the explorer.
    page.locator("#chart-rfm_segment .bars path").first.click(force=True)
    page.wait_for_url("**/dashboard/explorer?rule=*")
    assert int(re.sub(r"\D", "", page.inner_text("#selection-size"))) > 0
    snap("explorer")

    # A win-back email campaign with a bilingual template, then its dry run.
    page.goto(shop["url"] + "/dashboard/campaigns")
    # Until edited, the message follows the tactic: its own subject (the form always
    # proposed the win-back's "Te echamos de menos", also for a cross-sell).
    from segmentum import i18n

    page.select_option("#campaign-tactic", "cross_sell")
    cross = i18n.translations("es").upgettext("email subject", "Something you may like")
    assert page.input_value("#subject-es") == cross
    assert page.input_value("#subject-en") == "Something you may like"
    assert "vuelve" not in page.input_value("#body-es")
    page.fill("#campaign-name", f"Win-back {lang}")
    page.select_option("#campaign-tactic", "winback")
    page.select_option("#campaign-channel", "email")
    # A control group large enough that some of it surely could not have been messaged (at
    # the default 10% the draw, seeded by the campaign's random id, missed them about one run
    # in eight, and the control note below was not there).
    page.fill("#campaign-control", "40")
    page.fill("#subject-es", "Te echamos de menos{% if first_name %}, {{ first_name }}{% endif %}")
    page.fill("#body-es", "{{ greeting }}, vuelve: tenemos novedades.")
    page.fill("#subject-en", "We miss you")
    page.fill("#body-en", "{{ greeting }}, come back: {{ recommendation or 'there is news' }}.")
    # The preview renders what the message will say: the if block and the fallback too.
    assert "Te echamos de menos, Martina" in page.inner_text("#preview-es")
    assert "{%" not in page.inner_text("#preview-es")
    assert "Hola Martina, vuelve" in page.inner_text("#preview-es")
    assert "Hi Martina, come back" in page.inner_text("#preview-en")
    page.click("#create")
    page.wait_for_selector("#plan")
    assert page.locator("#outcomes tbody tr").count() >= 1
    assert page.locator("#examples tbody tr").count() >= 1
    # Each example shows the message itself, as its recipient will read it.
    bodies = " ".join(b.text_content() or "" for b in page.locator("#examples pre").all())
    assert "vuelve: tenemos novedades" in bodies or "come back:" in bodies, bodies
    assert not RAW.findall(page.inner_text("#plan"))
    # Some of the control group could not have been messaged (no consent): the page says
    # how many were drawn and how many of them are compared.
    note = page.inner_text("#control-note")
    assert ("for the control group" if lang == "en" else "para el grupo de control") in note
    snap("dry-run")

    # Send to the SMTP server on 127.0.0.1, then the results.
    before = len(inbox[0].messages)
    page.click("#send")
    page.wait_for_selector("#sent")
    assert w["sent"] in page.inner_text("#sent")
    got = inbox[0].messages[before:]
    assert got, "nothing reached the SMTP server"
    subjects = [str(make_header(decode_header(m["Subject"]))) for m in got]
    assert all(s.startswith(("Te echamos de menos", "We miss you")) for s in subjects)
    assert not any(RAW.search(s) for s in subjects)
    assert page.locator("#campaigns tbody tr").count() >= 1
    assert not RAW.findall(page.inner_text("main"))
    # Once sent, the page shows the logged plan with what was done, not a new dry run.
    assert page.inner_text("#plan h3").startswith(("Sent:", "Enviada:"))
    done = [r.inner_text() for r in page.locator("#outcomes tbody tr").all()]
    assert any(r.startswith(("sent", "enviado")) for r in done), done
    # No purchases since the send yet: the list shows no uplift, not "0.0 pp", but who was
    # treated and who is compared; nothing is left to send, and the page says so.
    row = page.locator("#campaigns tbody tr", has_text=f"Win-back {lang}").inner_text()
    assert " pp" not in row and re.search(r"\t\d[\d.,]*\t", row), row
    assert page.locator("#send").count() == 0 and page.locator("#nothing-due").count() == 1
    # The confirmation said how many messages would go, and that the schedule is overridden.
    assert asked and re.search(r"\d", asked[-1]), asked
    snap("sent")

    # A customer found by email, case and spaces ignored; the profile with its timeline.
    cid, email = _email_of_a_customer(service_db)
    page.goto(shop["url"] + "/dashboard/customer")
    page.fill("#customer-id", f"  {email.upper()}  ")
    page.click("#search")
    page.wait_for_selector("#customer")
    assert cid in page.inner_text("#profile-title")
    assert page.locator("#timeline li").count() >= 1
    assert not RAW.findall(page.inner_text("main"))
    snap("profile")

    # A typo in the builder: the caret under the fault, the server's hint, the page's language.
    page.goto(shop["url"] + "/dashboard/segments")
    page.fill("#rule", "recency_dyas > 30")
    page.wait_for_selector("#result.error #caret")
    assert w["caret"] in page.inner_text("#result")
    assert "recency_days" in page.inner_text("#result")
    snap("builder-typo")

    # The builder's preview answers 422 for the mistyped rule on purpose; the browser logs it.
    assert not [e for e in errors if "status of 422" not in e], errors
    ctx.close()
