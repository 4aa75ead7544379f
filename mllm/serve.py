"""Serve any backend as an OpenAI-compatible chat endpoint (what ``agentkit serve`` runs).

Endpoints::

    GET  /v1/models            -> {"object": "list", "data": [{"id": MODEL_NAME, ...}]}
    POST /v1/chat/completions  -> a chat.completion, or with "stream": true server-sent
                                  chat.completion.chunk events ending in "data: [DONE]"
    GET  /health               -> {"status": "ok"}

Messages may have string content or content parts: ``{"type": "text"}`` and
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``. Images are decoded
to temporary files for the backend (which takes paths) and deleted after the answer; only
``data:`` URLs are accepted, the server never fetches a URL. ``tool`` messages become
``Observation: ...`` user turns and an assistant's ``tool_calls`` become ReAct ``Action`` lines,
so a ReAct-trained model sees the format it was trained on.

Function calling: when the request has ``tools`` and the model's whole answer parses as a ReAct
tool call (``Action: NAME`` / ``Action Input: {...}``, read by :func:`agentkit.mllm.toolcall.parse`)
of one of those tools, a non-streaming answer returns it as ``message.tool_calls`` with
``finish_reason: "tool_calls"`` and the thought as ``content``. Streaming answers are always text.
The request's ``model`` field is not checked: the server serves one model.

Run it::

    python -m agentkit.mllm.serve hf:runs/tiny --port 8000
    curl localhost:8000/v1/models
"""

from __future__ import annotations

import base64
import binascii
import json
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import AgentkitError
from agentkit.mllm.backends.base import Backend, Generation, Message

if TYPE_CHECKING:
    from fastapi import FastAPI

#: Largest decoded image accepted in a request, in bytes.
MAX_IMAGE_BYTES = 20_000_000
_SUFFIX = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
}


class ChatRequest(BaseModel):
    """The part of OpenAI's chat-completions request this server reads; other fields are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


class RequestError(AgentkitError):
    """The request cannot be served as sent (HTTP 400)."""


def _decode_image(url: str, folder: Path, n: int) -> Path:
    if not url.startswith("data:"):
        raise RequestError(
            f"image_url {url[:60]!r} is not a data: URL; this server never fetches URLs, send the image as data:image/png;base64,..."
        )
    header, _, payload = url.partition(",")
    mime = header[5:].split(";")[0].lower()
    if ";base64" not in header:
        raise RequestError(f"image data URL must be base64-encoded (got header {header[:60]!r})")
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
        raise RequestError(f"image {n} is larger than {MAX_IMAGE_BYTES} bytes")
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"image {n}: invalid base64: {e}") from None
    path = folder / f"image_{n}{_SUFFIX.get(mime, '.png')}"
    path.write_bytes(raw)
    return path


def _react_call(call: dict[str, Any]) -> str:
    """An assistant's native call as the ReAct text a ReAct-trained model was trained on."""
    from agentkit.mllm.toolcall import format_call, from_openai

    parsed = from_openai([call])
    if isinstance(parsed, list):
        return format_call(parsed[0])
    fn = call.get("function") or {}
    return f"Action: {fn.get('name', '')}\nAction Input: {fn.get('arguments') or '{}'}"


def to_messages(raw: list[dict[str, Any]], folder: Path) -> list[Message]:
    """OpenAI chat messages as backend :class:`Message` objects, images saved under ``folder``."""
    out: list[Message] = []
    n_images = 0
    for i, m in enumerate(raw):
        role = m.get("role")
        content = m.get("content")
        texts: list[str] = []
        images: list[Path] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url":
                    iu = part.get("image_url")
                    url = iu.get("url", "") if isinstance(iu, dict) else str(iu or "")
                    images.append(_decode_image(url, folder, n_images))
                    n_images += 1
                else:
                    raise RequestError(
                        f"messages[{i}]: content part type {kind!r} not supported (text, image_url)"
                    )
        elif content is not None:
            raise RequestError(f"messages[{i}].content must be a string or a list of parts")
        if role == "assistant" and m.get("tool_calls"):
            texts.extend(_react_call(c) for c in m["tool_calls"])
        if role == "tool":
            from agentkit.mllm.toolcall import format_observation

            role, texts = "user", [format_observation("\n".join(texts))]
        elif role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise RequestError(
                f"messages[{i}].role {role!r} not supported (system, user, assistant, tool)"
            )
        out.append(Message(role=role, content="\n".join(texts), images=images))
    return out


