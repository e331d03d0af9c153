"""Downloads of personal data from the service (API and dashboard) are recorded in the state
store with the key that asked, and ``forget`` lists and erases them (real service on a copy of
the demo warehouse, real HTTP, real SQLite state file)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import copy_served, serving

import segmentum
from segmentum import i18n
from segmentum.campaigns.adaudiences import normalize_email
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.privacy import DOWNLOADS, downloads_of, purge_old_downloads, state_file
from segmentum.service.app import create_app
from segmentum.service.auth import SESSION_COOKIE, create_key, create_session
from segmentum.service.state import StateStore, state_path

ON = load_settings(env={}).with_overrides(export_personal_data=True)


@pytest.fixture
def served(service_db: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The service on a private copy of the demo warehouse (its serving store too, so the app
    starts without publishing), with a write key, a read key and a dashboard session."""
    copy_served(service_db, tmp_path)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    app = create_app(url, ON)
    svc = app.state.svc
    writer = create_key(svc.state, "Ana (marketing)", ["write"])
    reader = create_key(svc.state, "Luis (analytics)", ["read"])
    session = create_session(svc.sessions, create_key(svc.state, "Eva (agency)", ["write"]))
    looker = create_session(svc.sessions, reader)
    assert session is not None and looker is not None
    with serving(app) as base:
        yield {
            "url": url,
            "base": base,
            "svc": svc,
            "writer": {"X-API-Key": writer},
            "reader": {"X-API-Key": reader},
            "cookies": {SESSION_COOKIE: session.sid},
            "reader_cookies": {SESSION_COOKIE: looker.sid},
            "state": tmp_path / "w.state.sqlite",
        }


