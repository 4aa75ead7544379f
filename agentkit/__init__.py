"""agentkit: an agentic, tool-using visual reasoning framework with a trainable multimodal core.

``import agentkit`` stays light (no torch): heavy parts load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentkit.state import RunResult, Step, Task, ToolCall

if TYPE_CHECKING:
    from agentkit.graph import Agent

__all__ = ["Agent", "RunResult", "Step", "Task", "ToolCall"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from agentkit.graph import Agent

        return Agent
    raise AttributeError(f"module 'agentkit' has no attribute {name!r}")
