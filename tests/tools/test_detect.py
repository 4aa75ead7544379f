"""detect: class-name parsing, filters, and official-layout YOLO checkpoints loaded by path."""

from __future__ import annotations

import os
import tempfile

# ultralytics writes its settings file on import; keep it out of the home folder.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from agentkit import weights  # noqa: E402
from agentkit.media import MediaStore  # noqa: E402
from agentkit.state import ToolCall  # noqa: E402
from agentkit.tools import detect  # noqa: E402
from agentkit.tools.base import ModelCache, Tool, ToolContext, ToolRegistry, call_tool, execute  # noqa: E402

SCENE_NAMES = [
    f"{s} {c} {m} {sh}"
    for s in detect.SIZES
    for c in detect.COLORS
    for m in detect.MATERIALS
    for sh in detect.SHAPES
]


def test_parse_class_name():
    assert detect.parse_class_name("large red metal cube") == {
        "size": "large", "color": "red", "material": "metal", "shape": "cube"
    }  # fmt: skip
    assert detect.parse_class_name("metal cube") == {"material": "metal", "shape": "cube"}
    assert detect.parse_class_name("sphere") == {"shape": "sphere"}
    assert detect.parse_class_name("small grey rubber cylinder")["color"] == "gray"
    assert detect.parse_class_name("person") == {}
    assert detect.parse_class_name("red car") == {}
    assert detect.parse_class_name("red red cube") == {}  # one word per attribute
    assert detect.parse_class_name("cube red") == {}  # must end in a shape
    assert len(SCENE_NAMES) == 96 and all(len(detect.parse_class_name(n)) == 4 for n in SCENE_NAMES)


def test_filters_on_a_crafted_result():
    import torch
    from ultralytics.engine.results import Results

    names = dict(enumerate(SCENE_NAMES + ["person"]))
    rows = [
        [10, 10, 50, 50, 0.9, SCENE_NAMES.index("large red metal cube")],
        [60, 10, 90, 40, 0.8, SCENE_NAMES.index("small blue rubber sphere")],
        [5, 60, 40, 95, 0.7, SCENE_NAMES.index("small red rubber cylinder")],
        [50, 50, 99, 99, 0.6, 96],
    ]
    res = Results(
        np.zeros((100, 120, 3), np.uint8),
        path="x",
        names=names,
        boxes=torch.tensor(rows, dtype=torch.float32),
    )
    objs = detect.to_objects(res)
    assert [o.label for o in objs] == ["cube", "sphere", "cylinder", "person"]
    assert (
        objs[0].box == [10.0, 10.0, 50.0, 50.0] and objs[0].color == "red" and objs[3].color is None
    )

    def kept(**kw):
        a = detect.Args(image="x", **kw)
        return [o.label for o in objs if detect.keep(o, a)]

    assert kept(color="red") == ["cube", "cylinder"]
    assert kept(color="Red", size="small") == ["cylinder"]
    assert kept(material="shiny") == ["cube"]
    assert kept(classes=["balls", "person"]) == ["sphere", "person"]
    assert kept(classes=["large red metal cube"]) == ["cube"]
    assert kept(shape="cube", color="blue") == []
    assert "large red metal cube [10, 10, 50, 50] 0.90" in detect.summary(
        detect.Result(objects=objs, width=120, height=100)
    )


