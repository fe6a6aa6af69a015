"""The ``/v1`` API: listing and filtering, uploads, bulk labels, exploring, predicting,
selection rounds, models, JSON errors, tokens and URL inputs."""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import func, select

from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import Annotation, Image, Prediction, SelectionItem
from lensloop.catalog.tokens import create_token, revoke_token
from lensloop.embed.explore import cluster_images
from lensloop.project import Project
from lensloop.service import create_app
from lensloop.service.auth import TokenAuth
from lensloop.service.fetch import FetchPolicy
from lensloop.settings import Settings
from lensloop.train.inference import init_model, predict_project
from lsfakes import release_coloured


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """24 coloured images of 3 classes, embedded, a probe released, predicted, clustered."""
    root = tmp_path_factory.mktemp("api")
    project = Project.init(root / "project", settings=Settings(cache_dir=root / "cache"))
    release_coloured(project, root)
    predict_project(project, init_model(None, project=project, task="classify"))
    cluster_images(project, backbone="features", k=3)
    yield project
    project.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Project]:
    """Like ``served``, for tests that change the catalog."""
    project = Project.init(tmp_path / "project", settings=Settings(cache_dir=tmp_path / "cache"))
    release_coloured(project, tmp_path)
    yield project
    project.close()


def _client(project: Project, **kwargs: Any) -> TestClient:
    return TestClient(create_app(project, retrain=False, **kwargs), raise_server_exceptions=False)


def _png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((size, size, 3), colour, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


def _labels(project: Project) -> dict[int, str]:
    with project.catalog.reader() as session:
        return current_class_paths(session)


def test_project_and_classes(served: Project) -> None:
    client = _client(served)
    body = client.get("/v1/project").json()
    assert body["task"] == "classify"
    assert body["images"] == 24
    assert body["backbones"] == ["features"]
    assert {c["path"]: c["count"] for c in body["classes"]} == {"blue": 8, "green": 8, "red": 8}
    assert client.get("/v1/classes").json() == body["classes"]


def test_pages_cover_every_image_once_in_both_orders(served: Project) -> None:
    client = _client(served)
    for order in ("id", "uncertainty"):
        seen: list[int] = []
        uncertainties: list[float] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 5, "order": order}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/images", params=params).json()
            assert page["total"] == 24
            seen += [item["id"] for item in page["items"]]
            uncertainties += [item["uncertainty"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == list(range(1, 25))
        assert len(seen) == 24
        if order == "id":
            assert seen == sorted(seen)
        else:
            assert uncertainties == sorted(uncertainties, reverse=True)


def test_filters(served: Project) -> None:
    client = _client(served)
    labels = _labels(served)

    def ids(**params: Any) -> set[int]:
        page = client.get("/v1/images", params={"limit": 1000, **params}).json()
        assert page["total"] == len(page["items"])
        return {item["id"] for item in page["items"]}

    assert ids(label="red") == {i for i, p in labels.items() if p == "red"}
    assert ids(label="__none__") == set()
    with served.catalog.reader() as session:
        predicted = {
            image_id: payload["class"]
            for image_id, payload in session.execute(
                select(Prediction.image_id, Prediction.payload)
            )
        }
    assert ids(predicted="red") == {i for i, p in predicted.items() if p == "red"}
    assert len(ids(predicted="red")) >= 6
    uncertain = client.get("/v1/images", params={"min_uncertainty": 0.08, "limit": 100}).json()
    assert all(item["uncertainty"] >= 0.08 for item in uncertain["items"])
    clusters = [ids(cluster=c) for c in range(3)]
    assert sum(len(c) for c in clusters) == 24
    assert set().union(*clusters) == set(range(1, 25))
    with served.catalog.reader() as session:
        splits = dict(session.execute(select(Image.id, Image.split)).all())
    assert ids(split="val") == {i for i, s in splits.items() if s == "val"}
    assert ids(ids="3,5,999") == {3, 5}
    assert ids(label="red", split="val") == ids(label="red") & ids(split="val")


def test_bad_listing_requests_are_json_errors(served: Project) -> None:
    client = _client(served)
    message = _error(client.get("/v1/images", params={"cursor": "nonsense"}), 400, "bad_request")
    assert "next_cursor" in message
    cursor = client.get("/v1/images", params={"limit": 2}).json()["next_cursor"]
    wrong = client.get("/v1/images", params={"cursor": cursor, "order": "uncertainty"})
    assert "ordered by uncertainty" in _error(wrong, 400, "bad_request")
    _error(client.get("/v1/images", params={"meta": "no-colon"}), 400, "bad_request")
    _error(client.get("/v1/images", params={"limit": 0}), 422, "invalid_request")
    _error(client.get("/v1/images", params={"split": "holdout"}), 422, "invalid_request")
    _error(client.get("/v1/images/9999"), 404, "not_found")
    _error(client.get("/v1/nowhere"), 404, "http")


def test_image_record_file_and_thumbnail(served: Project) -> None:
    client = _client(served)
    record = client.get("/v1/images/1").json()
    assert record["width"] == 16
    assert record["label"] in {"red", "green", "blue"}
    assert record["thumbnail_url"] == "/v1/images/1/thumbnail"
    thumb = client.get(record["thumbnail_url"], params={"size": 64})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(thumb.content)).size == (16, 16)  # never enlarged
    full = client.get(record["file_url"])
    assert full.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(full.content))), served.read_image(1))
    _error(client.get("/v1/images/1/thumbnail", params={"size": 5000}), 422, "invalid_request")


