"""The tool protocol, the registry and the executor's one way of running a call.

A tool is a module (or a :class:`Tool` object) with

* ``NAME`` — what the controller writes after ``Action:``;
* ``DESCRIPTION`` — one paragraph the prompt shows;
* ``Args`` — a pydantic model; its field descriptions are the argument docs the model sees;
* ``Result`` — a pydantic model of what it returns;
* ``run(args, ctx) -> Result``.

Optional: ``TIMEOUT`` (seconds, default 60) and ``summary(result) -> str`` (the observation text;
by default the result as compact JSON).

Images are passed by reference: an argument named ``image`` holds a media id of the run
(``image_0``) or, outside a run, a file path; ``ctx.image(ref)`` opens either.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from agentkit.errors import (
    MediaError,
    ToolArgsError,
    ToolError,
    ToolTimeout,
    UnknownTool,
    validation_message,
)
from agentkit.state import Step, ToolCall

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from agentkit.media import MediaStore

#: How controller prompts present the tools: ``full`` descriptions (capable models), ``compact``
#: (signature and first sentence: a small model with a short context), ``bare`` (names only: a
#: core trained from scratch that learned its tools from examples, not from descriptions).
PromptStyle = Literal["full", "compact", "bare"]
PROMPT_STYLES: tuple[str, ...] = ("full", "compact", "bare")
ENTRY_POINT_GROUP = "agentkit.tools"
DEFAULT_TIMEOUT = 60.0
#: Observations longer than this are cut (the model's context is small; the full result is kept).
MAX_OBSERVATION_CHARS = 2000


class ModelCache:
    """Heavy models, loaded once per process and keyed by (kind, weights, device)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, weights: str, device: str, load: Callable[[], Any]) -> Any:
        key = (kind, str(weights), device)
        with self._lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]

    def forget(self, weights: str) -> int:
        """Drop every model loaded from ``weights`` (any kind, any device); how many were held.
        For a caller done with a model the process would otherwise hold to its end."""
        with self._lock:
            keys = [k for k in self._models if k[1] == str(weights)]
            for k in keys:
                del self._models[k]
            return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


#: The process-wide cache every context shares by default.
MODELS = ModelCache()


@dataclass
class ToolContext:
    """What a tool may use: the run's media store, the device and the model cache."""

    media: MediaStore | None = None
    device: str = "cpu"
    models: ModelCache = field(default_factory=lambda: MODELS)
    weights: dict[str, str] = field(default_factory=dict)  # tool name -> weights override

    def image(self, ref: str) -> PILImage.Image:
        """Open an image given a media id of this run or a file path."""
        from agentkit.media import open_image

        if self.media is not None and ref in self.media:
            return self.media.image(ref)
        p = Path(ref)
        if p.suffix and p.exists():
            return open_image(p)
        known = ", ".join(self.media.ids()) if self.media is not None else "none"
        raise MediaError(
            f"image {ref!r} is neither a media id of this run (known: {known}) nor a file"
        )

    def add_image(self, image: PILImage.Image, prefix: str) -> str:
        """Store an image a tool made; returns its id (needs a media store)."""
        if self.media is None:
            raise ToolError("this tool makes an image and needs a run's media store")
        return self.media.add_image(image, prefix=prefix)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    Args: type[BaseModel]
    Result: type[BaseModel]
    run: Callable[[Any, ToolContext], BaseModel]
    #: Seconds a call may run before it is abandoned; it runs on a worker thread to be
    #: abandonable. ``None``: no limit, and the call runs on the caller's thread: for tools that
    #: only compute over results already in memory, with bounded inputs (select, count...),
    #: where the handoff to a worker (~0.3 ms) cost more than the call.
    timeout: float | None = DEFAULT_TIMEOUT
    summary: Callable[[Any], str] | None = None
    #: Same arguments, same result, and nothing else changes (no media written, nothing acted
    #: on): such a call may be run ahead, speculatively, and its result reused. A module says so
    #: with ``PURE = True``; a tool that does not say is assumed to act.
    pure: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"tool name {self.name!r} must be an identifier")
        if not self.description.strip():
            raise ValueError(f"tool {self.name!r} needs a description")
        for attr in ("Args", "Result"):
            if not (
                isinstance(getattr(self, attr), type) and issubclass(getattr(self, attr), BaseModel)
            ):
                raise TypeError(f"tool {self.name!r}: {attr} must be a pydantic model")

    @classmethod
    def from_module(cls, module: ModuleType) -> Tool:
        try:
            return cls(
                name=module.NAME,
                description=" ".join(module.DESCRIPTION.split()),
                Args=module.Args,
                Result=module.Result,
                run=module.run,
                timeout=getattr(module, "TIMEOUT", DEFAULT_TIMEOUT),
                summary=getattr(module, "summary", None),
                pure=bool(getattr(module, "PURE", False)),
            )
        except AttributeError as e:
            raise TypeError(f"{module.__name__} is not a tool module: {e}") from e

    def schema(self) -> dict[str, Any]:
        """OpenAI function-calling schema of this tool. Built once per tool (pydantic builds a
        JSON schema in ~2 ms, and every controller turn passes every tool's); treat it as
        read-only."""
        cache: dict[str, Any] = self.__dict__.setdefault("_schema", {})
        if not cache:
            cache.update(
                type="function",
                function={
                    "name": self.name,
                    "description": self.description,
                    "parameters": self.Args.model_json_schema(),
                },
            )
        return cache

    def prompt_line(self, style: PromptStyle = "full") -> str:
        """How a controller prompt lists this tool.

        ``full`` (for capable models): the whole description and every argument's description.
        ``compact`` (for the small shipped core, whose context is short): the description's
        first sentence and the argument names, optional ones marked with ``?``:
        ``count(objects, where?, label?): Counts the objects ...``.
        ``bare`` prompts list only tool names; a tool's line in that style is its signature.
        All are computed once per tool (building a JSON schema is slow).
        """
        cache: dict[str, str] = self.__dict__.setdefault("_prompt_lines", {})
        if style not in cache:
            schema = self.Args.model_json_schema()
            props = schema.get("properties", {})
            if style in ("compact", "bare"):
                required = set(schema.get("required", []))
                names = ", ".join(k if k in required else f"{k}?" for k in props)
                first = re.split(r"(?<=[.!?])\s", self.description, maxsplit=1)[0]
                signature = f"{self.name}({names})"
                cache[style] = signature if style == "bare" else f"{signature}: {first}"
            else:
                args = ", ".join(
                    f"{k}: {v.get('description', v.get('type', ''))}" for k, v in props.items()
                )
                cache[style] = f"{self.name}: {self.description} Input: {{{args}}}"
        return cache[style]

    def observe(self, result: BaseModel) -> str:
        text = (
            self.summary(result)
            if self.summary
            else json.dumps(result.model_dump(mode="json"), separators=(",", ":"))
        )
        if len(text) > MAX_OBSERVATION_CHARS:
            text = (
                text[:MAX_OBSERVATION_CHARS]
                + f"... [{len(text) - MAX_OBSERVATION_CHARS} more characters]"
            )
        return text


