"""The playbook: an entry for every segment, sizes and value at stake from the warehouse,
incentives grounded in promo share and value, favoured categories by lift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ibis
import pytest
import yaml

import segmentum
from segmentum.campaigns.playbook import (
    DEFAULT_FILE,
    DIMENSIONS,
    Play,
    _banded,
    _ground,
    favoured_categories,
    load_playbook,
    playbook,
)
from segmentum.cli import main
from segmentum.errors import InputError
from segmentum.i18n import label


def test_the_shipped_playbook_covers_every_named_segment() -> None:
    from segmentum.i18n import LABELS

    book = load_playbook()
    for dim in DIMENSIONS:
        named = {label for ctx, label in LABELS if ctx == dim}
        assert named and named <= set(book[dim]), dim


def test_every_segment_gets_its_size_clv_and_value_at_stake(service_db: Path, copy_of: Any) -> None:
    wh = copy_of(service_db)
    plays, as_of = playbook(wh)
    f = wh.table("customer_features")
    buyers = int(f.filter((f.as_of == as_of) & (f.frequency > 0)).count().to_pyarrow().as_py())
    for dim in DIMENSIONS:
        mine = [p for p in plays if p.dimension == dim]
        # The fixture's history backfill rewrites the latest classes without potential tiers,
        # so value_potential may be empty here.
        assert mine or dim == "value_potential", dim
        assert all(p.in_playbook for p in mine), dim
        assert sum(p.size for p in mine) <= buyers
        for p in mine:
            assert p.value_at_stake == pytest.approx(p.clv_total * 0.05)
            assert p.message["es"] and p.message["en"] and p.incentive_advice["es"]
    # The CLV of one segment, summed independently from the stored tables.
    champions = next(p for p in plays if p.segment == "Champions")
    c, v = wh.table("customer_classes"), wh.table("customer_clv")
    c = c.filter((c.as_of == as_of) & (c.rfm_segment == "Champions")).select("customer_id")
    v = v.filter(v.as_of == as_of).select("customer_id", "clv")
    total = c.join(v, "customer_id").clv.sum().to_pyarrow().as_py()
    assert champions.clv_total == pytest.approx(float(total or 0))
    assert champions.favours and all(x["lift"] >= 1.1 for x in champions.favours)
    lifts = [x["lift"] for x in champions.favours]
    assert lifts == sorted(lifts, reverse=True)
    bands = champions.price_bands
    assert {b["band"] for b in bands} <= {"entry", "mid", "premium"} and bands
    assert sum(b["share"] for b in bands) == pytest.approx(1.0)


def test_favoured_categories_are_the_highest_lift_against_the_base() -> None:
    lines = ibis.memtable(
        {
            "customer_id": ["a1", "a1", "b1", "b1", "b2"],
            "category": ["Premium", "Entry", "Premium", "Entry", "Entry"],
            "amount": [80.0, 20.0, 20.0, 40.0, 40.0],
        }
    )
    view = ibis.memtable({"customer_id": ["a1", "b1", "b2"], "tier": ["old", "young", "young"]})
    wh = segmentum.connect("duckdb://")
    out = favoured_categories(lines, view, "tier")
    # Base: Premium 100 / 200 = 0.5, Entry 0.5. Old: Premium 0.8 -> lift 1.6.
    assert [x["category"] for x in out["old"]] == ["Premium", "Entry"]
    assert out["old"][0]["lift"] == pytest.approx(1.6)
    assert out["old"][0]["share"] == pytest.approx(0.8)
    assert out["young"][0] == pytest.approx({"category": "Entry", "share": 0.8, "lift": 1.6})
    # Unit prices 10 to 50 cut in thirds: the old customer buys the premium range.
    priced = ibis.memtable(
        {
            "customer_id": ["a1", "a1", "b1", "b1", "b2"],
            "amount": [80.0, 20.0, 20.0, 40.0, 40.0],
            "price": [50.0, 40.0, 10.0, 20.0, 30.0],
            "category": ["Premium", "Entry", "Premium", "Entry", "Entry"],
        }
    )
    banded = _banded(priced)
    bands = favoured_categories(banded, view, "tier", "band")
    assert bands["old"][0]["band"] == "premium"
    assert bands["old"][0]["lift"] == pytest.approx(2.0)
    assert "premium" not in {b["band"] for b in bands["young"]}
    wh.close()


def _play(avg_clv: float, promo: float) -> Play:
    return Play("rfm_segment", "X", 10, avg_clv * 10, avg_clv, promo, 0.05, avg_clv * 0.5)


def test_no_discount_for_full_price_buyers_and_perks_for_high_value() -> None:
    book = load_playbook()
    full_price = _play(100.0, 0.04)
    _ground(full_price, "discount", book, 0.10, 1.5, 100.0)
    assert full_price.incentive == "none"
    assert "(4% of spend" in full_price.incentive_advice["en"]
    assert "(4\xa0% del gasto" in full_price.incentive_advice["es"]
    vip = _play(300.0, 0.4)
    _ground(vip, "small_discount", book, 0.10, 1.5, 100.0)
    assert vip.incentive == "perk" and "3.0x" in vip.incentive_advice["en"]
    assert "3,0x" in vip.incentive_advice["es"]
    plain = _play(100.0, 0.4)
    _ground(plain, "discount", book, 0.10, 1.5, 100.0)
    assert plain.incentive == "discount"


def test_a_broken_playbook_file_names_every_problem(tmp_path: Path) -> None:
    book = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    book["rfm_segment"]["Champions"]["incentive"] = "free money"
    del book["lifecycle_stage"]["new"]["message"]["es"]
    book["uplift"] = 3
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(book, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_playbook(path)
    msg = str(exc.value.message)
    assert "rfm_segment.Champions.incentive" in msg and "'free money'" in msg
    assert "lifecycle_stage.new.message" in msg and "uplift: 3" in msg


def test_the_cli_prints_the_playbook_with_its_assumption(
    service_db: Path, copy_of: Any, tmp_path: Path, capsys: Any
) -> None:
    wh = copy_of(service_db)
    url = wh.url
    wh.close()
    mine = tmp_path / "mine.yaml"
    assert main(["playbook", "--write-defaults", str(mine)]) == 0
    assert mine.read_text(encoding="utf-8") == DEFAULT_FILE.read_text(encoding="utf-8")
    assert main(["playbook", "--write-defaults", str(mine)]) != 0  # never overwritten
    capsys.readouterr()
    args = ["playbook", "--by", "rfm_segment", "--file", str(mine), "-w", url]
    assert main([*args, "--lang", "es", "--uplift", "0.1"]) == 0
    out = capsys.readouterr().out
    assert label("es", "rfm_segment", "Champions") in out  # labels, texts and words in Spanish
    assert "Gracias" in out and "reconocimiento" in out and "valor en juego" in out
    assert "Supuesto" in out and "uplift" in out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {p["dimension"] for p in data["plays"]} == {"rfm_segment"}
    assert all(p["uplift"] == 0.05 for p in data["plays"])
    assert main([*args, "--by", "colour"]) != 0
    # A date without stored classes: an error that says so (it printed only the footer).
    assert main([*args, "--as-of", "1999-01-31"]) == 2
    assert "no customer classes are stored at 1999-01-31" in capsys.readouterr().err


def test_the_api_serves_the_playbook_to_a_read_key(server: dict[str, Any]) -> None:
    import httpx

    r = httpx.get(
        f"{server['url']}/v1/playbook",
        params={"by": "lifecycle_stage", "uplift": 0.1},
        headers={"X-API-Key": server["keys"]["read"]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "assumed" in body["assumption"] and body["plays"]
    assert {p["dimension"] for p in body["plays"]} == {"lifecycle_stage"}
    for p in body["plays"]:
        assert p["value_at_stake"] == pytest.approx(p["clv_total"] * 0.1)
    assert httpx.get(f"{server['url']}/v1/playbook", timeout=60).status_code == 401
