"""Functional programs over a CLEVR-style scene graph, and the executor that answers them.

A program is a list of nodes in CLEVR's format, each
``{"function": str, "inputs": [int, ...], "value_inputs": [str, ...]}``, where ``inputs`` index
earlier nodes and the last node gives the answer. Values flow between nodes as one of four kinds:

* a set of object indices (``scene``, ``filter_*``, ``relate``, ``same_*``, ``union``, ``intersect``,
  ``difference``: the first set without the second, for "cubes that are not red"; not CLEVR's),
* one object index (``unique``: the set must hold exactly one object, or the program is ill-posed;
  ``most``, not CLEVR's: of a set of two or more, the one furthest ``left`` / ``right`` /
  ``front`` / ``behind``, every other object of the set in the opposite relation to it (and, for
  left and right, where objects have ``pixel_coords``, furthest that way in the image too), or
  the one ``large`` / ``small`` object among objects of the other size: "the leftmost cube",
  "the biggest sphere"; ill-posed when no object is so; with a second value, a rank, of a
  relation's way only: the object with that many less one of the set that way of it and every
  other the opposite way, "the second cube from the left", of a set of more than the rank),
* an integer (``count``), a bool (``exist``, ``greater_than``, ``less_than``, ``equal_integer``),
* an attribute word (``query_*``).

Relations follow CLEVR: ``scene["relationships"]["left"][i]`` lists the objects that are left of
object ``i`` as the camera sees them, so ``relate[left]`` applied to ``i`` returns that list.

Answers are strings, as in CLEVR's question files: ``"yes"``/``"no"``, a count as ``"3"``, or an
attribute word such as ``"red"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentkit.errors import AgentkitError

# CLEVR's vocabulary. Order matters only for determinism of sampling.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "size": ("large", "small"),
    "color": ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
    "material": ("rubber", "metal"),
    "shape": ("cube", "sphere", "cylinder"),
}
RELATIONS: tuple[str, ...] = ("left", "right", "front", "behind")
#: The ways ``most`` picks one object of a set: a relation's or a size's extreme.
MOSTS: tuple[str, ...] = (*RELATIONS, *ATTRIBUTES["size"])
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "front": "behind", "behind": "front"}

Node = dict[str, Any]
Program = list[Node]


class ProgramError(AgentkitError):
    """A program is malformed, or is ill-posed on a scene (e.g. ``unique`` over 0 or 2 objects)."""


def node(function: str, inputs: Sequence[int] = (), value_inputs: Sequence[str] = ()) -> Node:
    """One program node in CLEVR's JSON form."""
    return {"function": function, "inputs": list(inputs), "value_inputs": list(value_inputs)}


def _as_set(value: Any, fn: str) -> frozenset[int]:
    if not isinstance(value, frozenset):
        raise ProgramError(f"{fn} expects a set of objects as input, got {type(value).__name__}")
    return value


