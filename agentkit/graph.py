"""The runtime users touch: :class:`Agent` runs a task through a planner's LangGraph graph, with a
per-run directory holding the media store, the JSONL trace and the checkpoint log.

    runs/<thread>/
        run.json            the task, model spec and planner (what ``--thread`` resumes)
        checkpoint.log      LangGraph checkpoints, appended per step: every finished step
                            survives a kill (runs made before 2026-12-05: checkpoint.sqlite)
        trace.jsonl         events, one per line
        media/              images and audio by id
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentkit.errors import AgentkitError, ConfigError, MediaError, validation_message
from agentkit.media import MediaStore
from agentkit.mllm.backends.base import Backend, load_backend, runtime_hints
from agentkit.runtime import (
    ACTIONS,
    ACTIVE,
    BRANCHES,
    CODE_CONTEXTS,
    Options,
    RoleModels,
    Runtime,
    activate,
)
from agentkit.state import RunResult, RunState, Step, Task
from agentkit.tools.base import PROMPT_STYLES, ToolRegistry
from agentkit.trace import TraceWriter

#: Types LangGraph may rebuild from a checkpoint (its msgpack serde refuses unknown classes).
_CHECKPOINT_TYPES = [
    ("agentkit.state", n)
    for n in (
        "RunState",
        "Task",
        "Step",
        "ToolCall",
        "Branch",
        "BranchAnswer",
    )
]


def default_model_spec() -> str:
    """``$AGENTKIT_MODEL``; else ``openai:$AGENTKIT_OPENAI_URL#$AGENTKIT_OPENAI_MODEL`` when that URL
    is set; else the shipped core ``hf:agentkit-mllm``."""
    if spec := os.environ.get("AGENTKIT_MODEL"):
        return spec
    if url := os.environ.get("AGENTKIT_OPENAI_URL"):
        return f"openai:{url}#{os.environ.get('AGENTKIT_OPENAI_MODEL', '')}"
    return "hf:agentkit-mllm"


def default_runs_dir() -> Path:
    return Path(os.environ.get("AGENTKIT_RUNS", "runs"))


def new_thread_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


#: A run's checkpoints: an append-only log (:mod:`agentkit.checkpoint`).
CHECKPOINT_FILE = "checkpoint.log"
#: Runs made before 2026-12-05 kept them in SQLite; they are still read and resumed.
SQLITE_CHECKPOINT_FILE = "checkpoint.sqlite"


def _checkpointer(run_dir: Path) -> Any:
    """The run's checkpoint saver (with ``close()``): the append-only log, or the SQLite file of
    a run made before it. ``AGENTKIT_CHECKPOINT_SYNC=off|normal|full`` says how hard each step
    is pushed to disk. Every step is handed to the OS at once whatever the setting, so a killed
    or crashed process loses nothing and the run resumes; what fsync adds is safety against an
    OS crash or power cut, at 50-120 ms per question on a busy disk (most of the framework's
    time). A run's checkpoint can be re-asked, so off by default."""
    from agentkit.checkpoint import LogSaver

    serde = _serde()
    sync = os.environ.get("AGENTKIT_CHECKPOINT_SYNC", "off").lower()
    legacy = run_dir / SQLITE_CHECKPOINT_FILE
    if legacy.is_file() and not (run_dir / CHECKPOINT_FILE).exists():
        return _sqlite_checkpointer(legacy, serde, sync)
    return LogSaver(run_dir / CHECKPOINT_FILE, serde=serde, sync=sync)


@functools.cache
def _serde() -> Any:
    """LangGraph's serialiser for the checkpoints, restricted to the state's types (stateless:
    built once, not per run)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=_CHECKPOINT_TYPES)


def _sqlite_checkpointer(path: Path, serde: Any, sync: str) -> Any:
    """LangGraph's SQLite saver over ``path`` (a run made before the log), with ``close()``."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from agentkit.checkpoint import sync_level

    sync = sync_level(sync)

    class Saver(SqliteSaver):
        def close(self) -> None:
            self.conn.close()

    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    return Saver(conn, serde=serde)


