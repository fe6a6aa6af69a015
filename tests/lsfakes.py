"""Label Studio test helpers: small labelled projects, results and a fake REST client."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from lensloop.annotate.rle import encode_brush
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest

#: Sizes of the images :func:`sized_project` ingests, by file name.
SIZES = {"wide.png": (200, 100), "small.png": (64, 48)}


def sized_project(root: Path, *, task: str = "classify", classes: Sequence[str] = ()) -> Project:
    """A project with two unlabelled images of known sizes (200x100 and 64x48)."""
    project = Project.init(root / "project", task=task, classes=list(classes) or ["cell", "debris"])  # type: ignore[arg-type]
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, (width, height) in SIZES.items():
        pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        PILImage.fromarray(pixels).save(images / name)
    ingest(project, [images], options=IngestOptions())
    return project


def release_coloured(project: Project, root: Path, *, unlabelled: Path | None = None) -> Project:
    """Coloured images of 3 classes (30% val), plus ``unlabelled``'s images; all embedded
    with the offline ``features`` backbone and a probe released as version 1."""
    from conftest import make_coloured_folder
    from lensloop.embed.engine import embed_project
    from lensloop.embed.registry import BackboneOptions, get_backbone
    from lensloop.train.config import TrainConfig
    from lensloop.train.probe import train_probe

    make_coloured_folder(root / "src")
    options = IngestOptions(labels_from_folders=True, split={"val": 0.3})
    ingest(project, [root / "src"], options=options)
    if unlabelled is not None:
        ingest(project, [unlabelled])
    backbones = BackboneOptions(cache_dir=project.settings.cache_dir, project_root=project.root)
    embed_project(project, get_backbone("features", backbones), workers=0)
    train_probe(project, TrainConfig(backbone="features"))
    return project


def image_ids(project: Project) -> dict[str, int]:
    """``{file name: image id}`` of the project's images."""
    from sqlalchemy import select

    from lensloop.catalog.models import Image

    with project.catalog.reader() as session:
        return {Path(uri).name: i for i, uri in session.execute(select(Image.id, Image.uri))}


def keypoint(x_pct: float, y_pct: float, label: str, *, rid: str = "k1") -> dict[str, Any]:
    return {
        "id": rid,
        "type": "keypointlabels",
        "from_name": "points",
        "to_name": "image",
        "value": {"x": x_pct, "y": y_pct, "width": 0.5, "keypointlabels": [label]},
    }


def choice(label: str, *, name: str = "class") -> dict[str, Any]:
    return {
        "id": f"c-{name}",
        "type": "choices",
        "from_name": name,
        "to_name": "image",
        "value": {"choices": [label]},
    }


def brush(mask: np.ndarray, label: str, *, rid: str = "b1") -> dict[str, Any]:
    height, width = mask.shape
    return {
        "id": rid,
        "type": "brushlabels",
        "from_name": "mask",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "value": {"format": "rle", "rle": encode_brush(mask), "brushlabels": [label]},
    }


def json_task(
    task_id: int,
    data: Mapping[str, Any],
    annotations: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A task of Label Studio's JSON export."""
    return {"id": task_id, "data": dict(data), "annotations": [dict(a) for a in annotations]}


def annotation(
    annotation_id: int,
    results: Sequence[Mapping[str, Any]],
    *,
    updated_at: str = "2026-11-20T10:00:00.000000Z",
    email: str = "ann@example.org",
    cancelled: bool = False,
) -> dict[str, Any]:
    return {
        "id": annotation_id,
        "completed_by": {"id": 1, "email": email},
        "result": [dict(r) for r in results],
        "was_cancelled": cancelled,
        "created_at": "2026-11-20T09:00:00.000000Z",
        "updated_at": updated_at,
        "lead_time": 4.5,
    }


class FakeClient:
    """An in-memory :class:`~lensloop.annotate.labelstudio.sync.LabelStudioClient`."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.storages: list[tuple[int, str]] = []
        self.exported: list[Any] = []

    def create_project(self, title: str, label_config: str) -> int:
        project_id = next(self._ids)
        self.projects[project_id] = {"title": title, "label_config": label_config}
        return project_id

    def update_project(self, project_id: int, *, title: str, label_config: str) -> None:
        self.projects[project_id] = {"title": title, "label_config": label_config}

    def ensure_local_storage(self, project_id: int, path: str) -> None:
        if (project_id, path) not in self.storages:
            self.storages.append((project_id, path))

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        ids = []
        for task in tasks:
            task_id = 1000 + len(self.tasks)
            self.tasks[task_id] = {
                "project": project_id,
                "data": dict(task["data"]),
                "predictions": list(task.get("predictions", [])),
            }
            ids.append(task_id)
        return ids

    def update_task(self, task_id: int, data: Mapping[str, Any]) -> None:
        self.tasks[task_id]["data"] = dict(data)

    def create_prediction(
        self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        self.tasks[task_id]["predictions"].append(
            {"result": result, "score": score, "model_version": model_version}
        )

    def export(self, project_id: int) -> list[Any]:
        return list(self.exported)

    def user_emails(self) -> dict[int, str]:
        return {1: "ann@example.org", 7: "seven@example.org"}
