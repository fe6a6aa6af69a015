"""A project's ``lensloop.toml``: its task, label schema and where its catalog lives.

Example of the file ``lensloop init`` writes::

    [project]
    name = "plankton"
    task = "classify"
    created_with = "0.1.0"

    [catalog]
    url = "sqlite:///catalog.sqlite"   # relative SQLite paths are inside the project folder

    [labels]
    classes = ["diatom", "dinoflagellate"]  # declared classes (may be empty)
    closed = true        # true: labels outside `classes` are refused; false: new ones are added
    depth = 2            # taxonomy level used as "the class" (absent: deepest level)

    [segment]            # optional, segment projects: label maps and measurements
    draw_order = ["box", "rock"]  # polygons are painted in this class order (containers first)
    unlabelled = "background"     # pixels no region covers: "background" or "void" (ignored)
    min_area = 50                 # fragments smaller than this (pixels) are not counted
    pixel_size = 0.1              # units per pixel for physical areas (absent: pixels only)
    summary = ["intact = fraction(rock, of=box+rock)", "fragments = count(rock)"]

    [tracking]           # optional: where training runs are tracked (MLflow)
    mlflow_uri = "http://mlflow.example.org:5000"  # a team server; "off" disables tracking
    # absent: runs/mlflow.db in the project when MLflow is installed, else the catalog only;
    # the environment variable LENSLOOP_MLFLOW_URI overrides it

A relative SQLite path in ``mlflow_uri`` (``sqlite:///runs/team.db``) is inside the project
folder, as for the catalog.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lensloop.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "TASKS",
    "CatalogConfig",
    "LabelsConfig",
    "ProjectConfig",
    "ProjectSection",
    "SegmentConfig",
    "Task",
    "TrackingConfig",
    "load_config",
    "save_config",
]

CONFIG_FILE = "lensloop.toml"
Task = Literal["classify", "segment", "count"]
TASKS: tuple[Task, ...] = ("classify", "segment", "count")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(_Section):
    """``[project]``: name, task and the lensloop version that created it."""

    name: str = Field(min_length=1)
    task: Task = "classify"
    created_with: str = ""


class CatalogConfig(_Section):
    """``[catalog]``: the database URL (SQLite file in the project by default)."""

    url: str = "sqlite:///catalog.sqlite"


class LabelsConfig(_Section):
    """``[labels]``: the declared classes and the taxonomy depth used as the class."""

    classes: list[str] = Field(default_factory=list)
    closed: bool = False
    depth: int | None = Field(default=None, ge=1)

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        duplicates = sorted({c for c in value if value.count(c) > 1})
        if duplicates:
            raise ValueError(f"classes are listed more than once: {', '.join(duplicates)}")
        return value


class SegmentConfig(_Section):
    """``[segment]``: how a segment project's regions become label maps, and what is measured.

    Attributes:
        draw_order: Classes in the order their polygons are painted (first at the bottom):
            a container such as ``box`` first, the classes inside it after, so it never
            paints over them. Empty: larger regions first (see
            :func:`lensloop.annotate.regions.rasterise`).
        unlabelled: What pixels no region covers are: ``background`` (the annotator drew
            every object) or ``void`` (ignored by training and scores).
        min_area: Fragments smaller than this many pixels are not counted as fragments.
        pixel_size: Physical units per pixel (e.g. mm); areas are then also reported in
            units squared.
        summary: Per-image summary scores, e.g. ``"intact = fraction(rock, of=box+rock)"``
            (:mod:`lensloop.tasks.segment.measure`); empty: each class's area fraction and
            fragment count.
    """

    draw_order: list[str] = Field(default_factory=list)
    unlabelled: Literal["background", "void"] = "background"
    min_area: int = Field(default=0, ge=0)
    pixel_size: float | None = Field(default=None, gt=0)
    summary: list[str] = Field(default_factory=list)


class TrackingConfig(_Section):
    """``[tracking]``: the MLflow tracking URI (see :mod:`lensloop.train.tracking`).

    ``None`` (the key absent) means the default: a local store in the project's ``runs/``
    folder when MLflow is installed, the catalog only when it is not. ``"off"`` disables
    tracking. The environment variable ``LENSLOOP_MLFLOW_URI`` takes precedence.
    """

    mlflow_uri: str | None = None

    @field_validator("mlflow_uri")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None


class ProjectConfig(_Section):
    """The whole ``lensloop.toml``."""

    project: ProjectSection
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


def load_config(path: Path) -> ProjectConfig:
    """Read and validate a ``lensloop.toml``.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or has invalid or unknown keys
            (the message names each offending key).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path} is invalid: {problems}") from exc


def save_config(config: ProjectConfig, path: Path) -> None:
    """Write a ``lensloop.toml`` atomically (a temp file renamed over the old one).

    Sections with nothing to write (``[tracking]`` without a URI) are left out.
    """
    data = config.model_dump(mode="json", exclude_none=True)
    if config.segment == SegmentConfig():
        del data["segment"]  # only segment projects that set something carry the section
    data = {key: value for key, value in data.items() if value != {}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    tmp.replace(path)
