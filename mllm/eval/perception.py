"""Perception metrics on held-out scenes: what ``agentkit eval perception`` prints.

Detection (the ``detect`` tool's models, run the way the tool runs them):

- ``mAP50`` / ``mAP50_95``: COCO box AP (pycocotools) with the shape as the category, predictions
  at confidence >= 0.001 with per-class NMS, as ultralytics' own val scores them
  (``mAP50_tool_nms``: the same with the class-agnostic NMS the detect tool uses for the scene
  detector, which trades a little AP for fewer duplicate boxes at the operating threshold);
- ``full_mAP50``: the same with the 96 size-colour-material-shape categories (shape from the
  detector, the rest from the attribute head): a box counts only when every attribute is right;
- at the operating threshold ``conf`` (given, or chosen here as the best F1 of class-aware matches
  at IoU >= 0.5 on these scenes): precision, recall, and attribute accuracy over the detections
  matched to ground truth (greedy by score, IoU >= 0.5, class-agnostic), per attribute and all
  four right; ``objects_all_right`` divides the all-four-right matches by every ground-truth object.

Segmentation (the ``segment`` tool's model, with ``segment_weights``; :func:`segment_metrics`):
mean mask IoU against each visible object's exact mask for a box prompt (its ground-truth box) and
for a single-point prompt (the mask pixel farthest from its border; the best of SAM's three masks by
predicted IoU, as the tool picks), next to ``filled_box_mIoU``, the trivial baseline of answering
the box itself; with milliseconds per image encoding and per prompt.

Ground truth is the scenes' JSON (``bbox`` XYXY pixels, exclusive right/bottom edges).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agentkit.errors import ConfigError

ATTRS = ("shape", "color", "material", "size")
CONF_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of XYXY boxes a (N, 4) and b (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(pred: list[dict[str, Any]], gt: list[dict[str, Any]], *, same_shape: bool,
          thr: float = 0.5) -> list[tuple[int, int]]:  # fmt: skip
    """Greedy matching, highest score first: (pred index, gt index) pairs with IoU >= thr."""
    if not pred or not gt:
        return []
    iou = _iou(np.asarray([p["box"] for p in pred], float),
               np.asarray([g["bbox"] for g in gt], float))  # fmt: skip
    used: set[int] = set()
    pairs = []
    for i in sorted(range(len(pred)), key=lambda k: -pred[k]["score"]):
        best, best_iou = -1, thr
        for j in range(len(gt)):
            if j in used or (same_shape and pred[i]["shape"] != gt[j]["shape"]):
                continue
            if iou[i, j] >= best_iou:
                best, best_iou = j, iou[i, j]
        if best >= 0:
            used.add(best)
            pairs.append((i, best))
    return pairs


def _coco_ap(scenes: list[dict[str, Any]], preds: list[list[dict[str, Any]]],
             key: Any, cats: list[str]) -> tuple[float, float]:  # fmt: skip
    """(AP50, AP50:95) with category ``key(obj)`` among ``cats`` (pycocotools COCOeval)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cid = {c: i + 1 for i, c in enumerate(cats)}
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    for n, (sc, ps) in enumerate(zip(scenes, preds, strict=True), start=1):
        images.append({"id": n, "width": sc["width"], "height": sc["height"]})
        for o in sc["objects"]:
            x0, y0, x1, y1 = o["bbox"]
            anns.append({"id": len(anns) + 1, "image_id": n, "category_id": cid[key(o)],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": 0})  # fmt: skip
        for p in ps:
            x0, y0, x1, y1 = p["box"]
            dets.append({"image_id": n, "category_id": cid[key(p)], "score": p["score"],
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})  # fmt: skip
    if not dets:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": i, "name": c} for c, i in cid.items()]}  # fmt: skip
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])


