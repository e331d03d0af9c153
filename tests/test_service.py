"""The REST service over real HTTP (uvicorn on 127.0.0.1), API keys, and a schemathesis fuzz."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from tests.conftest import SERVICE_SETTINGS, copy_served, serving

import segmentum
from segmentum import demo, pipeline
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.service.app import create_app
from segmentum.service.auth import (
    SESSION_COOKIE,
    Sessions,
    create_key,
    create_session,
    end_session,
    revoke_key,
)
from segmentum.service.state import StateStore
from segmentum.warehouse import Warehouse

SETTINGS = load_settings(env={}).with_overrides(discover_segments=True)
# Generous: on a busy shared machine a preview of a saved segment can take seconds.
http = httpx.Client(timeout=120)


def test_every_endpoint_but_health_needs_a_key(server: dict[str, Any]) -> None:
    base = server["url"]
    assert http.get(f"{base}/health").json() == {"status": "ok"}
    r = http.get(f"{base}/v1/overview")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["hint"].startswith("send it as X-API-Key")
    assert http.get(f"{base}/v1/overview", headers={"X-API-Key": "sgm_x_y"}).status_code == 401
    read = {"X-API-Key": server["keys"]["read"]}
    assert http.get(f"{base}/v1/overview", headers=read).status_code == 200
    r = http.post(
        f"{base}/v1/segments", json={"name": "vip2", "rule": "frequency > 3"}, headers=read
    )
    assert r.status_code == 403 and "write" in r.json()["detail"]
    bearer = {"Authorization": f"Bearer {server['keys']['admin']}"}
    assert http.get(f"{base}/v1/segments", headers=bearer).status_code == 200


def test_a_key_in_a_cookie_opens_nothing(server: dict[str, Any]) -> None:
    """Only a session id may travel in a cookie: the old raw-key cookie is not read at all."""
    base, key = server["url"], server["keys"]["admin"]
    for path in ("/v1/segments", "/v1/overview"):
        assert http.get(f"{base}{path}", cookies={"segmentum_key": key}).status_code == 401
    page = http.get(f"{base}/dashboard", cookies={"segmentum_key": key})
    assert page.status_code == 303 and "/login" in page.headers["location"]


def test_keys_are_stored_hashed_and_can_be_revoked(server: dict[str, Any]) -> None:
    state = server["app"].state.svc.state
    key = create_key(state, "temp", ["read"])
    stored = state.query("select secret_sha256 from api_keys")
    assert key.split("_", 2)[2] not in "".join(r["secret_sha256"] for r in stored)
    base = server["url"]
    assert http.get(f"{base}/v1/overview", headers={"X-API-Key": key}).status_code == 200
    revoke_key(state, key.split("_")[1])
    # No cache to refresh: the very next request is refused.
    assert http.get(f"{base}/v1/overview", headers={"X-API-Key": key}).status_code == 401


def test_admins_manage_keys_over_the_api(server: dict[str, Any]) -> None:
    base = server["url"]
    admin, read = {"X-API-Key": server["keys"]["admin"]}, {"X-API-Key": server["keys"]["read"]}
    assert http.get(f"{base}/v1/keys", headers=read).status_code == 403
    r = http.post(f"{base}/v1/keys", json={"name": "crm", "scopes": ["write"]}, headers=admin)
    assert r.status_code == 201
    made = r.json()
    assert made["key"].startswith(f"sgm_{made['key_id']}_") and made["scopes"] == ["write"]
    listed = http.get(f"{base}/v1/keys", headers=admin).json()
    row = next(k for k in listed if k["key_id"] == made["key_id"])
    assert "key" not in row and "secret_sha256" not in row and not row["revoked"]
    new = {"X-API-Key": made["key"]}
    assert http.get(f"{base}/v1/segments", headers=new).status_code == 200
    bad = http.post(f"{base}/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=admin)
    assert bad.status_code == 422 and "root" in bad.json()["detail"]
    assert http.delete(f"{base}/v1/keys/{made['key_id']}", headers=admin).status_code == 204
    assert http.get(f"{base}/v1/segments", headers=new).status_code == 401
    listed = http.get(f"{base}/v1/keys", headers=admin).json()
    assert next(k for k in listed if k["key_id"] == made["key_id"])["revoked"]
    assert http.delete(f"{base}/v1/keys/nope", headers=admin).status_code == 404
    own = server["keys"]["admin"].split("_")[1]
    assert http.delete(f"{base}/v1/keys/{own}", headers=admin).status_code == 409


def test_admins_subscribe_webhooks_to_a_segment_over_the_api(server: dict[str, Any]) -> None:
    base = server["url"]
    admin, read = {"X-API-Key": server["keys"]["admin"]}, {"X-API-Key": server["keys"]["read"]}
    hooks = f"{base}/v1/segments/vip/webhooks"
    body = {"url": "https://crm.example.com/api-hook"}
    assert http.post(hooks, json=body, headers=read).status_code == 403
    r = http.post(hooks, json=body, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["secret"].startswith("whsec_") and made["segment"] == "vip"
    listed = http.get(hooks, headers=admin).json()
    assert [w["url"] for w in listed] == [body["url"]] and "secret" not in listed[0]
    bad = http.post(hooks, json={"url": "ftp://x"}, headers=admin)
    assert bad.status_code == 422 and "web address" in bad.json()["detail"]
    assert (
        http.post(f"{base}/v1/segments/nope/webhooks", json=body, headers=admin).status_code == 404
    )
    gone = f"{base}/v1/webhooks/{made['subscription_id']}"
    assert http.delete(gone, headers=admin).status_code == 204
    assert http.get(hooks, headers=admin).json() == []
    assert http.delete(gone, headers=admin).status_code == 404


def test_api_docs_need_a_key_and_load_nothing_from_another_host(server: dict[str, Any]) -> None:
    base, read = server["url"], {"X-API-Key": server["keys"]["read"]}
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert http.get(f"{base}{path}").status_code == 401, path
    spec = http.get(f"{base}/openapi.json", headers=read).json()
    assert "/v1/keys" in spec["paths"] and "/v1/customers/{customer_id}" in spec["paths"]
    for path in ("/docs", "/redoc"):
        page = http.get(f"{base}{path}", headers=read)
        assert (
            page.status_code == 200
            and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        )
        refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs
        assert "http://" not in page.text and "https://" not in page.text
        for ref in refs:
            asset = http.get(f"{base}{ref}")
            assert asset.status_code == 200 and len(asset.content) > 100, ref
    init = http.get(f"{base}/docs/assets/swagger-init.js").text
    assert "validatorUrl: null" in init  # the validator badge would send the schema away


def test_api_docs_can_be_switched_off(service_db: Path) -> None:
    app = create_app(f"duckdb:///{service_db}", SERVICE_SETTINGS.with_overrides(api_docs=False))
    key = create_key(app.state.svc.state, "docs", ["read"])
    with serving(app) as base:
        for path in ("/docs", "/redoc", "/openapi.json"):
            r = http.get(f"{base}{path}", headers={"X-API-Key": key})
            assert r.status_code == 404, path


def test_sessions_expire_end_and_follow_their_key(tmp_path: Path) -> None:
    import datetime as dt

    state = StateStore(tmp_path / "state.sqlite")
    sessions = Sessions(state, ttl=dt.timedelta(minutes=30), max_hours=12)
    key = create_key(state, "browser", ["write"])
    s = create_session(sessions, key)
    assert s is not None and create_session(sessions, "sgm_no_such") is None
    got = sessions.get(s.sid)
    assert got is not None and got.key_id == key.split("_")[1] and "write" in got.scopes
    assert got.csrf == s.csrf and len(s.sid) >= 40
    # Only a hash of the session id is stored: the table cannot be replayed as cookies.
    assert s.sid not in str(state.query("select * from sessions"))
    end_session(sessions, s.sid)
    assert sessions.get(s.sid) is None
    # An idle limit of zero ends a session at its next use; a revoked key ends its sessions.
    assert (
        Sessions(state, ttl=dt.timedelta(0)).get(
            Sessions(state, ttl=dt.timedelta(0)).create(key, key.split("_")[1], ["read"]).sid
        )
        is None
    )
    s2 = create_session(sessions, key)
    assert s2 is not None and sessions.get(s2.sid) is not None
    revoke_key(state, key.split("_")[1])
    assert sessions.get(s2.sid) is None


def test_a_session_cookie_authenticates_the_api_and_writes_need_its_csrf_token(
    server: dict[str, Any],
) -> None:
    svc = server["app"].state.svc
    s = create_session(svc.sessions, server["keys"]["admin"])
    assert s is not None
    base, cookie = server["url"], {SESSION_COOKIE: s.sid}
    assert http.get(f"{base}/v1/segments", cookies=cookie).status_code == 200
    body = {"rule": "frequency > 2"}
    r = http.post(f"{base}/v1/segments/preview", json=body, cookies=cookie)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    es = {"Accept-Language": "es-ES,es;q=0.9"}
    r = http.post(f"{base}/v1/segments/preview", json=body, cookies=cookie, headers=es)
    assert r.status_code == 403 and r.json()["title"] == "Forbidden"
    assert r.json()["detail"] == "falta el token CSRF o es incorrecto", r.json()
    assert r.json()["hint"] == "envía la cabecera X-CSRF-Token", r.json()
    r = http.post(
        f"{base}/v1/segments/preview",
        json=body,
        cookies=cookie,
        headers={"X-CSRF-Token": s.csrf},
    )
    assert r.status_code == 200
    end_session(svc.sessions, s.sid)
    assert http.get(f"{base}/v1/segments", cookies=cookie).status_code == 401


def test_customer_lookup_and_segments_over_http(server: dict[str, Any]) -> None:
    base, admin = server["url"], {"X-API-Key": server["keys"]["admin"]}
    wh: Warehouse = server["wh"]
    cid = wh.table("customer_features").customer_id.min().to_pyarrow().as_py()
    c = http.get(f"{base}/v1/customers/{cid}", headers=admin).json()
    for field in (
        "monetary",
        "rfm_segment",
        "value_tier",
        "clv",
        "churn_probability",
        "best_hour_band",
        "best_channel",
        "segments",
        "cluster_name",
    ):
        assert field in c, field
    assert http.get(f"{base}/v1/customers/nobody", headers=admin).status_code == 404
    r = http.post(f"{base}/v1/segments/preview", json={"rule": "frequency >= "}, headers=admin)
    assert r.status_code == 422 and "position" in r.json()["detail"]
    r = http.post(
        f"{base}/v1/segments", json={"name": "big", "rule": "monetary > 1000"}, headers=admin
    )
    assert r.status_code == 201
    p = http.post(f"{base}/v1/segments/preview", json={"rule": "big"}, headers=admin).json()
    assert p["size"] > 0 and sum(p["reach"]["channels"]["email"].values()) == p["size"]
    # Saving computed the members at once: no run needed before the members API sees them.
    assert r.json()["size"] == p["size"]
    m = http.get(f"{base}/v1/segments/big/members?limit=5", headers=admin).json()
    assert m["size"] == p["size"] and len(m["members"]) == 5
    csv = http.get(f"{base}/v1/exports/segments/big.csv", headers=admin).text
    assert csv.startswith("customer_id\n") and "@" not in csv  # no personal data by default


def test_editing_a_segment_over_the_api_recomputes_it_and_those_built_on_it(
    server: dict[str, Any],
) -> None:
    """PATCH /v1/segments/{name}: a new rule is checked before anything is stored, the
    segment's members and those of a segment built on it are computed again at once; a
    description alone keeps the rule; a read key, an unknown name and a broken rule are
    refused (the last in Spanish to a Spanish client)."""
    base = server["url"]
    admin, read = {"X-API-Key": server["keys"]["admin"]}, {"X-API-Key": server["keys"]["read"]}
    es = {"Accept-Language": "es-ES,es;q=0.9"}

    def size(rule: str) -> int:
        r = http.post(f"{base}/v1/segments/preview", json={"rule": rule}, headers=admin)
        return int(r.json()["size"])

    def members(name: str) -> int:
        return int(http.get(f"{base}/v1/segments/{name}/members", headers=admin).json()["size"])

    for name, rule in (("api_base", "frequency >= 2"), ("api_top", "api_base and monetary > 100")):
        made = http.post(f"{base}/v1/segments", json={"name": name, "rule": rule}, headers=admin)
        assert made.status_code == 201, made.text
    try:
        before = members("api_top")
        assert before == size("frequency >= 2 and monetary > 100") > 0
        r = http.patch(
            f"{base}/v1/segments/api_base", json={"rule": "frequency >= 4"}, headers=admin
        )
        assert r.status_code == 200, r.text
        assert r.json()["rule"] == "frequency >= 4"
        assert r.json()["size"] == size("frequency >= 4") == members("api_base")
        # The segment built on it follows at once, not at the next run.
        assert members("api_top") == size("frequency >= 4 and monetary > 100") < before
        r = http.patch(
            f"{base}/v1/segments/api_base", json={"description": "loyal buyers"}, headers=admin
        )
        assert r.status_code == 200 and r.json()["rule"] == "frequency >= 4"
        assert r.json()["description"] == "loyal buyers"
        broken = http.patch(
            f"{base}/v1/segments/api_base", json={"rule": "frequency >= "}, headers={**admin, **es}
        )
        assert broken.status_code == 422 and "posición" in broken.json()["detail"], broken.text
        listed = {s["name"]: s for s in http.get(f"{base}/v1/segments", headers=admin).json()}
        assert listed["api_base"]["rule"] == "frequency >= 4"  # nothing stored
        assert members("api_base") == size("frequency >= 4")
        cycle = http.patch(f"{base}/v1/segments/api_base", json={"rule": "api_top"}, headers=admin)
        assert cycle.status_code == 422, cycle.text
        assert (
            http.patch(
                f"{base}/v1/segments/api_base", json={"rule": "frequency >= 1"}, headers=read
            ).status_code
            == 403
        )
        nobody = http.patch(
            f"{base}/v1/segments/nobody", json={"rule": "frequency > 1"}, headers=admin
        )
        assert nobody.status_code == 404, nobody.text
        hook = {"url": "https://crm.example.com/api-base-hook"}
        made = http.post(f"{base}/v1/segments/api_base/webhooks", json=hook, headers=admin)
        assert made.status_code == 201, made.text
    finally:
        for name in ("api_top", "api_base"):
            http.delete(f"{base}/v1/segments/{name}", headers=admin)
    assert {s["name"] for s in http.get(f"{base}/v1/segments", headers=admin).json()}.isdisjoint(
        {"api_base", "api_top"}
    )
    # Deleted with its subscriptions: a segment saved later under the name inherits none.
    again = http.post(
        f"{base}/v1/segments", json={"name": "api_base", "rule": "frequency >= 2"}, headers=admin
    )
    assert again.status_code == 201, again.text
    assert http.get(f"{base}/v1/segments/api_base/webhooks", headers=admin).json() == []
    assert http.delete(f"{base}/v1/segments/api_base", headers=admin).status_code == 204


def test_an_edited_segment_is_profiled_again_not_shown_with_the_last_runs_profile(
    service_db: Path, tmp_path: Path
) -> None:
    """The last run cached every saved segment's profile; after an edit the explorer and the
    API showed that cached profile (1,297 members profiled beside a size of 1,188): the cached
    one is used only while the segment's rule is the one it describes."""
    copy_served(service_db, tmp_path)
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    key = create_key(StateStore.for_warehouse(url, SERVICE_SETTINGS), "admin", ["admin"])
    with serving(create_app(url, SERVICE_SETTINGS)) as base:
        admin = {"X-API-Key": key}

        def profiled() -> int:
            got = http.get(f"{base}/v1/segments/vip/profile", headers=admin).json()
            return int(next(s["size"] for s in got["segments"] if s["segment"] == "in"))

        def members() -> int:
            return int(http.get(f"{base}/v1/segments/vip/members", headers=admin).json()["size"])

        assert profiled() == members()  # the run's cached profile, of the run's members
        r = http.patch(
            f"{base}/v1/segments/vip",
            json={"rule": "value_tier == 'high' and frequency >= 8"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        assert r.json()["size"] == members() == profiled() > 0


def test_the_apis_own_refusals_read_in_spanish_for_a_spanish_client(
    server: dict[str, Any],
) -> None:
    """What a route refuses (no such customer, no key) is said in Spanish to a client that
    asks for it (Accept-Language: es), with the same status and title; English otherwise."""
    base, read = server["url"], {"X-API-Key": server["keys"]["read"]}
    es = {"Accept-Language": "es-ES,es;q=0.9"}
    en = http.get(f"{base}/v1/customers/nope", headers=read).json()
    said = http.get(f"{base}/v1/customers/nope", headers={**read, **es}).json()
    assert en["detail"] == "there is no customer 'nope'" and en["title"] == said["title"]
    assert said["detail"] == "no hay ningún cliente 'nope'" and said["status"] == 404
    anonymous = http.get(f"{base}/v1/segments", headers=es).json()
    assert anonymous["detail"] == "se necesita una clave de API válida", anonymous
    assert anonymous["hint"].startswith("envíala como X-API-Key"), anonymous
    # The framework's own refusals too (a walk read "detail": "Not Found" in Spanish).
    nowhere = http.get(f"{base}/v1/nowhere", headers={**read, **es})
    assert nowhere.status_code == 404 and nowhere.json()["title"] == "Not found"
    assert nowhere.json()["detail"] == "no existe la ruta /v1/nowhere", nowhere.json()
    assert nowhere.json()["hint"] == "las rutas están en /docs"
    english = http.get(f"{base}/v1/nowhere", headers=read).json()
    assert english["detail"] == "there is no route /v1/nowhere"
    wrong = http.delete(f"{base}/v1/segments", headers={**read, **es})
    assert wrong.status_code == 405 and "no está permitido en /v1/segments" in wrong.text


def test_a_mistyped_rule_says_where_and_what_was_meant_without_internal_names(
    server: dict[str, Any],
) -> None:
    base, read = server["url"], {"X-API-Key": server["keys"]["read"]}
    r = http.post(f"{base}/v1/segments/preview", json={"rule": "frequncy >= 2"}, headers=read)
    body = r.json()
    assert r.status_code == 422 and "_preview" not in r.text
    assert body["detail"].startswith("unknown column or segment 'frequncy' at position 1")
    assert body["detail"].splitlines()[-1].strip() == "^" and "frequency" in body["hint"]
    # A client that asks for Spanish reads the detail and hint in Spanish; the title is the same.
    es = http.post(
        f"{base}/v1/segments/preview",
        json={"rule": "frequncy >= 2"},
        headers={**read, "Accept-Language": "es-ES,es;q=0.9"},
    ).json()
    assert es["title"] == body["title"] and es["status"] == 422
    assert es["detail"].startswith("columna o segmento desconocido 'frequncy' en la posición 1")
    assert es["detail"].splitlines()[-1].strip() == "^" and "frequency" in es["hint"]
    assert es["hint"] != body["hint"]
    # The explorer's preview of a typed rule shows the same message, hint and caret.
    svc = server["app"].state.svc
    s = create_session(svc.sessions, server["keys"]["read"])
    assert s is not None
    page = http.get(
        f"{base}/dashboard/explorer",
        params={"rule": "frequncy >= 2", "lang": "en"},
        cookies={SESSION_COOKIE: s.sid},
    )
    assert page.status_code == 200 and "_preview" not in page.text
    assert "frequncy" in page.text and "did you mean frequency" in page.text
    # In Spanish too: the message with its position, the suggestion (the rule is kept as typed).
    page = http.get(
        f"{base}/dashboard/explorer",
        params={"rule": "frequncy >= 2", "lang": "es"},
        cookies={SESSION_COOKIE: s.sid},
    )
    said = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(page.text)).split())
    assert "columna o segmento desconocido 'frequncy' en la posición 1:" in said, said
    assert "¿querías decir frequency?" in said and "unknown column" not in said, said


