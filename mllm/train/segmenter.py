"""The ``segmenter`` recipe: ``scenes-sam``, a compact segment-anything trained on the scene world.

Model: :func:`agentkit.tools.segment.build_compact_sam` (segment_anything's own ``ImageEncoderViT``,
``PromptEncoder`` and ``MaskDecoder`` at a small image size), from random weights. ``Sam.forward``
runs under ``no_grad``, so training calls the three parts directly, the way
``SamPredictor.predict_torch`` does at inference:

* **images** are fed as ``SamPredictor.set_image`` feeds them: ``ResizeLongestSide(img_size)``
  (PIL bilinear), then ``Sam.preprocess`` (normalise, pad bottom/right to ``img_size``);
* **prompts** are drawn per object from its exact ground-truth mask (COCO RLE in the scene JSON):
  the box (the JSON's ``bbox``, scaled to the input frame, with SAM's jitter: noise of
  ``box_jitter`` x the side, capped), one positive point (uniform over the mask), or 2-3 points,
  or the box plus 1-3 points (positives from the mask, negatives from the box around it);
* **loss** as SAM's: the low-resolution masks upsampled to the input frame (bilinear, as
  ``Sam.postprocess_masks``), cropped to the image (the padding is never seen at inference), focal
  (x ``focal_weight``) + dice, and the MSE of the predicted IoU against the IoU of the binarised
  mask. A single point is ambiguous (part or whole): its prompts get three masks and only the best
  one is trained, as in SAM; boxes and several points get one mask.

Augmentation: horizontal flips and exposure / white-balance / noise jitter (the renders randomise
them too). Training resumes from ``out/last.pt`` (written every ``save_every`` steps); the loss
curve goes to ``out/log.jsonl``. At the end the held-out scenes are scored
(:func:`agentkit.mllm.eval.perception.segment_metrics`: box- and point-prompt mIoU against the
filled-box baseline) into ``out/metrics.json``, and ``out/scenes-sam.pt`` is written in fp16.

Run and install::

    agentkit train segmenter                      # -> runs/train/segmenter/scenes-sam.pt
    cp runs/train/segmenter/scenes-sam.pt agentkit/weights/scenes-sam.pt
    agentkit eval perception --segment-weights scenes-sam
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentkit.errors import ConfigError
from agentkit.mllm.train._fields import f
from agentkit.mllm.train._schedule import lr_at, progress, scheduled

#: Prompt kinds drawn per object, in the order of ``Config.prompt_mix``.
PROMPT_KINDS = ("box", "point", "points", "box_points")


@dataclass
class Config:
    description: str = f("compact SAM on the scene world (box and point prompts)", "one line")
    train_dir: str = f("data/scenes-train", "rendered training scenes (scene_*.json + .png)")
    heldout_dir: str = f("data/scenes-heldout", "held-out scenes for the figures (never trained)")
    train_scenes: int = f(0, "train on the first N scenes of train_dir (0 = all)")
    # the model: CompactSamConfig's fields
    img_size: int = f(256, "input side in pixels (longest image side is resized to it)")
    embed_dim: int = f(128, "ViT width of the image encoder")
    depth: int = f(4, "ViT blocks")
    num_heads: int = f(4, "ViT attention heads")
    window_size: int = f(8, "windowed attention size in tokens (divides img_size // 16)")
    global_attn_indexes: list[int] = f([1, 3], "blocks with global attention")
    prompt_dim: int = f(128, "prompt / decoder width (the encoder's output channels)")
    decoder_depth: int = f(2, "two-way transformer blocks of the mask decoder")
    decoder_heads: int = f(8, "mask decoder attention heads")
    decoder_mlp_dim: int = f(512, "mask decoder MLP width")
    # optimisation
    steps: int = f(3000, "optimizer steps")
    batch: int = f(4, "images per step")
    max_objects: int = f(16, "prompts per image per step at most (objects drawn at random)")
    lr: float = f(1e-3, "peak learning rate (AdamW; linear warm-up, cosine to min_lr_ratio)")
    min_lr_ratio: float = f(0.05, "final learning rate as a share of lr")
    warmup: int = f(100, "warm-up steps")
    weight_decay: float = f(0.05, "AdamW weight decay")
    grad_clip: float = f(1.0, "gradient norm clip (0 = none)")
    focal_weight: float = f(20.0, "focal loss weight (dice has 1; SAM uses 20:1)")
    iou_weight: float = f(1.0, "weight of the IoU-prediction MSE")
    # prompts and augmentation
    prompt_mix: list[float] = f(
        [0.45, 0.3, 0.15, 0.1], "odds of box, one point, 2-3 points, box + 1-3 points per object"
    )
    box_jitter: float = f(0.1, "box corner noise, std as a share of the box side (SAM: 0.1)")
    box_jitter_max: float = f(4.0, "cap of that noise, input-frame pixels")
    hflip: bool = f(True, "random horizontal flips")
    color_jitter: float = f(0.25, "exposure jitter (gain 1 +- this), white balance, pixel noise")
    everything: dict[str, float] = f(
        {"pred_iou_thresh": 0.75, "stability_score_thresh": 0.85, "box_nms_thresh": 0.5},
        'SamAutomaticMaskGenerator settings saved with the weights for the tool\'s mode="everything"'
        " (SAM's 0.88 / 0.95 keep almost no mask of a small model)",
    )
    # bookkeeping
    seed: int = f(0, "seed of the model init, the batches and the prompts")
    threads: int = f(1, "torch CPU threads (1 is faster on a shared machine)")
    log_every: int = f(25, "print the loss every N steps")
    save_every: int = f(100, "steps between resumable checkpoints (out/last.pt)")
    eval_every: int = f(0, "score eval_scenes held-out scenes every N steps (0 = never; "
                            "for watching progress only, the last step is shipped)")  # fmt: skip
    eval_scenes: int = f(20, "held-out scenes scored during training")
    max_minutes: float = f(
        0.0,
        "compute budget in CPU minutes of the training process (a paused or busy machine does "
        "not spend it): the run and its lr schedule end at whichever of steps and max_minutes "
        "comes first; 0 = steps only",
    )
    restart_minutes: list[float] = f(
        [],
        "warm restarts (none by default): until the first this many CPU minutes the schedule "
        "runs as if the budget ended there, then as if it ended at the next, and after the last "
        "it follows max_minutes' own (a run resumed with a larger budget trains so)",
    )
    evaluate: bool = f(True, "score every held-out scene at the end (out/metrics.json)")

    def sam_config(self) -> Any:
        from agentkit.tools.segment import CompactSamConfig

        names = {f.name for f in dataclasses.fields(CompactSamConfig)}
        return CompactSamConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


def _log(msg: str) -> None:
    print(f"[segmenter {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ data
@dataclass
class Sample:
    """One scene in the model's input frame: the resized image (h x w x 3 uint8, h, w <= img_size),
    the objects' masks (n x h x w bool) and boxes (n x 4, XYXY input-frame pixels)."""

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray


