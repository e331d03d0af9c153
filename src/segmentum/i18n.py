"""Translations (gettext catalogs in ``segmentum/locale``) and locale formatting of numbers,
percentages, money and dates, shared by the dashboard, the report, the CLI and emails.

The catalogs are the ``.po`` files themselves, compiled in memory on first use, so a fresh
clone needs no compile step. Spanish and English are both first languages: every user-visible
text is a msgid in English with a Spanish translation, and data labels (RFM segment names,
tiers, lifecycle stages...) are translated with a context naming their column
(``pgettext("value_tier", "high")``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, parse_pattern
from babel.support import Translations

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
# What a person sees for a missing value: never nan, None or NaT.
MISSING = "—"
_BABEL_LOCALE = {"es": "es_ES", "en": "en_US"}


def N_(context: str, message: str) -> tuple[str, str]:
    """Mark a data label for extraction (``pybabel extract -k N_:1c,2``); translated later."""
    return context, message


# Data labels that reach a page as values of these columns. Listed here so extraction finds
# them; anything not listed is shown as stored.
LABELS: tuple[tuple[str, str], ...] = (
    N_("rfm_segment", "Champions"),
    N_("rfm_segment", "Loyal"),
    N_("rfm_segment", "Potential Loyalist"),
    N_("rfm_segment", "New"),
    N_("rfm_segment", "Promising"),
    N_("rfm_segment", "Need Attention"),
    N_("rfm_segment", "About to Sleep"),
    N_("rfm_segment", "Can't Lose Them"),
    N_("rfm_segment", "At Risk"),
    N_("rfm_segment", "Lost"),
    N_("rfm_segment", "Hibernating"),
    N_("value_tier", "high"),
    N_("value_tier", "medium"),
    N_("value_tier", "low"),
    N_("income_band", "high"),
    N_("income_band", "medium"),
    N_("income_band", "low"),
    N_("potential_tier", "high"),
    N_("potential_tier", "medium"),
    N_("potential_tier", "low"),
    N_("potential_tier", "too_new"),
    N_("value_potential", "Stars"),
    N_("value_potential", "Maintain"),
    N_("value_potential", "Re-activate"),
    N_("value_potential", "Grow"),
    N_("value_potential", "Develop"),
    N_("value_potential", "Harvest"),
    N_("value_potential", "Rising"),
    N_("value_potential", "Nurture"),
    N_("value_potential", "Low priority"),
    N_("value_potential", "Too new to judge"),
    N_("lifecycle_stage", "new"),
    N_("lifecycle_stage", "active"),
    N_("lifecycle_stage", "at_risk"),
    N_("lifecycle_stage", "lapsed"),
    N_("lifecycle_stage", "lost"),
    N_("lifecycle_stage", "prospect"),
    N_("clv_status", "scored"),
    N_("clv_status", "too_new"),
    N_("clv_status", "no_purchases"),
    N_("outcome", "scheduled"),
    N_("outcome", "control"),
    N_("outcome", "file"),
    N_("outcome", "sent"),
    N_("outcome", "failed"),
    N_("outcome", "no_consent"),
    N_("outcome", "unsubscribed"),
    N_("outcome", "no_address"),
    N_("outcome", "no_contact"),
    N_("outcome", "capped"),
    N_("outcome", "held_out"),
    N_("outcome", "unreachable"),
    N_("outcome", "suppressed"),
    N_("outcome", "anonymous"),
    N_("tactic", "retention"),
    N_("tactic", "winback"),
    N_("tactic", "cross_sell"),
    N_("tactic", "up_sell"),
    N_("tactic", "acquisition"),
    N_("tactic", "segment"),
    N_("tactic", "detractors"),
    N_("tactic", "imported"),
    N_("test", "mann-whitney"),
    N_("test", "chi-square"),
    N_("channel", "email"),
    N_("channel", "sms"),
    N_("channel", "push"),
    N_("channel", "in_app"),
    N_("channel", "inapp"),
    N_("channel", "web"),
    N_("channel", "webhook"),
    N_("channel", "file"),
    N_("channel", "phone"),
    N_("channel", "store"),
    N_("channel", "online"),
    N_("channel", "app"),
    N_("channel", "all"),
    # Why someone must not be contacted (suppressions.reason; a loaded file may say others).
    N_("suppression_reason", "unsubscribed"),
    N_("suppression_reason", "bounced"),
    N_("suppression_reason", "complaint"),
    N_("suppression_reason", "legal hold"),
    # Where a customer bought or browsed (invoice lines' and events' channel): "web" is the
    # shop's website here, where a message channel "web" is a message shown on it.
    N_("sales_channel", "store"),
    N_("sales_channel", "online"),
    N_("sales_channel", "web"),
    N_("sales_channel", "app"),
    N_("sales_channel", "phone"),
    # The event types segmentum knows (segmentum.realtime.events.KNOWN_TYPES).
    N_("event_type", "page_view"),
    N_("event_type", "product_view"),
    N_("event_type", "add_to_cart"),
    N_("event_type", "remove_from_cart"),
    N_("event_type", "cart_abandoned"),
    N_("event_type", "checkout"),
    N_("event_type", "purchase"),
    N_("event_type", "email_open"),
    N_("event_type", "email_click"),
    N_("event_type", "push_open"),
    N_("event_type", "push_click"),
    N_("event_type", "sms_click"),
    N_("event_type", "in_app_open"),
    N_("event_type", "in_app_click"),
    N_("event_type", "web_message_view"),
    N_("event_type", "web_message_click"),
    N_("event_type", "search"),
    N_("event_type", "sign_up"),
    N_("event_type", "login"),
    N_("device", "desktop"),
    N_("device", "mobile"),
    N_("device", "tablet"),
    N_("hour_band", "morning"),
    N_("hour_band", "afternoon"),
    N_("hour_band", "evening"),
    N_("hour_band", "night"),
    N_("hour_band", "late"),
    N_("weekday", "mon"),
    N_("weekday", "tue"),
    N_("weekday", "wed"),
    N_("weekday", "thu"),
    N_("weekday", "fri"),
    N_("weekday", "sat"),
    N_("weekday", "sun"),
    N_("gender", "female"),
    N_("gender", "male"),
    N_("gender", "other"),
    N_("gender", "F"),
    N_("gender", "M"),
    N_("status", "running"),
    N_("status", "interrupted"),
    N_("status", "skipped"),
    N_("status", "done"),
    N_("status", "ok"),
    N_("status", "failed"),
    N_("status", "succeeded"),
    N_("trend", "up"),
    N_("trend", "down"),
    N_("trend", "flat"),
    N_("value", "(unknown)"),
    N_("value", "all"),
    N_("group", "treatment"),
    N_("group", "control"),
    N_("state", "(not yet a customer)"),
    N_("state", "(gone)"),
    N_("state", "(none)"),
    N_("state", "in"),
    N_("state", "out"),
    N_("event", "enter"),
    N_("event", "exit"),
    N_("scope", "read"),
    N_("scope", "write"),
    N_("scope", "admin"),
    N_("scope", "track"),
    N_("table_name", "customers"),
    N_("table_name", "products"),
    N_("table_name", "transactions"),
    N_("table_name", "events"),
    N_("table_name", "campaign_results"),
    N_("table_name", "prospects"),
    N_("table_name", "responses"),
    N_("table_name", "population"),
    # Files of the demo folder that are not tables: the answers the demo was generated with,
    # and the saved segments' rules.
    N_("table_name", "ground_truth"),
    N_("table_name", "segments"),
    # A saved segment's level (segment list).
    N_("level", "customer"),
    N_("level", "account"),
    # The steps of `segmentum run` (pipeline.run), as the run log, the progress lines and the
    # data page show them.
    N_("step", "plan"),
    N_("step", "features"),
    N_("step", "clv"),
    N_("step", "classes"),
    N_("step", "contact times"),
    N_("step", "segments"),
    N_("step", "membership log"),
    N_("step", "webhooks"),
    N_("step", "segment webhooks"),
    N_("step", "discover segments"),
    N_("step", "satisfaction"),
    N_("step", "market"),
    N_("step", "customer lookup"),
    N_("step", "dashboard aggregates"),
    N_("step", "history retention"),
    N_("step", "publish read models"),
    N_("step", "summary"),
    N_("step", "save run state"),
    N_("step", "demo ground truth"),
    N_("step", "tracked events"),
    N_("step", "unsubscribes"),
    # The steps of an ingest, as its progress lines show them.
    N_("step", "recovered"),
    N_("step", "read"),
    N_("step", "validate"),
    N_("step", "write"),
    N_("step", "done"),
)
# Steps named with what they work on: "ingest customers", "load segments rules.yaml".
_STEP_PREFIXES = (
    (N_("step", "ingest %(1)s"), "ingest ", "table_name"),
    (N_("step", "load segments %(1)s"), "load segments ", None),
)
# Columns whose values are labels of another column's kind.
_KIND = {
    "segment": "rfm_segment",
    "best_channel": "channel",
    "preferred_channel": "sales_channel",
    "best_device": "device",
    "preferred_device": "device",
    "preferred_hour_band": "hour_band",
    "best_hour_band": "hour_band",
    "best_weekday": "weekday",
    "preferred_weekday": "weekday",
    "state_from": "value_tier",
    "state_to": "value_tier",
    "source": "value_tier",
    "target": "value_tier",
}
_LABEL_KINDS = {k for k, _ in LABELS}
# Where a customer bought or browsed (the stored values with a ``sales_channel`` label).
SALES_CHANNELS = frozenset(m for k, m in LABELS if k == "sales_channel")
_STATES = {m for k, m in LABELS if k == "state" and m.startswith("(")}


@functools.cache
def translations(lang: str) -> Translations:
    """The catalog of ``lang`` ("es" or "en"), compiled from its ``.po`` file in memory."""
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def gettext(lang: str, message: str) -> str:
    return translations(lang).ugettext(message)


def label(lang: str, kind: str, value: Any) -> str:
    """A stored data value as a person reads it: ``label("es", "value_tier", "high")``."""
    if is_missing(value):
        return MISSING
    text = str(value)
    if text in _STATES:
        return translations(lang).upgettext("state", text)
    kind = _KIND.get(kind, kind)
    if kind not in _LABEL_KINDS:
        return text
    found = translations(lang).upgettext(kind, text)
    # English catalogs keep stored codes as msgids: shown as words ("no_consent" -> "no consent").
    return found.replace("_", " ") if found == text else found


def spoken_names(lang: str, column: str) -> dict[str, str]:
    """What a page in ``lang`` calls each stored value of ``column``, lower case, mapped to the
    stored value (``{"alto": "high", ...}`` for ``value_tier``); empty for a column whose values
    are not labels. Only names that differ from the stored value."""
    kind = _KIND.get(column, column)
    t = translations(lang)
    names = ((t.upgettext(kind, m), m) for k, m in LABELS if k == kind)
    return {name.lower(): m for name, m in names if name != m}


def step_name(lang: str, name: Any) -> str:
    """A pipeline step's name (as ``pipeline_runs`` stores it) in ``lang``."""
    if is_missing(name):
        return MISSING
    text = str(name)
    for (ctx, msgid), prefix, kind in _STEP_PREFIXES:
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            what = label(lang, kind, rest) if kind else rest
            return str(translations(lang).upgettext(ctx, msgid) % {"1": what})
    return label(lang, "step", text)


def satisfaction_group(
    lang: str, dimension: str, segment: Any, cluster_names: Mapping[str, str] | None = None
) -> str:
    """A satisfaction group (stored in English) as a person reads it in ``lang``: a class in
    its words, a discovered segment by its name there (``cluster_names``), a micro-segment's
    value tier in its words ("alto > Comunidad de Madrid")."""
    text = str(segment)
    if lang == "en":
        return text
    if dimension == "all":
        return translations(lang).ugettext("All customers")
    if dimension == "cluster":
        return (cluster_names or {}).get(text, text)
    if dimension in ("value_tier", "lifecycle_stage", "rfm_segment"):
        return label(lang, dimension, text)
    if dimension == "micro" and " > " in text:
        tier, place = text.split(" > ", 1)
        return f"{label(lang, 'value_tier', tier)} > {place}"
    return text


def segment_flag(lang: str, flag: str) -> str:
    """A discovered segment's warning flag (``small``, ``not_distinct``, ``unstable``) in
    ``lang``."""
    _ = translations(lang).ugettext
    words = {"small": _("small"), "not_distinct": _("not distinct"), "unstable": _("unstable")}
    return words.get(flag, flag.replace("_", " "))


def labeller(lang: str) -> Callable[[str, Any], str]:
    return functools.partial(label, lang)


def sentence(text: str) -> str:
    """A message shown on its own as a sentence: its first letter capitalised (messages are
    written to follow a file name or a colon: "no results yet: 3 sent...")."""
    return text[:1].upper() + text[1:]


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return True
    # pandas' NaT and NA, without importing pandas here.
    return type(value).__name__ in ("NaTType", "NAType")


def babel_locale(lang: str) -> Locale:
    return Locale.parse(_BABEL_LOCALE.get(lang, _BABEL_LOCALE[DEFAULT_LANGUAGE]))


