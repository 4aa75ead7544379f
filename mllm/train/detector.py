"""The ``detector`` recipe: ``scenes-yolo`` (shapes) + ``scenes-attr`` (colour, material, size).

Two models, both trained on the scene world only (nothing downloaded):

1. **YOLO on shapes.** ultralytics ``YOLO("yolov8n.yaml")`` from scratch on 3 classes (cube,
   sphere, cylinder) with ultralytics' default augmentations (mosaic, HSV jitter, flips, scale).
   Three classes converge much faster on a CPU budget than 96 size-colour-material-shape classes
   (a 6-class probe reached mAP50 0.71 in 20 CPU minutes, FACTS.md).
2. **Attribute head** (:mod:`agentkit.tools._attributes`): a small CNN on each box crop plus the
   box geometry and the image's median colour, trained on the ground-truth boxes with box jitter
   and exposure / white-balance jitter, so it names colour, material and size on the detector's
   boxes and under lighting it has not seen.

Steps (each resumable): render the missing training and held-out scenes with the world's own
functions, export the training scenes to YOLO format, train YOLO (resumes from ``last.pt``; a
second leg, when the recipe sets one, fine-tunes it at a larger image size; a later recipe may
start that leg from a released checkpoint, ``init``), train the attribute head (or keep one,
``attr_init``), evaluate both on the held-out scenes (:mod:`agentkit.mllm.eval.perception`) and
copy the fp16 checkpoints to ``out/scenes-yolo.pt`` and ``out/scenes-attr.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentkit.errors import ConfigError
from agentkit.mllm.train._fields import f, require_init
from agentkit.weights import ultralytics_offline


@dataclass
class Config:
    description: str = f("YOLO shape detector + attribute head for the scene world", "one line")
    train_dir: str = f("data/scenes-train", "training scenes (rendered here when missing)")
    heldout_dir: str = f("data/scenes-heldout", "held-out scenes for the final figures")
    train_seed: int = f(100000, "first training seed")
    train_chunks: list[list[int]] = f(
        [[350, 16]],
        "[count, Cycles samples] per chunk of consecutive training seeds (denoised either way)",
    )
    heldout_seed: int = f(900000, "first held-out seed (never trained on)")
    heldout_n: int = f(120, "held-out scenes")
    heldout_samples: int = f(24, "Cycles samples of the held-out scenes")
    width: int = f(0, "render width; 0 = the world's randomised 320x240..480x320")
    height: int = f(0, "render height; 0 = randomised with the width")
    render_workers: int = f(2, "parallel render workers (Ray when > 1)")
    # YOLO
    model: str = f("yolov8n.yaml", "ultralytics model yaml (built from scratch)")
    imgsz: int = f(320, "YOLO training image size")
    epochs: int = f(300, "YOLO epochs (time_hours, when > 0, stops it earlier)")
    time_hours: float = f(0.75, "YOLO wall-clock budget in hours (0 = epochs only)")
    batch: int = f(16, "YOLO batch size")
    val_fraction: float = f(0.08, "share of training scenes ultralytics validates on per epoch")
    yolo_workers: int = f(2, "dataloader workers")
    cache: bool = f(True, "keep the decoded training images in RAM (saves CPU per epoch)")
    hsv_s: float = f(0.5, "YOLO saturation jitter")
    hsv_v: float = f(0.4, "YOLO brightness jitter")
    init: str = f(
        "", "a YOLO checkpoint to fine-tune: no leg 1, leg 2 starts from it (a later leg)"
    )
    finetune_imgsz: int = f(0, "second YOLO leg: fine-tune leg 1's best at this size (0 = none)")
    finetune_hours: float = f(0.75, "second leg's wall-clock budget in hours")
    finetune_lr: float = f(1e-3, "second leg's learning rate (AdamW, decays linearly)")
    # attribute head
    attr_init: str = f("", "an attribute head to keep as it is (copied) instead of training one")
    attr_epochs: int = f(20, "attribute-head epochs")
    attr_crop: int = f(32, "attribute-head crop side, pixels")
    attr_width: int = f(16, "attribute-head first conv width")
    attr_scenes: int = f(0, "train the head on the first N training scenes (0 = all of them)")
    attr_batch: int = f(64, "attribute-head batch size")
    attr_lr: float = f(2e-3, "attribute-head learning rate (AdamW, cosine)")
    seed: int = f(0, "seed of the split, YOLO and the attribute head")
    evaluate: bool = f(True, "score both models on the held-out scenes at the end")


def _log(msg: str) -> None:
    print(f"[detector {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------- data
def render(cfg: Config) -> None:
    """Render whatever training / held-out scenes are missing (skips finished seeds)."""
    from agentkit.mllm.worlds.gen import gen_scenes

    size: dict[str, int] = {}
    if cfg.width or cfg.height:
        if not (cfg.width and cfg.height):
            raise ConfigError(f"width={cfg.width}, height={cfg.height}: give both or neither")
        size = {"width": cfg.width, "height": cfg.height}
    seed = cfg.train_seed
    for count, samples in cfg.train_chunks:
        _log(f"render train seeds {seed}..{seed + count - 1} at {samples} samples")
        gen_scenes(Path(cfg.train_dir), n=int(count), seed=seed, workers=cfg.render_workers,
                   progress=False, samples=int(samples), split="train", **size)  # fmt: skip
        seed += int(count)
    _log(f"render held-out seeds {cfg.heldout_seed}..{cfg.heldout_seed + cfg.heldout_n - 1}")
    gen_scenes(Path(cfg.heldout_dir), n=cfg.heldout_n, seed=cfg.heldout_seed,
               workers=cfg.render_workers, progress=False, samples=cfg.heldout_samples,
               split="val", **size)  # fmt: skip


def _train_scenes(cfg: Config, limit: int = 0) -> list[dict[str, Any]]:
    """The training scenes the recipe names (not anything else lying in the folder)."""
    root = Path(cfg.train_dir)
    n = sum(int(c) for c, _ in cfg.train_chunks)
    n = min(n, limit) if limit > 0 else n
    out = []
    for s in range(cfg.train_seed, cfg.train_seed + n):
        out.append(json.loads((root / f"scene_{s:06d}.json").read_text()))
    return out


# ----------------------------------------------------------------------------------------- YOLO
def _yolo_data(cfg: Config, out: Path) -> Path:
    """The recipe's training scenes in YOLO format (exported once); returns its ``data.yaml``."""
    from agentkit.mllm.worlds.coco import export_yolo

    ds = out / "yolo-data"
    if not (ds / "data.yaml").is_file():
        # only the recipe's seeds: link them into a folder export_yolo can read
        pick = out / "train-scenes"
        shutil.rmtree(pick, ignore_errors=True)
        pick.mkdir(parents=True)
        root = Path(cfg.train_dir).resolve()
        for sc in _train_scenes(cfg):
            stem = Path(sc["image_filename"]).stem
            for ext in (".json", ".png"):
                (pick / f"{stem}{ext}").symlink_to(root / f"{stem}{ext}")
        export_yolo(pick, ds, task="detect", classes="shape", val_fraction=cfg.val_fraction,
                    seed=cfg.seed)  # fmt: skip
    return ds / "data.yaml"


