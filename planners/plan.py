"""``plan``: the controller writes the whole plan first, then it runs (predefined chain length).

    ingest → controller → decider ─┬─ next call ─→ executor → decider
           (writes plan)            ├─ unreadable, or a call failed: re-plan → controller
                                    └─ done / budget / no re-plan left ─→ summarizer → END

The controller sees no observation before the plan is written, so one model call plans every tool
call; the executor runs one call per node invocation (each finished call is checkpointed). The
decider stops on the step budget, or when a call fails: the controller may then re-plan with the
error shown (``Options.replans`` times: what the model declares, else 1). The summarizer model
always writes the answer, from the calls and their observations.

A plan is numbered ReAct calls (each ``Thought:`` / ``Action:`` / ``Action Input:`` block read by
:func:`agentkit.mllm.toolcall.parse`) or a JSON list of ``{"tool": ..., "args": {...}}``. Later calls
pass earlier results by their names (``detect_0``), as in ``react``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from agentkit.mllm.backends.base import Message
from agentkit.mllm.toolcall import FinalAnswer, ParseError, parse
from agentkit.planners import dsl, program, prompting, roles
from agentkit.runtime import Runtime
from agentkit.state import RunState, Step, ToolCall
from agentkit.tools.base import step_refs

#: Calls a plan may hold, whatever the budget (the prompt asks for at most ``max_steps``).
MAX_PLAN_CALLS = 64

_NUMBER_RE = re.compile(r"[ \t]*(?:\d{1,3}[.)]|step[ \t]*\d{1,3}[.):]?)[ \t]*", re.IGNORECASE)
_ACTION_RE = re.compile(r"[ \t*#>]*action\**[ \t]*:", re.IGNORECASE)  # not "Action Input:"
_TOOL_KEYS = ("tool", "action", "name")
_ARGS_KEYS = ("args", "action_input", "arguments", "input")


def _json_plan(text: str, tools: Collection[str]) -> list[ToolCall] | ParseError:
    try:
        items = json.loads(text)
    except ValueError as e:
        return ParseError(message=f"the plan looks like a JSON list but is not valid JSON: {e}")
    if not isinstance(items, list):
        return ParseError(message="a JSON plan must be a list of calls")
    calls: list[ToolCall] = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            return ParseError(message=f'step {i} of the plan is not an object {{"tool", "args"}}')
        tool = next((item[k] for k in _TOOL_KEYS if isinstance(item.get(k), str)), None)
        args: Any = next((item[k] for k in _ARGS_KEYS if k in item), {})
        if tool is None or tool not in tools:
            return ParseError(
                message=f"step {i} of the plan names no known tool ({tool!r}); "
                f"valid tools: {', '.join(sorted(tools))}"
            )
        if not isinstance(args, dict):
            return ParseError(message=f"step {i}: the arguments of {tool} must be a JSON object")
        calls.append(ToolCall(tool=tool, args=args, thought=str(item.get("thought", ""))))
    return calls


def _blocks(text: str) -> list[str]:
    """Split plan text into one block per call: a block starts at a ``Thought:`` line, or at an
    ``Action:`` line when the current block already has its Action. Step numbers are dropped."""
    blocks: list[list[str]] = [[]]
    has_action = has_thought = False
    for raw in text.split("\n"):
        line = raw
        m = _NUMBER_RE.match(line)
        if m and (dsl.THOUGHT_RE.match(line, m.end()) or _ACTION_RE.match(line, m.end())):
            line = line[m.end() :]
        is_thought = bool(dsl.THOUGHT_RE.match(line))
        is_action = bool(_ACTION_RE.match(line))
        if (is_thought and (has_action or has_thought)) or (is_action and has_action):
            blocks.append([])
            has_action = has_thought = False
        has_thought |= is_thought
        has_action |= is_action
        blocks[-1].append(line)
    return ["\n".join(b).strip() for b in blocks if "\n".join(b).strip()]


def parse_plan(text: str, tools: Collection[str]) -> list[ToolCall] | ParseError:
    """Read a plan: a JSON list of calls or numbered ReAct blocks. A block that is a Final Answer
    ends the plan (the summarizer answers); an unreadable block makes the whole plan a
    :class:`ParseError` that names its step."""
    body = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\n(.*)\n```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1).strip()
    if body.startswith("["):
        calls = _json_plan(body, tools)
    else:
        calls = []
        for i, block in enumerate(_blocks(body), 1):
            if not (_ACTION_RE.search(block) or "final answer" in block.lower()):
                continue  # a heading ("Plan:") or a stray note between steps
            parsed = parse(block, tools)
            if isinstance(parsed, FinalAnswer):
                break
            if isinstance(parsed, ParseError):
                return ParseError(message=f"step {i} of the plan: {parsed.message}", text=block)
            calls.append(parsed)
    if isinstance(calls, ParseError):
        return calls
    if not calls:
        return ParseError(
            message="the plan has no tool calls; write numbered steps with Action and Action Input"
        )
    if len(calls) > MAX_PLAN_CALLS:
        return ParseError(message=f"the plan has {len(calls)} calls; at most {MAX_PLAN_CALLS}")
    return calls


def format_plan(calls: list[ToolCall]) -> str:
    """The plan as numbered ReAct blocks (what the transcript and the trace show)."""
    out = []
    for i, c in enumerate(calls, 1):
        head = f"{i}. Thought: {c.thought}\n" if c.thought else f"{i}. "
        out.append(
            f"{head}Action: {c.tool}\nAction Input: {json.dumps(c.args, ensure_ascii=False)}"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# nodes


def make_plan_controller(rt: Runtime) -> roles.Node:
    """Writes the whole plan (or, after a failed call, a new plan with the error shown); with
    ``code`` actions, as a program of the ``program`` planner's language."""

    # with code actions the plan is a program, written and read as the program planner does
    # (beam fallback included); its ANSWER is left to the summarizer
    code_controller = program.make_program_controller(rt)

    def controller(state: RunState) -> dict[str, Any]:
        if rt.options.actions == "code":
            return code_controller(state)
        t0 = time.perf_counter()
        system = prompting.load("plan_controller").format(
            **roles.tool_fields(rt),
            max_steps=str(state.task.max_steps - len(state.tool_steps)),
        )
        # the task as its typed twin reads it (a spoken question's transcription left out)
        messages = [
            Message(role="system", content=system),
            roles.task_message(rt, state, roles.calls_pad),
        ]
        gen = rt.models.controller.generate(
            messages, max_new_tokens=rt.options.max_new_tokens * 4, stop=roles.STOP
        )
        plan: list[ToolCall] | ParseError = (
            list(gen.tool_calls) if gen.tool_calls else parse_plan(gen.text, rt.tools.names())
        )
        if isinstance(plan, list) and (bad := [c.tool for c in plan if c.tool not in rt.tools]):
            plan = ParseError(
                message=f"unknown tool {bad[0]!r}; valid: {', '.join(rt.tools.names())}"
            )
        seconds = time.perf_counter() - t0
        if isinstance(plan, ParseError):
            step = roles.model_step(
                "controller",
                gen,
                error=f"Could not read your plan: {plan.message}",
                seconds=seconds,
            )
            return {"steps": [roles.record(rt, step)], "plan": [], "cursor": 0}
        step = roles.model_step(
            "controller",
            gen,
            thought=f"a plan of {len(plan)} calls",
            observation=format_plan(plan),
            seconds=seconds,
        )
        return {
            "steps": [roles.record(rt, step)],
            "plan": plan,
            "cursor": 0,
            "attempts": state.attempts + 1,
        }

    return controller


