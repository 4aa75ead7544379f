"""Shared pieces of the three MLLM stages (``mllm-align``, ``mllm-tooluse``, ``mllm-dpo``).

* :func:`load_base` — any transformers image-text-to-text folder (the tiny LLaVA core, or a
  Qwen2-VL / Idefics3 / LLaVA checkpoint on disk) as a float32 model and its processor.
* :func:`conversation` — a training sample's messages in the exact form
  :meth:`agentkit.mllm.backends.hf.HFBackend.prepare` gives the processor at inference, so the
  model learns on the token sequence it will be prompted with.
* :class:`ChatCollator` / :class:`PreferenceCollator` — batches of (prompt with images,
  completion). The prompt is encoded by the processor exactly as at inference (chat template with
  ``add_generation_prompt=True``, then ``processor(text, images)``); the completion is the rest of
  the chat-template text after it (the last assistant turn and its end-of-turn token), tokenized
  alone. Loss goes on the completion only, so it works for any chat template, with or without
  ``{% generation %}`` markers, and on the last assistant turn only (earlier assistant turns in
  the history are context).
* :func:`lora_config` — LoRA on the language model's projections only (a regex, so a vision
  tower's ``q_proj`` / ``k_proj`` / ``v_proj`` are never wrapped).
* :func:`training_args` / :class:`SaveConfigCallback` / :func:`save_folder` — the trl/transformers
  arguments every stage shares, the recipe written into each checkpoint, and the shipped folder.

Batches are token ids (``input_ids``, ``attention_mask``: batch x length), ``completion_mask``
(1 on completion tokens) and whatever image tensors the processor returns (``pixel_values`` and,
for Qwen2-VL, ``image_grid_thw``; for Idefics3, ``pixel_attention_mask``).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError, WeightsNotFound
from agentkit.mllm.train._fields import f

IMAGE_PLACEHOLDER = "<image>"

#: LoRA targets: the attention and MLP projections of the language model only. LLaVA and
#: Qwen2-VL name it ``language_model``, Idefics3 ``text_model``; their vision towers use other
#: module paths (``vision_tower``, ``visual``, ``vision_model``) and are never matched.
LORA_TARGET = (
    r".*(language_model|text_model)\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)


@dataclass
class TrainLoop:
    """Training-loop options every MLLM stage shares; a stage redeclares a field to change its
    default (its recipe file sets the shipped values)."""

    lr: float = f(1e-3, "peak learning rate (AdamW)")
    scheduler: str = f("cosine", "learning-rate schedule (transformers' lr_scheduler_type)")
    warmup_steps: int = f(20, "linear warm-up steps")
    batch: int = f(4, "samples per device per step")
    grad_accum: int = f(1, "gradient accumulation steps")
    epochs: float = f(2.0, "passes over the data (max_steps > 0 overrides)")
    max_steps: int = f(0, "optimizer steps (0 = from epochs)")
    log_steps: int = f(10, "log the loss every N steps")
    save_steps: int = f(200, "checkpoint every N steps (resume point)")
    workers: int = f(0, "dataloader workers")
    threads: int = f(0, "torch CPU threads (0 = torch's default; 1 is faster on a busy machine)")
    gradient_checkpointing: bool = f(False, "recompute activations (saves memory on a big base)")


@dataclass
class LoraOptions:
    """LoRA on the language model (the stages that tune an existing model)."""

    lora_r: int = f(16, "LoRA rank")
    lora_alpha: int = f(32, "LoRA scale numerator (scale = alpha / r)")
    lora_dropout: float = f(0.05, "LoRA dropout")
    lora_target: str = f(LORA_TARGET, "regex over module names that get LoRA")
    merge_scale: float = f(
        1.0,
        "scale of the learned LoRA update merged into the base: 1 = the tuned model, between 0 "
        "and 1 a weight-space mix of base and tuned (WiSE-FT: keeps more of what the base knew); "
        "rerun with the same --out to re-merge the last checkpoint at another scale",
    )

    def check_lora(self) -> None:
        """Fails on a rank or merge scale no run can use, before any model loads."""
        if self.lora_r < 1:
            raise ConfigError(f"lora_r must be >= 1, got {self.lora_r}")
        if self.merge_scale <= 0:
            raise ConfigError(
                f"merge_scale must be > 0 (1 = the tuned model), got {self.merge_scale}"
            )


@dataclass
class LengthGrouping:
    """For the stages whose datasets carry each sample's token count (:func:`fit`)."""

    group_by_length: bool = f(
        False,
        "batch samples of similar token length: less padding when lengths vary (ReAct turns "
        "beside short programs or captions)",
    )


