"""The ``mllm-tooluse`` recipe: LoRA instruction tuning on GPT4Tools-style tool-use samples.

Input: the JSONL of ``agentkit data gen tooluse`` (one model call per line: ``messages`` ending
with the assistant turn to learn, ``images``, ``kind``). Each sample is encoded as the hf backend
prompts the model (:func:`agentkit.mllm.train._vlm.conversation`), with the loss on that last
assistant turn only (:class:`~agentkit.mllm.train._vlm.ChatCollator`).

Training: peft LoRA on the language model's projections (the vision tower and the projector stay
frozen) with trl's ``SFTTrainer`` — so it runs under accelerate as it is
(``accelerate launch -m agentkit.cli train mllm-tooluse`` on several GPUs), resumes from the
newest ``out/checkpoints/checkpoint-N``, and writes this config into each checkpoint. At the end
the adapters are merged into the base (``merge_and_unload``) and the plain model is saved (fp16
by default) to ``out/model``, which ``hf:`` backends and the next stage load like any folder.

``base`` is any image-text-to-text folder: the ``mllm-align`` output, or a real LLaVA / Qwen2-VL /
Idefics3 checkpoint on disk (LoRA then targets its language model by the ``lora_target`` regex).

Example::

    agentkit train mllm-tooluse --set base=runs/train/mllm-align/model --set data=data/tooluse/train.jsonl
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.mllm.train import _vlm
from agentkit.mllm.train._fields import f
from agentkit.mllm.train.align import projector_part


@dataclass
class Config(
    _vlm.TrainLoop, _vlm.LengthGrouping, _vlm.LoraOptions, _vlm.ExtraData, _vlm.RuntimeHints
):
    description: str = f("LoRA tool-use instruction tuning (loss on the model's turn)", "one line")
    base: str = f(
        "runs/train/mllm-align/model", "model folder to tune (any HF vision-language model)"
    )
    data: str = f("data/tooluse/train.jsonl", "training samples (agentkit data gen tooluse)")
    kinds: list[str] = f([], "only these sample kinds (empty = all)")
    max_samples: int = f(0, "use a seeded sample of at most this many (0 = all)")
    family_repeat: dict[str, int] = f(
        {}, "{family: n}: each sample of that question family n times (one the model misses)"
    )
    scene_dirs: list[str] = f(
        [],
        "scene folders whose ground truth becomes direct answers about the image (the chosen "
        "side of mllm-dpo's pairs: captions, present/absent objects, counts), mixed in",
    )
    scene_kinds: list[str] = f(
        ["absent", "present", "count", "describe"], "which of those answers (mllm-dpo's kinds)"
    )
    scene_per_kind: int = f(1, "answers of each kind per scene")
    train_projector: bool = f(
        False,
        "train the projector in full beside the LoRA adapters (after mllm-vision grafted a new "
        "tower: the projector must learn to pass on what the tower sees)",
    )
    max_length: int = f(4096, "tokens per sample, image tokens included (longer ones are left out)")
    lora_dropout: float = f(0.05, "LoRA dropout")
    fp16: bool = f(True, "save the merged model in fp16")
    seed: int = f(0, "seed of the LoRA init and data order")


def _check(cfg: Config) -> None:
    if not cfg.base:
        raise ConfigError(
            "mllm-tooluse needs base=<model folder> (the mllm-align output or any VLM)"
        )
    cfg.check_lora()
    if cfg.train_projector and cfg.merge_scale != 1.0:
        raise ConfigError(
            "merge_scale scales the LoRA update only; with train_projector the projector is "
            "trained in full and would be saved unscaled: leave merge_scale at 1"
        )


def make_trainer(cfg: Config, out: Path) -> Any:
    """The SFTTrainer (LoRA already applied) for ``cfg``; :func:`train` runs and merges it."""
    from peft import get_peft_model
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    _check(cfg)
    rows = training_rows(cfg)
    model, processor = _vlm.load_base(cfg.base)
    rows = _fit(rows, processor, cfg.max_length, cfg.data)
    _vlm.check_lora_targets(model, cfg.lora_target)
    # the LoRA init draws from the global RNG before the trainer seeds it: seed it here, or the
    # run depends on whatever ran before it in the process
    set_seed(cfg.seed)
    save = [_module_name(model, projector_part(model))] if cfg.train_projector else []
    model = get_peft_model(
        model,
        _vlm.lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target, save),
    )
    args = _vlm.training_args(SFTConfig, cfg, out, assistant_only_loss=False)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=_vlm.dataset(rows, ("messages", "images", "length")),
        data_collator=_vlm.ChatCollator(processor, cfg.max_length),
        processing_class=processor,
        callbacks=[_vlm.save_config_callback(cfg, "tooluse")],
    )


def _module_name(model: Any, module: Any) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def training_rows(cfg: Config) -> list[dict[str, Any]]:
    """``data`` (its ``kinds``, at most ``max_samples``, the ``family_repeat`` families
    repeated) and then ``extra_data`` likewise: e.g.
    the program planner's samples with a share of the ReAct planner's turns, so one model serves
    both (each planner's system prompt tells the model which format it is asked for)."""
    rows = _vlm.read_jsonl(cfg.data, cfg.kinds, cfg.max_samples, cfg.seed)
    if not rows:
        raise ConfigError(f"{cfg.data} has no samples of kinds {cfg.kinds or 'any'}")
    if bad := [n for n in cfg.family_repeat.values() if n < 1]:
        raise ConfigError(f"family_repeat counts must be >= 1, got {bad[0]}")
    rows = [r for r in rows for _ in range(cfg.family_repeat.get(r.get("family", ""), 1))]
    return rows + scene_rows(cfg) + cfg.read_extra()


def scene_rows(cfg: Config) -> list[dict[str, Any]]:
    """Chat samples answering about the image directly, from ``scene_dirs``' ground truth: the
    prompt and *chosen* answer of :func:`agentkit.mllm.train.dpo.preference_pairs` (so ``eval pope
    --mode direct`` and ``mllm-dpo`` ask in the same words). Kind ``scene-<kind>``."""
    from agentkit.mllm.train.dpo import preference_pairs, prompt_messages

    rows: list[dict[str, Any]] = []
    for i, d in enumerate(cfg.scene_dirs):
        for p in preference_pairs(
            d, seed=cfg.seed + i, kinds=cfg.scene_kinds, per_kind=cfg.scene_per_kind
        ):
            rows.append(
                {
                    "messages": [
                        *prompt_messages(p),
                        {"role": "assistant", "content": p["chosen"]},
                    ],
                    "images": p["images"],
                    "kind": f"scene-{p['kind']}",
                }
            )
    return rows


def _fit(
    rows: list[dict[str, Any]], processor: Any, max_length: int, where: str
) -> list[dict[str, Any]]:
    kept, lengths = _vlm.fit(rows, processor, max_length)
    if len(kept) < len(rows):
        print(
            f"[mllm-tooluse] left out {len(rows) - len(kept)} of {len(rows)} samples of {where} "
            f"longer than max_length={max_length} tokens (longest {max(lengths)}); raise "
            "max_length (and the model's max positions) or shorten the prompts",
            flush=True,
        )
    if not kept:
        raise ConfigError(
            f"no sample of {where} fits in max_length={max_length} tokens (shortest "
            f"{min(lengths)}); raise max_length"
        )
    return kept


def finish(trainer: Any, cfg: Config, out: Path, t0: float | None = None) -> Path:
    """Save ``out/model`` (:func:`._vlm.finish`); returns that folder."""
    return _vlm.finish(trainer, cfg, out, "mllm-tooluse", t0)


def train(cfg: Config, out: Path) -> Path:
    """Train, merge and save ``out/model``; returns that folder."""
    t0 = time.perf_counter()
    trainer = make_trainer(cfg, out)
    _vlm.run(trainer, out, cfg.threads)
    return finish(trainer, cfg, out, t0)
