"""The server: images, Label Studio's ML-backend routes, auth, JSON errors, retraining."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select

from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import Image
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.service import BasicAuth, create_app
from lensloop.service.retrain import Retrainer
from lsfakes import annotation, choice, image_ids, release_coloured, sized_project


@pytest.fixture
def released(project: Project, tmp_path: Path) -> Project:
    return release_coloured(project, tmp_path)


def _uris(project: Project) -> dict[int, str]:
    with project.catalog.reader() as session:
        return {i: u for i, u in session.execute(select(Image.id, Image.uri))}


def test_predict_answers_in_label_studio_shape(released: Project) -> None:
    client = TestClient(create_app(released, retrain=False))
    assert client.get("/health").json()["status"] == "UP"
    assert client.post("/setup", json={"project": "1.1", "schema": "<View/>"}).json() == {
        "model_version": "lensloop-v1"
    }
    uris = _uris(released)
    red = next(i for i, u in uris.items() if "/red/" in u)
    tasks = [
        {"id": 5, "data": {"image": "http://x/images/1", "lensloop_image_id": red}},
        {"id": 6, "data": {"image": "http://nowhere.example/unknown.png"}},
    ]
    body = client.post("/predict", json={"tasks": tasks, "label_config": "<View/>"}).json()
    first, second = body["results"]
    assert first["model_version"] == "lensloop-v1"
    assert 0.34 < first["score"] <= 1.0
    assert first["result"] == [
        {"from_name": "class", "to_name": "image", "type": "choices", "value": {"choices": ["red"]}}
    ]
    assert second == {"result": [], "score": 0.0, "model_version": "lensloop-v1"}
    metrics = client.get("/metrics").json()
    assert metrics["counters"]["predictions"] == 1
    assert metrics["counters"]["predict_requests"] == 1


def test_webhooks_record_annotations_and_deletions(released: Project) -> None:
    client = TestClient(create_app(released, retrain=False))
    image_id = next(i for i, u in _uris(released).items() if "/red/" in u)
    task = {"id": 40, "data": {"lensloop_image_id": image_id, "image": "x"}}
    created = {
        "action": "ANNOTATION_CREATED",
        "task": task,
        "annotation": annotation(400, [choice("green")]),
        "project": {"id": 3},
    }
    answer = client.post("/webhook", json=created)
    assert answer.status_code == 201
    assert answer.json()["stored"]["added"] == 1
    with released.catalog.reader() as session:
        assert current_class_paths(session)[image_id] == "green"
    assert client.post("/webhook", json=created).json()["stored"]["unchanged"] == 1
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 400}], "project": {"id": 3}}
    assert client.post("/webhook", json=deleted).json()["stored"] == {"deleted": 1}
    with released.catalog.reader() as session:
        assert image_id not in current_class_paths(session)  # the import label is superseded too
    bad = dict(created, annotation=annotation(401, [choice("purple")]))
    answer = client.post("/webhook", json=bad)
    assert answer.status_code == 422
    assert (
        "label 'purple' is not in the project's label schema" in answer.json()["error"]["message"]
    )


def test_errors_are_json_never_tracebacks(released: Project) -> None:
    client = TestClient(create_app(released, retrain=False), raise_server_exceptions=False)
    for response in (
        client.post("/predict", content=b"{nope"),
        client.post("/predict", json={"tasks": "all"}),
        client.post("/webhook", json={"no": "action"}),
        client.get("/images/99999"),
        client.get("/nowhere"),
    ):
        assert response.status_code in (404, 422), response.text
        assert set(response.json()["error"]) == {"code", "message"}
        assert "Traceback" not in response.text


def test_basic_auth(released: Project) -> None:
    client = TestClient(create_app(released, basic_auth=BasicAuth("ls", "s3cret"), retrain=False))
    assert client.get("/health").status_code == 200
    refused = client.post("/setup", json={})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert client.post("/setup", json={}, auth=("ls", "wrong")).status_code == 401
    assert client.post("/setup", json={}, auth=("ls", "s3cret")).status_code == 200
    token = base64.b64encode(b"ls:s3cret").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {token}"}).status_code == 200


def test_images_are_served_full_size_for_display(tmp_path: Path) -> None:
    project = sized_project(tmp_path)
    deep = tmp_path / "deep.png"
    ramp = (np.arange(30 * 20, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    PILImage.fromarray(ramp).save(deep)
    ingest(project, [deep])
    client = TestClient(create_app(project, retrain=False))
    for name, (width, height) in {"wide.png": (200, 100), "deep.png": (30, 20)}.items():
        response = client.get(f"/images/{image_ids(project)[name]}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        shown = PILImage.open(io.BytesIO(response.content))
        assert shown.size == (width, height)
        if name == "deep.png":
            pixels = np.asarray(shown)
            assert pixels.dtype == np.uint8
            assert pixels.min() == 0
            assert pixels.max() == 255


def test_retrainer_coalesces_requests_and_records_failures() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def train() -> int:
        calls.append(len(calls))
        gate.wait(5)
        if len(calls) == 2:
            raise RuntimeError("too few labels")
        return len(calls)

    retrainer = Retrainer(train)
    assert retrainer.request() == "started"
    assert retrainer.request() == "queued"
    assert retrainer.request() == "queued"  # a burst adds one run, not three
    gate.set()
    assert retrainer.join(10)
    status = retrainer.status.as_dict()
    assert calls == [0, 1]
    assert (status["state"], status["runs"], status["failures"]) == ("idle", 1, 1)
    assert status["last_error"] == "too few labels"
    assert status["last_version"] == 1


def test_start_training_webhook_retrains_in_the_background(released: Project) -> None:
    client = TestClient(create_app(released))
    started = time.perf_counter()
    answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert answer.status_code == 201
    assert answer.json()["training"] == "started"
    assert time.perf_counter() - started < 2.0  # the request does not wait for training
    state = client.app.state.lensloop  # type: ignore[attr-defined]
    assert state.retrainer.join(120)
    status = client.get("/metrics").json()["training"]
    assert (status["runs"], status["failures"], status["last_version"]) == (1, 0, 2)
    # The same data gives no better model, so the champion stays; "latest" is the new one.
    assert client.post("/setup", json={}).json() == {"model_version": "lensloop-v1"}
    latest = TestClient(create_app(released, model="latest", retrain=False))
    assert latest.post("/setup", json={}).json() == {"model_version": "lensloop-v2"}


def test_a_counting_project_connects_and_stores_points(tmp_path: Path) -> None:
    project = sized_project(tmp_path, task="count", classes=["cell"])
    client = TestClient(create_app(project, retrain=False))
    assert client.post("/setup", json={}).json() == {"model_version": "lensloop-untrained"}
    wide = image_ids(project)["wide.png"]
    tasks = [{"id": 1, "data": {"lensloop_image_id": wide}}]
    assert client.post("/predict", json={"tasks": tasks}).json()["results"] == [
        {"result": [], "score": 0.0, "model_version": "lensloop-untrained"}
    ]
    point = {
        "id": "k",
        "type": "keypointlabels",
        "from_name": "points",
        "value": {"x": 10.0, "y": 50.0, "keypointlabels": ["cell"]},
    }
    created = {
        "action": "ANNOTATION_CREATED",
        "task": tasks[0],
        "annotation": annotation(9, [point]),
    }
    assert client.post("/webhook", json=created).json()["stored"]["by_kind"] == {"points": 1}
