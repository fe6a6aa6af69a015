"""Tasks, image URLs, and push / pull against a fake Label Studio client."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from lensloop.annotate.labelstudio.sync import pull, push
from lensloop.annotate.labelstudio.tasks import (
    ImageUrls,
    PreAnnotation,
    images_to_label,
    resolve_task_images,
)
from lensloop.catalog.annotations import read_sync_state
from lensloop.catalog.models import Annotation
from lensloop.errors import ConfigError, LabelError, NotFoundError
from lensloop.project import Project
from lsfakes import FakeClient, annotation, choice, image_ids, json_task, sized_project

SERVER = "http://127.0.0.1:8080/"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return sized_project(tmp_path)


def test_image_urls(project: Project, tmp_path: Path) -> None:
    ids = image_ids(project)
    uri = (tmp_path / "images" / "wide.png").resolve().as_posix()
    serve = ImageUrls(base_url="http://127.0.0.1:9000/")
    assert serve.url(ids["wide.png"], uri) == f"http://127.0.0.1:9000/images/{ids['wide.png']}"
    local = ImageUrls(mode="local-files", files_root=tmp_path)
    assert local.url(1, uri) == "/data/local-files/?d=images/wide.png"
    with pytest.raises(LabelError, match="not under the local-files document root"):
        ImageUrls(mode="local-files", files_root=tmp_path / "images" / "sub").url(1, uri)
    with pytest.raises(ConfigError, match="--files-root"):
        ImageUrls(mode="local-files")
    assert ImageUrls(mode="uri").url(1, "s3://bucket/a.tif") == "s3://bucket/a.tif"
    with pytest.raises(LabelError, match="local file"):
        ImageUrls(mode="uri").url(1, uri)
    with project.catalog.reader() as session:
        found = resolve_task_images(
            session,
            [
                ("a", {"image": local.url(1, uri)}),
                ("b", {"image": serve.url(ids["small.png"], "")}),
                ("c", {"image": "ignored", "lensloop_image_id": ids["wide.png"]}),
            ],
        )
    assert {k: v[0] for k, v in found.items()} == {
        "a": ids["wide.png"],
        "b": ids["small.png"],
        "c": ids["wide.png"],
    }
    assert found["a"][1].width == 200


def test_images_to_label(project: Project) -> None:
    from lensloop.annotate.labelstudio import import_annotations, parse_export
    from lensloop.catalog.models import SelectionItem, SelectionRound

    ids = image_ids(project)
    assert images_to_label(project) == sorted(ids.values())
    with project.catalog.transaction() as session:
        chosen = SelectionRound(strategy="typical", config={})
        session.add(chosen)
        session.flush()
        session.add_all(
            [
                SelectionItem(round_id=chosen.id, rank=0, image_id=ids["small.png"]),
                SelectionItem(round_id=chosen.id, rank=1, image_id=ids["wide.png"]),
            ]
        )
        round_id = chosen.id
    assert images_to_label(project, round=round_id) == [ids["small.png"], ids["wide.png"]]
    data = {"lensloop_image_id": ids["wide.png"]}
    import_annotations(
        project, parse_export([json_task(1, data, [annotation(1, [choice("cell")])])])
    )
    assert images_to_label(project) == [ids["small.png"]]  # labelled images are not sent again
    with pytest.raises(NotFoundError, match="no selection round 4"):
        images_to_label(project, round=4)


def test_push_then_push_again_updates_instead_of_duplicating(project: Project) -> None:
    client = FakeClient()
    ids = sorted(image_ids(project).values())
    first = PreAnnotation("class", {"class": "cell"}, 0.8, "lensloop-v1")
    report = push(
        project,
        client,
        server=SERVER,
        image_ids=ids,
        urls=ImageUrls(),
        preannotations={ids[0]: first},
    )
    assert report.created_project
    assert report.tasks_created == 2
    assert report.predictions == 1
    (ls_project,) = client.projects.values()
    assert ls_project["title"] == f"lensloop: {project.config.project.name}"
    assert '<Choice value="debris" />' in ls_project["label_config"]
    tasks = sorted(client.tasks.items())
    assert [t["data"]["lensloop_image_id"] for _, t in tasks] == ids
    (prediction,) = tasks[0][1]["predictions"]
    assert prediction == {
        "model_version": "lensloop-v1",
        "score": 0.8,
        "result": [
            {
                "from_name": "class",
                "to_name": "image",
                "type": "choices",
                "value": {"choices": ["cell"]},
            }
        ],
    }
    same = push(
        project,
        client,
        server=SERVER,
        image_ids=ids,
        urls=ImageUrls(),
        preannotations={ids[0]: first},
    )
    assert (same.created_project, same.tasks_created, same.tasks_updated, same.predictions) == (
        False,
        0,
        2,
        0,
    )
    newer = PreAnnotation("class", {"class": "debris"}, 0.6, "lensloop-v2")
    push(
        project,
        client,
        server=SERVER,
        image_ids=ids,
        urls=ImageUrls(),
        preannotations={ids[0]: newer},
    )
    assert len(client.tasks) == 2
    assert [p["model_version"] for p in client.tasks[tasks[0][0]]["predictions"]] == [
        "lensloop-v1",
        "lensloop-v2",
    ]


def test_pull_imports_only_what_is_new(project: Project) -> None:
    client = FakeClient()
    ids = image_ids(project)
    with pytest.raises(ConfigError, match="push first"):
        pull(project, client, server=SERVER)
    report = push(project, client, server=SERVER, image_ids=sorted(ids.values()), urls=ImageUrls())
    data = {"lensloop_image_id": ids["wide.png"], "image": "x"}
    client.exported = [json_task(1000, data, [annotation(1, [choice("cell")])])]
    assert pull(project, client, server=SERVER).added == 1
    with project.catalog.reader() as session:
        state = read_sync_state(
            session, f"labelstudio:{SERVER.rstrip('/')}:project:{report.project_id}:pull"
        )
    assert state == {"until": "2026-11-20T10:00:00+00:00"}
    client.exported.append(
        json_task(
            1001,
            {"lensloop_image_id": ids["small.png"], "image": "y"},
            [annotation(2, [choice("debris")], updated_at="2026-11-21T10:00:00Z")],
        )
    )
    client.exported[-1]["annotations"][0]["completed_by"] = 7  # exports name user ids
    second = pull(project, client, server=SERVER)
    assert (second.annotations, second.added, second.unchanged) == (1, 1, 0)  # only the new one
    with project.catalog.reader() as session:
        newest = session.scalars(select(Annotation).order_by(Annotation.id.desc())).first()
    assert newest is not None
    assert newest.annotator == "seven@example.org"
    assert pull(project, client, server=SERVER).annotations == 0


def test_push_with_local_files_adds_a_storage_per_top_folder(
    project: Project, tmp_path: Path
) -> None:
    client = FakeClient()
    ids = sorted(image_ids(project).values())
    outside = ImageUrls(mode="local-files", files_root=tmp_path / "elsewhere")
    with pytest.raises(LabelError, match="not under the local-files document root"):
        push(project, client, server=SERVER, image_ids=ids, urls=outside)
    assert client.projects == {}  # nothing half-done on the server
    urls = ImageUrls(mode="local-files", files_root=tmp_path)
    push(project, client, server=SERVER, image_ids=ids, urls=urls)
    assert client.storages == [(1, (tmp_path / "images").resolve().as_posix())]
    assert {t["data"]["image"] for t in client.tasks.values()} == {
        "/data/local-files/?d=images/small.png",
        "/data/local-files/?d=images/wide.png",
    }
    with pytest.raises(LabelError, match="directly in the local-files document root"):
        ImageUrls(mode="local-files", files_root=tmp_path / "images").storage_folders(
            [(tmp_path / "images" / "wide.png").resolve().as_posix()]
        )
