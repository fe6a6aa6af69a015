"""Image search in SQL on SQLite and PostgreSQL: labels, predictions, clusters, metadata."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import insert

from lensloop.catalog import Catalog, NewImage
from lensloop.catalog.images import add_images
from lensloop.catalog.labels import add_class_annotations, ensure_class_paths
from lensloop.catalog.models import (
    ClusterMember,
    ClusterRun,
    EmbeddingSet,
    ModelAlias,
    ModelVersion,
    Prediction,
)
from lensloop.catalog.queries import UNLABELLED, ImageQuery, find_images, image_rows
from lensloop.errors import RequestError

#: image k: class, predicted class, uncertainty, cluster, station, sample
_ROWS = [
    ("algae/diatom", "algae/diatom", 0.10, 0, "A", "s1"),
    ("algae/diatom", "algae/dino", 0.80, 0, "B", "s1"),
    ("algae/dino", "algae/dino", 0.30, 1, "A", "s2"),
    ("debris", "debris", 0.05, 1, "B", "s2"),
    (None, "algae/diatom", 0.95, 0, "A", None),
    (None, "debris_big", 0.50, 1, 7, None),  # '_' must not act as a LIKE wildcard
]


@pytest.fixture
def catalog(db_url: str) -> Iterator[Catalog]:
    catalog = Catalog.create(db_url)
    with catalog.transaction() as session:
        ids = add_images(
            session,
            [
                NewImage(
                    uri=f"/i/{k}.png",
                    sha256=f"{k:064x}",
                    format="png",
                    width=8,
                    height=8,
                    channels=1,
                    dtype="uint8",
                    bit_depth=8,
                    file_size=1,
                    sample=sample,
                    meta={"station": station},
                )
                for k, (*_, station, sample) in enumerate(_ROWS)
            ],
        )
        image_id = {int(sha, 16): i for sha, i in ids.items()}
        labels = {image_id[k]: row[0] for k, row in enumerate(_ROWS) if row[0]}
        ensure_class_paths(session, [tuple(p.split("/")) for p in labels.values()])
        add_class_annotations(session, labels, annotator="a", origin="import")
        version = session.scalar(
            insert(ModelVersion)
            .values(version=1, task="classify", artefact_path="models/v1", metrics={}, config={})
            .returning(ModelVersion.id)
        )
        session.execute(insert(ModelAlias).values(alias="latest", model_version_id=version))
        session.execute(
            insert(Prediction),
            [
                {
                    "image_id": image_id[k],
                    "model_version_id": version,
                    "payload": {"class": row[1]},
                    "probabilities": {row[1]: 1 - row[2] / 2},
                    "uncertainty": row[2],
                }
                for k, row in enumerate(_ROWS)
            ],
        )
        vectors = session.scalar(
            insert(EmbeddingSet)
            .values(backbone="f", version="1", dim=2, count=6, path="e")
            .returning(EmbeddingSet.id)
        )
        run = session.scalar(
            insert(ClusterRun)
            .values(embedding_set_id=vectors, method="kmeans", params={}, n_clusters=2)
            .returning(ClusterRun.id)
        )
        session.execute(
            insert(ClusterMember),
            [
                {"run_id": run, "image_id": image_id[k], "cluster": row[3]}
                for k, row in enumerate(_ROWS)
            ],
        )
    yield catalog
    catalog.close()


def _ids(catalog: Catalog, **filters: object) -> list[int]:
    with catalog.reader() as session:
        rows, _, total = find_images(session, ImageQuery(**filters), limit=100)  # type: ignore[arg-type]
    assert total == len(rows)
    return [row.id for row in rows]


def test_filters_in_sql(catalog: Catalog) -> None:
    assert _ids(catalog, label="algae") == [1, 2, 3]  # subclasses match
    assert _ids(catalog, label="algae/diatom") == [1, 2]
    assert _ids(catalog, label=UNLABELLED) == [5, 6]
    assert _ids(catalog, predicted="debris") == [4]  # not debris_big
    assert _ids(catalog, predicted="algae/dino") == [2, 3]
    assert _ids(catalog, min_uncertainty=0.5) == [2, 5, 6]
    assert _ids(catalog, max_uncertainty=0.1) == [1, 4]
    assert _ids(catalog, cluster=1) == [3, 4, 6]
    assert _ids(catalog, sample="s2") == [3, 4]
    assert _ids(catalog, meta={"station": "A"}) == [1, 3, 5]
    assert _ids(catalog, meta={"station": "7"}) == [6]  # numbers compare as text
    assert _ids(catalog, ids=(2, 4, 99)) == [2, 4]
    assert _ids(catalog, label="algae", cluster=0, meta={"station": "B"}) == [2]


def test_rows_carry_label_prediction_and_cluster(catalog: Catalog) -> None:
    with catalog.reader() as session:
        row = image_rows(session, [2])[2]
    assert (row.label, row.predicted, row.cluster, row.sample) == (
        "algae/diatom",
        "algae/dino",
        0,
        "s1",
    )
    assert row.uncertainty == pytest.approx(0.8)
    assert row.confidence == pytest.approx(0.6)


def test_keyset_pages_by_uncertainty(catalog: Catalog) -> None:
    seen: list[int] = []
    cursor = None
    with catalog.reader() as session:
        while True:
            query = ImageQuery(order="uncertainty")
            rows, cursor, total = find_images(session, query, limit=4, cursor=cursor)
            seen += [r.id for r in rows]
            if cursor is None:
                break
        assert total == 6
        assert seen == [5, 2, 6, 3, 1, 4]
        _, first, _ = find_images(session, ImageQuery(order="uncertainty"), limit=2)
        assert first is not None
        with pytest.raises(RequestError, match="ordered by id"):
            find_images(session, ImageQuery(), cursor=first)


def test_bad_queries_are_request_errors() -> None:
    with pytest.raises(ValueError, match="split"):
        ImageQuery(split="holdout")
    with pytest.raises(ValueError, match="uncertainty"):
        ImageQuery(min_uncertainty=2.0)
