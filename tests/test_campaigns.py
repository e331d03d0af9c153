"""Campaigns against real local servers: SMTP with STARTTLS and auth, webhooks, a web endpoint."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from scipy import stats

import segmentum
from segmentum import i18n
from segmentum.campaigns import audiences, reasons
from segmentum.campaigns.channels import render, serve_web_messages
from segmentum.campaigns.core import Campaigns, control_value
from segmentum.campaigns.fpgrowth import association_rules, brute_force_supports, fpgrowth
from segmentum.campaigns.measure import effect, explain, member_outcomes, results
from segmentum.campaigns.timing import (
    DIMENSIONS,
    contact_times,
    counts_as_of,
    next_send_time,
    segment_times,
    stored_counts,
)
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.errors import InputError
from segmentum.page_models import CAMPAIGN_PAGES, PLAN_EXAMPLES, build_page_models
from segmentum.segments.reach import reach
from segmentum.segments.store import Segments
from segmentum.warehouse import Warehouse

SETTINGS = load_settings(env={}).with_overrides(discover_segments=False)
TEMPLATE = {
    "subject": {
        "es": "Te echamos de menos{% if first_name %}, {{ first_name }}{% endif %}",
        "en": "We miss you{% if first_name %}, {{ first_name }}{% endif %}",
    },
    "body": {
        "es": "{{ greeting }}: {{ reason }}",
        "en": "{{ greeting }}: {{ reason }}",
    },
    "segments": {
        "Champions": {"subject": {"es": "Para nuestros campeones", "en": "For champions"}}
    },
}


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory: pytest.TempPathFactory, build_demo: Any) -> Path:
    path, _ = build_demo(
        tmp_path_factory.mktemp("campaigns"),
        customers=2000,
        seed=9,
        settings=SETTINGS,
        after=contact_times,
    )
    return path


@pytest.fixture
def cwh(campaign_db: Path, copy_of: Any) -> Warehouse:
    return copy_of(campaign_db)


# ------------------------------------------------------------------------- building blocks


def test_fpgrowth_finds_exactly_the_frequent_itemsets() -> None:
    rng = np.random.default_rng(1)
    items = list("abcdefg")
    baskets = [list(rng.choice(items, rng.integers(1, 5), replace=False)) for _ in range(400)]
    baskets += [["a", "b", "c"]] * 60  # a planted pattern
    found, n = fpgrowth(baskets, min_support=0.05, max_len=3)
    truth = {k: v for k, v in brute_force_supports(baskets, 3).items() if v >= 0.05 - 1e-12}
    assert n == 460 and found.keys() == truth.keys()
    assert all(abs(found[k] - truth[k]) < 1e-12 for k in truth)
    rules = association_rules(found, min_confidence=0.3)
    ab_c = next(r for r in rules if r.antecedent == ("a", "b") and r.consequent == "c")
    assert ab_c.confidence == pytest.approx(truth[frozenset("abc")] / truth[frozenset("ab")])
    assert ab_c.lift == pytest.approx(ab_c.confidence / truth[frozenset("c")])
    assert ab_c.lift > 1.5


def test_control_groups_are_reproducible_and_the_right_size() -> None:
    ids = [f"C{i:06d}" for i in range(20_000)]
    a = [control_value(7, "camp-1", i) < 0.1 for i in ids]
    b = [control_value(7, "camp-1", i) < 0.1 for i in ids]
    other = [control_value(7, "camp-2", i) < 0.1 for i in ids]
    assert a == b and a != other
    assert abs(np.mean(a) - 0.1) < 0.01


def test_send_times_follow_each_customers_clock() -> None:
    now = dt.datetime(2026, 1, 5, 12, 0)  # Monday 12:00 UTC
    # Best: Wednesday evening (18:00) in Mexico City (UTC-6) -> Wednesday 00:00 UTC next day.
    t = next_send_time(now, "evening", "wed", "America/Mexico_City")
    assert t == dt.datetime(2026, 1, 8, 0, 0)
    # Madrid, morning (10:00, UTC+1), any day: tomorrow 09:00 UTC (today's 10:00 has passed).
    assert next_send_time(now, "morning", None, "Europe/Madrid") == dt.datetime(2026, 1, 6, 9, 0)
    assert next_send_time(now, None, None, "Not/AZone") == dt.datetime(2026, 1, 6, 10, 0)


def test_templates_are_bilingual_per_segment_and_sandboxed() -> None:
    ctx = {"first_name": "Lucía", "reason": "r", "segment": "Champions"}
    assert render(TEMPLATE, "es", ctx) == ("Para nuestros campeones", "Hola Lucía: r")
    assert render(TEMPLATE, "en", {**ctx, "segment": "Lost"})[0] == "We miss you, Lucía"
    evil = {"body": {"en": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}}
    with pytest.raises(Exception, match=r"unsafe|access"):
        render(evil, "en", {})


def test_best_time_is_shrunk_toward_the_segment(cwh: Warehouse) -> None:
    t = cwh.table("contact_times").to_pandas().set_index("customer_id")
    assert t.best_hour_band.notna().mean() > 0.99
    conf = t.hour_band_confidence.dropna()
    assert len(conf) > 0.99 * len(t) and ((conf > 0) & (conf <= 1)).all()
    # Someone with one purchase leans on the segment (low confidence); many purchases, own habit.
    f = cwh.table("customer_features").to_pandas().set_index("customer_id")
    few = t.loc[f.index[f.frequency == 1].intersection(t.index)].hour_band_confidence.mean()
    many = t.loc[f.index[f.frequency >= 10].intersection(t.index)].hour_band_confidence.mean()
    assert many > few


def test_best_times_equal_the_posterior_over_every_value_of_the_segment(cwh: Warehouse) -> None:
    """The engine's answer against the definition, in pandas: for every customer and dimension,
    the posterior share (own count + k x segment share) / (own total + k) of every value their
    RFM segment has signals for; the best is the largest, ties to the first value in order."""
    k = 5.0
    as_of = cwh.table("contact_times").as_of.max().to_pyarrow().as_py()
    assert counts_as_of(cwh) == as_of
    counts = stored_counts(cwh).to_pandas()
    cls = cwh.table("customer_classes")
    cls = cls.filter(cls.as_of == ibis.literal(as_of, "date")).to_pandas()
    seg = cls.set_index("customer_id").rfm_segment
    assert len(seg) > 1000
    got = cwh.table("contact_times").to_pandas().set_index("customer_id")
    counts = counts[counts.customer_id.isin(got.index)]  # the customers the view knows
    counts["_seg"] = counts.customer_id.map(seg).fillna("(none)")
    shares = counts.groupby(["dim", "_seg", "value"]).n.sum()
    shares = shares / shares.groupby(level=["dim", "_seg"]).transform("sum")
    own = counts.set_index(["customer_id", "dim", "value"]).n
    totals = counts.groupby(["customer_id", "dim"]).n.sum()
    rng = np.random.default_rng(7)
    checked = 0
    for cid in rng.choice(got.index.to_numpy(), size=400, replace=False):
        s = seg.get(cid, "(none)")
        for dim in DIMENSIONS:
            if (dim, s) not in shares.index.droplevel("value"):
                assert pd.isna(got.at[cid, f"best_{dim}"])
                continue
            tot = float(totals.get((cid, dim), 0.0))
            post = {
                v: (float(own.get((cid, dim, v), 0.0)) + k * p) / (tot + k)
                for v, p in shares.xs((dim, s), level=["dim", "_seg"]).items()
            }
            top = max(post.values())
            best = min(v for v, q in post.items() if q == top)
            assert got.at[cid, f"best_{dim}"] == best, (cid, dim, post)
            assert got.at[cid, f"{dim}_confidence"] == pytest.approx(top, rel=1e-12)
            checked += 1
    assert checked > 1000


def test_best_times_are_the_same_for_free_text_values(
    cwh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many values in a dimension (devices written as free text, say) the best values are
    picked from one row per customer, dimension and value instead of one column per value:
    the same answer either way."""
    from segmentum.campaigns import timing

    as_of = counts_as_of(cwh)
    wide = cwh.materialize(contact_times(cwh, as_of, store=False))
    monkeypatch.setattr(timing, "WIDE_VALUES", 0)
    long = cwh.materialize(contact_times(cwh, as_of, store=False))
    assert wide.count().to_pyarrow().as_py() > 1000
    assert wide.difference(long).count().to_pyarrow().as_py() == 0
    assert long.difference(wide).count().to_pyarrow().as_py() == 0
    # A dimension with one value (only email opens) and one with none (no devices), from
    # counts kept one row per customer, dimension and value (as free-text devices keep them).
    monkeypatch.undo()
    counts = cwh.materialize(stored_counts(cwh))
    keep = (counts.dim == "hour_band") | (counts.dim == "weekday") | (counts.value == "email")
    cwh.write(timing.COUNTS, cwh.materialize(counts.filter(keep)))
    cwh.mark(timing.COUNTS_AS_OF, {"as_of": as_of.isoformat(), "shape": "long"})
    nobody = cwh.materialize(counts.select("customer_id").limit(0))
    narrow = contact_times(cwh, as_of, store=False, changed=nobody, since=as_of).to_pandas()
    assert set(narrow.best_channel.dropna()) == {"email"} and narrow.best_device.isna().all()
    assert narrow.best_weekday.notna().all()
    monkeypatch.setattr(timing, "WIDE_VALUES", 0)
    again = contact_times(cwh, as_of, store=False, changed=nobody, since=as_of).to_pandas()
    key = ["customer_id"]
    pd.testing.assert_frame_equal(
        narrow.sort_values(key, ignore_index=True), again.sort_values(key, ignore_index=True)
    )


