"""Selection rounds against a real catalog: what is chosen, recorded and excluded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from conftest import make_image_folder
from fakes import MeanColourBackbone
from lensloop.catalog.models import Image, SelectionItem, SelectionRound
from lensloop.embed.engine import embed_project
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.select.balance import parse_balance
from lensloop.select.rounds import RoundResult, select_round
from lensloop.select.strategy import parse_strategy
from lensloop.settings import Settings

BACKBONE = MeanColourBackbone.name


def _select(project: Project, n: int, text: str = "kcenter", **kwargs: Any) -> RoundResult:
    return select_round(project, n, text, parse_strategy(text), backbone=BACKBONE, **kwargs)


@pytest.fixture
def labelled_and_pool(project: Project, tmp_path: Path) -> Project:
    """8 labelled images of classes a and b, and 12 unlabelled ones, all embedded."""
    make_image_folder(tmp_path / "labelled", {"a": 4, "b": 4}, seed=1)
    make_image_folder(tmp_path / "unlabelled", {"x": 12}, seed=2)
    ingest(project, [tmp_path / "labelled"], options=IngestOptions(labels_from_folders=True))
    ingest(project, [tmp_path / "unlabelled"])
    embed_project(project, MeanColourBackbone(), workers=0)
    return project


def _unlabelled_ids(project: Project) -> set[int]:
    with project.catalog.reader() as session:
        return set(session.scalars(select(Image.id).where(Image.uri.contains("unlabelled"))))


def test_round_is_recorded_in_order_and_never_repeats(labelled_and_pool: Project) -> None:
    project = labelled_and_pool
    pool = _unlabelled_ids(project)
    first = _select(project, 5)
    assert first.round_id == 1
    assert [i.rank for i in first.images] == [1, 2, 3, 4, 5]
    chosen = [i.image_id for i in first.images]
    assert set(chosen) <= pool  # labelled images are never chosen
    with project.catalog.reader() as session:
        row = session.get(SelectionRound, first.round_id)
        assert row is not None
        assert row.strategy == "kcenter"
        assert row.config["n"] == 5
        assert row.config["backbone"] == BACKBONE
        items = session.execute(
            select(SelectionItem.image_id)
            .where(SelectionItem.round_id == first.round_id)
            .order_by(SelectionItem.rank)
        ).scalars()
        assert list(items) == chosen
    second = _select(project, 7)  # exactly what is left
    assert second.round_id == 2
    assert set(i.image_id for i in second.images) == pool - set(chosen)
    with pytest.raises(ConfigError, match="nothing left to select"):
        _select(project, 1)


def test_dry_run_records_nothing_and_repeats(labelled_and_pool: Project) -> None:
    project = labelled_and_pool
    dry = _select(project, 3, record=False)
    assert dry.round_id == 0
    with project.catalog.reader() as session:
        assert session.scalar(select(SelectionRound.id)) is None
    again = _select(project, 3, record=False)
    assert [i.image_id for i in again.images] == [i.image_id for i in dry.images]


def test_n_larger_than_pool_says_how_many_remain(labelled_and_pool: Project) -> None:
    with pytest.raises(ConfigError, match=r"only 12 images can be selected.*-n 12"):
        _select(labelled_and_pool, 13)


def test_auto_uses_uncertainty_once_each_class_has_three_labels(
    labelled_and_pool: Project,
) -> None:
    result = _select(labelled_and_pool, 4, "auto")
    assert result.details["mode"] == "uncertainty x diversity"
    assert result.resolved.startswith("kcenter+margin")
    assert result.details["labels_per_class_min"] == 4


def test_auto_cold_start_without_labels(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "unlabelled", {"x": 10}, seed=3)
    ingest(project, [tmp_path / "unlabelled"])
    embed_project(project, MeanColourBackbone(), workers=0)
    result = _select(project, 3, "auto")
    assert result.details["mode"] == "cold start"
    assert result.resolved == "typical"
    assert len({i.image_id for i in result.images}) == 3
    with pytest.raises(ConfigError, match="at least 2 classes"):
        _select(project, 3, "margin")


def test_no_embeddings_yet_says_to_embed(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "unlabelled", {"x": 3}, seed=4)
    ingest(project, [tmp_path / "unlabelled"])
    with pytest.raises(NotFoundError, match="lensloop embed"):
        _select(project, 1)


def test_images_without_vectors_are_reported(labelled_and_pool: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "late", {"y": 2}, seed=5)
    ingest(labelled_and_pool, [tmp_path / "late"])
    result = _select(labelled_and_pool, 2)
    assert result.details["not_embedded"] == 2


def _set_site(project: Project, sites: list[str | None]) -> list[int]:
    ids = sorted(_unlabelled_ids(project))
    with project.catalog.transaction() as session:
        for image_id, site in zip(ids, sites, strict=True):
            image = session.get(Image, image_id)
            assert image is not None
            image.meta = {"site": site} if site is not None else {"depth_m": 3}
    return ids


def test_balance_over_metadata_meets_the_quota(labelled_and_pool: Project) -> None:
    project = labelled_and_pool
    ids = _set_site(project, ["north"] * 8 + ["south"] * 3 + [None])
    site = dict(zip(ids, ["north"] * 8 + ["south"] * 3 + [None], strict=True))
    result = _select(project, 4, balance=parse_balance("site=north:0.25,south:0.75"))
    picked = [site[i.image_id] for i in result.images]
    assert sorted(picked, key=str) == ["north", "south", "south", "south"]
    assert [i.group for i in result.images] == picked
    assert result.details["quotas"] == {"north": 1, "south": 3}


def test_balance_errors_name_the_key_or_value(labelled_and_pool: Project) -> None:
    project = labelled_and_pool
    _set_site(project, ["north"] * 12)
    with pytest.raises(ConfigError, match=r"no image has a value for the balance key 'colour'"):
        _select(project, 2, balance=parse_balance("colour=red:1"))
    with pytest.raises(ConfigError, match=r"no image has site='east'.*'north'"):
        _select(project, 2, balance=parse_balance("site=east:0.5,north:0.5"))


def test_balance_on_predicted_classes(labelled_and_pool: Project) -> None:
    result = _select(labelled_and_pool, 4, "random", balance=parse_balance("predicted"))
    assert {i.group for i in result.images} <= {"a", "b"}
    assert sum(result.details["quotas"].values()) == 4
    assert len(np.unique([i.image_id for i in result.images])) == 4


def test_rounds_on_each_database(db_url: str, tmp_path: Path, settings: Settings) -> None:
    with Project.init(tmp_path / "db", db_url=db_url, settings=settings) as project:
        make_image_folder(tmp_path / "labelled", {"a": 3, "b": 3}, seed=11)
        make_image_folder(tmp_path / "unlabelled", {"x": 6}, seed=12)
        ingest(project, [tmp_path / "labelled"], options=IngestOptions(labels_from_folders=True))
        ingest(project, [tmp_path / "unlabelled"])
        embed_project(project, MeanColourBackbone(), workers=0)
        long_text = "kcenter=0.5+" + "+".join(["margin=0.25"] * 8)  # longer than the column
        first = _select(project, 3, long_text)
        second = _select(project, 3, "auto")
        assert second.details["mode"] == "uncertainty x diversity"
        with project.catalog.reader() as session:
            rounds = session.scalars(select(SelectionRound).order_by(SelectionRound.id)).all()
            assert [r.config["strategy"] for r in rounds] == [long_text, "auto"]
            assert len(rounds[0].strategy) == 64
            items = session.scalars(select(SelectionItem.image_id)).all()
        assert sorted(items) == sorted(_unlabelled_ids(project))
        assert {i.image_id for i in first.images}.isdisjoint(i.image_id for i in second.images)
