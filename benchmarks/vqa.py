"""Median latency of a 3-step question through the agent graph, and the share of that time spent
outside model and tool compute (the framework's share: graph, state, checkpoints, trace, media,
prompt building, verification bookkeeping). Target: under 2%.

Default: the embedded default (``--model hf:agentkit-mllm``) answers "What color is the small
cube?" about shipped example scene 0 with its own program (detect -> select -> query) under its
own planner, everything real; model time is the backend's generate calls, timed.

``--model scripted``: a tiny local LLaVA-style model generates ``--tokens`` tokens on every model
turn, timed, and its text is replaced by a scripted reply, so any planner follows a fixed chain:

    detect(image_0) -> select(objects=detect_0, color="red") -> count(detections=select_0)

(``react``: one controller turn per call and one for the Final Answer; ``program``: one turn that
writes the three-line program). ``detect`` uses the shipped ``scenes-yolo`` when it is there,
else a randomly initialised yolov8n (same network and compute, meaningless boxes; the run says
which). Tool time is measured inside each tool. Framework time = wall - model - tools, also split by
phase: the nodes' own work, LangGraph between the nodes, ``Agent.ask`` outside the graph.

    python benchmarks/vqa.py [--model hf:agentkit-mllm|scripted] [--planner react|program]
                             [--runs 5] [--tokens 48] [--prompt-style full|compact|bare]
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
from agentkit.testing import ComputeThenScript
from agentkit.tools.base import ToolRegistry

SCENE = Path(__file__).resolve().parents[1] / "examples" / "scenes" / "scene_000000.png"
QUESTION = "How many red things are there?"
REAL_QUESTION = "What color is the small cube?"  # the shipped core: detect -> select -> query
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


class Recorder:
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


class Phases:
    """Where the framework's time goes in each run: the graph's nodes (less model and tools),
    LangGraph between them (task setup, channel writes, checkpoints), and ``Agent.ask`` outside
    the graph (media store, run folder, trace). Times LangGraph's node runner
    (``langgraph.pregel._runner.run_with_retry``) and ``Agent._run_graph``; with a LangGraph
    that has no such runner the split is left out."""

    def __init__(self) -> None:
        import langgraph.pregel._runner as runner

        self.graph = self.nodes = 0.0
        self.ok = hasattr(runner, "run_with_retry")
        if self.ok:
            runner.run_with_retry = self._timed(runner.run_with_retry, "nodes")
            Agent._run_graph = self._timed(Agent._run_graph, "graph")  # type: ignore[method-assign]

    def _timed(self, fn, what: str):
        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                setattr(self, what, getattr(self, what) + time.perf_counter() - t0)

        return timed

    def reset(self) -> None:
        self.graph = self.nodes = 0.0


def timed_model(spec: str):
    """The backend of ``spec`` with its generate (and beam candidates) timed: ``(backend, clock)``
    where ``clock[0]`` accumulates seconds."""
    from agentkit.mllm.backends.base import load_backend

    backend, clock = load_backend(spec), [0.0]
    for name in ("generate", "candidates"):
        fn = getattr(backend, name, None)
        if fn is None:
            continue

        def timed(*args, _fn=fn, **kw):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                clock[0] += time.perf_counter() - t0

        setattr(backend, name, timed)
    return backend, clock


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="hf:agentkit-mllm", help="a model spec, or scripted")
    ap.add_argument("--planner", choices=("react", "program"), default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=48, help="scripted: tokens per model turn")
    ap.add_argument(
        "--prompt-style",
        choices=("full", "compact", "bare"),
        default=None,
        help="how the controller prompt lists the tools (default: the model's own, else full)",
    )
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentkit-vqa-bench-"))
    weights, which = detector(work)
    reg = ToolRegistry.default()
    opts = Options(tool_weights={"detect": weights}, prompt_style=a.prompt_style)
    if a.model == "scripted":
        planner = a.planner or "react"
        question, make = QUESTION, scripted_models(work, reg, planner, opts, a.tokens)
    else:
        planner, question = a.planner, REAL_QUESTION
        backend, clock = timed_model(a.model)

        def make():
            clock[0] = 0.0
            return backend, lambda: clock[0]

    rows = []
    phases = Phases()
    for r in range(a.runs + 1):  # the first run loads the models and warms caches: not counted
        backend, model_seconds = make()
        timed = TimedTools(reg)
        phases.reset()
        agent = Agent(
            backend, tools=timed.registry, planner=planner, runs_dir=work / "runs", options=opts
        )
        t0 = time.perf_counter()
        res = agent.ask(question, images=[SCENE], max_steps=4)
        wall = time.perf_counter() - t0
        tools = [s for s in res.steps if s.role == "executor"]
        assert len(tools) == 3 and all(s.error is None for s in tools), [
            (s.tool, s.error) for s in tools
        ]
        overhead = wall - model_seconds() - timed.seconds
        if r:
            rows.append({
                "wall_s": wall, "model_s": model_seconds(), "tool_s": timed.seconds,
                "framework_s": overhead, "framework_share": overhead / wall,
                "tools": [s.tool for s in tools], "answer": res.answer,
            })  # fmt: skip
            if phases.ok:
                rows[-1] |= {"nodes_own_s": phases.nodes - model_seconds() - timed.seconds,
                             "langgraph_s": phases.graph - phases.nodes,
                             "outside_graph_s": wall - phases.graph}  # fmt: skip
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    med = statistics.median(r["wall_s"] for r in rows)
    share = statistics.median(r["framework_share"] for r in rows)
    print(
        f"{a.model} ({agent.planner}, {agent.options.prompt_style or 'full'} prompt): 3-step "
        f"question, median latency {med:.3f} s over {a.runs} runs (model "
        f"{statistics.median(r['model_s'] for r in rows):.3f} s, tools "
        f"{statistics.median(r['tool_s'] for r in rows):.3f} s, framework "
        f"{statistics.median(r['framework_s'] for r in rows) * 1000:.1f} ms; detector: {which}); "
        f"framework share of wall time {share:.2%}; target < 2%: "
        f"{'OK' if share < 0.02 else 'MISSED'}"
    )
    if phases.ok:
        ms = {k: statistics.median(r[k] for r in rows) * 1000
              for k in ("nodes_own_s", "langgraph_s", "outside_graph_s")}  # fmt: skip
        print(
            f"framework by phase (medians): the nodes' own work {ms['nodes_own_s']:.1f} ms, "
            f"LangGraph between the nodes {ms['langgraph_s']:.1f} ms, Agent.ask outside the "
            f"graph {ms['outside_graph_s']:.1f} ms"
        )


def scripted_models(work: Path, reg: ToolRegistry, planner: str, opts: Options, tokens: int):
    """``make() -> (backend, model seconds)`` for ``--model scripted``: a tiny LLaVA whose
    tokenizer learned the real prompts (so a prompt is as many tokens as it would be), computing
    ``tokens`` per turn and answering with the scripted chain."""
    # count's list argument is "objects" (or "detections" in older trees): ask its schema
    arg = next(iter(reg["count"].Args.model_fields))
    replies = [
        x.replace("{n}", "0").replace("ARG", arg)
        for x in (REACT if planner == "react" else PROGRAM)
    ]
    recorder = Recorder(replies)
    Agent(recorder, tools=reg, planner=planner, runs_dir=work / "runs", options=opts).ask(
        QUESTION, images=[SCENE], max_steps=4
    )
    corpus = [m.content for call in recorder.calls for m in call] * 4 + replies * 20
    hf = HFBackend(str(build_tiny_llava(work / "tiny", texts=corpus, max_positions=4096)))

    def make():
        backend = ComputeThenScript(hf, replies, tokens, "tiny-llava+script")
        return backend, lambda: backend.model_seconds

    return make


if __name__ == "__main__":
    main()
