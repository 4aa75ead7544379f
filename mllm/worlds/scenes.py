"""CLEVR-style scenes as data: vocabulary, sampling, camera, relations and captions.

Pure Python and numpy (no ``bpy``), so the question generator and tests can use it without
Blender. :mod:`agentkit.mllm.worlds.render` turns a :class:`SceneSpec` into pixels and ground truth.

World frame (CLEVR's): metres-ish units, z up, the ground is the plane z = 0, objects are placed
with their centre in [-3, 3]^2. Camera frame (Blender's): x right, y up, the camera looks down -z.
Image frame: pixels, origin at the top-left corner, u right, v down.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from agentkit.errors import ConfigError

SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
MATERIALS: tuple[str, ...] = ("rubber", "metal")
SIZES: dict[str, float] = {"large": 0.7, "small": 0.35}  # CLEVR's radius per size
RELATIONS: tuple[str, ...] = ("left", "right", "front", "behind")

# CLEVR's base camera and lamps (base_scene.blend), jittered per scene like render_images.py.
CAMERA_LOCATION = (7.48, -6.51, 5.34)
CAMERA_JITTER = 0.5
LENS_MM, SENSOR_MM = 35.0, 32.0  # 2 * atan(16 / 35) = 49.1 degrees horizontal field of view
LIGHTS = {
    "key": (6.6, 2.4, 4.3),
    "fill": (-4.67, -4.01, 3.01),
    "back": (-1.17, 2.65, 5.82),
}
LIGHT_JITTER = 1.0
# Resolutions drawn when the caller does not fix one (width, height): CLEVR's 480x320 and smaller.
RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (320, 240),
    (384, 256),
    (400, 300),
    (432, 288),
    (480, 320),
)

MIN_DIST = 0.25  # free space between two objects' bounding circles (CLEVR's default)
MARGIN = 0.4  # every pair differs by this much along left/right and front/behind (CLEVR's default)
RELATION_EPS = 0.2  # CLEVR's eps in compute_all_relationships


class ObjectSpec(BaseModel):
    """One object: attributes and pose in world coordinates."""

    shape: Literal["cube", "sphere", "cylinder"]
    color: Literal["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"]
    material: Literal["rubber", "metal"]
    size: Literal["large", "small"]
    x: float = Field(description="world x of the centre, in [-3, 3]")
    y: float = Field(description="world y of the centre, in [-3, 3]")
    rotation: float = Field(description="rotation about z, degrees in [0, 360)")

    @property
    def radius(self) -> float:
        """CLEVR's radius; a cube's half side is radius / sqrt(2) so its footprint matches."""
        r = SIZES[self.size]
        return r / math.sqrt(2) if self.shape == "cube" else r

    @property
    def coords(self) -> tuple[float, float, float]:
        """3D centre (x, y, z): objects rest on the ground, so z is the half height."""
        return (self.x, self.y, self.radius)

    def corners(self) -> np.ndarray:
        """8 corners of the object's 3D bounding box in world coordinates, shape (8, 3)."""
        r = self.radius
        a = math.radians(self.rotation)
        c, s = math.cos(a), math.sin(a)
        out = []
        for dx in (-r, r):
            for dy in (-r, r):
                for dz in (-r, r):
                    if self.shape == "cube":  # only the cube's box turns with it
                        dx2, dy2 = c * dx - s * dy, s * dx + c * dy
                    else:
                        dx2, dy2 = dx, dy
                    out.append((self.x + dx2, self.y + dy2, r + dz))
        return np.asarray(out, dtype=np.float64)