@dataclass
class ExtraData:
    """More chat samples mixed into a stage's own (another planner's turns, program samples)."""

    extra_data: str = f(
        "", "chat samples (tool-use JSONL) mixed into training, loss on the last assistant turn"
    )
    extra_kinds: list[str] = f([], "only these kinds of extra samples (empty = all)")
    extra_max: int = f(0, "use a seeded sample of at most this many extra samples (0 = all)")
    extra_kind_max: dict[str, int] = f(
        {},
        "kind -> at most this many extra samples of that kind (a seeded sample, before extra_max)",
    )
    seed: int = f(0, "seed of the sampling, the init and the data order")

    def read_extra(self) -> list[dict[str, Any]]:
        """The extra samples (none when ``extra_data`` is empty)."""
        if not self.extra_data:
            return []
        return read_jsonl(
            self.extra_data, self.extra_kinds, self.extra_max, self.seed, self.extra_kind_max
        )


@dataclass
class RuntimeHints:
    """What the saved folder's ``agentkit_runtime.json`` declares (see :func:`save_folder`)."""

    planner: str = f(
        "", "planner the model is trained for (agentkit_runtime.json); empty: the base's"
    )
    prompt_style: str = f("", "full | compact prompts the model is trained on; empty: the base's")
    actions: str = f("", "text | code: how the model writes react calls; empty: the base's")
    code_context: str = f(
        "",
        "transcript | program: what its code turns read of the work so far (each line with its "
        "result, or the program so far, continued); empty: the base's",
    )
    branches: str = f(
        "", "react | program: how tree's branches answer their sub-questions; empty: the base's"
    )
    replans: str = f(
        "",
        "rewrite turns after a failed program the model is fit for ('0': its rewrites never "
        "read, stop at once); empty: the base's",
    )
    # not ``threads``: that is the training loop's own (TrainOptions), an int; a stage that has
    # both fields keeps one of them only, and a recipe's "1" then broke the run
    agent_threads: str = f(
        "",
        "torch CPU threads the agent runs the model with (Options.threads, the folder's "
        "\"threads\" hint; '1' for a tiny core, "
        "whose matrices are too small for a second thread to pay); empty: the base's",
    )


# --------------------------------------------------------------------------------------------
# model folders


