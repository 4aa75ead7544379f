"""``query``: an attribute of the one object in a list (CLEVR's ``query_*`` after ``unique``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools._objects import (
    MAX_OBJECTS,
    OBJECTS_HELP,
    Attribute,
    ChoiceNote,
    ObjectList,
    attribute,
    describe,
    noted,
    the_one,
)
from agentkit.tools.base import ToolContext

NAME = "query"
DESCRIPTION = """Tells the color, shape, material or size of an object. The list should hold
exactly one object (narrow it with select or relate first); of several, the most confident is
used. Use it for "what color / shape / material / size is the ...?" questions."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: ObjectList = Field(
        max_length=MAX_OBJECTS, description=OBJECTS_HELP + " Exactly one object."
    )
    attribute: Attribute = Field(description="color, shape, material or size.")


class Result(BaseModel):
    answer: str = Field(description="The attribute's value, e.g. red, cube, metal, large.")
    attribute: str
    object: str = Field(description="The object, described.")
    note: ChoiceNote = None


def run(args: Args, ctx: ToolContext) -> Result:
    obj, note = the_one(args.objects, NAME, "objects")
    value = attribute(obj, args.attribute)
    if value is None:
        raise ToolError(
            f"query: the detector gave no {args.attribute} for the {describe(obj)}; "
            "a scene detector names color, shape, material and size"
        )
    return Result(answer=value, attribute=args.attribute, object=describe(obj), note=note)


def summary(result: Result) -> str:
    text = f"the {result.object} has {result.attribute} {result.answer}"
    return noted(text, result.note)
