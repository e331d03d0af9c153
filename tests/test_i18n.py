"""Spanish and English catalogs are complete, and numbers, money and dates follow the locale."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from segmentum import i18n

TEMPLATES = Path(i18n.__file__).parent / "service" / "templates"
# Texts that are the same word in both languages.
SAME_IN_SPANISH = {
    "CLV",
    "Control",
    "control",
    "Email",
    "Error",
    "error",
    "incremental",
    "no",
    "total",
    "webhook",
}


def _forms(text: str | tuple[str, ...] | list[str]) -> list[str]:
    """A message's text, or its plural forms."""
    return [text] if isinstance(text, str) else list(text)


def _catalog(lang: str):  # type: ignore[no-untyped-def]
    po = i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        return read_po(f, locale=lang)


@pytest.fixture(scope="module")
def extracted():  # type: ignore[no-untyped-def]
    return i18n.extract_messages()


def test_every_text_has_a_spanish_translation_that_is_not_english(extracted) -> None:  # type: ignore[no-untyped-def]
    es = _catalog("es")
    missing, english = [], []
    for m in extracted:
        if not m.id:
            continue
        found = es.get(m.id, context=m.context)
        if found is None or not all(_forms(found.string)):
            missing.append((m.context, m.id))
        elif any(f in _forms(m.id) for f in _forms(found.string)) and m.id not in SAME_IN_SPANISH:
            english.append((m.context, m.id))
    assert not missing, f"add Spanish for these (python -m segmentum.i18n, then edit es): {missing}"
    assert not english, f"these are still English in the Spanish catalog: {english}"


def test_every_text_is_in_the_english_catalog(extracted) -> None:  # type: ignore[no-untyped-def]
    en = _catalog("en")
    missing = [
        (m.context, m.id)
        for m in extracted
        if m.id and not ((e := en.get(m.id, context=m.context)) and all(_forms(e.string)))
    ]
    assert not missing, f"run: python -m segmentum.i18n ({missing})"


def test_placeholders_survive_translation(extracted) -> None:  # type: ignore[no-untyped-def]
    es = _catalog("es")
    for m in extracted:
        found = es.get(m.id, context=m.context) if m.id else None
        if found is None or not all(_forms(found.string)):
            continue
        for pattern in (r"%\(\w+\)s", r"\{\{\s*\w+\s*\}\}"):
            for form in _forms(found.string):  # every plural form keeps the plural's placeholders
                source = _forms(m.id)[-1]
                assert sorted(re.findall(pattern, source)) == sorted(re.findall(pattern, form)), (
                    m.id,
                    form,
                )


def test_templates_hold_no_text_outside_the_catalog() -> None:
    """Words between tags must come from ``_()``: a designer's English never leaks into es."""
    allowed = {"segmentum", "English", "Español"}
    leaks = []
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text(encoding="utf-8")
        # Expressions may hold quoted strings with braces in them ('Hi {{ first_name }}').
        expr = r"\{\{(?:'[^']*'|\"[^\"]*\"|[^'\"}]|\}(?!\}))*\}\}"
        text = re.sub(r"\{#.*?#\}|\{%.*?%\}|" + expr, " ", text, flags=re.S)
        text = re.sub(r"<script\b.*?</script>|<style\b.*?</style>", " ", text, flags=re.S)
        text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
        for word in re.findall(r"[A-Za-zÁÉÍÓÚáéíóúñÑ]{2,}", text):
            if word not in allowed:
                leaks.append(f"{path.name}: {word}")
    assert not leaks, leaks


