"""``agentkit tool list`` and ``agentkit tool run NAME``: the tools, outside the agent loop."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from agentkit.cli._common import console, fail

app = typer.Typer(no_args_is_help=True, help="List tools or run one directly.")


@app.command("list")
def list_tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON schemas.")] = False,
) -> None:
    """List the registered tools with their descriptions."""
    from agentkit.tools.base import ToolRegistry

    reg = ToolRegistry.default()
    if as_json:
        typer.echo(json.dumps([t.schema()["function"] for t in reg], indent=1))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("tool", "description", "arguments")
    for t in reg:  # descriptions hold brackets ("[x1, y1, x2, y2]") that are not markup
        table.add_row(t.name, escape(t.description), ", ".join(t.Args.model_fields))
    console.print(table)


@app.command("run")
def run_tool(
    name: Annotated[str, typer.Argument(help="Tool name (see `agentkit tool list`).")],
    image: Annotated[
        list[Path] | None, typer.Option(help="Image file(s); the first is `image` in --args.")
    ] = None,
    audio: Annotated[Path | None, typer.Option(help="Audio file; it is `audio` in --args.")] = None,
    args: Annotated[str, typer.Option(help="Tool arguments as a JSON object.")] = "{}",
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    out: Annotated[
        Path | None, typer.Option(help="Keep images the tool makes in this folder.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the result as JSON.")] = False,
) -> None:
    """Run one tool on files and print its result."""
    from agentkit.errors import AgentkitError
    from agentkit.media import MediaStore
    from agentkit.state import ToolCall
    from agentkit.tools.base import ToolContext, ToolRegistry, execute

    try:
        call_args = json.loads(args)
    except json.JSONDecodeError as e:
        fail(f"--args is not JSON: {e}", as_json)
    if not isinstance(call_args, dict):
        fail("--args must be a JSON object, e.g. '{\"conf\": 0.3}'", as_json)
    # Without --out the inputs are copied to a scratch folder, kept only if the tool made images
    # (their paths are printed); otherwise every run would leave a folder in /tmp.
    root = out or Path(tempfile.mkdtemp(prefix="agentkit-tool-"))
    step = None
    try:
        reg = ToolRegistry.default()
        if name not in reg:
            fail(f"unknown tool {name!r}; available: {', '.join(reg.names())}", as_json)
        media = MediaStore(root)
        ids = [media.add_image(p) for p in image or []]
        if ids:
            call_args.setdefault("image", ids[0])
        if audio is not None:
            call_args.setdefault("audio", media.add_file(audio, prefix="audio"))
        step = execute(
            ToolCall(tool=name, args=call_args), reg, ToolContext(media=media, device=device)
        )
    except AgentkitError as e:
        fail(str(e), as_json)
    finally:
        if out is None and not (step and step.media):
            shutil.rmtree(root, ignore_errors=True)
    assert step is not None  # fail() above does not return
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "tool": name,
                    "args": step.args,
                    "result": step.result,
                    "error": step.error,
                    "media": [str(media.path(m)) for m in step.media],
                    "seconds": step.seconds,
                }
            )
        )
    elif step.error:
        console.print(step.error, style="red", markup=False)
    else:
        console.print_json(json.dumps(step.result))
    if step.error:
        raise typer.Exit(1)
