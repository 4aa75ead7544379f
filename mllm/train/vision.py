"""The ``mllm-vision`` recipe: a vision tower that sees the scene world, grafted into the core.

The core's CLIP tower was random and frozen (nothing pretrained can be downloaded here), so the
model alone could not tell a red cube from a blue one: POPE with the model alone sat at chance
and DPO on grounded-vs-hallucinated answers had nothing to work with (docs/mllm.md). This stage
pre-trains the tower on the rendered world's own labels before it is frozen, as a supervised
stand-in for CLIP's pre-training:

* **dense**: every patch token (the tokens the LLaVA projector reads) is classified into the
  colour, shape, material and size of the object covering most of its cell (at least ``cover``
  of it), or background; the targets come from the scene JSON's instance masks;
* **global**: the mean of the patch tokens predicts which of the 24 colour-shape pairs are in
  the image (multi-label), the question POPE asks.

The tower is a ``CLIPVisionModel`` of transformers (the class the LLaVA config names), sized by
this recipe: by default 192 px images cut into 24 px patches, so an image is still 64 tokens
(the LM's sequences keep their length) while an object is 10-30 px instead of 4-10 px. The
grafted model (``out/model``) is ``base`` with this tower, the processor resized to match and
``vision_feature_layer = -1`` (the layer the heads were trained on); its projector and LM are
the base's, to be retrained on grounded data by the next stage (``mllm-ground``).

Trains with a plain torch loop on CPU time budget (:mod:`agentkit.mllm.train._schedule`),
resumes from ``out/last.pt``, and scores the held-out scenes at the end (``out/metrics.json``).

Example::

    agentkit data gen scenes --out data/scenes-vision --n 800 --seed 300000 --width 288 --height 192 --samples 16
    agentkit train mllm-vision
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentkit.errors import ConfigError
from agentkit.mllm.train._schedule import lr_at, progress, scheduled
from agentkit.mllm.train._vlm import f
from agentkit.mllm.worlds.scenes import COLORS, MATERIALS, SHAPES, SIZES

#: attribute -> its values; class 0 of each dense head is "background" (no object there)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "material": MATERIALS,
    "size": tuple(SIZES),
}
PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)


@dataclass
class Config:
    description: str = f(
        "Vision tower pre-trained on the scene world, grafted into the core", "one line"
    )
    base: str = f("agentkit-mllm", "vision-language folder (LLaVA) whose tower is replaced")
    scenes_dirs: list[str] = f(
        ["data/scenes-vision", "data/scenes-train"],
        "rendered training scenes (scene_*.json + image)",
    )
    heldout_dir: str = f("data/scenes-heldout", "held-out scenes scored at the end (never trained)")
    max_heldout: int = f(0, "score at most this many held-out scenes (0 = all)")
    image_size: int = f(192, "tower input side in pixels (images are resized to a square)")
    patch: int = f(24, "patch side in pixels; image tokens = (image_size / patch)^2")
    vision_dim: int = f(128, "tower width (the base's projector is rebuilt if it differs)")
    vision_layers: int = f(4, "tower layers")
    vision_heads: int = f(4, "tower attention heads")
    cover: float = f(0.1, "share of a patch's cell an object must cover to be its label")
    presence_weight: float = f(1.0, "weight of the global colour-shape presence loss")
    steps: int = f(3000, "optimizer steps")
    batch: int = f(32, "images per step")
    lr: float = f(1e-3, "peak learning rate (AdamW; linear warm-up, cosine to min_lr_ratio)")
    min_lr_ratio: float = f(0.05, "final learning rate as a share of lr")
    warmup: int = f(100, "warm-up steps")
    weight_decay: float = f(0.05, "AdamW weight decay")
    hflip: bool = f(True, "random horizontal flips (labels flipped with the image)")
    exposure_jitter: float = f(0.15, "brightness gain 1 +- this (no hue change: colour is a label)")
    max_minutes: float = f(0.0, "compute budget in CPU minutes (0 = steps only)")
    restart_minutes: list[float] = f([], "warm restarts of the schedule (see _schedule)")
    threads: int = f(2, "torch CPU threads")
    log_every: int = f(50, "print the losses every N steps")
    save_every: int = f(200, "steps between resumable checkpoints (out/last.pt)")
    fp16: bool = f(True, "save the grafted model in fp16")
    seed: int = f(0, "seed of the init, the batches and the augmentation")


def _log(msg: str) -> None:
    print(f"[mllm-vision {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ data
def _edges(n: int, cells: int) -> np.ndarray:
    return np.linspace(0, n, cells + 1).round().astype(int)


def cell_labels(scene: dict[str, Any], grid: int, cover: float) -> np.ndarray:
    """(len(ATTRIBUTES), grid, grid) int64: per patch cell, each attribute's class (1 + value
    index) of the object covering the largest share of the cell, 0 where none covers ``cover``.
    Cells split the full image evenly, as the processor's square resize does."""
    from agentkit.tools._vision import rle_to_mask

    h, w = int(scene["height"]), int(scene["width"])
    ys, xs = _edges(h, grid), _edges(w, grid)
    area = np.outer(np.diff(ys), np.diff(xs)).astype(np.float64)
    best = np.zeros((grid, grid))
    owner = np.full((grid, grid), -1)
    objects = scene.get("objects") or []
    for k, o in enumerate(objects):
        m = rle_to_mask(o["mask"]).astype(np.float64)
        share = np.add.reduceat(np.add.reduceat(m, ys[:-1], axis=0), xs[:-1], axis=1) / area
        take = (share >= cover) & (share > best)
        best[take], owner[take] = share[take], k
    out = np.zeros((len(ATTRIBUTES), grid, grid), dtype=np.int64)
    for a, (attr, values) in enumerate(ATTRIBUTES.items()):
        for k, o in enumerate(objects):
            out[a][owner == k] = 1 + values.index(o[attr])
    return out