class ToolRegistry:
    """Tools by name. ``ToolRegistry.default()`` has the built-ins and every entry-point tool."""

    BUILTIN = (
        "detect",
        "segment",
        "transcribe",
        "ocr",
        "caption",
        "describe_region",
        "crop",
        "image_info",
        "calculate",
        "count",
        "select",
        "relate",
        "same",
        "combine",
        "exist",
        "query",
        "compare",
    )

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool | ModuleType) -> Tool:
        t = tool if isinstance(tool, Tool) else Tool.from_module(tool)
        self._tools[t.name] = t
        return t

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(
                f"unknown tool {name!r}; available: {', '.join(sorted(self._tools))}"
            ) from None

    def __iter__(self):
        return iter(self._tools.values())

    def names(self) -> list[str]:
        return sorted(self._tools)

    def subset(self, names: Iterable[str]) -> ToolRegistry:
        return ToolRegistry(self[n] for n in names)

    @classmethod
    def default(cls) -> ToolRegistry:
        reg = cls()
        for name in cls.BUILTIN:
            reg.register(importlib.import_module(f"agentkit.tools.{name}"))
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            reg.register(obj if isinstance(obj, Tool | ModuleType) else Tool.from_module(obj))
        return reg


_IDLE: queue.LifoQueue[queue.SimpleQueue[Any]] = queue.LifoQueue()  # last freed, first reused


def _worker(inbox: queue.SimpleQueue[Any]) -> None:
    while True:
        fn, args, future = inbox.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to the caller, who decides what it means
                future.set_exception(e)
        del fn, args, future  # keep nothing of a finished call alive while idle
        _IDLE.put(inbox)  # free again


