"""``tree``: decompose the question, answer each part in its own branch, merge (DDCoT / ToT).

    ingest → controller ──Send×k──→ branch 0 ┐
      (sub-questions)               branch 1 ├─→ decider ──→ summarizer → END
                                    ...      ┘  (vote / pass)  (merges the sub-answers)

The controller splits the question into 1-``Options.max_branches`` sub-questions (one
``Sub-question: ...`` line each). LangGraph's ``Send`` API maps each to a ``branch`` node; the
branches of one decomposition run in parallel (one superstep, a thread each), and each answers its
sub-question with a ``react`` sub-chain (with ``Options.branches = "program"``, one program, as
the ``program`` planner answers a question) over the same tools and roles, its steps recorded with
the branch index (``Step.branch``). Their answers are collected by an append reducer
(``RunState.branch_answers``). The summarizer model is then given the sub-questions and their
answers and writes the final answer; with one branch its answer is the answer.

With ``Options.vote`` the controller writes rephrasings of the question instead, and the decider
takes the majority of the branch answers (ties: the earliest branch), with no summarizer call.

A branch that failed on its sub-question as read (a program that failed, unreadable replies)
is the run's stop reason; a spoken question is then tried again on the transcriber's next
reading (``Options.rehear``, as ``react``, ``plan`` and ``program`` do), decomposed afresh, and
only that reading's branch answers are merged.

Budgets: each branch may make ``min(task.max_steps, total // branches)`` tool calls, where the total
is ``Options.max_total_steps`` (default ``max_branches * task.max_steps``); a decomposition gets at
most ``total`` branches. A branch's chain runs inside one node invocation: a run interrupted
mid-way keeps the branches that finished (LangGraph stores their writes) and re-runs only the
unfinished ones on resume.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, StateGraph
from langgraph.types import Send

from agentkit.mllm.backends.base import Message
from agentkit.planners import prompting, roles
from agentkit.planners.program import build_program
from agentkit.planners.react import build_react
from agentkit.runtime import ACTIVE, Runtime, activate, resolve
from agentkit.state import Branch, BranchAnswer, RunState, Step, Task
from agentkit.trace import TraceWriter

_SUB_RE = re.compile(
    r"[ \t*#>\-]*(?:\d{1,2}[.)][ \t]*)?\**sub[- _]?questions?[ \t]*\d{0,2}\**[ \t]*[:.)-]\**[ \t]*(.+)",
    re.IGNORECASE,
)
_LIST_RE = re.compile(r"[ \t]*(?:\d{1,2}[.)]|[-*])[ \t]+(.+\?)[ \t]*\Z")
MAX_SUBQUESTION_CHARS = 300
#: The reply that keeps a simple question whole (one branch, not an error).
NO_SUBQUESTIONS = "No sub-questions."
_WHOLE_RE = re.compile(r"[ \t*`]*no sub[- _]?questions\b", re.IGNORECASE)


def parse_subquestions(text: str, limit: int) -> list[str]:
    """The sub-questions of a controller reply: ``Sub-question: ...`` lines (numbered, bulleted
    or bold too); failing those, a numbered or bulleted list of questions. Duplicates are dropped
    and at most ``limit`` kept."""
    lines = text.replace("\r\n", "\n").split("\n")
    found = [m.group(1) for ln in lines if (m := _SUB_RE.match(ln))]
    if not found:
        found = [m.group(1) for ln in lines if (m := _LIST_RE.match(ln))]
    out: list[str] = []
    seen: set[str] = set()
    for q in found:
        q = " ".join(q.strip().strip("*").split())[:MAX_SUBQUESTION_CHARS]
        if q and q.casefold() not in seen:
            seen.add(q.casefold())
            out.append(q)
    return out[: max(1, limit)]


def normalize(answer: str) -> str:
    """The form answers are compared in for a vote: case, spaces, end punctuation, articles,
    ``2.0`` = ``2`` and true/false = yes/no."""
    a = " ".join(answer.strip().strip(".!").casefold().split())
    a = re.sub(r"^(the|a|an) ", "", a)
    try:
        f = float(a)
        if f.is_integer():
            return str(int(f))
        return repr(f)
    except ValueError:
        pass
    return {"true": "yes", "false": "no"}.get(a, a)


def vote(answers: list[BranchAnswer]) -> tuple[str | None, Counter[str]]:
    """The majority answer (as the earliest branch wrote it; ties go to the earliest branch) and
    the vote counts. None when no branch answered."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for a in sorted(answers, key=lambda a: a.index):
        if a.answer is None or not a.answer.strip():
            continue
        key = normalize(a.answer)
        counts[key] += 1
        first.setdefault(key, a.answer.strip())
    if not counts:
        return None, counts
    best = max(counts.values())
    winner = next(k for k in first if counts[k] == best)  # first: insertion order = branch order
    return first[winner], counts