def _as_tool_calls(
    gen: Generation, tools: list[dict[str, Any]] | None
) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) for the response message: native calls as they are, or the ReAct
    text read as a call of one of the request's tools."""
    if gen.tool_calls:
        calls = gen.tool_calls
    elif tools:
        from agentkit.mllm.toolcall import parse
        from agentkit.state import ToolCall

        names = [n for t in tools if isinstance(n := (t.get("function") or {}).get("name"), str)]
        parsed = parse(gen.text, names)
        if not isinstance(parsed, ToolCall):
            return gen.text, []
        calls = [parsed]
    else:
        return gen.text, []
    # Native calls come with the model's own content; a parsed ReAct call keeps only its thought.
    content = (gen.text or None) if gen.tool_calls else (calls[0].thought or None)
    return content, [
        {
            "id": c.id or f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": c.tool, "arguments": json.dumps(c.args)},
        }
        for c in calls
    ]


def build_app(backend: Backend, model_name: str | None = None) -> FastAPI:
    """A FastAPI app serving ``backend`` under ``/v1`` as model ``model_name`` (default: its name)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse

    name = model_name or backend.name
    app = FastAPI(title="agentkit", description=f"OpenAI-compatible endpoint for {name}")
    created = int(time.time())

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": kind, "code": status}}, status_code=status
        )

    @app.exception_handler(RequestError)
    def _bad_request(_: Request, e: RequestError) -> JSONResponse:
        return error(400, str(e), "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return error(400, f"invalid request: {e.errors()}", "invalid_request_error")

    @app.exception_handler(AgentkitError)
    def _backend_failed(_: Request, e: AgentkitError) -> JSONResponse:
        return error(500, f"{type(e).__name__}: {e}", "server_error")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": "agentkit"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    def chat(req: ChatRequest) -> dict[str, Any] | StreamingResponse:
        max_new = req.max_completion_tokens or req.max_tokens or 256
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        tmp = tempfile.TemporaryDirectory(prefix="agentkit-serve-")
        try:
            messages = to_messages(req.messages, Path(tmp.name))
        except BaseException:
            tmp.cleanup()
            raise
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _stream(backend, messages, max_new, stop, req.tools, tmp, cid, name, include_usage),
                media_type="text/event-stream",
            )
        try:
            gen = backend.generate(messages, tools=req.tools, max_new_tokens=max_new, stop=stop)
        finally:
            tmp.cleanup()
        content, calls = _as_tool_calls(gen, req.tools)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        finish = "tool_calls" if calls else ("length" if gen.tokens_out >= max_new else "stop")
        return {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(gen),
        }

    return app


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.tokens_in,
        "completion_tokens": gen.tokens_out,
        "total_tokens": gen.tokens_in + gen.tokens_out,
    }


_DONE = object()


def _stream(
    backend: Backend,
    messages: list[Message],
    max_new: int,
    stop: list[str] | None,
    tools: list[dict[str, Any]] | None,
    tmp: tempfile.TemporaryDirectory[str],
    cid: str,
    name: str,
    include_usage: bool,
) -> Iterator[str]:
    """SSE events of one streamed answer. The backend calls ``on_token`` from a worker thread;
    a queue hands the pieces to this generator, which the server iterates."""
    pieces: queue.Queue[Any] = queue.Queue()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["gen"] = backend.generate(
                messages, tools=tools, max_new_tokens=max_new, stop=stop, on_token=pieces.put
            )
        except Exception as e:  # reported to the client as an SSE error event
            result["error"] = e
        finally:
            tmp.cleanup()
            pieces.put(_DONE)

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n"

    threading.Thread(target=work, name="agentkit-serve-stream", daemon=True).start()
    yield event({"role": "assistant", "content": ""})
    while (piece := pieces.get()) is not _DONE:
        yield event({"content": piece})
    if "error" in result:
        e = result["error"]
        yield f"data: {json.dumps({'error': {'message': f'{type(e).__name__}: {e}', 'type': 'server_error'}})}\n\n"
        return
    gen: Generation = result["gen"]
    yield event({}, "length" if gen.tokens_out >= max_new else "stop")
    if include_usage:
        chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": name,
            "choices": [],
            "usage": _usage(gen),
        }
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def serve(
    spec: str, host: str = "127.0.0.1", port: int = 8000, *, model_name: str | None = None
) -> None:
    """Load the backend named by ``spec`` (``hf:PATH``, ``openai:URL#MODEL``) and serve it until
    interrupted. Binds to localhost by default; pass ``host="0.0.0.0"`` to expose it."""
    import uvicorn

    from agentkit.mllm.backends.base import load_backend

    backend = load_backend(spec)
    uvicorn.run(build_app(backend, model_name), host=host, port=port, log_level="info")
