"""Text-to-value parsers written as Ibis expressions, so they run inside the engine.

Each parser returns the parsed value (NULL where the text is empty) and a flag that is true
where the text is present but cannot be read, so validation can say which rows fail and why.
Conventions that hold for a whole column (decimal separator, day-first or month-first dates)
are detected with one aggregate query and then applied to every value.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir

# Currency signs and codes that exports glue to amounts.
# The no-break space is written as itself: each engine spells the escape differently.
_CURRENCY = "[\\s\u00a0€$£¥%]|EUR|USD|MXN|COP|ARS|CLP|PEN|GBP"

_COMMA_EVIDENCE = r",\d{1,2}$|,\d{4,}$|\.\d{3},\d*$|\d\.\d{3}\.\d{3}|^[+-]?,\d"
_DOT_EVIDENCE = r"\.\d{1,2}$|\.\d{4,}$|,\d{3}\.\d*$|\d,\d{3},\d{3}|^[+-]?\.\d"


def one_of(t: ir.StringValue, values: list[str], ignore_case: bool = False) -> ir.BooleanValue:
    """``t`` equals one of ``values``, as one anchored regex (any case with ``ignore_case``).

    Engines may turn a long ``IN (...)`` list into a join per occurrence; a regex stays a
    cheap scalar function however often the parsers inline it. The case is ignored by the
    regex's own flag (every engine reads a leading ``(?i)``), not by lowering every value.
    """
    flag = "(?i)" if ignore_case else ""
    return t.re_search(flag + "^(" + "|".join(re.escape(v) for v in values) + ")$")


# A column whose name starts with this holds text blank_to_null has already cleaned (the
# ingest's first layer computes it once per source column): every parser below starts with
# blank_to_null, and re-inlining the cleaning into each of a parser's many references made
# the SQL of one file hundreds of kilobytes long, slower to compile than to run.
CLEAN_PREFIX = "_s__"


# What ``strip`` removes (the engines' trim of white space): the ends are tested for these.
_WHITE = (" ", "\t", "\n", "\r", "\x0b", "\x0c")


def _is_clean(s: ir.Value) -> bool:
    """Whether ``s`` is a column of text :func:`blank_to_null` has already cleaned."""
    op = s.op()
    return isinstance(op, ops.Field) and op.name.startswith(CLEAN_PREFIX)


def strip(s: ir.StringValue) -> ir.StringValue:
    """``s`` without leading and trailing white space (spaces, tabs, line breaks).

    Trimming a set of characters costs DuckDB four times a look at both ends (0.19 against
    0.05 microseconds a value), and nearly every exported value has nothing to trim: only
    values starting with a control character or a space, or ending with white space, go
    through the trim.
    """
    if _is_clean(s):
        return s
    edge = s.ascii_str() <= 32
    for ch in _WHITE:
        edge = edge | s.endswith(ch)
    # No fill_null: it would make the engine evaluate every test of every value (NULL
    # takes the ELSE branch, and is NULL either way).
    return ibis.ifelse(edge, s.strip(), s)


# The spellings of "no value" blank_to_null turns into NULL; none is longer than 4 characters,
# so longer text skips the comparison.
_NULL_WORDS = ["", "null", "none", "nan", "n/a", "na", "#n/a", "-"]


def blank_to_null(s: ir.StringValue) -> ir.StringValue:
    """Trimmed text, with empty strings and the usual null spellings turned into NULL."""
    if _is_clean(s):
        return s
    t = strip(s)
    # Only short text can be a null spelling, and none starts with a digit (most short values
    # of an export are numbers): the regex runs on few values (0.39 -> 0.23 s for 12 columns
    # of 1.4M rows).
    lead = t.ascii_str()
    maybe = (t.length() <= max(len(w) for w in _NULL_WORDS)) & ((lead < 48) | (lead > 57))
    return ibis.ifelse(maybe & one_of(t, _NULL_WORDS, ignore_case=True), ibis.null("string"), t)


def _count(flag: ir.BooleanValue, weight: ir.IntegerValue | None) -> ir.IntegerScalar:
    """How many rows ``flag`` holds for; each row counts ``weight`` times when given (the
    evidence of a column's distinct values, each with how many rows hold it)."""
    n = flag.cast("int64") if weight is None else ibis.ifelse(flag, weight, 0)
    return n.sum().fill_null(0)


def decimal_evidence(
    s: ir.StringValue, weight: ir.IntegerValue | None = None
) -> tuple[ir.IntegerScalar, ir.IntegerScalar]:
    """Counts of values that can only be read with ',' and with '.' as the decimal separator."""
    text = strip(s)
    # A value the engine reads as a number has no currency to remove (the regular
    # expression costs more than the cast), and evidence needs a comma or a dot.
    core = ibis.ifelse(text.try_cast("float64").isnull(), text.re_replace(_CURRENCY, ""), text)
    comma = ibis.ifelse(core.contains(","), core.re_search(_COMMA_EVIDENCE), False)
    dot = ibis.ifelse(core.contains("."), core.re_search(_DOT_EVIDENCE), False)
    return _count(comma, weight), _count(dot, weight)


def decide_decimal(comma: int, dot: int, fallback: str = ".") -> str:
    """The decimal separator the evidence points to ('.' when it is silent or split)."""
    if comma and not dot:
        return ","
    if dot and not comma:
        return "."
    if comma and dot:
        return "." if dot >= comma else ","
    return fallback


def parse_number(s: ir.StringValue, decimal: str) -> tuple[ir.FloatingValue, ir.BooleanValue]:
    """Parse numbers written with ``decimal`` as the decimal separator.

    Accepts thousands separators, currency signs, a leading or trailing minus and accounting
    negatives in parentheses: ``"1.234,56 €"`` with ``decimal=","`` is 1234.56 and
    ``"(12,50)"`` is -12.5.
    """
    thousands = "." if decimal == "," else ","
    d, t = ("\\" + decimal), ("\\" + thousands)
    text = blank_to_null(s)
    # Fast path: plain numbers ("12.5", or "12,5" in a comma column) cast directly; only the
    # rest (thousands separators, currency, accounting negatives) go through the regexes.
    plain = (
        text
        if decimal == "."
        else ibis.ifelse(text.contains("."), ibis.null("string"), text.replace(",", "."))
    )
    fast = plain.try_cast("float64")
    fast_ok = fast.notnull() & ~fast.isinf() & ~fast.isnan()
    core = text.re_replace(_CURRENCY, "")
    negative = core.re_search(r"^\(.*\)$") | core.re_search(r"\d-$")
    core = core.re_replace(r"[()]", "").re_replace(r"-$", "")
    pattern = rf"^[+-]?(\d{{1,3}}({t}\d{{3}})+|\d+)?({d}\d+)?([eE][+-]?\d+)?$"
    valid = core.re_search(pattern) & core.re_search(r"\d")
    number = core.replace(thousands, "").replace(decimal, ".").try_cast("float64")
    slow = ibis.ifelse(valid, ibis.ifelse(negative, -number, number), ibis.null("float64"))
    value = ibis.ifelse(fast_ok.fill_null(False), fast, slow)
    bad = text.notnull() & value.isnull()
    return value, bad


# ------------------------------------------------------------------------------------ dates
_YMD = r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:$|[T\s])"
_XYZ = r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})(?:$|[T\s])"
_COMPACT = r"^(\d{4})(\d{2})(\d{2})(?:$|[T\s])"
_TIME = (
    r"[T\s]\s*(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?\s*"
    r"(?:([AaPp])\.?[Mm]\.?)?\s*(?:Z|[+-]\d{2}:?\d{2})?$"
)
_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(Z|([+-])(\d{2}):?(\d{2}))$"


