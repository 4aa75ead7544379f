"""``program``: the controller writes a short program in a small DSL; an interpreter runs it
(VisProg-style).

    ingest → controller → decider ─┬─ next line ─→ executor → decider
        (writes program)            ├─ unreadable, or a line failed: rewrite → controller
                                    ├─ every line ran: ANSWER read ─→ summarizer → END
                                    └─ budget / no rewrite left ─→ summarizer

The program (see :mod:`agentkit.planners.dsl`) is parsed, never executed as Python. The executor
runs one line per node invocation (so each finished line is checkpointed); the line's variable is
the step's ``ref``, and later lines pass it by name. A failed line stops the program and goes back
to the controller as an observation; it may rewrite the program ``Options.replans`` times (by
default what the model's folder declares, else 1; the shipped core declares 0). When every line
has run, the decider reads ANSWER and formats it as the short answer
(:func:`~agentkit.planners.dsl.format_answer`); that *is* the answer, with no model call, unless
``Options.summarize`` asks the summarizer model to write it from the observations. A program that
cannot finish (no rewrite left, budget spent) is answered by the summarizer model.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

from agentkit.errors import ToolError
from agentkit.mllm.backends.base import Generation, Message, generate
from agentkit.planners import dsl, roles
from agentkit.planners.expect import (
    Expectation,
    Superlative,
    attribute_check,
    call_values,
    canonical_question,
    compared_attribute,
    described,
    superlatives,
    unused_calls,
)
from agentkit.planners.grammar import ProgramGrammar
from agentkit.planners.relax import Loosened, loosened
from agentkit.runtime import Runtime
from agentkit.state import RunState, Step, ToolCall
from agentkit.tools.base import execute, step_refs
from agentkit.tools.detect import normalize_word

_PROGRAM_RE = re.compile(r"[ \t*#>]*program\**[ \t]*:\**[ \t]*\n", re.IGNORECASE)
#: The name a program line sets ("objs = ...").
_TARGET_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*=")


def split_reply(text: str) -> tuple[str, str]:
    """(thought, program text) of a controller reply: ``Thought: ...`` then ``Program:`` and the
    program, fenced or not. Without a ``Program:`` line, the first code fence is the program;
    without either, everything after the ``Thought:`` line."""
    text = text.replace("\r\n", "\n").strip()
    m = _PROGRAM_RE.search(text)
    if m:
        head, body = text[: m.start()], text[m.end() :]
    elif (fence := text.find("```")) >= 0:
        head, body = text[:fence], text[fence:]
    else:
        lines = text.split("\n")
        n = 0
        while n < len(lines) and (dsl.THOUGHT_RE.match(lines[n]) or not lines[n].strip()):
            n += 1
        head, body = "\n".join(lines[:n]), "\n".join(lines[n:])
    thought = " ".join(dsl.THOUGHT_RE.sub("", head).split())
    return thought, body.strip()


def program_start(state: RunState) -> int:
    """Index in ``state.steps`` just after the controller step that wrote the current program."""
    for i in range(len(state.steps) - 1, -1, -1):
        s = state.steps[i]
        if s.role == "controller" and s.error is None:
            return i + 1
    return len(state.steps)


def program_refs(state: RunState) -> dict[str, Any]:
    """The variables of the current program that have a value (earlier programs' do not count:
    a rewrite starts from a clean slate, and its names may repeat)."""
    return step_refs(state.steps[program_start(state) :])


def program_pad(state: RunState) -> str:
    """What the controller and summarizer read: each program written, the observation of each line
    that ran, and why a program was abandoned."""
    return roles.written_ahead_pad(state, "Program", show_calls=False)


# --------------------------------------------------------------------------------------------
# nodes


def program_messages(rt: Runtime, state: RunState) -> list[Message]:
    """The controller's prompt: the language and the tools, then the task and the work so far
    (the tool-use data generator trains on exactly these messages)."""
    system = roles.program_system(rt)
    return [Message(role="system", content=system), roles.task_message(rt, state, program_pad)]


def make_program_controller(rt: Runtime) -> roles.Node:
    """Writes the program (or, after a failed line, a rewrite with the error shown) and runs it
    ahead (``Options.run_ahead``). One that does not read or fails gives way to the most likely
    beam-search program that reads, runs and fits the question; with none, to the first failed
    program that runs and fits once a select that found nothing a line needed is read without
    one of its words (``Options.relax``); then to the likeliest beam that merely runs. A
    program that ran ahead is done: its lines are recorded as executor steps with the
    controller's, and the decider reads ANSWER next."""

    def controller(state: RunState) -> dict[str, Any]:
        t0 = time.perf_counter()
        messages = program_messages(rt, state)
        # No stop at "Observation:": a program is written in one go and observes nothing.
        tokens = rt.options.max_new_tokens * 2
        names, media = rt.tools.names(), list(state.media)
        budget = state.task.max_steps - len(state.tool_steps)
        expect = Expectation.of(roles.question(state))
        grammar = roles.program_grammar(rt, state, "program", expect=expect)
        memo: dict[str, BaseModel | ToolError] = {}  # calls the programs tried share
        ahead = [0.0]  # seconds spent running programs: the executor steps' time, not the turn's

        tried: list[tuple[int, Attempt]] = []  # the programs that failed, by beam rank (0: greedy)
        # every program read (rank, it, its thought, whether it is a readable start of a reply
        # that did not read as a whole, :func:`readable_start`)
        written: list[tuple[int, dsl.Program, str, bool]] = []

        def attempt(text: str, rank: int = 0, want: Expectation = expect) -> Attempt:
            """A reply read, run ahead and held to the question (``want``: what it expects)."""
            thought, body = split_reply(text)
            try:
                program = dsl.parse_program(body, names, media=media)
            except dsl.DSLError as e:
                if want is expect and (start := readable_start(body, names, media)):
                    written.append((rank, start, thought, True))
                return Attempt(thought, None, None, str(e), failed=True)
            if want is expect:
                written.append((rank, program, thought, False))
            got = run(thought, program, want)
            if got.failed:
                tried.append((rank, got))
            return got

        def run(thought: str, program: dsl.Program, expect: Expectation) -> Attempt:
            """A program run ahead and held to ``expect``."""
            start = time.perf_counter()
            try:
                ran = run_ahead(rt, program, memo, budget)
            except RunAheadFailed as e:
                return Attempt(thought, program, e.steps, str(e), failed=True)
            finally:
                ahead[0] += time.perf_counter() - start
            if ran is None:  # not run ahead: nothing to hold it to
                return Attempt(thought, program, None, None, failed=False)
            steps, answer = ran
            problem, wrong_kind = expect.unmet(program, answer), not expect.kind_fits(answer)
            return Attempt(thought, program, steps, problem, failed=False, wrong_kind=wrong_kind)

        def best_beam(
            greedy: Attempt,
            msgs: list[Message],
            first: str,
            gram: ProgramGrammar | None,
            want: Expectation,
        ) -> tuple[Picked | None, Picked | None]:
            """The likeliest beam for ``msgs`` (``first``: its greedy reply, ``gram``: the
            grammar) that reads, runs and fits ``want``, and the fallback: when the greedy
            program did not read or run, the likeliest that reads and runs, and when it answers
            another kind than asked (a number for a yes/no question: surely wrong), the likeliest
            that runs and answers the kind asked."""
            runs: Picked | None = None
            for rank, cand in roles.beam_candidates(rt, msgs, tokens, first, gram):
                got = attempt(cand.text, rank, want)
                if got.failed:
                    continue
                if got.problem is None:
                    return (cand, got, rank), None
                better = greedy.failed or (greedy.wrong_kind and not got.wrong_kind)
                if better and runs is None:
                    runs = cand, got, rank
            return None, runs

        def most_steps(sup: Superlative) -> list[Step] | None:
            """``detect`` on the first image and the ``select`` that finds the superlative's
            object among the objects with its own values, run now through ``memo`` (so a
            program's own calls are the same results); None when any fails or there is no
            image."""
            image = next((m for m in media if m.startswith("image")), None)
            if image is None:
                return None
            calls = [ToolCall(tool="detect", name="objs", args={"image": image}),
                     ToolCall(tool="select", name="one",
                              args={"objects": "objs", **sup.select_args})]  # fmt: skip
            steps = run_calls(rt, calls, memo)
            return None if steps[-1].error else steps

        def found_by_most(sup: Superlative, compared: str | None) -> Named | None:
            """The values of the one object ``select``'s ``most`` keeps of the objects the
            detector found in the first image that have the superlative's own values (size,
            colour, material, shape: the words the question can name it by; not the attribute
            the question ``compared``, which a name never says), and whether no other object
            has them all; None when it keeps none, or one the detector read no value of."""
            steps = most_steps(sup)
            if steps is None:
                return None
            assert steps[0].result is not None and steps[1].result is not None
            objects, kept = steps[0].result["objects"], steps[1].result["objects"]
            said = [a for a in ("size", "color", "material", "shape") if a != compared]
            values = {a: kept[0].get(a) for a in said if kept}
            if not kept or not all(isinstance(v, str) for v in values.values()):
                return None
            alike = [o for o in objects if all(o.get(a) == v for a, v in values.items())]
            return values, len(alike) == 1

        def relaxed() -> Attempt | None:
            """A reading of a failed program (greedy first, then the beams) that, with one
            filter of a select that found nothing left out (:func:`relaxations`), runs and fits
            the question but for that word. Of one program's readings, the first whose select
            then keeps exactly one object: "the purple cube" presupposes one, so when the
            detector saw a purple cylinder and two gray cubes, the word to doubt is "cube"."""
            if not rt.options.relax:
                return None
            for rank, failed in tried:
                assert failed.program is not None and failed.steps is not None
                fitting: list[tuple[bool, int, Attempt, Loosened]] = []
                for program, lo in relaxations(failed.program, failed.steps, media):
                    got = run(failed.thought, program, expect.without(lo.word))
                    if got.problem is None:
                        fitting.append((kept(got, lo.index) != 1, len(fitting), got, lo))
                        if not fitting[-1][0]:
                            break  # one object left: no later reading comes before it
                if fitting:
                    _, _, got, lo = min(fitting)  # one object left first, then as written
                    which = f"beam {rank}" if rank else "the greedy program"
                    note = f"({which} found no {lo.sought}: read without {lo.word!r})"
                    return replace(got, thought=f"{got.thought} {note}".strip())
            return None

        def cut_short() -> Attempt | None:
            """The first program written for the question (greedy first, then the beams) whose
            lines up to one that answers, that line read as ANSWER (:func:`prefixes`), run and
            fit the question: "Are there more cylinders than cubes?" written as the right
            ``compare`` and then two lines that read it wrongly; of a reply that did not read,
            its readable start (:func:`readable_start`: "What do you see?" written as one
            ``caption`` line after another until the tokens ran out); first of all, the program
            with a comparison of two counts turned the way the question names them
            (:func:`counted_as_asked`). Only a program run ahead is known to fit."""
            for rank, program, thought, start in written:
                for short, how in short_readings(program, expect, media, whole=start):
                    got = run(thought, short, expect)
                    if got.steps is not None and not got.failed and got.problem is None:
                        which = f"beam {rank}" if rank else "the greedy program"
                        note = f"({which} read {how}: as written it does not fit)"
                        return replace(got, thought=f"{thought} {note}".strip())
            return None

        def reworded() -> tuple[Generation, Attempt] | None:
            """When no program written for the question's own words fits it: the likeliest
            program (greedy, then the beams) written for the question reworded in the words of
            the templates (:func:`~agentkit.planners.expect.canonical_question`: "How many red
            things?" -> "How many red things are there?") that reads, runs and fits that, the
            rewording noted in its thought; None when the question is not reworded or none fits
            (``Options.reword``). A question that says a value of its object ("Is the purple
            cube red?", :func:`~agentkit.planners.expect.attribute_check`) is reworded as the
            question for that attribute, and the program for it answers with the value
            selected on the object it queried (:func:`verifying`). A superlative's object
            (:func:`~agentkit.planners.expect.superlative`) is named plainly ("the leftmost
            cube": "the cube") or by the values of the object ``select``'s ``most`` finds ("the
            small red metal cube", :func:`found_by_most`), the plain name first when it has
            values of its own; the program for that reading finds it by ``most``
            (:func:`with_most`). Several superlatives ("Are the leftmost and the rightmost
            object the same color?") are each named by their values."""
            if not rt.options.reword:
                return None
            asked = roles.question(state)
            sups = superlatives(asked)
            if not sups:
                return read_as(asked)
            compared = compared_attribute(sups[-1].question)
            names = [found_by_most(sup, compared) for sup in sups]
            words = [None if n is None else "the " + " ".join(n[0].values()) for n in names]
            if len(sups) > 1:  # "Are the leftmost and the rightmost object the same color?"
                if None in words:
                    return None
                text = sups[-1].question
                for sup, said in zip(sups, words, strict=True):
                    text = text.replace(sup.named, said or "", 1)
                return read_as(text, sups, names)
            (sup,), (named,), (said,) = sups, names, words
            readings: list[tuple[str, list[Named | None]]] = [(sup.question, [None])]
            if said:
                # a small core reads no relation to "the thing", but does to "the small red
                # metal cube"
                readings.insert(
                    not sup.filters, (sup.question.replace(sup.named, said, 1), [named])
                )
            for text, values in readings:
                if got := read_as(text, sups, values):
                    return got
            if (steps := most_steps(sup)) and not (steps[-1].result or {}).get("objects"):
                # no such object ("the third sphere from the left" of two): the program that
                # looks for it, failing where it finds none, is the faithful answer; the
                # question's own words would be read without the superlative
                return read_as(sup.question, sups, [None], failing=True)
            return None

        def read_as(
            asked: str,
            sups: list[Superlative] | None = None,
            named: list[Named | None] | None = None,
            failing: bool = False,
        ) -> tuple[Generation, Attempt] | None:
            """:func:`reworded`'s program for one reading ``asked`` of the question: with
            ``sups``, the superlatives it names plainly (``named``: or by these values), each
            object then found by ``most`` (or, named by values no other object has, by them);
            ``failing``, that program even when it fails as it runs."""
            verify = attribute_check(asked)
            canon = verify[0] if verify else canonical_question(asked) or (sups and asked)
            if not canon:
                return None
            view = state.model_copy(update={"question": canon})
            msgs, want = program_messages(rt, view), Expectation.of(canon)
            gram = roles.program_grammar(rt, view, "program", expect=want)
            first = generate(rt.models.controller, msgs, max_new_tokens=tokens, constraint=gram)
            got = attempt(first.text, want=want)
            if got.problem is not None:
                fits, _ = best_beam(got, msgs, first.text, gram, want)
                if fits is None:
                    return None
                first, got, _ = fits
            assert got.program is not None
            program: dsl.Program | None = got.program
            how = []
            for sup, name in zip(sups or [], named or [], strict=True):
                assert program is not None
                values, alone = name or (None, False)
                found = with_most(program, sup, media, values)
                # else no call takes it alone ("Are it and the sphere the same color?" as a same
                # hop): its values, when no other object has them, still find it
                how.append(f"the {sup.word} one " + (
                    "found by select's most" if found else "named by its values"))  # fmt: skip
                program = found or (program if alone else None)
                if program is None:
                    return None
            if verify is not None and program is not None:
                _, attribute, value = verify
                program = verifying(program, attribute, value, media)
            if program is None:
                return None
            if program is not got.program:
                # held to the question as asked; a superlative's to its plain wording, whose
                # words the program's filters say ("the cube on the far left": no "left" filter)
                plain = Expectation.of(sups[-1].question) if sups else expect
                got = run(got.thought, program, plain)
                if got.problem is not None and not (failing and got.failed):
                    return None
            note = (
                f"(read as {canon!r}, {', '.join(how)})"
                if how
                else f"(read as {canon!r}: no program for the question's words fits them)"
            )
            return first, replace(got, thought=f"{got.thought} {note}".strip())

        # A superlative ("the leftmost cube") is no word the core knows: the program for the
        # question with its object named plainly or by its values, found by select's most. Its
        # readings are tried once, first; none fitting, the question's own words are next.
        superlative = bool(superlatives(roles.question(state)))
        ranked = reworded() if superlative else None
        if ranked is not None:
            gen, chosen = ranked
        else:
            gen = generate(rt.models.controller, messages, max_new_tokens=tokens,
                           constraint=grammar)  # fmt: skip
            chosen = greedy = attempt(gen.text)
        if ranked is None and greedy.problem is not None:
            # No rewrite turn yet: a small core's rewrite after an error message is rarely
            # better than its second guess at the same prompt.
            fits, runs = best_beam(greedy, messages, gen.text, grammar, expect)
            if fits is None and (loose := relaxed()):
                chosen = loose
            elif fits is None and (short := cut_short()):
                chosen = short
            elif fits is None and not superlative and (again := reworded()):
                gen, chosen = again
            elif picked := fits or runs:
                what = (
                    "did not parse" if greedy.program is None
                    else "failed when run ahead" if greedy.failed
                    else "does not fit the question"
                )  # fmt: skip
                gen, chosen, rank = picked
                note = f"(beam {rank}: the greedy program {what}: {greedy.problem})"
                chosen = replace(chosen, thought=f"{chosen.thought} {note}".strip())
            elif greedy.program is None:
                step = roles.model_step(
                    "controller",
                    gen,
                    thought=greedy.thought,
                    error=f"Could not read your program: {greedy.problem}. Rewrite it.",
                    seconds=time.perf_counter() - t0 - ahead[0],
                )
                return {"steps": [roles.record(rt, step)], "plan": [], "cursor": 0}
            # else no beam does better: the greedy program stands as it ran. A failed line or
            # an ANSWER that is none goes to the decider (a rewrite, the error shown); an
            # answer that does not fit the question is still the answer.
        program, ran = chosen.program, chosen.steps
        assert program is not None
        step = roles.model_step(
            "controller",
            gen,
            thought=chosen.thought,
            observation=program.source,
            seconds=time.perf_counter() - t0 - ahead[0],
        )
        return {
            "steps": [roles.record(rt, s) for s in [step, *(ran or [])]],
            "plan": program.calls,
            "cursor": len(ran) if ran is not None else 0,
            "answer_expr": program.answer,
            "attempts": state.attempts + 1,
        }

    return controller


