"""``crop``: cut a box out of an image and store it as a new image of the run.

Small objects are easier to read, caption or count in a crop; the crop gets a media id
(``crop_0``) that later calls use like any image. Boxes are XYXY in the source image's pixels.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools.base import ToolContext

NAME = "crop"
DESCRIPTION = """Cuts a rectangular region out of an image and saves it as a new image you can pass
to other tools. Give the box as [x0, y0, x1, y1] in pixels of the source image (x0,y0 = top-left
corner, x1,y1 = bottom-right; use image_info to learn the size). A box reaching past the border is
clipped to the image. Returns the new image's id, its size and the box actually used."""
TIMEOUT = 20.0

#: A finite pixel coordinate (NaN or infinity would clip to nonsense).
_Coord = Annotated[float, Field(allow_inf_nan=False)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="The image to crop: a media id such as image_0.")
    box: list[_Coord] = Field(
        min_length=4,
        max_length=4,
        description="[x0, y0, x1, y1]: left, top, right, bottom in pixels of that image; x0 < x1 and y0 < y1.",
    )
    padding: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="Extra margin on every side as a fraction of the box size (0.1 = 10%); default 0.",
    )


class Result(BaseModel):
    image: str = Field(description="Media id of the new cropped image.")
    source: str = Field(description="The image it was cut from.")
    width: int = Field(description="Crop width in pixels.")
    height: int = Field(description="Crop height in pixels.")
    box: list[int] = Field(
        description="The box used, XYXY in source pixels, after padding and clipping."
    )


def crop_box(box: list[float], size: tuple[int, int], padding: float = 0.0) -> list[int]:
    """The integer XYXY box to cut: ``box`` padded by ``padding`` x its size on each side, widened
    to whole pixels (floor/ceil) and clipped to an image of ``size`` = (width, height).

    Raises :class:`ToolError` for an empty or inverted box, or one that misses the image.
    """
    x0, y0, x1, y1 = box
    w, h = size
    if not (x1 > x0 and y1 > y0):
        raise ToolError(
            f"box {box} is empty or inverted: expected [x0, y0, x1, y1] with x0 < x1 and y0 < y1 "
            "(top-left corner first, then bottom-right)"
        )
    px, py = (x1 - x0) * padding, (y1 - y0) * padding
    x0, y0, x1, y1 = x0 - px, y0 - py, x1 + px, y1 + py
    cx0, cy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    cx1, cy1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    if cx1 <= cx0 or cy1 <= cy0:
        raise ToolError(f"box {box} lies outside the {w}x{h} image (x in 0..{w}, y in 0..{h})")
    return [cx0, cy0, cx1, cy1]


def run(args: Args, ctx: ToolContext) -> Result:
    if ctx.media is None:
        raise ToolError(
            "crop stores its result as a new image and needs a run's media store; none is open"
        )
    im = ctx.image(args.image)
    box = crop_box(args.box, im.size, args.padding)
    new_id = ctx.add_image(im.crop(tuple(box)), prefix="crop")
    return Result(
        image=new_id, source=args.image, width=box[2] - box[0], height=box[3] - box[1], box=box
    )


def summary(result: Result) -> str:
    return (
        f"{result.image}: {result.width}x{result.height} crop of {result.source} "
        f"at box {result.box}"
    )
