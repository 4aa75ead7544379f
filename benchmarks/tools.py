"""Per-tool latency on this machine, and what the wrapper costs over the library it wraps.

    .venv/bin/python benchmarks/tools.py            # table
    .venv/bin/python benchmarks/tools.py --json     # one JSON object per tool
    .venv/bin/python benchmarks/tools.py --repeat 20 --only detect,ocr

For each tool: the first call through ``call_tool`` in a fresh model cache (load + first
inference; the libraries are already imported), then the warm median; and the median of calling the underlying library
directly on the same input with the same loaded model, interleaved call by call with the tool so
both see the same machine load. ``ratio`` = tool warm / library (target <= 1.05). ``n`` pairs
per tool: ``--repeat`` at least, more for a fast tool, enough to fill ``--seconds`` (a 5 ms
segment call's median over 15 pairs moved the ratio by +-5% from run to run).

The image is a shipped example scene (``examples/scenes``), the box its first object's. SAM is
the shipped compact one (``scenes-sam``): what the tool returns costs time in proportion to the
mask's outline (COCO RLE), and a random-init SAM answers a box with noise that takes ~10x longer
to encode than an object's mask. The other models are random-init ones of the shipped
architectures, built here in a temporary folder: yolov8n (from ultralytics' yaml) and a 128-d
whisper with n_audio_ctx 1500. Their speeds do not depend on the weights' values, except
whisper's, whose decode length does: its checkpoint caps it with ``sample_len`` so both sides
decode the same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def in_fresh_thread(fn: Callable[[], Any]) -> None:
    """Run ``fn`` the way ``call_tool`` runs a tool: in a new thread, waited for.

    Measured here: torch's intra-op thread count differs between the main thread (2, the cores)
    and new threads (1: ultralytics sets OMP_NUM_THREADS=1 on import, which new OpenMP threads
    read), and on a loaded 2-core machine the 2-thread main thread ran yolov8n 5-20x slower. Both
    sides run in fresh threads so the ratio measures the wrapper, not the threading.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


SCENE = Path(__file__).resolve().parents[1] / "examples" / "scenes" / "scene_000003"


