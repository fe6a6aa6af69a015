"""`lensloop train`, `evaluate` and `models` end to end, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import lensloop, make_image_folder

FEATURES = ("--backbone", "features")


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 8 images, 30% held out as val, embedded with the features backbone."""
    tmp_path = tmp_path_factory.mktemp("train-cli")
    make_image_folder(tmp_path / "data", {"a": 8, "b": 8, "c": 8}, seed=3)
    project = tmp_path / "p"
    assert lensloop("init", project).returncode == 0
    ingested = lensloop(
        "ingest", project, tmp_path / "data", "--labels-from-folders", "--split", "val=0.3"
    )
    assert ingested.returncode == 0, ingested.stderr
    assert lensloop("embed", project, *FEATURES, "--workers", "0").returncode == 0
    return project


def test_train_evaluate_models_round_trip(project_dir: Path, tmp_path: Path) -> None:
    first = lensloop("train", project_dir, *FEATURES, "--cv", "2", "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["version"] == 1
    assert one["aliases"] == ["champion", "latest"]
    assert one["metrics"]["cv"]["folds"] == 2
    assert len(one["metrics"]["cv"]["per_fold"]["accuracy"]) == 2
    assert one["metrics"]["onnx_max_abs_diff"] < 1e-4
    folder = project_dir / "models" / "v1"
    # The saved settings repeat the run exactly.
    second = lensloop("train", project_dir, "--config", folder / "config.yaml", "--json")
    assert second.returncode == 0, second.stderr
    two = json.loads(second.stdout)
    assert two["metrics"]["val"] == one["metrics"]["val"]
    assert two["aliases"] == ["latest"]  # equal, not better: champion stays on v1
    evaluated = lensloop("evaluate", project_dir, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["version"] == 1
    assert report["metrics"]["accuracy"] == one["metrics"]["val"]["accuracy"]
    assert (folder / "evaluation-val" / "predictions.png").is_file()
    promoted = lensloop("models", project_dir, "promote", "2")
    assert promoted.returncode == 0, promoted.stderr
    listed = json.loads(lensloop("models", project_dir, "--json").stdout)
    assert [(m["version"], m["aliases"]) for m in listed] == [
        (1, []),
        (2, ["champion", "latest"]),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--head", "forest"), "head"),
        (("train", "--cv", "9"), "--cv 9 needs at least 9"),
        (("evaluate", "--model", "7"), "no model '7'"),
        (("models", "promote", "9"), "no model version 9"),
    ],
)
def test_errors_are_one_clear_line(project_dir: Path, args: tuple[str, ...], message: str) -> None:
    command, *rest = args
    result = lensloop(command, project_dir, *rest, *(FEATURES if command == "train" else ()))
    assert result.returncode == 1, result.stdout
    assert message in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr


def test_a_corrupt_model_file_is_refused(project_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(project_dir, tmp_path / "copy"))
    assert lensloop("train", copy, *FEATURES).returncode == 0
    latest = max((copy / "models").glob("v*"), key=lambda p: int(p.name[1:]))
    (latest / "head.onnx").write_bytes(b"not an onnx file")
    result = lensloop("evaluate", copy, "--model", "latest")
    assert result.returncode == 1
    assert "not a loadable ONNX model" in result.stderr.replace("\n", " ")


def test_predict_stores_and_writes_csv(project_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(project_dir, tmp_path / "copy"))
    assert lensloop("train", copy, *FEATURES).returncode == 0
    first = lensloop("predict", copy, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["predicted"] == 24
    assert Path(summary["csv"]).is_file()
    again = json.loads(lensloop("predict", copy, "--json").stdout)
    assert (again["predicted"], again["already_predicted"]) == (0, 24)
    image = next((project_dir.parent / "data" / "a").glob("*.png"))
    files = lensloop("predict", copy, "--images", image, "--out", tmp_path / "f.csv")
    assert files.returncode == 0, files.stderr
    assert (tmp_path / "f.csv").read_text().count("\n") == 2


def test_finetune_from_the_command_line_repeats_from_its_saved_config(
    project_dir: Path,
) -> None:
    small = ("--arch", "resnet18", "--weights", "none", "--input-size", "32", "--epochs", "2")
    first = lensloop("train", project_dir, "--method", "finetune", *small, "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert len(one["metrics"]["history"]) <= 2  # --epochs is the finetune epochs here
    folder = project_dir / "models" / f"v{one['version']}"
    card = json.loads((folder / "card.json").read_text())
    assert (card["method"], card["input"]["kind"], card["input"]["size"]) == (
        "finetune",
        "image",
        32,
    )
    again = lensloop("train", project_dir, "--config", folder / "config.yaml", "--json")
    assert again.returncode == 0, again.stderr
    two = json.loads(again.stdout)
    assert two["version"] == one["version"] + 1
    assert two["metrics"]["history"] == one["metrics"]["history"]  # same settings, same run
    predicted = lensloop("predict", project_dir, "--model", str(two["version"]), "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predicted"] == 24
