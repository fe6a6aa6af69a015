from __future__ import annotations

import time
import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from lensloop.errors import ConfigError, ImageError
from lensloop.tasks.tiling import predict_tiled, tile_starts


def _identity(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return batch


def _as_chw(image: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    chw = image[np.newaxis] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    return chw.astype(np.float32)


# (shape, tile, overlap): smaller than, equal to and larger than a tile, odd sizes, 2-D and 3-D.
SHAPES = [
    ((40, 50), 64, 8),
    ((64, 64), 64, 8),
    ((64, 150), 64, 16),
    ((301, 257), 128, 24),
    ((37, 53), 16, 5),
    ((301, 257, 3), 128, 24),
    ((90, 130, 2), 64, 40),
]


@pytest.mark.parametrize(("shape", "tile", "overlap"), SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_identity_reproduces_the_image(
    shape: tuple[int, ...], tile: int, overlap: int, dtype: type[np.generic]
) -> None:
    rng = np.random.default_rng(0)
    top = 255 if dtype == np.uint8 else 65535
    image = rng.integers(0, top, size=shape, endpoint=True).astype(dtype)
    out = predict_tiled(image, _identity, tile=tile, overlap=overlap, batch_size=3)
    assert out.dtype == np.float32
    assert out.shape == (1 if len(shape) == 2 else shape[2], *shape[:2])
    # float32 rounding only: relative 1e-6 of values up to 65535.
    np.testing.assert_allclose(out, _as_chw(image), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(("shape", "tile", "overlap"), SHAPES)
def test_identity_on_unit_values_is_exact_to_1e5(
    shape: tuple[int, ...], tile: int, overlap: int
) -> None:
    image = np.random.default_rng(1).random(shape)
    out = predict_tiled(image, _identity, tile=tile, overlap=overlap)
    np.testing.assert_allclose(out, _as_chw(image), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("shape", "tile", "overlap"), SHAPES)
def test_constant_predict_gives_the_constant(
    shape: tuple[int, ...], tile: int, overlap: int
) -> None:
    def constant(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        b, _, h, w = batch.shape
        return np.broadcast_to(np.array([3.5, -2.0])[None, :, None, None], (b, 2, h, w))

    image = np.zeros(shape, dtype=np.uint16)
    out = predict_tiled(image, constant, tile=tile, overlap=overlap, out_channels=2)
    assert out.shape == (2, *shape[:2])
    np.testing.assert_allclose(out[0], 3.5, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[1], -2.0, rtol=0, atol=1e-5)


def test_predict_receives_float32_batches_of_full_tiles() -> None:
    seen: list[tuple[tuple[int, ...], np.dtype[np.generic]]] = []

    def record(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        seen.append((batch.shape, batch.dtype))
        return batch[:, :1]

    image = np.ones((200, 90, 3), dtype=np.uint8)
    out = predict_tiled(image, record, tile=64, overlap=8, batch_size=4)
    assert out.shape == (1, 200, 90)
    # rows: 1 + ceil((200 - 64) / 56) = 4; columns: 1 + ceil((90 - 64) / 56) = 2.
    assert [shape for shape, _ in seen] == [(4, 3, 64, 64), (4, 3, 64, 64)]
    assert all(dtype == np.float32 for _, dtype in seen)


def test_values_are_not_rescaled() -> None:
    image = np.full((20, 30), 60000, dtype=np.uint16)
    seen: list[float] = []

    def record(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        seen.append(float(batch.max()))
        return batch

    predict_tiled(image, record, tile=16, overlap=4)
    assert seen
    assert set(seen) == {60000.0}


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(10, 10, 0), (11, 10, 0), (11, 10, 9), (100, 16, 4), (4000, 512, 64), (513, 512, 64)],
)
def test_tile_starts_cover_the_axis_with_at_least_the_overlap(
    length: int, tile: int, overlap: int
) -> None:
    starts = tile_starts(length, tile=tile, overlap=overlap)
    assert starts[0] == 0
    assert starts[-1] == length - tile
    gaps = np.diff(starts)
    assert np.all(gaps > 0)
    assert np.all(tile - gaps >= overlap)
    assert np.ptp(gaps) <= 1 if len(gaps) else True  # evenly spread


def _tile_local_pattern(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A smooth function of the position *within the tile*: tiles disagree where they meet."""
    b, _, h, w = batch.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = np.sin(y / 11.0) + np.cos(x / 7.0) + 0.02 * (x + y)
    return np.broadcast_to(pattern, (b, 1, h, w)).astype(np.float32)


def _largest_step(out: npt.NDArray[np.float32]) -> float:
    return float(max(np.abs(np.diff(out, axis=1)).max(), np.abs(np.diff(out, axis=2)).max()))


def test_blending_is_seamless_for_a_tile_dependent_prediction() -> None:
    image = np.zeros((300, 260), dtype=np.uint8)
    tile = 96
    # Within one tile the pattern changes by up to ~0.16 per pixel.
    within_tile = _largest_step(_tile_local_pattern(np.zeros((1, 1, tile, tile), np.float32))[0])
    blended = predict_tiled(image, _tile_local_pattern, tile=tile, overlap=32)
    hard = predict_tiled(image, _tile_local_pattern, tile=tile, overlap=0)
    # Hard seams jump by up to the full disagreement between tiles (> 1) ...
    assert _largest_step(hard) > 1.0
    # ... while across cosine-blended seams the output is no steeper than inside a tile
    # (measured: equal to within 1e-6; the bound leaves room for other patterns).
    assert _largest_step(blended) < within_tile + 0.05


def test_a_4000_square_uint16_image_runs_in_bounded_memory() -> None:
    image = np.random.default_rng(0).integers(0, 65535, size=(4000, 4000), dtype=np.uint16)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        out = predict_tiled(image, _identity, tile=512, overlap=64, batch_size=4)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (1, 4000, 4000)
    np.testing.assert_allclose(out[0], image, rtol=1e-6)
    # Output 61 MiB + one batch in and out (4 x 512 x 512 float32 = 4 MiB each) + a tile.
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert elapsed < 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 0}, "tile must be >= 1; received 0"),
        ({"tile": -5}, "tile must be >= 1; received -5"),
        ({"tile": 64, "overlap": 64}, "overlap must be smaller than tile; received overlap=64"),
        ({"tile": 64, "overlap": 100}, "overlap must be smaller than tile"),
        ({"overlap": -1}, "overlap must be >= 0; received -1"),
        ({"batch_size": 0}, "batch_size must be >= 1; received 0"),
        ({"out_channels": 0}, "out_channels must be >= 1; received 0"),
        ({"tile": 64.0}, "tile must be an integer; received 64.0"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        predict_tiled(np.zeros((10, 10)), _identity, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5), (0, 10), (10, 0, 3)])
def test_bad_images_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError, match=r"image (must be|has no pixels)"):
        predict_tiled(np.zeros(shape), _identity)


def test_predict_returning_the_wrong_shape_is_reported() -> None:
    with pytest.raises(ValueError, match=r"predict returned shape \(1, 1, 8, 9\).*expected"):
        predict_tiled(np.zeros((10, 10)), lambda b: np.zeros((1, 1, 8, 9)), tile=16, overlap=4)
    with pytest.raises(ValueError, match=r"expected \(1, 2, 10, 10\)"):
        predict_tiled(np.zeros((10, 10)), _identity, tile=16, overlap=4, out_channels=2)


def test_predict_changing_its_channel_count_is_reported() -> None:
    calls = iter([1, 2])

    def fickle(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.zeros((batch.shape[0], next(calls), *batch.shape[2:]), np.float32)

    with pytest.raises(ValueError, match=r"expected \(1, 1, 16, 16\)"):
        predict_tiled(np.zeros((16, 30)), fickle, tile=16, overlap=2, batch_size=1)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40), (64, 64)])
def test_an_image_no_larger_than_the_overlap_on_an_axis_is_one_window(
    shape: tuple[int, int],
) -> None:
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    out = predict_tiled(image, lambda batch: batch * 2.0, tile=64, overlap=64 - 1)
    np.testing.assert_allclose(out[0], image * 2.0, rtol=1e-6)
    out = predict_tiled(image, lambda batch: batch * 2.0, tile=128, overlap=100)
    np.testing.assert_allclose(out[0], image * 2.0, rtol=1e-6)