def test_upload_stores_ingests_and_is_idempotent(fresh: Project) -> None:
    client = _client(fresh)
    data = _png((250, 5, 5))
    answer = client.post(
        "/v1/images",
        files=[("file", ("new-red.png", data, "image/png"))],
        data={"label": "red", "sample": "station-7", "meta": '{"depth_m": 12}'},
    )
    assert answer.status_code == 201, answer.text
    [added] = answer.json()["added"]
    assert added["label"] == "red"
    assert added["sample"] == "station-7"
    assert added["meta"] == {"depth_m": 12, "filename": "new-red.png"}
    stored = Path(added["uri"])
    assert stored.parent.parent == fresh.root / "images" / "uploads"
    assert stored.read_bytes() == data  # the bytes as sent, content-addressed
    again = client.post("/v1/images", files=[("file", ("copy.png", data, "image/png"))])
    assert again.json() == {"added": [], "existing": [added["id"]]}
    assert fresh.catalog.image_count() == 25
    listed = client.get("/v1/images", params={"meta": "depth_m:12"}).json()["items"]
    assert [item["id"] for item in listed] == [added["id"]]


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_uploads_are_checked_before_anything_is_stored(fresh: Project) -> None:
    client = _client(fresh)
    bomb = _bomb_png(100_000, 100_000)
    assert len(bomb) < 200
    message = _error(
        client.post("/v1/images", files=[("file", ("bomb.png", bomb, "image/png"))]),
        413,
        "image_too_large",
    )
    assert "bomb.png" in message
    _error(
        client.post("/v1/images", files=[("file", ("notes.txt", b"hello", "text/plain"))]),
        422,
        "image",
    )
    _error(
        client.post("/v1/images", files=[("file", ("fake.png", b"hello", "image/png"))]),
        422,
        "image_decode",
    )
    mixed = [
        ("file", ("good.png", _png((1, 2, 3)), "image/png")),
        ("file", ("fake.png", b"not an image", "application/octet-stream")),
    ]
    _error(client.post("/v1/images", files=mixed), 422, "image_decode")
    _error(
        client.post(
            "/v1/images",
            files=[("file", ("x.png", _png((1, 2, 3)), "image/png"))],
            data={"meta": "[1, 2]"},
        ),
        400,
        "bad_request",
    )
    assert fresh.catalog.image_count() == 24
    assert not (fresh.root / "images" / "uploads").exists()
    small = TestClient(create_app(fresh, retrain=False), raise_server_exceptions=False)
    small.app.state.lensloop.max_upload_bytes = 100  # type: ignore[attr-defined]
    big = small.post("/v1/images", files=[("file", ("big.png", _png((9, 9, 9), 64), "image/png"))])
    assert "upload limit of 100 bytes" in _error(big, 413, "image_too_large")


