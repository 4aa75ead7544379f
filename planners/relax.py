"""Reading a referent no object matches without one of its words.

A question presupposes the object it says "the" of. When a ``select`` keeps nothing and a later
call needs what it kept (a query, a relation's reference), one of the question's words is likelier
wrong than the object missing: a word misheard ("purple" for "gray" in a spoken question) or an
attribute the detector read otherwise (a half-hidden rubber cube seen as metal). The ``program``
planner then reads that select with one filter left out (``Options.relax``), holding each reading,
run ahead, to the question less that word (:func:`agentkit.planners.program.relaxations`), and
takes first a reading whose select then keeps exactly one object ("the" presupposes one); the
controller step says what was left out.

``react`` does not: retrying its failed call on the first reading that lets it run, with no
whole program to hold to the question, measured 44 -> 43 of 60 held-out questions (2 gained, 3
lost, twice as many runs over their step budget).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from agentkit.state import Step
from agentkit.tools.base import strings_in

#: The tool whose empty result is read more loosely, and the argument holding its input list.
SELECT, OBJECTS = "select", "objects"


@dataclass(frozen=True)
class Loosened:
    """One reading: the select step at ``index`` of the steps given, with ``args`` (its
    arguments less the filter whose value was ``word``); ``sought`` is what it looked for
    ("blue sphere object")."""

    index: int
    args: dict[str, Any]
    sought: str
    word: str


def loosened(steps: Sequence[Step]) -> Iterator[Loosened]:
    """The readings of the empty selects the failed last of ``steps`` (executor steps, in the
    order they ran) needed, nearest first: the selects its arguments name, and back along a
    select's list while that, too, was a select that kept nothing. Each leaves out one filter,
    in the order written; a select with one filter is not read without it (nothing would be left
    to look for). None when the last step did not fail."""
    if not steps or not steps[-1].error:
        return
    by_ref = {s.ref: i for i, s in enumerate(steps[:-1]) if s.ref and s.result is not None}
    queue, seen = list(strings_in(steps[-1].args or {})), set()
    while queue:
        i = by_ref.get(queue.pop(0), -1)
        if i < 0 or i in seen or steps[i].tool != SELECT or (steps[i].result or {}).get("count"):
            continue
        step = steps[i]
        seen.add(i)
        args = step.args or {}
        queue.extend(strings_in(args.get(OBJECTS, [])))
        filters = [k for k, v in args.items() if k != OBJECTS and isinstance(v, str)]
        if len(filters) < 2:
            continue
        sought = " ".join([*(args[k] for k in filters), "object"])
        for k in filters:
            yield Loosened(i, {a: v for a, v in args.items() if a != k}, sought, args[k])
