"""``compare``: compares two numbers of objects and answers yes or no (CLEVR's ``greater_than``,
``less_than`` and ``equal_integer`` after two counts)."""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools._objects import MAX_OBJECTS, ObjectList
from agentkit.tools.base import ToolContext

NAME = "compare"
DESCRIPTION = """Compares how many objects two lists have and answers the question asked with yes
or no: "more" asks whether a has more than b, "fewer" whether a has fewer than b, "same" whether
they have the same number. a and b are result names holding lists of objects (or plain numbers).
Use it for "are there more / fewer / the same number of A than B?" questions."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused

Amount: TypeAlias = int | ObjectList | list[int]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: Amount = Field(description="The first list (a result name) or a number.")
    b: Amount = Field(description="The second list (a result name) or a number.")
    relation: Literal["more", "fewer", "same"] = Field(
        description="What the question asks about a: more than b, fewer than b, or the same."
    )


class Result(BaseModel):
    answer: Literal["yes", "no"]
    a: int = Field(description="How many in a.")
    b: int = Field(description="How many in b.")
    relation: str


def _amount(value: int | list, name: str) -> int:
    if isinstance(value, int):
        if value < 0:
            raise ToolError(f"compare: {name} is {value}; a number of objects is >= 0")
        return value
    if len(value) > MAX_OBJECTS:
        raise ToolError(f"compare: {name} has {len(value)} items, more than {MAX_OBJECTS}")
    return len(value)


def run(args: Args, ctx: ToolContext) -> Result:
    a, b = _amount(args.a, "a"), _amount(args.b, "b")
    truth = a > b if args.relation == "more" else a < b if args.relation == "fewer" else a == b
    return Result(answer="yes" if truth else "no", a=a, b=b, relation=args.relation)


def summary(result: Result) -> str:
    word = {"more": "more than", "fewer": "fewer than", "same": "the same number as"}
    return (
        f"{result.answer} (a has {result.a}, b has {result.b}; asked: a {word[result.relation]} b)"
    )