def load_samples(scene_dir: str | Path, img_size: int, limit: int = 0) -> list[Sample]:
    """The scenes of ``scene_dir`` resized as ``SamPredictor.set_image`` resizes them; masks are
    area-resized and thresholded at 0.5; objects hidden entirely are left out."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from pycocotools import mask as mask_utils
    from segment_anything.utils.transforms import ResizeLongestSide

    from agentkit.mllm.worlds.coco import load_scenes

    root = Path(scene_dir)
    scenes = load_scenes(root)
    scenes = scenes[:limit] if limit > 0 else scenes
    resize = ResizeLongestSide(img_size)
    out = []
    for sc in scenes:
        with Image.open(root / sc["image_filename"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        image = resize.apply_image(rgb)
        h, w = image.shape[:2]
        masks, boxes = [], []
        for o in sc["objects"]:
            rle = {"size": o["mask"]["size"], "counts": o["mask"]["counts"].encode("ascii")}
            m = torch.from_numpy(mask_utils.decode(rle).astype(np.float32))
            small = F.interpolate(m[None, None], size=(h, w), mode="area")[0, 0] >= 0.5
            if not small.any():
                continue
            masks.append(small.numpy())
            boxes.append(resize.apply_boxes(np.asarray([o["bbox"]], np.float64), rgb.shape[:2])[0])
        if masks:
            out.append(Sample(image, np.stack(masks), np.asarray(boxes, np.float32)))
    if not out:
        raise ConfigError(f"no objects with visible masks in the scenes of {str(root)!r}")
    return out


# --------------------------------------------------------------------------------------- prompts
@dataclass
class Prompt:
    """One object's prompt in the input frame: box XYXY or None, points (k x 2, x/y) or None,
    labels (k,) 1 = object / 0 = background, and whether it asks for three masks."""

    obj: int
    box: np.ndarray | None
    points: np.ndarray | None
    labels: np.ndarray | None

    @property
    def multimask(self) -> bool:
        return self.box is None and self.points is not None and len(self.points) == 1

    def group(self) -> tuple[bool, int]:
        return self.box is not None, 0 if self.points is None else len(self.points)


def _pick(rng: np.random.Generator, region: np.ndarray) -> np.ndarray | None:
    """A pixel (x, y) drawn uniformly from a boolean h x w region, or None if it is empty."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return None
    i = rng.integers(len(xs))
    return np.asarray([xs[i], ys[i]], np.float32)


