"""Webhook subscriptions to one segment: signed batches to a real HTTP receiver on 127.0.0.1,
nothing lost while it is down, the same key on every retry, nothing sent twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segmentum.cli import main
from segmentum.errors import InputError
from segmentum.history.log import log_changes
from segmentum.history.webhooks import (
    deliver_subscriptions,
    subscribe,
    subscriptions,
    unsubscribe,
)


def test_a_subscription_gets_its_segments_changes_signed_and_loses_nothing(
    service_db: Path, copy_of: Any, receiver: Any
) -> None:
    wh = copy_of(service_db)
    m = wh.table("segment_members")
    dates = sorted(m.filter(m.segment == "vip").as_of.to_pyarrow().unique().to_pylist())
    assert len(dates) >= 2, "the demo computes segments at past snapshots too"
    sub = subscribe(wh, "vip", receiver.url, since=dates[-2])
    assert sub.secret.startswith("whsec_")
    listed = subscriptions(wh, "vip")
    assert [s.url for s in listed] == [receiver.url] and listed[0].secret == ""
    receiver.secret = sub.secret
    log_changes(wh, dates[-1], "test-run")  # every segment's changes, as a run logs them
    ev = wh.table("segment_events")
    expected = int(ev.filter(ev.segment == "vip").count().to_pyarrow().as_py())
    assert 0 < expected < int(ev.count().to_pyarrow().as_py())
    # Down for both tries: nothing is lost, the batch waits for the next run.
    receiver.fail = 2
    r = deliver_subscriptions(wh, retries=1, backoff=0.01)
    assert r.delivered == 0 and r.failed == expected and not receiver.seen
    assert "503" in (subscriptions(wh, "vip")[0].last_error or "")
    # Back up: one signed batch with this segment's events only.
    r = deliver_subscriptions(wh, retries=1, backoff=0.01)
    assert r.delivered == expected and len(receiver.seen) == 1 and receiver.seen[0]["ok"]
    body = receiver.seen[0]["body"]
    assert body["segment"] == "vip" and len(body["events"]) == expected
    assert {e["segment"] for e in body["events"]} == {"vip"}
    assert body["as_of"] == dates[-1].isoformat()
    assert receiver.seen[0]["key"] == body["delivery_id"]
    done = subscriptions(wh, "vip")[0]
    assert done.delivered_through == dates[-1] and done.last_error is None
    # Nothing new: nothing sent again.
    assert deliver_subscriptions(wh).delivered == 0 and len(receiver.seen) == 1
    unsubscribe(wh, sub.subscription_id)
    assert subscriptions(wh) == []


def test_a_new_subscription_starts_from_now_and_checks_its_address(
    service_db: Path, copy_of: Any
) -> None:
    wh = copy_of(service_db)
    sub = subscribe(wh, "vip", "https://crm.example.com/hooks")
    m = wh.table("segment_members")
    assert sub.delivered_through == m.filter(m.segment == "vip").as_of.max().to_pyarrow().as_py()
    for url, says in (
        ("ftp://crm.example.com/x", "not a web address"),
        ("https://user:pw@crm.example.com/x", "user name or password"),
        ("https://crm.example.com/hooks", "already subscribed"),
    ):
        with pytest.raises(InputError, match=says):
            subscribe(wh, "vip", url)
    with pytest.raises(InputError, match="no segment"):
        subscribe(wh, "nobody_saved_this", "https://crm.example.com/x")


def test_the_cli_subscribes_lists_and_unsubscribes(
    service_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "cli.duckdb"
    copy.write_bytes(service_db.read_bytes())
    url = f"duckdb:///{copy}"
    hook = "https://crm.example.com/cli-hook"
    assert main(["segment", "subscribe", "vip", hook, "-w", url]) == 0
    out = capsys.readouterr().out
    assert "whsec_" in out and hook in out
    sub_id = out.split("(id ")[1].split(")")[0]
    assert main(["segment", "webhooks", "vip", "-w", url]) == 0
    listed = capsys.readouterr().out
    assert sub_id in listed and "whsec_" not in listed
    assert main(["segment", "subscribe", "vip", "ftp://x", "-w", url]) == 2
    assert "not a web address" in capsys.readouterr().err
    assert main(["segment", "unsubscribe", sub_id, "-w", url]) == 0
    assert main(["segment", "unsubscribe", sub_id, "-w", url]) == 2
