"""The tiny LLaVA-style core: a standard transformers folder built from a few sizes.

Architecture (DESIGN §4)::

    image (RGB, any size) ─ CLIPImageProcessor: resize to image_size x image_size, normalise
        ─ CLIP vision tower (ViT, patch x patch patches + CLS, vision_layers layers of vision_dim)
        ─ features of the second-to-last layer, CLS dropped ("default" strategy):
          (image_size / patch)^2 tokens of vision_dim
        ─ MLP projector (linear, GELU, linear) to text_dim
        ─ spliced into the text where the ``<image>`` tokens stand
    text ─ byte-level BPE tokenizer (trained here with ``tokenizers``) ─ Llama decoder
        (text_layers layers of text_dim, tied input/output embeddings)

It is a plain :class:`~transformers.LlavaForConditionalGeneration`, so
``AutoModelForImageTextToText.from_pretrained(dir)``, ``AutoProcessor.from_pretrained(dir)``,
``generate``, peft and trl all work on it unchanged and offline. The sizes travel with the weights
in ``agentkit_model.json`` (like whisper's ``ModelDimensions``).

Chat format (the tokenizer's chat template)::

    <s><|system|>
    You are ...</s>
    <|user|>
    <image>
    How many cubes?</s>
    <|assistant|>
    Thought: ...</s>

Each ``<image>`` is expanded by the processor to (image_size / patch)^2 image tokens. Assistant
contents are wrapped in ``{% generation %}`` so trl can mask the loss to the model's own turns.

Usage::

    from agentkit.mllm.model import build_tiny_llava
    build_tiny_llava("runs/tiny", texts=open("corpus.txt").read().splitlines())
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.errors import ConfigError, WeightsNotFound

if TYPE_CHECKING:
    from transformers import LlavaForConditionalGeneration, PreTrainedTokenizerFast

#: The file, next to ``config.json``, that records the sizes a folder was built with.
CONFIG_FILE = "agentkit_model.json"

BOS, EOS, PAD, UNK, IMAGE = "<s>", "</s>", "<pad>", "<unk>", "<image>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE, *ROLE_TOKENS]

# Content may be a string or a list of parts ({"type": "image"} / {"type": "text", "text": ...}),
# the form processors' apply_chat_template uses. Images render as one <image> each, in order.
CHAT_TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for part in content %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render(message['content']) }}{{ eos_token }}{% endgeneration %}"
    "{% else %}{{ render(message['content']) }}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@dataclass
class ModelConfig:
    """Sizes of a tiny LLaVA-style model. Saved as ``agentkit_model.json`` in its folder."""

    image_size: int = 64  # pixels, square; images are resized (not cropped) to this
    patch: int = 8  # ViT patch side in pixels; image tokens = (image_size / patch)^2
    vision_dim: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    text_dim: int = 256
    text_layers: int = 4
    text_heads: int = 4
    vocab_size: int = 4000  # upper bound; a small corpus may yield fewer BPE tokens
    max_positions: int = 2048  # longest sequence, image tokens included
    init_std: float = 0.02  # std of the random initial weights (transformers' initializer_range)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size % self.patch:
            raise ConfigError(
                f"image_size {self.image_size} must be a multiple of patch {self.patch}"
            )
        for dim, heads, what in (
            (self.vision_dim, self.vision_heads, "vision"),
            (self.text_dim, self.text_heads, "text"),
        ):
            if dim % heads:
                raise ConfigError(f"{what}_dim {dim} must be divisible by {what}_heads {heads}")
        if self.vocab_size < 300:
            raise ConfigError(
                f"vocab_size {self.vocab_size} is too small: the byte alphabet alone is 256 tokens"
            )

    @property
    def image_tokens(self) -> int:
        """Tokens one image occupies in the text (CLS dropped)."""
        return (self.image_size // self.patch) ** 2

    def save(self, folder: str | Path) -> None:
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> ModelConfig:
        """Read the sizes of a folder built by :func:`build_tiny_llava`."""
        p = Path(folder) / CONFIG_FILE
        if not p.is_file():
            raise WeightsNotFound(
                f"{p} not found: {folder} was not built by agentkit.mllm.model.build_tiny_llava"
            )
        data = json.loads(p.read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Byte-level, so any string encodes (no unknown tokens). Special tokens: ``<pad>`` (id 0),
    ``<s>``, ``</s>``, ``<unk>``, ``<image>`` and the role markers; ``tokenizer.image_token`` is
    ``<image>``. No special tokens are added on encode: the chat template writes ``<s>`` itself.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
        padding_side="left",  # batched generation appends on the right
    )


def build_processor(tokenizer: PreTrainedTokenizerFast, cfg: ModelConfig) -> Any:
    """A :class:`~transformers.LlavaProcessor` whose image token count matches the vision tower."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        # Resize the whole image to a square instead of CLIP's shortest-edge + centre crop: the
        # agent asks about every part of the image, and a crop would hide its sides.
        size={"height": cfg.image_size, "width": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
        do_center_crop=False,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch,
        # CLIP adds a CLS token (+1) that the "default" strategy drops again (-1).
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
    )


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    i = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(i, int), token  # one token in, one id out
    return i


