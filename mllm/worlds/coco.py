"""Export a directory of rendered scenes (``scene_*.json`` + ``.png``) to COCO and YOLO formats.

COCO: one JSON with RLE masks (pycocotools' compressed counts, as in the scene JSON), boxes
XYWH in pixels, categories = shapes, and each object's colour/material/size as extra fields of
its annotation. YOLO (ultralytics): ``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``
and ``attributes.json`` (per image, per label line: the object's attributes, so a shape-only
detector can still be scored on colour/material/size).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agentkit.errors import ConfigError
from agentkit.mllm.worlds.scenes import COLORS, MATERIALS, SHAPES, SIZES


def full_classes() -> list[str]:
    """The 96 'size-colour-material-shape' class names, in a fixed order."""
    return [f"{s}-{c}-{m}-{sh}" for s in SIZES for c in COLORS for m in MATERIALS for sh in SHAPES]


def load_scenes(scene_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``scene_*.json`` in ``scene_dir``, sorted by file name; each must have its image."""
    root = Path(scene_dir)
    if not root.is_dir():
        raise ConfigError(
            f"scene_dir={str(root)!r} is not a directory: expected a folder of rendered scenes"
        )
    scenes = []
    for path in sorted(root.glob("scene_*.json")):
        data = json.loads(path.read_text())
        if not (root / data["image_filename"]).is_file():
            raise ConfigError(
                f"{path} names image {data['image_filename']!r}, which is missing in {root}"
            )
        scenes.append(data)
    if not scenes:
        raise ConfigError(f"no scene_*.json in {str(root)!r}: render some first (make_scene)")
    return scenes


def to_coco(scene_dir: str | Path) -> dict[str, Any]:
    """COCO instance-segmentation dict for all scenes in ``scene_dir`` (category = shape)."""
    scenes = load_scenes(scene_dir)
    cat_id = {s: i + 1 for i, s in enumerate(SHAPES)}
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for img_id, sc in enumerate(scenes, start=1):
        images.append(
            {
                "id": img_id,
                "file_name": sc["image_filename"],
                "width": sc["width"],
                "height": sc["height"],
                "seed": sc["seed"],
                "split": sc["split"],
            }
        )
        for k, o in enumerate(sc["objects"]):
            x0, y0, x1, y1 = o["bbox"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat_id[o["shape"]],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": o["area"],
                    "iscrowd": 0,
                    "segmentation": o["mask"],
                    "object_index": k,
                    "shape": o["shape"],
                    "color": o["color"],
                    "material": o["material"],
                    "size": o["size"],
                    "3d_coords": o["3d_coords"],
                }
            )
    return {
        "info": {"description": "agentkit CLEVR-style scenes"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": s, "supercategory": "shape"} for s, i in cat_id.items()],
    }


def _polygon(mask_rle: dict[str, Any]) -> list[float]:
    """The mask's outline as one polygon [x, y, ...] in pixels; occluded parts joined."""
    import cv2
    from pycocotools import mask as mask_utils

    rle = {"size": mask_rle["size"], "counts": mask_rle["counts"].encode("ascii")}
    mask = mask_utils.decode(rle).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    segs = [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 3]
    if not segs:
        return []
    if len(segs) == 1:
        return segs[0].ravel().tolist()
    # an object split by an occluder: join the parts as ultralytics' own COCO converter does
    from agentkit.weights import ultralytics_offline

    ultralytics_offline()
    from ultralytics.data.converter import merge_multi_segment

    return (
        np.concatenate(merge_multi_segment([s.ravel().tolist() for s in segs]), axis=0)
        .ravel()
        .tolist()
    )


def export_yolo(
    scene_dir: str | Path,
    out_dir: str | Path,
    *,
    task: Literal["detect", "segment"] = "detect",
    classes: Literal["shape", "full"] = "shape",
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write an ultralytics dataset; return the path of its ``data.yaml``.

    ``task="detect"``: label lines ``cls cx cy w h`` (normalised); ``"segment"``: ``cls x1 y1 ...``
    (normalised polygon). ``classes="shape"``: 3 classes; ``"full"``: 96 size-colour-material-shape
    classes. ``val_fraction`` of the scenes (shuffled by ``seed``) go to ``val``.
    """
    if task not in ("detect", "segment"):
        raise ConfigError(f"task={task!r} is invalid: expected 'detect' or 'segment'")
    if classes not in ("shape", "full"):
        raise ConfigError(f"classes={classes!r} is invalid: expected 'shape' or 'full'")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction={val_fraction!r} is invalid: expected 0 <= val_fraction < 1"
        )
    root, out = Path(scene_dir), Path(out_dir)
    scenes = load_scenes(root)
    names = list(SHAPES) if classes == "shape" else full_classes()
    index = {n: i for i, n in enumerate(names)}
    order = np.random.default_rng(seed).permutation(len(scenes))
    n_val = int(round(val_fraction * len(scenes)))
    if val_fraction > 0 and len(scenes) > 1:
        n_val = max(1, min(n_val, len(scenes) - 1))
    val = {int(i) for i in order[:n_val]}
    attributes: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "val"):  # ultralytics wants both folders, even an empty val
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, sc in enumerate(scenes):
        split = "val" if i in val else "train"
        shutil.copy2(root / sc["image_filename"], out / "images" / split / sc["image_filename"])
        w, h = sc["width"], sc["height"]
        lines, attrs = [], []
        for o in sc["objects"]:
            name = (
                o["shape"]
                if classes == "shape"
                else f"{o['size']}-{o['color']}-{o['material']}-{o['shape']}"
            )
            if task == "detect":
                x0, y0, x1, y1 = o["bbox"]
                vals = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
            else:
                poly = _polygon(o["mask"])
                if not poly:
                    continue
                vals = [v / (w if j % 2 == 0 else h) for j, v in enumerate(poly)]
            lines.append(" ".join([str(index[name])] + [f"{v:.6f}" for v in vals]))
            attrs.append({k: o[k] for k in ("shape", "color", "material", "size")})
        stem = Path(sc["image_filename"]).stem
        (out / "labels" / split / f"{stem}.txt").write_text(
            "\n".join(lines) + ("\n" if lines else "")
        )
        attributes[f"{split}/{sc['image_filename']}"] = attrs
    (out / "attributes.json").write_text(json.dumps(attributes, indent=1) + "\n")
    yaml_lines = [f"path: {out.resolve()}", "train: images/train", "val: images/val", "names:"]
    yaml_lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    data_yaml = out / "data.yaml"
    data_yaml.write_text("\n".join(yaml_lines) + "\n")
    return data_yaml
