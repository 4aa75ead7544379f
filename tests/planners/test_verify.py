"""Woodpecker-style verification: claims read from the answer, checked with a (fake) detect tool,
corrected or flagged by the detector's confidence; a failed detect leaves the answer unverified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from agentkit.errors import ToolError
from agentkit.graph import Agent
from agentkit.planners.verify import existence_claim, extract_claims, match
from agentkit.runtime import Options
from agentkit.testing import ScriptedBackend
from agentkit.tools.base import Tool, ToolRegistry


class DetectArgs(BaseModel):
    image: str = Field(description="image id")
    color: str | None = None
    conf: float = 0.25


class DetectResult(BaseModel):
    objects: list[dict]
    width: int = 40
    height: int = 30


def obj(shape: str, color: str | None, score: float, material: str | None = "rubber") -> dict:
    return {"label": shape, "shape": shape, "color": color, "material": material,
            "size": "large", "box": [1, 1, 5, 5], "score": score, "name": shape}  # fmt: skip


def fake_detect(objects: list[dict], calls: list | None = None) -> Tool:
    def run(args: DetectArgs, ctx) -> DetectResult:
        if calls is not None:
            calls.append(args.model_dump())
        keep = [o for o in objects if args.color in (None, o["color"])]
        return DetectResult(objects=keep)

    return Tool("detect", "Find objects (test double).", DetectArgs, DetectResult, run)


def broken_detect() -> Tool:
    def run(args: DetectArgs, ctx) -> DetectResult:
        raise ToolError("weights 'scenes-yolo' not found; train them with agentkit train")

    return Tool("detect", "Find objects (test double).", DetectArgs, DetectResult, run)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "scene.png"
    Image.new("RGB", (40, 30), (90, 90, 90)).save(p)
    return p


def ask(tmp_path, image, tool, replies, question, **opts):
    agent = Agent(
        ScriptedBackend(replies),
        tools=ToolRegistry([tool]),
        runs_dir=tmp_path / "runs",
        options=Options(**opts),
    )
    return agent.ask(question, images=[image])


def check(res) -> dict:
    step = next(s for s in res.steps if s.role == "summarizer" and s.result)
    return step.result


SCENE = [obj("cube", "red", 0.9), obj("sphere", "blue", 0.85), obj("cylinder", "green", 0.8)]


def test_claims_and_existence_phrases_use_the_scene_vocabulary():
    claims = extract_claims("There is a big shiny Ball and two grey blocks, but no red cylinder.")
    assert [(c.attrs, c.shape) for c in claims] == [
        ({"material": "metal", "size": "large"}, "sphere"),
        ({"color": "gray"}, "cube"),
    ]
    assert extract_claims("a rubber thing")[0].shape is None
    assert extract_claims("2 things") == []  # a bare "thing" claims nothing checkable
    e = existence_claim("Is there a small metal sphere?")
    assert e and e.attrs == {"size": "small", "material": "metal"} and e.shape == "sphere"
    assert existence_claim("Are there any cubes?").shape == "cube"
    assert existence_claim("Are there any cylinders in front of the gray ball?") is None
    assert existence_claim("How many red cubes are there?") is None
    assert match(obj("cube", None, 0.9), extract_claims("red cube")[0]) == "possible"
    assert match(obj("cube", "blue", 0.9), extract_claims("red cube")[0]) is None
    assert match({"label": "person", "score": 0.9}, extract_claims("red cube")[0]) is None


def test_confident_detection_flips_a_wrong_no_and_reuses_the_run_detection(tmp_path, image):
    calls: list = []
    replies = [
        'Thought: look\nAction: detect\nAction Input: {"image": "image_0"}',
        "Thought: I see no sphere\nFinal Answer: no",
    ]
    res = ask(tmp_path, image, fake_detect(SCENE, calls), replies, "Is there a blue sphere?")
    assert res.answer == "yes"
    assert len(calls) == 1  # the controller's detect was reused, not run again
    r = check(res)
    assert r["changed"] and r["answer"] == "no" and r["corrected"] == "yes"
    assert r["checked"][0]["claim"] == "existence" and r["checked"][0]["shape"] == "sphere"
    events = [json.loads(x) for x in Path(res.trace).read_text().splitlines()]
    assert any(e["event"] == "step" and e.get("result", {}) == r for e in events)


def test_low_score_contradiction_is_flagged_not_flipped(tmp_path, image):
    scene = [obj("cube", "red", 0.9), obj("sphere", "blue", 0.3)]
    res = ask(tmp_path, image, fake_detect(scene), ["Final Answer: no"], "Is there a blue sphere?")
    assert res.answer == "no"
    r = check(res)
    assert not r["changed"] and r["flags"] and "possible blue sphere" in r["flags"][0]


def test_yes_flipped_when_nothing_matches_and_the_detector_sees_well(tmp_path, image):
    calls: list = []
    q = "Are there any purple cylinders?"
    res = ask(tmp_path, image, fake_detect(SCENE, calls), ["Final Answer: yes"], q)
    assert res.answer == "no" and calls == [{"image": "image_0", "color": None, "conf": 0.25}]
    assert [s.role for s in res.steps] == ["controller", "executor", "summarizer"]
    assert res.steps[1].tool == "detect"  # the verification's own detect is on record
    weak = [obj("cube", "red", 0.3)]
    res = ask(tmp_path, image, fake_detect(weak), ["Final Answer: yes"], q)
    assert res.answer == "yes" and check(res)["flags"]


def test_named_object_not_found_corrects_the_answer(tmp_path, image):
    q = "What is left of the cube?"
    res = ask(tmp_path, image, fake_detect(SCENE), ["Final Answer: a red sphere"], q)
    assert res.answer == "No red sphere is visible."
    weak = [obj("cube", "red", 0.2)]
    res = ask(tmp_path, image, fake_detect(weak), ["Final Answer: a red sphere"], q)
    assert res.answer == "a red sphere (insufficient evidence: no red sphere was detected)"
    res = ask(tmp_path, image, fake_detect(SCENE), ["Final Answer: the blue sphere"], q)
    assert res.answer == "the blue sphere" and not check(res)["changed"]


def test_thought_claims_are_flagged_only(tmp_path, image):
    replies = ["Thought: the yellow cube is there\nFinal Answer: 3"]
    res = ask(tmp_path, image, fake_detect(SCENE), replies, "How many things?")
    assert res.answer == "3"
    assert "yellow cube" in check(res)["flags"][0]


def test_failed_detect_keeps_the_answer_unverified(tmp_path, image):
    res = ask(tmp_path, image, broken_detect(), ["Final Answer: no"], "Is there a red cube?")
    assert res.answer == "no"
    step = res.steps[-1]
    assert step.role == "summarizer" and "not verified" in step.error
    assert "scenes-yolo" in step.error and step.result["verified"] is False


def test_nothing_to_check_or_verification_off_adds_no_step(tmp_path, image):
    calls: list = []
    res = ask(tmp_path, image, fake_detect(SCENE, calls), ["Final Answer: 3"], "How many cubes?")
    assert res.answer == "3" and [s.role for s in res.steps] == ["controller"]
    res = ask(
        tmp_path, image, fake_detect(SCENE, calls), ["Final Answer: no"], "Is there a red cube?",
        verify=False,
    )  # fmt: skip
    assert res.answer == "no" and calls == []
