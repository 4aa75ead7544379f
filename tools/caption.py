"""caption: describe an image by listing what the detector finds.

Until the MLLM core can caption, this captioner is built from :mod:`agentkit.tools.detect`'s
output: it counts the objects and names each with its attributes and a coarse position. It can
only mention what the detector knows (the scene world's shapes, or an official checkpoint's
classes). :func:`caption_objects` is the text side, shared with ``describe_region``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agentkit.tools import detect
from agentkit.tools.detect import DetectedObject

if TYPE_CHECKING:
    from agentkit.tools.base import ToolContext

NAME = "caption"
DESCRIPTION = """Describe an image in one sentence: how many objects there are, each with its size,
color, material, shape and rough position (left/center/right, top/bottom). Built from the object
detector's output, not a language model: it names only objects the detector knows."""
TIMEOUT = 60.0
PURE = True  # reads its inputs only: may run ahead and be reused
#: Objects named one by one; more are counted ("and 4 more").
MAX_LISTED = 10


class Args(BaseModel):
    image: str = Field(description="Media id (image_0) or path of the image.")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Detector confidence threshold, 0-1.")
    weights: str | None = Field(
        None, description="Detector checkpoint name or path (default scenes-yolo)."
    )


class Result(BaseModel):
    caption: str
    count: int = Field(description="Objects detected.")
    objects: list[DetectedObject] = Field(
        description="The detections the caption was written from."
    )


def position(
    box: list[float], width: float, height: float, x0: float = 0.0, y0: float = 0.0
) -> str:
    """Coarse place of a box's center in the frame (x0, y0, x0 + width, y0 + height), by thirds:
    "left", "top right", "center", ..."""
    cx = ((box[0] + box[2]) / 2 - x0) / width
    cy = ((box[1] + box[3]) / 2 - y0) / height
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    if row and col == "center":
        return row
    return f"{row} {col}".strip()


def caption_objects(
    objects: list[DetectedObject], width: float, height: float, x0: float = 0.0, y0: float = 0.0
) -> str:
    """ "3 objects: a large red metal cube (left), ..." listing objects left to right."""
    if not objects:
        return "No objects detected."
    ordered = sorted(objects, key=lambda o: (o.box[0] + o.box[2]) / 2)
    parts = [
        f"{_article(detect.describe(o))} ({position(o.box, width, height, x0, y0)})"
        for o in ordered[:MAX_LISTED]
    ]
    if len(ordered) > MAX_LISTED:
        parts.append(f"and {len(ordered) - MAX_LISTED} more")
    noun = "object" if len(objects) == 1 else "objects"
    return f"{len(objects)} {noun}: " + ", ".join(parts) + "."


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def run(args: Args, ctx: ToolContext) -> Result:
    image = ctx.image(args.image)
    objects = detect.detect_objects(image, ctx, args.conf, args.weights or ctx.weights.get(NAME))
    return Result(
        caption=caption_objects(objects, image.width, image.height),
        count=len(objects),
        objects=objects,
    )


def summary(result: Result) -> str:
    return result.caption