@dataclass(frozen=True)
class DateEvidence:
    """How the day-first / month-first question looks in one column."""

    day_first: int  # values whose first number is above 12 (so they are dd/mm)
    month_first: int  # values whose second number is above 12 (so they are mm/dd)
    ambiguous: int  # values readable both ways
    example_day_first: str | None = None
    example_month_first: str | None = None


def date_parts(s: ir.StringValue) -> tuple[ir.IntegerValue, ir.IntegerValue]:
    """The first two numbers of ``nn/nn/yyyy`` values (NULL for other values)."""
    text = strip(s)
    # nn/nn/yyyy has its first separator second or third: other values skip the regex.
    head = text.substr(1, 2)
    maybe = head.contains("/") | head.contains("-") | head.contains(".")
    a = ibis.ifelse(maybe, text.re_extract(_XYZ, 1), ibis.null("string")).try_cast("int64")
    b = ibis.ifelse(maybe, text.re_extract(_XYZ, 2), ibis.null("string")).try_cast("int64")
    return a, b


def date_evidence(
    s: ir.StringValue,
    weight: ir.IntegerValue | None = None,
    parts: tuple[ir.IntegerValue, ir.IntegerValue] | None = None,
) -> dict[str, ir.Scalar]:
    """Aggregates that tell whether ``nn/nn/yyyy`` values in ``s`` are day-first or month-first.

    ``parts``: :func:`date_parts` of ``s`` when the caller holds them as columns (each
    aggregate repeats them several times: as expressions they made the query's text long)."""
    text = strip(s)
    a, b = parts if parts is not None else date_parts(text)
    is_xyz = a.notnull() & b.notnull()
    day_first = is_xyz & (a > 12) & (b <= 12)
    month_first = is_xyz & (b > 12) & (a <= 12)
    amb = is_xyz & (a <= 12) & (b <= 12)
    return {
        "day_first": _count(day_first.fill_null(False), weight),
        "month_first": _count(month_first.fill_null(False), weight),
        "ambiguous": _count(amb.fill_null(False), weight),
        "example_day_first": text.min(where=day_first),
        "example_month_first": text.min(where=month_first),
    }


