"""The one interface every model role (controller, decider, summarizer) calls.

A backend turns a list of chat messages (text plus images given as file paths) into a
:class:`Generation`: the text, any native tool calls, and token counts for the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentkit.state import ToolCall


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str
    images: list[Path] = Field(
        default_factory=list, description="Image files shown with this message, in order."
    )


class Generation(BaseModel):
    text: str
    tool_calls: list[ToolCall] = Field(
        default_factory=list, description="Native function calls, when the backend used them."
    )
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0


@runtime_checkable
class Backend(Protocol):
    """What the graph needs of a model."""

    name: str

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Generation:
        """Answer the conversation.

        ``tools`` are OpenAI function schemas; a backend that supports native function calling
        may return ``tool_calls`` instead of ReAct text, others ignore them (the prompt already
        lists the tools). ``stop`` strings end generation (``"Observation:"`` for ReAct).
        ``on_token`` streams text pieces as they are generated.
        """
        ...


@runtime_checkable
class Constraint(Protocol):
    """A prefix grammar for constrained decoding (e.g.
    :class:`~agentkit.planners.grammar.ProgramGrammar`): ``start()`` is the state of the empty
    reply, ``feed(state, text)`` the state after ``text`` more characters, or None once the reply
    can no longer become valid; ``done(state)`` whether the reply may end there. States are
    immutable values."""

    def start(self) -> Any: ...

    def feed(self, state: Any, text: str) -> Any | None: ...

    def done(self, state: Any) -> bool: ...


def constrained(backend: Any, constraint: Constraint | None) -> dict[str, Any]:
    """The keyword that hands ``constraint`` to ``backend.generate`` / ``candidates``: none when
    there is no constraint or the backend does not decode under one (``supports_constraints``,
    as ``hf:`` does); such a backend generates freely and its reply is checked afterwards."""
    if constraint is not None and getattr(backend, "supports_constraints", False):
        return {"constraint": constraint}
    return {}


def generate(
    backend: Backend, messages: list[Message], *, constraint: Constraint | None = None, **kw: Any
) -> Generation:
    """``backend.generate(messages, **kw)``, under ``constraint`` where the backend supports it
    (:func:`constrained`)."""
    return backend.generate(messages, **kw, **constrained(backend, constraint))


#: A model folder's runtime defaults: the planner and prompt style it was trained for, e.g.
#: ``{"planner": "program", "prompt_style": "compact"}`` (written by ``agentkit train``).
RUNTIME_HINTS_FILE = "agentkit_runtime.json"


def runtime_hints(backend: Any) -> dict[str, str]:
    """The defaults a backend's model declares (``{}`` for a model that declares none): a model
    must be prompted the way it was trained, so the agent follows them unless told otherwise."""
    hints = getattr(backend, "runtime_hints", None)
    return {str(k): str(v) for k, v in hints.items()} if isinstance(hints, dict) else {}


def load_backend(spec: str) -> Backend:
    """Build a backend from a spec string.

    * ``hf:PATH_OR_NAME`` — a local transformers image-text-to-text folder, or a shipped name
      such as ``agentkit-mllm`` (resolved by :func:`agentkit.weights.resolve`);
    * ``openai:URL#MODEL`` — any OpenAI-compatible chat endpoint (``URL`` up to ``/v1``);
    * ``scripted:FILE.json`` — the test double of :mod:`agentkit.testing` (never a default).
    """
    from agentkit.errors import ConfigError

    kind, _, rest = spec.partition(":")
    if kind == "hf" and rest:
        from agentkit.mllm.backends.hf import HFBackend

        return HFBackend(rest)
    if kind == "openai" and rest:
        from agentkit.mllm.backends.openai import OpenAIBackend

        url, _, model = rest.partition("#")
        return OpenAIBackend(url, model or None)
    if kind == "scripted" and rest:
        from agentkit.testing import ScriptedBackend

        return ScriptedBackend.from_file(rest)
    raise ConfigError(
        f"model spec {spec!r} not understood; expected hf:PATH, openai:URL#MODEL or scripted:FILE.json"
    )
