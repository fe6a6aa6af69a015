"""Remote images: S3 prefixes, web URLs and URL lists; reference and copy; failures mid-run.

The S3 tests run against moto's real server on 127.0.0.1 (``tests/s3server.py``), the web
tests against a static ``http.server`` in a thread.
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import make_coloured_folder, make_image_folder, write_png
from fakes import MeanColourBackbone
from lensloop.catalog.models import Image, IngestFailure
from lensloop.embed.engine import embed_project
from lensloop.errors import SourceError
from lensloop.imaging import read_image
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.settings import Settings
from lensloop.sources import discover_files
from lensloop.sources.remote import RemoteOptions, copy_destination, fetch_bytes
from s3server import S3Server, aws_credentials, s3_server, web_server
from servers import LOOPBACK, free_port

LAYOUT = {"a": 3, "b/c": 2}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_credentials(monkeypatch, tmp_path)


def _bucket() -> str:
    return f"lensloop-{uuid.uuid4().hex[:12]}"


def _uploaded(s3: S3Server, tmp_path: Path) -> tuple[str, Path]:
    """A local ImageFolder tree (plus a CSV and a hidden file) uploaded to a new bucket."""
    local = tmp_path / "local"
    make_image_folder(local, LAYOUT)
    (local / "notes.csv").write_text("x\n")
    write_png(local / ".hidden" / "x.png", seed=99)
    bucket = _bucket()
    s3.upload_folder(local, bucket, "survey/2024")
    return f"s3://{bucket}/survey/2024", local


def _open(tmp_path: Path, s3: S3Server, name: str = "project", **more: float) -> Project:
    settings = Settings(cache_dir=tmp_path / "cache", s3_endpoint_url=s3.url, **more)
    return Project.init(tmp_path / name, settings=settings)


def _uris(project: Project) -> list[str]:
    with project.catalog.reader() as session:
        return list(session.scalars(select(Image.uri).order_by(Image.uri)))


def _failures(project: Project) -> dict[str, str]:
    with project.catalog.reader() as session:
        return {f.uri: f.reason for f in session.scalars(select(IngestFailure))}


# -- without a server ---------------------------------------------------------------------


def test_copy_destination_keeps_the_key_path() -> None:
    assert copy_destination("s3://b/x/y.png", "/out/") == "/out/b/x/y.png"
    assert copy_destination("https://h:8000/p/q.tif?v=1", "s3://c/k") == "s3://c/k/h_8000/p/q.tif"
    assert copy_destination("https://h/../../etc/z.png", "/out") == "/out/h/etc/z.png"
    with pytest.raises(ValueError, match="local path"):
        copy_destination("/data/a.png", "/out")
    with pytest.raises(ValueError, match="names no object"):
        copy_destination("https://h/", "/out")


def test_a_local_url_list_names_urls_and_local_files(tmp_path: Path) -> None:
    image = write_png(tmp_path / "imgs" / "one.png", seed=1)
    listing = tmp_path / "list.urls"
    listing.write_text(
        "# images\n\nhttps://example.org/a.png\nimgs/one.png\ns3://b/k/c.tif\n"
        "https://example.org/a.png\n"
    )
    found = discover_files([listing])
    assert [i.uri for i in found.items] == [
        "https://example.org/a.png",
        image.resolve().as_posix(),
        "s3://b/k/c.tif",
    ]
    assert found.skipped == []


def test_a_missing_local_source_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source not found"):
        discover_files([tmp_path / "nope.txt", "s3://bucket/never-listed"])


def test_a_silent_web_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        url = f"http://{LOOPBACK}:{listener.getsockname()[1]}/a.png"
        options = RemoteOptions(cache_dir=tmp_path / "cache", timeout_s=0.5, retries=2)
        started = time.monotonic()
        with pytest.raises(OSError, match="cannot fetch"):
            fetch_bytes(url, options)
        assert time.monotonic() - started < 10
    assert [p for p in tmp_path.glob("cache/**/*") if p.is_file()] == []  # nothing cached


# -- S3 -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_lists_a_prefix_recursively_with_folder_levels(s3: S3Server, tmp_path: Path) -> None:
    prefix, _ = _uploaded(s3, tmp_path)
    found = discover_files([prefix, prefix + "/a/img_0000.png"], remote=RemoteOptions(s3.url))
    assert [(i.uri.removeprefix(prefix), i.class_path) for i in found.items] == [
        ("/a/img_0000.png", ("a",)),
        ("/a/img_0001.png", ("a",)),
        ("/a/img_0002.png", ("a",)),
        ("/b/c/img_0000.png", ("b", "c")),
        ("/b/c/img_0001.png", ("b", "c")),
    ]
    assert found.skipped == [(prefix + "/notes.csv", "not an image file name (.csv)")]
    single = discover_files([prefix + "/b/c/img_0001.png"], remote=RemoteOptions(s3.url))
    assert [(i.uri, i.class_path) for i in single.items] == [(prefix + "/b/c/img_0001.png", ())]


@pytest.mark.integration
def test_listing_errors_say_what_to_fix(s3: S3Server, tmp_path: Path) -> None:
    prefix, _ = _uploaded(s3, tmp_path)
    options = RemoteOptions(s3.url, timeout_s=2, retries=1)
    with pytest.raises(SourceError, match=r"not found.*LENSLOOP_S3_ENDPOINT_URL"):
        discover_files([f"s3://{_bucket()}/x"], remote=options)
    with pytest.raises(SourceError, match="nothing found under"):
        discover_files([prefix + "/typo"], remote=options)
    down = RemoteOptions(f"http://{LOOPBACK}:{free_port()}", timeout_s=2, retries=1)
    with pytest.raises(SourceError, match=r"cannot reach the store.*LENSLOOP_S3_ENDPOINT_URL"):
        discover_files([prefix], remote=down)


@pytest.mark.integration
def test_ingest_by_reference_reads_the_same_pixels(s3: S3Server, tmp_path: Path) -> None:
    prefix, local = _uploaded(s3, tmp_path)
    with _open(tmp_path, s3) as project:
        report = ingest(project, [prefix], options=IngestOptions(labels_from_folders=True))
        assert (report.added, report.labelled, report.failed) == (5, 5, [])
        uris = _uris(project)
        assert all(uri.startswith(prefix + "/") for uri in uris)
        with project.catalog.reader() as session:
            rows = session.execute(select(Image.id, Image.uri)).all()
        for image_id, uri in rows:
            original = read_image(local / uri.removeprefix(prefix + "/"))
            np.testing.assert_array_equal(project.read_image(image_id), original)
        again = ingest(project, [prefix], options=IngestOptions(labels_from_folders=True))
        assert (again.added, again.already_in_catalog) == (0, 5)
        assert _uris(project) == uris


@pytest.mark.integration
def test_copy_mode_copies_once_locally_or_to_a_bucket(s3: S3Server, tmp_path: Path) -> None:
    prefix, local = _uploaded(s3, tmp_path)
    bucket = prefix.removeprefix("s3://").split("/")[0]
    with _open(tmp_path, s3) as project:
        report = ingest(project, [prefix], options=IngestOptions(store="copy"))
        assert (report.added, report.failed) == (5, [])
        copies = project.root / "images" / bucket / "survey" / "2024"
        assert _uris(project) == sorted(p.as_posix() for p in copies.rglob("*.png"))
        for copy in copies.rglob("*.png"):
            assert copy.read_bytes() == (local / copy.relative_to(copies)).read_bytes()
        again = ingest(project, [prefix], options=IngestOptions(store="copy"))
        assert (again.added, again.already_in_catalog, again.failed) == (0, 5, [])

    target = _bucket()
    s3.client().create_bucket(Bucket=target)
    with _open(tmp_path, s3, "second") as project:
        options = IngestOptions(store="copy", output=f"s3://{target}/copies")
        assert ingest(project, [prefix], options=options).added == 5
        uris = _uris(project)
        assert uris[0] == f"s3://{target}/copies/{bucket}/survey/2024/a/img_0000.png"
        listed = s3.client().list_objects_v2(Bucket=target)["Contents"]
        assert sorted(f"s3://{target}/{o['Key']}" for o in listed) == uris
        assert ingest(project, [prefix], options=options).added == 0


@pytest.mark.integration
def test_thumbnails_are_published_to_a_bucket(s3: S3Server, tmp_path: Path) -> None:
    prefix, _ = _uploaded(s3, tmp_path)
    target = _bucket()
    s3.client().create_bucket(Bucket=target)
    settings = Settings(
        cache_dir=tmp_path / "cache",
        s3_endpoint_url=s3.url,
        thumbnails_uri=f"s3://{target}/thumbs",
    )
    with Project.init(tmp_path / "project", settings=settings) as project:
        ingest(project, [prefix + "/a"])
        path = project.thumbnail(1, size=8)
        key = f"thumbs/{path.relative_to(project.thumbnails_dir).as_posix()}"
        body = s3.client().get_object(Bucket=target, Key=key)["Body"].read()
        assert body == path.read_bytes()


@pytest.mark.integration
def test_a_thumbnail_not_published_is_still_served(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix, _ = _uploaded(s3, tmp_path)
    settings = Settings(
        cache_dir=tmp_path / "cache",
        s3_endpoint_url=s3.url,
        thumbnails_uri=f"s3://{_bucket()}/thumbs",  # no such bucket
    )
    with Project.init(tmp_path / "project", settings=settings) as project:
        ingest(project, [prefix + "/a"])
        path = project.thumbnail(1, size=8)
        assert path.is_file()
        assert "not published" in caplog.text


# -- the web ------------------------------------------------------------------------------


@pytest.mark.integration
def test_https_urls_and_lists_with_a_cache(tmp_path: Path, settings: Settings) -> None:
    site = tmp_path / "site"
    images = make_image_folder(site, {"img": 3})
    with web_server(site) as web, Project.init(tmp_path / "p", settings=settings) as project:
        urls = [f"{web.url}/img/{p.name}" for p in images]
        (site / "list.txt").write_text("\n".join(urls[1:]) + "\n")
        report = ingest(project, [urls[0], f"{web.url}/list.txt"])
        assert (report.added, report.failed) == (3, [])
        assert _uris(project) == sorted(urls)
        asked = len(web.requests)
        for image_id in (1, 2, 3):
            project.read_image(image_id)
        assert len(web.requests) == asked  # read from the cache, the server is not asked
        np.testing.assert_array_equal(project.read_image(1), read_image(images[0]))


# -- failures in the middle of a run ------------------------------------------------------


#: Projects try each request once here (botocore's backoff between three attempts takes
#: seconds per image once the endpoint is down).
ONCE = {"remote_timeout_s": 5.0, "remote_retries": 1}


@pytest.fixture
def flaky() -> Iterator[S3Server]:
    """A server of its own, to be stopped in the middle of a run."""
    with s3_server() as server:
        yield server


@pytest.mark.integration
def test_an_endpoint_failing_mid_ingest_and_embed_resumes(flaky: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "local"
    make_image_folder(local, {"x": 8})
    bucket = _bucket()
    flaky.upload_folder(local, bucket, "run")
    prefix = f"s3://{bucket}/run"
    with _open(tmp_path, flaky, **ONCE) as project:
        project_remote = project.remote

        def stop_after_three(done: int, total: int) -> None:
            if done == 3:
                flaky.stop()

        options = IngestOptions(batch_size=2, workers=0)
        report = ingest(project, [prefix], options=options, progress=stop_after_three)
        assert report.added == 3
        assert len(report.failed) == 5
        assert _uris(project) == [f"{prefix}/x/img_{i:04d}.png" for i in range(3)]
        failures = _failures(project)
        assert sorted(failures) == [f"{prefix}/x/img_{i:04d}.png" for i in range(3, 8)]
        assert all("cannot read file" in reason for reason in failures.values())
        cached = sorted(project_remote.cache_dir.rglob("*")) if project_remote.cache_dir else []
        assert len([c for c in cached if c.is_file()]) == 3  # nothing partial was cached

        flaky.start()
        again = ingest(project, [prefix], options=options)
        assert (again.added, again.already_in_catalog, again.failed) == (5, 3, [])
        assert _uris(project) == [f"{prefix}/x/img_{i:04d}.png" for i in range(8)]
        assert _failures(project) == {}
        with project.catalog.reader() as session:
            assert session.scalar(select(func.count(func.distinct(Image.sha256)))) == 8

        # Embedding with the endpoint down: what is cached embeds, the rest is reported.
        assert project_remote.cache_dir is not None
        for uri in _uris(project)[5:]:
            path = project_remote.cache_path(uri)
            assert path is not None
            path.unlink()
        flaky.stop()
        first = embed_project(project, MeanColourBackbone(), workers=0)
        assert first.embedded == 5
        assert sorted(uri for _, uri, _ in first.failed) == _uris(project)[5:]
        flaky.start()
        second = embed_project(project, MeanColourBackbone(), workers=0)
        assert (second.embedded, second.already_embedded, second.failed) == (3, 5, [])
        assert project.embeddings("fake-mean")[0].tolist() == list(range(1, 9))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_an_image_model_predicts_s3_images_and_resumes(flaky: S3Server, tmp_path: Path) -> None:
    from lensloop.train.config import TrainConfig
    from lensloop.train.finetune import train_finetune
    from lensloop.train.inference import init_model, predict_project

    local = tmp_path / "local"
    make_coloured_folder(local, per_class=4)
    bucket = _bucket()
    flaky.upload_folder(local, bucket, "colours")
    with _open(tmp_path, flaky, **ONCE) as project:
        options = IngestOptions(labels_from_folders=True, split={"val": 0.3}, workers=0)
        assert ingest(project, [f"s3://{bucket}/colours"], options=options).added == 12
        config = TrainConfig(
            method="finetune",
            arch="resnet18",
            weights="none",
            input_size=32,
            epochs=1,
            batch_size=16,  # one batch: a trailing batch of 1 trips BatchNorm (see report)
        )
        train_finetune(project, config)
        model = init_model("latest", project=project)
        assert model.kind == "image"
        cache = project.remote.cache_dir
        assert cache is not None
        shutil.rmtree(cache)
        for uri in _uris(project)[:4]:  # these four are cached, the rest needs the endpoint
            fetch_bytes(uri, project.remote)
        flaky.stop()
        first = predict_project(project, model)
        assert first.predicted == 4
        flaky.start()
        second = predict_project(project, model)
        assert (second.predicted, second.already) == (8, 4)
