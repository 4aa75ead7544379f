"""``image_info``: the size, colour mode and brightness of an image, without a model.

The controller calls it before it reasons about coordinates (a box is only meaningful against
the image's width and height) or about lighting ("is the photo dark?").
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools.base import ToolContext

NAME = "image_info"
DESCRIPTION = """Reports the width and height of an image in pixels, its colour mode and number of
channels, and its mean brightness (0 = black, 255 = white). Use it before giving pixel coordinates
to another tool, or to tell whether a picture is dark or bright."""
TIMEOUT = 10.0
PURE = True  # reads its inputs only: may run ahead and be reused


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="The image to inspect: a media id such as image_0 or crop_1.")


class Result(BaseModel):
    image: str = Field(description="The media id (or path) that was inspected.")
    width: int = Field(description="Width in pixels.")
    height: int = Field(description="Height in pixels.")
    mode: str = Field(description="PIL colour mode of the stored file (RGB, RGBA, L, ...).")
    channels: int = Field(description="Number of colour channels in that mode.")
    mean_brightness: float = Field(description="Mean luma (ITU-R 601) over all pixels, 0-255.")


def _file_mode(ctx: ToolContext, ref: str) -> str | None:
    """The mode of the file as stored, read from its header only (the pixels come decoded as RGB)."""
    from PIL import Image

    path = ctx.media.path(ref) if ctx.media is not None and ref in ctx.media else Path(ref)
    try:
        with Image.open(path) as im:
            return im.mode
    except (OSError, ValueError):
        return None


def run(args: Args, ctx: ToolContext) -> Result:
    from PIL import ImageStat

    im = ctx.image(args.image)  # decoded and validated as RGB (MediaError if unreadable)
    mode = _file_mode(ctx, args.image) or im.mode
    luma = ImageStat.Stat(im.convert("L")).mean[0]
    return Result(
        image=args.image,
        width=im.width,
        height=im.height,
        mode=mode,
        channels=_channels(mode),
        mean_brightness=round(luma, 2),
    )


def _channels(mode: str) -> int:
    from PIL import Image

    try:
        return Image.getmodebands(mode)
    except (KeyError, ValueError):
        return 3


def summary(result: Result) -> str:
    return (
        f"{result.image}: {result.width}x{result.height} pixels, {result.mode} "
        f"({result.channels} channels), mean brightness {result.mean_brightness:.1f}/255"
    )
