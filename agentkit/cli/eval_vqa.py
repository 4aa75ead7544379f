"""``agentkit eval vqa``: the planners on generated scene questions (registered in ``eval.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agentkit.cli._common import (
    REHEAR,
    ConstrainWords,
    Rehear,
    Reword,
    Threads,
    console,
    fail,
)


def vqa(
    questions: Annotated[
        Path,
        typer.Option(
            help="Questions JSONL (`agentkit data gen questions`), or CLEVR's own question file "
            "(CLEVR_v1.0/questions/CLEVR_val_questions.json, with --scenes CLEVR_v1.0/images/val)."
        ),
    ] = Path("data/questions/questions.jsonl"),
    scenes: Annotated[Path, typer.Option(help="Folder of the questions' scene images.")] = Path(
        "data/scenes"
    ),
    planner: Annotated[str, typer.Option(help="react | plan | program | tree | all.")] = "react",
    model: Annotated[
        str | None,
        typer.Option(
            help="hf:PATH | openai:URL#MODEL | scripted:FILE ({id} = question id); "
            "default $AGENTKIT_MODEL or hf:agentkit-mllm."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Parallel items: 1 runs in-process, N starts a local Ray.")
    ] = 1,
    ray: Annotated[str | None, typer.Option("--ray", help="Ray cluster address.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    out: Annotated[
        Path, typer.Option(help="Results cache (results.jsonl), runs and report.json.")
    ] = Path("runs/eval-vqa"),
    audio_dir: Annotated[
        Path | None,
        typer.Option(help="Speech folder (`agentkit data gen speech`): also ask spoken."),
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Tool calls allowed per question.")] = 8,
    verify: Annotated[
        bool, typer.Option(help="Let the summarizer re-check answers with the detector.")
    ] = True,
    tool_weights: Annotated[
        list[str] | None,
        typer.Option(help="TOOL=WEIGHTS for a tool's checkpoint; repeatable."),
    ] = None,
    prompt_style: Annotated[
        str,
        typer.Option(
            help="full | compact: how prompts list tools (the style the model learned); "
            "auto: the one the model declares, else full."
        ),
    ] = "auto",
    constrain: Annotated[
        bool,
        typer.Option(help="Decode the controller's code under the program grammar (hf: models)."),
    ] = True,
    constrain_words: ConstrainWords = True,
    run_ahead: Annotated[
        bool,
        typer.Option(
            help="program: run each program ahead on the tools; one that fails gives way to "
            "the likeliest beam-search program that runs."
        ),
    ] = True,
    relax: Annotated[
        bool,
        typer.Option(
            help="program: read a select that finds nothing a later call needs "
            "without one of its words."
        ),
    ] = True,
    reword: Reword = True,
    rehear: Rehear = REHEAR,
    code_context: Annotated[
        str,
        typer.Option(
            help="transcript | program: what react's (and tree's) code turns read of the work so "
            "far; auto: what the model declares, else transcript."
        ),
    ] = "auto",
    branches: Annotated[
        str,
        typer.Option(
            help="react | program: how tree's branches answer their sub-questions; auto: what "
            "the model declares, else react."
        ),
    ] = "auto",
    threads: Threads = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Accuracy per family and program length, steps, tool calls, latency and failures of a
    planner (or `all` four) on held-out questions. Resumable: finished items are cached in --out."""
    from agentkit.cli.ask import _parse_tool_weights
    from agentkit.errors import AgentkitError
    from agentkit.graph import default_model_spec
    from agentkit.mllm.eval.vqa import evaluate

    try:
        report = evaluate(
            questions,
            scenes,
            planner=planner,
            model=model or default_model_spec(),
            out=out,
            workers=workers,
            ray_address=ray,
            limit=limit,
            audio_dir=audio_dir,
            max_steps=max_steps,
            verify=verify,
            tool_weights=_parse_tool_weights(tool_weights or [], as_json),
            prompt_style=prompt_style,
            constrain=constrain,
            run_ahead=run_ahead,
            relax=relax,
            reword=reword,
            rehear=rehear,
            code_context=code_context,
            branches=branches,
            constrain_words=constrain_words,
            threads=threads,
            progress=not as_json,
        )
    except AgentkitError as e:
        fail(str(e), as_json)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    print_table(report)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_table(report: dict[str, Any]) -> None:
    """One row per planner: accuracy overall, per family and length, cost, latency, failures."""
    from rich.table import Table

    rows = report["planners"]
    families = sorted({f for m in rows.values() for f in m["per_family"]})
    lengths = sorted({n for m in rows.values() for n in m["per_length"]})
    spoken = any("spoken_vs_typed" in m for m in rows.values())
    t = Table(
        title=f"VQA on {report['questions']} questions · {report['model']} "
        f"({report['ran']} run, {report['cached']} cached)"
    )
    t.add_column("planner")
    t.add_column("acc %", justify="right")
    for f in families:
        t.add_column(f, justify="right")
    for n in lengths:
        t.add_column(f"len {n}", justify="right")
    for c in ("steps", "tools", "p50 s", "p90 s"):
        t.add_column(c, justify="right")
    if spoken:
        t.add_column("spoken/typed %", justify="right")
    t.add_column("failures")
    for name, m in rows.items():
        cells = [name, _pct(m["accuracy"])]
        cells += [_pct(m["per_family"].get(f, {}).get("accuracy")) for f in families]
        cells += [_pct(m["per_length"].get(n, {}).get("accuracy")) for n in lengths]
        lat = m["latency_s"]
        cells += [
            f"{m['mean_steps']:.1f}",
            f"{m['mean_tool_calls']:.1f}",
            "-" if lat["median"] is None else f"{lat['median']:.2f}",
            "-" if lat["p90"] is None else f"{lat['p90']:.2f}",
        ]
        if spoken:
            sv = m.get("spoken_vs_typed", {})
            cells.append(f"{_pct(sv.get('spoken'))}/{_pct(sv.get('typed'))}")
        cells.append(", ".join(f"{k} {v}" for k, v in m["failures"].items()) or "-")
        t.add_row(*cells)
    console.print(t)
    for name, m in rows.items():
        heard = m.get("spoken_vs_typed", {}).get("heard")
        if heard:
            ex, mis = heard["exact"], heard["misheard"]
            console.print(
                f"{name}, spoken: heard as said {ex['n']} (right {ex['correct']}), misheard "
                f"{mis['n']} (right {mis['correct']})"
                + (
                    f"; heard again after a failed run {re['n']} (right {re['correct']})"
                    if (re := heard.get("reheard")) and re["n"]
                    else ""
                )
                + (f", transcript not kept {heard['unknown']}" if heard["unknown"] else ""),
                highlight=False,
            )