def test_data_labels_are_translated_by_their_column() -> None:
    assert i18n.label("es", "rfm_segment", "Champions") == "Campeones"
    assert i18n.label("es", "value_tier", "high") == "alto"
    assert i18n.label("es", "lifecycle_stage", "at_risk") == "en riesgo"
    assert i18n.label("es", "best_channel", "email") == "correo electrónico"
    assert i18n.label("es", "state_from", "(not yet a customer)") == "(aún no era cliente)"
    assert i18n.label("en", "value_tier", "high") == "high"
    assert i18n.label("es", "city", "Madrid") == "Madrid"  # data, not a label
    # Every status a run or a step can have in the run log.
    assert [i18n.label("es", "status", s) for s in ("ok", "failed", "running", "interrupted")] == [
        "correcto",
        "fallido",
        "en curso",
        "interrumpida",
    ]
    assert i18n.label("es", "status", "skipped") == "omitido"


@pytest.mark.parametrize(
    ("lang", "money", "number", "share", "day"),
    [
        ("es", "5.312.197\xa0€", "4.994", "12,3\xa0%", "1 mar 2026"),
        ("en", "€5,312,197", "4,994", "12.3%", "Mar 1, 2026"),
    ],
)
def test_numbers_money_shares_and_dates_follow_the_locale(
    lang: str, money: str, number: str, share: str, day: str
) -> None:
    assert i18n.money(5_312_197.4, lang, "EUR") == money
    assert i18n.number(4994, lang) == number
    assert i18n.percent(0.1234, lang) == share
    assert i18n.date("2026-03-01", lang) == day


@pytest.mark.parametrize(
    ("value", "es", "en"),
    [
        (2.74e5, "274.000", "274,000"),  # a model's parameter at its bound: no "2.74e+05"
        (3.0249e6, "3.020.000", "3,020,000"),
        (0.50612, "0,506", "0.506"),
        (248.3, "248", "248"),
        (1.234e-5, "0,0000123", "0.0000123"),
        (1e-12, "0", "0"),
    ],
)
def test_model_parameters_read_in_significant_digits_without_exponents(
    value: float, es: str, en: str
) -> None:
    assert (i18n.significant(value, "es"), i18n.significant(value, "en")) == (es, en)


def test_a_number_that_rounds_to_zero_has_no_sign() -> None:
    # An NPS interval's low end of -0.3 shown without decimals read "-0".
    assert i18n.number(-0.3, "es", 0) == "0" and i18n.number(-0.004, "en", 2) == "0.00"
    assert i18n.percent(-0.00001, "es") == "0,0\xa0%" and i18n.number(-0.6, "en", 0) == "-1"


def test_progress_counts_are_grouped_and_reason_dates_read_in_the_language() -> None:
    assert i18n.translate_message("es", "12,027,027 rows") == "12.027.027 filas"
    assert i18n.translate_message("en", "1,204 accepted, 3 quarantined") == (
        "1,204 accepted, 3 quarantined"
    )
    reason = "timestamp is before 1990-01-01 (setting earliest_date)"
    assert "1 ene 1990" in i18n.translate_reason("es", reason)
    assert i18n.translate_reason("en", reason) == reason  # stored as written


def test_a_rules_error_reads_in_spanish_with_its_position_and_suggestions() -> None:
    msg = "unknown column or segment 'monetry' at position 1:"
    assert i18n.translate_message("es", msg) == (
        "columna o segmento desconocido 'monetry' en la posición 1:"
    )
    assert i18n.translate_message("es", "did you mean monetary or country?") == (
        "¿querías decir monetary o country?"
    )
    assert i18n.translate_message("en", msg) == msg


def test_money_in_the_configured_currency() -> None:
    assert i18n.money(1200, "en", "GBP") == "£1,200"
    assert i18n.money(1200, "es", "MXN") == "1.200\xa0MXN"
    assert i18n.money(1200, "es", None) == "1.200"  # currency unknown: a plain number


