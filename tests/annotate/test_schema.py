"""The label schema and the Label Studio configs made from it."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from lensloop.annotate.schema import LabelSchema, label_config, project_schema
from lensloop.errors import ConfigError, LabelError, UnknownNameError
from lensloop.project import Project


def _controls(xml: str) -> dict[str, tuple[str, list[str]]]:
    root = ElementTree.fromstring(xml)
    assert root.tag == "View"
    image = root.find("Image")
    assert image is not None
    assert image.get("value") == "$image"
    return {
        child.get("name", ""): (child.tag, [c.get("value", "") for c in child])
        for child in root
        if child.tag != "Image"
    }


def test_classify_config_has_one_choice_per_label() -> None:
    xml = label_config(LabelSchema("classify", ("a/b", "a/c & d")))
    assert _controls(xml) == {"class": ("Choices", ["a/b", "a/c & d"])}  # escaped in XML


def test_count_config_has_keypoints_and_status() -> None:
    controls = _controls(label_config(LabelSchema("count", ("cell",))))
    assert controls["points"] == ("KeyPointLabels", ["cell"])
    assert controls["status"] == ("Choices", ["empty", "sparse", "full"])


def test_segment_config_has_brush_and_polygon_and_tools_override() -> None:
    controls = _controls(label_config(LabelSchema("segment", ("box", "rock"))))
    assert controls == {
        "mask": ("BrushLabels", ["box", "rock"]),
        "polygon": ("PolygonLabels", ["box", "rock"]),
    }
    boxes = _controls(label_config(LabelSchema("segment", ("rock",)), tools=["rectangle"]))
    assert boxes == {"box": ("RectangleLabels", ["rock"])}
    with pytest.raises(UnknownNameError, match="rectangle"):
        label_config(LabelSchema("segment", ("rock",)), tools=["lasso"])
    with pytest.raises(LabelError, match="at least one label"):
        label_config(LabelSchema("segment", ()))


def test_check_label_lists_the_schema() -> None:
    schema = LabelSchema("classify", ("diatom", "dino"))
    schema.check_label("diatom", where="task 1")
    with pytest.raises(LabelError, match=r"task 1: label 'ciliate' .*\(diatom, dino\)"):
        schema.check_label("ciliate", where="task 1")


def test_project_schema_rolls_up_to_depth_and_keeps_leaves(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p", classes=["A/x", "A/y", "B"])
    assert project_schema(project).labels == ("A/x", "A/y", "B")
    project.config.labels.depth = 1
    assert project_schema(project).labels == ("A", "B")
    empty = Project.init(tmp_path / "q")
    with pytest.raises(ConfigError, match="no classes"):
        project_schema(empty)
