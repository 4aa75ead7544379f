"""``agentkit train RECIPE``: rebuild a shipped checkpoint (or train your own) from a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentkit.cli._common import console, fail


def train(
    recipe: Annotated[
        str, typer.Argument(help="A shipped recipe name (see --list) or a recipe .toml path.")
    ] = "",
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default runs/train/RECIPE); re-running resumes."),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key: --set epochs=5")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the shipped recipes.")] = False,
) -> None:
    """Train from a recipe. The checkpoint's path is printed at the end."""
    from agentkit.errors import AgentkitError
    from agentkit.mllm.train import load_recipe, recipe_names, run_recipe

    if list_ or not recipe:
        for name in recipe_names():
            doc = load_recipe(name).get("description", "")
            console.print(f"[bold]{name}[/]  {escape(doc)}")
        return
    try:
        path = run_recipe(recipe, out, set_ or [])
    except AgentkitError as e:
        fail(str(e))
    typer.echo(str(path))
