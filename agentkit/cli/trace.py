"""``agentkit trace view RUN``: a self-contained HTML page of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentkit.cli._common import fail

app = typer.Typer(no_args_is_help=True, help="Look at run traces.")


@app.command("view")
def view(
    run: Annotated[
        str, typer.Argument(help="A thread id (under the runs folder) or a run folder.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the page (default RUN/trace.html).")
    ] = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Runs folder (default ./runs or $AGENTKIT_RUNS).")
    ] = None,
) -> None:
    """Write the HTML trace of a run (steps, images with boxes and masks) and print its path."""
    from agentkit.graph import default_runs_dir
    from agentkit.trace import TRACE_FILE, render_html

    run_dir = Path(run)
    if not (run_dir / TRACE_FILE).exists():
        run_dir = (runs_dir or default_runs_dir()) / run
    if not (run_dir / TRACE_FILE).exists():
        fail(f"no trace for {run!r}: neither {run}/{TRACE_FILE} nor {run_dir / TRACE_FILE} exists")
    typer.echo(str(render_html(run_dir, out)))
