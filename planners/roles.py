"""The four roles every planner wires: controller, executor, decider, summarizer (plus ingest).

Each ``make_*`` takes the run's :class:`~agentkit.runtime.Runtime` and returns a LangGraph node:
a plain function from :class:`RunState` to a partial update. Nodes only *append* steps (the
reducer on ``RunState.steps``) and write each one to the trace as soon as it is finished.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from agentkit.errors import BackendError
from agentkit.mllm.backends.base import Backend, Generation, Message, constrained, generate
from agentkit.mllm.toolcall import FinalAnswer, ParseError, parse
from agentkit.planners import dsl, prompting
from agentkit.planners.expect import (
    Expectation,
    call_values,
    can_choose,
    choose,
    grounded_answers,
    question_kind,
    resolved,
    searched_in_vain,
)
from agentkit.planners.grammar import ArgSpec, Line, Mode, ProgramGrammar, arg_specs
from agentkit.runtime import Runtime
from agentkit.state import RunState, Step, ToolCall
from agentkit.tools.base import ToolRegistry, execute, step_refs

Node = Callable[[RunState], dict[str, Any]]
STOP = ["Observation:", "\nObservation"]
#: A code action is one line; the model should not write the observation comment itself.
CODE_STOP = ["\n#", "\nObservation"]
#: The stop reason of a run with no evidence to answer from (every ``tree`` branch failed): the
#: summarizer is not asked to guess.
NOTHING_TO_SUMMARIZE = "no_evidence"
#: A summarizer answer longer than this is run-on text, not a short answer.
MAX_ANSWER_CHARS = 300


# --------------------------------------------------------------------------------------------
# prompts


def scratchpad(state: RunState) -> str:
    """The ReAct transcript so far: each controller call with the executor's observation."""
    lines: list[str] = []
    for s in state.steps:
        if s.role == "controller":
            if s.thought:
                lines.append(f"Thought: {s.thought}")
            if s.tool:
                lines.append(f"Action: {s.tool}")
                lines.append(f"Action Input: {json.dumps(s.args or {}, ensure_ascii=False)}")
            elif s.error:
                lines.append(f"Observation: {s.error}")
        elif s.role == "executor" or s.role == "decider" and s.observation:
            lines.append(f"Observation: {s.observation}")
    return "\n".join(lines)


def question(state: RunState) -> str:
    """The question the models read: as typed or heard, with CLEVR's two-clause "There is a X;
    what color is it?" said as the one sentence it means ("What color is the X?",
    :func:`~agentkit.planners.expect.resolved`; the trace keeps the user's words)."""
    return resolved(state.question or state.task.question or "")


def as_typed(state: RunState) -> RunState:
    """What the models are shown of a spoken run: its typed twin. The ingest's transcription
    step and the question's audio are left out (the question is the transcript), so the
    controller, decider and summarizer read the prompts they were trained on and a spoken question
    is answered as its typed version is; the steps and the trace keep the transcription."""
    first = state.steps[0] if state.steps else None
    if state.task.audio is None or first is None or first.tool != "transcribe":
        return state
    heard = (first.args or {}).get("audio")
    media = {mid: desc for mid, desc in state.media.items() if mid != heard}
    # ``heard``: where the current reading's work begins (after a re-hearing, the attempts on
    # earlier readings are left out too); 0 in a run checkpointed before it was kept.
    return state.model_copy(update={"steps": state.steps[state.heard or 1 :], "media": media})


def image_paths(rt: Runtime, state: RunState) -> list:
    return [rt.media.path(mid) for mid in state.media if rt.media.path(mid).suffix == ".png"]


def images_line(state: RunState) -> str:
    return ", ".join(f"{mid} ({desc})" for mid, desc in state.media.items()) or "none"


def tool_fields(rt: Runtime, prompt: prompting.Prompt | None = None) -> dict[str, str]:
    """The ``tools`` and ``tool_names`` slots of a controller prompt, in the run's prompt style
    (only those ``prompt`` has, when given: a ``bare`` prompt lists names only)."""
    fields = {"tool_names": ", ".join(rt.tools.names())}
    if prompt is None or "tools" in prompt.fields:
        style = rt.options.prompt_style or "full"
        fields["tools"] = "\n".join(t.prompt_line(style) for t in rt.tools)
    return fields


def controller_prompt(rt: Runtime, name: str) -> prompting.Prompt:
    """The controller template ``name`` in the run's prompt style."""
    return prompting.load_styled(name, rt.options.prompt_style)


def controller_messages(
    rt: Runtime, state: RunState, name: str = "controller", pad: Pad | None = None
) -> list[Message]:
    """The react controller's prompt: the ``name`` template in the run's prompt style, then the
    task and the transcript ``pad`` writes (:func:`scratchpad` by default). The tool-use data
    generator trains on exactly these messages."""
    prompt = controller_prompt(rt, name)
    system = prompt.format(**tool_fields(rt, prompt))
    return [Message(role="system", content=system), task_message(rt, state, pad or scratchpad)]


