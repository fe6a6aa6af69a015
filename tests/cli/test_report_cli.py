"""`lensloop report` end to end, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from conftest import lensloop, make_image_folder
from lensloop.catalog.models import Image
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.settings import Settings


def test_report_writes_csv_and_chart_and_prints_counts(tmp_path: Path, settings: Settings) -> None:
    make_image_folder(tmp_path / "labelled", {"Copepoda": 2, "Diatom": 1}, seed=1)
    make_image_folder(tmp_path / "new", {"x": 1}, seed=2)
    root = tmp_path / "p"
    with Project.init(root, settings=settings) as project:
        ingest(project, [tmp_path / "labelled"], options=IngestOptions(labels_from_folders=True))
        ingest(project, [tmp_path / "new"])
        with project.catalog.transaction() as session:
            for image in session.scalars(select(Image)):
                image.meta = {"station": "B" if "Diatom" in image.uri else "A"}

    as_json = lensloop("report", root, "--by", "station", "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["by"] == "station"
    assert document["model_version"] is None  # no model yet: confirmed labels only
    assert document["groups"] == {
        "A": {"Copepoda": {"confirmed": 2, "predicted": 0, "total": 2}},
        "B": {"Diatom": {"confirmed": 1, "predicted": 0, "total": 1}},
    }
    assert document["unclassified"] == {"A": 1, "B": 0}
    default = root / "reports" / "abundance-station.csv"
    assert document["csv"] == str(default)
    assert document["png"] == str(default.with_suffix(".png"))
    assert default.read_text(encoding="utf-8").splitlines() == [
        "group,class,confirmed,predicted,total",
        "A,Copepoda,2,0,2",
        "A,(unclassified),0,0,1",
        "B,Diatom,1,0,1",
    ]
    assert default.with_suffix(".png").is_file()

    target = tmp_path / "out" / "abundance.csv"
    table = lensloop("report", root, "--by", "station", "--out", target, "--no-plot")
    assert table.returncode == 0, table.stderr
    assert "images per class by station (confirmed labels only)" in table.stdout
    assert "3 images counted by confirmed label, 0 by prediction, 1 unclassified" in table.stdout
    assert f"written to {target}" in table.stdout
    assert target.is_file()
    assert not target.with_suffix(".png").exists()

    wrong = lensloop("report", root, "--by", "depth")
    assert wrong.returncode == 1
    assert "no image has a value for 'depth'" in wrong.stderr
    assert "station" in wrong.stderr
