"""segment: segment-anything masks from box prompts, point prompts, or the whole image.

Two checkpoint layouts load by path:

* **official** ``sam_vit_b_01ec64.pth`` / ``sam_vit_l_*.pth`` / ``sam_vit_h_*.pth``: a plain
  state dict, built through ``sam_model_registry[kind](checkpoint=path)``; the kind comes from the
  file name, else from the patch-embedding width in the state dict (768 / 1024 / 1280);
* **compact** (the shipped ``scenes-sam``): ``{"config": CompactSamConfig fields, "model":
  state_dict}``, built by :func:`build_compact_sam` from segment_anything's own modules at a small
  image size (``build_sam.py`` hard-codes 1024 px and 256-d prompts).

An image is encoded once (``SamPredictor.set_image``) and the embedding kept in a small LRU keyed
by (model, image content), so several prompts on one image cost one encoder pass.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from agentkit.errors import ToolError
from agentkit.tools._vision import (
    RLE,
    BoxXYXY,
    check_box,
    image_key,
    mask_image,
    resolve_weights,
    rle_and_box,
    round_box,
    weights_spec,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image as PILImage

    from agentkit.tools.base import ToolContext

NAME = "segment"
DESCRIPTION = """Segment objects with segment-anything. Give boxes ([[x1, y1, x2, y2], ...], one mask
each) or points ([[x, y], ...] with point_labels 1 = object, 0 = background: one mask), or
mode="everything" for all objects. Returns each mask's id, area in pixels, box and score."""
TIMEOUT = 120.0
DEFAULT_WEIGHTS = "scenes-sam"
#: Image embeddings kept per process (one per image and model): ~1 MB each for the compact model.
EMBEDDING_CACHE_SIZE = 8
#: SamAutomaticMaskGenerator settings for mode="everything" (its defaults, fewer points for CPU).
#: A compact checkpoint may carry its own (``"everything"``: a small model predicts lower IoUs).
EVERYTHING_DEFAULTS: dict[str, Any] = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


class Args(BaseModel):
    image: str = Field(description="Media id (image_0) or path of the image.")
    boxes: list[BoxXYXY] | None = Field(
        None, description="Box prompts [[x1, y1, x2, y2], ...] in pixels; one mask per box."
    )
    points: list[list[float]] | None = Field(
        None, description="Point prompts [[x, y], ...] in pixels; together they make one mask."
    )
    point_labels: list[int] | None = Field(
        None, description="1 (object) or 0 (background) per point; default all 1."
    )
    mode: Literal["prompt", "everything"] = Field(
        "prompt", description='"everything" segments the whole image without prompts.'
    )
    points_per_side: int = Field(16, ge=4, le=64, description="Grid density for mode=everything.")
    max_masks: int = Field(
        32, ge=1, le=256, description="Keep at most this many masks (largest score first)."
    )
    weights: str | None = Field(None, description="Checkpoint name or path (default scenes-sam).")


class Mask(BaseModel):
    id: str | None = Field(
        description="Media id of the mask PNG (white = object), when the run has a media store."
    )
    rle: RLE = Field(description="The H x W mask in COCO compressed RLE.")
    area: int = Field(description="Pixels inside the mask.")
    box: BoxXYXY | None = Field(
        description="Tight [x1, y1, x2, y2] of the mask in pixels; None if empty."
    )
    score: float = Field(description="SAM's predicted IoU, 0-1.")


class Result(BaseModel):
    masks: list[Mask]
    width: int
    height: int


# --- models ------------------------------------------------------------------------------------


@dataclass
class CompactSamConfig:
    """A small SAM: ViT image encoder at ``img_size`` px, prompts and decoder at ``prompt_dim``.

    Constraints (checked): ``window_size`` divides ``img_size // 16`` (or is 0 = global only);
    ``embed_dim`` is a multiple of ``num_heads``; ``prompt_dim`` of ``decoder_heads``.
    """

    img_size: int = 256
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    window_size: int = 8
    global_attn_indexes: list[int] = field(default_factory=lambda: [1, 3])
    prompt_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 512

    def check(self) -> None:
        grid = self.img_size // 16
        if self.img_size % 16 or (self.window_size and grid % self.window_size):
            raise ValueError(
                f"img_size {self.img_size} must be a multiple of 16 and window_size {self.window_size} divide {grid}"
            )
        if self.embed_dim % self.num_heads or self.prompt_dim % self.decoder_heads:
            raise ValueError("embed_dim must divide by num_heads and prompt_dim by decoder_heads")
        if any(i >= self.depth for i in self.global_attn_indexes):
            raise ValueError(
                f"global_attn_indexes {self.global_attn_indexes} must be < depth {self.depth}"
            )


