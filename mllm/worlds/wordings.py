"""Questions in a user's words rather than the templates' words, answered from a scene graph.

The question generator (:mod:`.questions`) words every question as one of CLEVR's templates, and
both the core's programs and the speech model learned from those. Users type and say "How many red
things?", "Count the spheres.", "Is the red cube large?". A *wording* here is a form such as
``"count the <shape>s."`` and a function that fills it about a scene, with the answer the scene's
ground truth gives, or ``None`` where the form does not apply (a form about "the red cube" needs
exactly one red cube).

* :data:`WORDINGS`: the forms ``benchmarks/phrasings.py`` asks the agent (typed and spoken);
* :data:`MORE_WORDINGS`: more forms, spoken in the speech model's training only;
* :data:`HELD_OUT_WORDINGS`: forms of :data:`WORDINGS` that training never speaks, so a
  measurement can tell a form learned from one never heard.

Every function takes a scene record (``objects`` with ``color``, ``shape``, ``material`` and
``size``; ``relationships`` as CLEVR writes them) and a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from .templates import PLURAL, RELATION_PHRASES, SYNONYMS

Scene = dict[str, Any]
Obj = dict[str, Any]
#: (question, answer) or None where the form does not apply to the scene
Asked = tuple[str, str] | None
#: A wording: (name, make(scene, rng)).
Wording = tuple[str, Callable[[Scene, random.Random], Asked]]

COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
MATERIALS = ("rubber", "metal")
SIZES = ("small", "large")


def _count(scene: Scene, **want: str) -> int:
    return sum(all(o[k] == v for k, v in want.items()) for o in scene["objects"])


def _unique(scene: Scene, rng: random.Random, *keys: str) -> Obj | None:
    """An object that is the only one with its values of ``keys``, or None."""
    objects = scene["objects"]
    alone = [o for o in objects if _count(scene, **{k: o[k] for k in keys}) == 1]
    return rng.choice(alone) if alone else None


def _yes(found: bool) -> str:
    return "yes" if found else "no"


# -- the forms the benchmark asks ------------------------------------------------------------


def _count_color(scene: Scene, rng: random.Random) -> Asked:
    color = rng.choice(COLORS)
    things = rng.choice(("things", "objects"))
    return f"How many {color} {things}?", str(_count(scene, color=color))


def _count_shape(scene: Scene, rng: random.Random) -> Asked:
    shape = rng.choice(SHAPES)
    return f"Count the {shape}s.", str(_count(scene, shape=shape))


def _made_of(scene: Scene, rng: random.Random) -> Asked:
    shape, material = rng.choice(SHAPES), rng.choice(MATERIALS)
    answer = _count(scene, shape=shape, material=material)
    return f"How many {shape}s are made of {material}?", str(answer)


def _shapes_are(scene: Scene, rng: random.Random) -> Asked:
    shape, color = rng.choice(SHAPES), rng.choice(COLORS)
    return f"How many {shape}s are {color}?", str(_count(scene, shape=shape, color=color))


def _is_it(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "color", "shape")
    if o is None:
        return None
    size = rng.choice(SIZES)
    return f"Is the {o['color']} {o['shape']} {size}?", _yes(o["size"] == size)


def _which_color(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "material", "shape")
    return None if o is None else (f"Which color is the {o['material']} {o['shape']}?", o["color"])


def _made_of_what(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "color", "shape")
    return None if o is None else (f"What is the {o['color']} {o['shape']} made of?", o["material"])


def _any_of(scene: Scene, rng: random.Random) -> Asked:
    shape, color = rng.choice(SHAPES), rng.choice(COLORS)
    return f"Are any of the {shape}s {color}?", _yes(_count(scene, shape=shape, color=color) > 0)


def _can_you_count(scene: Scene, rng: random.Random) -> Asked:
    color = rng.choice(COLORS)
    return f"Can you count the {color} things?", str(_count(scene, color=color))


def _number_of(scene: Scene, rng: random.Random) -> Asked:
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    return f"What's the number of {color} {shape}s?", str(_count(scene, color=color, shape=shape))


def _tell_me(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "material", "shape")
    if o is None:
        return None
    return f"Tell me the color of the {o['material']} {o['shape']}.", o["color"]


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

#: Never spoken in the speech model's training (``agentkit train asr-worded``).
HELD_OUT_WORDINGS = frozenset(
    {
        "is the <color> <shape> <size>?",
        "what's the number of <color> <shape>s?",
        "tell me the color of the <material> <shape>.",
    }
)


# -- more forms, for the speech model's training ---------------------------------------------


def _do_you_see(scene: Scene, rng: random.Random) -> Asked:
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    return f"How many {color} {shape}s do you see?", str(_count(scene, color=color, shape=shape))


def _count_color_things(scene: Scene, rng: random.Random) -> Asked:
    color = rng.choice(COLORS)
    return f"Count the {color} things.", str(_count(scene, color=color))


def _please_count(scene: Scene, rng: random.Random) -> Asked:
    material = rng.choice(MATERIALS)
    things = rng.choice(("things", "objects"))
    return f"Please count the {material} {things}.", str(_count(scene, material=material))


def _is_there(scene: Scene, rng: random.Random) -> Asked:
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    return f"Is there a {color} {shape}?", _yes(_count(scene, color=color, shape=shape) > 0)


def _see_a(scene: Scene, rng: random.Random) -> Asked:
    size, shape = rng.choice(SIZES), rng.choice(SHAPES)
    return f"Do you see a {size} {shape}?", _yes(_count(scene, size=size, shape=shape) > 0)


def _which_shape(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "color", "material")
    if o is None:
        return None
    return f"Which shape is the {o['color']} {o['material']} thing?", o["shape"]


def _how_big(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "color", "shape")
    return None if o is None else (f"How big is the {o['color']} {o['shape']}?", o["size"])


def _is_it_metal(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "color", "shape")
    if o is None:
        return None
    material = rng.choice(MATERIALS)
    return f"Is the {o['color']} {o['shape']} made of {material}?", _yes(o["material"] == material)


def _more_than(scene: Scene, rng: random.Random) -> Asked:
    a, b = rng.sample(SHAPES, 2)
    more = _count(scene, shape=a) > _count(scene, shape=b)
    return f"Are there more {a}s than {b}s?", _yes(more)


def _name_color(scene: Scene, rng: random.Random) -> Asked:
    o = _unique(scene, rng, "size", "material", "shape")
    if o is None:
        return None
    return f"Name the color of the {o['size']} {o['material']} {o['shape']}.", o["color"]


def _left_of(scene: Scene, rng: random.Random) -> Asked:
    """Is the red cube left of the blue sphere? CLEVR's rule: object j is in
    ``relationships[rel][i]`` when j is ``rel`` of object i."""
    objects, rel = scene["objects"], scene.get("relationships")
    if not rel or len(objects) < 2:
        return None
    alone = [
        i for i, o in enumerate(objects) if _count(scene, color=o["color"], shape=o["shape"]) == 1
    ]
    if len(alone) < 2:
        return None
    i, j = rng.sample(alone, 2)
    side = rng.choice(("left", "right"))
    a, b = objects[i], objects[j]
    question = f"Is the {a['color']} {a['shape']} {side} of the {b['color']} {b['shape']}?"
    return question, _yes(i in rel[side][j])


MORE_WORDINGS: list[Wording] = [
    ("how many <color> <shape>s do you see?", _do_you_see),
    ("count the <color> things.", _count_color_things),
    ("please count the <material> things.", _please_count),
    ("is there a <color> <shape>?", _is_there),
    ("do you see a <size> <shape>?", _see_a),
    ("which shape is the <color> <material> thing?", _which_shape),
    ("how big is the <color> <shape>?", _how_big),
    ("is the <color> <shape> made of <material>?", _is_it_metal),
    ("are there more <shape>s than <shape>s?", _more_than),
    ("name the color of the <size> <material> <shape>.", _name_color),
    ("is the <color> <shape> <left|right> of the <color> <shape>?", _left_of),
]


def training_wordings() -> list[Wording]:
    """The forms the speech model's training speaks: all but :data:`HELD_OUT_WORDINGS`."""
    return [w for w in WORDINGS + MORE_WORDINGS if w[0] not in HELD_OUT_WORDINGS]