def _yolo_leg(cfg: Config, out: Path, name: str, start: str, imgsz: int, hours: float,
              **train_kw: Any) -> Path:  # fmt: skip
    """One YOLO training run in ``out/name`` from ``start`` (a yaml or a checkpoint); resumes
    from its ``last.pt``, skips when finished; returns its ``best.pt``."""
    from ultralytics import YOLO

    run = out / name
    best, last, done = run / "weights" / "best.pt", run / "weights" / "last.pt", run / "DONE"
    if done.is_file() and best.is_file():
        _log(f"YOLO {name} already trained: {best}")
        return best
    data = _yolo_data(cfg, out)
    if last.is_file():
        _log(f"YOLO {name} resumes from {last}")
        try:
            YOLO(str(last)).train(resume=True)
        except Exception as e:  # noqa: BLE001 - "nothing to resume" when the run had finished
            if "nothing to resume" not in str(e).lower():
                raise
    else:
        _log(f"YOLO {name} from {start}: imgsz {imgsz}, {cfg.epochs} epochs, {hours} h")
        model = YOLO(start, task="detect")
        kw: dict[str, Any] = {"time": hours} if hours > 0 else {}
        # project must be absolute: ultralytics nests a relative one under runs/detect/
        model.train(
            data=str(data), imgsz=imgsz, epochs=cfg.epochs, batch=cfg.batch,
            workers=cfg.yolo_workers, device="cpu", project=str(out.resolve()), name=name,
            exist_ok=True, seed=cfg.seed, deterministic=False, plots=False, verbose=False,
            hsv_s=cfg.hsv_s, hsv_v=cfg.hsv_v, cache=cfg.cache, patience=max(50, cfg.epochs),
            **kw, **train_kw,
        )  # fmt: skip
    if not best.is_file():
        raise ConfigError(f"YOLO training wrote no {best}; see the log above")
    done.write_text("ok\n")
    return best


