"""Lambda entry point of the sweeper (``functions.sweeper.handler.handler``).

An EventBridge schedule (template.yaml, ``SweeperFunction``) calls it every minute; the local
stack calls it on a timer. Each call looks at the running runs and re-sends the hops of those
whose open superstep made no progress for longer than the lease (``HOPGRAPH_LEASE_SECONDS``):
the last resort of the outbox (engine/protocol.py), for a request or a worker that died
between a commit and its dispatch, or a hop that was lost. A hop that was alive after all
finds its slot taken and stops, so sweeping is always safe.
"""

from __future__ import annotations

from typing import Any

from functions.deadletter.service import service
from functions.observability import count, logger, metrics, traced


@traced
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sweep the running runs once; returns how many hops went to which runs."""
    # The dead-letter consumer's service: the store, the queue and no tools (sweeping never
    # runs a tool, and a toolkit that fails to import must not stop the sweeper).
    sent = service().sweep()
    for run_id, hops in sent.items():
        logger.warning("stalled run swept: hops re-sent", extra={"run_id": run_id, "hops": hops})
    if sent:
        count("RunsSwept", len(sent))
    return {"swept": sent}