def clip_vision_config(sizes: Any) -> Any:
    """The core's CLIP tower config from ``sizes`` (anything with ``image_size``, ``patch``,
    ``vision_dim``, ``vision_layers`` and ``vision_heads``: a :class:`ModelConfig`, a recipe's)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=sizes.vision_dim,
        intermediate_size=4 * sizes.vision_dim,
        num_hidden_layers=sizes.vision_layers,
        num_attention_heads=sizes.vision_heads,
        image_size=sizes.image_size,
        patch_size=sizes.patch,
        projection_dim=sizes.vision_dim,
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast, cfg: ModelConfig
) -> LlavaForConditionalGeneration:
    """A randomly initialised LLaVA model of the given sizes (seeded by ``cfg.seed``)."""
    import torch
    from transformers import (
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    ids = {
        name: _token_id(tokenizer, tok) for name, tok in (("bos", BOS), ("eos", EOS), ("pad", PAD))
    }
    vision = clip_vision_config(cfg)
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_dim,
        intermediate_size=int(8 / 3 * cfg.text_dim) // 16 * 16,  # Llama's SwiGLU width rule
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        initializer_range=cfg.init_std,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=_token_id(tokenizer, IMAGE),
        image_seq_length=cfg.image_tokens,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
    gen.do_sample = False
    return model.eval()


def build_tiny_llava(
    out_dir: str | Path,
    *,
    texts: Iterable[str],
    image_size: int = 64,
    patch: int = 8,
    vision_dim: int = 128,
    vision_layers: int = 3,
    vision_heads: int = 4,
    text_dim: int = 256,
    text_layers: int = 4,
    text_heads: int = 4,
    vocab_size: int = 4000,
    max_positions: int = 2048,
    init_std: float = 0.02,
    seed: int = 0,
    fp16: bool = False,
) -> Path:
    """Train a tokenizer on ``texts``, build a random-init tiny LLaVA and save it to ``out_dir``.

    The folder holds ``config.json``, the weights (fp32, or fp16 with ``fp16=True``), the
    tokenizer, the processor, ``generation_config.json`` and ``agentkit_model.json`` (the sizes).
    The defaults give ~5 M parameters (~10 MB in fp16) and take a few seconds to build.
    A random model with the default ``init_std`` repeats one token; tests that need varied text
    pass ``init_std=0.2``. Returns the folder.
    """
    import torch

    cfg = ModelConfig(
        image_size=image_size,
        patch=patch,
        vision_dim=vision_dim,
        vision_layers=vision_layers,
        vision_heads=vision_heads,
        text_dim=text_dim,
        text_layers=text_layers,
        text_heads=text_heads,
        vocab_size=vocab_size,
        max_positions=max_positions,
        init_std=init_std,
        seed=seed,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    processor = build_processor(tokenizer, cfg)
    model: Any = build_model(tokenizer, cfg)
    if fp16:
        model = model.to(torch.float16)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    cfg.save(out)
    return out


def count_parameters(model: Any) -> dict[str, int]:
    """Parameters per part: vision tower, projector, language model, total (tied weights once)."""
    parts = {
        "vision_tower": model.model.vision_tower,
        "projector": model.model.multi_modal_projector,
        "language_model": model.model.language_model,
    }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
