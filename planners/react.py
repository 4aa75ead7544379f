"""``react``: one adaptive chain (ReAct / GPT4Tools).

    ingest → controller ─┬─ call ──→ executor → decider ─┬─ more → controller
                         └─ answer / unreadable → decider └─ done → summarizer → END

The controller decides one step at a time, so the chain is as long as the question needs, up to
the task's step budget, which the decider enforces.
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, StateGraph

from agentkit.planners import roles
from agentkit.runtime import Runtime
from agentkit.state import RunState


def build_react(rt: Runtime, *, checkpointer: BaseCheckpointSaver | None = None):
    g = StateGraph(RunState)
    g.add_node("controller", roles.make_controller(rt))
    g.add_node("executor", roles.make_executor(rt))
    g.add_node("decider", roles.make_decider(rt))
    g.add_node("summarizer", roles.make_summarizer(rt))
    roles.add_ingest(g, rt)
    g.add_conditional_edges("controller", roles.route_after_controller, ["executor", "decider"])
    g.add_edge("executor", "decider")
    g.add_conditional_edges(
        "decider", roles.route_after_decider, ["controller", "rehear", "summarizer"]
    )
    g.add_edge("summarizer", END)
    return g.compile(checkpointer=checkpointer)