def test_histogram_bins_print_as_many_decimals_as_keep_them_apart() -> None:
    """A small base's CLV bins are under one euro wide: whole euros printed "1 € – 1 €"."""
    from segmentum.service.dashboard_pages import _bin_labels

    def euros(v: float, digits: int) -> str:
        return i18n.money(v, "es", "EUR", digits)

    narrow = _bin_labels([0.0, 0.45, 0.9, 1.35, 1.8], euros)
    assert narrow[2] == "0,9\xa0€ – 1,4\xa0€" and len(set(narrow)) == 4
    assert _bin_labels([0.0, 100.0, 200.0], euros) == ["0\xa0€ – 100\xa0€", "100\xa0€ – 200\xa0€"]
    shares = _bin_labels([0.0, 0.05, 0.1], lambda v, d: i18n.percent(v, "en", d))
    assert shares == ["0% – 5%", "5% – 10%"]


@pytest.mark.parametrize("missing", [None, math.nan, math.inf, float("nan")])
def test_a_missing_value_is_a_dash_never_nan_or_none(missing: object) -> None:
    for lang in i18n.LANGUAGES:
        for fmt in (i18n.number, i18n.percent, i18n.money, i18n.date, i18n.points):
            assert fmt(missing, lang) == i18n.MISSING  # type: ignore[operator]
        assert i18n.label(lang, "value_tier", missing) == i18n.MISSING


def test_pandas_nat_is_a_dash() -> None:
    import pandas as pd

    assert i18n.date(pd.NaT, "es") == i18n.MISSING
    assert i18n.number(pd.NA, "en") == i18n.MISSING


@pytest.mark.parametrize(
    ("lang", "one", "many"),
    [
        ("es", "1 cliente de alto a medio", "1.204 clientes de alto a medio"),
        ("en", "1 customer from alto to medio", "1,204 customers from alto to medio"),
    ],
)
def test_counts_take_the_plural_their_number_needs(lang: str, one: str, many: str) -> None:
    from segmentum.service.dashboard import _env

    template = _env().from_string(
        '{{ ngettext("%(num)s customer from %(a)s to %(b)s", '
        '"%(num)s customers from %(a)s to %(b)s", n, num=shown, a="alto", b="medio") }}'
    )
    assert template.render(lang=lang, n=1, shown=i18n.number(1, lang)) == one
    assert template.render(lang=lang, n=1204, shown=i18n.number(1204, lang)) == many


def test_every_quarantine_reason_of_a_messy_export_reads_in_spanish(tmp_path: Path) -> None:
    # A real-export shape: Spanish headers, comma decimals, a repeated row, a text amount,
    # a date in the future, a negative quantity, a missing customer, a zero quantity.
    import segmentum

    text = (
        "cliente;fecha;cantidad;importe\n"
        "A1;05/03/2024;2;12,50\n"
        "A1;05/03/2024;2;12,50\n"
        "A2;15/03/2024;1;doce\n"
        "A3;15/03/2099;1;3,10\n"
        "A4;16/03/2024;0;3,10\n"
        "A5;17/03/2024;x;3,10\n"
    )
    (tmp_path / "ventas.csv").write_text(text, encoding="utf-8")
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'q.duckdb'}")
    try:
        [r] = segmentum.ingest("transactions", tmp_path / "ventas.csv", warehouse=wh)
        reasons = list(r.reasons)
    finally:
        wh.close()
    assert len(reasons) >= 4, reasons
    for reason in reasons:
        es = i18n.translate_reason("es", reason)
        assert es != reason and not re.search(r"\b(is|of|the|row)\b", es), (reason, es)
        assert i18n.translate_reason("en", reason) == reason
    # Several reasons of one row are translated one by one; an unknown one stays as written.
    joined = i18n.translate_reason("es", "amount is not a number; customer_id is missing; odd")
    assert joined == "amount no es un número; falta customer_id; odd"


