"""``select``: keep the objects of a list that have the given attribute values.

CLEVR's ``filter_color`` / ``filter_shape`` / ``filter_material`` / ``filter_size`` in one call,
and, with ``most``, a superlative CLEVR has no word for: the one object of those furthest left,
right, in front (nearest the camera) or behind, or the largest or smallest ("the leftmost cube",
"the biggest sphere"); with ``rank`` too, an ordinal: the one ranked second, third... that way
("the second cube from the left", "the third biggest sphere"). Positions are read as ``relate`` reads them (box centre x, footprint row).
Size is the detector's ``size`` word first, then the box's area: CLEVR has two sizes, so among
several large objects "the biggest" is the one that looks biggest, and the result says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools._objects import (
    MAX_OBJECTS,
    OBJECTS_HELP,
    ChoiceNote,
    ObjectList,
    SceneObject,
    attribute,
    check_value,
    describe,
    list_summary,
    noted,
)
from agentkit.tools.base import ToolContext
from agentkit.tools.relate import centre_x, ground_y

NAME = "select"
DESCRIPTION = """Keeps the objects of a list that have all the given attributes (color, shape,
material, size) and returns them as a new list, in the same order. Pass the list by the name of an
earlier result (detect_0, relate_0...). Use it to narrow the objects to those a question names,
e.g. the red cubes or the small metal things; most keeps only the one furthest left, right, in
front or behind, or the largest or smallest of those (the leftmost cube, the biggest sphere), and
rank 2 the second of them that way (the second cube from the left)."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused


Most = Literal["left", "right", "front", "behind", "large", "small"]
#: What the object each ``most`` keeps is called ("the leftmost").
MOST_NAMES = {"left": "leftmost", "right": "rightmost", "front": "nearest",
              "behind": "farthest", "large": "biggest", "small": "smallest"}  # fmt: skip
#: An ordinal's word, by rank (rank 1 is the superlative itself).
ORDINALS = ("", "", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
#: How each ``most`` ranks objects: the one with the highest key is kept. Size: the ``size``
#: word (large over small), then the box's area.
_RANK = {
    "left": lambda o: -centre_x(o),
    "right": centre_x,
    "front": ground_y,
    "behind": lambda o: -ground_y(o),
    "large": lambda o: (attribute(o, "size") == "large", _area(o)),
    "small": lambda o: (attribute(o, "size") == "small", -_area(o)),
}


def _area(o: SceneObject) -> float:
    return (o.box[2] - o.box[0]) * (o.box[3] - o.box[1])


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: ObjectList = Field(max_length=MAX_OBJECTS, description=OBJECTS_HELP)
    color: str | None = Field(
        None, description="gray, red, blue, green, brown, purple, cyan or yellow."
    )
    shape: str | None = Field(None, description="cube, sphere or cylinder.")
    material: str | None = Field(None, description="rubber or metal.")
    size: str | None = Field(None, description="small or large.")
    most: Most | None = Field(
        None,
        description="Keep only the one object furthest this way: left, right, front (nearest the "
        "camera), behind (farthest), large (the biggest) or small (the smallest).",
    )
    rank: int = Field(
        1,
        ge=1,
        le=len(ORDINALS) - 1,
        description="With most: keep the object ranked this far that way instead (2: the second "
        "from the left, the second biggest).",
    )


class Result(BaseModel):
    objects: ObjectList = Field(description="The objects that have every given attribute.")
    count: int = Field(description="How many objects were kept.")
    note: ChoiceNote = None


def run(args: Args, ctx: ToolContext) -> Result:
    wanted = {
        attr: check_value(attr, value, NAME)
        for attr in ("color", "shape", "material", "size")
        if (value := getattr(args, attr)) is not None
    }
    kept = [o for o in args.objects if all(attribute(o, a) == v for a, v in wanted.items())]
    note = None
    if args.rank > 1 and args.most is None:
        raise ToolError(f"{NAME}: rank {args.rank} ranks the objects most orders: give most too")
    if args.most is not None and kept:
        kept, note = extreme(kept, args.most, args.rank)
    return Result(objects=kept, count=len(kept), note=note)


def extreme(
    objects: list[SceneObject], most: str, rank: int = 1
) -> tuple[list[SceneObject], str | None]:
    """The one object of ``objects`` that ``most`` ranks ``rank``-th (first: the superlative's),
    and, for a size among several of that size, a note that the box's area chose it; none, and
    a note saying so, when there are fewer than ``rank`` objects to rank."""
    ordered = sorted(objects, key=_RANK[most], reverse=True)  # stable: ties keep list order
    if rank > len(ordered):
        return [], f"only {len(ordered)} to rank, no {ORDINALS[rank]}"
    best = ordered[rank - 1]
    size = attribute(best, "size")
    alike = [o for o in objects if attribute(o, "size") == size]
    if most not in ("large", "small") or size is None or len(alike) < 2:
        return [best], None
    how = "biggest" if most == "large" else "smallest"
    if rank > 1:
        how = f"{ORDINALS[rank]} {how}"
    return [best], f"{len(alike)} {size} objects; the {how} box is the {describe(best)}'s"


def summary(result: Result) -> str:
    return noted(list_summary(result.objects), result.note)
