from __future__ import annotations

import random

import sqlalchemy as sa

from lensloop.catalog import Catalog, NewImage
from lensloop.catalog.images import (
    add_images,
    assign_splits,
    clear_failures,
    lookup_sha256,
    lookup_uris,
    record_failures,
)
from lensloop.catalog.models import Image, IngestFailure, Sample


def _images(n: int, *, sample: str | None = None) -> list[NewImage]:
    return [
        NewImage(
            uri=f"/d/{i}.png",
            sha256=f"{i:064x}",
            format="png",
            width=8,
            height=8,
            channels=3,
            dtype="uint8",
            bit_depth=8,
            file_size=100,
            sample=sample,
        )
        for i in range(n)
    ]


def test_lookups_find_only_known_rows(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        ids = add_images(session, _images(1200))  # more than one IN-chunk
    with catalog.reader() as session:
        by_sha = lookup_sha256(session, [f"{i:064x}" for i in range(1100, 1300)])
        by_uri = lookup_uris(session, ["/d/5.png", "/d/nope.png"])
    assert sorted(by_sha) == [f"{i:064x}" for i in range(1100, 1200)]
    assert by_sha[f"{1150:064x}"] == ids[f"{1150:064x}"]
    assert by_uri == {"/d/5.png": f"{5:064x}"}
    catalog.close()


def test_samples_are_created_once(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        add_images(session, _images(3, sample="cruise-1/stn-4"))
    with catalog.transaction() as session:
        add_images(
            session,
            [
                NewImage(**{**img.__dict__, "uri": f"/e/{k}", "sha256": f"{k + 99:064x}"})
                for k, img in enumerate(_images(2, sample="cruise-1/stn-4"))
            ],
        )
    with catalog.reader() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Sample)) == 1
        sample_ids = set(session.scalars(sa.select(Image.sample_id)))
    assert len(sample_ids) == 1
    catalog.close()


def test_failures_are_upserted_and_cleared(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        record_failures(session, [("/x/a.png", "empty file"), ("/x/b.png", "truncated")])
    with catalog.transaction() as session:
        record_failures(session, [("/x/a.png", "still empty")])
    with catalog.reader() as session:
        rows = {f.uri: (f.reason, f.attempts) for f in session.scalars(sa.select(IngestFailure))}
    assert rows == {"/x/a.png": ("still empty", 2), "/x/b.png": ("truncated", 1)}
    with catalog.transaction() as session:
        clear_failures(session, ["/x/a.png"])
    with catalog.reader() as session:
        assert list(session.scalars(sa.select(IngestFailure.uri))) == ["/x/b.png"]
    catalog.close()


def _split_of(catalog: Catalog) -> dict[str, str | None]:
    with catalog.reader() as session:
        return {sha: split for sha, split in session.execute(sa.select(Image.sha256, Image.split))}


def test_splits_are_stratified_and_independent_of_batching(db_url: str) -> None:
    images = _images(100)
    labels_by_sha = {img.sha256: ("a" if i < 60 else "b") for i, img in enumerate(images)}
    labels_by_sha.pop(images[99].sha256)  # one unlabelled image

    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        ids = add_images(session, images)
        labels = {ids[sha]: cls for sha, cls in labels_by_sha.items()}
        counts = assign_splits(session, labels=labels, fractions={"val": 0.2, "test": 0.1}, seed=3)
    assert counts == {"test": 6 + 4, "val": 12 + 8, "train": 42 + 27, "pool": 1}
    first = _split_of(catalog)
    catalog.close()

    # Same images in another order and in two batches with a split in between: same result.
    other_url = db_url.replace("catalog.sqlite", "other.sqlite") if "sqlite" in db_url else None
    if other_url is None:
        return
    other = Catalog.create(other_url)
    shuffled = images[:]
    random.Random(1).shuffle(shuffled)
    for half in (shuffled[:50], shuffled[50:]):
        with other.transaction() as session:
            add_images(session, half)
    with other.transaction() as session:
        ids = {sha: i for sha, i in session.execute(sa.select(Image.sha256, Image.id))}
        labels = {ids[sha]: cls for sha, cls in labels_by_sha.items()}
        assign_splits(session, labels=labels, fractions={"val": 0.2, "test": 0.1}, seed=3)
    assert _split_of(other) == first
    other.close()


def test_assign_splits_leaves_assigned_images_alone(db_url: str) -> None:
    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        ids = add_images(session, _images(10))
        assign_splits(session, labels=dict.fromkeys(ids.values(), "a"), fractions=None)
    with catalog.transaction() as session:
        counts = assign_splits(session, labels={}, fractions={"val": 0.5})
    assert counts == {}
    assert set(_split_of(catalog).values()) == {"train"}
    catalog.close()


def test_metadata_text_groups_equal_values_together() -> None:
    from lensloop.catalog.images import metadata_text

    assert metadata_text(5.0) == "5"
    assert metadata_text(5) == "5"
    assert metadata_text(2.5) == "2.5"
    assert metadata_text("Fe") == "Fe"
    assert metadata_text("  ") is None
    assert metadata_text(None) is None
