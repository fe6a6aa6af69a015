"""Selection rounds: read the project, choose the next images, record the round.

A round chooses among the images that have embeddings and are neither labelled (any
annotation) nor queued (chosen by an earlier round and not labelled since). Labelled and
queued images count as covered for diversity. The round, its settings and the ordered
image ids are written in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from lensloop.catalog.images import in_chunks, metadata_text
from lensloop.catalog.labels import current_class_paths, roll_up
from lensloop.catalog.models import (
    Annotation,
    Image,
    Prediction,
    Sample,
    SelectionItem,
    SelectionRound,
)
from lensloop.catalog.queries import default_model_version
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.select.balance import PREDICTED, Balance
from lensloop.select.strategy import Pool, Strategy, choose

__all__ = ["ClassLabels", "RoundResult", "SelectedImage", "class_labels", "select_round"]

_STRATEGY_COLUMN = 64


@dataclass(frozen=True)
class SelectedImage:
    """One chosen image, in labelling order (rank 1 first)."""

    rank: int
    image_id: int
    uri: str
    group: str | None = None


@dataclass(frozen=True)
class RoundResult:
    """A recorded selection round."""

    round_id: int
    strategy: str
    resolved: str
    created_at: datetime
    images: list[SelectedImage]
    n_candidates: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassLabels:
    """Each image's class at the project's depth, as indices into ``class_names``."""

    class_names: list[str]
    by_image: dict[int, int]


def class_labels(project: Project, *, depth: int | None = None) -> ClassLabels:
    """The current class of every labelled image, rolled up to ``depth``.

    The classes are the declared ones (``[labels] classes``) and every class in use.
    """
    depth = depth if depth is not None else project.config.labels.depth
    with project.catalog.reader() as session:
        paths = {i: roll_up(p, depth) for i, p in current_class_paths(session).items()}
    names = sorted(set(project.config.labels.classes) | set(paths.values()))
    index = {name: k for k, name in enumerate(names)}
    return ClassLabels(names, {i: index[p] for i, p in paths.items()})


def _metadata_groups(
    project: Project, ids: npt.NDArray[np.int64], key: str
) -> npt.NDArray[np.object_]:
    """Each image's value of a metadata key (or ``sample``), ``None`` where it has none."""
    values: dict[int, object] = {}
    seen_keys: set[str] = set()
    with project.catalog.reader() as session:
        for chunk in in_chunks(ids.tolist()):
            if key == "sample":
                rows = session.execute(
                    select(Image.id, Sample.name)
                    .join(Sample, Sample.id == Image.sample_id)
                    .where(Image.id.in_(chunk))
                )
                values.update({i: name for i, name in rows})
            else:
                for image_id, meta in session.execute(
                    select(Image.id, Image.meta).where(Image.id.in_(chunk))
                ):
                    meta = meta or {}
                    seen_keys.update(meta)
                    if meta.get(key) is not None:
                        values[image_id] = meta[key]
    if not values:
        keys = ", ".join(sorted(seen_keys)[:30]) or "none"
        raise ConfigError(
            f"no image has a value for the balance key {key!r}; metadata keys present: {keys} "
            f"(also: sample, {PREDICTED})"
        )
    return np.array([metadata_text(values.get(int(i))) for i in ids], dtype=object)


def _stored_probabilities(
    project: Project, ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], list[str], int] | None:
    """The default model's stored class probabilities per row of ``ids`` (NaN where none).

    The default model is the champion, else the latest version; ``None`` when the project
    has no model or no stored predictions of it.
    """
    with project.catalog.reader() as session:
        default = default_model_version(session)
        if default is None:
            return None
        version_id, version = default
        found = {
            image_id: probs
            for image_id, probs in session.execute(
                select(Prediction.image_id, Prediction.probabilities).where(
                    Prediction.model_version_id == version_id,
                    Prediction.probabilities.is_not(None),
                )
            )
        }
    if not found:
        return None
    classes = sorted({name for probs in found.values() for name in probs})
    column = {name: k for k, name in enumerate(classes)}
    matrix = np.full((len(ids), len(classes)), np.nan)
    for r, image_id in enumerate(ids.tolist()):
        probs = found.get(image_id)
        if probs is not None:
            matrix[r] = 0.0
            for name, p in probs.items():
                matrix[r, column[name]] = p
    return matrix, classes, int(version)


