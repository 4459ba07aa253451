"""LangGraph's time-travel how-to, ported (``examples/langgraph/time_travel.json``): run a
graph, read its history, replay from a checkpoint, fork it with an updated state. The same
steps on LangGraph itself (``get_state_history``, ``invoke(None, config)``,
``update_state``) must give the same states, checkpoint by checkpoint.

The how-to's nodes call a model; here they are the same two nodes, deterministic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from engine import history
from engine.history import ForkRequest
from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import RunService
from engine.toolkits.basics import toolkit as basics

PORT = Path(__file__).resolve().parents[2] / "examples" / "langgraph" / "time_travel.json"
TOPIC = "socks in the dryer"


class Hopgraph:
    """The port on the run protocol in process (memory store, hops delivered in order)."""

    def __init__(self) -> None:
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.service = RunService(self.store, self.queue, basics)
        record, _ = self.service.create_graph(json.loads(PORT.read_text()))
        self.graph_id = record.graph_id

    def drain(self) -> None:
        self.queue.drain(lambda hop: self.service.process_hop(hop, "d"))

    def run(self) -> str:
        run, _ = self.service.start_run(self.graph_id, {})
        self.drain()
        return run.run_id

    def fork(self, run_id: str, seq: int, update: dict[str, Any]) -> str:
        parent = self.store.get_run(run_id)
        forked, _ = history.fork_run(self.service, parent, ForkRequest(seq, update), None)
        self.drain()
        return forked.run_id

    def states(self, run_id: str) -> list[tuple[Any, dict[str, Any]]]:
        """(where it went next, the state) after each superstep, oldest first."""
        page = history.history(self.store, run_id, states=True)
        return [(e.next, e.state or {}) for e in page.entries]


class State(TypedDict):
    topic: NotRequired[str]
    joke: NotRequired[str]


def langgraph_time_travel() -> dict[str, Any]:
    """The how-to on LangGraph: the run's checkpoints, a replay and a fork."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(State)
    builder.add_node("generate_topic", lambda state: {"topic": TOPIC})
    builder.add_node("write_joke", lambda s: {"joke": f"Why did the {s['topic']} cross the road?"})
    builder.add_edge(START, "generate_topic")
    builder.add_edge("generate_topic", "write_joke")
    builder.add_edge("write_joke", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "1"}}
    final = graph.invoke({}, config)
    checkpoints = list(graph.get_state_history(config))  # newest first
    selected = next(s for s in checkpoints if s.next == ("write_joke",))
    replayed = graph.invoke(None, selected.config)
    new_config = graph.update_state(selected.config, values={"topic": "chickens"})
    forked_checkpoint = graph.get_state(new_config)
    forked = graph.invoke(None, new_config)
    after_each = [  # the checkpoint after each superstep that ran a node, oldest first
        (list(s.next), dict(s.values))
        for s in reversed(checkpoints)
        if s.metadata is not None and s.metadata.get("step", -1) >= 1
    ]
    return {
        "final": dict(final), "after_each": after_each, "replayed": dict(replayed),
        "forked": dict(forked), "forked_next": list(forked_checkpoint.next),
        "forked_values": dict(forked_checkpoint.values),
    }  # fmt: skip


def test_history_replay_and_fork_end_as_in_langgraph() -> None:
    reference = langgraph_time_travel()
    port = Hopgraph()

    # Given the run: its checkpoints are LangGraph's, superstep by superstep
    run_id = port.run()
    checkpoints = port.states(run_id)
    assert port.store.get_run(run_id).state == reference["final"]
    assert [state for _, state in checkpoints] == [v for _, v in reference["after_each"]]
    assert [n for n, _ in checkpoints] == ["write_joke", "END"]
    assert [n for n, _ in reference["after_each"]] == [["write_joke"], []]

    # When it is replayed from the checkpoint before write_joke (a fork with no update)
    seq = next(i for i, (n, _) in enumerate(checkpoints) if n == "write_joke")
    replayed = port.fork(run_id, seq, {})
    # Then write_joke runs again, to the same end as LangGraph's replay
    assert port.store.get_run(replayed).state == reference["replayed"]

    # When it is forked there with another topic (LangGraph's update_state)
    forked = port.fork(run_id, seq, {"topic": "chickens"})
    # Then the fork's checkpoint and end are LangGraph's
    first_next, first_state = port.states(forked)[0]
    assert first_state == reference["forked_values"]
    assert [first_next] == reference["forked_next"]
    assert port.store.get_run(forked).state == reference["forked"]
    assert reference["forked"]["joke"] == "Why did the chickens cross the road?"
