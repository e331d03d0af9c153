"""Rule segments, micro-segments, discovered clusters, profiles and look-alikes on real warehouses."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

import segmentum
from segmentum import demo, i18n, pipeline
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.errors import InputError
from segmentum.ingest import ingest
from segmentum.models.cluster import DEFAULT_NUMERIC, clustering_frame, fit_clusters
from segmentum.segments import rules as R
from segmentum.segments.discover import discover, profile_labels, segment_labels
from segmentum.segments.lookalike import find_lookalikes
from segmentum.segments.micro import drilldown, micro_segments
from segmentum.segments.profile import benjamini_hochberg
from segmentum.segments.store import Segments
from segmentum.warehouse import Warehouse

SETTINGS = load_settings(env={})
NO_DISCOVERY = SETTINGS.with_overrides(discover_segments=False)


@pytest.fixture(scope="module")
def b2b_db(tmp_path_factory: pytest.TempPathFactory, build_demo: Any) -> tuple[Path, Path]:
    """The B2B demo (5,000 customers, prospects, companies) run through the pipeline once."""
    return build_demo(
        tmp_path_factory.mktemp("b2b"), customers=5000, seed=7, b2b=True, settings=NO_DISCOVERY
    )


@pytest.fixture
def whs(b2b_db: tuple[Path, Path], copy_of: Any) -> Warehouse:
    """A private copy of the module's warehouse, without the demo's saved segments."""
    w = copy_of(b2b_db[0])
    for name in ("segment_definitions", "segment_members"):
        if w.has(name):  # start each test without the demo's saved segments
            w.drop(name)
    return w


# ---------------------------------------------------------------------------- the language


@pytest.mark.parametrize(
    "rule",
    [
        "recency_days <= 30 and frequency >= 5 and city in ('Madrid', 'Sevilla')",
        "vip and region == 'Andalucía'",
        "rfm_segment == 'At Risk'",
        "count(purchases, last 30 days) >= 2",
        "sum(spend, category == 'shoes', last 90 days) > 100",
        "exists(event == 'cart_abandoned', last 7 days)",
        "not (age between 25 and 34) or has_tag('travel')",
        "monetary / frequency > 2 * 50 and city is not null and gender not in ('male')",
        "rfm_segment == 'Can''t Lose Them'",
    ],
)
def test_the_documented_rules_parse(rule: str) -> None:
    assert R.parse(rule) is not None


@pytest.mark.parametrize(
    ("rule", "pos", "fragment"),
    [
        ("recency_days <= ", 16, "expected a column, a segment, a value"),
        ("city in ('a' 'b')", 13, "',' or ')'"),
        ("frequency >= 5 and", 18, "expected a column"),
        ("cnt(purchases) > 1", 0, "unknown function 'cnt'"),
        ("city == 'Madrid", 8, "never closed"),
        ("count(purchases, last 3 dais) > 1", 24, "'days', 'weeks' or 'months'"),
        ("frequency >= 5 ) ", 15, "end of the rule"),
        ("monetary > 10 $", 14, "unexpected character"),
        ("", 0, "empty"),
    ],
)
def test_syntax_errors_point_at_the_position(rule: str, pos: int, fragment: str) -> None:
    with pytest.raises(R.RuleError) as e:
        R.parse(rule)
    assert e.value.pos == pos
    assert fragment in str(e.value)
    assert "^" in str(e.value).splitlines()[-1]


def test_a_decimal_comma_is_pointed_at_with_the_number_as_a_rule_writes_it() -> None:
    """Spanish writes 1000,5: the rule's error says how rules write it, in both languages."""
    with pytest.raises(R.RuleError) as e:
        R.parse("monetary > 1000,5 and frequency > 1")
    assert e.value.pos == 15 and e.value.hint == "rules write decimals with a point, e.g. 1000.5"
    said = i18n.translate_message("es", e.value.hint)
    assert said == "las reglas escriben los decimales con punto, p. ej. 1000.5"
    with pytest.raises(R.RuleError) as e:
        R.parse("frequency > 2 , 3")
    assert e.value.hint is None