_GRAPHS: dict[Any, Any] = {}
_GRAPHS_LOCK = threading.Lock()


def compiled_graph(build: Any) -> Any:
    """The graph of planner builder ``build``, compiled once per process over
    :data:`runtime.ACTIVE` and shared by every Agent: its nodes read the run's runtime (models,
    tools, media, trace, options) when they run, so nothing in it belongs to one agent or run.
    Each run takes a copy with its own checkpointer."""
    with _GRAPHS_LOCK:
        graph = _GRAPHS.get(build)
        if graph is None:
            graph = _GRAPHS[build] = build(ACTIVE)
        return graph


def _one_of(allowed: tuple[str, ...]) -> Callable[[Any], Any]:
    return lambda v: v if v in allowed else None


def _count(v: Any) -> int | None:
    """An int >= 0 given as one or as its digits (a model folder's hints are text)."""
    return int(v) if str(v).isdigit() else None


#: The options a caller may leave open (None) for the model's folder to settle
#: (``agentkit_runtime.json``), then the library default (None: left open, as ``threads``,
#: torch's own then): (key, default, what is valid, reader returning the value or None when
#: invalid).
_SETTLED: tuple[tuple[str, str | None, str, Callable[[Any], Any]], ...] = (
    ("prompt_style", "full", f"one of {PROMPT_STYLES}", _one_of(PROMPT_STYLES)),
    ("actions", "text", f"one of {ACTIONS}", _one_of(ACTIONS)),
    ("code_context", "transcript", f"one of {CODE_CONTEXTS}", _one_of(CODE_CONTEXTS)),
    ("branches", "react", f"one of {BRANCHES}", _one_of(BRANCHES)),
    ("replans", "1", "an int >= 0", _count),
    ("threads", None, "an int >= 1", lambda v: n if (n := _count(v)) else None),
)


