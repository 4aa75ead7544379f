"""The recipe configs' field helper: a default plus the help text ``agentkit train --help-recipe``
and ``--set`` show."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def f(default: Any, help: str) -> Any:  # noqa: A002 - the recipe CLI reads metadata["help"]
    """A dataclass field with help text (the recipe CLI shows it); a list or dict default is
    copied per instance."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default, metadata={"help": help})
    return field(default=default, metadata={"help": help})
