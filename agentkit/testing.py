"""Test doubles that make the agent loop testable without a model or a network.

:class:`ScriptedBackend` replies with scripted text. It is never a default: a user gets it only
by naming it (``--model scripted:replies.json``), which the CLI tests do to drive real processes.
:class:`ComputeThenScript` runs a real model on every turn (timed) and answers with a scripted
reply: the benchmarks measure a fixed chain at a real model's cost this way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from agentkit.errors import BackendError
from agentkit.mllm.backends.base import Generation, Message
from agentkit.state import ToolCall


class ScriptedBackend:
    """Replies from a script.

    ``index_by="call"`` replies in order, one reply per call. ``index_by="observations"`` picks the
    reply by how many ``Observation:`` lines the last message holds, so a run resumed in a new
    process (a new backend) continues the script where the transcript stands.

    A reply is a string or a dict ``{"text": str, "tool_calls": [...], "sleep": seconds}``.
    """

    def __init__(
        self,
        replies: Sequence[str | dict[str, Any]],
        *,
        index_by: Literal["call", "observations"] = "call",
        name: str = "scripted",
    ) -> None:
        self.replies = list(replies)
        self.index_by = index_by
        self.name = name
        self.calls: list[list[Message]] = []

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedBackend:
        data = json.loads(Path(path).read_text())
        if isinstance(data, list):
            return cls(data)
        return cls(
            data["replies"],
            index_by=data.get("index_by", "call"),
            name=data.get("name", "scripted"),
        )

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Generation:
        self.calls.append(messages)
        if self.index_by == "call":
            i = len(self.calls) - 1
        else:
            i = sum(line.startswith("Observation:") for line in messages[-1].content.splitlines())
        if i >= len(self.replies):
            raise BackendError(
                f"scripted backend has no reply #{i} (script has {len(self.replies)})"
            )
        reply = self.replies[i]
        if isinstance(reply, str):
            reply = {"text": reply}
        if reply.get("sleep"):
            time.sleep(float(reply["sleep"]))
        text = reply.get("text", "")
        for s in stop or []:
            text = text.split(s)[0]
        if on_token is not None:
            on_token(text)
        calls = [ToolCall.model_validate(c) for c in reply.get("tool_calls", [])]
        prompt_len = sum(len(m.content.split()) for m in messages)
        return Generation(
            text=text,
            tool_calls=calls,
            model=self.name,
            tokens_in=prompt_len,
            tokens_out=len(text.split()),
        )


class ComputeThenScript:
    """Generates ``tokens`` with a real ``backend`` on every turn, timing it in
    ``model_seconds``, then answers with the next scripted reply (the last one repeats), so a run
    follows a fixed chain while paying what the model would."""

    def __init__(self, backend: Any, replies: Sequence[str], tokens: int, name: str = "") -> None:
        self.backend, self.replies, self.tokens = backend, list(replies), tokens
        self.name = name or f"{getattr(backend, 'name', 'model')}+script"
        self.model_seconds = 0.0
        self.i = 0

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Generation:
        t0 = time.perf_counter()
        gen = self.backend.generate(messages, max_new_tokens=self.tokens)
        self.model_seconds += time.perf_counter() - t0
        text = self.replies[min(self.i, len(self.replies) - 1)]
        self.i += 1
        return gen.model_copy(update={"text": text})