def ask(scene: Scene, rng: random.Random, wordings: list[Wording]) -> tuple[str, str, str] | None:
    """One question about ``scene`` in a form drawn from ``wordings`` (the first, in a seeded
    order, that applies): ``(form, question, answer)``, or None where none applies."""
    for name, make in rng.sample(wordings, len(wordings)):
        if (qa := make(scene, rng)) is not None:
            return name, qa[0], qa[1]
    return None


# -- composed forms: carriers x descriptions, for the speech model's training ----------------
#
# Twenty-two listed forms teach a speech model twenty-two sentences with slots; a user's next
# question is a new one. Here a question is a *carrier* ("tell me how many <things> there are.")
# around a *description* of objects drawn per question: one to three of size, colour, material
# and shape, in CLEVR's order and synonyms ("big shiny blocks", "red things"), or with the
# attribute after the noun ("cubes made of metal", "spheres that are red"). The carriers of the
# held-out forms are never composed (no "what's the number of", no "tell me the <attribute> of",
# no "is the <object> <size>?"): their words occur in other carriers, their sentences do not.

_ORDER = ("size", "color", "material", "shape")
_VALUES = {"size": SIZES, "color": COLORS, "material": MATERIALS, "shape": SHAPES}


def _words(rng: random.Random, spec: dict[str, str], *, plural: bool) -> str:
    """``spec`` as a noun phrase: "big shiny blocks", "red thing", or with one attribute after
    the noun ("cubes made of metal", "spheres that are red") when it has a shape and another.
    Not :func:`.questions._noun_phrase` (the templates' phrases): this one also says "items" and
    values after the noun, and draws the noun first; the ``asr-composed`` leg's clips follow
    this order of draws, so its recipe reproduces them."""

    def word(value: str) -> str:
        return rng.choice(SYNONYMS.get(value, (value,)))

    def noun(value: str) -> str:
        w = word(value)
        return PLURAL.get(w, w + "s") if plural else w

    things = noun(spec.get("shape") or ("item" if plural and rng.random() < 0.2 else "thing"))
    if plural and "shape" in spec and len(spec) == 2 and rng.random() < 0.3:
        key = next(k for k in spec if k != "shape")
        if key == "material":
            return f"{things} made of {spec[key]}"
        return f"{things} that are {word(spec[key])}"
    return " ".join([word(spec[k]) for k in _ORDER[:3] if k in spec] + [things])


