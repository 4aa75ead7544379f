"""The detect tool against an inventory of each image: what ``agentkit eval inventory`` prints.

An inventory lists an image's objects with their shape, colour, material and size and one point
on each (``pixel_coords``): CLEVR's scenes file is one for all of CLEVR's real renders, and a
hand-made one for any other image takes a minute per image (mllm/worlds/clevr.py reads both).
No boxes are needed, so real images count without box annotations.

Each image runs through the detect tool as ``agentkit tool run detect --image X`` runs it (its
default threshold, or ``conf``). Detections are matched one to one to the inventory's objects
(greedily, nearest centre first): an object may match a box that holds its point (the box grown by
``margin`` of its size, as CLEVR's point is the 3D centre's projection, near the box's centre but
not always in a tight box of an occluded object), the nearer the box's centre the better.
Reported: recall (objects found), precision (detections matched), per-attribute accuracy over
the matched objects, all four right (per matched object and per object), the share of images
whose object count and whose whole inventory (every object found, every attribute right, nothing
extra) the detector gets, the commonest confusions, and the images with errors.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentkit.errors import ConfigError

ATTRS = ("shape", "color", "material", "size")


def match_points(boxes: Sequence[Sequence[float]], points: Sequence[Sequence[float]],
                 margin: float = 0.1) -> list[tuple[int, int]]:  # fmt: skip
    """One-to-one (box index, point index) pairs: a point may match a box that holds it (the box
    grown by ``margin`` of its width and height each side); pairs are taken greedily, the point
    nearest its box's centre (in box sizes) first, as COCO's matching takes boxes by score."""
    if not len(boxes) or not len(points):
        return []
    b = np.asarray(boxes, dtype=float)[:, :4]
    p = np.asarray(points, dtype=float)[:, :2]
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    dx = (p[None, :, 0] - cx[:, None]) / np.maximum(w[:, None], 1)
    dy = (p[None, :, 1] - cy[:, None]) / np.maximum(h[:, None], 1)
    inside = (np.abs(dx) <= 0.5 + margin) & (np.abs(dy) <= 0.5 + margin)
    cost = np.hypot(dx, dy)
    pairs: list[tuple[int, int]] = []
    boxes_used: set[int] = set()
    points_used: set[int] = set()
    for i, j in sorted(zip(*np.nonzero(inside), strict=True), key=lambda ij: cost[ij]):
        if i not in boxes_used and j not in points_used:
            pairs.append((int(i), int(j)))
            boxes_used.add(i)
            points_used.add(j)
    return pairs


def describe(obj: dict[str, Any]) -> str:
    return " ".join(str(obj.get(k)) for k in ("size", "color", "material", "shape"))


def score_image(detections: Sequence[dict[str, Any]], objects: Sequence[dict[str, Any]],
                margin: float = 0.1) -> dict[str, Any]:  # fmt: skip
    """One image's detections (``box`` + the four attributes) against its inventory."""
    pairs = match_points([d["box"] for d in detections], [o["pixel_coords"] for o in objects],
                         margin)  # fmt: skip
    right = dict.fromkeys(ATTRS, 0)
    confusions: list[str] = []
    wrong: list[str] = []
    all_right = 0
    for i, j in pairs:
        d, o = detections[i], objects[j]
        ok = True
        for k in ATTRS:
            if d.get(k) == o[k]:
                right[k] += 1
            else:
                ok = False
                confusions.append(f"{k}: {o[k]} -> {d.get(k)}")
        all_right += ok
        if not ok:
            wrong.append(f"{describe(o)} read as {describe(d)}")
    found = {j for _, j in pairs}
    used = {i for i, _ in pairs}
    missed = [describe(o) for j, o in enumerate(objects) if j not in found]
    extra = [describe(d) for i, d in enumerate(detections) if i not in used]
    return {"objects": len(objects), "detections": len(detections), "matched": len(pairs),
            "right": right, "all_right": all_right, "confusions": confusions,
            "missed": missed, "extra": extra, "wrong": wrong}  # fmt: skip


def summarize(per_image: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Corpus figures from :func:`score_image` results (each with its ``image``)."""
    n_obj = sum(r["objects"] for r in per_image)
    n_det = sum(r["detections"] for r in per_image)
    matched = sum(r["matched"] for r in per_image)
    all_right = sum(r["all_right"] for r in per_image)
    n = max(len(per_image), 1)
    errors = [
        {"image": r["image"], **{k: r[k] for k in ("missed", "extra", "wrong") if r[k]}}
        for r in per_image
        if r["missed"] or r["extra"] or r["wrong"]
    ]
    return {
        "images": len(per_image),
        "objects": n_obj,
        "detections": n_det,
        "recall": round(matched / max(n_obj, 1), 4),
        "precision": round(matched / max(n_det, 1), 4),
        "attribute_accuracy": {
            k: round(sum(r["right"][k] for r in per_image) / max(matched, 1), 4) for k in ATTRS
        },
        "all_four_accuracy": round(all_right / max(matched, 1), 4),
        "objects_all_right": round(all_right / max(n_obj, 1), 4),
        "images_count_right": round(sum(r["detections"] == r["objects"] for r in per_image) / n, 4),
        "images_exact": round(
            sum(not (r["missed"] or r["extra"] or r["wrong"]) for r in per_image) / n, 4
        ),
        "confusions": dict(Counter(c for r in per_image for c in r["confusions"]).most_common(10)),
        "errors": errors,
    }


def evaluate_inventory(
    scenes: str | Path | Sequence[dict[str, Any]],
    images: str | Path | None = None,
    *,
    weights: str | None = None,
    conf: float | None = None,
    limit: int | None = None,
    margin: float = 0.1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Score the detect tool on every image of ``scenes`` (a path :func:`read_scenes` reads, or
    scene dicts) found in ``images`` (default: the scenes' own folder)."""
    from agentkit.mllm.worlds.clevr import read_scenes
    from agentkit.tools import detect
    from agentkit.tools.base import ToolContext

    if isinstance(scenes, str | Path):
        root = Path(images) if images is not None else Path(scenes)
        if images is None and not root.is_dir():
            root = root.parent
        graphs = read_scenes(scenes)
    else:
        if images is None:
            raise ConfigError("scenes given as data need images= (the folder of their images)")
        root, graphs = Path(images), list(scenes)
    graphs = graphs[:limit] if limit else graphs
    absent = [s["image_filename"] for s in graphs if not (root / s["image_filename"]).is_file()]
    if absent:
        raise ConfigError(
            f"{len(absent)} of {len(graphs)} images are not in {root} (first: {absent[0]}); "
            "pass --images, e.g. CLEVR_v1.0/images/val"
        )
    ctx = ToolContext(device=device)
    args: dict[str, Any] = {"weights": weights} if weights else {}
    if conf is not None:
        args["conf"] = conf
    per_image = []
    t0 = time.perf_counter()
    for s in graphs:
        res = detect.run(detect.Args(image=str(root / s["image_filename"]), **args), ctx)
        dets = [o.model_dump() for o in res.objects]
        per_image.append({"image": s["image_filename"], **score_image(dets, s["objects"], margin)})
    out = summarize(per_image)
    out["seconds_per_image"] = round((time.perf_counter() - t0) / max(len(graphs), 1), 3)
    out["weights"] = weights or detect.DEFAULT_WEIGHTS
    out["conf"] = conf if conf is not None else detect.Args.model_fields["conf"].default
    return out