def test_a_device_the_day_brings_counts_everybody_again(cwh: Warehouse) -> None:
    """The counts are kept one column a device; a changed customer's new device (a smart TV
    nobody had) has no column, so the day's run counts every customer again, and the answer
    is a full count's."""
    from segmentum.campaigns import timing

    as_of = counts_as_of(cwh)
    assert as_of is not None
    assert "smart_tv" not in (cwh.marked(timing.COUNTS_AS_OF) or {})["values"]["device"]
    tx = cwh.table("transactions")
    line = tx.filter((tx.quantity > 0) & tx.customer_id.notnull()).order_by("invoice_id").limit(1)
    new = line.mutate(
        invoice_id=ibis.literal("TV-1"),
        device=ibis.literal("smart_tv"),
        timestamp=ibis.literal(dt.datetime.combine(as_of, dt.time()) - dt.timedelta(hours=3)),
    )
    cwh.insert("transactions", cwh.materialize(new.select(*tx.columns)))
    who = line.customer_id.to_pyarrow().to_pylist()[0]
    changed = cwh.materialize(line.select("customer_id"))
    contact_times(cwh, as_of, changed=changed, since=as_of)
    assert "smart_tv" in (cwh.marked(timing.COUNTS_AS_OF) or {})["values"]["device"]
    counts = stored_counts(cwh).to_pandas()
    mine = counts[(counts.customer_id == who) & (counts.dim == "device")]
    assert mine.set_index("value").n.get("smart_tv") == 1.0
    stored = cwh.table("contact_times")
    stored = stored.filter(stored.as_of == ibis.literal(as_of, "date"))
    full = cwh.materialize(contact_times(cwh, as_of, store=False))
    assert stored.count().to_pyarrow().as_py() == full.count().to_pyarrow().as_py() > 1000
    assert stored.difference(full).count().to_pyarrow().as_py() == 0


def test_segment_times_are_distributions(cwh: Warehouse) -> None:
    rows = pd.DataFrame(segment_times(cwh))
    sums = rows.groupby(["segment", "dimension"]).share.sum()
    assert np.allclose(sums, 1.0) and {"hour_band", "weekday", "device", "channel"} == set(
        rows.dimension
    )


# ------------------------------------------------------------------------- audiences


def test_every_tactic_explains_each_member(cwh: Warehouse) -> None:
    view = (
        cwh.table("customer_classes")
        .join(cwh.table("customer_features"), "customer_id")
        .to_pandas()
    )
    win = audiences.winback(cwh).to_pandas()
    expected = view[
        view.lifecycle_stage.isin(["lapsed", "lost"]) & view.value_tier.isin(["high", "medium"])
    ]
    assert set(win.customer_id) == set(expected.customer_id) and win.reason.str.len().min() > 20
    ret = audiences.retention(cwh).to_pandas()
    assert len(ret) > 0 and ret.reason.str.contains("churn risk").all()
    up = audiences.up_sell(cwh).to_pandas()
    assert len(up) > 0 and up.reason.str.contains("below the").all()
    cross, rules = audiences.cross_sell(cwh)
    df = cross.to_pandas()
    assert rules.baskets > 1000 and len(df) > 0
    tx = cwh.table("transactions").to_pandas()
    owned = tx[tx.quantity > 0].groupby("customer_id").category.apply(set)
    for r in df.head(50).itertuples():
        assert r.recommendation not in owned[r.customer_id]
    with pytest.raises(InputError, match="needs --target"):
        audiences.build(cwh, "segment")


def test_retention_says_what_the_churn_risk_was_and_skips_risks_that_fell(
    cwh: Warehouse,
) -> None:
    """With an earlier run's churn risk, the retention audience keeps the customers whose
    risk rose and says what it was ("(was 40%)", "(antes 40 %)"); a risk that fell is not a
    reason to act."""
    first = audiences.retention(cwh).to_pandas()
    assert len(first) > 10 and not first.reason.str.contains("was").any()  # one run only
    clv = cwh.table("customer_clv")
    latest = clv.as_of.max().to_pyarrow().as_py()
    cols = ", ".join(c for c in clv.columns if c != "as_of")
    # The day before: every risk 0.1 lower, except half of the first audience's, higher.
    fell = sorted(first.customer_id)[::2]
    marks = ", ".join(f"'{x}'" for x in fell)
    risk = (
        f"CASE WHEN customer_id IN ({marks}) THEN least(churn_probability + 0.05, 1.0) "
        "ELSE greatest(churn_probability - 0.1, 0.0) END AS churn_probability"
    )
    day = latest - dt.timedelta(days=1)
    cwh.con.raw_sql(
        f"INSERT INTO customer_clv ({cols}, as_of) SELECT "
        + cols.replace("churn_probability", risk, 1)
        + f", DATE '{day}' FROM customer_clv WHERE as_of = DATE '{latest}'"
    )
    now = audiences.retention(cwh).to_pandas().set_index("customer_id")
    assert set(now.index) == set(first.customer_id) - set(fell)
    before = clv.filter(clv.as_of == day).to_pandas().set_index("customer_id")
    for cid, row in now.head(20).iterrows():
        was = round(before.churn_probability[cid] * 100)
        assert row.reason.endswith(f"(was {was}%)"), row.reason
        assert row.why_was == pytest.approx(before.churn_probability[cid])
        es = reasons.text("retention", reasons.facts(row.to_dict()), "es")
        assert es is not None and "(antes " in es, es


# ------------------------------------------------------------------------- channels


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = _certificate(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    inbox = Inbox()

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"mkt" and data.password == b"pw"
        return AuthResult(success=ok, handled=False)

    with socket.socket() as probe:  # a free port (the controller cannot start on port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctl = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
    )
    ctl.start()
    yield inbox, port, cert
    ctl.stop()


