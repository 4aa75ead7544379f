"""Answer kinds, and grounded answers: the summarizer writes a value the evidence holds.

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
from collections.abc import Iterable
from typing import Any

from agentkit.mllm.backends.base import Generation, Message
from agentkit.planners import dsl
from agentkit.state import Step
from agentkit.tools.detect import ATTRIBUTES, normalize_word

FINAL = "Final Answer:"

_YES_NO_RE = re.compile(
    r"\s*(is|are|does|do|did|was|were|has|have|can|could|will|would|should)\b", re.IGNORECASE
)
_NUMBER_RE = re.compile(r"\s*count\b|.*\b(how many|what number)\b", re.IGNORECASE | re.DOTALL)


#: "What ... colour / material / size / shape" and their other forms: the attribute a value
#: question asks for.
_ASKS_FOR = {
    "color": re.compile(r"\bcolou?rs?\b", re.IGNORECASE),
    "material": re.compile(r"\bmaterials?\b|\bmade of\b", re.IGNORECASE),
    "size": re.compile(r"\bsizes?\b|\bhow (big|large|small)\b", re.IGNORECASE),
    "shape": re.compile(r"\bshapes?\b|\bshaped\b", re.IGNORECASE),
}
_WHAT_RE = re.compile(r"\b(what|which|how)\b", re.IGNORECASE)


def question_kind(question: str) -> str | None:
    """The kind of answer a question's form asks for: ``yes/no`` (it opens with an auxiliary
    verb: "Is there ...", "Are there more ..."), ``a number`` ("How many", "What number", "Count ..."), ``a
    color`` / ``a material`` / ``a size`` / ``a shape`` (a what-question naming that one
    attribute: "The cube is made of what material?", "How big is the sphere?"), or None
    (anything else, or a question naming several attributes: no expectation)."""
    if _YES_NO_RE.match(question):
        return "yes/no"
    if _NUMBER_RE.match(question):
        return "a number"
    if not _WHAT_RE.search(question):
        return None
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


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def grounded_answers(question: str, steps: Iterable[Step]) -> list[str]:
    """The short answers of the kind ``question`` asks for that the results of ``steps`` hold,
    in the order observed; empty when the question names no kind or none is there.

    A result's own answer (a yes or no, a count, a queried value: what ANSWER would read of it)
    comes first; only when no result answers with that kind do object lists speak: how many
    objects one holds (a number) and the attribute values of its objects (a colour, a size...).
    A yes/no question no result answers yes or no to may be answered either way."""
    kind = question_kind(question)
    if kind is None:
        return []
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
    for tier in (answers, listed):
        fitting = _unique(a for a in tier if answer_kind(a) == kind)
        if fitting:
            return fitting
    return ["yes", "no"] if kind == "yes/no" else []


def choose(
    backend: Any, messages: list[Message], answers: list[str]
) -> tuple[Generation, str] | None:
    """The summarizer's reply when it picks among ``answers``: ``Final Answer:`` with the one
    the model finds likeliest after ``messages`` (``backend.score``: read from its distribution,
    as likelihood-scored benchmarks read multiple choices), and a note on the choice; None when
    the backend cannot score or there is nothing to choose from. A lone answer takes no call."""
    score = getattr(backend, "score", None)
    if score is None or not answers:
        return None
    t0 = time.perf_counter()
    replies = [f"{FINAL} {a}" for a in answers]
    logps = score(messages, replies) if len(replies) > 1 else [0.0]
    best = max(range(len(replies)), key=logps.__getitem__)
    note = (
        f"the likeliest of the values the results hold: {', '.join(answers)}"
        if len(answers) > 1
        else "the only value of the kind asked for that the results hold"
    )
    gen = Generation(text=replies[best], model=backend.name, seconds=time.perf_counter() - t0)
    return gen, note
