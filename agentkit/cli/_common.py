"""Shared bits of the CLI: one console, one way to fail."""

from __future__ import annotations

import json
from typing import NoReturn

import typer
from rich.console import Console

from agentkit.media import IMAGE_SUFFIXES

console = Console(stderr=True)

__all__ = ["IMAGE_SUFFIXES", "console", "fail"]


def fail(message: str, as_json: bool = False, code: int = 2) -> NoReturn:
    """Stop with a clear message (as ``{"error": ...}`` on stdout with --json) and a non-zero exit."""
    if as_json:
        typer.echo(json.dumps({"error": message}))
    else:
        console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
