"""Fine-tuning a CNN on the images: release, ONNX parity, prediction, evaluation, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlalchemy import select

from conftest import COLOURS, make_coloured_folder
from lensloop.catalog.models import Prediction
from lensloop.embed.resnet import build_resnet
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.train.config import TrainConfig
from lensloop.train.evaluate import evaluate_model
from lensloop.train.finetune import (
    ImageClassifier,
    _class_weights,
    _loader,
    _Prepared,
    build_classifier,
    train_finetune,
)
from lensloop.train.inference import init_model, predict_project
from lensloop.train.onnx_image import OnnxImageClassifier, prepare_image
from lensloop.train.trainer import train_model

pytestmark = pytest.mark.slow

SMALL = {
    "method": "finetune",
    "arch": "resnet18",
    "weights": "none",
    "input_size": 32,
    "epochs": 3,
    "batch_size": 8,
    "lr": 3e-3,
}


@pytest.fixture
def labelled(project: Project, tmp_path: Path) -> Project:
    make_coloured_folder(tmp_path / "src", per_class=10)
    ingest(
        project,
        [tmp_path / "src"],
        options=IngestOptions(labels_from_folders=True, split={"val": 0.3}),
    )
    return project


def test_finetune_releases_an_image_model_that_predicts_and_evaluates(
    labelled: Project, tmp_path: Path
) -> None:
    ticks: list[tuple[str, int, int]] = []
    result = train_finetune(
        labelled, TrainConfig(**SMALL), progress=lambda *tick: ticks.append(tick)
    )
    metrics = result.metrics
    assert result.model.version == 1
    assert set(result.model.aliases) == {"latest", "champion"}
    assert ("preparing images", 30, 30) in ticks
    assert ticks[-1][0] == "epoch"
    assert 1 <= metrics["best_epoch"] <= len(metrics["history"]) <= 3
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1"} <= set(metrics["history"][0])
    assert metrics["onnx_max_abs_diff"] < 1e-4
    card = json.loads((result.model.folder / "card.json").read_text())
    assert card["input"]["kind"] == "image"
    assert card["input"]["size"] == 32
    assert card["input"]["channels"] == [3]
    assert card["arch"] == "resnet18"
    assert card["classes"] == sorted(COLOURS)
    assert (result.model.folder / card["onnx"]["file"]).is_file()
    assert (result.model.folder / "config.yaml").is_file()

    model = init_model("latest", project=labelled)
    assert model.kind == "image"
    report = predict_project(labelled, model)
    assert (report.predicted, report.already, report.without_vectors) == (30, 0, 0)
    with labelled.catalog.reader() as session:
        stored = session.scalars(select(Prediction)).all()
    assert len(stored) == 30
    assert all(
        sum((row.probabilities or {}).values()) == pytest.approx(1.0, abs=1e-5) for row in stored
    )
    assert predict_project(labelled, model).predicted == 0  # once per version

    image = labelled.root / "rgb.png"
    PILImage.fromarray(np.full((20, 24, 3), (200, 40, 40), np.uint8)).save(image)
    (found,) = model.predict([image])
    assert found.predicted in COLOURS
    assert sum(found.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    grey = np.zeros((20, 20), np.uint8)
    with pytest.raises(
        ConfigError, match=r"1 channel\(s\) but the model was trained on images with 3"
    ):
        model.predict([grey])
    with pytest.raises(ConfigError, match="classifies images, not embeddings"):
        model.predict_vectors(np.zeros((1, 8), np.float32))

    evaluated = evaluate_model(labelled, "1")
    assert evaluated.metrics["n"] == metrics["val"]["n"]
    assert evaluated.metrics["accuracy"] == pytest.approx(metrics["val"]["accuracy"], abs=0.2)
    assert evaluated.confusion_png.is_file()
    assert evaluated.grid_png is not None
    assert evaluated.grid_png.is_file()


def test_onnx_release_matches_torch_on_real_images(tmp_path: Path) -> None:
    """The exported graph (normalisation and softmax inside) reproduces torch within 1e-4."""
    from lensloop.embed.export import export_onnx

    torch.manual_seed(0)
    classifier = ImageClassifier(build_resnet("resnet18", num_classes=4), (0.5,) * 3, (0.25,) * 3)
    classifier.eval()
    path = export_onnx(
        classifier, tmp_path / "model.onnx", input_size=64, output_name="probabilities"
    )
    session = OnnxImageClassifier(path)
    rng = np.random.default_rng(0)
    spec = {"size": 64, "channels": [1, 3]}
    for size, shape in ((64, (50, 70, 3)), (96, (90, 40)), (40, (200, 100, 3))):
        images = np.stack(
            [
                prepare_image(
                    rng.integers(0, 255, shape, dtype=np.uint8), spec | {"size": size}, name="x"
                )
                for _ in range(3)
            ]
        )
        with torch.no_grad():
            expected = classifier(torch.from_numpy(images)).numpy()
        got = session(images)
        assert got.shape == (3, 4)
        assert np.max(np.abs(got - expected)) < 1e-4


def test_checkpoint_weights_load_into_the_resnet_but_not_its_classifier(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_resnet("resnet18", num_classes=1000)
    checkpoint = tmp_path / "resnet18-custom.pth"
    torch.save(source.state_dict(), checkpoint)
    network, pretrained, mean, _std = build_classifier(
        "resnet18", 5, str(checkpoint), cache_dir=tmp_path / "cache"
    )
    assert pretrained
    assert mean == (0.485, 0.456, 0.406)
    loaded = network.state_dict()
    assert torch.equal(
        loaded["layer4.1.conv2.weight"], source.state_dict()["layer4.1.conv2.weight"]
    )
    assert loaded["fc.weight"].shape == (5, 512)
    with pytest.raises(ConfigError, match="does not exist"):
        build_classifier("resnet18", 5, str(tmp_path / "missing.pth"), cache_dir=tmp_path)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="missing"):
        build_classifier("resnet18", 5, str(tmp_path / "bad.pth"), cache_dir=tmp_path)


def test_class_weights_balance_rare_classes() -> None:
    weights = _class_weights(np.array([0, 0, 0, 1]), 3, "balanced")
    assert weights[0] * 3 == pytest.approx(weights[1])  # 3 images vs 1
    assert weights[2] == 0.0  # absent from training: no weight
    assert _class_weights(np.array([0, 1]), 2, "none") == [1.0, 1.0]


def test_finetune_needs_val_images_and_training_images_per_class(
    project: Project, tmp_path: Path
) -> None:
    make_coloured_folder(tmp_path / "src", per_class=4)
    ingest(project, [tmp_path / "src"], options=IngestOptions(labels_from_folders=True))
    with pytest.raises(ConfigError, match="val split"):
        train_finetune(project, TrainConfig(**SMALL))


def test_finetune_without_lightning_says_which_extra(
    labelled: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "lensloop.train.finetune", raising=False)
    monkeypatch.setitem(sys.modules, "lightning", None)
    with pytest.raises(ConfigError, match=r"pip install 'lensloop\[train\]'"):
        train_model(labelled, TrainConfig(**SMALL))


def test_finetune_starts_from_the_projects_ssl_encoder(labelled: Project) -> None:
    from lensloop.embed.ssl import checkpoint_path
    from lensloop.embed.ssl_project import train_project_encoder

    with pytest.raises(ConfigError, match="no SSL encoder yet"):
        train_finetune(labelled, TrainConfig(**SMALL | {"weights": "ssl"}))
    encoder = train_project_encoder(labelled, epochs=1, input_size=32)
    saved = torch.load(checkpoint_path(encoder), weights_only=True)
    network, pretrained, mean, _std = build_classifier(
        "efficientnet-lite0", 3, "ssl", cache_dir=labelled.settings.cache_dir,
        project_root=labelled.root,
    )  # fmt: skip
    assert pretrained
    sidecar = json.loads(encoder.with_name(encoder.name + ".json").read_text())
    assert mean == tuple(sidecar["mean"])
    name = next(iter(saved))
    assert torch.equal(network.state_dict()[f"encoder.{name}"], saved[name])
    result = train_finetune(labelled, TrainConfig(**SMALL | {"weights": "ssl"}))
    card = json.loads((result.model.folder / "card.json").read_text())
    assert card["arch"] == "ssl-small"
    assert result.metrics["onnx_max_abs_diff"] < 1e-4
    # Training the encoder again keeps the previous one, torch weights included.
    train_project_encoder(labelled, epochs=1, input_size=32, seed=1)
    assert len(list((encoder.parent / "previous").glob("*.pt"))) == 1


@pytest.mark.parametrize(
    ("n", "shuffle", "sizes"),
    [(9, True, [8]), (10, True, [8, 2]), (9, False, [8, 1]), (1, True, [1])],
)
def test_a_shuffled_last_batch_of_one_is_dropped(n: int, shuffle: bool, sizes: list[int]) -> None:
    prepared = _Prepared(pixels=np.zeros((n, 3, 4, 4), np.uint8), channels=[3])
    rows = np.arange(n, dtype=np.int64)
    loader = _loader(prepared, rows, rows, batch_size=8, shuffle=shuffle, seed=0)
    assert [len(labels) for _, labels in loader] == sizes
