"""Planners: each builds a LangGraph ``StateGraph`` from the same four roles, wired differently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentkit.errors import ConfigError

PLANNERS = ("react",)


def get_builder(name: str) -> Callable[..., Any]:
    """The ``build_*`` function of a planner by name."""
    if name == "react":
        from agentkit.planners.react import build_react

        return build_react
    raise ConfigError(f"unknown planner {name!r}; available: {', '.join(PLANNERS)}")