def task_message(rt: Runtime, state: RunState, pad: Pad | None) -> Message:
    """The user turn every role reads: the images, the question and the work so far (``pad``;
    none for a decomposer), of the run's typed view (:func:`as_typed`)."""
    state = as_typed(state)
    user = prompting.load("task").format(
        images=images_line(state), question=question(state), scratchpad=pad(state) if pad else ""
    )
    return Message(role="user", content=user, images=image_paths(rt, state))


def result_comment(step: Step) -> str:
    """An executor step as the ``code`` transcripts show it: ``# objs = 3 objects`` (the
    :func:`~agentkit.planners.dsl.digest` of its result), or ``# Error: ...``."""
    if step.result is None:
        return f"# {step.observation or 'Error: ' + (step.error or 'no result')}"
    return f"# {step.ref} = {dsl.digest(step.result)}"


def code_pad(state: RunState) -> str:
    """The ``code`` actions' transcript: each line the controller wrote with its result's digest
    under it as a comment (:func:`result_comment`), and unreadable replies and the decider's notes
    as comments too. The full observations are in the steps and the trace."""
    lines: list[str] = []
    names = {*state.media, *(s.ref for s in state.steps if s.ref)}
    for s in state.steps:
        if s.role == "controller":
            if s.tool:
                lines.append(dsl.format_line(s.ref or "_", s.tool, s.args or {}, names))
            elif s.error:
                lines.append(f"# {s.error}")
        elif s.role == "executor":
            lines.append(result_comment(s))
        elif s.role == "decider" and (s.observation or s.error):
            lines.append(f"# {s.error or s.observation}")
    return "\n".join(lines)


def code_messages(rt: Runtime, state: RunState) -> list[Message]:
    """The controller's prompt with ``code`` actions in ``transcript`` context."""
    return controller_messages(rt, state, "controller_code", code_pad)


#: The start of a ``program`` controller reply, before its first line.
PROGRAM_START = "Thought: {thought}\nProgram:\n```\n"


def program_reply(thought: str, lines: Sequence[str], *, closed: bool = True) -> str:
    """A ``program`` controller reply as the core is trained to write it: the thought, then the
    lines in a code fence (left open with ``closed=False``: the start of a reply to continue)."""
    body = PROGRAM_START.format(thought=thought) + "".join(f"{ln}\n" for ln in lines)
    return body + "```" if closed else body


#: A note appended to a line's thought when a beam-search line replaced the greedy one.
_BEAM_NOTE_RE = re.compile(r" ?\(beam \d+: .*\)$", re.DOTALL)


def continues_program(rt: Runtime, state: RunState) -> bool:
    """Whether this ``code`` turn continues a program (``Options.code_context == "program"``): the
    backend continues replies and no step so far failed (a failure is only shown in the
    ``transcript`` context, which the run keeps from then on)."""
    if rt.options.code_context != "program":
        return False
    if not getattr(rt.models.controller, "continues_replies", False):
        return False
    return not any(s.error for s in as_typed(state).steps)


def program_thought(state: RunState) -> str | None:
    """The thought the program being continued began with (its first line's, without a beam
    note), or None before the first line."""
    for s in as_typed(state).steps:
        if s.role == "controller" and s.tool:
            return _BEAM_NOTE_RE.sub("", s.thought)
    return None


def program_system(rt: Runtime) -> str:
    """The ``program`` planner's system prompt in the run's prompt style."""
    prompt = controller_prompt(rt, "program_controller")
    extra = {"max_lines": str(dsl.MAX_LINES)} if "max_lines" in prompt.fields else {}
    return prompt.format(**tool_fields(rt, prompt), **extra)


def continuation_messages(rt: Runtime, state: RunState, thought: str) -> list[Message]:
    """The ``program`` planner's prompt, then the start of its reply: ``thought`` and the lines
    written so far, for the backend to continue with the next line."""
    typed = as_typed(state)
    names = {*typed.media, *(s.ref for s in typed.steps if s.ref)}
    lines = [dsl.format_line(s.ref or "_", s.tool, s.args or {}, names)
             for s in typed.steps if s.role == "controller" and s.tool]  # fmt: skip
    start = program_reply(thought, lines, closed=False)
    return [Message(role="system", content=program_system(rt)), task_message(rt, state, None),
            Message(role="assistant", content=start)]  # fmt: skip