def plan_views(rt: Runtime) -> tuple[roles.Pad, Callable[[RunState], dict[str, Any]]]:
    """(the summarizer's transcript, the names a call may pass) of ``rt``'s runs: the program
    and its variables with ``code`` actions, else the numbered calls and every earlier result
    (``detect_0``). Read per call: ``rt`` may stand for whichever run is active."""

    def pad(state: RunState) -> str:
        code = rt.options.actions == "code"
        return roles.program_digest_pad(state) if code else roles.calls_pad(state)

    def refs(state: RunState) -> dict[str, Any]:
        code = rt.options.actions == "code"
        return program.program_refs(state) if code else step_refs(state.steps)

    return pad, refs


def make_plan_decider(rt: Runtime) -> roles.Node:
    """Stops on the budget, on too many unreadable plans, or on a failed call (after
    ``Options.replans`` re-plans); otherwise lets the next call run."""

    def decider(state: RunState) -> dict[str, Any]:
        if state.stop_reason:
            return {}
        if roles.last_controller_failed(state):
            stop = roles.parse_error_step(rt, state)
            return {"steps": [stop], "stop_reason": "parse_errors"} if stop else {}
        last = state.steps[-1]
        if last.role == "executor" and last.error:
            where = f"Call {state.cursor} of the plan ({last.tool}) failed"
            # With no re-plan left, the failed call is why the run stops, budget or not.
            if state.attempts > rt.options.rewrites():
                note = Step(role="decider", error=f"{where}; no re-plan left.")
                return {"steps": [roles.record(rt, note)], "stop_reason": "call_failed"}
            if stop := roles.budget_step(rt, state):
                return {"steps": [stop], "stop_reason": "budget"}
            note = Step(role="decider", error=f"{where}; write a new plan for what is left.")
            return {"steps": [roles.record(rt, note)], "plan": [], "cursor": 0}
        if state.cursor >= len(state.plan):
            return {}  # the plan is done: the route goes on to the summarizer
        if stop := roles.budget_step(rt, state):
            return {"steps": [stop], "stop_reason": "budget"}
        return {}  # the route runs the next call

    return decider


def build_plan(rt: Runtime, *, checkpointer: BaseCheckpointSaver | None = None):
    pad, refs = plan_views(rt)
    return roles.build_written_ahead(
        rt,
        controller=make_plan_controller(rt),
        executor=roles.make_plan_executor(rt, refs=refs),
        decider=make_plan_decider(rt),
        pad=pad,
        checkpointer=checkpointer,
    )
