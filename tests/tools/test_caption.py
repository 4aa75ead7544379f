"""caption and describe_region: the detector-based captioner, crops and their coordinates."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from agentkit.media import MediaStore  # noqa: E402
from agentkit.state import ToolCall  # noqa: E402
from agentkit.tools import caption, describe_region, detect  # noqa: E402
from agentkit.tools._vision import mask_image  # noqa: E402
from agentkit.tools.base import ModelCache, Tool, ToolContext, ToolRegistry, execute  # noqa: E402

NAMES = {
    0: "large red metal cube",
    1: "small blue rubber sphere",
    2: "small gray rubber cylinder",
    3: "umbrella",
}


class FakeDetector:
    """Stands in for a YOLO model: returns fixed boxes (in the frame it is given) and records the
    size of every image it sees."""

    names = NAMES  # a real YOLO model exposes its class names too

    def __init__(self, rows):
        self.rows, self.seen = rows, []

    def predict(self, image, conf, device, verbose, agnostic_nms=False):
        import torch
        from ultralytics.engine.results import Results

        self.seen.append(image.size)
        rows = [r for r in self.rows if r[4] >= conf]
        return [
            Results(
                np.asarray(image),
                path="x",
                names=NAMES,
                boxes=torch.tensor(rows, dtype=torch.float32).reshape(-1, 6),
            )
        ]


@pytest.fixture
def image(tmp_path) -> Path:
    p = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 300, 3), dtype=np.uint8)).save(
        p
    )
    return p


def fake_ctx(tmp_path, rows, media=None) -> tuple[ToolContext, FakeDetector]:
    ckpt = tmp_path / "fake.pt"
    ckpt.write_bytes(b"")
    fake = FakeDetector(rows)
    ctx = ToolContext(media=media, models=ModelCache(), weights={"detect": str(ckpt)})
    ctx.models.get("yolo", str(ckpt.absolute()), "cpu", lambda: fake)
    return ctx, fake


def test_position_and_caption_text():
    assert caption.position([0, 0, 10, 10], 300, 300) == "top left"
    assert caption.position([140, 140, 160, 160], 300, 300) == "center"
    assert caption.position([140, 280, 160, 300], 300, 300) == "bottom"
    assert caption.position([290, 140, 300, 160], 300, 300) == "right"
    assert caption.caption_objects([], 10, 10) == "No objects detected."
    objs = [
        detect.DetectedObject(label="sphere", box=[250, 100, 290, 140], score=0.8, name=NAMES[1], size="small", color="blue", material="rubber", shape="sphere"),
        detect.DetectedObject(label="cube", box=[10, 180, 60, 230], score=0.9, name=NAMES[0], size="large", color="red", material="metal", shape="cube"),
        detect.DetectedObject(label="umbrella", box=[120, 10, 180, 60], score=0.5, name="umbrella"),
    ]  # fmt: skip
    assert caption.caption_objects(objs, 300, 240) == (
        "3 objects: a large red metal cube (bottom left), an umbrella (top), a small blue rubber sphere (right)."
    )
    assert (
        caption.caption_objects(objs[:1], 300, 240)
        == "1 object: a small blue rubber sphere (right)."
    )


def test_caption_tool(tmp_path, image):
    ctx, fake = fake_ctx(
        tmp_path,
        [[10, 180, 60, 230, 0.9, 0], [250, 100, 290, 140, 0.8, 1], [100, 100, 120, 120, 0.1, 2]],
    )
    res = caption.run(caption.Args(image=str(image)), ctx)
    assert (
        res.count == 2
        and res.caption
        == "2 objects: a large red metal cube (bottom left), a small blue rubber sphere (right)."
    )
    assert fake.seen == [(300, 240)]
    assert caption.run(caption.Args(image=str(image), conf=0.05), ctx).count == 3


def test_describe_region_crops_and_maps_boxes_back(tmp_path, image):
    media = MediaStore(tmp_path / "media")
    ref = media.add_image(image)
    # The fake sees the crop: a box at (5, 5)-(25, 25) in crop pixels.
    ctx, fake = fake_ctx(tmp_path, [[5, 5, 25, 25, 0.9, 0]], media=media)
    res = describe_region.run(describe_region.Args(image=ref, box=[100, 50, 200, 150]), ctx)
    assert fake.seen == [(120, 120)]  # 100x100 region + 10% margin each side
    assert res.region == [100, 50, 200, 150]
    assert res.objects[0].box == [95, 45, 115, 65]  # crop origin (90, 40) added back
    assert res.caption == "1 object: a large red metal cube (top left)."
    # A mask from segment: its tight box is the region.
    mask = np.zeros((240, 300), bool)
    mask[60:120, 30:90] = True
    mid = media.add_image(mask_image(mask), prefix="mask")
    res = describe_region.run(describe_region.Args(image=ref, mask=mid), ctx)
    assert res.region == [30, 60, 90, 120] and fake.seen[-1] == (72, 72)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "exactly one of box or mask"),
        ({"box": [0, 0, 5, 5], "mask": "mask_0"}, "exactly one"),
        ({"box": [50, 50, 10, 10]}, "is empty"),
        ({"mask": "mask_0"}, "is empty"),
    ],
)
def test_describe_region_errors(tmp_path, image, args, message):
    media = MediaStore(tmp_path / "media")
    ref = media.add_image(image)
    media.add_image(mask_image(np.zeros((240, 300), bool)), prefix="mask")
    ctx, _ = fake_ctx(tmp_path, [], media=media)
    step = execute(
        ToolCall(tool="describe_region", args={"image": ref, **args}),
        ToolRegistry([Tool.from_module(describe_region)]),
        ctx,
    )
    assert step.error and message in step.error


@pytest.mark.slow
def test_caption_with_a_real_yolo_checkpoint(tmp_path, image):
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.model.names = {i: detect.SHAPES[i % 3] for i in range(80)}  # shape-only class names
    model.save(tmp_path / "shapes.pt")
    res = caption.run(
        caption.Args(image=str(image), conf=0.0, weights=str(tmp_path / "shapes.pt")),
        ToolContext(models=ModelCache()),
    )
    assert res.count == len(res.objects) > 0 and res.caption.startswith(f"{res.count} objects: a")
    assert all(o.shape == o.label for o in res.objects)
