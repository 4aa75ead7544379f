"""describe_region: describe one part of an image, given a box or a mask (Caption-Anything style).

The region (a box, or the box of a mask made by ``segment``) is cropped with a small margin and
captioned on its own; the captioner is the detector-based one of :mod:`agentkit.tools.caption`
until the MLLM core can caption. Boxes in the result are in original-image pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agentkit.errors import ToolError
from agentkit.tools import caption, detect
from agentkit.tools._vision import BoxXYXY, check_box, mask_box, mask_from_image, round_box
from agentkit.tools.detect import DetectedObject

if TYPE_CHECKING:
    from agentkit.tools.base import ToolContext

NAME = "describe_region"
DESCRIPTION = """Describe what is inside one region of an image: give a box [x1, y1, x2, y2] in pixels
or a mask id from segment. The region is cropped and its objects listed with size, color, material,
shape and position within the region. Built from the object detector's output, not a language model."""
TIMEOUT = 60.0
PURE = True  # reads its inputs only: may run ahead and be reused
#: Context kept around the region, as a fraction of its size: a tight crop cuts object edges.
MARGIN = 0.1


class Args(BaseModel):
    image: str = Field(description="Media id (image_0) or path of the image.")
    box: BoxXYXY | None = Field(None, description="The region [x1, y1, x2, y2] in pixels.")
    mask: str | None = Field(
        None, description="Media id of a mask from segment (its box is the region)."
    )
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Detector confidence threshold, 0-1.")
    weights: str | None = Field(
        None, description="Detector checkpoint name or path (default scenes-yolo)."
    )


class Result(BaseModel):
    caption: str
    region: BoxXYXY = Field(description="The region described, [x1, y1, x2, y2] in pixels.")
    objects: list[DetectedObject] = Field(
        description="Detections in the region, boxes in original-image pixels."
    )


def region_box(args: Args, ctx: ToolContext, width: int, height: int) -> list[float]:
    if (args.box is None) == (args.mask is None):
        raise ToolError("describe_region needs exactly one of box or mask")
    if args.box is not None:
        return check_box(args.box, width, height)
    mask = mask_from_image(ctx.image(args.mask))
    if mask.shape != (height, width):
        raise ToolError(
            f"mask {args.mask!r} is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}"
        )
    box = mask_box(mask)
    if box is None:
        raise ToolError(f"mask {args.mask!r} is empty")
    return box


def run(args: Args, ctx: ToolContext) -> Result:
    image = ctx.image(args.image)
    x1, y1, x2, y2 = region_box(args, ctx, image.width, image.height)
    mx, my = MARGIN * (x2 - x1), MARGIN * (y2 - y1)
    cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
    cx2, cy2 = int(min(image.width, x2 + mx + 0.999)), int(min(image.height, y2 + my + 0.999))
    crop = image.crop((cx1, cy1, cx2, cy2))
    found = detect.detect_objects(crop, ctx, args.conf, args.weights or ctx.weights.get(NAME))
    objects = [
        o.model_copy(
            update={
                "box": round_box([o.box[0] + cx1, o.box[1] + cy1, o.box[2] + cx1, o.box[3] + cy1])
            }
        )
        for o in found
    ]
    text = caption.caption_objects(objects, x2 - x1, y2 - y1, x1, y1)
    return Result(caption=text, region=round_box([x1, y1, x2, y2]), objects=objects)


def summary(result: Result) -> str:
    return f"Region {[round(v) for v in result.region]}: {result.caption}"
