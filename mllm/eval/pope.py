"""``agentkit eval pope``: POPE-style object-hallucination probes on held-out scenes.

POPE (Li et al., 2023) asks "Is there a <object> in the image?" about objects that are present
(answer yes) and absent (answer no), with the absent ones drawn three ways: ``random``,
``popular`` (the objects most frequent across the set) and ``adversarial`` (the objects most
often seen together with what is present). In the scene world an object is a colour-shape pair
("red cube"); the adversarial negatives are the absent pairs that share a colour or a shape with
the most present objects, which are the easiest to confuse.

Two ways to answer:

* ``direct`` — the model alone, one turn with the image (what DPO trains; the same prompt as
  :func:`agentkit.mllm.train.dpo.prompt_messages`), answered by likelihood ("Yes." vs "No.")
  or by its greedy reply;
* ``agent`` — the question through the agent graph with a planner, so the answer is grounded in
  the detector's output.

Per setting: accuracy, precision, recall, F1 (yes is the positive class), the yes-ratio, and how
many replies were neither yes nor no.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError

SETTINGS = ("random", "popular", "adversarial")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")


def _pairs(scene: dict[str, Any]) -> set[tuple[str, str]]:
    return {(o["color"], o["shape"]) for o in scene.get("objects") or []}


def load_scenes(scenes_dir: Path, limit: int = 0) -> list[tuple[dict[str, Any], Path]]:
    if not scenes_dir.is_dir():
        raise ConfigError(
            f"no scenes at {scenes_dir}; render held-out ones with `agentkit data gen scenes "
            f"--out {scenes_dir} --split heldout`"
        )
    out = []
    for p in sorted(scenes_dir.glob("scene_*.json")):
        scene = json.loads(p.read_text())
        image = scenes_dir / str(scene.get("image_filename", p.with_suffix(".png").name))
        if image.is_file() and scene.get("objects"):
            out.append((scene, image))
        if limit and len(out) >= limit:
            break
    if not out:
        raise ConfigError(f"{scenes_dir} holds no scene JSON with objects and its image")
    return out


def probes(
    scenes: Sequence[tuple[dict[str, Any], Path]],
    per_scene: int = 3,
    settings: Sequence[str] = SETTINGS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``per_scene`` present and ``per_scene`` absent objects per scene and setting (fewer
    present ones when the scene has fewer pairs; the same number of absent ones then)."""
    bad = sorted(set(settings) - set(SETTINGS))
    if bad:
        raise ConfigError(f"unknown POPE settings {bad}; choose from {list(SETTINGS)}")
    rng = random.Random(seed)
    frequency = Counter(p for scene, _ in scenes for p in _pairs(scene))
    everything = [(c, s) for c in COLORS for s in SHAPES]
    out: list[dict[str, Any]] = []
    for scene, image in scenes:
        present = sorted(_pairs(scene))
        absent = [p for p in everything if p not in present]
        positives = rng.sample(present, min(per_scene, len(present)))
        for setting in settings:
            if setting == "random":
                negatives = rng.sample(absent, len(positives))
            elif setting == "popular":
                ranked = sorted(absent, key=lambda p: (-frequency[p], rng.random()))
                negatives = ranked[: len(positives)]
            else:  # adversarial: shares a colour or a shape with the most present objects
                near = Counter(p for p in absent for q in present if p[0] == q[0] or p[1] == q[1])
                ranked = sorted(absent, key=lambda p: (-near[p], rng.random()))
                negatives = ranked[: len(positives)]
            for (color, shape), label in [(p, "yes") for p in positives] + [
                (p, "no") for p in negatives
            ]:
                out.append(
                    {
                        "setting": setting,
                        "image": str(image),
                        "object": f"{color} {shape}",
                        "question": f"Is there a {color} {shape} in the image?",
                        "label": label,
                        "scene": scene.get("image_filename", image.name),
                    }  # fmt: skip
                )
    return out


