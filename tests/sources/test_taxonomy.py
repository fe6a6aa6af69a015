"""Taxonomy catalogues against a real HTTP server on 127.0.0.1 (flaky, missing, slow URLs)."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage
from typer.testing import CliRunner

from conftest import write_png
from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import Image
from lensloop.errors import SourceError
from lensloop.project import Project, project_status
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.settings import Settings
from lensloop.sources import get_source_format
from lensloop.sources import taxonomy as taxonomy_module
from lensloop.sources.base import SourceContext
from lensloop.sources.remote import RemoteOptions
from lensloop.sources.taxonomy import (
    USER_AGENT,
    DownloadPolicy,
    discover_taxonomy,
    load_catalogue,
    parse_records,
)

#: Fast retries, so the tests do not wait seconds for backoff.
FAST = DownloadPolicy(retries=3, backoff_s=0.01, max_backoff_s=5.0)

EHUX = ("Coccolithophyceae", "Isochrysidales", "Noelaerhabdaceae", "Emiliania huxleyi")
GEPH = ("Coccolithophyceae", "Isochrysidales", "Noelaerhabdaceae", "Gephyrocapsa oceanica")
CALC = ("Coccolithophyceae", "Coccolithales", "Calcidiscaceae", "Calcidiscus leptoporus")


def _png(path: str) -> bytes:
    """A small PNG whose content depends on the URL path (distinct paths differ)."""
    rng = np.random.default_rng(zlib.crc32(path.encode()))
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class CatalogueServer:
    """A web server for catalogues and images, counting what it is asked.

    Routes: ``/img/NAME`` (a PNG after a short delay), ``/flaky/NAME`` (503 twice, then the
    PNG), ``/busy/NAME`` (429 with ``Retry-After: 1`` once), ``/missing/NAME`` (always 404),
    ``/slow/NAME`` (the PNG after 0.4 s), ``/hang/NAME`` (the PNG after 3 s) and
    ``/catalogue.json`` (whatever :attr:`catalogue` holds).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.hits: Counter[str] = Counter()
        self.agents: set[str] = set()
        self.catalogue: list[dict[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.peak = 0

    def image_hits(self) -> int:
        """Requests for images (not the catalogue)."""
        return sum(n for path, n in self.hits.items() if path != "/catalogue.json")

    def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        kind = path.split("/")[1]
        hits = self.hits[path]
        if path == "/catalogue.json":
            return 200, {"Content-Type": "application/json"}, json.dumps(self.catalogue).encode()
        if kind == "flaky" and hits <= 2:
            return 503, {}, b"try again"
        if kind == "busy" and hits <= 1:
            return 429, {"Retry-After": "1"}, b"slow down"
        if kind == "missing":
            return 404, {}, b"no such image"
        if kind in ("img", "flaky", "busy", "slow", "hang"):
            delay = {"slow": 0.4, "hang": 3.0}.get(kind, 0.05)
            time.sleep(delay)
            return 200, {"Content-Type": "image/png"}, _png(path)
        return 404, {}, b"unknown route"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.hits[self.path] += 1
                    server.agents.add(self.headers.get("User-Agent", ""))
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    status, headers, body = server._respond(self.path)
                finally:
                    # Counted down before the reply is sent: the server never counts more
                    # requests in flight than the client has open.
                    with server.lock:
                        server.in_flight -= 1
                try:
                    self.send_response(status)
                    for name, value in {**headers, "Content-Length": str(len(body))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> CatalogueServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to 127.0.0.1 directly whatever proxy the environment names."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server() -> Iterator[CatalogueServer]:
    with CatalogueServer() as running:
        yield running


def _context(tmp_path: Path, **changes: Any) -> SourceContext:
    fields: dict[str, Any] = {
        "root": tmp_path,
        "output": (tmp_path / "out").as_posix(),
        "cache_dir": tmp_path / "downloads",
        "remote": RemoteOptions(cache_dir=tmp_path / "remote", timeout_s=10.0),
        "concurrency": 3,
    }
    fields.update(changes)
    return SourceContext(**fields)


def _record(path: tuple[str, ...], images: list[str], **extra: Any) -> dict[str, Any]:
    return {"hierarchy": list(path[:-1]), "taxon": path[-1], "images": images, **extra}


def _write(tmp_path: Path, records: list[dict[str, Any]], name: str = "catalogue.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_downloads_politely_with_retries_and_a_cache(
    server: CatalogueServer, tmp_path: Path
) -> None:
    url = server.url
    ehux = [f"{url}/img/ehux_{i}.png" for i in range(6)] + [f"{url}/flaky/ehux.png"]
    geph = [f"{url}/img/geph_{i}.png" for i in range(3)] + [f"{url}/slow/geph.png"]
    missing = f"{url}/missing/calc.png"
    catalogue = _write(
        tmp_path,
        [
            _record(EHUX, ehux, author="(Lohmann 1902) Hay & Mohler", page=7),
            _record(GEPH, geph),
            _record(CALC, [missing]),
        ],
    )

    found = discover_taxonomy([catalogue], _context(tmp_path), policy=FAST)

    assert 2 <= server.peak <= 3  # concurrent, never more than --concurrency
    assert server.hits["/flaky/ehux.png"] == 3  # 503, 503, then 200
    assert server.hits["/missing/calc.png"] == 1  # a 404 is not retried
    assert server.agents == {USER_AGENT}
    assert "lensloop" in USER_AGENT
    assert {i.uri: i.label for i in found.items} == {
        **dict.fromkeys(ehux, EHUX),
        **dict.fromkeys(geph, GEPH),
    }
    assert found.skipped == [(missing, "download failed: HTTP 404 Not Found")]
    assert found.counts["images downloaded"] == 11
    assert "images from download cache" not in found.counts
    assert found.counts["downloads failed"] == 1
    assert found.counts["download retries"] == 2
    assert found.counts["taxonomy records"] == 3
    first = next(i for i in found.items if i.uri == ehux[0])
    assert first.meta["taxonomy"] == {
        "taxon": "Emiliania huxleyi",
        "hierarchy": list(EHUX[:-1]),
        "catalogue": catalogue.as_posix(),
        "record": 0,
        "image": ehux[0],
        "url": ehux[0],
        "fields": {"author": "(Lohmann 1902) Hay & Mohler", "page": 7},
    }
    # The bytes sit in the fetch cache that reads the URL later.
    cached = _context(tmp_path).remote.cache_path(ehux[0])
    assert cached is not None
    assert cached.read_bytes() == _png("/img/ehux_0.png")

    server.reset()
    again = discover_taxonomy([catalogue], _context(tmp_path), policy=FAST)
    assert server.hits == Counter({"/missing/calc.png": 1})  # only the failure is retried
    assert [i.uri for i in again.items] == [i.uri for i in found.items]
    assert "images downloaded" not in again.counts
    assert again.counts["images from download cache"] == 11


def test_retry_after_is_honoured(server: CatalogueServer, tmp_path: Path) -> None:
    catalogue = _write(tmp_path, [_record(EHUX, [f"{server.url}/busy/ehux.png"])])
    started = time.perf_counter()
    found = discover_taxonomy([catalogue], _context(tmp_path), policy=FAST)
    assert time.perf_counter() - started >= 0.9  # Retry-After: 1, not the 0.01 s backoff
    assert server.hits["/busy/ehux.png"] == 2
    assert len(found.items) == 1
    assert found.counts["download retries"] == 1


def test_timeouts_are_retried_then_reported(server: CatalogueServer, tmp_path: Path) -> None:
    hang = f"{server.url}/hang/ehux.png"
    catalogue = _write(tmp_path, [_record(EHUX, [hang, f"{server.url}/img/ok.png"])])
    policy = DownloadPolicy(retries=1, backoff_s=0.01, timeout_s=0.3)
    found = discover_taxonomy([catalogue], _context(tmp_path), policy=policy)
    assert [i.uri for i in found.items] == [f"{server.url}/img/ok.png"]
    [(uri, why)] = found.skipped
    assert uri == hang
    assert "timed out" in why
    assert "gave up after 2 attempts" in why
    assert server.hits["/hang/ehux.png"] == 2


def test_relative_and_local_images(tmp_path: Path) -> None:
    write_png(tmp_path / "cat" / "thumbs" / "ehux.png", seed=1)
    absolute = write_png(tmp_path / "elsewhere" / "geph.png", seed=2)
    catalogue = _write(
        tmp_path / "cat",
        [
            _record(EHUX, ["thumbs/ehux.png", "thumbs/gone.png"]),
            _record(GEPH, [absolute.as_posix(), "thumbs/ehux.png"]),
            _record(CALC, []),
        ],
    )
    found = discover_taxonomy([catalogue], _context(tmp_path))
    ehux = (tmp_path / "cat" / "thumbs" / "ehux.png").resolve().as_posix()
    assert [(i.uri, i.label) for i in found.items] == [(ehux, EHUX), (absolute.as_posix(), GEPH)]
    assert "url" not in found.items[0].meta["taxonomy"]
    assert found.skipped == [
        (ehux, f"listed under {'/'.join(EHUX)} and again under {'/'.join(GEPH)}; kept the first"),
        ((tmp_path / "cat" / "thumbs" / "gone.png").resolve().as_posix(), "file not found"),
    ]
    assert found.counts["taxonomy records without images"] == 1
    assert "images downloaded" not in found.counts


def test_remote_catalogue_resolves_relative_urls(server: CatalogueServer, tmp_path: Path) -> None:
    server.catalogue = [_record(EHUX, ["img/a.png", "/img/b.png"])]
    found = discover_taxonomy([f"{server.url}/catalogue.json"], _context(tmp_path), policy=FAST)
    assert [i.uri for i in found.items] == [f"{server.url}/img/a.png", f"{server.url}/img/b.png"]
    assert server.hits["/catalogue.json"] == 1


def test_copy_store_writes_once_under_output(server: CatalogueServer, tmp_path: Path) -> None:
    url = f"{server.url}/img/ehux.png"
    catalogue = _write(tmp_path, [_record(EHUX, [url])])
    context = _context(tmp_path, store="copy")
    [item] = discover_taxonomy([catalogue], context, policy=FAST).items
    assert item.uri.startswith((tmp_path / "out" / "taxonomy").as_posix())
    assert Path(item.uri).read_bytes() == _png("/img/ehux.png")
    assert item.meta["taxonomy"]["url"] == url
    server.reset()
    [again] = discover_taxonomy([catalogue], context, policy=FAST).items
    assert again.uri == item.uri
    assert server.image_hits() == 0


def test_without_a_remote_cache_items_point_at_the_download(
    server: CatalogueServer, tmp_path: Path
) -> None:
    url = f"{server.url}/img/ehux.png"
    catalogue = _write(tmp_path, [_record(EHUX, [url])])
    context = _context(tmp_path, remote=RemoteOptions(cache_dir=None, timeout_s=10.0))
    [item] = discover_taxonomy([catalogue], context, policy=FAST).items
    assert Path(item.uri).is_relative_to(tmp_path / "downloads")
    assert item.meta["taxonomy"]["url"] == url


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([{"hierarchy": ["A"], "images": []}], "record 0, field taxon: Field required"),
        (
            [{"taxon": "ok"}, {"taxon": "B", "hierarchy": ["A", None]}],
            "record 1 ('B'), field hierarchy[1]: Input should be a valid string",
        ),
        ([{"taxon": "A/B"}], "record 0 ('A/B'), field taxon: Value error, must not contain '/'"),
        ([{"taxon": "  "}], "field taxon: Value error, must not be empty"),
        ([{"taxon": "A", "images": "x.png"}], "field images: Input should be a valid list"),
        ([{"taxon": "A", "images": [""]}], "field images[0]: Value error, must not be empty"),
        (["Emiliania"], "record 0, field (the record itself)"),
        ({"taxon": "A"}, "must be a JSON list of records"),
    ],
)
def test_invalid_records_are_named(records: Any, expected: str, tmp_path: Path) -> None:
    catalogue = _write(tmp_path, records)
    with pytest.raises(SourceError, match="taxonomy catalogue") as caught:
        load_catalogue(catalogue)
    assert expected in str(caught.value)
    assert catalogue.as_posix() in str(caught.value)


def test_unreadable_catalogues(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[{]")
    with pytest.raises(SourceError, match="is not valid JSON"):
        load_catalogue(tmp_path / "bad.json")
    with pytest.raises(SourceError, match="cannot read taxonomy catalogue"):
        load_catalogue(tmp_path / "nope.json")


def test_extra_fields_and_spaces() -> None:
    [record] = parse_records(
        [{"hierarchy": [" Coccolithophyceae "], "taxon": "Emiliania huxleyi ", "rank": "sp"}],
        source="x.json",
    )
    assert record.class_path == ("Coccolithophyceae", "Emiliania huxleyi")
    assert record.fields == {"rank": "sp"}


# -- through ingest and the CLI -----------------------------------------------------------


def _catalogue_for_ingest() -> list[dict[str, Any]]:
    return [
        _record(EHUX, ["img/ehux_0.png", "img/ehux_1.png", "flaky/ehux.png"], author="Hay"),
        _record(GEPH, ["img/geph_0.png"]),
        _record(CALC, ["img/calc_0.png", "missing/calc.png"]),
    ]


def test_ingest_records_full_class_paths_and_rolls_up(
    server: CatalogueServer, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(taxonomy_module, "DEFAULT_POLICY", FAST)
    server.catalogue = _catalogue_for_ingest()
    source = f"{server.url}/catalogue.json"
    options = IngestOptions(source_format="taxonomy", concurrency=2, workers=0)
    assert get_source_format("taxonomy") is not None

    report = ingest(project, [source], options=options)

    assert (report.discovered, report.added, report.labelled, report.failed) == (5, 5, 5, [])
    assert report.skipped == [
        (f"{server.url}/missing/calc.png", "download failed: HTTP 404 Not Found")
    ]
    assert report.counts["images downloaded"] == 5
    assert server.peak <= 2
    # Decoding during ingest read the fetch cache: one request per image, plus retries.
    assert server.hits["/img/ehux_0.png"] == 1
    assert server.hits["/flaky/ehux.png"] == 3
    with project.catalog.reader() as session:
        rows = {i.uri: i for i in session.scalars(sa.select(Image))}
        paths = _paths_by_uri(session)
    assert paths == {
        f"{server.url}/img/ehux_0.png": "/".join(EHUX),
        f"{server.url}/img/ehux_1.png": "/".join(EHUX),
        f"{server.url}/flaky/ehux.png": "/".join(EHUX),
        f"{server.url}/img/geph_0.png": "/".join(GEPH),
        f"{server.url}/img/calc_0.png": "/".join(CALC),
    }
    meta = rows[f"{server.url}/img/ehux_0.png"].meta["taxonomy"]
    assert (meta["taxon"], meta["fields"]) == ("Emiliania huxleyi", {"author": "Hay"})

    server.reset()
    again = ingest(project, [source], options=IngestOptions(source_format="taxonomy", depth=2))
    assert (again.added, again.already_in_catalog) == (0, 5)
    assert server.image_hits() == 1  # the 404 only
    assert project.config.labels.depth == 2
    status = project_status(project)
    assert [(c["path"], c["labelled_images"]) for c in status["labels"]["classes"]] == [
        ("Coccolithophyceae/Coccolithales", 1),
        ("Coccolithophyceae/Isochrysidales", 4),
    ]


def _paths_by_uri(session: Any) -> dict[str, str]:
    uris = dict(session.execute(sa.select(Image.id, Image.uri)).all())
    return {uris[image_id]: path for image_id, path in current_class_paths(session).items()}


@pytest.fixture
def cli_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process CLI runs with the user cache in the test's folder; logging restored."""
    from lensloop.cli._app import _State

    monkeypatch.setattr(_State, "settings", Settings(cache_dir=tmp_path / "cache"))
    monkeypatch.setattr(taxonomy_module, "DEFAULT_POLICY", FAST)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("cli_settings")
def test_cli_ingest_with_depth(server: CatalogueServer, tmp_path: Path) -> None:
    from lensloop.cli import app

    catalogue = _write(tmp_path, _absolute(_catalogue_for_ingest(), server.url))
    runner = CliRunner()
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0

    refused = runner.invoke(app, ["ingest", str(project), str(catalogue), "--depth", "2"])
    assert refused.exit_code == 2
    message = re.sub(r"[\s│╭╮╰╯─]+", " ", refused.output)  # unwrap rich's error panel
    assert "--depth needs --labels-from-folders (or --format taxonomy)" in message

    args = ["ingest", str(project), str(catalogue), "--format", "taxonomy", "--depth", "2"]
    result = runner.invoke(app, [*args, "--concurrency", "2", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "added" in result.output
    assert "missing/calc.png" in result.output
    assert server.peak <= 2
    with Project.open(project, settings=Settings(cache_dir=tmp_path / "cache")) as opened:
        assert opened.config.labels.depth == 2
        classes = project_status(opened)["labels"]["classes"]
    assert [(c["path"], c["labelled_images"]) for c in classes] == [
        ("Coccolithophyceae/Coccolithales", 1),
        ("Coccolithophyceae/Isochrysidales", 4),
    ]


def _absolute(records: list[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    return [{**r, "images": [f"{base}/{ref}" for ref in r["images"]]} for r in records]