def _start(fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
    """Run ``fn(*args)`` on an idle daemon worker thread, or a new one when none is idle.

    Not a fixed pool: a worker whose call was abandoned (timed out) is simply not idle, so later
    calls never queue behind a hung tool, and daemon threads never keep the interpreter from
    exiting until it returns. A worker is reused once its call has finished (starting a thread per
    call cost ~0.1-1 ms, a visible share of a fast tool's call on a busy machine)."""
    future: cf.Future[Any] = cf.Future()
    try:
        inbox = _IDLE.get_nowait()
    except queue.Empty:
        inbox = queue.SimpleQueue()
        threading.Thread(target=_worker, args=(inbox,), name="agentkit-tool", daemon=True).start()
    inbox.put((fn, args, future))
    return future


def call_tool(
    tool: Tool, args: dict[str, Any], ctx: ToolContext, timeout: float | None = None
) -> BaseModel:
    """Validate ``args`` and run the tool with a time limit (``timeout``, else the tool's own;
    none: on this thread). Raises only :class:`ToolError` kinds.

    A timed-out call is abandoned, not killed (Python threads cannot be); its result is dropped.
    """
    try:
        parsed = tool.Args.model_validate(args)
    except ValidationError as e:
        raise ToolArgsError(f"bad arguments for {tool.name}: {validation_message(e)}") from None
    limit = tool.timeout if timeout is None else timeout
    try:
        if limit is None:
            result = tool.run(parsed, ctx)
        else:
            future = _start(tool.run, parsed, ctx)
            try:
                result = future.result(timeout=limit)
            except cf.TimeoutError:
                future.cancel()
                raise ToolTimeout(
                    f"{tool.name} took longer than {limit:g} s and was abandoned"
                ) from None
    except ToolError:
        raise
    except (
        Exception
    ) as e:  # any bug in a tool (ZeroDivisionError, AttributeError...) is a failed step
        raise ToolError(f"{tool.name} failed: {type(e).__name__}: {e}") from e
    if not isinstance(result, tool.Result):
        raise ToolError(
            f"{tool.name} returned {type(result).__name__}, expected {tool.Result.__name__}"
        )
    return result


def ref_value(result: dict[str, Any]) -> Any:
    """What a step's name stands for when a later call passes it as an argument: the result's one
    list (detections, masks, words) when it has exactly one, its one field, or the whole result."""
    lists = [v for v in result.values() if isinstance(v, list)]
    if len(lists) == 1:
        return lists[0]
    if len(result) == 1:
        return next(iter(result.values()))
    return result


def strings_in(value: Any) -> Iterator[str]:
    """Every string in ``value``, at any depth of lists, tuples and dict values."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)


def resolve_refs(value: Any, refs: Mapping[str, Any]) -> Any:
    """Replace every string that names an earlier step (``detect_0``) by that step's value, at any
    depth of lists and dicts. Other strings, media ids included, pass unchanged."""
    if isinstance(value, str):
        return refs.get(value, value)
    if isinstance(value, list):
        return [resolve_refs(v, refs) for v in value]
    if isinstance(value, dict):
        return {k: resolve_refs(v, refs) for k, v in value.items()}
    return value


def step_refs(steps: Iterable[Step]) -> dict[str, Any]:
    """The names of earlier successful tool steps and their values (see :func:`ref_value`)."""
    return {s.ref: ref_value(s.result) for s in steps if s.ref and s.result is not None}


def execute(
    call: ToolCall,
    registry: ToolRegistry,
    ctx: ToolContext,
    timeout: float | None = None,
    refs: Mapping[str, Any] | None = None,
    memo: dict[str, BaseModel | ToolError] | None = None,
) -> Step:
    """Run one call and record it as an executor :class:`Step`; failures become the step's error.

    A successful step is named ``<tool>_<n>`` (``detect_0``); later calls can pass that name as an
    argument value instead of copying the result (``{"objects": "detect_0"}``). ``refs`` maps the
    names known so far to their values (:func:`step_refs`). A call with a ``name`` (a program's
    variable) is named that instead. ``memo``: outcomes of ``pure`` tools by tool and resolved
    arguments, results and failures alike (a call that timed out once is not waited for again),
    reused instead of running the tool again (and filled by this call).
    """
    started = time.time()
    t0 = time.perf_counter()
    step = Step(role="executor", tool=call.tool, args=call.args, started=started)
    before = set(ctx.media.ids()) if ctx.media is not None else set()
    refs = refs or {}
    try:
        tool = registry[call.tool]
        args = resolve_refs(call.args, refs)
        if memo is not None and tool.pure:
            key = json.dumps([tool.name, args], sort_keys=True, default=str)
            if (outcome := memo.get(key)) is None:
                try:
                    outcome = memo[key] = call_tool(tool, args, ctx, timeout)
                except ToolError as e:
                    outcome = memo[key] = e
            if isinstance(outcome, ToolError):
                raise outcome
            result = outcome
        else:
            result = call_tool(tool, args, ctx, timeout)
        step.result = result.model_dump(mode="json")
        if call.name:
            step.ref = call.name
        else:
            n = sum(1 for name in refs if name.rsplit("_", 1)[0] == tool.name)
            step.ref = f"{tool.name}_{n}"
        step.observation = f"{step.ref} = {tool.observe(result)}"
    except ToolError as e:
        step.error = str(e)
        step.observation = f"Error: {e}"
    if ctx.media is not None:
        step.media = [m for m in ctx.media.ids() if m not in before]
    step.seconds = time.perf_counter() - t0
    return step
