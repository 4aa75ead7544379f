"""GPT4Tools-style tool-use data: scene questions → chat samples in the runtime's exact prompts.

Example::

    agentkit data gen tooluse --scenes examples/scenes --questions data/questions/questions.jsonl \\
        --out data/tooluse --seed 0

For each question, the ground-truth program is converted to tool calls
(:mod:`agentkit.mllm.data.programs_to_tools`) and run with the real tools, on ground-truth
detections (``--detections gt``: the scene graph's objects through a ``detect`` with the real
tool's name, description and schemas) or the detector itself (``--detections model``). A question
whose tool answer differs from its ground-truth answer is dropped and counted (``relate`` judges
from the image; a detector can miss), so no sample carries a wrong answer.

Every sample is one model call as the runtime makes it: the messages come from the same functions
the planners call (:func:`agentkit.planners.roles.controller_messages`,
:func:`~agentkit.planners.roles.evidence_messages`, and the ``program`` planner's prompt), on a
:class:`~agentkit.state.RunState` holding the steps a run would hold, plus the assistant turn to
learn. Kinds:

* ``tool_call`` — one per controller turn of a ReAct trajectory (Thought / Action / Action Input);
* ``final`` — the turn after the last observation (Thought / Final Answer);
* ``context`` — the turns of a second question about the same image, asked after a first one's
  tool work: earlier results are passed by name, never recomputed (``detect_0`` is reused);
* ``no_tool`` — a question the conversation already answers (the same question in other words,
  after its own tool work): Final Answer with no tool call;
* ``decider`` — after each observation, "enough to answer?" → ``yes`` only after the last one;
* ``summarizer`` — the final answer from the observations;
* ``program`` — the ``program`` planner's controller turn: Thought and the whole DSL program;
* ``decompose`` — the ``tree`` planner's controller turn (``--planner tree``): a comparison of two
  counts becomes its two "How many ...?" sub-questions, any other question its own single one
  (its answer is then the branch's, no merge);
* ``merge`` — the ``tree`` summarizer: the comparison's answer from the two counts.

With ``--actions code``, the ReAct turns are written as the ``react`` planner writes them with
``Options.actions = "code"``: one line of the program per turn (``tool_call``), the lines before
it run through the tools with their observations shown as comments, and ``ANSWER = name`` last
(``final``); and the ``plan`` planner's ``summarizer`` with code actions (the program as written and
its observations -> Final Answer); no context, no-tool or decider samples.

With ``--teacher openai:URL#MODEL`` (self-instruct, as GPT4Tools), a teacher LLM rewrites each
question; a rewrite that still names every value of the program adds the question's ReAct turns
once more in its words (``"teacher": true``; see :mod:`agentkit.mllm.data.teacher`).

Splits are by scene seed (``train`` / ``val`` / ``test``, 80/10/10 from the seed), and a set of
tools (``same`` and ``compare`` by default) is *unseen*: any sample that calls one goes to the
``test_unseen`` split only, while every prompt still lists every tool, as GPT4Tools does.
Output: ``train.jsonl``, ``val.jsonl``, ``test.jsonl``, ``test_unseen.jsonl`` and
``summary.json`` under ``--out``. The same inputs and seed give the same bytes.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from agentkit.errors import AgentkitError, ConfigError
from agentkit.media import open_image
from agentkit.mllm.backends.base import Message
from agentkit.mllm.data import programs_to_tools as P
from agentkit.mllm.data.gt import gt_detect_tool
from agentkit.mllm.data.teacher import Teacher
from agentkit.mllm.toolcall import format_call, format_final
from agentkit.mllm.worlds import templates as T
from agentkit.mllm.worlds.programs import ProgramError, execute_trace
from agentkit.planners import dsl, roles
from agentkit.planners.program import program_messages
from agentkit.planners.tree import NO_SUBQUESTIONS, decomposer_messages, tree_pad
from agentkit.runtime import ACTIONS, Actions, Options, Runtime
from agentkit.state import BranchAnswer, RunState, Step, Task, ToolCall
from agentkit.tools.base import PromptStyle, ToolContext, ToolRegistry, execute, step_refs

KINDS = ("tool_call", "final", "context", "no_tool", "decider", "summarizer", "program",
         "decompose", "merge")  # fmt: skip
SPLITS = ("train", "val", "test", "test_unseen")
UNSEEN_DEFAULT = ("same", "compare")
IMAGE = "image_0"


class SceneMedia:
    """The media a run about one scene holds: ``image_0`` is the scene's image file. Stands in for
    the run's :class:`~agentkit.media.MediaStore` (``path``, ``image``, ``ids``, ``in``)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __contains__(self, media_id: str) -> bool:
        return media_id == IMAGE

    def ids(self) -> list[str]:
        return [IMAGE]

    def path(self, media_id: str) -> Path:
        return self._path

    def image(self, media_id: str) -> Any:
        return open_image(self._path)


