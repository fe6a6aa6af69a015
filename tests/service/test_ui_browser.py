"""The web UI in a real browser (Playwright + Debian's Chromium, headless).

The server is the real app (``create_app``) under uvicorn on 127.0.0.1. The test labels a
cluster in bulk in the gallery (filter, select all, leave one out, one key), then checks
the catalog; walks a selection round in the queue with the keyboard; opens the map and
the model page. A screenshot of the bulk labelling is kept under ``test-artifacts/`` (or
``$LENSLOOP_TEST_ARTIFACTS``). Any console error or uncaught page error fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import ClusterMember, ClusterRun, Image
from lensloop.project import Project
from lsfakes import image_ids, release_coloured, sized_project
from servers import LOOPBACK, free_port, require_integration

CHROMIUM = Path(os.environ.get("LENSLOOP_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(
    os.environ.get(
        "LENSLOOP_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
    )
)
YELLOW = (230, 210, 30)
TIMEOUT_MS = 15_000


@pytest.fixture
def ui_project(project: Project, tmp_path: Path) -> Project:
    """Coloured images of 3 labelled classes plus 40 unlabelled yellow ones, embedded,
    clustered (k=4) and predicted by a released probe."""
    rng = np.random.default_rng(3)
    yellow = tmp_path / "yellow"
    yellow.mkdir()
    for index in range(40):  # with the 24 coloured ones, more than a gallery page (60)
        noise = rng.normal(0, 12, size=(16, 16, 3))
        pixels = np.clip(np.array(YELLOW)[None, None, :] + noise, 0, 255).astype(np.uint8)
        PILImage.fromarray(pixels).save(yellow / f"yellow_{index}.png")
    release_coloured(project, tmp_path, unlabelled=yellow)
    from lensloop.embed.explore import cluster_images
    from lensloop.train.inference import init_model, predict_project

    predict_project(project, init_model("latest", project=project))
    cluster_images(project, backbone="features", k=4)
    return project


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    port = free_port()
    config = uvicorn.Config(
        app, host=LOOPBACK, port=port, log_level="warning", lifespan="off", ws="none"
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, name="ui-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        served.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(ui_project: Project) -> Iterator[str]:
    """The real app, open (no auth), serving :func:`ui_project`."""
    from lensloop.service import create_app

    with _serve(create_app(ui_project, retrain=False)) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium from the system (never downloaded); skips or fails without it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_integration("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        require_integration(f"no Chromium at {CHROMIUM} (make sysdeps installs Debian's chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            headless=True,
        )
        try:
            yield chromium
        finally:
            chromium.close()


def test_ui_routes_serve_the_packaged_files(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lensloop.service import create_app, ui

    assets = ui.list_assets()
    assert {"index.html", "app.js", "app.css"} <= set(assets)
    project = sized_project(tmp_path)
    client = TestClient(create_app(project, retrain=False), follow_redirects=False)
    assert client.get("/").headers["location"] == "/ui/"
    for path in ("/ui", "/ui/"):
        page = client.get(path)
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
    html = client.get("/ui/").text
    # Every file the page and its modules load is served, with its type; nothing external.
    linked = set(re.findall(r'(?:src|href)="/ui/static/([^"]+)"', html))
    for name in [a for a in assets if a.endswith(".js")]:
        linked |= set(re.findall(r'from "\./([^"]+)"', client.get(f"/ui/static/{name}").text))
    assert linked <= set(assets)
    assert linked == set(assets) - {"index.html"}
    for name in assets:
        text = client.get(f"/ui/static/{name}").text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    script = client.get("/ui/static/app.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    again = client.get("/ui/static/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/ui/static/app.css").headers["content-type"] == "text/css; charset=utf-8"
    missing = client.get("/ui/static/nope.js")
    assert missing.status_code == 404
    assert "no UI file 'nope.js'" in missing.json()["error"]["message"]
    assert client.get("/ui/static/..%2Fui.py").status_code == 404
    assert ui.is_public("GET", "/ui/static/app.js")
    assert not ui.is_public("GET", "/v1/images")
    assert not ui.is_public("POST", "/ui/")
    project.close()


def _yellow_cluster(project: Project) -> tuple[int, set[int]]:
    """The newest clustering's cluster with the most yellow images, and its unlabelled
    images (the ones the gallery shows when filtered by that cluster and "unlabelled")."""
    yellow = {i for name, i in image_ids(project).items() if name.startswith("yellow_")}
    with project.catalog.reader() as session:
        run = session.scalar(select(ClusterRun.id).order_by(ClusterRun.id.desc()).limit(1))
        members = session.execute(
            select(ClusterMember.image_id, ClusterMember.cluster).where(ClusterMember.run_id == run)
        ).all()
        labelled = current_class_paths(session).keys()
    counts = Counter(c for i, c in members if i in yellow)
    cluster = counts.most_common(1)[0][0]
    shown = {i for i, c in members if c == cluster and i not in labelled}
    assert len(shown) >= 3, f"cluster {cluster} has only {len(shown)} unlabelled images"
    return cluster, shown


def _watch(page: Any) -> list[str]:
    """Collect the page's console errors and uncaught errors."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.set_default_timeout(TIMEOUT_MS)
    return problems


def _labels(project: Project) -> dict[int, str]:
    with project.catalog.reader() as session:
        return current_class_paths(session)


