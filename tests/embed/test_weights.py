from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lensloop.embed.resnet import build_resnet
from lensloop.embed.weights import (
    KNOWN_WEIGHTS,
    expand_weights_alias,
    file_sha256,
    load_checkpoint,
    resolve_weights,
)
from lensloop.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(build_resnet("resnet18").state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture
def sha(checkpoint_bytes: bytes) -> str:
    return hashlib.sha256(checkpoint_bytes).hexdigest()


class FakeDownload:
    """The download seam: writes the test's bytes and counts calls."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.urls: list[str] = []

    def __call__(self, url: str, destination: Path) -> None:
        self.urls.append(url)
        destination.write_bytes(self.content)


def _cached_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in (cache_dir / "weights").rglob("*") if p.is_file())


def test_url_is_downloaded_once_into_the_cache(
    tmp_path: Path, checkpoint_bytes: bytes, sha: str
) -> None:
    url = f"https://download.example.org/models/resnet18-{sha[:8]}.pth"
    fake = FakeDownload(checkpoint_bytes)
    first = resolve_weights(url, cache_dir=tmp_path, download=fake)
    second = resolve_weights(url, cache_dir=tmp_path, download=fake)
    assert first == second
    assert fake.urls == [url]
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    assert first == tmp_path / "weights" / key / f"resnet18-{sha[:8]}.pth"
    assert _cached_files(tmp_path) == [first]  # no temporary file left behind
    state = load_checkpoint(first)
    assert len(state) == 122
    assert state["fc.weight"].shape == (1000, 512)


def test_torchvision_hash_tag_mismatch_deletes_the_download(
    tmp_path: Path, checkpoint_bytes: bytes, sha: str
) -> None:
    url = "https://download.example.org/models/resnet18-0badc0de.pth"
    with pytest.raises(ConfigError, match=rf"has sha256 {sha[:12]}\.\.\., expected 0badc0de"):
        resolve_weights(url, cache_dir=tmp_path, download=FakeDownload(checkpoint_bytes))
    assert _cached_files(tmp_path) == []
    # The real ImageNet URL carries its tag too, so a wrong file never passes for it.
    with pytest.raises(ConfigError, match="expected f37072fd"):
        resolve_weights(
            KNOWN_WEIGHTS["resnet18"][0],
            cache_dir=tmp_path,
            download=FakeDownload(checkpoint_bytes),
        )
    assert _cached_files(tmp_path) == []


def test_explicit_sha256(tmp_path: Path, checkpoint_bytes: bytes, sha: str) -> None:
    url = "https://example.org/weights/final.pt"  # no tag in the name
    fake = FakeDownload(checkpoint_bytes)
    with pytest.raises(ConfigError, match="expected " + "ab" * 32):
        resolve_weights(url, cache_dir=tmp_path, sha256="AB" * 32, download=fake)
    assert _cached_files(tmp_path) == []
    path = resolve_weights(url, cache_dir=tmp_path, sha256=sha.upper(), download=fake)
    assert file_sha256(path) == sha
    # An explicit sha256 takes precedence over the tag in the name.
    tagged = "https://example.org/weights/resnet18-0badc0de.pth"
    assert resolve_weights(tagged, cache_dir=tmp_path, sha256=sha[:10], download=fake).is_file()
    with pytest.raises(ConfigError, match="sha256 must be 8 to 64 hex digits"):
        resolve_weights(url, cache_dir=tmp_path, sha256="xyz", download=fake)


def test_damaged_cache_is_deleted_and_fetched_again(
    tmp_path: Path, checkpoint_bytes: bytes, sha: str
) -> None:
    url = f"https://example.org/resnet18-{sha[:8]}.pth"
    fake = FakeDownload(checkpoint_bytes)
    path = resolve_weights(url, cache_dir=tmp_path, download=fake)
    path.write_bytes(checkpoint_bytes[:1000])
    with pytest.raises(ConfigError, match="was deleted; the next run downloads it again"):
        resolve_weights(url, cache_dir=tmp_path, download=fake)
    assert not path.exists()
    assert resolve_weights(url, cache_dir=tmp_path, download=fake) == path
    assert len(fake.urls) == 2


def test_failed_or_empty_download_leaves_nothing(tmp_path: Path) -> None:
    def broken(url: str, destination: Path) -> None:
        destination.write_bytes(b"partial")
        raise ConfigError(f"could not download weights from {url}: connection reset")

    with pytest.raises(ConfigError, match="connection reset"):
        resolve_weights("https://example.org/w.pth", cache_dir=tmp_path, download=broken)
    with pytest.raises(ConfigError, match="produced no data"):
        resolve_weights("https://example.org/w.pth", cache_dir=tmp_path, download=FakeDownload(b""))
    assert _cached_files(tmp_path) == []


def test_local_paths(tmp_path: Path, checkpoint_bytes: bytes, sha: str) -> None:
    local = tmp_path / "resnet18-0badc0de.pth"  # a tag is only enforced on downloads
    local.write_bytes(checkpoint_bytes)
    assert resolve_weights(str(local), cache_dir=tmp_path) == local
    assert resolve_weights(local.as_uri(), cache_dir=tmp_path) == local
    assert resolve_weights(str(local), cache_dir=tmp_path, sha256=sha[:8]) == local
    with pytest.raises(ConfigError, match=f"weights file {local} has sha256"):
        resolve_weights(str(local), cache_dir=tmp_path, sha256="0" * 64)
    assert local.exists()  # a user's own file is never deleted
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match=f"weights file {missing} does not exist"):
        resolve_weights(str(missing), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        resolve_weights(str(tmp_path), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="got an empty string"):
        resolve_weights("  ", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="unsupported scheme 's3'"):
        resolve_weights("s3://bucket/w.pth", cache_dir=tmp_path)


def test_imagenet_alias() -> None:
    assert expand_weights_alias("imagenet", backbone="resnet50") == (
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        None,
    )
    assert expand_weights_alias("ImageNet", backbone="resnet18")[0].endswith("f37072fd.pth")
    assert expand_weights_alias("/w/model.pth", backbone="resnet18") == ("/w/model.pth", None)
    with pytest.raises(UnknownNameError, match="'vit'; valid names are: resnet18, resnet50"):
        expand_weights_alias("imagenet", backbone="vit")


@pytest.fixture
def http_server(checkpoint_bytes: bytes) -> Iterator[str]:
    content = checkpoint_bytes

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("missing.pth"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_default_downloader_over_http(tmp_path: Path, http_server: str, sha: str) -> None:
    path = resolve_weights(f"{http_server}/models/resnet18-{sha[:8]}.pth", cache_dir=tmp_path)
    assert file_sha256(path) == sha
    with pytest.raises(ConfigError, match="HTTP 404"):
        resolve_weights(f"{http_server}/models/missing.pth", cache_dir=tmp_path)
    assert _cached_files(tmp_path) == [path]


def test_load_checkpoint_unwraps_and_rejects_bad_files(tmp_path: Path) -> None:
    state = {"conv.weight": torch.ones(2, 3), "conv.bias": torch.zeros(2)}
    wrapped = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    loaded = load_checkpoint(wrapped)
    assert sorted(loaded) == ["conv.bias", "conv.weight"]
    torch.testing.assert_close(loaded["conv.weight"], state["conv.weight"])

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ConfigError, match=f"{garbage} is not a readable PyTorch checkpoint"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(wrapped.read_bytes()[:300])
    with pytest.raises(ConfigError, match=f"{truncated} is not a readable PyTorch checkpoint"):
        load_checkpoint(truncated)
    pickled_model = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), pickled_model)
    with pytest.raises(ConfigError, match=r"torch\.save\(model\.state_dict\(\), path\)"):
        load_checkpoint(pickled_model)
    not_weights = tmp_path / "numbers.pth"
    torch.save({"a": 1}, not_weights)
    with pytest.raises(ConfigError, match="entry 'a' holds int, not a tensor"):
        load_checkpoint(not_weights)
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
