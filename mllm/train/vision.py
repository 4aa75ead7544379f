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
  the image (multi-label), the question POPE asks; with ``presence_tokens`` (the recipe's) every
  token predicts them, so each token the LM reads carries the image's inventory and the LM
  need only look a pair up, which it learns (``benchmarks/binding.py``), rather than search the
  patches for one, which it does not.

The tower is a ``CLIPVisionModel`` of transformers (the class the LLaVA config names), sized by
this recipe: by default 192 px images cut into 24 px patches, so an image is still 64 tokens
(the LM's sequences keep their length) while an object is 10-50 px instead of 4-15 px (a Swin
tower is an option: ``tower = "swin"``, read with strategy ``full``). The
grafted model (``out/model``) is ``base`` with this tower, the processor resized to match and
``vision_feature_layer = -1`` (the layer the heads were trained on); its projector and LM are
the base's, to be retrained on grounded data by the next stage (``mllm-ground``).

Trains with a plain torch loop on CPU time budget (:mod:`agentkit.mllm.train._schedule`),
resumes from ``out/last.pt``, and scores the held-out scenes at the end (``out/metrics.json``).

Example::

    agentkit data gen scenes --out data/scenes-vision --n 367 --seed 300000 --width 288 --height 192 --samples 16
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
from agentkit.mllm.train._fields import f
from agentkit.mllm.train._schedule import lr_at, progress, scheduled
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
    tower: str = f(
        "clip",
        "clip (a ViT over (image_size / patch)^2 tokens, as LLaVA's) or swin (windowed attention "
        "over small patches merged per stage; the LLaVA reads its last stage)",
    )
    image_size: int = f(192, "tower input side in pixels (images are resized to a square)")
    patch: int = f(24, "patch side in pixels (swin: merged 2x2 per stage after the first)")
    vision_dim: int = f(128, "width (swin: of the first stage, doubled per stage)")
    vision_layers: int = f(4, "clip: layers")
    vision_heads: int = f(4, "clip: attention heads")
    depths: list[int] = f([1, 1, 2, 1], "swin: blocks per stage")
    stage_heads: list[int] = f([1, 2, 4, 8], "swin: attention heads per stage")
    window: int = f(8, "swin: attention window side in tokens")
    cover: float = f(0.1, "share of a patch's cell an object must cover to be its label")
    presence_weight: float = f(1.0, "weight of the global colour-shape presence loss")
    presence_tokens: bool = f(
        False,
        "every token predicts the image's colour-shape pairs (the inventory broadcast to each "
        "token the LM reads), not only their mean: the LM then looks a pair up instead of "
        "searching the patches for it",
    )
    steps: int = f(3000, "optimizer steps")
    batch: int = f(32, "images per step")
    lr: float = f(1e-3, "peak learning rate (AdamW; linear warm-up, cosine to min_lr_ratio)")
    min_lr_ratio: float = f(0.05, "final learning rate as a share of lr")
    warmup: int = f(100, "warm-up steps")
    weight_decay: float = f(0.05, "AdamW weight decay")
    hflip: bool = f(True, "random horizontal flips (labels flipped with the image)")
    zoom: float = f(1.25, "random crops zoomed up to this factor (1 = none)")
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
def id_map(scene: dict[str, Any], side: int) -> np.ndarray:
    """(side, side) uint8: 1 + the index of the object seen at each pixel of the image resized to
    a square (as the processor resizes it), 0 for background."""
    from PIL import Image

    from agentkit.tools._vision import rle_to_mask

    h, w = int(scene["height"]), int(scene["width"])
    ids = np.zeros((h, w), dtype=np.uint8)
    for k, o in enumerate(scene.get("objects") or []):
        ids[rle_to_mask(o["mask"])] = k + 1
    return np.array(Image.fromarray(ids).resize((side, side), Image.Resampling.NEAREST))


def attribute_table(scene: dict[str, Any], slots: int) -> np.ndarray:
    """(slots, len(ATTRIBUTES)) int64: row k + 1 holds object k's class per attribute (1 + value
    index); row 0, background, is all 0."""
    out = np.zeros((slots, len(ATTRIBUTES)), dtype=np.int64)
    for k, o in enumerate(scene.get("objects") or []):
        out[k + 1] = [1 + values.index(o[a]) for a, values in ATTRIBUTES.items()]
    return out


def targets(ids: Any, table: Any, grid: int, cover: float, min_pixels: int = 16) -> tuple[Any, Any]:
    """The training targets of a batch of object-id maps ((b, side, side) ids, (b, slots,
    attributes) tables), both read off one per-object one-hot of the maps:

    * cells, (b, attributes, grid, grid): the classes of the object covering the largest share of
      each patch's cell (at least ``cover`` of it), 0 (background) where none does;
    * present, (b, 24) float: 1 for each colour-shape pair with an object showing at least
      ``min_pixels`` pixels of the (possibly cropped) map."""
    import torch
    import torch.nn.functional as F

    b, slots, n_attr = table.shape
    onehot = F.one_hot(ids.long(), slots).permute(0, 3, 1, 2).float()  # (b, slots, side, side)
    share = F.adaptive_avg_pool2d(onehot, grid)[:, 1:]  # (b, objects, grid, grid)
    best, owner = share.max(1)
    owner = torch.where(best >= cover, owner + 1, torch.zeros_like(owner))  # (b, grid, grid)
    picked = torch.gather(table, 1, owner.flatten(1)[..., None].expand(-1, -1, n_attr))
    cells = picked.permute(0, 2, 1).reshape(b, n_attr, grid, grid)
    visible = (onehot.sum((2, 3)) >= min_pixels) & (table[..., 0] > 0)  # slot 0 never counts
    pair = ((table[..., 0] - 1) * len(SHAPES) + table[..., 1] - 1).clamp(min=0)
    present = torch.zeros(b, len(PAIRS)).scatter_add_(1, pair, visible.float()).clamp(max=1.0)
    return cells, present


@dataclass
class Data:
    pixels: Any  # (n, 3, side, side) float16, normalised as the processor normalises
    ids: Any  # (n, side, side) uint8 object-id maps (0 background)
    table: Any  # (n, slots, attributes) int64 classes per object slot


def load_data(dirs: list[str], processor: Any, limit: int = 0) -> Data:
    """Every scene (JSON with objects and its image) under ``dirs``, through ``processor``."""
    import torch
    from PIL import Image

    side = int(processor.size["height"])
    pix, ids, scenes = [], [], []
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
            ids.append(torch.from_numpy(id_map(scene, side)))
            scenes.append(scene)
            if limit and len(pix) >= limit:
                break
    if not pix:
        raise ConfigError(f"no scene JSON with objects and its image under {dirs}")
    slots = 1 + max(len(t["objects"]) for t in scenes)
    table = torch.stack([torch.from_numpy(attribute_table(t, slots)) for t in scenes])
    return Data(torch.stack(pix), torch.stack(ids), table)


# ----------------------------------------------------------------------------------------- model
def grid_of(cfg: Config) -> int:
    """Image tokens per side: what the LM sees is grid^2 tokens."""
    side = cfg.image_size // cfg.patch
    return side // 2 ** (len(cfg.depths) - 1) if cfg.tower == "swin" else side


def tower_config(cfg: Config) -> Any:
    """The tower's transformers config (``hidden_size`` is the width of the tokens it outputs)."""
    from transformers import SwinConfig

    from agentkit.mllm.model import clip_vision_config

    if cfg.tower == "swin":
        return SwinConfig(
            image_size=cfg.image_size,
            patch_size=cfg.patch,
            embed_dim=cfg.vision_dim,
            depths=list(cfg.depths),
            num_heads=list(cfg.stage_heads),
            window_size=cfg.window,
        )
    return clip_vision_config(cfg)


def build(cfg: Config) -> Any:
    """The tower and its training heads (``nn.ModuleDict``: ``tower``, ``dense``, ``presence``)."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(cfg.seed)
    vcfg = tower_config(cfg)
    dim = vcfg.hidden_size
    dense = torch.nn.ModuleDict(
        {a: torch.nn.Linear(dim, 1 + len(v)) for a, v in ATTRIBUTES.items()}
    )
    return torch.nn.ModuleDict(
        {
            "tower": AutoModel.from_config(vcfg),
            "norm": torch.nn.LayerNorm(dim),
            "dense": dense,
            "presence": torch.nn.Linear(dim, len(PAIRS)),
        }
    )


def features(net: Any, pixels: Any) -> Any:
    """The tokens of the tower's last layer that the grafted LLaVA reads (a ViT's CLS token
    dropped, as its "default" strategy drops it), layer-normed for the heads:
    (batch, tokens, dim)."""
    tower = net["tower"]
    out = tower(pixel_values=pixels.float(), output_hidden_states=True)
    tokens = out.hidden_states[-1]
    if _has_cls(tower.config):
        tokens = tokens[:, 1:]
    return net["norm"](tokens)


def _has_cls(config: Any) -> bool:
    return config.model_type == "clip_vision_model"


def losses(net: Any, pixels: Any, cells: Any, present: Any, cfg: Config) -> dict[str, Any]:
    import torch.nn.functional as F

    x = features(net, pixels)
    out: dict[str, Any] = {}
    for a, attr in enumerate(ATTRIBUTES):
        logits = net["dense"][attr](x)  # (b, tokens, classes)
        out[attr] = F.cross_entropy(logits.flatten(0, 1), cells[:, a].flatten())
    if cfg.presence_tokens:  # each token's own reading, (b, tokens, pairs)
        logits, target = net["presence"](x), present[:, None].expand(-1, x.shape[1], -1)
    else:
        logits, target = net["presence"](x.mean(1)), present
    out["presence"] = F.binary_cross_entropy_with_logits(logits, target)
    out["loss"] = sum(out[a] for a in ATTRIBUTES) + cfg.presence_weight * out["presence"]
    return out


def augment(rng: np.random.Generator, pixels: Any, ids: Any, cfg: Config) -> tuple[Any, Any]:
    """A random crop zoomed back to full size (up to ``zoom``; never outside the image, so no
    padding the renders never show), a horizontal flip, each applied to the image and its id map
    alike (labels are recomputed from the map), and an exposure gain (pixels are normalised, so
    the gain scales them around each channel's mean: close enough for a small jitter)."""
    import torch
    import torch.nn.functional as F

    b = len(pixels)
    scale = 1 / rng.uniform(1.0, max(1.0, cfg.zoom), b)
    shift = rng.uniform(-1, 1, (b, 2)) * (1 - scale)[:, None]
    flip = np.where(cfg.hflip & (rng.random(b) < 0.5), -1.0, 1.0)
    theta = np.zeros((b, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(theta), list(pixels.shape), align_corners=False)
    pixels = F.grid_sample(pixels.float(), grid, mode="bilinear", align_corners=False)
    ids = F.grid_sample(ids[:, None].float(), grid, mode="nearest", align_corners=False)
    if cfg.exposure_jitter > 0:
        j = cfg.exposure_jitter
        gain = torch.from_numpy(rng.uniform(1 - j, 1 + j, b).astype(np.float32))
        pixels = pixels * gain[:, None, None, None]
    return pixels, ids[:, 0].round().to(torch.uint8)


def evaluate(net: Any, data: Data, grid: int, cover: float, batch: int = 64) -> dict[str, float]:
    """Held-out figures: per attribute, accuracy on the patches an object covers (and how often a
    background patch is called background); presence of the 24 pairs: accuracy, precision,
    recall, F1 at 0.5 of the mean token, and the accuracy of every token's own reading."""
    import torch

    net.eval()
    right = {a: 0 for a in ATTRIBUTES}
    objects = background = bg_right = 0
    tp = fp = fn = tn = 0
    token_right = token_all = 0
    with torch.no_grad():
        for i in range(0, len(data.pixels), batch):
            x = features(net, data.pixels[i : i + batch])
            ids, table = data.ids[i : i + batch], data.table[i : i + batch]
            cells, present = targets(ids, table, grid, cover)
            cells = cells.flatten(2)  # (b, attributes, tokens)
            on = cells[:, 0] > 0
            objects += int(on.sum())
            for a, attr in enumerate(ATTRIBUTES):
                pred = net["dense"][attr](x).argmax(-1)
                right[attr] += int(((pred == cells[:, a]) & on).sum())
                if a == 0:
                    background += int((~on).sum())
                    bg_right += int(((pred == 0) & ~on).sum())
            p = torch.sigmoid(net["presence"](x.mean(1))) >= 0.5
            t = present > 0.5
            each = torch.sigmoid(net["presence"](x)) >= 0.5  # every token's own reading
            token_right += int((each == t[:, None]).sum())
            token_all += each.numel()
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
    out["presence_token_acc"] = round(token_right / max(1, token_all), 4)
    return out


# ----------------------------------------------------------------------------------------- graft
def graft(net: Any, cfg: Config, folder: Path) -> Path:
    """Save ``base`` with the trained tower to ``folder``: config, processor and the sizes file
    follow the new tower; the projector is rebuilt when the tower's width differs."""
    import torch
    from transformers import AutoModel

    from agentkit.mllm.model import CONFIG_FILE, ModelConfig
    from agentkit.mllm.train import _vlm

    model, processor = _vlm.load_base(cfg.base)
    inner = model.model
    if not hasattr(inner, "vision_tower") or not hasattr(inner, "multi_modal_projector"):
        raise ConfigError(f"{cfg.base} is not a LLaVA folder: mllm-vision grafts LLaVA towers only")
    vcfg = tower_config(cfg)
    tower = AutoModel.from_config(vcfg)
    tower.load_state_dict(net["tower"].state_dict())
    old_dim = model.config.vision_config.hidden_size
    inner.vision_tower = tower
    grid, cls = grid_of(cfg), _has_cls(vcfg)
    strategy = "default" if cls else "full"  # "default" drops the first token: a ViT's CLS
    model.config.vision_config = vcfg
    model.config.vision_feature_layer = -1
    model.config.vision_feature_select_strategy = strategy
    model.config.image_seq_length = grid**2
    if old_dim != vcfg.hidden_size:
        from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

        torch.manual_seed(cfg.seed)
        inner.multi_modal_projector = LlavaMultiModalProjector(model.config)
    ip = processor.image_processor
    ip.size = {"height": cfg.image_size, "width": cfg.image_size}
    ip.crop_size = {"height": cfg.image_size, "width": cfg.image_size}
    # the processor counts (image_size / patch_size)^2 tokens, + 1 for a CLS, - 1 when dropped
    processor.patch_size = cfg.image_size // grid
    processor.num_additional_image_tokens = 1 if cls else 0
    processor.vision_feature_select_strategy = strategy
    _vlm.save_folder(model, processor, folder, base=cfg.base, fp16=cfg.fp16)
    if not (folder / CONFIG_FILE).is_file():  # a base not built here has no sizes file to update
        return folder
    sizes = ModelConfig.load(folder)
    sizes.image_size, sizes.patch = cfg.image_size, cfg.image_size // grid
    sizes.vision_dim = vcfg.hidden_size
    sizes.vision_layers = sum(cfg.depths) if cfg.tower == "swin" else cfg.vision_layers
    sizes.vision_heads = cfg.stage_heads[-1] if cfg.tower == "swin" else cfg.vision_heads
    sizes.save(folder)
    return folder


# ----------------------------------------------------------------------------------------- train
def _check(cfg: Config) -> None:
    if cfg.tower not in ("swin", "clip"):
        raise ConfigError(f"tower={cfg.tower!r}: expected swin or clip")
    if cfg.image_size % cfg.patch:
        raise ConfigError(f"image_size {cfg.image_size} must be a multiple of patch {cfg.patch}")
    if cfg.tower == "swin":
        side, stages = cfg.image_size // cfg.patch, len(cfg.depths)
        if len(cfg.stage_heads) != stages or side % (cfg.window * 2 ** (stages - 1)):
            raise ConfigError(
                f"swin: {stages} stages need {stages} stage_heads (got {len(cfg.stage_heads)}) "
                f"and image_size / patch ({side}) divisible by window * 2^(stages - 1) "
                f"({cfg.window * 2 ** (stages - 1)})"
            )
    elif cfg.vision_dim % cfg.vision_heads:
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
    grid = grid_of(cfg)
    processor = _processor(cfg)
    t0 = time.perf_counter()
    data = load_data(cfg.scenes_dirs, processor)
    # the share of patches on an object, from a sample (one-hots of every map are big)
    cells, _ = targets(data.ids[:64], data.table[:64], grid, cfg.cover)
    covered = float((cells[:, 0] > 0).float().mean())
    net = build(cfg)
    n_params = sum(p.numel() for p in net["tower"].parameters())
    _log(f"{len(data.pixels)} training scenes at {cfg.image_size} px, {grid}x{grid} patches "
         f"(~{100 * covered:.0f}% on an object) [{time.perf_counter() - t0:.0f} s]; tower "
         f"{n_params / 1e6:.2f} M parameters; {cfg.steps} steps or {cfg.max_minutes or 'no'} "
         "CPU minutes")  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, seconds, last = 0, 0.0, out / "last.pt"
    sizes = tower_config(cfg).to_dict()
    sizes = {
        k: v for k, v in sizes.items() if not k.startswith("_") and k != "transformers_version"
    }
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
        pixels, ids = augment(rng, data.pixels[idx], data.ids[idx], cfg)
        table = data.table[idx]
        cells, present = targets(ids, table, grid, cfg.cover)
        lr = lr_at(step, scheduled(step, seconds, cfg), cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        parts = losses(net, pixels, cells, present, cfg)
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
        held = load_data([cfg.heldout_dir], processor, cfg.max_heldout)
        metrics["heldout"] = evaluate(net, held, grid, cfg.cover)
        metrics["heldout_scenes"] = len(held.pixels)
        _log("held-out: " + json.dumps(metrics["heldout"]))
    metrics["config"] = dataclasses.asdict(cfg)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    folder = graft(net, cfg, out / "model")
    _log(f"grafted tower into {cfg.base} -> {folder}")
    return folder
