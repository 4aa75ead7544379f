"""``agentkit eval``: measure the shipped models on held-out worlds (``perception``, ``inventory``,
``tooluse``, ``pope``, ``vqa``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agentkit.cli._common import ConstrainWords, console, fail

app = typer.Typer(help="Measure models on held-out worlds.", no_args_is_help=True)


@app.command()
def perception(
    scenes: Annotated[
        Path, typer.Option(help="Folder of held-out rendered scenes (scene_*.json + .png).")
    ] = Path("data/scenes-heldout"),
    weights: Annotated[str, typer.Option(help="Detector checkpoint name or path.")] = "scenes-yolo",
    attr: Annotated[
        str | None,
        typer.Option(help="Attribute head name or path (default: the one detect would use)."),
    ] = None,
    conf: Annotated[
        float | None,
        typer.Option(help="Operating confidence; default: chosen by F1 on these scenes."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score only the first N scenes.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    asr_clips: Annotated[
        Path | None,
        typer.Option(help="Held-out speech clips (*.wav + *.json, e.g. data/asr/test): adds WER."),
    ] = None,
    asr_weights: Annotated[
        str, typer.Option(help="Transcribe checkpoint name or path.")
    ] = "speech-whisper",
    asr_option: Annotated[
        list[str] | None,
        typer.Option(
            help="Decoding setting KEY=VALUE (JSON value) replacing the checkpoint's, e.g. "
            "beam_size=5 or beam_size=null; repeatable."
        ),
    ] = None,
    segment_weights: Annotated[
        str | None,
        typer.Option(help="Segment checkpoint name or path (scenes-sam): adds box/point mIoU."),
    ] = None,
    detect: Annotated[
        bool, typer.Option(help="Score the detector (--no-detect: only what else is asked).")
    ] = True,
) -> None:
    """Detection mAP50 and attribute accuracy of the detect tool's models on held-out scenes;
    with --asr-clips also the transcribe tool's word error rate, with --segment-weights the segment
    tool's mask IoU for box and single-point prompts."""
    from agentkit.errors import AgentkitError
    from agentkit.mllm.eval.perception import perception as run

    try:
        res: dict = {}
        if detect or segment_weights is not None:
            res = run(scenes, weights=weights, attr=attr, conf=conf, limit=limit, device=device,
                      segment_weights=segment_weights, detect=detect)  # fmt: skip
        if asr_clips is not None:
            from agentkit.mllm.eval.asr import evaluate_asr
            from agentkit.mllm.train import key_values

            res["transcribe"] = evaluate_asr(
                asr_weights, asr_clips, device=device,
                options=key_values(asr_option or [], "--asr-option"),
            )  # fmt: skip
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    if "detect" in res:
        d = res["detect"]
        console.print(
            f"detect on {d['scenes']} scenes: mAP50 {d['mAP50']:.3f} (mAP50-95 "
            f"{d['mAP50_95']:.3f}, 96-class mAP50 {d['full_mAP50']:.3f}); at conf {d['conf']}: "
            f"precision {d['precision']:.3f} recall {d['recall']:.3f}; attributes "
            f"{d['attribute_accuracy']} all four {d['all_four_accuracy']:.3f}",
            highlight=False,
        )
    if "segment" in res:
        s = res["segment"]
        console.print(
            f"segment on {s['objects']} objects: box-prompt mIoU {s['box_mIoU']:.3f} (filled box "
            f"{s['filled_box_mIoU']:.3f}), point-prompt mIoU {s['point_mIoU']:.3f}; "
            f"{s['ms_per_image_encode']} ms per image, {s['ms_per_box_prompt']} ms per box",
            highlight=False,
        )
    if "transcribe" in res:
        t = res["transcribe"]
        console.print(
            f"transcribe on {t['clips']} clips: WER {t['wer']:.3f}, sentences exact "
            f"{t['sentence_accuracy']:.3f}, {t['seconds_per_clip']} s per clip; words not heard: "
            + ", ".join(
                f"{k} {v['wrong']:.2f} of {v['said']}" for k, v in t["words_wrong"].items()
            ),
            highlight=False,
        )


