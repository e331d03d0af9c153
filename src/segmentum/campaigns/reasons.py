"""Why a customer is in a campaign, and how to greet them, in the recipient's language.

Audiences explain every member twice: an English ``reason`` computed in the engine (what the
CLI and the audience listing show) and the facts behind it as ``why_*`` columns (amounts,
rates, stages, items). The send log keeps those facts as JSON (``reason_args``), and this
module turns them into a sentence in Spanish or English, with money in the configured currency
and numbers in the recipient's locale. A fact that is missing drops its clause: a person never
reads ``nan``, ``None`` or ``NaT``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from segmentum import i18n

LANGUAGES = ("es", "en")

# The words a reason uses for stored labels (value tiers, lifecycle stages), per language.
_WORDS: dict[str, dict[str, str]] = {
    "es": {
        "high": "alto",
        "medium": "medio",
        "low": "bajo",
        "lapsed": "inactivo",
        "lost": "perdido",
        "at_risk": "en riesgo",
        "active": "activo",
        "new": "nuevo",
    },
    "en": {"at_risk": "at risk"},
}

# One sentence per tactic and language; ``{name}`` fields come from the facts, formatted.
_TEXTS: dict[str, dict[str, str]] = {
    "retention": {
        "es": "cliente valioso (valor {tier}, ha gastado {spent}), riesgo de abandono {risk}",
        "en": "valuable ({tier} value, spent {spent}), churn risk {risk}",
    },
    "retention_was": {"es": " (antes {was})", "en": " (was {was})"},
    "winback": {
        "es": "{stage} tras gastar {spent} (valor {tier})",
        "en": "{stage} after spending {spent} ({tier} value)",
    },
    "winback_days": {
        "es": "; última compra hace {days} días",
        "en": "; last purchase {days} days ago",
    },
    "up_sell_ticket": {
        "es": "alto potencial (CLV {clv}), pero un ticket de {value}, por debajo de la "
        "mediana de {segment} ({median})",
        "en": "high potential (CLV {clv}) but ticket {value} below the {segment} median {median}",
    },
    "up_sell_frequency": {
        "es": "alto potencial (CLV {clv}), pero {value} compras, por debajo de la mediana de "
        "{segment} ({median})",
        "en": "high potential (CLV {clv}) but frequency {value} below the {segment} median "
        "{median}",
    },
    "cross_sell": {
        "es": "compró {bought} pero nunca {missing}",
        "en": "bought {bought} but never {missing}",
    },
    "cross_sell_lift": {
        "es": " (se compran juntos {lift} veces más de lo esperado)",
        "en": " (bought together {lift}x more often than chance)",
    },
    "acquisition": {"es": "se parece a {target}", "en": "looks like {target}"},
    "detractors": {
        "es": "detractor (NPS {nps} el {when}), CLV {clv} (valor {tier})",
        "en": "detractor (NPS {nps} on {when}), CLV {clv} ({tier} value)",
    },
    "detractors_said": {"es": ': "{comment}"', "en": ': "{comment}"'},
    "segment": {"es": "en el segmento {segment}", "en": "in segment {segment}"},
    "cluster": {
        "es": "en el segmento descubierto {segment}",
        "en": "in discovered segment {segment}",
    },
}

# The greeting when the first name is known, and the neutral one when it is not.
GREETINGS = {
    "es": ("Hola {first_name}", "Hola"),
    "en": ("Hi {first_name}", "Hello"),
}


def missing(value: Any) -> bool:
    """None, NaN, NaT, pandas' NA or an empty / blank text: nothing a person should read."""
    if isinstance(value, str):
        return not value.strip() or value.strip().lower() in ("nan", "none", "nat", "null")
    return i18n.is_missing(value)


def greeting(lang: str, first_name: Any) -> str:
    """``Hola Martina`` / ``Hi Martina``; ``Hola`` / ``Hello`` when the name is missing."""
    known, neutral = GREETINGS.get(lang, GREETINGS["en"])
    return neutral if missing(first_name) else known.format(first_name=str(first_name).strip())


def facts(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The ``why_*`` columns of an audience row, missing ones left out (keys without why_)."""
    out = {}
    for k, v in row.items():
        if str(k).startswith("why_") and not missing(v):
            out[str(k)[4:]] = v.item() if hasattr(v, "item") else v
    return out


def dumps(row: Mapping[Any, Any]) -> str:
    """The facts of a row as the JSON kept in the send log."""
    return json.dumps(facts(row), ensure_ascii=False, default=str, sort_keys=True)


def _word(lang: str, value: Any) -> str:
    text = str(value)
    return _WORDS.get(lang, {}).get(text, text)


def text(
    tactic: str, args: Mapping[str, Any] | str | None, lang: str, currency: str | None = "EUR"
) -> str | None:
    """The reason as a sentence in ``lang``; None when the facts are not enough for one.

    Examples
    --------
    >>> facts = {"stage": "lapsed", "spent": 39984.4, "tier": "high", "days": 120}
    >>> print(text("winback", facts, "es"))
    inactivo tras gastar 39.984\xa0€ (valor alto); última compra hace 120 días
    """
    if isinstance(args, str):
        try:
            args = json.loads(args) if args else {}
        except ValueError:
            args = {}
    a = {k: v for k, v in (args or {}).items() if not missing(v)}
    lang = lang if lang in LANGUAGES else "en"

    def money(key: str) -> str:
        if not currency:  # amounts of unknown currency: a plain number
            return i18n.number(a[key], lang, 0)
        return i18n.money(a[key], lang, currency)

    def say(key: str, **fields: Any) -> str:
        return _TEXTS[key][lang].format(**fields)

    try:
        if tactic == "retention":
            out = say(
                "retention",
                tier=_word(lang, a["tier"]),
                spent=money("spent"),
                risk=i18n.probability(a["risk"], lang),
            )
            if "was" in a:
                out += say("retention_was", was=i18n.probability(a["was"], lang))
            return out
        if tactic == "winback":
            out = say(
                "winback",
                stage=_word(lang, a["stage"]),
                spent=money("spent"),
                tier=_word(lang, a["tier"]),
            )
            if "days" in a:
                out += say("winback_days", days=i18n.number(a["days"], lang, 0))
            return out
        if tactic == "up_sell":
            ticket = a["kind"] == "ticket"
            fmt = money if ticket else (lambda k: i18n.number(a[k], lang, 0))
            return say(
                "up_sell_ticket" if ticket else "up_sell_frequency",
                clv=money("clv"),
                value=fmt("value"),
                median=fmt("median"),
                segment=i18n.label(lang, "rfm_segment", a["segment"]),
            )
        if tactic == "cross_sell":
            out = say("cross_sell", bought=a["bought"], missing=a["missing"])
            if "lift" in a:
                out += say("cross_sell_lift", lift=i18n.number(a["lift"], lang, 1))
            return out
        if tactic == "acquisition":
            return say("acquisition", target=a["target"])
        if tactic == "detractors":
            out = say(
                "detractors",
                nps=i18n.number(a["nps"], lang, 0),
                when=i18n.date(a["when"], lang),
                clv=money("clv"),
                tier=_word(lang, a["tier"]),
            )
            if "comment" in a:
                out += say("detractors_said", comment=str(a["comment"])[:120])
            return out
        if tactic == "segment":
            return say("cluster" if a.get("kind") == "cluster" else "segment", segment=a["segment"])
    except (KeyError, TypeError, ValueError):
        return None
    return None
