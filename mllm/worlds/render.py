"""Render a :class:`SceneSpec` with Blender's Cycles (``bpy``) and derive exact ground truth.

Each render builds the scene on an empty Blender file (``bpy`` is process-global: one scene per
process at a time), then renders twice:

1. an **id pass**: 1 sample per pixel through the pixel centre (box filter of 0.01 px), every
   object an emission shader whose red channel encodes its index, no bounces, raw view transform.
   Each pixel therefore holds the id of the first surface the centre ray hits: exact instance masks
   with occlusion, no estimation. Objects with fewer than ``min_pixels`` visible pixels fail the
   scene (:func:`make_scene` re-samples it).
2. the **beauty pass**: CLEVR's materials (bevelled shapes, near-mirror coloured metal, rubber with
   a soft sheen), three area lights invisible to the camera, a large ground plane (no horizon in
   view), Cycles path tracing denoised with OpenImageDenoise, then the sampled look (exposure,
   white balance, blur, sensor noise).

Ground truth only depends on the spec and the id pass, so the same seed gives the same JSON bytes.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agentkit.errors import AgentkitError, ConfigError
from agentkit.mllm.worlds.scenes import COLORS, SceneSpec, sample_scene

ID_STEP = 20  # id k is written as red level k * ID_STEP: robust to any rounding in the PNG path
MIN_PIXELS_480 = 200  # CLEVR's minimum visible pixels per object at 480x320; scaled by area
RUBBER_ROUGHNESS = 0.55
SKY_STRENGTH = 0.5  # ambient fill from the sky (lights shadows and the far ground evenly)


class HiddenObjectError(AgentkitError):
    """An object of the scene is (almost) hidden by others or out of frame."""

    def __init__(self, seed: int, hidden: dict[int, int], min_pixels: int):
        self.hidden = hidden
        super().__init__(
            f"scene seed={seed}: objects {sorted(hidden)} show {list(hidden.values())} pixels, "
            f"fewer than min_pixels={min_pixels}; use make_scene() to re-sample"
        )


def min_pixels_for(width: int, height: int) -> int:
    """CLEVR's 200 visible pixels at 480x320, scaled to the resolution (at least 4)."""
    return max(4, round(MIN_PIXELS_480 * width * height / (480 * 320)))


# ----------------------------------------------------------------------------------- blender scene
def _reset(threads: int | None) -> Any:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    if threads:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = int(threads)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.dither_intensity = 0.0
    scene.render.resolution_percentage = 100
    return scene


def _look_at(obj: Any, target: tuple[float, float, float]) -> None:
    from mathutils import Vector

    direction = Vector(target) - obj.location
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()


def _principled(
    name: str,
    rgb: tuple[float, float, float],
    *,
    metallic: float,
    roughness: float,
    specular: float = 0.5,
) -> Any:
    import bpy

    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Specular IOR Level"].default_value = specular
    return mat


def _emission(name: str, rgb: tuple[float, float, float]) -> Any:
    import bpy

    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.remove(nodes["Principled BSDF"])
    em = nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = (*rgb, 1.0)
    em.inputs["Strength"].default_value = 1.0
    mat.node_tree.links.new(em.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    return mat


def _add_shape(shape: str) -> Any:
    """A unit shape (half size 1) with CLEVR's rounded edges, smooth shaded."""
    import bpy

    if shape == "sphere":
        bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, segments=48, ring_count=24)
        obj = bpy.context.object
        bpy.ops.object.shade_smooth()
        return obj
    if shape == "cube":
        bpy.ops.mesh.primitive_cube_add(size=2.0)
        width = 0.12  # CLEVR's SmoothCube_v2 has visibly rounded edges; sharp cubes read as fake
    else:
        bpy.ops.mesh.primitive_cylinder_add(radius=1.0, depth=2.0, vertices=64)
        width = 0.06
    obj = bpy.context.object
    bevel = obj.modifiers.new("bevel", "BEVEL")
    bevel.width = width
    bevel.segments = 4
    bpy.ops.object.modifier_apply(modifier=bevel.name)
    bpy.ops.object.shade_smooth_by_angle(angle=math.radians(30))
    return obj


