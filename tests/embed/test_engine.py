from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder, write_png
from fakes import MeanColourBackbone
from lensloop.embed.engine import embed_project, l2_normalize
from lensloop.errors import CatalogError, NotFoundError
from lensloop.project import Project, project_status
from lensloop.project.ingest import IngestOptions, ingest


def _project_with_images(project: Project, tmp_path: Path, n: int = 10) -> None:
    make_image_folder(tmp_path / "d", {"a": n // 2, "b": n - n // 2})
    ingest(project, [tmp_path / "d"], options=IngestOptions(labels_from_folders=True))


def test_embeds_every_image_once_and_incrementally(project: Project, tmp_path: Path) -> None:
    _project_with_images(project, tmp_path, 10)
    report = embed_project(project, MeanColourBackbone(), batch_size=4, workers=0, flush_every=4)
    assert (report.embedded, report.already_embedded, report.failed) == (10, 0, [])
    ids, vectors = project.embeddings("fake-mean")
    assert ids.tolist() == list(range(1, 11))
    assert vectors.shape == (10, 6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

    write_png(tmp_path / "more" / "x.png", seed=12345)
    ingest(project, [tmp_path / "more"])
    again = embed_project(project, MeanColourBackbone(), batch_size=4, workers=0)
    assert (again.embedded, again.already_embedded) == (1, 10)
    assert project.embeddings("fake-mean")[0].tolist() == list(range(1, 12))
    assert project_status(project)["embeddings"] == [
        {"backbone": "fake-mean", "version": "1", "dim": 6, "count": 11}
    ]


def test_vectors_match_the_backbone(project: Project, tmp_path: Path) -> None:
    _project_with_images(project, tmp_path, 4)
    embed_project(project, MeanColourBackbone(), workers=0)
    ids, vectors = project.embeddings("fake-mean")
    backbone = MeanColourBackbone()
    for image_id, vector in zip(ids, vectors, strict=True):
        expected = l2_normalize(backbone.prepare(project.read_image(int(image_id)))[None])[0]
        np.testing.assert_allclose(vector, expected, rtol=1e-6)


def test_worker_processes_give_identical_vectors(tmp_path: Path, settings: object) -> None:
    results = []
    for workers in (0, 2):
        with Project.init(tmp_path / f"p{workers}", settings=settings) as project:  # type: ignore[arg-type]
            _project_with_images(project, tmp_path / f"data{workers}", 12)
            embed_project(project, MeanColourBackbone(), batch_size=5, workers=workers)
            results.append(project.embeddings("fake-mean"))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


def test_unreadable_image_is_reported_and_skipped(project: Project, tmp_path: Path) -> None:
    _project_with_images(project, tmp_path, 4)
    (tmp_path / "d" / "a" / "img_0000.png").unlink()
    report = embed_project(project, MeanColourBackbone(), workers=0)
    assert report.embedded == 3
    ((image_id, uri, reason),) = report.failed
    assert uri.endswith("a/img_0000.png")
    assert "cannot read file" in reason
    assert image_id not in project.embeddings("fake-mean")[0].tolist()


def test_failing_backbone_leaves_stored_vectors_intact(project: Project, tmp_path: Path) -> None:
    _project_with_images(project, tmp_path, 6)
    embed_project(project, MeanColourBackbone(), workers=0)
    before = project.embeddings("fake-mean")
    write_png(tmp_path / "new" / "n.png", seed=4242)
    ingest(project, [tmp_path / "new"])
    with pytest.raises(RuntimeError, match="inference exploded"):
        embed_project(project, MeanColourBackbone(fail_on_infer=True), workers=0)
    after = project.embeddings("fake-mean")
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_versions_never_mix(project: Project, tmp_path: Path) -> None:
    _project_with_images(project, tmp_path, 4)
    embed_project(project, MeanColourBackbone(version="1"), workers=0)
    report = embed_project(project, MeanColourBackbone(version="2"), workers=0)
    assert (report.embedded, report.already_embedded) == (4, 0)
    assert project.embeddings("fake-mean", version="1")[0].size == 4
    with pytest.raises(NotFoundError, match=r"existing sets: fake-mean \(1\), fake-mean \(2\)"):
        project.embeddings("fake-mean", version="3")


def test_dimension_change_without_new_version_is_refused(project: Project, tmp_path: Path) -> None:
    _project_with_images(project, tmp_path, 2)
    embed_project(project, MeanColourBackbone(), workers=0)

    class Wider(MeanColourBackbone):
        @property
        def dim(self) -> int:
            return 7

    with pytest.raises(CatalogError, match="holds 6-d vectors but the backbone now gives 7-d"):
        embed_project(project, Wider(), workers=0)


def test_registry_default_and_cli_agree() -> None:
    from lensloop.cli._app import DEFAULT_BACKBONE as CLI_DEFAULT
    from lensloop.embed.registry import DEFAULT_BACKBONE, list_backbones

    assert CLI_DEFAULT == DEFAULT_BACKBONE
    assert DEFAULT_BACKBONE in list_backbones()
