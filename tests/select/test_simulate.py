"""The simulator: learning curves from the catalog's labels, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from fakes import MeanColourBackbone
from lensloop.embed.engine import embed_project
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.select.simulate import SimulationConfig, area_under_curve, simulate

BACKBONE = MeanColourBackbone.name


def _config(**changes: object) -> SimulationConfig:
    base: dict[str, object] = {
        "rounds": 3,
        "per_round": 2,
        "strategies": ("random", "kcenter"),
        "seeds": 2,
        "backbone": BACKBONE,
    }
    base.update(changes)
    return SimulationConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def labelled(project: Project, tmp_path: Path) -> Project:
    """30 labelled images in 3 classes, 30% held out, embedded."""
    make_image_folder(tmp_path / "data", {"a": 10, "b": 10, "c": 10}, seed=7)
    options = IngestOptions(labels_from_folders=True, split={"val": 0.2, "test": 0.1})
    ingest(project, [tmp_path / "data"], options=options)
    embed_project(project, MeanColourBackbone(), workers=0)
    return project


def test_area_under_curve_is_the_mean_height() -> None:
    assert area_under_curve([10, 20, 30], [0.5, 0.7, 0.9]) == pytest.approx(0.7)
    assert area_under_curve([10, 20, 40], [0.0, 1.0, 1.0]) == pytest.approx(2.5 / 3)
    assert area_under_curve([5], [0.4]) == pytest.approx(0.4)


def test_curves_are_written_and_reproducible(labelled: Project, tmp_path: Path) -> None:
    ticks: list[tuple[int, int]] = []
    result = simulate(
        labelled, _config(), out_dir=tmp_path / "a", progress=lambda d, t: ticks.append((d, t))
    )
    assert ticks[-1] == (12, 12)  # 2 strategies x 2 seeds x 3 rounds
    assert result.n_eval == 9
    assert result.n_pool == 21
    assert result.png_path is not None
    assert result.png_path.stat().st_size > 1000
    assert result.json_path is not None
    document = json.loads(result.json_path.read_text())
    assert document == result.to_dict()
    assert document["budgets"] == [2, 4, 6]
    assert document["classes"] == ["a", "b", "c"]
    for name in ("random", "kcenter"):
        entry = document["strategies"][name]
        for metric in ("accuracy", "macro_f1"):
            runs = np.array(entry[metric]["per_seed"])
            assert runs.shape == (2, 3)
            assert ((runs >= 0) & (runs <= 1)).all()
            np.testing.assert_allclose(entry[metric]["mean"], runs.mean(axis=0), atol=1e-6)
            aucs = [area_under_curve([2, 4, 6], run) for run in runs]
            np.testing.assert_allclose(entry[metric]["auc"]["per_seed"], aucs, atol=1e-6)
    assert set(document["relative_to_random"]) == {"kcenter"}
    again = simulate(labelled, _config(), out_dir=tmp_path / "b")
    assert again.to_dict()["strategies"] == document["strategies"]


def test_auto_records_its_mode_per_round(labelled: Project, tmp_path: Path) -> None:
    result = simulate(
        labelled,
        _config(strategies=("auto",), rounds=4, per_round=3, seeds=1),
        out_dir=tmp_path,
    )
    (modes,) = result.curves[0].resolved
    assert modes[0] == "typical"  # no labels yet: cold start
    assert len(modes) == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rounds": 11, "per_round": 2}, "need 22 labelled pool images but the pool .* 21"),
        ({"strategies": ("random", "random")}, "listed twice"),
        ({"strategies": ("nonsense",)}, "unknown strategy term"),
        ({"seeds": 0}, "seeds must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(
    labelled: Project, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(labelled, _config(**changes), out_dir=tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_needs_a_held_out_split(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data", {"a": 4, "b": 4}, seed=8)
    ingest(project, [tmp_path / "data"], options=IngestOptions(labels_from_folders=True))
    embed_project(project, MeanColourBackbone(), workers=0)
    with pytest.raises(ConfigError, match=r"--split val=0\.2,test=0\.1"):
        simulate(project, _config(), out_dir=tmp_path / "out")


def test_needs_two_classes(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data", {"only": 10}, seed=9)
    options = IngestOptions(labels_from_folders=True, split={"val": 0.3})
    ingest(project, [tmp_path / "data"], options=options)
    embed_project(project, MeanColourBackbone(), workers=0)
    with pytest.raises(ConfigError, match=r"one class \(.only.\).*at least 2 classes"):
        simulate(project, _config(), out_dir=tmp_path / "out")


def test_needs_labels(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data", {"x": 4}, seed=10)
    ingest(project, [tmp_path / "data"])
    embed_project(project, MeanColourBackbone(), workers=0)
    with pytest.raises(ConfigError, match="needs labelled images"):
        simulate(project, _config(), out_dir=tmp_path / "out")
