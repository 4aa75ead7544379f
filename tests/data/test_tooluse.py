"""GPT4Tools-style samples: the runtime's exact prompts, disjoint splits, unseen tools held out."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from agentkit.graph import Agent
from agentkit.mllm.backends.base import Generation
from agentkit.mllm.data.gt import gt_detect_tool, projected_scene
from agentkit.mllm.data.tooluse import SPLITS, generate, paraphrase
from agentkit.mllm.worlds.questions import FAMILIES, generate_questions
from agentkit.runtime import Options, RoleModels
from agentkit.testing import ScriptedBackend
from agentkit.tools.base import ToolRegistry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"
UNSEEN = {"same", "compare"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """12 example scenes (with images) and 40 projected ones, their questions, and samples."""
    root = tmp_path_factory.mktemp("tooluse")
    scenes_dir = root / "scenes"
    scenes_dir.mkdir()
    for p in EXAMPLES.glob("scene_*"):
        shutil.copy(p, scenes_dir / p.name)
    for s in range(7000, 7040):
        (scenes_dir / f"scene_{s:06d}.json").write_text(json.dumps(projected_scene(s)))
    scenes = [json.loads(p.read_text()) for p in sorted(scenes_dir.glob("scene_*.json"))]
    questions = generate_questions(scenes, per_scene=8, seed=0)
    qfile = root / "questions.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = root / "out"
    summary = generate(scenes_dir, qfile, out, seed=0)
    rows = {s: [json.loads(line) for line in (out / f"{s}.jsonl").open()] for s in SPLITS}
    scene_of = {sc["image_filename"]: sc for sc in scenes}
    return {"root": root, "scenes_dir": scenes_dir, "qfile": qfile, "out": out,
            "summary": summary, "rows": rows, "questions": questions, "scene_of": scene_of}  # fmt: skip


def _all(world) -> list[dict]:
    return [r for s in SPLITS for r in world["rows"][s]]


def _text(row: dict) -> str:
    return "\n".join(m["content"] for m in row["messages"][1:])


def test_summary_and_kinds(world) -> None:
    s = world["summary"]
    assert set(s["by_kind"]) == {"tool_call", "final", "context", "no_tool", "decider",
                                 "summarizer", "program"}  # fmt: skip
    assert (
        s["questions_used"]
        + sum(v for k, v in s["skipped"].items() if k != "context_answer_differs")
        == s["questions"]
    )
    assert s["samples"] == sum(len(v) for v in world["rows"].values())


def test_answers_are_the_questions_answers(world) -> None:
    for row in _all(world):
        target = row["messages"][-1]["content"]
        if row["kind"] in ("final", "no_tool", "summarizer"):
            assert target.endswith(f"Final Answer: {row['answer']}"), target
        elif row["kind"] == "decider":
            assert target in ("yes", "no")
        elif row["kind"] == "tool_call":
            assert target.split("\n")[1].startswith("Action: ")


def test_splits_disjoint_by_scene_and_unseen_tools_held_out(world) -> None:
    seeds = {s: {r["scene_seed"] for r in world["rows"][s]} for s in ("train", "val", "test")}
    assert seeds["train"] and seeds["val"] and seeds["test"]
    assert not seeds["train"] & seeds["val"]
    assert not seeds["train"] & seeds["test"]
    assert not seeds["val"] & seeds["test"]
    for split in ("train", "val", "test"):
        for row in world["rows"][split]:
            text = _text(row)
            for tool in UNSEEN:
                assert f"Action: {tool}\n" not in text and f" = {tool}(" not in text, row
    # ... yet every controller prompt still lists them
    controller = [r for r in world["rows"]["train"] if r["kind"] in ("tool_call", "program")]
    assert all("\ncompare: " in r["messages"][0]["content"] for r in controller)
    unseen = world["rows"]["test_unseen"]
    assert unseen and all(UNSEEN & set(r["tools"]) for r in unseen)


def test_every_family_covered(world) -> None:
    seen = {r["family"] for r in _all(world)}
    assert seen == set(FAMILIES)
    train = {r["family"] for r in world["rows"]["train"]}
    assert {"compare_count", "same_count", "same_exist"}.isdisjoint(train)  # unseen tools only
    assert train >= set(FAMILIES) - {"compare_count", "same_count", "same_exist"}


def test_deterministic_in_seed(world, tmp_path) -> None:
    again = tmp_path / "again"
    generate(world["scenes_dir"], world["qfile"], again, seed=0)
    for s in SPLITS:
        assert (again / f"{s}.jsonl").read_bytes() == (world["out"] / f"{s}.jsonl").read_bytes()


def _agent(world, scene: dict, planner: str, ctrl, dec=None, summ=None, **opts) -> Agent:
    tools = ToolRegistry.default()
    tools.register(gt_detect_tool(lambda ref: scene))
    models = RoleModels(controller=ctrl, decider_backend=dec, summarizer_backend=summ)
    return Agent(models, tools=tools, planner=planner, runs_dir=world["root"] / "runs",
                 options=Options(**opts))  # fmt: skip


def _same_prompt(runtime: list, sample: list[dict]) -> None:
    """The runtime's messages equal the sample's (all but its assistant turn); the image is the
    run's copy in its media store, so only the number of images is compared."""
    assert [(m.role, m.content) for m in runtime] == [
        (m["role"], m["content"]) for m in sample[:-1]
    ]
    assert [len(m.images) for m in runtime] == [len(m["images"]) for m in sample[:-1]]


