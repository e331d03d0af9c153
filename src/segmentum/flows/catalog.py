"""The flows shipped for the classic tactics, as editable YAML files in ``templates/``:
welcome, abandoned cart, abandoned browse, post-purchase cross-sell, replenishment, win-back,
VIP recognition and at-risk retention."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from segmentum.errors import InputError

FOLDER = Path(__file__).with_name("templates")


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def text(name: str) -> str:
    path = FOLDER / f"{name}.yaml"
    if name not in names():
        raise InputError(
            f"there is no flow template named {name!r}", "templates: " + ", ".join(names())
        )
    return path.read_text(encoding="utf-8")


def describe() -> list[dict[str, Any]]:
    """Each template's name, description and trigger, for listings."""
    out = []
    for n in names():
        data = yaml.safe_load(text(n))
        trig = data.get("trigger") or {}
        out.append(
            {
                "template": n,
                "description": data.get("description") or {},
                "trigger": {k: v for k, v in trig.items()},
                "steps": len(data.get("steps") or []),
            }
        )
    return out


def from_template(
    template: str,
    name: str,
    *,
    segment: str | None = None,
    channel: str | None = None,
    message: Mapping[str, str] | None = None,
    wait: str | None = None,
) -> str:
    """The YAML of a new flow from ``template``, renamed; optionally triggered by entering
    ``segment``, with its first message sent on ``channel`` with ``message`` (es / en) after
    waiting ``wait`` (what the playbook's apply fills in). Without options the template's text
    and comments are kept as they are."""
    src = text(template)
    if segment is None and channel is None and message is None and wait is None:
        return re.sub(r"(?m)^name:.*$", f"name: {name}", src, count=1)
    data = yaml.safe_load(src)
    data["name"] = name
    if segment is not None:
        data["trigger"] = {"segment": segment}
        data.setdefault("exit", {})["left_segment"] = True
    steps = data.get("steps") or []
    first = next((s for s in steps if "send" in s), None)
    if first is not None:
        if channel is not None:
            first["send"]["channel"] = channel
        if message:
            body = dict(first["send"].get("body") or {})
            for lang in ("es", "en"):
                said = str(message.get(lang) or "").strip()
                if said:
                    if said[1:2].islower():  # "Hola Ana, gracias..." not "Hola Ana, Gracias..."
                        said = said[0].lower() + said[1:]
                    body[lang] = "{{ greeting }}, " + _escape(said)
            first["send"]["body"] = body
    if wait is not None:
        at = steps.index(first) if first is not None else len(steps)
        before = steps[at - 1] if at else None
        if before is not None and "wait" in before:
            before["wait"] = wait
        else:
            steps.insert(at, {"wait": wait})
    head = f"# Made from the {template} template.\n"
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _escape(text: str) -> str:
    """A playbook message put into a template as plain text (no Jinja syntax inside)."""
    return text.replace("{", "(").replace("}", ")")
