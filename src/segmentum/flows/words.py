"""How a flow's stored codes read to a person, in either language."""

from __future__ import annotations

from segmentum import i18n


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
