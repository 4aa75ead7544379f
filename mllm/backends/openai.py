"""Any OpenAI-compatible chat endpoint (vLLM, TGI, llama.cpp, ``agentkit serve``, OpenAI itself)
as a :class:`~agentkit.mllm.backends.base.Backend`.

Plain HTTP with httpx, no ``openai`` package: ``POST {url}/chat/completions``. Images travel as
base64 PNG data URLs inside the request only (state and traces keep file paths). When the caller
passes ``tools``, they are sent as OpenAI function tools and the answer's native ``tool_calls``
become :class:`~agentkit.state.ToolCall` objects; a server that rejects ``tools`` is asked once
more without them and remembered, so the ReAct text in the prompt carries the tools instead.
Every failure (server down, HTTP error status, malformed answer, time-out) is a
:class:`~agentkit.errors.BackendError` naming the URL.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from agentkit.errors import BackendError
from agentkit.mllm.backends.base import Generation, Message
from agentkit.mllm.backends.hf import StopFilter, cut_at_stop
from agentkit.state import ToolCall

#: Environment variables read for the API key, in order.
KEY_ENV = ("AGENTKIT_OPENAI_KEY", "OPENAI_API_KEY")
#: Stop strings sent to the server (OpenAI's limit); any further ones are applied here.
MAX_STOP = 4


def image_data_url(path: str | Path) -> str:
    """An image file as a ``data:image/png;base64,...`` URL (validated and re-encoded as PNG)."""
    from agentkit.media import open_image

    buf = io.BytesIO()
    open_image(path).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in the chat-completions format; a message with images gets content parts, the
    images first (as the hf backend places them), then the text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.images:
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": image_data_url(p)}} for p in m.images
            ]
            parts.append({"type": "text", "text": m.content})
            out.append({"role": m.role, "content": parts})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def tool_calls_from_openai(calls: list[dict[str, Any]]) -> list[ToolCall]:
    """Native function calls (``[{"id", "function": {"name", "arguments"}}]``) as ToolCalls,
    through the project's one parser (:func:`agentkit.mllm.toolcall.from_openai`).

    Where that parser rejects the list (arguments not a JSON object), each call is still kept,
    with its raw arguments under ``"input"``, so the executor's validation tells the model what
    was wrong instead of the call silently vanishing.
    """
    from agentkit.mllm.toolcall import from_openai

    parsed = from_openai(calls)
    if isinstance(parsed, list):
        return parsed
    return [_lenient_tool_call(c) for c in calls]


def _lenient_tool_call(call: dict[str, Any]) -> ToolCall:
    fn = call.get("function") or {}
    raw = fn.get("arguments")
    args: dict[str, Any]
    if isinstance(raw, dict):
        args = raw
    elif not raw:
        args = {}
    else:
        try:
            parsed = json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            parsed = None
        args = parsed if isinstance(parsed, dict) else {"input": raw}
    return ToolCall(tool=str(fn.get("name") or ""), args=args, thought="", id=call.get("id"))


class OpenAIBackend:
    """A chat model behind an OpenAI-compatible HTTP API.

    ``url`` is the API root including ``/v1`` (``http://localhost:8000/v1``); ``model=None`` takes
    the first model that ``GET {url}/models`` lists (asked once, on first use). ``api_key``
    defaults to ``$AGENTKIT_OPENAI_KEY`` or ``$OPENAI_API_KEY``. ``timeout`` bounds each request
    in seconds (connecting: at most 10 s).
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise BackendError(
                f"OpenAI-compatible URL {url!r} must start with http:// or https:// (e.g. http://localhost:8000/v1)"
            )
        self.url = url.rstrip("/")
        self._model = model
        self.timeout = timeout
        key = api_key or next((os.environ[k] for k in KEY_ENV if os.environ.get(k)), None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(10.0, timeout))
        )
        self.tools_supported: bool | None = (
            None  # None until a request with tools has been answered
        )

    # -- the model name -------------------------------------------------------------------------

    @property
    def model(self) -> str:
        if self._model is None:
            data = self._json(self._request("GET", "/models"))
            try:
                self._model = str(data["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise BackendError(
                    f"{self.url}/models lists no model ({str(data)[:200]}); pass one as openai:URL#MODEL"
                ) from None
        return self._model

    @property
    def name(self) -> str:
        """The model's name once known (never a network call); the URL before that."""
        return self._model or self.url

    # -- HTTP -----------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> httpx.Response:
        where = self.url + path
        try:
            r = self._client.request(method, where, json=payload)
        except httpx.TimeoutException:
            raise BackendError(f"{where} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise BackendError(
                f"cannot reach {where}: {type(e).__name__}: {e}. Is the server running?"
            ) from None
        if r.status_code >= 400:
            raise _status_error(where, r.status_code, r.text)
        return r

    @staticmethod
    def _json(r: httpx.Response) -> Any:
        try:
            return r.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError(
                f"{r.request.url} answered HTTP {r.status_code} with malformed JSON: {r.text[:200]!r}"
            ) from None

    def _payload(
        self,
        messages: list[Message],
        tools: Any,
        max_new_tokens: int,
        stop: list[str] | None,
        stream: bool,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
            "max_tokens": max_new_tokens,
            "temperature": 0.0,  # greedy, like the hf backend
        }
        if stop:
            payload["stop"] = list(stop)[:MAX_STOP]
        if tools and self.tools_supported is not False:
            payload["tools"] = tools
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    # -- generation -----------------------------------------------------------------------------

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Generation:
        """One chat completion. With ``on_token`` the answer streams (SSE) and each text piece is
        passed on as it arrives. The text ends before the first ``stop`` string: servers send at
        most four and some keep the stop string, so the text is cut here too."""
        start = time.perf_counter()
        stops = [s for s in stop or [] if s]
        payload = self._payload(messages, tools, max_new_tokens, stops, stream=on_token is not None)
        sink = StopFilter(on_token, stops) if on_token is not None else None
        try:
            gen = self._complete(payload, sink)
        except _StatusError as e:
            # A server without function calling tends to answer 400/422/500 to `tools`: ask once
            # more without them, and if that works stop sending them; the prompt still describes
            # the tools, so the model answers in ReAct text.
            if "tools" not in payload or e.status not in (400, 404, 422, 500, 501):
                raise
            payload.pop("tools")
            gen = self._complete(payload, sink)
            self.tools_supported = False
        else:
            if "tools" in payload:
                self.tools_supported = True
        if sink is not None:
            sink.feed("", final=True)
        gen.text = cut_at_stop(gen.text, stops)
        gen.seconds = time.perf_counter() - start
        return gen

    def _complete(self, payload: dict[str, Any], sink: StopFilter | None) -> Generation:
        if sink is None:
            data = self._json(self._request("POST", "/chat/completions", payload))
            return self._parse_completion(data)
        return self._stream(payload, sink)

    def _parse_completion(self, data: Any) -> Generation:
        where = f"{self.url}/chat/completions"
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(
                f"{where} answered without choices[0].message: {str(data)[:300]}"
            ) from None
        usage = data.get("usage") or {}
        return Generation(
            text=message.get("content") or "",
            tool_calls=tool_calls_from_openai(message.get("tool_calls") or []),
            model=str(data.get("model") or self.model),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
        )

    def _stream(self, payload: dict[str, Any], sink: StopFilter) -> Generation:
        """Read the SSE stream, passing content through ``sink``; leaving early (a stop string
        the server was not sent) closes the connection, which ends generation there."""
        where = f"{self.url}/chat/completions"
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage: dict[str, Any] = {}
        model = self.model
        pieces = 0
        try:
            with self._client.stream("POST", where, json=payload) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _status_error(where, r.status_code, r.text)
                for chunk in _sse_events(r.iter_lines(), where):
                    usage = chunk.get("usage") or usage
                    model = chunk.get("model") or model
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            text.append(delta["content"])
                            pieces += 1
                            sink.feed(delta["content"])
                        for tc in delta.get("tool_calls") or []:
                            _merge_tool_call_delta(calls, tc)
                    if sink.stopped:
                        break
        except httpx.TimeoutException:
            raise BackendError(
                f"{where} stopped answering for {self.timeout:g} s while streaming"
            ) from None
        except httpx.HTTPError as e:
            raise BackendError(
                f"cannot reach {where}: {type(e).__name__}: {e}. Is the server running?"
            ) from None
        return Generation(
            text="".join(text),
            tool_calls=tool_calls_from_openai([calls[i] for i in sorted(calls)]),
            model=str(model),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            # Without usage in the stream, count the content pieces (one per token on most servers).
            tokens_out=int(usage.get("completion_tokens") or pieces),
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r}, model={self._model!r})"


class _StatusError(BackendError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _status_error(where: str, status: int, body: str) -> _StatusError:
    hint = " (is the URL the API root ending in /v1?)" if status == 404 else ""
    return _StatusError(f"{where} answered HTTP {status}{hint}: {body[:300]}", status)


def _sse_events(lines: Iterator[str], where: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent-event stream, up to ``data: [DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments, event names, keep-alives
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise BackendError(f"{where} streamed malformed JSON: {data[:200]!r}") from None
        if isinstance(event, dict) and "error" in event:
            raise BackendError(
                f"{where} reported an error while streaming: {str(event['error'])[:300]}"
            )
        if isinstance(event, dict):
            yield event


def _merge_tool_call_delta(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """Streamed tool calls arrive in pieces keyed by index: the name once, arguments in chunks."""
    call = calls.setdefault(
        int(delta.get("index", len(calls))), {"id": None, "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    fn = delta.get("function") or {}
    if fn.get("name"):
        call["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        call["function"]["arguments"] += (
            fn["arguments"] if isinstance(fn["arguments"], str) else json.dumps(fn["arguments"])
        )
