"""Questions in users' wordings: each form's answer is the scene's ground truth."""

from __future__ import annotations

import random

import pytest

from agentkit.mllm.worlds import wordings as W


def _obj(color, shape, material="rubber", size="small"):
    return {"color": color, "shape": shape, "material": material, "size": size}


# three objects: 0 a red metal large cube, 1 a blue rubber small sphere, 2 a blue metal small cube;
# CLEVR's rule: relationships[rel][i] lists the objects that are `rel` of object i
SCENE = {
    "objects": [
        _obj("red", "cube", "metal", "large"),
        _obj("blue", "sphere"),
        _obj("blue", "cube", "metal"),
    ],
    "relationships": {
        "left": [[1], [], [0, 1]],  # 1 is left of 0; 0 and 1 are left of 2
        "right": [[2], [0, 2], []],
        "front": [[], [], []],
        "behind": [[], [], []],
    },
}


def _answers(make, n=60):
    """What a form asks and answers over many seeds."""
    return {make(SCENE, random.Random(k)) for k in range(n)} - {None}


def test_every_form_answers_from_the_scene():
    counts = {"red": 1, "blue": 2, "gray": 0}
    for question, answer in _answers(W._count_color):
        color = question.split()[2]
        assert answer == str(counts.get(color, 0)), question
    for question, answer in _answers(W._count_shape):
        assert answer == {"cubes": "2", "spheres": "1", "cylinders": "0"}[question.split()[2][:-1]]
    assert ("How many cubes are made of metal?", "2") in _answers(W._made_of, 200)
    assert ("Is the red cube large?", "yes") in _answers(W._is_it)
    assert ("Is the red cube small?", "no") in _answers(W._is_it)
    assert ("Which color is the rubber sphere?", "blue") in _answers(W._which_color)
    assert ("What is the blue cube made of?", "metal") in _answers(W._made_of_what)
    assert ("Are there more cubes than spheres?", "yes") in _answers(W._more_than)
    assert ("Are there more spheres than cubes?", "no") in _answers(W._more_than)
    assert ("How big is the red cube?", "large") in _answers(W._how_big)
    assert ("Which shape is the red metal thing?", "cube") in _answers(W._which_shape)


def test_a_form_about_one_object_asks_only_about_an_object_alone_in_its_description():
    # the metal cubes are two: "which color is the metal cube?" has no one answer
    asked = _answers(W._which_color)
    assert asked == {("Which color is the rubber sphere?", "blue")}
    crowd = {"objects": [_obj("red", "cube"), _obj("red", "cube")], "relationships": {}}
    assert W._is_it(crowd, random.Random(0)) is None
    assert W._left_of(crowd, random.Random(0)) is None


def test_relations_follow_clevrs_rule():
    asked = _answers(W._left_of, 200)
    assert ("Is the blue sphere left of the red cube?", "yes") in asked
    assert ("Is the red cube left of the blue sphere?", "no") in asked
    assert ("Is the red cube right of the blue sphere?", "yes") in asked
    # each object is alone in its colour and shape: every pair is asked
    assert ("Is the red cube left of the blue cube?", "yes") in asked


def test_training_never_speaks_the_held_out_forms():
    names = [name for name, _ in W.training_wordings()]
    assert not W.HELD_OUT_WORDINGS & set(names)
    assert W.HELD_OUT_WORDINGS.issubset({name for name, _ in W.WORDINGS})
    assert len(names) == len(W.WORDINGS) + len(W.MORE_WORDINGS) - len(W.HELD_OUT_WORDINGS)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("seed", range(5))
def test_ask_takes_a_form_that_applies(seed):
    # only "one object" forms: on a scene of twins none applies
    one = [w for w in W.WORDINGS if w[0] in {"is the <color> <shape> <size>?",
                                             "which color is the <material> <shape>?"}]  # fmt: skip
    twins = {"objects": [_obj("red", "cube"), _obj("red", "cube")]}
    assert W.ask(twins, random.Random(seed), one) is None
    name, question, answer = W.ask(SCENE, random.Random(seed), one)
    assert name in {n for n, _ in one} and question.endswith("?") and answer
