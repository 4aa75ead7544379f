"""`make demo`: the main job on the embedded default.

Asks questions about the shipped example scenes through the agent graph and writes the HTML
trace of each run. With no model available it says plainly what is missing and how to get it;
it never prints an answer it did not compute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from agentkit.errors import AgentkitError, WeightsNotFound
from agentkit.graph import Agent, default_model_spec
from agentkit.media import MediaStore
from agentkit.state import ToolCall
from agentkit.tools.base import ToolContext, ToolRegistry, execute
from agentkit.weights import KNOWN, resolve

HERE = Path(__file__).parent
console = Console()


def example_questions() -> list[tuple[Path, str]]:
    """(image, question) pairs from the shipped example scenes and their generated questions."""
    pairs = []
    for q in sorted((HERE / "scenes").glob("*questions*.json*")):
        lines = (
            q.read_text().splitlines()
            if q.suffix == ".jsonl"
            else [json.dumps(x) for x in json.loads(q.read_text())]
        )
        for line in lines[:3]:
            item = json.loads(line)
            pairs.append((HERE / "scenes" / item["image_filename"], item["question"]))
    if not pairs:
        pairs = [
            (p, "How many objects are there?") for p in sorted((HERE / "scenes").glob("*.png"))[:2]
        ]
    return pairs


def main() -> int:
    console.rule("agentkit demo")
    console.print("[bold]Embedded checkpoints[/]")
    for name, k in KNOWN.items():
        try:
            console.print(f"  [green]✓[/] {name}: {resolve(name)}")
        except WeightsNotFound:
            console.print(f"  [yellow]–[/] {name}: not built yet (`agentkit train {k.recipe}`)")

    pairs = example_questions()
    if not pairs:
        console.print("[red]no example scenes under examples/scenes/[/]")
        return 1
    image = pairs[0][0]
    console.print(f"\n[bold]Tools on {image.name}[/] (no agent, no model)")
    reg = ToolRegistry.default()
    media = MediaStore(Path("runs") / "demo-tools")
    ctx = ToolContext(media=media)
    mid = media.add_image(image)
    for call in (
        ToolCall(tool="image_info", args={"image": mid}),
        ToolCall(tool="crop", args={"image": mid, "box": [0, 0, 160, 120]}),
    ):
        step = execute(call, reg, ctx)
        console.print(f"  {call.tool}: {step.error or step.observation}")

    spec = default_model_spec()
    console.print(f"\n[bold]Agent[/] with model {spec}")
    try:
        agent = Agent(spec)
    except WeightsNotFound as e:
        console.print(f"[yellow]No MLLM core to run the agent with:[/] {e}")
        console.print(
            "Point the agent at any OpenAI-compatible vision model instead:\n"
            "  AGENTKIT_OPENAI_URL=http://host:8000/v1 AGENTKIT_OPENAI_MODEL=NAME make demo"
        )
        return 0
    for img, question in pairs:
        try:
            res = agent.ask(question, images=[img])
        except AgentkitError as e:
            console.print(f"[red]{question}: {e}[/]")
            continue
        from agentkit.trace import render_html

        page = render_html(res.trace.parent)  # type: ignore[union-attr]
        tools = ", ".join(s.tool or "" for s in res.steps if s.role == "executor")
        console.print(
            f"  {img.name}: {question}\n    → [bold]{res.answer}[/]  [dim]({tools or 'no tools'}; {page})[/]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