def prompt_runtime(
    registry: ToolRegistry,
    image: Path,
    prompt_style: PromptStyle = "full",
    actions: Actions = "text",
) -> Runtime:
    """What the prompt functions read of a :class:`Runtime`: its tools, media and options."""
    options = Options(prompt_style=prompt_style, actions=actions)
    return cast(Runtime, SimpleNamespace(tools=registry, media=SceneMedia(image), options=options))


def run_state(question: str, image: Path, size: tuple[int, int], steps: Sequence[Step]) -> RunState:
    """The state a run of ``question`` about ``image`` has after ``steps`` (ingest done)."""
    return RunState(
        task=Task(question=question, images=[image]),
        question=question,
        media={IMAGE: f"{size[0]}x{size[1]} image"},
        steps=list(steps),
    )


# --------------------------------------------------------------------------------------------
# paraphrases (for no-tool samples): the same question in another of its template's phrasings


def _phrasing_regex(phrasing: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", phrasing)
    rx = "".join(
        f"(?P<{p[1:-1]}>.+?)" if p.startswith("{") and p.endswith("}") else re.escape(p)
        for p in parts
    )
    return re.compile(rx + r"\Z")


def paraphrase(question: str, template: str, rng: random.Random) -> str | None:
    """Another phrasing of ``template`` with the same fields as ``question``, or None."""
    phrasings = T.PHRASINGS.get(template, ())
    for p in phrasings:
        m = _phrasing_regex(p).match(question)
        if not m:
            continue
        fields = m.groupdict()
        others = [
            q for q in phrasings if q != p and set(re.findall(r"\{(\w+)\}", q)) <= set(fields)
        ]
        if others:
            return rng.choice(others).format(**fields)
    return None


# --------------------------------------------------------------------------------------------
# the generator


class _Sink:
    """Samples by split, with tallies."""

    def __init__(self, unseen: Sequence[str]) -> None:
        self.unseen = set(unseen)
        self.rows: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.kinds: Counter[tuple[str, str]] = Counter()

    def add(
        self,
        messages: list[Message],
        target: str,
        *,
        kind: str,
        split: str,
        tools: Iterable[str],
        meta: dict[str, Any],
    ) -> None:
        used = sorted(set(tools))
        if self.unseen & set(used):
            split = "test_unseen"
        msgs = [*messages, Message(role="assistant", content=target)]
        row = {
            "messages": [m.model_dump(mode="json") for m in msgs],
            "images": [str(p) for m in messages for p in m.images],
            "kind": kind,
            **meta,
            "split": split,
            "tools": used,
        }
        self.rows[split].append(json.dumps(row, ensure_ascii=False))
        self.kinds[split, kind] += 1


def _tools_of(steps: Iterable[Step]) -> list[str]:
    return [s.tool for s in steps if s.role == "controller" and s.tool]


def scene_split(scene_seed: int, seed: int, fractions: tuple[float, float] = (0.8, 0.9)) -> str:
    """train / val / test for a scene, from the run's seed and the scene's (stable across runs)."""
    u = random.Random(f"tooluse-split:{seed}:{scene_seed}").random()
    return "train" if u < fractions[0] else "val" if u < fractions[1] else "test"


def _load_scenes(scenes_dir: Path, questions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    scenes: dict[str, dict[str, Any]] = {}
    for q in questions:
        name = q["image_filename"]
        if name in scenes:
            continue
        path = scenes_dir / Path(name).with_suffix(".json").name
        if not path.exists():
            raise ConfigError(
                f"question {q.get('id')} is about {name}, but {path} does not exist; pass the "
                "--scenes folder the questions were generated from"
            )
        scenes[name] = json.loads(path.read_text())
    return scenes


def read_questions(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ConfigError(f"questions file {path} does not exist (agentkit data gen questions)")
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{i + 1} is not JSON: {e}") from None
        for key in ("question", "program", "answer", "family", "image_filename", "seed"):
            if key not in q:
                raise ConfigError(f"{path}:{i + 1} lacks {key!r} (expected questions.jsonl)")
        out.append(q)
    return out


class _Question:
    """One question with its scene, image and trajectory (after running the tools)."""

    def __init__(self, q: dict[str, Any], scene: dict[str, Any], image: Path) -> None:
        self.q = q
        self.scene = scene
        self.image = image
        self.size = (int(scene.get("width", 0)), int(scene.get("height", 0)))
        self.plan: P.ToolPlan | None = None
        self.traj: P.Trajectory | None = None

    def meta(self, kind_extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "family": self.q["family"],
            "scene_seed": int(self.q["seed"]),
            "question_id": self.q.get("id"),
            "answer": self.q["answer"],
            **(kind_extra or {}),
        }


def generate(
    scenes_dir: Path,
    questions_file: Path,
    out: Path,
    *,
    detections: str = "gt",
    planners: Sequence[str] = ("react", "program"),
    seed: int = 0,
    unseen: Sequence[str] = UNSEEN_DEFAULT,
    detect_weights: str | None = None,
    device: str = "cpu",
    tools: Sequence[str] | None = None,
    teacher: str | None = None,
    prompt_style: PromptStyle = "full",
    actions: Actions = "text",
) -> dict[str, Any]:
    """Write the samples under ``out`` and return the summary (also in ``summary.json``).

    ``tools`` lists the tools the prompts show, in order (default: every registered tool, as
    ``Agent`` uses); give the same list to the runtime (``ToolRegistry.default().subset(...)``)
    so its prompts stay identical. It must hold every tool the plans call. ``teacher`` (a backend
    spec) adds, per question, the ReAct turns once more with the teacher's checked rewrite of the
    question (:mod:`agentkit.mllm.data.teacher`). ``prompt_style`` is how the prompts list the
    tools (``compact`` for the small shipped core); the runtime must use the same
    (``Options.prompt_style``); ``actions`` how the ReAct turns write their calls (``code``: one
    program line each, as ``Options.actions``)."""
    if actions not in ACTIONS:
        raise ConfigError(f"--actions {actions!r}: expected one of {', '.join(ACTIONS)}")
    if detections not in ("gt", "model"):
        raise ConfigError(f"--detections {detections!r}: expected gt or model")
    bad = [p for p in planners if p not in ("react", "program", "tree")]
    if bad or not planners:
        raise ConfigError(f"--planner {','.join(planners)}: expected react, program and/or tree")
    questions = read_questions(questions_file)
    scenes = _load_scenes(scenes_dir, questions)

    base = ToolRegistry.default()
    unknown = [t for t in unseen if t not in base]
    if unknown:
        raise ConfigError(f"unseen tools {unknown} are not registered; known: {base.names()}")
    current: dict[str, Any] = {}
    if detections == "gt":
        base.register(gt_detect_tool(lambda ref: current["scene"]))
    if tools is not None:
        missing = [t for t in (*P.PLAN_TOOLS, *unseen) if t not in tools]
        if missing:
            raise ConfigError(f"--tools lacks {missing}, which the trajectories call")
        base = base.subset(tools)
    registry = base
    weights = {"detect": detect_weights} if detect_weights else {}

    def context_of(image: Path) -> ToolContext:
        """The tools' context of a run about ``image`` (its only media item)."""
        return ToolContext(media=cast(Any, SceneMedia(image)), device=device, weights=weights)

    rng = random.Random(seed)
    sink = _Sink(unseen)
    rewriter = Teacher(teacher, out) if teacher else None
    skipped: Counter[str] = Counter()
    disagree: Counter[str] = Counter()
    by_scene: dict[str, list[_Question]] = defaultdict(list)

    for q in questions:
        scene = scenes[q["image_filename"]]
        item = _Question(q, scene, scenes_dir / q["image_filename"])
        current["scene"] = scene
        ctx = context_of(item.image)
        try:
            item.plan = P.to_plan(q["program"], image=IMAGE)
        except P.ConversionError:
            skipped["unconvertible"] += 1
            continue
        try:
            item.traj = P.run_plan(item.plan, registry, ctx)
        except AgentkitError as e:  # a missing image or weights file: say which
            raise ConfigError(f"question {q.get('id')}: {e}") from e
        if item.traj.error and item.traj.steps[-1].tool == "detect":
            # no detections at all (weights missing, unreadable image): nothing to learn from
            raise ConfigError(f"question {q.get('id')}: detect failed: {item.traj.error}")
        if item.traj.answer is None:
            skipped["tool_failed"] += 1
            disagree[q["family"]] += 1
            continue
        if item.traj.answer != str(q["answer"]):
            skipped["answer_differs"] += 1
            disagree[q["family"]] += 1
            continue
        by_scene[q["image_filename"]].append(item)

    n_used = 0
    for name in sorted(by_scene, key=lambda n: (int(scenes[n]["seed"]), n)):
        items = by_scene[name]
        current["scene"] = scenes[name]
        split = scene_split(int(scenes[name]["seed"]), seed)
        for i, item in enumerate(items):
            n_used += 1
            rt = prompt_runtime(registry, item.image, prompt_style, actions)
            ctx = context_of(item.image)
            if "react" in planners and actions == "code":
                _code_samples(sink, rt, registry, ctx, item, split, skipped)
            elif "react" in planners:
                _react_samples(sink, rt, item, split)
                if rewriter is not None and item.traj is not None:
                    text = rewriter.rewrite(item.q["question"], item.q["program"])
                    if text is not None:
                        _turns(sink, rt, item, text, [], item.traj, split, "react",
                               {"teacher": True})  # fmt: skip
                _no_tool_sample(sink, rt, item, split, rng)
                if len(items) > 1:
                    other = items[(i + 1 + rng.randrange(len(items) - 1)) % len(items)]
                    _context_samples(sink, rt, registry, ctx, other, item, split, skipped)
            if "program" in planners:
                _program_sample(sink, rt, item, split)
            if "tree" in planners:
                _tree_samples(sink, rt, item, split, rng)

    out.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        (out / f"{s}.jsonl").write_text("".join(r + "\n" for r in sink.rows[s]))
    by_kind: Counter[str] = Counter()
    for (_, kind), n in sink.kinds.items():
        by_kind[kind] += n
    summary = {
        "questions": len(questions),
        "questions_used": n_used,
        "skipped": dict(sorted(skipped.items())),
        "disagreements_by_family": dict(sorted(disagree.items())),
        "samples": sum(by_kind.values()),
        "by_kind": {k: by_kind[k] for k in KINDS if by_kind[k]},
        "by_split": {s: len(sink.rows[s]) for s in SPLITS},
        "by_split_kind": {
            s: {k: sink.kinds[s, k] for k in KINDS if sink.kinds[s, k]} for s in SPLITS
        },
        "unseen_tools": sorted(unseen),
        "detections": detections,
        "prompt_style": prompt_style,
        "actions": actions,
        "planners": list(planners),
        "tools": registry.names(),
        "seed": seed,
    }
    if rewriter is not None:
        summary["teacher"] = {"spec": teacher, "asked": rewriter.asked, "kept": rewriter.kept,
                              "rejected": rewriter.rejected}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# --------------------------------------------------------------------------------------------
# samples of one question


def _final_step(traj: P.Trajectory) -> Step:
    return Step(
        role="controller",
        thought=traj.final_thought(),
        observation=f"Final Answer: {traj.answer}",
        started=0.0,
    )


def _turns(
    sink: _Sink,
    rt: Runtime,
    item: _Question,
    question: str,
    history: list[Step],
    traj: P.Trajectory,
    split: str,
    kind: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """One sample per controller turn of ``traj`` run after ``history``, and the final turn."""
    extra = extra or {}
    steps = traj.steps
    # every turn of a question that uses an unseen tool goes to test_unseen, not just the turns
    # that call it: the earlier turns would teach part of the unseen-tool chains
    tools = [*_tools_of(history), *_tools_of(steps)]
    for k in range(0, len(steps), 2):
        ctrl = steps[k]
        state = run_state(question, item.image, item.size, [*history, *steps[:k]])
        call = ToolCall(tool=ctrl.tool or "", args=ctrl.args or {}, thought=ctrl.thought)
        sink.add(
            roles.controller_messages(rt, state),
            format_call(call),
            kind="tool_call" if kind == "react" else kind,
            split=split,
            tools=tools,
            meta=item.meta({"step": k // 2, **extra}),
        )
    state = run_state(question, item.image, item.size, [*history, *steps])
    sink.add(
        roles.controller_messages(rt, state),
        format_final(traj.answer or "", traj.final_thought()),
        kind="final" if kind == "react" else kind,
        split=split,
        tools=tools,
        meta=item.meta({"step": len(steps) // 2, **extra}),
    )


def _react_samples(sink: _Sink, rt: Runtime, item: _Question, split: str) -> None:
    traj = item.traj
    assert traj is not None
    question = item.q["question"]
    _turns(sink, rt, item, question, [], traj, split, "react")
    tools = _tools_of(traj.steps)
    # decider: after each observation, is it enough? Only after the last call's.
    n_calls = len(traj.steps) // 2
    for k in range(1, n_calls + 1):
        state = run_state(question, item.image, item.size, traj.steps[: 2 * k])
        sink.add(
            roles.evidence_messages(rt, state, "decider"),
            "yes" if k == n_calls else "no",
            kind="decider",
            split=split,
            tools=tools,
            meta=item.meta({"step": k}),
        )
    # summarizer: the answer from the observations, after the controller's Final Answer
    state = run_state(question, item.image, item.size, [*traj.steps, _final_step(traj)])
    sink.add(
        roles.evidence_messages(rt, state, "summarizer"),
        format_final(traj.answer or ""),
        kind="summarizer",
        split=split,
        tools=tools,
        meta=item.meta(),
    )


def _no_tool_sample(
    sink: _Sink, rt: Runtime, item: _Question, split: str, rng: random.Random
) -> None:
    """The question asked again in other words after its own tool work: answer, call nothing."""
    traj = item.traj
    assert traj is not None
    again = paraphrase(item.q["question"], item.q.get("template", ""), rng)
    if again is None or again == item.q["question"]:
        return
    state = run_state(again, item.image, item.size, traj.steps)
    thought = f"{traj.answer_ref} already answers this question; no tool is needed."
    sink.add(
        roles.controller_messages(rt, state),
        format_final(traj.answer or "", thought),
        kind="no_tool",
        split=split,
        tools=_tools_of(traj.steps),
        meta=item.meta({"paraphrase_of": item.q["question"]}),
    )


def _context_samples(
    sink: _Sink,
    rt: Runtime,
    registry: ToolRegistry,
    ctx: ToolContext,
    first: _Question,
    item: _Question,
    split: str,
    skipped: Counter[str],
) -> None:
    """``item`` asked after ``first``'s tool work on the same image: earlier results are reused."""
    assert first.traj is not None and item.plan is not None
    history = list(first.traj.steps)
    traj = P.run_plan(item.plan, registry, ctx, history)
    if traj.answer != str(item.q["answer"]):
        skipped["context_answer_differs"] += 1
        return
    if not traj.steps:  # everything already computed: the answer is in the conversation
        state = run_state(item.q["question"], item.image, item.size, history)
        thought = f"{traj.answer_ref} already answers this question; no tool is needed."
        sink.add(
            roles.controller_messages(rt, state),
            format_final(traj.answer or "", thought),
            kind="no_tool",
            split=split,
            tools=_tools_of(history),
            meta=item.meta({"after": first.q.get("id")}),
        )
        return
    _turns(sink, rt, item, item.q["question"], history, traj, split, "context",
           {"after": first.q.get("id")})  # fmt: skip


def _program_sample(sink: _Sink, rt: Runtime, item: _Question, split: str) -> None:
    assert item.plan is not None
    state = run_state(item.q["question"], item.image, item.size, [])
    text = P.to_program(item.plan, media=[IMAGE])
    target = roles.program_reply(P.program_thought(item.plan), text.split("\n"))
    sink.add(
        program_messages(rt, state),
        target,
        kind="program",
        split=split,
        tools=item.plan.tools(),
        meta=item.meta(),
    )


def _code_samples(
    sink: _Sink,
    rt: Runtime,
    registry: ToolRegistry,
    ctx: ToolContext,
    item: _Question,
    split: str,
    skipped: Counter[str],
) -> None:
    """The ``react`` planner's turns with ``code`` actions: the question's program run line by
    line as the planner runs it (named results, real observations), one sample per line with the
    lines before it in the prompt, then ``ANSWER = name``."""
    assert item.plan is not None
    program = dsl.parse_program(P.to_program(item.plan, media=[IMAGE]), registry.names(), [IMAGE])
    steps: list[Step] = []
    for call in program.calls:
        ran = execute(call, registry, ctx, refs=step_refs(steps))
        if ran.error:
            skipped["code_failed"] += 1
            return
        ctrl = Step(role="controller", tool=call.tool, args=call.args, ref=call.name, started=0.0)
        steps += [ctrl, ran]
    if dsl.read_answer(program.answer, steps) != str(item.q["answer"]):
        skipped["code_answer_differs"] += 1
        return
    question, tools = item.q["question"], item.plan.tools()
    names = {IMAGE, *(c.name for c in program.calls if c.name)}
    targets = [dsl.format_line(c.name or "", c.tool, c.args, names) for c in program.calls]
    targets.append(f"{dsl.ANSWER} = {program.answer.get('ref', program.answer.get('value'))}")
    for k, target in enumerate(targets):
        state = run_state(question, item.image, item.size, steps[: 2 * k])
        sink.add(
            roles.code_messages(rt, state),
            target,
            kind="tool_call" if k < len(program.calls) else "final",
            split=split,
            tools=tools,
            meta=item.meta({"step": k}),
        )
    # the plan planner's summarizer (code actions): the program as written, its observations
    written = Step(role="controller", thought=P.program_thought(item.plan),
                   observation=program.source, started=0.0)  # fmt: skip
    state = run_state(question, item.image, item.size, [written, *steps[1::2]])
    sink.add(
        roles.evidence_messages(rt, state, "summarizer", roles.program_digest_pad),
        format_final(str(item.q["answer"])),
        kind="summarizer",
        split=split,
        tools=tools,
        meta=item.meta(),
    )


#: How a comparison of two counts follows from them (the ``compare.*`` templates).
_COMPARE = {
    "compare.greater": lambda a, b: a > b,
    "compare.less": lambda a, b: a < b,
    "compare.equal": lambda a, b: a == b,
}


def subquestions(q: dict[str, Any], rng: random.Random) -> list[str]:
    """The ``tree`` decomposition of a question: a comparison of two counts → one "How many
    ...?" per side; a comparison of two objects' attribute ("Is the A the same color as the B?")
    → one "What color is the ...?" per object; any other question → itself (CLEVR's other
    families are one chain)."""
    template = q.get("template")
    if template in _COMPARE or template == "equal.attr":
        for phrasing in T.PHRASINGS[template]:
            m = _phrasing_regex(phrasing).match(q["question"])
            if not m:
                continue
            if template == "equal.attr":
                ask = rng.choice(T.PHRASINGS[f"query.{m['attr']}"])
                return [ask.format(A=m["A"]), ask.format(A=m["B"])]
            ask = rng.choice(T.PHRASINGS["count"])
            return [ask.format(A_pl=m["A_pl"]), ask.format(A_pl=m["B_pl"])]
    return [q["question"]]


def sub_answers(item: _Question) -> list[str]:
    """The answers of a decomposed question's two sub-questions, from the ground truth: the two
    counts a comparison compares (from the tools' own ``compare`` step, so they are what the
    branches would see), or the two attribute values of an ``equal.attr`` question (from its
    CLEVR program on the scene graph). Empty when they do not give the question's answer."""
    q = item.q
    if q.get("template") == "equal.attr":
        try:
            trace = execute_trace(q["program"], item.scene)
        except ProgramError:
            return []
        values = [v for nd, v in zip(q["program"], trace, strict=True)
                  if str(nd.get("function", "")).startswith("query_")]  # fmt: skip
        if len(values) != 2 or ("yes" if values[0] == values[1] else "no") != q["answer"]:
            return []
        return [str(v) for v in values]
    assert item.traj is not None
    done = [s.result for s in item.traj.steps if s.tool == "compare" and s.result]
    counts = [done[-1]["a"], done[-1]["b"]] if done else []
    if not counts or ("yes" if _COMPARE[q["template"]](*counts) else "no") != q["answer"]:
        return []  # no compare step with both counts: nothing sound to merge
    return [str(n) for n in counts]


def _tree_samples(
    sink: _Sink, rt: Runtime, item: _Question, split: str, rng: random.Random
) -> None:
    """The ``tree`` planner's controller turn and, for a decomposed comparison, its merge."""
    assert item.traj is not None
    q = item.q
    subs = subquestions(q, rng)
    state = run_state(q["question"], item.image, item.size, [])
    tools = _tools_of(item.traj.steps)
    sink.add(
        decomposer_messages(rt, state),
        "\n".join(f"Sub-question: {s}" for s in subs) if len(subs) > 1 else NO_SUBQUESTIONS,
        kind="decompose",
        split=split,
        tools=tools,
        meta=item.meta({"subquestions": subs}),
    )
    if len(subs) == 1:
        return
    answers = sub_answers(item)
    if not answers:
        return
    state.branch_answers = [
        BranchAnswer(index=i, question=sub, answer=a)
        for i, (sub, a) in enumerate(zip(subs, answers, strict=True))
    ]
    sink.add(
        roles.evidence_messages(rt, state, "tree_summarizer", tree_pad),
        format_final(q["answer"]),
        kind="merge",
        split=split,
        tools=tools,
        meta=item.meta({"sub_answers": answers}),
    )