def test_why_a_model_was_not_fitted_reads_in_spanish() -> None:
    """The run summary's warnings carry the models' own errors: raised here by the models
    themselves, they read in Spanish, hint included, and as ``str()`` in English."""
    import datetime as dt

    import ibis
    import numpy as np

    from segmentum.errors import ModelError
    from segmentum.models.btyd import BetaGeo, GammaGamma
    from segmentum.models.calibrate import calibrate_churn
    from segmentum.models.cluster import fit_clusters

    raised: list[ModelError] = []
    for attempt in (
        lambda: BetaGeo().fit([0, 0, 1], [0, 0, 3], [10, 10, 10]),
        lambda: GammaGamma().fit([1], [10.0]),
        lambda: calibrate_churn(
            BetaGeo(),
            ibis.memtable({"day": [dt.date(2025, 1, 1)]}),
            dt.date(2025, 6, 10),
        ),
        lambda: fit_clusters(
            __import__("pandas").DataFrame({"customer_id": ["a"] * 20, "x": np.arange(20.0)}),
            numeric=["x"],
        ),
    ):
        with pytest.raises(ModelError) as info:
            attempt()
        raised.append(info.value)
    spanish = [i18n.error_text("es", e) for e in raised]
    assert spanish == [
        "BG/NBD necesita clientes que repitan compra para aprender: 1 de 3 clientes volvieron "
        "a comprar (sugerencia: espera a tener más historial o usa un periodo más largo)",
        "Gamma-Gamma necesita clientes que repitan compra: solo hay 1 "
        "(sugerencia: espera a tener más historial)",
        "no se puede calibrar el abandono: el historial (160 días) es más corto que tres "
        "horizontes de 90 días (sugerencia: espera a tener más historial o usa un horizonte de "
        "abandono más corto)",
        "20 clientes son demasiado pocos para buscar 10 grupos "
        "(sugerencia: usa un rango de k menor o más datos)",
    ]
    assert [i18n.error_text("en", e) for e in raised] == [str(e) for e in raised]


def test_a_failed_send_and_an_unmeasured_campaign_read_in_spanish() -> None:
    from segmentum.errors import DeliveryError

    err = DeliveryError(
        "1,200 of 1,200 messages failed: connection refused",
        "nothing failed is lost: fix the cause and run the send again",
    )
    text = i18n.error_text("es", err)
    assert text.startswith("fallaron 1.200 de 1.200 mensajes: connection refused")
    assert "vuelve a lanzar el envío" in text and "nothing" not in text
    note = i18n.translate_message("es", "no results yet: 3,000 sent, 0 outcomes")
    assert note == "aún no hay resultados: 3.000 enviados, 0 resultados"
    note = i18n.translate_message("es", "no results yet: 2,990 sent, 10 failed, 0 outcomes")
    assert note == "aún no hay resultados: 2.990 enviados, 10 fallidos, 0 resultados"


def test_why_an_sms_failed_and_the_sender_setting_read_in_spanish() -> None:
    from segmentum.errors import ConfigError, DeliveryError

    why = (
        "the message takes 5 UCS-2 parts (283 UCS-2 units) and sms_max_parts is 3: shorten the "
        "template or avoid characters outside GSM-7 (e.g. á, ç, emoji)"
    )
    said = i18n.failure_reason("es", f"C0000452: {why}")
    assert said.startswith("C0000452: el mensaje ocupa 5 partes UCS-2 (283 unidades UCS-2)")
    assert "acorta la plantilla" in said and "shorten" not in said
    err = DeliveryError(f"10 of 10 messages failed: C0000250: {why}", None)
    assert "fallaron 10 de 10 mensajes: C0000250: el mensaje ocupa" in i18n.error_text("es", err)
    assert (
        i18n.failure_reason("es", "C1: HTTP 400: unknown number") == "C1: HTTP 400: unknown number"
    )
    sender = ConfigError(
        "sms_sender_id='TIENDA ONLINE 24' is not a valid sender",
        "an alphanumeric sender id has 1 to 11 letters (A-Z, a-z), digits and spaces, with at "
        "least one letter; a numeric one is a phone number such as +34600111222",
    )
    text = i18n.error_text("es", sender)
    assert "no es un remitente válido" in text and "un remitente alfanumérico" in text, text
    assert "letters" not in text and "valid sender" not in text, text