def test_email_campaign_over_starttls_with_auth_reaches_only_consented_treatment(
    cwh: Warehouse, smtp_server: tuple[Inbox, int, Path]
) -> None:
    inbox, port, cert = smtp_server
    settings = SETTINGS.with_overrides(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_user="mkt",
        smtp_password="pw",
        smtp_starttls=True,
        smtp_cafile=str(cert),
    )
    cs = Campaigns(cwh, settings)
    c = cs.create("Vuelve", "winback", "email", template=TEMPLATE, control_share=0.2)
    dry = cs.dry_run(c)
    assert dry["audience"] > 50 and not inbox.messages  # a dry run sends nothing
    r = cs.send(c, immediately=True)
    log = cs.log(c)
    sent = log[log.status == "sent"]
    assert r.delivered == len(sent) == len(inbox.messages) > 0 and r.failed == 0
    assert set(sent.group) == {"treatment"} and (log.group == "control").sum() == r.control > 0
    cust = cwh.table("customers").to_pandas().set_index("customer_id")
    assert cust.loc[sent.customer_id].consent_email.all()
    assert not log[log.outcome == "no_consent"].customer_id.isin(sent.customer_id).any()
    got = {m["To"]: m for m in inbox.messages}
    # Every message has its own well-formed Message-ID and a Date.
    ids = [str(m["Message-ID"]) for m in inbox.messages]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"<[\w.-]+@[\w.-]+>", i) for i in ids), ids[:3]
    assert all(m["Date"] for m in inbox.messages)
    one = sent.iloc[0]
    msg = got[cust.loc[one.customer_id].email]
    assert cust.loc[one.customer_id].first_name in str(msg["Subject"])
    assert msg.get_content().startswith("Hola " + cust.loc[one.customer_id].first_name)
    # Sending again sends nothing twice.
    again = cs.send(c, immediately=True)
    assert again.delivered == 0 and len(inbox.messages) == len(sent)
    # After the send, the dry run is the logged plan with what was done, not a new plan.
    after = cs.dry_run(c)
    assert after["logged"] and after["audience"] == len(log) == r.audience
    assert after["outcomes"]["sent"] == len(sent)
    assert sum(after["outcomes"].values()) == len(log)
    # The control group's members who would have had a message; the others keep why not.
    control = log[log.group == "control"]
    assert after["outcomes"].get("control", 0) == (control.outcome == "control").sum()
    assert len(control) == r.control and (control.outcome == "control").sum() < r.control
    # The contacts now count toward the frequency cap, today (the data's date is in the
    # past) as on the data's next day: a second campaign to them sent now is capped.
    one_cap = settings.with_overrides(frequency_cap=1)
    again_today = Campaigns(cwh, one_cap).create("Otra", "winback", "email", template=TEMPLATE)
    plan = Campaigns(cwh, one_cap).plan(again_today)
    contacted = plan[plan.customer_id.isin(sent.customer_id)]
    assert len(contacted) == len(sent) and (contacted.outcome == "capped").sum() > 0
    assert set(contacted.outcome) <= {"capped", "control"}
    capped = reach(
        cwh,
        cwh.from_arrow(pa.table({"customer_id": sent.customer_id.tolist()})),
        dt.date.today() + dt.timedelta(days=1),
        settings.with_overrides(frequency_cap=1),
    )
    assert capped.channels["email"]["capped"] == len(sent)
    # The sent campaign's examples are its logged members with their logged reasons, also
    # once today's data would plan another audience (here: no one bought anything).
    cwh.con.raw_sql("UPDATE customer_features SET frequency = 0, monetary = 0")
    later = cs.dry_run(c, lang="en")
    assert later["logged"] and later["audience"] == len(log) and later["examples"]
    by_id = log.set_index("customer_id")
    for x in later["examples"]:
        row = by_id.loc[x["customer_id"]]
        assert row.status == "sent", x
        assert x["why"] == reasons.text(c.tactic, row.reason_args, "en", cs.currency), x
        name = cust.loc[x["customer_id"]].first_name
        assert name in x["subject"] or name in x["body"], x
    # Picked in the engine (the log is never read whole): the log's first members by
    # scheduled time, the first in each recipient language before any second one.
    ordered = log.sort_values(["scheduled_at", "key"], na_position="last", kind="stable")
    ordered = ordered[ordered.status == "sent"]
    first = ~ordered.language.fillna("en").duplicated()
    picked = pd.concat([ordered[first], ordered[~first]]).head(7).index
    wanted = ordered[ordered.index.isin(picked)].customer_id.tolist()
    assert [x["customer_id"] for x in cs.dry_run(c, sample=7)["examples"]] == wanted
    # The campaigns page keeps the sent plan with the published read models: the same dry
    # run from there, without the sales or the customers (Spark's pages, a busy DuckDB file).
    assert build_page_models(cwh, only=[CAMPAIGN_PAGES]) == [CAMPAIGN_PAGES]
    for lang, sample in (("en", 5), ("es", 3), ("en", PLAN_EXAMPLES)):
        stored = Campaigns(cwh, settings).published_dry_run(c.campaign_id, sample, lang)
        assert stored == cs.dry_run(c, sample=sample, lang=lang), (lang, sample)
    assert Campaigns(cwh, settings).published_dry_run(again_today.campaign_id) is None


