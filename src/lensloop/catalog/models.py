"""SQLAlchemy models of the catalog: the tables every other layer reads and writes.

The schema follows DESIGN.md's data model. Two rules hold throughout:

- annotations are never updated in place: a correction is a new row (``supersedes_id``
  points at the row it corrects), so the full labelling history is kept;
- images are deduplicated by ``sha256`` (unique), so ingesting the same bytes twice adds
  nothing.

Timestamps are stored in UTC. Free metadata is JSON (``JSONB`` on PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ANNOTATION_KINDS",
    "SPLITS",
    "Annotation",
    "ApiToken",
    "Base",
    "ClusterMember",
    "ClusterRun",
    "EmbeddingSet",
    "Image",
    "IngestFailure",
    "LabelClass",
    "LabelStudioTask",
    "MapLayout",
    "MapPoint",
    "ModelAlias",
    "ModelVersion",
    "Prediction",
    "Sample",
    "SelectionItem",
    "SelectionRound",
    "SyncState",
    "utcnow",
]

#: Kinds of annotation payload the catalog stores.
ANNOTATION_KINDS = ("class", "points", "mask", "polygon", "box")
#: Splits an image can belong to; ``pool`` is unlabelled images waiting for selection.
SPLITS = ("train", "val", "test", "pool")

_JSON = JSON().with_variant(JSONB(), "postgresql")

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads it as a plain dict
        dict[str, Any]: _JSON,
        datetime: DateTime(timezone=True),
    }


class Sample(Base):
    """A group of images taken together: a FlowCam run, a flask, a core box."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(512), unique=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    """One image (or one page of a multi-page file) known to the catalog."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(String(4096), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    page: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int]
    height: Mapped[int]
    channels: Mapped[int]
    dtype: Mapped[str] = mapped_column(String(16))
    bit_depth: Mapped[int]
    file_size: Mapped[int] = mapped_column(BigInteger)
    sample_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id"), index=True)
    captured_at: Mapped[datetime | None]
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    depth: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    split: Mapped[str | None] = mapped_column(String(8), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IngestFailure(Base):
    """A file that could not be ingested, with the reason; cleared once it ingests."""

    __tablename__ = "ingest_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(String(4096), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=1)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class LabelClass(Base):
    """A class of the label schema; ``parent_id`` makes a taxonomy tree.

    ``path`` is the full '/'-joined path from the root (``"Chromista/Haptophyta/Emiliania"``)
    and ``level`` is 1 for a root class, so a label can be rolled up to any depth.
    """

    __tablename__ = "label_classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(String(2048), unique=True)
    level: Mapped[int]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("label_classes.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotation(Base):
    """A human (or imported) label of an image. Never overwritten: corrections are new rows."""

    __tablename__ = "annotations"
    __table_args__ = (
        Index("ix_annotations_image_kind", "image_id", "kind"),
        UniqueConstraint("origin", "external_id", name="uq_annotations_origin_external_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    class_id: Mapped[int | None] = mapped_column(ForeignKey("label_classes.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotator: Mapped[str] = mapped_column(String(256))
    origin: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(256))
    round: Mapped[int | None]
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("annotations.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A released model: task, metrics, artefact path and the config that trained it."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    task: Mapped[str] = mapped_column(String(16))
    artefact_path: Mapped[str] = mapped_column(String(4096))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """A movable name (``latest``, ``champion``) for a model version."""

    __tablename__ = "model_aliases"

    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))


class Prediction(Base):
    """A model's output for an image, with class probabilities and uncertainty."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_image_model", "image_id", "model_version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    uncertainty: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmbeddingSet(Base):
    """Vectors of one backbone + version, stored on disk and keyed by image id."""

    __tablename__ = "embedding_sets"
    __table_args__ = (UniqueConstraint("backbone", "version", name="uq_embedding_sets_backbone"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    backbone: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int]
    count: Mapped[int] = mapped_column(default=0)
    path: Mapped[str] = mapped_column(String(4096))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SelectionRound(Base):
    """One run of a selection strategy: its config and when it ran."""

    __tablename__ = "selection_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SelectionItem(Base):
    """The ordered image ids a selection round chose."""

    __tablename__ = "selection_items"

    round_id: Mapped[int] = mapped_column(
        ForeignKey("selection_rounds.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)


class ClusterRun(Base):
    """One clustering of an embedding set (k-means or HDBSCAN) and its parameters."""

    __tablename__ = "cluster_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    embedding_set_id: Mapped[int] = mapped_column(
        ForeignKey("embedding_sets.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n_clusters: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClusterMember(Base):
    """An image's cluster in a run; -1 is noise (HDBSCAN)."""

    __tablename__ = "cluster_members"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("cluster_runs.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    cluster: Mapped[int]


class MapLayout(Base):
    """A 2-D layout of an embedding set (PCA, t-SNE, UMAP) for the map view."""

    __tablename__ = "map_layouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    embedding_set_id: Mapped[int] = mapped_column(
        ForeignKey("embedding_sets.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    png_path: Mapped[str | None] = mapped_column(String(4096))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MapPoint(Base):
    """An image's position in a layout, each axis in [0, 1]."""

    __tablename__ = "map_points"

    layout_id: Mapped[int] = mapped_column(
        ForeignKey("map_layouts.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)


class LabelStudioTask(Base):
    """A Label Studio task that shows one catalog image: which server and project hold it.

    ``server`` is the Label Studio base URL as given to ``lensloop labelstudio push``
    (normalised, without a trailing slash). Pushing again updates the task it points at
    instead of creating a second one.
    """

    __tablename__ = "labelstudio_tasks"
    __table_args__ = (
        UniqueConstraint("server", "project_id", "task_id", name="uq_labelstudio_tasks_task"),
        Index("ix_labelstudio_tasks_image", "server", "project_id", "image_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    server: Mapped[str] = mapped_column(String(1024))
    project_id: Mapped[int]
    task_id: Mapped[int]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncState(Base):
    """Where a sync with an outside system stopped (e.g. the last Label Studio pull)."""

    __tablename__ = "sync_states"

    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token of the HTTP server: only its hash is kept, never the token itself.

    ``prefix`` is the first 8 characters after the token's ``ll_`` marker, shown in
    listings so users can tell their tokens apart. ``token_hash`` is the hex SHA-256 of the
    whole token: tokens are 32 random bytes (``secrets.token_urlsafe``), far too many to
    guess or brute-force, so a plain fast hash is right here; a slow KDF (bcrypt, argon2)
    protects low-entropy passwords and would only slow down every request. A revoked token
    keeps its row (and its name) so listings show when it was revoked.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
