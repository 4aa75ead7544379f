"""How the agent answers questions in a user's words rather than the question templates' words,
with and without rewording (``Options.reword``), on held-out renders.

The question generator (``agentkit data gen questions``) words every question as one of CLEVR's
templates, and the embedded core learned its programs from those. Users write "How many red
things?", "Count the spheres.", "How many spheres are made of metal?", "Is the red cube large?",
"Can you count the green things?". This writes such questions about each scene of a held-out
folder, with their answers from the scene's ground truth (seeded), and asks each twice through
the same agent: with rewording on (the default) and off. It prints one JSON line per question
and the number right per wording.

    .venv/bin/python benchmarks/phrasings.py [--scenes data/scenes-heldout] [--per-scene 6]
                                             [--seed 0] [--model hf:agentkit-mllm] [--limit N]

The scenes: ``agentkit data gen scenes --out data/scenes-heldout --n 20 --seed 900000
--samples 24 --split val`` (docs/vqa.md); without them, the six shipped example scenes. A wording that needs one object ("Is the red cube
large?") is asked only where exactly one object fits it.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from agentkit.graph import Agent
from agentkit.mllm.eval.vqa import is_correct
from agentkit.runtime import Options

Obj = dict[str, str]
#: A wording: (name, make(objects, rng) -> (question, answer) or None where it does not apply).
Wording = tuple[str, Callable[[list[Obj], random.Random], tuple[str, str] | None]]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scenes"
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
MATERIALS = ("rubber", "metal")


def _count(objects: list[Obj], **want: str) -> int:
    return sum(all(o[k] == v for k, v in want.items()) for o in objects)


def _unique(objects: list[Obj], rng: random.Random, *keys: str) -> Obj | None:
    """An object that is the only one with its values of ``keys``, or None."""
    alone = [o for o in objects if _count(objects, **{k: o[k] for k in keys}) == 1]
    return rng.choice(alone) if alone else None


def _count_color(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    color = rng.choice(COLORS)
    return f"How many {color} {rng.choice(('things', 'objects'))}?", str(
        _count(objects, color=color)
    )


def _count_shape(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    shape = rng.choice(SHAPES)
    return f"Count the {shape}s.", str(_count(objects, shape=shape))


def _made_of(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    shape, material = rng.choice(SHAPES), rng.choice(MATERIALS)
    answer = _count(objects, shape=shape, material=material)
    return f"How many {shape}s are made of {material}?", str(answer)


def _shapes_are(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    shape, color = rng.choice(SHAPES), rng.choice(COLORS)
    return f"How many {shape}s are {color}?", str(_count(objects, shape=shape, color=color))


def _is_it(objects: list[Obj], rng: random.Random) -> tuple[str, str] | None:
    o = _unique(objects, rng, "color", "shape")
    if o is None:
        return None
    size = rng.choice(("small", "large"))
    return f"Is the {o['color']} {o['shape']} {size}?", "yes" if o["size"] == size else "no"


def _which_color(objects: list[Obj], rng: random.Random) -> tuple[str, str] | None:
    o = _unique(objects, rng, "material", "shape")
    return None if o is None else (f"Which color is the {o['material']} {o['shape']}?", o["color"])


def _made_of_what(objects: list[Obj], rng: random.Random) -> tuple[str, str] | None:
    o = _unique(objects, rng, "color", "shape")
    return None if o is None else (f"What is the {o['color']} {o['shape']} made of?", o["material"])


def _any_of(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    shape, color = rng.choice(SHAPES), rng.choice(COLORS)
    found = _count(objects, shape=shape, color=color) > 0
    return f"Are any of the {shape}s {color}?", "yes" if found else "no"


def _can_you_count(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    color = rng.choice(COLORS)
    return f"Can you count the {color} things?", str(_count(objects, color=color))


def _number_of(objects: list[Obj], rng: random.Random) -> tuple[str, str]:
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    return f"What's the number of {color} {shape}s?", str(_count(objects, color=color, shape=shape))


def _tell_me(objects: list[Obj], rng: random.Random) -> tuple[str, str] | None:
    o = _unique(objects, rng, "material", "shape")
    return (
        None
        if o is None
        else (f"Tell me the color of the {o['material']} {o['shape']}.", o["color"])
    )


WORDINGS: list[Wording] = [
    ("how many <color> things?", _count_color),
    ("count the <shape>s.", _count_shape),
    ("how many <shape>s are made of <material>?", _made_of),
    ("how many <shape>s are <color>?", _shapes_are),
    ("is the <color> <shape> <size>?", _is_it),
    ("which color is the <material> <shape>?", _which_color),
    ("what is the <color> <shape> made of?", _made_of_what),
    ("are any of the <shape>s <color>?", _any_of),
    ("can you count the <color> things?", _can_you_count),
    ("what's the number of <color> <shape>s?", _number_of),
    ("tell me the color of the <material> <shape>.", _tell_me),
]


def questions(scenes: Path, per_scene: int, seed: int) -> list[dict[str, str]]:
    """``per_scene`` questions about each scene of ``scenes`` (distinct wordings, seeded)."""
    out = []
    for path in sorted(scenes.glob("scene_*.json")):
        scene = json.loads(path.read_text())
        rng = random.Random(f"phrasings:{seed}:{scene['image_filename']}")
        objects = [
            {k: o[k] for k in ("color", "shape", "material", "size")} for o in scene["objects"]
        ]
        image = str(scenes / scene["image_filename"])
        asked = []
        for name, make in rng.sample(WORDINGS, len(WORDINGS)):
            if len(asked) == per_scene:
                break
            if (qa := make(objects, rng)) is not None:
                asked.append(
                    {"image": image, "wording": name, "question": qa[0], "expected": qa[1]}
                )
        out.extend(asked)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenes", type=Path, default=None,
        help="default: data/scenes-heldout, else the shipped examples/scenes (seeds 0-5, "
        "outside every training range)",
    )  # fmt: skip
    ap.add_argument("--per-scene", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="hf:agentkit-mllm")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    if a.scenes is None:
        held_out = Path("data/scenes-heldout")
        a.scenes = held_out if any(held_out.glob("scene_*.json")) else EXAMPLES
        print(json.dumps({"scenes": str(a.scenes)}), flush=True)
    if not any(a.scenes.glob("scene_*.json")):
        raise SystemExit(f"no scenes in {a.scenes}: see this script's docstring for the command")
    runs = Path(tempfile.mkdtemp(prefix="agentkit-phrasings-"))
    agents = {
        reword: Agent(a.model, runs_dir=runs, options=Options(reword=reword))
        for reword in (True, False)
    }
    right: Counter[tuple[str, bool]] = Counter()
    asked: Counter[str] = Counter()
    for q in questions(a.scenes, a.per_scene, a.seed)[: a.limit]:
        asked[q["wording"]] += 1
        row: dict[str, object] = dict(q)
        for reword, agent in agents.items():
            answer = agent.ask(q["question"], images=[q["image"]]).answer or ""
            ok = is_correct(answer, q["expected"])
            right[q["wording"], reword] += ok
            row["reworded" if reword else "not reworded"] = answer
        print(json.dumps(row), flush=True)
    for name in asked:
        print(f"{name:45} {right[name, True]:3} / {asked[name]:3} reworded, "
              f"{right[name, False]:3} not")  # fmt: skip
    total = sum(asked.values())
    on, off = (sum(right[n, r] for n in asked) for r in (True, False))
    print(json.dumps({"questions": total, "right_reworded": on, "right_not_reworded": off,
                      "model": a.model}))  # fmt: skip


if __name__ == "__main__":
    main()
