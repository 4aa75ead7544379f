"""What a question's form expects of the work done for it, and grounded answers.

The kind of answer it asks for (:func:`question_kind`) and the scene words it names
(:func:`scene_words`) are what a program (:class:`Expectation`, the ``program`` planner's fit
checks) or one line of code (``react``'s) is held to.

A question's form often says what kind of short answer it takes (:func:`question_kind`: yes or
no, a number, a colour...). Where it does and the backend scores replies
(``score``, as ``hf:`` does; ``Options.constrain``), the summarizer answers with one of the values
of that kind the run's results hold (:func:`grounded_answers`), the one the model finds likeliest
(:func:`choose`). The model still chooses, by its own distribution, among what was observed; it can no longer copy a word of the question ("large" for "What is the large shiny
object shaped like?") or write a value no tool returned. Without a kind, or with no value of
that kind among the results, the summarizer writes freely.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from agentkit.mllm.backends.base import Generation, Message
from agentkit.mllm.toolcall import FinalAnswer
from agentkit.planners import dsl
from agentkit.planners.grammar import Code
from agentkit.state import Step, ToolCall
from agentkit.tools.base import strings_in
from agentkit.tools.detect import ATTRIBUTES, SYNONYMS, normalize_word
from agentkit.tools.select import MOST_NAMES, ORDINALS

FINAL = "Final Answer:"

_YES_NO_RE = re.compile(
    r"\s*(is|are|does|do|did|was|were|has|have|can|could|will|would|should|any)\b", re.IGNORECASE
)
_NUMBER_RE = re.compile(
    r"\s*(count\b|(total\s+)?(number|count)\s+of\b)|.*\b(how many|what number|the (number|count))\b",
    re.IGNORECASE | re.DOTALL,
)
#: A request rather than a question ("Can you count ...", "Could you tell me what color ...",
#: "Please count ..."): it asks for the kind of answer of what it requests, not yes or no.
_REQUEST_RE = re.compile(
    r"\s*(please\s+)?((can|could|would|will) you\s+)?(please\s+)?(?=(count|tell|say|give|name)\b)",
    re.IGNORECASE,
)


def _spellings(values: Iterable[str]) -> list[str]:
    """Each value and the synonyms ``detect`` reads as it ("large", "big")."""
    return [w for v in values for w in (v, *(k for k, c in SYNONYMS.items() if c == v))]


#: The materials and the words ``detect`` reads as one ("metallic", "shiny", "matte").
_MATERIAL_WORDS = _spellings(ATTRIBUTES["material"])
#: "What ... colour / material / size / shape" and their other forms: the attribute a value
#: question asks for.
_ASKS_FOR = {
    "color": re.compile(r"\bcolou?rs?\b", re.IGNORECASE),
    # "made of what", not "the cube made of rubber" (a value said is no value asked)
    "material": re.compile(
        rf"\bmaterials?\b|\bmade of\b(?!\s+(?:an?\s+)?(?:{'|'.join(_MATERIAL_WORDS)})\b)",
        re.IGNORECASE,
    ),
    "size": re.compile(r"\bsizes?\b|\bhow (big|large|small)\b", re.IGNORECASE),
    "shape": re.compile(r"\bshapes?\b|\bshaped\b", re.IGNORECASE),
}
#: The attribute a question of each value kind asks for (:func:`question_kind`).
_ASKED_ATTRIBUTE = {f"a {attr}": attr for attr in _ASKS_FOR}
_HOW_BIG_RE = re.compile(r"\bhow (big|large|small)\b", re.IGNORECASE)
_WHAT_RE = re.compile(r"\b(what|which|how|tell me|say|give me|name)\b", re.IGNORECASE)


#: "Describe the image.", "What is in this picture?", "What do you see?", "What objects are
#: there?": a description of the whole image, the ``caption`` tool's (:meth:`Expectation.only_tools`).
_DESCRIBE_RE = re.compile(
    r"\s*(?:please\s+)?(?:(?:can|could|would|will)\s+you\s+)?(?:please\s+)?(?:describe|caption)\s+"
    r"(?:the|this)\s+(?:image|picture|photo|scene)\b"
    r"|\s*what(?:'s|\s+is|\s+are)\s+(?:there\s+)?(?:in|on)\s+(?:the|this)\s+(?:image|picture|photo|"
    r"scene)\s*[?.!]*\s*$"
    r"|\s*what\s+(?:do|can)\s+you\s+see\s*[?.!]*\s*$"
    r"|\s*what\s+(?:objects|things)\s+are\s+(?:there|in\s+(?:the|this)\s+(?:image|picture|photo|"
    r"scene))\s*[?.!]*\s*$",
    re.IGNORECASE,
)
#: "Which object is purple?", "What thing is left of the cube?": the thing named by its shape.
_WHICH_THING_RE = re.compile(r"\s*(which|what)\s+(object|thing|one)\s+(is|was)\b", re.IGNORECASE)

#: "Would you say the cube is red?", "Do you think ...": yes or no, whatever the clause says.
_OPINION_RE = re.compile(r"\s*(would|do|did) you (say|think|agree)\b", re.IGNORECASE)
#: "Do you know what the cube is made of?": the question it embeds.
_EMBEDDED_RE = re.compile(
    r"\s*(do|did) you know\s+(?=(what|which|how|whether|if)\b)", re.IGNORECASE
)


#: CLEVR's "There is a big cube [that is left of the ball]; what color is it?": the object, and
#: the question that names it "it" (or "its").
_THERE_IS_RE = re.compile(
    r"\s*there (?:is|are) (?:an?|the|one) (?P<object>[^;,?]+?)\s*[;,]\s*(?P<rest>.+)",
    re.IGNORECASE | re.DOTALL,
)
_IT_RE = re.compile(r"\b(?:its (?P<attribute>[a-z]+)|it)\b", re.IGNORECASE)


def resolved(question: str) -> str:
    """``question`` with CLEVR's "There is a X; ... it?" said as one sentence that names X where
    "it" stood ("There is a big cube; what color is it?" -> "What color is the big cube?"; "...;
    what is its size?" -> "What is the size of the big cube?"; "...; how many spheres are left
    of it?" -> "How many spheres are left of the big cube?"), the form the templates word;
    unchanged when it has no such form."""
    there = _THERE_IS_RE.match(question)
    if there is None or not _IT_RE.search(there["rest"]):
        return question
    thing = there["object"]

    def named(it: re.Match[str]) -> str:
        return f"the {it['attribute']} of the {thing}" if it["attribute"] else f"the {thing}"

    rest = _IT_RE.sub(named, there["rest"].strip(), count=1)
    return rest[0].upper() + rest[1:]


def question_kind(question: str) -> str | None:
    """The kind of answer a question's form asks for: ``yes/no`` (it opens with an auxiliary
    verb or "any": "Is there ...", "Are there more ...", "Any cubes?"), ``a number`` ("How
    many", "What number", "Count ...", "Number of cubes?"), ``a color`` / ``a material`` / ``a
    size`` / ``a shape`` (a what-question naming that one attribute: "The cube is made of what
    material?", "How big is the sphere?"; "Which object is purple?" asks for a shape, the name
    of a thing here), or None (anything else, or a question naming several attributes besides
    the one it compares: no expectation). A request is read as what it requests ("Can you
    count the cubes?": a number), and "Describe the image.", "What do you see?" ask for ``a
    description``."""
    if _DESCRIBE_RE.match(question):
        return "a description"
    if _OPINION_RE.match(question):
        return "yes/no"
    if embedded := _EMBEDDED_RE.match(question):
        question = question[embedded.end() :]
        if re.match(r"(whether|if)\b", question, re.IGNORECASE):
            return "yes/no"
    if request := _REQUEST_RE.match(question):
        question = question[request.end() :]
    if _YES_NO_RE.match(question):
        return "yes/no"
    if _NUMBER_RE.match(question):
        return "a number"
    if _WHICH_THING_RE.match(question):
        return "a shape"
    if not _WHAT_RE.search(question):
        return None
    # "What shape is the other thing that is the same size as the cube?" asks for a shape: the
    # attribute it compares is not the one it asks for
    question = _SAME_ATTR_RES[0].sub(" ", question)
    asked = [attr for attr, pattern in _ASKS_FOR.items() if pattern.search(question)]
    return f"a {asked[0]}" if len(asked) == 1 else None


def answer_kind(answer: str) -> str:
    """``yes/no``, ``a number``, ``a color`` / ``a material`` / ``a size`` / ``a shape`` (a
    word the detector knows as a value of that attribute: "red", "metallic", "ball"), or ``a
    value`` (any other word): what a short answer is."""
    text = answer.strip().lower()
    if text in ("yes", "no"):
        return "yes/no"
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return "a number"
    word = normalize_word(text)
    return next((f"a {attr}" for attr, values in ATTRIBUTES.items() if word in values), "a value")


#: Words a question and a program's arguments are compared on: attribute values, shapes,
#: spatial relations and comparisons, synonyms read as ``detect`` reads them ("big shiny balls" =
#: large metal sphere).
_VALUES = frozenset(v for values in ATTRIBUTES.values() for v in values)
_RELATIONS = ("left", "right", "front", "behind")
_SCENE_WORDS = _VALUES | {*_RELATIONS, "more", "fewer"}
#: A comparison's words as ``compare`` names its relation ("Is the number of cubes greater than
#: ..." asks for ``relation="more"``). "same" is no scene word: "the same color as" asks for
#: ``same``, whose arguments do not say it.
_COMPARISONS = {"greater": "more", "less": "fewer", "outnumber": "more", "outnumbers": "more"}
#: What ``compare`` asks of two counts.
_COUNT_RELATIONS = ("more", "fewer", "same")
#: A negation ("cubes that are not red", "aren't"): the set without some objects (``combine``'s
#: difference, :meth:`Expectation.joins`), and an empty search may then mean yes ("Is there a
#: cube that is not red?" when the red things are none).
_NEGATIONS = r"not|no|none|nothing|except|excluding|besides|without|other than|apart from"
_NEGATED_RE = re.compile(rf"\b({_NEGATIONS})\b|n't\b", re.IGNORECASE)
#: "Are all the cubes red?", "Is every cube red?": asked of yes/no questions only ("Count all the
#: cubes" asks of none); a set of which none lacks a value (:meth:`Expectation.joins`).
_UNIVERSAL_RE = re.compile(r"\b(all|every)\b", re.IGNORECASE)
#: Words of a question that compares two counts ("Are there more cubes than balls?", "as many",
#: "the same number", "outnumber"): only such a question, or one asked of all of a set, is
#: answered by ``compare`` (:meth:`Expectation.unfit_tools`).
_COUNTS_COMPARED_RE = re.compile(
    r"\b(more|fewer|less|greater|equal|many|number|outnumbers?|than)\b", re.IGNORECASE
)
#: Of those, the forms that surely compare two counts ("more cubes than balls", "as many ... as",
#: "the same number of", "equal number", "outnumber"; not "more than two cubes", a number no
#: tool here compares with): ``exist`` is then no step of the program
#: (:meth:`Expectation.unfit_tools`).
_TWO_COUNTS_RE = re.compile(
    r"\b(more|fewer|less|greater)\b(?!\s+than\s+(\d|zero|one|two|three|four|five|six|seven|eight|nine|"
    r"ten)\b).*\bthan\b|\bas many\b.*\bas\b|\b(same|equal) number\b|\bequally many\b"
    r"|\boutnumbers?\b",
    re.IGNORECASE,
)
#: Two sets joined ("red or metal", "either", "both red and metal").
_EITHER_RE = re.compile(r"\b(or|either)\b", re.IGNORECASE)
_BOTH_RE = re.compile(r"\bboth\b", re.IGNORECASE)
_AND_RE = re.compile(r"\band\b", re.IGNORECASE)
#: "the same color as", "Do the A and the B have the same shape?", "Is the size of the A the
#: same as the B?": a question that compares an attribute between objects (``same``'s work).
_SAME_ATTR_RES = (
    re.compile(r"\bsame (colou?r|shape|size|material)\b", re.IGNORECASE),
    re.compile(r"\b(colou?r|shape|size|material) of\b.*\bthe same as\b", re.IGNORECASE),
)


def compared_attribute(question: str) -> str | None:
    """The attribute a question compares between objects ("Is the cube the same color as the
    ball?" -> color; "Is the size of the cube the same as the ball?" -> size), else None."""
    for pattern in _SAME_ATTR_RES:
        if m := pattern.search(question):
            return "color" if m.group(1).lower().startswith("colo") else m.group(1).lower()
    return None


def scene_words(texts: Iterable[str]) -> Counter[str]:
    """How often each scene word (:data:`_SCENE_WORDS`, synonyms normalised) occurs in ``texts``."""
    words = (normalize_word(w) for t in texts for w in re.findall(r"[a-z]+", t.lower()))
    return Counter(w for w in (_COMPARISONS.get(w, w) for w in words) if w in _SCENE_WORDS)


#: Words that join a description's last values to its noun ("cylinders that are tiny",
#: "spheres made of metal", "the cube is red", "Is the cube red?"): one object, not two.
_POSTMODIFIERS = frozenset(
    {"that are", "that is", "which are", "which is", "made of", "are made of", "is made of",
     "that are made of", "which are made of", "that is made of", "which is made of", "are",
     "is", ""}
)  # fmt: skip
#: Of those, the ones that may say something of the question's subject rather than the noun
#: before ("Is the cube left of the sphere red?": the cube is red): not joined after a relation.
_PREDICATES = frozenset({"are", "is", ""})


def _describes_the_noun_before(value: str, gap: str, out: list[str | frozenset[str]]) -> bool:
    """Whether ``value``, after the words ``gap``, says more of the object ``out`` ends with:
    one named by its noun (a shape), with no value of ``value``'s attribute yet."""
    last = out[-1] if out else None
    if not isinstance(last, frozenset) or gap not in _POSTMODIFIERS:
        return False
    if gap in _PREDICATES and any(isinstance(c, str) for c in out):
        return False
    attributes = {_ATTRIBUTE_OF[v] for v in last}
    return "shape" in attributes and _ATTRIBUTE_OF[value] not in attributes


def _chunks(question: str) -> list[str | frozenset[str]]:
    """A question as its objects (runs of consecutive attribute words, synonyms normalised; a
    shape ends a run, and values after it joined by "that are", "made of" or "is" describe the
    same object) and the spatial relation words between them, in order."""
    out: list[str | frozenset[str]] = []
    current: set[str] = set()
    gap: list[str] = []  # the words since the last object
    for raw in re.findall(r"[a-z]+", _HOW_BIG_RE.sub(" ", question).lower()):
        word = normalize_word(raw)
        if word in _VALUES:
            if not current and _describes_the_noun_before(word, " ".join(gap), out):
                current = set(out.pop())  # "cylinders that are tiny": the cylinders' size
            current.add(word)
            gap = []
            if word not in ATTRIBUTES["shape"]:
                continue
        if current:
            out.append(frozenset(current))
            current = set()
        if word in _RELATIONS:
            out.append(word)
        elif word not in _VALUES:
            gap.append(word)
    if current:
        out.append(frozenset(current))
    return out


#: Every attribute value's place in a phrase: sizes, colours, materials, then shapes.
_PHRASE_ORDER = {v: i for i, v in enumerate(v for vs in ATTRIBUTES.values() for v in vs)}
_ATTRIBUTE_OF = {v: attr for attr, vs in ATTRIBUTES.items() for v in vs}


def _spelled(values: Iterable[str]) -> str:
    """Attribute values in the order a phrase says them: "small gray metal cube"."""
    return " ".join(sorted(values, key=_PHRASE_ORDER.__getitem__))


#: Words that change what a question's objects mean ("not cubes", "all the spheres", "other
#: than"): a question with one is never reworded (:func:`canonical_question`).
_NOT_REWORDED_RE = re.compile(
    rf"\b({_NEGATIONS}|other|others|else|all|every|each|either|neither|nor|or|and|both|only|"
    r"than|same|as)\b|n't\b",
    re.IGNORECASE,
)


#: "Are the A and the B the same color?", "Do the A and the B have the same size?" (CLEVR's
#: words), "Does the A have the same size as the B?": the templates ask "Is the A the same
#: color as the B?".
_PAIR_SAME_RES = (
    re.compile(
        r"\s*(?:are|do)\s+the\s+(?P<a>.+?)\s+and\s+the\s+(?P<b>.+?)\s+(?:have\s+)?(?:the\s+)?"
        r"same\s+(?P<attribute>colou?r|shape|size|material)\s*[?.!]*\s*$",
        re.IGNORECASE,
    ),
    re.compile(
        r"\s*does\s+the\s+(?P<a>.+?)\s+have\s+the\s+same\s+(?P<attribute>colou?r|shape|size|"
        r"material)\s+as\s+the\s+(?P<b>.+?)\s*[?.!]*\s*$",
        re.IGNORECASE,
    ),
)
#: "Do the spheres outnumber the cubes?": the templates ask "Are there more spheres than cubes?".
_OUTNUMBER_RE = re.compile(
    r"\s*(?:do|does)\s+(?:the\s+)?(?P<a>.+?)\s+outnumber\s+(?:the\s+)?(?P<b>.+?)\s*[?.!]*\s*$",
    re.IGNORECASE,
)


def compared_in_template_words(question: str) -> str | None:
    """A comparison of two objects' attribute or of two counts, worded as the templates word
    it ("Are the cube and the ball the same color?" -> "Is the cube the same color as the
    ball?"; "Do the spheres outnumber the cubes?" -> "Are there more spheres than cubes?"), else
    None (:func:`canonical_question`)."""
    if m := next(filter(None, (p.match(question) for p in _PAIR_SAME_RES)), None):
        attribute = m["attribute"].lower().replace("colour", "color")
        text = f"Is the {m['a']} the same {attribute} as the {m['b']}?"
    elif m := _OUTNUMBER_RE.match(question):
        text = f"Are there more {m['a']} than {m['b']}?"
    else:
        return None
    return None if _NOT_REWORDED_RE.search(f"{m['a']} {m['b']}") else text


def canonical_question(question: str) -> str | None:
    """``question`` reworded as the templates the embedded core learned from word that form
    ("How many red things?", "Count the spheres.", "How many spheres are made of metal?" ->
    "How many red things are there?", "How many spheres are there?", "How many metal spheres
    are there?"; "Is the red cube large?" -> "Are there any large red cubes?"; "Which color is
    the shiny ball?" -> "What color is the metal sphere?"; and the comparisons of
    :func:`compared_in_template_words`), else None: a question that is not about one object
    described by attribute words (a relation, another comparison, a negation, two objects, two
    values of one attribute, no kind of answer), or is so worded already.

    For a controller whose own programs for the user's words do not fit them: the rewording
    says the same of the one object the question is about, in words it knows."""
    if compared := compared_in_template_words(question):
        return compared
    e = Expectation.of(question)
    if (e.relations or e.same is not None or e.words["more"] or e.words["fewer"]
            or (not e.objects and e.kind != "a number") or _NOT_REWORDED_RE.search(question)):  # fmt: skip
        return None
    merged = frozenset[str]().union(*e.objects)
    by_attr = Counter(_ATTRIBUTE_OF[v] for v in merged)
    if sum(len(p) for p in e.objects) != len(merged) or max(by_attr.values(), default=0) > 1:
        return None  # a value said twice, or two values of one attribute: not one object
    shape = next((v for v in merged if _ATTRIBUTE_OF[v] == "shape"), None)
    described = _spelled(merged - {shape} if shape else merged)

    def noun(plural: bool) -> str:
        word = shape or "thing"
        return " ".join(filter(None, (described, word + "s" if plural else word)))

    if e.kind == "a number":
        text = f"How many {noun(True)} are there?"
    elif e.kind == "yes/no":
        text = f"Are there any {noun(True)}?"
    elif e.kind is not None and e.kind.startswith("a ") and e.kind[2:] in ATTRIBUTES:
        asked = e.kind[2:]
        if by_attr[asked]:
            return None  # "What color is the red cube?": the value asked is given
        text = f"What {asked} is the {noun(False)}?"
    else:
        return None
    return None if text.lower() == " ".join(question.lower().split()) else text


#: "Is the purple cube red?", "Is the small gray cube shiny?", "Is the red thing a sphere?",
#: "Is the cube left of the ball made of metal?": a yes/no question that ends on one value of
#: the object it names.
_ATTRIBUTE_CHECK_RE = re.compile(
    r"\s*is\s+(?P<subject>(?:the|this|that)\s+(?:.+?\s+)??(?P<noun>[a-z]+))\s+"
    r"(?P<article>made (?:of|from)\s+|an?\s+)?(?P<value>[a-z]+)\s*[?.!]*\s*$",
    re.IGNORECASE,
)
_NOUNS = frozenset({"thing", "object", "one", *ATTRIBUTES["shape"]})


def attribute_check(question: str) -> tuple[str, str, str] | None:
    """A yes/no question that says one value of the one object it names, as the question
    asking for that attribute, the attribute and the value: "Is the purple cube red?" ->
    ("What color is the purple cube?", "color", "red"); "Is the red thing a sphere?" -> ("What
    shape is the red thing?", "shape", "sphere"). None for any other: one that does not end on
    a value said of its subject's noun (a shape with "a"), or negates, compares or joins
    (:data:`_NOT_REWORDED_RE`).

    For a controller with no program for such a question that fits it (a colour said twice is
    no object it knows): its program for the attribute's question finds the object, and a
    ``select`` of the value on that object answers."""
    m = _ATTRIBUTE_CHECK_RE.match(resolved(question))
    if m is None or _NOT_REWORDED_RE.search(question):
        return None
    value, noun = (normalize_word(m[k].lower()) for k in ("value", "noun"))
    attribute = _ATTRIBUTE_OF.get(value)
    if (
        attribute is None
        or noun not in _NOUNS
        or (attribute == "shape") != ((m["article"] or "").strip().lower() in ("a", "an"))
    ):
        return None
    if any(value in chunk for chunk in phrases(m["subject"])):
        return None  # "Is the red cube red?": nothing to verify
    return f"What {attribute} is {m['subject']}?", attribute, value


#: Superlative words -> the ``most`` of ``select`` that finds their object.
_SUPERLATIVES = {
    "left": ("leftmost", "left-most"),
    "right": ("rightmost", "right-most"),
    "front": ("frontmost", "front-most", "foremost", "closest", "nearest"),
    "behind": ("backmost", "back-most", "rearmost", "hindmost", "farthest", "furthest",
               "most distant"),
    "large": ("biggest", "largest"),
    "small": ("smallest", "tiniest", "littlest"),
}  # fmt: skip
_MOST_OF = {w: most for most, words in _SUPERLATIVES.items() for w in words}
_SUP_WORD = "|".join(sorted(map(re.escape, _MOST_OF), key=len, reverse=True))
_SIDE = r"(?P<side>left|right|front|back)"
#: Where a superlative's words follow its noun: "the cube on the far left", "the thing
#: furthest to the right", "the object closest to the camera", "the sphere in the very back".
_AFTER_NOUN = (
    rf"(?:(?:that|which)\s+(?:is|are)\s+)?(?:"
    rf"(?:on|at|to|in)\s+the\s+(?:far|very|extreme)\s+{_SIDE}"
    rf"|(?P<sup>{_SUP_WORD})(?:\s+(?:to\s+the\s+)?{_SIDE.replace('side', 'side2')}"
    r"|\s+away)?)"
)
_NOUN_WORD = "|".join([*_NOUNS, *(k for k, v in SYNONYMS.items() if v in _NOUNS)])
#: The words an object's values are said in ("big", "shiny", "red"), shapes aside.
_VALUE_WORD = "|".join(
    w
    for w in (*_ATTRIBUTE_OF, *SYNONYMS)
    if _ATTRIBUTE_OF.get(normalize_word(w), "shape") != "shape"
)
#: An ordinal before a superlative ("the second leftmost", "the third-biggest", "the 2nd").
_RANKS = {w: rank for rank, w in enumerate(ORDINALS) if w} | {
    f"{n}{end}": n for n, end in ((2, "nd"), (3, "rd"), *((n, "th") for n in range(4, 10)))
}
_NTH = "|".join(_RANKS)
#: An object named with a superlative: its article, the words before the noun, the noun.
_SUPERLATIVE_RE = re.compile(
    rf"\b(?P<the>the)\s+(?:(?:(?P<nth>{_NTH})[\s-]+)?(?P<pre>{_SUP_WORD})\s+)?"
    rf"(?P<words>(?:(?:{_VALUE_WORD})\s+){{0,3}})"
    rf"(?P<noun>{_NOUN_WORD})\b(?(pre)|\s+{_AFTER_NOUN})"
    r"(?P<towards>\s+(?:to|from)\s+(?:the\s+)?(?:camera|viewer|us|you|me|front|back))?",
    re.IGNORECASE,
)
#: "Which object is (the) leftmost?", "What is the biggest thing?": which object it is, as
#: "Which object is purple?" asks (its shape).
_WHICH_MOST_RE = re.compile(
    rf"\s*(?:which\s+(?:object|thing|one)\s+is\s+(?:the\s+)?(?P<sup>{_SUP_WORD})"
    rf"(?:\s+(?:one|object|thing))?|what\s+is\s+the\s+(?P<sup2>{_SUP_WORD})\s+"
    r"(?:one|object|thing))\s*(?:(?:to|from)\s+(?:the\s+)?(?:camera|viewer|us|you|me))?\s*[?.!]*\s*$",
    re.IGNORECASE,
)
_SIDES = {"left": "left", "right": "right", "front": "front", "back": "behind"}
#: "the biggest of the cubes", "the leftmost one of the red things": said as "the biggest cube".
_OF_THE_RE = re.compile(
    rf"\b(the\s+(?:(?:{_NTH})[\s-]+)?(?:{_SUP_WORD}))\s+(?:one\s+)?of\s+the\s+"
    rf"((?:(?:{_VALUE_WORD})\s+)*)({_NOUN_WORD})(?:s|es)\b",
    re.IGNORECASE,
)
#: "the second cube from the left", "the third one from the front": said as "the second
#: leftmost cube", "the third frontmost one".
_FROM_THE_RE = re.compile(
    rf"\b(the\s+(?:{_NTH}))\s+((?:(?:{_VALUE_WORD})\s+)*)(?:({_NOUN_WORD})(?:s|es)?\s+)?"
    r"from\s+the\s+(left|right|front|back)\b",
    re.IGNORECASE,
)
_FROM_SIDE = {"left": "leftmost", "right": "rightmost", "front": "frontmost", "back": "backmost"}


def _from_the(m: re.Match[str]) -> str:
    return f"{m[1]} {_FROM_SIDE[m[4].lower()]} {m[2]}{m[3] or 'one'}"


@dataclass(frozen=True)
class Superlative:
    """An object a question names with a superlative ("the leftmost cube"): the question with
    it named plainly ("the cube"), which way ``select``'s ``most`` takes, and the object's own
    values ({"shape": "cube"}) that the ``select`` finding it filters by; ``named``, how the
    plain question names it ("the cube"), to be named otherwise there."""

    question: str
    most: str
    filters: dict[str, str]
    named: str = "the object"
    rank: int = 1  # 2: "the second leftmost cube"

    @property
    def word(self) -> str:
        """What the object is called: "leftmost", "second leftmost"."""
        return " ".join(w for w in (ORDINALS[self.rank], MOST_NAMES[self.most]) if w)

    @property
    def select_args(self) -> dict[str, Any]:
        """The arguments of the ``select`` that finds the object among those with its values."""
        return {**self.filters, "most": self.most} | ({"rank": self.rank} if self.rank > 1 else {})


def superlative(question: str) -> Superlative | None:
    """The object ``question`` names with a superlative, or None when it names none: "What
    color is the leftmost cube?" -> ("What color is the cube?", "left", {"shape": "cube"});
    "How many spheres are left of the biggest metal thing?" -> (".. left of the metal thing?",
    "large", {"material": "metal"}); "the cube on the far right", "the object closest to the
    camera"; "Which object is leftmost?" asks its shape; an ordinal ranks further ("the second
    cube from the left", "the third biggest sphere": ``rank`` 2, 3). Only the first such object
    is read (:func:`superlatives` reads them all); "the biggest of the cubes" is "the biggest
    cube"."""
    question = _OF_THE_RE.sub(r"\1 \2\3", _FROM_THE_RE.sub(_from_the, question))
    which = _WHICH_MOST_RE.match(question)
    if which:
        word = (which["sup"] or which["sup2"]).lower()
        return Superlative("What shape is the object?", _MOST_OF[word], {})
    m = _SUPERLATIVE_RE.search(question)
    if m is None or re.search(rf"\b(?:{_NOUN_WORD})s?\s+$", question[: m.start()], re.IGNORECASE):
        return None  # "Is the red cube the leftmost object?": which, not what of it
    if m["pre"]:
        most = _MOST_OF[m["pre"].lower()]
    elif m["side"] or m["side2"]:
        most = _SIDES[(m["side"] or m["side2"]).lower()]
    else:
        most = _MOST_OF[m["sup"].lower()]
    words = m["words"].split()
    filters = {_ATTRIBUTE_OF[v]: v for v in (normalize_word(w.lower()) for w in words)}
    if (noun := normalize_word(m["noun"].lower())) in ATTRIBUTES["shape"]:
        filters["shape"] = noun
    named = " ".join([m["the"], *words, "object" if m["noun"].lower() == "one" else m["noun"]])
    rank = _RANKS[m["nth"].lower()] if m["nth"] else 1
    plain = question[: m.start()] + named + question[m.end() :]
    return Superlative(plain, most, filters, named, rank)


def superlatives(question: str) -> list[Superlative]:
    """Every object ``question`` names with a superlative, first to last: each read off the
    plain question of the one before, the last's plain question naming them all plainly ("Are
    the leftmost object and the rightmost object the same color?" -> "Are the object and the
    object the same color?", read first as the leftmost, then as the rightmost)."""
    out: list[Superlative] = []
    while len(out) < 4 and (sup := superlative(out[-1].question if out else question)):
        out.append(sup)
    return out


def phrases(question: str) -> tuple[frozenset[str], ...]:
    """The attribute values of each object a question describes: its runs of consecutive
    attribute words ("How many small objects are left of the big purple thing?" -> {small},
    {large, purple}; "small rubber or cylinders" -> {small, rubber}, {cylinder})."""
    return tuple(c for c in _chunks(question) if isinstance(c, frozenset))


def references(question: str) -> dict[str, tuple[frozenset[str], ...]]:
    """Each spatial relation the question names -> the objects it is taken from: the object
    right after the relation word ("small rubber cylinders right of the large rubber block" ->
    right: {large, rubber, cube})."""
    chunks = _chunks(question)
    out: dict[str, tuple[frozenset[str], ...]] = {}
    for i, chunk in enumerate(chunks):
        if isinstance(chunk, str):
            after = next((c for c in chunks[i + 1 :] if isinstance(c, frozenset)), None)
            if after is not None:
                out[chunk] = (*out.get(chunk, ()), after)
    return out


def described(args: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments but ``select``'s ``most`` and ``rank``, which rank the objects a
    question names and name no value of them ("large": the biggest of the cubes, not the large
    cubes)."""
    return {k: v for k, v in args.items() if k not in ("most", "rank")}


def call_values(call: ToolCall, names: Iterable[str] = ()) -> set[str]:
    """The attribute values one call filters by (variables in ``names`` are not words)."""
    passed = set(names)
    return {w for w in scene_words(s for s in strings_in(described(call.args)) if s not in passed)
            if w in _VALUES}  # fmt: skip


def program_words(program: dsl.Program) -> Counter[str]:
    """The scene words a program's arguments name (variables passed by name aside: a value
    ``red_things`` refers to a result, it does not filter by red)."""
    names = {call.name for call in program.calls}
    return scene_words(
        s for call in program.calls for s in strings_in(described(call.args)) if s not in names
    )


def unused_calls(program: dsl.Program) -> list[ToolCall]:
    """The calls whose result nothing reads: no later line passes the variable and ANSWER is
    not it. A program for "Are there more cubes than balls?" that selects both and asks whether
    there are cubes leaves the balls unused: it names what the question names and answers yes
    or no, yet answers another question."""
    read = {program.answer.get("ref")}
    unused = []
    for call in reversed(program.calls):  # a name is read only by the lines after it
        if call.name not in read:
            unused.append(call)
        read.update(strings_in(call.args))
    return unused[::-1]


@dataclass(frozen=True)
class Expectation:
    """What a question's form says of a program for it: the kind of answer it asks for
    (:func:`question_kind`) and the scene words it names (:func:`scene_words`), which a
    program's arguments should name as often (no filter dropped, none added)."""

    kind: str | None
    words: Counter[str]
    #: the attribute values of each object the question describes (:func:`phrases`)
    objects: tuple[frozenset[str], ...] = ()
    #: each relation -> the objects the question takes it from (:func:`references`)
    relations: dict[str, tuple[frozenset[str], ...]] = field(default_factory=dict)
    #: the attribute the question compares between objects (:func:`compared_attribute`)
    same: str | None = None
    #: whether the question negates ("cubes that are not red", "aren't"): see :meth:`joins`
    negated: bool = False
    #: whether it joins two sets by "or" / "either", and by "both": see :meth:`joins`
    either: bool = False
    both: bool = False
    #: whether it asks if all of a set are so ("Are all the cubes red?"): see :meth:`joins`
    universal: bool = False
    #: whether it may compare two counts (:data:`_COUNTS_COMPARED_RE`): see :meth:`unfit_tools`
    counts_compared: bool = True
    #: whether it says "and" (two sets may be joined: "cylinders and left of the cube")
    anded: bool = True
    #: whether it surely compares two counts (:data:`_TWO_COUNTS_RE`): see :meth:`unfit_tools`
    two_counts: bool = False

    def kind_fits(self, answer: str) -> bool:
        """Whether ``answer`` is of the kind the question asks for (any, when it says none). A
        value question takes a word the detector does not know ("navy" for a colour: another
        model's vocabulary), not a value of another attribute ("cube" for a size)."""
        got = answer_kind(answer)
        if self.kind is None or got == self.kind:
            return True
        return got == "a value" and self.kind not in ("yes/no", "a number")

    @classmethod
    def of(cls, question: str) -> Expectation:
        """What ``question`` expects, read as one sentence (:func:`resolved`: "There is a X;
        ... it?" names X where "it" stood). "How big / large / small is ..." asks for a size:
        its word names none to filter by."""
        question = resolved(question)
        words = scene_words([_HOW_BIG_RE.sub(" ", question)])
        kind = question_kind(question)
        return cls(kind, words, phrases(question), references(question),
                   compared_attribute(question), bool(_NEGATED_RE.search(question)),
                   bool(_EITHER_RE.search(question)), bool(_BOTH_RE.search(question)),
                   kind == "yes/no" and bool(_UNIVERSAL_RE.search(question)),
                   bool(_COUNTS_COMPARED_RE.search(question)),
                   bool(_AND_RE.search(question)),
                   kind == "yes/no" and bool(_TWO_COUNTS_RE.search(question)))  # fmt: skip

    def without(self, word: str) -> Expectation:
        """The same expectation with one occurrence of scene word ``word`` fewer (a program
        read without that filter is held to the rest)."""
        word = normalize_word(word)
        relations = {r: tuple(p - {word} for p in ps) for r, ps in self.relations.items()}
        return replace(self, words=self.words - Counter([word]), relations=relations,
                       objects=tuple(p - {word} for p in self.objects))  # fmt: skip

    def mixed(self, call: ToolCall, names: Iterable[str] = ()) -> str | None:
        """Why ``call`` filters by values of two different objects of the question ("small
        purple" for "the small objects left of the big purple thing"), else None: the values
        one call filters by should all describe one object (:func:`phrases`)."""
        values = call_values(call, names)
        if not values or not self.objects or self.one_object(values):
            return None
        return f"the line filters by {_spelled(values)}, which no one object of the question is"

    def one_object(self, values: set[str]) -> bool:
        """Whether attribute ``values`` all describe one object of the question (:func:`phrases`)."""
        return any(values <= p for p in self.objects)

    def comparisons(self) -> tuple[str, ...]:
        """The comparisons of two counts the question asks (``compare``'s relation): ``more``
        for "greater" / "more", ``fewer`` for "less" / "fewer", ``same`` for a question naming
        neither; both ``more`` and ``fewer`` when it names both."""
        asked = tuple(w for w in ("more", "fewer") if self.words[w])
        return asked or ("same",)

    def misplaced(self, call: ToolCall, made: dict[str, set[str]]) -> str | None:
        """Why ``call`` takes a relation from another object than the question does, else
        None: for "the large metal thing right of the tiny gray thing", ``relate(...,
        reference=large_metal_things, relation="right")`` where ``made`` (each earlier result's
        name -> the values its call filtered by) says the reference was selected as large and
        metal; the question takes "right" from the tiny gray one."""
        relation, ref = call.args.get("relation"), call.args.get("reference")
        if not isinstance(relation, str) or not isinstance(ref, str):
            return None
        taken_from = self.relations.get(normalize_word(relation))
        values = made.get(ref)
        if not taken_from or not values or self.takes(relation, values):
            return None
        question_refs = " or the ".join(_spelled(p) for p in taken_from)
        return (
            f"the line takes {relation} from {ref} ({_spelled(values)}), but the question takes "
            f"it from the {question_refs}"
        )

    def compared(self, call: ToolCall) -> str | None:
        """Why ``call``, a comparison of two counts (``compare``), asks another comparison than
        the question ("greater than" asks ``more``, "less" or "fewer" ``fewer``, a question
        naming neither ``same``), else None. A whole program is held to this by its words
        (:meth:`unmet`); one line at a time, a later line cannot mend it."""
        relation = call.args.get("relation")
        if call.tool != "compare" or relation not in _COUNT_RELATIONS:
            return None
        asked = self.comparisons()
        if len(asked) > 1 or relation == asked[0]:  # naming both, a line may take either
            return None
        return f"the line compares with {relation}, but the question asks for {asked[0]}"

    def joins(self) -> tuple[str, ...] | None:
        """The ways ``combine`` may join two sets for this question: ``difference`` for a
        negated one ("How many cubes are not red?": the cubes without the red things),
        ``intersection`` or ``difference`` for one asked of all of a set ("Are all the cubes
        red?": as many red cubes as cubes, or no cube left without the red things), ``union`` or
        ``intersection`` for any other: only ``union`` when it says "or" / "either" and not
        "both" ("How many things are red or cubes?"), only ``intersection`` when it says "both"
        and not "or" ("How many things are both rubber and blue?": stage 2g wrote a union);
        None (any) for a negated or universal question that also joins by "or" / "either" /
        "both" ("not red or blue"), or is both ("Are all the cubes not red?")."""
        if not (self.negated or self.universal):
            if self.either != self.both:
                return ("union",) if self.either else ("intersection",)
            return ("union", "intersection")
        if self.either or self.both or (self.negated and self.universal):
            return None
        return ("difference",) if self.negated else ("intersection", "difference")

    def only_tools(self) -> frozenset[str] | None:
        """The tools a program for the question may call, when its kind says which (None: any
        but :meth:`unfit_tools`): ``caption`` for a description of the image ("Describe the
        image.": the core, never trained on one, wrote ``exist(objects=objs)``)."""
        return frozenset({"caption"}) if self.kind == "a description" else None

    def unfit_tools(self) -> frozenset[str]:
        """Tools no program for the question calls, which the grammar leaves out while a
        program is decoded (:func:`~agentkit.planners.roles.program_grammar`): ``exist`` for one
        asked of all of a set (:meth:`inverted`); ``compare`` for a yes/no question that neither
        compares two counts nor asks of all ("Is there a thing that is metal and a cube?"
        joins two sets, it compares none), and ``exist`` for one that surely compares two
        counts ("Are there more cylinders than cubes?": the core wrote ``exist(cylinders)``);
        the yes/no tools (``exist``, ``compare``) for one
        asking for a number or a value, and ``count`` for one asking for a value — a
        question's kind says what its last line computes, and none of those is on the way to
        it ("How many cubes are not red?" is a count of cubes without the red things, never a
        comparison of the two). And ``combine`` for any question that neither negates, asks of
        all, nor joins by "and", "or", "either" or "both" ("Are there as many matte objects as
        gray things?" compares two sets, it joins none)."""
        unfit = set()
        if not (self.negated or self.universal or self.either or self.both or self.anded):
            unfit.add("combine")
        if self.kind == "yes/no":
            if (self.universal and not self.negated) or self.two_counts:
                unfit.add("exist")
            if not self.universal and not self.counts_compared:
                unfit.add("compare")
        elif self.kind == "a number":
            unfit |= {"exist", "compare"}
        elif self.kind:
            unfit |= {"exist", "compare", "count"}
        return frozenset(unfit)

    def inverted(self, program: dsl.Program) -> str | None:
        """Why ``program`` answers a question asked of all of a set ("Are all the cubes red?")
        the wrong way round, else None: ANSWER from ``exist`` says whether any object is there
        (a cube that is not red: then the answer is no), and no tool here turns that over."""
        ref = program.answer.get("ref")
        call = next((c for c in program.calls if c.name == ref), None)
        if call is None or not self.universal or call.tool not in self.unfit_tools():
            return None
        return (f"ANSWER = {ref} = {call.tool}(...) says whether any object is there, but the "
                "question asks whether all are so")  # fmt: skip

    def joined_otherwise(self, call: ToolCall) -> str | None:
        """Why ``call``, a ``combine``, joins two sets otherwise than the question's words allow
        (:meth:`joins`), else None."""
        op, allowed = call.args.get("op"), self.joins()
        if call.tool != "combine" or not isinstance(op, str) or allowed is None or op in allowed:
            return None
        if self.negated or self.universal:
            said = "negates" if self.negated else "asks of all of a set"
        else:
            one_way: dict[tuple[str, ...], str] = {
                ("union",): 'says "or"',
                ("intersection",): 'says "both"',
            }
            said = one_way.get(allowed, "negates nothing")
        return f"the line joins by {op}, but the question {said}: {' or '.join(allowed)}"

    def swapped(self, call: ToolCall, made: dict[str, set[str]]) -> str | None:
        """Why ``call``, a comparison of two counts (``compare``, ``more`` or ``fewer``),
        counts the question's objects the other way round, else None: "Are there more cubes
        than spheres?" and "Is the number of cubes greater than ..." count the cubes as ``a``
        (``made``: each earlier result's name -> the values its call filtered by)."""
        if call.tool != "compare" or call.args.get("relation") not in ("more", "fewer"):
            return None
        a, b = (call.args.get(k) for k in ("a", "b"))
        values = [made.get(v) if isinstance(v, str) else None for v in (a, b)]
        first, second = (next((i for i, p in enumerate(self.objects) if v and v <= p), None)
                         for v in values)  # fmt: skip
        if first is None or second is None or first <= second:
            return None
        return (
            f"the line counts {a} ({_spelled(values[0] or set())}) as a and {b} "
            f"({_spelled(values[1] or set())}) as b, but the question names them the other way"
        )

    def unsame(self, program: dsl.Program) -> str | None:
        """Why ``program`` does not compare the attribute the question compares (:attr:`same`),
        else None: it should call ``same`` on that attribute, between two different results (a
        phrase's objects against themselves compare nothing); a question that compares none
        ("Can you count the green things?") has no ``same`` to call."""
        calls = [c for c in program.calls if c.tool == "same"]
        if self.same is None:
            if not calls:
                return None
            return (
                "the program compares an attribute with same(...), but the question compares none"
            )
        if not any(c.args.get("attribute") == self.same for c in calls):
            call = f'same(..., attribute="{self.same}")'
            return f"the question compares {self.same}, but no line calls {call}"
        if all(c.args.get("objects") == c.args.get("reference") for c in calls):
            return "same(...) compares a result with itself"
        return None

    def words_for(
        self, tool: str, keyword: str, given: tuple[str, ...], code: Code | None = None
    ) -> tuple[str, ...] | None:
        """What a call's string may be while it is written (a
        :data:`~agentkit.planners.grammar.WordRule`; ``given``: the strings the call already
        gave; ``code``: the code so far), so the rules above hold as the code is decoded rather
        than only after:

        - an attribute filter of ``select`` / ``detect`` takes a value that, with the call's
          filters so far, describes one object of the question (:meth:`mixed`; a question
          naming none of that attribute leaves the keyword out);
        - a ``where`` dict (``count``'s filters) is held as a select's filters: each key an
          attribute with a value left, each value as the select's;
        - ``same`` compares the attribute the question compares (:attr:`same`);
        - ``query`` asks for the attribute the question asks for (:func:`question_kind`):
          "What shape is the other thing of the same size as the cube?" queries shape, not
          size;
        - ``relate`` takes a relation the question names (any, when it names none), and of
          those, when its reference was selected in this program, one the question takes from
          the object so selected (:meth:`misplaced`): "behind the cyan cube or in front of the
          big cube" relates the cyan cubes by ``behind``; ``compare`` the comparison it asks
          (:meth:`compared`); ``combine`` the join its negation allows (:meth:`joins`).

        None (no rule) for every other string, and for questions that describe no object."""
        if not self.objects and not self.words:
            return None
        if keyword.startswith("where."):  # count's filters: keys are attributes, as select's
            attr = keyword.removeprefix("where.")
            if not attr:
                return tuple(a for a in ATTRIBUTES if self.words_for("select", a, given) != ())
            return self.words_for("select", attr, given) if attr in ATTRIBUTES else None
        if tool in ("select", "detect") and keyword in ATTRIBUTES:
            had = _values(given)
            return tuple(_spellings(v for v in ATTRIBUTES[keyword] if self.one_object(had | {v})))
        if tool == "same" and keyword == "attribute" and self.same is not None:
            return (self.same,)
        if tool == "relate" and keyword == "relation":  # a required keyword: only a narrowing
            named = tuple(r for r in _RELATIONS if self.words[r])
            return self.taken_from(named, code) or named or None
        if tool == "compare" and keyword == "relation":
            return self.comparisons()
        if tool == "combine" and keyword == "op":
            return self.joins()
        if tool == "query" and keyword == "attribute" and self.kind in _ASKED_ATTRIBUTE:
            return (_ASKED_ATTRIBUTE[self.kind],)
        return None

    def taken_from(self, relations: tuple[str, ...], code: Code | None) -> tuple[str, ...]:
        """Of ``relations``, those the question takes from the object the ``relate`` being
        written passed as its reference, when a select of this program made it by attribute
        values (:meth:`misplaced`); empty when that is not known or none fits."""
        ref = dict(code.passed).get("reference") if code else None
        line = code.line(ref) if code and ref else None
        if line is None or line.tool not in ("select", "detect"):
            return ()
        values = _values(line.given)
        return tuple(r for r in relations if self.takes(r, values)) if values else ()

    def takes(self, relation: str, values: set[str]) -> bool:
        """Whether the question takes ``relation`` from an object attribute ``values`` describe
        (:func:`references`)."""
        return any(values <= p for p in self.relations.get(normalize_word(relation), ()))

    def turn_unmet(
        self, turn: ToolCall | FinalAnswer, names: Iterable[str] = (),
        made: dict[str, set[str]] | None = None,
    ) -> str | None:  # fmt: skip
        """Why one turn of line-by-line work does not fit the question, else None: an answer of
        another kind than asked, a call naming a scene word the question does not name
        ("green" for "the gray cylinders"; ``names``, the variables a call may pass, are not
        words), filtering by values of two objects (:meth:`mixed`), taking a relation from
        another object than the question does (:meth:`misplaced`; ``made``: the earlier
        results' names -> the values their calls filtered by) or comparing two counts otherwise
        than asked (:meth:`compared`). A filter the question names
        but the line leaves out may come in a later line."""
        if isinstance(turn, FinalAnswer):
            if self.kind_fits(turn.answer):
                return None
            return f"the answer {turn.answer!r} is not {self.kind}"
        passed = set(names)
        named = scene_words(s for s in strings_in(described(turn.args)) if s not in passed)
        if extra := sorted(w for w in named if w not in self.words):
            return f"the line names {', '.join(extra)}, which the question does not"
        return (self.mixed(turn, passed) or self.misplaced(turn, made or {})
                or self.compared(turn) or self.joined_otherwise(turn))  # fmt: skip

    def unmet(self, program: dsl.Program, answer: str) -> str | None:
        """Why ``program`` (answering ``answer``) does not fit the question, else None."""
        if not self.kind_fits(answer):
            return f"ANSWER is {answer!r}, but the question asks for {self.kind}"
        if unused := unused_calls(program):
            lines = ", ".join(f"{c.name} = {c.tool}(...)" for c in unused)
            return f"nothing reads {lines}: the program answers another question"
        named = program_words(program)
        if self.words and named != self.words:
            missing, extra = self.words - named, named - self.words
            parts = [f"misses {', '.join(sorted(missing.elements()))}" if missing else "",
                     f"adds {', '.join(sorted(extra.elements()))}" if extra else ""]  # fmt: skip
            return "the program " + " and ".join(p for p in parts if p) + " against the question"
        if why := self.unsame(program) or self.inverted(program):
            return why
        names = {call.name for call in program.calls if call.name}
        made = {c.name: call_values(c, names) for c in program.calls if c.name}
        for call in program.calls:
            if why := (
                self.mixed(call, names)
                or self.misplaced(call, made)
                or self.swapped(call, made)
                or self.joined_otherwise(call)
            ):
                return f"{call.name} = {call.tool}(...): {why}"
        return None


def _values(strings: Iterable[str]) -> set[str]:
    """The attribute values among a call's strings (synonyms read as ``detect`` reads them)."""
    return {v for v in (normalize_word(g) for g in strings) if v in _VALUES}


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


#: "Is there ...", "Are there any ...", "Do you see ...", "Does the image contain ...": a question
#: whose "yes" needs an object found; a comparison of counts ("Are there more cubes than balls?",
#: "... an equal number of ...") is not one.
#: (``verify`` reads the phrase of a plain one after the same openers.)
EXISTENCE_OPENERS = (
    r"is there|are there(?: any)?|does the (?:scene|image|picture) (?:contain|have|show)|do you see"
)
_EXISTS_RE = re.compile(rf"\s*(?:{EXISTENCE_OPENERS})\b", re.IGNORECASE)
_COUNTS_RE = re.compile(r"\b(more|fewer|less|equal|same number)\b", re.IGNORECASE)


def asks_existence(question: str) -> bool:
    """Whether ``question`` asks if some object is there (not how two counts compare, nor
    whether something is there that is *not* so)."""
    question = resolved(question)
    return (bool(_EXISTS_RE.match(question)) and not _COUNTS_RE.search(question)
            and not _NEGATED_RE.search(question))  # fmt: skip


def searched_in_vain(steps: Iterable[Step]) -> bool:
    """Whether a tool of ``steps`` looked for objects and found none (an empty object list)."""
    return any(
        s.role == "executor" and isinstance(s.result, dict) and s.result.get("objects") == []
        for s in steps
    )


_ATTRIBUTE_KINDS = frozenset(f"a {attr}" for attr in ATTRIBUTES)


def grounded_answers(question: str, steps: Iterable[Step]) -> list[str]:
    """The short answers of the kind ``question`` asks for that the results of ``steps`` hold,
    in the order observed; empty when the question names no kind or none is there.

    A result's own answer (a yes or no, a count, a queried value: what ANSWER would read of it)
    comes first; only when no result answers with that kind do object lists speak: how many
    objects one holds (a number) and the attribute values of its objects (a colour, a size...).
    A yes/no question no result answers yes or no to may be answered either way, except one
    that asks whether something is there when a search found nothing: nothing seen says yes
    (a program for "Is there a sphere left of the red cube?" that stopped because no red cube
    was found), so it is no. A value of an object the run failed to find (a search found
    nothing and a call failed: "What color is the third sphere from the left?" of two) is not
    read off the other objects' lists: those are not the object asked about."""
    kind = question_kind(question)
    if kind is None:
        return []
    steps = list(steps)
    answers: list[str] = []
    listed: list[str] = []
    for step in steps:
        if step.role != "executor" or step.result is None:
            continue
        objects = step.result.get("objects")
        if isinstance(objects, list):
            listed.append(str(len(objects)))
            listed.extend(
                o[attr] for o in objects if isinstance(o, dict)
                for attr in ATTRIBUTES if isinstance(o.get(attr), str)
            )  # fmt: skip
            continue
        try:
            answers.append(dsl.format_answer(dsl.answer_value(step.result)))
        except dsl.DSLError:
            continue  # a result with no one short value (a caption's boxes, an error record)
    missed = (
        kind in _ATTRIBUTE_KINDS
        and searched_in_vain(steps)
        and any(s.role == "executor" and s.error for s in steps)
    )
    for tier in (answers,) if missed else (answers, listed):
        fitting = _unique(a for a in tier if answer_kind(a) == kind)
        if fitting:
            return fitting
    if kind != "yes/no":
        return []
    return ["no"] if asks_existence(question) and searched_in_vain(steps) else ["yes", "no"]


def can_choose(backend: Any) -> bool:
    """Whether ``backend`` scores replies (:func:`choose` reads its choice from them)."""
    return callable(getattr(backend, "score", None))


def choose(
    backend: Any, messages: list[Message], answers: list[str]
) -> tuple[Generation, str] | None:
    """The summarizer's reply when it picks among ``answers``: ``Final Answer:`` with the one
    the model finds likeliest after ``messages`` (``backend.score``: read from its distribution,
    as likelihood-scored benchmarks read multiple choices), and a note on the choice; None when
    the backend cannot score or there is nothing to choose from. A lone answer takes no call."""
    if not can_choose(backend) or not answers:
        return None
    t0 = time.perf_counter()
    replies = [f"{FINAL} {a}" for a in answers]
    logps = backend.score(messages, replies) if len(replies) > 1 else [0.0]
    best = max(range(len(replies)), key=logps.__getitem__)
    note = (
        f"the likeliest of the values the results hold: {', '.join(answers)}"
        if len(answers) > 1
        else "the only answer of the kind asked for that the results support"
    )
    gen = Generation(text=replies[best], model=backend.name, seconds=time.perf_counter() - t0)
    return gen, note