def relaxations(
    program: dsl.Program, steps: list[Step], media: list[str]
) -> Iterator[tuple[dsl.Program, Loosened]]:
    """Readings of a program that stopped because a ``select`` found nothing the failed line
    (the last of ``steps``, the lines it ran) needed (:func:`~agentkit.planners.relax.loosened`):
    ``(program, the select loosened: its line, what it looked for, the word left out)``."""
    for lo in loosened(steps):
        calls = program.calls
        loose = [*calls[: lo.index], calls[lo.index].model_copy(update={"args": lo.args}),
                 *calls[lo.index + 1 :]]  # fmt: skip
        yield _program(loose, program.answer, media), lo


def readable_start(body: str, names: list[str], media: list[str]) -> dsl.Program | None:
    """The longest run of a program text's first lines, all but its last line at least, that
    reads once its last line's name is read as ANSWER (a program cut off by the token limit, or
    spoilt by a line that does not read); None when no such run reads."""
    lines = dsl.strip_fences(body).split("\n")
    for end in range(len(lines) - 1, 0, -1):
        target = _TARGET_RE.match(lines[end - 1])
        if target is None or target[1] == dsl.ANSWER:
            continue
        text = "\n".join([*lines[:end], f"{dsl.ANSWER} = {target[1]}"])
        try:
            return dsl.parse_program(text, names, media=media)
        except dsl.DSLError:
            continue
    return None


