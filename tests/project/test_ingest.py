from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile
from PIL import Image as PILImage

from conftest import make_image_folder, write_png
from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import Annotation, Image, IngestFailure, LabelClass, Sample
from lensloop.errors import ConfigError, LabelError, NotFoundError, SourceError
from lensloop.project import Project, project_status
from lensloop.project.ingest import IngestOptions, ingest, parse_split
from lensloop.settings import Settings


def _rows(project: Project) -> dict[str, Image]:
    with project.catalog.reader() as session:
        return {Path(i.uri).name: i for i in session.scalars(sa.select(Image))}


def test_image_folder_with_labels(db_url: str, tmp_path: Path, settings: Settings) -> None:
    make_image_folder(tmp_path / "data", {"diatom": 3, "ciliate": 2})
    write_png(tmp_path / "data" / "loose.png", seed=999)
    with Project.init(tmp_path / "p", db_url=db_url, settings=settings) as project:
        report = ingest(
            project, [tmp_path / "data"], options=IngestOptions(labels_from_folders=True)
        )
        assert (report.discovered, report.added, report.labelled) == (6, 6, 5)
        assert report.failed == []
        status = project_status(project)
    assert status["images"] == {
        "total": 6,
        "labelled": 5,
        "unlabelled": 1,
        "failed_files": 0,
        "samples": 0,
    }
    assert status["splits"] == {"train": 5, "val": 0, "test": 0, "pool": 1, "unassigned": 0}
    assert [(c["path"], c["labelled_images"]) for c in status["labels"]["classes"]] == [
        ("ciliate", 2),
        ("diatom", 3),
    ]


def test_same_ingest_twice_adds_nothing(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data", {"a": 4})
    options = IngestOptions(labels_from_folders=True)
    first = ingest(project, [tmp_path / "data"], options=options)
    second = ingest(project, [tmp_path / "data"], options=options)
    assert (first.added, first.already_in_catalog) == (4, 0)
    assert (second.added, second.already_in_catalog, second.ok) == (0, 4, True)
    with project.catalog.reader() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Annotation)) == 4


def test_identical_content_at_two_paths_is_stored_once(project: Project, tmp_path: Path) -> None:
    original = write_png(tmp_path / "d" / "a.png", seed=1)
    (tmp_path / "d" / "copy.png").write_bytes(original.read_bytes())
    report = ingest(project, [tmp_path / "d"])
    assert report.added == 1
    assert report.duplicates == [((tmp_path / "d" / "copy.png").as_posix(), original.as_posix())]
    # A copy found in a later run is recognised by its content too.
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "again.png").write_bytes(original.read_bytes())
    later = ingest(project, [tmp_path / "e"])
    assert (later.added, later.already_in_catalog) == (0, 1)


def test_nested_taxonomy_keeps_the_whole_path(project: Project, tmp_path: Path) -> None:
    make_image_folder(
        tmp_path / "tax",
        {
            "Chromista/Haptophyta/Emiliania": 2,
            "Chromista/Haptophyta/Gephyrocapsa": 1,
            "Chromista/Ochrophyta/Chaetoceros": 3,
        },
    )
    ingest(project, [tmp_path / "tax"], options=IngestOptions(labels_from_folders=True, depth=2))
    assert project.config.labels.depth == 2
    reopened = Project.open(project.root, settings=project.settings)
    assert reopened.config.labels.depth == 2  # saved in lensloop.toml
    status = project_status(reopened)
    assert [(c["path"], c["labelled_images"]) for c in status["labels"]["classes"]] == [
        ("Chromista/Haptophyta", 3),
        ("Chromista/Ochrophyta", 3),
    ]
    with reopened.catalog.reader() as session:
        stored = set(current_class_paths(session).values())
        levels = dict(session.execute(sa.select(LabelClass.path, LabelClass.level)).all())
    assert stored == {
        "Chromista/Haptophyta/Emiliania",
        "Chromista/Haptophyta/Gephyrocapsa",
        "Chromista/Ochrophyta/Chaetoceros",
    }
    assert levels["Chromista"] == 1
    assert levels["Chromista/Ochrophyta/Chaetoceros"] == 3
    # Rolled up to another depth later, without re-ingesting.
    reopened.config.labels.depth = 3
    deeper = project_status(reopened)
    assert len(deeper["labels"]["classes"]) == 3
    reopened.close()