def make_inputs(d: Path) -> dict[str, Path]:
    """A rendered scene, a UI screenshot and a 3 s 16 kHz wav."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    shutil.copy(SCENE.with_suffix(".png"), d / "scene.png")
    ui = Image.new("RGB", (360, 140), (245, 245, 245))
    draw = ImageDraw.Draw(ui)
    font = ImageFont.load_default(size=22)
    for text, xy in {"Settings": (24, 20), "Battery 87%": (24, 80), "Wi-Fi": (220, 20)}.items():
        draw.text(xy, text, fill=(20, 20, 20), font=font)
    ui.save(d / "ui.png")
    t = np.arange(3 * 16_000) / 16_000
    with wave.open(str(d / "speech.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes((0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes())
    return {"scene": d / "scene.png", "ui": d / "ui.png", "wav": d / "speech.wav"}


def make_checkpoints(d: Path) -> dict[str, Path]:
    import torch
    from ultralytics import YOLO
    from whisper.model import ModelDimensions, Whisper

    from agentkit.tools._vision import resolve_weights

    torch.manual_seed(0)
    YOLO("yolov8n.yaml").save(d / "yolov8n.pt")
    dims = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=128, n_audio_head=2, n_audio_layer=2,
                n_vocab=51865, n_text_ctx=448, n_text_state=128, n_text_head=2, n_text_layer=2)  # fmt: skip
    opts = {"sample_len": 16, "without_timestamps": True}
    torch.save(
        {
            "dims": dims,
            "model_state_dict": Whisper(ModelDimensions(**dims)).state_dict(),
            "transcribe_options": opts,
        },
        d / "whisper.pt",
    )
    sam = resolve_weights("scenes-sam")  # shipped: its masks are objects' (module docstring)
    return {"yolo": d / "yolov8n.pt", "sam": sam, "whisper": d / "whisper.pt"}


def cases(inp: dict[str, Path], ck: dict[str, Path]) -> list[dict[str, Any]]:
    """(tool, args, direct) where direct(models) calls the library on the same input (the file),
    with the model the tool loaded. "same image" compares against SAM's predict alone: a library
    user keeps the embedding; the tool must decode and hash the image to find it (~1.5 ms)."""
    import cv2
    import numpy as np

    first_box = json.loads(SCENE.with_suffix(".json").read_text())["objects"][0]["bbox"]

    def yolo(models):
        return models[("yolo", str(ck["yolo"].absolute()), "cpu")]

    def sam(models):
        return models[("sam", str(ck["sam"].absolute()), "cpu")]

    def whisper_direct(models):
        import whisper

        tr = models[("whisper", str(ck["whisper"].absolute()), "cpu")]
        tr.model.transcribe(
            whisper.load_audio(str(inp["wav"])),
            temperature=0.0,
            fp16=False,
            language="en",
            verbose=None,
            **tr.options,
        )

    def sam_cold_tool(tool_call):
        def run(models):
            sam(models)._embeddings.clear()  # forget the embedding: measure a new image
            tool_call()

        return run

    def sam_cold_direct(models):
        p = sam(models).predictor
        # segment-anything's README: cv2.imread, BGR -> RGB, set_image, predict.
        p.set_image(cv2.cvtColor(cv2.imread(str(inp["scene"])), cv2.COLOR_BGR2RGB))
        p.predict(box=np.array(first_box, dtype=np.float32), multimask_output=False)

    def sam_warm_direct(models):
        sam(models).predictor.predict(
            box=np.array(first_box, dtype=np.float32), multimask_output=False
        )

    box = {"image": str(inp["scene"]), "boxes": [first_box], "weights": str(ck["sam"])}
    return [
        {"name": "detect", "tool": "detect", "args": {"image": str(inp["scene"]), "weights": str(ck["yolo"])},
         "direct": lambda m: yolo(m).predict(str(inp["scene"]), conf=0.25, device="cpu", verbose=False)},
        {"name": "caption", "tool": "caption", "args": {"image": str(inp["scene"]), "weights": str(ck["yolo"])},
         "direct": lambda m: yolo(m).predict(str(inp["scene"]), conf=0.25, device="cpu", verbose=False)},
        {"name": "segment (1 box, same image)", "tool": "segment", "args": box, "direct": sam_warm_direct},
        {"name": "segment (1 box, new image)", "tool": "segment", "args": box, "direct": sam_cold_direct, "wrap": sam_cold_tool},
        {"name": "ocr", "tool": "ocr", "args": {"image": str(inp["ui"])},
         "direct": lambda m: m[("ocr", "rapidocr", "cpu")](str(inp["ui"]))},
        {"name": "transcribe (3 s)", "tool": "transcribe", "args": {"audio": str(inp["wav"]), "language": "en", "weights": str(ck["whisper"])},
         "direct": whisper_direct, "repeat": 5},
    ]  # fmt: skip


def bench(case: dict[str, Any], repeat: int, seconds: float = 2.0) -> dict[str, Any]:
    import importlib

    from agentkit.tools.base import ModelCache, Tool, ToolContext, call_tool

    tool = Tool.from_module(importlib.import_module(f"agentkit.tools.{case['tool']}"))
    ctx = ToolContext(models=ModelCache())

    def call() -> None:
        call_tool(tool, case["args"], ctx)

    first = timed(call)
    tool_run = case["wrap"](call) if "wrap" in case else (lambda _m: call())
    models = ctx.models._models
    direct = case["direct"]
    once = timed(lambda: in_fresh_thread(lambda: direct(models)))  # warm the direct path too
    # at least ``repeat`` pairs, and enough of a fast tool's to fill ``seconds``: the median of
    # 15 calls of 5 ms moves by a few percent from run to run, of 200 it does not
    n = max(case.get("repeat", repeat), min(400, int(seconds / (2 * max(once, 1e-4)))))
    tool_t, lib_t = [], []
    for _ in range(n):  # interleaved, so both see the same load from other processes
        tool_t.append(timed(lambda: tool_run(models)))
        lib_t.append(timed(lambda: in_fresh_thread(lambda: direct(models))))
    warm, lib = statistics.median(tool_t), statistics.median(lib_t)
    return {
        "tool": case["name"],
        "first_s": round(first, 3),
        "warm_ms": round(1000 * warm, 1),
        "library_ms": round(1000 * lib, 1),
        "ratio": round(warm / lib, 3),
        "n": n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--repeat", type=int, default=15, help="warm calls per tool at least (transcribe: 5)"
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="fast tools: as many more warm pairs as fill about this time (0: --repeat only)",
    )
    ap.add_argument("--only", default="", help="comma-separated tool names")
    ap.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        inp, ck = make_inputs(d), make_checkpoints(d)
        only = {s for s in a.only.split(",") if s}
        rows = [
            bench(c, a.repeat, a.seconds) for c in cases(inp, ck) if not only or c["tool"] in only
        ]
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(
        f"{'tool':30} {'first call s':>12} {'warm ms':>9} {'library ms':>10} {'ratio':>6} {'n':>4}"
    )
    for r in rows:
        print(
            f"{r['tool']:30} {r['first_s']:12.2f} {r['warm_ms']:9.1f} {r['library_ms']:10.1f} {r['ratio']:6.3f} {r['n']:4d}"
        )
    print("first call: load + first inference in a fresh model cache (libraries already imported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
