"""The ``agentkit`` command. Sub-commands live one per module and import heavy libraries lazily,
so ``agentkit --help`` stays fast."""

from __future__ import annotations

import typer

from agentkit.cli import data, tool, trace
from agentkit.cli import eval as eval_
from agentkit.cli.ask import ask
from agentkit.cli.serve import serve
from agentkit.cli.train import train

app = typer.Typer(
    name="agentkit",
    help="Agentic, tool-using visual reasoning with a trainable multimodal core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("ask")(ask)
app.command("serve")(serve)
app.command("train")(train)
app.add_typer(tool.app, name="tool")
app.add_typer(trace.app, name="trace")
app.add_typer(eval_.app, name="eval")
app.add_typer(
    data.app, name="data", help="Generate the procedural worlds (scenes, questions, speech)."
)


def main() -> None:
    app()
