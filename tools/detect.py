"""detect: find objects with an ultralytics YOLO detector.

The shipped default ``scenes-yolo`` is trained from ``yolov8n.yaml`` on the scene world; its
class names spell the attributes ("large red metal cube": size, colour, material, shape), which
:func:`parse_class_name` turns into fields. Any ultralytics detection checkpoint loads by path
with ``YOLO(path)`` (``yolov8n.pt`` and its 80 COCO classes, a trained ``best.pt``); its class
names are then plain labels.

When the detector's classes are shapes only (``scenes-yolo`` is trained on cube / sphere /
cylinder), the attribute head ``scenes-attr`` (:mod:`agentkit.tools._attributes`) names each box's
colour, material and size (and overrules YOLO's shape where it is surer, see :func:`to_objects`): a ``scenes-attr.pt`` next to the YOLO checkpoint wins (a training run's
output folder), else the shipped one; without either, those fields stay empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentkit.errors import ToolError
from agentkit.tools._vision import BoxXYXY, resolve_weights, round_box, weights_spec

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from agentkit.tools.base import ToolContext

NAME = "detect"
DESCRIPTION = """Find objects in an image with a YOLO detector. Returns each object's label, box
[x1, y1, x2, y2] in pixels and score; the scene detector also gives size, color, material and shape.
Narrow the list with classes (labels) or with color / material / size / shape."""
TIMEOUT = 60.0
PURE = True  # reads its inputs only: may run ahead and be reused
DEFAULT_WEIGHTS = "scenes-yolo"
#: NMS IoU of the scene detector (class-agnostic; official checkpoints keep ultralytics' 0.7).
#: On the 120 held-out renders at conf 0.25: 0.7 kept 10 false boxes (duplicates of one object),
#: 0.6 kept 5 at the same recall (731 of 747), and 102 of 120 scenes counted exactly (was 99).
#: With the detector-sharp YOLO, 0.55 drops the 2 false boxes 0.6 still kept on those scenes
#: (a second, taller box over a small cylinder in a row of three) at the same recall (741 of
#: 747): 114 of 120 counted exactly (was 112); on the 400 training scenes 378 (was 376), recall
#: the same; 0.5 gave the same on both (docs/detector.md).
SCENE_NMS_IOU = 0.55

# The scene world's vocabulary (CLEVR's). A class name made only of these words, ending in a
# shape, is read as attributes; anything else ("person", "traffic light") is a plain label.
SIZES = ("small", "large")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
MATERIALS = ("rubber", "metal")
SHAPES = ("cube", "sphere", "cylinder")
# Words people (and CLEVR's questions) use for the same values.
SYNONYMS = {
    "big": "large", "tiny": "small", "grey": "gray", "matte": "rubber", "metallic": "metal",
    "shiny": "metal", "block": "cube", "ball": "sphere",
}  # fmt: skip
ATTRIBUTES = {"size": SIZES, "color": COLORS, "material": MATERIALS, "shape": SHAPES}


class Args(BaseModel):
    image: str = Field(description="Media id (image_0) or path of the image.")
    classes: list[str] | None = Field(
        None, description="Keep only these labels (e.g. ['cube', 'person'])."
    )
    color: str | None = Field(None, description="Keep only objects of this color (scene detector).")
    material: str | None = Field(
        None, description="Keep only rubber or metal objects (scene detector)."
    )
    size: str | None = Field(None, description="Keep only small or large objects (scene detector).")
    shape: str | None = Field(
        None, description="Keep only cubes, spheres or cylinders (scene detector)."
    )
    # 0.25: F1 on held-out renders within 0.002 of the best (0.5) with 2 points more recall; a low
    # threshold chosen on renders also suited real CLEVR renders (FACTS.md, docs/detector.md)
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Minimum confidence, 0-1.")
    weights: str | None = Field(None, description="Checkpoint name or path (default scenes-yolo).")


class DetectedObject(BaseModel):
    label: str = Field(
        description="The object's category: the shape for scene classes, else the class name."
    )
    box: BoxXYXY = Field(description="[x1, y1, x2, y2] in original-image pixels.")
    score: float = Field(description="Detector confidence, 0-1.")
    size: str | None = None
    color: str | None = None
    material: str | None = None
    shape: str | None = None
    name: str = Field(description="The detector's full class name.")


class Result(BaseModel):
    objects: list[DetectedObject]
    width: int = Field(description="Image width in pixels.")
    height: int = Field(description="Image height in pixels.")


def normalize_word(word: str) -> str:
    """Lower-case, singular, canonical attribute word ("Balls" -> "sphere", "grey" -> "gray")."""
    w = word.strip().lower()
    if w.endswith("s") and (w[:-1] in SHAPES or w[:-1] in SYNONYMS):
        w = w[:-1]
    return SYNONYMS.get(w, w)


def parse_class_name(name: str) -> dict[str, str]:
    """Attributes spelled by a scene class name, or ``{}`` for a plain label.

    "large red metal cube" -> {size, color, material, shape}; "metal cube" -> {material, shape};
    "cube" -> {shape}; "person" or "red car" -> {} (not all words are scene attributes).
    """
    words = [normalize_word(w) for w in name.replace("_", " ").replace("-", " ").split()]
    if not words or words[-1] not in SHAPES:
        return {}
    found: dict[str, str] = {}
    for w in words:
        kind = next((k for k, vals in ATTRIBUTES.items() if w in vals), None)
        if kind is None or kind in found:
            return {}
        found[kind] = w
    return found


def load_detector(path: Path) -> Any:
    """``ultralytics.YOLO`` from a local checkpoint (never downloads: the path exists)."""
    from agentkit.weights import ultralytics_offline

    ultralytics_offline()
    from ultralytics import YOLO

    try:
        model = YOLO(str(path), task="detect")
    except Exception as e:  # ultralytics raises many kinds for a bad file
        raise ToolError(f"cannot load YOLO checkpoint {path}: {type(e).__name__}: {e}") from e
    if getattr(model, "task", "detect") != "detect":
        raise ToolError(f"{path} is a YOLO {model.task} model; detect needs a detection checkpoint")
    return model


def get_detector(spec: str, ctx: ToolContext) -> Any:
    path = resolve_weights(spec)
    return ctx.models.get("yolo", str(path), ctx.device, lambda: load_detector(path))


def is_shape_detector(names: dict[int, str] | list[str]) -> bool:
    """Whether every class name is a bare shape (the scene detector that needs the head)."""
    values = names.values() if isinstance(names, dict) else names
    return bool(values) and all(set(parse_class_name(str(n))) == {"shape"} for n in values)


def attribute_head_path(yolo_path: Path, attr: str | None = None) -> Path | None:
    """The attribute head for a shape detector: ``attr`` if given, else ``scenes-attr.pt`` beside
    the YOLO file, else the shipped ``scenes-attr``; None when there is none."""
    if attr is not None:
        return resolve_weights(attr)
    sibling = Path(yolo_path).with_name("scenes-attr.pt")
    if sibling.is_file():
        return sibling
    from agentkit.weights import KNOWN, search_dirs

    for d in search_dirs():
        p = d / KNOWN["scenes-attr"].file
        if p.is_file():
            return p
    return None


def load_attribute_head(yolo_path: Path, attr: str | None = None, device: str = "cpu") -> Any:
    """The :class:`~agentkit.tools._attributes.AttributeHead` for a detector, or None."""
    from agentkit.tools._attributes import AttributeHead

    path = attribute_head_path(yolo_path, attr)
    if path is None:
        return None
    try:
        return AttributeHead.load(str(path), device)
    except Exception as e:  # a wrong or truncated file
        raise ToolError(f"cannot load attribute head {path}: {type(e).__name__}: {e}") from e


def to_objects(result: Any, head: Any = None, image: Any = None) -> list[DetectedObject]:
    """ultralytics ``Results`` -> objects, boxes already in original-image pixels.

    ``head`` (an attribute head) and ``image`` (HxWx3 uint8 RGB) fill colour, material and size
    of shape-only classes, and overrule YOLO's shape where the head's probability for its own
    shape is above YOLO's class score: on the 120 held-out renders' 731 detected objects YOLO's
    shape was right for 0.963, the head's (which sees every box at one crop scale) for 0.981, this
    rule for 0.982 (mostly half-hidden cylinders YOLO called cubes).
    """
    import numpy as np

    names = result.names
    boxes = result.boxes
    xyxy_all = boxes.xyxy.tolist()
    scores = boxes.conf.tolist()
    extra: list[dict[str, str]] = [{} for _ in xyxy_all]
    if head is not None and image is not None and xyxy_all and is_shape_detector(names):
        for i, pred in enumerate(head.predict(image, np.asarray(xyxy_all))):
            extra[i] = {k: pred[k][0] for k in ("color", "material", "size")}
            shape, p_shape = pred.get("shape", ("", 0.0))
            if shape and p_shape > scores[i]:
                extra[i]["shape"] = shape  # the head is surer than YOLO's class score
    out = []
    for xyxy, score, cls, more in zip(xyxy_all, scores, boxes.cls.tolist(), extra, strict=True):
        name = more.get("shape") or str(names[int(cls)])  # a shape detector's classes are shapes
        attrs = {**parse_class_name(name), **more}
        out.append(
            DetectedObject(
                label=attrs.get("shape", name),
                box=round_box(xyxy),
                score=round(score, 4),
                name=name,
                **attrs,
            )
        )
    return out


def keep(obj: DetectedObject, args: Args) -> bool:
    """Whether an object passes the call's class and attribute filters."""
    if args.classes:
        wanted = {normalize_word(c) for c in args.classes}
        if normalize_word(obj.label) not in wanted and obj.name.lower() not in wanted:
            return False
    for field in ("color", "material", "size", "shape"):
        want = getattr(args, field)
        if want is not None and getattr(obj, field) != normalize_word(want):
            return False
    return True