def short_readings(
    program: dsl.Program, expect: Expectation, media: list[str], *, whole: bool
) -> Iterator[tuple[dsl.Program, str]]:
    """The readings of a program that does not fit its question, in the order they are tried:
    the program with its comparisons turned the way the question names them
    (:func:`counted_as_asked`), whole and then cut after each line (:func:`prefixes`); then the
    program as written, cut so (and first whole, when ``whole``: the readable start of a reply
    that did not read); each with how it reads the program."""
    turned = counted_as_asked(program, expect, media)
    if turned is not None:
        yield turned, "with its comparison turned as the question names it"
        for short in prefixes(turned, media):
            how = f"with its comparison turned, up to its line {len(short.calls)}"
            yield short, how
    if whole:
        yield program, f"up to its line {len(program.calls)}"
    for short in prefixes(program, media):
        yield short, f"up to its line {len(short.calls)}"


def counted_as_asked(
    program: dsl.Program, expect: Expectation, media: list[str]
) -> dsl.Program | None:
    """``program`` with each ``compare`` of ``more`` or ``fewer`` that counts the question's
    objects the other way round (:meth:`~agentkit.planners.expect.Expectation.swapped`) turned:
    ``compare(a=spheres, b=cubes, relation="more")`` for "Are there more cubes than spheres?"
    becomes ``compare(a=cubes, b=spheres, ...)``. None when none is turned."""
    names = {c.name for c in program.calls if c.name}
    made = {c.name: call_values(c, names) for c in program.calls if c.name}
    calls = [
        c.model_copy(update={"args": {**c.args, "a": c.args.get("b"), "b": c.args.get("a")}})
        if expect.swapped(c, made) else c
        for c in program.calls
    ]  # fmt: skip
    return None if calls == program.calls else _program(calls, program.answer, media)


