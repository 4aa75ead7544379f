"""The ``agentkit`` command. Sub-commands live one per module and import heavy libraries lazily,
so ``agentkit --help`` stays fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="agentkit",
    help="Agentic, tool-using visual reasoning with a trainable multimodal core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from agentkit.cli import data

    app.add_typer(data.app, name="data", help="Generate the procedural worlds (scenes, questions, speech).")


def main() -> None:
    _register()
    app()
