from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from lensloop.imaging import ThumbnailCache, decode_image, make_thumbnail

from ._make import ramp

SHA = hashlib.sha256(b"an image").hexdigest()


@pytest.mark.parametrize(
    ("shape", "size", "expected"),
    [
        ((1000, 500, 3), 256, (256, 128, 3)),
        ((500, 1000), 256, (128, 256)),
        ((300, 300, 4), 100, (100, 100, 3)),
        ((1000, 3), 100, (100, 1)),
    ],
)
def test_thumbnail_shape(shape: tuple[int, ...], size: int, expected: tuple[int, ...]) -> None:
    thumb = make_thumbnail(np.zeros(shape, np.uint8), size=size)
    assert thumb.shape == expected
    assert thumb.dtype == np.uint8


def test_small_images_are_not_enlarged() -> None:
    image = ramp((20, 30, 3), np.uint8)
    np.testing.assert_array_equal(make_thumbnail(image, size=256), image)


def test_16bit_thumbnail_is_stretched_8bit() -> None:
    image = ramp((400, 300), np.uint16, high=4095)
    thumb = make_thumbnail(image, size=64)
    assert thumb.shape == (64, 48)
    assert thumb.dtype == np.uint8
    assert int(thumb.max()) >= 250
    assert int(thumb.min()) <= 5


def test_resampling_keeps_the_mean() -> None:
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    thumb = make_thumbnail(image, size=64)
    assert abs(float(thumb.mean()) - float(image.mean())) < 2


@pytest.mark.parametrize("size", [0, -5, 2.5, True])
def test_bad_size(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        make_thumbnail(np.zeros((4, 4), np.uint8), size=size)  # type: ignore[arg-type]


def test_path_for_shards_by_hash(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path)
    assert cache.path_for(SHA, size=128) == tmp_path / SHA[:2] / f"{SHA}_128.jpg"
    assert cache.path_for(SHA.upper(), size=128) == cache.path_for(SHA, size=128)
    assert "ThumbnailCache(" in repr(cache)


@pytest.mark.parametrize("sha", ["abc", "g" * 64, SHA + "0", "", None])
def test_path_for_refuses_bad_hashes(tmp_path: Path, sha: object) -> None:
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits"):
        ThumbnailCache(tmp_path).path_for(sha, size=64)  # type: ignore[arg-type]


def test_get_or_create_calls_load_only_on_a_miss(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs")
    calls: list[int] = []

    def load() -> np.ndarray:
        calls.append(1)
        return ramp((300, 200, 3), np.uint16)

    path = cache.get_or_create(SHA, size=64, load=load)
    assert calls == [1]
    assert path == cache.path_for(SHA, size=64)
    decoded = decode_image(path.read_bytes())
    assert decoded.info.format == "jpeg"
    assert decoded.array.shape == (64, 43, 3)

    def must_not_load() -> np.ndarray:
        raise AssertionError("load called on a cache hit")

    assert cache.get_or_create(SHA, size=64, load=must_not_load) == path
    assert calls == [1]
    other = cache.get_or_create(SHA, size=32, load=load)  # another size is another entry
    assert calls == [1, 1]
    assert other != path
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{SHA}_32.jpg", f"{SHA}_64.jpg"]


def test_gray_thumbnails_are_one_channel_jpegs(tmp_path: Path) -> None:
    path = ThumbnailCache(tmp_path).get_or_create(
        SHA, size=16, load=lambda: ramp((40, 40), np.float32, high=1)
    )
    assert decode_image(path.read_bytes()).array.shape == (16, 16)


def test_load_errors_propagate_and_leave_nothing(tmp_path: Path) -> None:
    def broken() -> np.ndarray:
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        ThumbnailCache(tmp_path).get_or_create(SHA, size=16, load=broken)
    assert not list(tmp_path.rglob("*.jpg"))
