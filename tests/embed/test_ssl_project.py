from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from lensloop.embed.engine import embed_project
from lensloop.embed.registry import SSL_ENCODER, BackboneOptions, get_backbone
from lensloop.embed.ssl_project import train_project_encoder
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.project.ingest import ingest


@pytest.mark.slow
def test_train_install_embed_and_retrain(project: Project, tmp_path: Path) -> None:
    options = BackboneOptions(cache_dir=tmp_path / "cache", project_root=project.root)
    with pytest.raises(ConfigError, match="has no self-supervised encoder yet"):
        get_backbone("ssl", options)
    make_image_folder(tmp_path / "d", {"x": 8})
    ingest(project, [tmp_path / "d"])
    path = train_project_encoder(project, epochs=1, input_size=32, seed=0)
    assert path == project.root / SSL_ENCODER
    backbone = get_backbone("ssl", options)
    report = embed_project(project, backbone, workers=0)
    assert report.embedded == 8
    ids, vectors = project.embeddings("ssl")
    assert ids.tolist() == list(range(1, 9))
    assert vectors.shape == (8, backbone.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

    train_project_encoder(project, epochs=1, input_size=32, seed=1)  # retrain: old one kept
    kept = list((path.parent / "previous").glob("*.onnx"))
    assert len(kept) == 1
    assert kept[0].with_name(kept[0].name + ".json").is_file()
