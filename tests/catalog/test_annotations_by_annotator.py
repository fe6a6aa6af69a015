"""Each annotator's current annotation per image: newest version, deletions honoured."""

from __future__ import annotations

from pathlib import Path

from lensloop.catalog import Catalog, NewImage
from lensloop.catalog.annotations import (
    AnnotationRecord,
    add_annotations,
    annotations_by_annotator,
)
from lensloop.catalog.images import add_images


def _catalog(url: str, n: int) -> tuple[Catalog, list[int]]:
    catalog = Catalog.create(url)
    with catalog.transaction() as session:
        ids = add_images(
            session,
            [
                NewImage(
                    uri=f"/i/{k}.png",
                    sha256=f"{k:064x}",
                    format="png",
                    width=10,
                    height=10,
                    channels=1,
                    dtype="uint8",
                    bit_depth=8,
                    file_size=1,
                )
                for k in range(n)
            ],
        )
    return catalog, sorted(ids.values())


def _points(
    image_id: int, annotator: str, version: str, n: int, *, kind: str = "points", **payload: object
) -> AnnotationRecord:
    key = f"{kind}:i{image_id}:{annotator}"
    return AnnotationRecord(
        image_id=image_id,
        kind=kind,
        payload={"points": [{"x": float(k), "y": 1.0} for k in range(n)], **payload},
        annotator=annotator,
        origin="import",
        external_id=f"{key}@{version}",
        version_key=key,
    )


def test_newest_row_of_each_annotator_per_image(db_url: str) -> None:
    catalog, (a, b, c) = _catalog(db_url, 3)
    with catalog.transaction() as session:
        add_annotations(
            session,
            [
                _points(a, "alice", "v1", 1),
                _points(a, "bob", "v1", 2),
                _points(a, "alice", "v2", 3),  # supersedes alice's v1
                _points(b, "bob", "v1", 4),
                _points(c, "carol", "v1", 1, kind="box"),  # another kind: not listed
            ],
        )
    with catalog.reader() as session:
        found = annotations_by_annotator(session, "points")
        only_b = annotations_by_annotator(session, "points", image_ids=[b, c])
        boxes = annotations_by_annotator(session, "box")
    assert list(found) == [a, b]
    assert sorted(found[a]) == ["alice", "bob"]
    assert len(found[a]["alice"].payload["points"]) == 3
    assert len(found[a]["bob"].payload["points"]) == 2
    assert len(found[b]["bob"].payload["points"]) == 4
    assert list(only_b) == [b]
    assert list(boxes) == [c]
    catalog.close()


def test_deletions_leave_the_annotator_out(db_url: str) -> None:
    catalog, (a, b) = _catalog(db_url, 2)
    with catalog.transaction() as session:
        add_annotations(
            session,
            [
                _points(a, "alice", "v1", 1),
                _points(a, "alice", "v2", 2),
                _points(a, "bob", "v1", 5),
                _points(b, "alice", "v1", 1),
            ],
        )
        # alice deletes her own annotation of image a (supersedes v2, so v1 stays gone);
        # the only annotation of image b is deleted by a webhook under another name.
        add_annotations(
            session,
            [
                AnnotationRecord(
                    image_id=a,
                    kind="points",
                    payload={"deleted": True},
                    annotator="alice",
                    origin="import",
                    external_id=f"points:i{a}:alice@deleted",
                    version_key=f"points:i{a}:alice",
                ),
                AnnotationRecord(
                    image_id=b,
                    kind="points",
                    payload={"deleted": True},
                    annotator="labelstudio",
                    origin="import",
                    external_id=f"points:i{b}:alice@deleted",
                    version_key=f"points:i{b}:alice",
                ),
            ],
        )
    with catalog.reader() as session:
        found = annotations_by_annotator(session, "points")
    assert list(found) == [a]
    assert list(found[a]) == ["bob"]
    catalog.close()


def test_a_deletion_without_a_version_deletes_what_its_annotator_had(db_url: str) -> None:
    catalog, (a,) = _catalog(db_url, 1)
    with catalog.transaction() as session:
        add_annotations(
            session,
            [
                _points(a, "alice", "v1", 1),
                AnnotationRecord(
                    image_id=a,
                    kind="points",
                    payload={"deleted": True},
                    annotator="alice",
                    origin="ui",
                ),
            ],
        )
    with catalog.reader() as session:
        assert annotations_by_annotator(session, "points") == {}
        assert annotations_by_annotator(session, "points", image_ids=[]) == {}
    catalog.close()


def test_image_ids_are_read_in_chunks(tmp_path: Path) -> None:
    catalog, ids = _catalog(f"sqlite:///{tmp_path / 'c.sqlite'}", 1000)
    with catalog.transaction() as session:
        add_annotations(session, [_points(i, "alice", "v1", 1) for i in ids[::2]])
    with catalog.reader() as session:
        found = annotations_by_annotator(session, "points", image_ids=ids)
    assert list(found) == ids[::2]
    catalog.close()
