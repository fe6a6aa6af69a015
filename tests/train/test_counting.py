"""The counting task end to end: train on point annotations, release, count, evaluate."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from conftest import lensloop
from lensloop.annotate.labelstudio.results import ImageSize
from lensloop.catalog.annotations import AnnotationRecord, add_annotations
from lensloop.catalog.models import Image
from lensloop.errors import ConfigError
from lensloop.imaging import write_image
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings
from lensloop.tasks.counting.synthetic import CellStyle, make_cell_dataset, make_cell_image
from lensloop.train.config import TrainConfig
from lensloop.train.counter import Counter, count, load_counter
from lensloop.train.evaluate import evaluate_model
from lensloop.train.preannotate import current_model, preannotate
from lensloop.train.registry import _beats
from lensloop.train.trainer import train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (64, 80)  # (height, width)
N_IMAGES = 16
STYLE = CellStyle(radius=(2.5, 3.5), bit_depth=16)
#: Small and quick, yet enough to learn the synthetic cells (16-bit images).
CONFIG = TrainConfig(
    epochs=25, patience=25, width=8, levels=2, input_size=32, lr=3e-3, batch_size=8, seed=0
)


def _points_record(image_id: int, centres: Any, *, status: str, annotator: str = "a") -> Any:
    key = f"test:i{image_id}:{annotator}"
    return AnnotationRecord(
        image_id=image_id,
        kind="points",
        payload={
            "width": SIZE[1],
            "height": SIZE[0],
            "points": [
                {"x": float(x), "y": float(y), "label": "cell", "id": f"p{k}"}
                for k, (x, y) in enumerate(np.asarray(centres).reshape(-1, 2))
            ],
            "status": status,
        },
        annotator=annotator,
        origin="test",
        external_id=f"{key}@1",
        version_key=key,
    )


def make_counting_project(
    root: Path,
    settings: Settings,
    *,
    n_images: int = N_IMAGES,
    splits: Sequence[str] = (),
    sparse: bool = False,
) -> tuple[Project, dict[int, Any]]:
    """A count project of synthetic 16-bit cell images, every one fully annotated.

    ``sparse``: a third of each image's cells is annotated instead, status ``sparse``.
    """
    data = make_cell_dataset(n_images, size=SIZE, cells=(2, 12), style=STYLE, seed=11)
    folder = root / "images"
    folder.mkdir(parents=True)
    for k, (image, _) in enumerate(data):
        write_image(folder / f"cells-{k:02d}.png", image)
    project = Project.init(root / "project", task="count", classes=["cell"], settings=settings)
    ingest(project, [folder])
    truth: dict[int, Any] = {}
    with project.catalog.transaction() as session:
        ids = {uri: image_id for uri, image_id in session.execute(select(Image.uri, Image.id))}
        records = []
        for k, (_, centres) in enumerate(data):
            image_id = next(i for uri, i in ids.items() if uri.endswith(f"cells-{k:02d}.png"))
            truth[image_id] = centres
            if sparse:
                records.append(_points_record(image_id, centres[::3], status="sparse"))
            else:
                records.append(_points_record(image_id, centres, status="full"))
            if splits:
                session.execute(update(Image).where(Image.id == image_id).values(split=splits[k]))
        add_annotations(session, records)
    return project, truth


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, dict[int, Any]]]:
    root = tmp_path_factory.mktemp("counting")
    settings = Settings(cache_dir=root / "cache")
    splits = ["val" if k % 4 == 0 else "test" if k % 4 == 1 else "train" for k in range(N_IMAGES)]
    project, truth = make_counting_project(root, settings, splits=splits)
    with project:
        train_model(project, CONFIG)
        yield project, truth


def test_training_releases_a_counting_model_that_learnt(
    trained: tuple[Project, dict[int, Any]],
) -> None:
    project, _ = trained
    model = load_counter("latest", project=project)
    card = model.card
    assert card["task"] == "count"
    assert card["input"]["kind"] == "density"
    assert card["input"]["channels"] == 1
    assert card["input"]["trained_channels"] == [1]
    scaling = card["input"]["scaling"]
    assert 100 <= scaling["low"][0] < scaling["high"][0] <= 4095  # the 12-bit camera's counts
    assert card["density"]["sigma"] == CONFIG.sigma
    assert card["density"]["threshold_source"].startswith("validation")
    assert card["classes"] == ["cell"]
    folder = project.models_dir / "v1"
    for name in ("model.onnx", "card.json", "metrics.json", "config.yaml", "counts.png"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "val-overlays").glob("*.png"))) == 4
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["validation"] == "val split"
    assert metrics["n_train"] == 8
    assert metrics["n_val"] == 4
    assert metrics["onnx_max_abs_diff"] < 1e-4
    assert metrics["val"]["n"] == 4
    # It learnt: counts within a fifth, most cells found where they are.
    assert metrics["val"]["mre"] < 0.2, metrics["val"]
    assert metrics["val"]["f1"] > 0.6, metrics["val"]
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0] / 2


def test_evaluate_scores_the_test_split(trained: tuple[Project, dict[int, Any]]) -> None:
    project, truth = trained
    result = evaluate_model(project, "latest", split="test")
    assert result.metrics["n"] == 4
    assert result.metrics["mre"] < 0.25, result.metrics
    rows = {row["image_id"]: row for row in result.metrics["per_image"]}
    assert all(rows[i]["true"] == len(truth[i]) for i in rows)
    assert result.confusion_png is None
    assert "predicted vs annotated counts" in result.figures
    assert all(path.is_file() for path in result.figures.values())
    assert len(result.figures) == 1 + 4  # the scatter and an overlay per scored image
    saved = json.loads((project.models_dir / "v1" / "evaluation-test" / "metrics.json").read_text())
    assert saved["mae"] == pytest.approx(result.metrics["mae"])


def test_count_gives_counts_and_locations(
    trained: tuple[Project, dict[int, Any]], tmp_path: Path
) -> None:
    project, _ = trained
    image, centres = make_cell_image(*SIZE, 9, style=STYLE, seed=99)
    empty, _ = make_cell_image(*SIZE, 0, style=STYLE, seed=98)
    path = tmp_path / "one.png"
    write_image(path, image)
    counts, locations = count([path, image, empty], "latest", project=project)
    assert list(counts) == [str(path), "array 1", "array 2"]
    assert counts[str(path)] == pytest.approx(counts["array 1"], abs=1e-4)
    assert abs(counts["array 1"] - 9) <= 3
    assert counts["array 2"] < 1.0  # no cells: near zero
    found = locations["array 1"]
    assert found.shape[1] == 2
    assert len(found) >= 5
    nearest = np.min(np.linalg.norm(found[:, None, :] - centres[None], axis=2), axis=1)
    assert np.median(nearest) < 2.0  # the located cells are where the cells are
    assert len(locations["array 2"]) <= 1


def test_a_large_image_is_counted_in_tiles(trained: tuple[Project, dict[int, Any]]) -> None:
    project, _ = trained
    model = load_counter("latest", project=project)
    image, _ = make_cell_image(700, 900, 300, style=STYLE, seed=5)
    result = model.count_array(image)
    assert abs(result.count - 300) / 300 < 0.25
    assert model.density(image).shape == (700, 900)


def test_counter_refuses_other_models_and_shapes(
    trained: tuple[Project, dict[int, Any]], tmp_path: Path
) -> None:
    project, _ = trained
    model = load_counter(project.models_dir / "v1")
    assert model.version is None  # loaded from a folder
    with pytest.raises(ConfigError, match=r"is \(H, W\) or \(H, W, C\)"):
        model.count_array(np.zeros((2, 20, 20, 1), np.uint8))
    grey, _ = make_cell_image(*SIZE, 5, style=STYLE, seed=3)
    colour = np.repeat(grey[:, :, None], 3, axis=2)  # averaged back to the same grey
    assert model.count_array(colour).count == pytest.approx(model.count_array(grey).count)
    with pytest.raises(ConfigError, match="not a model folder"):
        load_counter("latest")
    card = json.loads((project.models_dir / "v1" / "card.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes((project.models_dir / "v1" / "model.onnx").read_bytes())
    (broken / "card.json").write_text(json.dumps({**card, "task": "classify"}))
    with pytest.raises(ConfigError, match="counting needs a model"):
        load_counter(broken)


def test_preannotations_are_keypoints(trained: tuple[Project, dict[int, Any]]) -> None:
    project, truth = trained
    model = current_model(project)
    assert isinstance(model, Counter)
    image_id = next(iter(truth))
    found = preannotate(project, [image_id], model=model)[image_id]
    assert found.kind == "points"
    assert found.model_version == "lensloop-v1"
    assert 0.0 < found.score <= 1.0
    assert abs(len(found.payload["points"]) - len(truth[image_id])) <= 3
    task = found.to_labelstudio(ImageSize(SIZE[1], SIZE[0]))
    assert {r["type"] for r in task["result"]} == {"keypointlabels"}
    assert all(0 <= r["value"]["x"] <= 100 for r in task["result"])


def test_count_cli_writes_counts_and_overlays(
    trained: tuple[Project, dict[int, Any]], tmp_path: Path
) -> None:
    project, _ = trained
    images = tmp_path / "in"
    images.mkdir()
    for k in range(2):
        write_image(images / f"img{k}.png", make_cell_image(*SIZE, 6, style=STYLE, seed=k)[0])
    out = tmp_path / "out"
    done = lensloop("count", images, "--project", project.root, "--out", out)
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "counts.json").read_text())
    assert document["model"]["version"] == 1
    assert set(document["counts"]) == {str(images / "img0.png"), str(images / "img1.png")}
    assert all(len(points) >= 1 for points in document["locations"].values())
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["img0.png", "img1.png"]
    again = lensloop("count", images, "--model", project.models_dir / "v1", "--out", out)
    assert again.returncode == 1
    assert "--force" in again.stderr
    missing = lensloop("count", tmp_path / "nowhere", "--project", project.root)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_counting_metrics_decide_the_champion() -> None:
    def metrics(mre: float | None, f1: float | None) -> dict[str, Any]:
        return {"validation_fingerprint": "v", "val": {"mre": mre, "f1": f1, "mae": 1.0}}

    assert _beats(metrics(0.05, 0.8), metrics(0.10, 0.9))  # lower relative error wins
    assert _beats(metrics(0.05, 0.9), metrics(0.05, 0.8))  # F1 breaks a tie
    assert not _beats(metrics(0.10, 0.99), metrics(0.05, 0.5))
    assert not _beats(metrics(None, None), metrics(0.5, 0.1))  # nothing measured: no
    assert _beats(metrics(0.5, 0.1), metrics(None, None))


def test_too_few_annotated_images_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    project, _ = make_counting_project(tmp_path, settings, n_images=1)
    with project, pytest.raises(ConfigError, match="at least two annotated images"):
        train_model(project, CONFIG.model_copy(update={"epochs": 1}))


def test_a_held_out_fifth_validates_when_there_is_no_val_split(
    tmp_path: Path, settings: Settings
) -> None:
    project, _ = make_counting_project(tmp_path, settings, n_images=10)
    with project:  # with the count term of the loss, too
        result = train_model(project, CONFIG.model_copy(update={"epochs": 1, "count_weight": 1.0}))
    assert result.metrics["history"][0]["train_loss"] > 0
    assert result.metrics["validation"] == "held out from the annotated images"
    assert result.metrics["n_val"] == 2
    assert result.metrics["n_train"] == 8
    assert result.model.task == "count"


def test_sparse_training_pastes_lone_annotated_cells(tmp_path: Path, settings: Settings) -> None:
    project, truth = make_counting_project(tmp_path, settings, n_images=10, sparse=True)
    with project:
        auto = train_model(project, CONFIG.model_copy(update={"epochs": 1}))
        off = train_model(project, CONFIG.model_copy(update={"epochs": 1, "copy_paste": 0}))
    assert auto.metrics["statuses"] == {"sparse": 8}
    assert auto.metrics["copy_paste"]["per_crop"] == 6
    # Stamps of lone annotated cells: at most one per annotated cell of the training images.
    annotated = sum(len(np.asarray(c)[::3]) for c in truth.values())
    assert 0 < auto.metrics["copy_paste"]["stamps"] <= annotated
    assert off.metrics["copy_paste"] == {"per_crop": 0, "stamps": 0}
    # The pasted objects changed what the model saw, and so its first epoch.
    assert auto.metrics["history"][0] != off.metrics["history"][0]


def test_fully_annotated_training_pastes_only_when_asked(
    tmp_path: Path, settings: Settings
) -> None:
    project, _ = make_counting_project(tmp_path, settings, n_images=10)
    with project:
        auto = train_model(project, CONFIG.model_copy(update={"epochs": 1}))
        asked = train_model(project, CONFIG.model_copy(update={"epochs": 1, "copy_paste": 2}))
    assert auto.metrics["copy_paste"] == {"per_crop": 0, "stamps": 0}
    assert asked.metrics["copy_paste"]["per_crop"] == 2
    assert asked.metrics["copy_paste"]["stamps"] > 0