def _build(spec: SceneSpec, width: int, height: int) -> tuple[Any, list[Any], Any]:
    """Camera, lights, ground and objects; returns (scene, objects, ground)."""
    import bpy

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = spec.camera.lens_mm
    cam_data.sensor_width = spec.camera.sensor_mm
    cam_data.sensor_fit = "HORIZONTAL"  # matches Camera.project: focal = lens / sensor * width
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = spec.camera.location
    _look_at(cam, spec.camera.look_at)
    scene.camera = cam

    for name, light in spec.lights.items():
        data = bpy.data.lights.new(name, "AREA")
        data.energy = light.energy
        data.size = light.size
        obj = bpy.data.objects.new(name, data)
        obj.location = light.location
        obj.visible_camera = False  # panels must not show; they still light and reflect
        _look_at(obj, (0.0, 0.0, 0.0))
        scene.collection.objects.link(obj)

    # a 200 m ground: at CLEVR's camera pitch the top image row meets it ~27 m away, no horizon
    bpy.ops.mesh.primitive_plane_add(size=200.0)
    ground = bpy.context.object

    objects = []
    for o in spec.objects:
        obj = _add_shape(o.shape)
        r = o.radius
        obj.scale = (r, r, r)
        obj.location = o.coords
        obj.rotation_euler = (0.0, 0.0, math.radians(o.rotation))
        objects.append(obj)

    world = bpy.data.worlds.new("world")
    scene.world = world
    return scene, objects, ground


def _render_to(scene: Any, path: Path) -> np.ndarray:
    import bpy
    from PIL import Image

    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _set_world(
    scene: Any, rgb: tuple[float, float, float], strength: float, diffuse: bool = False
) -> None:
    world = scene.world
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*rgb, 1.0)
    bg.inputs["Strength"].default_value = strength
    # the sky also lights diffuse surfaces a little: an even ambient term keeps the far ground a
    # mid grey (CLEVR's backdrop does not fall off into darkness) and lifts the shadows
    world.cycles_visibility.diffuse = diffuse


def _id_pass(scene: Any, objects: list[Any], ground: Any, tmp: Path) -> np.ndarray:
    """HxW int array: 0 = background, k + 1 = spec.objects[k]."""
    cyc = scene.cycles
    cyc.samples = 1
    cyc.use_adaptive_sampling = False
    cyc.use_denoising = False
    cyc.max_bounces = 0
    cyc.pixel_filter_type = "BOX"
    cyc.filter_width = 0.01  # every sample through the pixel centre: no anti-aliasing of ids
    cyc.seed = 0
    scene.view_settings.view_transform = "Raw"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    _set_world(scene, (0.0, 0.0, 0.0), 0.0)
    ground.data.materials.clear()
    ground.data.materials.append(_emission("id_ground", (0.0, 0.0, 0.0)))
    for k, obj in enumerate(objects):
        level = (k + 1) * ID_STEP / 255.0
        obj.data.materials.clear()
        obj.data.materials.append(_emission(f"id_{k}", (level, 0.0, 0.0)))
    rgb = _render_to(scene, tmp / "ids.png")
    return np.rint(rgb[..., 0].astype(np.float64) / ID_STEP).astype(np.int32)


