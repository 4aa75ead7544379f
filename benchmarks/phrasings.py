"""How the agent answers questions in a user's words rather than the question templates' words,
with and without rewording (``Options.reword``), on held-out renders.

The question generator (``agentkit data gen questions``) words every question as one of CLEVR's
templates, and the embedded core learned its programs from those. Users write "How many red
things?", "Count the spheres.", "How many spheres are made of metal?", "Is the red cube large?",
"Can you count the green things?". This writes such questions about each scene of a held-out
folder, with their answers from the scene's ground truth (seeded), and asks each twice through
the same agent: with rewording on (the default) and off. It prints one JSON line per question
and the number right per wording.

    .venv/bin/python benchmarks/phrasings.py [--scenes data/scenes-heldout] [--per-scene 6]
                                             [--seed 0] [--model hf:agentkit-mllm] [--limit N]

Spoken: ``--write DIR`` writes the same questions as ``DIR/questions.jsonl`` (the wording as the
family) and stops; then

    agentkit data gen speech --questions DIR/questions.jsonl --out DIR/speech
    agentkit eval vqa --planner program --questions DIR/questions.jsonl --scenes SCENES \
        --audio-dir DIR/speech --json

asks each typed and spoken and reports both, per wording (docs/asr.md).

The wordings are :data:`agentkit.mllm.worlds.wordings.WORDINGS` (``--more-forms``: with
``MORE_WORDINGS``; ``--composed``: ``COMPOSED_WORDINGS`` instead). A wording that needs one
object ("Is the red cube large?") is asked only where exactly one object fits it. The scenes:
``agentkit data gen scenes --out data/scenes-heldout --n 20 --seed 900000 --samples 24 --split
val`` (docs/vqa.md); without them, the six shipped example scenes.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from pathlib import Path

from agentkit.graph import Agent
from agentkit.mllm.eval.vqa import is_correct
from agentkit.mllm.worlds.wordings import COMPOSED_WORDINGS, MORE_WORDINGS, WORDINGS, Wording
from agentkit.runtime import Options

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scenes"


def questions(
    scenes: Path, per_scene: int, seed: int, forms: list[Wording] = WORDINGS
) -> list[dict[str, str]]:
    """``per_scene`` questions about each scene of ``scenes`` (distinct wordings, seeded)."""
    out = []
    for path in sorted(scenes.glob("scene_*.json")):
        scene = json.loads(path.read_text())
        rng = random.Random(f"phrasings:{seed}:{scene['image_filename']}")
        image = str(scenes / scene["image_filename"])
        asked = []
        for name, make in rng.sample(forms, len(forms)):
            if len(asked) == per_scene:
                break
            if (qa := make(scene, rng)) is not None:
                asked.append(
                    {"image": image, "wording": name, "question": qa[0], "expected": qa[1]}
                )
        out.extend(asked)
    return out


def write(qs: list[dict[str, str]], out: Path) -> Path:
    """The questions as ``out/questions.jsonl`` in the question generator's format (the wording
    as the family), for ``agentkit data gen speech`` and ``agentkit eval vqa --audio-dir``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": f"{Path(q['image']).stem.removeprefix('scene_')}-w{k:02d}", "question": q["question"],
         "answer": q["expected"], "family": q["wording"], "wording": q["wording"],
         "image_filename": Path(q["image"]).name}
        for k, q in enumerate(qs)
    ]  # fmt: skip
    path = out / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenes", type=Path, default=None,
        help="default: data/scenes-heldout, else the shipped examples/scenes (seeds 0-5, "
        "outside every training range)",
    )  # fmt: skip
    ap.add_argument("--per-scene", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="hf:agentkit-mllm")
    ap.add_argument("--limit", type=int, default=None)
    forms_group = ap.add_mutually_exclusive_group()
    forms_group.add_argument(
        "--more-forms", action="store_true",
        help="also the forms only the speech model's training speaks (wordings.MORE_WORDINGS)",
    )  # fmt: skip
    forms_group.add_argument(
        "--composed", action="store_true",
        help="the composed forms instead (wordings.COMPOSED_WORDINGS: 60 carriers around "
        "descriptions drawn per question; the speech model's composed leg speaks them)",
    )  # fmt: skip
    ap.add_argument(
        "--write", type=Path, default=None, metavar="DIR",
        help="write the questions to DIR/questions.jsonl and stop (to speak them: see the "
        "docstring)",
    )  # fmt: skip
    a = ap.parse_args()
    if a.scenes is None:
        held_out = Path("data/scenes-heldout")
        a.scenes = held_out if any(held_out.glob("scene_*.json")) else EXAMPLES
        print(json.dumps({"scenes": str(a.scenes)}), flush=True)
    if not any(a.scenes.glob("scene_*.json")):
        raise SystemExit(f"no scenes in {a.scenes}: see this script's docstring for the command")
    forms = (
        COMPOSED_WORDINGS if a.composed else WORDINGS + MORE_WORDINGS if a.more_forms else WORDINGS
    )
    asked_all = questions(a.scenes, a.per_scene, a.seed, forms)[: a.limit]
    if a.write is not None:
        path = write(asked_all, a.write)
        print(json.dumps({"questions": str(path), "scenes": str(a.scenes)}))
        return
    runs = Path(tempfile.mkdtemp(prefix="agentkit-phrasings-"))
    agents = {
        reword: Agent(a.model, runs_dir=runs, options=Options(reword=reword))
        for reword in (True, False)
    }
    right: Counter[tuple[str, bool]] = Counter()
    asked: Counter[str] = Counter()
    for q in asked_all:
        asked[q["wording"]] += 1
        row: dict[str, object] = dict(q)
        for reword, agent in agents.items():
            answer = agent.ask(q["question"], images=[q["image"]]).answer or ""
            ok = is_correct(answer, q["expected"])
            right[q["wording"], reword] += ok
            row["reworded" if reword else "not reworded"] = answer
        print(json.dumps(row), flush=True)
    for name in asked:
        print(f"{name:45} {right[name, True]:3} / {asked[name]:3} reworded, "
              f"{right[name, False]:3} not")  # fmt: skip
    total = sum(asked.values())
    on, off = (sum(right[n, r] for n in asked) for r in (True, False))
    print(json.dumps({"questions": total, "right_reworded": on, "right_not_reworded": off,
                      "model": a.model}))  # fmt: skip


if __name__ == "__main__":
    main()