def test_a_web_survey_answer_that_cannot_be_stored_is_refused_in_spanish() -> None:
    for english, spanish in (
        ("nps must be a whole number from 0 to 10", "nps debe ser un número entero de 0 a 10"),
        ("visitor 'V1' already answered campaign c-1", "el visitante 'V1' ya respondió"),
        ("visitor 'V1' was not sent campaign c-1", "al visitante 'V1' no se le envió"),
        ("campaign c-1 asks no survey", "la campaña c-1 no hace ninguna encuesta"),
        ("Input should be less than or equal to 10", "el valor debe ser como máximo 10"),
        ("Field required", "falta este campo"),
    ):
        assert i18n.translate_message("es", english).startswith(spanish), english


def test_durations_read_in_their_largest_whole_unit() -> None:
    assert [i18n.duration(s, "es") for s in (604800, 1209600, 86400, 7200, 60, 90)] == [
        "1 semana",
        "2 semanas",
        "1 día",
        "2 horas",
        "1 minuto",
        "90 segundos",
    ]
    assert i18n.duration(3 * 86400, "en") == "3 days" and i18n.duration(None, "en") == i18n.MISSING


def test_what_the_rule_parser_expected_reads_in_spanish() -> None:
    said = "expected a column, a segment, a value or '(', found the end of the rule"
    assert i18n.translate_message("es", said) == (
        "se esperaba una columna, un segmento, un valor o '(' y se encontró el final de la regla"
    )
    assert i18n.translate_message("es", "did you mean 'Madrid' or 'Málaga'?") == (
        "¿querías decir 'Madrid' o 'Málaga'?"
    )


def test_event_types_read_in_the_page_language_and_the_shops_own_as_written() -> None:
    assert i18n.label("es", "event_type", "cart_abandoned") == "carrito abandonado"
    assert i18n.label("en", "event_type", "cart_abandoned") == "cart abandoned"
    assert i18n.label("es", "event_type", "wishlist_add") == "wishlist add"


def test_what_doctor_finds_reads_in_spanish_with_spanish_numbers() -> None:
    es = functools.partial(i18n.translate_message, "es")
    assert es("the purchase-day rollup matches 12,345 lines") == (
        "el resumen de días de compra coincide con 12.345 líneas"
    )
    assert es("1,234.5 MB on disk, 3.5 MB of it free space") == (
        "1.234,5 MB en disco, 3,5 MB de ello espacio libre"
    )
    assert es("stray files") == "archivos sueltos"


def test_what_a_page_needs_and_the_warehouse_lacks_reads_in_spanish() -> None:
    said = "no prospects have been scored (hint: run: segmentum segment lookalike --target ...)"
    assert i18n.translate_message("es", said) == (
        "aún no se ha puntuado ningún cliente potencial "
        "(sugerencia: ejecuta: segmentum segment lookalike --target ...)"
    )
    assert i18n.translate_message("es", "unknown dimension(s): regoin") == (
        "dimensiones desconocidas: regoin"
    )


def test_a_share_of_nothing_and_a_segments_flags_read_as_words() -> None:
    """Walked on an export whose amounts are all zero: the English tables printed "nan%" for
    the revenue share; the Spanish report listed discovered segments' flags in English."""
    from segmentum import cli

    for lang in ("en", "es"):
        assert cli._pct(float("nan"), lang) == i18n.MISSING
        assert cli._pct(None, lang) == i18n.MISSING
    assert cli._pct(0.25, "en") == "25.0%"
    words = [i18n.segment_flag("es", f) for f in ("small", "not_distinct", "unstable")]
    assert words == [
        i18n.translations("es").ugettext(w) for w in ("small", "not distinct", "unstable")
    ]
    assert not any(w in ("small", "not_distinct", "not distinct", "unstable") for w in words)


