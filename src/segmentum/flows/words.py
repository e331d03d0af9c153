"""How a flow's stored codes read to a person, in either language."""

from __future__ import annotations

import re

from segmentum import i18n
from segmentum.flows.spec import CHANNELS


def flow_words(lang: str) -> dict[str, dict[str, str]]:
    """A flow's states, step kinds, reasons, path events and trigger dates in ``lang``: the
    words the Flows page and the ``segmentum flow`` commands both show."""
    _ = i18n.translations(lang).ugettext
    return {
        "status": {"draft": _("draft"), "enabled": _("enabled"), "disabled": _("disabled")},
        "kind": {
            "wait": _("Wait"),
            "condition": _("Condition"),
            "send": _("Send"),
            "split": _("Control group"),
        },
        "reason": {
            "control": _("control group"),
            "capped": _("frequency cap"),
            "no_consent": _("no consent"),
            "suppressed": _("suppressed"),
            "no_address": _("no address"),
            "unknown_customer": _("unknown customer"),
            "converted": _("bought"),
            "left_segment": _("left the segment"),
            "unsubscribed": _("unsubscribed"),
            "condition_false": _("condition not met"),
            "completed": _("completed"),
            "treatment": _("treatment group"),
            "true": _("met"),
            "false": _("not met"),
        },
        "what": {
            "entered": _("entered"),
            "wait": _("waiting"),
            "condition": _("condition"),
            "split": _("group"),
            "sent": _("sent"),
            "skipped": _("skipped"),
            "deferred": _("held for quiet hours"),
            "retry": _("will retry"),
            "failed": _("failed"),
            "exited": _("left"),
            "done": _("finished"),
        },
        "date": {"birthday": _("birthday"), "expected_next_purchase": _("expected next purchase")},
    }


def path_detail(lang: str, what: str, detail: str | None) -> str:
    """A path row's stored detail as a person reads it in ``lang``: the trigger a customer
    entered on ("event add_to_cart"), a wait's or the quiet hours' end ("until 2026-12-06
    11:41:30", dates as the language writes them), a channel, a reason; an error as sent."""
    if not detail:
        return ""
    _ = i18n.translations(lang).ugettext
    until = re.fullmatch(r"(quiet hours )?until (\S+ \S+)", detail)
    if until:
        # English keeps the stored time, as the path's own column does; others their format.
        when = until.group(2) if lang == "en" else i18n.date(until.group(2), lang)
        said = _("quiet hours until %(when)s") if until.group(1) else _("until %(when)s")
        return said % {"when": when}
    if what == "entered":
        return _trigger_detail(lang, detail)
    if what in ("sent", "failed", "retry") and detail in CHANNELS:
        return i18n.label(lang, "channel", detail)
    reason = flow_words(lang)["reason"].get(detail)
    return reason or i18n.translate_message(lang, detail)


def condition_words(lang: str, rule: str | None) -> str | None:
    """A condition step's rule in words, for the flow's own names (``not bought_since_entry``
    -> "has not bought since entering the flow"); None for any other rule (shown as written)."""
    if not rule:
        return None
    _ = i18n.translations(lang).ugettext
    text = " ".join(rule.split()).lower()
    if text in ("bought_since_entry", "bought_since_entry == true"):
        return _("has bought since entering the flow")
    if text in ("not bought_since_entry", "bought_since_entry == false"):
        return _("has not bought since entering the flow")
    days = re.fullmatch(r"days_in_flow ?(>=|>|<=|<) ?(\d+)", text)
    if days:
        said = {
            ">=": _("%(n)s days or more in the flow"),
            ">": _("more than %(n)s days in the flow"),
            "<=": _("%(n)s days or fewer in the flow"),
            "<": _("fewer than %(n)s days in the flow"),
        }[days.group(1)]
        return said % {"n": i18n.number(int(days.group(2)), lang, 0)}
    return None


# The classes a flow may enter on (segmentum.flows.engine.CLASS_TRIGGERS), whose stored values
# a page shows in its language; a saved segment keeps the name it was given.
_CLASS_KINDS = ("rfm_segment", "lifecycle_stage", "value_potential")


def segment_name(lang: str, name: str) -> str:
    """A flow trigger's segment as ``lang`` names it: ``Champions`` -> ``Campeones``."""
    for kind in _CLASS_KINDS:
        if (kind, name) in i18n.LABELS:
            return i18n.label(lang, kind, name)
    return name


def _trigger_detail(lang: str, text: str) -> str:
    """What a customer entered on, as ``Trigger.describe`` stored it: "enter segment vip",
    "exit segment vip", "event add_to_cart", "3 days before birthday", "birthday"."""
    _ = i18n.translations(lang).ugettext
    seg = re.fullmatch(r"(enter|exit) segment (.+)", text)
    if seg:
        said = (
            _("enters the segment %(name)s")
            if seg.group(1) == "enter"
            else _("leaves the segment %(name)s")
        )
        return said % {"name": segment_name(lang, seg.group(2))}
    event = re.fullmatch(r"event (.+)", text)
    if event:
        return _("event %(name)s") % {"name": event.group(1)}
    dates = flow_words(lang)["date"]
    offset = re.fullmatch(r"(\d+) days (before|after) (\w+)", text)
    if offset:
        days, side, name = offset.groups()
        said = (
            _("%(days)s days before the %(date)s")
            if side == "before"
            else _("%(days)s days after the %(date)s")
        )
        return said % {"days": i18n.number(int(days), lang, 0), "date": dates.get(name, name)}
    if text in dates:
        return _("on the %(date)s") % {"date": dates[text]}
    return text
