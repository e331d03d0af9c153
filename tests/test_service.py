"""The REST service over real HTTP (uvicorn on 127.0.0.1), API keys, and a schemathesis fuzz."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from tests.conftest import SERVICE_SETTINGS, serving

import segmentum
from segmentum import demo, pipeline
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.service.app import create_app
from segmentum.service.auth import create_key, revoke_key
from segmentum.warehouse import Warehouse

SETTINGS = load_settings(env={}).with_overrides(discover_segments=True)


def test_every_endpoint_but_health_needs_a_key(server: dict[str, Any]) -> None:
    base = server["url"]
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    r = httpx.get(f"{base}/v1/overview")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["hint"].startswith("send it as X-API-Key")
    assert httpx.get(f"{base}/v1/overview", headers={"X-API-Key": "sgm_x_y"}).status_code == 401
    read = {"X-API-Key": server["keys"]["read"]}
    assert httpx.get(f"{base}/v1/overview", headers=read).status_code == 200
    r = httpx.post(
        f"{base}/v1/segments", json={"name": "vip2", "rule": "frequency > 3"}, headers=read
    )
    assert r.status_code == 403 and "write" in r.json()["detail"]
    bearer = {"Authorization": f"Bearer {server['keys']['admin']}"}
    assert httpx.get(f"{base}/v1/segments", headers=bearer).status_code == 200


def test_keys_are_stored_hashed_and_can_be_revoked(server: dict[str, Any]) -> None:
    wh: Warehouse = server["wh"]
    key = create_key(wh, "temp", ["read"])
    stored = wh.table("api_keys").to_pandas()
    assert key.split("_", 2)[2] not in "".join(stored.secret_sha256)
    base = server["url"]
    assert httpx.get(f"{base}/v1/overview", headers={"X-API-Key": key}).status_code == 200
    revoke_key(wh, key.split("_")[1])
    server["app"].state.svc.keys.refresh()
    assert httpx.get(f"{base}/v1/overview", headers={"X-API-Key": key}).status_code == 401


def test_customer_lookup_and_segments_over_http(server: dict[str, Any]) -> None:
    base, admin = server["url"], {"X-API-Key": server["keys"]["admin"]}
    wh: Warehouse = server["wh"]
    cid = wh.table("customer_features").customer_id.min().to_pyarrow().as_py()
    c = httpx.get(f"{base}/v1/customers/{cid}", headers=admin).json()
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
    assert httpx.get(f"{base}/v1/customers/nobody", headers=admin).status_code == 404
    r = httpx.post(f"{base}/v1/segments/preview", json={"rule": "frequency >= "}, headers=admin)
    assert r.status_code == 422 and "position" in r.json()["detail"]
    r = httpx.post(
        f"{base}/v1/segments", json={"name": "big", "rule": "monetary > 1000"}, headers=admin
    )
    assert r.status_code == 201
    p = httpx.post(f"{base}/v1/segments/preview", json={"rule": "big"}, headers=admin).json()
    assert p["size"] > 0 and sum(p["reach"]["channels"]["email"].values()) == p["size"]
    job = httpx.post(f"{base}/v1/jobs/pipeline", headers=admin).json()
    for _ in range(600):
        status = httpx.get(f"{base}/v1/jobs/{job['job_id']}", headers=admin).json()
        if status["status"] != "running":
            break
        time.sleep(0.1)
    assert status["status"] == "done" and status["summary"]["segments"]["big"] == p["size"]
    m = httpx.get(f"{base}/v1/segments/big/members?limit=5", headers=admin).json()
    assert m["size"] == p["size"] and len(m["members"]) == 5
    csv = httpx.get(f"{base}/v1/exports/segments/big.csv", headers=admin).text
    assert csv.startswith("customer_id\n") and "@" not in csv  # no personal data by default


def test_upload_and_ingest_report(server: dict[str, Any], tmp_path: Path) -> None:
    base, admin = server["url"], {"X-API-Key": server["keys"]["admin"]}
    f = tmp_path / "bajas.csv"
    f.write_text(
        "customer_id,channel,reason\nC0000001,email,unsubscribed\n,sms,\n", encoding="utf-8"
    )
    r = httpx.post(
        f"{base}/v1/ingest/suppressions",
        files={"file": ("bajas.csv", f.read_bytes())},
        headers=admin,
    )
    rep = r.json()[0]
    assert r.status_code == 200 and rep["rows_read"] == rep["accepted"] + rep["quarantined"] == 2
    assert (
        httpx.post(
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


def test_fuzzing_the_api_finds_no_server_error(server: dict[str, Any]) -> None:
    """Every operation of the OpenAPI schema, with generated inputs: never a 5xx."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{server['url']}/openapi.json")
    headers = {"X-API-Key": server["keys"]["admin"]}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    tried = []
    for op in operations:
        if op.method.upper() == "POST" and op.path.endswith(("/send", "/jobs/pipeline")):
            # Sending and whole pipeline runs are covered by their own tests: a fuzzer must not
            # email anyone, and a pipeline job holds the warehouse for many seconds.
            continue

        @given(case=op.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
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
    key = create_key(wh, "admin", ["admin"])
    feats = wh.table("customer_features").execute().set_index("customer_id")
    cid = str(feats.index.min())
    with serving(create_app(wh, SERVICE_SETTINGS)) as base:
        head = {"X-API-Key": key}
        c = httpx.get(f"{base}/v1/customers/{cid}", headers=head).json()
        assert c["monetary"] == pytest.approx(feats.loc[cid, "monetary"])
        assert c["rfm_segment"] and c["value_tier"] in ("high", "medium", "low")
        assert httpx.get(f"{base}/v1/customers/nobody", headers=head).status_code == 404
        r = httpx.post(f"{base}/v1/segments/preview", json={"rule": "monetary > 100"}, headers=head)
        assert r.json()["size"] == int((feats.monetary > 100).sum())
        for page in ("", "/segments", "/geography", f"/customer?id={cid}", "/micro", "/data"):
            resp = httpx.get(f"{base}/dashboard{page}", cookies={"segmentum_key": key})
            assert resp.status_code == 200 and "<html" in resp.text, page
        page = httpx.get(f"{base}/dashboard/customer?id={cid}", cookies={"segmentum_key": key})
        assert cid in page.text
    wh.close()
