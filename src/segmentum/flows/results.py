"""A flow's results: per step, how many customers reached it, were sent a message, skipped
(and why), are held for quiet hours now (sent when they end), and converted; and the uplift of
the treated over the flow's control group among those who reached the step, with Newcombe's
interval and the same test as campaigns (Fisher's exact test when a group is small)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segmentum.campaigns.measure import _newcombe, _two_proportion_p
from segmentum.flows.spec import Flow

if TYPE_CHECKING:
    from segmentum.flows.engine import Flows


def _rate(x: int, n: int) -> float | None:
    return x / n if n else None


def _effect(xt: int, nt: int, xc: int, nc: int) -> dict[str, Any]:
    """Conversion of treated and control, uplift, its 95% interval and p-value; None where
    there is nothing to compare (no control group, nobody in a group)."""
    out: dict[str, Any] = {
        "treated": nt,
        "control": nc,
        "converted_treated": xt,
        "converted_control": xc,
        "conv_treated": _rate(xt, nt),
        "conv_control": _rate(xc, nc),
        "uplift": None,
        "uplift_low": None,
        "uplift_high": None,
        "p_value": None,
    }
    if nt and nc:
        lo, hi = _newcombe(xt, nt, xc, nc)
        out.update(
            uplift=xt / nt - xc / nc,
            uplift_low=lo,
            uplift_high=hi,
            p_value=_two_proportion_p(xt, nt, xc, nc),
        )
    return out


def flow_results(flows: Flows, flow: Flow) -> dict[str, Any]:
    """Counts per step and overall, with the uplift against the control group."""
    q = flows.store.query
    name = flow.name
    totals = q(
        "SELECT COUNT(*) AS entered, SUM(status = 'active') AS active, "
        "SUM(status = 'done') AS completed, SUM(status = 'exited') AS exited, "
        "SUM(converted_at IS NOT NULL) AS converted FROM runs WHERE flow = ?",
        (name,),
    )[0]
    exits = {
        r["exit_reason"]: r["n"]
        for r in q(
            "SELECT exit_reason, COUNT(*) AS n FROM runs WHERE flow = ? AND status = 'exited' "
            "GROUP BY exit_reason ORDER BY n DESC",
            (name,),
        )
    }
    steps = []
    for s in flow.steps:
        reached = q(
            "SELECT COALESCE(r.grp, 'treatment') AS grp, COUNT(*) AS n, "
            "SUM(r.converted_at IS NOT NULL AND r.converted_at >= p.at) AS conv "
            "FROM (SELECT run_id, MIN(at) AS at FROM path WHERE flow = ? AND step = ? "
            "GROUP BY run_id) p JOIN runs r ON r.run_id = p.run_id GROUP BY 1",
            (name, s.index),
        )
        by = {r["grp"]: (int(r["n"]), int(r["conv"] or 0)) for r in reached}
        nt, xt = by.get("treatment", (0, 0))
        nc, xc = by.get("control", (0, 0))
        outcomes = {
            f"{r['what']}:{r['detail']}" if r["what"] == "skipped" else r["what"]: r["n"]
            for r in q(
                "SELECT what, detail, COUNT(DISTINCT run_id) AS n FROM path WHERE flow = ? "
                "AND step = ? AND what IN ('sent', 'skipped', 'failed', 'deferred') "
                "GROUP BY what, detail",
                (name, s.index),
            )
        }
        skipped = {k.split(":", 1)[1]: v for k, v in outcomes.items() if k.startswith("skipped:")}
        # Held for quiet hours now: still active at this step, due when the quiet hours end
        # (``deferred`` above counts every run ever held here, sent since or not).
        waiting = q(
            "SELECT COUNT(*) AS n FROM runs WHERE flow = ? AND step = ? AND status = 'active' "
            "AND deferred = 1",
            (name, s.index),
        )[0]["n"]
        steps.append(
            {
                "index": s.index,
                "name": s.name,
                "kind": s.kind,
                "channel": s.channel,
                "detail": _detail(s),
                # A wait's length, for a page or command to write in its language.
                "seconds": int(s.duration.total_seconds()) if s.duration is not None else None,
                "reached": nt + nc,
                "sent": int(outcomes.get("sent", 0)),
                "failed": int(outcomes.get("failed", 0)),
                "deferred": int(outcomes.get("deferred", 0)),
                "waiting": int(waiting or 0),
                "skipped": skipped,
                "converted": xt + xc,
                "effect": _effect(xt, nt, xc, nc),
            }
        )
    # The flow as a whole: everyone who went through the split, treated against control.
    grp = q(
        "SELECT grp, COUNT(*) AS n, SUM(converted_at IS NOT NULL) AS conv FROM runs "
        "WHERE flow = ? AND grp IS NOT NULL GROUP BY grp",
        (name,),
    )
    g = {r["grp"]: (int(r["n"]), int(r["conv"] or 0)) for r in grp}
    nt, xt = g.get("treatment", (0, 0))
    nc, xc = g.get("control", (0, 0))
    sent = q("SELECT COUNT(*) AS n FROM messages WHERE flow = ? AND status = 'sent'", (name,))[0][
        "n"
    ]
    return {
        "flow": name,
        "trigger": flow.trigger.describe(),
        "control_share": flow.control_share,
        "entered": int(totals["entered"] or 0),
        "active": int(totals["active"] or 0),
        "completed": int(totals["completed"] or 0),
        "exited": int(totals["exited"] or 0),
        "converted": int(totals["converted"] or 0),
        "sent": int(sent),
        "exits": exits,
        "effect": _effect(xt, nt, xc, nc),
        "steps": steps,
    }


def _detail(s: Any) -> str:
    if s.kind == "wait":
        secs = int(s.duration.total_seconds())
        for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
            if secs % size == 0 and secs >= size:
                n = secs // size
                return f"{n} {unit}{'s' if n != 1 else ''}"
        return f"{secs} seconds"
    if s.kind == "condition":
        return str(s.rule)
    if s.kind == "split":
        return f"control {s.control:.0%}"
    return str(s.channel)
