"""Dashboard pages over real HTTP with a real session (no browser needed): the overview's change
against the previous snapshot, the imported campaign, the pages that read the serving store
while another process holds the warehouse, and the admin-only pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape
from typing import Any

import httpx
import ibis
import pytest
from starlette.requests import Request
from tests.conftest import copy_served, held, serving

from segmentum.campaigns.core import IMPORTED, Campaigns
from segmentum.history.snapshots import history_summary, snapshot_dates
from segmentum.history.webhooks import subscriptions
from segmentum.service.auth import SESSION_COOKIE, Session, create_session
from segmentum.service.dashboard import Page
from segmentum.service.dashboard_pages import _kpis

http = httpx.Client(timeout=120)
RAW = re.compile(r"\b(nan|NaN|None|NaT|null|undefined|inf)\b")


def _text(html: str) -> str:
    html = re.sub(r"<script\b.*?</script>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.fixture
def signed_in(server: dict[str, Any]) -> Iterator[Any]:
    """A session for a key of the server (``read`` or ``admin``): its cookie jar and token."""
    svc = server["app"].state.svc
    made: list[Session] = []

    def sign_in(key: str = "read") -> tuple[dict[str, str], str]:
        s = create_session(svc.sessions, server["keys"][key])
        assert s is not None
        made.append(s)
        return {SESSION_COOKIE: s.sid}, s.csrf

    yield sign_in
    for s in made:
        svc.sessions.end(s.sid)


def _expected_change(server: dict[str, Any]) -> tuple[float, float, str]:
    """Customers and revenue at the last snapshot against the one before, from the history."""
    wh = server["wh"]
    dates = snapshot_dates(wh)
    h = history_summary(wh.table("transactions"), dates[-2:])
    rows = {
        r["as_of"]: r
        for r in h.group_by("as_of")
        .aggregate(n=h.count(), revenue=h.monetary.sum())
        .to_pyarrow()
        .to_pylist()
    }
    before, now = rows[dates[-2]], rows[dates[-1]]
    return now["n"] / before["n"] - 1, now["revenue"] / before["revenue"] - 1, str(dates[-2])


@pytest.mark.parametrize(
    ("lang", "pattern"),
    [
        ("es", r"([+−±])(\d+,\d)\xa0% frente al 1 (\w+) (\d{4})"),
        ("en", r"([+−±])(\d+\.\d)% vs (\w+) 1, (\d{4})"),
    ],
)
def test_every_kpi_shows_its_change_since_the_previous_snapshot(
    server: dict[str, Any], signed_in: Any, lang: str, pattern: str
) -> None:
    jar, _ = signed_in()
    html = http.get(f"{server['url']}/dashboard", params={"lang": lang}, cookies=jar).text
    deltas = re.findall(r'class="kpi-delta">([^<]*)<', html)
    assert len(deltas) == 3 and not RAW.findall(_text(html))
    customers, revenue, _day = _expected_change(server)
    for text, expected in zip(deltas[:2], (customers, revenue), strict=True):
        m = re.fullmatch(pattern, text)
        assert m, text
        sign = {"+": 1, "−": -1, "±": 0}[m.group(1)]
        shown = sign * float(m.group(2).replace(",", "."))
        assert abs(shown - 100 * expected) <= 0.05 + 1e-9, (text, expected)


def test_campaign_results_say_sent_and_failed_beside_treated(server: dict[str, Any]) -> None:
    """Treated counts the messages that failed too (what the statistics compare): the page
    says how many went out and how many failed beside it."""
    from segmentum.service.dashboard_pages import _results_rows

    request = Request({"type": "http", "method": "GET", "query_string": b"", "headers": []})
    page = Page(request, server["app"].state.svc, None)
    overall = {
        "treated": 1200,
        "control": 130,
        "conv_treated": 0.05,
        "conv_control": 0.03,
        "uplift": 0.02,
        "uplift_low": 0.001,
        "uplift_high": 0.04,
        "p_value": 0.04,
        "roi": None,
        "verdict": "raised",
    }
    d = {"ready": True, "source": "derived", "sent": 1190, "failed": 10, "overall": overall}
    shown = _results_rows(page, d, server["app"].state.svc.settings)
    assert shown is not None
    rows = {r["key"]: r["value"] for r in shown["rows"]}
    assert (rows["treated"], rows["sent"], rows["failed"]) == ("1.200", "1.190", "10")  # es
    # An ROI built on a revenue difference that may be chance is not shown as a figure: the
    # words under the table say why (a walk saw 968% beside "no clear effect yet").
    chance = {**overall, "roi": 9.683, "revenue_clear": False}
    chance |= {"revenue_diff_low": -1.96, "revenue_diff_high": 5.52}
    shown = _results_rows(page, {**d, "overall": chance}, server["app"].state.svc.settings)
    assert shown is not None
    rows = {r["key"]: r["value"] for r in shown["rows"]}
    assert rows["roi"] == "—" and "968" not in " ".join(shown["said"])
    assert any(
        "El ROI no se muestra" in x and "-1,96" in x.replace("−", "-") for x in shown["said"]
    )
    clear = {**chance, "revenue_clear": True, "revenue_diff_low": 0.5}
    shown = _results_rows(page, {**d, "overall": clear}, server["app"].state.svc.settings)
    assert shown is not None
    assert {r["key"]: r["value"] for r in shown["rows"]}["roi"].startswith("968")


def test_no_change_is_shown_without_a_previous_snapshot(server: dict[str, Any]) -> None:
    request = Request({"type": "http", "method": "GET", "query_string": b"", "headers": []})
    page = Page(request, server["app"].state.svc, None)
    o = {"as_of": "2026-01-01", "customers": 10, "revenue": 1234.5}
    kpis = _kpis(page, o, None, None)
    assert [k["delta"] for k in kpis] == ["", "", ""]
    assert all(k["value"] and not RAW.search(k["value"]) for k in kpis)
    # A previous snapshot with no customers is nothing to compare with either (never inf).
    empty = {"as_of": "2025-12-01", "customers": 0, "revenue": 0.0}
    assert [k["delta"] for k in _kpis(page, o, None, empty)] == ["", "", ""]


@pytest.mark.parametrize(
    ("lang", "says"),
    [
        ("es", "se importó con sus resultados: se puede medir, no enviar"),
        ("en", "was imported with its results: it can be measured, not sent"),
    ],
)
def test_the_imported_campaign_shows_its_results_not_a_refused_dry_run(
    server: dict[str, Any], signed_in: Any, lang: str, says: str
) -> None:
    imported = [c for c in Campaigns(server["wh"]).list() if c.tactic == IMPORTED]
    assert imported, "the demo ships a past campaign with its results"
    jar, _ = signed_in("admin")
    r = http.get(
        f"{server['url']}/dashboard/campaigns",
        params={"c": imported[0].campaign_id, "lang": lang},
        cookies=jar,
    )
    assert r.status_code == 200
    assert says in _text(r.text)
    assert 'id="results"' in r.text and 'id="plan"' not in r.text
    # The uplift with its interval, and under the figures what they mean in words.
    text = _text(r.text)
    assert re.search(r"pp \([-+−]?\d+[.,]\d pp, [-+−]?\d+[.,]\d pp\)", text), text
    verdicts = {
        "es": ("subió la conversión", "bajó la conversión", "Aún no hay un efecto claro"),
        "en": ("raised conversion", "lowered conversion", "No clear effect yet"),
    }[lang]
    assert sum(v in text for v in verdicts) == 1 and "ROI:" in text, text
    assert 'id="plan-error"' not in r.text and "/send" not in r.text.split('id="imported"')[1]
    assert not RAW.findall(_text(r.text))


def test_history_and_customer_pages_answer_while_another_process_holds_the_warehouse(
    server: dict[str, Any], signed_in: Any
) -> None:
    wh = server["wh"]
    row = (
        wh.table("customers")
        .filter(lambda c: c.email.notnull())
        .order_by("customer_id")
        .limit(1)
        .to_pyarrow()
        .to_pylist()[0]
    )
    jar, _ = signed_in()
    base = server["url"]
    holder = held(server["db"])
    try:
        mig = http.get(f"{base}/dashboard/migration", cookies=jar)
        assert mig.status_code == 200 and 'id="chart-sankey"' in mig.text
        prof = http.get(f"{base}/dashboard/customer", params={"q": row["customer_id"]}, cookies=jar)
        assert prof.status_code == 200 and 'id="timeline"' in prof.text
        assert prof.text.count('<li class="tl-purchase"') >= 1
        found = http.get(
            f"{base}/dashboard/customer", params={"q": f"  {row['email'].upper()} "}, cookies=jar
        )
        assert found.status_code == 200 and row["customer_id"] in found.text
        over = http.get(f"{base}/dashboard", cookies=jar)
        assert over.status_code == 200 and 'id="what-changed"' in over.text
        # The proof that the page did not go to the warehouse: a page that must, is busy.
        values = http.get(f"{base}/dashboard/api/values", params={"column": "city"}, cookies=jar)
        assert values.status_code == 503
    finally:
        holder.kill()
        holder.wait()


def test_key_and_webhook_pages_are_for_admin_sessions_only(
    server: dict[str, Any], signed_in: Any
) -> None:
    base = server["url"]
    jar, token = signed_in("read")
    page = http.get(f"{base}/dashboard/keys", cookies=jar)
    assert page.status_code == 403 and 'id="nav-keys"' not in page.text
    assert (
        'id="webhooks"' not in http.get(f"{base}/dashboard/explorer?segment=vip", cookies=jar).text
    )
    made = http.post(
        f"{base}/dashboard/keys", data={"csrf": token, "name": "x", "scopes": "admin"}, cookies=jar
    )
    assert made.status_code == 403 and "sgm_" not in made.text
    hook = http.post(
        f"{base}/dashboard/segments/vip/webhooks",
        data={"csrf": token, "url": "http://127.0.0.1:9/hook"},
        cookies=jar,
    )
    assert hook.status_code == 403
    admin, admin_token = signed_in("admin")
    assert 'id="nav-keys"' in http.get(f"{base}/dashboard", cookies=admin).text
    # An admin's form without its session's token is refused, and nothing is made.
    for path, data in (
        ("/dashboard/keys", {"name": "x", "scopes": "read"}),
        ("/dashboard/segments/vip/webhooks", {"url": "http://127.0.0.1:9/csrf"}),
    ):
        r = http.post(f"{base}{path}", data={**data, "csrf": "wrong"}, cookies=admin)
        assert r.status_code == 403, path
    listed = http.get(f"{base}/v1/keys", headers={"X-API-Key": server["keys"]["admin"]}).json()
    assert not any(k["name"] == "x" for k in listed)
    with_token = http.get(f"{base}/dashboard/explorer?segment=vip", cookies=admin).text
    assert 'id="webhook-form"' in with_token and admin_token in with_token
    assert not any(s.url.endswith("/csrf") for s in _subscriptions_of(server))


def _subscriptions_of(server: dict[str, Any]) -> list[Any]:
    import segmentum

    # The served file is open only during a request: a test may read it between them.
    with segmentum.connect(f"duckdb:///{server['db']}") as wh:
        return subscriptions(wh)


def _expected_email_hashes(server: dict[str, Any], segment: str, fmt: str) -> tuple[int, set[str]]:
    """The segment's size and its consenting members' email hashes, normalised here as the
    platform's guide says (trimmed, lower-cased; Google: no periods before @gmail.com)."""
    import hashlib

    from segmentum.segments.store import Segments

    # The served warehouse itself (other tests of this worker may have changed it since the
    # read copy was taken), read under the service's own lock.
    svc = server["app"].state.svc

    def read() -> list[dict[str, Any]]:
        wh = svc.wh
        m = Segments(wh).members(segment).distinct()
        c = wh.table("customers")
        j = m.left_join(c.select("customer_id", "email", "consent_ads"), "customer_id")
        return j.select("email", "consent_ads").to_pyarrow().to_pylist()

    rows = svc.locked(read)
    out = set()
    for r in rows:
        if not r["consent_ads"] or not r["email"]:
            continue
        local, domain = r["email"].strip().lower().rsplit("@", 1)
        if fmt == "google" and domain in ("gmail.com", "googlemail.com"):
            local = local.replace(".", "")
        out.add(hashlib.sha256(f"{local}@{domain}".encode()).hexdigest())
    return len(rows), out