_ISO_PLAIN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$"


def fast_timestamp(s: ir.StringValue) -> ir.TimestampValue:
    """Plain ISO values (``2024-03-05 14:30:00``) cast directly; NULL for anything else."""
    text = strip(s)
    return ibis.ifelse(
        text.re_search(_ISO_PLAIN), text.try_cast("timestamp"), ibis.null("timestamp")
    )


PARTS = ("present", "year", "month", "day", "hour", "minute", "second", "pm", "offset")


def timestamp_parts(
    s: ir.StringValue, order: str, skip: ir.BooleanValue | None = None
) -> dict[str, ir.Value]:
    """Split date/time text into integer parts; ``order`` ('dmy' or 'mdy') reads ``nn/nn/yyyy``.

    Understands ISO 8601 (``2024-03-05``, ``2024-03-05T14:30:00+01:00``), ``05/03/2024 14:30``,
    ``05-03-24``, ``20240305`` and 12-hour times with AM/PM. Select these parts into columns
    first and then call :func:`assemble_timestamp` on those columns: engines plan the two small
    steps much faster than one deeply nested expression. Rows where ``skip`` is true (already
    read by :func:`fast_timestamp`) are not split at all.
    """
    text = blank_to_null(s)
    a = text.re_extract(_XYZ, 1).try_cast("int64")
    b = text.re_extract(_XYZ, 2).try_cast("int64")
    y2 = text.re_extract(_XYZ, 3).try_cast("int64")
    m2, d2 = (b, a) if order == "dmy" else (a, b)
    has_time = text.re_search(_TIME)
    ampm = text.re_extract(_TIME, 4).upper()
    zulu = text.re_extract(_OFFSET, 1) == "Z"
    sign = ibis.ifelse(text.re_extract(_OFFSET, 2) == "-", -1, 1)
    off_h = text.re_extract(_OFFSET, 3).try_cast("int64")
    off_m = text.re_extract(_OFFSET, 4).try_cast("int64")
    parts: dict[str, ir.Value] = {
        "present": text.notnull(),
        "year": text.re_extract(_YMD, 1)
        .try_cast("int64")
        .coalesce(
            ibis.ifelse(y2 < 100, ibis.ifelse(y2 < 70, y2 + 2000, y2 + 1900), y2),
            text.re_extract(_COMPACT, 1).try_cast("int64"),
        ),
        "month": text.re_extract(_YMD, 2)
        .try_cast("int64")
        .coalesce(m2, text.re_extract(_COMPACT, 2).try_cast("int64")),
        "day": text.re_extract(_YMD, 3)
        .try_cast("int64")
        .coalesce(d2, text.re_extract(_COMPACT, 3).try_cast("int64")),
        "hour": ibis.ifelse(has_time, text.re_extract(_TIME, 1).try_cast("int64"), 0),
        "minute": ibis.ifelse(has_time, text.re_extract(_TIME, 2).try_cast("int64"), 0),
        "second": ibis.ifelse(
            has_time, text.re_extract(_TIME, 3).try_cast("int64").fill_null(0), 0
        ),
        "pm": ibis.cases((ampm == "P", 1), (ampm == "A", 0), else_=ibis.null("int64")),
        "offset": ibis.ifelse(zulu, 0, sign * (off_h * 60 + off_m)),
    }
    if skip is None:
        return parts
    return {
        k: v if k == "present" else ibis.ifelse(skip, ibis.null(v.type()), v)
        for k, v in parts.items()
    }


