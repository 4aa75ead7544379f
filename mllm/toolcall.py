"""Reading model text as a tool call or a final answer (GPT4Tools / ReAct format).

The format the model writes::

    Thought: I need to find the cubes.
    Action: detect
    Action Input: {"image": "image_0", "classes": ["cube"]}

and after the observations, ``Thought: ... Final Answer: 3``. :func:`parse` never raises: it
returns a :class:`ToolCall`, a :class:`FinalAnswer` or a :class:`ParseError` naming the problem,
which goes back to the controller as an observation. Native function calls of OpenAI-compatible
servers become the same :class:`ToolCall` through :func:`from_openai`.
"""

from __future__ import annotations

from pydantic import BaseModel

from agentkit.state import ToolCall

__all__ = ["FinalAnswer", "ParseError", "ToolCall", "format_call", "from_openai", "parse"]


class FinalAnswer(BaseModel):
    answer: str
    thought: str = ""


class ParseError(BaseModel):
    message: str
    text: str = ""
