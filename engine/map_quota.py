"""The ``map_width`` quota: how many tasks one superstep of a run may have.

A map runs one task per item of a list in the state, and a node may send any number of items
(LangGraph's ``Send``): without a bound, one run over a list of a million items dispatches a
million hops. The quota bounds a superstep's width, whatever makes it wide (map items, sent
items, plain nodes), where the width is first known:

- at the start (:meth:`engine.service.RunService.start_run`), before the run is created: the
  request is refused with :class:`~engine.errors.MapTooWide` (HTTP 429 ``quota_exceeded``
  naming ``map_width``; a queued request is parked, since it would fail the same way again);
- at each close (:meth:`engine.protocol.HopProtocol._planned`), before the next superstep is
  dispatched: the run fails with the same message, as for any superstep it cannot plan.

0 turns it off (the in-process runner's default). On AWS it is the template parameter
``MaxMapWidth`` (``HOPGRAPH_QUOTA_MAP_WIDTH``).
"""

from __future__ import annotations

from engine.errors import MapTooWide
from engine.superstep import Plan

SETTING = "MaxMapWidth"


def check_map_width(plan: Plan, limit: int) -> None:
    """Raise :class:`MapTooWide` if ``plan`` has more than ``limit`` tasks (0: no limit)."""
    if limit <= 0 or len(plan) <= limit:
        return
    raise MapTooWide(len(plan), limit, SETTING, _widest(plan))


def _widest(plan: Plan) -> str:
    """What makes the plan wide, for the message: its widest map node, or its sent items."""
    maps = {node: size for node, size in plan.sizes.items() if size is not None}
    node, size = max(maps.items(), key=lambda pair: pair[1], default=("", 0))
    if len(plan.sends) > size:
        return f"{len(plan.sends)} items sent"
    return f"map node {node!r} over {size} items"