def prefixes(program: dsl.Program, media: list[str]) -> Iterator[dsl.Program]:
    """``program`` cut after each of its lines but the last, longest first, that line read as
    ANSWER."""
    for end in range(len(program.calls) - 1, 0, -1):
        calls, name = program.calls[:end], program.calls[end - 1].name
        if name and program.answer != {"ref": name}:
            yield _program(calls, {"ref": name}, media)


def verifying(
    program: dsl.Program, attribute: str, value: str, media: list[str]
) -> dsl.Program | None:
    """``program``, which answers with one object's ``attribute`` (``ANSWER = query(objects=X,
    attribute=...)``), made to answer whether that object has ``value``: the query becomes
    ``select(objects=X, <attribute>=value)`` and ANSWER whether it kept any. None when its
    ANSWER is no such query."""
    at = next((i for i, c in enumerate(program.calls) if c.name == program.answer.get("ref")), None)
    query = program.calls[at] if at is not None else None
    if query is None or query.tool != "query" or query.args.get("attribute") != attribute:
        return None
    names = {c.name or "" for c in program.calls}
    ones, found = _fresh(f"{value}_ones", names), _fresh("found", names)
    objects = query.args.get("objects")
    calls = [
        *program.calls[:at],
        ToolCall(tool="select", name=ones, args={"objects": objects, attribute: value}),
        ToolCall(tool="exist", name=found, args={"objects": ones}),
    ]
    return _program(calls, {"ref": found}, media)