def test_react_samples_are_the_runtime_prompts(world) -> None:
    """Replaying a question's targets through the real react graph (scripted backends) shows the
    controller, decider and summarizer exactly the samples' messages, turn by turn."""
    by_q: dict[str, list[dict]] = defaultdict(list)
    for r in _all(world):
        by_q[r["question_id"]].append(r)
    examples = [q for q in world["questions"] if q["seed"] < 100]  # rendered: have images
    checked = set()
    for q in examples:
        rows = by_q.get(q["id"], [])
        if q["family"] in checked or not any(r["kind"] == "final" for r in rows):
            continue
        turns = sorted((r for r in rows if r["kind"] in ("tool_call", "final")),
                       key=lambda r: r["step"])  # fmt: skip
        deciders = sorted((r for r in rows if r["kind"] == "decider"), key=lambda r: r["step"])
        (summ_row,) = [r for r in rows if r["kind"] == "summarizer"]
        ctrl = ScriptedBackend([r["messages"][-1]["content"] for r in turns])
        dec = ScriptedBackend(["no"] * len(deciders))  # "no" lets the controller answer itself
        summ = ScriptedBackend([summ_row["messages"][-1]["content"]])
        scene = world["scene_of"][q["image_filename"]]
        agent = _agent(world, scene, "react", ctrl, dec, summ, model_decider=True, summarize=True)
        result = agent.ask(q["question"], images=[world["scenes_dir"] / q["image_filename"]])
        assert result.answer == q["answer"]
        assert len(ctrl.calls) == len(turns) and len(dec.calls) == len(deciders)
        for got, row in zip(ctrl.calls, turns, strict=True):
            _same_prompt(got, row["messages"])
        for got, row in zip(dec.calls, deciders, strict=True):
            _same_prompt(got, row["messages"])
        _same_prompt(summ.calls[0], summ_row["messages"])
        checked.add(q["family"])
        if len(checked) >= 4:
            break
    assert len(checked) >= 4


def test_program_samples_are_the_runtime_prompts(world) -> None:
    rows = [r for r in _all(world) if r["kind"] == "program" and r["scene_seed"] < 100][:3]
    assert rows
    for row in rows:
        q = next(q for q in world["questions"] if q["id"] == row["question_id"])
        ctrl = ScriptedBackend([row["messages"][-1]["content"]])
        scene = world["scene_of"][q["image_filename"]]
        agent = _agent(world, scene, "program", ctrl)
        result = agent.ask(q["question"], images=[world["scenes_dir"] / q["image_filename"]])
        _same_prompt(ctrl.calls[0], row["messages"])
        assert result.answer == q["answer"]  # the program runs in the planner's interpreter


