"""Bulk image operations that run inside a catalog transaction.

Every function takes an open :class:`~sqlalchemy.orm.Session` (from
:meth:`Catalog.transaction`) first, so a caller can group several of them into one atomic
write: ingest commits images, samples, labels and failures of a batch together.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from lensloop.catalog.models import Image, IngestFailure, Sample, utcnow

__all__ = [
    "NewImage",
    "add_images",
    "assign_splits",
    "clear_failures",
    "ensure_samples",
    "in_chunks",
    "lookup_sha256",
    "lookup_uris",
    "merge_sample_meta",
    "metadata_text",
    "record_failures",
]

_CHUNK = 900  # stays under every SQLite build's bound-parameter limit
_T = TypeVar("_T")


def in_chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    """Slices of ``items`` small enough for one ``IN (...)`` clause on any database."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def metadata_text(value: object) -> str | None:
    """A metadata value as text for grouping: ``None`` if missing or blank, ``5.0`` as ``"5"``.

    CSV metadata often turns integer codes into floats; grouping by ``5`` and ``5.0``
    separately would split one group in two.
    """
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() else None


@dataclass(frozen=True)
class NewImage:
    """An image about to be added to the catalog.

    ``sample`` is a sample *name* (created on first use); ``meta`` must be JSON-serialisable.
    ``captured_at`` is stored in UTC when timezone-aware and as given when naive (the
    instrument's local time).
    """

    uri: str
    sha256: str
    format: str
    width: int
    height: int
    channels: int
    dtype: str
    bit_depth: int
    file_size: int
    page: int | None = None
    sample: str | None = None
    captured_at: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    depth: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    split: str | None = None


def lookup_uris(session: Session, uris: Sequence[str]) -> dict[str, str]:
    """Return ``{uri: sha256}`` for the given URIs that are already in the catalog."""
    found: dict[str, str] = {}
    for chunk in in_chunks(list(dict.fromkeys(uris))):
        rows = session.execute(select(Image.uri, Image.sha256).where(Image.uri.in_(chunk)))
        found.update({uri: sha for uri, sha in rows})
    return found


def lookup_sha256(session: Session, digests: Sequence[str]) -> dict[str, int]:
    """Return ``{sha256: image_id}`` for the given digests that are already in the catalog."""
    found: dict[str, int] = {}
    for chunk in in_chunks(list(dict.fromkeys(digests))):
        rows = session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(chunk)))
        found.update({sha: image_id for sha, image_id in rows})
    return found


def ensure_samples(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Return ``{name: sample_id}``, creating the samples that do not exist yet."""
    wanted = list(dict.fromkeys(names))
    found: dict[str, int] = {}
    for chunk in in_chunks(wanted):
        rows = session.execute(select(Sample.name, Sample.id).where(Sample.name.in_(chunk)))
        found.update({name: sample_id for name, sample_id in rows})
    missing = [name for name in wanted if name not in found]
    if missing:
        now = utcnow()
        rows = session.execute(
            insert(Sample).returning(Sample.name, Sample.id, sort_by_parameter_order=True),
            [{"name": name, "meta": {}, "created_at": now} for name in missing],
        )
        found.update({name: sample_id for name, sample_id in rows})
    return found


def merge_sample_meta(session: Session, metas: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge metadata into samples (created when new); keys given replace stored ones."""
    ids = ensure_samples(session, metas)
    for name, meta in metas.items():
        sample = session.get(Sample, ids[name])
        if sample is not None and any(sample.meta.get(k) != v for k, v in meta.items()):
            sample.meta = {**sample.meta, **meta}


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC)


