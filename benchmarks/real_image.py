"""Sim-to-real check: questions about one real CLEVR image (never trained on), through the agent.

The embedded default learns only from the project's own renders; this asks 15 questions about the
CLEVR v1.0 validation image ``CLEVR_val_000013.png`` (CC BY 4.0; not shipped here, pass its path)
whose answers were read off the image by hand: a large purple metal cube, a large blue metal
sphere, a large gray metal cylinder, a small red metal cube, a small red rubber sphere, a small
cyan metal cylinder and a small gray rubber cube.

    .venv/bin/python benchmarks/real_image.py [--image PATH] [--model hf:agentkit-mllm]
                                              [--planner program] [--candidates 4]
                                              [--branches program]

First the detect tool against the image's hand-made inventory (:data:`INVENTORY`, in CLEVR's
scene format: each object's attributes and a point on it, read off the image by eye; scored by
``agentkit eval inventory``'s code), then one JSON line per question (answer, program, seconds)
and the number right.
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
    a = ap.parse_args()
    if not a.image.is_file():
        raise SystemExit(
            f"no image at {a.image}: download CLEVR v1.0 and pass "
            "--image CLEVR_v1.0/images/val/CLEVR_val_000013.png"
        )
    from agentkit.mllm.eval.inventory import evaluate_inventory

    inv = evaluate_inventory([{**INVENTORY, "image_filename": a.image.name}], a.image.parent)
    print(json.dumps({"inventory": {k: inv[k] for k in ("objects", "recall", "precision",
                      "attribute_accuracy", "objects_all_right", "errors")}}), flush=True)  # fmt: skip
    agent = Agent(
        a.model,
        planner=a.planner,
        runs_dir=tempfile.mkdtemp(prefix="agentkit-real-"),
        options=Options(candidates=a.candidates, branches=a.branches),
    )
    right = 0
    for question, expected in QUESTIONS:
        t = time.perf_counter()
        res = agent.ask(question, images=[a.image])
        ok = is_correct(res.answer, expected)
        right += ok
        program = next(
            (s.observation for s in res.steps if s.role == "controller" and s.observation), ""
        )
        row = {"question": question, "expected": expected, "answer": res.answer, "correct": ok,
               "seconds": round(time.perf_counter() - t, 2), "program": program}  # fmt: skip
        print(json.dumps(row), flush=True)
    print(json.dumps({"correct": right, "n": len(QUESTIONS), "model": a.model}))


if __name__ == "__main__":
    main()
