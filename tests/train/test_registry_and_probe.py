"""Training, releasing, resolving, promoting and evaluating probe models on a real project."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lensloop
from conftest import make_coloured_folder, make_image_folder
from fakes import MeanColourBackbone
from lensloop.embed.engine import embed_project
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.tasks.classify import load_embedded_labels
from lensloop.train.config import TrainConfig, load_train_config
from lensloop.train.evaluate import evaluate_model
from lensloop.train.heads import run_head
from lensloop.train.probe import train_probe
from lensloop.train.registry import _beats, list_models, promote, resolve_model

BACKBONE = MeanColourBackbone.name
GOOD = TrainConfig(backbone=BACKBONE)
# one hidden unit trained for one epoch: clearly worse than the logistic head
POOR = TrainConfig(backbone=BACKBONE, head="mlp", hidden=1, max_iter=1)


def _build(project: Project, tmp_path: Path, split: dict[str, float] | None) -> Project:
    make_coloured_folder(tmp_path / "src")
    options = IngestOptions(labels_from_folders=True, split=split)
    ingest(project, [tmp_path / "src"], options=options)
    embed_project(project, MeanColourBackbone(), workers=0)
    return project


@pytest.fixture
def trainable(project: Project, tmp_path: Path) -> Project:
    """3 classes x 8 embedded images, 30% of each class in val."""
    return _build(project, tmp_path, {"val": 0.3})


def _leftovers(project: Project) -> list[str]:
    return sorted(p.name for p in project.models_dir.iterdir())


def test_first_release(trainable: Project) -> None:
    project = trainable
    result = train_probe(project, GOOD)
    model = result.model
    assert model.version == 1
    assert model.task == "classify"
    assert model.aliases == ["champion", "latest"]
    assert model.folder == project.models_dir / "v1"
    assert _leftovers(project) == ["v1"]  # no staging folder left behind
    files = {p.name for p in model.folder.iterdir()}
    assert files == {"head.onnx", "card.json", "config.yaml", "metrics.json", "confusion.png"}
    assert (model.folder / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = load_embedded_labels(project, backbone=BACKBONE)
    val_rows = data.rows("val")
    train_rows = data.rows("train")
    assert len(val_rows) > 0
    card = json.loads((model.folder / "card.json").read_text(encoding="utf-8"))
    assert card == model.card
    assert card["task"] == "classify"
    assert card["method"] == "probe"
    assert card["head"] == "logistic"
    assert card["classes"] == ["blue", "green", "red"]
    assert card["input"]["backbone"] == BACKBONE
    assert card["input"]["backbone_version"] == "1"
    assert card["input"]["dim"] == 6
    assert card["onnx"]["file"] == "head.onnx"
    assert card["lensloop_version"] == lensloop.__version__
    assert datetime.fromisoformat(card["created_at"]).tzinfo is not None
    assert card["training_data"]["fingerprint"] == data.fingerprint(train_rows)
    assert card["training_data"]["n_images"] == len(train_rows)
    assert card["training_data"]["validation_fingerprint"] == data.fingerprint(val_rows)
    assert card["metrics"]["val"]["n"] == len(val_rows)
    assert "cv" not in card["metrics"]

    assert load_train_config(model.folder / "config.yaml", {}) == GOOD
    assert model.config == GOOD.model_dump()
    written = json.loads((model.folder / "metrics.json").read_text(encoding="utf-8"))
    assert written == result.metrics
    assert model.metrics == result.metrics
    metrics = result.metrics
    assert metrics["n_train"] == len(train_rows)
    assert metrics["validation_fingerprint"] == data.fingerprint(val_rows)
    assert metrics["onnx_max_abs_diff"] < 1e-4
    assert metrics["val"]["accuracy"] == 1.0  # colours are easy
    assert metrics["val"]["n"] == len(val_rows)
    assert result.elapsed_s > 0

    # the released ONNX head runs on the stored vectors
    probs = run_head(model.folder / "head.onnx", data.vectors[val_rows])
    assert np.argmax(probs, axis=1).tolist() == data.labels[val_rows].tolist()


def test_champion_moves_only_on_a_better_score(trainable: Project) -> None:
    project = trainable
    first = train_probe(project, GOOD)
    second = train_probe(project, POOR)
    assert second.metrics["val"]["macro_f1"] < first.metrics["val"]["macro_f1"]
    assert second.model.version == 2
    assert second.model.aliases == ["latest"]
    assert resolve_model(project, "champion").version == 1
    assert resolve_model(project, "latest").version == 2
    # an equal score does not move the champion either
    third = train_probe(project, TrainConfig(backbone=BACKBONE, seed=1))
    assert third.metrics["val"] == first.metrics["val"]
    assert third.model.aliases == ["latest"]
    assert resolve_model(project).version == 1
    assert [(m.version, m.aliases) for m in list_models(project)] == [
        (1, ["champion"]),
        (2, []),
        (3, ["latest"]),
    ]

    promoted = promote(project, 2)
    assert promoted.version == 2
    assert promoted.aliases == ["champion"]
    assert resolve_model(project).version == 2
    assert resolve_model(project, "latest").version == 3
    with pytest.raises(NotFoundError, match="no model version 9"):
        promote(project, 9)
    # a better model now takes the champion from the (poor) promoted one
    fourth = train_probe(project, GOOD)
    assert fourth.model.aliases == ["champion", "latest"]


def test_better_second_model_becomes_champion(trainable: Project) -> None:
    project = trainable
    assert train_probe(project, POOR).model.aliases == ["champion", "latest"]
    assert train_probe(project, GOOD).model.aliases == ["champion", "latest"]
    assert [m.aliases for m in list_models(project)] == [[], ["champion", "latest"]]


def test_resolve_model(trainable: Project) -> None:
    project = trainable
    with pytest.raises(NotFoundError, match="no models yet; run `lensloop train"):
        resolve_model(project)
    with pytest.raises(NotFoundError, match="no models yet"):
        resolve_model(project, "latest")
    assert list_models(project) == []
    train_probe(project, GOOD)
    train_probe(project, POOR)
    assert resolve_model(project, 1).version == 1
    assert resolve_model(project, "2").version == 2
    assert resolve_model(project, "champion").version == 1
    assert resolve_model(project, "latest").version == 2
    assert resolve_model(project, None).version == 1  # default: the champion
    with pytest.raises(NotFoundError, match=r"no model 'best'.*1\.\.2.*champion, latest"):
        resolve_model(project, "best")
    with pytest.raises(NotFoundError, match="no model 7"):
        resolve_model(project, 7)


def _metrics(fingerprint: str, macro_f1: float, accuracy: float) -> dict[str, Any]:
    return {
        "validation_fingerprint": fingerprint,
        "val": {"macro_f1": macro_f1, "accuracy": accuracy},
    }


def test_beats() -> None:
    assert _beats(_metrics("f", 0.9, 0.9), _metrics("f", 0.8, 0.95))
    assert _beats(_metrics("f", 0.8, 0.9), _metrics("f", 0.8, 0.85))  # accuracy breaks a tie
    assert not _beats(_metrics("f", 0.8, 0.85), _metrics("f", 0.8, 0.85))  # equal: no
    assert not _beats(_metrics("f", 0.7, 1.0), _metrics("f", 0.8, 0.5))
    # a different validation set is never comparable, however good the score
    assert not _beats(_metrics("g", 1.0, 1.0), _metrics("f", 0.1, 0.1))
    assert not _beats({"val": {"macro_f1": 1.0, "accuracy": 1.0}}, _metrics("f", 0.1, 0.1))


def test_different_validation_set_keeps_champion(trainable: Project, tmp_path: Path) -> None:
    project = trainable
    first = train_probe(project, POOR)
    # new labelled images change the validation set (and its fingerprint)
    make_image_folder(tmp_path / "more", {"blue": 3, "green": 3, "red": 3}, seed=9)
    ingest(
        project,
        [tmp_path / "more"],
        options=IngestOptions(labels_from_folders=True, split={"val": 0.4}),
    )
    embed_project(project, MeanColourBackbone(), workers=0)
    second = train_probe(project, GOOD)
    assert second.metrics["validation_fingerprint"] != first.metrics["validation_fingerprint"]
    assert second.metrics["val"]["macro_f1"] > first.metrics["val"]["macro_f1"]
    assert second.model.aliases == ["latest"]
    assert resolve_model(project).version == 1


def test_no_val_split(project: Project, tmp_path: Path) -> None:
    _build(project, tmp_path, None)
    with pytest.raises(ConfigError, match="val split"):
        train_probe(project, GOOD)
    assert _leftovers(project) == []
    assert list_models(project) == []


def test_cross_validation(trainable: Project) -> None:
    project = trainable
    with pytest.raises(ConfigError, match=r"--cv 9 needs at least 9 .* has 8"):
        train_probe(project, TrainConfig(backbone=BACKBONE, cv=9))
    assert _leftovers(project) == []
    result = train_probe(project, TrainConfig(backbone=BACKBONE, cv=3))
    cv = result.metrics["cv"]
    assert cv["folds"] == 3
    assert len(cv["per_fold"]["accuracy"]) == 3
    assert len(cv["per_fold"]["macro_f1"]) == 3
    for name in ("accuracy", "macro_f1"):
        values = cv["per_fold"][name]
        assert cv[f"{name}_mean"] == pytest.approx(np.mean(values))
        assert cv[f"{name}_std"] == pytest.approx(np.std(values, ddof=1))
        assert all(0.0 <= v <= 1.0 for v in values)
    card = result.model.card
    assert card["metrics"]["cv"] == {k: v for k, v in cv.items() if k != "per_fold"}


def test_evaluate_matches_training_metrics(trainable: Project) -> None:
    project = trainable
    good = train_probe(project, GOOD)
    poor = train_probe(project, POOR)
    for trained in (good, poor):
        result = evaluate_model(project, str(trained.model.version))
        assert result.version == trained.model.version
        assert result.split == "val"
        metrics = dict(result.metrics)
        assert metrics.pop("skipped_unknown_class") == 0
        assert metrics == trained.metrics["val"]
        figures = trained.model.folder / "evaluation-val"
        assert result.confusion_png == figures / "confusion.png"
        assert result.grid_png == figures / "predictions.png"
        assert result.confusion_png.is_file()
        assert result.grid_png.is_file()
        written = json.loads((figures / "metrics.json").read_text(encoding="utf-8"))
        assert written == result.metrics
    # the default is the champion; evaluating twice is fine
    assert evaluate_model(project).version == 1
    train_split = evaluate_model(project, "1", split="train")
    assert train_split.metrics["n"] == good.metrics["n_train"]
    with pytest.raises(ConfigError, match="in the test split"):
        evaluate_model(project, "1", split="test")


def _edit_card(project: Project, version: int, **changes: Any) -> None:
    path = project.models_dir / f"v{version}" / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key == "backbone_version":
            card["input"]["backbone_version"] = value
        else:
            card[key] = value
    path.write_text(json.dumps(card), encoding="utf-8")


def test_evaluate_refuses_changed_backbone_version(trainable: Project) -> None:
    project = trainable
    train_probe(project, GOOD)
    _edit_card(project, 1, backbone_version="0")
    with pytest.raises(ConfigError, match="vectors of version 0, but the project now holds 1"):
        evaluate_model(project)


def test_evaluate_refuses_other_tasks(trainable: Project) -> None:
    project = trainable
    train_probe(project, GOOD)
    _edit_card(project, 1, task="count")
    with pytest.raises(ConfigError, match="is a 'count' model"):
        evaluate_model(project, "latest")


def test_evaluate_missing_card(trainable: Project) -> None:
    project = trainable
    train_probe(project, GOOD)
    (project.models_dir / "v1" / "card.json").unlink()
    with pytest.raises(ConfigError, match=r"card .* is missing or unreadable"):
        evaluate_model(project)


def test_failed_export_leaves_nothing(trainable: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project = trainable

    def explode(*args: object, **kwargs: object) -> float:
        raise ConfigError("export went wrong")

    monkeypatch.setattr("lensloop.train.probe.verify_head", explode)
    with pytest.raises(ConfigError, match="export went wrong"):
        train_probe(project, GOOD)
    assert _leftovers(project) == []
    assert list_models(project) == []
    monkeypatch.undo()
    assert train_probe(project, GOOD).model.version == 1


def test_failed_catalog_write_removes_the_folder(
    trainable: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = trainable
    train_probe(project, GOOD)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("catalog write failed")

    monkeypatch.setattr("lensloop.train.registry._point", explode)
    with pytest.raises(RuntimeError, match="catalog write failed"):
        train_probe(project, POOR)
    assert _leftovers(project) == ["v1"]  # no v2, no staging folder
    assert [m.version for m in list_models(project)] == [1]
    monkeypatch.undo()
    again = train_probe(project, POOR)
    assert again.model.version == 2
    assert resolve_model(project).version == 1


def test_leftover_version_folder_is_refused(trainable: Project) -> None:
    project = trainable
    stray = project.models_dir / "v1"
    stray.mkdir()
    (stray / "note.txt").write_text("left over", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists but the catalog has no version 1"):
        train_probe(project, GOOD)
    assert _leftovers(project) == ["v1"]
    assert [p.name for p in stray.iterdir()] == ["note.txt"]  # untouched
    assert list_models(project) == []


def test_evaluate_skips_classes_the_model_does_not_know(trainable: Project, tmp_path: Path) -> None:
    project = trainable
    trained = train_probe(project, GOOD)
    make_image_folder(tmp_path / "new", {"purple": 4}, seed=5)
    ingest(
        project,
        [tmp_path / "new"],
        options=IngestOptions(labels_from_folders=True, split={"val": 0.5}),
    )
    embed_project(project, MeanColourBackbone(), workers=0)
    result = evaluate_model(project)
    assert result.metrics["skipped_unknown_class"] == 2
    assert result.metrics["n"] == trained.metrics["val"]["n"]
    assert list(result.metrics["per_class"]) == ["blue", "green", "red"]