#: The arguments that take one object (a query's, a relation's or a same's reference): where a
#: superlative's object is used.
_ONE_OBJECT = {("query", "objects"), ("relate", "reference"), ("same", "reference")}


def with_most(
    program: dsl.Program,
    sup: Superlative,
    media: list[str],
    named: dict[str, str] | None = None,
) -> dsl.Program | None:
    """``program``, written for :attr:`Superlative.question` ("What color is the cube?"), made
    to take the superlative's object ("the leftmost cube"): the call that uses one object
    (:data:`_ONE_OBJECT`) and gets the object's list, the chain of selects that made that list
    read back to where it started (``detect``'s objects, a relation's), gets instead
    ``select(objects=<that start>, <the object's own values>, most=...)``; selects nothing reads
    any more are dropped. Of several such calls, the one whose selects filter by the object's
    values, or by ``named`` (the values the plain question named the object by, when it was
    written with them); for a plain "the object", where a small core may filter by a shape no
    word said, the only one. None when no call takes one object, or none is told apart."""
    calls, at = program.calls, {c.name: i for i, c in enumerate(program.calls) if c.name}
    uses = []  # (line, argument, where its list started, what the selects filtered by)
    for i, call in enumerate(calls):
        arg = next((a for t, a in _ONE_OBJECT if t == call.tool), None)
        source = call.args.get(arg) if arg else None
        if not isinstance(source, str):
            continue
        filters: dict[str, Any] = {}
        if source in at and "most" in calls[at[source]].args:
            continue  # another superlative's object, found already
        while source in at and calls[at[source]].tool == "select":
            select = calls[at[source]]
            filters.update((k, v) for k, v in described(select.args).items() if k != "objects")
            source = select.args.get("objects")
        uses.append((i, arg, source, {k: normalize_word(str(v)) for k, v in filters.items()}))
    fitting = [u for u in uses if u[3] in (sup.filters, named)]
    if not fitting and named is None and len(uses) == 1:
        fitting = uses  # "the object", which a small core may have filtered by any shape
    if not fitting or not isinstance(fitting[0][2], str):
        return None
    line, arg, source, _ = fitting[0]
    name = _fresh(sup.word.replace(" ", "_"), {c.name or "" for c in calls})
    most = ToolCall(tool="select", name=name, args={"objects": source, **sup.select_args})
    user = calls[line].model_copy(update={"args": {**calls[line].args, arg: name}})
    out = [*calls[:line], most, user, *calls[line + 1 :]]
    while unread := [c for c in unused_calls(_program(out, program.answer, media))
                     if c.tool == "select"]:  # fmt: skip
        out = [c for c in out if c not in unread]
    return _program(out, program.answer, media)


