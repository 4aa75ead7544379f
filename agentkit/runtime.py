"""What the graph's nodes use but the state must not hold: models, tools, media, the trace.

One :class:`Runtime` per run, so the state that LangGraph checkpoints stays small and
serialisable (ids and text, no models or pixels). Planners close over a runtime when they build
their graph. An :class:`~agentkit.graph.Agent` compiles its planner's graph once, over
:data:`ACTIVE` (the runtime of whichever run is executing in this context, set by
:func:`activate` around ``invoke``), so a question pays for no graph build: node code reads
``rt.media``, ``rt.trace``... at run time and never at build time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from agentkit.media import MediaStore
from agentkit.mllm.backends.base import Backend
from agentkit.tools.base import PromptStyle, ToolContext, ToolRegistry
from agentkit.trace import TraceWriter

#: How ``react`` writes each call (:attr:`Options.actions`).
Actions = Literal["text", "code"]
ACTIONS: tuple[str, ...] = ("text", "code")
#: What a ``code`` controller reads of its work so far (:attr:`Options.code_context`).
CodeContext = Literal["transcript", "program"]
CODE_CONTEXTS: tuple[str, ...] = ("transcript", "program")
#: How ``tree``'s branches answer their sub-questions (:attr:`Options.branches`).
Branches = Literal["react", "program"]
BRANCHES: tuple[str, ...] = ("react", "program")


@dataclass
class RoleModels:
    """The backend each model role calls; one core plays all three unless configured otherwise."""

    controller: Backend
    decider_backend: Backend | None = None
    summarizer_backend: Backend | None = None

    @property
    def decider(self) -> Backend:
        return self.decider_backend or self.controller

    @property
    def summarizer(self) -> Backend:
        return self.summarizer_backend or self.controller


#: :attr:`Options.rehear`'s default: the other readings a failed spoken run may try.
REHEAR = 2


@dataclass
class Options:
    #: Ask the decider model "enough to answer?" after each observation. Off for ``react``, where
    #: the controller's Final Answer already is that decision (one model call per step, not two).
    model_decider: bool = False
    #: Let the summarizer model rewrite the controller's Final Answer from the observations.
    #: Off by default; the summarizer always writes the answer when the controller gave none.
    summarize: bool = False
    #: Consecutive unparseable controller replies before the run stops.
    max_parse_errors: int = 3
    #: Seconds a tool may run (None: the tool's own limit).
    tool_timeout: float | None = None
    max_new_tokens: int = 192
    #: ``plan`` / ``program``: times the controller may rewrite after a failed call (0: never).
    #: ``None``: what the model's folder declares (``agentkit_runtime.json`` ``"replans"``: the
    #: shipped core says 0, its rewrites never read), else 1.
    replans: int | None = None
    #: ``program``: when the greedy program does not parse, take the most likely of this many
    #: beam-search programs that does (backends with ``candidates()``, e.g. ``hf:``; 0: off).
    #: A small core's rewrite after an error message is rarely better than its second guess.
    candidates: int = 4
    #: ``program``: run each program in the controller's turn, as soon as it is written (only
    #: when every tool it calls is ``pure``); one that fails (a line errs, ANSWER is no answer)
    #: gives way to the most likely of the ``candidates`` beam-search programs that runs, before
    #: any rewrite turn. The lines that ran are the run's executor steps.
    run_ahead: bool = True
    #: ``program``: a select that kept nothing a later call needs (the question
    #: presupposes its object) is read without one of its filters, one at a time: a misheard
    #: word or an attribute the detector read otherwise (:mod:`agentkit.planners.relax`).
    relax: bool = True
    #: ``program``: when no program written for the question's words fits them (neither the
    #: greedy one nor a beam, nor a relaxed reading), the question about one object is
    #: reworded as the templates word it ("How many red things?" -> "How many red things are
    #: there?", :func:`~agentkit.planners.expect.canonical_question`) and programs are written
    #: for that: a small core knows the templates' words better than a user's.
    reword: bool = True
    #: A spoken question whose run fails (a program that fails or reads no answer, a plan
    #: call that fails, unreadable controller replies: ``react``, ``plan``, ``program``) is
    #: tried again on the transcriber's next other reading of the recording, up to this many
    #: (its beam's alternatives, decoded only then; 0: off). A typed question's program never
    #: failed on the 200 held-out questions; a misheard one's does when the words name nothing
    #: in the image ("the red cylinder" where the gray one is), and the next reading is most
    #: often the words said (docs/asr.md). The failed attempts stay in the run's steps.
    rehear: int = REHEAR
    #: Torch's CPU threads for the model's and the tools' compute (``torch.set_num_threads``).
    #: The setting is the process's, not one run's: the agent sets it before each run and leaves
    #: it set (changing it back and forth costs more than it saves). ``None``: what the model's
    #: folder declares (``agentkit_runtime.json`` ``"threads"``: the shipped core says 1), else
    #: torch's own, untouched. Why 1 for the embedded default on 2 cores: the core's matrices
    #: are 256 wide, too small for a second thread to pay, and the tools compute on a worker
    #: thread of their own (their time limit), whose second team of torch threads slows the
    #: model's turns that follow; one thread made a question 12-13% faster (docs/vqa.md).
    threads: int | None = None
    #: Decode the controller's code (``program``, and ``react``'s code actions) under the program
    #: language's prefix grammar (:mod:`agentkit.planners.grammar`) where the backend supports
    #: constrained decoding (``hf:``): no undefined name, unknown tool or argument is written.
    #: The summarizer's answer to a question that asks for a kind of answer (a number, a
    #: colour...) is the likeliest of the values of that kind the results hold, where the
    #: backend scores replies (:mod:`agentkit.planners.expect`).
    constrain: bool = True
    #: ``constrain``: also hold the code's strings to the question as they are written
    #: (:meth:`agentkit.planners.expect.Expectation.words_for`): a select's filters describe one
    #: object the question names, ``same`` compares the attribute it compares, ``relate`` and
    #: ``compare`` take the relation it names.
    constrain_words: bool = True
    #: ``tree``: most sub-questions a decomposition may have (more are dropped).
    max_branches: int = 4
    #: ``tree``: tool calls of all branches together (None: ``max_branches * task.max_steps``);
    #: each branch gets ``min(task.max_steps, total // branches)``.
    max_total_steps: int | None = None
    #: ``tree``: the controller writes rephrasings of the question instead of sub-questions and
    #: the decider takes the branches' majority answer (no summarizer call).
    vote: bool = False
    #: ``tree``: how each branch answers its sub-question: ``react`` (one call at a time) or
    #: ``program`` (one program, run by the interpreter, as the ``program`` planner answers a
    #: question). ``None``: what the model's folder declares (``agentkit_runtime.json``
    #: ``"branches"``), else ``react``.
    branches: Branches | None = None
    #: Re-check the objects and attributes the answer names with the ``detect`` tool
    #: (Woodpecker-style; see :mod:`agentkit.planners.verify`). No model call: one detector run
    #: per image at most, reused from the run when it already has one.
    verify: bool = True
    #: ``verify``: detector confidence (0-1) needed to flip a yes/no existence answer; below it a
    #: contradiction is only flagged.
    verify_score: float = 0.5
    #: Tool name -> weights (a shipped name or a path) every call of that tool uses unless the
    #: call names its own (``ToolContext.weights``), e.g. ``{"transcribe": "tiny.pt"}``.
    tool_weights: dict[str, str] = field(default_factory=dict)
    #: How controller prompts list the tools: ``full`` descriptions for capable models,
    #: ``compact`` (name, arguments, first sentence) for a small core with a short context. A
    #: model must be prompted in the style it was trained with. ``None``: the style the model's
    #: folder declares (``agentkit_runtime.json``), else ``full``.
    prompt_style: PromptStyle | None = None
    #: How ``react`` (and ``tree``'s branches) write each call: ``text`` (Thought / Action /
    #: Action Input, GPT4Tools), or ``code``: one line of the ``program`` planner's language per
    #: step, with each observation shown back as a comment (CodeAct, smolagents' CodeAgent), which
    #: a core trained on programs learns with little more data. ``None``: what the model's folder
    #: declares (``agentkit_runtime.json``), else ``text``.
    actions: Actions | None = None
    #: What a ``code`` controller (``react``, ``tree``'s branches) reads of its work so far:
    #: ``transcript``, the ``controller_code`` prompt with each line and its result's digest as a
    #: comment under it (CodeAct); or ``program``, the ``program`` planner's prompt with the lines
    #: so far as the start of its reply, continued one line at a time: the core writes each line
    #: as it writes programs. Results are not shown there; the decider still reads each one, and
    #: after a failed line the run goes on in ``transcript``, where the error is shown. Needs a
    #: backend that continues a reply (``hf:``); others get ``transcript``. ``None``: what the
    #: model's folder declares (``agentkit_runtime.json``), else ``transcript``.
    code_context: CodeContext | None = None

    def rewrites(self) -> int:
        """:attr:`replans`, 1 when nobody said (an :class:`~agentkit.graph.Agent` settles it)."""
        return 1 if self.replans is None else self.replans


@dataclass
class Runtime:
    models: RoleModels
    tools: ToolRegistry
    media: MediaStore
    trace: TraceWriter
    run_dir: Path
    device: str = "cpu"
    options: Options = field(default_factory=Options)

    def tool_context(self) -> ToolContext:
        return ToolContext(
            media=self.media, device=self.device, weights=dict(self.options.tool_weights)
        )


_ACTIVE: ContextVar[Runtime] = ContextVar("agentkit_active_runtime")


class _ActiveRuntime:
    """Reads every attribute from the runtime of the run executing in this context (LangGraph
    runs nodes in threads under a copy of the caller's context, so each run sees its own)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(active_runtime(), name)

    def __repr__(self) -> str:
        return "<the active run's Runtime>"


#: Stands for the active run's :class:`Runtime`: what a graph compiled once closes over.
ACTIVE = cast(Runtime, _ActiveRuntime())


def active_runtime() -> Runtime:
    """The runtime of the run executing in this context."""
    try:
        return _ACTIVE.get()
    except LookupError:
        raise RuntimeError(
            "no agentkit run is active in this context: a graph built over runtime.ACTIVE reads "
            "it only inside its nodes, while Agent runs it"
        ) from None


def resolve(rt: Runtime) -> Runtime:
    """``rt`` itself, or the active run's runtime when ``rt`` is :data:`ACTIVE`."""
    return active_runtime() if isinstance(rt, _ActiveRuntime) else rt


@contextmanager
def activate(rt: Runtime) -> Iterator[Runtime]:
    """Make ``rt`` the active runtime for the duration (this thread and what it spawns)."""
    token = _ACTIVE.set(rt)
    try:
        yield rt
    finally:
        _ACTIVE.reset(token)
