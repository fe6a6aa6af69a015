"""Synthetic core-box and shapes scenes: labels agree with regions, fragments, seeds."""

from __future__ import annotations

import time

import numpy as np
import pytest
from skimage.measure import label

from lensloop.annotate.regions import rasterise
from lensloop.tasks.segment.synthetic import (
    CORE_CLASSES,
    Scene,
    make_core_dataset,
    make_core_image,
    make_shapes_image,
)


def components(mask: np.ndarray) -> int:
    return int(label(mask, return_num=True)[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_regions_rasterise_to_the_labels(seed: int) -> None:
    scene = make_core_image(seed=seed)
    assert scene.image.shape == (256, 384, 3)
    assert scene.image.dtype == np.uint8
    assert scene.labels.shape == (256, 384)
    assert scene.labels.dtype == np.uint8
    assert scene.classes == CORE_CLASSES == ("box", "rock")
    assert scene.draw_order == ("box", "rock")
    assert [r.label for r in scene.regions[:1]] == ["box"]
    assert {r.label for r in scene.regions[1:]} == {"rock"}
    explicit = rasterise(scene.regions, (256, 384), scene.classes, draw_order=["box", "rock"])
    np.testing.assert_array_equal(explicit, scene.labels)
    # The box is the largest region, so drawing larger first gives the same map.
    np.testing.assert_array_equal(rasterise(scene.regions, (256, 384), scene.classes), scene.labels)
    assert set(np.unique(scene.labels)) == {0, 1, 2}


@pytest.mark.parametrize("seed", [0, 3, 4, 5])
def test_fragments_are_the_connected_components_of_rock(seed: int) -> None:
    scene = make_core_image(seed=seed)
    rock = scene.labels == 2
    assert scene.fragments == components(rock)
    assert scene.fragments >= 3 * 3  # at least three trays of at least three pieces
    # Pieces lie inside the box, with the box floor showing between them.
    inside_box = rasterise(scene.regions[:1], rock.shape, scene.classes) == 1
    assert not (rock & ~inside_box).any()
    assert (scene.labels == 1).sum() > rock.sum() * 0.3


def test_fragment_counts_follow_the_argument() -> None:
    one = make_core_image(128, 192, fragments=1, trays=2, seed=3)
    assert one.fragments == 2
    assert components(one.labels == 2) == 2
    none = make_core_image(128, 192, fragments=0, seed=3)
    assert none.fragments == 0
    assert (none.labels == 1).any()


def test_determinism_by_seed_and_grey() -> None:
    a, b = make_core_image(seed=11), make_core_image(seed=11)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    other = make_core_image(seed=12)
    assert not np.array_equal(a.labels, other.labels)
    grey = make_core_image(seed=11, grey=True)
    assert grey.image.shape == (256, 384)
    np.testing.assert_array_equal(grey.labels, a.labels)
    # The picture shows the objects: rock is brighter than the tray floor around it.
    luminance = a.image.astype(float).mean(axis=2)
    assert luminance[a.labels == 2].mean() > luminance[a.labels == 1].mean()


def test_core_dataset() -> None:
    scenes = make_core_dataset(3, height=96, width=128, seed=4)
    assert len(scenes) == 3
    assert all(isinstance(s, Scene) and s.labels.shape == (96, 128) for s in scenes)
    assert not np.array_equal(scenes[0].labels, scenes[1].labels)
    more = make_core_dataset(4, height=96, width=128, seed=4)
    for first, again in zip(scenes, more, strict=False):
        np.testing.assert_array_equal(first.image, again.image)
    seq = np.random.SeedSequence(4)
    make_core_dataset(2, height=64, width=64, seed=seq)
    assert seq.n_children_spawned == 0


def test_shapes_image() -> None:
    scene = make_shapes_image(96, 128, classes=("cell", "debris"), objects=(8, 12), seed=2)
    assert scene.image.shape == (96, 128, 3)
    assert scene.classes == ("cell", "debris")
    assert 8 <= len(scene.regions) <= 12
    np.testing.assert_array_equal(rasterise(scene.regions, (96, 128), scene.classes), scene.labels)
    assert scene.fragments == components(scene.labels > 0) == len(scene.regions)
    assert set(np.unique(scene.labels)) <= {0, 1, 2}
    grey = make_shapes_image(seed=2, grey=True)
    assert grey.image.shape == (128, 128)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="height must be an int >= 32"):
        make_core_image(10, 100)
    with pytest.raises(ValueError, match=r"fragments\[1\] must be an int >= 5"):
        make_core_image(fragments=(5, 2))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        make_core_image(seed=-1)
    with pytest.raises(ValueError, match="classes must be 1 to 3 distinct names"):
        make_shapes_image(classes=("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="radius must satisfy"):
        make_shapes_image(32, 32, radius=(4.0, 20.0))


@pytest.mark.slow
def test_a_large_core_photograph_is_quick() -> None:
    start = time.perf_counter()
    scene = make_core_image(4000, 6000, seed=0)
    elapsed = time.perf_counter() - start
    assert scene.image.shape == (4000, 6000, 3)
    assert scene.fragments > 9
    assert elapsed < 30  # a few seconds on one core; generous for busy CI machines
