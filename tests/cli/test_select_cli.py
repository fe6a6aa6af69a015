"""`lensloop select` and `lensloop simulate` end to end, in a subprocess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import lensloop, make_image_folder

FEATURES = ("--backbone", "features")


@pytest.fixture(scope="module")
def embedded_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 labelled images (a, b; a third held out) and 8 unlabelled ones, embedded."""
    tmp_path = tmp_path_factory.mktemp("select-cli")
    make_image_folder(tmp_path / "labelled", {"a": 6, "b": 6}, seed=1)
    make_image_folder(tmp_path / "new", {"x": 8}, seed=2)
    project = tmp_path / "p"
    assert lensloop("init", project).returncode == 0
    labelled = lensloop(
        "ingest", project, tmp_path / "labelled", "--labels-from-folders", "--split", "val=0.34"
    )
    assert labelled.returncode == 0, labelled.stderr
    assert lensloop("ingest", project, tmp_path / "new").returncode == 0
    embedded = lensloop("embed", project, *FEATURES, "--workers", "0")
    assert embedded.returncode == 0, embedded.stderr
    return project


@pytest.fixture
def project_dir(embedded_once: Path, tmp_path: Path) -> Path:
    """A private copy of the embedded project (tests record rounds in it)."""
    return Path(shutil.copytree(embedded_once, tmp_path / "p"))


def test_select_records_rounds_and_excludes_queued(project_dir: Path, tmp_path: Path) -> None:
    first = lensloop("select", project_dir, "-n", "3", *FEATURES, "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["round"] == 1
    assert one["strategy"] == "auto"
    assert one["details"]["mode"] == "uncertainty x diversity"  # 4 labels per class
    assert [i["rank"] for i in one["images"]] == [1, 2, 3]
    assert all("/new/" in i["uri"] for i in one["images"])
    written = tmp_path / "round2.json"
    second = lensloop(
        "select", project_dir, "-n", "3", "--strategy", "kcenter", *FEATURES, "--out", written
    )
    assert second.returncode == 0, second.stderr
    assert "round 2: kcenter" in second.stdout
    two = json.loads(written.read_text())
    assert not {i["image_id"] for i in one["images"]} & {i["image_id"] for i in two["images"]}
    status = json.loads(lensloop("status", project_dir, "--json").stdout)
    assert status["selection_rounds"] == 2
    assert status["queued_images"] == 6
    too_many = lensloop("select", project_dir, "-n", "3", *FEATURES)
    assert too_many.returncode == 1
    assert "only 2 images can be selected" in too_many.stderr
    assert "Traceback" not in too_many.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--strategy", "kcenter+typical"), "two diversity terms"),
        (("--strategy", "bogus"), "unknown strategy term 'bogus'"),
        (("--balance", "site=a:0.7,b:0.7"), "sum to 1.4"),
        (("--balance", "site"), "no image has a value for the balance key 'site'"),
        (("--backbone", "resnet18"), "no embeddings for resnet18"),
    ],
)
def test_select_errors_are_one_clear_line(
    project_dir: Path, args: tuple[str, ...], message: str
) -> None:
    result = lensloop("select", project_dir, "-n", "2", *FEATURES, *args)
    assert result.returncode == 1
    assert message in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr


def test_simulate_prints_the_curve_table_and_writes_files(
    project_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "curves"
    result = lensloop(
        "simulate", project_dir, "--rounds", "2", "--per-round", "2", "--seeds", "2",
        "--strategies", "auto,random", *FEATURES, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "auto vs random: AUC" in result.stdout
    assert (out / "simulation.png").is_file()
    document = json.loads((out / "simulation.json").read_text())
    assert document["budgets"] == [2, 4]
    assert set(document["strategies"]) == {"auto", "random"}
    as_json = lensloop(
        "simulate", project_dir, "--rounds", "2", "--per-round", "2", "--seeds", "2",
        "--strategies", "auto,random", *FEATURES, "--out", tmp_path / "again", "--json",
    )  # fmt: skip
    assert json.loads(as_json.stdout)["strategies"] == document["strategies"]
    refused = lensloop("simulate", project_dir, "--rounds", "9", "--per-round", "2", *FEATURES)
    assert refused.returncode == 1
    assert "lower --rounds or --per-round" in refused.stderr.replace("\n", " ")
