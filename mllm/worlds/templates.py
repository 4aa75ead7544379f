"""Phrasings of the question templates, and the words that fill them.

Kept as data, apart from the sampling logic in ``questions.py``: each template id maps to at least
three phrasings, chosen at random per question. Placeholders:

* ``{A}`` / ``{B}``: a unique referring phrase without its article ("small red cube left of the
  sphere"); the phrasing supplies "the";
* ``{A_pl}`` / ``{B_pl}``: a plural noun phrase ("red cubes", "things");
* ``{A_sg}`` / ``{B_sg}``: a singular noun phrase with "a"/"an" ("a red cube");
* ``{P1_pl}`` / ``{P1_sg}`` (and ``P2``): a predicate that picks a set ("red cubes" / "a red cube",
  "metal", "left of the gray sphere");
* ``{R}``: a spatial relation ("left of", "in front of");
* ``{attr}``: an attribute name ("color", "shape", "material", "size");
* ``{N_pl}`` / ``{N_sg}``: an attribute value a set is told apart by ("red", "metal";
  "cubes" / "a cube" for a shape).

Spelling follows CLEVR ("color", "gray") so the generated questions read like CLEVR's own.
"""

from __future__ import annotations

PHRASINGS: dict[str, tuple[str, ...]] = {
    # -- one step ------------------------------------------------------------------------------
    "count": (
        "How many {A_pl} are there?",
        "What number of {A_pl} are there?",
        "How many {A_pl} are in the scene?",
        "Count the {A_pl}. How many are there?",
        "How many {A_pl} are in the image?",
    ),
    "exist": (
        "Are there any {A_pl}?",
        "Is there {A_sg}?",
        "Is there {A_sg} in the scene?",
        "Does the scene contain {A_sg}?",
        "Is there {A_sg} in the image?",  # how users (and POPE's probes) ask about a picture
        "Are there any {A_pl} in the image?",
    ),
    "query.color": (
        "What color is the {A}?",
        "What is the color of the {A}?",
        "The {A} has what color?",
        "The {A} is what color?",
    ),
    "query.shape": (
        "What shape is the {A}?",
        "What is the shape of the {A}?",
        "The {A} has what shape?",
        "What is the {A} shaped like?",
    ),
    "query.material": (
        "What material is the {A}?",
        "What is the {A} made of?",
        "What is the material of the {A}?",
        "The {A} is made of what material?",
    ),
    "query.size": (
        "What size is the {A}?",
        "How big is the {A}?",
        "What is the size of the {A}?",
        "The {A} has what size?",
    ),
    # -- two numbers compared ------------------------------------------------------------------
    "compare.greater": (
        "Are there more {A_pl} than {B_pl}?",
        "Is the number of {A_pl} greater than the number of {B_pl}?",
        "Are there more {A_pl} than there are {B_pl}?",
    ),
    "compare.less": (
        "Are there fewer {A_pl} than {B_pl}?",
        "Is the number of {A_pl} less than the number of {B_pl}?",
        "Are there fewer {A_pl} than there are {B_pl}?",
    ),
    "compare.equal": (
        "Are there the same number of {A_pl} and {B_pl}?",
        "Is the number of {A_pl} the same as the number of {B_pl}?",
        "Are there as many {A_pl} as {B_pl}?",
        "Is there an equal number of {A_pl} and {B_pl}?",
    ),
    # -- same attribute as a referred object ---------------------------------------------------
    "same.count": (
        "How many other things are the same {attr} as the {A}?",
        "What number of other objects have the same {attr} as the {A}?",
        "How many other things have the same {attr} as the {A}?",
    ),
    "same.exist": (
        "Is there anything else that has the same {attr} as the {A}?",
        "Are there any other things of the same {attr} as the {A}?",
        "Is there another object with the same {attr} as the {A}?",
    ),
    # -- an attribute of two referred objects compared (CLEVR's compare_attribute) --------------
    "equal.attr": (
        "Is the {A} the same {attr} as the {B}?",
        "Does the {A} have the same {attr} as the {B}?",
        "Do the {A} and the {B} have the same {attr}?",
        "Is the {attr} of the {A} the same as the {B}?",
    ),
    # -- spatial relations ---------------------------------------------------------------------
    "relate.count": (
        "How many {B_pl} are {R} the {A}?",
        "What number of {B_pl} are {R} the {A}?",
        "How many {B_pl} are there {R} the {A}?",
    ),
    "relate.exist": (
        "Are there any {B_pl} {R} the {A}?",
        "Is there {B_sg} {R} the {A}?",
        "Are there any {B_pl} that are {R} the {A}?",
    ),
    # -- sets joined by and / or ---------------------------------------------------------------
    "logic.count.union": (
        "How many things are {P1_pl} or {P2_pl}?",
        "What number of objects are either {P1_pl} or {P2_pl}?",
        "How many things are there that are {P1_pl} or {P2_pl}?",
    ),
    "logic.count.intersect": (
        "How many things are both {P1_pl} and {P2_pl}?",
        "What number of objects are {P1_pl} and {P2_pl}?",
        "How many things are there that are both {P1_pl} and {P2_pl}?",
    ),
    "logic.exist.union": (
        "Is there anything that is {P1_sg} or {P2_sg}?",
        "Are there any things that are {P1_pl} or {P2_pl}?",
        "Is there an object that is either {P1_sg} or {P2_sg}?",
    ),
    "logic.exist.intersect": (
        "Is there anything that is both {P1_sg} and {P2_sg}?",
        "Are there any things that are both {P1_pl} and {P2_pl}?",
        "Is there an object that is {P1_sg} and {P2_sg}?",
    ),
    # -- the same attribute as an object, among some of the others (CLEVR's same_relate with a
    # filter; ``{B}`` / ``{B_pl}``: those others' description)
    "same_other.count": (
        "How many other {B_pl} have the same {attr} as the {A}?",
        "What number of other {B_pl} have the same {attr} as the {A}?",
        "How many other {B_pl} are the same {attr} as the {A}?",
    ),
    "same_other.exist": (
        "Are there any other {B_pl} that have the same {attr} as the {A}?",
        "Is there another {B} that has the same {attr} as the {A}?",
        "Is there another {B} of the same {attr} as the {A}?",
    ),
    **{
        f"same_other.query.{asked}": (
            f"What {asked} is the other {{B}} that has the same {{attr}} as the {{A}}?",
            f"What is the {asked} of the other {{B}} that is the same {{attr}} as the {{A}}?",
            f"The other {{B}} that has the same {{attr}} as the {{A}} is what {asked}?",
        )
        for asked in ("color", "shape", "material", "size")
    },
    # -- negation and "all" (not CLEVR's): a set without, or all of it with, one value ------------
    "not.count": (
        "How many {A_pl} are not {N_pl}?",
        "How many {A_pl} are there that are not {N_pl}?",
        "What number of {A_pl} are not {N_pl}?",
        "How many {A_pl} aren't {N_pl}?",
    ),
    "not.exist": (
        "Is there {A_sg} that is not {N_sg}?",
        "Are there any {A_pl} that are not {N_pl}?",
        "Are there any {A_pl} that aren't {N_pl}?",
        "Is there {A_sg} that isn't {N_sg}?",
    ),
    "every": (
        "Are all the {A_pl} {N_pl}?",
        "Are all of the {A_pl} {N_pl}?",
        "Is every {A} {N_sg}?",
        "Are the {A_pl} all {N_pl}?",
    ),
}