def line_context(rt: Runtime, state: RunState) -> tuple[list[Message], str | None, list[str]]:
    """(the controller's messages, the program's thought or None, stop strings) for a ``code``
    turn. Continuing a program, the first turn writes the program's thought first (one short
    generation, up to ``Program:``), as the ``program`` planner's replies begin."""
    if not continues_program(rt, state):
        return code_messages(rt, state), None, CODE_STOP
    thought = program_thought(state)
    if thought is None:
        head = continuation_messages(rt, state, "")[:-1]
        gen = generate(rt.models.controller, head, max_new_tokens=64, stop=["Program:"])
        thought = " ".join(dsl.THOUGHT_RE.sub("", gen.text).split())
    return continuation_messages(rt, state, thought), thought, ["\n"]


Pad = Callable[[RunState], str]


def evidence_messages(
    rt: Runtime, state: RunState, role: str, pad: Pad | None = None
) -> list[Message]:
    """The decider's or summarizer's view: the question and the transcript ``pad`` writes
    (:func:`scratchpad` by default; planners that write ahead show their calls differently)."""
    system = prompting.load(role).format()
    return [Message(role="system", content=system), task_message(rt, state, pad or scratchpad)]


def _generate(rt: Runtime, backend: Backend, messages: list[Message], role: str) -> Generation:
    tools = [t.schema() for t in rt.tools] if role == "controller" else None
    return backend.generate(
        messages, tools=tools, max_new_tokens=rt.options.max_new_tokens, stop=STOP
    )


def model_step(role: str, gen: Generation, **kw: Any) -> Step:
    return Step(
        role=role, model=gen.model, tokens_in=gen.tokens_in, tokens_out=gen.tokens_out, **kw
    )  # type: ignore[arg-type]


def record(rt: Runtime, step: Step) -> Step:
    rt.trace.step(step)
    return step


# --------------------------------------------------------------------------------------------
# nodes


def make_ingest(rt: Runtime) -> Node:
    """Turns a spoken question into text with the ``transcribe`` tool, recorded as a step."""

    def ingest(state: RunState) -> dict[str, Any]:
        if state.question or state.task.audio is None:
            # Typed tasks start at the controller (add_ingest); a run checkpointed before
            # that, waiting at ingest, still resumes.
            return {"question": state.task.question}
        audio_id = next((m for m in state.media if m.startswith("audio")), None)
        call = ToolCall(
            tool="transcribe",
            args={"audio": audio_id},
            thought="The question is spoken; transcribe it first.",
        )
        step = record(rt, execute(call, rt.tools, rt.tool_context(), rt.options.tool_timeout))
        if step.error:
            return {"steps": [step], "stop_reason": "transcription_failed"}
        text = (step.result or {}).get("text", "").strip()
        return {"steps": [step], "question": _heard_question(state, text), "heard": 1}

    return ingest


def _heard_question(state: RunState, text: str) -> str:
    typed = f" (typed: {state.task.question})" if state.task.question else ""
    return text + typed


#: Stop reasons of a run that failed on its question as read, not for want of budget or by the
#: decider's choice: a spoken question's next reading is tried (``Options.rehear``).
REHEAR_STOPS = frozenset(
    {"program_failed", "bad_answer", "call_failed", "parse_errors", NOTHING_TO_SUMMARIZE}
)


def to_summarizer(state: RunState) -> str:
    """Where a finished run goes: the summarizer, or first ``rehear`` when a spoken question's
    run failed on what was heard (:data:`REHEAR_STOPS`)."""
    failed = state.task.audio is not None and state.stop_reason in REHEAR_STOPS
    return "rehear" if failed and state.heard else "summarizer"


def make_rehear(rt: Runtime) -> Node:
    """Tries a spoken question again on the transcriber's next other reading of the recording
    (``Options.rehear`` of them at most; the beam that gives them runs once, here, as a
    ``transcribe`` step). The work on the failed reading stays in the steps, behind ``heard``:
    the models see a fresh run on the new reading (:func:`as_typed`), as on a typed question.
    With no reading left, the run goes on to the summarizer as it stands."""

    def rehear(state: RunState) -> dict[str, Any]:
        if state.reading >= rt.options.rehear:
            return {}
        steps: list[Step] = []
        transcriptions = [s for s in state.steps if s.tool == "transcribe" and s.ok]
        beam = next((s for s in transcriptions if "alternatives" in (s.args or {})), None)
        if beam is None:
            args = {**(transcriptions[0].args or {}), "alternatives": rt.options.rehear}
            call = ToolCall(tool="transcribe", args=args,
                            thought="The run failed on the question as heard; hear it again.")  # fmt: skip
            beam = record(rt, execute(call, rt.tools, rt.tool_context(), rt.options.tool_timeout))
            steps.append(beam)
        readings = (beam.result or {}).get("alternatives", []) if beam.ok else []
        if state.reading >= len(readings):
            return {"steps": steps}
        text = readings[state.reading].strip()
        note = Step(
            role="decider",
            thought=f"The run failed ({state.stop_reason}) on the question as heard: "
            f"{question(state)!r}. Trying the next reading of the recording.",
            observation=f"Heard: {text}",
        )
        steps.append(record(rt, note))
        return {
            "steps": steps,
            "question": _heard_question(state, text),
            "reading": state.reading + 1,
            "heard": len(state.steps) + len(steps),
            "stop_reason": None, "draft": None, "pending": None,
            "plan": [], "cursor": 0, "answer_expr": None, "attempts": 0,
        }  # fmt: skip

    return rehear