def _program(calls: list[ToolCall], answer: dict[str, Any], media: list[str]) -> dsl.Program:
    """A program made of ``calls`` and ``answer``, its text written out."""
    return dsl.Program(calls=calls, answer=answer, source=dsl.format_program(calls, answer, media))


def _fresh(name: str, taken: set[str]) -> str:
    """``name``, or ``name2``, ``name3``, ... : the first not in ``taken``."""
    return next(
        n for i in range(1, len(taken) + 2) if (n := f"{name}{i if i > 1 else ''}") not in taken
    )


def kept(attempt: Attempt, index: int) -> int | None:
    """How many objects line ``index`` of a program run ahead kept (None: not known)."""
    steps = attempt.steps or []
    result = steps[index].result if index < len(steps) else None
    count = result.get("count") if isinstance(result, dict) else None
    return count if isinstance(count, int) else None


Picked = tuple[Generation, "Attempt", int]  # a beam's reply, its attempt and its rank
#: An object named by its values ("small red metal cube"), and whether no other object has them.
Named = tuple[dict[str, str], bool]


@dataclass(frozen=True)
class Attempt:
    """A reply tried: its thought; its program (None: it did not parse); the steps it ran ahead
    (None: not run ahead); what is wrong with it (None: nothing); whether that is a failure
    (did not parse, a line failed, no answer) rather than a misfit to the question, and whether
    its answer is of another kind than the question asks for."""

    thought: str
    program: dsl.Program | None
    steps: list[Step] | None
    problem: str | None
    failed: bool
    wrong_kind: bool = False


