from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from lensloop.errors import SourceError
from lensloop.sources import load_metadata_csv


def _csv(tmp_path: Path, text: str, name: str = "meta.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_types_are_inferred_and_columns_recognised(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "filename,Latitude,LON,Date Time,depth_m,sample,count,ratio,flag,note\n"
        "a.png,-33.5,151.25,2024-05-17T13:45:00,12.5,stn-1,3,0.5,true,ok\n"
        "b,50.1,-4.2,2024-05-18 08:00:00,,stn-2,4,1.5,false,\n",
    )
    table = load_metadata_csv(path, key="filename")
    a = table.lookup("/data/x/a.png")
    b = table.lookup("/data/b.tif")  # matched on the stem
    assert a is not None
    assert b is not None
    assert (a.lat, a.lon, a.depth, a.sample) == (-33.5, 151.25, 12.5, "stn-1")
    assert a.captured_at == datetime(2024, 5, 17, 13, 45)
    assert a.extra == {"count": 3, "ratio": 0.5, "flag": True, "note": "ok"}
    assert (b.lat, b.lon, b.depth) == (50.1, -4.2, None)
    assert b.extra == {"count": 4, "ratio": 1.5, "flag": False}
    assert table.columns == {
        "lat": "Latitude",
        "lon": "LON",
        "time": "Date Time",
        "depth": "depth_m",
        "sample": "sample",
    }
    assert table.unmatched == []


def test_date_and_time_columns_are_combined(tmp_path: Path) -> None:
    path = _csv(tmp_path, "file;date;time\nx.png;2023-01-02;03:04:05\n")
    row = load_metadata_csv(path, key="file").lookup("x.png")
    assert row is not None
    assert row.captured_at == datetime(2023, 1, 2, 3, 4, 5)
    assert row.extra == {}


def test_unmatched_rows_are_reported(tmp_path: Path) -> None:
    table = load_metadata_csv(_csv(tmp_path, "filename,v\na.png,1\nb.png,2\n"))
    assert table.lookup("c.png") is None
    table.lookup("a.png")
    assert table.unmatched == ["b.png"]


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("name,v\na,1\n", "filename", r"no key column 'filename'; its columns are: name, v"),
        ("filename,v\na,1\na,2\n", "filename", r"repeats 1 value\(s\), e.g. a"),
        ("filename,lat\na,91\n", "filename", r"'lat' must hold numbers in \[-90.0, 90.0\]; line"),
        ("filename,lon\na,east\n", "filename", r"line\(s\) 2 hold e.g. 'east'"),
        ("filename,time\na,yesterday-ish\n", "filename", "cannot be parsed"),
        ("filename,v\n,1\n", "filename", r"empty on line\(s\) 2"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        load_metadata_csv(_csv(tmp_path, text), key=key)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="metadata file not found"):
        load_metadata_csv(tmp_path / "none.csv")