#: CLEVR's own phrasings that :data:`PHRASINGS` does not use (clevr-dataset-gen's question
#: templates, written from its forms: "There is a {A}; what color is it?", "Are the {A} and the
#: {B} the same size?", "Are there an equal number of ..."), which real CLEVR questions are full
#: of. Opt-in (``phrasings="clevr"`` asks in these alone, ``"mixed"`` in either), so the default
#: questions regenerate byte for byte. ``{A_ind}``: the phrase of ``{A}`` with "a"/"an". CLEVR
#: counts and asks for existence, more and fewer only as the templates do: those ask in the
#: templates' words.
CLEVR_PHRASINGS: dict[str, tuple[str, ...]] = {
    "query.color": (
        "There is {A_ind}; what color is it?",
        "There is {A_ind}; what is its color?",
    ),
    "query.shape": (
        "There is {A_ind}; what shape is it?",
        "There is {A_ind}; what is its shape?",
        "The {A} is what shape?",
    ),
    "query.material": (
        "There is {A_ind}; what material is it?",
        "There is {A_ind}; what is it made of?",
        "There is {A_ind}; what is its material?",
    ),
    "query.size": (
        "There is {A_ind}; what size is it?",
        "There is {A_ind}; how big is it?",
        "There is {A_ind}; what is its size?",
        "The {A} is what size?",
    ),
    "compare.equal": (
        "Are there an equal number of {A_pl} and {B_pl}?",
        "Are there as many {A_pl} as there are {B_pl}?",
    ),
    "same.count": (
        "What number of other objects are the same {attr} as the {A}?",
        "How many other things are there of the same {attr} as the {A}?",
        "There is {A_ind}; how many other things have the same {attr} as it?",
    ),
    "same.exist": (
        "Are there any other things that have the same {attr} as the {A}?",
        "Is there any other thing that has the same {attr} as the {A}?",
        "There is {A_ind}; are there any other things that have the same {attr} as it?",
    ),
    "equal.attr": (
        "Are the {A} and the {B} the same {attr}?",
        "There is {A_ind}; is it the same {attr} as the {B}?",
        "There is {A_ind}; does it have the same {attr} as the {B}?",
    ),
    "relate.count": (
        "There is {A_ind}; how many {B_pl} are {R} it?",
        "There is {A_ind}; what number of {B_pl} are {R} it?",
    ),
    "relate.exist": (
        "There is {A_ind}; are there any {B_pl} {R} it?",
        "There is {A_ind}; is there {B_sg} {R} it?",
        "Is there {B_sg} that is {R} the {A}?",
    ),
    "logic.count.union": (
        "How many things are either {P1_pl} or {P2_pl}?",
        "How many objects are {P1_pl} or {P2_pl}?",
    ),
    "logic.count.intersect": ("How many objects are both {P1_pl} and {P2_pl}?",),
    "logic.exist.union": ("Are there any things that are either {P1_pl} or {P2_pl}?",),
    "logic.exist.intersect": ("Is there a thing that is both {P1_sg} and {P2_sg}?",),
}

