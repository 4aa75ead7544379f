"""``agentkit eval``: measure the shipped models on held-out worlds (``perception``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agentkit.cli._common import console, fail

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
) -> None:
    """Detection mAP50 and attribute accuracy of the detect tool's models on held-out scenes;
    with --asr-clips also the transcribe tool's word error rate."""
    from agentkit.errors import AgentkitError
    from agentkit.mllm.eval.perception import perception as run

    try:
        res = run(scenes, weights=weights, attr=attr, conf=conf, limit=limit, device=device)
        if asr_clips is not None:
            from agentkit.mllm.eval.asr import evaluate_asr

            res["transcribe"] = evaluate_asr(asr_weights, asr_clips, device=device)
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    d = res["detect"]
    console.print(
        f"detect on {d['scenes']} scenes: mAP50 {d['mAP50']:.3f} (mAP50-95 {d['mAP50_95']:.3f}, "
        f"96-class mAP50 {d['full_mAP50']:.3f}); at conf {d['conf']}: precision "
        f"{d['precision']:.3f} recall {d['recall']:.3f}; attributes {d['attribute_accuracy']} "
        f"all four {d['all_four_accuracy']:.3f}",
        highlight=False,
    )
    if "transcribe" in res:
        t = res["transcribe"]
        console.print(
            f"transcribe on {t['clips']} clips: WER {t['wer']:.3f}, sentences exact "
            f"{t['sentence_accuracy']:.3f}, {t['seconds_per_clip']} s per clip",
            highlight=False,
        )


from agentkit.cli.eval_vqa import vqa  # noqa: E402  (its own module: one command, one file)

app.command("vqa")(vqa)
