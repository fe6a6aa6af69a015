"""Executors: the local one, the registry, and Dask on a real LocalCluster.

The Dask tests start one ``distributed.LocalCluster`` (2 worker processes, 1 thread each,
on 127.0.0.1) for the module and check that embed, predict, count and segment store
exactly what the local executor stores. Without ``distributed`` they skip (fail under
``LENSLOOP_REQUIRE_INTEGRATION=1``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from conftest import lensloop, make_coloured_folder, make_image_folder
from fakes import MeanColourBackbone
from lensloop.catalog.models import Prediction
from lensloop.embed.engine import embed_project
from lensloop.embed.onnx_backbone import OnnxBackbone
from lensloop.errors import ConfigError, UnknownNameError
from lensloop.executors import (
    EXECUTORS,
    DaskExecutor,
    LocalExecutor,
    get_executor,
    is_local,
    shards,
)
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.settings import Settings
from servers import LOOPBACK, require_integration

# -- shard functions (module level: they travel to the workers by pickle) -----------------


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x


# -- the local executor and the registry ----------------------------------------------------


def test_local_executor_yields_in_order_and_raises_when_reached() -> None:
    runner = get_executor("local")
    assert isinstance(runner, LocalExecutor)
    assert is_local(runner)
    assert list(runner.map(_square, [3, 1, 2])) == [9, 1, 4]
    results = runner.map(_fail_on_three, [1, 2, 3, 4])
    assert [next(results), next(results)] == [1, 2]
    with pytest.raises(ValueError, match="item 3 is bad"):
        next(results)
    runner.close()


def test_shards_cut_in_order() -> None:
    assert shards(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert shards([], 4) == []
    with pytest.raises(ValueError, match="size=0"):
        shards([1], 0)


def test_unknown_executor_lists_the_valid_names() -> None:
    assert set(EXECUTORS) == {"local", "dask"}
    with pytest.raises(UnknownNameError, match=r"unknown executor 'spark'.*dask, local"):
        get_executor("spark")


def test_dask_without_a_scheduler_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError) as caught:
        get_executor("dask", None)
    message = str(caught.value)
    for hint in ("--scheduler", "LENSLOOP_DASK_SCHEDULER", "dask scheduler", "dask worker"):
        assert hint in message


def test_dask_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ConfigError, match=r"lensloop\[dask\]"):
        DaskExecutor("tcp://127.0.0.1:1")


def test_cli_dask_without_a_scheduler_is_a_clear_error(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LENSLOOP_DASK_SCHEDULER", raising=False)
    make_image_folder(tmp_path / "d", {"a": 2})
    ingest(project, [tmp_path / "d"])
    done = lensloop(
        "embed", project.root, "--backbone", "features", "--executor", "dask", cache=tmp_path
    )
    assert done.returncode == 1
    assert "LENSLOOP_DASK_SCHEDULER" in done.stderr
    assert "Traceback" not in done.stderr
    unknown = lensloop("embed", project.root, "--backbone", "features", "--executor", "spark")
    assert unknown.returncode == 2
    assert "dask, local" in unknown.stderr


# -- Dask on a LocalCluster -----------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a 2-worker LocalCluster on 127.0.0.1 (module scope: it takes seconds)."""
    try:
        from distributed import LocalCluster
    except ImportError:
        require_integration("distributed is not installed (pip install 'lensloop[dask]')")
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        dashboard_address=None,
    )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.fixture
def dask(scheduler: str) -> Iterator[DaskExecutor]:
    runner = DaskExecutor(scheduler)
    try:
        yield runner
    finally:
        runner.close()


@pytest.mark.integration
def test_dask_yields_in_order_and_reraises_the_tasks_error(dask: DaskExecutor) -> None:
    assert not is_local(dask)
    assert list(dask.map(_square, list(range(20)))) == [x * x for x in range(20)]
    assert list(dask.map(_square, [2, 2, 2])) == [4, 4, 4]  # equal items all run
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(dask.map(_fail_on_three, [1, 2, 3, 4]))