def assemble_timestamp(
    p: Mapping[str, ir.Value], fast: ir.TimestampValue | None = None
) -> tuple[ir.TimestampValue, ir.BooleanValue]:
    """The timestamp from :func:`timestamp_parts` columns, and a flag for unreadable text.

    Impossible dates (31/02, month 13, 25:00) are flagged, not rolled over.
    """
    year, month, day = p["year"], p["month"], p["day"]
    hour12, minute, second, pm = p["hour"], p["minute"], p["second"], p["pm"]
    hour = ibis.cases(
        ((pm == 1) & (hour12 < 12), hour12 + 12),
        ((pm == 0) & (hour12 == 12), 0),
        else_=hour12,
    )
    # Check the day against the month's length with integer arithmetic (portable: no engine
    # date constructors), then build an ISO string only for valid parts and cast it.
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = ibis.cases(
        (month == 2, ibis.ifelse(leap, 29, 28)),
        (one_of(month.cast("string"), ["4", "6", "9", "11"]), 30),
        else_=31,
    )
    valid = (
        year.between(1, 9999)
        & month.between(1, 12)
        & day.between(1, month_days)
        & hour.between(0, 23)
        & minute.between(0, 59)
        & second.between(0, 59)
        & (pm.isnull() | hour12.between(1, 12))
    ).fill_null(False)

    def pad(v: ir.IntegerValue, n: int) -> ir.StringValue:
        return v.cast("string").lpad(n, "0")

    iso = (
        pad(year, 4)
        + "-"
        + pad(month, 2)
        + "-"
        + pad(day, 2)
        + " "
        + pad(hour, 2)
        + ":"
        + pad(minute, 2)
        + ":"
        + pad(second, 2)
    )
    value = ibis.ifelse(valid, iso, ibis.null("string")).cast("timestamp")
    if fast is not None:
        value = ibis.ifelse(fast.notnull(), fast, value)
    return value, p["present"] & value.isnull()


def parse_timestamps(t: ir.Table, column: str, order: str) -> ir.Table:
    """``t`` with ``value``, ``bad`` and ``offset`` columns parsed from text column ``column``."""
    fast = t.select(_text=t[column], _fast=fast_timestamp(t[column]))
    parts = fast.select("_fast", **timestamp_parts(fast._text, order, fast._fast.notnull()))
    value, bad = assemble_timestamp({k: parts[k] for k in PARTS}, parts._fast)
    return parts.select(value=value, bad=bad, offset=parts.offset)