def train_yolo(cfg: Config, out: Path) -> Path:
    """Train YOLO on the recipe's scenes; returns the last leg's ``best.pt`` (fp16).

    Leg 1 trains ``cfg.model`` from scratch at ``imgsz``. When ``finetune_imgsz`` is set, leg 2
    continues from leg 1's best at that larger size, with a lower learning rate and a short
    warm-up: small and partly hidden objects cover more pixels, and the larger size costs ~2x per
    epoch only for the leg that needs it."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics-settings"))
    ultralytics_offline()
    if cfg.init:
        if cfg.finetune_imgsz <= 0:
            raise ConfigError(f"init={cfg.init!r} needs finetune_imgsz > 0: the leg that trains it")
        # never a name ultralytics would try to download
        best = require_init(Path(cfg.init), "a YOLO .pt (e.g. agentkit/weights/scenes-yolo.pt)")
    else:
        best = _yolo_leg(cfg, out, "yolo-run", cfg.model, cfg.imgsz, cfg.time_hours)
    if cfg.finetune_imgsz <= 0:
        return best
    return _yolo_leg(
        cfg, out, "yolo-finetune", str(best), cfg.finetune_imgsz, cfg.finetune_hours,
        optimizer="AdamW", lr0=cfg.finetune_lr, warmup_epochs=1.0,
    )  # fmt: skip


# ------------------------------------------------------------------------------- attribute head
def _objects(scenes: list[dict[str, Any]], root: Path) -> tuple[list[np.ndarray], list[Any]]:
    """Images (uint8 HxWx3) and rows (image index, box, label indices) of every object."""
    from PIL import Image

    from agentkit.tools._attributes import VOCAB

    images, rows = [], []
    for i, sc in enumerate(scenes):
        with Image.open(root / sc["image_filename"]) as im:
            images.append(np.asarray(im.convert("RGB")))
        for o in sc["objects"]:
            labels = [VOCAB[k].index(o[k]) for k in VOCAB]
            rows.append((i, np.asarray(o["bbox"], np.float64), labels))
    return images, rows


def _batch(images: list[np.ndarray], rows: list[Any], idx: np.ndarray, crop: int,
           rng: np.random.Generator | None) -> tuple[Any, Any, Any]:  # fmt: skip
    """Tensors for a batch; with ``rng``: box jitter, flips, exposure/white-balance, noise."""
    import torch

    from agentkit.tools._attributes import crop_inputs

    xs, gs, ys = [], [], []
    for j in idx:
        i, box, labels = rows[int(j)]
        box = box.copy()
        if rng is not None:  # detector boxes are a few pixels off the masks' tight boxes
            bw, bh = box[2] - box[0], box[3] - box[1]
            box += rng.normal(0, 0.06, 4) * np.array([bw, bh, bw, bh])
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                box = rows[int(j)][1].copy()
        x, g = crop_inputs(images[i], box[None], crop)
        xs.append(x[0])
        gs.append(g[0])
        ys.append(labels)
    x, g = np.stack(xs), np.stack(gs)
    if rng is not None:
        n = len(idx)
        # exposure and white balance of the whole image: the crop and the median move together,
        # the crop/median ratio channels stay (the invariance the head should lean on)
        gain = rng.uniform(0.65, 1.25, (n, 1)) * np.clip(rng.normal(1, 0.06, (n, 3)), 0.8, 1.2)
        x[:, :3] = np.clip(x[:, :3] * gain[:, :, None, None], 0, 1)
        g[:, 7:10] = np.clip(g[:, 7:10] * gain, 0, 1)
        _tone(x, g, rng)
        x += rng.normal(0, 0.015, x.shape).astype(np.float32)
        flip = rng.random(n) < 0.5
        x[flip] = x[flip][..., ::-1]
        g[flip, 4], g[flip, 5] = -g[flip, 5], -g[flip, 4]
    return torch.from_numpy(x.copy()), torch.from_numpy(g), torch.tensor(ys)


def _tone(x: np.ndarray, g: np.ndarray, rng: np.random.Generator) -> None:
    """Random contrast, gamma, ground albedo and blur, in place on crops ``x`` and geometry ``g``.

    Why: the head had learnt shortcuts of the world's renders that real CLEVR renders break; it
    called a real render's two rubber objects metal (p(rubber) 0.08 and 0.31). Cutting the real
    image's contrast by 30% raised them to 0.29 and 0.70, and brightening the object against its
    ground by 1.3x to 0.56 and 0.77: "contrasty = metal", "bright on the ground = rubber".
    """
    n = len(x)
    c = np.where(rng.random(n) < 0.7, rng.uniform(0.6, 1.35, n), 1.0)
    contrast(x, g, c.astype(np.float32))
    gamma(x, g, np.exp(rng.uniform(-0.3, 0.3, n)).astype(np.float32))
    ground_albedo(x, g, np.exp(rng.uniform(-0.4, 0.4, n)).astype(np.float32))
    blur = np.flatnonzero(rng.random(n) < 0.33)  # optics: up to ~1 crop pixel on a third
    if len(blur):
        import torch
        from torchvision.transforms.functional import gaussian_blur

        for i in blur:
            s = float(rng.uniform(0.3, 1.0))
            x[i] = gaussian_blur(torch.from_numpy(x[i]), [5, 5], [s, s]).numpy()


# Each transform below acts, in closed form, on what :func:`agentkit.tools._attributes.crop_inputs`
# returns: RGB crop x[:, :3] (0-1), crop/median ratio x[:, 3:] (stored as ratio / 3, clipped at 6)
# and the image median g[:, 7:10]; so the three stay consistent (tests/train/test_detector_recipe).
def contrast(x: np.ndarray, g: np.ndarray, c: np.ndarray) -> None:
    """The image's contrast about its ground colour: rgb' = med + c (rgb - med)."""
    med = g[:, 7:10, None, None]
    c4 = c[:, None, None, None]
    x[:, :3] = np.clip(med + c4 * (x[:, :3] - med), 0, 1)
    x[:, 3:] = np.clip(1 + c4 * (3 * x[:, 3:] - 1), 0, 6) / 3


def gamma(x: np.ndarray, g: np.ndarray, gam: np.ndarray) -> None:
    """The image's tone curve: rgb' = rgb ** gam (so med' = med ** gam, ratio' = ratio ** gam)."""
    g4 = gam[:, None, None, None]
    x[:, :3] = np.power(x[:, :3], g4)
    x[:, 3:] = np.clip(np.power(3 * x[:, 3:], g4), 0, 6) / 3
    g[:, 7:10] = np.power(g[:, 7:10], gam[:, None])


def ground_albedo(x: np.ndarray, g: np.ndarray, r: np.ndarray) -> None:
    """The ground ``1 / r`` as bright under the same object: med' = med / r, ratio' = r ratio."""
    x[:, 3:] = np.clip(3 * x[:, 3:] * r[:, None, None, None], 0, 6) / 3
    g[:, 7:10] = np.clip(g[:, 7:10] / r[:, None], 0, 1)


def _accuracy(model: Any, images: list[np.ndarray], rows: list[Any], crop: int) -> dict[str, float]:
    import torch

    from agentkit.tools._attributes import VOCAB

    model.eval()
    right = np.zeros(len(VOCAB))
    all_right = 0
    with torch.no_grad():
        for s in range(0, len(rows), 256):
            x, g, y = _batch(images, rows, np.arange(s, min(s + 256, len(rows))), crop, None)
            out = model(x, g)
            pred = torch.stack([out[k].argmax(1) for k in VOCAB], 1)
            ok = pred == y
            right += ok.sum(0).numpy()
            all_right += int(ok[:, :3].all(1).sum())  # colour, material, size
    n = max(len(rows), 1)
    acc = {k: round(float(r) / n, 4) for k, r in zip(VOCAB, right, strict=True)}
    acc["color_material_size"] = round(all_right / n, 4)
    return acc


def train_attr(cfg: Config, out: Path) -> Path:
    """Train the attribute head on ground-truth boxes; writes ``out/scenes-attr.pt`` (fp16)."""
    import torch

    from agentkit.mllm.worlds.coco import load_scenes
    from agentkit.tools._attributes import VOCAB, build

    dest = out / "scenes-attr.pt"
    if dest.is_file():
        _log(f"attribute head already trained: {dest}")
        return dest
    if cfg.attr_init:
        src = require_init(Path(cfg.attr_init), "an attribute head .pt (scenes-attr.pt)")
        _log(f"attribute head kept from {src}")
        shutil.copy2(src, dest)
        return dest
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images, rows = _objects(_train_scenes(cfg, cfg.attr_scenes), Path(cfg.train_dir))
    held = load_scenes(cfg.heldout_dir)
    h_images, h_rows = _objects(held, Path(cfg.heldout_dir))
    model = build(cfg.attr_width, cfg.attr_crop)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.attr_lr, weight_decay=1e-4)
    steps = cfg.attr_epochs * max(1, len(rows) // cfg.attr_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.attr_lr, total_steps=max(steps, 1))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    _log(f"attribute head: {len(rows)} objects, {cfg.attr_epochs} epochs, {steps} steps")
    step = 0
    for epoch in range(cfg.attr_epochs):
        model.train()
        order = rng.permutation(len(rows))
        total, t0 = 0.0, time.perf_counter()
        for s in range(0, len(order) - cfg.attr_batch + 1, cfg.attr_batch):
            x, g, y = _batch(images, rows, order[s : s + cfg.attr_batch], cfg.attr_crop, rng)
            outs = model(x, g)
            loss = sum(loss_fn(outs[k], y[:, j]) for j, k in enumerate(VOCAB))
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            if step < steps:
                sched.step()
            step += 1
            total += float(loss.detach())
        if epoch == cfg.attr_epochs - 1 or epoch % 5 == 4:
            acc = _accuracy(model, h_images, h_rows, cfg.attr_crop)
            _log(f"attr epoch {epoch + 1}: loss {total / max(1, len(order) // cfg.attr_batch):.3f}"
                 f" held-out (GT boxes) {acc} [{time.perf_counter() - t0:.0f} s]")  # fmt: skip
    acc = _accuracy(model, h_images, h_rows, cfg.attr_crop)
    ckpt = {
        "config": {"crop": cfg.attr_crop, "width": cfg.attr_width, "recipe": "detector"},
        "vocab": VOCAB,
        "model": {
            k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()
        },  # fmt: skip
        "heldout_gt_box_accuracy": acc,
    }
    torch.save(ckpt, dest)
    return dest


# ---------------------------------------------------------------------------------------- main
def train(cfg: Config, out: Path) -> Path:
    """Render, train YOLO and the attribute head, evaluate; return ``out/scenes-yolo.pt``."""
    if not cfg.train_chunks or any(len(c) != 2 or c[0] < 1 for c in cfg.train_chunks):
        raise ConfigError(f"train_chunks={cfg.train_chunks!r}: expected [[count, samples], ...]")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    render(cfg)
    _log(f"scenes ready [{time.perf_counter() - t0:.0f} s]")
    best = train_yolo(cfg, out)
    _log(f"YOLO done [{time.perf_counter() - t0:.0f} s]")
    yolo_dest = out / "scenes-yolo.pt"
    shutil.copy2(best, yolo_dest)
    attr = train_attr(cfg, out)
    _log(f"attribute head done [{time.perf_counter() - t0:.0f} s]")
    if cfg.evaluate:
        from agentkit.mllm.eval.perception import detect_metrics

        metrics = detect_metrics(cfg.heldout_dir, weights=str(yolo_dest), attr=str(attr))
        metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
        metrics["config"] = asdict(cfg)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        _log(f"held-out: {json.dumps({k: v for k, v in metrics.items() if k != 'config'})}")
    _log(f"done in {time.perf_counter() - t0:.0f} s. Install with:\n"
         f"  cp {yolo_dest} {attr} agentkit/weights/")  # fmt: skip
    return yolo_dest