def _beauty_pass(
    spec: SceneSpec, scene: Any, objects: list[Any], ground: Any, tmp: Path, samples: int
) -> np.ndarray:
    cyc = scene.cycles
    cyc.samples = samples
    cyc.use_adaptive_sampling = True
    cyc.use_denoising = True
    cyc.denoiser = "OPENIMAGEDENOISE"
    cyc.max_bounces = 6
    cyc.diffuse_bounces, cyc.glossy_bounces = 3, 4
    cyc.pixel_filter_type = "BLACKMAN_HARRIS"
    cyc.filter_width = 1.5
    cyc.seed = spec.seed
    # CLEVR (Blender 2.78) used the plain sRGB transform, not Filmic/AgX
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = spec.look.exposure
    _set_world(scene, (0.55, 0.55, 0.57), SKY_STRENGTH, diffuse=True)  # metal reflects it too
    ground.data.materials.clear()
    ground.data.materials.append(
        _principled("ground", spec.look.ground_rgb, metallic=0.0, roughness=0.75, specular=0.3)
    )
    for k, (o, obj) in enumerate(zip(spec.objects, objects, strict=True)):
        # CLEVR feeds rgb / 255 straight in as a linear colour
        rgb = tuple(c / 255.0 for c in COLORS[o.color])
        if o.material == "metal":
            mat = _principled(f"m{k}", rgb, metallic=1.0, roughness=spec.look.metal_roughness)
        else:
            mat = _principled(f"m{k}", rgb, metallic=0.0, roughness=RUBBER_ROUGHNESS, specular=0.35)
        obj.data.materials.clear()
        obj.data.materials.append(mat)
    return _render_to(scene, tmp / "beauty.png")


def _apply_look(spec: SceneSpec, rgb: np.ndarray) -> np.ndarray:
    """White balance, blur, sharpening and sensor noise on the 8-bit image (deterministic in the
    seed)."""
    from PIL import Image, ImageFilter

    look = spec.look
    img = rgb.astype(np.float64) * np.asarray(look.white_balance)
    if look.blur > 0:
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        img = np.asarray(pil.filter(ImageFilter.GaussianBlur(look.blur))).astype(np.float64)
    if look.sharpen > 0:
        pil = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        mask = ImageFilter.UnsharpMask(radius=1.0, percent=round(100 * look.sharpen), threshold=0)
        img = np.asarray(pil.filter(mask)).astype(np.float64)
    if look.noise_std > 0:
        rng = np.random.default_rng([spec.seed, spec.attempt, 1])
        img = img + rng.normal(0.0, look.noise_std, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------- ground truth
def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(x) for x in rle["size"]], "counts": rle["counts"].decode("ascii")}


