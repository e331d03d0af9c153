"""Triggered flows: a customer enters on a segment change, an event or a date, then waits,
is checked, split and messaged step by step, with every step logged and crash-safe.

    >>> from segmentum.flows import Flows, catalog
    >>> flows = Flows.for_warehouse("duckdb://")
    >>> flows.save(catalog.from_template("abandoned_cart", "cart")).name
    'cart'

See docs/flows.md.
"""

from segmentum.flows.engine import Flows, Runner, TickReport
from segmentum.flows.spec import Flow, FlowError, parse_flow
from segmentum.flows.store import FlowStore, flows_path

__all__ = [
    "Flow",
    "FlowError",
    "FlowStore",
    "Flows",
    "Runner",
    "TickReport",
    "flows_path",
    "parse_flow",
]
