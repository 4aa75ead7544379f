"""The framework's own cost per step (graph, state, checkpoint, trace, prompt building) as a share
of the model and tool time, measured in the same run. Target: under 2%.

A tiny local transformers model really generates on every controller turn (its text is replaced
by a scripted ReAct reply so the loop runs a fixed chain), and a real tool (``crop``) runs on
every step. Everything else in the wall time of a run is framework overhead.

    python benchmarks/overhead.py [--steps 6] [--runs 3] [--tokens 48]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from agentkit.graph import Agent
from agentkit.mllm.backends.hf import HFBackend
from agentkit.mllm.model import build_tiny_llava
from agentkit.testing import ComputeThenScript
from agentkit.tools.base import ToolRegistry


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=6, help="tool calls per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48, help="tokens the model generates per turn")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentkit-overhead-"))
    corpus = [
        'Thought: crop the image. Action: crop Action Input: {"image": "image_0"} Final Answer: yes'
    ] * 50
    model_dir = build_tiny_llava(work / "tiny", texts=corpus)
    hf = HFBackend(str(model_dir))
    img = work / "scene.png"
    Image.new("RGB", (320, 240), (120, 110, 100)).save(img)
    call = 'Thought: look closer\nAction: crop\nAction Input: {"image": "image_0", "box": [10, 10, 200, 150]}'
    replies = [call] * a.steps + ["Thought: done\nFinal Answer: yes"]
    reg = ToolRegistry.default()

    shares, rows = [], []
    for r in range(a.runs + 1):  # the first run warms caches and is not counted
        backend = ComputeThenScript(hf, replies, a.tokens, "tiny-llava+script")
        agent = Agent(backend, tools=reg, runs_dir=work / "runs")
        t0 = time.perf_counter()
        res = agent.ask("Is there a cube?", images=[img], max_steps=a.steps + 1)
        wall = time.perf_counter() - t0
        tool_s = sum(s.seconds for s in res.steps if s.role == "executor")
        compute = backend.model_seconds + tool_s
        overhead = wall - compute
        if r:
            shares.append(overhead / compute)
            rows.append(
                {
                    "wall_s": wall,
                    "model_s": backend.model_seconds,
                    "tool_s": tool_s,
                    "overhead_s": overhead,
                    "overhead_per_step_ms": 1000 * overhead / len(res.steps),
                    "share": overhead / compute,
                }
            )
    for row in rows:
        print(json.dumps({k: round(v, 4) for k, v in row.items()}))
    med = statistics.median(shares)
    print(
        f"framework overhead / (model + tool) time: {med:.2%} (median of {a.runs} runs, {a.steps} tool steps each); "
        f"target < 2%: {'OK' if med < 0.02 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
