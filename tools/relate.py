"""``relate``: the objects left of, right of, in front of or behind one reference object, as the
camera sees them (CLEVR's ``relate``), judged from the image alone.

CLEVR's rule is 3D: object ``j`` is left of ``i`` when ``(p_j - p_i) . left > 0.2`` world units,
where ``left`` is the camera's left axis projected on the ground plane. Boxes have no 3D, so this
tool uses image geometry, which is what a detector gives on any image:

* left / right: the boxes' centre x (image columns grow to the right);
* front / behind: where the object stands on the ground. Closer objects stand lower in the image;
  the box's bottom edge is the front rim of the object's footprint, so the footprint's centre is
  estimated a little above it, at ``y2 - FOOT * (y2 - y1)`` (this cancels most of the bias of a
  large object's rim reaching further forward than a small one's).

A pair is related when the difference exceeds ``MARGIN`` of the two boxes' mean size (CLEVR's
eps, scaled by apparent size so it means the same near and far). CLEVR's scenes keep every pair
0.4 world units apart along both axes (twice the eps), so the best margin measured is 0: any
positive one only drops true pairs. Measured against the scene graphs' 3D relations
(``tests/tools/test_reasoning.py``): front/behind agree on every ordered pair of the 12 example
scenes and of 200 projected scenes (``agentkit.mllm.data.gt.projected_scene``); left/right
disagree on 8 of 972 pairs (examples) and 66 of 15920 (projected): perspective moves a far
object's image x toward the centre, so a pair nearly in line in depth can swap. Overall 99.6 %
(8 of 1944 pairs) and 99.8 % (66 of 31840) agree; per question, 3 of 2968 answers differ.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools._objects import (
    MAX_OBJECTS,
    ChoiceNote,
    ObjectList,
    SceneObject,
    describe,
    key,
    list_summary,
    noted,
    the_one,
)
from agentkit.tools.base import ToolContext

NAME = "relate"
DESCRIPTION = """Finds the objects that are left of, right of, in front of or behind one
reference object, as seen in the image. objects is the list to search (usually detect_0, every
object); reference is a list holding exactly the one object the question names (narrow it with
select first). The reference itself is never in the answer."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused

#: Share of the box height between the bottom edge and the footprint's centre (see above).
FOOT = 0.2
#: A pair is related when positions differ by more than this share of the boxes' mean size.
MARGIN = 0.0

Relation = Literal["left", "right", "front", "behind"]
PHRASES = {"left": "left of", "right": "right of", "front": "in front of", "behind": "behind"}


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: ObjectList = Field(
        max_length=MAX_OBJECTS, description="The objects to search: a result name, e.g. detect_0."
    )
    reference: ObjectList = Field(
        max_length=MAX_OBJECTS,
        description="A result name whose list holds exactly one object, e.g. select_0.",
    )
    relation: Relation = Field(description="left, right, front (in front of) or behind.")


class Result(BaseModel):
    objects: ObjectList = Field(description="The objects in that relation to the reference.")
    count: int
    reference: str = Field(description="The reference object, described.")
    relation: str
    note: ChoiceNote = None


def centre_x(o: SceneObject) -> float:
    return (o.box[0] + o.box[2]) / 2


def ground_y(o: SceneObject) -> float:
    """Image row of the object's footprint centre (larger = closer to the camera)."""
    return o.box[3] - FOOT * (o.box[3] - o.box[1])


def related(obj: SceneObject, ref: SceneObject, relation: str) -> bool:
    """Whether ``obj`` lies ``relation`` of ``ref`` in the image (see the module docstring)."""
    scale = (
        (obj.box[2] - obj.box[0] + ref.box[2] - ref.box[0]) / 2
        if relation in ("left", "right")
        else (obj.box[3] - obj.box[1] + ref.box[3] - ref.box[1]) / 2
    )
    eps = MARGIN * max(scale, 1.0)
    if relation == "left":
        return centre_x(obj) < centre_x(ref) - eps
    if relation == "right":
        return centre_x(obj) > centre_x(ref) + eps
    if relation == "front":
        return ground_y(obj) > ground_y(ref) + eps
    return ground_y(obj) < ground_y(ref) - eps


def run(args: Args, ctx: ToolContext) -> Result:
    ref, note = the_one(args.reference, NAME, "reference")
    out = [o for o in args.objects if key(o) != key(ref) and related(o, ref, args.relation)]
    return Result(
        objects=out, count=len(out), reference=describe(ref), relation=args.relation, note=note
    )


def summary(result: Result) -> str:
    text = f"{PHRASES[result.relation]} the {result.reference}: {list_summary(result.objects)}"
    return noted(text, result.note)
