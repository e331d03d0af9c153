"""Flow definitions: the YAML a marketer writes, checked into a :class:`Flow` with every
mistake reported by file, line and field, with what to write instead.

The schema (docs/flows.md has the full reference)::

    name: abandoned_cart
    description: {es: "Carrito abandonado", en: "Abandoned cart"}
    trigger:
      event: cart_abandoned          # or  segment: "VIP" (on: enter | exit)
                                     # or  date: birthday | expected_next_purchase
                                     #     (before: 3 days | after: 1 day)
    reentry: 7 days                  # never (default) | always | a duration
    exit: {converted: true, left_segment: true, unsubscribed: true}
    attribution: 7 days              # a purchase this long after entry is a conversion
    quiet_hours: "21:00-09:00"       # in the customer's time zone; false: none
    steps:
      - split: {control: 10%}
      - wait: 1 hour
      - condition: "value_tier != 'low'"      # a segment rule; false: the customer exits
      - send:
          channel: email                     # email | push | inapp | sms
          subject: {es: "...", en: "..."}
          body: {es: "{{ greeting }}, ...", en: "{{ greeting }}, ..."}

Conditions are rules of the segment rule language (:mod:`segmentum.segments.rules`), parsed
and type-checked here, never evaluated as code.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from segmentum.campaigns import channels as ch
from segmentum.errors import InputError
from segmentum.segments import rules

CHANNELS = ("email", "push", "inapp", "sms")
DATE_FIELDS = ("birthday", "expected_next_purchase")
STEP_KINDS = ("wait", "condition", "send", "split")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_UNITS = {
    "minute": 60,
    "minutes": 60,
    "min": 60,
    "mins": 60,
    "m": 60,
    "minuto": 60,
    "minutos": 60,
    "hour": 3600,
    "hours": 3600,
    "h": 3600,
    "hora": 3600,
    "horas": 3600,
    "day": 86400,
    "days": 86400,
    "d": 86400,
    "dia": 86400,
    "dias": 86400,
    "día": 86400,
    "días": 86400,
    "week": 604800,
    "weeks": 604800,
    "w": 604800,
    "semana": 604800,
    "semanas": 604800,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([^\W\d]+)\s*$", re.UNICODE)
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# Names a flow condition may use besides the customer's columns and segments.
FLOW_NAMES = {"bought_since_entry": rules.BOOL, "days_in_flow": rules.NUMBER}
# The customer columns a condition may use when no warehouse has been synced yet (the
# customer view's columns, as the published lookup carries them).
DEFAULT_COLUMNS: dict[str, str] = {
    **{
        c: rules.NUMBER
        for c in (
            "frequency",
            "monetary",
            "recency_days",
            "tenure_days",
            "avg_order_value",
            "promo_share",
            "return_rate",
            "p_alive",
            "churn_probability",
            "expected_purchases",
            "expected_spend",
            "clv",
            "age",
            "interpurchase_mean",
            "r_score",
            "f_score",
            "m_score",
            "employees",
            "annual_revenue",
        )
    },
    **{
        c: rules.TEXT
        for c in (
            "customer_id",
            "top_category",
            "preferred_channel",
            "preferred_device",
            "rfm_segment",
            "rfm_segment_es",
            "rfm_code",
            "value_tier",
            "lifecycle_stage",
            "potential_tier",
            "value_potential",
            "clv_status",
            "alive_flag",
            "age_band",
            "gender",
            "country",
            "region",
            "state",
            "city",
            "postal_code",
            "income_band",
            "occupation",
            "tags",
            "timezone",
            "trend",
            "preferred_hour_band",
            "acquisition_channel",
            "company",
            "industry",
        )
    },
    "expected_next_purchase": rules.DATE,
    "signup_date": rules.DATE,
    **{f"consent_{c}": rules.BOOL for c in ("email", "sms", "push", "inapp", "web")},
}


class FlowError(InputError):
    """A flow definition that cannot be used; ``problems`` lists every mistake found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(str(first) + tail, first.hint)


@dataclass(frozen=True)
class Problem:
    source: str
    line: int | None
    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.source + (f", line {self.line}" if self.line else "")
        return f"{where}, {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Trigger:
    kind: str  # segment | event | date
    name: str  # the segment, the event type or the date field
    on: str = "enter"  # segment: enter | exit
    offset_days: int = 0  # date: days after the date (negative: before)

    def describe(self) -> str:
        if self.kind == "segment":
            return f"{self.on} segment {self.name}"
        if self.kind == "event":
            return f"event {self.name}"
        when = (
            f"{abs(self.offset_days)} days {'before' if self.offset_days < 0 else 'after'} "
            if self.offset_days
            else ""
        )
        return f"{when}{self.name}"


