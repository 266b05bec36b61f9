"""The conversation flow of every worker, on one screen.

    START -> understand -> escalate -> decide -> render -> END

One graph per worker spec, checkpointed by conversation key, so any process that
shares the checkpointer can take the next turn of any conversation.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from dialogue.nodes import ConversationState, make_decide, make_escalate, make_render, make_understand
from dialogue.spec import WorkerSpec
from extraction.base import Extractor
from extraction.rules import RuleExtractor


def build_graph(spec: WorkerSpec, extractor: Extractor | None = None, checkpointer: Any = None) -> Any:
    builder = StateGraph(ConversationState)
    builder.add_node("understand", make_understand(spec, extractor or RuleExtractor(spec.phone_region)))
    builder.add_node("escalate", make_escalate(spec))
    builder.add_node("decide", make_decide(spec))
    builder.add_node("render", make_render(spec))
    builder.add_edge(START, "understand")
    builder.add_edge("understand", "escalate")
    builder.add_edge("escalate", "decide")
    builder.add_edge("decide", "render")
    builder.add_edge("render", END)
    return builder.compile(checkpointer=checkpointer)