def add_images(session: Session, images: Sequence[NewImage]) -> dict[str, int]:
    """Insert images and return ``{sha256: image_id}`` for them.

    The caller removes duplicates first (:func:`lookup_sha256`); a duplicate that slips
    through violates the unique constraint and rolls the whole transaction back.
    """
    if not images:
        return {}
    sample_ids = ensure_samples(session, [i.sample for i in images if i.sample is not None])
    now = utcnow()
    rows = [
        {
            "uri": image.uri,
            "sha256": image.sha256,
            "page": image.page,
            "format": image.format,
            "width": image.width,
            "height": image.height,
            "channels": image.channels,
            "dtype": image.dtype,
            "bit_depth": image.bit_depth,
            "file_size": image.file_size,
            "sample_id": sample_ids[image.sample] if image.sample is not None else None,
            "captured_at": _utc(image.captured_at),
            "lat": image.lat,
            "lon": image.lon,
            "depth": image.depth,
            "meta": image.meta,
            "split": image.split,
            "created_at": now,
        }
        for image in images
    ]
    result = session.execute(
        insert(Image).returning(Image.sha256, Image.id, sort_by_parameter_order=True), rows
    )
    return {sha: image_id for sha, image_id in result}


def record_failures(session: Session, failures: Sequence[tuple[str, str]]) -> None:
    """Record files that could not be ingested as ``(uri, reason)``; repeats update the row."""
    if not failures:
        return
    latest = dict(failures)
    existing: set[str] = set()
    for chunk in in_chunks(list(latest)):
        existing.update(
            session.scalars(select(IngestFailure.uri).where(IngestFailure.uri.in_(chunk)))
        )
    now = utcnow()
    for uri in existing:
        session.execute(
            update(IngestFailure)
            .where(IngestFailure.uri == uri)
            .values(reason=latest[uri], last_seen=now, attempts=IngestFailure.attempts + 1)
        )
    fresh = [
        {"uri": uri, "reason": reason, "attempts": 1, "first_seen": now, "last_seen": now}
        for uri, reason in latest.items()
        if uri not in existing
    ]
    if fresh:
        session.execute(insert(IngestFailure), fresh)


def clear_failures(session: Session, uris: Sequence[str]) -> None:
    """Forget earlier failures of files that have now been ingested."""
    for chunk in in_chunks(list(uris)):
        session.execute(delete(IngestFailure).where(IngestFailure.uri.in_(chunk)))


def _stable_order(digests: Sequence[str], seed: int) -> list[str]:
    # Order by a seeded hash of the content digest: the same images and seed always give
    # the same split, however the ingest was batched or interrupted.
    return sorted(digests, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())


def assign_splits(
    session: Session,
    *,
    labels: Mapping[int, str],
    fractions: Mapping[str, float] | None,
    seed: int = 0,
) -> dict[str, int]:
    """Give every image whose split is unset a split.

    Unlabelled images go to ``pool``. Labelled images are split per class (stratified):
    ``fractions`` such as ``{"val": 0.2, "test": 0.1}`` take those shares of each class
    (rounded) and the rest goes to ``train``; without fractions everything labelled is
    ``train``. The order within a class is a seeded hash of each image's sha256, so the
    result depends only on the set of images and ``seed``.

    Args:
        session: An open transaction.
        labels: ``{image_id: class}`` for labelled images (the class to stratify on).
        fractions: Shares for ``val`` and/or ``test`` (each in [0, 1), summing below 1).
        seed: Seed of the order within each class.

    Returns:
        How many images were assigned to each split.
    """
    rows = session.execute(select(Image.id, Image.sha256).where(Image.split.is_(None))).all()
    by_class: dict[str | None, list[str]] = defaultdict(list)
    id_of: dict[str, int] = {}
    for image_id, sha in rows:
        id_of[sha] = image_id
        by_class[labels.get(image_id)].append(sha)
    assigned: dict[str, list[int]] = defaultdict(list)
    for cls, digests in by_class.items():
        if cls is None:
            assigned["pool"].extend(id_of[d] for d in digests)
            continue
        ordered = _stable_order(digests, seed)
        start = 0
        for split in ("test", "val"):
            share = (fractions or {}).get(split, 0.0)
            count = round(share * len(ordered))
            assigned[split].extend(id_of[d] for d in ordered[start : start + count])
            start += count
        assigned["train"].extend(id_of[d] for d in ordered[start:])
    for split, ids in assigned.items():
        for chunk in in_chunks(ids):
            session.execute(update(Image).where(Image.id.in_(chunk)).values(split=split))
    return {split: len(ids) for split, ids in assigned.items()}
