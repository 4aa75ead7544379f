"""Prompts are data: text files under ``planners/prompts/`` with ``{field}`` slots.

Each is loaded once and its slots checked against the fields the code fills, so a prompt edited
with a typo fails at start-up, not in the middle of a run.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

from agentkit.errors import ConfigError

PROMPT_DIR = Path(__file__).parent / "prompts"


class Prompt:
    def __init__(self, name: str, text: str, fields: frozenset[str]):
        self.name = name
        self.text = text
        found = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        if found != fields:
            raise ConfigError(
                f"prompt {name!r} has slots {sorted(found)}, expected {sorted(fields)} "
                f"(edit {PROMPT_DIR / (name + '.txt')})"
            )
        self.fields = fields

    def format(self, **values: str) -> str:
        missing = self.fields - values.keys()
        if missing:
            raise ConfigError(f"prompt {self.name!r} needs {sorted(missing)}")
        return self.text.format(**values).strip()


#: The slots each shipped prompt must have.
FIELDS: dict[str, frozenset[str]] = {
    "controller": frozenset({"tools", "tool_names"}),
    "task": frozenset({"images", "question", "scratchpad"}),
    "decider": frozenset(),
    "summarizer": frozenset(),
    "plan_controller": frozenset({"tools", "tool_names", "max_steps"}),
    "program_controller": frozenset({"tools", "tool_names", "max_lines"}),
    "program_controller_bare": frozenset({"tool_names"}),
    "controller_bare": frozenset({"tool_names"}),
    "controller_code": frozenset({"tools"}),
    "controller_code_bare": frozenset({"tool_names"}),
    "tree_controller": frozenset({"max_branches"}),
    "tree_vote": frozenset({"max_branches"}),
    "tree_summarizer": frozenset(),
}


def load_styled(name: str, style: str | None) -> Prompt:
    """``name`` in a prompt style: ``<name>_<style>`` where one ships (the ``bare`` controllers),
    else ``name`` itself."""
    if style and f"{name}_{style}" in FIELDS:
        return load(f"{name}_{style}")
    return load(name)


@cache
def load(name: str) -> Prompt:
    path = PROMPT_DIR / f"{name}.txt"
    if name not in FIELDS or not path.exists():
        raise ConfigError(f"no prompt {name!r}; known: {sorted(FIELDS)}")
    return Prompt(name, path.read_text(), FIELDS[name])
