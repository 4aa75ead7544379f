"""COCO and YOLO export of rendered scenes, on the committed examples (no rendering)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from agentkit.errors import ConfigError
from agentkit.mllm.worlds.coco import export_yolo, full_classes, to_coco

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"


def _scenes() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("scene_*.json"))]


def test_coco_matches_scene_json_and_loads_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    coco = to_coco(EXAMPLES)
    scenes = _scenes()
    assert len(coco["images"]) == len(scenes)
    assert len(coco["annotations"]) == sum(len(s["objects"]) for s in scenes)
    assert [c["name"] for c in coco["categories"]] == ["cube", "sphere", "cylinder"]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))
    for ann in coco["annotations"][:20]:
        mask = api.annToMask(ann)
        assert mask.sum() == ann["area"]
        rle = {
            "size": ann["segmentation"]["size"],
            "counts": ann["segmentation"]["counts"].encode(),
        }
        assert np.allclose(mask_utils.toBbox(rle), ann["bbox"])
        assert {"color", "material", "size", "shape"} <= set(ann)


@pytest.mark.parametrize("task", ["detect", "segment"])
@pytest.mark.parametrize("classes", ["shape", "full"])
def test_yolo_export_writes_valid_labels(tmp_path, task, classes):
    data_yaml = export_yolo(EXAMPLES, tmp_path, task=task, classes=classes, val_fraction=0.25)
    text = data_yaml.read_text()
    n_classes = 3 if classes == "shape" else 96
    assert f"  {n_classes - 1}: " in text and f"  {n_classes}: " not in text
    train = sorted((tmp_path / "labels" / "train").glob("*.txt"))
    val = sorted((tmp_path / "labels" / "val").glob("*.txt"))
    assert len(val) == 3 and len(train) == len(_scenes()) - 3
    attrs = json.loads((tmp_path / "attributes.json").read_text())
    names = ["cube", "sphere", "cylinder"] if classes == "shape" else full_classes()
    for label in train + val:
        split = label.parent.name
        assert (tmp_path / "images" / split / f"{label.stem}.png").is_file()
        lines = label.read_text().splitlines()
        objs = attrs[f"{split}/{label.stem}.png"]
        assert len(lines) == len(objs) > 0
        for line, obj in zip(lines, objs, strict=True):
            cls, *vals = line.split()
            name = names[int(cls)]
            assert name.endswith(obj["shape"])
            if classes == "full":
                assert name == f"{obj['size']}-{obj['color']}-{obj['material']}-{obj['shape']}"
            v = np.asarray(vals, dtype=float)
            assert ((v >= 0) & (v <= 1)).all()
            assert len(v) == 4 if task == "detect" else (len(v) >= 6 and len(v) % 2 == 0)


def test_full_classes_are_96_and_unique():
    names = full_classes()
    assert len(names) == len(set(names)) == 96


def test_bad_export_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="task='track'"):
        export_yolo(EXAMPLES, tmp_path, task="track")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="classes='colour'"):
        export_yolo(EXAMPLES, tmp_path, classes="colour")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="val_fraction=1.5"):
        export_yolo(EXAMPLES, tmp_path, val_fraction=1.5)
    with pytest.raises(ConfigError, match="no scene_"):
        to_coco(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        to_coco(tmp_path / "missing")
