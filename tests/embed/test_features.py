from __future__ import annotations

import pickle

import numpy as np
import pytest

from lensloop.embed.features import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    FEATURES_DIM,
    FeaturesBackbone,
    compute_features,
    measure_features,
    transform_features,
)
from lensloop.errors import ConfigError, ImageError


def _ellipse(
    shape: tuple[int, int] = (64, 64),
    *,
    axes: tuple[float, float] = (20.0, 8.0),
    angle: float = 0.0,
    dark_on_bright: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """A uint8 ellipse on a noisy flat background."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cols - cx) * cos + (rows - cy) * sin
    v = -(cols - cx) * sin + (rows - cy) * cos
    inside = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1
    background, foreground = (200.0, 60.0) if dark_on_bright else (30.0, 180.0)
    image = np.where(inside, foreground, background) + rng.normal(0, 3, shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _named(vector: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, vector.tolist(), strict=True))


def test_names_and_groups_match_dim() -> None:
    assert len(FEATURE_NAMES) == FEATURES_DIM == FeaturesBackbone().dim
    assert len(set(FEATURE_NAMES)) == FEATURES_DIM
    assert sum(len(v) for v in FEATURE_GROUPS.values()) == FEATURES_DIM


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(np.zeros((32, 32), np.uint8), id="blank"),
        pytest.param(np.full((32, 32, 3), 255, np.uint8), id="blank-white-rgb"),
        pytest.param(np.random.default_rng(0).integers(0, 255, (5, 5), dtype=np.uint8), id="5x5"),
        pytest.param(np.ones((1, 1), np.uint8), id="1x1"),
        pytest.param(np.arange(7, dtype=np.uint8)[None, :], id="1x7"),
        pytest.param(
            np.random.default_rng(1).integers(0, 65535, (40, 30), dtype=np.uint16), id="uint16"
        ),
        pytest.param(
            np.random.default_rng(2).integers(0, 255, (24, 24, 4), dtype=np.uint8), id="rgba"
        ),
        pytest.param(np.random.default_rng(3).random((20, 20, 2)).astype(np.float32), id="2ch"),
        pytest.param(np.full((16, 16), np.nan, np.float32), id="all-nan"),
        pytest.param(np.eye(12, dtype=bool), id="bool"),
        pytest.param(np.random.default_rng(4).normal(size=(20, 20)), id="float64-negative"),
        pytest.param(np.zeros((600, 40), np.uint16), id="tall-blank-16bit"),
    ],
)
def test_never_raises_for_valid_images(image: np.ndarray) -> None:
    vector = FeaturesBackbone().prepare(image)
    assert vector.shape == (FEATURES_DIM,)
    assert vector.dtype == np.float32
    assert np.all(np.isfinite(vector))


def test_blank_image_has_no_object() -> None:
    named = _named(measure_features(np.full((32, 32), 17, np.uint8)))
    assert named["area_fraction"] == 0.0
    assert named["polarity"] == 0.0


def test_shape_measurements_of_an_ellipse() -> None:
    named = _named(measure_features(_ellipse(axes=(20.0, 8.0))))
    assert named["axis_ratio"] == pytest.approx(8 / 20, abs=0.05)
    assert named["solidity"] > 0.95
    assert named["polarity"] == -1.0  # dark object on a bright field
    assert named["area_fraction"] == pytest.approx(np.pi * 20 * 8 / 64**2, rel=0.1)


def test_polarity_does_not_change_the_shape() -> None:
    dark = _named(measure_features(_ellipse(dark_on_bright=True)))
    bright = _named(measure_features(_ellipse(dark_on_bright=False)))
    assert bright["polarity"] == 1.0
    for name in ("area_fraction", "eccentricity", "solidity", "axis_ratio", "circularity"):
        assert dark[name] == pytest.approx(bright[name], abs=0.02), name


def test_orientation_free() -> None:
    flat = compute_features(_ellipse(angle=0.0))
    turned = compute_features(np.ascontiguousarray(np.rot90(_ellipse(angle=0.0))))
    tilted = compute_features(_ellipse(angle=0.6))
    assert np.allclose(flat, turned, atol=0.02)
    cosine = flat @ tilted / (np.linalg.norm(flat) * np.linalg.norm(tilted))
    assert cosine > 0.98


def test_separates_round_from_elongated() -> None:
    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    disc_a = unit(compute_features(_ellipse(axes=(12, 12), seed=1)))
    disc_b = unit(compute_features(_ellipse(axes=(13, 12), seed=2)))
    rod = unit(compute_features(_ellipse(axes=(26, 5), seed=3)))
    assert disc_a @ disc_b > disc_a @ rod


def test_16_bit_image_gives_the_same_shape_as_8_bit() -> None:
    # Intensities differ by the input rule (8-bit /255, 16-bit percentile stretch); the
    # object found, and so its shape, must not.
    eight = _named(measure_features(_ellipse()))
    sixteen = _named(measure_features(_ellipse().astype(np.uint16) * 257))
    for name in FEATURE_GROUPS["shape"] + FEATURE_GROUPS["hu"] + FEATURE_GROUPS["contour"]:
        assert eight[name] == pytest.approx(sixteen[name], abs=0.02), name


def test_transform_balances_groups() -> None:
    measured = measure_features(_ellipse())
    vector = transform_features(measured)
    start = 0
    for names in FEATURE_GROUPS.values():
        part = vector[start : start + len(names)]
        if np.any(measured[start : start + len(names)]):
            assert np.linalg.norm(part) == pytest.approx(np.sqrt(len(names) / FEATURES_DIM))
        start += len(names)
    assert np.linalg.norm(vector) <= 1.0 + 1e-6


def test_infer_is_identity_and_checks_shape() -> None:
    backbone = FeaturesBackbone()
    batch = np.stack([backbone.prepare(_ellipse(seed=s)) for s in range(3)])
    assert np.array_equal(backbone.infer(batch), batch)
    with pytest.raises(ConfigError, match=rf"\(N, {FEATURES_DIM}\)"):
        backbone.infer(np.zeros((2, 3, 8, 8), np.float32))


def test_backbone_is_picklable_and_named() -> None:
    backbone = pickle.loads(pickle.dumps(FeaturesBackbone()))
    assert backbone.name == "features"
    assert backbone.version == "1"


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4, 5), np.uint8), "1-4 channels"),
        (np.zeros((2, 3, 4, 1), np.uint8), "1-4 channels"),
        (np.zeros((0, 4), np.uint8), "no pixels"),
        (np.array([["a", "b"]]), "not numeric"),
        (np.zeros((4, 4), np.complex64), "complex"),
    ],
)
def test_invalid_images_raise_image_error(image: np.ndarray, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        compute_features(image)


def test_large_images_are_measured_in_original_pixels() -> None:
    small = _named(measure_features(_ellipse((200, 200), axes=(80, 30))))
    large = _named(
        measure_features(np.kron(_ellipse((200, 200), axes=(80, 30)), np.ones((4, 4), np.uint8)))
    )
    # 4x the side: log area grows by log(16) / log(1e6), even though the large image is
    # measured on a shrunk copy
    assert large["log_area"] - small["log_area"] == pytest.approx(
        np.log(16) / np.log(1e6), abs=0.02
    )
    assert large["axis_ratio"] == pytest.approx(small["axis_ratio"], abs=0.02)
