"""Shared fixtures: databases (SQLite and a real PostgreSQL), tiny images, projects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
from PIL import Image as PILImage

from lensloop.project import Project
from lensloop.settings import Settings
from servers import LabelStudioServer, PostgresServer, labelstudio_server, postgres_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL server on 127.0.0.1 for the whole test session."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def ls_server() -> Iterator[LabelStudioServer]:
    """One throw-away Label Studio on 127.0.0.1 for the whole test session (~30 s to start)."""
    with labelstudio_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog database URL: SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"t_{uuid4().hex[:16]}")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's torch code on one thread: two on a busy 2-core machine make small
    convolutions ~50x slower (spin-waits). Use with ``pytest.mark.usefixtures``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with the user cache inside the test's temp folder."""
    return Settings(cache_dir=tmp_path / "cache")


@pytest.fixture
def project(tmp_path: Path, settings: Settings) -> Iterator[Project]:
    """A fresh classification project on SQLite."""
    with Project.init(tmp_path / "project", settings=settings) as proj:
        yield proj


def write_png(path: Path, *, seed: int, size: int = 16, mode: str = "RGB") -> Path:
    """Write a small random PNG whose content depends on ``seed`` (distinct seeds differ)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    shape = (size, size, channels) if channels > 1 else (size, size)
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


def make_image_folder(root: Path, layout: dict[str, int], *, seed: int = 0) -> list[Path]:
    """Write an ImageFolder tree: ``{"a/b": 3}`` puts 3 distinct PNGs in ``root/a/b``."""
    paths = []
    counter = seed * 100_000
    for folder, count in layout.items():
        for index in range(count):
            counter += 1
            paths.append(write_png(root / folder / f"img_{index:04d}.png", seed=counter))
    return paths


def lensloop(*args: str | Path, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `lensloop` CLI in a subprocess (output uncoloured, 200 columns)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    if cache is not None:
        env["LENSLOOP_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "lensloop", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


COLOURS = {"blue": (40, 40, 200), "green": (40, 200, 40), "red": (200, 40, 40)}


def make_coloured_folder(root: Path, per_class: int = 8) -> None:
    """Noisy images whose mean colour gives away their class (so simple backbones work)."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        for index in range(per_class):
            noise = rng.normal(0, 30, size=(16, 16, 3))
            pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
            path = root / name / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(pixels).save(path)
