from __future__ import annotations

import pytest
import sqlalchemy as sa

from lensloop.catalog import Catalog, NewImage
from lensloop.catalog.images import add_images
from lensloop.catalog.labels import (
    add_class_annotations,
    class_counts,
    current_class_paths,
    ensure_class_paths,
    join_path,
    list_classes,
    roll_up,
)
from lensloop.catalog.models import Annotation, LabelClass
from lensloop.errors import LabelError


def _catalog_with_images(url: str, n: int) -> tuple[Catalog, list[int]]:
    catalog = Catalog.create(url)
    with catalog.transaction() as session:
        ids = add_images(
            session,
            [
                NewImage(
                    uri=f"/i/{k}",
                    sha256=f"{k:064x}",
                    format="png",
                    width=1,
                    height=1,
                    channels=1,
                    dtype="uint8",
                    bit_depth=8,
                    file_size=1,
                )
                for k in range(n)
            ],
        )
    return catalog, sorted(ids.values())


def test_class_paths_build_a_tree(db_url: str) -> None:
    catalog, _ = _catalog_with_images(db_url, 0)
    with catalog.transaction() as session:
        ids = ensure_class_paths(session, [("Chromista", "Haptophyta", "Emiliania")])
        again = ensure_class_paths(session, [("Chromista", "Haptophyta", "Gephyrocapsa")])
    assert set(ids) == {"Chromista", "Chromista/Haptophyta", "Chromista/Haptophyta/Emiliania"}
    assert again["Chromista/Haptophyta"] == ids["Chromista/Haptophyta"]
    with catalog.reader() as session:
        classes = {c.path: c for c in list_classes(session)}
        parents = {
            p: parent
            for p, parent in session.execute(sa.select(LabelClass.path, LabelClass.parent_id))
        }
    assert classes["Chromista/Haptophyta/Gephyrocapsa"].level == 3
    assert classes["Chromista/Haptophyta/Gephyrocapsa"].name == "Gephyrocapsa"
    assert parents["Chromista/Haptophyta/Gephyrocapsa"] == ids["Chromista/Haptophyta"]
    assert parents["Chromista"] is None
    catalog.close()


def test_relabelling_adds_a_row_and_never_overwrites(db_url: str) -> None:
    catalog, (first, second) = _catalog_with_images(db_url, 2)
    with catalog.transaction() as session:
        ensure_class_paths(session, [("a",), ("b",)])
        add_class_annotations(session, {first: "a", second: "a"}, annotator="ann1", origin="ui")
    with catalog.transaction() as session:
        add_class_annotations(session, {first: "b"}, annotator="ann2", origin="ui")
    with catalog.reader() as session:
        assert current_class_paths(session) == {first: "b", second: "a"}
        rows = session.execute(
            sa.select(Annotation.id, Annotation.annotator, Annotation.supersedes_id)
            .where(Annotation.image_id == first)
            .order_by(Annotation.id)
        ).all()
    assert [r.annotator for r in rows] == ["ann1", "ann2"]
    assert rows[1].supersedes_id == rows[0].id
    catalog.close()


def test_unknown_class_is_refused(db_url: str) -> None:
    catalog, (image_id,) = _catalog_with_images(db_url, 1)
    with pytest.raises(LabelError, match="not in the schema: zzz"), catalog.transaction() as s:
        add_class_annotations(s, {image_id: "zzz"}, annotator="a", origin="ui")
    catalog.close()


def test_counts_roll_up_to_any_depth(db_url: str) -> None:
    catalog, ids = _catalog_with_images(db_url, 4)
    paths = ["K/F1/g1", "K/F1/g2", "K/F2/g3", "K/F2"]
    with catalog.transaction() as session:
        ensure_class_paths(session, [p.split("/") for p in paths])
        add_class_annotations(
            session, dict(zip(ids, paths, strict=True)), annotator="a", origin="x"
        )
    with catalog.reader() as session:
        assert class_counts(session, depth=1) == {"K": 4}
        assert class_counts(session, depth=2) == {"K/F1": 2, "K/F2": 2}
        assert class_counts(session, depth=3) == {
            "K/F1/g1": 1,
            "K/F1/g2": 1,
            "K/F2/g3": 1,
            "K/F2": 1,
        }
    catalog.close()


def test_path_helpers_validate() -> None:
    assert roll_up("a/b/c", 2) == "a/b"
    assert roll_up("a", 3) == "a"
    assert roll_up("a/b", None) == "a/b"
    with pytest.raises(LabelError, match="depth must be 1 or more"):
        roll_up("a", 0)
    for bad in ([], ["a", ""], [" a"], ["a/b"]):
        with pytest.raises(LabelError):
            join_path(bad)
