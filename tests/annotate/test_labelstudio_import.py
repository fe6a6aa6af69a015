"""Importing Label Studio exports: idempotent, versioned, all or nothing, errors named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from lensloop.annotate.labelstudio import import_annotations, parse_export, read_export
from lensloop.annotate.labelstudio.importer import record_deletion
from lensloop.annotate.rle import counts_to_mask
from lensloop.catalog.annotations import current_annotations
from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import Annotation
from lensloop.errors import LabelError
from lensloop.project import Project
from lsfakes import annotation, brush, choice, image_ids, json_task, keypoint, sized_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return sized_project(tmp_path)


def _rows(project: Project) -> list[Annotation]:
    with project.catalog.reader() as session:
        return list(session.scalars(select(Annotation).order_by(Annotation.id)))


def _export(project: Project, *, updated_at: str = "2026-11-20T10:00:00.000000Z") -> list[dict]:
    ids = image_ids(project)
    mask = np.zeros((48, 64), dtype=bool)
    mask[5:20, 10:30] = True
    return [
        json_task(
            11,
            {"image": "http://127.0.0.1:9090/images/x", "lensloop_image_id": ids["wide.png"]},
            [
                annotation(
                    101,
                    [choice("cell"), keypoint(25.0, 50.0, "cell")],
                    updated_at=updated_at,
                )
            ],
        ),
        json_task(
            12,
            {"image": f"http://127.0.0.1:9090/images/{ids['small.png']}"},  # found by URL
            [
                annotation(102, [brush(mask, "debris")], email="b@example.org"),
                annotation(103, [], cancelled=True),
            ],
        ),
    ]


def test_import_keeps_everything_and_twice_adds_nothing(project: Project) -> None:
    export = _export(project)
    report = import_annotations(project, parse_export(export))
    assert (report.annotations, report.added, report.cancelled, report.images) == (3, 3, 1, 2)
    assert dict(report.by_kind) == {"class": 1, "points": 1, "mask": 1}
    rows = _rows(project)
    ids = image_ids(project)
    by_kind = {row.kind: row for row in rows}
    points = by_kind["points"]
    assert points.image_id == ids["wide.png"]
    assert points.payload["points"][0] | {"id": "k1"} == {
        "x": 50.0,
        "y": 50.0,
        "label": "cell",
        "id": "k1",
    }
    assert points.annotator == "ann@example.org"
    assert points.origin == "labelstudio"
    assert points.payload["labelstudio"] == {
        "task": 11,
        "annotation": 101,
        "project": None,
        "updated_at": "2026-11-20T10:00:00.000000Z",
        "lead_time": 4.5,
    }
    assert points.created_at.isoformat().startswith("2026-11-20T09:00:00")
    mask = counts_to_mask(by_kind["mask"].payload["masks"][0])
    assert mask.sum() == 15 * 20
    assert by_kind["mask"].annotator == "b@example.org"
    with project.catalog.reader() as session:
        assert current_class_paths(session) == {ids["wide.png"]: "cell"}
    again = import_annotations(project, parse_export(export))
    assert (again.added, again.unchanged) == (0, 3)
    assert len(_rows(project)) == 3


def test_an_edited_annotation_is_a_new_version(project: Project) -> None:
    import_annotations(project, parse_export(_export(project)))
    edited = _export(project, updated_at="2026-11-21T08:00:00.000000Z")
    edited[0]["annotations"][0]["result"][0]["value"]["choices"] = ["debris"]
    report = import_annotations(project, parse_export(edited))
    assert (report.added, report.superseded, report.unchanged) == (2, 2, 1)
    rows = _rows(project)
    classes = [r for r in rows if r.kind == "class"]
    assert [r.payload["class"] for r in classes] == ["cell", "debris"]
    assert classes[1].supersedes_id == classes[0].id  # the old row is kept, not overwritten
    with project.catalog.reader() as session:
        assert current_class_paths(session) == {image_ids(project)["wide.png"]: "debris"}


def test_deletion_is_recorded_once(project: Project) -> None:
    import_annotations(project, parse_export(_export(project)))
    assert record_deletion(project, annotation_id=101) == 2  # its class and its points
    assert record_deletion(project, annotation_id=101, task_id=11) == 0
    with project.catalog.reader() as session:
        assert current_class_paths(session) == {}
        assert set(current_annotations(session, "mask")) == {image_ids(project)["small.png"]}
        assert current_annotations(session, "points") == {}


def test_a_bad_record_writes_nothing(project: Project) -> None:
    export = _export(project)
    export[1]["annotations"][0]["result"].append(keypoint(1, 1, "virus", rid="bad"))
    with pytest.raises(
        LabelError, match=r"task 12, annotation 102, result bad: label 'virus'.*\(cell, debris\)"
    ):
        import_annotations(project, parse_export(export))
    assert _rows(project) == []
    export = _export(project)
    export[0]["data"] = {"image": "http://elsewhere.example/upload/1.png"}
    with pytest.raises(
        LabelError, match=r"task 11, annotation 101: its image .* is not in the catalog"
    ):
        import_annotations(project, parse_export(export))
    assert _rows(project) == []


def test_json_min_and_files(project: Project, tmp_path: Path) -> None:
    ids = image_ids(project)
    rows = [
        {
            "image": "http://127.0.0.1:9090/images/1",
            "lensloop_image_id": ids["wide.png"],
            "id": 7,
            "class": "debris",
            "points": [
                {
                    "x": 50,
                    "y": 10,
                    "width": 0.5,
                    "keypointlabels": ["cell"],
                    "original_width": 200,
                    "original_height": 100,
                }
            ],
            "annotator": "c@example.org",
            "annotation_id": 70,
            "created_at": "2026-11-20T09:00:00.000000Z",
            "updated_at": "2026-11-20T09:30:00.000000Z",
            "lead_time": 2.0,
        }
    ]
    path = tmp_path / "min.json"
    path.write_text(json.dumps(rows))
    report = import_annotations(project, read_export(path))
    assert dict(report.by_kind) == {"class": 1, "points": 1}
    point = next(r for r in _rows(project) if r.kind == "points").payload["points"][0]
    assert (point["x"], point["y"]) == (100.0, 10.0)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(LabelError, match=r"broken\.json is not JSON"):
        read_export(broken)
    broken.write_text(json.dumps({"tasks": []}))
    with pytest.raises(LabelError, match="JSON list of tasks"):
        read_export(broken)
    broken.write_text(json.dumps([{"something": 1}]))
    with pytest.raises(LabelError, match="record 0 has neither"):
        read_export(broken)
    broken.write_text(json.dumps([{"id": "x", "annotations": []}]))
    with pytest.raises(LabelError, match="record 0: expected an integer 'id'"):
        read_export(broken)