class Agent:
    """Answers tasks with a planner over the four roles.

    >>> agent = Agent("openai:http://localhost:8000/v1#qwen2-vl")      # doctest: +SKIP
    >>> agent.ask("How many cubes?", images=["scene.png"]).answer       # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Backend | RoleModels,
        *,
        tools: ToolRegistry | None = None,
        planner: str | None = None,
        runs_dir: str | Path | None = None,
        device: str = "cpu",
        options: Options | None = None,
        tool_weights: dict[str, str] | None = None,
    ) -> None:
        from agentkit.planners import get_builder

        self.model_spec = (
            model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
        )
        if isinstance(model, str):
            model = load_backend(model)
        self.models = model if isinstance(model, RoleModels) else RoleModels(controller=model)
        self.tools = tools if tools is not None else ToolRegistry.default()
        # What the caller leaves open, the model's folder may settle (it knows how it was
        # trained), then the library defaults (react, and :data:`_SETTLED`'s).
        hints = runtime_hints(self.models.controller)
        self.planner = planner or hints.get("planner") or "react"
        self._build = get_builder(self.planner)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.device = device
        self.options = options or Options()
        for key, default, expected, read in _SETTLED:
            given = getattr(self.options, key)
            asked = given if given is not None else hints.get(key, default)
            if asked is None:
                continue  # nobody says: left open
            if (value := read(asked)) is None:
                who = "Options" if given is not None else "the model declares"
                raise ConfigError(f"{who} {key} {asked!r}; expected {expected}")
            self.options = replace(self.options, **{key: value})
        if tool_weights:  # a copy: the caller's Options may be shared by other agents
            self.options = replace(
                self.options, tool_weights={**self.options.tool_weights, **tool_weights}
            )

    @classmethod
    def default(cls, **kwargs: Any) -> Agent:
        """The embedded default model (or the one the environment names) with every tool."""
        return cls(default_model_spec(), **kwargs)

    # -- running ----------------------------------------------------------------------------

    def _runtime(self, run_dir: Path) -> Runtime:
        return Runtime(
            models=self.models,
            tools=self.tools,
            media=MediaStore(run_dir / "media"),
            trace=TraceWriter(run_dir),
            run_dir=run_dir,
            device=self.device,
            options=self.options,
        )

    def ask(
        self,
        question: str | None = None,
        images: Sequence[str | Path] = (),
        audio: str | Path | None = None,
        *,
        video: str | Path | None = None,
        fps: float = 1.0,
        max_frames: int = 16,
        max_steps: int = 8,
        thread: str | None = None,
    ) -> RunResult:
        """Run a new task. Images, audio and video frames are validated and copied into the run's
        media store first, so a bad file fails before any model is called.

        ``video``: frames are sampled every ``1 / fps`` seconds (at most ``max_frames``) with
        ffmpeg and stored as ``frame_0 .. frame_N`` after the images; the controller sees each
        with its time, ``frame_3 (t=3.0 s, 480x320)``.
        """
        try:
            task = Task(
                question=question,
                images=[Path(p) for p in images],
                audio=Path(audio) if audio else None,
                video=Path(video) if video else None,
                max_steps=max_steps,
            )
        except ValidationError as e:  # a blank question, max_steps out of range: the caller's
            raise ConfigError(f"bad task: {validation_message(e)}") from None
        thread = thread or new_thread_id()
        run_dir = self.runs_dir / thread
        if (run_dir / "run.json").exists():
            raise ConfigError(
                f"thread {thread!r} already exists in {self.runs_dir}; resume it with resume({thread!r})"
            )
        rt = self._runtime(run_dir)
        media: dict[str, str] = {}
        try:
            for p in task.images:
                mid = rt.media.add_image(p)
                w, h = rt.media.image_size(mid)
                media[mid] = f"{w}x{h} image"
            if task.video is not None:
                media.update(_add_frames(rt.media, task.video, fps, max_frames))
            if task.audio is not None:
                media[rt.media.add_file(task.audio, prefix="audio")] = "spoken question"
        except MediaError as e:
            rt.trace.event("error", message=str(e))
            rt.trace.close()
            raise
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "task": task.model_dump(mode="json"),
                    "model": self.model_spec,
                    "planner": self.planner,
                },
                indent=1,
            )
        )
        rt.trace.event(
            "run_start",
            thread=thread,
            task=task.model_dump(mode="json"),
            model=self.model_spec,
            planner=self.planner,
            media=list(media),
        )
        return self._invoke(rt, thread, RunState(task=task, media=media))

    def resume(self, thread: str) -> RunResult:
        """Continue a run from its last finished step (after a crash, a kill or a budget stop)."""
        run_dir = self.runs_dir / thread
        if not (run_dir / "run.json").exists():
            raise ConfigError(
                f"no run {thread!r} under {self.runs_dir} (looked for {run_dir / 'run.json'})"
            )
        rt = self._runtime(run_dir)
        rt.trace.event("run_resume", thread=thread, model=self.model_spec)
        return self._invoke(rt, thread, None)

    def _graph(self) -> Any:
        """The planner's graph (:func:`compiled_graph`): a question pays for no graph build."""
        return compiled_graph(self._build)

    def _invoke(self, rt: Runtime, thread: str, initial: RunState | None) -> RunResult:
        try:
            use_threads(self.options.threads)
            return self._run_graph(rt, thread, initial)
        finally:
            rt.trace.close()

    def _run_graph(self, rt: Runtime, thread: str, initial: RunState | None) -> RunResult:
        from langgraph.errors import GraphRecursionError

        from agentkit.planners import FANS_OUT

        cfg: dict[str, Any] = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
        if self.planner not in FANS_OUT:
            # one node per super-step: nothing to run beside it, so LangGraph's background
            # work (checkpoint writes) runs in this thread as it is handed over, or where this
            # LangGraph cannot, on one worker
            if inline_background_work():
                cfg["configurable"][INLINE] = True
            else:
                cfg["max_concurrency"] = 1
        checkpointer = _checkpointer(rt.run_dir)
        # the graph compiled once for this agent, with this run's checkpoint file
        graph = self._graph().copy(update={"checkpointer": checkpointer})
        t0 = time.perf_counter()
        try:
            with activate(rt):
                snapshot = graph.get_state(cfg) if initial is None else None
                if snapshot is not None and not snapshot.next and snapshot.values:
                    values = snapshot.values  # already finished: nothing to run
                else:
                    values = graph.invoke(initial, cfg)
        except (AgentkitError, GraphRecursionError) as e:
            rt.trace.event("error", message=f"{type(e).__name__}: {e}")
            raise
        finally:
            checkpointer.close()
        state = RunState.model_validate(values)
        if state.answer is not None:
            rt.trace.event("answer", answer=state.answer)
        rt.trace.event("run_end", stop_reason=state.stop_reason, seconds=time.perf_counter() - t0)
        return RunResult(
            answer=state.answer,
            steps=state.steps,
            question=state.question,
            trace=rt.trace.path,
            thread=thread,
            stop_reason=state.stop_reason,
        )


