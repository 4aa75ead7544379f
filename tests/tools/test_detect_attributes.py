"""detect with a shape-only YOLO: the attribute head beside it names colour, material and size."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from agentkit.tools import _attributes, detect  # noqa: E402
from agentkit.tools.base import ModelCache, ToolContext  # noqa: E402


@pytest.fixture(scope="module")
def shape_run(tmp_path_factory) -> Path:
    """A run folder as the detector recipe leaves it: scenes-yolo.pt (3 shape classes, random
    weights) and scenes-attr.pt (random attribute head, fp16) side by side."""
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    d = tmp_path_factory.mktemp("run")
    cfg = yaml.safe_load(
        (Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text()
    )
    cfg["nc"] = 3
    (d / "shapes.yaml").write_text(yaml.safe_dump(cfg))
    model = YOLO(str(d / "shapes.yaml"))
    model.model.names = dict(enumerate(detect.SHAPES))
    model.save(d / "scenes-yolo.pt")
    head = _attributes.build(8, 16)
    torch.save(
        {
            "config": {"crop": 16, "width": 8},
            "vocab": _attributes.VOCAB,
            "model": {
                k: v.half() if v.is_floating_point() else v for k, v in head.state_dict().items()
            },  # fmt: skip
        },
        d / "scenes-attr.pt",
    )
    return d


def test_crop_inputs_shapes_and_ratio_channels():
    img = np.full((60, 80, 3), 100, np.uint8)
    img[20:40, 30:50] = (200, 50, 50)
    crops, geom = _attributes.crop_inputs(img, np.array([[30, 20, 50, 40.0]]), 16)
    assert crops.shape == (1, 6, 16, 16) and geom.shape == (1, _attributes.GEOM)
    centre = crops[0, :, 8, 8]
    assert np.allclose(centre[:3], np.array([200, 50, 50]) / 255, atol=0.02)
    # ratio to the image median (the grey ground): 2.0, 0.5, 0.5, stored / 3
    assert np.allclose(centre[3:], np.array([2.0, 0.5, 0.5]) / 3, atol=0.02)
    assert np.allclose(geom[0, :2], np.log([20 / 80, 20 / 80]))
    assert np.allclose(geom[0, 2:6], [3 * -10 / 80, 3 * 10 / 80, 3 * -10 / 80, 3 * 10 / 80])
    assert np.allclose(geom[0, 7:], 100 / 255, atol=0.01)


@pytest.mark.slow
def test_shape_detector_gets_attributes_from_the_head(shape_run, tmp_path):
    image = tmp_path / "x.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(image)
    assert detect.attribute_head_path(shape_run / "scenes-yolo.pt") == shape_run / "scenes-attr.pt"
    ctx = ToolContext(models=ModelCache())
    weights = str(shape_run / "scenes-yolo.pt")
    res = detect.run(detect.Args(image=str(image), conf=0.0, weights=weights), ctx)
    assert res.objects
    for o in res.objects:
        assert o.label == o.shape == o.name and o.shape in detect.SHAPES
        assert o.color in detect.COLORS and o.material in detect.MATERIALS
        assert o.size in detect.SIZES
    color = res.objects[0].color
    only = detect.run(detect.Args(image=str(image), conf=0.0, weights=weights, color=color), ctx)
    assert only.objects and all(o.color == color for o in only.objects)
    assert len(only.objects) == sum(o.color == color for o in res.objects)


@pytest.mark.slow
def test_shape_detector_without_a_head_leaves_attributes_empty(shape_run, tmp_path, monkeypatch):
    from agentkit import weights

    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "shapes.pt").write_bytes((shape_run / "scenes-yolo.pt").read_bytes())
    monkeypatch.setattr(weights, "PACKAGE_WEIGHTS", tmp_path / "nothing")
    monkeypatch.delenv("AGENTKIT_WEIGHTS", raising=False)
    assert detect.attribute_head_path(lone / "shapes.pt") is None
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    res = detect.run(
        detect.Args(image=str(image), conf=0.0, weights=str(lone / "shapes.pt")),
        ToolContext(models=ModelCache()),
    )
    assert all(o.shape in detect.SHAPES and o.color is None for o in res.objects)