def test_attribute_head_names_attributes_and_overrules_an_unsure_shape():
    import torch
    from ultralytics.engine.results import Results

    class Head:  # what AttributeHead.predict returns, per box
        def predict(self, image, boxes):
            assert image.shape == (100, 120, 3) and len(boxes) == 2
            return [
                {"color": ("red", 0.9), "material": ("metal", 0.8), "size": ("large", 0.9),
                 "shape": ("cylinder", 0.97)},  # surer than YOLO's 0.55: the head's shape
                {"color": ("blue", 0.9), "material": ("rubber", 0.9), "size": ("small", 0.9),
                 "shape": ("cube", 0.60)},  # less sure than YOLO's 0.9: YOLO's sphere stays
            ]  # fmt: skip

    res = Results(
        np.zeros((100, 120, 3), np.uint8),
        path="x",
        names={0: "cube", 1: "sphere", 2: "cylinder"},
        boxes=torch.tensor([[10, 10, 50, 50, 0.55, 0], [60, 10, 90, 40, 0.9, 1]]),
    )
    a, b = detect.to_objects(res, Head(), np.zeros((100, 120, 3), np.uint8))
    assert (a.label, a.shape, a.name, a.color, a.material, a.size) == (
        "cylinder", "cylinder", "cylinder", "red", "metal", "large")  # fmt: skip
    assert (b.label, b.shape, b.name, b.color) == ("sphere", "sphere", "sphere", "blue")
    assert detect.keep(a, detect.Args(image="x", classes=["cylinder"]))
    assert not detect.keep(a, detect.Args(image="x", classes=["cube"]))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """yolov8n (COCO layout, 80 classes) and a 96-class scene model, random weights, saved the way
    ultralytics saves a trained checkpoint (a dict with the pickled fp16 model under "model")."""
    import ultralytics
    import yaml
    from ultralytics import YOLO

    d = tmp_path_factory.mktemp("yolo")
    YOLO("yolov8n.yaml").save(d / "yolov8n.pt")
    cfg = yaml.safe_load(
        (Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text()
    )
    cfg["nc"] = len(SCENE_NAMES)
    (d / "scenes-yolov8n.yaml").write_text(yaml.safe_dump(cfg))
    scene = YOLO(str(d / "scenes-yolov8n.yaml"))
    scene.model.names = dict(enumerate(SCENE_NAMES))
    scene.save(d / "scenes.pt")
    return {"coco": d / "yolov8n.pt", "scenes": d / "scenes.pt"}


@pytest.fixture
def image(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "scene.png"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(p)
    return p


def test_official_layout_loads_by_path(checkpoints, image):
    import torch

    ckpt = torch.load(checkpoints["coco"], weights_only=False)
    assert {"model", "date", "version"} <= set(ckpt)  # the layout of a trained best.pt
    tool = Tool.from_module(detect)
    ctx = ToolContext(models=ModelCache())
    res = call_tool(
        tool, {"image": str(image), "conf": 0.0, "weights": str(checkpoints["coco"])}, ctx
    )
    assert isinstance(res, detect.Result) and (res.width, res.height) == (160, 120)
    assert res.objects, "conf=0 keeps the random head's low-score boxes"
    scores = [o.score for o in res.objects]
    assert scores == sorted(scores, reverse=True)
    for o in res.objects:
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 120
        assert o.shape is None and o.label == o.name and o.label in {str(i) for i in range(80)}
    # Loaded once per process: the second call reuses the cached model.
    call_tool(tool, {"image": str(image), "weights": str(checkpoints["coco"])}, ctx)
    assert len(ctx.models._models) == 1


def test_scene_class_names_become_attributes(checkpoints, image, tmp_path):
    media = MediaStore(tmp_path / "media")
    ref = media.add_image(image)
    ctx = ToolContext(
        media=media, models=ModelCache(), weights={"detect": str(checkpoints["scenes"])}
    )
    res = detect.run(detect.Args(image=ref, conf=0.0), ctx)
    assert res.objects
    for o in res.objects:
        assert o.name in SCENE_NAMES and o.label == o.shape
        assert (o.size, o.color, o.material, o.shape) == tuple(o.name.split())
    reds = detect.run(detect.Args(image=ref, conf=0.0, color="red"), ctx)
    assert all(o.color == "red" for o in reds.objects)
    assert len(reds.objects) == sum(o.color == "red" for o in res.objects)


def test_missing_default_weights_is_a_recorded_error(monkeypatch, tmp_path, image):
    monkeypatch.setattr(weights, "PACKAGE_WEIGHTS", tmp_path)
    monkeypatch.delenv("AGENTKIT_WEIGHTS", raising=False)
    reg = ToolRegistry([Tool.from_module(detect)])
    step = execute(
        ToolCall(tool="detect", args={"image": str(image)}), reg, ToolContext(models=ModelCache())
    )
    assert step.error and "scenes-yolo" in step.error and "agentkit train detector" in step.error
    step = execute(
        ToolCall(tool="detect", args={"image": str(image), "weights": "yolov8n.pt"}),
        reg,
        ToolContext(models=ModelCache()),
    )
    assert step.error and "never downloads" in step.error


def test_ultralytics_is_kept_offline_unless_the_user_says_otherwise(monkeypatch):
    from agentkit.weights import ultralytics_offline

    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setenv("YOLO_AUTOINSTALL", "true")
    ultralytics_offline()
    assert os.environ["YOLO_OFFLINE"] == "1"  # no hub checks that hang without internet
    assert os.environ["YOLO_AUTOINSTALL"] == "true"  # the user's own choice wins


def test_scene_nms_drops_a_taller_second_box_but_keeps_the_object_in_front():
    """The held-out render where a row of small cylinders got a second, taller box over the
    middle one (IoU 0.575 with its first box): the scene detector's class-agnostic NMS (the
    torchvision NMS ultralytics runs, at the tool's IoU) drops it, and keeps the cylinder in
    front of it (IoU 0.23 with the first box)."""
    import torch
    from torchvision.ops import nms

    boxes = torch.tensor([[255.9, 93.5, 280.8, 118.6],  # the first box, 0.83
                          [250.1, 93.6, 280.4, 128.3],  # the taller one, 0.48
                          [248.9, 103.8, 272.3, 133.4]])  # the cylinder in front, 0.80  # fmt: skip
    scores = torch.tensor([0.83, 0.48, 0.80])
    kw = detect.nms(scene=True)
    assert kw["agnostic_nms"]  # one object, one box, whatever shape each box says
    assert sorted(nms(boxes, scores, kw["iou"]).tolist()) == [0, 2]
