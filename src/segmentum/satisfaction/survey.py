"""Short surveys carried by web messages: one NPS question, or one question with options.

A web-message campaign's template may hold a ``survey``::

    survey:
      kind: nps                     # or: choice
      question: {es: "¿Nos recomendarías?", en: "Would you recommend us?"}
      options: {es: [Sí, No], en: [Yes, No]}    # choice only

The message a visitor fetches (``GET /v1/web-message``) then carries the question; the answer
comes back to ``POST /v1/web-message/answer`` and is stored in ``responses`` with the
campaign's id and channel ``web``. Only visitors the campaign was sent to (its segment) can
answer, once each.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping
from typing import Any

import ibis
import pyarrow as pa

from segmentum.errors import InputError
from segmentum.schema import RESPONSES
from segmentum.warehouse import Warehouse

KINDS = ("nps", "choice")
# The question asked when the template gives none.
DEFAULT_QUESTION = {
    "es": "Del 0 al 10, ¿con qué probabilidad nos recomendarías a un amigo?",
    "en": "From 0 to 10, how likely are you to recommend us to a friend?",
}
MAX_COMMENT = 2000
SENDS = "campaign_sends"


def check_survey(template: Mapping[str, Any]) -> None:
    """Refuse a survey that could not be shown: unknown kind, a choice without options."""
    survey = template.get("survey")
    if survey is None:
        return
    if not isinstance(survey, Mapping) or survey.get("kind", "nps") not in KINDS:
        raise InputError(
            "the template's survey must say kind: nps or kind: choice",
            "e.g. survey: {kind: nps}",
        )
    if survey.get("kind") == "choice":
        options = survey.get("options")
        if not isinstance(options, Mapping) or not all(
            isinstance(v, list) and len(v) >= 2 for v in options.values()
        ):
            raise InputError(
                "a choice survey needs at least two options per language",
                "e.g. options: {es: [Sí, No], en: [Yes, No]}",
            )
        if not survey.get("question"):
            raise InputError(
                "a choice survey needs a question", "e.g. question: {es: ..., en: ...}"
            )


def _in(lang: str, value: Any, default: Any = None) -> Any:
    if isinstance(value, Mapping):
        return value.get(lang) or value.get("en") or next(iter(value.values()), default)
    return value if value is not None else default


def survey_for(template: Mapping[str, Any], lang: str) -> dict[str, Any] | None:
    """The survey of a template in ``lang``, as the web message carries it (None: no survey)."""
    survey = template.get("survey")
    if not isinstance(survey, Mapping):
        return None
    kind = str(survey.get("kind", "nps"))
    out: dict[str, Any] = {
        "kind": kind,
        "question": str(_in(lang, survey.get("question"), DEFAULT_QUESTION.get(lang))),
        "answer_url": "/v1/web-message/answer",
    }
    if kind == "nps":
        out["scale"] = [0, 10]
    else:
        out["options"] = [str(o) for o in _in(lang, survey.get("options"), [])]
    return out


def record_answer(
    wh: Warehouse,
    campaign_id: str,
    visitor: str,
    template: Mapping[str, Any],
    *,
    nps: int | None = None,
    answer: str | None = None,
    comment: str | None = None,
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """Store one visitor's answer to a campaign's survey in ``responses``; returns the row.

    The visitor must have been sent the campaign by web message, and may answer once.
    """
    survey = template.get("survey")
    if not isinstance(survey, Mapping):
        raise InputError(f"campaign {campaign_id} asks no survey")
    kind = str(survey.get("kind", "nps"))
    if kind == "nps":
        if nps is None or not 0 <= nps <= 10:
            raise InputError("nps must be a whole number from 0 to 10", "send nps: 0..10")
        answer = None
    else:
        allowed = {str(o) for opts in (survey.get("options") or {}).values() for o in opts}
        if answer not in allowed:
            raise InputError(
                f"{answer!r} is not one of the survey's options",
                "send one of: " + ", ".join(sorted(allowed)),
            )
        nps = None
    sent = wh.table(SENDS) if wh.has(SENDS) else None
    theirs = (
        []
        if sent is None
        else sent.filter(
            (sent.campaign_id == campaign_id)
            & (sent.customer_id == visitor)
            & (sent.channel == "web")
            & (sent.status == "sent")
        )
        .select("language")
        .limit(1)
        .to_pyarrow()
        .to_pylist()
    )
    if not theirs:
        raise InputError(
            f"visitor {visitor!r} was not sent campaign {campaign_id}",
            "only the campaign's audience can answer its survey",
        )
    wh.ensure(RESPONSES)
    r = wh.table(RESPONSES.name)
    mine = (r.campaign_id == campaign_id) & (r.customer_id == visitor)
    if int(r.filter(mine).count().to_pyarrow().as_py()):
        raise InputError(f"visitor {visitor!r} already answered campaign {campaign_id}")
    when = (now or _dt.datetime.now(_dt.UTC)).replace(tzinfo=None, microsecond=0)
    text = (comment or "").strip()[:MAX_COMMENT] or None
    lang = theirs[0]["language"] or "en"
    lang = lang if lang in DEFAULT_QUESTION else "en"
    row = {
        "response_id": uuid.uuid4().hex[:16],
        "customer_id": visitor,
        "timestamp": when,
        "nps": nps,
        "csat": None,
        "ces": None,
        "rating": None,
        "comment": text,
        "channel": "web",
        "product_id": None,
        "order_id": None,
        "campaign_id": campaign_id,
        # The question as this visitor was asked it (the language their message was in).
        "question": str(_in(lang, survey.get("question"), DEFAULT_QUESTION.get(lang))),
        "answer": answer,
        "batch_id": f"survey:{campaign_id}",
        "source_row": None,
    }
    schema = r.schema()
    table = pa.Table.from_pylist([row], schema=schema.to_pyarrow())
    wh.insert(RESPONSES.name, table)
    return {k: (v.isoformat() if isinstance(v, _dt.datetime) else v) for k, v in row.items()}


def answers(wh: Warehouse, campaign_id: str) -> dict[str, Any]:
    """How a campaign's survey was answered: counts per NPS score or option."""
    if not wh.has(RESPONSES.name):
        return {"campaign_id": campaign_id, "answers": 0, "by_value": {}}
    r = wh.table(RESPONSES.name)
    r = r.filter(r.campaign_id == campaign_id)
    value = ibis.coalesce(r.nps.cast("string"), r.answer)
    g = r.group_by(value=value).aggregate(n=r.count()).to_pyarrow().to_pylist()
    return {
        "campaign_id": campaign_id,
        "answers": sum(int(x["n"]) for x in g),
        "by_value": {str(x["value"]): int(x["n"]) for x in g},
    }


def answer_web_survey(campaigns: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Store an answer posted by the web snippet: ``{visitor, campaign_id, nps | answer,
    comment}`` (``campaigns`` a :class:`~segmentum.campaigns.core.Campaigns`)."""
    visitor, campaign_id = payload.get("visitor"), payload.get("campaign_id")
    if not isinstance(visitor, str) or not isinstance(campaign_id, str):
        raise InputError("an answer needs the visitor and the campaign_id", "send both as text")
    c = campaigns.get(campaign_id)
    if c.channel != "web":
        raise InputError(f"campaign {campaign_id} is not a web message")
    nps = payload.get("nps")
    if nps is not None and (isinstance(nps, bool) or not isinstance(nps, int)):
        raise InputError("nps must be a whole number from 0 to 10", "send nps: 0..10")
    answer, comment = payload.get("answer"), payload.get("comment")
    return record_answer(
        campaigns.wh,
        c.campaign_id,
        visitor,
        c.template_data,
        nps=nps,
        answer=None if answer is None else str(answer),
        comment=None if comment is None else str(comment),
    )