def parse_bool(s: ir.StringValue) -> tuple[ir.BooleanValue, ir.BooleanValue]:
    """Yes/no in English and Spanish: yes, y, true, 1, sí, si, s, x / no, n, false, 0."""
    t = blank_to_null(s).lower()
    yes = one_of(t, ["1", "1.0", "true", "t", "yes", "y", "si", "sí", "s", "x", "verdadero", "v"])
    no = one_of(t, ["0", "0.0", "false", "f", "no", "n", "falso"])
    value = ibis.cases((yes, True), (no, False), else_=ibis.null("boolean"))
    bad = t.notnull() & value.isnull()
    return value, bad


def normalise_gender(s: ir.StringValue) -> ir.StringValue:
    """female / male / other from the usual English and Spanish spellings; others kept as given."""
    t = blank_to_null(s).lower()
    return ibis.cases(
        (one_of(t, ["f", "female", "woman", "w", "mujer", "femenino", "fem"]), "female"),
        (
            one_of(t, ["m", "male", "man", "h", "hombre", "masculino", "masc", "varon", "varón"]),
            "male",
        ),
        (one_of(t, ["o", "other", "otro", "otra", "x", "nb", "non-binary", "no binario"]), "other"),
        else_=t,
    )


_CHANNELS = {
    "store": ["store", "tienda", "shop", "pos", "retail", "offline", "fisica", "física"],
    "web": ["web", "online", "ecommerce", "e-commerce", "internet", "website"],
    "app": ["app", "mobile app", "aplicacion", "aplicación"],
    "phone": ["phone", "telefono", "teléfono", "call", "call center", "callcenter"],
}
_DEVICES = {
    "mobile": ["mobile", "movil", "móvil", "smartphone", "phone", "celular", "android", "ios"],
    "desktop": ["desktop", "pc", "ordenador", "computer", "computadora", "laptop", "portatil"],
    "tablet": ["tablet", "tableta", "ipad"],
}


def _normalise_vocab(s: ir.StringValue, vocab: dict[str, list[str]]) -> ir.StringValue:
    text = blank_to_null(s)
    t = text.lower()
    full = ibis.cases(*((one_of(t, v), k) for k, v in vocab.items()), else_=t)
    # Most exports already write the canonical words: those skip lower() and the searches.
    canonical = functools.reduce(operator.or_, (text == k for k in vocab))
    return ibis.ifelse(canonical, text, full)


def normalise_channel(s: ir.StringValue) -> ir.StringValue:
    """store / web / app / phone from common spellings; other values kept, lower-cased."""
    return _normalise_vocab(s, _CHANNELS)


def normalise_device(s: ir.StringValue) -> ir.StringValue:
    """mobile / desktop / tablet from common spellings; other values kept, lower-cased."""
    return _normalise_vocab(s, _DEVICES)


def normalise_tags(s: ir.StringValue) -> ir.StringValue:
    """Tags separated by ',', ';' or '|' become one lower-case comma-separated list."""
    t = blank_to_null(s).lower().re_replace(r"\s*[;|,]\s*", ",")
    return t


# -------------------------------------------------------------------------------- identifiers
# "17850.0" (pandas, spreadsheets) and "1.785E+04" (spreadsheets) are the whole number 17850.
_TRAILING_ZEROS = r"^[+-]?\d+\.0+$"
_SCIENTIFIC = r"^\d\.\d+[eE]\+?\d{1,2}$"