def presence(scene: dict[str, Any]) -> np.ndarray:
    """(24,) float32: 1 for each colour-shape pair in the scene."""
    have = {(o["color"], o["shape"]) for o in scene.get("objects") or []}
    return np.array([p in have for p in PAIRS], dtype=np.float32)


@dataclass
class Data:
    pixels: Any  # (n, 3, s, s) float16, normalised as the processor normalises
    cells: Any  # (n, attributes, grid, grid) int64
    present: Any  # (n, 24) float32


def load_data(dirs: list[str], processor: Any, grid: int, cover: float, limit: int = 0) -> Data:
    """Every scene (JSON with objects and its image) under ``dirs``, through ``processor``."""
    import torch
    from PIL import Image

    pix, cells, pres = [], [], []
    for d in dirs:
        folder = Path(d)
        if not folder.is_dir():
            raise ConfigError(
                f"no scenes at {folder}; render some with `agentkit data gen scenes --out {folder}`"
            )
        for p in sorted(folder.glob("scene_*.json")):
            scene = json.loads(p.read_text())
            image = folder / str(scene.get("image_filename", p.with_suffix(".png").name))
            if not scene.get("objects") or not image.is_file():
                continue
            with Image.open(image) as im:
                pv = processor(images=im.convert("RGB"), return_tensors="pt")["pixel_values"]
            pix.append(pv[0].to(torch.float16))
            cells.append(torch.from_numpy(cell_labels(scene, grid, cover)))
            pres.append(torch.from_numpy(presence(scene)))
            if limit and len(pix) >= limit:
                break
    if not pix:
        raise ConfigError(f"no scene JSON with objects and its image under {dirs}")
    return Data(torch.stack(pix), torch.stack(cells), torch.stack(pres))


# ----------------------------------------------------------------------------------------- model
def tower_config(cfg: Config) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=cfg.vision_dim,
        intermediate_size=4 * cfg.vision_dim,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch,
        projection_dim=cfg.vision_dim,
    )


def build(cfg: Config) -> Any:
    """The tower and its training heads (``nn.ModuleDict``: ``tower``, ``dense``, ``presence``)."""
    import torch
    from transformers import CLIPVisionModel

    torch.manual_seed(cfg.seed)
    dim = cfg.vision_dim
    dense = torch.nn.ModuleDict(
        {a: torch.nn.Linear(dim, 1 + len(v)) for a, v in ATTRIBUTES.items()}
    )
    return torch.nn.ModuleDict(
        {
            "tower": CLIPVisionModel(tower_config(cfg)),
            "norm": torch.nn.LayerNorm(dim),
            "dense": dense,
            "presence": torch.nn.Linear(dim, len(PAIRS)),
        }
    )


def features(net: Any, pixels: Any) -> Any:
    """Patch tokens of the tower's last layer (what the grafted LLaVA reads), layer-normed for the
    heads: (batch, tokens, dim)."""
    out = net["tower"](pixel_values=pixels.float(), output_hidden_states=True)
    return net["norm"](out.hidden_states[-1][:, 1:])


def losses(
    net: Any, pixels: Any, cells: Any, present: Any, presence_weight: float
) -> dict[str, Any]:
    import torch.nn.functional as F

    x = features(net, pixels)
    out: dict[str, Any] = {}
    for a, attr in enumerate(ATTRIBUTES):
        logits = net["dense"][attr](x)  # (b, tokens, classes)
        out[attr] = F.cross_entropy(logits.flatten(0, 1), cells[:, a].flatten())
    out["presence"] = F.binary_cross_entropy_with_logits(net["presence"](x.mean(1)), present)
    out["loss"] = sum(out[a] for a in ATTRIBUTES) + presence_weight * out["presence"]
    return out


