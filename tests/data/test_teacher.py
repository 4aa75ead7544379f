"""Teacher rewrites (self-instruct): kept only when they keep the program's meaning; cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.data.teacher import keeps_meaning
from agentkit.mllm.data.tooluse import SPLITS, generate
from agentkit.mllm.worlds.programs import node
from agentkit.mllm.worlds.questions import generate_questions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"

RELATE = [
    node("scene"),
    node("filter_color", [0], ["red"]),
    node("unique", [1]),
    node("relate", [2], ["left"]),
    node("filter_shape", [3], ["sphere"]),
    node("count", [4]),
]
ORIGINAL = "How many spheres are left of the red thing?"


@pytest.mark.parametrize(
    ("rewrite", "ok"),
    [
        ("What number of balls are to the left of the red object?", True),
        ("Count the spheres on the left side of the red thing. How many?", True),
        ("How many spheres are right of the red thing?", False),  # relation changed
        ("How many balls are left of the thing?", False),  # colour dropped
        ("Are there spheres left of the red thing?", False),  # no longer how many
        (ORIGINAL, False),  # not a rewrite
        ("How many spheres? Left of the red thing?", False),  # two questions
        ("", False),
    ],
)
def test_keeps_meaning(rewrite: str, ok: bool) -> None:
    assert keeps_meaning(rewrite, ORIGINAL, RELATE) is ok


def test_every_templated_question_would_pass() -> None:
    scenes = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("scene_*.json"))]
    for q in generate_questions(scenes, per_scene=14, seed=5):
        assert keeps_meaning(q["question"], "", q["program"]), q["question"]


def test_teacher_samples_and_cache(tmp_path: Path) -> None:
    scenes_dir = tmp_path / "scenes"
    scenes_dir.mkdir()
    for p in EXAMPLES.glob("scene_000003.*"):
        shutil.copy(p, scenes_dir / p.name)
    scene = json.loads((scenes_dir / "scene_000003.json").read_text())
    qs = generate_questions([scene], per_scene=3, seed=1, families=["count", "exist"])
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in qs))
    replies = ["Rewritten question: Tell me, " + qs[0]["question"][0].lower() + qs[0]["question"][1:],
               "What is there?", qs[2]["question"].replace("?", ", please?")]  # fmt: skip
    script = tmp_path / "teacher.json"
    script.write_text(json.dumps(replies))
    out = tmp_path / "out"
    s = generate(scenes_dir, qfile, out, teacher=f"scripted:{script}", planners=["react"])
    assert s["teacher"] == {"spec": f"scripted:{script}", "asked": 3, "kept": 2, "rejected": 1}
    rows = [json.loads(line) for sp in SPLITS for line in (out / f"{sp}.jsonl").open()]
    taught = [r for r in rows if r.get("teacher")]
    assert {r["kind"] for r in taught} == {"tool_call", "final"}
    assert any("Question: Tell me, " in r["messages"][1]["content"] for r in taught)
    assert not any("What is there?" in r["messages"][1]["content"] for r in rows)
    # a re-run asks the teacher nothing (an empty script would fail) and writes the same bytes
    first = {sp: (out / f"{sp}.jsonl").read_bytes() for sp in SPLITS}
    script.write_text("[]")
    s2 = generate(scenes_dir, qfile, out, teacher=f"scripted:{script}", planners=["react"])
    assert s2["teacher"]["asked"] == 0
    assert first == {sp: (out / f"{sp}.jsonl").read_bytes() for sp in SPLITS}


def test_unreachable_teacher_is_a_config_error(tmp_path: Path) -> None:
    scenes_dir = tmp_path / "scenes"
    scenes_dir.mkdir()
    for p in EXAMPLES.glob("scene_000003.*"):
        shutil.copy(p, scenes_dir / p.name)
    scene = json.loads((scenes_dir / "scene_000003.json").read_text())
    qfile = tmp_path / "q.jsonl"
    qs = generate_questions([scene], per_scene=1, seed=1)
    qfile.write_text(json.dumps(qs[0]) + "\n")
    script = tmp_path / "empty.json"
    script.write_text("[]")
    with pytest.raises(ConfigError, match="--teacher"):
        generate(scenes_dir, qfile, tmp_path / "out", teacher=f"scripted:{script}")
