"""The rule language never crashes: generated and mutated rules give a result or a RuleError
with a position, through the parser, the checker, the compiler, a real DuckDB and the REST API."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import ibis.expr.types as ir
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segmentum
from segmentum.segments import rules as R
from segmentum.warehouse import Warehouse

AS_OF = dt.date(2025, 1, 1)
NUMBER_COLS = ["monetary", "frequency", "recency_days"]
TEXT_COLS = ["value_tier", "city"]
DATE_COLS = ["signup_date", "last_seen"]
BOOL_COLS = ["is_member"]
SCOPE = R.Scope(
    {
        **dict.fromkeys(NUMBER_COLS, R.NUMBER),
        **dict.fromkeys(TEXT_COLS, R.TEXT),
        **dict.fromkeys(DATE_COLS, R.DATE),
        **dict.fromkeys(BOOL_COLS, R.BOOL),
        "tags": R.TEXT,
    },
    {},
    {
        "transactions": {
            "category": R.TEXT,
            "channel": R.TEXT,
            "sales_channel": R.TEXT,
            "amount": R.NUMBER,
            "quantity": R.NUMBER,
        },
        "events": {"event": R.TEXT, "event_type": R.TEXT, "channel": R.TEXT},
    },
)

# ------------------------------------------------------------------------------ the grammar

numbers = st.one_of(
    st.integers(0, 10_000).map(str),
    st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.2f}"),
    st.sampled_from(["0", "99999999999", "1" + "0" * 40, "0.5"]),
)
texts = st.one_of(
    st.sampled_from(["'high'", "'hihg'", "'Madrid'", "'Campeones'", "'it''s'", "''", '"x"']),
    st.sampled_from(["'2024-03-31'", "'not-a-date'", "'2024-02-30'", "'9999-12-31'"]),
)
literals = st.one_of(numbers, texts, st.sampled_from(["true", "false", "null"]))
columns = st.sampled_from([*NUMBER_COLS, *TEXT_COLS, *DATE_COLS, *BOOL_COLS, "unknown_col"])
windows = st.builds(
    lambda n, u: f"last {n} {u}",
    st.sampled_from(["1", "30", "0", "1.5", "36525", "99999999999"]),
    st.sampled_from(["days", "weeks", "months", "day", "years"]),
)


def _value(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        literals,
        columns,
        st.builds(lambda a, o, b: f"{a} {o} {b}", inner, st.sampled_from("+-*/"), inner),
        inner.map(lambda a: f"-{a}"),
    )


line_conditions = st.sampled_from(
    ["category == 'shoes'", "amount > 10", "event == 'open'", "channel in ('web', 'app')"]
)
calls = st.one_of(
    st.builds(
        lambda s, c, w: "count(" + ", ".join(x for x in (s, c, w) if x) + ")",
        st.sampled_from(["", "purchases", "returns", "events"]),
        st.one_of(st.just(""), line_conditions),
        st.one_of(st.just(""), windows),
    ),
    st.builds(
        lambda m, c, w: "sum(" + ", ".join(x for x in (m, c, w) if x) + ")",
        st.sampled_from(["spend", "quantity", "items"]),
        st.one_of(st.just(""), line_conditions),
        st.one_of(st.just(""), windows),
    ),
    st.builds(lambda c: f"exists({c})", line_conditions),
    st.just("has_tag('travel')"),
)


def _condition(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    value = _value(st.one_of(literals, columns, calls))
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "=", "<>"])
    return st.one_of(
        st.builds(lambda a, o, b: f"{a} {o} {b}", value, ops, value),
        st.builds(
            lambda a, n, vs: f"{a} {n}in ({', '.join(vs)})",
            columns,
            st.sampled_from(["", "not "]),
            st.lists(literals, min_size=1, max_size=4),
        ),
        st.builds(lambda a, lo, hi: f"{a} between {lo} and {hi}", value, value, value),
        st.builds(lambda a, n: f"{a} is {n}null", columns, st.sampled_from(["", "not "])),
        st.builds(lambda a, o, b: f"{a} {o} {b}", inner, st.sampled_from(["and", "or"]), inner),
        inner.map(lambda a: f"not {a}"),
        inner.map(lambda a: f"({a})"),
        calls,
        st.sampled_from(BOOL_COLS),
    )


rules = st.recursive(_condition(st.nothing()), _condition, max_leaves=12)

_TOKEN = re.compile(r"'(?:[^']|'')*'|\w+|\S")
VOCABULARY = [
    "(",
    ")",
    ",",
    "'",
    '"',
    "and",
    "or",
    "not",
    "in",
    "between",
    "is",
    "null",
    "last",
    "days",
    "count",
    "sum",
    "==",
    "<",
    "-",
    "*",
    "/",
    "1e9",
    "ñ",
    "€",
    ";",
    "x",
    "\\",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A generated rule with tokens deleted, inserted or duplicated."""
    tokens = _TOKEN.findall(draw(rules))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if action == "delete" and tokens:
            del tokens[min(i, len(tokens) - 1)]
        elif action == "insert":
            tokens.insert(i, draw(st.sampled_from(VOCABULARY)))
        elif tokens:
            j = min(i, len(tokens) - 1)
            tokens[j:j] = tokens[j : j + draw(st.integers(1, 5))] * draw(st.integers(1, 3))
    return " ".join(tokens)


