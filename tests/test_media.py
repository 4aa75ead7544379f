"""The media store and open_image refuse what they cannot safely decode."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from agentkit.errors import MediaError
from agentkit.media import MAX_PIXELS, MediaStore, open_image


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` with no pixel data: decoding it would
    allocate width*height*3 bytes, so it must be refused from the header alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def png(tmp_path: Path) -> Path:
    p = tmp_path / "ok.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(p)
    return p


def test_store_round_trip_and_persistence(tmp_path: Path, png: Path) -> None:
    store = MediaStore(tmp_path / "media")
    a = store.add_image(png)
    b = store.add_image(Image.new("L", (5, 7), 128), prefix="crop")
    c = store.add_image(Image.new("RGB", (3, 3)), prefix="crop")
    assert (a, b, c) == ("image_0", "crop_0", "crop_1")
    assert store.image(a).size == (40, 30) and store.image(a).getpixel((0, 0)) == (200, 10, 10)
    assert store.image(b).mode == "RGB" and store.image(b).getpixel((0, 0)) == (128, 128, 128)
    again = MediaStore(tmp_path / "media")  # a resumed run in another process
    assert again.ids() == ["image_0", "crop_0", "crop_1"] and again.image("crop_0").size == (5, 7)
    assert again.image_size("image_0") == (40, 30) and again.image_size("crop_0") == (5, 7)


def test_unknown_id_names_the_known_ones(tmp_path: Path, png: Path) -> None:
    store = MediaStore(tmp_path)
    store.add_image(png)
    with pytest.raises(MediaError, match=r"'image_9'.*image_0"):
        store.image("image_9")


@pytest.mark.parametrize(
    "make",
    [
        lambda p, good: p.write_bytes(bytes(range(256)) * 8),  # not an image at all
        lambda p, good: p.write_bytes(b""),  # empty
        lambda p, good: p.write_bytes(good.read_bytes()[:60]),  # truncated pixel data
        lambda p, good: p.write_bytes(good.read_bytes()[:20]),  # truncated header
        lambda p, good: p.write_bytes(
            good.read_bytes()[:30] + b"\xff" + good.read_bytes()[31:]
        ),  # bad CRC
    ],
)
def test_corrupt_files_are_media_errors(tmp_path: Path, png: Path, make) -> None:
    bad = tmp_path / "bad.png"
    make(bad, png)
    with pytest.raises(MediaError, match="cannot read image"):
        open_image(bad)
    store = MediaStore(tmp_path / "media")
    with pytest.raises(MediaError):
        store.add_image(bad)
    assert store.ids() == []  # nothing half-added


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        open_image(tmp_path / "nope.png")


def test_oversize_image_is_refused_from_its_header(tmp_path: Path) -> None:
    big = _png_header_only(tmp_path / "big.png", 9000, 9000)  # 81 M pixels > 64 M
    assert MAX_PIXELS < 9000 * 9000
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match=r"9000x9000.*limit"):
        open_image(big)
    assert time.perf_counter() - t0 < 0.5  # refused before decoding
    with pytest.raises(MediaError):
        MediaStore(tmp_path / "media").add_image(big)


def test_decompression_bomb_is_a_media_error(tmp_path: Path) -> None:
    # past PIL's own bomb threshold Image.open raises before our check; still a MediaError
    with pytest.raises(MediaError):
        open_image(_png_header_only(tmp_path / "bomb.png", 30000, 30000))


def test_oversize_or_empty_image_made_in_memory_is_refused(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    with pytest.raises(MediaError, match="pixels"):
        store.add_image(
            Image.new("1", (8100, 8000))
        )  # 1 bit per pixel: 8 MB to make, 194 MB as RGB
    with pytest.raises(MediaError, match="pixels"):
        store.add_image(Image.new("RGB", (0, 5)))
    assert store.ids() == []


def test_an_unchanged_png_is_checked_once_and_a_rewritten_one_again(
    tmp_path: Path, png: Path, monkeypatch
) -> None:
    import os

    from PIL import PngImagePlugin

    checks = []
    verify = PngImagePlugin.PngImageFile.verify
    monkeypatch.setattr(
        PngImagePlugin.PngImageFile, "verify", lambda im: checks.append(1) or verify(im)
    )
    store = MediaStore(tmp_path / "media")
    assert [store.add_image(png), store.add_image(str(png))] == ["image_0", "image_1"]
    assert len(checks) == 1  # the second question about the image does not read it again
    assert (tmp_path / "media" / "image_1.png").read_bytes() == png.read_bytes()
    good = png.read_bytes()
    png.write_bytes(good[:30] + bytes([good[30] ^ 0xFF]) + good[31:])  # same size, bad CRC
    st = png.stat()
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a later write's mtime
    with pytest.raises(MediaError, match="cannot read image"):
        store.add_image(png)
    assert store.ids() == ["image_0", "image_1"]