def test_a_micro_segments_value_tier_reads_in_spanish_wherever_satisfaction_is_shown() -> None:
    """The Spanish run summary and report named a satisfaction micro-segment "high > Comunidad
    de Madrid": the CLI's tables translated the value tier, the others did not (one function
    for all of them now)."""
    tier = i18n.label("es", "value_tier", "high")
    assert tier != "high"
    got = i18n.satisfaction_group("es", "micro", "high > Comunidad de Madrid")
    assert got == f"{tier} > Comunidad de Madrid"
    assert i18n.satisfaction_group("en", "micro", "high > Madrid") == "high > Madrid"
    assert (
        i18n.satisfaction_group("es", "cluster", "3: Big spenders", {"3: Big spenders": "x"}) == "x"
    )


# Usted forms that cannot be tú: the usted imperatives of the verbs segmentum's hints use, the
# same with a pronoun attached ("cárguelos", "edítelo": only an imperative takes one), "usted"
# itself, and "cree" before an article ("cree la campaña"; "cree que" is "believes"). Left
# out, because correct text has them too: "use" and "revise" in code (English words), "haga",
# "tenga", "borre", "vea", "pueda" (someone else's subjunctive: "nada de lo que haga el
# cliente", "a quien tenga una clave", "pide a la persona de arriba que borre el fichero"),
# "su", "puede", "debe" (mostly "its" and "it can / must" of a thing) and nouns that look like
# verbs ("ajuste", "alcance", "corte"). The words kept are third-person subjunctives too ("para
# que el cliente vuelva"): a text that means that goes in _USTED_ALLOWED with the reason.
_USTED_ONLY = (
    r"ustedes?|ejecute|compruebe|cargue|revise|indique|elija|añada|escriba|vuelva|corrija|"
    r"consulte|pruebe|espere|envíe|guarde|pida|ponga|fije|convierta|asigne|exporte|cambie|"
    r"aumente|libere|omita|divida|restaure|detenga|genere|adjunte|previsualice|"
    r"cree\s+(?:la|el|las|los|una?)|"
    r"(?:ejecúte|cárgue|revíse|elíja|escríba|corríja|envíe|guárde|expórte|bórre|elimíne|"
    r"cámbie|omíta|divída|compácte|compáre|edíte|rehága|conviérta|lláme)(?:l[oa]s?|les?)"
)
_USTED = re.compile(rf"(?<!\w)(?:{_USTED_ONLY})(?!\w)", re.IGNORECASE)
# Usted imperatives that are also common subjunctives ("quien la use", "que lo use") or English:
# in the catalog, where they open a clause ("use otra copia", "(vea docs/sms.md)", "o use ...").
_USTED_OPENING = re.compile(r"(?:^|[;:(¿¡]\s*|\b[oy]\s+)(?:use|vea|haga|cree)(?!\w)", re.I)
_USTED_ALLOWED: dict[str, str] = {}  # msgid or source file -> why its match is not usted
# Source files whose Spanish is not segmentum talking to its user.
_NOT_ADDRESSED = {"satisfaction/stopwords.py": "words to ignore in customers' comments"}


