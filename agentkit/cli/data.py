"""``agentkit data gen scenes|questions|speech``: the procedural worlds, seeded and resumable.

Examples::

    agentkit data gen scenes --out data/scenes --n 1000 --seed 0 --workers 2 --width 320 --height 240
    agentkit data gen questions --scenes data/scenes --out data/questions --per-scene 10 --seed 0
    agentkit data gen speech --questions data/questions/questions.jsonl --out data/speech --n 500
    agentkit data gen tooluse --scenes data/scenes --questions data/questions/questions.jsonl --out data/tooluse

Heavy libraries (bpy, ray, numpy) load only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from agentkit.cli._common import console, fail

app = typer.Typer(no_args_is_help=True, help="Generate the procedural worlds.")


class World(StrEnum):
    scenes = "scenes"
    questions = "questions"
    speech = "speech"
    tooluse = "tooluse"


@app.command("gen")
def gen(
    world: Annotated[
        World, typer.Argument(help="What to generate: scenes, questions, speech or tooluse.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (created; re-running resumes in it).")],
    n: Annotated[
        int | None,
        typer.Option(
            help="How many: scenes to render (seeds SEED..SEED+N-1); scenes to ask about, or "
            "questions to speak (default: all in the input)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed: same seed, same ground truth, byte for byte.")
    ] = 0,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Parallel Ray workers; 1 runs in this process without Ray. Default: every core "
            "for scenes and speech, 1 for questions (thousands per second in one process)."
        ),
    ] = None,
    ray: Annotated[
        str | None, typer.Option("--ray", help="Address of a Ray cluster (default: a local one).")
    ] = None,
    scenes: Annotated[
        Path | None, typer.Option(help="questions: folder of scene_*.json files.")
    ] = None,
    per_scene: Annotated[int, typer.Option(help="questions: questions per scene.")] = 10,
    families: Annotated[
        str | None,
        typer.Option(
            help="questions: comma-separated families (default: CLEVR's 14 templates; "
            "compare_attribute, same_other_count/_exist/_query, not_count, not_exist, every "
            "and most_query/_count/_exist are asked for by name)."
        ),
    ] = None,
    phrasings: Annotated[
        str,
        typer.Option(
            help="questions: the sentences to draw from: templates, clevr (CLEVR's other "
            'forms: "There is a cube; what color is it?") or mixed.'
        ),
    ] = "templates",
    questions: Annotated[
        Path | None, typer.Option(help="speech, tooluse: the questions.jsonl to use.")
    ] = None,
    detections: Annotated[
        str, typer.Option(help="tooluse: gt (the scene graph's objects) or model (the detector).")
    ] = "gt",
    planner: Annotated[
        str, typer.Option(help="tooluse: samples for react, program and/or tree (comma-separated).")
    ] = "react,program",
    unseen: Annotated[
        str, typer.Option(help="tooluse: tools held out of training (comma-separated).")
    ] = "same,compare",
    detect_weights: Annotated[
        str | None, typer.Option(help="tooluse --detections model: detector checkpoint.")
    ] = None,
    tools: Annotated[
        str | None,
        typer.Option(help="tooluse: tools the prompts list, in order (default: all registered)."),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(help="tooluse: openai:URL#MODEL, an LLM that rewrites the questions."),
    ] = None,
    prompt_style: Annotated[
        str,
        typer.Option(
            help="tooluse: how prompts list the tools: full, compact (a small model), or bare "
            "(names only: a core that learns its tools from the samples)."
        ),
    ] = "full",
    actions: Annotated[
        str,
        typer.Option(
            help="tooluse --planner react: how the turns write calls: text (Thought / Action / "
            "Action Input) or code (one program line per turn, observations as comments)."
        ),
    ] = "text",
    engines: Annotated[
        str | None,
        typer.Option(
            help="speech: comma-separated engines from espeak-ng,flite,festival (default: all)."
        ),
    ] = None,
    width: Annotated[int | None, typer.Option(help="scenes: image width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="scenes: image height in pixels.")] = None,
    samples: Annotated[int | None, typer.Option(help="scenes: Cycles samples per pixel.")] = None,
    split: Annotated[str, typer.Option(help="scenes: split name stored in each scene.")] = "train",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Generate WORLD into --out; items already on disk are skipped."""
    from agentkit.errors import AgentkitError
    from agentkit.mllm.worlds import gen as G

    if n is not None and n < 1:
        fail(f"--n {n} is invalid: expected a whole number >= 1", as_json)
    if workers is None:
        workers = 1 if world is World.questions else (os.cpu_count() or 1)
    if workers < 1:
        fail(f"--workers {workers} is invalid: expected >= 1", as_json)
    common = {
        "seed": seed,
        "workers": workers,
        "ray_address": ray,
        "progress": progress and not as_json,
    }
    try:
        if world is World.scenes:
            if n is None:
                fail("scenes need --n: how many scenes to render", as_json)
            opts = {
                k: v
                for k, v in (("width", width), ("height", height), ("samples", samples))
                if v is not None
            }
            summary = G.gen_scenes(out, n=n, split=split, **opts, **common)
        elif world is World.questions:
            if scenes is None:
                fail("questions need --scenes DIR: a folder of scene_*.json files", as_json)
            fams = [f.strip() for f in families.split(",") if f.strip()] if families else None
            summary = G.gen_questions(out, scenes_dir=scenes, n=n, per_scene=per_scene,
                                      families=fams, phrasings=phrasings, **common)  # fmt: skip
        elif world is World.tooluse:
            from agentkit.mllm.data.tooluse import generate

            if scenes is None or questions is None:
                fail("tooluse needs --scenes DIR and --questions FILE", as_json)
            summary = generate(
                scenes, questions, out, detections=detections, seed=seed,
                planners=[p.strip() for p in planner.split(",") if p.strip()],
                unseen=[t.strip() for t in unseen.split(",") if t.strip()],
                detect_weights=detect_weights,
                tools=[t.strip() for t in tools.split(",") if t.strip()] if tools else None,
                teacher=teacher,
                prompt_style=prompt_style,  # type: ignore[arg-type]
                actions=actions,  # type: ignore[arg-type]
            )  # fmt: skip
        else:
            if questions is None:
                fail("speech needs --questions FILE: a questions.jsonl", as_json)
            engs = [e.strip() for e in engines.split(",") if e.strip()] if engines else None
            summary = G.gen_speech(out, questions_file=questions, n=n, engines=engs, **common)
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    brief = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    console.print(f"[bold green]{world.value}[/] -> {out}: " + ", ".join(f"{k}={v}" for k, v in brief.items()),
                  highlight=False)  # fmt: skip
