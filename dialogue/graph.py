"""The conversation flow of every worker, on one screen.

    START -> understand -> escalate -> decide -> render -> END

One graph per worker spec, checkpointed by conversation key, so any process that
shares the checkpointer can take the next turn of any conversation. The flow is a
straight line, so the engine runs the same node functions in this order itself and writes
the checkpoint LangGraph would write (see dialogue/engine.py for why).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from dialogue.flow_nodes import make_flow_decide, make_flow_understand
from dialogue.flow_runner import FlowServices
from dialogue.nodes import ConversationState, make_decide, make_escalate, make_render, make_understand
from dialogue.spec import WorkerSpec
from extraction.base import Extractor
from extraction.rules import RuleExtractor

Node = Callable[[ConversationState], Awaitable[ConversationState]]


def make_nodes(spec: WorkerSpec, extractor: Extractor | None = None,
               services: FlowServices | None = None) -> list[tuple[str, Node]]:
    """The steps of a turn, in the order they run. A worker with tasks reads and decides with
    the flow steps (dialogue/flow_nodes.py); `services` holds its routers and action client."""
    extractor = extractor or RuleExtractor(spec.phone_region)
    if spec.tasks:
        services = services or FlowServices.for_spec(spec, None)
        understand, decide = make_flow_understand(spec, extractor, services), make_flow_decide(spec, services)
    else:
        understand, decide = make_understand(spec, extractor), make_decide(spec)
    return [("understand", understand), ("escalate", make_escalate(spec)), ("decide", decide),
            ("render", make_render(spec))]


def build_graph(spec: WorkerSpec, extractor: Extractor | None = None, checkpointer: Any = None,
                nodes: list[tuple[str, Node]] | None = None) -> Any:
    nodes = nodes or make_nodes(spec, extractor)
    builder = StateGraph(ConversationState)
    previous = START
    for name, node in nodes:
        builder.add_node(name, node)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=checkpointer)
