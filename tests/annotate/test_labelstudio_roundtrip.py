"""The whole Label Studio round against a real Label Studio server and a real `lensloop serve`.

Push tasks with predictions, annotate every kind through Label Studio's API, pull them
back (every pixel coordinate and mask checked), edit one (a new version), then connect
`lensloop serve` as the ML backend and see Label Studio store its predictions and send
its webhooks.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lensloop.annotate.labelstudio.results import ImageSize
from lensloop.annotate.labelstudio.sync import SdkClient, pull, push
from lensloop.annotate.labelstudio.tasks import ImageUrls, build_task, images_to_label
from lensloop.annotate.rle import counts_to_mask, encode_brush
from lensloop.annotate.schema import label_config, project_schema
from lensloop.catalog.annotations import current_annotations
from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import Annotation
from lensloop.project import Project
from lensloop.service import BasicAuth, create_app
from lensloop.train.preannotate import current_model, preannotate
from lsfakes import image_ids, release_coloured
from servers import LOOPBACK, LabelStudioServer, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # label-studio-sdk uses pydantic v1 idioms and warns about them when first imported.
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
]

TOOLS = ("choices", "keypoints", "rectangle", "polygon", "brush")
SIZES = {"wide.png": (200, 100), "small.png": (64, 48), "square.png": (90, 90)}


@pytest.fixture
def released(project: Project, tmp_path: Path) -> Project:
    """Labelled coloured images, a probe released as v1, and three unlabelled images."""
    new = tmp_path / "new"
    new.mkdir()
    rng = np.random.default_rng(3)
    for (name, (width, height)), colour in zip(
        SIZES.items(), [(200, 40, 40), (40, 200, 40), (40, 40, 200)], strict=True
    ):
        noise = rng.normal(0, 20, size=(height, width, 3))
        pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
        PILImage.fromarray(pixels).save(new / name)
    return release_coloured(project, tmp_path, unlabelled=new)


class _Server:
    """`lensloop serve`'s app under uvicorn in a thread, on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = uvicorn.Config(app, host=LOOPBACK, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("lensloop serve did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def sdk(ls_server: LabelStudioServer) -> Iterator[Any]:
    from label_studio_sdk import LabelStudio

    with httpx.Client(timeout=120) as http:
        yield LabelStudio(base_url=ls_server.url, api_key=ls_server.token, httpx_client=http)


def _result(kind: str, from_name: str, value: dict[str, Any], rid: str) -> dict[str, Any]:
    return {"id": rid, "from_name": from_name, "to_name": "image", "type": kind, "value": value}


