"""Sim-to-real check: questions about one real CLEVR image (never trained on), through the agent.

The embedded default learns only from the project's own renders; this asks 15 questions about the
CLEVR v1.0 validation image ``CLEVR_val_000013.png`` (CC BY 4.0; not shipped here, pass its path)
(29 more in CLEVR's other words, :data:`MORE_QUESTIONS`, and 16 in CLEVR's own forms,
:data:`CLEVR_FORMS`) whose answers were read off the
image by hand: a large purple metal cube, a large blue metal
sphere, a large gray metal cylinder, a small red metal cube, a small red rubber sphere, a small
cyan metal cylinder and a small gray rubber cube.

    .venv/bin/python benchmarks/real_image.py [--image PATH] [--model hf:agentkit-mllm]
                                              [--planner program] [--candidates 4]
                                              [--branches program] [--detect-weights PT]

First the detect tool against the image's hand-made inventory (:data:`INVENTORY`, in CLEVR's
scene format: each object's attributes and a point on it, read off the image by eye; scored by
``agentkit eval inventory``'s code), then one JSON line per question (answer, program, seconds)
and the number right (of the first 15, of the 29 more, and of the 16 in CLEVR's forms).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from agentkit.graph import Agent
from agentkit.mllm.eval.vqa import is_correct
from agentkit.runtime import Options

DEFAULT_IMAGE = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "clevr_val_000013.png"
)
#: The image's objects in CLEVR's scene format (``pixel_coords``: a point near each one's centre).
INVENTORY = {
    "image_filename": DEFAULT_IMAGE.name,
    "objects": [
        {**dict(zip(("size", "color", "material", "shape"), name.split(), strict=True)),
         "pixel_coords": list(point)}
        for name, point in [
            ("large purple metal cube", (151, 107)),
            ("large blue metal sphere", (218, 121)),
            ("large gray metal cylinder", (314, 132)),
            ("small red metal cube", (89, 157)),
            ("small red rubber sphere", (386, 174)),
            ("small cyan metal cylinder", (292, 192)),
            ("small gray rubber cube", (172, 226)),
        ]
    ],
}  # fmt: skip
QUESTIONS = [
    ("How many spheres are there?", "2"),
    ("How many cubes are there?", "3"),
    ("Are there any cylinders?", "yes"),
    ("What color is the large sphere?", "blue"),
    ("How many metal objects are there?", "5"),
    ("What shape is the small cyan object?", "cylinder"),
    ("Is there a green object?", "no"),
    ("How many red objects are there?", "2"),
    ("What size is the purple cube?", "large"),
    ("What material is the small red sphere?", "rubber"),
    ("How many objects are left of the blue sphere?", "3"),
    ("What color is the small cube that is in front of the blue sphere?", "gray"),
    ("Is the large cylinder the same color as the small cube in front of the sphere?", "yes"),
    ("How many large things are there?", "3"),
    ("Are there any yellow cylinders?", "no"),
]
#: More questions about the same image (2026-12-05), in CLEVR's other words (shiny, matte, ball,
#: block, big, tiny) and phrasings (what number, the number of ... greater than, either ... or,
#: made of): 29, answers again read off the image by eye. The first 15 keep their own figure.
MORE_QUESTIONS = [
    ("How many shiny things are there?", "5"),
    ("How many matte objects are there?", "2"),
    ("What color is the big ball?", "blue"),
    ("How many blocks are there?", "3"),
    ("Is there a big cylinder?", "yes"),
    ("What is the material of the tiny gray cube?", "rubber"),
    ("What shape is the purple thing?", "cube"),
    ("How many tiny objects are there?", "4"),
    ("Are there any metallic spheres?", "yes"),
    ("What color is the large cylinder?", "gray"),
    ("How many objects are to the right of the cyan cylinder?", "2"),
    ("Is there a red sphere to the right of the gray cylinder?", "yes"),
    ("What material is the big purple block?", "metal"),
    ("How many rubber cubes are there?", "1"),
    ("Are there more spheres than cylinders?", "no"),
    ("Are there the same number of spheres and cylinders?", "yes"),
    ("Is the number of cubes greater than the number of spheres?", "yes"),
    ("What number of spheres are there?", "2"),
    ("How many things are either red or blue?", "3"),
    ("Is there anything else that has the same color as the small red cube?", "yes"),
    ("What is the color of the small rubber sphere?", "red"),
    ("How many objects are behind the gray rubber cube?", "6"),
    ("Is the blue sphere made of metal?", "yes"),
    ("Are there any green things?", "no"),
    ("How many objects are there?", "7"),
    ("What color is the large cube?", "purple"),
    ("What is the shape of the small cyan object?", "cylinder"),
    ("Is the red ball made of rubber?", "yes"),
    ("How many cylinders are there?", "2"),
]

#: The same image in CLEVR's own question forms (2026-12-06, later), which the templates never
#: used ("There is a X; ... it?", "Are the A and the B the same color?", "What number of other
#: ...", "the other X that has the same ...": docs/worlds.md): 16, answers again read off the
#: image (left / right by the objects' x, front / behind by their y in the picture).
CLEVR_FORMS = [
    ("There is a large sphere; what color is it?", "blue"),
    ("There is a small cyan object; what shape is it?", "cylinder"),
    ("There is a purple cube; how big is it?", "large"),
    ("There is a small red sphere; what is it made of?", "rubber"),
    ("There is a blue sphere; how many objects are left of it?", "3"),
    ("There is a small cyan cylinder; how many things are behind it?", "5"),
    ("There is a gray rubber cube; are there any spheres in front of it?", "no"),
    ("There is a cylinder that is behind the small red sphere; what size is it?", "large"),
    ("The large cylinder is what color?", "gray"),
    ("Are there an equal number of spheres and cylinders?", "yes"),
    ("What number of other objects are the same size as the purple cube?", "2"),
    ("Are the large cylinder and the small rubber cube the same color?", "yes"),
    ("There is a gray rubber cube; is it the same size as the cyan cylinder?", "yes"),
    ("How many other cubes have the same size as the small cyan cylinder?", "2"),
    ("What color is the other metal thing that has the same shape as the purple cube?", "red"),
    ("Is there another rubber thing that has the same size as the red cube?", "yes"),
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--model", default="hf:agentkit-mllm")
    ap.add_argument("--planner", default=None, help="default: what the model folder declares")
    ap.add_argument("--candidates", type=int, default=Options.candidates)
    ap.add_argument(
        "--branches", default=None, help="tree's branches: react | program (default: the model's)"
    )
    ap.add_argument(
        "--detect-weights", default=None, help="a detector checkpoint (default: shipped)"
    )
    a = ap.parse_args()
    if not a.image.is_file():
        raise SystemExit(
            f"no image at {a.image}: download CLEVR v1.0 and pass "
            "--image CLEVR_v1.0/images/val/CLEVR_val_000013.png"
        )
    from agentkit.mllm.eval.inventory import evaluate_inventory

    inv = evaluate_inventory(
        [{**INVENTORY, "image_filename": a.image.name}], a.image.parent, weights=a.detect_weights
    )
    print(json.dumps({"inventory": {k: inv[k] for k in ("objects", "recall", "precision",
                      "attribute_accuracy", "objects_all_right", "errors")}}), flush=True)  # fmt: skip
    agent = Agent(
        a.model,
        planner=a.planner,
        runs_dir=tempfile.mkdtemp(prefix="agentkit-real-"),
        options=Options(candidates=a.candidates, branches=a.branches),
        tool_weights={"detect": a.detect_weights} if a.detect_weights else None,
    )
    right = []
    for question, expected in QUESTIONS + MORE_QUESTIONS + CLEVR_FORMS:
        t = time.perf_counter()
        res = agent.ask(question, images=[a.image])
        ok = is_correct(res.answer, expected)
        right.append(ok)
        program = next(
            (s.observation for s in res.steps if s.role == "controller" and s.observation), ""
        )
        row = {"question": question, "expected": expected, "answer": res.answer, "correct": ok,
               "seconds": round(time.perf_counter() - t, 2), "program": program}  # fmt: skip
        print(json.dumps(row), flush=True)
    first, more = len(QUESTIONS), len(QUESTIONS) + len(MORE_QUESTIONS)
    print(json.dumps({"correct": sum(right[:first]), "n": first,
                      "more_correct": sum(right[first:more]), "more_n": len(MORE_QUESTIONS),
                      "clevr_forms_correct": sum(right[more:]), "clevr_forms_n": len(CLEVR_FORMS),
                      "model": a.model}))  # fmt: skip


if __name__ == "__main__":
    main()
