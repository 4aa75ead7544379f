"""The ``mllm-align`` recipe: connector alignment on the scene world's image-caption pairs.

Stage 1 of the core (DESIGN §4), as LLaVA's pre-training: each scene image with its caption (the
scene JSON's ``caption``) becomes one chat sample, ``user: <image> Describe the image.`` →
``assistant: <caption>``, with the loss on the caption only. The vision tower is frozen, the MLP
projector trains, and the language model trains too when ``train_lm`` (the shipped core's LM
starts from random weights, so it must; a pretrained base usually keeps its LM frozen here).
``extra_data`` mixes in chat samples of the tool-use format (full-parameter, loss on the
assistant turn), which gives a from-scratch LM its first pass over the runtime's prompts.

With ``base = ""`` the stage also *creates* the shipped architecture: it trains the BPE tokenizer
on the project's corpus (the planners' prompt templates, every registered tool's prompt line, the
questions, the captions and any ``corpus`` files) and builds the random-init tiny LLaVA with
:func:`agentkit.mllm.model.build_tiny_llava` into ``out/base`` (reused when resuming). Otherwise
``base`` is any image-text-to-text folder.

Runs under accelerate through trl's SFTTrainer, resumes from ``out/checkpoints``, and saves the
aligned model to ``out/model``.

Example::

    agentkit train mllm-align --set scenes_dir=data/scenes-train --set max_steps=2000
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.mllm.train import _vlm
from agentkit.mllm.train._fields import f
from agentkit.tools.base import strings_in

PROMPTS = (
    "Describe the image.",
    "What is in this image?",
    "List the objects in the image and where they are.",
)


@dataclass
class Config(_vlm.TrainLoop, _vlm.LengthGrouping, _vlm.ExtraData, _vlm.RuntimeHints):
    description: str = f("Connector (and LM) alignment on scene captions", "one line")
    base: str = f("", "model folder to start from; empty = build the tiny LLaVA core from scratch")
    scenes_dir: str = f("data/scenes-train", "scene JSONs (with `caption`) and their images")
    max_scenes: int = f(0, "use at most this many scenes (0 = all)")
    questions: str = f("", "questions JSONL (agentkit data gen questions) for the tokenizer corpus")
    corpus: list[str] = f(
        [], "more text for the tokenizer: .txt or .jsonl files (strings inside are read)"
    )
    train_projector: bool = f(True, "train the MLP projector")
    train_lm: bool = f(True, "train the language model too (needed when it starts from random)")
    max_length: int = f(4096, "tokens per sample, image tokens included (longer ones are left out)")
    # sizes of a from-scratch core (base = "")
    image_size: int = f(64, "image side in pixels (new core)")
    patch: int = f(8, "ViT patch side (new core)")
    vision_dim: int = f(128, "vision width (new core)")
    vision_layers: int = f(3, "vision layers (new core)")
    vision_heads: int = f(4, "vision heads (new core)")
    text_dim: int = f(256, "LM width (new core)")
    text_layers: int = f(4, "LM layers (new core)")
    text_heads: int = f(4, "LM heads (new core)")
    vocab_size: int = f(4000, "BPE vocabulary bound (new core)")
    max_positions: int = f(4096, "longest sequence the new core takes, image tokens included")
    init_std: float = f(0.02, "std of the random initial weights (new core)")
    warmup_steps: int = f(50, "linear warm-up steps")
    batch: int = f(8, "samples per device per step")
    epochs: float = f(3.0, "passes over the data (max_steps > 0 overrides)")
    fp16: bool = f(False, "save the aligned model in fp16 (the next stage trains in fp32 anyway)")
    seed: int = f(0, "seed of the new core, the prompts and the data order")


# --------------------------------------------------------------------------------------------
# data


def scene_captions(scenes_dir: str | Path, limit: int = 0) -> list[tuple[str, str]]:
    """(image path, caption) for every scene JSON in ``scenes_dir`` whose image exists."""
    d = Path(scenes_dir)
    if not d.is_dir():
        raise ConfigError(
            f"no scenes at {d}; render some with `agentkit data gen scenes --out {d}`"
        )
    pairs = []
    for p in sorted(d.glob("*.json")):
        try:
            scene = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue  # summary files and partial writes are not scenes
        if not isinstance(scene, dict) or not scene.get("caption"):
            continue
        image = d / str(scene.get("image_filename", p.with_suffix(".png").name))
        if image.is_file():
            pairs.append((str(image), str(scene["caption"])))
        if limit and len(pairs) >= limit:
            break
    if not pairs:
        raise ConfigError(f"{d} holds no scene JSON with a caption and its image")
    return pairs


def caption_samples(pairs: list[tuple[str, str]], seed: int) -> list[dict[str, Any]]:
    """One chat sample per pair, the prompt drawn from :data:`PROMPTS` (seeded)."""
    rng = random.Random(seed)
    return [
        {
            "messages": [
                {"role": "user", "content": rng.choice(PROMPTS), "images": [image]},
                {"role": "assistant", "content": caption},
            ],
            "images": [image],
        }
        for image, caption in pairs
    ]


def _file_texts(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise ConfigError(f"tokenizer corpus file {path} does not exist")
    if path.suffix == ".jsonl":
        for line in path.open():
            if line.strip():
                yield from strings_in(json.loads(line))
    else:
        yield from path.read_text().splitlines()


def tokenizer_corpus(
    cfg: Config, captions: list[tuple[str, str]], extra: Sequence[dict[str, Any]] = ()
) -> list[str]:
    """The texts the BPE tokenizer learns from: what the runtime will actually feed the model."""
    import agentkit.planners
    from agentkit.tools.base import ToolRegistry

    texts: list[str] = []
    prompts = Path(agentkit.planners.__file__).resolve().parent / "prompts"
    for p in sorted(prompts.glob("*.txt")):
        texts.extend(p.read_text().splitlines())
    for tool in ToolRegistry.default():
        texts.append(tool.prompt_line())
    texts.extend(PROMPTS)
    texts.extend(c for _, c in captions)
    for path in ([cfg.questions] if cfg.questions else []) + list(cfg.corpus):
        texts.extend(_file_texts(Path(path)))
    for row in extra:  # the extra samples this run trains on (not the whole file)
        texts.extend(strings_in(row["messages"]))
    return [t for t in texts if t.strip()]


def build_core(
    cfg: Config, out: Path, captions: list[tuple[str, str]], extra: Sequence[dict[str, Any]] = ()
) -> Path:
    """``out/base``: a new tokenizer + random-init tiny LLaVA (kept as it is when it exists, so a
    resumed run keeps its token ids)."""
    from agentkit.mllm.model import CONFIG_FILE, build_tiny_llava

    folder = out / "base"
    if _vlm.rank() > 0:
        # Under several processes the first one builds; the rest wait for its last file
        # (agentkit_model.json is written after the weights and the processor).
        return _vlm.wait_for(folder / CONFIG_FILE, folder)
    if (folder / CONFIG_FILE).is_file() and (folder / "config.json").is_file():
        return folder
    return build_tiny_llava(
        folder,
        texts=tokenizer_corpus(cfg, captions, extra),
        image_size=cfg.image_size,
        patch=cfg.patch,
        vision_dim=cfg.vision_dim,
        vision_layers=cfg.vision_layers,
        vision_heads=cfg.vision_heads,
        text_dim=cfg.text_dim,
        text_layers=cfg.text_layers,
        text_heads=cfg.text_heads,
        vocab_size=cfg.vocab_size,
        max_positions=cfg.max_positions,
        init_std=cfg.init_std,
        seed=cfg.seed,
    )


# --------------------------------------------------------------------------------------------
# parts


def vision_part(model: Any) -> Any:
    """The vision encoder of a LLaVA / Qwen2-VL / Idefics3 model (frozen here)."""
    inner = getattr(model, "model", model)
    for name in ("vision_tower", "visual", "vision_model"):
        if hasattr(inner, name):
            return getattr(inner, name)
    raise ConfigError(f"cannot find the vision tower of {type(model).__name__}")


def projector_part(model: Any) -> Any:
    """The connector between vision features and the LM (LLaVA's multi_modal_projector,
    Qwen2-VL's patch merger, Idefics3's connector)."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "multi_modal_projector"):
        return inner.multi_modal_projector
    if hasattr(inner, "connector"):
        return inner.connector
    visual = getattr(inner, "visual", None)
    if visual is not None and hasattr(visual, "merger"):
        return visual.merger
    raise ConfigError(f"cannot find the projector of {type(model).__name__}")


