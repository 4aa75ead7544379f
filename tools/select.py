"""``select``: keep the objects of a list that have the given attribute values.

CLEVR's ``filter_color`` / ``filter_shape`` / ``filter_material`` / ``filter_size`` in one call.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools._objects import (
    MAX_OBJECTS,
    OBJECTS_HELP,
    ObjectList,
    attribute,
    check_value,
    list_summary,
)
from agentkit.tools.base import ToolContext

NAME = "select"
DESCRIPTION = """Keeps the objects of a list that have all the given attributes (color, shape,
material, size) and returns them as a new list, in the same order. Pass the list by the name of an
earlier result (detect_0, relate_0...). Use it to narrow the objects to those a question names,
e.g. the red cubes or the small metal things."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: ObjectList = Field(max_length=MAX_OBJECTS, description=OBJECTS_HELP)
    color: str | None = Field(
        None, description="gray, red, blue, green, brown, purple, cyan or yellow."
    )
    shape: str | None = Field(None, description="cube, sphere or cylinder.")
    material: str | None = Field(None, description="rubber or metal.")
    size: str | None = Field(None, description="small or large.")


class Result(BaseModel):
    objects: ObjectList = Field(description="The objects that have every given attribute.")
    count: int = Field(description="How many objects were kept.")


def run(args: Args, ctx: ToolContext) -> Result:
    wanted = {
        attr: check_value(attr, value, NAME)
        for attr in ("color", "shape", "material", "size")
        if (value := getattr(args, attr)) is not None
    }
    kept = [o for o in args.objects if all(attribute(o, a) == v for a, v in wanted.items())]
    return Result(objects=kept, count=len(kept))


def summary(result: Result) -> str:
    return list_summary(result.objects)
