"""Number and date parsers, run in DuckDB: examples and properties."""

from __future__ import annotations

import datetime as dt

import ibis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentum.ingest import parsers

CON = ibis.duckdb.connect()


def parse_numbers(values: list[str | None], decimal: str) -> list[tuple[float | None, bool]]:
    t = ibis.memtable({"s": values}, schema={"s": "string"})
    v, bad = parsers.parse_number(t.s, decimal)
    df = CON.execute(t.select(v=v, bad=bad))
    return [(None if x != x else x, b) for x, b in zip(df.v, df.bad, strict=True)]


def parse_dates(
    values: list[str | None], order: str
) -> list[tuple[dt.datetime | None, bool, float | None]]:
    t = ibis.memtable({"s": values}, schema={"s": "string"})
    df = CON.execute(parsers.parse_timestamps(t, "s", order))
    out = []
    for v, b, o in zip(df.value, df.bad, df.offset, strict=True):
        out.append(
            (None if v is None or v != v else v.to_pydatetime(), bool(b), None if o != o else o)
        )
    return out


def fmt_number(x: float, decimal: str, thousands: bool) -> str:
    text = f"{abs(x):,.2f}" if thousands else f"{abs(x):.2f}"
    if decimal == ",":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return ("-" if x < 0 else "") + text


@pytest.mark.parametrize(
    ("text", "decimal", "expected"),
    [
        ("1.234,56 €", ",", 1234.56),
        ("(12,50)", ",", -12.5),
        ("12,50-", ",", -12.5),
        ("1,234.56", ".", 1234.56),
        ("$ 99.90", ".", 99.9),
        ("1.234.567,8", ",", 1234567.8),
        ("-3", ".", -3.0),
    ],
)
def test_reads_numbers_in_both_conventions(text: str, decimal: str, expected: float) -> None:
    [(value, bad)] = parse_numbers([text], decimal)
    assert not bad
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "1,2,3", "12..5", "1.2.3,4,5"])
def test_flags_text_that_is_not_a_number(text: str) -> None:
    [(value, bad)] = parse_numbers([text], ",")
    assert bad and value is None


def test_empty_and_null_spellings_are_missing_not_bad() -> None:
    assert parse_numbers(["", "  ", None, "NULL", "n/a"], ".") == [(None, False)] * 5


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda x: round(x, 2)),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([".", ","]),
    st.booleans(),
)
def test_any_formatted_number_reads_back(
    values: list[float], decimal: str, thousands: bool
) -> None:
    texts = [fmt_number(v, decimal, thousands) for v in values]
    parsed = parse_numbers(texts, decimal)
    for v, (got, bad) in zip(values, parsed, strict=True):
        assert not bad
        assert got == pytest.approx(v, abs=1e-6)


@st.composite
def moments(draw: st.DrawFn) -> dt.datetime:
    d = draw(st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2060, 12, 31)))
    return dt.datetime(
        d.year,
        d.month,
        d.day,
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(moments(), min_size=1, max_size=20), st.sampled_from(["iso", "dmy", "mdy", "compact"])
)
def test_any_written_date_reads_back(values: list[dt.datetime], style: str) -> None:
    fmt = {
        "iso": "%Y-%m-%dT%H:%M:%S",
        "dmy": "%d/%m/%Y %H:%M:%S",
        "mdy": "%m/%d/%Y %H:%M:%S",
        "compact": "%Y%m%d",
    }[style]
    texts = [v.strftime(fmt) for v in values]
    parsed = parse_dates(texts, "mdy" if style == "mdy" else "dmy")
    for v, (got, bad, _) in zip(values, parsed, strict=True):
        assert not bad
        expected = v.replace(hour=0, minute=0, second=0) if style == "compact" else v
        assert got == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=20))
def test_arbitrary_text_never_crashes_the_engine(values: list[str]) -> None:
    parse_dates(values, "dmy")
    parse_numbers(values, ",")


@pytest.mark.parametrize(
    "text", ["31/02/2024", "13/13/2024", "2024-02-30", "25:00", "1/2/2024 13:05 PM"]
)
def test_flags_impossible_dates(text: str) -> None:
    [(value, bad, _)] = parse_dates([text], "dmy")
    assert bad and value is None


def test_reads_offsets_and_twelve_hour_times() -> None:
    got = parse_dates(
        ["2024-03-05T14:30:00+01:00", "1/2/2024 2:05 PM", "2024-03-05 10:00:00Z"], "dmy"
    )
    assert got[0] == (dt.datetime(2024, 3, 5, 14, 30), False, 60.0)
    assert got[1][0] == dt.datetime(2024, 2, 1, 14, 5)
    assert got[2][2] == 0.0


def test_date_evidence_tells_day_first_from_month_first() -> None:
    t = ibis.memtable({"s": ["13/01/2024", "02/03/2024", "01/12/2024"]})
    row = CON.execute(t.aggregate(**parsers.date_evidence(t.s))).iloc[0]
    assert (row.day_first, row.month_first, row.ambiguous) == (1, 0, 2)
