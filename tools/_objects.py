"""What the scene-reasoning tools share: the object they pass around, identity, attribute words.

The reasoning tools (``select``, ``relate``, ``query``, ``same``, ``combine``, ``exist``,
``compare``) work on lists of detected objects, the output of ``detect`` passed by name
(``{"objects": "detect_0"}``), so a small controller never counts, compares or intersects sets
in its head. An object is identified by its box: two entries with the same box
``[x1, y1, x2, y2]`` (original-image pixels) are the same object, whichever list they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools.detect import ATTRIBUTES, normalize_word

Attribute = Literal["color", "shape", "material", "size"]
#: Most objects one call takes (a scene has at most a few dozen).
MAX_OBJECTS = 1000
OBJECTS_HELP = (
    "The objects: the name of an earlier result that holds objects (e.g. detect_0, select_0)."
)


class SceneObject(BaseModel):
    """One detected object, as ``detect`` returns it; unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    label: str = Field(description="Category (the shape for scene objects).")
    box: list[float] = Field(
        min_length=4, max_length=4, description="[x1, y1, x2, y2] in original-image pixels."
    )
    score: float | None = None
    size: str | None = None
    color: str | None = None
    material: str | None = None
    shape: str | None = None


ObjectList = list[SceneObject]
#: Set when a tool that takes one object got several and chose (see :func:`the_one`).
ChoiceNote = Annotated[
    str | None, Field(description="How the one object was chosen among several, if it was.")
]


def key(obj: SceneObject) -> tuple[float, ...]:
    """Identity of an object: its box, rounded to 0.1 px so a float round trip still matches."""
    return tuple(round(float(v), 1) for v in obj.box)


def attribute(obj: SceneObject, attr: str) -> str | None:
    """The object's value of ``attr`` (canonical word), or None when the detector gave none."""
    value = getattr(obj, attr, None)
    if value is None and attr == "shape":
        value = obj.label
    return normalize_word(value) if isinstance(value, str) else None


def check_value(attr: str, value: str, tool: str) -> str:
    """A canonical attribute word ("balls" -> "sphere"); ToolError naming the valid ones."""
    word = normalize_word(value)
    if word not in ATTRIBUTES[attr]:
        raise ToolError(f"{tool}: {attr} {value!r} is not one of {', '.join(ATTRIBUTES[attr])}")
    return word


def the_one(objects: Sequence[SceneObject], tool: str, arg: str) -> tuple[SceneObject, str | None]:
    """The single object of ``objects``, and a note when it had to be chosen among several.

    A question that says "the cube" presupposes one; when the detector returns more (a duplicate
    box, a false positive, a shape confused), the most confident object is taken and the note says
    so, because a small controller cannot narrow the list further: in the held-out evaluation
    every question a strict "exactly one" stopped ended unanswered. With no scores, or a tie at
    the top, there is no basis for a choice and it is a ToolError, as it is for an empty list.
    """
    if len(objects) == 1:
        return objects[0], None
    if objects and all(o.score is not None for o in objects):
        ranked = sorted(objects, key=lambda o: -float(o.score or 0.0))
        best, rest = ranked[0], ranked[1:]
        if (best.score or 0.0) > (rest[0].score or 0.0):
            others = "; ".join(f"{describe(o)} {o.score:.2f}" for o in rest[:5])
            return best, (
                f"{len(objects)} objects in {arg}; took the most confident, "
                f"the {describe(best)} ({best.score:.2f}), over {others}"
            )
    what = (
        "no objects"
        if not objects
        else f"{len(objects)} objects ({'; '.join(describe(o) for o in objects[:6])}"
        + ("; ..." if len(objects) > 6 else "")
        + ")"
    )
    raise ToolError(
        f"{tool} needs exactly one object in {arg}, but it has {what}; narrow it with select first"
    )


def noted(text: str, note: str | None) -> str:
    """An observation with the :func:`the_one` note after it, when there is one."""
    return f"{text} ({note})" if note else text


def describe(obj: SceneObject) -> str:
    """ "large red metal cube" for scene objects, the label otherwise."""
    if obj.shape:
        return " ".join(w for w in (obj.size, obj.color, obj.material, obj.shape) if w)
    return obj.label


def list_summary(objects: Sequence[SceneObject]) -> str:
    """ "2 objects: small red rubber cube [10, 20, 40, 52]; ..." (what the controller reads)."""
    if not objects:
        return "0 objects."
    parts = [f"{describe(o)} {[round(v) for v in o.box]}" for o in objects]
    return f"{len(parts)} object{'s' if len(parts) != 1 else ''}: " + "; ".join(parts)
