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


# -- composed forms ----------------------------------------------------------------------------

# the words a description may say, read back to the scene's values (independently of the
# generator: CLEVR's synonyms and plurals, written out here)
READ = {
    "cube": ("shape", "cube"), "block": ("shape", "cube"), "sphere": ("shape", "sphere"),
    "ball": ("shape", "sphere"), "cylinder": ("shape", "cylinder"),
    "small": ("size", "small"), "tiny": ("size", "small"), "large": ("size", "large"),
    "big": ("size", "large"), "metal": ("material", "metal"), "metallic": ("material", "metal"),
    "shiny": ("material", "metal"), "rubber": ("material", "rubber"),
    "matte": ("material", "rubber"), **{c: ("color", c) for c in W.COLORS},
}  # fmt: skip
FILLER = {"thing", "object", "item", "made", "of", "that", "are", "the"}


def _described(phrase):
    """The attribute values a description names."""
    want = {}
    for word in phrase.split():
        if word.endswith("s") and (word[:-1] in READ or word[:-1] in FILLER):
            word = word[:-1]  # a plural
        if word in FILLER:
            continue
        key, value = READ[word]
        assert key not in want, phrase
        want[key] = value
    return want


def _matching(phrase, scene=SCENE):
    want = _described(phrase)
    return [o for o in scene["objects"] if all(o[k] == v for k, v in want.items())]


def _slots(carrier_name, question):
    """The slot texts of a composed question, by its form's name as a pattern."""
    import re

    from agentkit.mllm.worlds.templates import RELATION_PHRASES

    relation = "|".join(p for ps in RELATION_PHRASES.values() for p in ps)
    pattern = re.escape(carrier_name.split(": ", 1)[1].split(" (")[0])
    for slot, says in (("<things>", "(.+?)"), ("<thing>", "(.+?)"), ("<object>", "(.+?)"),
                       ("<value>", r"(\w+)"), ("<relation>", f"({relation})")):  # fmt: skip
        pattern = pattern.replace(re.escape(slot), says)
    m = re.fullmatch(pattern, question.lower())
    assert m, (carrier_name, question)
    return m.groups()


@pytest.mark.parametrize("form", range(len(W.COMPOSED_WORDINGS)))
def test_every_composed_form_answers_what_its_words_ask(form):
    """Read each composed question back with CLEVR's synonyms and re-answer it on the scene:
    the form's answer must be that one."""
    import re

    from agentkit.mllm.worlds.templates import RELATION_PHRASES

    name, make = W.COMPOSED_WORDINGS[form]
    asked = {make(SCENE, random.Random(k)) for k in range(80)} - {None}
    assert len(asked) >= 5, name  # it applies to the scene, in several ways
    sides = {p: side for side, ps in RELATION_PHRASES.items() for p in ps}
    for question, answer in asked:
        slots = _slots(name, question)
        if "<relation>" in name:
            (a,), (b,) = _matching(slots[0]), _matching(slots[2])
            i, j = SCENE["objects"].index(a), SCENE["objects"].index(b)
            assert answer == _yes(i in SCENE["relationships"][sides[slots[1]]][j]), question
        elif "<value>" in name:
            (o,) = _matching(slots[0])
            key, value = READ.get(slots[1], ("material", slots[1]))
            assert answer == _yes(o[key] == value), question
        elif "<object>" in name:
            (o,) = _matching(slots[0])  # an object alone in its description
            assert answer in o.values() and answer not in _described(slots[0]).values(), question
        elif name.count("<things>") == 2:
            na, nb = (len(_matching(s)) for s in slots)
            holds = {"more": na > nb, "fewer": na < nb, "as many": na == nb, "same": na == nb}
            assert answer == _yes(next(v for k, v in holds.items() if k in question)), question
        elif re.search(r"how many|count|number of", question.lower()):
            assert answer == str(len(_matching(slots[0]))), question
        else:
            assert answer == _yes(bool(_matching(slots[0]))), question


def _yes(found):
    return "yes" if found else "no"


def test_composed_questions_never_say_a_held_out_form():
    """The held-out forms' carriers are never composed, whatever the description."""
    import re

    from agentkit.mllm.worlds.synthetic import synthetic_scene

    rng = random.Random(0)
    sizes = "small|tiny|little|large|big"
    for k in range(300):
        _, question, _ = W.ask(synthetic_scene(k), rng, W.COMPOSED_WORDINGS)
        q = question.lower()
        assert not q.startswith(("what's the number of", "tell me the")), question
        assert not re.fullmatch(rf"is the (\w+ ){{1,3}}({sizes})\?", q), question


def test_a_splice_strings_runs_of_other_questions_words_and_never_says_a_held_out_form():
    texts = ["How many red things are there?", "Is the large cube made of metal?",
             "Tell me how many spheres there are.", "What number of blue balls are left of it?"]  # fmt: skip
    words = {w for t in texts for w in t.lower().rstrip("?.").split()}
    rng = random.Random(0)
    spliced = [W.splice(texts, rng) for _ in range(200)]
    assert all(s is not None for s in spliced)
    for s in spliced:
        said = s.rstrip("?.").lower().split()
        assert 2 <= len(said) <= 16 and set(said) <= words, s
        assert s[0].isupper() and s[-1] in "?."
    assert len(set(spliced)) > 150  # orders no carrier has, rarely the same twice

    assert W.says_held_out("Is the red cube large?") and W.says_held_out("so is the red ball big")
    assert W.says_held_out("What's the number of yellow spheres?")
    assert W.says_held_out("Tell me the color of the metal cube.")
    assert not W.says_held_out("Is the red cube made of metal?")
    assert not W.says_held_out("Tell me how many spheres there are.")
    assert W.splice([], rng) is None


def test_a_splice_that_says_a_held_out_form_is_drawn_again(monkeypatch):
    seen = []
    check = W.says_held_out
    monkeypatch.setattr(W, "says_held_out", lambda t: seen.append(check(t)) or seen[-1])
    rng = random.Random(0)
    said = [W.splice(["What's the number of yellow spheres?"], rng) for _ in range(300)]
    assert any(seen)  # some draws said it, in full or within a longer run ...
    assert not any(s is not None and check(s) for s in said)  # ... and none was kept
    assert sum(s is not None for s in said) > 250