def augment(rng: np.random.Generator, pixels: Any, cells: Any, cfg: Config) -> tuple[Any, Any]:
    """Horizontal flips (labels with them) and an exposure gain (pixels are normalised, so the
    gain scales them around each channel's mean: close enough for a +-15 % jitter)."""
    import torch

    pixels, cells = pixels.float(), cells.clone()
    if cfg.hflip:
        flip = torch.from_numpy(rng.random(len(pixels)) < 0.5)
        pixels[flip] = pixels[flip].flip(-1)
        cells[flip] = cells[flip].flip(-1)
    if cfg.exposure_jitter > 0:
        j = cfg.exposure_jitter
        gain = torch.from_numpy(rng.uniform(1 - j, 1 + j, len(pixels)).astype(np.float32))
        pixels = pixels * gain[:, None, None, None]
    return pixels, cells


def evaluate(net: Any, data: Data, batch: int = 64) -> dict[str, float]:
    """Held-out figures: per attribute, accuracy on the patches an object covers (and how often a
    background patch is called background); presence of the 24 pairs: accuracy, precision,
    recall, F1 at 0.5."""
    import torch

    net.eval()
    right = {a: 0 for a in ATTRIBUTES}
    objects = background = bg_right = 0
    tp = fp = fn = tn = 0
    with torch.no_grad():
        for i in range(0, len(data.pixels), batch):
            x = features(net, data.pixels[i : i + batch])
            cells = data.cells[i : i + batch].flatten(2)  # (b, attributes, tokens)
            on = cells[:, 0] > 0
            objects += int(on.sum())
            for a, attr in enumerate(ATTRIBUTES):
                pred = net["dense"][attr](x).argmax(-1)
                right[attr] += int(((pred == cells[:, a]) & on).sum())
                if a == 0:
                    background += int((~on).sum())
                    bg_right += int(((pred == 0) & ~on).sum())
            p = torch.sigmoid(net["presence"](x.mean(1))) >= 0.5
            t = data.present[i : i + batch] > 0.5
            tp += int((p & t).sum())
            fp += int((p & ~t).sum())
            fn += int((~p & t).sum())
            tn += int((~p & ~t).sum())
    net.train()
    prec = tp / max(1, tp + fp)
    rec = tp / max(1, tp + fn)
    out = {f"{a}_acc": round(right[a] / max(1, objects), 4) for a in ATTRIBUTES}
    out["background_acc"] = round(bg_right / max(1, background), 4)
    out["presence_acc"] = round((tp + tn) / max(1, tp + tn + fp + fn), 4)
    out["presence_precision"] = round(prec, 4)
    out["presence_recall"] = round(rec, 4)
    out["presence_f1"] = round(2 * prec * rec / max(1e-9, prec + rec), 4)
    return out