def test_bulk_labels_add_rows_only_where_the_label_changes(fresh: Project) -> None:
    client = _client(fresh)
    before = _labels(fresh)
    reds = sorted(i for i, p in before.items() if p == "red")[:3]
    blue = next(i for i, p in before.items() if p == "blue")
    body = {"image_ids": [*reds, blue], "label": "red", "annotator": "alice"}
    assert client.post("/v1/labels", json=body).json() == {
        "labelled": 1,
        "unchanged": 3,
        "label": "red",
    }
    after = _labels(fresh)
    assert after[blue] == "red"
    assert {i: p for i, p in after.items() if i != blue} == {
        i: p for i, p in before.items() if i != blue
    }
    with fresh.catalog.reader() as session:
        rows = session.scalars(
            select(Annotation).where(Annotation.image_id == blue).order_by(Annotation.id)
        ).all()
    assert [r.annotator for r in rows] == ["folder-import", "alice"]
    assert rows[1].supersedes_id == rows[0].id  # the history is kept
    missing = client.post("/v1/labels", json={"image_ids": [reds[0], 999], "label": "blue"})
    assert "999" in _error(missing, 404, "not_found")
    assert _labels(fresh) == after  # nothing written
    new_class = client.post("/v1/labels", json={"image_ids": [blue], "label": "purple/dark"})
    assert new_class.json()["labelled"] == 1
    assert "purple/dark" in {c["path"] for c in client.get("/v1/classes").json()}
    _error(client.post("/v1/labels", json={"image_ids": [blue], "label": "a//b"}), 422, "label")
    _error(
        client.post("/v1/labels", json={"image_ids": [], "label": "red"}), 422, "invalid_request"
    )


