"""Scene graphs without rendering: random CLEVR-style objects and their spatial relations.

For the question generator's tests and benchmarks, and for question-only experiments: the graph
has the same keys the renderer writes (``objects`` with attributes and ``3d_coords``,
``relationships``, ``directions``), but no image, boxes or masks.

Relations follow CLEVR's rule: object ``j`` is in ``relationships[name][i]`` when
``dot(coords[j] - coords[i], directions[name]) > eps`` (eps 0.2 world units), where the directions
are the camera's unit vectors projected on the ground plane (``right``, ``behind`` and their
opposites).
"""

from __future__ import annotations

import math
import random
from typing import Any

from agentkit.mllm.worlds.programs import ATTRIBUTES

RELATION_EPS = 0.2


def relationships(
    coords: list[list[float]], directions: dict[str, list[float]], eps: float = RELATION_EPS
) -> dict[str, list[list[int]]]:
    """CLEVR's relations: ``out[name][i]`` = objects ``j`` lying ``name`` of object ``i``."""
    out: dict[str, list[list[int]]] = {}
    for name in ("left", "right", "front", "behind"):
        d = directions[name]
        out[name] = [
            [
                j
                for j, cj in enumerate(coords)
                if j != i and sum((cj[k] - ci[k]) * d[k] for k in range(3)) > eps
            ]
            for i, ci in enumerate(coords)
        ]
    return out


def synthetic_scene(seed: int, *, min_objects: int = 3, max_objects: int = 10) -> dict[str, Any]:
    """A random scene graph: 3-10 objects in a 6x6 ground square, random camera azimuth."""
    rng = random.Random(seed)
    az = rng.uniform(0, 2 * math.pi)
    right = [math.cos(az), math.sin(az), 0.0]
    behind = [-math.sin(az), math.cos(az), 0.0]
    directions = {
        "right": right,
        "left": [-v for v in right],
        "behind": behind,
        "front": [-v for v in behind],
    }
    objects: list[dict[str, Any]] = []
    for _ in range(rng.randint(min_objects, max_objects)):
        size = rng.choice(ATTRIBUTES["size"])
        r = 0.7 if size == "large" else 0.35
        objects.append(
            {
                "shape": rng.choice(ATTRIBUTES["shape"]),
                "color": rng.choice(ATTRIBUTES["color"]),
                "material": rng.choice(ATTRIBUTES["material"]),
                "size": size,
                "3d_coords": [round(rng.uniform(-3, 3), 3), round(rng.uniform(-3, 3), 3), r],
                "rotation": round(rng.uniform(0, 360), 2),
            }
        )
    coords = [o["3d_coords"] for o in objects]
    return {
        "seed": seed,
        "split": "synthetic",
        "image_filename": f"scene_{seed:06d}.png",
        "objects": objects,
        "directions": directions,
        "relationships": relationships(coords, directions),
    }
