"""The ``mllm-dpo`` recipe: trl's DPO on grounded vs hallucinated answers about scene images.

Preference pairs come from the scene JSONs' ground truth (:func:`preference_pairs`), one prompt
(the image and a question, as the hf backend sends it) with a *chosen* answer that the scene
supports and a *rejected* one that hallucinates:

* ``absent``  — "Is there a {colour} {shape} in the image?" about an object the scene lacks:
  chosen "No.", rejected "Yes." (POPE's probe; colour-shape pairs drawn from the scene's own
  colours and shapes first, the hardest "adversarial" kind);
* ``present`` — the same question about an object it has: chosen "Yes.", rejected "No.";
* ``count``   — "How many {shape}s are there?": chosen the true count, rejected a wrong one;
* ``describe`` — "Describe the image.": chosen the scene's caption, rejected the caption with
  one object replaced by one that is not in the scene.

Training: LoRA on the language model (as ``mllm-tooluse``) with trl's ``DPOTrainer``; the
reference model is the same base with the adapters disabled, so no second copy is held. Runs
under accelerate, resumes from ``out/checkpoints``, writes this config into every checkpoint,
then merges the adapters and saves ``out/model`` (fp16 by default). ``out/pairs.jsonl`` keeps
the pairs it trained on.

Example::

    agentkit train mllm-dpo --set base=runs/train/mllm-tooluse/model --set scenes_dir=data/scenes-train
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.mllm.train import _vlm
from agentkit.mllm.train._vlm import f

KINDS = ("absent", "present", "count", "describe")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
DESCRIBE = "Describe the image."


@dataclass
class Config(_vlm.TrainLoop, _vlm.LoraOptions):
    description: str = f("DPO: grounded over hallucinated answers (LoRA, merged)", "one line")
    base: str = f(
        "runs/train/mllm-tooluse/model", "model folder to tune (any HF vision-language model)"
    )
    scenes_dir: str = f("data/scenes-train", "scene JSONs and images the pairs are made from")
    max_scenes: int = f(0, "use at most this many scenes (0 = all)")
    kinds: list[str] = f(list(KINDS), "pair kinds to make (absent, present, count, describe)")
    pairs_per_kind: int = f(1, "pairs of each kind per scene")
    system: str = f("", "system message before the question (empty = none)")
    beta: float = f(0.1, "DPO beta (strength of the pull toward the reference)")
    loss_type: str = f("sigmoid", "trl DPO loss type")
    sft_weight: float = f(
        0.0,
        "weight of trl's 'sft' loss (NLL of the chosen answer) added to the DPO loss (0 = none)",
    )
    max_length: int = f(1024, "tokens per prompt + answer, image tokens included")
    lora_dropout: float = f(0.0, "LoRA dropout")
    lr: float = f(2e-4, "peak learning rate (AdamW)")
    warmup_steps: int = f(10, "linear warm-up steps")
    batch: int = f(4, "pairs per device per step")
    epochs: float = f(1.0, "passes over the pairs (max_steps > 0 overrides)")
    log_steps: int = f(10, "log every N steps (loss, rewards/margins)")
    fp16: bool = f(True, "save the merged model in fp16")
    seed: int = f(0, "seed of the pairs, the LoRA init and the data order")


# --------------------------------------------------------------------------------------------
# pairs


def _describe(o: dict[str, Any]) -> str:
    return f"{o['size']} {o['color']} {o['material']} {o['shape']}"


def _plural(shape: str) -> str:
    return shape + "s"


def _absent_object(objects: list[dict[str, Any]], rng: random.Random) -> tuple[str, str] | None:
    """A (colour, shape) not in the scene, preferring the scene's own colours and shapes (the
    probes a model that guesses from co-occurrence gets wrong)."""
    present = {(o["color"], o["shape"]) for o in objects}
    colors = sorted({o["color"] for o in objects})
    shapes = sorted({o["shape"] for o in objects})
    near = [(c, s) for c in colors for s in shapes if (c, s) not in present]
    anywhere = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    pool = near or anywhere
    return rng.choice(pool) if pool else None


def scene_pairs(
    scene: dict[str, Any], image: str, rng: random.Random, kinds: Sequence[str], per_kind: int = 1
) -> list[dict[str, Any]]:
    """Preference pairs about one scene (see the module docstring for the kinds)."""
    objects = scene.get("objects") or []
    out: list[dict[str, Any]] = []

    def add(kind: str, question: str, chosen: str, rejected: str) -> None:
        out.append(
            {
                "kind": kind,
                "question": question,
                "chosen": chosen,
                "rejected": rejected,
                "images": [image],
                "scene": scene.get("image_filename", ""),
            }
        )

    for _ in range(per_kind):
        if "absent" in kinds:
            miss = _absent_object(objects, rng)
            if miss:
                add("absent", f"Is there a {miss[0]} {miss[1]} in the image?", "No.", "Yes.")
        if "present" in kinds and objects:
            o = rng.choice(objects)
            add("present", f"Is there a {o['color']} {o['shape']} in the image?", "Yes.", "No.")
        if "count" in kinds:
            shape = rng.choice(SHAPES)
            n = sum(o["shape"] == shape for o in objects)
            wrong = rng.choice([m for m in (n - 2, n - 1, n + 1, n + 2) if m >= 0])
            add("count", f"How many {_plural(shape)} are there?", str(n), str(wrong))
        if "describe" in kinds and objects and scene.get("caption"):
            caption = str(scene["caption"])
            o = rng.choice(objects)
            miss = _absent_object(objects, rng)
            if miss and _describe(o) in caption:
                fake = f"{o['size']} {miss[0]} {o['material']} {miss[1]}"
                add("describe", DESCRIBE, caption, caption.replace(_describe(o), fake, 1))
    return out


def preference_pairs(
    scenes_dir: str | Path,
    *,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    per_kind: int = 1,
    limit: int = 0,
) -> list[dict[str, Any]]:
    """Pairs for every scene JSON (with its image) in ``scenes_dir``; the same inputs and seed
    give the same pairs. Each: ``question``, ``chosen``, ``rejected``, ``images``, ``kind``."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"unknown pair kinds {bad}; expected some of {list(KINDS)}")
    d = Path(scenes_dir)
    if not d.is_dir():
        raise ConfigError(
            f"no scenes at {d}; render some with `agentkit data gen scenes --out {d}`"
        )
    rng = random.Random(seed)
    pairs: list[dict[str, Any]] = []
    n = 0
    for p in sorted(d.glob("*.json")):
        try:
            scene = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(scene, dict) or "objects" not in scene:
            continue
        image = d / str(scene.get("image_filename", p.with_suffix(".png").name))
        if not image.is_file():
            continue
        pairs.extend(scene_pairs(scene, str(image), rng, kinds, per_kind))
        n += 1
        if limit and n >= limit:
            break
    if not pairs:
        raise ConfigError(f"{d} yields no preference pairs (no scene JSON with objects and image)")
    return pairs


