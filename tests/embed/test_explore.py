from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage

from fakes import MeanColourBackbone
from lensloop.catalog.models import ClusterMember, MapPoint
from lensloop.embed.engine import embed_project
from lensloop.embed.explore import cluster_images, duplicate_images, map_images, similar_images
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest


def _coloured(path: Path, rgb: tuple[int, int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-6, 7, (24, 24, 3))
    array = np.clip(np.array(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)


@pytest.fixture
def embedded(project: Project, tmp_path: Path) -> Project:
    """Ten reddish and ten bluish images, labelled by colour, embedded with the fake backbone."""
    for i in range(10):
        _coloured(tmp_path / "d" / "red" / f"r{i}.png", (200, 40, 40), seed=i)
        _coloured(tmp_path / "d" / "blue" / f"b{i}.png", (40, 40, 200), seed=100 + i)
    ingest(project, [tmp_path / "d"], options=IngestOptions(labels_from_folders=True))
    embed_project(project, MeanColourBackbone(), workers=0)
    return project


def _colour_of(uri: str) -> str:
    return Path(uri).parent.name


def test_similar_images_are_the_same_colour(embedded: Project) -> None:
    found = similar_images(embedded, 1, backbone="fake-mean", k=5)
    assert len(found) == 5
    assert 1 not in [n.image_id for n in found]
    assert {_colour_of(n.uri) for n in found} == {"blue"}  # image 1 is blue/b0.png (sorted walk)
    assert all(a.score >= b.score for a, b in itertools.pairwise(found))


def test_similar_errors(embedded: Project) -> None:
    with pytest.raises(NotFoundError, match="image 999 has no fake-mean vector"):
        similar_images(embedded, 999, backbone="fake-mean")
    with pytest.raises(ConfigError, match="k must be at least 1"):
        similar_images(embedded, 1, backbone="fake-mean", k=0)
    with pytest.raises(NotFoundError, match="no embeddings for resnet18"):
        similar_images(embedded, 1, backbone="resnet18")


def test_near_duplicates_are_paired(embedded: Project) -> None:
    pairs = duplicate_images(embedded, backbone="fake-mean", threshold=0.9999)
    assert pairs, "images of one colour with small noise should pair at 0.9999"
    for a, b in pairs:
        assert a.image_id < b.image_id
        assert _colour_of(a.uri) == _colour_of(b.uri)
    assert duplicate_images(embedded, backbone="fake-mean", threshold=1.0) == []
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\]"):
        duplicate_images(embedded, backbone="fake-mean", threshold=0)


def test_clusters_are_stored_and_follow_colour(embedded: Project) -> None:
    result = cluster_images(embedded, backbone="fake-mean", k=2, seed=0)
    assert result.n_clusters == 2
    assert sorted(result.sizes.values()) == [10, 10]
    with embedded.catalog.reader() as session:
        members = session.execute(
            sa.select(ClusterMember.image_id, ClusterMember.cluster).where(
                ClusterMember.run_id == result.run_id
            )
        ).all()
    uris = {n.image_id: n.uri for n in similar_images(embedded, 1, backbone="fake-mean", k=19)}
    by_cluster: dict[int, set[str]] = {}
    for image_id, cluster in members:
        if image_id in uris:
            by_cluster.setdefault(cluster, set()).add(_colour_of(uris[image_id]))
    assert all(len(colours) == 1 for colours in by_cluster.values())
    auto = cluster_images(embedded, backbone="fake-mean", seed=0)  # k by silhouette
    assert auto.n_clusters == 2
    with pytest.raises(ConfigError, match="valid: kmeans, hdbscan"):
        cluster_images(embedded, backbone="fake-mean", method="spectral")


def test_map_is_stored_and_drawn(embedded: Project) -> None:
    result = map_images(embedded, backbone="fake-mean", method="pca", size_px=400)
    assert result.n_points == 20
    assert result.png_path is not None
    with PILImage.open(result.png_path) as image:
        assert image.size[0] == 400
    with embedded.catalog.reader() as session:
        points = session.execute(
            sa.select(MapPoint.x, MapPoint.y).where(MapPoint.layout_id == result.layout_id)
        ).all()
    assert len(points) == 20
    assert all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in points)