def test_unknown_columns_cycles_and_type_mismatches_are_caught_before_running(
    whs: Warehouse,
) -> None:
    segs = Segments(whs, SETTINGS)
    with pytest.raises(R.RuleError, match="unknown column or segment 'frecuency'") as e:
        segs.create("a", "frecuency >= 2")
    assert "did you mean frequency" in str(e.value)
    with pytest.raises(R.RuleError, match="cannot compare a number with a text"):
        segs.create("b", "monetary > 'high'")
    with pytest.raises(R.RuleError, match="joins conditions"):
        segs.create("c", "monetary and frequency > 2")
    with pytest.raises(R.RuleError, match="unknown column or segment 'colour'"):
        segs.create("d", "count(purchases, colour == 'red') > 0")
    with pytest.raises(InputError, match="gives a number"):
        segs.create("e", "monetary + 1")
    segs.create("one", "frequency >= 2")
    segs.create("two", "one and monetary > 100")
    with pytest.raises(InputError, match="cycle: one -> two -> one"):
        segs.edit("one", rule="two and recency_days < 90")
    assert segs.get("one").rule == "frequency >= 2"  # nothing saved
    with pytest.raises(InputError, match="used by two"):
        segs.delete("one")
    with pytest.raises(InputError, match="cannot be a segment name"):
        segs.create("and", "frequency > 1")
    with pytest.raises(InputError, match="also a column"):
        segs.create("frequency", "frequency > 1")


def test_rule_text_is_never_pasted_into_sql(whs: Warehouse) -> None:
    segs = Segments(whs, SETTINGS)
    nasty = "city == 'x''); DROP TABLE customers; --' or city == \"'; DELETE FROM transactions\""
    p = segs.preview(nasty)
    assert p.size == 0
    assert whs.table("customers").count().execute() == 5000
    assert whs.table("transactions").count().execute() > 40_000


# ---------------------------------------------------------------------------- membership


def test_window_functions_match_an_independent_sql_computation(whs: Warehouse) -> None:
    segs = Segments(whs, SETTINGS)
    segs.create("active", "count(purchases, last 30 days) >= 2")
    segs.create("shoes", "sum(spend, category == 'Moda > Calzado', last 90 days) > 100")
    segs.create("abandon", "exists(event == 'cart_abandoned', last 7 days)")
    rep = segs.compute()
    assert rep.window_scans == {"transactions": 2, "events": 1}  # one scan per raw table
    as_of = rep.as_of
    con = whs.con.con
    expected = {
        "active": con.execute(
            "select count(*) from (select customer_id from transactions t where quantity > 0 "
            "and customer_id is not null and timestamp >= ?::date - interval 30 day "
            "and timestamp < ?::date and not exists (select 1 from return_links r where "
            "r.invoice_cancelled and r.customer_id = t.customer_id "
            "and r.original_invoice_id = t.invoice_id) "  # cancelled orders are not purchases
            "group by 1 having count(distinct invoice_id) >= 2)",
            [as_of, as_of],
        ).fetchone()[0],
        "shoes": con.execute(
            "select count(*) from (select customer_id from transactions where "
            "category = 'Moda > Calzado' and customer_id is not null "
            "and timestamp >= ?::date - interval 90 day and timestamp < ?::date "
            "group by 1 having sum(amount) > 100)",
            [as_of, as_of],
        ).fetchone()[0],
        "abandon": con.execute(
            "select count(distinct customer_id) from events where event_type = 'cart_abandoned' "
            "and timestamp >= ?::date - interval 7 day and timestamp < ?::date",
            [as_of, as_of],
        ).fetchone()[0],
    }
    assert all(v > 0 for v in expected.values())
    assert rep.sizes == expected