def add_ingest(g: Any, rt: Runtime) -> None:
    """The nodes of a spoken question and the routes around them: a spoken task starts at
    ``ingest`` (its question is transcribed first; a failed transcription goes to the
    summarizer), a typed one at the ``controller`` (its question is the task's: a graph step
    fewer). ``rehear`` (:func:`make_rehear`) sits before the summarizer of a spoken run that
    failed (routes that end in :func:`to_summarizer`)."""
    from langgraph.graph import START

    g.add_node("ingest", make_ingest(rt))
    g.add_node("rehear", make_rehear(rt))
    g.add_conditional_edges(
        START,
        lambda s: "ingest" if s.task.audio is not None and not s.question else "controller",
        ["ingest", "controller"],
    )
    for heard in ("ingest", "rehear"):  # a question heard goes to the controller
        g.add_conditional_edges(
            heard,
            lambda s: "summarizer" if s.stop_reason else "controller",
            ["controller", "summarizer"],
        )


def make_controller(rt: Runtime) -> Node:
    """Writes a thought and the next tool call, or the Final Answer (``Options.actions``: as
    ReAct text, or as one line of code)."""

    def controller(state: RunState) -> dict[str, Any]:
        t0 = time.perf_counter()
        if rt.options.actions == "code":
            gen, parsed, name = code_turn(rt, state)
            hint = "Reply with one line: name = tool(key=value), or ANSWER = name."
        else:
            gen = _generate(rt, rt.models.controller, controller_messages(rt, state), "controller")
            parsed, name = read_text(gen, rt), None
            hint = "Reply with Thought, Action and Action Input, or with Final Answer."
        seconds = time.perf_counter() - t0
        if isinstance(parsed, ToolCall):
            step = model_step(
                "controller",
                gen,
                thought=parsed.thought,
                tool=parsed.tool,
                args=parsed.args,
                ref=name,
                seconds=seconds,
            )
            return {"steps": [record(rt, step)], "pending": parsed, "draft": None}
        if isinstance(parsed, FinalAnswer):
            step = model_step(
                "controller",
                gen,
                thought=parsed.thought,
                observation=f"Final Answer: {parsed.answer}",
                seconds=seconds,
            )
            return {"steps": [record(rt, step)], "pending": None, "draft": parsed.answer}
        step = model_step(
            "controller",
            gen,
            error=f"Could not read your reply: {parsed.message}. {hint}",
            observation=gen.text[:500],
            seconds=seconds,
        )
        return {"steps": [record(rt, step)], "pending": None, "draft": None}

    return controller


def code_turn(
    rt: Runtime, state: RunState
) -> tuple[Generation, ToolCall | FinalAnswer | ParseError, str | None]:
    """The controller's ``code`` reply, read (:func:`read_code`): the greedy line, or, when it
    does not read or does not fit the question (:meth:`Expectation.turn_unmet`: an answer of
    another kind than asked, a filter the question does not name), the most likely beam-search
    line that reads and fits; failing that, for a greedy line that does not read, the most
    likely that reads (a small core's second guess is likelier right than a rewrite after an
    error message; ``Options.candidates``). A line that reads but fits no better stands. The
    prompt is the transcript or the program so far (``Options.code_context``, :func:`line_context`);
    a continued program's thought is each of its lines' thought."""
    messages, thought, stop = line_context(rt, state)
    tokens = rt.options.max_new_tokens
    names, expect = earlier_names(state), Expectation.of(question(state))
    grammar = program_grammar(rt, state, "line", names, expect)
    gen = generate(rt.models.controller, messages, max_new_tokens=tokens, stop=stop,
                   constraint=grammar)  # fmt: skip
    continuing = thought is not None
    gen, parsed, name = _picked_line(rt, state, messages, gen, grammar, names, expect,
                                     one_line=continuing)  # fmt: skip
    if thought and isinstance(parsed, ToolCall):
        parsed.thought = f"{thought} ({parsed.thought})" if parsed.thought else thought
    return gen, parsed, name