any_rule = st.one_of(rules, mutated(), st.text(max_size=40))


def parse_and_check(text: str) -> R.Node | None:
    """The tree of a rule that passes, None for a RuleError with a position and a caret."""
    try:
        tree = R.parse(text)
        R.check(text, tree, SCOPE)
        return tree
    except R.RuleError as exc:
        assert 0 <= exc.pos <= len(text)
        assert exc.message.endswith("^") and exc.reason
        return None


# ------------------------------------------------------------------------------ properties


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=any_rule)
def test_any_rule_parses_and_checks_or_fails_at_a_position(text: str) -> None:
    parse_and_check(text)


@pytest.fixture(scope="module")
def small_wh() -> Iterator[Warehouse]:
    """A real in-memory DuckDB with customers, invoice lines and events (nulls included)."""
    wh = segmentum.connect("duckdb://")
    n = 40
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "monetary": [float(i * 13 % 700) if i % 7 else None for i in range(n)],
            "frequency": [i % 9 for i in range(n)],
            "recency_days": [i * 11 % 400 for i in range(n)],
            "value_tier": [["high", "medium", "low", None][i % 4] for i in range(n)],
            "city": [["Madrid", "Sevilla", "Lyon"][i % 3] for i in range(n)],
            "signup_date": [dt.date(2020, 1, 1) + dt.timedelta(days=37 * i) for i in range(n)],
            "last_seen": [dt.datetime(2024, 1, 1) + dt.timedelta(hours=97 * i) for i in range(n)],
            "is_member": [i % 2 == 0 for i in range(n)],
            "tags": ["travel|Shoes" if i % 5 == 0 else None for i in range(n)],
        }
    )
    lines = pd.DataFrame(
        {
            "customer_id": [f"C{i % n}" for i in range(200)],
            "invoice_id": [f"I{i // 2}" for i in range(200)],
            "timestamp": [dt.datetime(2023, 1, 1) + dt.timedelta(days=3 * i) for i in range(200)],
            "quantity": [(-1 if i % 17 == 0 else 1) * (1 + i % 3) for i in range(200)],
            "amount": [float(5 + i % 50) for i in range(200)],
            "category": [["shoes", "bags"][i % 2] for i in range(200)],
            "sales_channel": [["web", "store"][i % 2] for i in range(200)],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": [f"C{i % n}" for i in range(100)],
            "timestamp": [dt.datetime(2024, 6, 1) + dt.timedelta(days=i) for i in range(100)],
            "event_type": [["open", "click"][i % 2] for i in range(100)],
            "channel": [["email", "app"][i % 2] for i in range(100)],
        }
    )
    for name, df in (("customers", customers), ("transactions", lines), ("events", events)):
        wh.con.create_table(name, df)
    yield wh
    wh.close()


def evaluate(wh: Warehouse, text: str, tree: R.Node) -> int:
    """How many customers a checked rule selects, computed in the engine as segments are."""
    base = wh.table("customers")
    by_table: dict[str, dict[R.Call, str]] = {}
    for call in R.calls(tree):
        by_table.setdefault(R.call_table(call), {})[call] = text
    for tname, cs in by_table.items():
        agg = R.window_aggregates(cs, wh.table(tname), tname, AS_OF, cs)
        keys = list(dict.fromkeys(R.call_key(c) for c in cs))
        base = base.left_join(agg, "customer_id").drop("customer_id_right")
        base = base.mutate(**{k: base[k].fill_null(0.0) for k in keys})
    kinds = {c: R.kind_of(t) for c, t in base.schema().items()}

    def window(call: R.Call) -> ir.Value:
        v = base[R.call_key(call)]
        return v > 0 if call.func == "exists" else v

    expr = R.compile_node(text, tree, lambda name: base[name], kinds, window)
    flags = base.select("customer_id", _in=expr)
    return int(flags.filter(flags._in.fill_null(False)).count().execute())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.one_of(rules, mutated()))
def test_every_rule_that_checks_runs_in_the_engine(small_wh: Warehouse, text: str) -> None:
    tree = parse_and_check(text)
    if tree is None or R.check(text, tree, SCOPE) != R.BOOL:
        return
    assert 0 <= evaluate(small_wh, text, tree) <= 40
    R.rule_warnings(tree, small_wh.table("customers"), 500)


# ------------------------------------------------------------------------------ the reported ones

REPORTED = {
    "deep parentheses": "(" * 1000 + "frequency > 1" + ")" * 1000,
    "a long run of not": "not " * 990 + "is_member",
    "a bad date": "signup_date >= 'not-a-date'",
    "a window of 99999999999 days": "count(purchases, last 99999999999 days) > 0",
    "a huge number": "monetary > " + "9" * 400,
    "deep minus": "-" * 500 + "monetary > 1",
    "a long sum": "monetary" + " + monetary" * 300 + " > 1",
    "deep calls": "count(" * 60 + ")" * 60,
}