def branch_answers(state: RunState) -> list[BranchAnswer]:
    """The answers of the branches of the question as now read, in branch order."""
    current = [a for a in state.branch_answers if a.reading == state.reading]
    return sorted(current, key=lambda a: a.index)


def tree_pad(state: RunState) -> str:
    """What the summarizer reads: each sub-question with its branch's answer."""
    lines = []
    for a in branch_answers(state):
        lines.append(f"Sub-question {a.index + 1}: {a.question}")
        lines.append(f"Answer: {a.answer if a.answer is not None else '(no answer)'}")
    return "\n".join(lines)


def total_budget(rt: Runtime, state: RunState) -> int:
    return rt.options.max_total_steps or rt.options.max_branches * state.task.max_steps


class _BranchTrace(TraceWriter):
    """The run's trace as a branch writes it: through the run's writer (one file, one lock:
    branches write from several threads), every step stamped with the branch index."""

    def __init__(self, inner: TraceWriter, index: int):
        self.inner, self.path, self.index = inner, inner.path, index

    def event(self, event: str, **data: Any) -> None:
        self.inner.event(event, **data)

    def step(self, step: Step) -> None:
        self.inner.step(step.model_copy(update={"branch": self.index}))

    def close(self) -> None:
        """Nothing: the run's writer owns the file."""


# --------------------------------------------------------------------------------------------
# nodes


def branch_limit(rt: Runtime, state: RunState) -> int:
    """The most sub-questions a decomposition may have."""
    return min(rt.options.max_branches, total_budget(rt, state))


def decomposer_messages(rt: Runtime, state: RunState) -> list[Message]:
    """The controller's prompt (the tool-use data generator trains on exactly these messages)."""
    system = prompting.load("tree_vote" if rt.options.vote else "tree_controller").format(
        max_branches=str(branch_limit(rt, state))
    )
    return [Message(role="system", content=system), roles.task_message(rt, state, None)]


def make_decomposer(rt: Runtime) -> roles.Node:
    """The controller: splits the question into sub-questions (or rephrasings, to vote)."""

    def controller(state: RunState) -> dict[str, Any]:
        t0 = time.perf_counter()
        limit = branch_limit(rt, state)
        gen = rt.models.controller.generate(
            decomposer_messages(rt, state),
            max_new_tokens=rt.options.max_new_tokens,
            stop=roles.STOP,
        )
        subs = parse_subquestions(gen.text, limit)
        seconds = time.perf_counter() - t0
        error = None
        if not subs:  # answering the question whole is a sound fallback, not a dead end
            subs = [roles.question(state)]
            if not _WHOLE_RE.match(gen.text):
                error = "No 'Sub-question:' lines in the reply; the question is answered whole."
        listing = "\n".join(f"Sub-question {i + 1}: {q}" for i, q in enumerate(subs))
        step = roles.model_step(
            "controller",
            gen,
            thought=f"{len(subs)} sub-question{'s' if len(subs) > 1 else ''}",
            observation=listing,
            error=error,
            seconds=seconds,
        )
        return {"steps": [roles.record(rt, step)], "subquestions": subs}

    return controller