@dataclass(frozen=True)
class Step:
    index: int
    kind: str
    name: str
    duration: _dt.timedelta | None = None
    rule: str | None = None
    node: rules.Node | None = None
    if_false: str = "exit"
    channel: str | None = None
    template: Mapping[str, Any] | None = None
    control: float = 0.0


@dataclass(frozen=True)
class Exits:
    converted: bool = True
    left_segment: bool = True
    unsubscribed: bool = True


@dataclass(frozen=True)
class Flow:
    name: str
    trigger: Trigger
    steps: tuple[Step, ...]
    exits: Exits = Exits()
    reentry: str | _dt.timedelta = "never"  # never | always | a duration
    attribution: _dt.timedelta = _dt.timedelta(days=7)
    quiet_hours: tuple[_dt.time, _dt.time] | str | None = "default"
    description: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def control_share(self) -> float:
        return max((s.control for s in self.steps if s.kind == "split"), default=0.0)

    @property
    def channels(self) -> list[str]:
        return sorted({s.channel for s in self.steps if s.kind == "send" and s.channel})


def parse_duration(value: Any) -> _dt.timedelta:
    """``'30 minutes'``, ``'1 hour'``, ``'2 days'``, ``'1 week'`` (Spanish units too)."""
    m = _DURATION.match(str(value)) if isinstance(value, str | int | float) else None
    if m is None and isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("a bare number")
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(str(value))
    return _dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_share(value: Any) -> float:
    """``'10%'`` or ``0.1``: a share between 0 and 0.5."""
    if isinstance(value, str) and value.strip().endswith("%"):
        share = float(value.strip()[:-1]) / 100
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    else:
        raise ValueError(str(value))
    if not 0 <= share <= 0.5:
        raise ValueError(str(value))
    return share


