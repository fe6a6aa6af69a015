"""`lensloop count import / agreement` through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import lensloop
from lensloop.annotate.pointfiles import import_points
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings


def _count_project(root: Path, settings: Settings) -> Path:
    """A count project with images a.png and b.png (40x30); returns its folder."""
    rng = np.random.default_rng(2)
    for name in ("a.png", "b.png"):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rng.integers(0, 255, size=(30, 40), dtype=np.uint8)).save(path)
    with Project.init(root / "p", task="count", classes=["cell"], settings=settings) as project:
        ingest(project, [root / "images"])
        return project.root


def test_import_twice_and_refuse_unknown_images(tmp_path: Path, settings: Settings) -> None:
    root = _count_project(tmp_path, settings)
    points = tmp_path / "points.csv"
    points.write_text("image,x,y,annotator\na.png,1,2,alice\na.png,3,4,alice\nb.png,5,6,bob\n")

    done = lensloop("count", "import", root, points, "--status", "full", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "entries": 2,
        "images": 2,
        "points": 3,
        "added": 2,
        "unchanged": 0,
        "superseded": 0,
    }
    again = lensloop("count", "import", root, points, "--status", "full")
    assert again.returncode == 0, again.stderr
    assert "added 0 annotations" in again.stdout
    assert "2 already imported" in again.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("image,x,y\nmissing.png,1,2\n")
    refused = lensloop("count", "import", root, bad)
    assert refused.returncode == 1
    assert "error:" in refused.stderr
    assert "'missing.png'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_agreement_table_json_and_csv(tmp_path: Path, settings: Settings) -> None:
    root = _count_project(tmp_path, settings)
    points = tmp_path / "points.json"
    points.write_text(
        json.dumps(
            [
                {"image": "a.png", "annotator": "alice", "status": "full", "points": [[5, 5]]},
                {"image": "a.png", "annotator": "bob", "points": [[5, 6], [30, 20]]},
                {"image": "b.png", "annotator": "alice", "points": [[10, 10]]},
            ]
        )
    )
    with Project.open(root, settings=settings) as project:
        import_points(project, points)

    table = tmp_path / "agreement.csv"
    done = lensloop("count", "agreement", root, "--out", table)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    worst = next(i for i, line in enumerate(lines) if "a.png" in line)
    best = next(i for i, line in enumerate(lines) if "b.png" in line)
    assert worst < best
    assert "alice: 1, bob: 2" in lines[worst]
    assert "0.67" in lines[worst]
    assert "conflict" in lines[worst]
    assert "2 images with points; 1 with 2 or more annotators, mean agreement 0.67; 1 in" in (
        " ".join(done.stdout.split())
    )
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["annotators"], r["counts"], r["consensus"], r["disputed"]) for r in rows] == [
        ("alice;bob", "alice=1;bob=2", "1", "1"),
        ("alice", "alice=1", "1", "0"),
    ]
    assert rows[0]["status"] == "conflict"
    assert float(rows[0]["agreement"]) == pytest.approx(2 / 3, abs=1e-4)

    as_json = lensloop("count", "agreement", root, "--json", "--radius", "0.5")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert [r["agreement"] for r in report] == [0.0, 1.0]  # clicks 1 px apart: no match

    refused = lensloop("count", "agreement", root, "--out", table)
    assert refused.returncode == 1
    assert "pass --force" in refused.stderr