#: A run config's ``configurable`` key that has LangGraph run its background work inline.
INLINE = "agentkit_inline"


class InlineExecutor(concurrent.futures.Executor):
    """An executor that runs each task in the caller's thread when it is submitted and hands
    back its finished future (an exception is kept in it, as a worker's would be)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:
            future.set_exception(e)
        return future


@functools.cache
def inline_background_work() -> bool:
    """Let a run config ask LangGraph to do its background work inline (:data:`INLINE`);
    False where this LangGraph has no hook for it, and runs keep its thread pool.

    A sync graph hands every checkpoint write to a thread pool that LangGraph starts per
    ``invoke`` (langchain-core's ``get_executor_for_config``, which takes no executor from
    outside). A graph that runs one node per super-step has nothing for those writes to
    overlap with but the next node, and on two cores the hand-overs cost more than the writes
    (docs/vqa.md, "Checkpoint writes inline"). Every other config gets the pool as before."""
    try:
        from langgraph.pregel import _executor
    except ImportError:
        return False
    pooled = getattr(_executor, "get_executor_for_config", None)
    if pooled is None:
        return False

    @contextlib.contextmanager
    def executor_for(config: Any) -> Iterator[concurrent.futures.Executor]:
        if ((config or {}).get("configurable") or {}).get(INLINE):
            yield InlineExecutor()
        else:
            with pooled(config) as executor:
                yield executor

    _executor.get_executor_for_config = executor_for
    return True


def use_threads(n: int | None) -> None:
    """Torch's CPU threads set to ``n`` for the process (:attr:`Options.threads`; None: left as
    they are). Only when they differ: setting them is not free, and a run sets them each time."""
    if n is None:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _add_frames(store: MediaStore, video: Path, fps: float, max_frames: int) -> dict[str, str]:
    """Sample ``video`` and store its frames as ``frame_<k>``; media id -> description."""
    from agentkit.video import describe_frame, sampled_frames

    out: dict[str, str] = {}
    with sampled_frames(video, fps=fps, max_frames=max_frames) as frames:
        for f in frames:
            mid = store.add_image(f.path, prefix="frame")
            out[mid] = describe_frame(f, *store.image_size(mid))
    return out


def load_steps(run_dir: str | Path) -> list[Step]:
    """Every finished step of a run, read from its checkpoint (no model needed)."""
    run_dir = Path(run_dir)
    cp = _checkpointer(run_dir)
    try:
        tup = cp.get_tuple({"configurable": {"thread_id": run_dir.name}})
    finally:
        cp.close()
    if tup is None:
        return []
    return [Step.model_validate(s) for s in tup.checkpoint["channel_values"].get("steps", [])]