@pytest.mark.slow
@pytest.mark.integration
def test_bulk_label_a_cluster_queue_map_and_model_page(
    ui_project: Project, server: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    cluster, yellow = _yellow_cluster(ui_project)
    before = _labels(ui_project)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = _watch(page)

    # Gallery: pages load as the user scrolls down.
    with ui_project.catalog.reader() as session:
        total = session.scalar(select(func.count(Image.id)))
    assert total is not None
    assert total > 60
    page.goto(f"{server}/")
    expect(page).to_have_url(f"{server}/ui/#/gallery")
    expect(page.locator(".filters .summary")).to_have_text(f"{total} images")
    page.locator(".sentinel").scroll_into_view_if_needed()
    expect(page.locator("figure.tile")).to_have_count(total)
    page.locator("figure.tile").first.get_by_role("link", name="similar").click()
    expect(page.locator("#similar-grid figure.tile").first).to_be_visible()

    # Gallery: the unlabelled images of the yellow cluster, all selected but one.
    page.goto(f"{server}/ui/#/gallery")
    classes = page.locator("#classbar button.cls")
    expect(classes).to_have_count(3)
    key_of = {
        classes.nth(n).get_attribute("data-path"): classes.nth(n).locator("kbd").inner_text()
        for n in range(3)
    }
    assert key_of == {"blue": "1", "green": "2", "red": "3"}
    page.select_option("select[name=label]", "__none__")
    expect(page.locator("select[name=cluster] option")).not_to_have_count(1)
    page.select_option("select[name=cluster]", str(cluster))
    tiles = page.locator("figure.tile")
    expect(tiles).to_have_count(len(yellow))
    page.get_by_role("button", name="Select all matching (a)").click()
    expect(page.locator("#selection-count")).to_contain_text(f"{len(yellow)} selected")
    left_out = int(tiles.nth(2).get_attribute("data-id") or 0)
    tiles.nth(2).locator("button.pick").click()
    expect(page.locator("#selection-count")).to_contain_text(f"{len(yellow) - 1} selected")
    expect(tiles.nth(2)).not_to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press(key_of["green"])
    expect(page.locator("#toast")).to_contain_text(f"Labelled {len(yellow) - 1} images as green")
    expect(page.locator("#selectionbar")).to_be_hidden()
    expect(tiles.locator(".label", has_text="green")).to_have_count(len(yellow) - 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-bulk-label.png"), full_page=True)

    after = _labels(ui_project)
    chosen = yellow - {left_out}
    assert {i: after[i] for i in chosen} == dict.fromkeys(chosen, "green")
    assert left_out not in after
    assert {i: p for i, p in after.items() if i not in chosen} == before

    # Queue: a new selection round, walked with the keyboard.
    page.goto(f"{server}/ui/#/queue")
    page.fill("input[name=n]", "4")
    page.get_by_role("button", name="Select a new round of").click()
    status = page.locator("#queue-status")
    expect(status).to_contain_text("Image 1 of 4 · 0 labelled")
    first = int(page.locator("#queue-image").get_attribute("data-id") or 0)
    page.keyboard.press(key_of["red"])
    expect(status).to_contain_text("Image 2 of 4 · 1 labelled")
    second = int(page.locator("#queue-image").get_attribute("data-id") or 0)
    assert second != first
    page.keyboard.press("s")
    expect(status).to_contain_text("Image 3 of 4 · 1 labelled")
    page.keyboard.press("k")
    expect(status).to_contain_text("Image 2 of 4")
    assert _labels(ui_project)[first] == "red"
    assert second not in _labels(ui_project) or _labels(ui_project)[second] == before.get(second)

    # Map: box-select everything, then the points are drawn and selectable.
    page.goto(f"{server}/ui/#/map?colour=cluster")
    expect(page.locator(".map-side .legend button")).to_have_count(4)
    page.get_by_role("button", name="Box select").click()
    canvas = page.locator(".map-canvas-box canvas")
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=5)
    page.mouse.up()
    expect(page.locator("#selection-count")).to_contain_text(f"{total} selected")
    page.keyboard.press("Escape")
    expect(page.locator("#selectionbar")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "ui-map.png"))

    # Model page: the released probe's confusion matrix and its predicted-vs-actual grid.
    page.goto(f"{server}/ui/#/models")
    expect(page.locator("#model-list tbody tr")).to_have_count(1)
    expect(page.locator("#confusion tbody tr")).to_have_count(3)
    expect(page.locator("#confusion tbody td")).to_have_count(9)
    expect(page.locator("#prediction-grid figure.tile").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "ui-model.png"), full_page=True)

    assert problems == []


@pytest.mark.slow
@pytest.mark.integration
def test_the_page_asks_for_a_token_when_the_server_needs_one(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    from lensloop.catalog.tokens import create_token
    from lensloop.service import create_app
    from lensloop.service.auth import TokenAuth

    project = sized_project(tmp_path)
    with project.catalog.transaction() as session:
        token, _ = create_token(session, "browser")
    app = create_app(project, token_auth=TokenAuth(project), retrain=False)
    with _serve(app) as url:
        page = browser.new_page()
        problems = _watch(page)
        page.goto(f"{url}/ui/")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        page.fill("#token-input", "not-the-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#token-error")).to_have_text("That token is not valid.")
        page.fill("#token-input", token)
        page.get_by_role("button", name="Sign in").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("figure.tile")).to_have_count(2)
        expect(page.locator("#classbar kbd")).to_have_text(["1", "2"])
        # The session cookie lets <img> tags load: every thumbnail decoded.
        page.wait_for_function(
            "[...document.querySelectorAll('figure.tile img')].every(i => i.naturalWidth > 0)"
        )
        page.close()
    project.close()
    # The refused token logs one 401 in the console; nothing else may go wrong.
    assert [p for p in problems if "401" not in p] == []