def predict_scenes(scenes: list[dict[str, Any]], root: Path, weights: str, attr: str | None,
                   device: str = "cpu", agnostic: bool | None = None,
                   ) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Detections per scene at conf 0.001: dicts with box, score and the four attributes.

    ``agnostic``: class-agnostic NMS (None: as the detect tool runs this detector, i.e. for a
    shape detector with an attribute head)."""
    from PIL import Image

    from agentkit.tools import detect

    model = detect.load_detector(Path(weights))
    head = detect.load_attribute_head(Path(weights), attr, device)
    if agnostic is None:
        agnostic = head is not None and detect.is_shape_detector(model.names)
    out = []
    for sc in scenes:
        with Image.open(root / sc["image_filename"]) as im:
            img = im.convert("RGB")
        (res,) = model.predict(img, conf=0.001, max_det=100, device=device, verbose=False,
                               **detect.nms(scene=agnostic))  # fmt: skip
        objs = detect.to_objects(res, head=head, image=np.asarray(img))
        out.append([{"box": o.box, "score": o.score, **{k: getattr(o, k) for k in ATTRS}}
                    for o in objs])  # fmt: skip
    return out


def _at_conf(scenes: list[dict[str, Any]], preds: list[list[dict[str, Any]]],
             conf: float) -> dict[str, Any]:  # fmt: skip
    n_gt = sum(len(sc["objects"]) for sc in scenes)
    n_pred = tp = matched = all_right = 0
    right = dict.fromkeys(ATTRS, 0)
    for sc, ps in zip(scenes, preds, strict=True):
        ps = [p for p in ps if p["score"] >= conf]
        n_pred += len(ps)
        tp += len(match(ps, sc["objects"], same_shape=True))
        for i, j in match(ps, sc["objects"], same_shape=False):
            matched += 1
            ok = [ps[i][k] == sc["objects"][j][k] for k in ATTRS]
            for k, v in zip(ATTRS, ok, strict=True):
                right[k] += int(v)
            all_right += int(all(ok))
    p, r = tp / max(n_pred, 1), tp / max(n_gt, 1)
    return {
        "conf": conf,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / max(p + r, 1e-9), 4),
        "matched": matched,
        "gt_objects": n_gt,
        "attribute_accuracy": {k: round(v / max(matched, 1), 4) for k, v in right.items()},
        "all_four_accuracy": round(all_right / max(matched, 1), 4),
        "objects_all_right": round(all_right / max(n_gt, 1), 4),
    }


def detect_metrics(scene_dir: str | Path, *, weights: str = "scenes-yolo", attr: str | None = None,
                   conf: float | None = None, limit: int | None = None,
                   device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Detection and attribute figures of the detect tool's models on the scenes in ``scene_dir``.

    ``weights``/``attr``: checkpoint names or paths (``attr`` None: the head the tool would use).
    ``conf`` None: choose the operating threshold by F1 on these scenes (report it as such).
    """
    from agentkit.mllm.worlds.coco import full_classes, load_scenes
    from agentkit.mllm.worlds.scenes import SHAPES
    from agentkit.weights import resolve

    scenes = load_scenes(scene_dir)[:limit]
    w = str(resolve(weights))
    # COCO AP the standard way (ultralytics' val: per-class NMS); the operating point as the tool
    # runs (class-agnostic NMS for the shape detector: one object, one box)
    standard = predict_scenes(scenes, Path(scene_dir), w, attr, device, agnostic=False)
    preds = predict_scenes(scenes, Path(scene_dir), w, attr, device)
    if any(p["color"] is None for ps in standard for p in ps):
        raise ConfigError(
            f"the detector {w} gave objects without colour/material/size and no attribute head "
            "was found: pass attr= (scenes-attr) or use a full-class detector"
        )
    ap50, ap = _coco_ap(scenes, standard, lambda o: o["shape"], list(SHAPES))
    tool_ap50, _ = _coco_ap(scenes, preds, lambda o: o["shape"], list(SHAPES))
    full50, _ = _coco_ap(
        scenes, standard, lambda o: f"{o['size']}-{o['color']}-{o['material']}-{o['shape']}",
        full_classes(),
    )  # fmt: skip
    sweep = [_at_conf(scenes, preds, c) for c in CONF_GRID]
    chosen = conf is None
    if conf is None:
        conf = max(sweep, key=lambda s: (s["f1"], -s["conf"]))["conf"]
    at = _at_conf(scenes, preds, conf)
    return {
        "scenes": len(scenes),
        "scene_dir": str(scene_dir),
        "weights": w,
        "mAP50": round(ap50, 4),
        "mAP50_95": round(ap, 4),
        "full_mAP50": round(full50, 4),
        "mAP50_tool_nms": round(tool_ap50, 4),
        "conf_chosen_on_these_scenes": chosen,
        **at,
        "conf_sweep": [
            {k: s[k] for k in ("conf", "precision", "recall", "f1", "all_four_accuracy")}
            for s in sweep
        ],  # fmt: skip
    }


def _center_point(mask: np.ndarray) -> list[float]:
    """The mask pixel farthest from its border, [x, y] in pixels (SAM's single-point evaluation
    prompt: deterministic, and inside the object even for a ring or an occluded shape)."""
    import cv2

    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return [float(x), float(y)]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(int((a | b).sum()), 1))