def load_base(base: str | Path) -> tuple[Any, Any]:
    """(model in float32, processor) from a vision-language folder or a shipped name.

    Training runs in float32 whatever the folder holds (an fp16 shipped folder included): CPU
    fp16 matmuls are slow and fp16 Adam updates underflow.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from agentkit.mllm.backends.hf import _check_vlm_folder, resolve_path

    path = resolve_path(base)
    _check_vlm_folder(path)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    tok = getattr(processor, "tokenizer", None)
    if tok is None or getattr(processor, "chat_template", None) is None:
        raise WeightsNotFound(
            f"{path} has no processor with a tokenizer and a chat template; the training stages "
            "need the same processor files the hf backend uses"
        )
    if (
        tok.pad_token is None
    ):  # padding a batch needs one; the end-of-sequence token is the usual stand-in
        tok.pad_token = tok.eos_token
    return model, processor


def save_folder(
    model: Any,
    processor: Any,
    out: Path,
    *,
    base: str | Path,
    fp16: bool,
    hints: dict[str, str] | None = None,
) -> Path:
    """Save ``model`` (cast to fp16 when asked) and ``processor`` to ``out``; keep the base's
    ``agentkit_model.json`` so the sizes travel with the weights, and its
    ``agentkit_runtime.json`` (planner, prompt style) updated with the non-empty ``hints``."""
    import torch

    from agentkit.mllm.backends.base import RUNTIME_HINTS_FILE
    from agentkit.mllm.backends.hf import read_runtime_hints, resolve_path
    from agentkit.mllm.model import CONFIG_FILE

    out.mkdir(parents=True, exist_ok=True)
    if fp16:
        model = model.to(torch.float16)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    src = resolve_path(base) / CONFIG_FILE if base else None
    if src is not None and src.is_file():
        shutil.copy(src, out / CONFIG_FILE)
    merged = (read_runtime_hints(resolve_path(base)) if base else {}) | {
        k: v for k, v in (hints or {}).items() if v
    }
    if merged:
        (out / RUNTIME_HINTS_FILE).write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return out


def runtime_hints_of(cfg: Any) -> dict[str, str]:
    """The ``planner`` / ``prompt_style`` / ``actions`` / ``code_context`` / ``branches`` /
    ``replans`` / ``threads`` a stage's config names for the saved model."""
    keys = ("planner", "prompt_style", "actions", "code_context", "branches", "replans")
    hints = {k: str(getattr(cfg, k, "") or "") for k in keys}
    return {**hints, "threads": str(getattr(cfg, "agent_threads", "") or "")}


def finish(
    trainer: Any, cfg: Any, out: Path, stage: str, t0: float | None = None, *, merge: bool = True
) -> Path:
    """Save the trained model to ``out/model`` (main process only), the LoRA adapters merged
    into it when ``merge``, with the runtime hints ``cfg`` names (:func:`runtime_hints_of`) over
    its base's; returns that folder."""
    import time

    folder = out / "model"
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        if merge:
            model = _merge(model, cfg.merge_scale)
        base = getattr(trainer, "agentkit_base", None) or cfg.base
        save_folder(
            model, trainer.processing_class, folder, base=base, fp16=cfg.fp16,
            hints=runtime_hints_of(cfg),
        )  # fmt: skip
        took = f" in {time.perf_counter() - t0:.0f} s" if t0 is not None else ""
        what = "merged model" if merge else "model"
        print(f"[{stage}] {trainer.state.global_step} steps{took}; {what} in {folder}", flush=True)
    return folder


def _merge(model: Any, scale: float) -> Any:
    """The LoRA model's adapters merged into its base at ``scale`` times their learned update
    (peft's ``rescale_adapter_scale``: for LoRA, exactly WiSE-FT's weight-space mix; at 1 the
    plain merge, bit for bit)."""
    from peft.helpers import rescale_adapter_scale

    with rescale_adapter_scale(model, scale):
        return model.merge_and_unload()


def rank() -> int:
    """This process's global rank under ``accelerate launch`` / ``torchrun`` (0 when alone)."""
    import os

    return int(os.environ.get("RANK", "0"))


def wait_for(marker: Path, result: Path, timeout_s: float = 1800.0) -> Path:
    """Wait until ``marker`` exists (another process is writing it), then return ``result``."""
    import time

    start = time.monotonic()
    while not marker.is_file():
        if time.monotonic() - start > timeout_s:
            raise WeightsNotFound(
                f"waited {timeout_s:.0f} s for rank 0 to write {marker}; did it fail? see its log"
            )
        time.sleep(1.0)
    return result