# ----------------------------------------------------------------------------------------- graft
def graft(net: Any, cfg: Config, folder: Path) -> Path:
    """Save ``base`` with the trained tower to ``folder``: config, processor and the sizes file
    follow the new tower; the projector is rebuilt when the tower's width differs."""
    import torch
    from transformers import CLIPVisionModel

    from agentkit.mllm.model import CONFIG_FILE, ModelConfig
    from agentkit.mllm.train import _vlm

    model, processor = _vlm.load_base(cfg.base)
    inner = model.model
    if not hasattr(inner, "vision_tower") or not hasattr(inner, "multi_modal_projector"):
        raise ConfigError(f"{cfg.base} is not a LLaVA folder: mllm-vision grafts LLaVA towers only")
    vcfg = tower_config(cfg)
    tower = CLIPVisionModel(vcfg)
    tower.load_state_dict(net["tower"].state_dict())
    old_dim = model.config.vision_config.hidden_size
    inner.vision_tower = tower
    model.config.vision_config = vcfg
    model.config.vision_feature_layer = -1
    model.config.image_seq_length = (cfg.image_size // cfg.patch) ** 2
    if old_dim != cfg.vision_dim:
        from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

        torch.manual_seed(cfg.seed)
        inner.multi_modal_projector = LlavaMultiModalProjector(model.config)
    ip = processor.image_processor
    ip.size = {"height": cfg.image_size, "width": cfg.image_size}
    ip.crop_size = {"height": cfg.image_size, "width": cfg.image_size}
    processor.patch_size = cfg.patch
    _vlm.save_folder(model, processor, folder, base=cfg.base, fp16=cfg.fp16)
    try:
        sizes = ModelConfig.load(folder)
    except Exception:  # a base not built by build_tiny_llava has no sizes file: nothing to update
        return folder
    sizes.image_size, sizes.patch = cfg.image_size, cfg.patch
    sizes.vision_dim, sizes.vision_layers = cfg.vision_dim, cfg.vision_layers
    sizes.vision_heads = cfg.vision_heads
    sizes.save(folder)
    assert (folder / CONFIG_FILE).is_file()
    return folder


# ----------------------------------------------------------------------------------------- train
def _check(cfg: Config) -> None:
    if cfg.image_size % cfg.patch:
        raise ConfigError(f"image_size {cfg.image_size} must be a multiple of patch {cfg.patch}")
    if cfg.vision_dim % cfg.vision_heads:
        raise ConfigError(
            f"vision_dim {cfg.vision_dim} must be divisible by vision_heads {cfg.vision_heads}"
        )
    if not 0 < cfg.cover <= 1:
        raise ConfigError(f"cover={cfg.cover}: expected a share in (0, 1]")
    if cfg.steps < 1 or cfg.batch < 1:
        raise ConfigError(f"steps={cfg.steps}, batch={cfg.batch}: expected each >= 1")


def _processor(cfg: Config) -> Any:
    from transformers import CLIPImageProcessor

    side = {"height": cfg.image_size, "width": cfg.image_size}
    # the core's processor: a square resize, no crop (the agent asks about every part of the image)
    return CLIPImageProcessor(size=side, crop_size=side, do_center_crop=False)


def train(cfg: Config, out: Path) -> Path:
    """Pre-train the tower (resuming from ``out/last.pt``), score it on the held-out scenes
    (``out/metrics.json``) and write the grafted model to ``out/model``; returns that folder."""
    import torch

    _check(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    grid = cfg.image_size // cfg.patch
    processor = _processor(cfg)
    t0 = time.perf_counter()
    data = load_data(cfg.scenes_dirs, processor, grid, cover=cfg.cover)
    covered = float((data.cells[:, 0] > 0).float().mean())
    net = build(cfg)
    n_params = sum(p.numel() for p in net["tower"].parameters())
    _log(f"{len(data.pixels)} training scenes at {cfg.image_size} px, {grid}x{grid} patches "
         f"({100 * covered:.0f}% on an object) [{time.perf_counter() - t0:.0f} s]; tower "
         f"{n_params / 1e6:.2f} M parameters; {cfg.steps} steps or {cfg.max_minutes or 'no'} "
         "CPU minutes")  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, seconds, last = 0, 0.0, out / "last.pt"
    sizes = {k: getattr(cfg, k) for k in ("image_size", "patch", "vision_dim", "vision_layers",
                                          "vision_heads")}  # fmt: skip
    if last.exists():
        ck = torch.load(last, weights_only=True)
        if ck["sizes"] != sizes:
            raise ConfigError(
                f"{last} holds a tower of sizes {ck['sizes']}, not {sizes}; use another --out"
            )
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, seconds = int(ck["step"]), float(ck["seconds"])
        _log(f"resumed from {last} at step {step} ({seconds / 60:.1f} CPU min trained)")
    rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws what a straight one would
    cpu0, prior, step0 = time.process_time(), seconds, step
    net.train()
    while progress(step, seconds, cfg) < 1:
        idx = torch.from_numpy(
            rng.choice(len(data.pixels), min(cfg.batch, len(data.pixels)), replace=False)
        )
        pixels, cells = augment(rng, data.pixels[idx], data.cells[idx], cfg)
        lr = lr_at(step, scheduled(step, seconds, cfg), cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        parts = losses(net, pixels, cells, data.present[idx], cfg.presence_weight)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        seconds = prior + time.process_time() - cpu0
        done = progress(step, seconds, cfg)
        if step % cfg.log_every == 0 or done >= 1:
            per = (seconds - prior) / (step - step0)
            _log(f"step {step} ({100 * done:.0f}%) " + " ".join(
                f"{k} {float(v.detach()):.3f}" for k, v in parts.items()) + f" lr {lr:.2e} {per:.2f} CPU s/step")  # fmt: skip
        if step % cfg.save_every == 0 or done >= 1:
            tmp = last.with_suffix(".tmp")
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step,
                        "seconds": seconds, "sizes": sizes}, tmp)  # fmt: skip
            tmp.replace(last)
    metrics: dict[str, Any] = {"steps": step, "train_cpu_minutes": round(seconds / 60, 1),
                               "tower_parameters": n_params, "train_scenes": len(data.pixels)}  # fmt: skip
    if cfg.heldout_dir and Path(cfg.heldout_dir).is_dir():
        held = load_data([cfg.heldout_dir], processor, grid, cfg.cover, cfg.max_heldout)
        metrics["heldout"] = evaluate(net, held)
        metrics["heldout_scenes"] = len(held.pixels)
        _log("held-out: " + json.dumps(metrics["heldout"]))
    metrics["config"] = dataclasses.asdict(cfg)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    folder = graft(net, cfg, out / "model")
    _log(f"grafted tower into {cfg.base} -> {folder}")
    return folder