class Camera(BaseModel):
    """A pinhole camera looking at the world origin, z up (Blender conventions)."""

    location: tuple[float, float, float]
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    lens_mm: float = LENS_MM
    sensor_mm: float = SENSOR_MM  # fitted to the image width

    def rotation(self) -> np.ndarray:
        """3x3 camera-to-world rotation; columns are the camera's right, up and back axes."""
        eye = np.asarray(self.location, dtype=np.float64)
        forward = np.asarray(self.look_at, dtype=np.float64) - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        return np.stack([right, up, -forward], axis=1)

    def project(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """World points (N, 3) to pixels (N, 3): u, v in image pixels (top-left origin), depth."""
        rot = self.rotation()
        cam = (np.asarray(points, dtype=np.float64) - np.asarray(self.location)) @ rot
        depth = -cam[:, 2]
        f = self.lens_mm / self.sensor_mm * width  # focal length in pixels
        u = width / 2 + f * cam[:, 0] / depth
        v = height / 2 - f * cam[:, 1] / depth
        return np.stack([u, v, depth], axis=1)

    def directions(self) -> dict[str, tuple[float, float, float]]:
        """Unit vectors on the ground plane for left/right/front/behind as the camera sees them.

        As in CLEVR: "behind" is the camera's viewing direction projected on the ground,
        "left" the camera's -x axis projected on the ground.
        """
        rot = self.rotation()
        behind = -rot[:, 2].copy()
        left = -rot[:, 0].copy()
        out = {}
        for name, vec in (("behind", behind), ("left", left)):
            vec[2] = 0.0
            vec /= np.linalg.norm(vec)
            out[name] = vec
        out["front"] = -out["behind"]
        out["right"] = -out["left"]
        return {k: (float(v[0]), float(v[1]), float(v[2])) for k, v in out.items()}


class Light(BaseModel):
    """An area light, invisible to the camera, aimed at the origin."""

    location: tuple[float, float, float]
    energy: float = Field(description="watts")
    size: float = Field(description="side of the square emitter")


class Look(BaseModel):
    """Domain randomisation of the image, applied so models do not learn one rendering look."""

    exposure: float = Field(0.0, description="stops, added in the view transform")
    white_balance: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="RGB gains")
    ground_rgb: tuple[float, float, float] = Field(
        (0.5, 0.5, 0.5), description="linear base colour"
    )
    noise_std: float = Field(0.0, description="Gaussian sensor noise, in 8-bit levels")
    blur: float = Field(0.0, description="Gaussian blur radius, pixels")
    metal_roughness: float = Field(
        0.12, description="roughness of every metal surface (low: sharp mirror reflections)"
    )
    sharpen: float = Field(0.0, description="unsharp-mask amount (1 px radius); 0 when blurred")


class SceneSpec(BaseModel):
    """Everything needed to render one scene; the same spec always gives the same ground truth."""

    seed: int
    attempt: int = Field(0, description="re-sampling round (objects hidden by others)")
    split: str = "train"
    width: int
    height: int
    camera: Camera
    lights: dict[str, Light]
    look: Look
    objects: list[ObjectSpec]

    def relationships(self) -> dict[str, list[list[int]]]:
        """``rel[name][i]`` = indices j such that object j is ``name`` of object i (CLEVR)."""
        return compute_relationships(self.objects, self.camera.directions())

    def caption(self) -> str:
        return make_caption(self.objects, self.relationships())


def _check_counts(min_objects: int, max_objects: int) -> None:
    if not (1 <= min_objects <= max_objects <= 10):
        raise ConfigError(
            f"object counts min_objects={min_objects}, max_objects={max_objects} are invalid: "
            "expected 1 <= min_objects <= max_objects <= 10 (more do not fit in [-3, 3]^2 "
            "with CLEVR's spacing)"
        )


def _surface_look(seed: int, attempt: int, blurred: bool) -> dict[str, float]:
    """Metal roughness (log-uniform 0.02-0.15) and, for half the scenes not blurred, an unsharp
    mask (amount 0.4-1.5). Real CLEVR metal is a near mirror (a metal cube shows its neighbours
    in its faces) and real CLEVR renders are crisper than this world's denoised ones: the
    detector trained on satin metal and soft renders called a real mirror-like cube a cylinder,
    and the same image blurred by 0.7 px a cube. Drawn from their own stream, so every other
    draw of a seed is what it was before these existed."""
    r = np.random.default_rng([seed, attempt, 7])
    rough = round(float(np.exp(r.uniform(np.log(0.02), np.log(0.15)))), 4)
    sharpen = round(float(r.uniform(0.4, 1.5)), 3) if r.random() < 0.5 else 0.0
    return {"metal_roughness": rough, "sharpen": 0.0 if blurred else sharpen}