def _spec(rng: random.Random, keys: int) -> dict[str, str]:
    chosen = rng.sample(_ORDER, keys)
    return {k: rng.choice(_VALUES[k]) for k in _ORDER if k in chosen}


def _np(scene: Scene, rng: random.Random, plural: bool = True) -> tuple[str, int]:
    """A description of objects (not necessarily any in ``scene``) and how many match it."""
    spec = _spec(rng, rng.choice((1, 1, 2, 2, 3)))
    return _words(rng, spec, plural=plural), _count(scene, **spec)


def _object(scene: Scene, rng: random.Random, but: str = "") -> tuple[str, Obj] | None:
    """ "the <description>" of an object alone in it (never naming attribute ``but``)."""
    keys = [k for k in _ORDER if k != but]
    for n in rng.sample((1, 2, 2, 3), 4):
        picked = rng.sample(keys, min(n, len(keys)))
        o = _unique(scene, rng, *picked)
        if o is not None:
            return "the " + _words(rng, {k: o[k] for k in picked}, plural=False), o
    return None


_COUNT_CARRIERS = (
    "How many {np} are there?",
    "How many {np} are in the image?",
    "How many {np} are in the picture?",
    "How many {np} can you see?",
    "How many {np} do you see?",
    "How many {np} are in this scene?",
    "How many {np}?",
    "Count the {np}.",
    "Count all the {np}.",
    "Could you count the {np}?",
    "Please count the {np} in the image.",
    "Tell me how many {np} there are.",
    "Can you tell me how many {np} there are?",
    "Do you know how many {np} there are?",
    "What is the number of {np}?",
    "What is the count of {np}?",
    "I want to know how many {np} there are.",
    "Give me the number of {np}.",
)
_EXIST_CARRIERS = (
    "Is there a {np1}?",
    "Is there a {np1} in the image?",
    "Is there any {np1} in the picture?",
    "Are there any {np}?",
    "Are there any {np} in this scene?",
    "Do you see any {np}?",
    "Can you see a {np1}?",
    "Does the image have a {np1}?",
    "Does the picture contain any {np}?",
    "Is there at least one {np1}?",
)
#: (carrier, the attribute it asks); {o} describes an object without that attribute
_QUERY_CARRIERS = (
    ("What color is {o}?", "color"),
    ("What is the color of {o}?", "color"),
    ("What's the color of {o}?", "color"),
    ("Which color does {o} have?", "color"),
    ("Can you tell me what color {o} is?", "color"),
    ("What shape is {o}?", "shape"),
    ("What is the shape of {o}?", "shape"),
    ("What kind of shape is {o}?", "shape"),
    ("What material is {o}?", "material"),
    ("What is {o} made of?", "material"),
    ("Which material is {o} made of?", "material"),
    ("What is the material of {o}?", "material"),
    ("How big is {o}?", "size"),
    ("What size is {o}?", "size"),
    ("What is the size of {o}?", "size"),
    ("Name the color of {o}.", "color"),
    ("Name the shape of {o}.", "shape"),
    ("Do you know what {o} is made of?", "material"),
)
#: (carrier, the attribute it checks); never the held-out "is the <object> <size>?"
_VERIFY_CARRIERS = (
    ("Is {o} {value}?", "color"),
    ("Is {o} made of {value}?", "material"),
    ("Is {o} {value}?", "material"),
    ("Is {o} a {value}?", "shape"),
    ("Is {o} {value} colored?", "color"),
    ("Would you say {o} is {value}?", "color"),
)
_COMPARE_CARRIERS = (
    ("Are there more {a} than {b}?", "more"),
    ("Are there fewer {a} than {b}?", "fewer"),
    ("Are there as many {a} as {b}?", "same"),
    ("Is the number of {a} the same as the number of {b}?", "same"),
    ("Do you see more {a} than {b}?", "more"),
)
_RELATE_CARRIERS = (
    "Is {o} {relation} {other}?",
    "Would you say {o} is {relation} {other}?",
    "Is {o} placed {relation} {other}?",
)