def build_compact_sam(config: CompactSamConfig | None = None, **overrides: Any) -> Any:
    """A ``segment_anything.modeling.Sam`` of the given size (random weights, eval mode).

    Encoder ``out_chans`` == prompt dim == decoder dim, so the three parts fit together; the
    prompt encoder's embedding grid is ``img_size // 16``, as in ``build_sam._build_sam``.
    """
    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    cfg = config or CompactSamConfig()
    if overrides:
        cfg = CompactSamConfig(**{**asdict(cfg), **overrides})
    cfg.check()
    grid = cfg.img_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg.img_size,
            patch_size=16,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=4.0,
            out_chans=cfg.prompt_dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            qkv_bias=True,
            use_rel_pos=True,
            window_size=cfg.window_size,
            global_attn_indexes=tuple(cfg.global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_heads,
            ),
            transformer_dim=cfg.prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.prompt_dim,
        ),
    )
    return sam.eval()


def save_compact_sam(
    sam: Any,
    config: CompactSamConfig,
    path: str | Path,
    half: bool = True,
    everything: dict[str, Any] | None = None,
) -> Path:
    """Write ``{"config": ..., "model": state_dict}`` (fp16 by default: half the bytes), and
    ``"everything"``: SamAutomaticMaskGenerator settings for mode="everything" when given."""
    import torch

    sd = {
        k: (v.half() if half and v.is_floating_point() else v) for k, v in sam.state_dict().items()
    }
    path = Path(path)
    ckpt: dict[str, Any] = {"config": asdict(config), "model": sd}
    if everything:
        ckpt["everything"] = dict(everything)
    torch.save(ckpt, path)
    return path