@pytest.mark.parametrize("text", REPORTED.values(), ids=REPORTED.keys())
def test_the_reported_crashes_are_errors_at_a_position(text: str) -> None:
    with pytest.raises(R.RuleError) as info:
        R.check(text, R.parse(text), SCOPE)
    assert "^" in info.value.message and 0 <= info.value.pos <= len(text)


def test_the_depth_limit_names_the_setting_and_points_at_the_level_past_it() -> None:
    text = "(" * 41 + "frequency > 1" + ")" * 41
    with pytest.raises(R.RuleError) as info:
        R.parse(text)
    assert info.value.pos == 40 and "rule_max_depth" in (info.value.hint or "")
    R.parse(text, R.Limits(max_depth=41))  # the setting raises it


def test_a_long_and_chain_gives_a_result(small_wh: Warehouse) -> None:
    text = " and ".join(["frequency >= 1"] * 2000)
    tree = R.parse(text)
    assert R.check(text, tree, SCOPE) == R.BOOL
    expected = evaluate(small_wh, "frequency >= 1", R.parse("frequency >= 1"))
    assert evaluate(small_wh, text, tree) == expected > 0


def test_a_window_is_bounded_by_the_setting() -> None:
    assert R.parse("count(purchases, last 1200 months) > 0")
    with pytest.raises(R.RuleError, match="at most 3,650 days"):
        R.parse("count(purchases, last 1200 months) > 0", R.Limits(max_window_days=3650))


def test_a_value_no_customer_has_gets_a_did_you_mean(small_wh: Warehouse) -> None:
    view = small_wh.table("customers")
    text = "value_tier == 'hihg' or city in ('madrid', 'Sevilla') or value_tier != 'Low'"
    found = R.rule_warnings(R.parse(text), view, 500)
    assert [(w.position, w.hint) for w in found] == [
        (text.index("'hihg'"), "did you mean 'high'?"),
        (text.index("'madrid'"), "values are case-sensitive: did you mean 'Madrid'?"),
        (text.index("'Low'"), "values are case-sensitive: did you mean 'low'?"),
    ]
    assert "selects nobody" in found[0].message and "true for everyone" in found[2].message
    assert R.rule_warnings(R.parse("value_tier == 'high'"), view, 500) == []
    # A column with more values than the setting allows is not checked.
    assert R.rule_warnings(R.parse("city == 'Paris'"), view, 2) == []


def test_spanish_rfm_names_point_to_the_stored_value() -> None:
    tree = R.parse("rfm_segment == 'Campeones'")
    [w] = R.value_warnings(tree, {"rfm_segment": ["Champions", "Lost"]})
    assert (
        w.hint == "'Campeones' is the Spanish name of 'Champions': write rfm_segment == 'Champions'"
    )
    # The operator as written: a hint for != (or not in) keeps it.
    for rule in ("rfm_segment != 'Campeones'", "rfm_segment not in ('Campeones', 'Lost')"):
        [w] = R.value_warnings(R.parse(rule), {"rfm_segment": ["Champions", "Lost"]})
        assert w.hint.endswith("write rfm_segment != 'Champions'"), (rule, w.hint)


@pytest.mark.parametrize(
    ("column", "typed", "stored"),
    [
        ("value_tier", "alto", "high"),
        ("potential_tier", "Demasiado nuevo", "too_new"),
        ("value_potential", "Estrellas", "Stars"),
        ("lifecycle_stage", "perdido", "lost"),
        ("lifecycle_stage", "en riesgo", "at_risk"),
        ("clv_status", "sin compras", "no_purchases"),
        ("preferred_device", "móvil", "mobile"),
    ],
)
def test_spanish_class_names_point_to_the_stored_value(
    column: str, typed: str, stored: str
) -> None:
    tree = R.parse(f"{column} == '{typed}'")
    [w] = R.value_warnings(tree, {column: sorted({stored, "other"})})
    assert w.hint == f"'{typed}' is the Spanish name of '{stored}': write {column} == '{stored}'"


# ------------------------------------------------------------------------------ over HTTP


def test_the_rule_endpoints_never_answer_a_server_error(server: dict[str, Any]) -> None:
    """The schemathesis run of the rule endpoints, with the rule field drawn from the grammar,
    its mutations and the reported crashes: a result or a 422 naming the position, never 5xx."""
    import schemathesis
    from schemathesis.checks import not_a_server_error

    base, admin = server["url"], {"X-API-Key": server["keys"]["admin"]}
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", headers=admin)
    wanted = {"POST /v1/segments/preview", "POST /v1/segments"}
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().label in wanted]
    assert {op.label for op in operations} == wanted
    texts = st.one_of(st.sampled_from(list(REPORTED.values())), mutated(), rules)
    for op in operations:

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(), text=texts)
        def check(case: Any, text: str) -> None:
            body = case.body if isinstance(case.body, dict) else {}
            case.body = {**body, "rule": text, "name": "fuzzed"}
            r = case.call_and_validate(base_url=base, headers=admin, checks=[not_a_server_error])
            if r.status_code == 201:
                httpx.delete(f"{base}/v1/segments/fuzzed", headers=admin, timeout=120)

        check()