def segment_scores(seg: Any, scenes: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    """Mask IoU of a :class:`agentkit.tools.segment.Segmenter` (run as the segment tool runs it)
    on every visible object of ``scenes``: one box prompt (the object's ground-truth box) and one
    single-point prompt (:func:`_center_point`, best of SAM's three masks by predicted IoU)."""
    import time

    from PIL import Image
    from pycocotools import mask as mask_utils

    box_iou, point_iou, filled, groups = [], [], [], []
    t_encode = t_box = t_point = 0.0
    for sc in scenes:
        with Image.open(root / sc["image_filename"]) as im:
            img = im.convert("RGB")
        t = time.perf_counter()
        with seg.lock:
            seg.set_image(img)
            t_encode += time.perf_counter() - t
            for o in sc["objects"]:
                rle = {"size": o["mask"]["size"], "counts": o["mask"]["counts"].encode("ascii")}
                gt = mask_utils.decode(rle).astype(bool)
                if not gt.any():
                    continue
                x0, y0, x1, y1 = o["bbox"]
                box = np.zeros_like(gt)
                box[y0:y1, x0:x1] = True
                filled.append(_mask_iou(box, gt))
                t = time.perf_counter()
                m, _ = seg.predict([float(v) for v in o["bbox"]], None, None)
                t_box += time.perf_counter() - t
                box_iou.append(_mask_iou(m, gt))
                t = time.perf_counter()
                m, _ = seg.predict(None, np.asarray([_center_point(gt)], np.float32),
                                   np.ones(1, np.int64))  # fmt: skip
                t_point += time.perf_counter() - t
                point_iou.append(_mask_iou(m, gt))
                groups.append((o["shape"], o["size"]))
    n = max(len(box_iou), 1)
    ious, base = np.asarray(box_iou), np.asarray(filled)

    def by(i: int, values: np.ndarray) -> dict[str, float]:  # mean per shape (0) or size (1)
        keys = np.asarray([g[i] for g in groups])
        return {k: round(float(values[keys == k].mean()), 4) for k in sorted(set(keys))}

    return {
        "objects": len(box_iou),
        "box_mIoU": round(float(np.mean(box_iou)) if box_iou else 0.0, 4),
        "point_mIoU": round(float(np.mean(point_iou)) if point_iou else 0.0, 4),
        "filled_box_mIoU": round(float(np.mean(filled)) if filled else 0.0, 4),
        "box_IoU_over_0.75": round(
            float(np.mean(np.asarray(box_iou) > 0.75)) if box_iou else 0.0, 4
        ),
        "box_mIoU_by_shape": by(0, ious),
        "filled_box_mIoU_by_shape": by(0, base),
        "box_mIoU_by_size": by(1, ious),
        "filled_box_mIoU_by_size": by(1, base),
        "ms_per_image_encode": round(1000 * t_encode / max(len(scenes), 1), 1),
        "ms_per_box_prompt": round(1000 * t_box / n, 1),
        "ms_per_point_prompt": round(1000 * t_point / n, 1),
    }


def segment_metrics(scene_dir: str | Path, *, weights: str = "scenes-sam", limit: int | None = None,
                    device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Box- and single-point-prompt mIoU of the segment tool's model on the scenes in
    ``scene_dir`` against their exact masks, with the filled ground-truth box as the baseline
    (:func:`segment_scores`). ``weights``: checkpoint name or path."""
    from agentkit.mllm.worlds.coco import load_scenes
    from agentkit.tools.segment import Segmenter, load_sam
    from agentkit.weights import resolve

    scenes = load_scenes(scene_dir)[:limit]
    w = resolve(weights)
    seg = Segmenter(load_sam(w, device))
    return {"scenes": len(scenes), "scene_dir": str(scene_dir), "weights": str(w),
            **segment_scores(seg, scenes, Path(scene_dir))}  # fmt: skip


def perception(scenes: str | Path, *, segment_weights: str | None = None, detect: bool = True,
               **kw: Any) -> dict[str, Any]:  # fmt: skip
    """Every perception figure this module knows, keyed by tool: ``detect`` (unless told not
    to), and ``segment`` when ``segment_weights`` names a SAM checkpoint."""
    root = Path(scenes)
    if not root.is_dir():
        raise ConfigError(
            f"scenes={str(root)!r} is not a folder of rendered held-out scenes; render them with "
            "`agentkit data gen scenes --out data/scenes-heldout --n 150 --seed 900000 "
            "--samples 24 --split val`"
        )
    res = {"detect": detect_metrics(root, **kw)} if detect else {}
    if segment_weights is not None:
        res["segment"] = segment_metrics(root, weights=segment_weights, limit=kw.get("limit"),
                                         device=kw.get("device", "cpu"))  # fmt: skip
    return res


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(json.dumps(perception(sys.argv[1]), indent=1))
