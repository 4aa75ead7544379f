"""Tiny tools and a scripted agent shared by the planner tests (no model, no network)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from agentkit.graph import Agent
from agentkit.runtime import Options
from agentkit.testing import ScriptedBackend
from agentkit.tools import calculate, count
from agentkit.tools.base import Tool, ToolRegistry


class AddArgs(BaseModel):
    a: float = Field(description="first number")
    b: float = Field(description="second number")


class Value(BaseModel):
    value: float


class FindArgs(BaseModel):
    image: str = Field(description="an image id")


class Objects(BaseModel):
    objects: list[dict]


class NapArgs(BaseModel):
    seconds: float = 0.0


def _add(args: AddArgs, ctx) -> Value:
    return Value(value=args.a + args.b)


def _find(args: FindArgs, ctx) -> Objects:
    return Objects(
        objects=[
            {"label": "cube", "color": "red", "box": [1, 1, 5, 5], "score": 0.9},
            {"label": "cube", "color": "blue", "box": [6, 6, 9, 9], "score": 0.8},
            {"label": "sphere", "color": "red", "box": [2, 6, 4, 8], "score": 0.7},
        ]
    )


def _boom(args: NapArgs, ctx) -> Value:
    raise RuntimeError("sensor on fire")


def _nap(args: NapArgs, ctx) -> Value:
    time.sleep(args.seconds)
    return Value(value=args.seconds)


@pytest.fixture
def registry() -> ToolRegistry:
    reg = ToolRegistry(
        [
            Tool("add", "Adds two numbers.", AddArgs, Value, _add),
            Tool("find", "Finds objects in an image.", FindArgs, Objects, _find),
            Tool("boom", "Always fails.", NapArgs, Value, _boom),
            Tool("nap", "Sleeps.", NapArgs, Value, _nap),
        ]
    )
    reg.register(count)
    reg.register(calculate)
    return reg


@pytest.fixture
def image(tmp_path: Path) -> Path:
    p = tmp_path / "scene.png"
    Image.new("RGB", (32, 24), (90, 90, 90)).save(p)
    return p


@pytest.fixture
def make_agent(registry: ToolRegistry, tmp_path: Path):
    """``make_agent(planner, replies, **options) -> (Agent, backend)`` over the tiny tools;
    ``replies`` is a list for a :class:`ScriptedBackend` or any backend object."""

    def make(planner: str, replies, **opts) -> tuple[Agent, ScriptedBackend]:
        backend = replies if not isinstance(replies, list) else ScriptedBackend(replies)
        agent = Agent(
            backend,
            tools=registry,
            planner=planner,
            runs_dir=tmp_path / "runs",
            options=Options(**opts),
        )
        return agent, backend

    return make
