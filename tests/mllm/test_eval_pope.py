"""agentkit eval pope: probes drawn as POPE draws them, metrics, and the agent path grounded by
the shipped detector."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

# Imported before a test patches base.load_backend: a first import of agentkit.graph under the
# patch would bind its own `load_backend` to the test double for the rest of the session.
import agentkit.graph  # noqa: F401
from agentkit.errors import ConfigError
from agentkit.mllm.backends.base import Generation, Message
from agentkit.mllm.eval.pope import agent_answerer, evaluate, metrics, probes, yes_no

SCENES = Path(__file__).resolve().parents[2] / "examples" / "scenes"


def _scenes():
    out = []
    for p in sorted(SCENES.glob("scene_*.json")):
        scene = json.loads(p.read_text())
        out.append((scene, SCENES / scene["image_filename"]))
    return out


def test_probes_are_balanced_and_true_to_the_scene():
    scenes = _scenes()
    items = probes(scenes, per_scene=3)
    by_scene = {
        s["image_filename"]: {(o["color"], o["shape"]) for o in s["objects"]} for s, _ in scenes
    }
    for it in items:
        color, shape = it["object"].split()
        assert ((color, shape) in by_scene[it["scene"]]) == (it["label"] == "yes")
    for setting in ("random", "popular", "adversarial"):
        labels = [it["label"] for it in items if it["setting"] == setting]
        assert labels.count("yes") == labels.count("no") > 0
    # adversarial negatives share a colour or a shape with something in the scene
    for it in items:
        if it["setting"] == "adversarial" and it["label"] == "no":
            color, shape = it["object"].split()
            assert any(c == color or s == shape for c, s in by_scene[it["scene"]])
    assert probes(scenes, seed=1) != items and probes(scenes) == items
    with pytest.raises(ConfigError, match="unknown POPE settings"):
        probes(scenes, settings=["hard"])


def test_yes_no_and_metrics():
    assert yes_no("Yes.") == "yes" and yes_no("Final Answer: no") == "no"
    assert yes_no("True") == "yes" and yes_no("I see a cube") is None and yes_no(None) is None
    recs = [{"label": "yes", "predicted": "yes"}, {"label": "no", "predicted": "yes"},
            {"label": "yes", "predicted": None}, {"label": "no", "predicted": "no"}]  # fmt: skip
    m = metrics(recs)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["f1"] == 0.5 and m["yes_ratio"] == 0.5 and m["unanswered"] == 1


def test_oracle_and_always_yes():
    truth = {}
    for scene, image in _scenes():
        truth[str(image)] = {f"{o['color']} {o['shape']}" for o in scene["objects"]}
    report = evaluate(
        {
            "oracle": lambda p: "Yes." if p["object"] in truth[p["image"]] else "No.",
            "yes": lambda p: "Yes, there is.",
        },  # fmt: skip
        SCENES,
    )
    for s in ("random", "popular", "adversarial"):
        assert report["results"]["oracle"][s]["f1"] == 1.0
        always = report["results"]["yes"][s]
        assert always["yes_ratio"] == 1.0 and always["precision"] == 0.5
        assert always["f1"] == pytest.approx(2 / 3, abs=1e-3)
    with pytest.raises(ConfigError, match="data gen scenes"):
        evaluate({"x": lambda p: "yes"}, SCENES / "missing")


class RuleController:
    """A test double for the program planner's controller: reads the probe's object from the
    question and writes the detect-select-exist program a trained core should write."""

    name = "rule-controller"

    def generate(self, messages: list[Message], **kw) -> Generation:
        q = re.search(r"Is there a (\w+) (\w+) in the image", messages[-1].content)
        assert q, messages[-1].content
        program = (
            "Thought: detect, keep the object, check it exists.\nProgram:\n```\n"
            "objs = detect(image=image_0)\n"
            f'hits = select(objects=objs, color="{q[1]}", shape="{q[2]}")\n'
            "e = exist(objects=hits)\nANSWER = e\n```"
        )
        return Generation(text=program, model=self.name)


@pytest.mark.slow
def test_agent_answers_are_grounded_by_the_detector(tmp_path, monkeypatch):
    import agentkit.mllm.backends.base as base

    monkeypatch.setattr(base, "load_backend", lambda spec: RuleController())
    answer = agent_answerer("rule", "program", tmp_path / "runs")
    report = evaluate({"agent": answer}, SCENES, limit=3, settings=["adversarial"])
    res = report["results"]["agent"]["adversarial"]
    assert res["n"] == 18 and res["unanswered"] == 0
    assert res["f1"] >= 0.9  # the shipped detector reads colours and shapes of these renders


def test_direct_answers_by_likelihood_or_by_reply(monkeypatch):
    import agentkit.mllm.backends.base as base
    from agentkit.mllm.eval.pope import direct_answerer

    class Scorer:
        name = "scorer"

        def __init__(self):
            self.asked = []

        def score(self, messages, candidates):
            self.asked.append((messages[0].content, candidates))
            return [-2.0, -1.0]  # "No." more likely

        def generate(self, messages, **kw):
            return Generation(text="Thought: maybe", model=self.name)

    fake = Scorer()
    monkeypatch.setattr(base, "load_backend", lambda spec: fake)
    probe = {"question": "Is there a red cube in the image?", "image": "x.png"}
    assert direct_answerer("m")(probe) == "no"
    assert fake.asked == [("Is there a red cube in the image?", ["Yes.", "No."])]
    assert yes_no(direct_answerer("m", "generate")(probe)) is None  # unanswered, not guessed
    with pytest.raises(ConfigError, match="scoring"):
        direct_answerer("m", "vote")
    monkeypatch.setattr(base, "load_backend", lambda spec: RuleController())
    with pytest.raises(ConfigError, match="cannot score"):
        direct_answerer("m")