#: Which phrasings a question may be drawn in: the templates' (the default), CLEVR's others, or
#: either (training data that speaks both).
# A superlative's object ("the leftmost cube", "the biggest sphere") is asked about in the words
# of the object it names: its query's and its relation's templates, under ids of their own.
PHRASINGS.update(
    {
        f"most.query.{attr}": PHRASINGS[f"query.{attr}"]
        for attr in ("color", "shape", "material", "size")
    }  # fmt: skip
)
PHRASINGS.update({"most.count": PHRASINGS["relate.count"], "most.exist": PHRASINGS["relate.exist"]})

PHRASING_SETS = ("templates", "clevr", "mixed")


def phrasings(template: str, which: str = "templates") -> tuple[str, ...]:
    """The phrasings ``template`` is drawn from under ``which`` (:data:`PHRASING_SETS`)."""
    if which == "templates":
        return PHRASINGS[template]
    if which == "clevr":
        return CLEVR_PHRASINGS.get(template, PHRASINGS[template])
    return PHRASINGS[template] + CLEVR_PHRASINGS.get(template, ())


# Words for attribute values. The first is CLEVR's own word; the rest are synonyms used at random.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "cube": ("cube", "block"),
    "sphere": ("sphere", "ball"),
    "cylinder": ("cylinder",),
    "large": ("large", "big"),
    "small": ("small", "tiny"),
    "metal": ("metal", "metallic", "shiny"),
    "rubber": ("rubber", "matte"),
    "thing": ("thing", "object"),
}
PLURAL: dict[str, str] = {
    "cube": "cubes",
    "block": "blocks",
    "sphere": "spheres",
    "ball": "balls",
    "cylinder": "cylinders",
    "thing": "things",
    "object": "objects",
}
#: A superlative said before the noun ("the leftmost cube") or after it ("the cube on the far
#: left"), per way of ``most`` (sizes are said before it only).
MOST_BEFORE: dict[str, tuple[str, ...]] = {
    "left": ("leftmost",),
    "right": ("rightmost",),
    "front": ("frontmost", "nearest", "closest"),
    "behind": ("farthest", "furthest", "backmost"),
    "large": ("biggest", "largest"),
    "small": ("smallest", "tiniest"),
}
MOST_AFTER: dict[str, tuple[str, ...]] = {
    "left": ("on the far left", "furthest to the left"),
    "right": ("on the far right", "furthest to the right"),
    "front": ("closest to the camera", "nearest to the camera"),
    "behind": ("farthest from the camera", "furthest back"),
}
#: An ordinal's word by rank, and where its object is ranked from ("the second cube from the
#: left"); said before the superlative too ("the second leftmost cube").
ORDINALS = ("", "", "second", "third")
NTH_FROM = {"left": "from the left", "right": "from the right", "front": "from the front",
            "behind": "from the back"}  # fmt: skip
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left of", "to the left of", "on the left side of"),
    "right": ("right of", "to the right of", "on the right side of"),
    "front": ("in front of",),
    "behind": ("behind",),
}
