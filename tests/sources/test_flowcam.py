from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile

from lensloop.catalog.models import Image, Sample
from lensloop.errors import ConfigError, SourceError
from lensloop.imaging import decode_image, read_exif
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.settings import Settings
from lensloop.sources.base import SourceContext
from lensloop.sources.flowcam import (
    LST_TYPES,
    SliceJob,
    discover_flowcam,
    find_exports,
    parse_lst,
    parse_sample_name,
    slice_one_collage,
)
from lensloop.sources.flowcam_synthetic import (
    FlowCamTruth,
    flowcam_folder_name,
    make_flowcam_export,
)

T = TypeVar("T")
R = TypeVar("R")

LAT, LON, DAY = 50.25, -4.125, date(2024, 3, 21)
NAME = flowcam_folder_name("cruise42_station7", LAT, LON, DAY, n=2)

BOX_FIELDS = ("id|1", "collage_file|3", "image_x|1", "image_y|1", "image_w|1", "image_h|1")


def _lst(rows: str, extra: str = "length|2") -> str:
    fields = (*BOX_FIELDS, extra)
    return "017\n" + f"num-fields|{len(fields)}\n" + "\n".join(fields) + "\n" + rows


def _context(tmp_path: Path, **kwargs: Any) -> SourceContext:
    return SourceContext(
        root=tmp_path, output=(tmp_path / "out").as_posix(), cache_dir=tmp_path / "c", **kwargs
    )


def _typed(truth: FlowCamTruth, row: dict[str, str]) -> dict[str, Any]:
    return {name: LST_TYPES[code](row[name]) for name, code in truth.fields}


# -- the .lst parser ------------------------------------------------------------------------


def test_parse_lst_types_values_by_their_column() -> None:
    text = _lst("7|c1.tif|0|5|10|12|12.5\r\n\n8|c 2.tif|3|4|1|1|\n")
    table = parse_lst(text, name="x.lst")
    assert table.version == "017"
    assert table.fields[:2] == (("id", 1), ("collage_file", 3))
    assert table.rows == [
        {
            "id": 7,
            "collage_file": "c1.tif",
            "image_x": 0,
            "image_y": 5,
            "image_w": 10,
            "image_h": 12,
            "length": 12.5,
        },
        {
            "id": 8,
            "collage_file": "c 2.tif",
            "image_x": 3,
            "image_y": 4,
            "image_w": 1,
            "image_h": 1,
            "length": None,
        },
    ]
    assert table.lines == [10, 12]


def test_parse_lst_keeps_unknown_type_codes_as_text() -> None:
    table = parse_lst(_lst("1|c.tif|0|0|1|1|2024-03-21 10:00", "timestamp|5"))
    assert table.rows[0]["timestamp"] == "2024-03-21 10:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: expected the .lst format version"),
        ("id|1\nnum-fields|1\n", "line 1: expected the .lst format version"),
        ("017\nfields|7\n", "line 2: expected 'num-fields|N'"),
        ("017\nnum-fields|x\n", "line 2: expected 'num-fields|N'"),
        ("017\nnum-fields|3\nid|1\n", "declares 3 fields but the file ends after 1"),
        ("017\nnum-fields|1\nid\n", "line 3: expected a field 'name|type'"),
        ("017\nnum-fields|2\nid|1\nid|1\n", "line 4: field 'id' is declared twice"),
        (_lst("1|c.tif|0|0|4|4\n"), "line 10: the row has 6 fields but the header declares 7"),
        (_lst("1|c.tif|0|0|4|4|1|2\n"), "line 10: the row has 8 fields"),
        (_lst("1|c.tif|zero|0|4|4|1\n"), "line 10: column 'image_x' is declared int"),
        (
            "017\nnum-fields|2\nid|1\nimage_x|1\n1|2\n",
            "no column(s) collage_file, image_y, image_w, image_h",
        ),
    ],
)
def test_parse_lst_errors_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(SourceError, match=r"bad\.lst") as caught:
        parse_lst(text, name="bad.lst")
    assert message in str(caught.value)


# -- sample names ---------------------------------------------------------------------------


