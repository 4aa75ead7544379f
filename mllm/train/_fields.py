"""The recipe configs' helpers: a field with the help text ``agentkit train --help-recipe`` and
``--set`` show, and the check of a leg's starting checkpoint."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError


def f(default: Any, help: str) -> Any:  # noqa: A002 - the recipe CLI reads metadata["help"]
    """A dataclass field with help text (the recipe CLI shows it); a list or dict default is
    copied per instance."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def require_init(path: Path, what: str) -> Path:
    """``path`` when it is a file, else a :class:`ConfigError` that says how to make it: a leg's
    init is the release of the recipe before it (``runs/train/<recipe>/...``), which
    ``agentkit train <recipe>`` writes; ``what`` names the kind of file expected."""
    if path.is_file():
        return path
    run = path.parent.name if path.parent.parent.name == "train" else None
    first = f"train the run this leg continues first (`agentkit train {run}`), or " if run else ""
    raise ConfigError(f"init checkpoint {path} not found: {first}set init to {what}")
