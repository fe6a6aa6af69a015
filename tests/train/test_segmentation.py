"""The segmentation task end to end: train on polygons, release, segment, measure, evaluate."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from conftest import lensloop
from lensloop.catalog.annotations import AnnotationRecord, add_annotations
from lensloop.catalog.models import Image
from lensloop.errors import ConfigError
from lensloop.imaging import write_image
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings
from lensloop.tasks.segment.data import load_segment_images
from lensloop.tasks.segment.synthetic import Scene, make_core_dataset
from lensloop.train.config import TrainConfig
from lensloop.train.evaluate import evaluate_model
from lensloop.train.preannotate import current_model, preannotate
from lensloop.train.segmenter import Segmenter, load_segmenter, segment
from lensloop.train.trainer import train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (64, 96)  # (height, width)
N_IMAGES = 12
#: Small and quick, yet enough to tell the box, the rock and the table apart.
CONFIG = TrainConfig(
    epochs=40, patience=40, width=8, levels=2, input_size=48, lr=5e-3, batch_size=4, seed=0
)


def _polygon_record(image_id: int, scene: Scene, *, annotator: str = "a") -> AnnotationRecord:
    key = f"test:i{image_id}:{annotator}"
    height, width = scene.labels.shape
    return AnnotationRecord(
        image_id=image_id,
        kind="polygon",
        payload={
            "width": width,
            "height": height,
            # Rock first: the drawing order, not the file order, must put it over the box.
            "polygons": [
                {"points": region.polygon.tolist(), "label": region.label, "id": f"r{k}"}
                for k, region in enumerate(sorted(scene.regions, key=lambda r: r.label != "rock"))
                if region.polygon is not None
            ],
        },
        annotator=annotator,
        origin="test",
        external_id=f"{key}@1",
        version_key=key,
    )


def make_segment_project(
    root: Path, settings: Settings, *, splits: list[str]
) -> tuple[Project, dict[int, Scene]]:
    """A segment project of synthetic core photographs, every one annotated with polygons."""
    scenes = make_core_dataset(len(splits), height=SIZE[0], width=SIZE[1], fragments=(2, 4), seed=5)
    folder = root / "images"
    folder.mkdir(parents=True)
    for k, scene in enumerate(scenes):
        write_image(folder / f"core-{k:02d}.png", scene.image)
    project = Project.init(
        root / "project", task="segment", classes=["box", "rock"], settings=settings
    )
    config = project.config.model_copy(deep=True)
    config.segment.draw_order = ["box", "rock"]
    config.segment.min_area = 4
    from lensloop.project.config import CONFIG_FILE, save_config

    save_config(config, project.root / CONFIG_FILE)
    project = Project.open(project.root, settings=settings)
    ingest(project, [folder])
    truth: dict[int, Scene] = {}
    with project.catalog.transaction() as session:
        ids = {uri: image_id for uri, image_id in session.execute(select(Image.uri, Image.id))}
        records = []
        for k, scene in enumerate(scenes):
            image_id = next(i for uri, i in ids.items() if uri.endswith(f"core-{k:02d}.png"))
            truth[image_id] = scene
            records.append(_polygon_record(image_id, scene))
            session.execute(update(Image).where(Image.id == image_id).values(split=splits[k]))
        add_annotations(session, records)
    return project, truth


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, dict[int, Scene]]]:
    root = tmp_path_factory.mktemp("segmentation")
    settings = Settings(cache_dir=root / "cache")
    splits = ["val" if k % 4 == 0 else "test" if k % 4 == 1 else "train" for k in range(N_IMAGES)]
    project, truth = make_segment_project(root, settings, splits=splits)
    with project:
        train_model(project, CONFIG)
        yield project, truth


def test_annotated_polygons_rasterise_with_the_projects_drawing_order(
    trained: tuple[Project, dict[int, Scene]],
) -> None:
    project, truth = trained
    items = load_segment_images(project)
    assert [item.image_id for item in items] == sorted(truth)
    for item in items[:3]:
        labels = item.label_map(["box", "rock"], draw_order=["box", "rock"])
        np.testing.assert_array_equal(labels, truth[item.image_id].labels)
    # Without the order, the file order (rock first) would bury the rock under the box.
    item = items[0]
    flat = item.label_map(["box", "rock"], draw_order=["rock", "box"])
    assert (flat == 2).sum() < (truth[item.image_id].labels == 2).sum()


def test_training_releases_a_segmentation_model_that_learnt(
    trained: tuple[Project, dict[int, Scene]],
) -> None:
    project, _ = trained
    model = load_segmenter("latest", project=project)
    card = model.card
    assert card["task"] == "segment"
    assert card["classes"] == ["box", "rock"]
    assert card["input"]["kind"] == "segment"
    assert card["input"]["channels"] == 3
    assert card["segment"]["draw_order"] == ["box", "rock"]
    folder = project.models_dir / "v1"
    for name in ("model.onnx", "card.json", "metrics.json", "config.yaml", "iou.png"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "val-overlays").glob("*.png"))) == 3
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["validation"] == "val split"
    assert (metrics["n_train"], metrics["n_val"]) == (6, 3)
    assert metrics["onnx_max_abs_diff"] < 1e-4
    val = metrics["val"]
    assert set(val["iou"]) == {"background", "box", "rock"}
    # It learnt: most pixels right, every class found.
    assert val["pixel_accuracy"] > 0.8, val
    assert val["mean_iou"] > 0.6, val
    assert min(val["iou"].values()) > 0.4, val
    assert val["measurements"]["rock"]["true_fragments"] > 0
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0] / 2


def test_segment_returns_label_maps_of_each_image(
    trained: tuple[Project, dict[int, Scene]], tmp_path: Path
) -> None:
    project, truth = trained
    scene = next(iter(truth.values()))
    path = tmp_path / "one.png"
    write_image(path, scene.image)
    big = np.tile(scene.image, (3, 4, 1))  # larger than a tile: predicted tile by tile
    found = segment([path, big], "latest", project=project)
    assert list(found) == [str(path), "array 1"]
    small, large = found[str(path)], found["array 1"]
    assert small.shape == SIZE
    assert small.dtype == np.uint8
    assert large.shape == (SIZE[0] * 3, SIZE[1] * 4)
    assert set(np.unique(small)) <= {0, 1, 2}
    accuracy = float((small == scene.labels).mean())
    assert accuracy > 0.75
    # Tiling agrees with the whole image on the tiled copy's first tile.
    assert float((large[: SIZE[0], : SIZE[1]] == small).mean()) > 0.95


def test_evaluate_scores_iou_and_measurements(trained: tuple[Project, dict[int, Scene]]) -> None:
    project, _ = trained
    result = evaluate_model(project, "latest", split="test")
    metrics = result.metrics
    assert metrics["n"] == 3
    assert 0 < metrics["mean_iou"] <= 1
    assert metrics["iou"]["background"] is not None
    assert set(metrics["measurements"]) == {"box", "rock"}
    assert "per-class IoU" in result.figures
    assert all(path.is_file() for path in result.figures.values())
    assert result.confusion_png is None


def test_preannotation_gives_a_brush_mask_per_class(
    trained: tuple[Project, dict[int, Scene]],
) -> None:
    project, truth = trained
    model = current_model(project)
    assert isinstance(model, Segmenter)
    image_id = next(iter(truth))
    (found,) = preannotate(project, [image_id], model=model).values()
    assert found.kind == "mask"
    assert {m["label"] for m in found.payload["masks"]} == {"box", "rock"}
    assert found.payload["width"] == SIZE[1]
    assert 0 < found.score <= 1


def test_cli_segment_and_measure(trained: tuple[Project, dict[int, Scene]], tmp_path: Path) -> None:
    project, truth = trained
    images = tmp_path / "photos"
    images.mkdir()
    for k, scene in enumerate(list(truth.values())[:2]):
        write_image(images / f"p{k}.png", scene.image)
    out = tmp_path / "segments"
    done = lensloop(
        "segment", images, "--model", project.models_dir / "v1", "--out", out, cache=tmp_path
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((out / "segments.json").read_text())
    assert index["classes"] == ["box", "rock"]
    assert len(index["images"]) == 2
    assert len(list((out / "masks").glob("*.png"))) == 2
    assert len(list((out / "overlays").glob("*.png"))) == 2
    again = lensloop("segment", images, "--model", project.models_dir / "v1", "--out", out)
    assert again.returncode == 1
    assert "--force" in again.stderr

    table = tmp_path / "m.csv"
    done = lensloop(
        "measure",
        images,
        "--project",
        project.root,
        "--out",
        table,
        "--summary",
        "intact = fraction(rock, of=box)",
        "--summary",
        "pieces = count(rock)",
        cache=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert len(rows) == 2
    assert 0 < float(rows[0]["intact"]) < 1
    assert int(rows[0]["pieces"]) >= 1

    annotated = tmp_path / "annotated.csv"
    drawn = tmp_path / "drawn"
    done = lensloop(
        "measure",
        project.root,
        "--annotated",
        "--out",
        annotated,
        "--overlays",
        drawn,
        cache=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(drawn.glob("*.png"))) == N_IMAGES
    rows = list(csv.DictReader(annotated.read_text().splitlines()))
    assert len(rows) == N_IMAGES
    by_uri = {row["image"]: row for row in rows}
    with project.catalog.reader() as session:
        uris = {i: uri for i, uri in session.execute(select(Image.id, Image.uri))}
    for image_id, scene in truth.items():
        assert int(by_uri[uris[image_id]]["rock_area_px"]) == int((scene.labels == 2).sum())


def test_training_needs_two_annotated_images(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    project, _ = make_segment_project(tmp_path, settings, splits=["train"])
    with project, pytest.raises(ConfigError, match="at least two annotated images"):
        train_model(project, CONFIG)


def test_cli_segment_import_reads_labelme_files_once(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    project, truth = make_segment_project(tmp_path, settings, splits=["train", "train"])
    image_id, scene = next(iter(truth.items()))
    with project.catalog.reader() as session:
        uri = session.scalar(select(Image.uri).where(Image.id == image_id))
    shapes = [
        {"label": r.label, "points": r.polygon.tolist(), "shape_type": "polygon"}
        for r in scene.regions
        if r.polygon is not None
    ]
    document = {
        "imagePath": Path(str(uri)).name,
        "imageHeight": SIZE[0],
        "imageWidth": SIZE[1],
        "shapes": shapes,
    }
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "one.json").write_text(json.dumps(document))
    project.close()
    args = ("segment", "import", project.root, labels, "--annotator", "bob", "--json")
    first = lensloop(*args, cache=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["added"] == 1
    again = lensloop(*args, cache=tmp_path)
    assert json.loads(again.stdout)["added"] == 0
    with Project.open(project.root, settings=settings) as reopened:
        (item,) = [i for i in load_segment_images(reopened) if i.image_id == image_id]
    assert item.annotators == ("a", "bob")
    assert item.annotator == "bob"  # the newest annotation is the target
    np.testing.assert_array_equal(
        item.label_map(["box", "rock"], draw_order=["box", "rock"]), scene.labels
    )


def test_a_resnet_encoder_starts_from_a_checkpoint(tmp_path: Path) -> None:
    import torch

    from lensloop.embed.resnet import build_resnet
    from lensloop.train.segmentation import build_segment_net

    source = build_resnet("resnet18")
    checkpoint = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), checkpoint)
    config = TrainConfig(encoder="resnet18", weights=str(checkpoint), width=8)
    net, pretrained = build_segment_net(3, 3, config, cache_dir=tmp_path / "cache")
    assert pretrained
    conv = net.unet.encoder.conv1.weight
    torch.testing.assert_close(conv, source.conv1.weight)
    out = net.eval()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(1, 64, 64))
    fresh, pretrained = build_segment_net(
        1, 2, config.model_copy(update={"weights": "none"}), cache_dir=tmp_path
    )
    assert not pretrained
    assert fresh.unet.in_channels == 1