class RunAheadFailed(dsl.DSLError):
    """A program that failed when run ahead, with the executor ``steps`` it ran (a failed line
    last, or every line when the answer is what failed)."""

    def __init__(self, message: str, line: int, steps: list[Step]):
        super().__init__(message, line)
        self.steps = steps


def run_ahead(
    rt: Runtime,
    program: dsl.Program,
    memo: dict[str, BaseModel | ToolError],
    budget: int,
) -> tuple[list[Step], str] | None:
    """Run ``program`` on the tools now, in the controller's turn: its executor steps and its
    short answer, or None
    when it is not run (``Options.run_ahead`` off, more lines than the ``budget`` of tool calls
    left, or a tool that is not ``pure``: one that acts must act once, as a step). Raises
    :class:`RunAheadFailed` for a line that fails or an ANSWER that is no answer. ``memo``
    shares identical calls (and failures) between the programs tried."""
    calls = program.calls
    if not rt.options.run_ahead or len(calls) > budget:
        return None
    if not all(rt.tools[c.tool].pure for c in calls):
        return None
    steps = run_calls(rt, calls, memo)
    if steps and (failed := steps[-1]).error:
        call = calls[len(steps) - 1]
        raise RunAheadFailed(
            f"{call.name} = {call.tool}(...) failed: {failed.error}", len(steps), steps
        )
    try:
        return steps, dsl.read_answer(program.answer, steps)
    except dsl.DSLError as e:
        raise RunAheadFailed(str(e), 0, steps) from None


