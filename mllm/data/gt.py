"""Ground-truth detections: a scene graph's objects as ``detect`` would return them.

Two sources of scenes with boxes:

* rendered scenes (``scene_*.json`` from :mod:`agentkit.mllm.worlds.render`): each object's
  ``bbox`` is the tight box of its visible mask;
* :func:`projected_scene`: a scene drawn with :func:`~agentkit.mllm.worlds.scenes.sample_scene`
  (numpy only, no Blender) whose boxes are the projection of each object's 3D bounding box. No
  occlusion, so boxes are a little larger than a render's; for fast tests over hundreds of scenes.

:func:`gt_detect_tool` is a ``detect`` tool with the real tool's name, description, ``Args`` and
``Result`` (so the prompt that lists it is byte-identical) that answers from the scene graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agentkit.errors import ToolError
from agentkit.tools import detect
from agentkit.tools.base import Tool, ToolContext

Scene = dict[str, Any]


def stand_in(real: Tool, run: Callable[[Any, ToolContext], Any]) -> Tool:
    """``real`` answering with ``run``: same name, description, schemas, timeout and summary
    (the prompt that lists it is byte-identical), not marked pure (nothing is run ahead)."""
    return dataclasses.replace(real, run=run, pure=False)


def gt_objects(scene: Scene) -> list[detect.DetectedObject]:
    """The scene's objects in scene order, score 1.0; boxes XYXY in image pixels."""
    out = []
    for i, o in enumerate(scene["objects"]):
        if "bbox" not in o:
            raise ToolError(
                f"object {i} of {scene.get('image_filename', '?')} has no bbox; gt detections "
                "need rendered scenes or projected_scene()"
            )
        name = f"{o['size']} {o['color']} {o['material']} {o['shape']}"
        out.append(
            detect.DetectedObject(
                label=o["shape"],
                box=[float(v) for v in o["bbox"]],
                score=1.0,
                size=o["size"],
                color=o["color"],
                material=o["material"],
                shape=o["shape"],
                name=name,
            )
        )
    return out


def gt_detect_tool(scene_for: Callable[[str], Scene]) -> Tool:
    """A ``detect`` that returns ``gt_objects`` of ``scene_for(image_ref)``, filtered by the
    call's own filters exactly as the real tool filters its detections."""
    real = Tool.from_module(detect)

    def run(args: detect.Args, ctx: ToolContext) -> detect.Result:
        scene = scene_for(args.image)
        objs = [o for o in gt_objects(scene) if detect.keep(o, args)]
        return detect.Result(objects=objs, width=int(scene["width"]), height=int(scene["height"]))

    return stand_in(real, run)


def projected_scene(seed: int, *, width: int = 480, height: int = 320) -> Scene:
    """A CLEVR-style scene graph with boxes from the projected 3D bounding boxes (no render).

    Same keys as a rendered scene's JSON that the question generator and the tools read:
    ``seed``, ``split``, ``image_filename``, ``width``, ``height``, ``objects`` (attributes,
    ``3d_coords``, ``pixel_coords``, ``bbox``), ``relationships``, ``directions``.
    """
    import numpy as np

    from agentkit.mllm.worlds.scenes import sample_scene

    spec = sample_scene(seed, width=width, height=height, split="synthetic")
    objects = []
    for o in spec.objects:
        px = spec.camera.project(o.corners(), width, height)
        u, v, d = spec.camera.project(np.asarray([o.coords]), width, height)[0]
        box = [
            float(np.clip(px[:, 0].min(), 0, width)),
            float(np.clip(px[:, 1].min(), 0, height)),
            float(np.clip(px[:, 0].max(), 0, width)),
            float(np.clip(px[:, 1].max(), 0, height)),
        ]
        objects.append(
            {
                "shape": o.shape,
                "color": o.color,
                "material": o.material,
                "size": o.size,
                "3d_coords": list(o.coords),
                "pixel_coords": [int(round(u)), int(round(v)), round(float(d), 4)],
                "bbox": [round(b) for b in box],
            }
        )
    return {
        "seed": seed,
        "split": "synthetic",
        "image_filename": f"scene_{seed:06d}.png",
        "width": width,
        "height": height,
        "objects": objects,
        "relationships": spec.relationships(),
        "directions": spec.camera.directions(),
    }


def gt_relate_tool(scene_for: Callable[[], Scene]) -> Tool:
    """A ``relate`` that answers with the scene graph's 3D relations (CLEVR's rule) instead of
    image geometry; objects are matched to the scene's by box. For checking the conversion of
    programs apart from the image-geometry approximation. ``scene_for()`` is the scene."""
    from agentkit.tools import relate
    from agentkit.tools._objects import key, the_one

    real = Tool.from_module(relate)

    def run(args: relate.Args, ctx: ToolContext) -> relate.Result:
        scene = scene_for()
        index = {
            tuple(round(float(v), 1) for v in o["bbox"]): i for i, o in enumerate(scene["objects"])
        }
        ref, note = the_one(args.reference, "relate", "reference")
        truth = set(scene["relationships"][args.relation][index[key(ref)]])
        out = [o for o in args.objects if index.get(key(o)) in truth]
        return relate.Result(objects=out, count=len(out), reference=relate.describe(ref),
                             relation=args.relation, note=note)  # fmt: skip

    return stand_in(real, run)