def test_nested_segments_are_computed_in_order_once_and_agree_with_their_parts(
    whs: Warehouse,
) -> None:
    segs = Segments(whs, SETTINGS)
    segs.create("vip", "value_tier == 'high' and frequency >= 5")
    segs.create("vip_south", "vip and region == 'Andalucía'")
    segs.create("vip_south_recent", "vip_south and recency_days <= 60")
    rep = segs.compute()
    assert (
        rep.order.index("vip") < rep.order.index("vip_south") < rep.order.index("vip_south_recent")
    )
    view = (
        whs.table("customer_features")
        .join(whs.table("customer_classes"), "customer_id")
        .join(whs.table("customers"), "customer_id")
        .to_pandas()
    )
    vip = (view.value_tier == "high") & (view.frequency >= 5)
    south = vip & (view.region == "Andalucía")
    assert rep.sizes["vip"] == vip.sum()
    assert rep.sizes["vip_south"] == south.sum() > 0
    assert rep.sizes["vip_south_recent"] == (south & (view.recency_days <= 60)).sum()
    members = set(segs.members("vip_south").to_pandas().customer_id)
    assert members == set(view.customer_id[south])


def test_saving_one_segment_keeps_the_others_members_and_a_new_one_is_computed_on_use(
    whs: Warehouse,
) -> None:
    segs = Segments(whs, SETTINGS)
    segs.create("big", "monetary > 500")
    segs.create("often", "frequency >= 5")
    rep = segs.compute()

    def sizes() -> dict[str, int]:
        m = whs.table("segment_members")
        m = m.filter(m.as_of == rep.as_of)
        rows = m.group_by("segment").aggregate(n=m.count())
        return {r["segment"]: r["n"] for r in rows.to_pyarrow().to_pylist()}

    before = sizes()
    assert before == {"big": rep.sizes["big"], "often": rep.sizes["often"]} and all(before.values())
    # Saving from the API or the dashboard computes that segment alone: the others stay.
    _, n = segs.create_and_compute("recent", "recency_days <= 30")
    assert sizes() == {**before, "recent": n} and n > 0
    # Saved from the command line and used before any computation (a campaign to it): it is
    # computed then, not read as an empty audience.
    segs.create("small", "monetary <= 500")
    small = set(segs.members("small").to_pandas().customer_id)
    assert small and sizes() == {**before, "recent": n, "small": len(small)}
    again = segs.compute()  # every segment at once gives the same members
    assert again.sizes == sizes() and set(segs.members("small").to_pandas().customer_id) == small
    # Editing a rule computes the members again (not the old rule's until the next run).
    segs.edit("small", rule="monetary <= 100")
    smaller = set(segs.members("small").to_pandas().customer_id)
    assert smaller < small and sizes()["small"] == len(smaller)


def test_preview_counts_add_up_and_respect_suppressions_and_caps(
    whs: Warehouse, tmp_path: Path
) -> None:
    segs = Segments(whs, SETTINGS)
    before = segs.preview("value_tier == 'high'")
    for ch, buckets in before.reach.channels.items():  # type: ignore[union-attr]
        assert sum(buckets.values()) == before.size, ch
    assert before.reach.identified + before.reach.anonymous == before.size  # type: ignore[union-attr]
    assert 0 < before.revenue_share <= 1
    # Suppress three reachable members: two by id for every channel, one by email for email.
    con = whs.con.con
    ids = [
        r[0]
        for r in con.execute(
            "select customer_id from customers where consent_email and email is not null "
            "order by customer_id"
        ).fetchall()
    ]
    high = set(
        whs.table("customer_classes")
        .filter(lambda t: t.value_tier == "high")
        .customer_id.to_pandas()
    )
    picked = [i for i in ids if i in high][:3]
    email = con.execute(
        "select email from customers where customer_id = ?", [picked[2]]
    ).fetchone()[0]
    f = tmp_path / "bajas.csv"
    f.write_text(
        f"customer_id,email,channel,reason\n{picked[0]},,,unsubscribed\n"
        f"{picked[1]},,all,complaint\n,{email.upper()},email,bounced\n",
        encoding="utf-8",
    )
    ingest("suppressions", f, warehouse=whs, settings=SETTINGS)
    after = segs.preview("value_tier == 'high'")
    assert after.reach.channels["email"]["suppressed"] == 3  # type: ignore[union-attr]
    assert (
        after.reach.channels["email"]["reachable"]  # type: ignore[union-attr]
        == before.reach.channels["email"]["reachable"] - 3  # type: ignore[union-attr]
    )
    # A frequency cap of one contact in ten years marks everyone contacted as capped.
    capped = Segments(whs, SETTINGS.with_overrides(frequency_cap=1, frequency_cap_days=3650))
    c = capped.preview("value_tier == 'high'")
    assert c.reach.channels["email"]["capped"] > 0  # type: ignore[union-attr]
    for buckets in c.reach.channels.values():  # type: ignore[union-attr]
        assert sum(buckets.values()) == c.size