def _picked_line(
    rt: Runtime, state: RunState, messages: list[Message], gen: Generation,
    grammar: ProgramGrammar | None, names: list[str], expect: Expectation, *,
    one_line: bool = False,
) -> tuple[Generation, ToolCall | FinalAnswer | ParseError, str | None]:  # fmt: skip
    """:func:`code_turn`'s choice between the greedy line ``gen`` and the beam's (``names``: the
    results earlier lines set; ``expect``: what the question expects; ``one_line``: each beam
    reply is read up to its first line break, as when continuing a program, where the beam
    writes on past the line)."""
    tokens = rt.options.max_new_tokens
    parsed, name = read_code(gen.text, rt, state)
    passed = [*names, *state.media]
    made = {s.ref: call_values(ToolCall(tool=s.tool, args=s.args or {}), passed)
            for s in as_typed(state).steps if s.role == "executor" and s.ref and s.tool}  # fmt: skip
    if isinstance(parsed, ParseError):
        why = f"did not read: {parsed.message}"
    elif unmet := expect.turn_unmet(parsed, passed, made):
        why = f"does not fit the question: {unmet}"
    else:
        return gen, parsed, name
    picked: tuple[Generation, ToolCall | FinalAnswer, str | None, int] | None = None
    for rank, cand in beam_candidates(rt, messages, tokens, gen.text, grammar):
        if one_line:
            cand = cand.model_copy(update={"text": cand.text.strip().split("\n", 1)[0]})
        got, got_name = read_code(cand.text, rt, state)
        if isinstance(got, ParseError):
            continue
        if expect.turn_unmet(got, passed, made) is None:
            picked = cand, got, got_name, rank
            break
        if picked is None and isinstance(parsed, ParseError):
            picked = cand, got, got_name, rank
    if picked is None:
        return gen, parsed, name
    cand, got, got_name, rank = picked
    note = f"beam {rank}: the greedy line {why}"
    got.thought = f"{got.thought} ({note})" if got.thought else note
    return cand, got, got_name


def beam_candidates(
    rt: Runtime,
    messages: list[Message],
    tokens: int,
    greedy: str,
    grammar: ProgramGrammar | None = None,
) -> Iterator[tuple[int, Generation]]:
    """``(rank, reply)`` of ``Options.candidates`` beam-search replies, most likely first, the
    greedy reply left out; none when the controller's backend cannot list candidates."""
    n = rt.options.candidates
    backend = rt.models.controller
    beams = getattr(backend, "candidates", None)
    if n < 2 or beams is None:
        return
    kw = constrained(backend, grammar)
    for rank, cand in enumerate(beams(messages, n, max_new_tokens=tokens, **kw), 1):
        if cand.text.strip() != greedy.strip():
            yield rank, cand


def read_text(gen: Generation, rt: Runtime) -> ToolCall | FinalAnswer | ParseError:
    """A ReAct reply (or the backend's native function call) as a call, an answer or an error."""
    if not gen.tool_calls:
        return parse(gen.text, rt.tools.names())
    call = gen.tool_calls[0]
    if call.tool not in rt.tools:
        return ParseError(
            message=f"unknown tool {call.tool!r}; available: {', '.join(rt.tools.names())}"
        )
    return call


def earlier_names(state: RunState) -> list[str]:
    """The names earlier code lines set that hold a result (a failed line's name is free)."""
    steps = as_typed(state).steps
    return [s.ref for s in steps if s.role == "executor" and s.ref and s.result is not None]


def program_grammar(
    rt: Runtime, state: RunState, mode: Mode, variables: list[str] | None = None,
    expect: Expectation | None = None,
) -> ProgramGrammar | None:  # fmt: skip
    """The prefix grammar the controller's code is decoded under (``Options.constrain``): the
    run's tools with their arguments, its media ids and the names set so far, and with
    ``Options.constrain_words`` the question's word rule (``expect``, read from the question
    when not given); None when off."""
    if not rt.options.constrain:
        return None
    tools = tool_specs(rt.tools)
    media = list(as_typed(state).media)
    expect = expect or Expectation.of(question(state))
    words = expect.words_for if rt.options.constrain_words else None
    if words is not None:
        unfit, only = expect.unfit_tools(), expect.only_tools()
        if only is not None and not only & tools.keys():
            only = None  # the tools it asks for are not here: any tool may serve
        tools = {name: spec for name, spec in tools.items()
                 if name not in unfit and (only is None or name in only)}  # fmt: skip
    lines = code_lines(state, variables or [], media) if mode == "line" else ()
    return ProgramGrammar(tools, media=media, variables=variables or (), mode=mode, words=words,
                          lines=lines)  # fmt: skip


def code_lines(state: RunState, names: list[str], media: list[str]) -> list[Line]:
    """The earlier code lines (executor steps that set one of ``names``) as a word rule reads
    them: name, tool and the strings the call gave (names and media ids aside)."""
    known = {*names, *media}
    return [
        Line.of_call(s.ref, s.tool or "", s.args or {}, known)
        for s in as_typed(state).steps
        if s.role == "executor" and s.ref in names and s.result is not None
    ]


def tool_specs(tools: ToolRegistry) -> dict[str, dict[str, ArgSpec]]:
    """Each tool's arguments with what they accept, from its schema (read once per tool)."""
    return {name: _arg_specs(tools[name].Args) for name in tools.names()}


