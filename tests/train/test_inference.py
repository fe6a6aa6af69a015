"""Loading released models, predicting files and catalog images, and closing the loop."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

import lensloop
from conftest import COLOURS, make_coloured_folder, make_image_folder
from lensloop.catalog.models import Prediction
from lensloop.embed.engine import embed_project
from lensloop.embed.registry import BackboneOptions, get_backbone
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.select.rounds import select_round
from lensloop.select.strategy import parse_strategy
from lensloop.train.config import TrainConfig
from lensloop.train.heads import OnnxHead
from lensloop.train.inference import init_model, predict_project, write_predictions_csv
from lensloop.train.probe import train_probe

BACKBONE = "features"  # registered and offline, so files outside the catalog can be embedded


@pytest.fixture
def released(project: Project, tmp_path: Path) -> Project:
    """Coloured images in 3 classes (30% val) plus 6 unlabelled ones; one model released."""
    make_coloured_folder(tmp_path / "src")
    options = IngestOptions(labels_from_folders=True, split={"val": 0.3})
    ingest(project, [tmp_path / "src"], options=options)
    make_image_folder(tmp_path / "new", {"x": 6}, seed=5)
    ingest(project, [tmp_path / "new"])
    options_ = BackboneOptions(cache_dir=project.settings.cache_dir, project_root=project.root)
    embed_project(project, get_backbone(BACKBONE, options_), workers=0)
    train_probe(project, TrainConfig(backbone=BACKBONE))
    return project


def test_predict_project_stores_once_and_writes_csv(released: Project, tmp_path: Path) -> None:
    model = init_model("latest", project=released)
    assert model.version == 1
    assert model.folder.is_relative_to(released.settings.cache_dir)  # a cached copy
    ticks: list[tuple[int, int]] = []
    report = predict_project(released, model, progress=lambda d, t: ticks.append((d, t)))
    assert (report.predicted, report.already, report.without_vectors) == (30, 0, 0)
    assert ticks[-1] == (30, 30)
    with released.catalog.reader() as session:
        stored = session.scalars(select(Prediction)).all()
    assert len(stored) == 30
    for row in stored:
        probs = row.probabilities or {}
        assert set(probs) == set(COLOURS)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        best, second = sorted(probs.values(), reverse=True)[:2]
        assert row.uncertainty == pytest.approx(1.0 - (best - second), abs=1e-6)
        assert row.payload["class"] == max(probs, key=lambda c: probs[c])
    labelled = [r for r in report.rows if r["actual"] is not None]
    assert len(labelled) == 24
    assert all(r["predicted"] == r["actual"] for r in labelled)  # colours are easy
    again = predict_project(released, model)
    assert (again.predicted, again.already) == (0, 30)
    path = write_predictions_csv(again.rows, model.classes, tmp_path / "out" / "p.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30
    assert set(rows[0]) >= {"image", "uri", "predicted", "p_blue", "p_green", "p_red"}


def test_predict_files_and_arrays(released: Project, tmp_path: Path) -> None:
    model = lensloop.init_model("champion", project=released)
    red = tmp_path / "src" / "red" / "0.png"
    array = np.full((16, 16, 3), (40, 200, 40), dtype=np.uint8)
    found = lensloop.predict([red, array], model, settings=released.settings)
    assert [f.predicted for f in found] == ["red", "green"]
    assert found[1].source == "array 1"
    assert 0.0 <= found[0].uncertainty <= 1.0
    five = np.zeros((16, 16, 5), dtype=np.uint8)
    with pytest.raises(ConfigError, match=r"cannot classify array 0.*1-4 channels"):
        model.predict([five], settings=released.settings)


def test_init_model_from_a_folder_and_refusals(released: Project, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(released.models_dir / "v1", tmp_path / "shared" / "v1"))
    loaded = init_model(copy, settings=released.settings)
    assert loaded.version is None
    assert loaded.classes == sorted(COLOURS)
    with pytest.raises(ConfigError, match="only a version of this project"):
        predict_project(released, loaded)
    card = json.loads((copy / "card.json").read_text())
    (copy / "card.json").write_text(json.dumps(card | {"task": "count"}))
    with pytest.raises(ConfigError, match="is a 'count' model"):
        init_model(copy, settings=released.settings)
    (copy / "card.json").write_text(json.dumps(card | {"format": 99}))
    with pytest.raises(ConfigError, match="format 99"):
        init_model(copy, settings=released.settings)
    (copy / "card.json").write_text(json.dumps(card))
    (copy / "head.onnx").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a loadable ONNX model"):
        init_model(copy, settings=released.settings)
    with pytest.raises(ConfigError, match=r"holds no card\.json"):
        init_model(tmp_path, settings=released.settings)
    with pytest.raises(NotFoundError, match="no model '7'"):
        init_model("7", project=released)


def test_selection_reads_stored_predictions(released: Project) -> None:
    before = select_round(
        released, 2, "margin", parse_strategy("margin"), backbone=BACKBONE, record=False
    )
    assert before.details["uncertainty_from"] == "probe on the labelled embeddings"
    predict_project(released, init_model("latest", project=released))
    after = select_round(
        released, 2, "margin", parse_strategy("margin"), backbone=BACKBONE, record=False
    )
    assert after.details["uncertainty_from"] == "stored predictions"
    assert after.details["model_version"] == 1
    with released.catalog.reader() as session:
        stored = {row.image_id: row.uncertainty for row in session.scalars(select(Prediction))}
    unlabelled = sorted((i for i in stored if i > 24), key=lambda i: (-(stored[i] or 0.0), i))
    assert [i.image_id for i in after.images] == unlabelled[:2]


def test_a_card_that_disagrees_with_its_head_is_refused(released: Project, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(released.models_dir / "v1", tmp_path / "edited"))
    card = json.loads((copy / "card.json").read_text())
    card["input"]["dim"] += 1
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="but its card says"):
        init_model(copy, settings=released.settings)
    model = init_model("latest", project=released)
    assert isinstance(model.runner, OnnxHead)
    assert model.runner.dim == card["input"]["dim"] - 1