def test_yaml_round_trip_and_validation_of_the_whole_file(whs: Warehouse, tmp_path: Path) -> None:
    segs = Segments(whs, SETTINGS)
    src = tmp_path / "s.yaml"
    src.write_text(
        "segments:\n  - name: big\n    rule: monetary > 1000\n    description: big spenders\n"
        "  - name: big_recent\n    rule: big and recency_days < 30\n",
        encoding="utf-8",
    )
    assert [s.name for s in segs.load_yaml(src)] == ["big", "big_recent"]
    out = tmp_path / "out.yaml"
    segs.dump_yaml(out)
    other = Segments(whs, SETTINGS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  - name: broken\n    rule: monetary >\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.yaml: segment broken"):
        other.load_yaml(bad)
    assert [s.name for s in other.list()] == ["big", "big_recent"]
    assert "big spenders" in out.read_text(encoding="utf-8")


def test_account_segments_and_customers_that_reference_them(whs: Warehouse) -> None:
    segs = Segments(whs, SETTINGS)
    segs.create("big_accounts", "employees >= 50 and revenue > 500", level="account")
    segs.create("big_account_buyers", "big_accounts and frequency >= 2")
    with pytest.raises(R.RuleError, match="not available here"):
        segs.create("acc_window", "count(purchases, last 30 days) > 1", level="account")
    rep = segs.compute()
    df = whs.table("customer_features").join(whs.table("customers"), "customer_id").to_pandas()
    acc = df.groupby("company_id").agg(emp=("employees", "max"), rev=("monetary", "sum"))
    big = set(acc.index[(acc.emp >= 50) & (acc.rev > 500)])
    expected = df[df.company_id.isin(big) & (df.frequency >= 2)]
    assert 0 < rep.sizes["big_account_buyers"] == len(expected)


def test_an_account_rule_is_previewed_as_the_customers_of_its_accounts(whs: Warehouse) -> None:
    """An account segment has no members of its own: its preview (a typed account rule, or a
    saved account segment) counts the customers of the accounts it holds, as a customer rule
    naming it has them; the builder editing one asked a customer preview and failed on the
    account columns. A value no account has is warned about, and a wrong column named."""
    segs = Segments(whs, SETTINGS)
    rule = "employees >= 50 and revenue > 500"
    typed = segs.preview(rule, level="account")
    df = whs.table("customer_features").join(whs.table("customers"), "customer_id").to_pandas()
    acc = df.groupby("company_id").agg(emp=("employees", "max"), rev=("monetary", "sum"))
    big = set(acc.index[(acc.emp >= 50) & (acc.rev > 500)])
    members = whs.table("customers").to_pandas()
    assert 0 < typed.size == int(members.company_id.isin(big).sum()) < typed.customers
    assert typed.rule == rule and not typed.warnings
    segs.create("big_accounts", rule, level="account")
    saved = segs.preview("big_accounts")
    assert (saved.size, saved.rule) == (typed.size, rule)
    assert segs.preview("big_accounts and frequency >= 2").size < typed.size
    industry = str(members.industry.dropna().iloc[0])
    typo = industry[:-1] + ("x" if industry[-1] != "x" else "y")
    [warned] = segs.preview(f"industry == '{typo}'", level="account").warnings
    assert warned.message.startswith("no account has industry = ")  # accounts, not customers
    assert warned.hint == f"did you mean '{industry.lower()}'?" or industry in warned.hint
    with pytest.raises(R.RuleError, match="unknown column or segment 'employes'") as caught:
        segs.preview("employes >= 50", level="account")
    assert not str(caught.value).startswith("segment _preview")  # the user's own text
    with pytest.raises(InputError, match="level must be customer or account"):
        segs.preview(rule, level="company")


def test_the_builder_previews_an_account_segment_it_edits_as_one(whs: Warehouse) -> None:
    """Editing an account segment in the dashboard: the page says what its rule reads and
    previews it at its level (the preview call carries it), in Spanish."""
    import httpx

    from conftest import serving
    from segmentum.service.app import create_app
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session

    segs = Segments(whs, SETTINGS)
    segs.create("big_accounts", "employees >= 50 and revenue > 500", level="account")
    size = segs.preview("big_accounts").size
    app = create_app(whs, SETTINGS)
    session = create_session(app.state.svc.sessions, create_key(whs, "w", ["write"]))
    assert session is not None
    jar = {SESSION_COOKIE: session.sid}
    with serving(app) as base, httpx.Client(base_url=base, timeout=120, cookies=jar) as http:
        page = http.get("/dashboard/segments", params={"edit": "big_accounts", "lang": "es"})
        assert page.status_code == 200, page.text[:500]
        assert 'data-level="account"' in page.text and "Un segmento de cuentas" in page.text
        new = http.get("/dashboard/segments", params={"lang": "es"}).text
        assert 'data-level="customer"' in new and "Un segmento de cuentas" not in new
        head = {"X-CSRF-Token": session.csrf}
        body = {"rule": "employees >= 50 and revenue > 500", "lang": "es"}
        got = http.post("/dashboard/api/preview", json={**body, "level": "account"}, headers=head)
        assert got.status_code == 200 and got.json()["size"] == size > 0, got.text
        typo = http.post(
            "/dashboard/api/preview",
            json={"rule": "industry == 'retial'", "lang": "es", "level": "account"},
            headers=head,
        ).json()
        assert typo["warnings"][0]["message"].startswith("ninguna cuenta tiene industry"), typo
        # Its "values of a column" are the accounts' (industries), not the customers' classes.
        assert 'value="industry"' in page.text and 'value="rfm_segment"' not in page.text
        got = http.get("/dashboard/api/values", params={"column": "industry", "level": "account"})
        industries = {v["value"] for v in got.json()["values"]}
        assert industries == set(whs.table("customers").to_pandas().industry.dropna()), got.text
        # Read at customer level (what the builder asked before), an account column is unknown.
        plain = http.post("/dashboard/api/preview", json=body, headers=head)
        assert plain.status_code == 422 and "'revenue'" in plain.json()["detail"], plain.text


# ---------------------------------------------------------------------------- micro-segments


def test_micro_segments_merge_small_cells_upward_and_lose_nobody(whs: Warehouse) -> None:
    cust = whs.table("customers").to_pandas().set_index("customer_id")
    sizes = cust.groupby(["region", "city"]).size()
    min_size = int(sizes.min()) + 1  # so that at least the smallest city is too small
    tree = micro_segments(whs, ["region", "city", "neighbourhood"], min_size=min_size)
    root = tree.nodes[0]
    assert root.path == "" and root.customers == 5000
    assert sum(n.own for n in tree.nodes) == 5000  # every customer in exactly one place
    for n in tree.nodes[1:]:
        assert n.customers >= min_size
        assert n.parent in {m.path for m in tree.nodes}
    stored = whs.table("micro_segments").to_pandas()
    assert len(stored) == 5000
    small = sizes.idxmin()  # the smallest city: its customers stay in the region
    who = cust[(cust.region == small[0]) & (cust.city == small[1])].index
    paths = stored.set_index("customer_id").loc[who].micro_segment.unique()
    assert list(paths) in ([small[0]], [""])
    leaf = next(n for n in tree.leaves() if n.depth == 3)
    assert {"age band", "gender", "place", "behaviour", "best time", "channel"} <= set(leaf.persona)
    # "Everyone" is described by everyone, not by the few left at the root (it named one of
    # the smallest RFM segments as typical): the most common value among all 5,000.
    view = whs.table("customer_classes").to_pandas()
    view = view[view.as_of == view.as_of.max()]
    counts = view.rfm_segment.value_counts()
    assert root.persona["behaviour"]["value"] in set(counts[counts == counts.max()].index)
    assert root.persona["behaviour"]["share"] == pytest.approx(counts.max() / len(view), abs=2e-3)


def test_geography_drilldown_adds_up_at_every_level(whs: Warehouse) -> None:
    rows = pd.DataFrame(drilldown(whs))
    by_level = rows.groupby("level").customers.sum()
    assert (by_level == 5000).all()
    rev = rows.groupby("level").revenue.sum()
    assert np.allclose(rev, rev.iloc[0])
    assert set(rows.level) == {"country", "region", "state", "city", "neighbourhood"}


# ---------------------------------------------------------------------------- discovery


@pytest.fixture(scope="module")
def retail_db(tmp_path_factory: pytest.TempPathFactory, build_demo: Any) -> Path:
    path, _ = build_demo(
        tmp_path_factory.mktemp("retail"), customers=5000, seed=7, settings=NO_DISCOVERY
    )
    return path


def test_discovered_segments_recover_the_planted_ones(retail_db: Path, copy_of: Any) -> None:
    wh = copy_of(retail_db)
    d = discover(wh, bootstrap=3)
    got = wh.table("customer_clusters").to_pandas().set_index("customer_id").cluster
    truth = wh.table("demo_ground_truth").to_pandas().set_index("customer_id").planted_segment
    ari = adjusted_rand_score(truth.loc[got.index], got)
    assert ari >= 0.8, ari
    assert d.result.stability_ari > 0.7
    assert {s.k for s in d.result.scores} == set(range(2, 11))
    # Assignment in the engine reproduces the model's own labels on the sample.
    sample_ids = d.result.sample.customer_id
    assert (got.loc[sample_ids].to_numpy() == d.result.sample_labels).all()
    # Profiles: every cluster named in both languages, differences tested and corrected.
    assert all(p.name_en and p.name_es for p in d.profiles.segments)
    assert d.profiles.tree_accuracy > d.profiles.tree_baseline + 0.3


def test_a_kept_cluster_model_assigns_everybody_as_on_the_day_it_was_fitted(
    retail_db: Path, copy_of: Any
) -> None:
    """An incremental day keeps the last fit (``reuse``): no new fit, the same clusters for
    the same customers, its JSON-kept parameters labelling as the fitted model did; other
    settings fit again."""
    from segmentum.segments.discover import stored_model

    wh = copy_of(retail_db)
    first = discover(wh, bootstrap=2, k_range=range(3, 7))
    assert first.refitted
    a = wh.table("customer_clusters").to_pandas().set_index("customer_id").sort_index()
    kept = discover(wh, bootstrap=2, k_range=range(3, 7), reuse=True, run_id="kept")
    assert not kept.refitted
    assert kept.fitted_as_of == first.as_of and kept.result.k == first.result.k
    assert kept.result.scores == first.result.scores  # the fit's, not a new one
    assert (kept.result.sample_labels == first.result.sample_labels).all()
    b = wh.table("customer_clusters").to_pandas().set_index("customer_id").sort_index()
    assert (b.run_id == "kept").all() and len(b) == len(a)  # the date's rows replaced
    assert (a.cluster == b.cluster).all() and (a.cluster_name == b.cluster_name).all()
    # The fit's profiles too: names, tests and rule tree, not profiled again (nor renamed).
    assert kept.profiles.to_dict() == first.profiles.to_dict()
    again = discover(wh, bootstrap=2, k_range=range(3, 7), reuse=True, run_id="again")
    assert again.profiles.to_dict() == first.profiles.to_dict()  # carried from a kept run
    asked = {"method": "gmm", "numeric": list(DEFAULT_NUMERIC), "categorical": [], "mix": 8}
    assert stored_model(wh, asked, first.as_of) is not None
    # Other settings: nothing kept fits them, so the model is fitted again.
    assert stored_model(wh, {**asked, "method": "kmeans"}, first.as_of) is None
    assert stored_model(wh, asked, first.as_of - dt.timedelta(days=1)) is None
    other = discover(wh, method="kmeans", bootstrap=2, k_range=range(3, 7), reuse=True)
    assert other.result.method == "kmeans" and other.result.scores != first.result.scores


@pytest.mark.parametrize("method", ["kmeans", "kprototypes"])
def test_other_methods_assign_in_the_engine_like_the_model(whs: Warehouse, method: str) -> None:
    feats = whs.table("customer_features")
    frame, mix = clustering_frame(feats, whs.table("transactions"), dt.date(2026, 1, 1), 4)
    df = frame.to_pandas()
    cat = ["preferred_channel"] if method == "kprototypes" else ["preferred_device"]
    r = fit_clusters(
        df,
        method=method,
        numeric=["frequency", "monetary", *mix],
        categorical=cat,
        k_range=range(3, 5),
        bootstrap=2,
    )
    got = r.assign(frame).to_pandas().set_index("customer_id").cluster
    assert (got.loc[df.customer_id].to_numpy() == r.sample_labels).mean() > 0.999
    assert all(s.bic is None for s in r.scores)


def test_profiles_flag_segments_that_are_not_different(whs: Warehouse) -> None:
    segs = Segments(whs, SETTINGS)
    segs.create("vip", "value_tier == 'high' and frequency >= 5")
    segs.compute()
    p = profile_labels(whs, segment_labels(whs, "vip"), "segment")
    inside = next(s for s in p.segments if s.segment == "in")
    money = next(t for t in inside.tests if t.feature == "monetary")
    assert money.q_value < 1e-10 and money.effect > 0.5
    assert "not_distinct" not in inside.flags
    assert "high value" in inside.name_en.lower() and "alto valor" in inside.name_es.lower()
    # A coin flip is not a segment: nothing differs after the correction.
    view = whs.table("customer_features")
    coin = view.select("customer_id", coin=(view.customer_id.hash() % 2).abs().cast("string"))
    flip = profile_labels(whs, coin, "coin")
    assert all("not_distinct" in s.flags for s in flip.segments)


def test_benjamini_hochberg_matches_a_worked_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert np.allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


# ---------------------------------------------------------------------------- look-alikes


def test_lookalikes_rank_prospects_like_the_best_customers(whs: Warehouse) -> None:
    r = find_lookalikes(whs, top=10)
    assert r.model.cv_auc > 0.75 and r.model.cv_auc_sd < 0.05
    assert len(r.top) == 10 and all(r.top.reasons.str.len() > 0)
    scores = whs.table("prospect_scores").to_pandas()
    truth = whs.table("demo_ground_truth").to_pandas().set_index("customer_id").planted_segment
    scores["planted"] = scores.prospect_id.map(truth)
    top = scores.nsmallest(len(scores) // 10, "rank")
    base = (scores.planted == "loyal_high_value").mean()
    assert (top.planted == "loyal_high_value").mean() > 3 * base


# ---------------------------------------------------------------------------- interfaces


def test_cli_segment_commands(whs: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    url = whs.url
    assert main(["segment", "create", "vip", "value_tier == 'high'", "-w", url]) == 0
    assert main(["segment", "create", "bad", "frequency >= 'x'", "-w", url]) == 2
    err = capsys.readouterr().err
    assert "position 14" in err and "^" in err and "Traceback" not in err
    assert main(["segment", "preview", "vip and frequency > 3", "-w", url, "--json"]) == 0
    assert '"reach"' in capsys.readouterr().out
    assert main(["segment", "compute", "-w", url]) == 0
    assert main(["segment", "list", "-w", url]) == 0
    assert "vip" in capsys.readouterr().out
    assert main(["segment", "micro", "--dimensions", "region,city", "-w", url]) == 0
    assert main(["segment", "delete", "nope", "-w", url]) == 2


def test_the_segment_journey_in_spanish(
    whs: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """create -> edit -> compute -> export -> import -> webhooks -> look-alikes -> delete with
    --lang es: every line in Spanish, counts and dates as Spanish writes them."""
    es = ["--lang", "es", "-w", whs.url]
    assert main(["segment", "create", "vip", "value_tier == 'high'", *es]) == 0
    assert (
        main(["segment", "edit", "vip", "--rule", "value_tier == 'high' and frequency > 1", *es])
        == 0
    )
    assert main(["segment", "compute", *es]) == 0
    yaml = tmp_path / "segmentos.yaml"
    assert main(["segment", "export", str(yaml), *es]) == 0
    assert main(["segment", "import", str(yaml), *es]) == 0
    hook = ["segment", "subscribe", "vip", "https://crm.example.com/hook", *es]
    assert main(hook) == 0
    assert main(["segment", "webhooks", *es]) == 0
    assert main(["segment", "lookalike", "--top", "5", *es]) == 0
    out = capsys.readouterr().out
    for spanish in (
        "segmento vip guardado",
        "segmento vip actualizado",
        "segmentos a ",
        "escrito",
        "cargado 1 segmento de",
        "suscrito a vip",
        "secreto de firma",
        "suscripciones de webhook",
        "parecidos a",
        "prospectos puntuados",
    ):
        assert spanish in out, spanish
    sub_id = re.search(r"\(id (\w+)\)", out)
    assert sub_id
    assert main(["segment", "unsubscribe", sub_id.group(1), *es]) == 0
    assert main(["segment", "delete", "vip", *es]) == 0
    out += capsys.readouterr().out
    assert "cancelada" in out and "segmento vip borrado" in out
    for english in (
        "saved segment",
        "segments as of",
        "loaded 1",
        "subscribed",
        "look-alikes",
        "prospects scored",
        "deleted segment",
        "wrote ",
    ):
        assert english not in out, english
    assert not re.search(r"\b(nan|None|NaT)\b", out)


def test_the_pipeline_loads_the_demo_segments_and_discovers(
    b2b_db: tuple[Path, Path], tmp_path: Path
) -> None:
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'p.duckdb'}")
    s = pipeline.run(wh, data=b2b_db[1], settings=SETTINGS.with_overrides(discover_segments=True))
    assert s.segments["vip"] > 0 and "vip_south" in s.segments
    assert len(s.clusters) >= 2 and sum(c["customers"] for c in s.clusters) == s.customers
    steps = {x["step"]: x["status"] for x in s.steps}
    assert steps["segments"] == "ok" and steps["discover segments"] == "ok"
    wh.close()


@pytest.mark.spark
def test_rule_segments_are_identical_on_duckdb_and_spark(
    tmp_path: Path, spark_session: object
) -> None:
    files = demo.generate(tmp_path / "demo", customers=400, seed=3)
    duck = segmentum.connect(f"duckdb:///{tmp_path / 'd.duckdb'}")
    pipeline.run(duck, data=files["transactions"].parent, settings=SETTINGS)
    spark = segmentum.connect("pyspark", spark_session=spark_session)
    for name in (
        "transactions",
        "events",
        "customers",
        "customer_features",
        "customer_classes",
        "customer_clv",
        "campaign_results",
    ):
        spark.write(name, duck.table(name).to_pyarrow())
    sizes = []
    for wh in (duck, spark):
        segs = Segments(wh, SETTINGS)
        segs.load_yaml(files["segments"])
        sizes.append(segs.compute().sizes)
    assert sizes[0] == sizes[1]
    assert sum(sizes[0].values()) > 0
    # A model fitted once assigns the same clusters in either engine.
    as_of = dt.date(2026, 1, 1)
    frames = [
        clustering_frame(w.table("customer_features"), w.table("transactions"), as_of, 4)
        for w in (duck, spark)
    ]
    model = fit_clusters(
        frames[0][0].to_pandas(),
        numeric=["frequency", "monetary", *frames[0][1]],
        k_range=range(3, 5),
        bootstrap=1,
    )
    labels = [
        model.assign(f).to_pandas().set_index("customer_id").cluster.sort_index() for f, _ in frames
    ]
    assert labels[0].equals(labels[1])
    for name in spark.con.list_tables():
        spark.drop(name)
    duck.close()