def scene_dict(spec: SceneSpec, ids: np.ndarray, *, samples: int) -> dict[str, Any]:
    """CLEVR-compatible scene JSON from the spec and the id pass (HxW, 0 = background).

    ``bbox`` is XYXY in pixels with exclusive right/bottom edges (width = x1 - x0), the tight box
    of the visible mask; ``pixel_coords`` is the projection [u, v, depth] of the 3D centre.
    """
    h, w = ids.shape
    centres = spec.camera.project(np.asarray([o.coords for o in spec.objects]), w, h)
    objects = []
    for k, o in enumerate(spec.objects):
        mask = ids == k + 1
        ys, xs = np.nonzero(mask)
        bbox = (
            [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            if xs.size
            else [0, 0, 0, 0]
        )
        u, v, d = centres[k]
        objects.append(
            {
                "shape": o.shape,
                "color": o.color,
                "material": o.material,
                "size": o.size,
                "3d_coords": [round(c, 4) for c in o.coords],
                "rotation": o.rotation,
                "pixel_coords": [int(round(u)), int(round(v)), round(float(d), 4)],
                "bbox": bbox,
                "mask": _rle(mask),
                "area": int(mask.sum()),
            }
        )
    cam = spec.camera
    f = cam.lens_mm / cam.sensor_mm * w
    dirs = {k: [round(x, 6) for x in v] for k, v in cam.directions().items()}
    return {
        "seed": spec.seed,
        "split": spec.split,
        "image_filename": f"scene_{spec.seed:06d}.png",
        "image_index": spec.seed,
        "width": w,
        "height": h,
        "objects": objects,
        "relationships": spec.relationships(),
        "directions": dirs,
        "camera": {
            "location": [round(x, 6) for x in cam.location],
            "look_at": list(cam.look_at),
            "lens_mm": cam.lens_mm,
            "sensor_mm": cam.sensor_mm,
            "focal_px": round(f, 6),
            "rotation": [[round(float(x), 8) for x in row] for row in cam.rotation()],
        },
        "lights": {k: v.model_dump(mode="json") for k, v in spec.lights.items()},
        "render": {
            "engine": "cycles",
            "samples": samples,
            "denoiser": "openimagedenoise",
            "attempt": spec.attempt,
            **spec.look.model_dump(mode="json"),
        },
        "caption": spec.caption(),
    }


# ----------------------------------------------------------------------------------- public API
def render_scene(
    spec: SceneSpec,
    out_dir: str | Path,
    *,
    samples: int = 32,
    width: int | None = None,
    height: int | None = None,
    threads: int | None = None,
    min_pixels: int | None = None,
) -> dict[str, Any]:
    """Render ``spec`` to ``out_dir/scene_{seed:06d}.png`` and ``.json``; return the scene dict.

    ``width``/``height`` override the spec's resolution (give both). ``threads`` caps Cycles' CPU
    threads (None: all cores). Raises :class:`HiddenObjectError` (nothing written) when an object
    shows fewer than ``min_pixels`` pixels (default :func:`min_pixels_for` the resolution).
    """
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(
            f"samples={samples!r} is invalid: expected an int >= 1 (32 is a good default)"
        )
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(
            f"threads={threads!r} is invalid: expected an int >= 1 or None (all cores)"
        )
    if (width is None) != (height is None):
        raise ConfigError(f"width={width}, height={height}: give both or neither")
    w, h = (
        (width, height) if width is not None and height is not None else (spec.width, spec.height)
    )
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise ConfigError(f"resolution {w}x{h} is invalid: expected 16..4096 pixels a side")
    if width is not None:
        spec = spec.model_copy(update={"width": w, "height": h})
    min_px = min_pixels_for(w, h) if min_pixels is None else min_pixels
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    scene = _reset(threads)
    scene, objects, ground = _build(spec, w, h)
    with tempfile.TemporaryDirectory(prefix="agentkit-render-") as tmp_name:
        tmp = Path(tmp_name)
        ids = _id_pass(scene, objects, ground, tmp)
        counts = np.bincount(ids.ravel(), minlength=len(objects) + 1)
        hidden = {k: int(counts[k + 1]) for k in range(len(objects)) if counts[k + 1] < min_px}
        if hidden:
            raise HiddenObjectError(spec.seed, hidden, min_px)
        rgb = _beauty_pass(spec, scene, objects, ground, tmp, samples)

    from PIL import Image

    data = scene_dict(spec, ids, samples=samples)
    Image.fromarray(_apply_look(spec, rgb)).save(out / data["image_filename"], optimize=True)
    (out / f"scene_{spec.seed:06d}.json").write_text(json.dumps(data, indent=1) + "\n")
    return data


def make_scene(
    seed: int, out_dir: str | Path, *, max_attempts: int = 20, **kw: Any
) -> dict[str, Any]:
    """Sample, render and re-sample until every object is visible; return the scene dict.

    Keywords go to :func:`sample_scene` (``min_objects``, ``max_objects``, ``split``,
    ``randomize_look``) and :func:`render_scene` (``samples``, ``width``, ``height``, ``threads``,
    ``min_pixels``). Attempt k draws from ``(seed, k)``, so the result depends on the seed only.
    """
    sample_keys = {"min_objects", "max_objects", "split", "randomize_look"}
    render_keys = {"samples", "width", "height", "threads", "min_pixels"}
    unknown = set(kw) - sample_keys - render_keys
    if unknown:
        raise ConfigError(
            f"make_scene got unknown options {sorted(unknown)}: expected some of "
            f"{sorted(sample_keys | render_keys)}"
        )
    s_kw = {k: v for k, v in kw.items() if k in sample_keys}
    r_kw = {k: v for k, v in kw.items() if k in render_keys}
    last: HiddenObjectError | None = None
    for attempt in range(max_attempts):
        spec = sample_scene(
            seed, attempt=attempt, width=kw.get("width"), height=kw.get("height"), **s_kw
        )
        try:
            return render_scene(spec, out_dir, **r_kw)
        except HiddenObjectError as err:
            last = err
    raise ConfigError(
        f"seed={seed}: no scene with every object visible in {max_attempts} attempts ({last})"
    )