def test_predict_embed_and_similar_from_an_upload(served: Project) -> None:
    client = _client(served)
    red = ("red.png", _png((240, 10, 10), 128), "image/png")
    body = client.post("/v1/predict", files={"file": red}).json()
    assert body["task"] == "classify"
    assert body["model_version"] == 1
    assert body["predicted"] == "red"
    assert body["confidence"] > 0.5
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
    assert (
        abs(
            body["uncertainty"]
            - (
                1
                - (
                    sorted(body["probabilities"].values())[-1]
                    - sorted(body["probabilities"].values())[-2]
                )
            )
        )
        < 1e-5
    )
    assert client.post("/v1/predict", files={"file": red}, data={"model": "latest"}).json() == body
    _error(client.post("/v1/predict", files={"file": red}, data={"model": "v9"}), 404, "not_found")
    embedded = client.post("/v1/embed", files={"file": red}).json()
    assert embedded["backbone"] == "features"
    assert embedded["dim"] == len(embedded["vector"])
    assert abs(np.linalg.norm(embedded["vector"]) - 1) < 1e-4
    similar = client.post("/v1/similar", files={"file": red}, data={"k": "5"}).json()["items"]
    assert len(similar) == 5
    assert all(item["image"]["label"] == "red" for item in similar)
    by_id = client.get("/v1/similar", params={"image_id": similar[0]["image"]["id"], "k": 3})
    scores = [item["score"] for item in by_id.json()["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(scores) == 3
    _error(client.post("/v1/predict"), 400, "bad_request")
    _error(
        client.post("/v1/predict", files={"file": red}, data={"url": "https://example.org/x.png"}),
        400,
        "bad_request",
    )


class _ImageServer:
    """A local web server with an image, a redirect to it and a request counter."""

    def __init__(self, data: bytes) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header(
                        "Location", f"http://127.0.0.1:{self.server.server_port}/x.png"
                    )
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_server() -> Iterator[_ImageServer]:
    server = _ImageServer(_png((240, 10, 10), 128))
    yield server
    server.close()


def test_urls_inside_the_network_are_refused_without_a_request(
    served: Project, image_server: _ImageServer
) -> None:
    client = _client(served)
    local = f"http://127.0.0.1:{image_server.port}/x.png"
    for url in (
        local,
        "http://10.1.2.3/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://2130706433/x.png",
    ):
        for route in ("/v1/predict", "/v1/embed", "/v1/similar"):
            answer = client.post(route, data={"url": url})
            assert "public addresses" in _error(answer, 403, "forbidden_address"), url
    _error(client.post("/v1/predict", data={"url": "file:///etc/passwd"}), 400, "bad_scheme")
    assert image_server.hits == []  # refused before connecting


def test_allowed_urls_are_fetched_and_redirects_rechecked(
    served: Project, image_server: _ImageServer
) -> None:
    opened = _client(served, fetch_policy=FetchPolicy(allow_private=True))
    body = opened.post(
        "/v1/predict", data={"url": f"http://127.0.0.1:{image_server.port}/redirect"}
    ).json()
    assert body["predicted"] == "red"
    assert image_server.hits == ["/redirect", "/x.png"]
    # Only this host is allowed: a redirect from it to the metadata address is refused.
    allowed = FetchPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    image_server.hits.clear()
    _ = _client(served, fetch_policy=allowed).post(
        "/v1/predict", data={"url": f"http://127.0.0.1:{image_server.port}/x.png"}
    )
    assert image_server.hits == ["/x.png"]
    small = _client(served, fetch_policy=FetchPolicy(allow_private=True, max_bytes=100))
    url = f"http://127.0.0.1:{image_server.port}/x.png"
    _error(small.post("/v1/predict", data={"url": url}), 413, "too_large")


def test_map_clusters_rounds_and_models(fresh: Project) -> None:
    client = _client(fresh)
    assert client.get("/v1/clusters").json() == {"run_id": None, "method": None, "clusters": []}
    clusters = client.post("/v1/clusters", json={"k": 3}).json()
    assert sum(c["size"] for c in clusters["clusters"]) == 24
    assert len(clusters["clusters"]) == 3
    assert client.get("/v1/clusters").json() == clusters
    first = client.get("/v1/map").json()
    assert len(first["points"]) == 24
    assert first["method"] == "pca"
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in first["points"])
    assert {p["cluster"] for p in first["points"]} == {0, 1, 2}
    assert client.get("/v1/map").json()["layout_id"] == first["layout_id"]  # stored once
    _error(client.get("/v1/map", params={"backbone": "nope"}), 404, "not_found")

    # Unlabel six images (a new class row per image is how the UI would relabel; here we
    # add new unlabelled images instead) so a round has something to choose.
    for k in range(6):
        client.post(
            "/v1/images", files=[("file", (f"n{k}.png", _png((k * 40, 90, 200)), "image/png"))]
        )
    from lensloop.embed.engine import embed_project
    from lensloop.embed.registry import BackboneOptions, get_backbone

    options = BackboneOptions(cache_dir=fresh.settings.cache_dir, project_root=fresh.root)
    embed_project(fresh, get_backbone("features", options), workers=0)
    chosen = client.post("/v1/select", json={"n": 4, "strategy": "random", "seed": 1})
    assert chosen.status_code == 201, chosen.text
    round_ = chosen.json()
    assert [item["rank"] for item in round_["items"]] == [1, 2, 3, 4]
    assert all(item["image"]["label"] is None for item in round_["items"])
    with fresh.catalog.reader() as session:
        assert session.scalar(select(func.count()).select_from(SelectionItem)) == 4
    ids = [item["image"]["id"] for item in round_["items"]]
    client.post("/v1/labels", json={"image_ids": ids[:2], "label": "blue"})
    [summary] = client.get("/v1/rounds").json()
    assert summary["size"] == 4
    assert summary["labelled"] == 2
    queue = client.get(f"/v1/rounds/{round_['id']}").json()
    assert [item["image"]["label"] for item in queue["items"]] == ["blue", "blue", None, None]
    listed = client.get("/v1/images", params={"round": round_["id"], "label": "__none__"}).json()
    assert {item["id"] for item in listed["items"]} == set(ids[2:])
    _error(client.get("/v1/rounds/99"), 404, "not_found")
    _error(client.post("/v1/select", json={"n": 0}), 422, "invalid_request")

    [model] = client.get("/v1/models").json()
    assert model["version"] == 1
    assert "champion" in model["aliases"]
    assert set(model["metrics"]) >= {"accuracy", "macro_f1"}
    detail = client.get("/v1/models/champion").json()
    assert detail["classes"] == ["blue", "green", "red"]
    assert np.asarray(detail["confusion"]).sum() == model["metrics"]["n"]
    assert detail["learning_curve"][0]["version"] == 1
    _error(client.get("/v1/models/7"), 404, "not_found")


def test_model_predictions_put_mistakes_first(fresh: Project) -> None:
    client = _client(fresh)
    predict_project(fresh, init_model(None, project=fresh, task="classify"))
    labels = _labels(fresh)
    wrong = next(i for i, p in labels.items() if p == "red")
    client.post("/v1/labels", json={"image_ids": [wrong], "label": "green"})
    items = client.get("/v1/models/1/predictions").json()["items"]
    assert len(items) == 24
    assert items[0]["image"]["id"] == wrong
    assert (items[0]["actual"], items[0]["predicted"]) == ("green", "red")
    errors = client.get("/v1/models/1/predictions", params={"errors_only": True}).json()["items"]
    assert [e["image"]["id"] for e in errors] == [wrong]


def test_tokens_guard_every_route_but_health_and_session(fresh: Project) -> None:
    with fresh.catalog.transaction() as session:
        token, _ = create_token(session, "alice")
    client = _client(fresh, token_auth=TokenAuth(fresh))
    assert client.get("/health").status_code == 200
    assert client.get("/v1/session").json() == {"auth_required": True, "authenticated": False}
    for path in ("/v1/images", "/v1/project", "/v1/images/1/thumbnail", "/images/1", "/metrics"):
        _error(client.get(path), 401, "unauthorized")
    _error(client.post("/v1/labels", json={"image_ids": [1], "label": "red"}), 401, "unauthorized")
    page = client.get("/ui/")  # the page itself loads, to ask for the token
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    _error(client.get("/v1/images", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/images", headers=headers).status_code == 200
    _error(client.post("/v1/session", json={"token": "nope"}), 401, "unauthorized")
    assert client.post("/v1/session", json={"token": token}).json()["authenticated"] is True
    assert client.get("/v1/images/1/thumbnail").status_code == 200  # the cookie
    assert client.delete("/v1/session").status_code == 200
    _error(client.get("/v1/images"), 401, "unauthorized")
    with fresh.catalog.transaction() as session:
        revoke_token(session, "alice")
    _error(client.get("/v1/images", headers=headers), 401, "unauthorized")


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(fresh: Project) -> None:
    from typer.testing import CliRunner

    from lensloop.cli import app

    fresh.close()
    result = CliRunner().invoke(app, ["serve", str(fresh.root), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "lensloop token create" in result.output


def test_openapi_documents_every_v1_route_with_its_error_shape(served: Project) -> None:
    spec = _client(served).get("/openapi.json").json()
    paths = {p for p in spec["paths"] if p.startswith("/v1/")}
    assert paths >= {
        "/v1/images",
        "/v1/images/{image_id}",
        "/v1/images/{image_id}/thumbnail",
        "/v1/labels",
        "/v1/predict",
        "/v1/embed",
        "/v1/similar",
        "/v1/select",
        "/v1/models",
        "/v1/map",
    }
    listing = spec["paths"]["/v1/images"]["get"]["responses"]
    assert listing["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_segment_mask_round_trips_through_base64(tmp_path: Path) -> None:
    """A segmentation model answers its label map as PNG and areas that sum to the image."""
    from lensloop.train.trainer import train_model
    from train.test_segmentation import CONFIG, make_segment_project

    splits = ["val", "train", "train", "train", "val", "train"]
    project, _ = make_segment_project(
        tmp_path, Settings(cache_dir=tmp_path / "cache"), splits=splits
    )
    with project:
        train_model(project, CONFIG.model_copy(update={"epochs": 1, "patience": 1}))
        client = _client(project)
        image = project.read_image(1)
        buffer = io.BytesIO()
        PILImage.fromarray(image).save(buffer, "PNG")
        body = client.post("/v1/predict", files={"file": ("c.png", buffer.getvalue(), "image/png")})
        answer = body.json()
        assert answer["task"] == "segment", body.text
        mask = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(answer["mask_png"]))))
        assert mask.shape == image.shape[:2] == (answer["height"], answer["width"])
        background = int((mask == 0).sum())
        assert sum(answer["areas"].values()) + background == mask.size
        for k, name in enumerate(answer["classes"], start=1):
            assert answer["areas"][name] == int((mask == k).sum())


def test_ids_beyond_the_database_range_are_invalid_requests(served: Project) -> None:
    """Found by the fuzzer: ids >= 2**63 used to reach SQLite and answer 500."""
    client = _client(served)
    huge = 2**63
    for path in (f"/v1/images/{huge}", f"/v1/images/{huge}/file", f"/v1/rounds/{huge}"):
        _error(client.get(path), 422, "invalid_request")
    _error(client.get(f"/images/{huge}"), 422, "invalid_request")
    _error(client.get("/v1/images", params={"ids": str(huge)}), 400, "bad_request")
    body = {"image_ids": [huge], "label": "red"}
    _error(client.post("/v1/labels", json=body), 422, "invalid_request")
    _error(client.get(f"/v1/models/{10**30}"), 404, "not_found")
    _error(client.get("/v1/models/\u00b9"), 404, "not_found")  # '¹'.isdigit() is True


def test_an_image_classifier_answers_through_the_micro_batcher(fresh: Project) -> None:
    """Concurrent requests to a fine-tuned model share ONNX calls and get their own answers."""
    from concurrent.futures import ThreadPoolExecutor

    from lensloop.train.config import TrainConfig
    from lensloop.train.trainer import train_model

    config = TrainConfig(
        method="finetune", arch="resnet18", weights="none", epochs=1, input_size=32, augment=False
    )
    version = train_model(fresh, config).model.version
    client = _client(fresh, model=str(version))
    colours = [(240, 10, 10), (10, 240, 10), (10, 10, 240)] * 4
    files = [_png(c, 48) for c in colours]
    with ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(
                lambda data: client.post(
                    "/v1/predict", files={"file": ("x.png", data, "image/png")}
                ).json(),
                files,
            )
        )
    model = init_model(str(version), project=fresh, task="classify")
    expected = model.predict(
        [np.asarray(PILImage.open(io.BytesIO(data))) for data in files],
        settings=fresh.settings,
    )
    for answer, want in zip(answers, expected, strict=True):
        assert answer["model_version"] == version
        assert answer["predicted"] == want.predicted
        for name, p in want.probabilities.items():
            assert abs(answer["probabilities"][name] - p) < 1e-5
    batcher = client.app.state.lensloop.batcher(client.app.state.lensloop.model_for(None))  # type: ignore[attr-defined]
    assert batcher.items == 12


def test_a_counting_model_answers_a_count_and_points(tmp_path: Path) -> None:
    from lensloop.imaging import encode_image
    from lensloop.train.counter import load_counter
    from lensloop.train.trainer import train_model
    from train.test_counting import CONFIG, make_counting_project

    project, _ = make_counting_project(tmp_path, Settings(cache_dir=tmp_path / "cache"), n_images=6)
    with project:
        train_model(project, CONFIG.model_copy(update={"epochs": 1, "patience": 1}))
        image = project.read_image(1)  # 16-bit cells
        answer = _client(project).post(
            "/v1/predict",
            files={"file": ("cells.png", encode_image(image, format="png"), "image/png")},
        )
        body = answer.json()
        assert body["task"] == "count", answer.text
        expected = load_counter(None, project=project).count_array(image)
        assert body["count"] == pytest.approx(expected.count, rel=1e-5)
        assert body["points"] == [list(p) for p in expected.points.tolist()]