def test_paraphrase_keeps_the_fields() -> None:
    import random

    q = "How many red cubes are there?"
    out = paraphrase(q, "count", random.Random(0))
    assert out and out != q and "red cubes" in out
    assert paraphrase("Something else entirely", "count", random.Random(0)) is None


def test_tool_subset_and_bad_options(world, tmp_path) -> None:
    from agentkit.errors import ConfigError
    from agentkit.mllm.data.programs_to_tools import PLAN_TOOLS

    names = [*PLAN_TOOLS, "calculate"]
    summary = generate(world["scenes_dir"], world["qfile"], tmp_path / "sub", seed=0, tools=names,
                       planners=["react"])  # fmt: skip
    assert summary["tools"] == sorted(names) and "program" not in summary["by_kind"]
    row = json.loads((tmp_path / "sub" / "train.jsonl").open().readline())
    listed = [ln.split(":")[0] for ln in row["messages"][0]["content"].split("\n") if ": " in ln]
    assert set(names) <= set(listed) and "segment" not in listed
    with pytest.raises(ConfigError, match="lacks"):
        generate(world["scenes_dir"], world["qfile"], tmp_path / "x", tools=["detect", "count"])
    with pytest.raises(ConfigError, match="gt or model"):
        generate(world["scenes_dir"], world["qfile"], tmp_path / "x", detections="oracle")