def sample_scene(
    seed: int,
    *,
    min_objects: int = 3,
    max_objects: int = 10,
    attempt: int = 0,
    split: str = "train",
    width: int | None = None,
    height: int | None = None,
    randomize_look: bool = True,
) -> SceneSpec:
    """Draw a scene: camera, lights, look and 3-10 non-overlapping objects, CLEVR's way.

    Deterministic in ``(seed, attempt)``. Objects are kept ``MIN_DIST`` apart and every pair is
    separated by ``MARGIN`` along the camera's left/right and front/behind axes, so relations are
    unambiguous. ``width``/``height`` fix the resolution; otherwise one is drawn from
    ``RESOLUTIONS``. ``randomize_look=False`` gives CLEVR's plain look (no exposure, tint, noise).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is invalid: expected an int >= 0")
    _check_counts(min_objects, max_objects)
    if (width is None) != (height is None):
        raise ConfigError(f"width={width}, height={height}: give both or neither")
    if (
        width is not None
        and height is not None
        and (width < 16 or height < 16 or width > 4096 or height > 4096)
    ):
        raise ConfigError(
            f"resolution {width}x{height} is invalid: expected 16..4096 pixels a side"
        )
    rng = np.random.default_rng([seed, attempt])

    def jitter(p: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
        return tuple(float(c + rng.uniform(-amount, amount)) for c in p)  # type: ignore[return-value]

    if width is None or height is None:
        width, height = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    camera = Camera(location=jitter(CAMERA_LOCATION, CAMERA_JITTER))
    lights = {
        "key": Light(
            location=jitter(LIGHTS["key"], LIGHT_JITTER),
            energy=float(rng.uniform(440, 540)),
            size=3.0,  # CLEVR's shadows are soft: a broad key light
        ),
        "fill": Light(
            location=jitter(LIGHTS["fill"], LIGHT_JITTER),
            energy=float(rng.uniform(40, 60)),
            size=4.0,
        ),
        "back": Light(
            location=jitter(LIGHTS["back"], LIGHT_JITTER),
            energy=float(rng.uniform(40, 70)),
            size=3.0,
        ),
    }
    if randomize_look:
        # ground albedo: CLEVR's gray rubber (albedo 0.34) reads 0.70 of the ground in a real
        # CLEVR render and 0.77-1.21 (5-95%) in this world's renders with 0.34-0.48, so the real
        # ground is brighter (~0.56); a detector that learnt "brighter than the ground = rubber"
        # called real rubber metal
        gray = rng.uniform(0.34, 0.62)
        # subtle casts only: real CLEVR is a neutral grey; strong green/lilac tints looked fake
        tint = rng.normal(0.0, 0.008, size=3)
        # drawn in this order (exposure, white balance, noise, blur) so every seed keeps its look
        exposure = float(rng.uniform(-0.6, 0.3))  # toward darker scenes, as real CLEVR reads
        white_balance = tuple(float(g) for g in np.clip(1.0 + rng.normal(0, 0.02, 3), 0.94, 1.06))
        ground = tuple(float(x) for x in np.clip(gray + tint, 0.05, 0.9))
        noise = float(rng.uniform(0.0, 3.0))
        blur = float(rng.choice([0.0, 0.0, 0.4, 0.7]))
        look = Look(
            exposure=exposure,
            white_balance=white_balance,  # type: ignore[arg-type]
            ground_rgb=ground,  # type: ignore[arg-type]
            noise_std=noise,
            blur=blur,
            **_surface_look(seed, attempt, blurred=blur > 0),
        )
    else:
        look = Look(ground_rgb=(0.4, 0.4, 0.4))

    n = int(rng.integers(min_objects, max_objects + 1))
    dirs = camera.directions()
    axes = [np.asarray(dirs["left"])[:2], np.asarray(dirs["behind"])[:2]]
    objects: list[ObjectSpec] = []
    for _ in range(200):  # restarts of the whole layout, as CLEVR does when an object cannot fit
        objects = []
        for _ in range(n):
            size = str(rng.choice(list(SIZES)))
            placed = None
            for _ in range(50):
                x, y = (float(v) for v in rng.uniform(-3, 3, size=2))
                r = SIZES[size]
                ok = True
                for o in objects:
                    d = np.array([x - o.x, y - o.y])
                    if np.linalg.norm(d) - r - SIZES[o.size] < MIN_DIST or any(
                        abs(float(d @ ax)) < MARGIN for ax in axes
                    ):
                        ok = False
                        break
                if ok:
                    placed = (x, y)
                    break
            if placed is None:
                break
            objects.append(
                ObjectSpec(
                    shape=str(rng.choice(SHAPES)),
                    color=str(rng.choice(list(COLORS))),
                    material=str(rng.choice(MATERIALS)),
                    size=size,  # type: ignore[arg-type]
                    x=round(placed[0], 4),
                    y=round(placed[1], 4),
                    rotation=round(float(rng.uniform(0, 360)), 3),
                )
            )
        if len(objects) == n:
            break
    else:  # pragma: no cover - needs 200 failed layouts in a row
        raise ConfigError(f"could not place {n} objects for seed={seed}; lower max_objects")
    return SceneSpec(
        seed=seed,
        attempt=attempt,
        split=split,
        width=int(width),
        height=int(height),
        camera=camera,
        lights=lights,
        look=look,
        objects=objects,
    )


def compute_relationships(
    objects: list[ObjectSpec],
    directions: dict[str, tuple[float, float, float]],
    eps: float = RELATION_EPS,
) -> dict[str, list[list[int]]]:
    """CLEVR's ``compute_all_relationships``: j is in rel[name][i] when (p_j - p_i) . dir > eps."""
    out: dict[str, list[list[int]]] = {}
    for name in RELATIONS:
        vec = np.asarray(directions[name])
        out[name] = []
        for i, a in enumerate(objects):
            pa = np.asarray(a.coords)
            out[name].append(
                [
                    j
                    for j, b in enumerate(objects)
                    if j != i and float((np.asarray(b.coords) - pa) @ vec) > eps
                ]
            )
    return out


