"""``agentkit ask [IMAGE ...] [QUESTION]``: answer a question about images, typed or spoken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentkit.cli._common import (
    IMAGE_SUFFIXES,
    REHEAR,
    ConstrainWords,
    Rehear,
    Reword,
    Threads,
    console,
    fail,
)


def _split_args(args: list[str]) -> tuple[list[Path], str | None]:
    """Image files first, the question last: ``ask a.png b.png "How many cubes?"``."""
    images: list[Path] = []
    words: list[str] = []
    for a in args:
        p = Path(a)
        if p.suffix.lower() in IMAGE_SUFFIXES and not words:
            images.append(p)
        else:
            words.append(a)
    return images, " ".join(words) or None


def _parse_tool_weights(items: list[str], as_json: bool) -> dict[str, str]:
    """``["transcribe=tiny.pt"]`` -> ``{"transcribe": "tiny.pt"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, weights = item.partition("=")
        if not sep or not name.strip() or not weights.strip():
            fail(f"--tool-weights {item!r} is invalid: expected TOOL=WEIGHTS", as_json)
        out[name.strip()] = weights.strip()
    return out


def ask(
    args: Annotated[
        list[str] | None, typer.Argument(help="Image files, then the question.", show_default=False)
    ] = None,
    audio: Annotated[
        Path | None, typer.Option(help="A spoken question (wav); transcribed first.")
    ] = None,
    video: Annotated[
        Path | None,
        typer.Option(help="A short video; frames sampled at --fps join the images (needs ffmpeg)."),
    ] = None,
    fps: Annotated[float, typer.Option(help="Video frames per second to sample.")] = 1.0,
    max_frames: Annotated[int, typer.Option(help="Most video frames to sample.")] = 16,
    tool_weights: Annotated[
        list[str] | None,
        typer.Option(
            help="TOOL=WEIGHTS: the checkpoint (name or path) a tool uses; repeatable, "
            "e.g. --tool-weights transcribe=tiny.pt",
        ),
    ] = None,
    planner: Annotated[
        str | None,
        typer.Option(
            help="react | plan | program | tree (default: the one the model declares, else "
            "react; a resumed run keeps its own)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="hf:PATH | openai:URL#MODEL; default $AGENTKIT_MODEL or hf:agentkit-mllm."
        ),
    ] = None,
    actions: Annotated[
        str | None,
        typer.Option(
            help="text | code: how react writes each call (Thought/Action/Action Input, or one "
            "line of the program language); default: the model's own, else text."
        ),
    ] = None,
    code_context: Annotated[
        str | None,
        typer.Option(
            help="transcript | program: what react's code turns read of the work so far (each "
            "line with its result, or the program so far, continued); default: the model's "
            "own, else transcript."
        ),
    ] = None,
    branches: Annotated[
        str | None,
        typer.Option(
            help="react | program: how tree's branches answer their sub-questions; default: the "
            "model's own, else react."
        ),
    ] = None,
    constrain: Annotated[
        bool,
        typer.Option(
            help="Decode the controller's code under the program language's grammar (hf: "
            "models): no undefined name, unknown tool or argument is written."
        ),
    ] = True,
    constrain_words: ConstrainWords = True,
    run_ahead: Annotated[
        bool,
        typer.Option(
            help="program: run each program ahead on the tools (pure ones only); one that "
            "fails gives way to the likeliest beam-search program that runs."
        ),
    ] = True,
    relax: Annotated[
        bool,
        typer.Option(
            help="program: a select that finds nothing a later call needs is read "
            "without one of its words (a misheard word, an attribute the detector read otherwise)."
        ),
    ] = True,
    reword: Reword = True,
    rehear: Rehear = REHEAR,
    threads: Threads = None,
    thread: Annotated[
        str | None,
        typer.Option(help="Resume this run from its last finished step (or name a new one)."),
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Tool calls allowed.")] = 8,
    trace: Annotated[Path | None, typer.Option(help="Also write the HTML trace here.")] = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Where runs are kept (default ./runs or $AGENTKIT_RUNS).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print only JSON: {answer, steps, question, trace, thread, stop_reason}."
        ),
    ] = False,
) -> None:
    """Answer a question about images. Prints the answer, or JSON with --json."""
    from agentkit.errors import AgentkitError
    from agentkit.graph import Agent, default_model_spec, default_runs_dir
    from agentkit.runtime import Options
    from agentkit.trace import render_html

    images, question = _split_args(args or [])
    weights = _parse_tool_weights(tool_weights or [], as_json)
    runs = runs_dir or default_runs_dir()
    resume = thread if thread is not None and (runs / thread / "run.json").exists() else None
    if resume is None and question is None and audio is None:
        fail(
            'give a question (or --audio FILE), e.g. agentkit ask scene.png "How many cubes?"',
            as_json,
        )
    spec = model or default_model_spec()
    if resume is not None:  # the run's own model and planner, unless named again
        saved = json.loads((runs / resume / "run.json").read_text())
        spec = model or saved["model"]
        planner = planner or saved["planner"]
    try:
        with console.status("loading model…", spinner="dots") if not as_json else _null():
            agent = Agent(
                spec,
                planner=planner,  # None: the model's own (agentkit_runtime.json), else react
                runs_dir=runs,
                device=device,
                tool_weights=weights,
                options=Options(
                    actions=actions,  # type: ignore[arg-type]
                    code_context=code_context,  # type: ignore[arg-type]
                    branches=branches,  # type: ignore[arg-type]
                    constrain=constrain,
                    constrain_words=constrain_words,
                    run_ahead=run_ahead,
                    relax=relax,
                    reword=reword,
                    rehear=rehear,
                    threads=threads,
                ),
            )
        with console.status("thinking…", spinner="dots") if not as_json else _null():
            if resume is not None:
                result = agent.resume(resume)
            else:
                result = agent.ask(
                    question,
                    images=images,
                    audio=audio,
                    video=video,
                    fps=fps,
                    max_frames=max_frames,
                    max_steps=max_steps,
                    thread=thread,
                )
    except AgentkitError as e:
        fail(str(e), as_json)
    if trace is not None:
        render_html(runs / str(result.thread), trace)
    if as_json:
        typer.echo(result.model_dump_json())
        return
    for s in result.steps:
        if s.role == "executor":
            mark = "[red]✗[/]" if s.error else "[green]✓[/]"
            call = escape(f"{s.tool}({json.dumps(s.args)})")
            console.print(f"{mark} {call} [dim]{s.seconds:.2f}s[/]")
            said = escape((s.error or s.observation or "")[:200])
            console.print(f"  [dim]{said}[/]", highlight=False)
    if result.answer is None:  # say why: the summarizer's reason, else how the run stopped
        last = next((s for s in reversed(result.steps) if s.role == "summarizer"), None)
        why = (last.thought or last.error) if last is not None else None
        console.print(
            f"[bold]Answer:[/] (no answer: {escape(str(why or result.stop_reason))})",
            highlight=False,
        )
    else:
        console.print(f"[bold]Answer:[/] {escape(result.answer)}")
    console.print(f"[dim]thread {result.thread} · trace {result.trace}[/]")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