def _as_object(value: Any, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProgramError(f"{fn} expects one object (the output of unique), got {value!r}")
    return value


def _as_int(value: Any, fn: str) -> int:
    if not isinstance(value, tuple) or len(value) != 2 or value[0] != "int":
        raise ProgramError(f"{fn} expects a count, got {value!r}")
    return value[1]


def _check_scene(scene: dict[str, Any]) -> None:
    if "objects" not in scene or "relationships" not in scene:
        raise ProgramError(
            "scene graph needs 'objects' and 'relationships' (CLEVR format); "
            f"got keys {sorted(scene)}"
        )


def execute_trace(program: Program, scene: dict[str, Any]) -> list[Any]:
    """Run ``program`` on ``scene`` and return every node's output (see the module docstring).

    Counts come back as ``("int", n)`` so they cannot be confused with object indices.
    Raises :class:`ProgramError` for an unknown function, wrong inputs, a bad attribute value or
    a ``unique`` over anything but exactly one object.
    """
    _check_scene(scene)
    objects = scene["objects"]
    rels = scene["relationships"]
    out: list[Any] = []
    for k, nd in enumerate(program):
        fn = nd.get("function")
        try:
            args = [out[i] for i in nd.get("inputs", [])]
        except (IndexError, TypeError) as e:
            raise ProgramError(f"node {k} ({fn}) refers to a later or missing node: {nd}") from e
        values = list(nd.get("value_inputs", []))
        out.append(_apply(fn, args, values, objects, rels, k))
    if not out:
        raise ProgramError("empty program")
    return out


def _apply(
    fn: Any, args: list[Any], values: list[str], objects: list[dict], rels: dict, k: int
) -> Any:
    if fn == "scene":
        return frozenset(range(len(objects)))
    if isinstance(fn, str) and fn.startswith("filter_"):
        attr = fn.removeprefix("filter_")
        _check_value(attr, values, k)
        return frozenset(i for i in _as_set(args[0], fn) if objects[i][attr] == values[0])
    if fn == "unique":
        s = _as_set(args[0], fn)
        if len(s) != 1:
            raise ProgramError(f"node {k}: unique over {len(s)} objects, expected exactly 1")
        return next(iter(s))
    if fn == "most":
        return _most(_as_set(args[0], fn), values, objects, rels, k)
    if fn == "relate":
        if len(values) != 1 or values[0] not in RELATIONS:
            raise ProgramError(f"node {k}: relate expects one of {RELATIONS}, got {values}")
        return frozenset(rels[values[0]][_as_object(args[0], fn)])
    if isinstance(fn, str) and fn.startswith("same_"):
        attr = _attribute(fn, k)
        o = _as_object(args[0], fn)
        return frozenset(
            i for i in range(len(objects)) if i != o and objects[i][attr] == objects[o][attr]
        )
    if fn in ("union", "intersect", "difference"):
        sa, sb = _as_set(args[0], fn), _as_set(args[1], fn)
        return sa | sb if fn == "union" else sa & sb if fn == "intersect" else sa - sb
    if fn == "count":
        return ("int", len(_as_set(args[0], fn)))
    if fn == "exist":
        return len(_as_set(args[0], fn)) > 0
    if isinstance(fn, str) and fn.startswith("query_"):
        return objects[_as_object(args[0], fn)][_attribute(fn, k)]
    if isinstance(fn, str) and fn.startswith("equal_") and fn != "equal_integer":
        attr = _attribute(fn, k)
        if len(args) != 2 or any(not isinstance(a, str) or a not in ATTRIBUTES[attr] for a in args):
            raise ProgramError(f"node {k}: {fn} expects two {attr} values, got {args}")
        return args[0] == args[1]  # two query_<attr> values
    if fn in ("greater_than", "less_than", "equal_integer"):
        a, b = _as_int(args[0], fn), _as_int(args[1], fn)
        return a > b if fn == "greater_than" else a < b if fn == "less_than" else a == b
    raise ProgramError(f"node {k}: unknown function {fn!r}")


def _most(s: frozenset[int], values: list[str], objects: list[dict], rels: dict, k: int) -> int:
    """The one object of ``s`` furthest ``values[0]``, or ranked ``values[1]`` that way (see the
    module docstring)."""
    if len(values) not in (1, 2) or values[0] not in MOSTS:
        raise ProgramError(f"node {k}: most expects one of {MOSTS} and a rank, got {values}")
    way = values[0]
    rank = int(values[1]) if len(values) == 2 and values[1].isdigit() else 1
    if len(values) == 2 and (rank < 2 or way not in RELATIONS):
        raise ProgramError(f"node {k}: most ranks 2 or more of a relation's way, got {values}")
    if len(s) < max(2, rank + 1):
        raise ProgramError(f"node {k}: most over {len(s)} objects, expected {max(2, rank + 1)}")
    if way in RELATIONS:  # rank - 1 others lie that way of it, every other the opposite way
        found = [
            i for i in s
            if sum(j in rels[way][i] for j in s) == rank - 1
            and sum(j in rels[OPPOSITE[way]][i] for j in s) == len(s) - rank
        ]  # fmt: skip
    else:  # the only one of that size
        found = [i for i in s if objects[i]["size"] == way]
    if (
        len(found) == 1
        and way in ("left", "right")
        and all("pixel_coords" in objects[i] for i in s)
    ):
        # the picture must agree: perspective moves a far object's image x toward the centre
        x = {i: objects[i]["pixel_coords"][0] for i in s}
        if found[0] != sorted(s, key=x.__getitem__, reverse=way == "right")[rank - 1]:
            found = []
    if len(found) != 1:
        raise ProgramError(f"node {k}: most {way} picks no one object of {len(s)}")
    return found[0]


def _attribute(fn: str, k: int) -> str:
    """The attribute a ``same_`` / ``query_`` / ``equal_`` function names; unknown: an error."""
    attr = fn.partition("_")[2]
    if attr not in ATTRIBUTES:
        raise ProgramError(f"node {k}: unknown function {fn!r}")
    return attr


def _check_value(attr: str, values: list[str], k: int) -> None:
    if attr not in ATTRIBUTES:
        raise ProgramError(f"node {k}: unknown function 'filter_{attr}'")
    if len(values) != 1 or values[0] not in ATTRIBUTES[attr]:
        raise ProgramError(
            f"node {k}: filter_{attr} expects one of {ATTRIBUTES[attr]}, got {values}"
        )


def answer_string(value: Any) -> str:
    """The CLEVR answer string for a final node value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple) and value[0] == "int":
        return str(value[1])
    if isinstance(value, str):
        return value
    raise ProgramError(f"a program must end in count, exist, query or compare; got {value!r}")


def execute(program: Program, scene: dict[str, Any]) -> str:
    """Answer ``program`` on ``scene`` as a CLEVR answer string (``"yes"``, ``"3"``, ``"red"``)."""
    return answer_string(execute_trace(program, scene)[-1])
