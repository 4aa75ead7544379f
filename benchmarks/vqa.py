"""Median latency of a 3-step question through the agent graph, and the share of that time spent
outside model and tool compute (the framework's share: graph, state, checkpoints, trace, prompt
building, verification bookkeeping). Target: under 2%.

The model really runs: a tiny local LLaVA-style model (the shape of the embedded default) generates
``--tokens`` tokens on every model turn, timed; its text is then replaced by a scripted reply so the
run follows a fixed 3-tool chain on a shipped example scene:

    detect(image_0) -> select(objects=detect_0, color="red") -> count(detections=select_0)

(``react``: one controller turn per call and one for the Final Answer; ``program``: one turn that
writes the three-line program). The tools really run too: ``detect`` with the shipped
``scenes-yolo`` when it is there, else a randomly initialised yolov8n (same network and compute,
meaningless boxes; the run says which). Framework time = wall time - model time - tool time.

    python benchmarks/vqa.py [--planner react|program] [--runs 5] [--tokens 48]
                             [--prompt-style full|compact|bare]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from agentkit.graph import Agent
from agentkit.mllm.backends.base import Generation
from agentkit.mllm.backends.hf import HFBackend
from agentkit.mllm.model import build_tiny_llava
from agentkit.runtime import Options
from agentkit.tools.base import ToolRegistry

SCENE = Path(__file__).resolve().parents[1] / "examples" / "scenes" / "scene_000000.png"
QUESTION = "How many red things are there?"
REACT = [
    'Thought: find the objects\nAction: detect\nAction Input: {"image": "image_0"}',
    'Thought: keep the red ones\nAction: select\nAction Input: {"objects": "detect_0", "color": "red"}',
    'Thought: count them\nAction: count\nAction Input: {"ARG": "select_0"}',
    "Thought: counted\nFinal Answer: {n}",
]
PROGRAM = [
    "Thought: detect, keep red, count\nProgram:\n"
    "objs = detect(image=image_0)\n"
    'reds = select(objects=objs, color="red")\n'
    "n = count(ARG=reds)\n"
    "ANSWER = n"
]


class RealComputeScripted:
    """Runs the real model for every turn (timed), then answers with the scripted reply."""

    def __init__(self, backend: HFBackend, replies: list[str], tokens: int):
        self.backend, self.replies, self.tokens = backend, replies, tokens
        self.name = "tiny-llava+script"
        self.model_seconds = 0.0
        self.i = 0

    def generate(
        self, messages, *, tools=None, max_new_tokens=256, stop=None, on_token=None
    ) -> Generation:
        t0 = time.perf_counter()
        gen = self.backend.generate(messages, max_new_tokens=self.tokens)
        self.model_seconds += time.perf_counter() - t0
        text = self.replies[min(self.i, len(self.replies) - 1)]
        self.i += 1
        return gen.model_copy(update={"text": text})


class Recorder(RealComputeScripted):
    """The scripted replies without a model, keeping every prompt (to train the tokenizer on)."""

    def __init__(self, replies: list[str]):
        self.replies, self.i, self.calls = replies, 0, []
        self.name = "recorder"

    def generate(self, messages, **kw) -> Generation:
        self.calls.append(messages)
        self.i += 1
        return Generation(text=self.replies[min(self.i - 1, len(self.replies) - 1)], model="rec")


class TimedTools:
    """The registry's tools with their ``run`` timed: tool compute, measured inside the tool (a
    program run ahead computes in the controller's turn, and its steps then reuse the results)."""

    def __init__(self, reg: ToolRegistry):
        self.seconds = 0.0
        self.registry = ToolRegistry([dataclasses.replace(t, run=self._timed(t.run)) for t in reg])

    def _timed(self, run):
        def timed(args, ctx):
            t0 = time.perf_counter()
            try:
                return run(args, ctx)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def detector(work: Path) -> tuple[str, str]:
    """(weights for detect, what they are): the shipped scenes-yolo, else a random yolov8n."""
    from agentkit.errors import WeightsNotFound
    from agentkit.weights import resolve

    try:
        return str(resolve("scenes-yolo")), "scenes-yolo"
    except WeightsNotFound:
        from ultralytics import YOLO

        path = work / "yolov8n-random.pt"
        YOLO("yolov8n.yaml").save(str(path))
        return str(path), "yolov8n random init (scenes-yolo not built yet)"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--planner", choices=("react", "program"), default="react")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=48, help="tokens the model generates per turn")
    ap.add_argument(
        "--prompt-style",
        choices=("full", "compact", "bare"),
        default="full",
        help="how the controller prompt lists the tools (Options.prompt_style)",
    )
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentkit-vqa-bench-"))
    weights, which = detector(work)
    reg = ToolRegistry.default()
    opts = Options(tool_weights={"detect": weights}, prompt_style=a.prompt_style)
    # count's list argument is "objects" (or "detections" in older trees): ask its schema
    arg = next(iter(reg["count"].Args.model_fields))
    replies = [
        x.replace("{n}", "0").replace("ARG", arg)
        for x in (REACT if a.planner == "react" else PROGRAM)
    ]
    # The tokenizer learns the real prompts (as the embedded default's does), so a prompt is as
    # many tokens as it would be there, not one per character of unseen words.
    recorder = Recorder(replies)
    Agent(recorder, tools=reg, planner=a.planner, runs_dir=work / "runs", options=opts).ask(
        QUESTION, images=[SCENE], max_steps=4
    )
    corpus = [m.content for call in recorder.calls for m in call] * 4 + replies * 20
    hf = HFBackend(str(build_tiny_llava(work / "tiny", texts=corpus, max_positions=4096)))

    rows = []
    for r in range(a.runs + 1):  # the first run loads the models and warms caches: not counted
        backend = RealComputeScripted(hf, replies, a.tokens)
        timed = TimedTools(reg)
        agent = Agent(
            backend, tools=timed.registry, planner=a.planner, runs_dir=work / "runs", options=opts
        )
        t0 = time.perf_counter()
        res = agent.ask(QUESTION, images=[SCENE], max_steps=4)
        wall = time.perf_counter() - t0
        tools = [s for s in res.steps if s.role == "executor"]
        assert [s.tool for s in tools] == ["detect", "select", "count"], [s.tool for s in tools]
        assert all(s.error is None for s in tools), [s.error for s in tools]
        tool_s = timed.seconds
        overhead = wall - backend.model_seconds - tool_s
        if r:
            rows.append({
                "wall_s": wall, "model_s": backend.model_seconds, "tool_s": tool_s,
                "framework_s": overhead, "framework_share": overhead / wall,
                "model_turns": backend.i, "answer": res.answer,
            })  # fmt: skip
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    med = statistics.median(r["wall_s"] for r in rows)
    share = statistics.median(r["framework_share"] for r in rows)
    print(
        f"{a.planner} ({a.prompt_style} prompt): 3-step question, median latency {med:.3f} s over {a.runs} runs "
        f"(model {statistics.median(r['model_s'] for r in rows):.3f} s, tools "
        f"{statistics.median(r['tool_s'] for r in rows):.3f} s, detector: {which}); framework "
        f"share of wall time {share:.2%}; target < 2%: {'OK' if share < 0.02 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