def parse_quiet(value: str) -> tuple[_dt.time, _dt.time]:
    m = _CLOCK.match(value)
    if m is None:
        raise ValueError(value)
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    return _dt.time(h1 % 24, m1), _dt.time(h2 % 24, m2)


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """The line of every key and item of a YAML document, by its path."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            _lines(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _lines(v, (*path, i), out)


class _Checker:
    def __init__(self, source: str, lines: dict[tuple[Any, ...], int]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[Problem] = []

    def fail(self, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        name = ""
        for p in path:
            name += f"[{p}]" if isinstance(p, int) else (f".{p}" if name else str(p))
        line = None
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        self.problems.append(Problem(self.source, line, name or "(top)", message, hint))


def parse_flow(
    text: str,
    source: str = "<flow>",
    columns: Mapping[str, str] | None = None,
    segments: Sequence[str] | None = None,
) -> Flow:
    """Check a flow's YAML and return the :class:`Flow`, or raise :class:`FlowError` listing
    every problem (file, line, field, what to write instead).

    ``columns`` (name -> rule type) and ``segments`` are what conditions may use; by default
    the customer view's usual columns, and any other name is taken as a segment.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except RecursionError as exc:
        raise FlowError(
            [Problem(source, None, "(yaml)", "the YAML nests too deeply", "write it flatter")]
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise FlowError(
            [
                Problem(
                    source,
                    line,
                    "(yaml)",
                    f"this is not valid YAML: {problem}",
                    "check the indentation and put texts with ':' or '#' in quotes",
                )
            ]
        ) from exc
    lines: dict[tuple[Any, ...], int] = {}
    if root is not None:
        _lines(root, (), lines)
    c = _Checker(source, lines)
    if not isinstance(data, dict):
        c.fail((), "a flow is a mapping with name, trigger and steps", "start from a template")
        raise FlowError(c.problems)
    known = {
        "name",
        "description",
        "trigger",
        "reentry",
        "exit",
        "attribution",
        "quiet_hours",
        "steps",
    }
    for key in data:
        if key not in known:
            c.fail((key,), f"unknown field {key!r}", "fields: " + ", ".join(sorted(known)))
    name = str(data.get("name") or "")
    if not NAME.match(name):
        c.fail(
            ("name",),
            f"{name!r} is not a flow name" if name else "the flow has no name",
            "write name: abandoned_cart (letters, digits, _ . -; up to 80)",
        )
    description = data.get("description") or {}
    if isinstance(description, str):
        description = {"es": description, "en": description}
    if not isinstance(description, dict):
        c.fail(
            ("description",),
            "write the description in both languages",
            'e.g. {es: "...", en: "..."}',
        )
        description = {}
    trigger = _trigger(c, data.get("trigger"))
    exits = _exits(c, data.get("exit"))
    reentry: str | _dt.timedelta = "never"
    raw = data.get("reentry", "never")
    if raw in ("never", "always", False, True):
        reentry = "always" if raw in (True, "always") else "never"
    else:
        try:
            reentry = parse_duration(raw)
        except ValueError:
            c.fail(
                ("reentry",),
                f"{raw!r} is not allowed",
                "write never, always or a duration, e.g. 30 days",
            )
    attribution = _dt.timedelta(days=7)
    if "attribution" in data:
        try:
            attribution = parse_duration(data["attribution"])
        except ValueError:
            c.fail(("attribution",), f"{data['attribution']!r} is not a duration", "e.g. 7 days")
    quiet: tuple[_dt.time, _dt.time] | str | None = "default"
    if "quiet_hours" in data:
        q = data["quiet_hours"]
        if q is False or q is None or q == "none":
            quiet = None
        else:
            try:
                quiet = parse_quiet(str(q))
            except ValueError:
                c.fail(
                    ("quiet_hours",),
                    f"{q!r} is not a range of hours",
                    'write quiet_hours: "21:00-09:00", or false for none',
                )
    steps = _steps(c, data.get("steps"), trigger, columns, segments)
    if c.problems:
        raise FlowError(c.problems)
    assert trigger is not None
    return Flow(
        name=name,
        trigger=trigger,
        steps=tuple(steps),
        exits=exits,
        reentry=reentry,
        attribution=attribution,
        quiet_hours=quiet,
        description={str(k): str(v) for k, v in description.items()},
        text=text,
    )


def _trigger(c: _Checker, raw: Any) -> Trigger | None:
    hint = (
        "write one of  trigger: {segment: NAME},  trigger: {event: cart_abandoned}  or  "
        "trigger: {date: birthday}"
    )
    if not isinstance(raw, dict):
        c.fail(("trigger",), "the flow has no trigger" if raw is None else "not a mapping", hint)
        return None
    # YAML 1.1 reads a bare ``on`` key as true: it is the trigger's ``on`` all the same.
    raw = {("on" if k is True else k): v for k, v in raw.items()}
    kinds = [k for k in ("segment", "event", "date") if k in raw]
    extra = set(map(str, raw)) - {"segment", "event", "date", "on", "before", "after"}
    for k in sorted(extra):
        c.fail(
            ("trigger", k),
            f"unknown field {k!r}",
            "fields: segment, event, date, on, before, after",
        )
    if len(kinds) != 1:
        c.fail(("trigger",), "give exactly one of segment, event or date", hint)
        return None
    kind = kinds[0]
    name = str(raw[kind] or "").strip()
    if not name:
        c.fail(("trigger", kind), f"the {kind} is empty", hint)
        return None
    on = str(raw.get("on", "enter"))
    if kind == "segment" and on not in ("enter", "exit"):
        c.fail(("trigger", "on"), f"{on!r} is not allowed", "write on: enter or on: exit")
    offset = 0
    if kind == "date":
        if name not in DATE_FIELDS:
            c.fail(
                ("trigger", "date"),
                f"{name!r} is not a date segmentum knows",
                "use " + " or ".join(DATE_FIELDS),
            )
        for side, sign in (("before", -1), ("after", 1)):
            if side in raw:
                try:
                    offset = sign * round(parse_duration(raw[side]).total_seconds() / 86400)
                except ValueError:
                    c.fail(("trigger", side), f"{raw[side]!r} is not a duration", "e.g. 3 days")
    elif "before" in raw or "after" in raw:
        c.fail(("trigger",), "before / after are for date triggers", "remove them")
    return Trigger(kind, name, on, offset)


def trigger_of(raw: Any) -> Trigger | None:
    """The trigger written in ``raw`` (a flow's ``trigger:`` mapping), for listings; ``None``
    when it has problems (parsing the whole flow names them)."""
    c = _Checker("trigger", {})
    found = _trigger(c, raw)
    return None if c.problems else found


def _exits(c: _Checker, raw: Any) -> Exits:
    if raw is None:
        return Exits()
    if not isinstance(raw, dict):
        c.fail(("exit",), "not a mapping", "e.g. exit: {converted: true, left_segment: true}")
        return Exits()
    allowed = ("converted", "left_segment", "unsubscribed")
    for k, v in raw.items():
        if k not in allowed:
            c.fail(("exit", k), f"unknown exit rule {k!r}", "exit rules: " + ", ".join(allowed))
        elif not isinstance(v, bool):
            c.fail(("exit", k), f"{v!r} is not true or false", f"write {k}: true")
    return Exits(**{k: bool(v) for k, v in raw.items() if k in allowed})


def _steps(
    c: _Checker,
    raw: Any,
    trigger: Trigger | None,
    columns: Mapping[str, str] | None,
    segments: Sequence[str] | None,
) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        c.fail(
            ("steps",), "the flow has no steps", "add steps: a list of wait, condition, send, split"
        )
        return []
    cols = {**(columns or DEFAULT_COLUMNS), **FLOW_NAMES}
    out: list[Step] = []
    sends = 0
    for i, item in enumerate(raw):
        path: tuple[Any, ...] = ("steps", i)
        if not isinstance(item, dict):
            c.fail(path, "a step is a mapping", "e.g. - wait: 1 hour")
            continue
        kinds = [k for k in STEP_KINDS if k in item]
        if len(kinds) != 1:
            c.fail(
                path,
                "a step is exactly one of wait, condition, send or split",
                "e.g. - wait: 1 hour",
            )
            continue
        kind = kinds[0]
        extra = set(item) - {kind, "name", "if_false"}
        for k in sorted(extra):
            c.fail(
                (*path, k), f"unknown field {k!r}", f"a {kind} step has {kind} and an optional name"
            )
        label = str(item.get("name") or f"{i + 1}. {kind}")
        value = item[kind]
        if kind == "wait":
            try:
                out.append(Step(i, kind, label, duration=parse_duration(value)))
            except ValueError:
                c.fail(
                    (*path, "wait"),
                    f"{value!r} is not a duration",
                    "write a number and a unit: 30 minutes, 2 hours, 1 day, 1 week",
                )
        elif kind == "condition":
            text = str(value or "")
            if_false = str(item.get("if_false", "exit"))
            if if_false not in ("exit", "continue"):
                c.fail(
                    (*path, "if_false"), f"{if_false!r} is not allowed", "write exit or continue"
                )
            try:
                node = rules.parse(text)
                scope = rules.Scope(
                    columns=cols,
                    segments={s: "customer" for s in (segments or ())},
                    allow_windows=False,
                )
                if segments is None:  # nothing synced yet: any other name is a segment
                    scope.segments = {n: "customer" for n in rules.names(node) if n not in cols}
                kind_ = rules.check(text, node, scope)
                if kind_ not in (rules.BOOL, rules.NULL):
                    raise rules.RuleError(
                        "a condition must be true or false", text, 0, "compare it, e.g. clv > 100"
                    )
                out.append(Step(i, kind, label, rule=text, node=node, if_false=if_false))
            except rules.RuleError as exc:
                c.fail(
                    (*path, "condition"),
                    f"{exc.reason} at position {exc.pos + 1} of {text!r}",
                    exc.hint or "see the rule language in docs/segments.md",
                )
        elif kind == "split":
            share = value.get("control") if isinstance(value, dict) else value
            try:
                out.append(Step(i, kind, label, control=parse_share(share)))
            except ValueError:
                c.fail(
                    (*path, "split"),
                    f"{share!r} is not a control share",
                    "write split: {control: 10%} (between 0% and 50%)",
                )
        else:
            sends += 1
            if not isinstance(value, dict):
                c.fail((*path, "send"), "a send is a mapping", "give channel, subject and body")
                continue
            channel = str(value.get("channel") or "")
            if channel not in CHANNELS:
                c.fail(
                    (*path, "send", "channel"),
                    f"{channel!r} is not a channel",
                    "use " + ", ".join(CHANNELS),
                )
            # sms: the text of an SMS step when it should differ from the body (160 characters).
            tpl = {k: v for k, v in value.items() if k in ("subject", "body", "sms")}
            for k in sorted(set(map(str, value)) - {"channel", "subject", "body", "sms"}):
                c.fail(
                    (*path, "send", k),
                    f"unknown field {k!r}",
                    "a send has channel, subject, body (and sms: the text of an SMS)",
                )
            shapes = [
                part
                for part, texts in tpl.items()
                if not isinstance(texts, dict)
                or not all(isinstance(t, str | int | float) for t in texts.values())
            ]
            for part in shapes:
                c.fail(
                    (*path, "send", part),
                    f"the {part} is not a text in each language",
                    f'write {part}: {{es: "...", en: "..."}}',
                )
            if shapes:
                continue
            try:
                loaded = ch.load_template(tpl)
                ch.check_template(loaded, "flow")
                if channel in ("email", "push") and not loaded.get("subject"):
                    raise InputError(
                        "the message has no subject",
                        'write subject: {es: "...", en: "..."} (the title of a push)',
                    )
                out.append(Step(i, kind, label, channel=channel, template=loaded))
            except InputError as exc:
                c.fail((*path, "send"), exc.message, exc.hint)
    if not sends and not c.problems:
        c.fail(("steps",), "the flow never sends anything", "add a send step")
    return out


def dump(flow: Flow) -> str:
    """The flow's YAML as written (a flow is always kept as its text)."""
    return flow.text
