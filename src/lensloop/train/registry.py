"""The project's model registry: numbered versions with aliases.

Every release is a version (1, 2, ...) with its artefacts in ``models/v<N>/`` (ONNX, model
card, resolved settings, metrics, figures) and a catalog row. Aliases point at versions:
``latest`` always moves to the newest; ``champion`` moves only when
:func:`promote` is called or when a new version beats the champion's validation score
**on the same validation set** (same images, same labels; compared by fingerprint): a
classifier's macro-F1, a counting model's mean relative count error.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from lensloop.catalog.models import ModelAlias, ModelVersion
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project

__all__ = [
    "CARD_FILE",
    "RegisteredModel",
    "chosen_classifier",
    "list_models",
    "promote",
    "register",
    "resolve_model",
    "trained_depth",
]

CARD_FILE = "card.json"
LATEST = "latest"
CHAMPION = "champion"
#: The largest version number the catalog can hold (a signed 64-bit integer).
_MAX_VERSION = 2**63 - 1


@dataclass(frozen=True)
class RegisteredModel:
    """A model version as the registry knows it."""

    version: int
    task: str
    folder: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    aliases: list[str]
    created_at: datetime

    @property
    def card(self) -> dict[str, Any]:
        """The model card (``card.json``)."""
        path = self.folder / CARD_FILE
        try:
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"model version {self.version}'s card {path} is missing or unreadable ({exc}); "
                "the models/ folder was changed by hand"
            ) from exc
        return loaded


def _aliases(session: Any) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for alias, version_id in session.execute(select(ModelAlias.alias, ModelAlias.model_version_id)):
        found.setdefault(version_id, []).append(alias)
    return found


def _as_registered(project: Project, row: ModelVersion, aliases: list[str]) -> RegisteredModel:
    return RegisteredModel(
        version=row.version,
        task=row.task,
        folder=project.root / row.artefact_path,
        metrics=dict(row.metrics),
        config=dict(row.config),
        aliases=sorted(aliases),
        created_at=row.created_at,
    )


def list_models(project: Project) -> list[RegisteredModel]:
    """Every version, oldest first, with its aliases."""
    with project.catalog.reader() as session:
        aliases = _aliases(session)
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
        return [_as_registered(project, r, aliases.get(r.id, [])) for r in rows]


def resolve_model(project: Project, ref: str | int | None = None) -> RegisteredModel:
    """Find a version by number or alias; ``None`` means ``champion``, else ``latest``.

    Raises:
        NotFoundError: No such version or alias, or no model at all.
    """
    with project.catalog.reader() as session:
        aliases = _aliases(session)
        if ref is None:
            refs: list[str | int] = [CHAMPION, LATEST]
        else:
            refs = [ref]
        for wanted in refs:
            text = str(wanted)
            if text.isascii() and text.isdigit():
                if int(text) > _MAX_VERSION:
                    continue
                row = session.scalar(select(ModelVersion).where(ModelVersion.version == int(text)))
            else:
                row = session.scalar(
                    select(ModelVersion)
                    .join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
                    .where(ModelAlias.alias == text)
                )
            if row is not None:
                return _as_registered(project, row, aliases.get(row.id, []))
        known = sorted({a for names in aliases.values() for a in names})
        count = session.scalar(select(func.count()).select_from(ModelVersion)) or 0
    if count == 0:
        raise NotFoundError(f"the project has no models yet; run `lensloop train {project.root}`")
    raise NotFoundError(
        f"no model {ref!r}; there are versions 1..{count} and aliases {', '.join(known)}"
    )


def chosen_classifier(project: Project, ref: str | int | None = None) -> RegisteredModel | None:
    """The classifier ``ref`` names (default champion, else latest); ``None`` if no models.

    Raises:
        NotFoundError: ``ref`` names no version or alias.
        ConfigError: The model is not a classifier.
    """
    if ref is None and not list_models(project):
        return None
    model = resolve_model(project, ref)
    if model.task != "classify":
        raise ConfigError(
            f"model version {model.version} is a {model.task!r} model; this needs a "
            "'classify' model: pass --model with a classifier's version or alias"
        )
    return model


def trained_depth(model: RegisteredModel) -> int | None:
    """The ``--depth`` a model was trained with (``None``: the project's depth then)."""
    depth = model.config.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else None


def _rank(val: dict[str, Any]) -> tuple[float, float] | None:
    """Higher is better: a classifier's (macro-F1, accuracy), a counter's (-MRE, F1).

    A segmenter's key is (mean IoU, pixel accuracy).
    """
    if "mean_iou" in val:
        if val["mean_iou"] is None or val.get("pixel_accuracy") is None:
            return None
        return (float(val["mean_iou"]), float(val["pixel_accuracy"]))
    if "macro_f1" in val:
        return (float(val["macro_f1"]), float(val["accuracy"]))
    if "mre" in val:
        if val["mre"] is None or val.get("f1") is None:
            return None
        key = (-float(val["mre"]), float(val["f1"]))
        return None if any(math.isnan(k) for k in key) else key
    return None


def _beats(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether ``new`` validation metrics beat ``old`` on the same validation set.

    Classifiers compare macro-F1, then accuracy; counting models mean relative count
    error (lower is better), then localisation F1; segmentation models mean IoU, then
    pixel accuracy. Metrics that could not be measured
    (no fully annotated validation image) never beat anything.
    """
    if new.get("validation_fingerprint") != old.get("validation_fingerprint"):
        return False
    new_key, old_key = _rank(new.get("val", {})), _rank(old.get("val", {}))
    if new_key is None:
        return False
    return old_key is None or new_key > old_key


def register(
    project: Project,
    staging: Path,
    *,
    task: str,
    metrics: dict[str, Any],
    config: dict[str, Any],
) -> RegisteredModel:
    """Move a staged artefact folder into ``models/v<N>/`` and record version ``N``.

    ``latest`` moves to it; ``champion`` too when there is none yet or when it beats the
    champion on the same validation set (``metrics["validation_fingerprint"]``). The folder
    and the catalog row appear together: if the catalog write fails, the folder is removed.
    """
    moved: Path | None = None
    try:
        with project.catalog.transaction() as session:
            number = int(session.scalar(select(func.max(ModelVersion.version))) or 0) + 1
            folder = project.models_dir / f"v{number}"
            if folder.exists():
                raise ConfigError(
                    f"{folder} exists but the catalog has no version {number}; move it away "
                    "(it is left over from an interrupted release) and train again"
                )
            shutil.move(str(staging), str(folder))
            moved = folder
            row = ModelVersion(
                version=number,
                task=task,
                artefact_path=str(folder.relative_to(project.root)),
                metrics=metrics,
                config=config,
            )
            session.add(row)
            session.flush()
            _point(session, LATEST, row.id)
            champion = session.scalar(
                select(ModelVersion)
                .join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
                .where(ModelAlias.alias == CHAMPION)
            )
            if champion is None or _beats(metrics, champion.metrics):
                _point(session, CHAMPION, row.id)
            session.flush()
            result = _as_registered(project, row, _aliases(session).get(row.id, []))
    except BaseException:
        if moved is not None:
            shutil.rmtree(moved, ignore_errors=True)
        raise
    return result


def _point(session: Any, alias: str, version_id: int) -> None:
    existing = session.get(ModelAlias, alias)
    if existing is None:
        session.add(ModelAlias(alias=alias, model_version_id=version_id))
    else:
        existing.model_version_id = version_id


def promote(project: Project, version: int) -> RegisteredModel:
    """Make ``version`` the champion.

    Raises:
        NotFoundError: No such version.
    """
    with project.catalog.transaction() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
        if row is None:
            raise NotFoundError(f"no model version {version}; `lensloop models DIR` lists them")
        _point(session, CHAMPION, row.id)
        session.flush()
        return _as_registered(project, row, _aliases(session).get(row.id, []))
