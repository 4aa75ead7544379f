"""Helpers the perception tools share: weights lookup, boxes, masks as COCO RLE, image hashing.

Coordinate frames: boxes are ``[x1, y1, x2, y2]`` (XYXY) in original-image pixels, with
``x2 > x1`` and ``y2 > y1``; masks are ``H x W`` bool arrays in the same frame. RLE is COCO's
compressed form (``{"size": [H, W], "counts": str}``), readable by ``pycocotools.mask.decode``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from agentkit.errors import ToolError, WeightsNotFound

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

    from agentkit.tools.base import ToolContext

#: A box ``[x1, y1, x2, y2]`` in original-image pixels.
BoxXYXY = Annotated[list[float], Field(min_length=4, max_length=4)]


class RLE(BaseModel):
    """A binary mask in COCO's compressed run-length encoding (column-major, as pycocotools)."""

    size: list[int] = Field(description="[height, width] of the mask in pixels.")
    counts: str = Field(description="COCO compressed RLE string.")


# --- weights -----------------------------------------------------------------------------------


def weights_spec(tool: str, override: str | None, ctx: ToolContext, default: str) -> str:
    """Which checkpoint a call uses: the call's ``weights`` argument, else the context's
    per-tool override (``ctx.weights[tool]``), else the tool's shipped default name."""
    return override or ctx.weights.get(tool) or default


def resolve_weights(spec: str) -> Path:
    """Resolve a shipped name or a path with :func:`agentkit.weights.resolve`.

    A missing checkpoint becomes a :class:`ToolError` (recoverable: the step records it and the
    controller reads the message) carrying the resolver's text: the names known, the folders
    searched and the recipe that rebuilds it. Nothing is downloaded.
    """
    from agentkit.weights import resolve

    try:
        return resolve(spec).absolute()
    except WeightsNotFound as e:
        raise ToolError(str(e)) from e


# --- boxes -------------------------------------------------------------------------------------


def check_box(box: list[float], width: int, height: int) -> list[float]:
    """Clip an XYXY box to the image and check it still has an area; raise ToolError otherwise."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if cx2 <= cx1 or cy2 <= cy1:
        raise ToolError(
            f"box {[x1, y1, x2, y2]} is empty inside the {width}x{height} image; expected "
            "[x1, y1, x2, y2] in pixels with x1 < x2 and y1 < y2"
        )
    return [cx1, cy1, cx2, cy2]


def round_box(box: Any, ndigits: int = 1) -> list[float]:
    """A box as four plain floats (from a tensor, array or list), rounded for readable output."""
    return [round(float(v), ndigits) for v in list(box)]


def box_center(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def box_iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two XYXY boxes (0 when they do not overlap)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --- masks -------------------------------------------------------------------------------------


def mask_to_rle(mask: np.ndarray) -> RLE:
    """Encode an ``H x W`` bool mask as COCO compressed RLE (:func:`rle_and_box`)."""
    return rle_and_box(mask)[0]


def rle_and_box(mask: np.ndarray) -> tuple[RLE, list[float] | None]:
    """An ``H x W`` bool mask as COCO compressed RLE, and its tight box (:func:`mask_box`), from
    one pass over the mask for the rows and columns it covers.

    COCO's runs go down each column in turn. ``pycocotools.mask.encode`` needs the whole mask
    copied into column order (two copies of the image: ~90 us at 480x320, most of what the
    segment tool adds to SAM). For an object that fills little of its image, the runs are read
    off its bounding box instead and pycocotools only compresses the counts: time in proportion
    to the object. A larger one (a box over a sixteenth of the image, where the box's pixels
    cost as much as the copy) takes the copy."""
    import numpy as np
    from pycocotools import mask as mask_utils

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {m.shape}")
    h, w = m.shape
    rows, cols, box = _covered(m)
    if box is None:
        return RLE(size=[h, w], counts=_compressed([h * w], h, w)), None
    if (rows[-1] + 1 - rows[0]) * (cols[-1] + 1 - cols[0]) * 16 > h * w:
        enc = mask_utils.encode(np.asfortranarray(m.view(np.uint8)))
        counts = enc["counts"].decode("ascii")
    else:
        y0, x0 = rows[0], cols[0]
        xs, ys = np.nonzero(m[y0 : rows[-1] + 1, x0 : cols[-1] + 1].T)  # column by column
        on = (xs + x0) * h + (ys + y0)  # each pixel's place in column order
        cut = np.flatnonzero(np.diff(on) != 1)  # where one run of pixels ends
        edges = np.empty(2 * (len(cut) + 1), dtype=np.int64)
        edges[0::2] = np.r_[on[0], on[cut + 1]]  # run starts
        edges[1::2] = np.r_[on[cut], on[-1]] + 1  # run ends
        runs = np.diff(edges, prepend=0).tolist()  # zeros, ones, zeros, ... from the top left
        if edges[-1] < h * w:
            runs.append(h * w - int(edges[-1]))
        counts = _compressed(runs, h, w)
    return RLE(size=[h, w], counts=counts), box


def _compressed(runs: list[int], h: int, w: int) -> str:
    """COCO's compressed string of run lengths (pycocotools writes it)."""
    from pycocotools import mask as mask_utils

    return mask_utils.frPyObjects({"counts": runs, "size": [h, w]}, h, w)["counts"].decode("ascii")


def rle_to_mask(rle: RLE | dict[str, Any]) -> np.ndarray:
    """Decode COCO compressed RLE to an ``H x W`` bool mask."""
    from pycocotools import mask as mask_utils

    r = rle.model_dump() if isinstance(rle, RLE) else dict(rle)
    counts = r["counts"]
    return mask_utils.decode(
        {
            "size": list(r["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    ).astype(bool)


def mask_box(mask: np.ndarray) -> list[float] | None:
    """Tight XYXY box of a mask's pixels (pixel edges, so a 1-pixel mask is 1x1), or None if empty."""
    return _covered(mask)[2]


def _covered(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float] | None]:
    """The rows and the columns with any pixel of ``mask`` (one pass over it, no coordinate
    arrays), and the tight box they make (None: an empty mask)."""
    import numpy as np

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        return rows, cols, None
    return rows, cols, [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def mask_image(mask: np.ndarray) -> PILImage.Image:
    """A mask as a black-and-white PNG-ready image (255 inside), for the media store and traces."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, mode="L")


def mask_from_image(image: PILImage.Image) -> np.ndarray:
    """Read a stored mask image back as an ``H x W`` bool mask (any channel above mid-grey)."""
    import numpy as np

    return np.asarray(image.convert("L")) > 127


# --- images ------------------------------------------------------------------------------------


def image_key(image: PILImage.Image) -> str:
    """A content hash of an image: the cache key for per-image work (SAM's embedding).

    Media ids repeat across runs (every run has an ``image_0``), so ids cannot key a process-wide
    cache; hashing the pixels costs a few ms for a megapixel, far below one encoder pass.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()
