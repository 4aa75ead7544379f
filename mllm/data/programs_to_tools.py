"""CLEVR functional programs → tool calls: a ReAct trajectory and a program in the planner DSL.

A question's ground-truth program (:mod:`agentkit.mllm.worlds.programs`) becomes a
:class:`ToolPlan`: ``detect`` on the image, then the scene-reasoning tools, each call passing
earlier results by name. Node by node:

===============================  =============================================================
program nodes                    tool call
===============================  =============================================================
``scene``                        ``detect(image=image_0)`` (once)
``filter_*`` (a chain)           ``select(objects=X, color=..., shape=...)``
``unique``                       nothing: the consumer (query, relate, same) checks "exactly one"
``most[w]`` (after filters)      ``select(objects=X, color=..., most=w)``: the one furthest w
``relate[r]``                    ``relate(objects=detect_0, reference=X, relation=r)``
``same_<attr>``                  ``same(objects=detect_0, reference=X, attribute=attr)``
``union`` / ``intersect`` /      ``combine(a=X, b=Y, op=union|intersection|difference)``
``difference``
``count``                        ``count(objects=X, where={...})`` (a last filter is fused)
``exist``                        ``exist(objects=X)``
``query_<attr>``                 ``query(objects=X, attribute=attr)``
``count, count, greater_than``   ``compare(a=X, b=Y, relation=more)`` (``less_than``: fewer,
                                 ``equal_integer``: same)
``count(A), count(intersect(A,   ``combine(a=A, b=V, op=difference)``, then
V)), equal_integer`` ("every")   ``compare(a=rest, b=0, relation=same)``: none of A lacks V
``query_a(X), query_a(Y),``      ``same(objects=Y, reference=X, attribute=a)``, then
``equal_<a>``                    ``exist`` of it: does the one object in Y share X's value
===============================  =============================================================

Identical calls are made once (two ``scene`` nodes share one ``detect``). :func:`run_plan`
executes a plan with the real executor (:func:`agentkit.tools.base.execute`), so names
(``select_0``) and observations are exactly what a run records; an earlier identical call in the
same conversation is reused instead of repeated (context samples). :func:`to_program` writes the
same calls in the ``program`` planner's DSL, and :func:`run_program` parses that text with
:func:`agentkit.planners.dsl.parse_program` and runs it line by line.

The answer always comes from the tools. ``relate`` judges left/right/front/behind from the image
(see :mod:`agentkit.tools.relate`), which can differ from CLEVR's 3D rule on a few pairs; the data
generator compares the tools' answer with the question's and drops the question when they
differ, so it never writes a wrong answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import AgentkitError
from agentkit.mllm.worlds.clevr import universal_parts
from agentkit.mllm.worlds.programs import Program, ProgramError
from agentkit.planners import dsl
from agentkit.state import Step, ToolCall
from agentkit.tools.base import ToolContext, ToolRegistry, execute, step_refs
from agentkit.tools.select import MOST_NAMES, ORDINALS

#: The tools a plan may call.
PLAN_TOOLS = ("detect", "select", "relate", "same", "combine", "count", "exist", "query", "compare")
#: set nodes -> combine's op, what the join keeps (its thought) and the variable it makes
_JOINS = {"union": ("union", "in either", "either"),
          "intersect": ("intersection", "in both", "both"),
          "difference": ("difference", "of {a} that are not in {b}", "rest")}  # fmt: skip
_COMPARE = {"greater_than": "more", "less_than": "fewer", "equal_integer": "same"}
_RELATION_PHRASE = {"left": "left of", "right": "right of", "front": "in front of",
                    "behind": "behind"}  # fmt: skip
_ATTR_ORDER = ("size", "color", "material", "shape")
_PLURAL = {"cube": "cubes", "sphere": "spheres", "cylinder": "cylinders"}


@dataclass(frozen=True)
class Ref:
    """An argument that passes the result of plan step ``index``."""

    index: int


@dataclass
class PlanStep:
    """One call with symbolic references; ``thought`` has ``{arg}`` slots for the names passed."""

    tool: str
    args: dict[str, Any]
    thought: str
    var: str  # the DSL variable


@dataclass
class ToolPlan:
    steps: list[PlanStep] = field(default_factory=list)

    def tools(self) -> list[str]:
        return [s.tool for s in self.steps]


class ConversionError(AgentkitError):
    """A program uses a function this converter does not map (not one of CLEVR's)."""


# --------------------------------------------------------------------------------------------
# program -> plan


def _spec_words(spec: dict[str, str]) -> str:
    words = [spec[a] for a in _ATTR_ORDER[:3] if a in spec]
    words.append(_PLURAL[spec["shape"]] if "shape" in spec else "things")
    return " ".join(words)


def _select_var(spec: dict[str, str]) -> str:
    """A variable for a selection: "red_cubes", "small_metal_things". Never an attribute word:
    a variable named ``small`` would turn a later ``size="small"`` into that variable's value
    (names are resolved by exact match)."""
    words = [spec[a] for a in _ATTR_ORDER[:3] if a in spec]
    return "_".join([*words, _PLURAL[spec["shape"]] if "shape" in spec else "things"])


class _Converter:
    def __init__(self, program: Program, image: str) -> None:
        self.program = program
        self.image = image
        self.plan = ToolPlan()
        self.memo: dict[int, int] = {}
        self.calls: dict[str, int] = {}
        self.names: set[str] = set()

    def fn(self, k: int) -> str:
        return str(self.program[k]["function"])

    def inputs(self, k: int) -> list[int]:
        return list(self.program[k].get("inputs", []))

    def value(self, k: int) -> str:
        vals = self.program[k].get("value_inputs", [])
        if len(vals) != 1:
            raise ConversionError(f"node {k} ({self.fn(k)}) needs one value input, got {vals}")
        return str(vals[0])

    def _var(self, base: str) -> str:
        name, n = base, 1
        while name in self.names or name in PLAN_TOOLS or name == dsl.ANSWER:
            n += 1
            name = f"{base}{n}"
        self.names.add(name)
        return name

    def emit(self, tool: str, args: dict[str, Any], thought: str, var: str) -> int:
        sig = json.dumps(
            {
                "tool": tool,
                "args": {k: v.index if isinstance(v, Ref) else v for k, v in args.items()},
            },
            sort_keys=True,
        )
        if sig in self.calls:
            return self.calls[sig]
        self.plan.steps.append(PlanStep(tool, args, thought, self._var(var)))
        self.calls[sig] = len(self.plan.steps) - 1
        return self.calls[sig]

    def detect(self) -> int:
        return self.emit(
            "detect", {"image": self.image}, "First find every object in the image.", "objs"
        )

    def chain(self, k: int) -> tuple[int, dict[str, str]]:
        """The node a run of filters starts from, and the attributes they require."""
        spec: dict[str, str] = {}
        while self.fn(k).startswith("filter_"):
            attr = self.fn(k).removeprefix("filter_")
            spec.setdefault(attr, self.value(k))
            k = self.inputs(k)[0]
        return k, spec

    def objects(self, k: int) -> int:
        """The plan step holding node ``k``'s set of objects (emitting the calls it needs)."""
        if k in self.memo:
            return self.memo[k]
        fn = self.fn(k)
        if fn == "scene":
            out = self.detect()
        elif fn.startswith("filter_"):
            base, spec = self.chain(k)
            src = self.objects(base)
            args: dict[str, Any] = {"objects": Ref(src)}
            args.update({a: spec[a] for a in _ATTR_ORDER if a in spec})
            out = self.emit(
                "select",
                args,
                f"Narrow {{objects}} to the {_spec_words(spec)}.",
                _select_var(spec),
            )
        elif fn == "unique":
            out = self.objects(self.inputs(k)[0])
        elif fn == "most":
            way, *ranked = [str(v) for v in self.program[k].get("value_inputs", [])]
            rank = int(ranked[0]) if ranked else 1
            base, spec = self.chain(self.inputs(k)[0])
            args = {"objects": Ref(self.objects(base)), **{a: spec[a] for a in _ATTR_ORDER if a in spec}}
            name = " ".join(w for w in (ORDINALS[rank], MOST_NAMES[way]) if w)
            out = self.emit(
                "select",
                {**args, "most": way, **({"rank": rank} if rank > 1 else {})},
                f"Keep the {name} of the {_spec_words(spec)}.",
                name.replace(" ", "_"),
            )
        elif fn == "relate":
            rel = self.value(k)
            ref = self.objects(self.inputs(k)[0])
            out = self.emit(
                "relate",
                {"objects": Ref(self.detect()), "reference": Ref(ref), "relation": rel},
                f"Find the objects {_RELATION_PHRASE[rel]} the one in {{reference}}.",
                f"{rel}_objs",
            )
        elif fn.startswith("same_"):
            attr = fn.removeprefix("same_")
            ref = self.objects(self.inputs(k)[0])
            out = self.emit(
                "same",
                {"objects": Ref(self.detect()), "reference": Ref(ref), "attribute": attr},
                f"Find the other objects with the same {attr} as the one in {{reference}}.",
                f"same_{attr}",
            )
        elif fn in _JOINS:
            out = self.join(fn, *(self.objects(i) for i in self.inputs(k)))
        else:
            raise ConversionError(f"node {k}: {fn!r} does not give a set of objects")
        self.memo[k] = out
        return out

    def join(self, fn: str, a: int, b: int) -> int:
        """``combine`` of the sets of plan steps ``a`` and ``b`` as set node ``fn`` joins them."""
        op, keeping, var = _JOINS[fn]
        return self.emit(
            "combine",
            {"a": Ref(a), "b": Ref(b), "op": op},
            f"Join {{a}} and {{b}}, keeping the objects {keeping}.",
            var,
        )

    def none_without(self, whole: int, value: int) -> None:
        """"Are all the A V?" as "are none of the A without V?": A without the V things
        (``combine``'s difference, as "How many A are not V?" takes them away), compared with
        0. Written so, "all" shares the negations' join, and its program does not look like a
        comparison of two counts ("Are there as many A as B?": ``compare(a=A, b=B)``)."""
        rest = self.join("difference", self.objects(whole), self.objects(value))
        self.emit(
            "compare",
            {"a": Ref(rest), "b": 0, "relation": "same"},
            "All of them are so when none is left: is {a} empty?",
            "found",
        )

    def answer(self) -> ToolPlan:
        k = len(self.program) - 1
        fn = self.fn(k)
        inputs = self.inputs(k)
        if not inputs:
            raise ConversionError(f"the last node ({fn}) has no input")
        j, rest = inputs[0], inputs[1:]
        if fn == "count":
            base, spec = self.chain(j)
            where = {a: spec[a] for a in _ATTR_ORDER if a in spec}
            src = self.objects(base)
            what = f"the {_spec_words(spec)} in {{objects}}" if where else "{objects}"
            args: dict[str, Any] = {"objects": Ref(src)}
            if where:
                args["where"] = where
            self.emit("count", args, f"Count {what}.", "n")
        elif fn == "exist":
            self.emit(
                "exist",
                {"objects": Ref(self.objects(j))},
                "Check whether {objects} holds any object.",
                "found",
            )
        elif fn.startswith("query_"):
            attr = fn.removeprefix("query_")
            self.emit(
                "query",
                {"objects": Ref(self.objects(j)), "attribute": attr},
                f"Ask the {attr} of the one object in {{objects}}.",
                "value",
            )
        elif fn in _COMPARE:
            counts = [j, *rest]
            if len(counts) != 2 or any(self.fn(c) != "count" for c in counts):
                raise ConversionError(f"{fn} must compare two count nodes")
            if fn == "equal_integer" and (parts := universal_parts(self.program)) is not None:
                self.none_without(*parts)
                return self.plan
            a, b = (self.objects(self.inputs(c)[0]) for c in counts)
            rel = _COMPARE[fn]
            ask = {"more": "more", "fewer": "fewer", "same": "the same number of"}[rel]
            self.emit(
                "compare",
                {"a": Ref(a), "b": Ref(b), "relation": rel},
                f"Compare how many objects {{a}} and {{b}} hold: does {{a}} have {ask} than {{b}}?"
                if rel != "same"
                else "Compare how many objects {a} and {b} hold: is it the same number?",
                "answer",
            )
        elif fn.startswith("equal_"):
            attr = fn.removeprefix("equal_")
            queries = [j, *rest]
            if len(queries) != 2 or any(self.fn(q) != f"query_{attr}" for q in queries):
                raise ConversionError(f"{fn} must compare two query_{attr} nodes")
            a, b = (self.objects(self.inputs(q)[0]) for q in queries)
            same = self.emit(
                "same",
                {"objects": Ref(b), "reference": Ref(a), "attribute": attr},
                f"Keep the objects in {{objects}} with the same {attr} as the one in {{reference}}.",
                f"same_{attr}",
            )
            self.emit(
                "exist",
                {"objects": Ref(same)},
                "Check whether {objects} holds any object: then the two share it.",
                "found",
            )
        else:
            raise ConversionError(
                f"a program must end in count, exist, query or a comparison; got {fn!r}"
            )
        return self.plan


def to_plan(program: Program, *, image: str = "image_0") -> ToolPlan:
    """The tool calls that answer ``program`` (see the module docstring for the mapping)."""
    if not program:
        raise ConversionError("empty program")
    try:
        return _Converter(program, image).answer()
    except (KeyError, IndexError, TypeError) as e:
        raise ConversionError(f"malformed program: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------
# running a plan: ReAct steps


@dataclass
class Trajectory:
    """Steps of one question: controller then executor step per call, and the answer."""

    steps: list[Step]  # controller and executor steps, in order (reused calls add none)
    answer: str | None  # the tools' answer (None when a call failed)
    answer_ref: str | None  # the name whose observation holds the answer
    error: str | None = None

    @property
    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(tool=s.tool, args=s.args or {}, thought=s.thought)
            for s in self.steps
            if s.role == "controller" and s.tool
        ]

    def final_thought(self) -> str:
        return f"{self.answer_ref} answers the question."


def _canonical(tool: str, args: dict[str, Any]) -> str:
    return json.dumps({"tool": tool, "args": args}, sort_keys=True)


def run_plan(
    plan: ToolPlan,
    registry: ToolRegistry,
    ctx: ToolContext,
    history: Sequence[Step] = (),
) -> Trajectory:
    """Execute ``plan`` after the steps of ``history`` (earlier questions of the conversation).

    Each call becomes a controller step (thought, tool, args with names) and the executor's step,
    made by :func:`agentkit.tools.base.execute` with the names known so far, exactly as a run
    records them. A call identical to an earlier executed one (same tool, same arguments after
    naming) is not repeated: its earlier name is reused.
    """
    steps: list[Step] = []
    done: dict[str, str] = {}
    for s in history:
        if s.role == "executor" and s.ref and s.result is not None and s.tool:
            done.setdefault(_canonical(s.tool, s.args or {}), s.ref)
    names: dict[int, str] = {}
    for i, ps in enumerate(plan.steps):
        args = {k: names[v.index] if isinstance(v, Ref) else v for k, v in ps.args.items()}
        sig = _canonical(ps.tool, args)
        if sig in done:
            names[i] = done[sig]
            continue
        thought = ps.thought.format(**{k: v for k, v in args.items() if isinstance(v, str)})
        call = ToolCall(tool=ps.tool, args=args, thought=thought)
        refs = step_refs([*history, *steps])
        ctrl = Step(role="controller", thought=thought, tool=ps.tool, args=args)
        ex = execute(call, registry, ctx, refs=refs)
        ex.started = ctrl.started = 0.0  # deterministic records: times mean nothing here
        ex.seconds = 0.0
        steps += [ctrl, ex]
        if ex.error:
            return Trajectory(steps, None, None, error=ex.error)
        names[i] = ex.ref or ""
        done[sig] = names[i]
    last = names[len(plan.steps) - 1]
    result = next(
        s.result for s in reversed([*history, *steps]) if s.ref == last and s.result is not None
    )
    try:
        answer = dsl.format_answer(dsl.answer_value(result or {}))
    except dsl.DSLError as e:
        return Trajectory(steps, None, last, error=str(e))
    return Trajectory(steps, answer, last)


# --------------------------------------------------------------------------------------------
# the DSL program


def _named(value: Any, plan: ToolPlan) -> Any:
    """``value`` with each :class:`Ref` replaced by the variable of the step it passes."""
    if isinstance(value, Ref):
        return plan.steps[value.index].var
    if isinstance(value, list):
        return [_named(v, plan) for v in value]
    if isinstance(value, dict):
        return {k: _named(v, plan) for k, v in value.items()}
    return value


def to_program(plan: ToolPlan, *, media: Sequence[str] = ("image_0",)) -> str:
    """The plan as DSL text: one ``var = tool(key=value)`` line per call, then ``ANSWER = var``.
    Media ids and variables are written bare (``image=image_0``), everything else as a DSL
    value."""
    calls = [ToolCall(tool=s.tool, args=_named(s.args, plan), name=s.var) for s in plan.steps]
    return dsl.format_program(calls, {"ref": plan.steps[-1].var}, media)


def program_thought(plan: ToolPlan) -> str:
    """One line saying what the program does (the controller's Thought before it)."""
    seen: list[str] = []
    for t in plan.tools()[1:]:
        if t not in seen:
            seen.append(t)
    return f"Detect the objects, then use {' and '.join(seen)}; the last line holds the answer."


def run_program(
    text: str, registry: ToolRegistry, ctx: ToolContext, *, media: Sequence[str] = ("image_0",)
) -> tuple[list[Step], str]:
    """Parse ``text`` as the planner does and run it line by line; returns (steps, answer).
    Raises :class:`~agentkit.planners.dsl.DSLError` or :class:`ProgramError` on failure."""
    program = dsl.parse_program(text, registry.names(), media=list(media))
    steps: list[Step] = []
    for call in program.calls:
        step = execute(call, registry, ctx, refs=step_refs(steps))
        steps.append(step)
        if step.error:
            raise ProgramError(f"line {call.name} = {call.tool}(...) failed: {step.error}")
    name = program.answer.get("ref")
    result = next(s.result for s in steps if s.ref == name)
    return steps, dsl.format_answer(dsl.answer_value(result or {}))
