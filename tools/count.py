"""``count``: how many detections match a description, counted by code instead of by the model.

A small controller miscounts a list of twenty boxes; this tool filters a detector's output by
label, attributes and score, and returns the count and which items matched (their indices into
the list, so a later call can crop or segment exactly those).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import ToolError
from agentkit.tools.base import ToolContext
from agentkit.tools.detect import ATTRIBUTES, normalize_word

NAME = "count"
DESCRIPTION = """Counts the objects in a list of detections that match all the given filters: a
label, attribute values (such as color, shape, material, size) and a minimum confidence score.
Pass the detections as the name of an earlier detection result (for example detect_0) or as a
list of objects with a "label". Returns how many match and their positions in the list.
Use it whenever the question asks "how many"."""
TIMEOUT = None  # computes over results in memory, bounded inputs: runs on the caller's thread
PURE = True  # reads its inputs only: may run ahead and be reused

MAX_DETECTIONS = 10_000
_Scalar = str | int | float | bool


class Detection(BaseModel):
    """One detected object. Fields other than these (color, shape, material, size...) are kept
    as attributes that ``where`` can filter on."""

    model_config = ConfigDict(extra="allow")

    label: str = Field(description="Class name, e.g. cube or person.")
    score: float | None = Field(None, description="Detector confidence, usually 0-1.")
    box: list[float] | None = Field(None, description="XYXY in original-image pixels.")


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: list[Detection] = Field(
        max_length=MAX_DETECTIONS,
        description='The objects to count: the name of an earlier detection result (e.g. detect_0) or a list like [{"label": "cube", "color": "red", "score": 0.9}].',
    )
    label: str | None = Field(
        None,
        description="Count only objects with this label (case does not matter). Omit to count every label.",
    )
    where: dict[str, _Scalar] = Field(
        default_factory=dict,
        description='Attribute values every counted object must have, e.g. {"color": "red", "material": "metal"} (text compared without regard to case).',
    )
    min_score: float | None = Field(
        None,
        description="Count only objects with at least this score; objects without a score are then left out. Omit to count all.",
    )


class Result(BaseModel):
    count: int = Field(description="How many detections matched every filter.")
    total: int = Field(description="How many detections were given.")
    indices: list[int] = Field(
        description="Positions (0-based) of the matching detections in the given list."
    )


def _same(a: Any, b: _Scalar) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def matches(
    det: Detection, label: str | None, where: dict[str, _Scalar], min_score: float | None
) -> bool:
    """Whether one detection passes every filter (an attribute it lacks never matches)."""
    if label is not None and not _same(det.label, label):
        return False
    if min_score is not None and (det.score is None or det.score < min_score):
        return False
    fields = det.model_dump()
    return all(
        key in fields and _same(_word(key, fields[key]), want) for key, want in where.items()
    )


def _word(key: str, value: Any) -> Any:
    """An attribute's value as :func:`check_where` compares it (scene words canonical)."""
    return normalize_word(value) if key in ATTRIBUTES and isinstance(value, str) else value


def check_where(where: dict[str, _Scalar]) -> dict[str, _Scalar]:
    """``where`` with the scene's attribute words made canonical ("matte" -> "rubber"). A value
    that is a word of *another* scene attribute (size "rubber") is a slip, not a filter that
    matches nothing: a ToolError says which key it belongs to. Other words pass as given (a
    caller's own objects may have colours the scene world lacks)."""
    out: dict[str, _Scalar] = {}
    for key, want in where.items():
        if key in ATTRIBUTES and isinstance(want, str):
            word = normalize_word(want)
            if word in ATTRIBUTES[key]:
                want = word
            elif owner := next((a for a, ws in ATTRIBUTES.items() if word in ws), None):
                raise ToolError(
                    f"{NAME}: {want!r} is a {owner}, not a {key} ({', '.join(ATTRIBUTES[key])});"
                    f" filter on {owner} instead"
                )
        out[key] = want
    return out


def run(args: Args, ctx: ToolContext) -> Result:
    where = check_where(args.where)
    hits = [i for i, d in enumerate(args.objects) if matches(d, args.label, where, args.min_score)]
    return Result(count=len(hits), total=len(args.objects), indices=hits)


def summary(result: Result) -> str:
    shown = result.indices[:50]
    more = f" and {len(result.indices) - 50} more" if len(result.indices) > 50 else ""
    return f"{result.count} of {result.total} detections match (indices {shown}{more})"
