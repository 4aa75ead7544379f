"""The detector recipe end to end on a tiny config: render, YOLO, attribute head, evaluation."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))

import json  # noqa: E402

import pytest  # noqa: E402

from agentkit.mllm.train import build_config, load_recipe  # noqa: E402
from agentkit.tools import detect  # noqa: E402
from agentkit.tools.base import ModelCache, ToolContext  # noqa: E402


def test_shipped_recipe_fills_the_config():
    module, cfg = build_config(load_recipe("detector"), ["imgsz=64"])
    assert module.__name__.endswith("train.detector")
    assert cfg.imgsz == 64 and cfg.train_seed == 100000 and cfg.heldout_seed == 900000
    assert cfg.heldout_seed > cfg.train_seed + sum(c for c, _ in cfg.train_chunks)


@pytest.mark.slow
def test_tiny_recipe_writes_checkpoints_the_detect_tool_loads(tmp_path):
    module, cfg = build_config(
        load_recipe("detector"),
        [
            f"train_dir={tmp_path / 'train'}",
            f"heldout_dir={tmp_path / 'heldout'}",
            "train_chunks=[[3, 2], [1, 4]]",
            "heldout_n=2",
            "heldout_samples=2",
            "width=96",
            "height=64",
            "render_workers=1",
            "imgsz=64",
            "epochs=1",
            "time_hours=0",
            "batch=4",
            "yolo_workers=0",
            "attr_epochs=1",
            "attr_batch=4",
        ],
    )
    out = module.train(cfg, tmp_path / "out")
    assert out == tmp_path / "out" / "scenes-yolo.pt" and out.is_file()
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
