"""``exist``: is a list of objects non-empty? (CLEVR's ``exist``.)"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools._objects import MAX_OBJECTS, OBJECTS_HELP, ObjectList
from agentkit.tools.base import ToolContext

NAME = "exist"
DESCRIPTION = """Answers yes when a list of objects has at least one object and no when it is
empty. Use it for "is there ...?" and "are there any ...?" questions, on the list that holds the
objects the question asks about."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: ObjectList = Field(max_length=MAX_OBJECTS, description=OBJECTS_HELP)


class Result(BaseModel):
    answer: Literal["yes", "no"] = Field(description="yes when the list is not empty.")
    count: int = Field(description="How many objects the list has.")


def run(args: Args, ctx: ToolContext) -> Result:
    n = len(args.objects)
    return Result(answer="yes" if n else "no", count=n)


def summary(result: Result) -> str:
    return f"{result.answer} ({result.count} object{'s' if result.count != 1 else ''})"
