"""Abundance per class per group against a real catalog: what counts, and how it is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from conftest import make_image_folder
from lensloop.catalog.models import Image, ModelAlias, ModelVersion, Prediction, Sample
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.reports.abundance import (
    CSV_COLUMNS,
    NO_GROUP,
    UNCLASSIFIED,
    AbundanceTable,
    ModelInfo,
    abundance_table,
    default_csv_path,
    group_sort_key,
    write_abundance,
)
from lensloop.train.registry import chosen_classifier, trained_depth

COPEPOD = "Animalia/Copepoda"
CLADOCERA = "Animalia/Cladocera"
DIATOM = "Chromista/Diatom"


def _ids(project: Project) -> dict[str, int]:
    """``{"<folder>/<file stem>": image_id}``, e.g. ``"Copepoda/img_0000"``."""
    with project.catalog.reader() as session:
        rows = session.execute(select(Image.id, Image.uri))
        return {"/".join(uri.rsplit("/", 2)[-2:]).removesuffix(".png"): i for i, uri in rows}


def _add_model(project: Project, version: int, aliases: tuple[str, ...], **config: object) -> int:
    with project.catalog.transaction() as session:
        row = ModelVersion(
            version=version,
            task="classify",
            artefact_path=f"models/v{version}",
            metrics={},
            config=dict(config),
        )
        session.add(row)
        session.flush()
        for alias in aliases:
            session.merge(ModelAlias(alias=alias, model_version_id=row.id))
        return row.id


def _predict(project: Project, version_id: int, classes: dict[int, str]) -> None:
    with project.catalog.transaction() as session:
        session.add_all(
            Prediction(
                image_id=image_id,
                model_version_id=version_id,
                payload={"task": "classify", "class": name},
                probabilities={name: 0.9},
                uncertainty=0.2,
            )
            for image_id, name in classes.items()
        )


@pytest.fixture
def plankton(project: Project, tmp_path: Path) -> Project:
    """4 labelled and 5 unlabelled images in samples S1, S2, S10, with a station field.

    =========================  ======  =======  ===================  ==================
    image                      sample  station  confirmed            v1 (champion)
    =========================  ======  =======  ===================  ==================
    Copepoda/img_0000          S1      A        Animalia/Copepoda    Chromista/Diatom
    Copepoda/img_0001          S1      A        Animalia/Copepoda    -
    Cladocera/img_0000         S2      B        Animalia/Cladocera   -
    Diatom/img_0000            S2      -        Chromista/Diatom     -
    x/img_0000                 S1      A        -                    Animalia/Copepoda
    x/img_0001                 S2      B        -                    Chromista/Diatom
    x/img_0002                 S2      5.0      -                    Chromista/Diatom
    x/img_0003                 S10     B        -                    -
    x/img_0004                 -       -        -                    -
    =========================  ======  =======  ===================  ==================

    Version 2 (latest) predicts Animalia/Cladocera for every unlabelled image.
    """
    make_image_folder(tmp_path / "labelled", {COPEPOD: 2, CLADOCERA: 1, DIATOM: 1}, seed=1)
    make_image_folder(tmp_path / "unlabelled", {"x": 5}, seed=2)
    ingest(project, [tmp_path / "labelled"], options=IngestOptions(labels_from_folders=True))
    ingest(project, [tmp_path / "unlabelled"])
    ids = _ids(project)
    layout = {
        "Copepoda/img_0000": ("S1", {"station": "A"}),
        "Copepoda/img_0001": ("S1", {"station": "A"}),
        "Cladocera/img_0000": ("S2", {"station": "B"}),
        "Diatom/img_0000": ("S2", {"other": 1}),
        "x/img_0000": ("S1", {"station": "A"}),
        "x/img_0001": ("S2", {"station": "B"}),
        "x/img_0002": ("S2", {"station": 5.0}),
        "x/img_0003": ("S10", {"station": "B", "cast": 3}),
        "x/img_0004": (None, {"station": ""}),
    }
    with project.catalog.transaction() as session:
        samples = {name: Sample(name=name) for name in ("S1", "S2", "S10")}
        session.add_all(samples.values())
        session.flush()
        for key, (sample, meta) in layout.items():
            image = session.get(Image, ids[key])
            assert image is not None
            image.sample_id = samples[sample].id if sample else None
            image.meta = meta
    v1 = _add_model(project, 1, ("champion",))
    v2 = _add_model(project, 2, ("latest",))
    _predict(
        project,
        v1,
        {
            ids["Copepoda/img_0000"]: DIATOM,  # overridden by its confirmed label
            ids["x/img_0000"]: COPEPOD,
            ids["x/img_0001"]: DIATOM,
            ids["x/img_0002"]: DIATOM,
        },
    )
    _predict(project, v2, {ids[f"x/img_000{k}"]: CLADOCERA for k in range(5)})
    return project


def _counts(table: AbundanceTable) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r.group, r.class_name): (r.confirmed, r.predicted) for r in table.rows}


def test_by_sample_confirmed_overrides_predicted(plankton: Project) -> None:
    table = abundance_table(plankton, "sample", model=_model(plankton))
    assert table.model_version == 1  # the champion, not the latest
    assert table.depth is None
    assert table.groups == ("S1", "S2", "S10", NO_GROUP)  # natural order, (none) last
    assert table.classes == (CLADOCERA, COPEPOD, DIATOM)
    assert _counts(table) == {
        ("S1", COPEPOD): (2, 1),
        ("S2", CLADOCERA): (1, 0),
        ("S2", DIATOM): (1, 2),
    }
    assert table.unclassified == {"S1": 0, "S2": 0, "S10": 1, NO_GROUP: 1}
    assert table.total("S2", DIATOM) == 3
    assert table.total("S10", DIATOM) == 0
    assert [(r.group, r.class_name) for r in table.rows] == [
        ("S1", COPEPOD),
        ("S2", CLADOCERA),
        ("S2", DIATOM),
    ]


def _model(project: Project, ref: str | int | None = None) -> ModelInfo | None:
    chosen = chosen_classifier(project, ref)
    return None if chosen is None else ModelInfo(chosen.version, trained_depth(chosen))


def test_by_metadata_field_with_none_group(plankton: Project) -> None:
    table = abundance_table(plankton, "station", model=_model(plankton))
    assert table.groups == ("5", "A", "B", NO_GROUP)  # 5.0 reads "5"; "" is no value
    assert _counts(table) == {
        ("5", DIATOM): (0, 1),
        ("A", COPEPOD): (2, 1),
        ("B", CLADOCERA): (1, 0),
        ("B", DIATOM): (0, 1),
        (NO_GROUP, DIATOM): (1, 0),
    }
    assert table.unclassified == {"5": 0, "A": 0, "B": 1, NO_GROUP: 1}


def test_model_choice_and_depth_roll_up(plankton: Project) -> None:
    latest = abundance_table(plankton, "sample", model=_model(plankton, "latest"), depth=1)
    assert latest.model_version == 2
    assert latest.depth == 1
    assert latest.classes == ("Animalia", "Chromista")
    assert _counts(latest) == {
        ("S1", "Animalia"): (2, 1),
        ("S2", "Animalia"): (1, 2),
        ("S2", "Chromista"): (1, 0),
        ("S10", "Animalia"): (0, 1),
        (NO_GROUP, "Animalia"): (0, 1),
    }
    assert sum(latest.unclassified.values()) == 0
    by_number = abundance_table(plankton, "sample", model=_model(plankton, 2))
    assert by_number.model_version == 2
    with pytest.raises(NotFoundError, match="no model 'nope'"):
        abundance_table(plankton, "sample", model=_model(plankton, "nope"))


def test_depth_defaults_to_the_models_then_the_projects(plankton: Project) -> None:
    plankton.config.labels.depth = 1
    # v1 was trained without a depth
    from_project = abundance_table(plankton, "sample", model=_model(plankton))
    assert from_project.depth == 1
    assert from_project.classes == ("Animalia", "Chromista")
    _add_model(plankton, 3, ("champion",), depth=2)
    from_model = abundance_table(plankton, "sample", model=_model(plankton))
    assert from_model.model_version == 3
    assert from_model.depth == 2
    assert from_model.classes == (CLADOCERA, COPEPOD, DIATOM)
    assert sum(from_model.unclassified.values()) == 5  # v3 has no predictions yet
    assert abundance_table(plankton, "sample", model=_model(plankton), depth=1).depth == 1


def test_without_a_model_confirmed_labels_only(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "labelled", {"a": 2, "b": 1}, seed=3)
    make_image_folder(tmp_path / "new", {"x": 1}, seed=4)
    ingest(project, [tmp_path / "labelled"], options=IngestOptions(labels_from_folders=True))
    ingest(project, [tmp_path / "new"])
    with project.catalog.transaction() as session:
        for image in session.scalars(select(Image)):
            image.meta = {"flask": "f1"}
    table = abundance_table(project, "flask", model=_model(project))
    assert table.model_version is None
    assert _counts(table) == {("f1", "a"): (2, 0), ("f1", "b"): (1, 0)}
    assert table.unclassified == {"f1": 1}


def test_unknown_field_lists_the_metadata_keys(plankton: Project) -> None:
    with pytest.raises(ConfigError, match=r"no image has a value for 'statoin'.*cast, other"):
        abundance_table(plankton, "statoin", model=_model(plankton))
    with pytest.raises(ConfigError, match="metadata field"):
        abundance_table(plankton, " station", model=_model(plankton))


def test_no_samples_is_an_error(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "labelled", {"a": 1}, seed=5)
    ingest(project, [tmp_path / "labelled"], options=IngestOptions(labels_from_folders=True))
    with pytest.raises(ConfigError, match=r"no image belongs to a sample.*keys present: none"):
        abundance_table(project, "sample", model=_model(project))


def test_nothing_to_count_says_label_or_predict(project: Project, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "new", {"x": 2}, seed=6)
    ingest(project, [tmp_path / "new"])
    with project.catalog.transaction() as session:
        for image in session.scalars(select(Image)):
            image.meta = {"station": "A"}
    with pytest.raises(ConfigError, match=r"nothing to count.*lensloop train"):
        abundance_table(project, "station", model=_model(project))
    _add_model(project, 1, ("latest",))
    with pytest.raises(ConfigError, match=r"nothing to count.*lensloop predict"):
        abundance_table(project, "station", model=_model(project))


def test_a_model_of_another_task_is_refused(plankton: Project) -> None:
    with plankton.catalog.transaction() as session:
        session.add(ModelVersion(version=3, task="count", artefact_path="models/v3"))
    with pytest.raises(ConfigError, match="'count' model"):
        abundance_table(plankton, "sample", model=_model(plankton, 3))


def test_write_abundance_csv_png_and_json(plankton: Project) -> None:
    table = abundance_table(plankton, "sample", model=_model(plankton))
    target = default_csv_path(plankton, "sample")
    assert target == plankton.root / "reports" / "abundance-sample.csv"
    written, png = write_abundance(table, target)
    assert written == target
    assert png == target.with_suffix(".png")
    with written.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1:] == [
        ["S1", COPEPOD, "2", "1", "3"],
        ["S2", CLADOCERA, "1", "0", "1"],
        ["S2", DIATOM, "1", "2", "3"],
        ["S10", UNCLASSIFIED, "0", "0", "1"],
        [NO_GROUP, UNCLASSIFIED, "0", "0", "1"],
    ]
    assert png is not None
    with PILImage.open(png) as image:
        assert image.format == "PNG"
        assert image.width > 300
    assert sorted(p.name for p in written.parent.iterdir()) == [
        "abundance-sample.csv",
        "abundance-sample.png",
    ]  # no temporary files left behind
    document = json.loads(json.dumps(table.to_dict()))
    assert document == {
        "by": "sample",
        "model_version": 1,
        "depth": None,
        "groups": {
            "S1": {COPEPOD: {"confirmed": 2, "predicted": 1, "total": 3}},
            "S2": {
                CLADOCERA: {"confirmed": 1, "predicted": 0, "total": 1},
                DIATOM: {"confirmed": 1, "predicted": 2, "total": 3},
            },
            "S10": {},
            NO_GROUP: {},
        },
        "unclassified": {"S1": 0, "S2": 0, "S10": 1, NO_GROUP: 1},
    }


def test_write_abundance_options(plankton: Project, tmp_path: Path) -> None:
    table = abundance_table(plankton, "station", model=_model(plankton))
    written, png = write_abundance(table, tmp_path / "new" / "dir" / "a.csv", plot=False)
    assert written.is_file()
    assert png is None
    assert not written.with_suffix(".png").exists()
    with pytest.raises(ConfigError, match=r"must be a \.csv file"):
        write_abundance(table, tmp_path / "a.txt")


def test_many_groups_and_classes_draw(tmp_path: Path) -> None:
    from lensloop.reports.abundance import AbundanceRow

    groups = tuple(f"station {k}" for k in range(100))
    classes = tuple(f"Class{c:02d}" for c in range(25))
    rows = tuple(
        AbundanceRow(group=g, class_name=c, confirmed=k % 3, predicted=1)
        for k, g in enumerate(groups)
        for c in classes
    )
    table = AbundanceTable(
        by="station",
        model_version=None,
        depth=2,
        groups=groups,
        classes=classes,
        rows=rows,
        unclassified=dict.fromkeys(groups, 1),
    )
    _, png = write_abundance(table, tmp_path / "many.csv")
    assert png is not None
    with PILImage.open(png) as image:
        assert image.width > 2000


def test_group_sort_key_and_default_path(plankton: Project) -> None:
    names = ["st10", NO_GROUP, "st2", "B", "a", "st1"]
    assert sorted(names, key=group_sort_key) == ["a", "B", "st1", "st2", "st10", NO_GROUP]
    assert default_csv_path(plankton, "depth (m)").name == "abundance-depth_m.csv"


def test_deeper_than_the_model_is_logged(
    plankton: Project, caplog: pytest.LogCaptureFixture
) -> None:
    _add_model(plankton, 3, ("champion",), depth=1)
    with caplog.at_level("WARNING", logger="lensloop.reports.abundance"):
        table = abundance_table(plankton, "sample", model=_model(plankton), depth=2)
    assert table.depth == 2
    assert "predicts classes at depth 1" in caplog.text
