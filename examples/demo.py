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


def example_questions(n: int = 12) -> list[dict]:
    """The first ``n`` shipped example questions, one per scene, each with its image path and its
    ground-truth answer (examples/questions, generated from examples/scenes)."""
    path = HERE / "questions" / "questions.jsonl"
    if not path.is_file():
        return []
    items, seen = [], set()
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item["image_filename"] in seen:
            continue
        seen.add(item["image_filename"])
        items.append(item | {"image": HERE / "scenes" / item["image_filename"]})
    return items[:n]


def spoken_question() -> dict | None:
    """One shipped spoken question (examples/speech) with its scene and answer."""
    manifest = HERE / "speech" / "manifest.jsonl"
    if not manifest.is_file():
        return None
    clip = json.loads(manifest.read_text().splitlines()[0])
    return clip | {"image": HERE / "scenes" / clip["image_filename"],
                   "wav": HERE / "speech" / clip["audio"]}  # fmt: skip


def main() -> int:
    console.rule("agentkit demo")
    console.print("[bold]Embedded checkpoints[/]")
    for name, k in KNOWN.items():
        try:
            console.print(f"  [green]✓[/] {name}: {resolve(name)}")
        except WeightsNotFound:
            console.print(f"  [yellow]–[/] {name}: not built yet (`agentkit train {k.recipe}`)")

    items = example_questions()
    if not items:
        console.print("[red]no example questions under examples/questions/[/]")
        return 1
    image = items[0]["image"]
    console.print(f"\n[bold]Tools on {image.name}[/] (no agent, no model)")
    reg = ToolRegistry.default()
    media = MediaStore(Path("runs") / "demo-tools")
    ctx = ToolContext(media=media)
    mid = media.add_image(image)
    for call in (
        ToolCall(tool="image_info", args={"image": mid}),
        ToolCall(tool="detect", args={"image": mid}),
    ):
        step = execute(call, reg, ctx)
        console.print(f"  {call.tool}: {step.error or step.observation}", highlight=False)

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
    from agentkit.mllm.eval.vqa import is_correct
    from agentkit.trace import render_html

    console.print(f"  planner {agent.planner}, prompts {agent.options.prompt_style}")
    right = 0
    for item in items:
        try:
            res = agent.ask(item["question"], images=[item["image"]])
        except AgentkitError as e:
            console.print(f"[red]{item['question']}: {e}[/]")
            continue
        ok = is_correct(res.answer, item["answer"])
        right += ok
        page = render_html(res.trace.parent)  # type: ignore[union-attr]
        tools = ", ".join(s.tool or "" for s in res.steps if s.role == "executor")
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        console.print(
            f"  {mark} {item['image'].name}: {item['question']}\n"
            f"    → [bold]{res.answer if res.answer is not None else '(no answer)'}[/] "
            f"(expected {item['answer']})  "
            f"[dim]{tools or 'no tools'}; trace {page}[/]",
            highlight=False,
        )
    console.print(f"  {right}/{len(items)} typed questions answered correctly")
    spoken = spoken_question()
    if spoken is not None:
        console.print(f"\n[bold]Spoken question[/] {spoken['wav'].name} ({spoken['engine']} voice)")
        try:
            resolve("speech-whisper")
        except WeightsNotFound:
            console.print(
                "  [yellow]skipped:[/] the speech model (speech-whisper) is not where it ships; pass "
                "a whisper checkpoint with `agentkit ask IMAGE --audio WAV --tool-weights "
                "transcribe=tiny.pt`, or build one with `agentkit train asr`"
            )
            return 0
        res = agent.ask(None, images=[spoken["image"]], audio=spoken["wav"])
        heard = next((s.result for s in res.steps if s.tool == "transcribe" and s.result), None)
        text = heard["text"] if heard else "(not transcribed)"
        mark = "[green]✓[/]" if is_correct(res.answer, spoken["answer"]) else "[red]✗[/]"
        console.print(
            f"  said:  {spoken['transcript']}\n  heard: {text}\n"
            f"  {mark} → [bold]{res.answer}[/] (expected {spoken['answer']})",
            highlight=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