@pytest.mark.parametrize(
    ("lang", "fmt", "header", "says"),
    [
        ("es", "meta", "email,phone,fn,ln,zip,ct,st,country", "Meta: {n} de {size} miembros van"),
        (
            "en",
            "google",
            "Email,Phone,First Name,Last Name,Country,Zip",
            "Ads: {n} of {size} members",
        ),
    ],
)
def test_the_explorer_downloads_a_saved_segment_as_an_ad_audience_with_its_drop_report(
    server: dict[str, Any],
    signed_in: Any,
    monkeypatch: pytest.MonkeyPatch,
    lang: str,
    fmt: str,
    header: str,
    says: str,
) -> None:
    import csv
    import io
    import json

    base, svc = server["url"], server["app"].state.svc
    explorer = f"{base}/dashboard/explorer"
    download = f"{base}/dashboard/ad-audience/vip.csv"
    # Hashed emails are personal data: a read session gets neither the links nor the file.
    reader, _ = signed_in("read")
    page = http.get(explorer, params={"segment": "vip", "lang": lang}, cookies=reader).text
    assert 'id="ad-audience-scope"' in page and "ad-download-" not in page
    assert http.get(download, params={"format": fmt}, cookies=reader).status_code == 403
    admin, _ = signed_in("admin")
    # ...and with export_personal_data off (the default), nobody does.
    page = http.get(explorer, params={"segment": "vip", "lang": lang}, cookies=admin).text
    assert 'id="ad-audience-off"' in page and "ad-download-" not in page
    assert http.get(download, params={"format": fmt}, cookies=admin).status_code == 409
    monkeypatch.setattr(svc, "settings", svc.settings.with_overrides(export_personal_data=True))
    params = {"segment": "vip", "audience": fmt, "lang": lang}
    page = http.get(explorer, params=params, cookies=admin).text
    for p in ("google", "meta", "tiktok"):
        assert f'href="/dashboard/ad-audience/vip.csv?format={p}"' in page
    r = http.get(download, params={"format": fmt}, cookies=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.text.splitlines()[0] == header
    size, hashes = _expected_email_hashes(server, "vip", fmt)
    email = header.split(",")[0]
    assert {x[email] for x in rows if x[email]} == hashes and hashes
    report = json.loads(r.headers["X-Segmentum-Report"])
    assert report["size"] == size and report["exported"] == len(rows)
    assert report["exported"] + sum(report["dropped"].values()) == size
    # The page's report says the same numbers, in the page's language.
    text = _text(page)
    assert says.format(n=len(rows), size=size) in text and not RAW.findall(text)
    table = page.split('id="ad-report"')[1].split("</table>")[0]
    shown = dict(re.findall(r'data-reason="(\w+)"><td>[^<]+</td><td>([^<]+)</td>', table))
    assert shown == {k: str(v) for k, v in report["dropped"].items()}


@pytest.mark.parametrize("lang", ["es", "en"])
def test_the_campaigns_page_downloads_retargeting_and_seed_audiences_like_the_api(
    server: dict[str, Any], signed_in: Any, monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    import json

    base, svc = server["url"], server["app"].state.svc
    page_url = f"{base}/dashboard/campaigns"
    seed = f"{base}/dashboard/audiences/seed.csv"
    reader, _ = signed_in("read")
    page = http.get(page_url, params={"lang": lang}, cookies=reader).text
    assert 'id="behaviour-audiences-scope"' in page and "seed-form" not in page
    assert http.get(seed, params={"top": 20}, cookies=reader).status_code == 403
    admin, _ = signed_in("admin")
    page = http.get(page_url, params={"lang": lang}, cookies=admin).text
    assert 'id="behaviour-audiences-off"' in page and "seed-form" not in page
    monkeypatch.setattr(svc, "settings", svc.settings.with_overrides(export_personal_data=True))
    page = http.get(page_url, params={"lang": lang}, cookies=admin).text
    assert 'action="/dashboard/audiences/seed.csv"' in page
    assert 'action="/dashboard/audiences/retargeting.csv"' in page
    text = _text(page)
    assert ("Semilla para públicos similares" if lang == "es" else "Look-alike seed") in text
    assert not RAW.findall(text)
    head = {"X-API-Key": server["keys"]["admin"]}
    for url, params, api in (
        (seed, {"top": 20, "platform": "meta"}, "/v1/audiences/seed"),
        (
            f"{base}/dashboard/audiences/retargeting.csv",
            {"behaviour": "carted", "days": 90, "platform": "google"},
            "/v1/audiences/retargeting",
        ),
    ):
        got = http.get(url, params=params, cookies=admin)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        report = json.loads(got.headers["X-Segmentum-Report"])
        assert report["exported"] == len(got.text.splitlines()) - 1
        assert report["exported"] + sum(report["dropped"].values()) == report["size"]
        api_params = (
            {**params, "kind": params.get("behaviour", "")} if "behaviour" in params else params
        )
        same = http.get(f"{base}{api}", params=api_params, headers=head)
        assert same.status_code == 200 and same.text == got.text
    assert (
        json.loads(http.get(seed, params={"top": 20}, cookies=admin).headers["X-Segmentum-Report"])[
            "size"
        ]
        == 20
    )
    assert http.get(seed, params={"platform": "myspace"}, cookies=admin).status_code == 422


def _timeline_reader(app: Any) -> Callable[[str, str, str], str]:
    """``timeline(base, customer_id, lang)``: the customer page's timeline as text, read with
    a new session of ``app`` (no raw values in it)."""
    from segmentum.service.auth import create_key

    session = create_session(app.state.svc.sessions, create_key(app.state.svc.state, "r", ["read"]))
    assert session is not None
    jar = {SESSION_COOKIE: session.sid}

    def timeline(base: str, cid: str, lang: str) -> str:
        page = http.get(f"{base}/dashboard/customer", params={"q": cid, "lang": lang}, cookies=jar)
        assert page.status_code == 200, page.text[:500]
        assert 'id="timeline"' in page.text, page.text[:2000]
        items = page.text.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
        assert not RAW.search(_text(items)), items
        return " ".join(_text(items).split())

    return timeline


def test_the_customer_timeline_shows_what_segmentum_sent_at_once_and_after_a_publish(
    service_db: Any, tmp_path: Any
) -> None:
    """A marketer sends a campaign, then opens a recipient's page: the timeline listed only
    campaigns loaded from results files, never the messages segmentum itself sent. It now says
    what became of each (sent, control group, no consent...) in the page's language, at once
    (read from the send log while the warehouse is free) and, after the next publish, while a
    run holds the warehouse (from the published activity)."""

    import segmentum
    from segmentum.config import load_settings
    from segmentum.precompute import publish_read_models
    from segmentum.service.app import create_app

    copy_served(service_db, tmp_path)
    db = tmp_path / "w.duckdb"
    settings = load_settings(env={})
    with segmentum.connect(f"duckdb:///{db}") as wh:
        cs = Campaigns(wh, settings)
        camp = cs.create("Vuelve pronto", "winback", "file")
        cs.send(camp, out_dir=tmp_path / "out")
        log = cs.log(camp)
    sent = str(log[log.status == "sent"].customer_id.iloc[0])
    control = str(log[log.outcome == "control"].customer_id.iloc[0])
    app = create_app(f"duckdb:///{db}", settings)
    timeline = _timeline_reader(app)

    with serving(app) as base:
        es = timeline(base, sent, "es")
        assert "Campaña Vuelve pronto" in es and "enviado" in es, es
        assert " 1 líneas" not in es, es  # one line, in the singular
        en = timeline(base, sent, "en")
        assert "Campaign Vuelve pronto" in en and " 1 lines" not in en, en
        held_back = timeline(base, control, "es")
        assert "Campaña Vuelve pronto" in held_back and "grupo de control" in held_back, held_back
        # The file the send wrote on the server, downloaded from the campaign's page.
        from segmentum.service.auth import create_key

        reader = create_session(
            app.state.svc.sessions, create_key(app.state.svc.state, "f", ["read"])
        )
        assert reader is not None
        jar = {SESSION_COOKIE: reader.sid}
        shown = http.get(
            f"{base}/dashboard/campaigns", params={"c": camp.campaign_id, "lang": "es"}, cookies=jar
        ).text
        link = f"/dashboard/campaigns/{camp.campaign_id}/file.csv"
        assert f'href="{link}"' in shown and "Descargar el archivo (CSV)" in shown
        # Results wait for the sales of the next days: said without a command.
        said = " ".join(_text(shown).split())
        assert "se cuenta cuando se cargan las ventas de esos días" in said, said
        assert "Aún no hay resultados:" in said and "aún no hay resultados" not in said, said
        assert "segmentum run" not in said and "segmentum ingest" not in said
        after = http.get(
            f"{base}/dashboard/campaigns",
            params={"c": camp.campaign_id, "sent": "3", "lang": "es"},
            cookies=jar,
        ).text  # where a send from the page lands: a file is written, not delivered
        assert "3 clientes escritos en el archivo" in after and "entregados" not in after
        got = http.get(base + link, cookies=jar)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        import io

        import pandas as pd

        written = pd.read_csv(tmp_path / "out" / f"{camp.campaign_id}.csv")
        downloaded = pd.read_csv(io.StringIO(got.text))
        assert list(downloaded.columns) == list(written.columns)
        assert downloaded.reason.tolist() == written.reason.tolist()  # in each one's language
        assert (
            sorted(downloaded.customer_id)
            == sorted(written.customer_id)
            == sorted(log[log.outcome == "file"].customer_id)
        )
        nothing = http.get(f"{base}/dashboard/campaigns/WINBACK-2025-10/file.csv", cookies=jar)
        assert nothing.status_code == 404 and "no tiene archivo" in nothing.text  # as chosen
        # The next publish (a run's last step) carries them; a run then holds the warehouse.
        with segmentum.connect(f"duckdb:///{db}") as wh:
            publish_read_models(wh, settings)
        holder = held(db)
        try:
            es = timeline(base, sent, "es")
            assert "Campaña Vuelve pronto" in es and "enviado" in es, es
        finally:
            holder.kill()
            holder.wait()


def test_the_customer_timeline_shows_what_the_automated_flows_sent_or_held_back(
    service_db: Any, tmp_path: Any
) -> None:
    """docs/service.md promises a timeline of the messages segmentum sent or held back itself:
    the cart flow's email to a customer was missing (only campaign sends were listed). Read
    from the flows' own store at once, in the page's language; a customer the flow held back
    (no consent) says so."""
    import datetime as dt

    import segmentum
    from killsends import SlowInbox, start_smtp
    from segmentum.config import load_settings
    from segmentum.flows import Flows, FlowStore
    from segmentum.flows.store import flows_path
    from segmentum.service.app import create_app

    copy_served(service_db, tmp_path)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    settings = load_settings(env={})
    box = SlowInbox(0.0)
    ctl, port = start_smtp(box)
    t0 = dt.datetime(2026, 1, 14, 10, 0)  # 11:00 in Madrid: no quiet hours
    try:
        flows = Flows(
            FlowStore(flows_path(url, settings)),
            settings.with_overrides(smtp_host="127.0.0.1", smtp_starttls=False, smtp_port=port),
        )
        with segmentum.connect(url) as wh:
            flows.sync(wh, t0)
            people = wh.table("customers").to_pandas()
        spain = people[(people.country == "España") & people.email.notnull()]
        spain = spain.sort_values("customer_id")
        mailed = str(spain[spain.consent_email.fillna(False).astype(bool)].customer_id.iloc[0])
        held = str(spain[~spain.consent_email.fillna(False).astype(bool)].customer_id.iloc[0])
        flows.save(
            "name: cart\ntrigger: {event: add_to_cart}\nquiet_hours: false\nsteps:\n"
            "  - send:\n      channel: email\n"
            '      subject: {es: "Tu carrito", en: "Your cart"}\n'
            '      body: {es: "{{ greeting }}, tu carrito.", en: "{{ greeting }}, your cart."}\n'
        )
        flows.set_status("cart", "enabled")
        for cid in (mailed, held):
            flows.record("event", "add_to_cart", cid, t0, source="realtime")
        assert flows.tick(t0).sent == 1 and len(box.got) == 1
    finally:
        ctl.stop()
    app = create_app(url, settings)
    timeline = _timeline_reader(app)

    with serving(app) as base:
        es = timeline(base, mailed, "es")
        assert "Flujo cart correo electrónico · enviado" in es, es
        en = timeline(base, mailed, "en")
        assert "Flow cart email · sent" in en, en
        no = timeline(base, held, "es")
        assert "Flujo cart correo electrónico · sin consentimiento" in no, no


def test_a_migration_from_a_day_without_a_snapshot_is_refused_by_the_api_and_the_page(
    server: dict[str, Any], signed_in: Any
) -> None:
    """`GET /v1/migration?from=<a day between two snapshots>` answered 200 with everyone as
    "(not yet a customer)", and so did the page for such a link: a 404 problem naming the
    nearest snapshots and how to build more, in the client's language; the page says the same."""
    from segmentum import i18n

    dates = snapshot_dates(server["wh"])
    day = dates[0] + (dates[1] - dates[0]) // 2
    assert dates[0] < day < dates[1]
    base, read = server["url"], {"X-API-Key": server["keys"]["read"]}
    params = {"from": str(day), "to": str(dates[-1]), "by": "value_tier"}
    en = http.get(f"{base}/v1/migration", params=params, headers=read)
    assert en.status_code == 404, en.text
    said = en.json()
    assert said["detail"] == (
        f"there is no snapshot on {day}: the nearest are {dates[0]} and {dates[1]}"
    ), said
    assert said["hint"].endswith("segmentum history backfill"), said
    es = http.get(f"{base}/v1/migration", params=params, headers={**read, "Accept-Language": "es"})
    assert es.status_code == 404 and es.json()["title"] == said["title"]
    d = {k: i18n.date(v, "es") for k, v in (("day", day), ("a", dates[0]), ("b", dates[1]))}
    detail = f"no hay foto del {d['day']}: las más cercanas son del {d['a']} y del {d['b']}"
    assert es.json()["detail"] == detail, es.json()
    assert es.json()["hint"].startswith("elige una fecha que tenga foto"), es.json()
    jar, _ = signed_in()
    page = http.get(
        f"{base}/dashboard/migration",
        params={"date_from": str(day), "date_to": str(dates[-1]), "lang": "es"},
        cookies=jar,
    )
    assert page.status_code == 200 and 'id="error"' in page.text
    text = " ".join(_text(page.text).split())
    assert detail in text and 'id="chart-sankey"' not in page.text, text


def test_an_events_channel_is_where_it_happened_not_a_message_channel(service_db: Any) -> None:
    """A page view on the website read "mensaje web" (a message shown on the site) on a
    Spanish customer page, because events and purchases shared the message channels' labels:
    they are told apart, in the timeline and in a customer's preferred channel."""
    from segmentum import i18n
    from segmentum.config import load_settings
    from segmentum.service.app import create_app

    assert i18n.label("es", "preferred_channel", "web") == "sitio web"
    assert i18n.label("es", "best_channel", "web") == "mensaje web"
    import segmentum

    with segmentum.connect(f"duckdb:///{service_db}") as wh:
        e = wh.table("events")
        e = e.filter((e.channel == "web") & (e.event_type == "page_view"))
        last = e.group_by("customer_id").aggregate(at=e.timestamp.max())
        cid = str(
            last.order_by(ibis.desc("at")).limit(1).to_pyarrow().to_pylist()[0]["customer_id"]
        )
    app = create_app(f"duckdb:///{service_db}", load_settings(env={}))
    timeline = _timeline_reader(app)
    with serving(app) as base:
        es = timeline(base, cid, "es")
        assert "sitio web" in es and "mensaje web" not in es, es
        assert "website" not in es
        if "abierto" in es:  # an email's open keeps the message channel's name
            assert "abierto correo electrónico" in es, es


def test_saving_a_segment_and_creating_a_campaign_refuse_in_the_pages_language(
    server: dict[str, Any], signed_in: Any
) -> None:
    """A walk on the Spanish builder and campaign form: a segment's bad or taken name and the
    form's mistakes were said in English, naming the command line's --target and a template's
    'body.es'. They are said in Spanish, of the form's own fields."""
    jar, csrf = signed_in("admin")
    base = server["url"]
    save = f"{base}/dashboard/api/segments?lang=es"
    head = {"X-CSRF-Token": csrf}
    said = []
    for name in ("", "vip dormidos"):
        r = http.post(save, json={"name": name, "rule": "monetary > 1"}, cookies=jar, headers=head)
        assert r.status_code == 422
        said.append(r.json())
    assert said[0]["detail"] == "escribe un nombre para el segmento", said[0]
    assert said[1]["hint"].startswith("usa letras sin tilde ni ñ, dígitos y _"), said[1]
    ok = http.post(save, json={"name": "dup_es", "rule": "monetary > 1"}, cookies=jar, headers=head)
    assert ok.status_code == 201
    again = http.post(
        save, json={"name": "dup_es", "rule": "monetary > 1"}, cookies=jar, headers=head
    )
    assert again.json()["detail"] == "ya existe un segmento llamado 'dup_es'", again.json()
    # The hint names the page's own list, not the command line's `segment edit`.
    assert again.json()["hint"].startswith("elige otro nombre, o edita ese:"), again.json()
    assert "segmentum" not in again.json()["hint"]
    gone = http.post(save, json={"name": "x", "rule": "monetary > 1"}, cookies={}, headers=head)
    assert gone.status_code == 401 and "vuelve a entrar" in gone.json()["detail"]
    form = {
        "csrf": csrf,
        "name": "Sin segmento",
        "tactic": "segment",
        "channel": "file",
        "target": "",
        "subject_es": "Hola",
        "body_es": "{{ greeting }",
        "subject_en": "Hi",
        "body_en": "Hi",
    }
    create = f"{base}/dashboard/campaigns?lang=es"
    r = http.post(create, data=form, cookies=jar)
    text = _text(r.text)
    assert r.status_code == 422 and "Elige el segmento al que va la campaña" in text, text
    assert "--target" not in text
    r = http.post(create, data={**form, "target": "dup_es", "control_share": "20"}, cookies=jar)
    text = " ".join(_text(r.text).split())
    # What was typed stays in the form, the control group's share too (it went back to 10).
    assert re.search(r'id="campaign-control"[^>]*value="20"', r.text), r.text
    assert r.status_code == 422 and "la plantilla «Cuerpo (español)» no es válida" in text, text
    assert "body.es" not in text and "revisa las marcas" in text, text
    import segmentum
    from segmentum.segments.store import Segments

    with segmentum.connect(f"duckdb:///{server['db']}") as wh:  # the other tests' warehouse
        Segments(wh).delete("dup_es")


def test_a_read_key_sees_a_segment_but_cannot_edit_or_delete_it(
    server: dict[str, Any], signed_in: Any
) -> None:
    """Editing and deleting a saved segment take the write scope, as the API's PATCH and
    DELETE do: a read session gets no form, and its requests are refused; a missing CSRF
    token is refused even for an admin; an unknown segment is said, in the page's language."""
    base = server["url"]
    jar, csrf = signed_in("read")
    page = http.get(f"{base}/dashboard/segments", params={"edit": "vip", "lang": "es"}, cookies=jar)
    assert page.status_code == 200 and 'id="editing-name"' in page.text
    assert 'id="save"' not in page.text and 'id="delete"' not in page.text
    explorer = http.get(f"{base}/dashboard/explorer", params={"segment": "vip"}, cookies=jar)
    assert 'id="edit-segment"' not in explorer.text
    head = {"X-CSRF-Token": csrf}
    r = http.post(
        f"{base}/dashboard/api/segments/vip",
        json={"rule": "frequency > 1"},
        cookies=jar,
        headers=head,
    )
    assert r.status_code == 403 and "write" in r.json()["detail"], r.text
    r = http.post(f"{base}/dashboard/segments/vip/delete", data={"csrf": csrf}, cookies=jar)
    assert r.status_code == 403
    admin_jar, admin_csrf = signed_in("admin")
    r = http.post(
        f"{base}/dashboard/segments/vip/delete", data={"csrf": "forged"}, cookies=admin_jar
    )
    assert r.status_code == 403
    r = http.post(
        f"{base}/dashboard/api/segments/vip", json={"rule": "frequency > 1"}, cookies=admin_jar
    )
    assert r.status_code == 403  # no X-CSRF-Token header
    import segmentum
    from segmentum.segments.store import Segments

    with segmentum.connect(f"duckdb:///{server['db']}") as wh:  # nothing was changed
        assert Segments(wh).get("vip").rule == "value_tier == 'high' and frequency >= 5"
    nobody = http.get(
        f"{base}/dashboard/segments", params={"edit": "vipp", "lang": "es"}, cookies=admin_jar
    )
    assert nobody.status_code == 404
    text = unescape(" ".join(_text(nobody.text).split()))
    assert "no hay ningún segmento llamado 'vipp' ¿querías decir vip?" in text, text
    r = http.post(
        f"{base}/dashboard/api/segments/vip?lang=es",
        json={"rule": "frequency >= "},
        cookies=admin_jar,
        headers={"X-CSRF-Token": admin_csrf},
    )
    assert r.status_code == 422 and "posición" in r.json()["detail"], r.text


def test_the_decision_tree_is_said_in_the_pages_language(server: dict[str, Any]) -> None:
    """A walk: the Spanish explorer showed scikit-learn's own text ("|--- monetary <= 920.20",
    "class: out"): column names, decimal points and English words."""
    import numpy as np
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier, export_text

    from segmentum.service.dashboard_pages import _tree_text

    x = pd.DataFrame(
        {"monetary": [100.0, 2000.5, 3000.0, 50.0], "region_Andalucía": [1.0, 0.0, 1.0, 0.0]}
    )
    tree = DecisionTreeClassifier(random_state=0).fit(x, np.array([1, 0, 0, 1]))
    rules = export_text(tree, feature_names=list(x.columns), class_names=["in", "out"], decimals=2)
    request = Request({"type": "http", "method": "GET", "query_string": b"", "headers": []})
    page = Page(request, server["app"].state.svc, None)
    text = _tree_text(page, rules)
    assert "monetary" not in text and "class:" not in text and " in\n" not in text + "\n", text
    assert re.search(r"\d+,\d{2}", text) and "en el segmento" in text, text
    assert text.count("|---") == rules.count("|---")
    assert _tree_text(page, "") == ""


def test_a_segments_profile_says_what_its_share_is_of(
    server: dict[str, Any], signed_in: Any
) -> None:
    """A walk: the builder said 311 of 2,000 (15.6%) and the explorer 311 customers (15.7%):
    the profile's share is of the customers it profiles (buyers), and now says so."""
    from segmentum.segments.store import Segments

    saved = Segments(server["wh"]).list()
    assert saved, "the demo ships saved segments"
    jar, _ = signed_in()
    r = http.get(
        f"{server['url']}/dashboard/explorer",
        params={"segment": saved[0].name, "lang": "es"},
        cookies=jar,
    )
    text = " ".join(_text(r.text).split())
    assert r.status_code == 200
    assert re.search(r"[\d.]+ de los [\d.]+ clientes analizados \(\d+,\d\s%\)", text), text


def test_customer_search_ignores_accents_and_says_how_many_matched(
    server: dict[str, Any], signed_in: Callable[..., tuple[dict[str, str], str]]
) -> None:
    """A marketer types names without accents ("garcia" for García) and sees how many
    customers matched when the page lists only the first ones."""
    import unicodedata

    def plain(text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()

    c = server["wh"].table("customers")
    counts = c.group_by("last_name").aggregate(n=c.count()).order_by(ibis.desc("n"))
    name, n = next(
        (r["last_name"], int(r["n"]))
        for r in counts.to_pyarrow().to_pylist()
        if r["last_name"] and plain(r["last_name"]) != r["last_name"]
    )
    cookies, _ = signed_in()
    html = http.get(
        server["url"] + "/dashboard/customer",
        params={"q": plain(name).lower(), "lang": "es"},
        cookies=cookies,
    ).text
    assert 'id="not-found"' not in html
    listed = re.findall(r'<li><a href="/dashboard/customer\?q=', html)
    assert len(listed) == min(n, 25) or (n > 25 and len(listed) == 25), (name, n, len(listed))
    assert html.count(name) >= len(listed)  # shown as written, accents and all
    if n > 25:
        said = re.search(r'id="matches-count">([^<]*)<', html)
        assert said is not None and "25" in said.group(1), html[:2000]
        shown, total = (int(x.replace(".", "")) for x in re.findall(r"\d[\d.]*", said.group(1)))
        assert shown == 25 and total >= n, said.group(1)


def test_migration_states_in_order_and_a_reversed_range_said_with_the_forms_labels(
    server: dict[str, Any], signed_in: Callable[..., tuple[dict[str, str], str]]
) -> None:
    """Value tiers read best to worst (alto, medio, bajo), not in the alphabet of their codes;
    dates the wrong way round are said with the form's labels, not --from/--to."""
    dates = snapshot_dates(server["wh"])
    assert len(dates) >= 2
    jar, _ = signed_in()
    url = server["url"] + "/dashboard/migration"
    html = http.get(url, params={"by": "value_tier", "lang": "es"}, cookies=jar).text
    rows = re.findall(r"<tr><t[hd][^>]*>(alto|medio|bajo)<", html)
    assert rows and rows == sorted(rows, key=["alto", "medio", "bajo"].index), rows
    if 'id="alerts"' in html:  # a high-value customer gone to medium lost a tier
        alerts = html.split('id="alerts"', 1)[1].split("</article>", 1)[0]
        assert "Clientes de valor alto que bajaron de nivel" in alerts
        assert '<td><a href="/dashboard/customer?q=' in alerts
    back = {"date_from": str(dates[-1]), "date_to": str(dates[0]), "lang": "es"}
    text = " ".join(_text(http.get(url, params=back, cookies=jar).text).split())
    assert "«Hasta» debe ser una fecha posterior a «Desde»" in text, text
    assert "--to" not in text and "--from" not in text


def test_a_rules_error_on_the_explorer_points_under_the_place_at_fault(
    server: dict[str, Any], signed_in: Callable[..., tuple[dict[str, str], str]]
) -> None:
    """The caret sat on the rule's own line (the message's lines were run together): the rule
    and the caret are kept as lines, the caret under the comma of 1000,5, with the hint."""
    import html as html_

    jar, _ = signed_in()
    page = http.get(
        server["url"] + "/dashboard/explorer",
        params={"rule": "monetary > 1000,5", "lang": "es"},
        cookies=jar,
    ).text
    box = page.split('id="error"', 1)[1].split("</div>", 1)[0]
    caret = re.search(r'<pre class="caret">(.*?)</pre>', box, re.S)
    assert caret is not None, box
    rule, mark = html_.unescape(caret.group(1)).split("\n")[:2]
    assert rule.strip() == "monetary > 1000,5" and mark.index("^") == rule.index(",")
    assert "las reglas escriben los decimales con punto, p. ej. 1000.5" in box


def test_a_tiny_p_or_q_value_reads_below_a_thousandth_not_zero(server: dict[str, Any]) -> None:
    """Satisfaction wrote "valor q 0,000" where the explorer wrote "< 0,001": every page now
    writes a chance the same way, and never as zero."""
    for lang, small, plain in (("es", "< 0,001", "0,042"), ("en", "< 0.001", "0.042")):
        query = f"lang={lang}".encode()
        request = Request({"type": "http", "method": "GET", "query_string": query, "headers": []})
        page = Page(request, server["app"].state.svc, None)
        assert page.chance(0.0) == page.chance(1e-9) == small, page.lang
        assert page.chance(0.0421) == plain and page.chance(None) == "—"


def test_the_campaigns_page_lists_who_must_not_be_contacted(
    built_service_db: Any, tmp_path: Any
) -> None:
    """Loaded suppressions and an unsubscribe click still waiting in the state file, the
    latest first, in the page's language; a hostile reason printed as text; email addresses
    only where personal data may be shown."""
    import shutil

    from tests.conftest import SERVICE_SETTINGS, write

    import segmentum
    from segmentum.campaigns import unsubscribe
    from segmentum.precompute import publish_read_models
    from segmentum.service.app import create_app
    from segmentum.service.auth import create_key
    from segmentum.service.state import StateStore

    db = tmp_path / "w.duckdb"
    shutil.copyfile(built_service_db, db)  # as built: other tests suppress customers too
    url = f"duckdb:///{db}"
    hostile = "<script>alert(1)</script> queja"
    bajas = write(
        tmp_path / "bajas.csv",
        "id_cliente;correo;canal;motivo;fecha_baja\n"
        "C0000001;c1@ejemplo.es;email;bounced;2025-03-01\n"
        f"C0000002;;;{hostile};2025-03-02\n",
    )
    segmentum.ingest("suppressions", bajas, warehouse=url)
    clicks = unsubscribe.UnsubscribeStore(unsubscribe.store_path(url, SERVICE_SETTINGS))
    clicks.add("C0000009")
    clicks.add("C0000001")  # bounced too: one person, two rows
    for personal in (False, True):
        settings = SERVICE_SETTINGS.with_overrides(export_personal_data=personal)
        key = create_key(StateStore.for_warehouse(url, settings), "lector", ["read"])
        app = create_app(url, settings)
        with serving(app) as base:
            session = create_session(app.state.svc.sessions, key)
            assert session is not None
            jar = {SESSION_COOKIE: session.sid}
            es = httpx.get(f"{base}/dashboard/campaigns", params={"lang": "es"}, cookies=jar)
            en = httpx.get(f"{base}/dashboard/campaigns", params={"lang": "en"}, cookies=jar)
        assert es.status_code == en.status_code == 200
        card = es.text[es.text.index('id="suppressed"') :]
        card = card[: card.index("</article>")]
        said = " ".join(_text(card).split())
        assert "Quién no debe ser contactado" in said, said
        assert "3 personas no deben ser contactadas" in said, said
        assert "se dio de baja: 2" in said and "rebotado: 1" in said, said
        # The newest first: the click waiting in the state file, then the loaded list.
        assert said.index("C0000009") < said.index("C0000002") < said.rindex("C0000001")
        assert "<script>alert(1)" not in card and "&lt;script&gt;alert(1)&lt;/script&gt;" in card
        assert ("c1@ejemplo.es" in said) is personal, said
        assert ("Las direcciones de correo están ocultas" in said) is not personal, said
        if personal:  # while a run holds the warehouse: the list as last published
            with segmentum.connect(url) as wh:
                publish_read_models(wh, settings)
            holder = held(db)
            try:
                with serving(create_app(url, settings)) as base:
                    busy = httpx.get(
                        f"{base}/dashboard/campaigns", params={"lang": "es"}, cookies=jar
                    ).text
            finally:
                holder.kill()
                holder.wait()
            busy_card = busy[busy.index('id="suppressed"') :]
            busy_said = " ".join(_text(busy_card[: busy_card.index("</article>")]).split())
            assert "3 personas no deben ser contactadas" in busy_said, busy_said
            assert "c1@ejemplo.es" in busy_said, busy_said
        en_card = en.text[en.text.index('id="suppressed"') :]
        en_said = " ".join(_text(en_card[: en_card.index("</article>")]).split())
        assert "3 people must not be contacted" in en_said and "bounced: 1" in en_said, en_said
        assert "None" not in said + en_said and "nan" not in (said + en_said).lower().split()


def test_a_probability_the_fit_could_not_estimate_is_said_not_left_as_a_dash(
    server: dict[str, Any], signed_in: Any
) -> None:
    """The demo's history cannot tell when customers stop buying (the dropout process is not
    identified): P(alive) is then no probability, and churn is calibrated on the history. The
    customer page said "—" beside a churn probability of 99.7%, read as missing data; it now
    says why, in the page's language."""
    lk = server["wh"].table("customer_lookup")
    scored = lk.filter(
        (lk.clv_status == "scored") & lk.p_alive.isnull() & lk.churn_probability.notnull()
    )
    [row] = scored.order_by("customer_id").limit(1).to_pyarrow().to_pylist()
    jar, _ = signed_in()
    said = {
        "es": "sin estimar: este historial no permite saber cuándo dejan de comprar los clientes",
        "en": "not estimated: this history cannot tell when customers stop buying",
    }
    for lang, text in said.items():
        page = http.get(
            f"{server['url']}/dashboard/customer",
            params={"q": row["customer_id"], "lang": lang},
            cookies=jar,
        )
        assert page.status_code == 200, page.text[:500]
        assert text in " ".join(unescape(page.text).split()), lang
        assert not RAW.findall(_text(page.text)), RAW.findall(_text(page.text))
    # A customer too new to score keeps the dash: nothing was estimated for them either way.
    new = lk.filter(lk.clv_status == "too_new").order_by("customer_id").limit(1)
    for r in new.to_pyarrow().to_pylist():
        page = http.get(
            f"{server['url']}/dashboard/customer", params={"q": r["customer_id"]}, cookies=jar
        )
        assert said["en"] not in page.text