def _slot_name(carrier: str) -> str:
    return (
        carrier.lower()
        .replace("{np}", "<things>")
        .replace("{np1}", "<thing>")
        .replace("{o}", "<object>")
        .replace("{value}", "<value>")
        .replace("{a}", "<things>")
        .replace("{b}", "<things>")
        .replace("{other}", "<object>")
        .replace("{relation}", "<relation>")
    )


def _counting(carrier: str) -> Wording:
    def make(scene: Scene, rng: random.Random) -> Asked:
        np, n = _np(scene, rng)
        return carrier.format(np=np), str(n)

    return "composed: " + _slot_name(carrier), make


def _existing(carrier: str) -> Wording:
    def make(scene: Scene, rng: random.Random) -> Asked:
        np, n = _np(scene, rng, plural="{np1}" not in carrier)
        return carrier.format(np=np, np1=np), _yes(n > 0)

    return "composed: " + _slot_name(carrier), make


def _querying(carrier: str, attr: str) -> Wording:
    def make(scene: Scene, rng: random.Random) -> Asked:
        found = _object(scene, rng, but=attr)
        if found is None:
            return None
        o, obj = found
        return carrier.format(o=o), obj[attr]

    return "composed: " + _slot_name(carrier), make


def _verifying(carrier: str, attr: str) -> Wording:
    def make(scene: Scene, rng: random.Random) -> Asked:
        found = _object(scene, rng, but=attr)
        if found is None:
            return None
        o, obj = found
        value = rng.choice(_VALUES[attr])
        # a material as the noun a user names ("made of metal"), never "made of shiny"
        said = rng.choice(SYNONYMS.get(value, (value,))) if attr != "material" else value
        return carrier.format(o=o, value=said), _yes(obj[attr] == value)

    return "composed: " + _slot_name(carrier) + f" ({attr})", make