def yes_no(text: str | None) -> str | None:
    """yes / no from a reply ("Yes.", "Final Answer: no", "True"), else None."""
    if not text:
        return None
    low = text.lower()
    if "final answer:" in low:
        low = low.rsplit("final answer:", 1)[1]
    for word in low.replace(".", " ").replace(",", " ").split():
        if word in ("yes", "true"):
            return "yes"
        if word in ("no", "false"):
            return "no"
    return None


def metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    tp = sum(r["label"] == "yes" and r["predicted"] == "yes" for r in records)
    fp = sum(r["label"] == "no" and r["predicted"] == "yes" for r in records)
    fn = sum(r["label"] == "yes" and r["predicted"] != "yes" for r in records)
    correct = sum(r["label"] == r["predicted"] for r in records)
    n = len(records)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": n,
        "accuracy": round(correct / n, 4) if n else None,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "yes_ratio": round(sum(r["predicted"] == "yes" for r in records) / n, 4) if n else None,
        "unanswered": sum(r["predicted"] is None for r in records),
    }


def direct_answerer(model: str, scoring: str = "likelihood") -> Callable[[dict[str, Any]], str]:
    """The model alone: the probe and the image in one user turn, as DPO trains it.

    ``likelihood`` answers with whichever of "Yes." / "No." the model finds more probable (what
    DPO moves, and an answer even from a model that would reply in another format);
    ``generate`` reads yes/no from its greedy reply (an unreadable reply is unanswered).
    Likelihood needs a local model (``hf:``)."""
    from agentkit.mllm.backends.base import Message, load_backend

    if scoring not in ("likelihood", "generate"):
        raise ConfigError(f"scoring must be likelihood or generate, not {scoring!r}")
    backend = load_backend(model)
    score: Callable[..., list[float]] | None = getattr(backend, "score", None)
    if scoring == "likelihood" and score is None:
        raise ConfigError(f"{model} cannot score replies; use --scoring generate")

    def answer(probe: dict[str, Any]) -> str:
        msg = Message(role="user", content=probe["question"], images=[Path(probe["image"])])
        if scoring == "generate":
            return backend.generate([msg], max_new_tokens=8).text
        assert score is not None  # checked above for likelihood scoring
        yes, no = score([msg], ["Yes.", "No."])
        return "yes" if yes > no else "no"

    return answer


def agent_answerer(model: str, planner: str, runs_dir: Path) -> Callable[[dict[str, Any]], str]:
    """The probe through the agent graph (tools ground the answer)."""
    from agentkit.graph import Agent
    from agentkit.mllm.backends.base import load_backend
    from agentkit.runtime import Options

    agent = Agent(
        load_backend(model), planner=planner, runs_dir=runs_dir, options=Options()
    )  # fmt: skip  (the model's own prompt style)

    def answer(probe: dict[str, Any]) -> str:
        try:
            return agent.ask(probe["question"], images=[probe["image"]], max_steps=8).answer or ""
        except Exception as e:  # noqa: BLE001  a failed run is an unanswered probe
            return f"error: {type(e).__name__}"

    return answer


def evaluate(
    answerers: dict[str, Callable[[dict[str, Any]], str]],
    scenes_dir: Path,
    *,
    limit: int = 0,
    per_scene: int = 3,
    settings: Sequence[str] = SETTINGS,
    seed: int = 0,
    on_item: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Every answerer on the same probes; a report per answerer and setting."""
    items = probes(load_scenes(scenes_dir, limit), per_scene, settings, seed)
    report: dict[str, Any] = {"scenes_dir": str(scenes_dir), "probes": len(items), "results": {}}
    total, done = len(items) * len(answerers), 0
    for name, answer in answerers.items():
        records = []
        for probe in items:
            records.append(probe | {"predicted": yes_no(answer(probe))})
            done += 1
            if on_item:
                on_item(done, total)
        report["results"][name] = {
            s: metrics([r for r in records if r["setting"] == s]) for s in settings
        }
    return report


__all__ = [
    "SETTINGS",
    "agent_answerer",
    "direct_answerer",
    "evaluate",
    "metrics",
    "probes",
    "yes_no",
]