@app.command()
def inventory(
    scenes: Annotated[
        Path,
        typer.Option(
            help="Each image's objects with a point on each: CLEVR's scenes file "
            "(CLEVR_v1.0/scenes/CLEVR_val_scenes.json), a hand-made scene JSON, or a folder of "
            "scene_*.json."
        ),
    ],
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the images (default: the scenes' folder), e.g. CLEVR_v1.0/images/val."
        ),  # fmt: skip
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Detector checkpoint name or path (default: the tool's).")
    ] = None,
    conf: Annotated[
        float | None, typer.Option(help="Confidence threshold (default: the tool's).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score only the first N images.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """The detect tool against an inventory of each image, matched by points, not boxes: real
    CLEVR renders through CLEVR's own scenes file, any image through a hand-made one."""
    from agentkit.errors import AgentkitError
    from agentkit.mllm.eval.inventory import evaluate_inventory

    try:
        r = evaluate_inventory(scenes, images, weights=weights, conf=conf, limit=limit,
                               device=device)  # fmt: skip
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(r, indent=1))
        return
    console.print(
        f"detect on {r['images']} images, {r['objects']} objects: recall {r['recall']:.3f}, "
        f"precision {r['precision']:.3f}; attributes {r['attribute_accuracy']}; all four right "
        f"{r['all_four_accuracy']:.3f} of those found, {r['objects_all_right']:.3f} of all; "
        f"count right {r['images_count_right']:.3f}, inventory exact {r['images_exact']:.3f} "
        "of images",
        highlight=False,
    )
    for c, n in r["confusions"].items():
        console.print(f"  {n:>4}  {c}", highlight=False)


@app.command()
def tooluse(
    data: Annotated[
        Path, typer.Option(help="Tooluse folder with test.jsonl / test_unseen.jsonl.")
    ] = Path("data/mllm/tooluse"),
    model: Annotated[
        str, typer.Option(help="hf:PATH | openai:URL#MODEL: the model to score.")
    ] = "hf:agentkit-mllm",
    split: Annotated[
        list[str] | None, typer.Option(help="seen and/or unseen (default both).")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Only these sample kinds (program, tool_call, final, ...)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="A seeded sample of N per split (0 = all).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    constrain: Annotated[
        bool,
        typer.Option(
            help="Decode code turns under the program grammar, as the agent does (hf: models); "
            "GPT4Tools scores free generation, the default."
        ),
    ] = False,
    constrain_words: ConstrainWords = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """GPT4Tools' SR_thought / SR_action / SR_args / SR on held-out tool-use samples, for tools
    seen in training and tools described only in the prompt."""
    from rich.progress import Progress

    from agentkit.errors import AgentkitError
    from agentkit.mllm.eval.tooluse import evaluate

    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("tooluse", total=None)
            res = evaluate(
                model, data, splits=split or ["seen", "unseen"], kinds=kind or [], limit=limit,
                seed=seed, on_item=lambda i, n: bar.update(task, completed=i, total=n),
                constrain=constrain, constrain_words=constrain_words,
            )  # fmt: skip
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    for name in split or ["seen", "unseen"]:
        r = res[name]
        console.print(
            f"{name} tools ({r['n']} samples): SR_thought {r['SR_thought']}, SR_action "
            f"{r['SR_action']}, SR_args {r['SR_args']}, SR {r['SR']}",
            highlight=False,
        )
        for k, kr in r["by_kind"].items():
            console.print(f"  {k:<11} n={kr['n']:<4} SR {kr['SR']}", highlight=False)


@app.command()
def pope(
    scenes: Annotated[
        Path, typer.Option(help="Held-out rendered scenes (scene_*.json + .png).")
    ] = Path("data/scenes-heldout"),
    model: Annotated[
        list[str] | None,
        typer.Option(help="hf:PATH | openai:URL#MODEL; repeat to compare (e.g. SFT vs DPO)."),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="direct (the model alone), agent (through the graph) or both.")
    ] = "both",
    planner: Annotated[str, typer.Option(help="Planner of the agent mode.")] = "program",
    scoring: Annotated[
        str,
        typer.Option(help='direct mode: likelihood ("Yes." vs "No.") or generate (greedy reply).'),
    ] = "likelihood",
    limit: Annotated[int, typer.Option(help="Use the first N scenes (0 = all).")] = 50,
    per_scene: Annotated[int, typer.Option(help="Present (and absent) probes per scene.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the probes.")] = 0,
    runs_dir: Annotated[Path, typer.Option(help="Where agent-mode runs are kept.")] = Path(
        "runs/eval/pope"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """POPE object-hallucination probes (random, popular, adversarial): accuracy, precision,
    recall, F1 and yes-ratio per model and mode, all on the same probes."""
    from rich.progress import Progress

    from agentkit.errors import AgentkitError
    from agentkit.mllm.eval.pope import agent_answerer, direct_answerer, evaluate

    if mode not in ("direct", "agent", "both"):
        fail(f"--mode must be direct, agent or both, not {mode!r}", as_json)
    try:
        answerers = {}
        for spec in model or ["hf:agentkit-mllm"]:
            if mode in ("direct", "both"):
                answerers[f"{spec} direct/{scoring}"] = direct_answerer(spec, scoring)
            if mode in ("agent", "both"):
                answerers[f"{spec} agent/{planner}"] = agent_answerer(spec, planner, runs_dir)
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("pope", total=None)
            res = evaluate(
                answerers, scenes, limit=limit, per_scene=per_scene, seed=seed,
                on_item=lambda i, n: bar.update(task, completed=i, total=n),
            )  # fmt: skip
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    for name, by_setting in res["results"].items():
        for setting, m in by_setting.items():
            console.print(
                f"{name:<40} {setting:<12} acc {m['accuracy']} F1 {m['f1']} "
                f"yes {m['yes_ratio']} unanswered {m['unanswered']}",
                highlight=False,
            )


from agentkit.cli.eval_vqa import vqa  # noqa: E402  (its own module: one command, one file)

app.command("vqa")(vqa)