def prompt_messages(pair: dict[str, Any], system: str = "") -> list[dict[str, Any]]:
    """The prompt of a pair as messages (the image on the user turn)."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": pair["question"], "images": list(pair["images"])})
    return msgs


def pair_rows(pairs: list[dict[str, Any]], system: str = "") -> list[dict[str, Any]]:
    """Rows for the trainer: ``prompt`` (messages), ``chosen``, ``rejected``, ``images``."""
    return [
        {
            "prompt": prompt_messages(p, system),
            "chosen": p["chosen"],
            "rejected": p["rejected"],
            "images": p["images"],
        }
        for p in pairs
    ]


# --------------------------------------------------------------------------------------------
# training


def make_trainer(cfg: Config, out: Path) -> Any:
    """The DPOTrainer for ``cfg``; LoRA is applied by the trainer (reference = adapters off)."""
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    if not cfg.base:
        raise ConfigError("mllm-dpo needs base=<model folder> (the mllm-tooluse output or any VLM)")
    pairs = preference_pairs(
        cfg.scenes_dir,
        seed=cfg.seed,
        kinds=cfg.kinds,
        per_kind=cfg.pairs_per_kind,
        limit=cfg.max_scenes,
    )
    out.mkdir(parents=True, exist_ok=True)
    if _vlm.rank() == 0:
        with (out / "pairs.jsonl").open("w") as fh:
            for p in pairs:
                fh.write(json.dumps(p) + "\n")
    model, processor = _vlm.load_base(cfg.base)
    _vlm.check_lora_targets(model, cfg.lora_target)
    args = _vlm.training_args(
        DPOConfig,
        cfg,
        out,
        beta=cfg.beta,
        loss_type=[cfg.loss_type] + (["sft"] if cfg.sft_weight > 0 else []),
        loss_weights=[1.0] + ([cfg.sft_weight] if cfg.sft_weight > 0 else []),
        precompute_ref_log_probs=False,
    )
    set_seed(cfg.seed)  # DPOTrainer adds the LoRA before it seeds (see mllm-tooluse)
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=_vlm.dataset(
            pair_rows(pairs, cfg.system), ("prompt", "chosen", "rejected", "images")
        ),
        data_collator=_vlm.PreferenceCollator(processor, cfg.max_length),
        processing_class=processor,
        peft_config=_vlm.lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target),
        callbacks=[_vlm.save_config_callback(cfg, "dpo")],
    )


def finish(trainer: Any, cfg: Config, out: Path, t0: float | None = None) -> Path:
    """Merge the LoRA adapters into the base and save ``out/model`` (main process only)."""
    folder = out / "model"
    if trainer.is_world_process_zero():
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        _vlm.save_folder(merged, trainer.processing_class, folder, base=cfg.base, fp16=cfg.fp16)
        took = f" in {time.perf_counter() - t0:.0f} s" if t0 is not None else ""
        print(
            f"[mllm-dpo] {trainer.state.global_step} steps{took}; merged model in {folder}",
            flush=True,
        )
    return folder


def train(cfg: Config, out: Path) -> Path:
    """Train, merge and save ``out/model``; returns that folder."""
    t0 = time.perf_counter()
    trainer = make_trainer(cfg, out)
    _vlm.run(trainer, out, cfg.threads)
    return finish(trainer, cfg, out, t0)