@functools.cache
def _arg_specs(args_model: type[BaseModel]) -> dict[str, ArgSpec]:
    return arg_specs(args_model.model_json_schema())


def read_code(
    text: str, rt: Runtime, state: RunState
) -> tuple[ToolCall | FinalAnswer | ParseError, str | None]:
    """A ``code`` reply: ``name = tool(...)`` is the call (and ``name`` the name its result
    gets), ``ANSWER = name`` the answer read from that name's result; anything else, or an
    ANSWER that is not one (a list, an unknown name), is an error for the controller to mend."""
    typed = as_typed(state)  # the names of this reading's work, not a misheard one's
    try:
        line = dsl.parse_line(text, rt.tools.names(), earlier_names(state), media=list(typed.media))
        if isinstance(line, ToolCall):
            return line, line.name
        answer = dsl.read_answer(line, typed.steps)
    except dsl.DSLError as e:
        return ParseError(message=str(e)), None
    expr = line.get("ref", line.get("value"))
    return FinalAnswer(answer=answer, thought=f"ANSWER = {expr}"), None


def make_executor(rt: Runtime) -> Node:
    """Not a model: validates the pending call against the tool's schema and runs it."""

    def executor(state: RunState) -> dict[str, Any]:
        assert state.pending is not None, "executor reached without a pending call"
        refs = step_refs(state.steps)
        step = execute(state.pending, rt.tools, rt.tool_context(), rt.options.tool_timeout, refs)
        return {"steps": [record(rt, step)], "pending": None}

    return executor


def _parse_errors_in_a_row(state: RunState) -> int:
    n = 0
    for s in reversed([s for s in state.steps if s.role == "controller"]):
        if s.error is None:
            break
        n += 1
    return n


def make_decider(rt: Runtime) -> Node:
    """Is what has been gathered enough? Enforces the step budget and the parse-error limit; with
    ``Options.model_decider`` it also asks the decider model."""

    def decider(state: RunState) -> dict[str, Any]:
        if state.stop_reason:
            return {}
        if state.draft is not None:
            return answered_after_a_failure(rt, state)
        used = len(state.tool_steps)
        if used >= state.task.max_steps:
            step = Step(
                role="decider",
                observation=f"Step budget used: {used} of {state.task.max_steps} tool calls.",
            )
            return {"steps": [record(rt, step)], "stop_reason": "budget"}
        if _parse_errors_in_a_row(state) >= rt.options.max_parse_errors:
            step = Step(
                role="decider",
                error=f"{rt.options.max_parse_errors} unreadable controller replies in a row",
            )
            return {"steps": [record(rt, step)], "stop_reason": "parse_errors"}
        if rt.options.model_decider and state.tool_steps:
            t0 = time.perf_counter()
            gen = rt.models.decider.generate(
                evidence_messages(rt, state, "decider"), max_new_tokens=4
            )
            enough = gen.text.strip().lower().startswith("yes")
            step = model_step(
                "decider",
                gen,
                thought="enough to answer" if enough else "not enough yet",
                seconds=time.perf_counter() - t0,
            )
            return {"steps": [record(rt, step)], "stop_reason": "decider" if enough else None}
        return {}

    return decider


def answered_after_a_failure(rt: Runtime, state: RunState) -> dict[str, Any]:
    """A spoken question answered after one of its calls failed, with another reading of the
    recording left to try (``Options.rehear``): the run stops as ``call_failed`` and is heard
    again. The react controller answers anyway once a call fails, so its run never stops on the
    failure as a ``program`` run does; yet a failed call on a spoken question is most often a
    misheard word ("the small brown block" where the block is gray: the select finds nothing,
    the query on it fails). On the 200 held-out questions 1 typed react run had a failed call,
    and 2 spoken ones, both misheard and answered wrong."""
    if state.task.audio is None or state.reading >= rt.options.rehear:
        return {}
    failed = next((s for s in state.tool_steps if s.error), None)
    if failed is None:
        return {}
    why = f"{failed.tool} failed on the question as heard: {failed.error}"
    return {"steps": [record(rt, Step(role="decider", error=why))], "stop_reason": "call_failed"}


def route_after_controller(state: RunState) -> str:
    return "executor" if state.pending is not None else "decider"


def route_after_decider(state: RunState) -> str:
    return to_summarizer(state) if state.draft is not None or state.stop_reason else "controller"