def fan_out(rt: Runtime):
    """One ``Send`` per sub-question, each with its share of the step budget."""

    def route(state: RunState) -> list[Send] | str:
        if state.stop_reason or not state.subquestions:
            return "summarizer"
        n = len(state.subquestions)
        per = max(1, min(state.task.max_steps, total_budget(rt, state) // n))
        media = roles.as_typed(state).media  # a spoken question's recording is not an image
        return [
            Send(
                "branch",
                Branch(index=i, question=q, max_steps=per, media=media, reading=state.reading),
            )
            for i, q in enumerate(state.subquestions)
        ]

    return route


def make_branch(rt: Runtime):
    """A sub-run answering one sub-question, by ``react`` or ``program`` as
    :attr:`~agentkit.runtime.Options.branches` says; returns its steps (with the branch index)
    and its answer."""

    # compiled once, over the active runtime: each branch runs one under its own sub-runtime;
    # checkpointer=False: the sub-run runs inside this node, the parent checkpoints its result
    graphs = {
        "react": build_react(ACTIVE, checkpointer=False),  # type: ignore[arg-type]
        "program": build_program(ACTIVE, checkpointer=False),  # type: ignore[arg-type]
    }

    def branch(b: Branch) -> dict[str, Any]:
        # verify=False: the run's own summarizer checks the merged answer once
        run = resolve(rt)  # a real Runtime to copy (rt may stand for the active run's)
        sub_rt = replace(
            run,
            trace=_BranchTrace(run.trace, b.index),
            options=replace(run.options, verify=False),
        )
        task = Task(question=b.question, max_steps=b.max_steps)
        graph = graphs[run.options.branches or "react"]
        with activate(sub_rt):
            values = graph.invoke(
                RunState(task=task, question=b.question, media=b.media),
                {"recursion_limit": 10_000},
            )
        sub = RunState.model_validate(values)
        return {
            "steps": [s.model_copy(update={"branch": b.index}) for s in sub.steps],
            "branch_answers": [
                BranchAnswer(
                    index=b.index,
                    question=b.question,
                    answer=sub.answer,
                    stop_reason=sub.stop_reason,
                    reading=b.reading,
                )
            ],
        }

    return branch


def make_merger(rt: Runtime) -> roles.Node:
    """The decider: with ``Options.vote`` the majority answer; with one branch its answer;
    otherwise leaves the merge to the summarizer model. A branch that failed on its
    sub-question as read (:data:`~agentkit.planners.roles.REHEAR_STOPS`: a program that failed,
    unreadable replies) is the run's stop reason, as the failed program of a ``program`` run is:
    a spoken question is then tried on its next reading first (``Options.rehear``)."""

    def decider(state: RunState) -> dict[str, Any]:
        answers = branch_answers(state)
        if state.stop_reason or not answers:
            return {}
        if rt.options.vote:
            winner, counts = vote(answers)
            tally = ", ".join(f"{k}: {v}" for k, v in counts.most_common()) or "no answers"
            if winner is None:
                step = Step(role="decider", error=f"No branch answered ({tally}).")
                return {"steps": [roles.record(rt, step)]}
            step = Step(
                role="decider",
                thought=f"majority of {len(answers)} branches",
                observation=f"Votes: {tally}. Answer: {winner}",
            )
            return {"steps": [roles.record(rt, step)], "draft": winner}
        if all(a.answer is None for a in answers):
            # nothing to merge: the summarizer could only guess from "(no answer)" lines
            step = Step(
                role="decider",
                error=f"No branch answered ({len(answers)} sub-questions); the evidence does not "
                "settle the question.",
            )
            return {"steps": [roles.record(rt, step)], "stop_reason": roles.NOTHING_TO_SUMMARIZE}
        update: dict[str, Any] = {"draft": answers[0].answer} if len(answers) == 1 else {}
        if failed := next((a for a in answers if a.stop_reason in roles.REHEAR_STOPS), None):
            why = f"Sub-question {failed.index + 1} failed ({failed.stop_reason})."
            update |= {"steps": [roles.record(rt, Step(role="decider", error=why))],
                       "stop_reason": failed.stop_reason}  # fmt: skip
        return update

    return decider


def build_tree(rt: Runtime, *, checkpointer: BaseCheckpointSaver | None = None):
    g = StateGraph(RunState)
    g.add_node("controller", make_decomposer(rt))
    g.add_node("branch", make_branch(rt), input_schema=Branch)
    g.add_node("decider", make_merger(rt))
    # a merge may add or compare the branches' counts: values no one result holds
    summarize = roles.make_summarizer(rt, pad=tree_pad, prompt="tree_summarizer", ground=False)
    g.add_node("summarizer", summarize)
    roles.add_ingest(g, rt)
    g.add_conditional_edges("controller", fan_out(rt), ["branch", "summarizer"])
    g.add_edge("branch", "decider")
    g.add_conditional_edges("decider", roles.to_summarizer, ["rehear", "summarizer"])
    g.add_edge("summarizer", END)
    return g.compile(checkpointer=checkpointer)
