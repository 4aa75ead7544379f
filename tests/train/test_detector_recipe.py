"""The detector recipe end to end on a tiny config: render, YOLO, attribute head, evaluation."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.mllm.train import build_config, detector, load_recipe  # noqa: E402
from agentkit.tools import detect  # noqa: E402
from agentkit.tools._attributes import crop_inputs  # noqa: E402
from agentkit.tools.base import ModelCache, ToolContext  # noqa: E402


def test_shipped_recipe_fills_the_config():
    module, cfg = build_config(load_recipe("detector"), ["imgsz=64"])
    assert module.__name__.endswith("train.detector")
    assert cfg.imgsz == 64 and cfg.train_seed == 100000 and cfg.heldout_seed == 900000
    assert cfg.heldout_seed > cfg.train_seed + sum(c for c, _ in cfg.train_chunks)


def _image_and_boxes():
    rng = np.random.default_rng(3)
    img = np.full((48, 64, 3), 110, np.uint8) + rng.integers(0, 30, (48, 64, 3), dtype=np.uint8)
    img[10:30, 20:40] = (170, 60, 40)  # an object on a grey ground
    return img, np.array([[18.0, 8.0, 42.0, 32.0], [2.0, 30.0, 20.0, 46.0]])


def test_photometric_augmentations_match_transforming_the_image():
    # the head trains on transformed inputs; they must be what crop_inputs gives on the image
    # transformed the same way, or it learns from inputs no real image produces
    img, boxes = _image_and_boxes()
    x, g = crop_inputs(img, boxes, 16)
    med = g[0, 7:10]
    one = np.ones(len(boxes), np.float32)

    xc, gc = x.copy(), g.copy()
    detector.contrast(xc, gc, 0.6 * one)
    flat = np.clip(np.rint((med + 0.6 * (img / 255.0 - med)) * 255), 0, 255).astype(np.uint8)
    want, gw = crop_inputs(flat, boxes, 16, median=med)
    np.testing.assert_allclose(xc, want, atol=0.012)
    np.testing.assert_allclose(gc, gw, atol=1e-6)

    xg, gg = x.copy(), g.copy()
    detector.gamma(xg, gg, 1.3 * one)
    curved = np.clip(np.rint((img / 255.0) ** 1.3 * 255), 0, 255).astype(np.uint8)
    want, gw = crop_inputs(curved, boxes, 16)
    np.testing.assert_allclose(xg, want, atol=0.012)
    np.testing.assert_allclose(gg, gw, atol=0.005)

    # a ground 1/r as bright: same object pixels, the median divided by r
    xa, ga = x.copy(), g.copy()
    detector.ground_albedo(xa, ga, 1.4 * one)
    want, gw = crop_inputs(img, boxes, 16, median=med / 1.4)
    np.testing.assert_allclose(xa, want, atol=1e-5)
    np.testing.assert_allclose(ga, gw, atol=1e-6)


def test_augmented_batches_vary_tone_but_keep_labels():
    img, boxes = _image_and_boxes()
    rows = [(0, boxes[0], [1, 0, 0, 0]), (0, boxes[1], [0, 1, 1, 2])]
    idx = np.array([0, 1] * 16)
    x0, g0, y0 = detector._batch([img], rows, idx, 16, None)
    x1, g1, y1 = detector._batch([img], rows, idx, 16, np.random.default_rng(0))
    assert (y0 == y1).all() and x1.shape == x0.shape
    # the object's brightness against the median differs from sample to sample
    ratio = x1[::2, 3:].mean(dim=(1, 2, 3)).numpy()
    assert ratio.std() > 0.02 and np.isfinite(x1.numpy()).all()
    assert ((x1[:, :3] >= -0.1) & (x1[:, :3] <= 1.1)).all()


@pytest.mark.slow
def _tiny(tmp_path) -> list[str]:
    """A recipe small enough for CI: a few 96x64 scenes, one epoch of each model."""
    return [f"train_dir={tmp_path / 'train'}", f"heldout_dir={tmp_path / 'heldout'}"] + [
        "train_chunks=[[3, 2], [1, 4]]",
        "heldout_n=2",
        "heldout_samples=2",
        "width=96",
        "height=64",
        "render_workers=1",
        "imgsz=64",
        "epochs=1",
        "time_hours=0",
        "finetune_imgsz=96",
        "finetune_hours=0",
        "batch=4",
        "yolo_workers=0",
        "attr_epochs=1",
        "attr_batch=4",
    ]


def test_tiny_recipe_writes_checkpoints_the_detect_tool_loads(tmp_path):
    module, cfg = build_config(load_recipe("detector"), _tiny(tmp_path))
    out = module.train(cfg, tmp_path / "out")
    assert out == tmp_path / "out" / "scenes-yolo.pt" and out.is_file()
    # the shipped YOLO is the second leg's: fine-tuned from the first at the larger size
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["imgsz"] == 96
    assert ckpt["train_args"]["model"].endswith("yolo-run/weights/best.pt")
    assert len(list((tmp_path / "train").glob("scene_*.json"))) == 4
    attr = tmp_path / "out" / "scenes-attr.pt"
    assert attr.is_file()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["scenes"] == 2 and 0.0 <= metrics["mAP50"] <= 1.0

    # the detect tool loads the run's checkpoint by path and finds the attribute head beside it
    image = next((tmp_path / "heldout").glob("scene_*.png"))
    ctx = ToolContext(models=ModelCache())
    res = detect.run(detect.Args(image=str(image), conf=0.0, weights=str(out)), ctx)
    assert (res.width, res.height) == (96, 64)
    assert res.objects, "conf=0 keeps every box of a one-epoch model"
    for o in res.objects:
        assert o.shape in detect.SHAPES and o.label == o.shape
        assert o.color in detect.COLORS and o.material in detect.MATERIALS
        assert o.size in detect.SIZES

    # re-running resumes: nothing is rendered or trained again
    again = module.train(cfg, tmp_path / "out")
    assert again == out

    # a later leg (detector-sharp) fine-tunes that YOLO on new scenes and keeps its head
    _, leg = build_config(
        load_recipe("detector-sharp"),
        [o for o in _tiny(tmp_path) if not o.startswith("train_chunks")]
        + [f"init={out}", f"attr_init={attr}", "train_chunks=[[2, 2]]"],
    )
    assert leg.train_seed > cfg.train_seed + 4  # new scenes, not the first leg's
    leg_out = module.train(leg, tmp_path / "leg")
    ckpt = torch.load(leg_out, map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["model"] == str(out) and ckpt["train_args"]["imgsz"] == 96
    assert (tmp_path / "leg" / "scenes-attr.pt").read_bytes() == attr.read_bytes()
    assert not (tmp_path / "leg" / "yolo-run").exists()  # no first leg
    assert len(list((tmp_path / "train").glob("scene_*.json"))) == 6


@pytest.mark.parametrize(("leg", "start"), [("detector-sharp", "detector"),
                                           ("detector-refresh", "detector-sharp")])  # fmt: skip
def test_a_leg_without_its_start_says_which_recipe_makes_it(tmp_path, leg, start):
    module, cfg = build_config(
        load_recipe(leg), [f"train_dir={tmp_path}", "train_chunks=[[1, 1]]", "evaluate=false"]
    )
    assert cfg.init == f"runs/train/{start}/scenes-yolo.pt"
    cfg.init = str(tmp_path / "runs" / "train" / start / "scenes-yolo.pt")
    with pytest.raises(ConfigError, match=rf"not found: train the run .*`agentkit train {start}`"):
        module.train_yolo(cfg, tmp_path / "out")
    # never a name ultralytics would take for a download
    cfg.init = "yolov8n.pt"
    with pytest.raises(ConfigError, match="init checkpoint yolov8n.pt not found: set init to"):
        module.train_yolo(cfg, tmp_path / "out")
    cfg.finetune_imgsz = 0  # a start with no leg to train it
    with pytest.raises(ConfigError, match="needs finetune_imgsz > 0"):
        module.train_yolo(cfg, tmp_path / "out")