def number(value: Any, lang: str, digits: int | None = None) -> str:
    """``4.994`` / ``4,994``; ``digits`` fixes the decimals (default: 0 from 10 up, else 2)."""
    if is_missing(value):
        return MISSING
    v = float(value)
    if digits is None:
        digits = 0 if abs(v) >= 10 or float(v).is_integer() else 2
    fmt = "#,##0" + ("." + "0" * digits if digits else "")
    # A number that rounds to zero has no sign ("-0" reads as a different number).
    v = 0.0 if round(v, digits) == 0 else v
    return format_decimal(v, format=fmt, locale=babel_locale(lang))


def significant(value: Any, lang: str, digits: int = 3) -> str:
    """A model's parameter to ``digits`` significant digits, never in scientific notation:
    ``274.000`` / ``274,000``, ``0,0000123`` (below 1e-10: ``0``)."""
    if is_missing(value):
        return MISSING
    v = float(value)
    if v == 0 or not math.isfinite(v) or abs(v) < 1e-10:
        return number(0 if math.isfinite(v) else v, lang, 0)
    places = digits - 1 - math.floor(math.log10(abs(v)))
    return number(round(v, places), lang, max(0, places))


def percent(value: Any, lang: str, digits: int = 1) -> str:
    """A share (0.123) as ``12,3 %`` / ``12.3%``."""
    if is_missing(value):
        return MISSING
    loc = babel_locale(lang)
    pattern = parse_pattern(loc.percent_formats[None])
    pattern.frac_prec = (digits, digits)
    v = float(value)
    return pattern.apply(0.0 if round(v, digits + 2) == 0 else v, loc)


def probability(value: Any, lang: str, digits: int = 0) -> str:
    """A probability as a share, never rounded to a certainty it is not: 0.99896 is ``>99%``,
    0.001 ``<1%`` (exactly 0 and 1 stay ``0%`` and ``100%``)."""
    if is_missing(value):
        return MISSING
    v, step = float(value), 10.0 ** -(digits + 2)
    if 0 < v < step / 2:
        return "<" + percent(step, lang, digits)
    if 1 - step / 2 <= v < 1:
        return ">" + percent(1 - step, lang, digits)
    return percent(v, lang, digits)


def duration(seconds: Any, lang: str) -> str:
    """A wait as a person reads it, in its largest whole unit: ``1 week``, ``3 días``."""
    if is_missing(seconds):
        return MISSING
    secs = int(seconds)
    t = translations(lang)
    n = secs
    if secs >= 604800 and secs % 604800 == 0:
        n = secs // 604800
        text = t.ungettext("%(n)s week", "%(n)s weeks", n)
    elif secs >= 86400 and secs % 86400 == 0:
        n = secs // 86400
        text = t.ungettext("%(n)s day", "%(n)s days", n)
    elif secs >= 3600 and secs % 3600 == 0:
        n = secs // 3600
        text = t.ungettext("%(n)s hour", "%(n)s hours", n)
    elif secs >= 60 and secs % 60 == 0:
        n = secs // 60
        text = t.ungettext("%(n)s minute", "%(n)s minutes", n)
    else:
        text = t.ungettext("%(n)s second", "%(n)s seconds", n)
    return text % {"n": number(n, lang, 0)}


def points(value: Any, lang: str, digits: int = 1) -> str:
    """A difference of shares (0.021) in percentage points: ``+2,1 pp``."""
    if is_missing(value):
        return MISSING
    v = 100 * float(value)
    sign = "+" if v > 0 else ""
    return f"{sign}{number(v, lang, digits)} pp"


