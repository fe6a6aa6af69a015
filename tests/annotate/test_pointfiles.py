"""Point files: CSV and JSON reading, image references, checks, idempotent import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lensloop.annotate.pointfiles import (
    POINT_STATUSES,
    import_points,
    read_point_file,
)
from lensloop.catalog.annotations import annotations_by_annotator
from lensloop.catalog.models import Annotation, Image
from lensloop.errors import ConfigError, LabelError, NotFoundError, SourceError
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings
from lensloop.tasks.counting.density import STATUSES

#: Images of the count project, ``{relative path: (width, height)}``.
SIZES = {"plate1/a.png": (40, 30), "plate2/a.png": (40, 30), "plate1/b.png": (20, 10)}


def count_project(root: Path, settings: Settings, classes: list[str]) -> Project:
    project = Project.init(root / "p", task="count", classes=classes, settings=settings)
    rng = np.random.default_rng(3)
    for name, (width, height) in SIZES.items():
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(height, width), dtype=np.uint8)
        PILImage.fromarray(pixels).save(path)
    ingest(project, [root / "images"])
    return project


@pytest.fixture
def counting(tmp_path: Path, settings: Settings) -> Iterator[Project]:
    with count_project(tmp_path, settings, ["cell"]) as project:
        yield project


def _ids(project: Project) -> dict[str, int]:
    with project.catalog.reader() as session:
        rows = session.execute(select(Image.id, Image.uri))
        return {"/".join(uri.split("/")[-2:]): image_id for image_id, uri in rows}


def _rows(project: Project) -> list[Annotation]:
    with project.catalog.reader() as session:
        return list(session.scalars(select(Annotation).order_by(Annotation.id)))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- reading ------------------------------------------------------------------------------


def test_statuses_match_the_counting_task() -> None:
    assert POINT_STATUSES == STATUSES


def test_csv_groups_rows_by_image_and_annotator(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "points.csv",
        "Image,X,Y,annotator,label,status\n"
        "plate1/a.png,1.5,2.5,alice,cell,full\n"
        "plate1/a.png,3,4,alice,,\n"
        "plate1/a.png,5,6,bob,,\n"
        "\n"
        "plate1/b.png,,,alice,,EMPTY\n",
    )
    entries = read_point_file(path)
    assert [(e.image, e.annotator, e.status) for e in entries] == [
        ("plate1/a.png", "alice", "full"),
        ("plate1/a.png", "bob", None),
        ("plate1/b.png", "alice", "empty"),
    ]
    assert entries[0].points.dtype == np.float64
    np.testing.assert_array_equal(entries[0].points, [[1.5, 2.5], [3.0, 4.0]])
    assert entries[0].labels == ["cell", None]
    assert entries[0].where == "points.csv rows 2-3"
    assert entries[2].points.shape == (0, 2)
    assert entries[2].labels == []


def test_csv_with_only_the_required_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", "image,x,y\na.png,1,2\n")
    (entry,) = read_point_file(path)
    assert (entry.annotator, entry.status, entry.labels) == (None, None, [None])


def test_json_entries_and_plain_mapping(tmp_path: Path) -> None:
    images = {
        "images": [
            {
                "image": "plate1/a.png",
                "annotator": "bob",
                "status": "full",
                "points": [[1, 2], {"x": 3, "y": 4, "label": "cell"}],
                "background": [[0, 0, 5, 5], {"x": 1, "y": 1, "width": 2, "height": 3}],
            },
            {"image": 7, "status": "empty"},
        ]
    }
    entries = read_point_file(_write(tmp_path / "a.json", json.dumps(images)))
    assert [(e.image, e.annotator, e.status) for e in entries] == [
        ("plate1/a.png", "bob", "full"),
        ("7", None, "empty"),
    ]
    np.testing.assert_array_equal(entries[0].points, [[1, 2], [3, 4]])
    assert entries[0].labels == [None, "cell"]
    assert entries[0].background == [(0, 0, 5, 5), (1, 1, 2, 3)]
    plain = read_point_file(_write(tmp_path / "b.json", json.dumps({"a.png": [[1, 2]]})))
    assert [(e.image, e.points.tolist()) for e in plain] == [("a.png", [[1.0, 2.0]])]
    listed = read_point_file(_write(tmp_path / "c.json", json.dumps(images["images"])))
    assert len(listed) == 2


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.csv", "image,x\na.png,1\n", r"p\.csv: missing column\(s\) y"),
        ("p.csv", "image,x,y\na.png,1,abc\n", r"p\.csv: row 2: y must be a number, got 'abc'"),
        ("p.csv", "image,x,y\na.png,1,nan\n", "row 2: y must be a finite number"),
        ("p.csv", "image,x,y\na.png,1,\n", "row 2: give both x and y"),
        ("p.csv", "image,x,y\n,1,2\n", "row 2: the image column is empty"),
        ("p.csv", "image,x,y,status\na.png,1,2,done\n", "row 2: unknown status 'done'.*sparse"),
        (
            "p.csv",
            "image,x,y,status\na.png,1,2,full\nb.png,1,2,\na.png,3,4,sparse\n",
            r"row 4: image 'a\.png' has status 'sparse' here but 'full' in row 2",
        ),
        ("p.csv", "", "the file is empty"),
        ("p.json", "[1, 2", "not valid JSON"),
        ("p.json", '{"images": 3}', '"images" must be a list'),
        ("p.json", "42", "unknown JSON shape"),
        ("p.json", '{"a.png": 3}', "unknown JSON shape"),
        ("p.json", '[{"points": []}]', "entry 1: 'image' must name an image"),
        ("p.json", '[{"image": "a.png", "points": [[1]]}]', r"entry 1 \(a\.png\): a point must"),
        ("p.json", '[{"image": "a", "points": [[1, true]]}]', "y must be a number"),
        ("p.json", '[{"image": "a", "status": "most"}]', "unknown status 'most'"),
        ("p.json", '[{"image": "a", "background": [[0, 0, 0, 5]]}]', "positive width"),
        ("p.txt", "", r"unknown point file type '\.txt'"),
    ],
)
def test_bad_files_say_where_and_what(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_point_file(_write(tmp_path / name, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such point file"):
        read_point_file(tmp_path / "nothing.csv")


# -- importing ----------------------------------------------------------------------------


def test_import_stores_points_and_twice_adds_nothing(counting: Project, tmp_path: Path) -> None:
    ids = _ids(counting)
    path = _write(
        tmp_path / "points.csv",
        "image,x,y,annotator,status\n"
        f"plate1/a.png,1.5,2.5,alice,full\n"
        f"plate1/a.png,40,30,alice,full\n"  # the far corner is still inside
        f"{ids['plate2/a.png']},3,4,,\n"  # by catalog id
        "plate1/b.png,,,alice,empty\n",
    )
    report = import_points(counting, path)
    assert report.as_dict() == {
        "entries": 3,
        "images": 3,
        "points": 3,
        "added": 3,
        "unchanged": 0,
        "superseded": 0,
    }
    rows = _rows(counting)
    by_image = {row.image_id: row for row in rows}
    first = by_image[ids["plate1/a.png"]]
    assert (first.kind, first.annotator, first.origin) == ("points", "alice", "import")
    assert first.payload == {
        "width": 40,
        "height": 30,
        "points": [
            {"x": 1.5, "y": 2.5, "label": "cell", "id": "p0"},
            {"x": 40.0, "y": 30.0, "label": "cell", "id": "p1"},
        ],
        "status": "full",
    }
    assert first.external_id is not None
    key, digest = first.external_id.split("@")
    assert key == f"points:i{ids['plate1/a.png']}:alice"
    assert len(digest) == 16
    second = by_image[ids["plate2/a.png"]]
    assert (second.annotator, second.payload["status"]) == ("import", "sparse")  # defaults
    assert by_image[ids["plate1/b.png"]].payload["points"] == []

    again = import_points(counting, path)
    assert (again.added, again.unchanged, again.superseded) == (0, 3, 0)
    assert len(_rows(counting)) == 3


def test_a_changed_file_supersedes(counting: Project, tmp_path: Path) -> None:
    ids = _ids(counting)
    path = tmp_path / "points.json"
    entry = {"image": "plate1/b.png", "annotator": "bob", "points": [[1, 1]]}
    _write(path, json.dumps([entry]))
    import_points(counting, path)
    entry["points"] = [[1, 1], [5, 5]]
    _write(path, json.dumps([entry]))
    report = import_points(counting, path, status="full")
    assert (report.added, report.unchanged, report.superseded) == (1, 0, 1)
    old, new = _rows(counting)
    assert new.supersedes_id == old.id
    with counting.catalog.reader() as session:
        current = annotations_by_annotator(session, "points")
    row = current[ids["plate1/b.png"]]["bob"]
    assert row.id == new.id
    assert row.payload["status"] == "full"
    assert len(row.payload["points"]) == 2


def test_options_give_defaults_the_file_does_not(counting: Project, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.csv",
        "image,x,y,annotator,status\nplate1/b.png,1,1,,\nplate1/a.png,2,2,carol,sparse\n",
    )
    import_points(counting, path, annotator="dave", status="full")
    rows = {row.annotator: row.payload["status"] for row in _rows(counting)}
    assert rows == {"dave": "full", "carol": "sparse"}


def test_background_boxes_become_one_box_annotation(counting: Project, tmp_path: Path) -> None:
    ids = _ids(counting)
    data = {
        "images": [
            {
                "image": "plate1/b.png",
                "status": "full",
                "points": [[1, 1]],
                "background": [[10, 0, 10, 10], [0, 5, 4, 5]],
            },
            # Background only: no points row is stored for it.
            {"image": "plate2/a.png", "background": [[0, 0, 8, 8]]},
        ]
    }
    path = _write(tmp_path / "bg.json", json.dumps(data))
    report = import_points(counting, path, annotator="eve")
    assert report.added == 3
    kinds = sorted((row.kind, row.image_id) for row in _rows(counting))
    assert kinds == sorted(
        [
            ("points", ids["plate1/b.png"]),
            ("box", ids["plate1/b.png"]),
            ("box", ids["plate2/a.png"]),
        ]
    )
    box = next(r for r in _rows(counting) if r.kind == "box" and r.image_id == ids["plate1/b.png"])
    assert box.external_id is not None
    assert box.external_id.startswith(f"background:i{ids['plate1/b.png']}:eve@")
    assert box.payload["boxes"][0] == {
        "x": 10.0,
        "y": 0.0,
        "width": 10.0,
        "height": 10.0,
        "rotation": 0.0,
        "label": "background",
        "id": "b0",
    }
    assert import_points(counting, path, annotator="eve").added == 0


def _refused(project: Project, path: Path, error: type[Exception], message: str) -> None:
    before = len(_rows(project))
    with pytest.raises(error, match=message):
        import_points(project, path)
    assert len(_rows(project)) == before


def test_unknown_and_ambiguous_images_are_refused(counting: Project, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.csv",
        "image,x,y\nplate1/b.png,1,1\nnope.png,1,1\n999,1,1\na.png,1,1\n",
    )
    _refused(
        counting,
        path,
        NotFoundError,
        r"2 image reference\(s\) match no catalog image: 'nope\.png', '999'; "
        r"1 match several images: 'a\.png' \(2 images: .*plate1/a\.png, .*plate2/a\.png\)"
        r".*plate1/a\.png rather than a\.png",
    )


def test_full_uri_and_windows_paths_resolve(counting: Project, tmp_path: Path) -> None:
    with counting.catalog.reader() as session:
        uri = session.scalars(select(Image.uri).where(Image.uri.endswith("plate2/a.png"))).one()
    path = _write(
        tmp_path / "p.csv",
        f"image,x,y,annotator\n{uri},1,1,a\nplate1\\a.png,2,2,a\n",
    )
    assert import_points(counting, path).images == 2


def test_points_outside_the_image_are_refused(counting: Project, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.csv",
        "image,x,y\nplate1/b.png,1,1\nplate1/b.png,20.5,3\nplate1/a.png,-1,3\n",
    )
    _refused(
        counting,
        path,
        LabelError,
        r"2 point\(s\) or box\(es\) lie outside their image: plate1/b\.png \(20x10\): point "
        r"\(20\.5, 3\) in p\.csv rows 2-3; plate1/a\.png \(40x30\): point \(-1, 3\)",
    )
    boxes = _write(
        tmp_path / "b.json",
        json.dumps([{"image": "plate1/b.png", "status": "empty", "background": [[15, 0, 10, 5]]}]),
    )
    _refused(counting, boxes, LabelError, r"background box \[15, 0, 10, 5\]")


def test_bad_statuses_are_refused(counting: Project, tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", "image,x,y,status\nplate1/b.png,1,1,complete\n")
    _refused(counting, bad, SourceError, "unknown status 'complete'")
    with pytest.raises(SourceError, match="--status: unknown status 'most'"):
        import_points(
            counting, _write(tmp_path / "ok.csv", "image,x,y\nplate1/b.png,1,1\n"), status="most"
        )
    empty_with_points = _write(tmp_path / "e.csv", "image,x,y,status\nplate1/b.png,1,1,empty\n")
    _refused(counting, empty_with_points, SourceError, "status empty but 1 point")
    nothing = _write(tmp_path / "n.csv", "image,x,y\nplate1/b.png,1,1\nplate1/a.png,,\n")
    _refused(counting, nothing, SourceError, "plate1/a.png' has no points and no status.*empty")
    assert _rows(counting) == []


def test_the_same_image_twice_for_one_annotator(counting: Project, tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", "image,x,y\nplate1/b.png,1,1\nb.png,2,2\n")
    _refused(counting, path, SourceError, "also given for annotator 'import'.*merge them")


def test_labels_are_checked_against_the_schema(tmp_path: Path, settings: Settings) -> None:
    with count_project(tmp_path, settings, ["cell", "debris"]) as project:
        unknown = _write(
            tmp_path / "u.csv", "image,x,y,label\nplate1/b.png,1,1,cell\nplate1/b.png,2,2,dust\n"
        )
        _refused(project, unknown, LabelError, r"'dust' \(u\.csv rows 2-3\).*: cell, debris")
        unlabelled = _write(tmp_path / "n.csv", "image,x,y\nplate1/b.png,1,1\n")
        _refused(project, unlabelled, LabelError, "no label.*several labels.*--label")
        with pytest.raises(LabelError, match=r"default label .dust. \(--label\) is not in"):
            import_points(project, unlabelled, label="dust")
        assert _rows(project) == []
        import_points(project, unlabelled, label="debris")
        assert [p["label"] for p in _rows(project)[0].payload["points"]] == ["debris"]


def test_a_project_without_classes(tmp_path: Path, settings: Settings) -> None:
    path = _write(tmp_path / "p.csv", "image,x,y\na.png,1,1\n")
    with (
        Project.init(tmp_path / "p", task="count", settings=settings) as project,
        pytest.raises(ConfigError, match="no classes"),
    ):
        import_points(project, path)