def detect_objects(
    image: PILImage.Image, ctx: ToolContext, conf: float = 0.25, weights: str | None = None
) -> list[DetectedObject]:
    """All objects the detector finds in an RGB image, best score first (the captioners use this)."""
    import numpy as np

    path = resolve_weights(weights_spec(NAME, weights, ctx, DEFAULT_WEIGHTS))
    model = ctx.models.get("yolo", str(path), ctx.device, lambda: load_detector(path))
    head = None
    if is_shape_detector(model.names):
        head = ctx.models.get("yolo-attr", str(path), ctx.device,
                              lambda: load_attribute_head(path, device=ctx.device))  # fmt: skip
    # A PIL image, not a path: media ids are not files, and ultralytics reads PIL as RGB.
    # One scene object has one shape: suppress overlapping boxes across classes too (ultralytics'
    # per-class NMS kept a cube and a cylinder on the same object).
    (res,) = model.predict(
        image, conf=conf, device=ctx.device, verbose=False, **nms(scene=head is not None)
    )
    rgb = np.asarray(image.convert("RGB")) if head is not None else None
    return sorted(to_objects(res, head, rgb), key=lambda o: -o.score)


def nms(scene: bool) -> dict[str, Any]:
    """ultralytics' NMS arguments: the scene detector (shapes + attribute head) suppresses across
    classes at :data:`SCENE_NMS_IOU`; any other detector keeps ultralytics' per-class defaults."""
    return {"agnostic_nms": True, "iou": SCENE_NMS_IOU} if scene else {"agnostic_nms": False}


def run(args: Args, ctx: ToolContext) -> Result:
    image = ctx.image(args.image)
    objects = [o for o in detect_objects(image, ctx, args.conf, args.weights) if keep(o, args)]
    return Result(objects=objects, width=image.width, height=image.height)


def describe(obj: DetectedObject) -> str:
    """ "large red metal cube" for scene objects, the label otherwise."""
    words = [obj.size, obj.color, obj.material, obj.shape] if obj.shape else [obj.label]
    return " ".join(w for w in words if w)


def summary(result: Result) -> str:
    if not result.objects:
        return "No objects found."
    parts = [f"{describe(o)} {[round(v) for v in o.box]} {o.score:.2f}" for o in result.objects]
    return f"{len(parts)} objects: " + "; ".join(parts)