def _jitter_box(rng: np.random.Generator, box: np.ndarray, cfg: Config, w: int, h: int) -> Any:
    side = np.asarray([box[2] - box[0], box[3] - box[1]] * 2, np.float32)
    noise = np.clip(rng.normal(0, 1, 4) * cfg.box_jitter * side, -cfg.box_jitter_max,
                    cfg.box_jitter_max)  # fmt: skip
    b = np.clip(box + noise, 0, [w, h, w, h]).astype(np.float32)
    if b[2] - b[0] < 1 or b[3] - b[1] < 1:
        return box.copy()
    return b


def _points(rng: np.random.Generator, mask: np.ndarray, box: np.ndarray, n: int,
            first_positive: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``n`` points: the first positive (if asked), the others positive or negative at even odds;
    negatives come from the box grown by a quarter of its side, outside the mask."""
    h, w = mask.shape
    x0, y0, x1, y1 = box
    gx, gy = 0.25 * (x1 - x0) + 2, 0.25 * (y1 - y0) + 2
    around = np.zeros_like(mask)
    around[max(0, int(y0 - gy)) : min(h, int(math.ceil(y1 + gy))),
           max(0, int(x0 - gx)) : min(w, int(math.ceil(x1 + gx)))] = True  # fmt: skip
    around &= ~mask
    pts, labels = [], []
    for k in range(n):
        positive = (k == 0 and first_positive) or rng.random() < 0.5
        p = _pick(rng, mask if positive else around)
        if p is None:  # nothing around the object: an object point instead
            positive, p = True, _pick(rng, mask)
        assert p is not None  # load_samples keeps only objects with visible pixels
        pts.append(p)
        labels.append(int(positive))
    return np.stack(pts), np.asarray(labels, np.int64)


def sample_prompts(rng: np.random.Generator, s: Sample, cfg: Config) -> list[Prompt]:
    """One prompt for each of (at most ``max_objects``) objects of ``s``, kinds by ``prompt_mix``."""
    n = len(s.masks)
    objs = rng.permutation(n)[: cfg.max_objects] if n > cfg.max_objects else np.arange(n)
    h, w = s.masks.shape[1:]
    odds = np.asarray(cfg.prompt_mix, np.float64) / sum(cfg.prompt_mix)
    out = []
    for j in objs:
        kind = PROMPT_KINDS[rng.choice(len(PROMPT_KINDS), p=odds)]
        mask, box = s.masks[j], s.boxes[j]
        if kind == "box":
            out.append(Prompt(int(j), _jitter_box(rng, box, cfg, w, h), None, None))
        elif kind == "point":
            out.append(Prompt(int(j), None, *_points(rng, mask, box, 1, True)))
        elif kind == "points":
            out.append(
                Prompt(int(j), None, *_points(rng, mask, box, int(rng.integers(2, 4)), True))
            )
        else:
            pts = _points(rng, mask, box, int(rng.integers(1, 4)), False)
            out.append(Prompt(int(j), _jitter_box(rng, box, cfg, w, h), *pts))
    return out


def augment(rng: np.random.Generator, s: Sample, cfg: Config) -> Sample:
    """A flipped and/or re-lit copy of ``s`` (boxes follow the flip; exclusive right edges)."""
    image, masks, boxes = s.image, s.masks, s.boxes
    if cfg.hflip and rng.random() < 0.5:
        w = image.shape[1]
        image, masks = image[:, ::-1], masks[:, :, ::-1]
        boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        gain = rng.uniform(1 - j, 1 + j) * np.clip(rng.normal(1, j / 5, 3), 1 - j, 1 + j)
        noisy = image.astype(np.float32) * gain + rng.normal(0, 2.0, image.shape)
        image = np.clip(noisy, 0, 255).round().astype(np.uint8)
    return Sample(np.ascontiguousarray(image), np.ascontiguousarray(masks), boxes)


# ------------------------------------------------------------------------------------------ loss
def mask_losses(logits: Any, target: Any, focal_weight: float) -> tuple[Any, Any]:
    """Per-mask focal x weight + dice, and the IoU of the binarised masks (no gradient).

    ``logits`` N x M x h x w (M masks per prompt), ``target`` N x h x w in {0, 1}. Returns two
    N x M tensors."""
    import torch
    from torchvision.ops import sigmoid_focal_loss

    t = target[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, t, alpha=0.25, gamma=2.0, reduction="none").mean((-2, -1))
    p = logits.sigmoid()
    dice = 1 - (2 * (p * t).sum((-2, -1)) + 1) / (p.sum((-2, -1)) + t.sum((-2, -1)) + 1)
    with torch.no_grad():
        hard = logits > 0
        inter = (hard & (t > 0.5)).sum((-2, -1))
        union = (hard | (t > 0.5)).sum((-2, -1))
        iou = inter / union.clamp(min=1)
    return focal_weight * focal + dice, iou


def _arr(a: np.ndarray | None) -> np.ndarray:
    assert a is not None  # prompts are grouped by which parts they have
    return a


def step_loss(sam: Any, batch: list[Sample], prompts: list[list[Prompt]],
              cfg: Config) -> tuple[Any, dict[str, float]]:  # fmt: skip
    """The loss of one batch through the encoder, prompt encoder and decoder (with gradient)."""
    import torch
    import torch.nn.functional as F

    size = cfg.img_size
    x = torch.stack([
        sam.preprocess(torch.from_numpy(s.image).permute(2, 0, 1).float()[None])[0] for s in batch
    ])  # fmt: skip
    emb = sam.image_encoder(x)
    pe = sam.prompt_encoder.get_dense_pe()
    mask_terms, iou_terms, ious = [], [], []
    for b, (s, ps) in enumerate(zip(batch, prompts, strict=True)):
        h, w = s.masks.shape[1:]
        groups: dict[tuple[bool, int], list[Prompt]] = {}
        for p in ps:
            groups.setdefault(p.group(), []).append(p)
        for (has_box, n_pts), group in groups.items():
            boxes = torch.from_numpy(np.stack([_arr(p.box) for p in group])) if has_box else None
            points = None
            if n_pts:
                points = (torch.from_numpy(np.stack([_arr(p.points) for p in group])),
                          torch.from_numpy(np.stack([_arr(p.labels) for p in group])))  # fmt: skip
            multi = group[0].multimask
            sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
            low, iou_pred = sam.mask_decoder(
                image_embeddings=emb[b : b + 1], image_pe=pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=multi,
            )  # fmt: skip
            up = F.interpolate(low, (size, size), mode="bilinear", align_corners=False)
            up = up[..., :h, :w]
            target = torch.from_numpy(s.masks[[p.obj for p in group]]).float()
            per_mask, iou = mask_losses(up, target, cfg.focal_weight)
            best = per_mask.argmin(1)  # one mask, or the best of three for a single point
            rows = torch.arange(len(group))
            mask_terms.append(per_mask[rows, best])
            iou_terms.append(((iou_pred - iou) ** 2).mean(1))
            ious.append(iou[rows, best])
    mask_loss = torch.cat(mask_terms).mean()
    iou_loss = torch.cat(iou_terms).mean()
    loss = mask_loss + cfg.iou_weight * iou_loss
    stats = {"loss": float(loss.detach()), "mask": float(mask_loss.detach()),
             "iou_mse": float(iou_loss.detach()), "train_iou": float(torch.cat(ious).mean())}  # fmt: skip
    return loss, stats


# -------------------------------------------------------------------------------------- training
def _save_last(path: Path, sam: Any, opt: Any, step: int, seconds: float,
               sam_cfg: dict[str, Any]) -> None:  # fmt: skip
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": sam.state_dict(), "opt": opt.state_dict(), "step": step,
                "seconds": seconds, "config": sam_cfg}, tmp)  # fmt: skip
    tmp.replace(path)


def _check(cfg: Config) -> None:
    if (
        len(cfg.prompt_mix) != len(PROMPT_KINDS)
        or min(cfg.prompt_mix) < 0
        or not sum(cfg.prompt_mix)
    ):
        raise ConfigError(
            f"prompt_mix={cfg.prompt_mix!r}: expected {len(PROMPT_KINDS)} non-negative odds for "
            f"{', '.join(PROMPT_KINDS)}"
        )
    if cfg.steps < 1 or cfg.batch < 1 or cfg.max_objects < 1:
        raise ConfigError(f"steps={cfg.steps}, batch={cfg.batch}, max_objects={cfg.max_objects}: "
                          "expected each >= 1")  # fmt: skip
    try:
        cfg.sam_config().check()
    except ValueError as e:
        raise ConfigError(f"model options: {e}") from e


def train(cfg: Config, out: Path) -> Path:
    """Train (resuming from ``out/last.pt``), write ``out/scenes-sam.pt`` (fp16) and, with
    ``evaluate``, ``out/metrics.json``; return the checkpoint's path.

    The run ends after ``steps`` steps or ``max_minutes`` of the process's CPU time, whichever
    comes first (the learning rate follows whichever is further along). CPU time, not wall time:
    with ``threads=1`` it is the training's own compute, so a machine shared with other jobs (or a
    paused process) gives the same model later rather than a worse one on time. A rerun after the
    end trains no more.
    """
    import torch

    from agentkit.tools.segment import build_compact_sam, save_compact_sam

    _check(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    sam_cfg = cfg.sam_config()
    sam = build_compact_sam(sam_cfg)
    n_params = sum(p.numel() for p in sam.parameters())
    opt = torch.optim.AdamW(sam.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, seconds, last = 0, 0.0, out / "last.pt"
    if last.exists():
        ck = torch.load(last, weights_only=True)
        if ck["config"] != dataclasses.asdict(sam_cfg):
            raise ConfigError(
                f"{last} holds a model of config {ck['config']}, not this recipe's; use another --out"
            )
        sam.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, seconds = int(ck["step"]), float(ck["seconds"])
        _log(f"resumed from {last} at step {step} ({seconds / 60:.1f} CPU min trained)")
    dest = out / "scenes-sam.pt"
    t0 = time.perf_counter()
    data = load_samples(cfg.train_dir, cfg.img_size, cfg.train_scenes)
    n_obj = sum(len(s.masks) for s in data)
    _log(f"{len(data)} training scenes, {n_obj} objects at {cfg.img_size} px "
         f"[{time.perf_counter() - t0:.1f} s]; model {n_params / 1e6:.2f} M parameters; "
         f"{cfg.steps} steps or {cfg.max_minutes or 'no'} CPU minutes")  # fmt: skip
    # a fresh, reproducible stream per (seed, step): a resumed run draws what a straight one would
    rng = np.random.default_rng([cfg.seed, step])
    log = (out / "log.jsonl").open("a")
    cpu0, wall0, step0, prior = time.process_time(), time.monotonic(), step, seconds
    sam.train()
    while progress(step, seconds, cfg) < 1:
        idx = rng.choice(len(data), size=min(cfg.batch, len(data)), replace=False)
        batch = [augment(rng, data[i], cfg) for i in idx]
        prompts = [sample_prompts(rng, s, cfg) for s in batch]
        lr = lr_at(step, scheduled(step, seconds, cfg), cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, stats = step_loss(sam, batch, prompts, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sam.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        seconds = prior + time.process_time() - cpu0
        done = progress(step, seconds, cfg)
        rec = {"step": step, **{k: round(v, 5) for k, v in stats.items()},
               "lr": round(lr, 7), "cpu_s": round(seconds, 1),
               "wall_s": round(time.monotonic() - wall0, 1)}  # fmt: skip
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if step % cfg.log_every == 0 or done >= 1:
            per = (seconds - prior) / (step - step0)
            left = (1 - done) * seconds / max(done, 1e-9)  # CPU seconds
            _log(f"step {step} ({100 * done:.0f}%) loss {stats['loss']:.4f} (mask "
                 f"{stats['mask']:.4f}, iou mse {stats['iou_mse']:.4f}) train IoU "
                 f"{stats['train_iou']:.3f} lr {lr:.2e} {per:.2f} CPU s/step, ~{left / 60:.0f} CPU min left")  # fmt: skip
        if step % cfg.save_every == 0 or done >= 1:
            _save_last(last, sam, opt, step, seconds, dataclasses.asdict(sam_cfg))
            save_compact_sam(sam, sam_cfg, dest, everything=cfg.everything)
        if cfg.eval_every and step % cfg.eval_every == 0 and done < 1:
            _watch(sam, cfg, step)
    log.close()
    sam.eval()
    save_compact_sam(sam, sam_cfg, dest, everything=cfg.everything)
    if cfg.evaluate:
        from agentkit.mllm.eval.perception import segment_metrics

        metrics = segment_metrics(cfg.heldout_dir, weights=str(dest))
        metrics.update(steps=step, train_cpu_minutes=round(seconds / 60, 1), parameters=n_params,
                       checkpoint_bytes=dest.stat().st_size, config=dataclasses.asdict(cfg))  # fmt: skip
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        _log("held-out: " + json.dumps({k: v for k, v in metrics.items() if k != "config"}))
    _log(f"wrote {dest} ({dest.stat().st_size / 1e6:.2f} MB). Install with:\n"
         f"  cp {dest} agentkit/weights/scenes-sam.pt")  # fmt: skip
    return dest


def _watch(sam: Any, cfg: Config, step: int) -> None:
    """Score the in-training model on a few held-out scenes (progress only, not model choice)."""
    from agentkit.mllm.eval.perception import segment_scores
    from agentkit.mllm.worlds.coco import load_scenes
    from agentkit.tools.segment import Segmenter

    sam.eval()
    scenes = load_scenes(cfg.heldout_dir)[: cfg.eval_scenes]
    m = segment_scores(Segmenter(sam), scenes, Path(cfg.heldout_dir))
    _log(f"step {step}: held-out ({len(scenes)} scenes) box mIoU {m['box_mIoU']:.3f}, "
         f"point mIoU {m['point_mIoU']:.3f}")  # fmt: skip
    sam.train()