def last_checkpoint(folder: Path) -> str | None:
    """The newest ``checkpoint-N`` under ``folder`` (the trainer resumes from it), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


# --------------------------------------------------------------------------------------------
# samples


def read_jsonl(
    path: str | Path,
    kinds: Sequence[str] = (),
    limit: int = 0,
    seed: int = 0,
    kind_limits: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Samples from a JSONL file, optionally only the given ``kind`` values; with ``limit``, a
    seeded uniform sample of that many (in file order), not the first ones: the file is grouped by
    scene, so its head would cover only the first few scenes. ``kind_limits`` caps kinds the same
    way first (a rare kind kept whole beside a common one cut down)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"no training data at {p}; generate it with `agentkit data gen tooluse --out {p.parent}`"
        )
    rows = []
    with p.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{p}:{n} is not JSON: {e}") from e
            if "messages" not in row:
                raise ConfigError(f"{p}:{n} has no 'messages'; expected the tooluse sample format")
            if kinds and row.get("kind") not in kinds:
                continue
            rows.append(row)
    for kind, cap in (kind_limits or {}).items():
        of_kind = [i for i, r in enumerate(rows) if r.get("kind") == kind]
        if len(of_kind) > cap:
            drop = set(of_kind) - set(random.Random(f"{seed}:{kind}").sample(of_kind, cap))
            rows = [r for i, r in enumerate(rows) if i not in drop]
    if limit and len(rows) > limit:
        keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
        rows = [rows[i] for i in keep]
    return rows


def conversation(
    messages: Sequence[dict[str, Any]], images: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[str]]:
    """(chat-template conversation, image paths in order) as ``HFBackend.prepare`` builds them.

    Images listed on a message go before its text as ``{"type": "image"}`` parts. A sample that
    lists its images only at the top level (``images``) gets them on its first user message, in
    place of that message's ``<image>`` placeholders. A literal ``<image>`` left in any text
    becomes ``<img>``, as at inference, so the processor never expects one image too many.
    """
    per_message = any(m.get("images") for m in messages)
    conv: list[dict[str, Any]] = []
    paths: list[str] = []
    pending = [] if per_message else [str(p) for p in images]
    for m in messages:
        text = str(m["content"])
        own = [str(p) for p in m.get("images") or []]
        if pending and m["role"] == "user":
            own, pending = pending, []
            text = text.replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "")
        parts: list[dict[str, Any]] = [{"type": "image"} for _ in own]
        parts.append({"type": "text", "text": text.replace(IMAGE_PLACEHOLDER, "<img>")})
        conv.append({"role": m["role"], "content": parts})
        paths.extend(own)
    if pending:
        raise ConfigError(f"a sample has {len(pending)} images but no user message to show them in")
    return conv, paths


def split_last_turn(processor: Any, conv: list[dict[str, Any]]) -> tuple[str, str]:
    """(prompt text, completion text) for a conversation that ends with the assistant's turn.

    The prompt is the chat template of every message before it with the generation prompt (what
    the backend sends); the completion is what the full template adds after that: the answer and
    its end-of-turn token.
    """
    if not conv or conv[-1]["role"] != "assistant":
        raise ConfigError("a training sample must end with the assistant message to learn")
    prompt = processor.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template(conv, tokenize=False)
    if not full.startswith(prompt):
        raise ConfigError(
            "the chat template renders the history differently once an assistant turn follows, so "
            f"the prompt is not a prefix of the full text; prompt ends {prompt[-80:]!r}, full text "
            f"there reads {full[len(prompt) - 80 : len(prompt)]!r}"
        )
    return prompt, full[len(prompt) :]


def fit(
    rows: list[dict[str, Any]], processor: Any, max_length: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """(rows whose prompt + answer fit in ``max_length`` tokens, every row's token count).

    The kept rows are copies that carry their count as ``length`` (the length-grouped sampler
    reads it; the collators ignore it).

    A longer sample cannot be cut without losing either its answer (the loss) or part of the
    prompt it answers, so it is left out. Counts are text tokens plus the image tokens: how many
    one image adds is measured once with the processor on the first sample that has an image
    (constant for LLaVA-style towers; for resolution-dependent ones such as Qwen2-VL it assumes
    images of similar size).
    """
    texts, n_images = [], []
    for row in rows:
        conv, paths = conversation(row["messages"], row.get("images") or ())
        prompt, completion = split_last_turn(processor, conv)
        texts.append((prompt, completion, paths))
        n_images.append(len(paths))
    tok = processor.tokenizer
    text_lens = (
        [
            len(ids)
            for ids in tok([p + c for p, c, _ in texts], add_special_tokens=False)["input_ids"]
        ]
        if texts
        else []
    )
    per_image = 0
    for (prompt, _, paths), n in zip(texts, n_images, strict=True):
        if n:
            with_images = processor(
                text=[prompt], images=[open_images(paths)], add_special_tokens=False
            )["input_ids"][0]
            plain = tok(prompt, add_special_tokens=False)["input_ids"]
            per_image = max(0, (len(with_images) - len(plain)) // n)
            break
    lengths = [t + n * per_image for t, n in zip(text_lens, n_images, strict=True)]
    kept = [{**r, "length": n} for r, n in zip(rows, lengths, strict=True) if n <= max_length]
    return kept, lengths


def open_images(paths: Iterable[str]) -> list[Any]:
    from agentkit.media import open_image

    return [open_image(p) for p in paths]


# --------------------------------------------------------------------------------------------
# batches


def encode(
    processor: Any,
    prompts: Sequence[str],
    images: Sequence[Sequence[Any]],
    completions: Sequence[str],
    max_length: int | None = None,
) -> dict[str, Any]:
    """One batch: prompts (with their PIL images) then completions, padding flushed right.

    The prompts go through the processor as one left-padded batch (it expands image tokens and
    returns the pixel tensors); completions are tokenized alone, right-padded, and appended; then
    every row is shifted left so positions start at 0. ``max_length`` cuts the end (the prompt,
    which holds the image tokens, is kept whole first).
    """
    import torch
    from trl.trainer.utils import flush_left

    tok = processor.tokenizer
    has_images = any(len(i) for i in images)
    p = processor(
        text=list(prompts),
        images=[list(i) for i in images] if has_images else None,
        padding=True,
        padding_side="left",
        return_tensors="pt",
        add_special_tokens=False,
    )
    c = tok(
        list(completions),
        padding=True,
        padding_side="right",
        return_tensors="pt",
        add_special_tokens=False,
    )
    prompt_ids, prompt_mask = p["input_ids"], p["attention_mask"]
    input_ids = torch.cat((prompt_ids, c["input_ids"]), dim=1)
    attention_mask = torch.cat((prompt_mask, c["attention_mask"]), dim=1)
    completion_mask = torch.cat((torch.zeros_like(prompt_mask), c["attention_mask"]), dim=1)
    # Token-aligned extras (Qwen2.5-VL's mm_token_type_ids, Gemma's token_type_ids): zeros over
    # the completion, shifted with the ids.
    extra = [
        k
        for k, v in p.items()
        if k not in ("input_ids", "attention_mask")
        and isinstance(v, torch.Tensor)
        and v.shape == prompt_ids.shape
    ]
    extras = [torch.cat((p[k], torch.zeros_like(c["input_ids"])), dim=1) for k in extra]
    attention_mask, input_ids, completion_mask, *extras = flush_left(
        attention_mask, input_ids, completion_mask, *extras
    )
    if max_length is not None and input_ids.shape[1] > max_length:
        keep = max(max_length, int(prompt_mask.sum(1).max()))
        input_ids, attention_mask, completion_mask = (
            input_ids[:, :keep],
            attention_mask[:, :keep],
            completion_mask[:, :keep],
        )
        extras = [e[:, :keep] for e in extras]
    out = dict(p)
    out.update(input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask)
    out.update(zip(extra, extras, strict=True))
    return out


@dataclass
class ChatCollator:
    """Samples ``{"messages": [...], "images": [...]}`` → a batch with ``labels``.

    ``labels`` are the ids on the last assistant turn (its text and end-of-turn token) and -100
    everywhere else: system, user, earlier assistant turns, image tokens and padding.
    ``messages`` may also be a JSON string (how the stages store them in a ``datasets.Dataset``).
    """

    processor: Any
    max_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        prompts, completions, images = [], [], []
        for ex in examples:
            msgs = ex["messages"]
            if isinstance(msgs, str):
                msgs = json.loads(msgs)
            conv, paths = conversation(msgs, ex.get("images") or ())
            prompt, completion = split_last_turn(self.processor, conv)
            prompts.append(prompt)
            completions.append(completion)
            images.append(open_images(paths))
        batch = encode(self.processor, prompts, images, completions, self.max_length)
        labels = batch["input_ids"].clone()
        labels[batch.pop("completion_mask") == 0] = -100
        batch["labels"] = labels
        return batch


@dataclass
class PreferenceCollator:
    """Pairs ``{"prompt": [messages], "chosen": str, "rejected": str, "images": [...]}`` → the
    batch trl's DPOTrainer expects: the chosen rows first, then the rejected rows (same prompts),
    with ``completion_mask`` on the answers."""

    processor: Any
    max_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        prompts: list[str] = []
        chosen: list[str] = []
        rejected: list[str] = []
        images: list[list[Any]] = []
        for ex in examples:
            msgs = ex["prompt"]
            if isinstance(msgs, str):
                msgs = json.loads(msgs)
            conv, paths = conversation(msgs, ex.get("images") or ())
            for answer, sink in ((ex["chosen"], chosen), (ex["rejected"], rejected)):
                turn = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
                prompt, completion = split_last_turn(self.processor, [*conv, turn])
                sink.append(completion)
            prompts.append(prompt)
            images.append(open_images(paths))
        return encode(self.processor, prompts * 2, images * 2, chosen + rejected, self.max_length)


def completion_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log-probabilities of the completion tokens, one per row (a float tensor)."""
    import torch

    inputs = {k: v for k, v in batch.items() if k not in ("completion_mask", "labels")}
    logits = model(**inputs).logits[:, :-1].float()
    target = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()
    logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


# --------------------------------------------------------------------------------------------
# trainer plumbing


def lora_config(
    r: int,
    alpha: int,
    dropout: float,
    target: str = LORA_TARGET,
    modules_to_save: Sequence[str] = (),
) -> Any:
    """peft's LoRA config; ``modules_to_save`` names modules trained in full beside the adapters
    (and merged back with them), e.g. the projector when the vision tower changed."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
        modules_to_save=list(modules_to_save) or None,
    )


def check_lora_targets(model: Any, target: str) -> list[str]:
    """Module names the LoRA regex wraps; fails, naming the regex, when it wraps none."""
    import re

    names = [n for n, _ in model.named_modules() if re.fullmatch(target, n)]
    if not names:
        raise ConfigError(
            f"lora_target {target!r} matches no module of {type(model).__name__}; pass a regex over "
            "its language model's projection names (print model.named_modules() to see them)"
        )
    return names


def training_args(cls: Any, cfg: Any, out: Path, **extra: Any) -> Any:
    """``cls`` (trl's SFTConfig or DPOConfig) filled from the shared stage options.

    Mixed precision: bf16 autocast on a GPU that has it, float32 elsewhere (CPU included).
    Several processes (``accelerate launch`` / ``torchrun``) use NCCL on GPUs and gloo on CPUs:
    without naming gloo, transformers runs each CPU process alone (world size 1).
    """
    import os

    import torch

    cuda = torch.cuda.is_available()
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by accelerate launch / torchrun
    return cls(
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        fp16=False,
        ddp_backend="gloo" if several and not cuda else None,
        # Per-process token means, averaged by DDP. With the default (True) the loss of two CPU
        # processes logged 2x the one-process value on the same data (11.92 vs 5.96).
        average_tokens_across_devices=False,
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=cfg.batch,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=0.0,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        logging_steps=cfg.log_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        save_only_model=False,  # optimizer and scheduler too, so a resumed run continues exactly
        report_to="none",
        remove_unused_columns=False,  # the collators read messages / images themselves
        dataloader_num_workers=cfg.workers,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy=(
            "group_by_length" if getattr(cfg, "group_by_length", False) else "random"
        ),
        disable_tqdm=False,
        max_length=None,  # the collators truncate (keeping image tokens whole)
        **extra,
    )


def save_config_callback(cfg: Any, stage: str) -> Any:
    """A TrainerCallback writing the stage's config into every checkpoint (``agentkit_train.json``),
    so a checkpoint says how it was made."""
    from transformers import TrainerCallback

    payload = json.dumps({"stage": stage, **asdict(cfg)}, indent=1, default=str)

    class _SaveConfig(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    (ckpt / "agentkit_train.json").write_text(payload)

    return _SaveConfig()


def run(trainer: Any, out: Path, threads: int = 0) -> None:
    """``trainer.train()``, resuming from the newest checkpoint under ``out/checkpoints``.

    ``threads`` > 0 sets torch's CPU threads for the run: on a shared machine a spinning second
    thread made the tiny core's matmuls ~8x slower (1.9 vs 0.25 ms per 720x64 linear at load 12).
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    resume = last_checkpoint(out / "checkpoints")
    if resume:
        print(f"resuming from {resume}", flush=True)
        _load_resumed_weights(trainer)
        from transformers import TrainerState

        state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        # the run's last step (the trainer's max_steps, or the checkpoint's own when it counts
        # epochs): Trainer.train would take one step past it before it looks, so load the
        # weights and the state only, and a re-run (another merge_scale) changes nothing else
        limit = trainer.args.max_steps if trainer.args.max_steps > 0 else state.max_steps
        if 0 < limit <= state.global_step:
            trainer._load_from_checkpoint(resume)
            trainer.state = state
            print(f"{resume} is the run's last step: nothing left to train", flush=True)
            return
    trainer.train(resume_from_checkpoint=resume)


def _load_resumed_weights(trainer: Any) -> None:
    """Make the trainer's resume load a full-model checkpoint through ``from_pretrained``.

    ``Trainer._load_from_checkpoint`` reads ``model.safetensors`` with a plain, non-strict
    ``load_state_dict``, but ``save_pretrained`` writes LLaVA-family weights under their legacy
    names (``language_model.model.*``) and only ``from_pretrained`` maps them back: every key
    missed, and a resumed ``mllm-align`` silently went on from the random initial weights at the
    checkpoint's step and learning rate. Peft checkpoints (adapters only) keep the trainer's own
    loader."""
    original = trainer._load_from_checkpoint

    def load(checkpoint: str, model: Any = None) -> None:
        target = model if model is not None else trainer.model
        if hasattr(target, "peft_config") or not (Path(checkpoint) / "model.safetensors").is_file():
            original(checkpoint, model)
            return
        dtype = next(target.parameters()).dtype
        saved = type(target).from_pretrained(checkpoint, dtype=dtype)
        target.load_state_dict(saved.state_dict(), strict=True)

    trainer._load_from_checkpoint = load


def dataset(rows: list[dict[str, Any]], keys: Sequence[str]) -> Any:
    """A ``datasets.Dataset`` of ``rows``; nested values stored as JSON strings (Arrow wants one
    type per column, message lists vary)."""
    from datasets import Dataset

    def cell(v: Any) -> Any:
        return json.dumps(v) if isinstance(v, list | dict) and not _paths(v) else v

    return Dataset.from_list([{k: cell(r.get(k)) for k in keys} for r in rows])


def _paths(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)
