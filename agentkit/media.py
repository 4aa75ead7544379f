"""A per-run media store: images and audio by id, so state, prompts and checkpoints hold short
references instead of pixels.

Files are copied under ``<run_dir>/media/`` (an RGB PNG as it is once its chunks check out,
other images decoded and re-encoded as PNG) and an ``index.json`` maps ids to files, so a run
resumed in another process finds the same media. A PNG whose compressed pixels are damaged under
valid checksums passes the chunk check; the tool that decodes it fails with a recorded step.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from agentkit.errors import MediaError

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: Largest image accepted, in pixels (about 8k x 8k). Larger files are refused, not decoded.
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def open_image(path: str | Path) -> PILImage.Image:
    """Open and fully decode an image as RGB, with clear errors for missing, corrupt or huge files."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise MediaError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise MediaError(
                    f"image {p} is {w}x{h} = {w * h} pixels; the limit is {MAX_PIXELS}. "
                    "Downscale it first (e.g. `convert in.png -resize 4096x4096 out.png`)."
                )
            im.load()
            return im.convert("RGB")
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"cannot read image {p}: {e}") from e
    except Exception as e:  # decoder plugins registered by other libraries raise their own kinds
        raise MediaError(f"cannot read image {p}: {type(e).__name__}: {e}") from e


def file_identity(path: str | Path) -> tuple[int, int, int, int] | None:
    """The file at ``path`` as it is now, however the path is spelled: (device, inode,
    modification time in ns, size) from one ``stat``; None when it cannot be read. A key for what
    was computed from a file's bytes: a file rewritten since has another mtime (and most often
    another size)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


#: RGB PNGs that passed :func:`checked_rgb_png`, by file identity (:func:`file_identity`):
#: their sizes. The same image asked about again (an evaluation's questions per scene, a user's
#: follow-up) is not read again; a file rewritten since is, since its mtime and size move.
_CHECKED: dict[tuple[int, int, int, int], tuple[int, int]] = {}
_CHECKED_MAX = 4096


def checked_rgb_png(path: str | Path) -> tuple[int, int] | None:
    """The size of a file that is an RGB PNG within the size limit whose every chunk is whole
    and passes its CRC check (PIL's ``verify``: no pixel is decoded, ~0.07 ms for a 480x320
    scene against ~3 ms for a decode): such a file is stored as it is. None for any other file,
    which :func:`open_image` then decodes (and refuses with a clear error if it must). A file
    that passed before and has not changed since is not read again (:data:`_CHECKED`)."""
    from PIL import Image

    if (key := file_identity(path)) is None:
        return None
    if (known := _CHECKED.get(key)) is not None:
        return known
    try:
        with Image.open(path) as im:
            if im.format != "PNG" or im.mode != "RGB" or im.width * im.height > MAX_PIXELS:
                return None
            size = im.size
            im.verify()
    except Exception:  # noqa: BLE001  any failure: let the full decode judge and name it
        return None
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()  # a long-lived server's many images: start again rather than grow
    _CHECKED[key] = size
    return size


class MediaStore:
    """Images and audio of one run, addressed by short ids (``image_0``, ``crop_1``, ``audio_0``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "index.json"
        self._lock = threading.Lock()
        self._index: dict[str, str] = {}
        self._sizes: dict[str, tuple[int, int]] = {}  # of the images added in this process
        if self._index_path.exists():
            self._index = json.loads(self._index_path.read_text())

    def __contains__(self, media_id: str) -> bool:
        return media_id in self._index

    def ids(self) -> list[str]:
        return list(self._index)

    def _new_id(self, prefix: str) -> str:
        n = sum(1 for k in self._index if k.rsplit("_", 1)[0] == prefix)
        return f"{prefix}_{n}"

    def _commit(self, media_id: str, filename: str) -> str:
        self._index[media_id] = filename
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._index, indent=1))
        tmp.replace(self._index_path)
        return media_id

    def add_image(self, image: str | Path | PILImage.Image, prefix: str = "image") -> str:
        """Validate and store an image (a path or a PIL image); return its id."""
        if isinstance(image, str | Path):
            if size := checked_rgb_png(image):  # already what would be written: no decode
                with self._lock:
                    media_id = self._new_id(prefix)
                    shutil.copyfile(image, self.root / f"{media_id}.png")
                    self._sizes[media_id] = size
                    return self._commit(media_id, f"{media_id}.png")
            im = open_image(image)
        else:  # an image a tool made: same limits as a file, checked before the RGB copy
            w, h = image.size
            if w * h > MAX_PIXELS or w == 0 or h == 0:
                raise MediaError(f"image is {w}x{h} pixels; expected 1 to {MAX_PIXELS} pixels")
            im = image.convert("RGB")
        with self._lock:
            media_id = self._new_id(prefix)
            filename = f"{media_id}.png"
            # compress_level=1: a 480x320 PNG in ~15 ms instead of ~150 ms, the size barely larger
            im.save(self.root / filename, compress_level=1)
            self._sizes[media_id] = im.size
            return self._commit(media_id, filename)

    def add_file(self, path: str | Path, prefix: str = "audio") -> str:
        """Store any file (audio, video) as it is; return its id."""
        p = Path(path)
        if not p.is_file():
            raise MediaError(f"file not found: {p}")
        with self._lock:
            media_id = self._new_id(prefix)
            filename = f"{media_id}{p.suffix.lower()}"
            shutil.copyfile(p, self.root / filename)
            return self._commit(media_id, filename)

    def path(self, media_id: str) -> Path:
        """The file behind an id. Raises :class:`MediaError` naming the known ids."""
        try:
            return self.root / self._index[media_id]
        except KeyError:
            known = ", ".join(self._index) or "none"
            raise MediaError(
                f"no media with id {media_id!r} in this run (known: {known})"
            ) from None

    def image(self, media_id: str) -> PILImage.Image:
        return open_image(self.path(media_id))

    def image_size(self, media_id: str) -> tuple[int, int]:
        """``(width, height)`` of a stored image: as it was added, else from its header (stored
        images were validated when added: no second decode)."""
        from PIL import Image

        if (size := self._sizes.get(media_id)) is not None:
            return size
        with Image.open(self.path(media_id)) as im:
            return im.size
