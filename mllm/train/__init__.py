"""Training recipes: ``agentkit train RECIPE`` reproduces every shipped checkpoint.

A recipe is a small TOML file in ``mllm/recipes/`` (or any path) whose ``stage`` names a trainer
module in this package. The module exposes a ``Config`` dataclass (fields with help text in
``metadata["help"]``) and ``train(cfg: Config, out: Path) -> Path`` that returns the checkpoint it
wrote. The recipe's other keys fill the config; ``--set key=value`` overrides them.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a recipe by name (``detector``) or path; it must name its ``stage``. A recipe that
    says ``extends = "NAME"`` is that recipe with its own keys over it (a second leg of a run
    keeps the first's data and sizes by construction)."""
    p = Path(name_or_path)
    if not p.suffix:
        p = RECIPE_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        raise ConfigError(
            f"no recipe {name_or_path!r}; shipped recipes: {', '.join(recipe_names()) or 'none'}"
        )
    data = tomllib.loads(p.read_text())
    parent = data.pop("extends", None)
    if parent is not None:
        if str(parent) in _seen or str(p) in _seen:
            raise ConfigError(f"recipe {p} extends itself through {' -> '.join(_seen)}")
        data = {**load_recipe(str(parent), (*_seen, str(p))), **data}
    if "stage" not in data:
        raise ConfigError(
            f"recipe {p} has no `stage` (the trainer module under agentkit.mllm.train)"
        )
    return data


def key_values(items: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """``["steps=5", "name=x", "on=true"]`` -> ``{"steps": 5, "name": "x", "on": True}``: each
    value read as JSON where it parses, else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def build_config(recipe: dict[str, Any], overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """The trainer module and its ``Config`` filled from the recipe and ``key=value`` overrides."""
    stage = recipe["stage"]
    try:
        module = importlib.import_module(f"agentkit.mllm.train.{stage}")
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"recipe stage {stage!r} has no trainer module agentkit.mllm.train.{stage}"
        ) from e
    values = {k: v for k, v in recipe.items() if k != "stage"}
    values.update(key_values(overrides))
    fields = {f.name for f in dataclasses.fields(module.Config)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(
            f"recipe keys {unknown} are not options of {stage}; known: {sorted(fields)}"
        )
    return module, module.Config(**_typed(stage, module.Config, values))


def _typed(stage: str, config: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against ``config``'s field types: a number where text is wanted
    becomes text (``--set agent_threads=1``), an int stands for a float; any other mismatch
    (``threads = "1"`` for an int) is a clear error, not a crash deep in the run."""
    hints = typing.get_type_hints(config)
    out = dict(values)
    for key, value in values.items():
        want = typing.get_origin(hints[key]) or hints[key]
        if want not in (int, float, str, bool, list, dict):
            continue
        if want is str and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = str(value)
        elif want is float and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
        elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(
                f"{stage}: {key} = {value!r} is {type(value).__name__}; {key} takes {want.__name__}"
            )
    return out


def run_recipe(name_or_path: str, out: Path | None = None, overrides: Sequence[str] = ()) -> Path:
    recipe = load_recipe(name_or_path)
    module, cfg = build_config(recipe, list(overrides))
    out = Path(out) if out is not None else Path("runs") / "train" / Path(name_or_path).stem
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(
        json.dumps({"recipe": name_or_path, **dataclasses.asdict(cfg)}, indent=1, default=str)
    )
    return module.train(cfg, out)
