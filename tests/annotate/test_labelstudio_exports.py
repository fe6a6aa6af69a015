"""Real exports from a Label Studio 1.23 server (tests/annotate/data) read the same in both
formats; the files were made by the integration fixture's server with ls_label_config.xml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lensloop.annotate.labelstudio import import_annotations, read_export
from lensloop.annotate.rle import counts_to_mask
from lensloop.catalog.models import Annotation
from lensloop.project import Project
from lensloop.project.ingest import ingest

DATA = Path(__file__).parent / "data"
CLASSES = ["copepod", "detritus", "diatom", "head", "tail"]


def _project(root: Path) -> Project:
    project = Project.init(root / "p", classes=CLASSES)
    for index, (width, height) in enumerate([(200, 100), (64, 48), (32, 32)], start=1):
        path = root / f"img{index}.png"
        PILImage.fromarray(np.full((height, width), index * 40, dtype=np.uint8)).save(path)
        ingest(project, [path])  # one at a time: ids 1, 2, 3 as in the export
    return project


def _payloads(project: Project) -> dict[tuple[int, str], dict[str, Any]]:
    with project.catalog.reader() as session:
        rows = session.scalars(select(Annotation).where(Annotation.origin == "labelstudio"))
        found = {}
        for row in rows:
            payload = {k: v for k, v in row.payload.items() if k != "labelstudio"}
            for regions in ("points", "boxes", "polygons", "masks"):
                for region in payload.get(regions, []):
                    region.pop("id")  # JSON-MIN has no result ids
            found[(row.payload["labelstudio"]["annotation"], row.kind)] = payload
        return found


def test_json_and_json_min_exports_give_the_same_pixels(tmp_path: Path) -> None:
    full = _project(tmp_path / "full")
    report = import_annotations(full, read_export(DATA / "ls_export.json"))
    assert (report.annotations, report.cancelled, report.images) == (4, 1, 2)
    assert dict(report.by_kind) == {"class": 3, "points": 2, "box": 2, "polygon": 1, "mask": 2}
    minimal = _project(tmp_path / "min")
    import_annotations(minimal, read_export(DATA / "ls_export_min.json"))
    stored = _payloads(full)
    assert stored == _payloads(minimal)

    assert stored[(1, "class")] == {"class": "diatom"}
    assert stored[(1, "points")]["points"] == [{"x": 50.0, "y": 25.0, "label": "head"}]
    (box,) = stored[(1, "box")]["boxes"]
    assert (box["x"], box["y"], box["width"], box["height"]) == (20.0, 10.0, 60.0, 50.0)
    assert stored[(1, "polygon")]["polygons"][0]["points"] == [
        [100.0, 20.0],
        [180.0, 20.0],
        [140.0, 90.0],
    ]
    assert stored[(3, "points")]["points"] == [{"x": 16.0, "y": 12.0, "label": "tail"}]
    for key, shape in (((1, "mask"), (100, 200)), ((3, "mask"), (48, 64))):
        mask = counts_to_mask(stored[key]["masks"][0])
        assert mask.shape == shape
        assert 0 < mask.sum() < mask.size


@pytest.mark.parametrize("name", ["ls_export.json", "ls_export_min.json"])
def test_annotators_and_times_are_kept(name: str) -> None:
    found = {a.annotation_id: a for a in read_export(DATA / name)}
    assert found[2].annotator == "user:2"
    assert found[1].annotator == "user:1"
    assert found[2].task_id == 9
    assert found[2].created_at is not None
    assert found[2].updated_at.startswith("2026-11-21T12:09:17")
