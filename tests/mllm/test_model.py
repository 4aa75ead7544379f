"""The tiny LLaVA builder: a standard transformers folder that loads offline and generates."""

from __future__ import annotations

import json

import pytest

from agentkit.errors import ConfigError, WeightsNotFound
from agentkit.mllm.model import (
    CONFIG_FILE,
    IMAGE,
    ModelConfig,
    build_tiny_llava,
    count_parameters,
    train_tokenizer,
)

CORPUS = [
    "Thought: I need to find the red cubes. Action: detect",
    'Action Input: {"image": "image_0", "classes": ["cube", "sphere"]}',
    "Observation: 3 cubes, 2 spheres, 1 cylinder. Final Answer: there are 3 cubes.",
    "Is there a metal sphere left of the small green cylinder? Yes.",
] * 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny") / "model", texts=CORPUS)


def test_tokenizer_roundtrips_any_text_and_keeps_special_tokens():
    tok = train_tokenizer(CORPUS, vocab_size=400)
    for text in ["Final Answer: 3 cubes", 'naïve 東京 🙂 {"a": 1}', ""]:
        assert tok.decode(tok.encode(text)) == text  # byte-level: nothing is unknown
    assert tok.image_token == IMAGE
    ids = tok.encode(f"a{IMAGE}b")
    assert tok.convert_tokens_to_ids(IMAGE) in ids
    assert tok.encode("Thought:")[0] != tok.bos_token_id  # the chat template adds <s>, not encode
    assert len(tok) <= 400


def test_chat_template_puts_images_in_the_user_turn_and_masks_assistant_turns():
    tok = train_tokenizer(CORPUS, vocab_size=400)
    conv = [
        {"role": "system", "content": "Use tools."},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}],
        },
        {"role": "assistant", "content": "Thought: look"},
    ]
    text = tok.apply_chat_template(conv, tokenize=False)
    assert (
        text
        == "<s><|system|>\nUse tools.</s>\n<|user|>\n<image>\n<image>\nCompare.</s>\n<|assistant|>\nThought: look</s>\n"
    )
    prompt = tok.apply_chat_template(conv[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")
    enc = tok.apply_chat_template(
        conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "Thought: look</s>"


def test_folder_loads_offline_with_auto_classes(tiny):
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    processor = AutoProcessor.from_pretrained(tiny)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    cfg = ModelConfig.load(tiny)
    assert cfg == ModelConfig()
    assert json.loads((tiny / CONFIG_FILE).read_text())["image_size"] == 64

    # One <image> expands to (64/8)^2 = 64 tokens, and the model accepts the result.
    conv = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "How many cubes?"}],
        }
    ]
    text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    image = Image.new("RGB", (120, 90), (200, 30, 30))  # not square: resized, not cropped
    inputs = processor(text=text, images=[image], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    assert (
        int((inputs["input_ids"] == model.config.image_token_index).sum()) == cfg.image_tokens == 64
    )
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert (
        out.shape[1] == inputs["input_ids"].shape[1] + 5
        or processor.tokenizer.eos_token_id in out[0]
    )


def test_default_sizes_are_about_five_million_parameters(tiny):
    from transformers import AutoModelForImageTextToText

    counts = count_parameters(AutoModelForImageTextToText.from_pretrained(tiny))
    # The vocabulary is what a 4-sentence corpus yields (~400), so the embedding is small here;
    # with the full 4000-token vocabulary the total is ~5 M.
    assert 3.5e6 < counts["total"] < 6e6
    assert (
        counts["vision_tower"] + counts["projector"] + counts["language_model"] == counts["total"]
    )


def test_fp16_folder_is_half_the_size(tmp_path, tiny):
    half = build_tiny_llava(tmp_path / "half", texts=CORPUS, fp16=True)
    size = (half / "model.safetensors").stat().st_size
    assert size < 0.55 * (tiny / "model.safetensors").stat().st_size


def test_bad_sizes_and_missing_config_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="multiple of patch"):
        ModelConfig(image_size=60, patch=8)
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(text_dim=250, text_heads=4)
    with pytest.raises(WeightsNotFound, match="build_tiny_llava"):
        ModelConfig.load(tmp_path)