def make_summarizer(
    rt: Runtime, *, pad: Pad | None = None, prompt: str = "summarizer", ground: bool = True
) -> Node:
    """Writes the final answer from the observations only (as ``pad`` shows them, with the
    ``prompt`` file as its instructions). Where the question asks for a kind of answer the
    results hold values of, the reply is the likeliest of them
    (:mod:`~agentkit.planners.expect`; ``Options.constrain``, on backends that score replies);
    ``ground=False`` lets the summarizer write its own answer freely (``tree``'s merge may add
    or compare its branches' counts). The controller's own answer (``draft``) stands unless it
    is of another kind than the question asks for ("2" to "Is there ...?") and such values are
    there to choose from, with ``ground`` or without."""

    def summarizer(state: RunState) -> dict[str, Any]:
        if state.stop_reason in ("transcription_failed", NOTHING_TO_SUMMARIZE):
            return {"answer": None}
        has_draft = state.draft is not None and not rt.options.summarize
        grounded = (
            (ground or has_draft) and rt.options.constrain and can_choose(rt.models.summarizer)
        )
        answers = grounded_answers(question(state), state.steps) if grounded else []
        kind = question_kind(question(state)) if grounded else None
        # A value no result holds, after a search found nothing: whatever the model wrote would
        # be a guess, and a draft of another kind ("no" to "What color is the cube?") no answer.
        unfounded = kind not in (None, "yes/no") and not answers and searched_in_vain(state.steps)
        note = ""
        if has_draft:
            expect = Expectation.of(question(state))
            if expect.kind_fits(state.draft) or not (answers or unfounded):
                answer, checks = _verified(rt, state, state.draft, _last_thought(state))
                return {
                    "steps": checks,
                    "answer": answer,
                    "stop_reason": state.stop_reason or "answered",
                }
            note = f"the controller answered {state.draft!r}, not {expect.kind}; "
        t0 = time.perf_counter()
        if unfounded:
            why = f"{note}no result holds {kind} and a search found nothing: no answer, not a guess"
            step = Step(role="summarizer", thought=why, seconds=time.perf_counter() - t0)
            return {"steps": [record(rt, step)], "answer": None,
                    "stop_reason": NOTHING_TO_SUMMARIZE}  # fmt: skip
        messages = evidence_messages(rt, state, prompt, pad)
        try:
            if chosen := choose(rt.models.summarizer, messages, answers):
                gen, note = chosen[0], note + chosen[1]
            else:
                gen = rt.models.summarizer.generate(
                    messages, max_new_tokens=rt.options.max_new_tokens, stop=STOP
                )
        except BackendError as e:
            step = Step(role="summarizer", error=str(e), seconds=time.perf_counter() - t0)
            return {"steps": [record(rt, step)], "answer": state.draft}
        parsed = parse(gen.text)
        if not isinstance(parsed, FinalAnswer) or len(parsed.answer) > MAX_ANSWER_CHARS:
            # Unreadable or run-on text is not an answer: no answer (the steps keep the
            # evidence) rather than the model's noise presented as one.
            step = model_step(
                "summarizer",
                gen,
                error="no readable 'Final Answer:' (at most "
                f"{MAX_ANSWER_CHARS} characters) in the summarizer's reply",
                seconds=time.perf_counter() - t0,
            )
            return {"steps": [record(rt, step)], "answer": state.draft,
                    "stop_reason": state.stop_reason or "unanswered"}  # fmt: skip
        answer = parsed.answer
        step = model_step(
            "summarizer",
            gen,
            thought=parsed.thought or note,
            observation=f"Final Answer: {answer}",
            seconds=time.perf_counter() - t0,
        )
        answer, checks = _verified(rt, state, answer, step.thought or _last_thought(state))
        return {
            "steps": [record(rt, step), *checks],
            "answer": answer,
            "stop_reason": state.stop_reason or "answered",
        }

    return summarizer


def _last_thought(state: RunState) -> str:
    ctrl = [s for s in state.steps if s.role == "controller" and s.error is None]
    return ctrl[-1].thought if ctrl else ""


def _verified(
    rt: Runtime, state: RunState, answer: str | None, thought: str
) -> tuple[str | None, list[Step]]:
    """The answer re-checked against the detector (``Options.verify``), with the steps that
    record the check; unchanged and no steps when verification is off."""
    if not rt.options.verify:
        return answer, []
    from agentkit.planners.verify import verify

    return verify(rt, state, answer, thought)


# --------------------------------------------------------------------------------------------
# variants for planners that write ahead (plan, program)


def written_ahead_pad(
    state: RunState, heading: str = "Plan", show_calls: bool = True, digests: bool = False
) -> str:
    """A transcript of written-ahead work: each plan (or program: ``heading``) the controller
    wrote, then each call that ran with its observation (``show_calls``: with its Action lines;
    a program's own lines already name the calls), and the decider's notes (why a plan was
    abandoned). ``digests``: each result as its digest and every note as a comment, as the
    ``code`` actions' transcripts show them (:func:`result_comment`)."""
    note = (lambda text: f"# {text}") if digests else (lambda text: f"Observation: {text}")
    lines: list[str] = []
    for s in state.steps:
        if s.role == "controller":
            if s.observation:
                lines.append(f"{heading}:\n{s.observation}")
            if s.error:
                lines.append(note(s.error))
        elif s.role == "executor":
            if show_calls:
                lines.append(f"Action: {s.tool}")
                lines.append(f"Action Input: {json.dumps(s.args or {}, ensure_ascii=False)}")
            lines.append(result_comment(s) if digests else note(s.observation or ""))
        elif s.role == "decider" and (s.error or s.observation):
            lines.append(note(s.error or s.observation or ""))
    return "\n".join(lines)


