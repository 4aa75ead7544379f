"""``same``: the other objects that share an attribute with one reference object (CLEVR's
``same_color`` / ``same_shape`` / ``same_material`` / ``same_size``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools._objects import (
    MAX_OBJECTS,
    Attribute,
    ChoiceNote,
    ObjectList,
    attribute,
    describe,
    key,
    list_summary,
    noted,
    the_one,
)
from agentkit.tools.base import ToolContext

NAME = "same"
DESCRIPTION = """Finds the objects that have the same color, shape, material or size as one
reference object, leaving the reference itself out. objects is the list to search (usually
detect_0, every object); reference is a list holding exactly the one object the question names
(narrow it with select first). Use it for "the same color as the ..." questions."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: ObjectList = Field(
        max_length=MAX_OBJECTS, description="The objects to search: a result name, e.g. detect_0."
    )
    reference: ObjectList = Field(
        max_length=MAX_OBJECTS,
        description="A result name whose list holds exactly one object, e.g. select_0.",
    )
    attribute: Attribute = Field(description="color, shape, material or size.")


class Result(BaseModel):
    objects: ObjectList = Field(
        description="The other objects with the reference's value of the attribute."
    )
    count: int
    value: str = Field(description="The reference's value of the attribute.")
    note: ChoiceNote = None


def run(args: Args, ctx: ToolContext) -> Result:
    ref, note = the_one(args.reference, NAME, "reference")
    value = attribute(ref, args.attribute)
    if value is None:
        raise ToolError(f"same: the detector gave no {args.attribute} for the {describe(ref)}")
    out = [o for o in args.objects if key(o) != key(ref) and attribute(o, args.attribute) == value]
    return Result(objects=out, count=len(out), value=value, note=note)


def summary(result: Result) -> str:
    text = list_summary(result.objects)
    return noted(text, result.note)