def _bad_files(folder: Path) -> dict[str, str]:
    """Write one of each kind of bad file; return name -> the reason's expected text."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image\n")
    good = io.BytesIO()
    PILImage.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(good, format="PNG")
    (folder / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    jpeg = io.BytesIO()
    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "garbage.tif").write_bytes(b"II*\x00" + b"\xff" * 200)
    return {
        "empty.png": "empty",
        "text.png": "",
        "truncated.png": "",
        "truncated.jpg": "",
        "garbage.tif": "",
    }


def test_bad_files_are_reported_recorded_and_never_fatal(project: Project, tmp_path: Path) -> None:
    expected = _bad_files(tmp_path / "d")
    write_png(tmp_path / "d" / "good.png", seed=5)
    report = ingest(project, [tmp_path / "d"])
    assert report.added == 1
    assert report.ok
    reasons = {Path(uri).name: reason for uri, reason in report.failed}
    assert set(reasons) == set(expected)
    for name, text in expected.items():
        assert name in reasons[name] or text in reasons[name]
        assert len(reasons[name]) > 10, f"reason for {name} is not explanatory: {reasons[name]!r}"
    with project.catalog.reader() as session:
        recorded = {Path(f.uri).name for f in session.scalars(sa.select(IngestFailure))}
    assert recorded == set(expected)
    # Fix one file and run again: it is ingested and its failure record cleared.
    write_png(tmp_path / "d" / "empty.png", seed=6)
    again = ingest(project, [tmp_path / "d"])
    assert (again.added, again.already_in_catalog, len(again.failed)) == (1, 1, 4)
    with project.catalog.reader() as session:
        recorded = {Path(f.uri).name for f in session.scalars(sa.select(IngestFailure))}
    assert "empty.png" not in recorded
    assert project_status(project)["images"]["failed_files"] == 4


def test_nothing_ingestible_is_not_ok(project: Project, tmp_path: Path) -> None:
    _bad_files(tmp_path / "bad")
    report = ingest(project, [tmp_path / "bad"])
    assert report.added == 0
    assert not report.ok


def test_metadata_csv_is_joined(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "d", {"x": 3})
    csv = tmp_path / "meta.csv"
    csv.write_text(
        "filename,lat,lon,datetime,depth,sample,salinity\n"
        "img_0000.png,-12.5,-38.25,2024-03-01T10:00:00,5,cruise7-stn1,35.1\n"
        "img_0001,50.25,-4.5,2024-03-02T11:30:00,,cruise7-stn2,34.9\n"
        "missing.png,1,1,2024-01-01T00:00:00,,,\n"
    )
    report = ingest(project, [tmp_path / "d"], options=IngestOptions(metadata=csv))
    assert report.metadata_matched == 2
    assert report.metadata_unmatched == ["missing.png"]
    rows = _rows(project)
    first = rows["img_0000.png"]
    assert (first.lat, first.lon, first.depth) == (-12.5, -38.25, 5.0)
    assert first.captured_at is not None
    assert first.captured_at.replace(tzinfo=None) == datetime(2024, 3, 1, 10, 0)
    assert first.meta == {"salinity": 35.1}
    assert rows["img_0002.png"].lat is None
    with project.catalog.reader() as session:
        assert set(session.scalars(sa.select(Sample.name))) == {"cruise7-stn1", "cruise7-stn2"}


def test_bad_metadata_stops_before_writing(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "d", {"x": 2})
    csv = tmp_path / "meta.csv"
    csv.write_text("name,lat\nimg_0000.png,1\n")
    with pytest.raises(SourceError, match="no key column 'filename'"):
        ingest(project, [tmp_path / "d"], options=IngestOptions(metadata=csv))
    assert project.catalog.image_count() == 0


def test_exif_gps_and_time_are_read(project: Project, tmp_path: Path) -> None:
    exif = PILImage.Exif()
    gps = {1: "S", 2: (33.0, 51.0, 54.5148), 3: "W", 4: (70.0, 30.0, 0.0), 0: b"\x02\x03\x00\x00"}
    exif[0x8825] = gps
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = "2023:07:14 09:08:07"
    path = tmp_path / "d" / "field.jpg"
    path.parent.mkdir()
    PILImage.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(path, exif=exif)
    ingest(project, [tmp_path / "d"])
    row = _rows(project)["field.jpg"]
    assert row.lat == pytest.approx(-(33 + 51 / 60 + 54.5148 / 3600), abs=1e-6)
    assert row.lon == pytest.approx(-70.5, abs=1e-6)
    assert row.captured_at is not None
    assert row.captured_at.replace(tzinfo=None) == datetime(2023, 7, 14, 9, 8, 7)


def test_split_is_stratified(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "d", {"a": 20, "b": 10})
    write_png(tmp_path / "d" / "unlabelled.png", seed=77)
    options = IngestOptions(labels_from_folders=True, split=parse_split("val=0.2,test=0.1"))
    report = ingest(project, [tmp_path / "d"], options=options)
    assert report.splits == {"train": 21, "val": 6, "test": 3, "pool": 1}
    with project.catalog.reader() as session:
        labels = current_class_paths(session)
        per_class: dict[tuple[str, str | None], int] = {}
        for image_id, split in session.execute(sa.select(Image.id, Image.split)):
            key = (labels.get(image_id, "-"), split)
            per_class[key] = per_class.get(key, 0) + 1
    assert per_class[("a", "val")] == 4
    assert per_class[("b", "val")] == 2
    assert per_class[("b", "test")] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("val=0.6,test=0.5", "sum to 1 or more"),
        ("train=0.5", "write val=SHARE"),
        ("val=x", "is not a number"),
        ("val=1.5", r"must be in \[0, 1\)"),
    ],
)
def test_parse_split_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_split(text)


def test_closed_schema_refuses_unknown_folders(tmp_path: Path, settings: Settings) -> None:
    make_image_folder(tmp_path / "d", {"diatom": 1, "mystery": 1})
    with Project.init(tmp_path / "p", classes=["diatom", "ciliate"], settings=settings) as p:
        with pytest.raises(LabelError, match=r"labels mystery are not classes.*diatom, ciliate"):
            ingest(p, [tmp_path / "d"], options=IngestOptions(labels_from_folders=True))
        assert p.catalog.image_count() == 0


def test_multipage_tiff_modes(tmp_path: Path, settings: Settings) -> None:
    stack = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10) * 20
    path = tmp_path / "d" / "stack.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path) as writer:
        for page in stack:
            writer.write(page, photometric="minisblack")
    expected = {"each": (3, 1), "first": (1, 1), "stack": (1, 3)}
    for mode, (count, channels) in expected.items():
        with Project.init(tmp_path / mode, settings=settings) as project:
            report = ingest(project, [path], options=IngestOptions(pages=mode))  # type: ignore[arg-type]
            assert report.added == count, mode
            rows = _rows(project)
            assert {r.channels for r in rows.values()} == {channels}
            assert {r.dtype for r in rows.values()} == {"uint16"}
            if mode == "each":
                assert sorted(rows) == [f"stack.tif#page={k}" for k in range(3)]
                assert sorted(r.page for r in rows.values()) == [0, 1, 2]


def test_16_bit_tiff_is_recorded_in_native_dtype(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "d" / "fluo.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.full((20, 30), 40_000, np.uint16))
    ingest(project, [path])
    row = _rows(project)["fluo.tif"]
    assert (row.width, row.height, row.channels, row.dtype, row.bit_depth) == (
        30,
        20,
        1,
        "uint16",
        16,
    )


def test_workers_give_the_same_result_as_in_process(tmp_path: Path, settings: Settings) -> None:
    make_image_folder(tmp_path / "d", {"a": 40, "b": 40})
    _bad_files(tmp_path / "d" / "a")
    results = []
    for workers in (0, 2):
        with Project.init(tmp_path / f"p{workers}", settings=settings) as project:
            options = IngestOptions(labels_from_folders=True, workers=workers, batch_size=16)
            report = ingest(project, [tmp_path / "d"], options=options)
            rows = _rows(project)
            with project.catalog.reader() as session:
                labels = current_class_paths(session)
            results.append(
                (
                    report.added,
                    sorted(Path(u).name for u, _ in report.failed),
                    sorted((n, r.sha256, r.width, labels.get(r.id)) for n, r in rows.items()),
                )
            )
    assert results[0][0] == 80
    assert results[0] == results[1]


def test_image_over_the_pixel_limit_is_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "d" / "big.png", seed=1, size=64)
    write_png(tmp_path / "d" / "small.png", seed=2, size=16)
    settings = Settings(cache_dir=tmp_path / "cache", max_image_pixels=1000)
    with Project.init(tmp_path / "p", settings=settings) as project:
        report = ingest(project, [tmp_path / "d"])
    assert report.added == 1
    ((uri, reason),) = report.failed
    assert uri.endswith("big.png")
    assert "4,096 pixels" in reason
    assert "LENSLOOP_MAX_IMAGE_PIXELS" in reason


def test_images_read_back_exactly_as_ingested(tmp_path: Path, settings: Settings) -> None:
    stack = (np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10) * 97) % 65535
    path = tmp_path / "d" / "stack.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path) as writer:
        for page in stack:
            writer.write(page, photometric="minisblack")
    expected = {"each": None, "first": stack[0], "stack": np.moveaxis(stack, 0, -1)}
    for mode, want in expected.items():
        with Project.init(tmp_path / mode, settings=settings) as project:
            ingest(project, [path], options=IngestOptions(pages=mode))  # type: ignore[arg-type]
            for row in _rows(project).values():
                got = project.read_image(row.id)
                assert got.dtype == np.uint16
                target = stack[row.page] if mode == "each" else want
                np.testing.assert_array_equal(got, target)


def test_thumbnails_are_made_once_and_cached(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "d" / "fluo.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, (np.arange(100 * 60, dtype=np.uint16).reshape(100, 60) * 7))
    ingest(project, [path])
    (row,) = _rows(project).values()
    thumb = project.thumbnail(row.id, size=32)
    assert thumb.is_relative_to(project.thumbnails_dir)
    with PILImage.open(thumb) as image:
        assert image.mode == "L"
        assert image.size == (19, 32)  # longest side 32, aspect kept
    first_mtime = thumb.stat().st_mtime_ns
    path.unlink()  # a cache hit must not need the original any more
    assert project.thumbnail(row.id, size=32) == thumb
    assert thumb.stat().st_mtime_ns == first_mtime
    with pytest.raises(NotFoundError, match="no image with id 999"):
        project.thumbnail(999)


def test_choose_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lensloop.project.ingest import choose_workers

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    small = [write_png(tmp_path / "s" / f"{i}.png", seed=i).as_posix() for i in range(20)]
    large = []
    for i in range(20):
        path = tmp_path / "l" / f"{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\0" * 600_000)
        large.append(path.as_posix())
    assert choose_workers(small, 3) == 3  # an explicit request wins
    assert choose_workers(small[:5], None) == 0  # too few files to start workers for
    assert choose_workers(small, None) == 0  # a short run of small files: in-process
    assert choose_workers(large, None) == 2  # large files: one process per core
    assert choose_workers(small * 13, None) == 2  # many files: one process per core
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert choose_workers(large, None) == 0


def test_changed_content_at_a_known_path_is_refused_not_overwritten(
    project: Project, tmp_path: Path
) -> None:
    path = write_png(tmp_path / "d" / "a.png", seed=1)
    write_png(tmp_path / "d" / "b.png", seed=2)
    ingest(project, [tmp_path / "d"])
    before = {name: row.sha256 for name, row in _rows(project).items()}
    write_png(path, seed=3)  # same path, new pixels
    write_png(tmp_path / "d" / "c.png", seed=4)
    report = ingest(project, [tmp_path / "d"])
    assert report.added == 1  # c.png; the run goes on
    ((uri, reason),) = report.failed
    assert uri == path.as_posix()
    assert "content changed since it was ingested" in reason
    after = _rows(project)
    assert after["a.png"].sha256 == before["a.png"]
    assert set(after) == {"a.png", "b.png", "c.png"}