def program_digest_pad(state: RunState) -> str:
    """What the ``plan`` summarizer reads with ``code`` actions: each program the controller
    wrote and each result's digest."""
    return written_ahead_pad(state, "Program", show_calls=False, digests=True)


def calls_pad(state: RunState) -> str:
    """The ``plan`` planner's transcript (see :func:`written_ahead_pad`)."""
    return written_ahead_pad(state, "Plan", show_calls=True)


def build_written_ahead(
    rt: Runtime,
    *,
    controller: Node,
    executor: Node,
    decider: Node,
    pad: Callable[[RunState], str],
    checkpointer: Any = None,
) -> Any:
    """The graph of planners that write ahead (plan, program)::

    ingest → controller → decider ─┬─ next call ─→ executor ─┬─ next call ─→ executor
                                   │                          └─ failed / done / budget ─→ decider
                                   ├─ rewrite ─→ controller
                                   └─ done / budget ─→ summarizer → END

    Between calls that succeed the executor goes straight on (every call is still a step of its
    own, checkpointed): the decider has nothing to decide there, and each graph step costs.
    """
    from langgraph.graph import END, StateGraph

    # Any: langgraph's add_node overloads do not take a plain Callable[[RunState], dict]
    g: Any = StateGraph(RunState)
    g.add_node("controller", controller)
    g.add_node("executor", executor)
    g.add_node("decider", decider)
    g.add_node("summarizer", make_summarizer(rt, pad=pad))
    add_ingest(g, rt)
    g.add_edge("controller", "decider")  # the decider gates every plan (budget, parse errors)
    g.add_conditional_edges("executor", route_after_call, ["executor", "decider"])
    g.add_conditional_edges(
        "decider", route_written_ahead, ["executor", "controller", "rehear", "summarizer"]
    )
    g.add_edge("summarizer", END)
    return g.compile(checkpointer=checkpointer)


def make_plan_executor(
    rt: Runtime, *, refs: Callable[[RunState], dict[str, Any]] | None = None
) -> Node:
    """The executor for written-ahead work: runs ``state.plan[state.cursor]``, one call per node
    invocation (so every finished call is checkpointed), and moves the cursor on. ``refs`` gives
    the names a call may pass (default: every earlier successful step, as in ``react``)."""

    def executor(state: RunState) -> dict[str, Any]:
        assert state.cursor < len(state.plan), "executor reached with no call left in the plan"
        call = state.plan[state.cursor]
        known = refs(state) if refs is not None else step_refs(state.steps)
        step = execute(call, rt.tools, rt.tool_context(), rt.options.tool_timeout, known)
        return {"steps": [record(rt, step)], "cursor": state.cursor + 1}

    return executor


def budget_step(rt: Runtime, state: RunState) -> Step | None:
    """A decider step that stops the run when the tool-call budget is spent, else None."""
    used = len(state.tool_steps)
    if used < state.task.max_steps:
        return None
    return record(
        rt,
        Step(
            role="decider",
            observation=f"Step budget used: {used} of {state.task.max_steps} tool calls.",
        ),
    )


def parse_error_step(rt: Runtime, state: RunState) -> Step | None:
    """A decider step that stops the run after too many unreadable controller replies, else None."""
    if _parse_errors_in_a_row(state) < rt.options.max_parse_errors:
        return None
    return record(
        rt,
        Step(
            role="decider",
            error=f"{rt.options.max_parse_errors} unreadable controller replies in a row",
        ),
    )


def last_controller_failed(state: RunState) -> bool:
    """Whether the newest controller step is an unreadable reply (a parse error)."""
    ctrl = [s for s in state.steps if s.role == "controller"]
    return bool(ctrl) and ctrl[-1].error is not None


def route_after_call(state: RunState) -> str:
    """After a call of written-ahead work: the next call at once while this one succeeded and
    the budget lasts; a failure, the end of the plan or a spent budget goes to the decider."""
    if state.steps[-1].error or state.cursor >= len(state.plan):
        return "decider"
    return "executor" if len(state.tool_steps) < state.task.max_steps else "decider"


def route_written_ahead(state: RunState) -> str:
    """After the decider of ``plan`` / ``program``: stop, run the next call, or (re)plan."""
    if state.stop_reason or state.draft is not None:
        return to_summarizer(state)
    if not state.plan or last_controller_failed(state):
        return "controller"  # nothing to run: (re)plan
    return "executor" if state.cursor < len(state.plan) else "summarizer"