def select_round(
    project: Project,
    n: int,
    strategy_text: str,
    strategy: Strategy,
    *,
    backbone: str,
    seed: int = 0,
    balance: Balance | None = None,
    depth: int | None = None,
    record: bool = True,
) -> RoundResult:
    """Choose the next ``n`` images to label and record them as a selection round.

    Args:
        project: The open project.
        n: How many images.
        strategy_text: The strategy as the user wrote it (recorded).
        strategy: The parsed strategy.
        backbone: Whose embeddings to use (the newest set of that backbone).
        seed: Seed of every random choice.
        balance: Target proportions over a metadata field, ``sample`` or ``predicted``.
        depth: Class hierarchy depth for the probe (default: the project's).
        record: ``False`` chooses without recording (a dry run); the round id is then 0.

    Raises:
        NotFoundError: No embeddings for ``backbone`` yet.
        ConfigError: See :func:`~lensloop.select.strategy.choose`.
    """
    ids, vectors = project.embeddings(backbone)
    if ids.size == 0:
        raise ConfigError(
            f"the {backbone} embedding set is empty; run `lensloop embed DIR --backbone "
            f"{backbone}` first"
        )
    labels = class_labels(project, depth=depth)
    with project.catalog.reader() as session:
        annotated = set(session.scalars(select(Annotation.image_id).distinct()))
        queued = set(session.scalars(select(SelectionItem.image_id).distinct())) - annotated
        n_images = int(session.scalar(select(func.count()).select_from(Image)) or 0)
    taken = np.fromiter(annotated | queued, dtype=np.int64, count=len(annotated | queued))
    selected = np.isin(ids, taken)
    label_rows = np.full(len(ids), -1, dtype=np.int64)
    if labels.by_image:
        known = np.fromiter(labels.by_image, dtype=np.int64, count=len(labels.by_image))
        rows = np.searchsorted(ids, known)
        hit = (rows < len(ids)) & (ids[np.minimum(rows, len(ids) - 1)] == known)
        label_rows[rows[hit]] = [labels.by_image[int(i)] for i in known[hit]]
    groups = None
    if balance is not None and balance.key != PREDICTED:
        groups = _metadata_groups(project, ids, balance.key)
    stored = _stored_probabilities(project, ids)
    pool = Pool(
        vectors=vectors,
        candidates=~selected,
        selected=selected,
        labels=label_rows,
        class_names=labels.class_names,
        groups=groups,
        model_probs=None if stored is None else stored[0],
        model_classes=() if stored is None else stored[1],
    )
    chosen = choose(pool, n, strategy, seed=seed, balance=balance)
    details = dict(chosen.details)
    if details.get("uncertainty_from") == "stored predictions" and stored is not None:
        details["model_version"] = stored[2]
    details["not_embedded"] = n_images - len(ids)
    picked = [int(ids[r]) for r in chosen.indices]
    with project.catalog.reader() as session:
        uris: dict[int, str] = {}
        for chunk in in_chunks(picked):
            rows_ = session.execute(select(Image.id, Image.uri).where(Image.id.in_(chunk)))
            uris.update({image_id: uri for image_id, uri in rows_})
    images = [
        SelectedImage(
            rank=k + 1,
            image_id=image_id,
            uri=uris[image_id],
            group=None if chosen.groups is None else chosen.groups[k],
        )
        for k, image_id in enumerate(picked)
    ]
    config = {
        "strategy": strategy_text,
        "resolved": chosen.strategy,
        "n": n,
        "seed": seed,
        "backbone": backbone,
        "balance": None if balance is None else balance.describe(),
        "depth": depth,
        "n_candidates": int(pool.candidates.sum()),
        "details": details,
    }
    round_id = 0
    created = datetime.now().astimezone()
    if record:
        with project.catalog.transaction() as session:
            row = SelectionRound(strategy=strategy_text[:_STRATEGY_COLUMN], config=config)
            session.add(row)
            session.flush()
            session.add_all(
                SelectionItem(round_id=row.id, rank=img.rank, image_id=img.image_id)
                for img in images
            )
            round_id, created = row.id, row.created_at
    return RoundResult(
        round_id=round_id,
        strategy=strategy_text,
        resolved=chosen.strategy,
        created_at=created,
        images=images,
        n_candidates=int(pool.candidates.sum()),
        details=details,
    )