def test_default_sample_pattern() -> None:
    info = parse_sample_name(NAME)
    assert (info.lat, info.lon, info.day, info.n) == (LAT, LON, DAY, 2)
    assert info.captured_at == datetime(2024, 3, 21)
    assert info.meta() == {
        "sample": "cruise42_station7",
        "lat": 50.25,
        "lon": -4.125,
        "date": "2024-03-21",
        "n": 2,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("st_7_-33.5000_151.2500_01012023", (-33.5, 151.25, date(2023, 1, 1), None)),
        ("a_-0.5_-179.9_31122020_10", (-0.5, -179.9, date(2020, 12, 31), 10)),
        ("b_90_180_29022024", (90.0, 180.0, date(2024, 2, 29), None)),
    ],
)
def test_sample_names_with_signs_and_without_n(
    name: str, expected: tuple[float, float, date, int | None]
) -> None:
    info = parse_sample_name(name)
    assert (info.lat, info.lon, info.day, info.n) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_metadata_here", "does not match the sample pattern"),
        ("s_91.0_10.0_21032024", "latitude 91.0 must be in [-90, 90]"),
        ("s_10.0_-180.5_21032024", "longitude -180.5"),
        ("s_-151.25_-33.5_21032024", "look swapped"),
        ("s_50.0_-4.0_30022024", "date '30022024' is not a day written DDMMYYYY"),
        ("s_50.0_-4.0_20240321", "is not a day written DDMMYYYY"),
    ],
)
def test_bad_sample_names(name: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_sample_name(name)
    assert message in str(caught.value)


def test_custom_sample_pattern_keeps_other_groups() -> None:
    pattern = r"(?P<site>[A-Z0-9]+)-(?P<date>\d{8})-lat(?P<lat>[-\d.]+)-lon(?P<lon>[-\d.]+)"
    info = parse_sample_name("L4-21032024-lat50.25-lon-4.125", pattern)
    assert (info.lat, info.lon, info.day, info.extra) == (50.25, -4.125, DAY, {"site": "L4"})
    assert parse_sample_name("anything", "(?P<sample>.+)").lat is None
    with pytest.raises(ConfigError, match="not a regular expression"):
        parse_sample_name("x", "(?P<lat")


# -- finding exports and checking them ------------------------------------------------------


def test_sources_are_export_folders_lst_files_or_parents(tmp_path: Path) -> None:
    one = make_flowcam_export(tmp_path / "all" / NAME, n_collages=1, particles=3)
    two_name = flowcam_folder_name("other", -33.5, 151.25, DAY)
    two = make_flowcam_export(tmp_path / "all" / two_name, n_collages=1, particles=3, seed=1)
    (tmp_path / "all" / "notes").mkdir()
    # Sorted by name: cruise42... before other...
    assert find_exports([tmp_path / "all"]) == [(one.folder, one.lst), (two.folder, two.lst)]
    assert find_exports([two.lst, one.folder]) == [(two.folder, two.lst), (one.folder, one.lst)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \.lst file in .*empty"):
        find_exports([tmp_path / "empty"])
    with pytest.raises(SourceError, match="not found"):
        find_exports([tmp_path / "missing"])
    (one.folder / "copy.lst").write_bytes(one.lst.read_bytes())
    with pytest.raises(SourceError, match=r"holds 2 \.lst files"):
        find_exports([one.folder])


def _edit_lst(truth: FlowCamTruth, line: int, column: str, value: str) -> None:
    lines = truth.lst.read_text().splitlines()
    names = [name for name, _ in truth.fields]
    values = lines[line - 1].split("|")
    values[names.index(column)] = value
    lines[line - 1] = "|".join(values)
    truth.lst.write_text("\n".join(lines) + "\n")


def test_box_outside_its_collage_is_an_error(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / NAME, n_collages=1, particles=3)
    first_row = 3 + len(truth.fields)
    _edit_lst(truth, first_row + 1, "image_x", "630")
    with pytest.raises(SourceError) as caught:
        discover_flowcam([truth.folder], _context(tmp_path))
    message = str(caught.value)
    assert f"line {first_row + 1}" in message
    assert "outside its collage collage_00001.tif page 0, which is 640 x 480" in message
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_missing_collage_is_an_error(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / NAME, n_collages=2, particles=4)
    (truth.folder / "collage_00002.tif").unlink()
    with pytest.raises(SourceError, match=r"collage file 'collage_00002\.tif' is missing"):
        discover_flowcam([truth.folder], _context(tmp_path))


def test_missing_lst_and_bad_folder_name(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / "no_position_here", n_collages=1, particles=2)
    with pytest.raises(SourceError, match="does not match the sample pattern"):
        discover_flowcam([truth.folder], _context(tmp_path))
    found = discover_flowcam([truth.folder], _context(tmp_path, sample_pattern="(?P<sample>.+)"))
    assert [item.lat for item in found.items] == [None, None]
    truth.lst.unlink()
    with pytest.raises(SourceError, match=r"no \.lst file"):
        discover_flowcam([truth.folder], _context(tmp_path))


# -- slicing --------------------------------------------------------------------------------


class PicklingExecutor:
    """Sends the function and every job through pickle, as a cluster would."""

    name = "pickling"

    def __init__(self) -> None:
        self.jobs = 0

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        remote_fn = pickle.loads(pickle.dumps(fn))
        for item in items:
            self.jobs += 1
            yield pickle.loads(pickle.dumps(remote_fn(pickle.loads(pickle.dumps(item)))))

    def close(self) -> None:
        pass


def test_slicing_runs_per_collage_through_the_executor(tmp_path: Path) -> None:
    truth = make_flowcam_export(
        tmp_path / NAME, n_collages=3, particles=12, channels=3, dtype="uint16"
    )
    executor = PicklingExecutor()
    found = discover_flowcam([truth.folder], _context(tmp_path, executor=executor))
    assert executor.jobs == 3
    assert len(found.items) == 12
    for item, particle in zip(found.items, truth.particles, strict=True):
        crop = decode_image(Path(item.uri).read_bytes()).array
        assert crop.dtype == np.uint16
        np.testing.assert_array_equal(crop, particle.pixels)
        assert item.uri.endswith(f"/out/{NAME}/{particle.id}.png")


def test_uniform_page_with_boxes_is_blank_and_its_particles_skipped(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / NAME, n_collages=2, particles=6, blank_every=0)
    tifffile.imwrite(truth.folder / "collage_00001.tif", np.full((480, 640), 7, np.uint8))
    found = discover_flowcam([truth.folder], _context(tmp_path))
    assert found.counts["blank collage pages"] == 1
    assert len(found.items) == 3
    assert len(found.skipped) == 3
    assert "page 0 is blank (every pixel the same)" in found.skipped[0][1]


def test_collages_no_row_points_at_are_blank_pages(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / NAME, n_collages=2, particles=6, blank_every=0)
    before = discover_flowcam([truth.folder], _context(tmp_path)).counts["blank collage pages"]
    pages = [np.zeros((480, 640), np.uint8)] * 2
    tifffile.imwrite(truth.folder / "collage_00099.tif", np.stack(pages))
    # A binary mask and a calibration image are not collages; a damaged file is passed over.
    tifffile.imwrite(truth.folder / "collage_00001_bin.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(truth.folder / "cal_image_000001.tif", np.zeros((8, 8), np.uint8))
    (truth.folder / "broken.tif").write_bytes(b"not a tiff")
    found = discover_flowcam([truth.folder], _context(tmp_path))
    assert found.counts["blank collage pages"] == before + 2
    assert len(found.items) == 6


def test_a_different_existing_crop_is_never_overwritten(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / NAME, n_collages=1, particles=3)
    taken = tmp_path / "out" / NAME / "2.png"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    found = discover_flowcam([truth.folder], _context(tmp_path))
    assert [Path(i.uri).name for i in found.items] == ["1.png", "3.png"]
    [(where, why)] = found.skipped
    assert where == f"{truth.lst}:{3 + len(truth.fields) + 1}"  # the second row
    assert why.startswith(f"a different file already exists at {taken.as_posix()}")
    assert taken.read_bytes() == b"someone else's file"
    again = discover_flowcam([truth.folder], _context(tmp_path))
    assert (again.counts["crops written"], again.counts["crops reused"]) == (0, 2)


def test_slice_job_is_picklable(tmp_path: Path) -> None:
    truth = make_flowcam_export(tmp_path / NAME, n_collages=1, particles=2)
    found = discover_flowcam([truth.folder], _context(tmp_path))
    job = SliceJob(
        collage=(truth.folder / "collage_00001.tif").as_posix(),
        n_pages=1,
        particles=(),
        folder=(tmp_path / "o").as_posix(),
        exif=read_exif(Path(found.items[0].uri).read_bytes()),
    )
    assert pickle.loads(pickle.dumps(job)) == job
    assert slice_one_collage(job).blank_pages == 1


# -- the whole ingest -----------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_2000_particles(tmp_path: Path, settings: Settings) -> None:
    truth = make_flowcam_export(tmp_path / "data" / NAME, n_collages=20, particles=2000, seed=3)
    assert truth.blank_pages > 0
    assert any(p.page > 0 for p in truth.particles)
    options = IngestOptions(source_format="flowcam")
    with Project.init(tmp_path / "p", settings=settings) as project:
        report = ingest(project, [tmp_path / "data"], options=options)
        assert (report.added, report.failed, report.skipped, report.duplicates) == (
            2000,
            [],
            [],
            [],
        )
        assert report.counts == {
            "blank collage pages": truth.blank_pages,
            "crops written": 2000,
            "crops reused": 0,
        }
        with project.catalog.reader() as session:
            images = {Path(i.uri).stem: i for i in session.scalars(sa.select(Image))}
            samples = {s.name: (s.id, s.meta) for s in session.scalars(sa.select(Sample))}
        again = ingest(project, [tmp_path / "data"], options=options)
    assert (again.added, again.already_in_catalog, again.failed) == (0, 2000, [])
    assert again.counts["crops reused"] == 2000

    sample_id, meta = samples[NAME]
    assert meta == {
        "sample": "cruise42_station7",
        "lat": LAT,
        "lon": LON,
        "date": "2024-03-21",
        "n": 2,
        "source_format": "flowcam",
        "lst_version": "017",
        "folder": truth.folder.resolve().as_posix(),
        "particles": 2000,
        "collages": 20,
        "blank_pages": truth.blank_pages,
    }
    assert len(images) == 2000
    for particle in truth.particles:
        image = images[str(particle.id)]
        assert image.uri == (tmp_path / "p" / "images" / NAME / f"{particle.id}.png").as_posix()
        data = Path(image.uri).read_bytes()
        crop = decode_image(data).array
        assert crop.dtype == particle.pixels.dtype
        assert np.array_equal(crop, particle.pixels), particle.id
        assert (image.lat, image.lon, image.captured_at) == (LAT, LON, datetime(2024, 3, 21))
        assert image.sample_id == sample_id
        assert image.meta == {"flowcam": _typed(truth, particle.row)}
        assert (image.width, image.height) == particle.box[2:]
    exif = read_exif(Path(images["1"].uri).read_bytes())
    assert (exif.latitude, exif.longitude, exif.captured_at) == (LAT, LON, datetime(2024, 3, 21))


def test_exif_refs_are_south_and_east(tmp_path: Path) -> None:
    name = flowcam_folder_name("sydney", -33.5, 151.25, date(2023, 1, 2))
    truth = make_flowcam_export(tmp_path / name, n_collages=1, particles=2)
    found = discover_flowcam([truth.folder], _context(tmp_path))
    data = Path(found.items[0].uri).read_bytes()
    exif = read_exif(data)
    assert (exif.latitude, exif.longitude, exif.captured_at) == (
        -33.5,
        151.25,
        datetime(2023, 1, 2),
    )
    assert b"S\x00" in data  # GPSLatitudeRef
    assert b"E\x00" in data  # GPSLongitudeRef


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    from lensloop.cli import _app

    monkeypatch.setattr(_app._State, "settings", settings)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield settings
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_ingests_a_flowcam_export(tmp_path: Path, cli_settings: Settings) -> None:
    from typer.testing import CliRunner

    from lensloop.cli import app

    truth = make_flowcam_export(tmp_path / NAME, n_collages=3, particles=9)
    runner = CliRunner()
    project = tmp_path / "p"
    result = runner.invoke(app, ["init", str(project)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["ingest", str(project), str(truth.folder), "--format", "flowcam", "--workers", "0"],
        env={"COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert result.exit_code == 0, result.output
    assert "added" in result.output
    assert f"blank collage pages  {truth.blank_pages}" in " ".join(result.output.split("\n"))
    assert "crops written" in result.output
    assert len(list((project / "images" / NAME).glob("*.png"))) == 9