def _comparing(carrier: str, relation: str) -> Wording:
    def make(scene: Scene, rng: random.Random) -> Asked:
        (a, na), (b, nb) = _np(scene, rng), _np(scene, rng)
        if a == b:
            return None
        holds = {"more": na > nb, "fewer": na < nb, "same": na == nb}[relation]
        return carrier.format(a=a, b=b), _yes(holds)

    return "composed: " + _slot_name(carrier), make


def _relating(carrier: str) -> Wording:
    def make(scene: Scene, rng: random.Random) -> Asked:
        objects, rel = scene["objects"], scene.get("relationships")
        first, second = _object(scene, rng), _object(scene, rng)
        if not rel or first is None or second is None or first[1] is second[1]:
            return None
        side = rng.choice(tuple(RELATION_PHRASES))
        i, j = objects.index(first[1]), objects.index(second[1])
        q = carrier.format(o=first[0], other=second[0], relation=rng.choice(RELATION_PHRASES[side]))
        return q, _yes(i in rel[side][j])

    return "composed: " + _slot_name(carrier), make


COMPOSED_WORDINGS: list[Wording] = (
    [_counting(c) for c in _COUNT_CARRIERS]
    + [_existing(c) for c in _EXIST_CARRIERS]
    + [_querying(c, a) for c, a in _QUERY_CARRIERS]
    + [_verifying(c, a) for c, a in _VERIFY_CARRIERS]
    + [_comparing(c, r) for c, r in _COMPARE_CARRIERS]
    + [_relating(c) for c in _RELATE_CARRIERS]
)


# -- spliced sentences: word order the speech model cannot guess ------------------------------
#
# A small speech model's decoder is a language model of the sentences it trained on: a form it
# never heard ("What's the number of yellow spheres?") comes out as the nearest one it did. A
# spliced sentence strings short runs of words from other questions together in an order no
# carrier has, so the decoder can predict little of it and has to listen; the runs keep each
# word's neighbours, and so its sound in context. A splice that would say a held-out form is
# drawn again, so those sentences stay unheard.


def _held_out_pattern(form: str) -> re.Pattern[str]:
    pattern = re.escape(form.rstrip(".?"))  # a run inside a longer sentence has no stop
    for attr, values in _VALUES.items():
        words = [w for v in values for w in SYNONYMS.get(v, (v,))]
        pattern = pattern.replace(re.escape(f"<{attr}>"), "(?:" + "|".join(words) + ")")
    return re.compile(r"\b" + pattern + r"\b")


_HELD_OUT_PATTERNS = [_held_out_pattern(form) for form in sorted(HELD_OUT_WORDINGS)]


def says_held_out(text: str) -> bool:
    """Whether ``text`` says one of :data:`HELD_OUT_WORDINGS` (any values or their synonyms, any
    case), in full or as part of a longer sentence."""
    low = text.lower()
    return any(p.search(low) for p in _HELD_OUT_PATTERNS)


def splice(texts: list[str], rng: random.Random, tries: int = 20) -> str | None:
    """A sentence of two to four runs of one to four consecutive words, each from a question of
    ``texts`` drawn at random, lower-cased but for the first word, ending in "?" or "."; None
    where ``tries`` draws all said a held-out form (or ``texts`` is empty)."""
    if not texts:
        return None
    for _ in range(tries):
        words: list[str] = []
        for _ in range(rng.randint(2, 4)):
            source = re.findall(r"[\w']+", rng.choice(texts).lower())
            n = min(len(source), rng.randint(1, 4))
            start = rng.randrange(len(source) - n + 1)
            words += source[start : start + n]
        text = " ".join(words)
        text = text[:1].upper() + text[1:] + rng.choice("?.")
        if not says_held_out(text):
            return text
    return None
