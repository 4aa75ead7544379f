"""The contracts every part of agentkit shares: a task, the steps of a run, its state and result.

All are pydantic models, so they validate on the way in, serialise to JSON for traces and the
``--json`` output, and travel through LangGraph checkpoints unchanged. Media never appear inline:
images and audio are referenced by media-store ids (see :mod:`agentkit.media`).
"""

from __future__ import annotations

import operator
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["controller", "executor", "decider", "summarizer", "system"]


class Task(BaseModel):
    """What the user asks. At least a question or an audio file is required."""

    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, description="The question or instruction, as typed.")
    audio: Path | None = Field(
        None, description="A spoken question (wav, any rate; read at 16 kHz mono)."
    )
    images: list[Path] = Field(default_factory=list, description="Images the question is about.")
    video: Path | None = Field(
        None,
        description="A short video; its frames, sampled at a fixed rate, join the images.",
    )
    env: str | None = Field(None, description="A GUI environment to act in, if any.")
    max_steps: int = Field(
        8, ge=1, le=64, description="Tool calls allowed before the decider stops the run."
    )

    @field_validator("question")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        if v is not None:
            v = v.strip()
            if not v:
                return None
        return v

    def model_post_init(self, _: Any) -> None:
        if self.question is None and self.audio is None:
            raise ValueError("a task needs a question or an audio file (--audio)")


class ToolCall(BaseModel):
    """One call of a tool, however the model wrote it (ReAct text or native function call)."""

    tool: str = Field(description="Registered tool name.")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Arguments, validated later against the tool's Args."
    )
    thought: str = Field("", description="The model's reasoning before the call.")
    id: str | None = Field(None, description="The function-call id, when the backend gave one.")
    name: str | None = Field(
        None,
        description="The name its result gets (a program's variable); default ``<tool>_<n>``.",
    )


class Step(BaseModel):
    """One finished thing that happened in a run. Steps are only ever appended."""

    role: Role
    thought: str = ""
    tool: str | None = None
    args: dict[str, Any] | None = None
    observation: str | None = Field(
        None, description="What the controller reads next: the tool's result as text."
    )
    result: dict[str, Any] | None = Field(
        None, description="The tool's structured result (its Result model, dumped)."
    )
    error: str | None = Field(None, description="Why this step failed; the run goes on.")
    media: list[str] = Field(
        default_factory=list, description="Media-store ids this step produced."
    )
    ref: str | None = Field(
        None, description="The name later calls use to pass this step's result (detect_0)."
    )
    branch: int | None = Field(
        None, description="Which branch of a ``tree`` run this step belongs to (0-based)."
    )
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    started: float = Field(default_factory=time.time, description="Unix time the step began.")
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class Branch(BaseModel):
    """One branch of a ``tree`` run: the sub-question it answers (sent to the branch node)."""

    index: int = Field(ge=0)
    question: str
    max_steps: int = Field(ge=1, description="Tool calls this branch may make.")
    media: dict[str, str] = Field(default_factory=dict)
    reading: int = Field(0, ge=0, description="The reading of a spoken question it answers.")


class BranchAnswer(BaseModel):
    """What one branch of a ``tree`` run concluded; collected by an append reducer."""

    index: int
    question: str
    answer: str | None = None
    stop_reason: str | None = None
    #: The reading of a spoken question (``RunState.reading``) the branch answered: the answers
    #: of a reading given up stay in the list (its reducer only appends), and are not merged.
    reading: int = 0


class RunState(BaseModel):
    """The graph's state. ``steps`` has an append reducer, so every node returns only its new steps
    and a checkpoint always holds every finished one."""

    task: Task
    question: str | None = Field(
        None, description="The question as the controller reads it (typed, or transcribed)."
    )
    media: dict[str, str] = Field(
        default_factory=dict,
        description="Media-store id -> a short description shown to the model.",
    )
    steps: Annotated[list[Step], operator.add] = Field(default_factory=list)
    # -- a spoken question -------------------------------------------------------------------
    reading: int = Field(
        0,
        description="Which reading of a spoken question ``question`` is: 0 the transcript, "
        "k the transcriber's k-th other reading (tried after a failed run; Options.rehear).",
    )
    heard: int = Field(
        0,
        description="Index in ``steps`` where the work on the current reading begins (just "
        "after the steps that heard it); 0 for a typed question.",
    )
    pending: ToolCall | None = Field(
        None, description="The call the controller chose and the executor runs next."
    )
    draft: str | None = Field(
        None, description="The controller's Final Answer, before the summarizer."
    )
    answer: str | None = None
    stop_reason: str | None = None
    # -- planners that write ahead (plan, program) -------------------------------------------
    plan: list[ToolCall] = Field(
        default_factory=list, description="The calls of the current plan or program, in order."
    )
    cursor: int = Field(0, description="Index in ``plan`` of the next call to run.")
    answer_expr: dict[str, Any] | None = Field(
        None,
        description='A program\'s ANSWER: {"ref": variable} or {"value": constant}.',
    )
    attempts: int = Field(0, description="Plans or programs the controller has written.")
    # -- tree -----------------------------------------------------------------------------
    subquestions: list[str] = Field(default_factory=list)
    branch_answers: Annotated[list[BranchAnswer], operator.add] = Field(default_factory=list)

    @property
    def tool_steps(self) -> list[Step]:
        """The tool calls of the work on the question as it is read now: what the step budget
        counts. A spoken question's transcriptions, and the work on readings it gave up
        (``heard``), are not counted: each reading has the budget a typed question has."""
        return [s for s in self.steps[self.heard :] if s.role == "executor"]


class RunResult(BaseModel):
    """What ``Agent.ask`` returns and ``agentkit ask --json`` prints."""

    answer: str | None
    steps: list[Step]
    question: str | None = Field(
        None,
        description="The question as the run answered it: the typed one, or the reading of a "
        "spoken one it settled on (the transcript, or another after a failed run).",
    )
    trace: Path | None = Field(None, description="The JSONL trace of the run.")
    thread: str | None = Field(None, description="Thread id; pass it to --thread to resume.")
    stop_reason: str | None = None
