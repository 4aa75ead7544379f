"""Planners: each builds a LangGraph ``StateGraph`` from the same four roles, wired differently.

``react`` (adaptive chain), ``plan`` (whole plan first), ``program`` (a DSL program run by an
interpreter), ``tree`` (sub-questions answered in parallel branches, then merged or voted).
See docs/planners.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from agentkit.errors import ConfigError

PLANNERS = ("react", "plan", "program", "tree")
#: Planners whose graph runs several nodes in one super-step (``tree``'s branches, LangGraph's
#: ``Send``): they need LangGraph's thread pool. The others run one node per super-step, so
#: their background checkpoint writes run inline, in the graph's thread
#: (:func:`agentkit.graph.inline_background_work`), and a run starts no thread for them.
FANS_OUT = frozenset({"tree"})


def get_builder(name: str) -> Callable[..., Any]:
    """The ``build_<name>(rt, *, checkpointer=None)`` function of a planner by name."""
    if name not in PLANNERS:
        raise ConfigError(f"unknown planner {name!r}; available: {', '.join(PLANNERS)}")
    return getattr(importlib.import_module(f"agentkit.planners.{name}"), f"build_{name}")