class RefusingInbox(Inbox):
    """Refuses for good every address whose local part ends in 1, naming it as servers do."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.split("@")[0].endswith("1"):
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_refused_address_is_logged_and_shown_without_the_address(cwh: Warehouse) -> None:
    inbox = RefusingInbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        settings = SETTINGS.with_overrides(
            smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False
        )
        cs = Campaigns(cwh, settings)
        c = cs.create("Rechazos", "winback", "email", template=TEMPLATE, control_share=0.0)
        r = cs.send(c, immediately=True)
    finally:
        ctl.stop()
    log = cs.log(c)
    refused = log[log.status == "failed"]
    assert r.failed == len(refused) > 0 and r.delivered == len(inbox.messages) > 0
    # Why, with the server's code and words, but never the recipient's address.
    assert refused.error.str.startswith("address refused: 550 5.1.1 <<address>>").all()
    assert not log.error.fillna("").str.contains("@").any()
    assert r.errors and not any("@" in e for e in r.errors)


def test_wrong_smtp_password_is_a_clear_error(
    cwh: Warehouse, smtp_server: tuple[Inbox, int, Path]
) -> None:
    _, port, cert = smtp_server
    settings = SETTINGS.with_overrides(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_user="mkt",
        smtp_password="nope",
        smtp_cafile=str(cert),
    )
    cs = Campaigns(cwh, settings)
    c = cs.create("x", "winback", "email")
    with pytest.raises(segmentum.errors.ConfigError, match="cannot use the SMTP server"):
        cs.send(c, immediately=True)
    assert (cs.log(c).status != "sent").all()  # nothing marked sent


def test_push_through_a_failing_endpoint_loses_nothing_and_never_duplicates(
    cwh: Warehouse, receiver: Any
) -> None:
    settings = SETTINGS.with_overrides(push_webhook_url=receiver.url, channel_secret="s3cret")
    cs = Campaigns(cwh, settings)
    c = cs.create("Push", "up_sell", "push", control_share=0.1)
    receiver.fail = 10_000  # down
    r = cs.send(c, immediately=True)
    assert r.delivered == 0 and r.failed > 0 and not receiver.seen
    pending = cs.log(c)
    assert (pending[pending.outcome == "scheduled"].status == "pending").all()
    assert pending.error.dropna().str.contains("503").all()
    receiver.fail = 1  # one more failure, then up: the retry succeeds
    r = cs.send(c, immediately=True)
    assert r.delivered == r.failed + r.delivered and r.delivered > 0
    keys = [s["key"] for s in receiver.seen]
    assert len(keys) == len(set(keys)) == r.delivered and all(s["ok"] for s in receiver.seen)
    assert cs.send(c, immediately=True).delivered == 0


def test_sends_wait_for_each_recipients_best_time(cwh: Warehouse, receiver: Any) -> None:
    settings = SETTINGS.with_overrides(inapp_webhook_url=receiver.url, channel_secret="s3cret")
    cs = Campaigns(cwh, settings)
    c = cs.create("InApp", "winback", "inapp", control_share=0.0)
    now = dt.datetime(2026, 1, 5, 12, 0)
    first = cs.send(c, now=now)
    log = cs.log(c)
    due = log[(log.outcome == "scheduled") & (log.scheduled_at <= now)]
    assert first.delivered == len(due) and first.scheduled_later > 0
    later = cs.send(c, now=now + dt.timedelta(days=8))
    assert first.delivered + later.delivered == (log.outcome == "scheduled").sum()
    assert len(receiver.seen) == first.delivered + later.delivered


def test_a_control_member_gets_what_a_treated_one_would_have_had(
    cwh: Warehouse,
    capsys: pytest.CaptureFixture[str],
    receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control group is compared with the members who would have been messaged: a
    control member who cannot be reached keeps that outcome (no consent...), and one who
    could be has the time the message would have gone out."""
    cs = Campaigns(cwh, SETTINGS)
    now = dt.datetime(2026, 1, 5, 12, 0)
    camp = cs.create("Grupos", "winback", "email", control_share=0.3)
    plan = cs.plan(camp, now=now)
    everyone = cs.plan(cs.create("Todos", "winback", "email", control_share=0.0), now=now)
    ctl = plan[plan.group == "control"].set_index("customer_id")
    would = everyone.set_index("customer_id").loc[ctl.index]
    assert len(ctl) > 50 and (ctl.outcome == "control").sum() > 10
    assert ((ctl.outcome == "control") == (would.outcome == "scheduled")).all()
    blocked = ctl.outcome != "control"
    assert blocked.any() and (ctl.outcome[blocked] == would.outcome[blocked]).all()
    assert (ctl.scheduled_at[~blocked] == would.scheduled_at[~blocked]).all()
    assert ctl.scheduled_at[blocked].isna().all()
    # The dry run says how many were drawn and how many of them are compared.
    dry = cs.dry_run(camp, now=now)
    assert dry["control_group"] == len(ctl) > dry["outcomes"]["control"] == (~blocked).sum()
    assert main(["campaign", "send", "Grupos", "--dry-run", "-w", cwh.url, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    drawn = i18n.number(len(ctl), "es")
    assert f"{drawn} elegidos al azar para el grupo de control: los " in out, out
    # The send counts the control group as the dry run does (those compared), and says why
    # more were drawn (it said the number drawn beside the dry run's smaller one).
    monkeypatch.setenv("SEGMENTUM_PUSH_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("SEGMENTUM_CHANNEL_SECRET", "s3cret")
    push = cs.create("Avisos", "winback", "push", control_share=0.3)
    pctl = cs.plan(push, now=now)
    pctl = pctl[pctl.group == "control"]
    compared = int((pctl.outcome == "control").sum())
    assert len(pctl) > compared > 10
    args = ["campaign", "send", "Avisos", "--immediately", "-w", cwh.url]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{compared} in the control group" in out, out
    assert f"{len(pctl)} drawn at random for the control group: the {compared} who" in out, out


def test_a_later_campaign_reaches_a_campaigns_treated_and_control_groups_alike(
    cwh: Warehouse, tmp_path: Path
) -> None:
    """A control group means "not contacted by this campaign": the next campaign must treat
    its two groups alike, or its effect counts as the first one's. The frequency cap counts
    a control member as contacted when their message would have gone out; holding the
    control group out of the next campaign (the old protect_controls) left the treated group
    open to it alone."""
    capped = SETTINGS.with_overrides(frequency_cap=1)
    cs = Campaigns(cwh, capped)
    first = cs.create("Primera", "winback", "file", control_share=0.3)
    cs.send(first, out_dir=tmp_path)
    log = cs.log(first)
    assert set(log.outcome) == {"file", "control"}
    groups = log.set_index("customer_id").group
    plan = cs.plan(cs.create("Segunda", "winback", "email")).set_index("customer_id")
    both = plan.loc[plan.index.intersection(groups.index)]
    assert len(both) > 50
    # Every member of the first campaign has had one contact (real or held back): capped
    # (where not unreachable anyway), in either of its groups; nobody is held out any more.
    for group in ("treatment", "control"):
        members = both[groups.reindex(both.index) == group]
        assert len(members) > 5 and "capped" in set(members.outcome), group
        assert not members.outcome.isin(["scheduled", "control"]).any(), group
    assert "held_out" not in set(plan.outcome)
    # Off: only the messages sent count, and the first campaign's control group is reachable.
    off = Campaigns(cwh, capped.with_overrides(protect_controls=False))
    plan = off.plan(off.create("Tercera", "winback", "email")).set_index("customer_id")
    ctl = plan.loc[plan.index.intersection(groups.index[groups == "control"])]
    assert "scheduled" in set(ctl.outcome) and "capped" not in set(ctl.outcome)


def test_a_campaign_without_effect_shows_none_when_reachable_customers_buy_more(
    tmp_path: Path,
) -> None:
    """Known answer: no effect at all, but the customers who can be reached buy three times
    as often as those who cannot. Comparing the messages sent with every control member
    reported an uplift of about 10 points with a p-value near zero; compared with the control
    members who would have been messaged, the interval holds zero."""
    from segmentum.campaigns import sendlog
    from segmentum.warehouse import connect

    rng = np.random.default_rng(3)
    n = 4000
    ids = [f"C{i:05d}" for i in range(n)]
    reachable = rng.random(n) < 0.5
    control = rng.random(n) < 0.2
    sent_at = dt.datetime(2026, 3, 2, 10)
    log = {col: [None] * n for col in sendlog.SCHEMA.names}
    log.update(
        key=[f"K:{c}" for c in ids],
        campaign_id=["K"] * n,
        customer_id=ids,
        group=["control" if x else "treatment" for x in control],
        outcome=[
            ("control" if c else "scheduled") if r else "no_consent"
            for r, c in zip(reachable, control, strict=True)
        ],
        channel=["email"] * n,
        status=["sent" if treated else "not_sent" for treated in reachable & ~control],
        sent_at=[sent_at if treated else None for treated in reachable & ~control],
        scheduled_at=[sent_at if r else None for r in reachable],
        logged_at=[sent_at - dt.timedelta(hours=1)] * n,
    )
    buys = rng.random(n) < np.where(reachable, 0.3, 0.1)  # the same in both groups
    who = [c for c, b in zip(ids, buys, strict=True) if b]
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    wh.write(sendlog.SENDS, pa.table(log, schema=sendlog.SCHEMA))
    wh.write(
        "transactions",
        pa.table(
            {
                "invoice_id": [f"F{i}" for i in range(len(who))],
                "line": [1] * len(who),
                "customer_id": who,
                "timestamp": [sent_at + dt.timedelta(days=3)] * len(who),
                "quantity": [1.0] * len(who),
                "amount": [50.0] * len(who),
            }
        ),
    )
    overall = results(wh, "K", SETTINGS).overall
    assert overall.treated == int((reachable & ~control).sum())
    assert overall.control == int((reachable & control).sum())
    assert overall.uplift_low < 0 < overall.uplift_high, overall
    assert abs(overall.uplift) < 0.05
    wh.close()


def test_a_template_names_the_segment_in_the_recipients_language(cwh: Warehouse) -> None:
    tpl = {
        "subject": {"es": "Hola", "en": "Hi"},
        "body": {"es": "{{ segment or '-' }}", "en": "{{ segment or '-' }}"},
    }
    cs = Campaigns(cwh, SETTINGS)
    c = cs.create("Segmento", "winback", "email", template=tpl, control_share=0.0)
    plan = cs.plan(c).set_index("customer_id")
    examples = cs.dry_run(c, sample=200)["examples"]
    for e in examples:
        lang, rfm = plan.language[e["customer_id"]], plan.rfm_segment[e["customer_id"]]
        assert e["body"] == ("-" if i18n.is_missing(rfm) else i18n.label(lang, "rfm_segment", rfm))
    assert any(
        plan.language[e["customer_id"]] == "es"
        and e["body"] != str(plan.rfm_segment[e["customer_id"]])
        for e in examples
    )  # "Campeones", not "Champions"


def test_files_leave_out_personal_data_unless_configured(cwh: Warehouse, tmp_path: Path) -> None:
    # Customers in Britain are written to in English (the language follows the country).
    cwh.run_sql("UPDATE customers SET country = 'GB' WHERE customer_id <= 'C0001000'")
    cs = Campaigns(cwh, SETTINGS)
    c = cs.create("Export", "winback", "file")
    r = cs.send(c, out_dir=tmp_path / "plain")
    df = pd.read_csv(r.files[0])
    assert {"customer_id", "reason", "group"} <= set(df.columns)
    assert not {"email", "phone", "first_name"} & set(df.columns)
    assert set(df.group) == {"treatment"}
    assert len(pd.read_parquet(r.files[1])) == len(df)
    # Reasons and RFM segments in each member's language (the one a message would be in).
    es, en = df[df.language == "es"], df[df.language == "en"]
    assert len(es) and len(en)
    assert es.reason.str.contains("última compra hace").all(), es.reason.head()
    assert en.reason.str.contains("last purchase").all(), en.reason.head()
    assert "En riesgo" in set(es.rfm_segment) and "En riesgo" not in set(en.rfm_segment)
    assert "reason_args" not in df.columns
    cs2 = Campaigns(cwh, SETTINGS.with_overrides(export_personal_data=True))
    c2 = cs2.create("Export PII", "winback", "file")
    r2 = cs2.send(c2, out_dir=tmp_path / "pii")
    pii = pd.read_csv(r2.files[0], dtype={"customer_id": str}).set_index("customer_id")
    assert "email" in pii.columns
    # Only the contacts each customer allows: an email where they consent to email, a phone
    # where they consent to SMS (the tool the file goes to cannot check).
    cust = cwh.table("customers").to_pandas().set_index("customer_id").loc[pii.index]
    no_mail = cust.consent_email.fillna(False) == False  # noqa: E712
    no_sms = cust.consent_sms.fillna(False) == False  # noqa: E712
    assert no_mail.any() and no_sms.any() and (~no_mail & cust.email.notna()).any()
    assert pii.email[no_mail].isna().all() and pii.phone[no_sms].isna().all()
    assert (pii.email[~no_mail & cust.email.notna()] == cust.email[~no_mail]).all()


def test_web_messages_are_served_with_a_snippet(cwh: Warehouse) -> None:
    cs = Campaigns(cwh, SETTINGS)
    c = cs.create("Web", "winback", "web", template=TEMPLATE, control_share=0.0)
    cs.send(c, immediately=True)
    log = cs.log(c)
    member = log[log.status == "sent"].customer_id.iloc[0]
    server, _ = serve_web_messages(cs.web_message, port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/v1/web-message?visitor={member}") as resp:
            body = json.loads(resp.read())
        assert body["campaign_id"] == c.campaign_id
        assert body["message"].startswith(("Hola", "Hi", "Hello"))
        with urllib.request.urlopen(f"{base}/v1/web-message?visitor=nobody") as resp:
            assert json.loads(resp.read()) == {}
        with urllib.request.urlopen(f"{base}/segmentum.js") as resp:
            assert b"/v1/web-message?visitor=" in resp.read()
    finally:
        server.shutdown()


# ------------------------------------------------------------------------- measurement


def test_uplift_interval_covers_a_known_effect() -> None:
    rng = np.random.default_rng(3)
    nt, nc = 20_000, 5_000
    conv = np.r_[rng.random(nt) < 0.12, rng.random(nc) < 0.10].astype(int)
    rev = conv * rng.gamma(2.0, 25.0, nt + nc)
    df = pd.DataFrame(
        {
            "group": ["treatment"] * nt + ["control"] * nc,
            "converted": conv,
            "revenue": rev,
            "cost": None,
        }
    )
    e = effect(df, "all", cost_per_contact=0.05, margin=0.3)
    assert e.uplift_low is not None and e.uplift_high is not None and e.p_value is not None
    assert e.uplift_low < 0.02 < e.uplift_high and e.p_value < 0.001
    assert e.revenue_diff_low is not None and e.revenue_diff_high is not None
    assert e.revenue_diff_low < 0.02 * 50 < e.revenue_diff_high
    assert e.incremental_revenue == pytest.approx((e.revenue_treated - e.revenue_control) * nt)
    assert e.roi == pytest.approx((e.incremental_revenue * 0.3 - nt * 0.05) / (nt * 0.05))
    same = df.assign(converted=np.r_[rng.random(nt) < 0.1, rng.random(nc) < 0.1].astype(int))
    p_same = effect(same, "all", 0.05, 0.3).p_value
    assert p_same is not None and p_same > 0.001
    # No conversions anywhere: nothing to test, so no p-value (never a made-up 1.000).
    none = df.assign(converted=0, revenue=0.0)
    assert effect(none, "all", 0.05, 0.3).p_value is None


def test_uplift_interval_and_p_value_agree_with_a_small_control_group() -> None:
    """Newcombe's hybrid score interval reproduces the published examples (Newcombe 1998,
    table II, method 10); with a control group of eleven the exact test and the interval tell
    the same story (the Wald interval crossed zero beside a z-test p of 0.0001)."""
    from segmentum.campaigns.measure import _newcombe

    assert _newcombe(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert _newcombe(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    df = pd.DataFrame(
        {
            "group": ["treatment"] * 215 + ["control"] * 11,
            "converted": [1] * 6 + [0] * 209 + [1] * 3 + [0] * 8,
            "revenue": 0.0,
            "cost": None,
        }
    )
    e = effect(df, "all", 0.05, 0.3)
    assert e.p_value == pytest.approx(
        stats.fisher_exact([[6, 209], [3, 8]])[1]
    )  # expected counts under 5: exact
    assert e.uplift_high is not None and e.uplift_high < 0 and e.p_value < 0.05
    big = effect(
        df.assign(group=["treatment"] * 113 + ["control"] * 113, converted=[1, 0] * 113),
        "all",
        0.05,
        0.3,
    )
    assert big.uplift_low is not None and big.uplift_low < 0 < big.uplift_high  # type: ignore[operator]
    assert big.p_value is not None and big.p_value > 0.05


def test_a_send_of_everything_now_measures_the_control_group_from_now_too(
    cwh: Warehouse,
) -> None:
    """A walk: "send now" sent every planned message at once, while the control members
    kept their later planned times; results taken meanwhile compared the 203 sent with a
    control group of 0 (none due yet). The control members' times come forward with it."""
    cs = Campaigns(cwh, SETTINGS)
    c = cs.create("Ahora", "winback", "web", control_share=0.3)
    now = dt.datetime(2025, 6, 1, 6, 0)
    plan = cs.plan(c, now=now)
    later = plan[(plan.outcome == "control") & (plan.scheduled_at > now)]
    assert len(later) > 0  # planned for later in the week, at each one's best time
    cs.send(c, immediately=True, now=now)
    log = cs.log(c)
    control = log[log.outcome == "control"]
    assert len(control) == (plan.outcome == "control").sum()
    assert (control.scheduled_at <= now).all()
    df, _ = member_outcomes(cwh, c.campaign_id, SETTINGS.attribution_days, now=now)
    assert (df.group == "control").sum() == len(control) > 0
    assert (df.group == "treatment").sum() == (log.status == "sent").sum() > 0
    # A send on schedule leaves the later ones where they are (they are not due yet).
    c2 = cs.create("Luego", "winback", "web", control_share=0.3, seed=5)
    cs.send(c2, now=now)
    log2 = cs.log(c2)
    assert (log2[log2.outcome == "control"].scheduled_at > now).any()


def test_a_segment_campaign_never_tells_customers_the_segments_name(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """A walk: every email of a segment campaign said "Hola Leo: en el segmento vip_dormidos"
    ({{ reason }} printed the marketer's why). The customer's reason is the template's
    fallback; a template printing {{ reason }} bare is refused at create, saying why."""
    Segments(cwh, SETTINGS).create_and_compute("vip_dormidos", "monetary > 100")
    cs = Campaigns(cwh, SETTINGS)
    bare = {"body": {"es": "{{ greeting }}: {{ reason }}.", "en": "{{ greeting }}: {{ reason }}."}}
    with pytest.raises(InputError, match="which a segment campaign cannot fill in"):
        cs.create("Mal", "segment", "web", target="vip_dormidos", template=bare)
    own = {
        "body": {
            "es": "{{ greeting }}: {{ reason or 'tenemos novedades' }}.",
            "en": "{{ greeting }}: {{ reason or 'there is news' }}.",
        }
    }
    c = cs.create("Bien", "segment", "web", target="vip_dormidos", template=own)
    plan = cs.dry_run(c, sample=20, lang="es")
    assert plan["examples"]
    for x in plan["examples"]:
        assert "vip_dormidos" not in x["body"], x
        assert "tenemos novedades" in x["body"] or "there is news" in x["body"], x
        assert "vip_dormidos" in x["why"]  # the marketer still reads why


def test_results_from_ingested_and_from_derived_conversions(cwh: Warehouse) -> None:
    # The demo's own campaign results (ingested), with their control groups.
    camp = cwh.table("campaign_results").campaign_id.arbitrary().to_pyarrow().as_py()
    r = results(cwh, camp, SETTINGS)
    assert r.source == "results" and r.overall.treated > 0 and r.overall.control > 0
    # A campaign of ours: conversions derived from later invoices.
    cs = Campaigns(cwh, SETTINGS)
    c = cs.create("Derived", "winback", "web", control_share=0.3)
    cs.send(c, immediately=True, now=dt.datetime(2025, 6, 1))
    r = results(cwh, c.campaign_id, SETTINGS)
    log = cs.log(c)
    assert r.source == "derived"
    assert r.overall.treated == (log.status == "sent").sum()
    # Like with like: the control members who would have had a message (here every one
    # consenting to web messages), not those who could not have.
    assert r.overall.control == (log.outcome == "control").sum()
    assert 0 < r.overall.control < (log.group == "control").sum()
    # Conversions are net purchases: an order cancelled in full converts nobody.
    from segmentum.features.customer import net_lines
    from segmentum.ingest.returns import links

    tx = net_lines(cwh.table("transactions"), links(cwh)).to_pandas()
    window = tx[(tx.timestamp >= "2025-06-01") & (tx.timestamp < "2025-06-15")]
    buyers = set(window.customer_id)
    treated = log[log.status == "sent"].customer_id
    assert r.overall.conv_treated == pytest.approx(treated.isin(buyers).mean())


def test_loaded_results_are_broken_down_by_the_segments_from_before_the_send(
    cwh: Warehouse,
) -> None:
    """A campaign segmentum did not send has no segments logged: its loaded results are
    broken down by the RFM segment of each customer in the last classes computed before its
    first send (a later snapshot could have been changed by the campaign), and say which."""
    camp = "WINBACK-2025-10"  # the demo's, sent on 2025-10-06
    bare = results(cwh, camp, SETTINGS)
    assert bare.by_segment == [] and bare.segments_as_of is None
    said = " ".join(explain(bare.to_dict(), SETTINGS, "en"))
    assert "Not broken down by segment" in said
    # Classes from before the send (here the latest ones, dated 2025-10-01), and a later
    # snapshot that must not be read (everybody 'Champions').
    cols = ", ".join(c for c in cwh.table("customer_classes").columns if c != "as_of")
    latest = "(SELECT max(as_of) FROM customer_classes)"
    cwh.con.raw_sql(
        f"INSERT INTO customer_classes ({cols}, as_of) SELECT {cols}, DATE '2025-10-01' "
        f"FROM customer_classes WHERE as_of = {latest}"
    )
    cwh.con.raw_sql(
        f"INSERT INTO customer_classes ({cols}, as_of) SELECT "
        + cols.replace("rfm_segment", "'Champions' AS rfm_segment", 1)
        + ", DATE '2025-10-20' FROM customer_classes WHERE as_of = DATE '2025-10-01'"
    )
    r = results(cwh, camp, SETTINGS)
    assert r.segments_as_of == "2025-10-01"
    k = cwh.table("customer_classes")
    before = k.filter(k.as_of == dt.date(2025, 10, 1)).to_pandas()
    loaded = cwh.table("campaign_results").to_pandas()
    loaded = loaded[loaded.campaign_id == camp].merge(before, on="customer_id", how="left")
    loaded["rfm_segment"] = loaded.rfm_segment.fillna("(unknown)")
    sizes = loaded[loaded.group == "treatment"].groupby("rfm_segment").size()
    assert r.by_segment and {e.group for e in r.by_segment} < set(sizes.index)
    for e in r.by_segment:  # each row counts that snapshot's members of the segment
        assert e.treated == sizes[e.group], e.group
    assert sum(e.treated for e in r.by_segment) <= r.overall.treated
    es = " ".join(explain(r.to_dict(), SETTINGS, "es"))
    assert "Segmentos: el segmento RFM de cada cliente el 1 oct 2025" in es, es


def test_the_demos_past_campaign_can_be_measured_but_not_sent(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    cs = Campaigns(cwh, SETTINGS)
    past = cs.get("WINBACK-2025-10")  # only in the ingested campaign_results
    assert past.tactic == "imported" and past.channel == "email"
    assert 0.05 < past.control_share < 0.15
    assert main(["campaign", "list", "-w", cwh.url]) == 0
    assert "WINBACK-2025-10" in capsys.readouterr().out
    assert main(["campaign", "results", "WINBACK-2025-10", "-w", cwh.url]) == 0
    out = capsys.readouterr().out
    assert "results (loaded results)" in out and "nan" not in out.lower()
    r = results(cwh, past.campaign_id, SETTINGS)
    flat = " ".join(out.split())
    said = {
        "raised": "The campaign raised conversion",
        "lowered": "The campaign lowered conversion",
        "unclear": "No clear effect yet",
    }
    assert said[str(r.overall.verdict)] in flat
    with pytest.raises(InputError, match="imported from campaign_results"):
        cs.send(past)
    with pytest.raises(InputError, match="already exists"):
        cs.create("WINBACK-2025-10", "winback", "email")


def test_campaign_cli(cwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = cwh.url
    assert (
        main(
            ["campaign", "create", "Vuelve", "--tactic", "winback", "--channel", "file", "-w", url]
        )
        == 0
    )
    assert main(["campaign", "audience", "Vuelve", "-w", url]) == 0
    assert "customers (win-back)" in capsys.readouterr().out
    assert main(["campaign", "send", "Vuelve", "--dry-run", "-w", url]) == 0
    assert main(["campaign", "send", "Vuelve", "--out", str(tmp_path), "-w", url]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["campaign", "results", "Vuelve", "-w", url]) == 0
    assert (
        main(["campaign", "create", "Bad", "--tactic", "spam", "--channel", "file", "-w", url]) == 2
    )


def test_a_campaign_without_a_template_has_its_tactics_subject_not_its_name(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The subject says what the message is about in the recipient's language; create and the
    dry run name it and how to write another."""
    url = cwh.url
    cwh.con.raw_sql(
        "UPDATE customers SET country = CASE WHEN hash(customer_id) % 2 = 0 THEN 'España' "
        "ELSE 'Ireland' END"
    )
    cwh.close()
    args = ["campaign", "create", "winback_test", "--tactic", "winback", "--channel", "email"]
    assert main([*args, "-w", url, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "asunto: Te echamos de menos (el predeterminado de esta táctica" in out, out
    assert "crea la campaña con --template" in out, out
    assert main(["campaign", "send", "winback_test", "--dry-run", "-w", url, "--json"]) == 0
    examples = json.loads(capsys.readouterr().out)["examples"]
    subjects = {x["subject"] for x in examples}
    assert subjects == {"Te echamos de menos", "We miss you"}, subjects
    assert main(["campaign", "send", "winback_test", "--dry-run", "-w", url]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "subject: We miss you (the default for this tactic" in out, out
    assert "winback_test |" not in out
    # A template's own subject is used, and nothing is said about it.
    (tmp_path / "t.yaml").write_text(json.dumps(TEMPLATE), encoding="utf-8")
    args = ["campaign", "create", "Own", "--tactic", "winback", "--channel", "email"]
    assert main([*args, "--template", str(tmp_path / "t.yaml"), "-w", url]) == 0
    assert main(["campaign", "send", "Own", "--dry-run", "-w", url]) == 0
    assert "the default for this tactic" not in capsys.readouterr().out
    # A template of one's own without a subject: the fix is to add one to that file.
    bodies = {k: v for k, v in TEMPLATE.items() if k != "subject" and k != "segments"}
    (tmp_path / "b.yaml").write_text(json.dumps(bodies), encoding="utf-8")
    args = ["campaign", "create", "Body", "--tactic", "winback", "--channel", "email"]
    assert main([*args, "--template", str(tmp_path / "b.yaml"), "-w", url, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "tu plantilla no tiene asunto" in out and "--template FILE" not in out, out


def test_a_templates_mistakes_are_refused_in_spanish_with_what_to_write(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every way a template file can be wrong is refused at create (exit 2, nothing created)
    and, under --lang es, said and hinted in Spanish: the template's own keys and Jinja's own
    words are what stay as written."""
    url = cwh.url
    cwh.close()
    wrong = {
        "missing.yaml": None,
        "nobody.yaml": {"subject": {"es": "Hola", "en": "Hi"}},
        "half.yaml": {"body": {"es": "Hola", "en": ""}},
        "unknown.yaml": {"body": {"es": "Hola {{ nombre }}", "en": "Hi"}},
        "fallback.yaml": {"body": {"es": "Hola {{ first_name }}", "en": "Hi"}},
        "syntax.yaml": {"body": {"es": "Hola {% if %}", "en": "Hi"}},
    }
    said = {}
    for name, content in wrong.items():
        if content is not None:
            (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
        args = ["campaign", "create", "Mal", "--tactic", "winback", "--channel", "email"]
        code = main([*args, "--template", str(tmp_path / name), "-w", url, "--lang", "es"])
        captured = capsys.readouterr()
        said[name] = " ".join((captured.err + captured.out).split())
        assert code == 2, (name, said[name])
        assert "sugerencia:" in said[name], said[name]
        assert "hint" not in said[name] and "Traceback" not in said[name], said[name]
    assert "missing.yaml: no existe ese archivo" in said["missing.yaml"], said["missing.yaml"]
    assert "una plantilla necesita un body con textos es y en" in said["nobody.yaml"]
    assert "el body de la plantilla no tiene texto en" in said["half.yaml"]
    assert "escribe los dos, es y en" in said["half.yaml"]
    assert "la plantilla body.es usa nombre, que segmentum no conoce" in said["unknown.yaml"]
    assert "que algunos destinatarios no tienen" in said["fallback.yaml"]
    assert "escribe {{ first_name or '...' }} o {% if first_name %}" in said["fallback.yaml"]
    assert "la plantilla body.es no es válida: Expected an expression" in said["syntax.yaml"]
    assert "revisa las marcas {{ }} y {% %}" in said["syntax.yaml"]
    for text in said.values():
        words = text.replace(str(tmp_path), "")
        for english in ("template", "which", "write", "recipients", "check the", "no such"):
            assert english not in words, text
    assert main(["campaign", "list", "-w", url, "--json"]) == 0
    assert "Mal" not in capsys.readouterr().out


def test_the_campaign_journey_in_spanish(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """create -> list -> audience -> dry run -> send -> results with --lang es: every line
    in Spanish (labels, counts and reasons), none of the English words, no nan or None."""
    url = cwh.url
    es = ["--lang", "es", "-w", url]
    args = ["campaign", "create", "Regreso", "--tactic", "winback", "--channel", "file"]
    assert main([*args, *es]) == 0
    out = capsys.readouterr().out
    assert "campaña" in out and "creada" in out and "recuperación" in out.lower()
    assert main(["campaign", "list", *es]) == 0
    out = capsys.readouterr().out
    assert "campañas" in out and "táctica" in out and "Regreso" in out
    assert main(["campaign", "audience", "Regreso", *es]) == 0
    out = capsys.readouterr().out
    assert "clientes (" in out and "por qué" in out
    # The reasons are sentences in Spanish ("inactivo tras gastar ..."), not the logged English.
    assert "inactivo" in out or "última compra" in out
    assert main(["campaign", "send", "Regreso", "--dry-run", *es]) == 0
    out = capsys.readouterr().out
    assert "en la audiencia" in out
    assert main(["campaign", "send", "Regreso", "--out", str(tmp_path), *es]) == 0
    out = capsys.readouterr().out
    assert "entregados ahora" in out and "grupo de control" in out and "escrito" in out
    assert main(["campaign", "results", "Regreso", *es]) == 0
    results_out = capsys.readouterr().out
    assert main(["campaign", "results", "WINBACK-2025-10", *es]) == 0
    imported = capsys.readouterr().out
    assert "resultados (resultados cargados)" in imported and "todos" in imported
    # No classes from before its send: no breakdown (a lone "unknown" row repeated "all").
    assert "(unknown)" not in imported and "(desc" not in imported
    assert "Sin desglose por segmento" in " ".join(imported.split())
    # Said in words under the table: what the interval shows and how each number is counted.
    flat = " ".join(imported.split())
    verdicts = ("subió la conversión", "bajó la conversión", "Aún no hay un efecto claro")
    assert sum(v in flat for v in verdicts) == 1, flat
    assert "Conversión e ingresos: según los resultados de campaña cargados" in flat
    assert "ROI: los ingresos incrementales por el margen (30 %)" in flat
    assert main(["campaign", "times", *es]) == 0
    times = capsys.readouterr().out
    assert "mejor momento y canal por segmento" in times and "franja" in times
    everything = out + results_out + imported + times
    english_words = ("delivered now", "in the audience", "customers (", "results (", "treated")
    for english in (*english_words, "no results yet", "no control group", "outcomes"):
        assert english not in everything, english
    for missing in ("nan", "None", "NaT"):
        assert not re.search(rf"\b{missing}\b", everything), missing


def test_a_dry_run_says_why_in_the_readers_language_and_writes_in_the_recipients(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A shop whose customers read English, looked at in Spanish: the dry run's reasons (CLI,
    dashboard "Por qué", API with Accept-Language) follow the person looking; the messages stay
    in each recipient's language; the file channel's log keeps the English reason."""
    import httpx

    from conftest import serving
    from segmentum.service.app import create_app
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session

    cwh.con.raw_sql("UPDATE customers SET country = 'Ireland'")  # English readers
    camp = Campaigns(cwh, SETTINGS).create("Return", "winback", "email")
    es = ["campaign", "send", "Return", "--dry-run", "-w", cwh.url]
    assert main([*es, "--lang", "es"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "tras gastar" in out and "after spending" not in out, out
    assert re.search(r"\| (Hi|Hello)\b", out) and "Hola" not in out, out
    assert main(es) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "after spending" in out and "tras gastar" not in out, out
    # Every outcome a plan gives reads in Spanish (those without an email: "sin contacto"), and
    # an up-sell's RFM segment too.
    assert i18n.label("es", "outcome", "no_contact") == "sin contacto"
    facts = {"kind": "frequency", "clv": 900, "value": 2, "median": 3, "segment": "Champions"}
    assert "mediana de Campeones (3)" in str(reasons.text("up_sell", facts, "es"))
    key = create_key(cwh, "admin", ["admin"])
    app = create_app(cwh, SETTINGS)
    session = create_session(app.state.svc.sessions, key)
    assert session is not None
    with serving(app) as base:
        for lang, says, not_said in (
            ("es", "tras gastar", "after spending"),
            ("en", "after spending", "tras gastar"),
        ):
            page = httpx.get(
                f"{base}/dashboard/campaigns",
                params={"c": camp.campaign_id, "lang": lang},
                cookies={SESSION_COOKIE: session.sid},
                timeout=120,
            ).text
            table = page.split("</h3>", 1)[1] if "</h3>" in page else page
            assert says in table and not_said not in table, (lang, table[:2000])
        plan = httpx.post(
            f"{base}/v1/campaigns/{camp.campaign_id}/dry-run",
            headers={"X-API-Key": key, "Accept-Language": "es-ES,es;q=0.9"},
            timeout=120,
        ).json()
        assert all("tras gastar" in x["why"] for x in plan["examples"]), plan["examples"]
        assert all(x["subject"] and "Hola" not in x["body"] for x in plan["examples"])
        plan = httpx.post(
            f"{base}/v1/campaigns/{camp.campaign_id}/dry-run",
            headers={"X-API-Key": key},
            timeout=120,
        ).json()
        assert all("after spending" in x["why"] for x in plan["examples"]), plan["examples"]
    # The file channel's reason column is in each member's language (the one a message to
    # them would be in), whatever --lang says.
    cs = Campaigns(cwh, SETTINGS)
    cs.create("ReturnFile", "winback", "file")
    sent = ["campaign", "send", "ReturnFile", "--out", str(tmp_path), "--lang", "es"]
    assert main([*sent, "-w", cwh.url]) == 0
    capsys.readouterr()
    [written] = tmp_path.glob("*.csv")
    df = pd.read_csv(written)
    assert len(df)
    for lang, word in (("es", "tras gastar"), ("en", "after spending")):
        theirs = df[df.language == lang].reason
        assert theirs.str.contains(word).all(), theirs.head()


def test_a_segment_is_kept_while_a_campaign_or_a_flow_still_needs_it(
    cwh: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A campaign not sent yet builds its audience from its segment at its first send: the
    segment cannot be deleted under it (it failed later with "there is no segment"), nor
    under a flow that starts from it. A campaign never sent can be deleted; once sent, a
    campaign follows its log, so the segment may go and the campaign stays."""
    from segmentum.flows import Flows

    url = cwh.url
    Segments(cwh, SETTINGS).create("promo_fans", "promo_share >= 0.5")
    cs = Campaigns(cwh, SETTINGS)
    draft = cs.create("Promo invierno", "segment", "file", target="promo_fans")
    sent = cs.create("Promo otoño", "segment", "file", target="promo_fans")
    assert main(["campaign", "send", sent.campaign_id, "--out", str(tmp_path), "-w", url]) == 0
    capsys.readouterr()

    # Refused, naming the campaign still to send (not the sent one), in the reader's language.
    assert main(["segment", "delete", "promo_fans", "-w", url, "--lang", "es"]) == 2
    said = capsys.readouterr().err
    assert "es la audiencia de campañas aún no enviadas" in said, said
    assert draft.campaign_id in said and sent.campaign_id not in said
    assert f"segmentum campaign delete {draft.campaign_id}" in said
    assert [s.name for s in Segments(cwh, SETTINGS).list()].count("promo_fans") == 1

    # A sent campaign is never deleted: its log is the record of what went to whom.
    assert main(["campaign", "delete", sent.campaign_id, "-w", url, "--lang", "es"]) == 2
    assert "ya se envió" in capsys.readouterr().err
    assert main(["campaign", "delete", "WINBACK-2025-10", "-w", url]) == 2  # loaded results
    assert "imported from campaign_results" in capsys.readouterr().err
    assert main(["campaign", "delete", "Promo invierno", "-w", url, "--lang", "es"]) == 0
    assert f"campaña Promo invierno eliminada ({draft.campaign_id})" in capsys.readouterr().out
    names = [c.campaign_id for c in Campaigns(cwh, SETTINGS).list()]
    assert draft.campaign_id not in names and sent.campaign_id in names

    # A flow that starts when a customer enters the segment keeps it too.
    flows = Flows.for_warehouse(url, SETTINGS)
    flows.save(
        "name: promo_welcome\n"
        "trigger: {segment: promo_fans}\n"
        "steps:\n"
        "  - send:\n"
        "      channel: email\n"
        "      subject: {es: 'Hola', en: 'Hi'}\n"
        "      body: {es: 'Hola', en: 'Hi'}\n"
    )
    assert main(["segment", "delete", "promo_fans", "-w", url, "--lang", "es"]) == 2
    assert "se usa en flujos: promo_welcome" in capsys.readouterr().err
    flows.store.execute("DELETE FROM flows WHERE name = 'promo_welcome'")

    assert main(["segment", "delete", "promo_fans", "-w", url]) == 0
    capsys.readouterr()
    # The sent campaign is measured from its log as before.
    assert main(["campaign", "results", sent.campaign_id, "-w", url]) == 0
    assert main(["campaign", "delete", "nobody-xyz", "-w", url]) == 2
    assert "there is no campaign 'nobody-xyz'" in capsys.readouterr().err


def test_a_campaign_never_sent_is_deleted_over_the_api_and_from_its_page(cwh: Warehouse) -> None:
    """DELETE /v1/campaigns/{id} and the campaigns page's "Eliminar campaña": a campaign never
    sent goes (a write key; a read key is refused, a forged form too), and its segment can then
    be deleted; the page says so in Spanish, the campaign's hostile name shown as text."""
    import httpx

    from conftest import serving
    from segmentum.service.app import create_app
    from segmentum.service.auth import SESSION_COOKIE, create_key, create_session

    Segments(cwh, SETTINGS).create("promo_fans", "promo_share >= 0.5")
    cs = Campaigns(cwh, SETTINGS)
    hostile = '<img src=x onerror="alert(1)">'
    first = cs.create("Promo invierno", "segment", "email", target="promo_fans")
    second = cs.create(hostile, "segment", "email", target="promo_fans")
    write, read = create_key(cwh, "w", ["write"]), create_key(cwh, "r", ["read"])
    app = create_app(cwh, SETTINGS)
    writer = create_session(app.state.svc.sessions, write)
    reader = create_session(app.state.svc.sessions, read)
    assert writer is not None and reader is not None
    es = {"Accept-Language": "es-ES,es;q=0.9"}
    with serving(app) as base, httpx.Client(base_url=base, timeout=120) as http:
        r = http.delete("/v1/segments/promo_fans", headers={"X-API-Key": write, **es})
        assert r.status_code == 422 and "aún no enviadas" in r.json()["detail"], r.text
        r = http.delete(f"/v1/campaigns/{first.campaign_id}", headers={"X-API-Key": read})
        assert r.status_code == 403, r.text
        r = http.delete(f"/v1/campaigns/{first.campaign_id}", headers={"X-API-Key": write})
        assert r.status_code == 204, r.text
        r = http.delete(f"/v1/campaigns/{first.campaign_id}", headers={"X-API-Key": write})
        assert r.status_code == 404, r.text

        url = f"/dashboard/campaigns/{second.campaign_id}/delete"
        page = http.get(
            "/dashboard/campaigns",
            params={"c": second.campaign_id, "lang": "es"},
            cookies={SESSION_COOKIE: writer.sid},
        ).text
        assert "Eliminar esta campaña" in page and f'action="{url}"' in page
        assert hostile not in page and "&lt;img src=x onerror=" in page
        shown = http.get(
            "/dashboard/campaigns",
            params={"c": second.campaign_id, "lang": "es"},
            cookies={SESSION_COOKIE: reader.sid},
        ).text
        assert "Eliminar esta campaña" not in shown  # a read key sees no delete button
        refused = http.post(
            url, data={"csrf": reader.csrf}, cookies={SESSION_COOKIE: reader.sid}, headers=es
        )
        assert refused.status_code == 409 and "no puede eliminar campañas" in refused.text
        forged = http.post(
            url, data={"csrf": "forged"}, cookies={SESSION_COOKIE: writer.sid}, headers=es
        )
        assert forged.status_code == 403
        done = http.post(
            url, data={"csrf": writer.csrf}, cookies={SESSION_COOKIE: writer.sid}, headers=es
        )
        assert done.status_code == 303, done.text
        after = http.get(done.headers["location"], cookies={SESSION_COOKIE: writer.sid}).text
        assert "Se eliminó la campaña &lt;img src=x onerror=" in after and hostile not in after
        r = http.delete("/v1/segments/promo_fans", headers={"X-API-Key": write})
        assert r.status_code == 204, r.text
    assert not [c for c in Campaigns(cwh, SETTINGS).list() if c.target == "promo_fans"]