def test_upload_and_ingest_report(server: dict[str, Any], tmp_path: Path) -> None:
    base, admin = server["url"], {"X-API-Key": server["keys"]["admin"]}
    f = tmp_path / "bajas.csv"
    f.write_text(
        "customer_id,channel,reason\nC0000001,email,unsubscribed\n,sms,\n", encoding="utf-8"
    )
    r = http.post(
        f"{base}/v1/ingest/suppressions",
        files={"file": ("bajas.csv", f.read_bytes())},
        headers=admin,
    )
    rep = r.json()[0]
    assert r.status_code == 200 and rep["rows_read"] == rep["accepted"] + rep["quarantined"] == 2
    assert (
        http.post(
            f"{base}/v1/ingest/nope", files={"file": ("x.csv", b"a\n1\n")}, headers=admin
        ).status_code
        == 404
    )


def test_the_cli_creates_keys(
    service_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "k.duckdb"
    copy.write_bytes(service_db.read_bytes())
    url = f"duckdb:///{copy}"
    assert main(["api-key", "create", "--name", "me", "--scopes", "read,write", "-w", url]) == 0
    assert capsys.readouterr().out.strip().startswith("sgm_")
    assert main(["api-key", "create", "--name", "x", "--scopes", "root", "-w", url]) == 2


SLOW_TO_FUZZ = {
    "/v1/satisfaction/detractors",
    "/v1/satisfaction/terms",
    "/v1/satisfaction/trend",
    "/v1/playbook",
    "/v1/micro-segments",
    "/v1/segments/preview",
    "/v1/segments",
}


def test_fuzzing_the_api_finds_no_server_error(server: dict[str, Any]) -> None:
    """Every operation of the OpenAPI schema, with generated inputs: never a 5xx."""
    from hypothesis import given

    headers = {"X-API-Key": server["keys"]["admin"]}
    # Fetched here with a patient client (the schema needs a key, and a busy machine can take
    # longer than the loader's own 10 s).
    spec = http.get(f"{server['url']}/openapi.json", headers=headers).json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    tried = []
    for op in operations:
        if op.method.upper() == "POST" and op.path.endswith(("/send", "/jobs/pipeline")):
            # Sending and whole pipeline runs are covered by their own tests: a fuzzer must not
            # email anyone, and a pipeline job holds the warehouse for many seconds.
            continue

        # Operations that compute on the warehouse at each request (seconds per call) get
        # fewer generated inputs: their parameters are few, and ten of each took a minute.
        examples = 3 if op.path in SLOW_TO_FUZZ else 10

        @given(case=op.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=server["url"], headers=headers, checks=[not_a_server_error]
            )

        check()
        tried.append(op.label)
    assert any(label.startswith("POST /v1/segments") for label in tried)


@pytest.mark.postgres
def test_the_service_and_dashboard_on_a_postgres_warehouse(
    postgres_url: str, tmp_path: Path
) -> None:
    """The API and the dashboard read a PostgreSQL warehouse as they read DuckDB (the
    customer lookup's raw cursor included)."""
    files = demo.generate(tmp_path / "demo", customers=300, seed=2)
    wh = segmentum.connect(postgres_url)
    pipeline.run(wh, data=files["transactions"].parent, settings=SERVICE_SETTINGS)
    settings = SERVICE_SETTINGS.with_overrides(state_store=str(tmp_path / "state.sqlite"))
    key = create_key(StateStore(settings.state_store), "admin", ["admin"])
    feats = wh.table("customer_features").execute().set_index("customer_id")
    cid = str(feats.index.min())
    app = create_app(wh, settings)
    session = create_session(app.state.svc.sessions, key)
    assert session is not None
    signed_in = {SESSION_COOKIE: session.sid}
    with serving(app) as base:
        head = {"X-API-Key": key}
        c = http.get(f"{base}/v1/customers/{cid}", headers=head).json()
        assert c["monetary"] == pytest.approx(feats.loc[cid, "monetary"])
        assert c["rfm_segment"] and c["value_tier"] in ("high", "medium", "low")
        assert http.get(f"{base}/v1/customers/nobody", headers=head).status_code == 404
        r = http.post(f"{base}/v1/segments/preview", json={"rule": "monetary > 100"}, headers=head)
        assert r.json()["size"] == int((feats.monetary > 100).sum())
        for page in ("", "/segments", "/geography", f"/customer?id={cid}", "/micro", "/data"):
            resp = http.get(f"{base}/dashboard{page}", cookies=signed_in)
            assert resp.status_code == 200 and "<html" in resp.text, page
        page = http.get(f"{base}/dashboard/customer?id={cid}", cookies=signed_in)
        assert cid in page.text and 'id="timeline"' in page.text  # the read models, in PG
    wh.close()