@pytest.mark.integration
def test_unreachable_scheduler_is_a_config_error(scheduler: str) -> None:
    from servers import free_port

    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        DaskExecutor(f"tcp://{LOOPBACK}:{free_port()}", timeout=1)


def _tiny_onnx(path: Path) -> Path:
    """An ONNX 'backbone': (N, 3, H, W) -> per-channel mean and max, (N, 6)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 1, 1])
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["mean"]),
            helper.make_node("GlobalMaxPool", ["x"], ["max"]),
            helper.make_node("Concat", ["mean", "max"], ["y"], axis=1),
        ],
        "tiny",
        [x],
        [y],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.integration
@pytest.mark.parametrize("backbone_kind", ["fake", "onnx"])
def test_embed_on_dask_stores_the_local_vectors(
    dask: DaskExecutor, tmp_path: Path, settings: Settings, backbone_kind: str
) -> None:
    backbone: Any = (
        MeanColourBackbone()
        if backbone_kind == "fake"
        else OnnxBackbone(_tiny_onnx(tmp_path / "tiny.onnx"), input_size=16)
    )
    stored = []
    for name, runner in (("local", LocalExecutor()), ("dask", dask)):
        with Project.init(tmp_path / name, settings=settings) as project:
            data = tmp_path / f"data-{name}"
            make_image_folder(data, {"a": 7, "b": 6})
            ingest(project, [data])
            (data / "a" / "img_0003.png").write_bytes(b"damaged since")
            ticks: list[tuple[int, int]] = []
            report = embed_project(
                project,
                backbone,
                batch_size=4,
                workers=0,
                flush_every=5,
                shard_size=5,
                executor=runner,
                progress=lambda d, t: ticks.append((d, t)),  # noqa: B023
            )
            assert ticks[-1] == (13, 13)
            assert report.embedded == 12
            stored.append((project.embeddings(backbone.name), report.failed))
    (local_ids, local_vectors), local_failed = stored[0]
    (dask_ids, dask_vectors), dask_failed = stored[1]
    np.testing.assert_array_equal(local_ids, dask_ids)
    np.testing.assert_array_equal(local_vectors, dask_vectors)
    assert [(i, reason.replace("data-dask", "data-local")) for i, _, reason in dask_failed] == [
        (i, reason) for i, _, reason in local_failed
    ]
    assert len(dask_failed) == 1


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_predict_on_dask_stores_the_local_probabilities(
    dask: DaskExecutor, tmp_path: Path, settings: Settings
) -> None:
    from lensloop.train.config import TrainConfig
    from lensloop.train.finetune import train_finetune
    from lensloop.train.inference import init_model, predict_project

    make_coloured_folder(tmp_path / "src", per_class=6)
    config = TrainConfig(
        method="finetune", arch="resnet18", weights="none", input_size=32, epochs=1, batch_size=32
    )
    probabilities = []
    with Project.init(tmp_path / "p", settings=settings) as project:
        options = IngestOptions(labels_from_folders=True, split={"val": 0.3})
        ingest(project, [tmp_path / "src"], options=options)
        train_finetune(project, config)
        model = init_model("latest", project=project)
        for runner in (LocalExecutor(), dask):
            report = predict_project(project, model, executor=runner)
            assert report.predicted == 18
            with project.catalog.transaction() as session:
                rows = session.scalars(select(Prediction).order_by(Prediction.image_id)).all()
                probabilities.append([(r.image_id, r.probabilities, r.uncertainty) for r in rows])
                for row in rows:  # predict again, on the other executor
                    session.delete(row)
    assert probabilities[0] == probabilities[1]


def _trained_counter(root: Path) -> Path:
    from lensloop.train.trainer import train_model
    from train.test_counting import CONFIG, make_counting_project

    settings = Settings(cache_dir=root / "cache")
    project, _ = make_counting_project(root, settings, n_images=6)
    with project:
        train_model(project, CONFIG.model_copy(update={"epochs": 1, "patience": 1}))
        return project.root / "models" / "v1"


def _trained_segmenter(root: Path) -> Path:
    from lensloop.train.trainer import train_model
    from train.test_segmentation import CONFIG, make_segment_project

    settings = Settings(cache_dir=root / "cache")
    splits = ["val", "train", "train", "train", "val", "train"]
    project, _ = make_segment_project(root, settings, splits=splits)
    with project:
        train_model(project, CONFIG.model_copy(update={"epochs": 1, "patience": 1}))
        return project.root / "models" / "v1"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_count_on_dask_writes_the_local_counts(scheduler: str, tmp_path: Path) -> None:
    model = _trained_counter(tmp_path)
    images = tmp_path / "images"  # the project's 6 cell images
    outputs = {}
    for name, options in (
        ("local", []),
        ("dask", ["--executor", "dask", "--scheduler", scheduler]),
    ):
        out = tmp_path / f"counts-{name}"
        done = lensloop(
            "count", images, "--model", model, "--out", out, *options, cache=tmp_path / "cache"
        )
        assert done.returncode == 0, done.stderr
        outputs[name] = out
    local = json.loads((outputs["local"] / "counts.json").read_text())
    remote = json.loads((outputs["dask"] / "counts.json").read_text())
    assert len(local["counts"]) == 6
    assert remote == local
    plots = sorted(p.name for p in (outputs["local"] / "plots").iterdir())
    assert sorted(p.name for p in (outputs["dask"] / "plots").iterdir()) == plots


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_segment_on_dask_writes_the_local_masks(scheduler: str, tmp_path: Path) -> None:
    model = _trained_segmenter(tmp_path)
    images = tmp_path / "images"
    outputs = {}
    for name, options in (
        ("local", []),
        ("dask", ["--executor", "dask", "--scheduler", scheduler]),
    ):
        out = tmp_path / f"segments-{name}"
        done = lensloop(
            "segment", images, "--model", model, "--out", out, *options, cache=tmp_path / "cache"
        )
        assert done.returncode == 0, done.stderr
        outputs[name] = out
    local = json.loads((outputs["local"] / "segments.json").read_text())
    remote = json.loads((outputs["dask"] / "segments.json").read_text())
    assert len(local["images"]) == 6
    assert [e["fractions"] for e in remote["images"].values()] == [
        e["fractions"] for e in local["images"].values()
    ]
    for entry in local["images"].values():
        mask = Path(entry["mask"])
        other = outputs["dask"] / "masks" / mask.name
        np.testing.assert_array_equal(
            np.asarray(PILImage.open(other)), np.asarray(PILImage.open(mask))
        )
    assert (outputs["dask"] / "overlays").is_dir()


@pytest.mark.integration
def test_flowcam_slicing_on_dask_writes_the_local_crops(scheduler: str, tmp_path: Path) -> None:
    from lensloop.sources.flowcam_synthetic import make_flowcam_export

    truth = make_flowcam_export(
        tmp_path / "exports" / "cruise_50.25_-4.125_21032024_1", n_collages=4, particles=60
    )
    crops = {}
    for name, options in (
        ("local", []),
        ("dask", ["--executor", "dask", "--scheduler", scheduler]),
    ):
        project = tmp_path / name
        assert lensloop("init", project, cache=tmp_path / "cache").returncode == 0
        done = lensloop(
            "ingest", project, truth.folder, "--format", "flowcam", *options,
            cache=tmp_path / "cache",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        files = sorted((project / "images").rglob("*.png"))
        crops[name] = {p.relative_to(project).as_posix(): p.read_bytes() for p in files}
    assert len(crops["local"]) == 60
    assert crops["dask"] == crops["local"]