OFFICIAL_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def load_sam(path: Path, device: str) -> Any:
    """A ``Sam`` in eval mode on ``device`` from an official or a compact checkpoint."""
    import torch
    from segment_anything import sam_model_registry

    m = re.search(r"vit_([blh])", path.name)
    try:
        if m:  # the official file names say the size: let the library's own loader read it
            sam = sam_model_registry[f"vit_{m.group(1)}"](checkpoint=str(path))
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(ckpt, dict) and "config" in ckpt and "model" in ckpt:
                sam = build_compact_sam(CompactSamConfig(**ckpt["config"]))
                sam.load_state_dict(
                    {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
                )
                sam.everything_defaults = dict(ckpt.get("everything") or {})
            else:
                w = (
                    ckpt.get("image_encoder.patch_embed.proj.weight")
                    if isinstance(ckpt, dict)
                    else None
                )
                if w is None or w.shape[0] not in OFFICIAL_WIDTHS:
                    raise ToolError(
                        f"{path} is neither an official SAM state dict (vit_b/l/h) nor an agentkit compact SAM "
                        '({"config", "model"}); expected e.g. sam_vit_b_01ec64.pth'
                    )
                sam = sam_model_registry[OFFICIAL_WIDTHS[w.shape[0]]]()
                sam.load_state_dict(ckpt)
    except ToolError:
        raise
    except Exception as e:  # torch/pickle raise many kinds for a bad file
        raise ToolError(f"cannot load SAM checkpoint {path}: {type(e).__name__}: {e}") from e
    return sam.to(device).eval()


class Segmenter:
    """One SAM with its predictor, a lock (the predictor holds per-image state) and an LRU of
    image embeddings."""

    def __init__(self, sam: Any):
        from segment_anything import SamPredictor

        self.sam = sam
        self.predictor = SamPredictor(sam)
        self.lock = threading.Lock()
        self._embeddings: OrderedDict[
            str, tuple[torch.Tensor, tuple[int, int], tuple[int, int]]
        ] = OrderedDict()

    def use_cached(self, key: str) -> tuple[int, int] | None:
        """Restore the embedding stored under ``key``; return the image's (width, height), or
        None if it is not cached. Call with the lock held."""
        if key not in self._embeddings:
            return None
        self._embeddings.move_to_end(key)
        p = self.predictor
        p.features, p.original_size, p.input_size = self._embeddings[key]
        p.is_image_set = True
        return p.original_size[1], p.original_size[0]

    def set_image(self, image: PILImage.Image, key: str | None = None) -> None:
        """Encode ``image`` (RGB) unless its embedding is cached under ``key`` (default: a hash of
        its pixels); call with the lock held."""
        import numpy as np

        key = key or image_key(image)
        if self.use_cached(key):
            return
        p = self.predictor
        p.set_image(np.asarray(image.convert("RGB")), image_format="RGB")
        self._embeddings[key] = (p.features, p.original_size, p.input_size)
        while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
            self._embeddings.popitem(last=False)

    def predict(
        self, box: list[float] | None, points: np.ndarray | None, labels: np.ndarray | None
    ) -> tuple[np.ndarray, float]:
        """One mask (H x W bool, original pixels) and its predicted IoU for one prompt."""
        import numpy as np

        # One point is ambiguous (part or whole): ask for three masks and keep the best, as SAM's
        # authors advise; a box or several points are not, and one mask is better then.
        multi = box is None and points is not None and len(points) == 1
        masks, scores, _ = self.predictor.predict(
            point_coords=points,
            point_labels=labels,
            box=None if box is None else np.asarray(box, dtype=np.float32),
            multimask_output=multi,
        )
        i = int(np.argmax(scores))
        return masks[i], float(scores[i])


def get_segmenter(spec: str, ctx: ToolContext) -> Segmenter:
    path = resolve_weights(spec)
    return ctx.models.get(
        "sam", str(path), ctx.device, lambda: Segmenter(load_sam(path, ctx.device))
    )


# --- the tool ----------------------------------------------------------------------------------


def _prompts(args: Args, width: int, height: int) -> list[tuple[list[float] | None, Any, Any]]:
    """The call's prompts as (box, points, labels), validated against the image."""
    import numpy as np

    if args.mode == "everything":
        if args.boxes or args.points:
            raise ToolError('mode="everything" takes no boxes or points')
        return []
    if not args.boxes and not args.points:
        raise ToolError('segment needs boxes, points, or mode="everything"')
    pts = lbl = None
    if args.points:
        if any(len(p) != 2 for p in args.points):
            raise ToolError(f"points must be [[x, y], ...] in pixels, got {args.points}")
        labels = args.point_labels if args.point_labels is not None else [1] * len(args.points)
        if len(labels) != len(args.points) or any(v not in (0, 1) for v in labels):
            raise ToolError(
                f"point_labels must give 0 or 1 for each of the {len(args.points)} points, got {labels}"
            )
        for x, y in args.points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise ToolError(f"point [{x}, {y}] is outside the {width}x{height} image")
        pts, lbl = np.asarray(args.points, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    if args.boxes:
        if pts is not None and len(args.boxes) > 1:
            raise ToolError(
                "points can refine only one box; give one box with points, or boxes alone"
            )
        return [(check_box(b, width, height), pts, lbl) for b in args.boxes]
    return [(None, pts, lbl)]


def _mask(mask: np.ndarray, score: float, ctx: ToolContext) -> Mask:
    import numpy as np

    media_id = ctx.add_image(mask_image(mask), prefix="mask") if ctx.media is not None else None
    rle, box = rle_and_box(mask)
    return Mask(
        id=media_id,
        rle=rle,
        area=int(np.count_nonzero(mask)),  # a tenth of sum()'s time on a bool mask
        box=None if box is None else round_box(box),
        score=round(score, 4),
    )


def _everything(
    seg: Segmenter, image: PILImage.Image, args: Args
) -> list[tuple[np.ndarray, float]]:
    import numpy as np
    from segment_anything import SamAutomaticMaskGenerator

    settings = {**EVERYTHING_DEFAULTS, **getattr(seg.sam, "everything_defaults", {})}
    gen = SamAutomaticMaskGenerator(seg.sam, points_per_side=args.points_per_side, **settings)
    found = gen.generate(np.asarray(image.convert("RGB")))
    return [(m["segmentation"], float(m["predicted_iou"])) for m in found]


def _file_key(ref: str, ctx: ToolContext) -> str | None:
    """A key for an image file that needs no decoding (:func:`~agentkit.media.file_identity`:
    the file however its path is spelled, its mtime and size). Saves the decode and the
    pixel hash (~1.5 ms at 320x240) when the embedding is cached."""
    from agentkit.media import file_identity

    path = ctx.media.path(ref) if ctx.media is not None and ref in ctx.media else Path(ref)
    key = file_identity(path)
    return None if key is None else "file:" + ":".join(map(str, key))


def run(args: Args, ctx: ToolContext) -> Result:
    seg = get_segmenter(weights_spec(NAME, args.weights, ctx, DEFAULT_WEIGHTS), ctx)
    key = _file_key(args.image, ctx) if args.mode == "prompt" else None
    with seg.lock:
        size = seg.use_cached(key) if key else None
        image = None
        if size is None:
            image = ctx.image(args.image)
            size = image.size
        w, h = size
        prompts = _prompts(args, w, h)
        if image is not None and args.mode == "everything":
            found = sorted(_everything(seg, image, args), key=lambda f: -f[1])
        else:
            if image is not None:
                seg.set_image(image, key)
            found = [seg.predict(box, pts, lbl) for box, pts, lbl in prompts]
    return Result(masks=[_mask(m, s, ctx) for m, s in found[: args.max_masks]], width=w, height=h)


def summary(result: Result) -> str:
    if not result.masks:
        return "No masks."
    parts = [
        f"{m.id or f'mask {i}'}: area {m.area} px, box {[round(v) for v in m.box] if m.box else None}, score {m.score:.2f}"
        for i, m in enumerate(result.masks)
    ]
    return f"{len(parts)} masks: " + "; ".join(parts)