def _wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_push_annotate_pull_and_ml_backend(
    released: Project, ls_server: LabelStudioServer, sdk: Any
) -> None:
    ids = image_ids(released)
    wide, small, square = ids["wide.png"], ids["small.png"], ids["square.png"]
    assert images_to_label(released) == sorted([wide, small, square])

    # -- push: project, config, tasks and the champion's predictions ----------------------
    model = current_model(released)
    assert model is not None
    pre = preannotate(released, [wide, small, square], model=model)
    with SdkClient(ls_server.url, ls_server.token) as client:
        report = push(
            released,
            client,
            server=ls_server.url,
            image_ids=[wide, small, square],
            urls=ImageUrls(base_url="http://127.0.0.1:9"),
            preannotations=pre,
            tools=TOOLS,
        )
    assert report.created_project
    assert report.tasks_created == 3
    assert report.predictions == 3
    project_id, tasks = report.project_id, report.task_ids
    ls_project = sdk.projects.get(project_id)
    assert set(ls_project.parsed_label_config) == {
        "class",
        "points",
        "status",
        "box",
        "polygon",
        "mask",
    }
    for image_id, task_id in tasks.items():
        (stored,) = sdk.predictions.list(task=task_id)
        assert stored.model_version == "lensloop-v1"
        assert stored.result[0]["value"]["choices"] == [pre[image_id].payload["class"]]
        assert stored.score == pytest.approx(pre[image_id].score)

    # -- annotate every kind through the API ---------------------------------------------
    mask = np.zeros((100, 200), dtype=bool)
    mask[10:31, 40:81] = True
    mask[60:90, 150:190] = True
    wide_results = [
        _result("choices", "class", {"choices": ["red"]}, "c1"),
        _result(
            "keypointlabels",
            "points",
            {"x": 25.0, "y": 30.0, "width": 1, "keypointlabels": ["red"]},
            "k1",
        ),
        _result(
            "rectanglelabels",
            "box",
            {
                "x": 10.0,
                "y": 20.0,
                "width": 30.0,
                "height": 50.0,
                "rotation": 0,
                "rectanglelabels": ["green"],
            },
            "r1",
        ),
        _result(
            "polygonlabels",
            "polygon",
            {
                "points": [[50.0, 20.0], [90.0, 20.0], [70.0, 90.0]],
                "closed": True,
                "polygonlabels": ["blue"],
            },
            "p1",
        ),
        {
            **_result(
                "brushlabels",
                "mask",
                {"format": "rle", "rle": encode_brush(mask), "brushlabels": ["red"]},
                "m1",
            ),
            "original_width": 200,
            "original_height": 100,
        },
    ]
    first = sdk.annotations.create(tasks[wide], result=wide_results, lead_time=3.0)
    sdk.annotations.create(
        tasks[small], result=[_result("choices", "class", {"choices": ["green"]}, "c2")]
    )
    sdk.annotations.create(tasks[square], result=[], was_cancelled=True)

    # -- pull: everything back, in pixels -------------------------------------------------
    with SdkClient(ls_server.url, ls_server.token) as client:
        pulled = pull(released, client, server=ls_server.url)
    assert (pulled.added, pulled.cancelled) == (6, 1)
    assert dict(pulled.by_kind) == {"class": 2, "points": 1, "box": 1, "polygon": 1, "mask": 1}
    with released.catalog.reader() as session:
        assert current_class_paths(session)[wide] == "red"
        assert current_class_paths(session)[small] == "green"
        rows = {
            row.kind: row
            for row in session.scalars(
                select(Annotation).where(
                    Annotation.origin == "labelstudio", Annotation.image_id == wide
                )
            )
        }
    assert rows["points"].payload["points"] == [{"x": 50.0, "y": 30.0, "label": "red", "id": "k1"}]
    (box,) = rows["box"].payload["boxes"]
    assert (box["x"], box["y"], box["width"], box["height"], box["label"]) == (
        20.0,
        20.0,
        60.0,
        50.0,
        "green",
    )
    assert rows["polygon"].payload["polygons"][0]["points"] == [
        [100.0, 20.0],
        [180.0, 20.0],
        [140.0, 90.0],
    ]
    assert np.array_equal(counts_to_mask(rows["mask"].payload["masks"][0]), mask)
    assert rows["class"].annotator == ls_server.email  # pull maps user ids to e-mails
    assert rows["class"].payload["labelstudio"]["annotation"] == first.id
    assert rows["class"].payload["labelstudio"]["project"] == project_id

    # -- an edit is a new version; pulling again adds nothing more -----------------------
    edited = [dict(r) for r in wide_results]
    edited[0] = _result("choices", "class", {"choices": ["blue"]}, "c1")
    sdk.annotations.update(first.id, result=edited)
    with SdkClient(ls_server.url, ls_server.token) as client:
        again = pull(released, client, server=ls_server.url)
        assert (again.annotations, again.added, again.superseded) == (1, 5, 5)
        assert pull(released, client, server=ls_server.url).annotations == 0
    with released.catalog.reader() as session:
        assert current_class_paths(session)[wide] == "blue"
        newest = current_annotations(session, "class")[wide]
        assert newest.supersedes_id == rows["class"].id

    # -- lensloop serve as the ML backend -------------------------------------------------
    app = create_app(released, basic_auth=BasicAuth("ml", "secret"))
    with _Server(app) as served:
        schema = project_schema(released)
        second = sdk.projects.create(
            title="ml backend", label_config=label_config(schema, tools=TOOLS)
        )
        sizes = {wide: ImageSize(200, 100), small: ImageSize(64, 48), square: ImageSize(90, 90)}
        imported = sdk.projects.import_tasks(
            second.id,
            request=[
                build_task(i, f"{served.url}/images/{i}", sizes[i]) for i in (wide, small, square)
            ],
            return_task_ids=True,
        )
        backend = sdk.ml.create(
            project=second.id,
            url=served.url,
            title="lensloop",
            auth_method="BASIC_AUTH",
            basic_auth_user="ml",
            basic_auth_pass="secret",
        )
        assert backend.state == "CO", backend.error_message  # connected: /health and /setup
        sdk.actions.create(
            id="retrieve_tasks_predictions",
            project=second.id,
            selected_items={"all": True, "excluded": []},
        )
        for image_id, task_id in zip((wide, small, square), imported.task_ids, strict=True):
            (stored,) = sdk.predictions.list(task=task_id)
            assert stored.model_version == "lensloop-v1"
            assert stored.result[0]["value"]["choices"] == [pre[image_id].payload["class"]]
        metrics = httpx.get(f"{served.url}/metrics", auth=("ml", "secret")).json()
        assert metrics["counters"]["predictions"] == 3

        # Connecting the backend made Label Studio add a webhook to /webhook for every
        # event; its events carry no credentials until the webhook is given the header.
        (hook,) = [
            h for h in sdk.webhooks.list(project=str(second.id)) if h.url.endswith("/webhook")
        ]
        token = base64.b64encode(b"ml:secret").decode()
        sdk.webhooks.update(hook.id, headers={"Authorization": f"Basic {token}"})
        sdk.annotations.create(
            imported.task_ids[2], result=[_result("choices", "class", {"choices": ["blue"]}, "c3")]
        )

        def stored_square() -> bool:
            with released.catalog.reader() as session:
                return current_class_paths(session).get(square) == "blue"

        assert _wait_for(stored_square)
        state = app.state.lensloop
        assert _wait_for(
            lambda: state.retrainer.status.runs + state.retrainer.status.failures >= 1, 120
        )
        assert state.retrainer.join(120)
        assert state.retrainer.status.last_version == 2
        assert httpx.get(f"{served.url}/images/{square}", auth=("ml", "secret")).status_code == 200
