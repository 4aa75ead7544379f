"""Constrained decoding (``Options.constrain``): what it costs per token and what it changes.

Asks the shipped example questions (examples/questions, 36 over the 12 example scenes) through the
agent twice per question, with and without the program grammar, alternating (a shared machine
slows both alike), and prints per setting: the controller's seconds per generated token (model
turns only: generation, prompt, grammar), controller replies that did not read, and accuracy
against the ground truth. The ratio of the two per-token times is the grammar's cost. Beam
candidates are off in both (``Options.candidates = 0``), so every controller turn is one greedy
generation and accuracy is that of the greedy programs.

    .venv/bin/python benchmarks/constrained.py [--model hf:agentkit-mllm] [--planner react]
                                               [--limit 36]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from agentkit.graph import Agent
from agentkit.mllm.eval.vqa import is_correct
from agentkit.runtime import Options

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="hf:agentkit-mllm")
    ap.add_argument("--planner", default=None, help="default: what the model folder declares")
    ap.add_argument("--limit", type=int, default=36)
    a = ap.parse_args()
    questions = [
        json.loads(line)
        for line in (EXAMPLES / "questions" / "questions.jsonl").read_text().splitlines()
    ][: a.limit]
    runs = tempfile.mkdtemp(prefix="agentkit-constrained-")
    agents = {
        # No beam candidates: a controller turn is then one greedy generation, so its seconds per
        # token are the decoding's cost (beams, asked for when a program fails, would weigh in
        # differently in the two settings).
        on: Agent(
            a.model, planner=a.planner, runs_dir=runs, options=Options(constrain=on, candidates=0)
        )
        for on in (True, False)
    }
    stats = {on: {"seconds": 0.0, "tokens": 0, "unreadable": 0, "right": 0} for on in agents}
    for q in questions:
        for on, agent in agents.items():
            res = agent.ask(q["question"], images=[EXAMPLES / "scenes" / q["image_filename"]])
            turns = [s for s in res.steps if s.role == "controller"]
            st = stats[on]
            st["seconds"] += sum(s.seconds or 0.0 for s in turns)
            st["tokens"] += sum(s.tokens_out or 0 for s in turns)
            st["unreadable"] += sum(1 for s in turns if s.error)
            st["right"] += int(is_correct(res.answer, str(q["answer"])))
    per_token = {on: st["seconds"] / max(st["tokens"], 1) for on, st in stats.items()}
    for on, st in stats.items():
        print(json.dumps({
            "constrain": on, "questions": len(questions), "accuracy": round(st["right"] / len(questions), 3),
            "unreadable_replies": st["unreadable"], "controller_tokens": st["tokens"],
            "ms_per_token": round(1000 * per_token[on], 2),
        }))  # fmt: skip
    print(
        f"{agents[True].planner}: constrained decoding costs x{per_token[True] / per_token[False]:.2f} "
        "per generated token (controller turns)"
    )


if __name__ == "__main__":
    main()