def _count(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def _in_ad_audience(export: list[dict[str, str]], audience: str) -> str:
    """A member of the export whose hashed email is in the Google audience file."""
    hashes = {r["Email"] for r in csv.DictReader(io.StringIO(audience)) if r["Email"]}
    for r in export:
        email = normalize_email(r["email"], "google")
        if email and hashlib.sha256(email.encode()).hexdigest() in hashes:
            return r["customer_id"]
    raise AssertionError("no exported customer is in the ad audience")


def test_forget_lists_every_download_of_a_customer_with_the_key_and_erases_them(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with httpx.Client(base_url=served["base"], timeout=60) as http:
        # Names, emails and phones in the export: a read key is refused, as for ad audiences.
        path = "/v1/exports/segments/vip.csv"
        assert http.get(path, headers=served["reader"]).status_code == 403
        got = http.get(path, headers=served["writer"])
        assert got.status_code == 200
        export = list(csv.DictReader(io.StringIO(got.text)))
        assert export and {"email", "phone"} <= set(export[0])
        # An email only for customers who consent to email, a phone only with SMS consent.
        copy = served["url"].removeprefix("duckdb:///") + ".consent.duckdb"
        shutil.copyfile(served["url"].removeprefix("duckdb:///"), copy)
        with segmentum.connect(f"duckdb:///{copy}") as wh:
            people = wh.table("customers").to_pandas().set_index("customer_id")
        ok_mail = people.consent_email.fillna(False).astype(bool)
        ok_sms = people.consent_sms.fillna(False).astype(bool)
        assert all(not r["email"] or ok_mail[r["customer_id"]] for r in export)
        assert all(not r["phone"] or ok_sms[r["customer_id"]] for r in export)
        assert any(r["email"] for r in export) and any(
            not ok_mail[r["customer_id"]] for r in export
        )
        ad = http.get(
            "/v1/segments/vip/ad-audience", params={"format": "google"}, headers=served["writer"]
        )
        assert ad.status_code == 200
        exported = json.loads(ad.headers["X-Segmentum-Report"])["exported"]
        dash = http.get(
            "/dashboard/ad-audience/vip.csv", params={"format": "meta"}, cookies=served["cookies"]
        )
        assert dash.status_code == 200
        dash_rows = len(dash.text.splitlines()) - 1
    who = _in_ad_audience(export, ad.text)
    url = served["url"]

    # The dry run names each download: who, through what, how many rows; erases nothing.
    assert main(["forget", who, "--dry-run", "-w", url, "--lang", "es"]) == 0
    out = capsys.readouterr().out
    assert "exportación de segmento vip, " in out and "Ana (marketing)" in out
    assert f"público publicitario vip (google), {exported} filas con datos personales" in out
    assert f"vip (meta), {dash_rows} filas" in out and "Eva (agency)" in out
    assert "desde el panel (/dashboard/ad-audience/vip.csv)" in out
    assert "(3 descargas)" in out and "Luis" not in out  # the refused read key got nothing
    assert f"{i18n.date(dt.datetime.now(dt.UTC).date(), 'es')} " in out and " UTC" in out
    assert len(downloads_of(url, who, ON)) == 3
    members = _count(served["state"], "download_members")

    # The real thing, as data. (No serving store for this call: publishing it again is
    # tested with forget itself and takes seconds.)
    monkeypatch.setenv("SEGMENTUM_SERVING_STORE", str(served["state"].with_name("none.duckdb")))
    assert main(["forget", who, "--json", "-w", url]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["deleted"][DOWNLOADS] == 3 and r["deleted"]["customers"] == 1
    # The three downloads, in any order (two can share a timestamp's resolution).
    assert sorted((d["key_name"], d["kind"], d["via"], d["rows"]) for d in r["downloads"]) == [
        ("Ana (marketing)", "ad audience", "api", exported),
        ("Ana (marketing)", "segment export", "api", len(export)),
        ("Eva (agency)", "ad audience", "dashboard", dash_rows),
    ]
    assert all(d["personal_data"] for d in r["downloads"])
    assert downloads_of(url, who, ON) == []
    assert _count(served["state"], "download_members") == members - 3
    assert _count(served["state"], "downloads") == 3  # who downloaded what stays, without them


def test_files_that_name_nobody_are_not_recorded_and_ids_alone_are(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, svc = served["state"], served["svc"]
    with httpx.Client(base_url=served["base"], headers=served["writer"], timeout=60) as http:
        # A report alone, and the retargeting products file, carry nobody: not recorded.
        summary = http.get("/v1/segments/vip/ad-audience", params={"summary": "true"})
        assert summary.status_code == 200 and summary.json()["exported"] > 0
        products = http.get("/v1/audiences/retargeting", params={"days": 3650, "file": "products"})
        assert products.status_code == 200 and products.text.startswith("product_id")
        # A read session gets neither the export of names, emails and phones nor its button.
        cookies = served["reader_cookies"]
        assert http.get("/dashboard/export/vip.csv", cookies=cookies).status_code == 403
        page = http.get("/dashboard/explorer", params={"segment": "vip"}, cookies=cookies)
        assert page.status_code == 200 and 'id="ad-audience-scope"' in page.text
        assert 'id="export"' not in page.text
        assert _count(state, "downloads") == 0
        seed = http.get("/v1/audiences/seed", params={"top": 5})
        seeded = json.loads(seed.headers["X-Segmentum-Report"])["exported"]
        assert seed.status_code == 200 and len(seed.text.splitlines()) - 1 == seeded > 0
        # Without export_personal_data the export holds ids only: a read key may take it,
        # and it is recorded (ids name people), marked as without personal data.
        monkeypatch.setattr(
            svc, "settings", svc.settings.with_overrides(export_personal_data=False)
        )
        ids = http.get("/v1/exports/segments/vip.csv", headers=served["reader"])
        assert ids.status_code == 200 and ids.text.splitlines()[0] == "customer_id"
    rows = StateStore(state).query("SELECT * FROM downloads ORDER BY at, kind")
    assert {(r["kind"], r["key_name"], r["rows"], r["personal_data"]) for r in rows} == {
        ("look-alike seed", "Ana (marketing)", seeded, 1),
        ("segment export", "Luis (analytics)", len(ids.text.splitlines()) - 1, 0),
    }
    assert _count(state, "download_members") == seeded + len(ids.text.splitlines()) - 1


def test_old_download_records_are_purged_after_the_retention_period(tmp_path: Path) -> None:
    settings = load_settings(env={}).with_overrides(state_store=str(tmp_path / "s.sqlite"))
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    assert state_file(url, settings) == Path(state_path(url, settings))
    assert downloads_of(url, "C1", settings) == [] and not (tmp_path / "s.sqlite").exists()
    store = StateStore.for_warehouse(url, settings)
    now = dt.datetime(2026, 12, 1)
    ids = [f"C{i:06d}" for i in range(100_000)]  # one big audience: one executemany
    store.record_download(
        key_id="k", via="api", endpoint="/x", kind="segment export", customer_ids=ids,
        personal_data=True, at=now - dt.timedelta(days=400),
    )  # fmt: skip
    store.record_download(
        key_id="k", via="api", endpoint="/y", kind="segment export", customer_ids=["C000001"],
        personal_data=False, at=now - dt.timedelta(days=10), keep_days=0,
    )  # fmt: skip
    assert [d["endpoint"] for d in downloads_of(url, "C000001", settings)] == ["/x", "/y"]
    # The next download purges what is older than keep_days (the download_retention_days
    # setting in the service); purge_old_downloads does it on demand.
    store.record_download(
        key_id="k", via="api", endpoint="/z", kind="segment export", customer_ids=["C000002"],
        personal_data=False, at=now, keep_days=365,
    )  # fmt: skip
    assert [d["endpoint"] for d in downloads_of(url, "C000001", settings)] == ["/y"]
    assert _count(tmp_path / "s.sqlite", "download_members") == 2
    assert purge_old_downloads(url, settings, days=0) == 2
    assert downloads_of(url, "C000002", settings) == []