@pytest.mark.slow
def test_model_detections_never_write_a_wrong_answer(world, tmp_path, monkeypatch) -> None:
    """--detections model runs the real detect tool; with an untrained YOLO most questions
    disagree with the ground truth and are dropped, and whatever remains is still right."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo"))
    from ultralytics import YOLO

    weights = tmp_path / "untrained.pt"
    YOLO("yolov8n.yaml").save(str(weights))
    qs = [q for q in world["questions"] if q["seed"] < 2]
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in qs))
    out = tmp_path / "model"
    s = generate(world["scenes_dir"], qfile, out, detections="model", detect_weights=str(weights))
    assert s["questions_used"] + sum(s["skipped"].values()) >= len(qs)
    assert s["skipped"]  # an untrained detector gets most questions wrong
    for split in SPLITS:
        for line in (out / f"{split}.jsonl").open():
            row = json.loads(line)
            if row["kind"] in ("final", "summarizer"):
                assert row["messages"][-1]["content"].endswith(f"Final Answer: {row['answer']}")


@pytest.mark.parametrize("planner", ["program", "react"])
def test_bare_samples_are_the_runtime_prompts_and_list_names_only(world, tmp_path, planner) -> None:
    """prompt_style=bare (the shipped core's): the runtime sends exactly the sample's prompt, and
    that prompt names the tools without describing them (a fraction of the compact length)."""
    out = tmp_path / "bare"
    generate(world["scenes_dir"], world["qfile"], out, seed=0, planners=[planner],
             prompt_style="bare")  # fmt: skip
    rows = [json.loads(x) for s in SPLITS for x in (out / f"{s}.jsonl").open()]
    kind = "program" if planner == "program" else "tool_call"
    row = next(r for r in rows if r["kind"] == kind and r["scene_seed"] < 100)
    system = row["messages"][0]["content"]
    assert "detect, " in system and "YOLO" not in system  # names, no descriptions
    compact = next(r for r in _all(world) if r["kind"] == kind)["messages"][0]["content"]
    assert len(system) < len(compact) / 4
    q = next(q for q in world["questions"] if q["id"] == row["question_id"])
    ctrl = ScriptedBackend([row["messages"][-1]["content"]] * 8)
    agent = _agent(world, world["scene_of"][q["image_filename"]], planner, ctrl, prompt_style="bare")
    agent.ask(q["question"], images=[world["scenes_dir"] / q["image_filename"]])
    _same_prompt(ctrl.calls[0], row["messages"])  # the question's first controller turn


def test_code_samples_are_the_runtime_prompts(world, tmp_path) -> None:
    """--actions code: replaying a question's lines through the react graph with code actions
    shows the controller exactly each sample's prompt (the lines so far with their observations
    as comments), and its ANSWER line gives the question's answer."""
    out = tmp_path / "code"
    summary = generate(world["scenes_dir"], world["qfile"], out, seed=0, planners=["react"],
                       prompt_style="bare", actions="code", unseen=[])  # fmt: skip
    assert set(summary["by_kind"]) == {"tool_call", "final", "summarizer"}
    assert summary["actions"] == "code"
    by_q: dict[str, list[dict]] = defaultdict(list)
    for s in SPLITS:
        for x in (out / f"{s}.jsonl").open():
            r = json.loads(x)
            by_q[r["question_id"]].append(r)
    families = set()
    for q in world["questions"]:
        rows = sorted((r for r in by_q.get(q["id"], []) if r["kind"] != "summarizer"),
                      key=lambda r: r["step"])  # fmt: skip
        if q["seed"] >= 100 or not rows or q["family"] in families:
            continue
        assert [r["kind"] for r in rows] == ["tool_call"] * (len(rows) - 1) + ["final"]
        assert rows[-1]["messages"][-1]["content"].startswith("ANSWER = ")
        ctrl = ScriptedBackend([r["messages"][-1]["content"] for r in rows])
        agent = _agent(world, world["scene_of"][q["image_filename"]], "react", ctrl,
                       prompt_style="bare", actions="code")  # fmt: skip
        result = agent.ask(q["question"], images=[world["scenes_dir"] / q["image_filename"]])
        assert result.answer == q["answer"]
        assert len(ctrl.calls) == len(rows)
        for got, row in zip(ctrl.calls, rows, strict=True):
            _same_prompt(got, row["messages"])
        # the plan planner (code actions) runs the question's program, and its summarizer sees
        # the summarizer sample's prompt
        (summ_row,) = [r for r in by_q[q["id"]] if r["kind"] == "summarizer"]
        lines = "\n".join(r["messages"][-1]["content"] for r in rows)
        ctrl = ScriptedBackend([f"Thought: x\nProgram:\n```\n{lines}\n```",
                                summ_row["messages"][-1]["content"]])  # fmt: skip
        agent = _agent(world, world["scene_of"][q["image_filename"]], "plan", ctrl,
                       prompt_style="bare", actions="code")  # fmt: skip
        result = agent.ask(q["question"], images=[world["scenes_dir"] / q["image_filename"]])
        assert result.answer == q["answer"]
        _same_prompt(ctrl.calls[1], summ_row["messages"])
        families.add(q["family"])
    assert len(families) >= 4


class _ByPrompt:
    """A backend whose reply depends on the prompt: the first rule whose text is in the last
    message wins (tree branches run in parallel, so call order cannot pick their replies)."""

    name = "by-prompt"

    def __init__(self, rules: list[tuple[str, str]]) -> None:
        self.rules = rules
        self.calls: list[list] = []

    def generate(self, messages, **kw) -> Generation:
        self.calls.append(messages)
        text = next(r for key, r in self.rules if key in messages[-1].content)
        return Generation(text=text, model=self.name)