def normalise_id(v: ir.Value) -> ir.StringValue:
    """Identifiers as text, with numbers written as floats brought back to whole numbers.

    ``17850``, ``"17850.0"``, ``"1.785E4"`` and a float column holding 17850 all become
    ``"17850"``, so a customers file and an invoice export written by different tools join.
    Codes that are not whole numbers (``"85123A"``, ``"0042"``, ``"12.5"``) are kept as written.
    """
    dtype = v.type()
    if dtype.is_integer():
        return v.cast("string")
    if dtype.is_floating() or dtype.is_decimal():
        f = v.cast("float64")
        whole = (f == f.floor()) & (f.abs() < 1e15)
        return ibis.ifelse(whole, f.cast("int64").cast("string"), f.cast("string"))
    text = blank_to_null(v if dtype.is_string() else v.cast("string"))
    num = text.try_cast("float64")
    sci = text.re_search(_SCIENTIFIC) & (num == num.floor()) & (num < 1e15)
    slow = ibis.cases(
        (text.re_search(_TRAILING_ZEROS), text.re_replace(r"\.0+$", "")),
        (sci.fill_null(False), num.cast("int64").cast("string")),
        else_=text,
    )
    # Only text with a dot can be either form: the rest skips the regular expressions.
    return ibis.ifelse(text.contains("."), slow, text)


# ----------------------------------------------------------------------------------- currency
# Signs and codes written in amounts, by currency; "$" alone is any dollar or peso.
CURRENCY_SIGNS: dict[str, str] = {
    "EUR": "€|EUR",
    "GBP": "£|GBP",
    "USD": r"US\$|USD",
    "$": r"\$",
    "MXN": "MXN",
    "COP": "COP",
    "ARS": "ARS",
    "CLP": "CLP",
    "PEN": "PEN|S/",
    "JPY": "¥|JPY",
}
DOLLAR_CODES = ("USD", "MXN", "COP", "ARS", "CLP", "CAD", "AUD", "UYU", "DOP", "NZD", "HKD")
_CURRENCY_WORDS = {
    "€": "EUR",
    "EURO": "EUR",
    "EUROS": "EUR",
    "£": "GBP",
    "LIBRA": "GBP",
    "LIBRAS": "GBP",
    "POUND": "GBP",
    "POUNDS": "GBP",
    "US$": "USD",
    "DOLLAR": "USD",
    "DOLLARS": "USD",
    "DOLAR": "USD",
    "DÓLAR": "USD",
    "DOLARES": "USD",
    "DÓLARES": "USD",
    "¥": "JPY",
}


def currency_evidence(
    s: ir.StringValue, weight: ir.IntegerValue | None = None
) -> dict[str, ir.IntegerScalar]:
    """Counts of values in an amount column written with each currency's sign or code."""
    text = strip(s)
    # A value the engine reads as a plain number carries no sign: it skips the ten searches.
    signed = text.try_cast("float64").isnull()
    return {
        code: _count(ibis.ifelse(signed, text.re_search(pattern), False).fill_null(False), weight)
        for code, pattern in CURRENCY_SIGNS.items()
    }


def currency_in_header(header: str) -> list[str]:
    """Currencies named in a column header: ``Total (€)``, ``Importe EUR``, ``Price £``."""
    words = set(re.findall(r"[A-Za-z]+", header.upper()))
    found = [c for c in CURRENCY_SIGNS if c.isalpha() and c in words]
    found += [code for sign, code in (("€", "EUR"), ("£", "GBP"), ("¥", "JPY")) if sign in header]
    if "$" in header and "USD" not in found:
        found.append("$")
    return list(dict.fromkeys(found))


def normalise_currency(s: ir.StringValue, dollar: str | None = None) -> ir.StringValue:
    """ISO codes from a currency column: ``€`` and ``euros`` are EUR, ``£`` GBP, ``$`` the
    dollar or peso of ``dollar`` (USD when not given); other text upper-cased as written."""
    t = blank_to_null(s).upper()
    cases = [(t == k, v) for k, v in _CURRENCY_WORDS.items()]
    cases.append((t == "$", dollar if dollar in DOLLAR_CODES else "USD"))
    return ibis.cases(*cases, else_=t)