def language_part(model: Any) -> Any:
    inner = getattr(model, "model", model)
    for name in ("language_model", "text_model"):
        if hasattr(inner, name):
            return getattr(inner, name)
    raise ConfigError(f"cannot find the language model of {type(model).__name__}")


def set_trainable(model: Any, cfg: Config) -> dict[str, int]:
    """Freeze everything, then unfreeze the projector and (``train_lm``) the LM and its head.
    Returns trainable parameter counts per part."""
    for p in model.parameters():
        p.requires_grad_(False)
    counts = {"projector": 0, "language_model": 0}
    if cfg.train_projector:
        for p in projector_part(model).parameters():
            p.requires_grad_(True)
            counts["projector"] += p.numel()
    if cfg.train_lm:
        lm_params = list(language_part(model).parameters())
        head = model.get_output_embeddings()
        if head is not None:
            lm_params += list(head.parameters())
        for p in lm_params:
            if not p.requires_grad:
                counts["language_model"] += p.numel()
            p.requires_grad_(True)
    if not any(counts.values()):
        raise ConfigError("nothing to train: set train_projector and/or train_lm")
    # A merger inside the vision tower (Qwen2-VL) stays trainable; the rest of the tower does not.
    return counts


def make_trainer(cfg: Config, out: Path) -> Any:
    """The SFTTrainer for ``cfg`` (the core built first when ``base`` is empty)."""
    from trl import SFTConfig, SFTTrainer

    captions = scene_captions(cfg.scenes_dir, cfg.max_scenes)
    extra = cfg.read_extra()
    base = cfg.base or str(build_core(cfg, out, captions, extra))
    rows = caption_samples(captions, cfg.seed) + extra
    model, processor = _vlm.load_base(base)
    kept, lengths = _vlm.fit(rows, processor, cfg.max_length)
    if len(kept) < len(rows):
        print(
            f"[mllm-align] left out {len(rows) - len(kept)} of {len(rows)} samples longer than "
            f"max_length={cfg.max_length} tokens (longest {max(lengths)})",
            flush=True,
        )
    if not kept:
        raise ConfigError(f"no sample fits in max_length={cfg.max_length} tokens; raise it")
    rows = kept
    set_trainable(model, cfg)
    args = _vlm.training_args(SFTConfig, cfg, out, assistant_only_loss=False)
    trainer: Any = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_vlm.dataset(rows, ("messages", "images", "length")),
        data_collator=_vlm.ChatCollator(processor, cfg.max_length),
        processing_class=processor,
        callbacks=[_vlm.save_config_callback(cfg, "align")],
    )
    trainer.agentkit_base = base  # the folder the sizes file is copied from
    return trainer


def finish(trainer: Any, cfg: Config, out: Path, t0: float | None = None) -> Path:
    """Save ``out/model`` (:func:`._vlm.finish`); returns that folder."""
    return _vlm.finish(trainer, cfg, out, "mllm-align", t0, merge=False)


def train(cfg: Config, out: Path) -> Path:
    """Align and save ``out/model``; returns that folder."""
    t0 = time.perf_counter()
    trainer = make_trainer(cfg, out)
    _vlm.run(trainer, out, cfg.threads)
    return finish(trainer, cfg, out, t0)