@pytest.mark.parametrize("family", ["compare_count", "compare_attribute"])
def test_tree_samples_decompose_comparisons_and_replay_through_the_tree_graph(
    world, tmp_path, family
):
    """--planner tree: a comparison (of two counts, or of two objects' attribute) becomes two
    sub-questions ("How many ...?" / "What color is the ...?") and a merge sample whose branch
    answers give the question's answer; replayed through the tree graph (branches answering in
    code actions), the decomposer and the summarizer see exactly the samples' prompts and the
    answer is right. Other questions stay whole."""
    scenes = list(world["scene_of"].values())
    questions = generate_questions(scenes, per_scene=4, seed=1, families=[family, "count"])
    qfile = tmp_path / "questions.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = tmp_path / "tree"
    summary = generate(world["scenes_dir"], qfile, out, seed=0, planners=["tree"],
                       prompt_style="bare", unseen=[])  # fmt: skip
    rows = [json.loads(x) for s in SPLITS for x in (out / f"{s}.jsonl").open()]
    assert set(summary["by_kind"]) == {"decompose", "merge"}
    decomposed = [r for r in rows if r["kind"] == "decompose" and len(r["subquestions"]) == 2]
    assert decomposed and all(r["family"] == family for r in decomposed)
    for r in rows:
        if r["kind"] == "decompose" and len(r["subquestions"]) == 1:
            assert r["family"] == "count"
            assert r["messages"][-1]["content"] == "No sub-questions."
    merges = {r["question_id"]: r for r in rows if r["kind"] == "merge"}
    assert len(merges) >= len(decomposed) // 2
    checked = 0
    for dec in decomposed:
        q = next(q for q in questions if q["id"] == dec["question_id"])
        if q["seed"] >= 7000 or dec["question_id"] not in merges:
            continue  # a projected scene has no image to replay on
        merge = merges[dec["question_id"]]
        subs, answers = dec["subquestions"], merge["sub_answers"]
        if family == "compare_attribute":
            attr = next(a for a in ("color", "shape", "material", "size") if a in q["question"])
            assert all(attr in s or (attr == "size" and "big" in s) for s in subs)
            assert (answers[0] == answers[1]) == (q["answer"] == "yes")
        ctrl = _ByPrompt([
            ("Sub-question 1:", merge["messages"][-1]["content"]),  # the merge sees both
            (f"Question: {subs[0]}", f'ANSWER = "{answers[0]}"'),
            (f"Question: {subs[1]}", f'ANSWER = "{answers[1]}"'),
            (f"Question: {q['question']}", dec["messages"][-1]["content"]),
        ])  # fmt: skip
        agent = _agent(world, world["scene_of"][q["image_filename"]], "tree", ctrl,
                       prompt_style="bare", actions="code", verify=False)  # fmt: skip
        result = agent.ask(q["question"], images=[world["scenes_dir"] / q["image_filename"]])
        assert result.answer == q["answer"]
        _same_prompt(ctrl.calls[0], dec["messages"])
        _same_prompt(ctrl.calls[-1], merge["messages"])
        checked += 1
        if checked >= 2:
            break
    assert checked


def test_a_merge_is_made_only_from_values_that_give_the_answer(world):
    """``sub_answers``: the two attribute values of a compare_attribute question come from its
    program on the scene graph, and a question whose recorded answer they contradict (or whose
    program does not run there) gets no merge sample rather than a wrong one."""
    from agentkit.mllm.data.tooluse import _Question, sub_answers

    scenes = list(world["scene_of"].values())
    questions = generate_questions(scenes, per_scene=2, seed=3, families=["compare_attribute"])
    q = questions[0]
    scene = world["scene_of"][q["image_filename"]]
    item = _Question(q, scene, world["scenes_dir"] / q["image_filename"])
    a, b = sub_answers(item)
    assert (a == b) == (q["answer"] == "yes") and {a, b} <= {
        v for o in scene["objects"] for v in (o["color"], o["shape"], o["material"], o["size"])
    }
    wrong = {**q, "answer": "no" if q["answer"] == "yes" else "yes"}
    assert sub_answers(_Question(wrong, scene, item.image)) == []
    empty = {**scene, "objects": []}  # the program's unique() finds nothing: no values
    assert sub_answers(_Question(q, empty, item.image)) == []
