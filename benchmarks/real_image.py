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
and the number right (of the first 15, of the 29 more, of the 16 in CLEVR's forms, and of the
85 + 40 in users' words, of the 31 + 8 superlatives and of the 11 ordinals).
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


#: The same image in users' words (2026-12-07, evening): short forms ("Any cylinders?", "Number
#: of spheres?"), a value said of an object ("Is the purple cube red?"), "fewer", "outnumber",
#: "Are the A and the B the same material?". The first 85 (:data:`USER_WORDS`) were asked to
#: find what the agent misread, and the rules of docs/planners.md ("Users' words about a real
#: image") were written for those it missed; the 40 of :data:`USER_WORDS_LATER` were written
#: before any of those rules and first run with none, a check on them. Answers read off the
#: image as above.
USER_WORDS = [
    ("How many objects are in the image?", "7"),
    ("How many metal cubes are there?", "2"),
    ("Count the cylinders.", "2"),
    ("How many small things are there?", "4"),
    ("how many balls are there", "2"),
    ("How many large metal objects are there?", "3"),
    ("How many objects are gray?", "2"),
    ("How many things are not cubes?", "4"),
    ("How many rubber objects?", "2"),
    ("What is the color of the metal sphere?", "blue"),
    ("What colour is the big cylinder?", "gray"),
    ("What color is the tiny ball?", "red"),
    ("What shape is the blue object?", "sphere"),
    ("What is the shape of the gray rubber object?", "cube"),
    ("Is the purple cube metallic?", "yes"),
    ("What is the gray cylinder made of?", "metal"),
    ("Is the small gray cube shiny?", "no"),
    ("Is there a yellow object?", "no"),
    ("Are there any brown things?", "no"),
    ("Is there a metal cylinder?", "yes"),
    ("Is there a rubber cylinder?", "no"),
    ("Is there a large red object?", "no"),
    ("Is the blue sphere to the left of the gray cylinder?", "yes"),
    ("How many objects are right of the purple cube?", "5"),
    ("Is there anything to the left of the red metal cube?", "no"),
    ("Are there more metal things than rubber things?", "yes"),
    ("Are there fewer cubes than cylinders?", "no"),
    ("Is the number of red objects equal to the number of gray objects?", "yes"),
    ("Is the red sphere the same material as the gray cube?", "yes"),
    ("Is the purple cube the same size as the blue sphere?", "yes"),
    ("Are all the spheres red?", "no"),
    ("Are all cubes made of metal?", "no"),
    ("How many objects are not metal?", "2"),
    ("Any cylinders?", "yes"),
    ("Number of spheres?", "2"),
    ("What's the color of the large ball?", "blue"),
    ("Tell me how many cubes there are.", "3"),
    ("Is there a sphere?", "yes"),
    ("Which shape is the cyan thing?", "cylinder"),
    ("how many red objects", "2"),
    ("What color is the cube that is made of rubber?", "gray"),
    ("What material is the cyan cylinder?", "metal"),
    ("Is there a small purple object?", "no"),
    ("How many spheres are metal?", "1"),
    ("What size is the gray cylinder?", "large"),
    ("How many things are in front of the purple cube?", "6"),
    ("What shape is the object to the left of the purple cube?", "cube"),
    ("Is there a red cube?", "yes"),
    ("Is there a red cylinder?", "no"),
    ("How many red cubes are there?", "1"),
    ("What material is the red cube?", "metal"),
    ("Is the cyan cylinder small?", "yes"),
    ("Is the blue sphere large?", "yes"),
    ("Is the purple cube red?", "no"),
    ("How many spheres are rubber?", "1"),
    ("Are there two spheres?", "yes"),
    ("Are there more than two cubes?", "yes"),
    ("How many cubes are large?", "1"),
    ("How many small metal things?", "2"),
    ("Is there a gray sphere?", "no"),
    ("Does the image contain a purple cube?", "yes"),
    ("Do you see any green spheres?", "no"),
    ("What is the size of the red sphere?", "small"),
    ("How many objects are made of rubber?", "2"),
    ("Is the gray cube made of rubber?", "yes"),
    ("Is the gray cylinder made of rubber?", "no"),
    ("What color is the shiny cube that is small?", "red"),
    ("Which object is purple?", "cube"),
    ("How many cylinders are gray?", "1"),
    ("Are there as many cubes as spheres?", "no"),
    ("Are there equally many spheres and cylinders?", "yes"),
    ("Do the spheres outnumber the cubes?", "no"),
    ("Is the number of metal objects greater than the number of rubber objects?", "yes"),
    ("Are there fewer spheres than cubes?", "yes"),
    ("How many things are either cubes or spheres?", "5"),
    ("How many objects are both small and metal?", "2"),
    ("Is every cylinder metal?", "yes"),
    ("Are any spheres made of rubber?", "yes"),
    ("How many objects are to the left of the gray cylinder?", "5"),
    ("Is the red ball to the right of the cyan cylinder?", "yes"),
    ("How many things are behind the gray cube?", "6"),
    ("What color is the cylinder that is in front of the gray cylinder?", "cyan"),
    ("How many objects are there in total?", "7"),
    ("What is the color of the object that is left of the purple cube?", "red"),
    ("How many matte things are there?", "2"),
]
USER_WORDS_LATER = [
    ("What shape is the thing right of the blue sphere that is small and cyan?", "cylinder"),
    ("How many cubes are to the left of the blue sphere?", "3"),
    ("Is the gray cube in front of the cyan cylinder?", "yes"),
    ("Is there a sphere behind the cyan cylinder?", "yes"),
    ("What color is the sphere that is right of the gray cylinder?", "red"),
    ("How many objects are behind the small red sphere?", "4"),
    ("What material is the object behind the gray rubber cube that is purple?", "metal"),
    ("Are there any cylinders left of the purple cube?", "no"),
    ("How many spheres are in front of the purple cube?", "2"),
    ("What is the shape of the purple object?", "cube"),
    ("What shape is the red metal object?", "cube"),
    ("Is the red rubber thing a sphere?", "yes"),
    ("Is the blue object a cube?", "no"),
    ("How many tiny cylinders are there?", "1"),
    ("How many large objects are metal?", "3"),
    ("How many big spheres?", "1"),
    ("What color is the rubber ball?", "red"),
    ("Which color is the small cylinder?", "cyan"),
    ("What colour is the metallic cylinder that is small?", "cyan"),
    ("What's the shape of the cyan object?", "cylinder"),
    ("Tell me the material of the purple cube.", "metal"),
    ("Is there something green?", "no"),
    ("Is there a large rubber object?", "no"),
    ("Are there any small spheres?", "yes"),
    ("Is there a tiny cyan cylinder?", "yes"),
    ("Are there any metal spheres to the right of the purple cube?", "yes"),
    ("How many objects are right of the red cube?", "6"),
    ("Is the purple cube to the right of the red cube?", "yes"),
    ("Is the gray cylinder left of the blue sphere?", "no"),
    ("What is the color of the large cube?", "purple"),
    ("How many objects are not spheres?", "5"),
    ("Are there more rubber things than metal things?", "no"),
    ("Are the blue sphere and the purple cube the same material?", "yes"),
    ("Is the cyan cylinder the same size as the gray cube?", "yes"),
    ("How many objects have the same color as the red sphere?", "1"),
    ("What size is the object that is the same color as the red cube and is a sphere?", "small"),
    ("Count the gray things.", "2"),
    ("Please tell me how many spheres there are.", "2"),
    ("how many shiny spheres are there", "1"),
    ("Is there a blue cylinder?", "no"),
]


#: Superlatives ("the leftmost object", "the biggest cube", "the thing closest to the camera"),
#: which no template says: the ``program`` planner writes the program for the object's plain
#: name and finds it by ``select``'s ``most`` (docs/planners.md). Written after the nine
#: questions that rule was built from (three of them are here), before it was run on these.
SUPERLATIVES = [
    ("What color is the leftmost object?", "red"),
    ("What shape is the rightmost object?", "sphere"),
    ("What material is the object closest to the camera?", "rubber"),
    ("What color is the object farthest from the camera?", "purple"),
    ("What is the biggest object made of?", "metal"),
    ("What color is the smallest object?", "red"),
    ("Which object is leftmost?", "cube"),
    ("What color is the rightmost cube?", "gray"),
    ("What color is the leftmost cylinder?", "cyan"),
    ("What size is the frontmost sphere?", "small"),
    ("Is the leftmost object a cube?", "yes"),
    ("Is the rightmost object metal?", "no"),
    ("How many objects are left of the biggest sphere?", "3"),
    ("How many objects are right of the leftmost cube?", "6"),
    ("What color is the cube on the far right?", "gray"),
    ("What color is the cylinder furthest back?", "gray"),
    ("Is the smallest sphere red?", "yes"),
    ("What material is the largest cube?", "metal"),
    ("What shape is the thing nearest to the camera?", "cube"),
    ("Is there a sphere to the right of the biggest cylinder?", "yes"),
    ("What color is the smallest cube?", "red"),
    ("Is the farthest sphere blue?", "yes"),
    ("How many cubes are in front of the biggest object?", "2"),
    ("What is the color of the leftmost sphere?", "blue"),
    ("Which object is the smallest?", "sphere"),
    ("What shape is the largest metal object?", "cube"),
    ("Are the leftmost object and the rightmost object the same color?", "yes"),
    ("What color is the object that is furthest to the right?", "red"),
    ("What size is the rightmost cylinder?", "large"),
    ("Is the nearest object made of rubber?", "yes"),
    ("What's the color of the leftmost cube?", "red"),
]

#: Two superlatives in one question, each object named by its values (written after the 31
#: above passed, the last four after the first four had).
TWO_SUPERLATIVES = [
    ("Are the leftmost object and the rightmost object the same color?", "yes"),
    ("Is the biggest object the same shape as the leftmost object?", "yes"),
    ("Are the smallest object and the nearest object made of the same material?", "yes"),
    ("Is the leftmost cube the same size as the rightmost cube?", "yes"),
    ("Are the leftmost object and the biggest object the same color?", "no"),
    ("Is the smallest object the same material as the biggest object?", "no"),
    ("Are the nearest object and the farthest object the same shape?", "yes"),
    ("Is the rightmost object the same size as the biggest object?", "no"),
]

#: Ordinals: select's most with a rank (written before any was run). Left to right by box
#: centre: red cube, purple cube, gray cube, blue sphere, cyan cylinder, gray cylinder, red
#: sphere; front to back: gray cube, cyan cylinder, ...
ORDINALS = [
    ("What color is the second object from the left?", "purple"),
    ("What color is the second cube from the left?", "purple"),
    ("What material is the third cube from the left?", "rubber"),
    ("What color is the second object from the right?", "gray"),
    ("What color is the second cylinder from the right?", "cyan"),
    ("What shape is the second closest object to the camera?", "cylinder"),
    ("What color is the second sphere from the left?", "red"),
    ("What color is the second smallest cube?", "gray"),
    ("How many objects are left of the second object from the right?", "5"),
    ("Is the third object from the left made of rubber?", "yes"),
    ("What is the second largest sphere made of?", "rubber"),
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
    for question, expected in (
        QUESTIONS
        + MORE_QUESTIONS
        + CLEVR_FORMS
        + USER_WORDS
        + USER_WORDS_LATER
        + SUPERLATIVES
        + TWO_SUPERLATIVES
        + ORDINALS
    ):
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
    sets = {"": QUESTIONS, "more_": MORE_QUESTIONS, "clevr_forms_": CLEVR_FORMS,
            "user_words_": USER_WORDS, "user_words_later_": USER_WORDS_LATER,
            "superlatives_": SUPERLATIVES, "two_superlatives_": TWO_SUPERLATIVES,
            "ordinals_": ORDINALS}  # fmt: skip
    summary, start = {}, 0
    for prefix, questions in sets.items():
        summary[f"{prefix}correct"] = sum(right[start : start + len(questions)])
        summary[f"{prefix}n"] = len(questions)
        start += len(questions)
    print(json.dumps({**summary, "model": a.model}))


if __name__ == "__main__":
    main()
