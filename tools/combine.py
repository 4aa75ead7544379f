"""``combine``: union, intersection or difference of two lists of objects (CLEVR's ``union`` /
``intersect``, and the difference CLEVR lacks: "the cubes that are not red").

Objects are matched by their box: the same box in both lists is the same object.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools._objects import MAX_OBJECTS, ObjectList, key, list_summary
from agentkit.tools.base import ToolContext

NAME = "combine"
DESCRIPTION = """Joins two lists of objects: "union" keeps the objects in either list (for "A or
B" questions), "intersection" the objects in both (for "both A and B"), "difference" the objects
of a that are not in b (for "A that are not B"). Objects are the same when their boxes are the
same. Pass both lists by the names of earlier results."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: ObjectList = Field(max_length=MAX_OBJECTS, description="The first list (a result name).")
    b: ObjectList = Field(max_length=MAX_OBJECTS, description="The second list (a result name).")
    op: Literal["union", "intersection", "difference"] = Field(
        description="union: in a or b; intersection: in both a and b; difference: in a, not in b."
    )


class Result(BaseModel):
    objects: ObjectList = Field(description="The joined list, in the order of a, then b.")
    count: int


def run(args: Args, ctx: ToolContext) -> Result:
    in_b = {key(o) for o in args.b}
    if args.op == "intersection":
        out = [o for o in args.a if key(o) in in_b]
    elif args.op == "difference":
        out = [o for o in args.a if key(o) not in in_b]
    else:
        out, seen = [], set()
        for o in [*args.a, *args.b]:
            if key(o) not in seen:
                seen.add(key(o))
                out.append(o)
    return Result(objects=out, count=len(out))


def summary(result: Result) -> str:
    return list_summary(result.objects)
