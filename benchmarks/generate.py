"""Tokens per second through HFBackend.generate vs raw ``model.generate`` on the same model.

The backend's number includes everything a role pays per call: chat template, image opened from
disk and preprocessed, generation, decoding. The raw number times only ``model.generate`` on
inputs prepared beforehand, so the ratio is the backend's whole overhead. Both run greedy with
the KV cache, the same prompt (one image + a question) and the same ``max_new_tokens``, so they
produce the same tokens; repetitions alternate between the two (other work on a shared machine
slows both alike) and the medians are compared. Target: ratio >= 0.95.

    .venv/bin/python benchmarks/generate.py                 # builds the tiny model in a temp dir
    .venv/bin/python benchmarks/generate.py --model PATH    # any image-text-to-text folder
    .venv/bin/python benchmarks/generate.py --reps 9 --max-new-tokens 128 --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

CORPUS = [
    "Thought: I need to find the red cubes first.",
    "Action: detect",
    'Action Input: {"image": "image_0", "classes": ["cube", "sphere", "cylinder"]}',
    "Observation: 3 cubes, 2 spheres and 1 cylinder.",
    "Thought: I have counted them. Final Answer: there are 3 cubes.",
] * 40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", type=Path, help="model folder (default: build the tiny LLaVA in a temp dir)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--device", default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is steadiest on a shared 2-core machine)",
    )
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from PIL import Image

    from agentkit.mllm.backends.base import Message
    from agentkit.mllm.backends.hf import HFBackend
    from agentkit.mllm.model import build_tiny_llava, count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        folder = a.model or build_tiny_llava(Path(tmp) / "tiny-llava", texts=CORPUS)
        image = Path(tmp) / "scene.png"
        im = Image.new("RGB", (320, 240), (60, 60, 60))
        im.paste((200, 30, 30), (40, 40, 120, 120))
        im.save(image)
        messages = [
            Message(
                role="system", content="You answer questions about images. Use tools when needed."
            ),
            Message(role="user", content="How many red cubes are in the image?", images=[image]),
        ]

        backend = HFBackend(folder, device=a.device)
        model = backend.model
        inputs = backend.prepare(messages)  # the raw path gets its inputs for free
        n_in = int(inputs["input_ids"].shape[1])
        kwargs = {"max_new_tokens": a.max_new_tokens, "do_sample": False, "use_cache": True}

        def raw() -> tuple[int, float]:
            t = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(**inputs, **kwargs)
            return int(out.shape[1]) - n_in, time.perf_counter() - t

        def through_backend() -> tuple[int, float]:
            t = time.perf_counter()
            g = backend.generate(messages, max_new_tokens=a.max_new_tokens)
            return g.tokens_out, time.perf_counter() - t

        raw(), through_backend()  # warm-up: first-call allocations, lazy imports
        raw_rates: list[float] = []
        backend_rates: list[float] = []
        tokens: set[int] = set()
        for _ in range(a.reps):
            for fn, rates in ((raw, raw_rates), (through_backend, backend_rates)):
                n, s = fn()
                tokens.add(n)
                rates.append(n / s)
        prep = []
        for _ in range(a.reps):
            t = time.perf_counter()
            backend.prepare(messages)
            prep.append(time.perf_counter() - t)

        params = (
            count_parameters(model)["total"]
            if type(model).__name__ == "LlavaForConditionalGeneration"
            else sum(p.numel() for p in model.parameters())
        )
        r, b = statistics.median(raw_rates), statistics.median(backend_rates)
        print(
            f"model      {folder.name}: {params / 1e6:.1f} M parameters, {backend.device}, {model.dtype}, torch threads {torch.get_num_threads()}"
        )
        print(
            f"prompt     {n_in} tokens (image included); generated {sorted(tokens)} tokens; {a.reps} reps each, alternating"
        )
        print(
            f"raw        model.generate       {r:8.1f} tokens/s (median; min {min(raw_rates):.1f}, max {max(raw_rates):.1f})"
        )
        print(
            f"backend    HFBackend.generate   {b:8.1f} tokens/s (median; min {min(backend_rates):.1f}, max {max(backend_rates):.1f})"
        )
        call_s = a.max_new_tokens / b
        print(
            f"overhead   template + image + processor: {statistics.median(prep) * 1e3:.1f} ms per call ({statistics.median(prep) / call_s:.2%} of a call)"
        )
        print(f"ratio      backend / raw = {b / r:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
