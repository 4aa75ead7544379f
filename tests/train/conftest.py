"""Fixtures the recipe tests share."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"


@pytest.fixture
def example_scenes() -> Callable[[Path, list[int]], Path]:
    """``copy(dst, indices)``: the shipped example scenes (JSON and image) of those indices,
    copied into a new folder ``dst``; returns it."""

    def copy(dst: Path, indices: list[int]) -> Path:
        dst.mkdir(parents=True)
        for i in indices:
            for ext in (".json", ".png"):
                shutil.copy2(EXAMPLES / f"scene_{i:06d}{ext}", dst / f"scene_{i:06d}{ext}")
        return dst

    return copy
