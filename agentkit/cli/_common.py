"""Shared bits of the CLI: one console, one way to fail."""

from __future__ import annotations

import json
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from agentkit.media import IMAGE_SUFFIXES
from agentkit.runtime import REHEAR

console = Console(stderr=True)

__all__ = [
    "IMAGE_SUFFIXES",
    "REHEAR",
    "ConstrainWords",
    "Rehear",
    "Reword",
    "Threads",
    "console",
    "fail",
]

#: ``--constrain-words/--no-constrain-words`` (``ask``, ``eval vqa``, ``eval tooluse``):
#: Options.constrain_words.
ConstrainWords = Annotated[
    bool,
    typer.Option(
        help="With --constrain: also hold the code's filters and relations to the question's "
        "words as they are written."
    ),
]


Rehear = Annotated[
    int,
    typer.Option(
        min=0,
        help="A spoken question whose run fails is tried again on up to this many other "
        "readings of the recording (0: never).",
    ),
]


#: ``--reword/--no-reword`` (``ask``, ``eval vqa``): Options.reword.
Reword = Annotated[
    bool,
    typer.Option(
        help="program: when no program for the question's words fits them, reword a question "
        "about one object as the templates do and write programs for that."
    ),
]


#: ``--threads`` (``ask``, ``eval vqa``): Options.threads.
Threads = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Torch CPU threads for the model and the tools (default: what the model declares, "
        "1 for the embedded core; else torch's own).",
    ),
]


def fail(message: str, as_json: bool = False, code: int = 2) -> NoReturn:
    """Stop with a clear message (as ``{"error": ...}`` on stdout with --json) and a non-zero exit."""
    if as_json:
        typer.echo(json.dumps({"error": message}))
    else:
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)