def run_calls(
    rt: Runtime, calls: list[ToolCall], memo: dict[str, BaseModel | ToolError]
) -> list[Step]:
    """The executor steps of ``calls`` run now, in order, each passed the earlier results by
    name, up to and with the first that fails; ``memo`` shares identical calls (and failures)
    between the programs tried."""
    steps: list[Step] = []
    ctx = rt.tool_context()
    for call in calls:
        steps.append(execute(call, rt.tools, ctx, rt.options.tool_timeout, step_refs(steps), memo))
        if steps[-1].error:
            break
    return steps


def read_answer(state: RunState) -> str:
    """The program's ANSWER as the short answer; :class:`~agentkit.planners.dsl.DSLError` when it
    is not one (a list, a whole detection result, nothing)."""
    return dsl.read_answer(state.answer_expr or {}, state.steps[program_start(state) :])


def make_program_decider(rt: Runtime) -> roles.Node:
    """Stops on the budget or too many unreadable programs; sends a failed line back to the
    controller (while rewrites are left); reads ANSWER once every line has run."""

    def rewrite_or_stop(state: RunState, why: str, stop: str) -> dict[str, Any]:
        # With no rewrite left, the program's failure is why the run stops, budget or not.
        if state.attempts > rt.options.rewrites():
            note = Step(role="decider", error=f"{why}; no rewrite left.")
            return {"steps": [roles.record(rt, note)], "stop_reason": stop}
        if budget := roles.budget_step(rt, state):
            return {"steps": [budget], "stop_reason": "budget"}
        note = Step(role="decider", error=f"{why}; rewrite the program.")
        return {"steps": [roles.record(rt, note)], "plan": [], "cursor": 0}

    def decider(state: RunState) -> dict[str, Any]:
        if state.stop_reason or state.draft is not None:
            return {}
        if roles.last_controller_failed(state):
            stop = roles.parse_error_step(rt, state)
            return {"steps": [stop], "stop_reason": "parse_errors"} if stop else {}
        last = state.steps[-1]
        if last.role == "executor" and last.error:
            call = state.plan[state.cursor - 1]
            why = f"Line {state.cursor} ({call.name} = {call.tool}(...)) failed"
            return rewrite_or_stop(state, why, "program_failed")
        if state.cursor >= len(state.plan):
            try:
                answer = read_answer(state)
            except dsl.DSLError as e:
                return rewrite_or_stop(state, f"The program ran but {e}", "bad_answer")
            note = Step(role="decider", thought="the program ran", observation=f"ANSWER = {answer}")
            return {"steps": [roles.record(rt, note)], "draft": answer}
        if stop := roles.budget_step(rt, state):
            return {"steps": [stop], "stop_reason": "budget"}
        return {}

    return decider


def build_program(rt: Runtime, *, checkpointer: BaseCheckpointSaver | None = None):
    return roles.build_written_ahead(
        rt,
        controller=make_program_controller(rt),
        executor=roles.make_plan_executor(rt, refs=program_refs),
        decider=make_program_decider(rt),
        pad=program_pad,
        checkpointer=checkpointer,
    )