def money(value: Any, lang: str, currency: str | None = "EUR", digits: int = 0) -> str:
    """``5.312.197 €`` / ``€5,312,197`` in the configured currency (a plain number when the
    currency is unknown)."""
    if is_missing(value):
        return MISSING
    if not currency or len(currency) != 3:
        return number(value, lang, digits)
    loc = babel_locale(lang)
    pattern = parse_pattern(loc.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return pattern.apply(float(value), loc, currency=currency, currency_digits=False)


def date(value: Any, lang: str, fmt: str = "medium") -> str:
    """``1 mar 2026`` / ``Mar 1, 2026`` from a date, datetime or ISO text."""
    if is_missing(value) or value == "":
        return MISSING
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if value.time() == _dt.time():
            value = value.date()
    if isinstance(value, _dt.datetime):
        loc = babel_locale(lang)
        return f"{format_date(value, fmt, locale=loc)} {format_time(value, 'short', locale=loc)}"
    if isinstance(value, _dt.date):
        return format_date(value, fmt, locale=babel_locale(lang))
    return str(value)


def month(value: Any, lang: str) -> str:
    """A month as a person reads it ("ene 2024" / "Jan 2024") from a date or ISO text; as
    written when it is not a date."""
    try:
        day = _dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    return date(day, lang, "MMM y")


# The rule checker's messages (segments.rules), matched by pattern so a Spanish page shows
# them in Spanish; the quoted names and values inside stay as typed.
_Q = r"('(?:[^'\\]|\\.)*'|\"[^\"]*\")"
_N = r"([\d,]+)"  # a count as the library writes it: 1,234
_MB = r"([\d,]+\.\d MB)"  # a size as segmentum doctor writes it
MESSAGES: tuple[tuple[str, tuple[str, str]], ...] = (
    (r"there is no route (\S+)", N_("api", "there is no route %(1)s")),
    (r"(\S+) is not allowed on (\S+)", N_("api", "%(1)s is not allowed on %(2)s")),
    (r"the routes are listed at /docs", N_("api", "the routes are listed at /docs")),
    (
        r"the run stopped before it finished: its process was killed or its machine stopped",
        N_(
            "run",
            "the run stopped before it finished: its process was killed or its machine stopped",
        ),
    ),
    (r"run it again: segmentum run", N_("run", "run it again: segmentum run")),
    (
        r"(.+): column '(.+)' mixes day-first and month-first dates \(e\.g\. '(.*)' and '(.*)'\)",
        N_(
            "ingest",
            "%(1)s: column '%(2)s' mixes day-first and month-first dates (e.g. '%(3)s' and "
            "'%(4)s')",
        ),
    ),
    (
        r"choose one with --date-order dmy or --date-order mdy; values that do not fit are "
        r"quarantined",
        N_(
            "ingest",
            "choose one with --date-order dmy or --date-order mdy; values that do not fit are "
            "quarantined",
        ),
    ),
    (r"there is no warehouse at (.+)", N_("warehouse", "there is no warehouse at %(1)s")),
    (
        r"check the path \(--warehouse or the warehouse setting\); segmentum run --data FOLDER "
        r"or segmentum ingest starts one",
        N_(
            "warehouse",
            "check the path (--warehouse or the warehouse setting); segmentum run --data "
            "FOLDER or segmentum ingest starts one",
        ),
    ),
    (
        r"tracked events (\d+) to (\d+) from (.+)",
        N_("ingest", "tracked events %(1)s to %(2)s from %(3)s"),
    ),
    (rf"unknown column or segment {_Q}", N_("rule", "unknown column or segment %(1)s")),
    (r"did you mean (.+)\?", N_("rule", "did you mean %(1)s?")),
    (r"see the list of columns \(segmentum docs\)", N_("rule", "see the list of columns")),
    (rf"unexpected character {_Q}", N_("rule", "unexpected character %(1)s")),
    (r"this text is never closed", N_("rule", "this text is never closed")),
    (r"the rule is empty", N_("rule", "the rule is empty")),
    (
        r"rules write decimals with a point, e\.g\. (\S+)",
        N_("rule", "rules write decimals with a point, e.g. %(1)s"),
    ),
    (r"this number is too large", N_("rule", "this number is too large")),
    (rf"unknown function {_Q}", N_("rule", "unknown function %(1)s")),
    (r"'(.+?)' needs a (\w+), got a (\w+)", N_("rule", "'%(1)s' needs a %(2)s, got a %(3)s")),
    (r"'(.+?)' needs numbers, got a (\w+)", N_("rule", "'%(1)s' needs numbers, got a %(2)s")),
    (
        r"cannot compare a (\w+) with a (\w+) using '(.+?)'",
        N_("rule", "cannot compare a %(1)s with a %(2)s using '%(3)s'"),
    ),
    (
        rf"no customer has (\w+) = {_Q}, so this selects nobody",
        N_("rule", "no customer has %(1)s = %(2)s, so this selects nobody"),
    ),
    (
        rf"no customer has (\w+) = {_Q}, so this is true for everyone",
        N_("rule", "no customer has %(1)s = %(2)s, so this is true for everyone"),
    ),
    (
        rf"no account has (\w+) = {_Q}, so this selects nobody",
        N_("rule", "no account has %(1)s = %(2)s, so this selects nobody"),
    ),
    (
        rf"no account has (\w+) = {_Q}, so this is true for everyone",
        N_("rule", "no account has %(1)s = %(2)s, so this is true for everyone"),
    ),
    (
        rf"values are case-sensitive: did you mean {_Q}\?",
        N_("rule", "values are case-sensitive: did you mean %(1)s?"),
    ),
    (
        rf"{_Q} is the Spanish name of {_Q}: write (.+)",
        N_("rule", "%(1)s is the Spanish name of %(2)s: write %(3)s"),
    ),
    (r"its values are (.+)", N_("rule", "its values are %(1)s")),
    (r"expected (.+), found (.+)", N_("rule", "expected %(1)s, found %(2)s")),
    (
        r"null is not a value: test for it with 'is null' or 'is not null'",
        N_("rule", "null is not a value: test for it with 'is null' or 'is not null'"),
    ),
    (r"the rule nests too deeply", N_("rule", "the rule nests too deeply")),
    (r"(\w+)\(\) is not available here", N_("rule", "%(1)s() is not available here")),
    (
        r"(.+) is not a web address a webhook can be sent to",
        N_("webhook", "%(1)s is not a web address a webhook can be sent to"),
    ),
    (
        r"give the full address of your endpoint, like (.+)",
        N_("webhook", "give the full address of your endpoint, like %(1)s"),
    ),
    (
        r"a webhook address must not carry a user name or password",
        N_("webhook", "a webhook address must not carry a user name or password"),
    ),
    (
        r"the endpoint checks the X-Segmentum-Signature header instead",
        N_("webhook", "the endpoint checks the X-Segmentum-Signature header instead"),
    ),
    (r"(.+) is already subscribed to (.+)", N_("webhook", "%(1)s is already subscribed to %(2)s")),
    (
        r"unsubscribe it first to get a new secret",
        N_("webhook", "unsubscribe it first to get a new secret"),
    ),
    # What segmentum doctor checks and finds (segmentum.maintenance).
    (r"1 problem found", N_("doctor", "1 problem found")),
    (r"([\d,]+) problems found", N_("doctor", "%(1)s problems found")),
    (
        r"repair them: segmentum doctor --repair",
        N_("doctor", "repair them: segmentum doctor --repair"),
    ),
    ("stray files", N_("doctor", "stray files")),
    ("rollup", N_("doctor", "rollup")),
    ("orphan batches", N_("doctor", "orphan batches")),
    ("pending sends", N_("doctor", "pending sends")),
    ("size", N_("doctor", "size")),
    ("no stray files or staging tables", N_("doctor", "no stray files or staging tables")),
    ("no invoice lines loaded yet", N_("doctor", "no invoice lines loaded yet")),
    (
        "the purchase-day rollup is built on first use",
        N_("doctor", "the purchase-day rollup is built on first use"),
    ),
    (
        "the purchase-day rollup matches ([\\d,]+) lines",
        N_("doctor", "the purchase-day rollup matches %(1)s lines"),
    ),
    (
        "the purchase-day rollup was out of date: rebuilt",
        N_("doctor", "the purchase-day rollup was out of date: rebuilt"),
    ),
    (
        "the purchase-day rollup does not match the invoice lines \\(changed outside ingest\\)",
        N_(
            "doctor",
            "the purchase-day rollup does not match the invoice lines (changed outside ingest)",
        ),
    ),
    (
        "rebuild it: segmentum doctor --repair \\(the next features run would also do it\\)",
        N_(
            "doctor",
            "rebuild it: segmentum doctor --repair (the next features run would also do it)",
        ),
    ),
    ("nothing loaded yet", N_("doctor", "nothing loaded yet")),
    (
        "every loaded row belongs to a recorded batch",
        N_("doctor", "every loaded row belongs to a recorded batch"),
    ),
    (
        "removed rows of unfinished loads: (.+)",
        N_("doctor", "removed rows of unfinished loads: %(1)s"),
    ),
    (
        "rows of loads that never finished: (.+)",
        N_("doctor", "rows of loads that never finished: %(1)s"),
    ),
    (
        "remove them: segmentum doctor --repair, then load those files again",
        N_("doctor", "remove them: segmentum doctor --repair, then load those files again"),
    ),
    ("no campaign has been sent yet", N_("doctor", "no campaign has been sent yet")),
    ("nothing waits to be sent", N_("doctor", "nothing waits to be sent")),
    (
        rf"{_N} messages wait to be sent in (.+?); {_N} were being sent when a send stopped",
        N_(
            "doctor",
            "%(1)s messages wait to be sent in %(2)s; %(3)s were being sent when a send stopped",
        ),
    ),
    (
        "([\\d,]+) messages wait to be sent in (.+)",
        N_("doctor", "%(1)s messages wait to be sent in %(2)s"),
    ),
    (
        "send what is due: segmentum campaign send (\\S+)",
        N_("doctor", "send what is due: segmentum campaign send %(1)s"),
    ),
    (
        rf"{_MB} on disk, {_MB} of it free space, {_MB} of log not yet folded in",
        N_("doctor", "%(1)s on disk, %(2)s of it free space, %(3)s of log not yet folded in"),
    ),
    (
        rf"{_MB} on disk, {_MB} of it free space",
        N_("doctor", "%(1)s on disk, %(2)s of it free space"),
    ),
    (
        rf"{_MB} on disk, {_MB} of it free space \(left by interrupted or replaced loads\)",
        N_(
            "doctor",
            "%(1)s on disk, %(2)s of it free space (left by interrupted or replaced loads)",
        ),
    ),
    (
        "compact it: segmentum doctor --repair \\(nothing else may use it meanwhile\\)",
        N_("doctor", "compact it: segmentum doctor --repair (nothing else may use it meanwhile)"),
    ),
    (
        "remove them: segmentum doctor --repair",
        N_("doctor", "remove them: segmentum doctor --repair"),
    ),
    ("drop them: segmentum doctor --repair", N_("doctor", "drop them: segmentum doctor --repair")),
    (
        r"removed ([\d,]+) leftover\(s\) of a killed process \(spill files beside the database, "
        r"staging tables in it\): (.+)",
        N_(
            "doctor",
            "removed %(1)s leftover(s) of a killed process (spill files beside the database, "
            "staging tables in it): %(2)s",
        ),
    ),
    (
        "([\\d,]+) staging tables left by interrupted steps",
        N_("doctor", "%(1)s staging tables left by interrupted steps"),
    ),
    (
        "([\\d,]+) staging tables left by interrupted steps: dropped",
        N_("doctor", "%(1)s staging tables left by interrupted steps: dropped"),
    ),
    # What a page or command needs and the warehouse lacks yet.
    (
        r"the customers table has no geography columns",
        N_("missing", "the customers table has no geography columns"),
    ),
    (r"load customers first", N_("missing", "load customers first")),
    (r"no prospects have been scored", N_("missing", "no prospects have been scored")),
    (
        r"run: segmentum segment lookalike --target \.\.\.",
        N_("missing", "run: segmentum segment lookalike --target ..."),
    ),
    (r"there are no survey responses", N_("missing", "there are no survey responses")),
    (
        r"load them: segmentum ingest responses FILE",
        N_("missing", "load them: segmentum ingest responses FILE"),
    ),
    (r"unknown dimension\(s\): (.+)", N_("missing", "unknown dimension(s): %(1)s")),
    (
        r"dimensions are columns of the customer view: (.+)",
        N_("missing", "dimensions are columns of the customer view: %(1)s"),
    ),
    # A saved segment that cannot be saved as written (segmentum.segments.store.validate).
    (rf"{_Q} cannot be a segment name", N_("segment", "%(1)s cannot be a segment name")),
    (
        r"use letters, digits and _ \(not starting with a digit\), e\.g\. (\w+)",
        N_("segment", "use letters, digits and _ (not starting with a digit), e.g. %(1)s"),
    ),
    # After "segment NAME: " (see _known), which is translated apart.
    (r"level must be customer or account", N_("segment", "level must be customer or account")),
    (rf"segment name {_Q} is also a column", N_("segment", "segment name %(1)s is also a column")),
    (r"choose another name", N_("segment", "choose another name")),
    (
        r"an account segment needs the companies of the customers",
        N_("segment", "an account segment needs the companies of the customers"),
    ),
    (
        r"load a customers file with a company_id column \(segmentum ingest customers\)",
        N_(
            "segment",
            "load a customers file with a company_id column (segmentum ingest customers)",
        ),
    ),
    (
        r"the rule gives a (\w+), not true or false",
        N_("segment", "the rule gives a %(1)s, not true or false"),
    ),
    (
        r"compare it with something, e\.g\. monetary > 100",
        N_("segment", "compare it with something, e.g. monetary > 100"),
    ),
    # Why a saved segment is not evaluated live (segmentum.realtime.evaluate.plan_segment).
    (
        r"account segments are computed in batch",
        N_("realtime", "account segments are computed in batch"),
    ),
    (
        r"no event or purchase window: nothing a customer does changes it between runs",
        N_(
            "realtime",
            "no event or purchase window: nothing a customer does changes it between runs",
        ),
    ),
    (
        r"survey answers \(responses\) are loaded in batch",
        N_("realtime", "survey answers (responses) are loaded in batch"),
    ),
    (
        r"returns come from the invoice export, in batch",
        N_("realtime", "returns come from the invoice export, in batch"),
    ),
    (
        r"(\w+)\(\) over the whole history is batch-only: give it a window \(last 30 days\)",
        N_(
            "realtime",
            "%(1)s() over the whole history is batch-only: give it a window (last 30 days)",
        ),
    ),
    (
        r"a window longer than (\d+) days \(the realtime_max_window_days setting\)",
        N_("realtime", "a window longer than %(1)s days (the realtime_max_window_days setting)"),
    ),
    (
        r"conditions on purchase lines \(category, product\.\.\.\) are evaluated in batch",
        N_(
            "realtime", "conditions on purchase lines (category, product...) are evaluated in batch"
        ),
    ),
    (
        r"sums of quantities are evaluated in batch; sum\(spend\) runs live",
        N_("realtime", "sums of quantities are evaluated in batch; sum(spend) runs live"),
    ),
    (
        r"has_tag\(\) needs the customers' tags, which lookups do not publish",
        N_("realtime", "has_tag() needs the customers' tags, which lookups do not publish"),
    ),
    (
        r"uses (\w+), which the published customer lookup does not carry",
        N_("realtime", "uses %(1)s, which the published customer lookup does not carry"),
    ),
    # A PostgreSQL warehouse that cannot be used (segmentum.warehouse.connect).
    (
        r"cannot reach the PostgreSQL warehouse (\S+): (.+)",
        N_("warehouse", "cannot reach the PostgreSQL warehouse %(1)s: %(2)s"),
    ),
    (
        r"the PostgreSQL warehouse (\S+) refused the login: (.+)",
        N_("warehouse", "the PostgreSQL warehouse %(1)s refused the login: %(2)s"),
    ),
    (
        r"check the host, port and database in the warehouse URL, and that PostgreSQL is "
        r"running there and accepts connections from this machine",
        N_(
            "warehouse",
            "check the host, port and database in the warehouse URL, and that PostgreSQL is "
            "running there and accepts connections from this machine",
        ),
    ),
    (
        r"check the user name and password in the warehouse URL",
        N_("warehouse", "check the user name and password in the warehouse URL"),
    ),
    # A PostgreSQL serving store that cannot be used (segmentum.serving_postgres).
    (
        r"cannot reach the serving store (\S+) \(setting serving_store\): (.+)",
        N_("serving", "cannot reach the serving store %(1)s (setting serving_store): %(2)s"),
    ),
    (
        r"the serving store (\S+) \(setting serving_store\) refused the login: (.+)",
        N_("serving", "the serving store %(1)s (setting serving_store) refused the login: %(2)s"),
    ),
    (
        r"check the host, port and database in the serving_store setting "
        r"\(SEGMENTUM_SERVING_STORE\) and that PostgreSQL is running there",
        N_(
            "serving",
            "check the host, port and database in the serving_store setting "
            "(SEGMENTUM_SERVING_STORE) and that PostgreSQL is running there",
        ),
    ),
    (
        r"check the user name and password in the serving_store setting "
        r"\(SEGMENTUM_SERVING_STORE\)",
        N_(
            "serving",
            "check the user name and password in the serving_store setting "
            "(SEGMENTUM_SERVING_STORE)",
        ),
    ),
    # Why a model was not fitted: the run summary's warnings (segmentum.models).
    (
        r"churn cannot be calibrated: the history \((\d+) days\) is shorter than three "
        r"(\d+)-day horizons",
        N_(
            "model",
            "churn cannot be calibrated: the history (%(1)s days) is shorter than three "
            "%(2)s-day horizons",
        ),
    ),
    (
        r"wait for more history, or use a shorter churn horizon",
        N_("model", "wait for more history, or use a shorter churn horizon"),
    ),
    (
        r"there is no history to calibrate churn on",
        N_("model", "there is no history to calibrate churn on"),
    ),
    (
        r"every customer first bought on the data's last day: no time to learn purchase rates "
        r"from",
        N_(
            "model",
            "every customer first bought on the data's last day: no time to learn purchase "
            "rates from",
        ),
    ),
    (
        r"lifetime values need weeks of purchases; they are computed once the history is "
        r"longer",
        N_(
            "model",
            "lifetime values need weeks of purchases; they are computed once the history is longer",
        ),
    ),
    (
        r"(\S+) needs repeat buyers to learn from: (\d+) of (\d+) customers bought again",
        N_(
            "model",
            "%(1)s needs repeat buyers to learn from: %(2)s of %(3)s customers bought again",
        ),
    ),
    (
        r"wait for more history, or use a longer period",
        N_("model", "wait for more history, or use a longer period"),
    ),
    (
        r"Gamma-Gamma needs repeat buyers: only (\d+) found",
        N_("model", "Gamma-Gamma needs repeat buyers: only %(1)s found"),
    ),
    (r"wait for more history", N_("model", "wait for more history")),
    (r"(\S+) did not converge", N_("model", "%(1)s did not converge")),
    (
        r"check the data, or add a small penalizer",
        N_("model", "check the data, or add a small penalizer"),
    ),
    (
        r"no purchase model could be fitted on the calibration period: (.+)",
        N_("model", "no purchase model could be fitted on the calibration period: %(1)s"),
    ),
    (
        r"choose a later --calibration-end so more customers have bought twice",
        N_("model", "choose a later --calibration-end so more customers have bought twice"),
    ),
    (
        r"(\d+) customers are too few to look for (\d+) clusters",
        N_("model", "%(1)s customers are too few to look for %(2)s clusters"),
    ),
    (r"use a smaller k range or more data", N_("model", "use a smaller k range or more data")),
    (
        r"no clustering found more than one group",
        N_("model", "no clustering found more than one group"),
    ),
    (r"add more varied features", N_("model", "add more varied features")),
    # A warehouse without a table (Warehouse.table), and what to do.
    (
        r"the warehouse (\S+) has no table '(\w+)'",
        N_("warehouse", "the warehouse %(1)s has no table '%(2)s'"),
    ),
    (
        r"load it first: segmentum ingest (\w+) FILE",
        N_("warehouse", "load it first: segmentum ingest %(1)s FILE"),
    ),
    (
        r"run the pipeline first: segmentum run",
        N_("warehouse", "run the pipeline first: segmentum run"),
    ),
    (
        r"nothing has been loaded yet: segmentum ingest TABLE FILE",
        N_("warehouse", "nothing has been loaded yet: segmentum ingest TABLE FILE"),
    ),
    # The command line's most common mistakes: a path that is not there.
    (r"(.+): no such folder", N_("path", "%(1)s: no such folder")),
    (r"(.+): no such file", N_("path", "%(1)s: no such file")),
    (
        r"give the folder your exports are in: segmentum run --data FOLDER",
        N_("path", "give the folder your exports are in: segmentum run --data FOLDER"),
    ),
    (
        r"give the folder your daily exports are written to",
        N_("path", "give the folder your daily exports are written to"),
    ),
    (
        r"check the path \(relative paths start where you run the command\)",
        N_("path", "check the path (relative paths start where you run the command)"),
    ),
    # segmentum schedule's values (segmentum.schedule).
    (rf"--at {_Q} is not a time of day", N_("usage", "--at %(1)s is not a time of day")),
    (
        r"write it as HH:MM, e\.g\. --at 02:30",
        N_("usage", "write it as HH:MM, e.g. --at 02:30"),
    ),
    (rf"--timezone {_Q} is not a time zone", N_("usage", "--timezone %(1)s is not a time zone")),
    (r"use an IANA name: Europe/Madrid", N_("usage", "use an IANA name: Europe/Madrid")),
    (
        rf"--name {_Q} cannot name a unit or cron file",
        N_("usage", "--name %(1)s cannot name a unit or cron file"),
    ),
    (
        r"use letters, digits, '-', '_' and '\.', e\.g\. segmentum-daily",
        N_("usage", "use letters, digits, '-', '_' and '.', e.g. segmentum-daily"),
    ),
    (rf"--format {_Q} is not known", N_("usage", "--format %(1)s is not known")),
    (r"use systemd or cron", N_("usage", "use systemd or cron")),
    # A satisfaction dimension or group a command names (segmentum.satisfaction).
    (
        rf"{_Q} is not a satisfaction dimension",
        N_("satisfaction", "%(1)s is not a satisfaction dimension"),
    ),
    (
        rf"there is no group {_Q} in (\w+)",
        N_("satisfaction", "there is no group %(1)s in %(2)s"),
    ),
    (
        r"list them: segmentum satisfaction summary --by (\w+)",
        N_("satisfaction", "list them: segmentum satisfaction summary --by %(1)s"),
    ),
    # A query parameter the API's schema refuses (segmentum.service.app).
    (
        r"see the parameters it takes: /docs",
        N_("api", "see the parameters it takes: /docs"),
    ),
    # A saved segment a command names (segmentum.segments.store).
    (rf"there is no segment named {_Q}", N_("segment", "there is no segment named %(1)s")),
    (r"list them: segmentum segment list", N_("segment", "list them: segmentum segment list")),
    (
        rf"a segment named {_Q} already exists",
        N_("segment", "a segment named %(1)s already exists"),
    ),
    (
        r"edit it \(segmentum segment edit (\w+)\) or choose another name",
        N_("segment", "edit it (segmentum segment edit %(1)s) or choose another name"),
    ),
    (
        rf"segment {_Q} is used by flows: (.+)",
        N_("segment", "segment %(1)s is used by flows: %(2)s"),
    ),
    (
        r"change those flows first \(segmentum flow save\)",
        N_("segment", "change those flows first (segmentum flow save)"),
    ),
    (
        rf"segment {_Q} is the audience of campaigns not sent yet: (.+)",
        N_("segment", "segment %(1)s is the audience of campaigns not sent yet: %(2)s"),
    ),
    (
        r"send them, or delete them first: segmentum campaign delete (\S+)",
        N_("segment", "send them, or delete them first: segmentum campaign delete %(1)s"),
    ),
    (rf"segment {_Q} is used by (.+)", N_("segment", "segment %(1)s is used by %(2)s")),
    (r"edit or delete those first", N_("segment", "edit or delete those first")),
    (rf"segment {_Q} has not been computed", N_("segment", "segment %(1)s has not been computed")),
    (r"run: segmentum segment compute", N_("segment", "run: segmentum segment compute")),
    (
        r"segments reference each other in a cycle: (.+)",
        N_("segment", "segments reference each other in a cycle: %(1)s"),
    ),
    (
        r"a segment cannot depend on itself, directly or through others",
        N_("segment", "a segment cannot depend on itself, directly or through others"),
    ),
    # What the customer view needs (segmentum.segments.view).
    (r"there are no customer features yet", N_("missing", "there are no customer features yet")),
    (r"customer_features is empty", N_("missing", "customer_features is empty")),
    (r"run the pipeline: segmentum run", N_("missing", "run the pipeline: segmentum run")),
    # Look-alikes of a segment among the prospects (segmentum.segments.lookalike).
    (r"there are no prospects to score", N_("lookalike", "there are no prospects to score")),
    (
        r"load them: segmentum ingest prospects FILE",
        N_("lookalike", "load them: segmentum ingest prospects FILE"),
    ),
    (
        rf"the segment has {_N} members and {_N} non-members: too few to learn from",
        N_(
            "lookalike",
            "the segment has %(1)s members and %(2)s non-members: too few to learn from",
        ),
    ),
    (
        r"choose a segment with at least 20 customers in and out",
        N_("lookalike", "choose a segment with at least 20 customers in and out"),
    ),
    (
        r"customers and prospects share no usable column",
        N_("lookalike", "customers and prospects share no usable column"),
    ),
    # Segment history (segmentum.history.migration).
    (r"no segment has been computed yet", N_("history", "no segment has been computed yet")),
    (rf"unknown classification {_Q}", N_("history", "unknown classification %(1)s")),
    (
        r"use one of the classes \(rfm_segment, value_tier, lifecycle_stage\.\.\.\), "
        r"segment:NAME or cluster",
        N_(
            "history",
            "use one of the classes (rfm_segment, value_tier, lifecycle_stage...), "
            "segment:NAME or cluster",
        ),
    ),
    (r"--to must be after --from", N_("history", "--to must be after --from")),
    (
        r"no snapshots of (\S+) on (\S+) or (\S+)",
        N_("history", "no snapshots of %(1)s on %(2)s or %(3)s"),
    ),
    (
        r"list the dates with: segmentum history dates",
        N_("history", "list the dates with: segmentum history dates"),
    ),
    (r"there are no snapshots yet", N_("history", "there are no snapshots yet")),
    (
        r"run the pipeline \(segmentum run\) or build past ones: segmentum history backfill",
        N_(
            "history",
            "run the pipeline (segmentum run) or build past ones: segmentum history backfill",
        ),
    ),
    (
        r"there is no snapshot on (\S+): the nearest are (\S+) and (\S+)",
        N_("history", "there is no snapshot on %(1)s: the nearest are %(2)s and %(3)s"),
    ),
    (
        r"there is no snapshot on (\S+): the nearest is (\S+)",
        N_("history", "there is no snapshot on %(1)s: the nearest is %(2)s"),
    ),
    (
        r"choose a date that has one \(segmentum history dates lists them\), or build "
        r"snapshots for past dates: segmentum history backfill",
        N_(
            "history",
            "choose a date that has one (segmentum history dates lists them), or build "
            "snapshots for past dates: segmentum history backfill",
        ),
    ),
    (
        r"the discovered clusters are stored on (\S+) only: a migration of clusters needs two "
        r"dates that hold them",
        N_(
            "history",
            "the discovered clusters are stored on %(1)s only: a migration of clusters needs "
            "two dates that hold them",
        ),
    ),
    (
        r"no snapshot holds discovered clusters: a migration of clusters needs two dates that "
        r"hold them",
        N_(
            "history",
            "no snapshot holds discovered clusters: a migration of clusters needs two dates "
            "that hold them",
        ),
    ),
    (
        r"the snapshot of (\S+) holds no discovered clusters; the dates that do: (.+)",
        N_(
            "history",
            "the snapshot of %(1)s holds no discovered clusters; the dates that do: %(2)s",
        ),
    ),
    (
        r"clusters are stored by pipeline runs, not by the backfill: compare a class instead "
        r"\(--by rfm_segment, value_tier or lifecycle_stage\)",
        N_(
            "history",
            "clusters are stored by pipeline runs, not by the backfill: compare a class "
            "instead (--by rfm_segment, value_tier or lifecycle_stage)",
        ),
    ),
    (
        r"clusters are stored by pipeline runs, not by the backfill: choose two of those "
        r"dates, or compare a class \(--by rfm_segment, value_tier or lifecycle_stage\)",
        N_(
            "history",
            "clusters are stored by pipeline runs, not by the backfill: choose two of those "
            "dates, or compare a class (--by rfm_segment, value_tier or lifecycle_stage)",
        ),
    ),
    # The market: a reference population, and what was computed from it (segmentum.market).
    (r"there is no reference population yet", N_("market", "there is no reference population yet")),
    (
        r"load one: segmentum ingest population FILE \(see docs/market\.md\)",
        N_("market", "load one: segmentum ingest population FILE (see docs/market.md)"),
    ),
    (r"the population table is empty", N_("market", "the population table is empty")),
    (r"the population has no (\S+) column", N_("market", "the population has no %(1)s column")),
    (
        r"the population has no place columns \(country, region, state, city\)",
        N_("market", "the population has no place columns (country, region, state, city)"),
    ),
    (
        r"export the cells instead: leave out --level",
        N_("market", "export the cells instead: leave out --level"),
    ),
    (r"the market has not been computed", N_("market", "the market has not been computed")),
    (
        r"load a population \(segmentum ingest population FILE\), then segmentum run or "
        r"segmentum market compute",
        N_(
            "market",
            "load a population (segmentum ingest population FILE), then segmentum run or "
            "segmentum market compute",
        ),
    ),
    (r"GeoJSON file (.+) not found", N_("market", "GeoJSON file %(1)s not found")),
    (
        r"check the market_geojson setting \(a path to a file\)",
        N_("market", "check the market_geojson setting (a path to a file)"),
    ),
    (
        r"GeoJSON file (.+?) cannot be read: (.+)",
        N_("market", "GeoJSON file %(1)s cannot be read: %(2)s"),
    ),
    (r"export it again as GeoJSON \(UTF-8\)", N_("market", "export it again as GeoJSON (UTF-8)")),
    (
        r"GeoJSON file (.+) is not a FeatureCollection",
        N_("market", "GeoJSON file %(1)s is not a FeatureCollection"),
    ),
    (
        r"the map needs a FeatureCollection of Polygon or MultiPolygon features",
        N_("market", "the map needs a FeatureCollection of Polygon or MultiPolygon features"),
    ),
    # Satisfaction (segmentum.satisfaction).
    (
        r"satisfaction has not been computed",
        N_("satisfaction", "satisfaction has not been computed"),
    ),
    (
        r"load responses \(segmentum ingest responses FILE\), then run: segmentum run",
        N_(
            "satisfaction",
            "load responses (segmentum ingest responses FILE), then run: segmentum run",
        ),
    ),
    (r"run: segmentum run", N_("satisfaction", "run: segmentum run")),
    (
        r"there are no customer classes for (\S+)",
        N_("satisfaction", "there are no customer classes for %(1)s"),
    ),
    # Ad audiences (segmentum.campaigns.adaudiences).
    (rf"unknown ad audience format {_Q}", N_("audience", "unknown ad audience format %(1)s")),
    (
        r"ad audiences hold hashed emails and phones, which are still personal data, and "
        r"export_personal_data is off",
        N_(
            "audience",
            "ad audiences hold hashed emails and phones, which are still personal data, and "
            "export_personal_data is off",
        ),
    ),
    (
        r"set export_personal_data = true in segmentum\.toml \(or "
        r"SEGMENTUM_EXPORT_PERSONAL_DATA=true\) once your privacy notice covers advertising",
        N_(
            "audience",
            "set export_personal_data = true in segmentum.toml (or "
            "SEGMENTUM_EXPORT_PERSONAL_DATA=true) once your privacy notice covers advertising",
        ),
    ),
    (
        r"no customers are loaded: an ad audience needs their emails or phones and consent",
        N_(
            "audience",
            "no customers are loaded: an ad audience needs their emails or phones and consent",
        ),
    ),
    (r"segmentum ingest customers FILE", N_("audience", "segmentum ingest customers FILE")),
    (
        r"there are no events to retarget from",
        N_("audience", "there are no events to retarget from"),
    ),
    (
        r"load web and app events first: segmentum ingest events FILE",
        N_("audience", "load web and app events first: segmentum ingest events FILE"),
    ),
    (rf"unknown retargeting kind {_Q}", N_("audience", "unknown retargeting kind %(1)s")),
    (r"use viewed or carted", N_("audience", "use viewed or carted")),
    (r"say which: --viewed or --carted", N_("audience", "say which: --viewed or --carted")),
    (
        r"give either --top N or --top-percent P",
        N_("audience", "give either --top N or --top-percent P"),
    ),
    (
        r"there is no customer lifetime value yet",
        N_("audience", "there is no customer lifetime value yet"),
    ),
    # A value an option does not allow, and what the command line itself refuses (Click).
    (
        r"(--[\w-]+) must be 1 or more \(got (\S+)\)",
        N_("usage", "%(1)s must be 1 or more (got %(2)s)"),
    ),
    (
        r"(--[\w-]+) must be above 0 and at most 100 \(got (\S+)\)",
        N_("usage", "%(1)s must be above 0 and at most 100 (got %(2)s)"),
    ),
    (rf"(--[\w-]+) {_Q} is not a date", N_("usage", "%(1)s %(2)s is not a date")),
    (r"write it as YYYY-MM-DD", N_("usage", "write it as YYYY-MM-DD")),
    (rf"unknown format {_Q}", N_("usage", "unknown format %(1)s")),
    (r"use one of: (.+)", N_("usage", "use one of: %(1)s")),
    (r"use ((?:[\w-]+, )+[\w-]+)", N_("usage", "use %(1)s")),
    (r"e\.g\. (.+)", N_("usage", "e.g. %(1)s")),
    (r"missing argument '(.+)'\.?", N_("usage", "missing argument '%(1)s'")),
    (r"missing option '(.+)'\.?", N_("usage", "missing option '%(1)s'")),
    (
        r"no such option: (\S+) \(Possible options: (.+)\)",
        N_("usage", "no such option: %(1)s (possible options: %(2)s)"),
    ),
    (r"no such option: (\S+)", N_("usage", "no such option: %(1)s")),
    (r"no such command '(.+)'\.?", N_("usage", "no such command '%(1)s'")),
    (
        r"got unexpected extra argument\(s\) \((.+)\)",
        N_("usage", "got unexpected extra argument(s) (%(1)s)"),
    ),
    (
        r"invalid value for '(.+)': Input should be a valid integer, unable to parse string as "
        r"an integer",
        N_("usage", "invalid value for '%(1)s': it must be a whole number"),
    ),
    (
        r"invalid value for '(.+)': Input should be a valid number, unable to parse string as "
        r"a number",
        N_("usage", "invalid value for '%(1)s': it must be a number"),
    ),
    (r"invalid value for '(.+)': (.+)", N_("usage", "invalid value for '%(1)s': %(2)s")),
    (r"usage: (.+); see (.+) --help", N_("usage", "usage: %(1)s; see %(2)s --help")),
    (r"see segmentum --help", N_("usage", "see segmentum --help")),
    # What the REST API answers a request it cannot serve (segmentum.service).
    (rf"there is no customer {_Q}", N_("api", "there is no customer %(1)s")),
    (rf"there is no table {_Q}", N_("api", "there is no table %(1)s")),
    (rf"there is no job {_Q}", N_("api", "there is no job %(1)s")),
    (rf"as_of {_Q} is not a date", N_("api", "as_of %(1)s is not a date")),
    (r"a valid API key is required", N_("api", "a valid API key is required")),
    (
        r"send it as X-API-Key; create one with: segmentum api-key create",
        N_("api", "send it as X-API-Key; create one with: segmentum api-key create"),
    ),
    (rf"this key lacks the {_Q} scope", N_("api", "this key lacks the %(1)s scope")),
    (rf"the population has no {_Q} level", N_("api", "the population has no %(1)s level")),
    (
        r"the population has no places: load one with country, region, state or city columns",
        N_(
            "api",
            "the population has no places: load one with country, region, state or city columns",
        ),
    ),
    # What the service refuses before doing anything (segmentum.service).
    (r"the file is larger than ([\d,]+) MB", N_("api", "the file is larger than %(1)s MB")),
    (r"the request is larger than ([\d,]+) MB", N_("api", "the request is larger than %(1)s MB")),
    (
        r"split it, or raise the upload_max_mb setting",
        N_("api", "split it, or raise the upload_max_mb setting"),
    ),
    (
        r"split the file, or raise the upload_max_mb setting",
        N_("api", "split the file, or raise the upload_max_mb setting"),
    ),
    (r"missing or wrong CSRF token", N_("api", "missing or wrong CSRF token")),
    (r"send the X-CSRF-Token header", N_("api", "send the X-CSRF-Token header")),
    (
        r"the warehouse is busy: a pipeline run or another command is using it",
        N_("api", "the warehouse is busy: a pipeline run or another command is using it"),
    ),
    (
        r"retry in a few seconds; lookups and the dashboard's cached pages keep working",
        N_("api", "retry in a few seconds; lookups and the dashboard's cached pages keep working"),
    ),
    # The events API (segmentum.service.events, segmentum.realtime.events).
    (r"pages on (\S+) may not send events", N_("api", "pages on %(1)s may not send events")),
    (
        r"add the site to the track_origins setting \(e\.g\. (\S+)\)",
        N_("api", "add the site to the track_origins setting (e.g. %(1)s)"),
    ),
    (r"the request is larger than ([\d,]+) KB", N_("api", "the request is larger than %(1)s KB")),
    (r"send smaller batches", N_("api", "send smaller batches")),
    (r"the body is not JSON: (.+)", N_("api", "the body is not JSON: %(1)s")),
    (r"send (\{.+\})", N_("api", "send %(1)s")),
    (
        r'"events" must be a list of event objects',
        N_("api", '"events" must be a list of event objects'),
    ),
    (
        r'send one event object, or (\{"events": \[\.\.\.\]\})',
        N_("api", "send one event object, or %(1)s"),
    ),
    (r"the batch holds no events", N_("api", "the batch holds no events")),
    (
        r"the batch holds ([\d,]+) events; at most ([\d,]+) are accepted at once",
        N_("api", "the batch holds %(1)s events; at most %(2)s are accepted at once"),
    ),
    (
        r"([\d,]+) of ([\d,]+) events have problems; nothing was stored",
        N_("api", "%(1)s of %(2)s events have problems; nothing was stored"),
    ),
    (
        r"fix them and send the batch again \(an event_id already stored is counted once\)",
        N_("api", "fix them and send the batch again (an event_id already stored is counted once)"),
    ),
    (r"the event store is busy \((.+)\)", N_("api", "the event store is busy (%(1)s)")),
    (
        r"send the batch again in a second: its event ids keep it from counting twice",
        N_("api", "send the batch again in a second: its event ids keep it from counting twice"),
    ),
    # One event's problem (segmentum.realtime.events.check_events): the field is named apart.
    (r"is not a JSON object", N_("api", "is not a JSON object")),
    (r"is not a field of an event", N_("api", "is not a field of an event")),
    (
        r"put extra data in properties; fields: (.+)",
        N_("api", "put extra data in properties; fields: %(1)s"),
    ),
    (r"must be text or a number", N_("api", "must be text or a number")),
    (r"is longer than ([\d,]+) characters", N_("api", "is longer than %(1)s characters")),
    (r"send a shorter id", N_("api", "send a shorter id")),
    (r"is missing \(and so is anonymous_id\)", N_("api", "is missing (and so is anonymous_id)")),
    (
        r"send the customer's id, or the visitor's cookie id as anonymous_id",
        N_("api", "send the customer's id, or the visitor's cookie id as anonymous_id"),
    ),
    (r"is missing", N_("api", "is missing")),
    (rf"{_Q} is not an event type", N_("api", "%(1)s is not an event type")),
    (
        r"use lower-case letters, digits and _, starting with a letter: add_to_cart",
        N_("api", "use lower-case letters, digits and _, starting with a letter: add_to_cart"),
    ),
    (rf"{_Q} is not a time", N_("api", "%(1)s is not a time")),
    (
        r"send ISO 8601 with its offset, e\.g\. (\S+) \(or leave it out for now\)",
        N_("api", "send ISO 8601 with its offset, e.g. %(1)s (or leave it out for now)"),
    ),
    (r"(.+) is in the future", N_("api", "%(1)s is in the future")),
    (
        r"check the sender's clock and time zone offset",
        N_("api", "check the sender's clock and time zone offset"),
    ),
    (r"(.+) is before (\d{4}-\d{2}-\d{2})", N_("api", "%(1)s is before %(2)s")),
    (
        r"check the date \(the earliest_date setting sets the limit\)",
        N_("api", "check the date (the earliest_date setting sets the limit)"),
    ),
    (r"must be a number", N_("api", "must be a number")),
    (rf"{_Q} is not a number", N_("api", "%(1)s is not a number")),
    (r"must be a finite number", N_("api", "must be a finite number")),
    (r"is missing on a purchase", N_("api", "is missing on a purchase")),
    (
        r"send the order's invoice id: the invoice export brings the same order later, and the "
        r"id keeps it from counting twice",
        N_(
            "api",
            "send the order's invoice id: the invoice export brings the same order later, and "
            "the id keeps it from counting twice",
        ),
    ),
    (r"is negative on a purchase", N_("api", "is negative on a purchase")),
    (r"send returns from the invoice export", N_("api", "send returns from the invoice export")),
    (r"must be a JSON object", N_("api", "must be a JSON object")),
    (r"must be text", N_("api", "must be text")),
    (r"is larger than ([\d,]+) bytes", N_("api", "is larger than %(1)s bytes")),
    (
        r"keep a few small values; product details belong in the catalogue",
        N_("api", "keep a few small values; product details belong in the catalogue"),
    ),
    # Backups (segmentum.maintenance).
    (
        r"(.+) is not a segmentum backup \(no (\S+) in it\)",
        N_("backup", "%(1)s is not a segmentum backup (no %(2)s in it)"),
    ),
    (
        r"give the folder that segmentum backup wrote",
        N_("backup", "give the folder that segmentum backup wrote"),
    ),
    (
        r"restore works into a DuckDB warehouse file, not into (.+)",
        N_("backup", "restore works into a DuckDB warehouse file, not into %(1)s"),
    ),
    (
        r"give a URL like duckdb:///restored\.duckdb",
        N_("backup", "give a URL like duckdb:///restored.duckdb"),
    ),
    (
        r"the warehouse (\S+) already holds data",
        N_("backup", "the warehouse %(1)s already holds data"),
    ),
    (
        r"restore into a new file \(--warehouse duckdb:///restored\.duckdb\), or pass --replace "
        r"to overwrite it",
        N_(
            "backup",
            "restore into a new file (--warehouse duckdb:///restored.duckdb), or pass --replace "
            "to overwrite it",
        ),
    ),
    (
        r"(.+): the backup cannot be imported \((.+)\)",
        N_("backup", "%(1)s: the backup cannot be imported (%(2)s)"),
    ),
    (
        r"check that the folder is complete \(every \.parquet file the manifest lists\)",
        N_("backup", "check that the folder is complete (every .parquet file the manifest lists)"),
    ),
    (
        r"(.+): the restored tables do not match the backup's manifest: (.+)",
        N_("backup", "%(1)s: the restored tables do not match the backup's manifest: %(2)s"),
    ),
    (
        r"the backup folder is damaged; use another backup",
        N_("backup", "the backup folder is damaged; use another backup"),
    ),
    (
        r"(.+) already exists and is not an empty folder",
        N_("backup", "%(1)s already exists and is not an empty folder"),
    ),
    (
        r"back up into a new folder, e\.g\. backups/2024-06-30",
        N_("backup", "back up into a new folder, e.g. backups/2024-06-30"),
    ),
    (
        r"(backup|restore) works on a DuckDB warehouse file, not on (.+)",
        N_("backup", "%(1)s works on a DuckDB warehouse file, not on %(2)s"),
    ),
    (
        r"use the engine's own tools \(pg_dump for PostgreSQL, your lake's snapshots for Spark\)",
        N_(
            "backup",
            "use the engine's own tools (pg_dump for PostgreSQL, your lake's snapshots for Spark)",
        ),
    ),
    (r"(.+) cannot be read: (.+)", N_("backup", "%(1)s cannot be read: %(2)s")),
    # A warehouse another process holds (segmentum.warehouse.busy_error), for every command.
    (
        r"the warehouse (\S+) is busy: segmentum serve or another command has it open "
        r"\(process (\d+)\)",
        N_(
            "warehouse",
            "the warehouse %(1)s is busy: segmentum serve or another command has it open "
            "(process %(2)s)",
        ),
    ),
    (
        r"the warehouse (\S+) is busy: segmentum serve or another command has it open",
        N_(
            "warehouse",
            "the warehouse %(1)s is busy: segmentum serve or another command has it open",
        ),
    ),
    (
        r"the warehouse is busy: segmentum serve or another command has it open",
        N_("warehouse", "the warehouse is busy: segmentum serve or another command has it open"),
    ),
    (
        r"wait for that command to finish, or stop segmentum serve, then run this again",
        N_(
            "warehouse",
            "wait for that command to finish, or stop segmentum serve, then run this again",
        ),
    ),
    # What any command says when it cannot go on (segmentum.cli.main, warehouse.resource_error).
    (
        r"unexpected error \((\w+)\): this is a bug in segmentum",
        N_("error", "unexpected error (%(1)s): this is a bug in segmentum"),
    ),
    (
        r"the details are in (.+); please attach that file to a bug report",
        N_("error", "the details are in %(1)s; please attach that file to a bug report"),
    ),
    (
        r"run the command again with --debug to see the details",
        N_("error", "run the command again with --debug to see the details"),
    ),
    (
        r"the disk is full: could not write (.+)",
        N_("error", "the disk is full: could not write %(1)s"),
    ),
    (r"the disk is full \((.+)\)", N_("error", "the disk is full (%(1)s)")),
    (
        r"free space on that disk, or point the temp_directory setting at a bigger one \(DuckDB "
        r"spills what does not fit in memory_limit there; by default a folder beside the "
        r"warehouse file, <file>\.tmp\); then run the command again",
        N_(
            "error",
            "free space on that disk, or point the temp_directory setting at a bigger one (DuckDB "
            "spills what does not fit in memory_limit there; by default a folder beside the "
            "warehouse file, <file>.tmp); then run the command again",
        ),
    ),
    (r"the engine ran out of memory \((.+)\)", N_("error", "the engine ran out of memory (%(1)s)")),
    (
        r"raise the max_temp_size setting, or free disk space, so that it can spill more",
        N_(
            "error",
            "raise the max_temp_size setting, or free disk space, so that it can spill more",
        ),
    ),
    (
        r"raise the memory_limit setting, e\.g\. SEGMENTUM_MEMORY_LIMIT=4GB",
        N_("error", "raise the memory_limit setting, e.g. SEGMENTUM_MEMORY_LIMIT=4GB"),
    ),
    (
        r"(.+) is damaged: it is not the manifest segmentum backup writes",
        N_("backup", "%(1)s is damaged: it is not the manifest segmentum backup writes"),
    ),
    # Campaigns (segmentum.campaigns.core, playbook).
    (rf"there is no campaign {_Q}", N_("campaign", "there is no campaign %(1)s")),
    (
        rf"campaign {_Q} sends by (\w+), not SMS: it has no delivery receipts",
        N_("campaign", "campaign %(1)s sends by %(2)s, not SMS: it has no delivery receipts"),
    ),
    (
        r"see its results: GET (\S+)",
        N_("campaign", "see its results: GET %(1)s"),
    ),
    (r"list them: segmentum campaign list", N_("campaign", "list them: segmentum campaign list")),
    (
        rf"campaign {_Q} was imported from campaign_results: its results stay with the data "
        "loaded",
        N_(
            "campaign",
            "campaign %(1)s was imported from campaign_results: its results stay with the data "
            "loaded",
        ),
    ),
    (
        rf"campaign {_Q} was sent: its log and results are kept",
        N_("campaign", "campaign %(1)s was sent: its log and results are kept"),
    ),
    (
        r"see its results: segmentum campaign results (\S+)",
        N_("campaign", "see its results: segmentum campaign results %(1)s"),
    ),
    (rf"unknown tactic {_Q}", N_("campaign", "unknown tactic %(1)s")),
    (rf"unknown channel {_Q}", N_("campaign", "unknown channel %(1)s")),
    (r"use one of ((?:[\w-]+, )+[\w-]+)", N_("campaign", "use one of %(1)s")),
    (
        rf"a campaign named {_Q} already exists",
        N_("campaign", "a campaign named %(1)s already exists"),
    ),
    (
        r"the control share must be between 0 and 1 \(e\.g\. 0\.1\)",
        N_("campaign", "the control share must be between 0 and 1 (e.g. 0.1)"),
    ),
    (
        r"a survey is shown by web message only",
        N_("campaign", "a survey is shown by web message only"),
    ),
    (r"use --channel web", N_("campaign", "use --channel web")),
    (
        r"a segment campaign needs --target NAME \(or cluster:N\)",
        N_("campaign", "a segment campaign needs --target NAME (or cluster:N)"),
    ),
    (r"cannot make a playbook by (.+)", N_("campaign", "cannot make a playbook by %(1)s")),
    # Message templates (segmentum.campaigns.channels); Jinja's own words stay as it wrote them.
    (
        r"(.+): cannot read the template: (.+)",
        N_("template", "%(1)s: cannot read the template: %(2)s"),
    ),
    (
        r"a template needs a body with es and en texts",
        N_("template", "a template needs a body with es and en texts"),
    ),
    (
        r'write body: \{es: "Hola\.\.\.", en: "Hi\.\.\."\}',
        N_("template", 'write body: {es: "Hola...", en: "Hi..."}'),
    ),
    (r"the template's (\w+) has no es text", N_("template", "the template's %(1)s has no es text")),
    (r"the template's (\w+) has no en text", N_("template", "the template's %(1)s has no en text")),
    (
        r"the template's (\w+) has no es or en text",
        N_("template", "the template's %(1)s has no es or en text"),
    ),
    (
        r"every message goes out in the recipient's language: write both es and en",
        N_("template", "every message goes out in the recipient's language: write both es and en"),
    ),
    (
        r"template (\S+) uses (.+), which segmentum does not know",
        N_("template", "template %(1)s uses %(2)s, which segmentum does not know"),
    ),
    (
        r"template (\S+) writes \{\{ reason \}\}, which a segment campaign cannot fill in for "
        r"its customers \(a segment's name is not for them\)",
        N_(
            "template",
            "template %(1)s writes {{ reason }}, which a segment campaign cannot fill in for its "
            "customers (a segment's name is not for them)",
        ),
    ),
    (
        r"write why in your own words, or \{\{ reason or '\.\.\.' \}\}",
        N_("template", "write why in your own words, or {{ reason or '...' }}"),
    ),
    (
        r"template (\S+) writes \{\{ (\w+) \}\}, which some recipients do not have",
        N_("template", "template %(1)s writes {{ %(2)s }}, which some recipients do not have"),
    ),
    (
        r"write \{\{ (\w+) or '\.\.\.' \}\} or \{% if (\w+) %\}\.\.\.\{% endif %\}",
        N_("template", "write {{ %(1)s or '...' }} or {%% if %(2)s %%}...{%% endif %%}"),
    ),
    (
        r"write \{\{ (\w+) or '\.\.\.' \}\} or \{% if (\w+) %\}\.\.\.\{% endif %\} "
        r"\(or \{\{ greeting \}\}\)",
        N_(
            "template",
            "write {{ %(1)s or '...' }} or {%% if %(2)s %%}...{%% endif %%} (or {{ greeting }})",
        ),
    ),
    (
        r"template (\S+) needs (\w+) and this recipient has none",
        N_("template", "template %(1)s needs %(2)s and this recipient has none"),
    ),
    (
        r"write \{\{ (\w+) or '\.\.\.' \}\} in the template",
        N_("template", "write {{ %(1)s or '...' }} in the template"),
    ),
    (
        r"template (\S+) failed for this recipient: (.+)",
        N_("template", "template %(1)s failed for this recipient: %(2)s"),
    ),
    (
        r"check the \{\{ \}\} and \{% %\} marks of that text: every one opened is closed",
        N_(
            "template",
            "check the {{ }} and {%% %%} marks of that text: every one opened is closed",
        ),
    ),
    (r"template (\S+): (.+)", N_("template", "template %(1)s: %(2)s")),
    # Flows (segmentum.flows).
    (rf"there is no flow named {_Q}", N_("flow", "there is no flow named %(1)s")),
    (r"flows: (.+)", N_("flow", "flows: %(1)s")),
    (r"create one: segmentum flow new", N_("flow", "create one: segmentum flow new")),
    (rf"there is no flow template named {_Q}", N_("flow", "there is no flow template named %(1)s")),
    (r"templates: (.+)", N_("flow", "templates: %(1)s")),
    (r"cannot read (.+?): (.+)", N_("path", "cannot read %(1)s: %(2)s")),
    (r"save it as UTF-8 text", N_("path", "save it as UTF-8 text")),
    # API keys (segmentum.service.auth) and webhook subscriptions (segmentum.history.webhooks).
    (rf"no key {_Q}", N_("key", "no key %(1)s")),
    (r"list them: segmentum api-key list", N_("key", "list them: segmentum api-key list")),
    (r"unknown scope\(s\) (.+)", N_("key", "unknown scope(s) %(1)s")),
    (r"use read, write, admin or track", N_("key", "use read, write, admin or track")),
    (
        rf"there is no webhook subscription {_Q}",
        N_("webhook", "there is no webhook subscription %(1)s"),
    ),
    # Forecasts and model checks (segmentum.history.cohorts, segmentum.models).
    (
        r"a forecast needs snapshots from at least two periods \(one month apart\)",
        N_("history", "a forecast needs snapshots from at least two periods (one month apart)"),
    ),
    (
        r"a forecast needs snapshots from at least two periods \(one week apart\)",
        N_("history", "a forecast needs snapshots from at least two periods (one week apart)"),
    ),
    (
        r"a forecast needs snapshots from at least two periods \(one all apart\)",
        N_("history", "a forecast needs snapshots from at least two periods (one all apart)"),
    ),
    (
        r"build past ones: segmentum history backfill; or step from every snapshot: --freq all",
        N_(
            "history",
            "build past ones: segmentum history backfill; or step from every snapshot: --freq all",
        ),
    ),
    (
        r"build past ones: segmentum history backfill",
        N_("history", "build past ones: segmentum history backfill"),
    ),
    (
        r"the snapshots are (\d+) days apart: a forecast by week needs a snapshot every week",
        N_(
            "history",
            "the snapshots are %(1)s days apart: a forecast by week needs a snapshot every week",
        ),
    ),
    (
        r"forecast by month \(--freq month\), or build weekly snapshots: "
        r"segmentum history backfill --freq week",
        N_(
            "history",
            "forecast by month (--freq month), or build weekly snapshots: "
            "segmentum history backfill --freq week",
        ),
    ),
    (
        r"the snapshots are (\d+) days apart: a forecast by month needs a snapshot every month",
        N_(
            "history",
            "the snapshots are %(1)s days apart: a forecast by month needs a snapshot every month",
        ),
    ),
    (
        r"build monthly snapshots: segmentum history backfill --freq month; or step from every "
        r"snapshot: --freq all",
        N_(
            "history",
            "build monthly snapshots: segmentum history backfill --freq month; or step from "
            "every snapshot: --freq all",
        ),
    ),
    (
        r"not enough history after (\S+) to label a (\d+)-day horizon",
        N_("model", "not enough history after %(1)s to label a %(2)s-day horizon"),
    ),
    (
        r"choose a train date on or before (\S+)",
        N_("model", "choose a train date on or before %(1)s"),
    ),
    (
        r"the holdout ends (\S+), not after the calibration end (\S+)",
        N_("model", "the holdout ends %(1)s, not after the calibration end %(2)s"),
    ),
    (
        r"choose an earlier --calibration-end so some purchases fall after it",
        N_("model", "choose an earlier --calibration-end so some purchases fall after it"),
    ),
    # Loading files (segmentum.ingest, segmentum.demo).
    (
        r"(.+): missing required column\(s\) (.+) for table '(\w+)' \(the file has: (.*)\)",
        N_(
            "ingest",
            "%(1)s: missing required column(s) %(2)s for table '%(3)s' (the file has: %(4)s)",
        ),
    ),
    (
        r"rename the column \((.+)\) or pass --mapping with lines like '(\w+): \"Your Column\"'; "
        r"a log of purchases without amounts loads with --no-amount",
        N_(
            "ingest",
            "rename the column (%(1)s) or pass --mapping with lines like '%(2)s: \"Your Column\"'; "
            "a log of purchases without amounts loads with --no-amount",
        ),
    ),
    (
        r"rename the column \((.+)\) or pass --mapping with lines like '(\w+): \"Your Column\"'",
        N_(
            "ingest",
            "rename the column (%(1)s) or pass --mapping with lines like '%(2)s: \"Your Column\"'",
        ),
    ),
    (rf"unknown table {_Q}", N_("ingest", "unknown table %(1)s")),
    (r"choose one of: (.+)", N_("ingest", "choose one of: %(1)s")),
    (r"--customers must be at least 1", N_("ingest", "--customers must be at least 1")),
    # What an ingest's progress lines say about a step (segmentum.ingest.core).
    (r"([\d,]+) rows", N_("progress", "%(1)s rows")),
    (r"([\d,]+) CSV files", N_("progress", "%(1)s CSV files")),
    (
        r"([\d,]+) accepted, ([\d,]+) quarantined",
        N_("progress", "%(1)s accepted, %(2)s quarantined"),
    ),
    (
        r"removed ([\d,]+) rows of an interrupted batch",
        N_("progress", "removed %(1)s rows of an interrupted batch"),
    ),
    # A campaign's send and results (segmentum.cli, segmentum.campaigns.measure).
    (
        r"([\d,]+) of ([\d,]+) messages failed: (.+)",
        N_("campaign", "%(1)s of %(2)s messages failed: %(3)s"),
    ),
    (r"([\d,]+) of ([\d,]+) messages failed", N_("campaign", "%(1)s of %(2)s messages failed")),
    (
        r"nothing failed is lost: fix the cause and run the send again",
        N_("campaign", "nothing failed is lost: fix the cause and run the send again"),
    ),
    (
        r"run the send again to retry those kept pending",
        N_("campaign", "run the send again to retry those kept pending"),
    ),
    (
        r"no control group to compare with: ([\d,]+) sent, ([\d,]+) failed, ([\d,]+) outcomes",
        N_(
            "campaign",
            "no control group to compare with: %(1)s sent, %(2)s failed, %(3)s outcomes",
        ),
    ),
    (
        r"no results yet: ([\d,]+) sent, ([\d,]+) failed, ([\d,]+) outcomes",
        N_("campaign", "no results yet: %(1)s sent, %(2)s failed, %(3)s outcomes"),
    ),
    # The same, as results published before failures were counted apart said it.
    (
        r"no control group to compare with: ([\d,]+) sent, ([\d,]+) outcomes",
        N_("campaign", "no control group to compare with: %(1)s sent, %(2)s outcomes"),
    ),
    (
        r"no results yet: ([\d,]+) sent, ([\d,]+) outcomes",
        N_("campaign", "no results yet: %(1)s sent, %(2)s outcomes"),
    ),
    # What the market step notes about the population and the white space (segmentum.market).
    (
        r"(\S+) values (.+) name no range of numbers: no customer can be placed in those cells",
        N_(
            "market",
            "%(1)s values %(2)s name no range of numbers: no customer can be placed in those cells",
        ),
    ),
    (
        r"B2B population: customers are counted as companies \(company_id\)",
        N_("market", "B2B population: customers are counted as companies (company_id)"),
    ),
    (
        r"([\d,]+) cells appear in more than one population row: their counts were added "
        r"\(load one file per period, with a period column when you keep several\)",
        N_(
            "market",
            "%(1)s cells appear in more than one population row: their counts were added (load "
            "one file per period, with a period column when you keep several)",
        ),
    ),
    (
        r"([\d,]+) cells hold more customers than people: their penetration has no interval "
        r"\(check the population's units or the places' spelling\)",
        N_(
            "market",
            "%(1)s cells hold more customers than people: their penetration has no interval "
            "(check the population's units or the places' spelling)",
        ),
    ),
    (
        r"white space not scored: fewer than two cells have ([\d,]+) customers \(lower the "
        r"market_min_customers setting, or use coarser cells\)",
        N_(
            "market",
            "white space not scored: fewer than two cells have %(1)s customers (lower the "
            "market_min_customers setting, or use coarser cells)",
        ),
    ),
    (
        r"white space: the best cell by value per customer, pooled penetration (\S+%); "
        r"headroom measured against (\S+%)",
        N_(
            "market",
            "white space: the best cell by value per customer, pooled penetration %(1)s; "
            "headroom measured against %(2)s",
        ),
    ),
    (
        r"white space: ([\d,]+) best cells by value per customer, pooled penetration (\S+%); "
        r"headroom measured against (\S+%)",
        N_(
            "market",
            "white space: %(1)s best cells by value per customer, pooled penetration %(2)s; "
            "headroom measured against %(3)s",
        ),
    ),
    # Why an SMS was not sent, and the sender setting (segmentum.campaigns.sms).
    (
        r"the message takes (\d+) (\S+) parts \(([\d,]+) (?:septets|UCS-2 units)\) and "
        r"sms_max_parts is (\d+): shorten the template or avoid characters outside GSM-7 "
        r"\(e\.g\. á, ç, emoji\)",
        N_(
            "sms",
            "the message takes %(1)s %(2)s parts (%(3)s UCS-2 units) and sms_max_parts is "
            "%(4)s: shorten the template or avoid characters outside GSM-7 (e.g. á, ç, emoji)",
        ),
    ),
    (
        r"the message takes (\d+) (\S+) parts \(([\d,]+) septets\) and sms_max_parts is "
        r"(\d+): shorten the template",
        N_(
            "sms",
            "the message takes %(1)s %(2)s parts (%(3)s septets) and sms_max_parts is %(4)s: "
            "shorten the template",
        ),
    ),
    (rf"{_Q} is not a valid phone number", N_("sms", "%(1)s is not a valid phone number")),
    (r"the message is empty", N_("sms", "the message is empty")),
    (r"no SMS sender is configured", N_("sms", "no SMS sender is configured")),
    (
        r"set sms_sender_id to your number in E\.164 \(\+34600111222\) or an alphanumeric id "
        r"of at most 11 characters \(e\.g\. TIENDA\)",
        N_(
            "sms",
            "set sms_sender_id to your number in E.164 (+34600111222) or an alphanumeric id "
            "of at most 11 characters (e.g. TIENDA)",
        ),
    ),
    (
        rf"sms_sender_id={_Q} is not a valid sender",
        N_("sms", "sms_sender_id=%(1)s is not a valid sender"),
    ),
    (
        r"an alphanumeric sender id has 1 to 11 letters \(A-Z, a-z\), digits and spaces, "
        r"with at least one letter; a numeric one is a phone number such as \+34600111222",
        N_(
            "sms",
            "an alphanumeric sender id has 1 to 11 letters (A-Z, a-z), digits and spaces, "
            "with at least one letter; a numeric one is a phone number such as +34600111222",
        ),
    ),
    # A web-message survey's answer that cannot be stored (segmentum.satisfaction.survey).
    (r"campaign (\S+) asks no survey", N_("survey", "campaign %(1)s asks no survey")),
    (
        r"nps must be a whole number from 0 to 10",
        N_("survey", "nps must be a whole number from 0 to 10"),
    ),
    (r"send nps: 0\.\.10", N_("survey", "send nps: 0..10")),
    (
        rf"{_Q} is not one of the survey's options",
        N_("survey", "%(1)s is not one of the survey's options"),
    ),
    (r"send one of: (.+)", N_("survey", "send one of: %(1)s")),
    (
        rf"visitor {_Q} was not sent campaign (\S+)",
        N_("survey", "visitor %(1)s was not sent campaign %(2)s"),
    ),
    (
        r"only the campaign's audience can answer its survey",
        N_("survey", "only the campaign's audience can answer its survey"),
    ),
    (
        rf"visitor {_Q} already answered campaign (\S+)",
        N_("survey", "visitor %(1)s already answered campaign %(2)s"),
    ),
    (
        r"an answer needs the visitor and the campaign_id",
        N_("survey", "an answer needs the visitor and the campaign_id"),
    ),
    (r"send both as text", N_("survey", "send both as text")),
    (r"campaign (\S+) is not a web message", N_("survey", "campaign %(1)s is not a web message")),
    (r"campaign (\S+) is no web message", N_("survey", "campaign %(1)s is not a web message")),
    # What the API's schema says of a value it refuses (pydantic's words).
    (r"Field required", N_("api", "the field is required")),
    (
        r"Input should be less than or equal to (\S+)",
        N_("api", "the value must be at most %(1)s"),
    ),
    (
        r"Input should be greater than or equal to (\S+)",
        N_("api", "the value must be at least %(1)s"),
    ),
    (r"Input should be less than (\S+)", N_("api", "the value must be below %(1)s")),
    (r"Input should be greater than (\S+)", N_("api", "the value must be above %(1)s")),
    (r"Input should be a valid integer.*", N_("api", "the value must be a whole number")),
    (r"Input should be a valid number.*", N_("api", "the value must be a number")),
    (r"Input should be a valid string", N_("api", "the value must be text")),
    (
        r"String should have at most (\d+) characters?",
        N_("api", "the text must have at most %(1)s characters"),
    ),
    (
        r"String should have at least (\d+) characters?",
        N_("api", "the text must have at least %(1)s characters"),
    ),
    (rf"String should match pattern {_Q}", N_("api", "the text does not have the form %(1)s")),
    (r"JSON decode error", N_("api", "the body is not valid JSON")),
    # What a flow's YAML gets wrong, and what to write (segmentum.flows.spec); each problem's
    # message and hint, translated one by one (see flow_problem).
    (
        r"a flow is a mapping with name, trigger and steps",
        N_("flow", "a flow is a mapping with name, trigger and steps"),
    ),
    (r"start from a template", N_("flow", "start from a template")),
    (rf"unknown field {_Q}", N_("flow", "unknown field %(1)s")),
    (r"fields: (.+)", N_("flow", "fields: %(1)s")),
    (rf"{_Q} is not a flow name", N_("flow", "%(1)s is not a flow name")),
    (r"the flow has no name", N_("flow", "the flow has no name")),
    (
        r"write name: abandoned_cart \(letters, digits, _ \. -; up to 80\)",
        N_("flow", "write name: abandoned_cart (letters, digits, _ . -; up to 80)"),
    ),
    (
        r"write the description in both languages",
        N_("flow", "write the description in both languages"),
    ),
    (r'e\.g\. \{es: "\.\.\.", en: "\.\.\."\}', N_("flow", 'e.g. {es: "...", en: "..."}')),
    (rf"{_Q} is not allowed", N_("flow", "%(1)s is not allowed")),
    (
        r"write never, always or a duration, e\.g\. 30 days",
        N_("flow", "write never, always or a duration, e.g. 30 days"),
    ),
    (rf"{_Q} is not a duration", N_("flow", "%(1)s is not a duration")),
    (r"e\.g\. (\d+) days", N_("flow", "e.g. %(1)s days")),
    (rf"{_Q} is not a range of hours", N_("flow", "%(1)s is not a range of hours")),
    (
        r'write quiet_hours: "21:00-09:00", or false for none',
        N_("flow", 'write quiet_hours: "21:00-09:00", or false for none'),
    ),
    (r"the flow has no trigger", N_("flow", "the flow has no trigger")),
    (r"not a mapping", N_("flow", "not a mapping")),
    (
        r"write one of  trigger: \{segment: NAME\},  trigger: \{event: cart_abandoned\}  or  "
        r"trigger: \{date: birthday\}",
        N_(
            "flow",
            "write one of  trigger: {segment: NAME},  trigger: {event: cart_abandoned}  or  "
            "trigger: {date: birthday}",
        ),
    ),
    (
        r"give exactly one of segment, event or date",
        N_("flow", "give exactly one of segment, event or date"),
    ),
    (r"the segment is empty", N_("flow", "the segment is empty")),
    (r"the event is empty", N_("flow", "the event is empty")),
    (r"the date is empty", N_("flow", "the date is empty")),
    (r"write on: enter or on: exit", N_("flow", "write on: enter or on: exit")),
    (rf"{_Q} is not a date segmentum knows", N_("flow", "%(1)s is not a date segmentum knows")),
    (
        r"use birthday or expected_next_purchase",
        N_("flow", "use birthday or expected_next_purchase"),
    ),
    (r"before / after are for date triggers", N_("flow", "before / after are for date triggers")),
    (r"remove them", N_("flow", "remove them")),
    (
        r"e\.g\. exit: \{converted: true, left_segment: true\}",
        N_("flow", "e.g. exit: {converted: true, left_segment: true}"),
    ),
    (rf"unknown exit rule {_Q}", N_("flow", "unknown exit rule %(1)s")),
    (r"exit rules: (.+)", N_("flow", "exit rules: %(1)s")),
    (rf"{_Q} is not true or false", N_("flow", "%(1)s is not true or false")),
    (r"write (\w+): true", N_("flow", "write %(1)s: true")),
    (r"the flow has no steps", N_("flow", "the flow has no steps")),
    (
        r"add steps: a list of wait, condition, send, split",
        N_("flow", "add steps: a list of wait, condition, send, split"),
    ),
    (r"a step is a mapping", N_("flow", "a step is a mapping")),
    (r"e\.g\. - wait: 1 hour", N_("flow", "e.g. - wait: 1 hour")),
    (
        r"a step is exactly one of wait, condition, send or split",
        N_("flow", "a step is exactly one of wait, condition, send or split"),
    ),
    (
        r"a (\w+) step has (\w+) and an optional name",
        N_("flow", "a %(1)s step has %(2)s and an optional name"),
    ),
    (
        r"write a number and a unit: 30 minutes, 2 hours, 1 day, 1 week",
        N_("flow", "write a number and a unit: 30 minutes, 2 hours, 1 day, 1 week"),
    ),
    (r"write exit or continue", N_("flow", "write exit or continue")),
    (
        r"see the rule language in docs/segments\.md",
        N_("flow", "see the rule language in docs/segments.md"),
    ),
    (rf"{_Q} is not a control share", N_("flow", "%(1)s is not a control share")),
    (
        r"write split: \{control: 10%\} \(between 0% and 50%\)",
        N_("flow", "write split: {control: 10%%} (between 0%% and 50%%)"),
    ),
    (r"a send is a mapping", N_("flow", "a send is a mapping")),
    (r"give channel, subject and body", N_("flow", "give channel, subject and body")),
    (rf"{_Q} is not a channel", N_("flow", "%(1)s is not a channel")),
    (
        r"a send has channel, subject, body \(and sms: the text of an SMS\)",
        N_("flow", "a send has channel, subject, body (and sms: the text of an SMS)"),
    ),
    (
        r"the (subject|body|sms) is not a text in each language",
        N_("flow", "the %(1)s is not a text in each language"),
    ),
    (
        r'write (subject|body|sms): \{es: "\.\.\.", en: "\.\.\."\}',
        N_("flow", 'write %(1)s: {es: "...", en: "..."}'),
    ),
    (r"the flow never sends anything", N_("flow", "the flow never sends anything")),
    (r"add a send step", N_("flow", "add a send step")),
)
#: Why ingest quarantined a row: a column and what is wrong with it, or a repeat. A reason
#: joins several with "; " (see segmentum.ingest.core); each is translated on its own.
_C = r"([\w ]+?)"
REASONS: tuple[tuple[str, tuple[str, str]], ...] = (
    (rf"{_C} is not a whole number", N_("quarantine", "%(1)s is not a whole number")),
    (rf"{_C} is not a number", N_("quarantine", "%(1)s is not a number")),
    (rf"{_C} is not a date", N_("quarantine", "%(1)s is not a date")),
    (rf"{_C} is not a date/time", N_("quarantine", "%(1)s is not a date/time")),
    (rf"{_C} is not yes/no", N_("quarantine", "%(1)s is not yes/no")),
    (rf"{_C} is not an email address", N_("quarantine", "%(1)s is not an email address")),
    (rf"{_C} is not a phone number", N_("quarantine", "%(1)s is not a phone number")),
    (rf"{_C} is missing", N_("quarantine", "%(1)s is missing")),
    (
        rf"{_C} is missing \(and so is anonymous_id\)",
        N_("quarantine", "%(1)s is missing (and so is anonymous_id)"),
    ),
    (
        rf"{_C} is negative \(an adjustment such as bad debt, not a sale\)",
        N_("quarantine", "%(1)s is negative (an adjustment such as bad debt, not a sale)"),
    ),
    (rf"{_C} is negative", N_("quarantine", "%(1)s is negative")),
    (rf"{_C} is zero", N_("quarantine", "%(1)s is zero")),
    (
        rf"{_C} is not between (\S+) and (\S+)",
        N_("quarantine", "%(1)s is not between %(2)s and %(3)s"),
    ),
    (rf"{_C} is in the future", N_("quarantine", "%(1)s is in the future")),
    (
        rf"{_C} is in the future \(later than (\S+), the load day\)",
        N_("quarantine", "%(1)s is in the future (later than %(2)s, the load day)"),
    ),
    (
        rf"{_C} is in the future \(later than (\S+), today in the time zone furthest ahead\)",
        N_(
            "quarantine",
            "%(1)s is in the future (later than %(2)s, today in the time zone furthest ahead)",
        ),
    ),
    (
        rf"{_C} is before (\S+) \(setting earliest_date\)",
        N_("quarantine", "%(1)s is before %(2)s (setting earliest_date)"),
    ),
    (rf"{_C} is not treatment or control", N_("quarantine", "%(1)s is not treatment or control")),
    (
        rf"{_C} is empty, and so are the other scores, the comment and the answer",
        N_("quarantine", "%(1)s is empty, and so are the other scores, the comment and the answer"),
    ),
    (r"exact duplicate of row (\S+)", N_("quarantine", "exact duplicate of row %(1)s")),
    (r"([\w/]+) repeats row (\S+)", N_("quarantine", "%(1)s repeats row %(2)s")),
    (r"already in the warehouse", N_("quarantine", "already in the warehouse")),
    (
        r"malformed line \(wrong number of fields or bad quoting\)",
        N_("quarantine", "malformed line (wrong number of fields or bad quoting)"),
    ),
    (r"malformed line: (.+)", N_("quarantine", "malformed line: %(1)s")),
    (r"malformed line", N_("quarantine", "malformed line")),
)


def translate_reason(lang: str, reason: str | None) -> str:
    """Why a row was quarantined, in ``lang`` (each of its "; "-joined parts; a part whose
    pattern is unknown stays as written)."""
    if not reason:
        return ""
    if lang == "en":
        return reason
    return "; ".join(_translated(lang, REASONS, part) or part for part in reason.split("; "))


def _translated(
    lang: str,
    table: tuple[tuple[str, tuple[str, str]], ...],
    text: str,
    words: frozenset[str] = frozenset(),
) -> str | None:
    """``text`` in ``lang`` by the first (pattern, (context, msgid)) of ``table`` it matches,
    the pattern's groups filled in (those among ``words`` translated too); None: no match."""
    t = translations(lang)

    def part(ctx: str, g: str) -> str:
        if g in words:
            return str(t.upgettext("rule", g))
        if ctx == "rule" and (" or " in g or ", " in g):  # "did you mean a or b?"
            pieces = re.split(r"(, | or )", g)
            return "".join(
                f" {t.upgettext(*_OR)} "
                if p == " or "
                else str(t.upgettext("rule", p))
                if p in words
                else p
                for p in pieces
            )
        if lang != "en" and re.fullmatch(r"-?\d+\.\d+%", g):  # a share: 0.2587%
            digits = len(g.split(".")[1]) - 1
            return percent(float(g[:-1]) / 100, lang, digits)
        if ctx in ("progress", "campaign", "market", "doctor", "lookalike", "api") and re.fullmatch(
            r"[\d,]+", g
        ):
            return number(int(g.replace(",", "")), lang, 0)  # a count, grouped
        if ctx == "campaign" and lang != "en" and " " in g:  # why a message failed, inside
            return failure_reason(lang, g)
        if ctx == "ingest" and lang != "en":  # the columns a file lacks, and their synonyms
            g = g.replace(" or ", f" {t.upgettext(*_OR)} ").replace(
                ": e.g. ", f": {t.upgettext(*_EG)} "
            )
        if ctx == "usage" and re.fullmatch(r"-?\d+(\.\d+)?", g):  # a value given to an option
            return number(float(g), lang, len(g.partition(".")[2]))
        if ctx == "doctor" and re.fullmatch(r"[\d,]+\.\d MB", g):  # a size: 1,234.5 MB
            return number(float(g[:-3].replace(",", "")), lang, 1) + " MB"
        if lang != "en" and re.fullmatch(r"\d{4}-\d{2}-\d{2}(, \d{4}-\d{2}-\d{2})*", g):
            return ", ".join(date(d, lang) for d in g.split(", "))  # days as the language writes
        return g

    for pattern, (ctx, msgid) in table:
        m = re.fullmatch(pattern, text.strip())
        if m:
            parts = {str(i + 1): part(ctx, g) for i, g in enumerate(m.groups())}
            return str(t.upgettext(ctx, msgid) % parts)
    return None


_AT = N_("rule", "at position %(1)s")  # where in a rule an error is
_OR = N_("rule", "or")  # between the names of a "did you mean a or b?"
_EG = N_("usage", "e.g.")  # before examples inside a message: "amount: e.g. amount, total"
_WORDS = {
    N_("rule", "number"),
    N_("rule", "text"),
    N_("rule", "date"),
    N_("rule", "boolean"),
    N_("rule", "true/false value"),
    N_("rule", "end of rule"),
    # What the rule parser expected and found: "expected a column, a segment, a value or '(',
    # found the end of the rule".
    N_("rule", "a column"),
    N_("rule", "a segment"),
    N_("rule", "a value"),
    N_("rule", "the end of the rule"),
    N_("rule", "'(' to open the list of values"),
    N_("rule", "',' or ')' to close the list"),
    N_("rule", "'and' between the two bounds"),
    N_("rule", "'null' after 'is'"),
    N_("rule", "a number after '-'"),
    N_("rule", "a value (a number, a 'text' in quotes, true or false)"),
    N_("rule", "')' to close the parenthesis"),
    N_("rule", "a number of days, weeks or months after 'last'"),
    N_("rule", "'hours', 'days', 'weeks' or 'months'"),
    N_("rule", "a tag in quotes, e.g. has_tag('travel')"),
    N_("rule", "')' after the tag"),
    N_("rule", "',' or ')'"),
    N_("rule", "one window only"),
    N_("rule", "')' to close the call"),
}


def translate_message(lang: str, text: str | None) -> str:
    """A library message in ``lang`` when its pattern is known (else unchanged); a stored
    user error, "message (hint: what to do)", part by part."""
    if not text:
        return ""
    words = frozenset(m for _, m in _WORDS)
    # A rule's error: "message at position 7:" (the rule and a caret follow on their lines);
    # split first, as a pattern ending in "found (.+)" would swallow the position.
    at = re.fullmatch(r"(.+) at position (\d+):", text.strip()) if lang != "en" else None
    if at:
        head = _known(lang, at.group(1), words) or at.group(1)
        where = translations(lang).upgettext(*_AT) % {"1": at.group(2)}
        return f"{head} {where}:"
    found = _known(lang, text, words)
    if found is None and lang != "en":
        parts = re.fullmatch(r"(.+) \(hint: (.+)\)", text.strip(), flags=re.S)
        if parts:
            message, hint = (_known(lang, x, words) or x for x in parts.groups())
            return f"{message} ({translations(lang).upgettext(*_HINT)}: {hint})"
    return found or text


_FLOW_AT_LINE = N_("flow", "%(source)s, line %(line)s, %(field)s: %(message)s")
_FLOW_RULE = N_("flow", "%(reason)s at position %(at)s of %(rule)s")


def failure_reason(lang: str, text: str) -> str:
    """Why a message failed, in ``lang``: a known reason, also after the customer it is about
    ("C0001: the message takes 5 UCS-2 parts..."); a provider's own words stay as given."""
    if lang == "en":
        return text
    known = _translated(lang, MESSAGES, text)
    if known is not None:
        return known
    about = re.fullmatch(r"(\S+): (.+)", text.strip(), flags=re.S)
    inner = _translated(lang, MESSAGES, about.group(2)) if about else None
    return f"{about.group(1)}: {inner}" if about and inner is not None else text


def flow_problem(lang: str, problem: Any) -> tuple[str, str | None]:
    """A flow's problem (``segmentum.flows.spec.Problem``) in ``lang``: "file, line 15,
    steps[1].wait: message" and its hint, each part through the catalogs."""
    t = translations(lang)
    message = flow_problem_message(lang, str(problem.message))
    parts = {"source": problem.source, "field": problem.field, "message": message}
    if problem.line:
        parts["line"] = number(problem.line, lang, 0) if lang != "en" else str(problem.line)
        text = t.upgettext(*_FLOW_AT_LINE) % parts
    else:
        text = f"{problem.source}, {problem.field}: {message}"  # no words to translate
    hint = translate_message(lang, problem.hint) if problem.hint else None
    return text, hint


def flow_more_problems(lang: str, more: int) -> str:
    """What follows the first of several problems: "(and 2 more problems)"."""
    t = translations(lang)
    said = t.ungettext("(and %(n)s more problem)", "(and %(n)s more problems)", more)
    return str(said % {"n": number(more, lang, 0) if lang != "en" else str(more)})


def flow_problem_message(lang: str, text: str) -> str:
    """A flow problem's message in ``lang``: a condition's rule error ("<reason> at position 6
    of 'clv >> 3'") has the rule parser's reason inside; anything else is a MESSAGES pattern."""
    at = re.fullmatch(r"(.+) at position (\d+) of (.+)", text, flags=re.S)
    if at and lang != "en":
        reason = translate_message(lang, at.group(1))
        return str(
            translations(lang).upgettext(*_FLOW_RULE)
            % {"reason": reason, "at": at.group(2), "rule": at.group(3)}
        )
    return translate_message(lang, text)


# A saved segment's error names the segment first: "segment vip: <the rule's message>".
_ABOUT_SEGMENT = N_("segment", "segment %(1)s: %(2)s")


def _known(lang: str, text: str, words: frozenset[str]) -> str | None:
    """``text`` in ``lang`` when its pattern is known, also after a segment's name; None
    when it is not."""
    found = _translated(lang, MESSAGES, text, words)
    about = None if found is not None else re.fullmatch(r"segment (\w+): (.+)", text.strip())
    if about:
        inner = _known(lang, about.group(2), words)
        if inner is not None:
            found = translations(lang).upgettext(*_ABOUT_SEGMENT) % {
                "1": about.group(1),
                "2": inner,
            }
    return found


_HINT = N_("error", "hint")  # what a user error says to do: "message (hint: ...)"
HINT_WORD = _HINT
ERROR_WORD = N_("error", "error")  # the command line's "error: ..." line


def error_text(lang: str, exc: Any) -> str:
    """A user error (its message and hint) in ``lang``, as ``str(exc)`` reads it in English;
    the parts whose pattern is unknown stay as written."""
    message = translate_message(lang, getattr(exc, "message", None) or str(exc))
    hint = getattr(exc, "hint", None)
    if not hint:
        return message
    word = translations(lang).upgettext(*_HINT)
    return f"{message} ({word}: {translate_message(lang, hint)})"


# ---------------------------------------------------------------------- catalog upkeep
def extract_messages() -> Any:
    """Every translatable text of the package (Python ``_()`` / ``N_()`` and templates)."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

    root = Path(__file__).parent
    keywords = {**DEFAULT_KEYWORDS, "N_": ((1, "c"), 2)}
    jinja = "**/templates/**.html"
    # Python modules that translate (they import this module); others may name things ``_``.
    users = sorted(
        str(f.relative_to(root))
        for f in root.rglob("*.py")
        if "i18n" in f.read_text(encoding="utf-8") or f.parent.name == "service"
    )
    method_map = [(jinja, "jinja2.ext:babel_extract"), *((u, "python") for u in users)]
    method_map.append(("**.py", "ignore"))
    options = {jinja: {"extensions": "jinja2.ext.i18n", "trim_blocks": "1", "lstrip_blocks": "1"}}
    catalog = Catalog(project="segmentum", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        root, method_map, options, keywords=keywords
    ):
        if isinstance(message, tuple):  # ngettext: (singular, plural[, count expression])
            message = tuple(m for m in message[:2] if m)
            if len(message) != 2:
                continue
        if not message:
            continue
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    # The settings' help texts (segmentum settings), written once in config.SETTINGS.
    from segmentum.config import SETTINGS

    for s in SETTINGS:
        catalog.add(s.help, None, [("config.py", 0)], context="setting")
    return catalog


def _forms(text: Any) -> list[str]:
    """A catalog entry's text, or its plural forms."""
    return [str(x or "") for x in text] if isinstance(text, tuple | list) else [str(text or "")]


def update_catalogs() -> dict[str, int]:
    """Merge newly extracted texts into every ``.po`` (English ones filled with the msgid);
    returns how many entries of each language still need a translation."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = extract_messages()
    missing = {}
    for lang in LANGUAGES:
        po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.exists():
            with po.open("rb") as f:
                catalog = read_po(f, locale=lang, domain=DOMAIN)
        else:
            po.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=lang, domain=DOMAIN, project="segmentum", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        for m in catalog:
            if m.id and lang == "en" and not any(_forms(m.string)):
                m.string = m.id
        missing[lang] = sum(1 for m in catalog if m.id and not all(_forms(m.string)))
        with po.open("wb") as f:
            write_po(f, catalog, width=100, omit_header=False, sort_output=True)
    translations.cache_clear()
    return missing


if __name__ == "__main__":  # python -m segmentum.i18n: refresh the catalogs after editing texts
    print(update_catalogs())
