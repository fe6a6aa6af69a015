from __future__ import annotations

from pathlib import Path

import pytest

from lensloop.errors import SourceError, UnknownNameError
from lensloop.sources import discover_files, get_source_format, list_source_formats


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_walk_finds_images_with_their_folder_levels(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _touch(root / "Chromista" / "Haptophyta" / "b.PNG")
    _touch(root / "Chromista" / "Haptophyta" / "a.tif")
    _touch(root / "top.jpg")
    _touch(root / "notes.txt")
    _touch(root / ".DS_Store")
    _touch(root / ".hidden" / "c.png")

    found = discover_files([root])

    assert [(Path(i.uri).name, i.class_path) for i in found.items] == [
        ("a.tif", ("Chromista", "Haptophyta")),
        ("b.PNG", ("Chromista", "Haptophyta")),
        ("top.jpg", ()),
    ]
    assert [(Path(u).name, why) for u, why in found.skipped] == [
        ("notes.txt", "not an image file name (.txt)")
    ]


def test_explicit_files_are_always_tried_and_deduplicated(tmp_path: Path) -> None:
    odd = _touch(tmp_path / "scan.dat")
    image = _touch(tmp_path / "d" / "x.png")
    found = discover_files([odd, tmp_path / "d", image])
    assert [i.uri for i in found.items] == [odd.resolve().as_posix(), image.resolve().as_posix()]
    assert found.items[0].class_path == ()


def test_missing_source_is_an_error_before_anything_happens(tmp_path: Path) -> None:
    _touch(tmp_path / "ok.png")
    with pytest.raises(SourceError, match=r"source not found: .*nope"):
        discover_files([tmp_path, tmp_path / "nope"])


def test_registry_lists_valid_formats_on_unknown_name() -> None:
    assert "folder" in list_source_formats()
    with pytest.raises(UnknownNameError, match="unknown source format 'flowcamx'; valid names"):
        get_source_format("flowcamx")
