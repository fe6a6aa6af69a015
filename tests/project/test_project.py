from __future__ import annotations

from pathlib import Path

import pytest

from lensloop.errors import CatalogError, ConfigError, LabelError, ProjectError
from lensloop.project import PROJECT_DIRS, Project, load_config
from lensloop.settings import Settings


def test_init_writes_config_catalog_and_folders(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "proj"
    with Project.init(root, task="count", classes=["cell", "debris"], settings=settings) as p:
        assert p.catalog.image_count() == 0
        assert p.catalog.url == f"sqlite:///{root / 'catalog.sqlite'}"
    config = load_config(root / "lensloop.toml")
    assert config.project.task == "count"
    assert config.project.name == "proj"
    assert config.labels.classes == ["cell", "debris"]
    assert config.labels.closed is True
    assert config.catalog.url == "sqlite:///catalog.sqlite"  # relative: the folder can move
    assert all((root / d).is_dir() for d in PROJECT_DIRS)


def test_project_folder_can_be_moved(tmp_path: Path, settings: Settings) -> None:
    Project.init(tmp_path / "a", settings=settings).close()
    (tmp_path / "a").rename(tmp_path / "b")
    with Project.open(tmp_path / "b", settings=settings) as project:
        assert project.catalog.image_count() == 0


def test_init_on_postgresql(db_url: str, tmp_path: Path, settings: Settings) -> None:
    with Project.init(tmp_path / "p", db_url=db_url, settings=settings) as project:
        assert project.catalog.dialect == db_url.split(":")[0].split("+")[0]
    with Project.open(tmp_path / "p", settings=settings) as project:
        assert project.catalog.image_count() == 0


def test_init_refuses_an_existing_project(tmp_path: Path, settings: Settings) -> None:
    Project.init(tmp_path / "p", settings=settings).close()
    with pytest.raises(ProjectError, match="already a lensloop project"):
        Project.init(tmp_path / "p", settings=settings)


def test_init_refuses_a_file(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ProjectError, match="is not a folder"):
        Project.init(tmp_path / "f", settings=settings)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"task": "detect"}, ConfigError, "unknown task 'detect'; valid tasks are: classify"),
        ({"classes": ["a", "a"]}, LabelError, "listed more than once: a"),
        ({"classes": ["a//b"]}, LabelError, "invalid class name ''"),
        ({"db_url": "oracle://x"}, ConfigError, "supported databases are"),
    ],
)
def test_init_validates_input(
    tmp_path: Path, settings: Settings, kwargs: dict[str, object], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        Project.init(tmp_path / "p", settings=settings, **kwargs)  # type: ignore[arg-type]
    # Nothing that looks like a project is left behind: init can simply be run again.
    assert not (tmp_path / "p" / "lensloop.toml").exists()


def test_open_errors(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ProjectError, match=r"no lensloop project at .*lensloop init"):
        Project.open(tmp_path, settings=settings)
    (tmp_path / "lensloop.toml").write_text("[project]\nname = 'x'\ntask = 'paint'\ncolour = 1\n")
    with pytest.raises(ConfigError, match=r"project.task: .*project.colour: Extra inputs"):
        Project.open(tmp_path, settings=settings)
    (tmp_path / "lensloop.toml").write_text("[project\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Project.open(tmp_path, settings=settings)


def test_open_with_missing_catalog(tmp_path: Path, settings: Settings) -> None:
    Project.init(tmp_path / "p", settings=settings).close()
    for leftover in (tmp_path / "p").glob("catalog.sqlite*"):
        leftover.unlink()
    with pytest.raises(CatalogError, match=r"catalog file .*catalog.sqlite not found"):
        Project.open(tmp_path / "p", settings=settings)
    assert not (tmp_path / "p" / "catalog.sqlite").exists()  # opening never creates one