def _python_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module (f-strings with their fields as "{}")."""
    import ast

    found, pieces = [], set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            pieces.update(id(v) for v in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            found.append((node.lineno, text))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in pieces
        ):
            found.append((node.lineno, node.value))
    return found


def test_spanish_addresses_the_user_as_tu_never_usted() -> None:
    """Spanish text speaks to the user in one register, tú ("ejecuta segmentum run", "elige
    un segmento", "tu archivo"), as the dashboard and the campaign copy do and as current
    Spanish software style guides (Microsoft's among them) prescribe; the catalog's hints once
    mixed in usted ("ejecute", "cree la campaña", "su archivo"). Every Spanish msgstr (the
    Spanish side of i18n.MESSAGES and REASONS included, as their msgids live in the catalog)
    and every string literal of the package's Python (warnings written in both languages
    there) is searched, whole word and ignoring case, for forms that are only usted: see
    _USTED_ONLY for the list and for why "use", "su" or "puede" are not in it."""
    found = []
    for m in _catalog("es"):
        msgid = m.id if isinstance(m.id, str) else m.id[0]
        if not m.id or msgid in _USTED_ALLOWED:
            continue
        forms = _forms(m.string)
        hits = [(h, f) for f in forms if (h := _USTED.search(f) or _USTED_OPENING.search(f))]
        if hits:  # the first form that has one (a plural's forms share their wording)
            hit, form = hits[0]
            found.append(f"{msgid!r} ({m.context or 'no context'}): {hit.group()!r} in {form!r}")
    root = Path(i18n.__file__).parent
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name in _NOT_ADDRESSED or name in _USTED_ALLOWED:
            continue
        for line, text in _python_strings(path):
            hit = _USTED.search(text)
            if hit and hit.group().lower() != "revise":  # "revise" is English too
                found.append(f"{name}:{line}: {hit.group()!r} in {text!r}")
    assert not found, "Spanish addresses the user as tú; these are usted:\n" + "\n".join(found)


def test_every_thing_the_rule_parser_expects_is_said_in_spanish() -> None:
    """A walk: `segment preview "... and (frequency >= 5" --lang es` said "se esperaba ')' to
    close the parenthesis". Every "expected ..." of the parser, read from its source, comes
    out in Spanish."""
    import inspect

    from segmentum.segments import rules

    src = inspect.getsource(rules)
    whats = re.findall(r'self\.expect\("\w+", "[^"]*", "([^"]+)"\)', src)
    whats += re.findall(r'self\.fail\("expected ([^"]+)"\)', src)
    assert len(whats) >= 14
    for what in whats:
        said = i18n.translate_message("es", f"expected {what}, found 'x'")
        assert said.startswith("se esperaba ") and what not in said, said


def test_what_a_walk_found_in_english_on_spanish_pages_is_spanish() -> None:
    """A walk in Spanish read "Tramo de ingresos: low" on a customer page, look-alike reasons
    "acquisition channel = social; employees", and "entra en el segmento Champions" on the
    Flows page. The income band's values, the customer file's columns and a flow's class
    trigger are said in Spanish; a saved segment keeps its own name."""
    from segmentum.cli import _lookalike_reasons
    from segmentum.flows.words import _trigger_detail, segment_name
    from segmentum.titles import column_title

    assert [i18n.label("es", "income_band", v) for v in ("low", "medium", "high")] == [
        "bajo",
        "medio",
        "alto",
    ]
    said = _lookalike_reasons("acquisition_channel = social; employees; postal_code unknown", "es")
    assert "acquisition" not in said and "employees" not in said and "postal_code" not in said
    assert said.startswith("Canal de captación = ") and "Empleados" in said, said
    assert column_title("es", "consent_email") != column_title("en", "consent_email")
    assert segment_name("es", "Champions") == i18n.label("es", "rfm_segment", "Champions")
    assert segment_name("es", "Champions") != "Champions"
    assert segment_name("es", "lapsed") == i18n.label("es", "lifecycle_stage", "lapsed")
    assert segment_name("es", "mis_vip") == "mis_vip"
    assert _trigger_detail("es", "enter segment Champions") == (
        f"entra en el segmento {segment_name('es', 'Champions')}"
    )


def test_a_probability_is_never_rounded_to_a_certainty() -> None:
    """A docs walk read "churn risk 100%" in a retention reason for 0.99896, where models.md
    promises that no customer is told 0% or 100% (Jeffreys' prior on the calibration)."""
    from segmentum.campaigns import reasons

    assert i18n.probability(0.99896, "en") == ">99%"
    assert i18n.probability(0.99896, "es") == ">99\xa0%"
    assert i18n.probability(0.004, "en") == "<1%" and i18n.probability(0.5, "en") == "50%"
    assert i18n.probability(1.0, "en") == "100%" and i18n.probability(0.0, "en") == "0%"
    said = reasons.text("retention", {"tier": "high", "spent": 13850, "risk": 0.99896}, "en")
    assert said is not None and said.endswith("churn risk >99%"), said