def describe(obj: ObjectSpec) -> str:
    """'large red metal cube'"""
    return f"{obj.size} {obj.color} {obj.material} {obj.shape}"


def _short_names(objects: list[ObjectSpec]) -> list[str]:
    """The shortest 'colour shape' / 'size colour material shape' name that is unique."""
    names = []
    for o in objects:
        for fields in (
            ("color", "shape"),
            ("size", "color", "shape"),
            ("color", "material", "shape"),
        ):
            key = tuple(getattr(o, f) for f in fields)
            if sum(tuple(getattr(p, f) for f in fields) == key for p in objects) == 1:
                names.append(" ".join(key))
                break
        else:
            names.append(describe(o))
    return names


def make_caption(objects: list[ObjectSpec], relationships: dict[str, list[list[int]]]) -> str:
    """'A large red metal cube, a small blue rubber sphere and ...; the red cube is left of ...'."""
    parts = [("an " if describe(o)[0] in "aeiou" else "a ") + describe(o) for o in objects]
    head = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    head = head[0].upper() + head[1:]
    if len(objects) < 2:
        return head + "."
    names = _short_names(objects)
    rels = []
    # one left/right and one front/behind fact about consecutive objects: short but grounded
    for i in range(min(len(objects) - 1, 3)):
        j = i + 1
        if j in relationships["left"][i]:
            rels.append(f"the {names[j]} is left of the {names[i]}")
        elif j in relationships["right"][i]:
            rels.append(f"the {names[j]} is right of the {names[i]}")
        if j in relationships["front"][i]:
            rels.append(f"the {names[j]} is in front of the {names[i]}")
        elif j in relationships["behind"][i]:
            rels.append(f"the {names[j]} is behind the {names[i]}")
    return head + ("; " + ", ".join(rels) if rels else "") + "."
