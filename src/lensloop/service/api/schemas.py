"""The pydantic models of the ``/v1`` API: what every route takes and answers.

They are the OpenAPI document's schemas too, so the field descriptions here are what a
client author reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lensloop.catalog.queries import ImageRow

__all__ = [
    "ClassOut",
    "ClassifyOut",
    "ClusterOut",
    "ClustersOut",
    "ClustersRequest",
    "CountOut",
    "EmbedOut",
    "ErrorBody",
    "ErrorOut",
    "ImageOut",
    "ImagePage",
    "LabelsOut",
    "LabelsRequest",
    "MapOut",
    "MapPointOut",
    "ModelDetailOut",
    "ModelOut",
    "ModelPredictionOut",
    "ModelPredictionsOut",
    "ProjectOut",
    "RoundItemOut",
    "RoundOut",
    "RoundSummaryOut",
    "SegmentOut",
    "SelectRequest",
    "SessionOut",
    "SessionRequest",
    "SimilarItemOut",
    "SimilarOut",
    "UploadOut",
    "image_out",
]


def _as_utc(value: datetime) -> datetime:
    """The catalog stores UTC; SQLite hands it back without an offset, so add it."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A time in answers: always with its UTC offset (RFC 3339).
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class _Out(BaseModel):
    """An answer (unknown fields are a bug, not an extension)."""

    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    """A request body (unknown fields are refused, so typos do not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    """What went wrong."""

    code: str = Field(description="A stable machine-readable code, e.g. not_found.")
    message: str = Field(description="What was wrong and how to fix it.")


class ErrorOut(_Out):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorBody


class SessionRequest(_In):
    """A browser logging in with an API token."""

    token: str = Field(min_length=1, max_length=512, description="An API token.")


class SessionOut(_Out):
    """Whether this server needs a token, and whether the request had one."""

    auth_required: bool = Field(description="Whether routes need a token on this server.")
    authenticated: bool = Field(description="Whether this request carried a valid one.")


class ClassOut(_Out):
    """A class of the label schema with how many images carry it."""

    path: str = Field(description="Full class path, levels joined by '/'.")
    name: str
    depth: int = Field(description="Level in the taxonomy, 1 = root.")
    count: int = Field(description="Images whose current label is this class or below it.")


class ProjectOut(_Out):
    """The served project."""

    name: str
    task: str
    images: int
    classes: list[ClassOut]
    backbones: list[str] = Field(description="Backbones with stored embeddings, newest first.")
    depth: int | None = Field(description="Taxonomy depth the project trains at.")


class ImageOut(_Out):
    """An image with what the catalog knows of it."""

    id: int
    uri: str
    width: int
    height: int
    channels: int
    dtype: str
    split: str | None
    sample: str | None
    captured_at: UtcDatetime | None
    lat: float | None
    lon: float | None
    meta: dict[str, Any]
    label: str | None = Field(description="Current class label (newest annotation).")
    predicted: str | None = Field(description="The default model's predicted class.")
    confidence: float | None
    uncertainty: float | None = Field(description="Margin uncertainty 1 - (p1 - p2).")
    cluster: int | None = Field(description="Cluster in the newest clustering run.")
    thumbnail_url: str
    file_url: str


def image_out(row: ImageRow) -> ImageOut:
    """The API's view of a catalog row."""
    return ImageOut(
        id=row.id,
        uri=row.uri,
        width=row.width,
        height=row.height,
        channels=row.channels,
        dtype=row.dtype,
        split=row.split,
        sample=row.sample,
        captured_at=row.captured_at,
        lat=row.lat,
        lon=row.lon,
        meta=row.meta,
        label=row.label,
        predicted=row.predicted,
        confidence=row.confidence,
        uncertainty=row.uncertainty,
        cluster=row.cluster,
        thumbnail_url=f"/v1/images/{row.id}/thumbnail",
        file_url=f"/v1/images/{row.id}/file",
    )


class ImagePage(_Out):
    """One page of an image listing."""

    items: list[ImageOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last.")
    total: int = Field(description="Images matching the filters in all.")


class UploadOut(_Out):
    """What an upload added."""

    added: list[ImageOut] = Field(description="Images new to the catalog.")
    existing: list[int] = Field(description="Ids of uploaded images the catalog already held.")


class LabelsRequest(_In):
    """Many images, one class."""

    image_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        min_length=1, max_length=10_000
    )
    label: str = Field(min_length=1, max_length=2048, description="Class path, e.g. 'a/b'.")
    annotator: str = Field(default="ui", min_length=1, max_length=256)


class LabelsOut(_Out):
    """What a bulk label did."""

    labelled: int = Field(description="Images given the label now.")
    unchanged: int = Field(description="Images that already had it (no row added).")
    label: str


class MapPointOut(_Out):
    """One image on the embedding map."""

    id: int
    x: float
    y: float
    label: str | None
    predicted: str | None
    cluster: int | None


class MapOut(_Out):
    """A stored 2-D layout of the embeddings, positions in [0, 1]."""

    layout_id: int
    method: str
    backbone: str
    points: list[MapPointOut]


class ClusterOut(_Out):
    """One cluster and its size."""

    cluster: int = Field(description="Cluster number; -1 is HDBSCAN's noise.")
    size: int


class ClustersOut(_Out):
    """The newest clustering run (empty when none)."""

    run_id: int | None
    method: str | None
    clusters: list[ClusterOut]


class ClustersRequest(_In):
    """Settings of a clustering run."""

    backbone: str | None = Field(default=None, max_length=256)
    method: Literal["kmeans", "hdbscan"] = "kmeans"
    k: int | None = Field(default=None, ge=2, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class SimilarItemOut(_Out):
    """A similar image."""

    image: ImageOut
    score: float = Field(description="Cosine similarity to the query.")


class SimilarOut(_Out):
    """Images most similar to the query, most similar first."""

    items: list[SimilarItemOut]


class EmbedOut(_Out):
    """An image's L2-normalised embedding."""

    backbone: str
    version: str
    dim: int
    vector: list[float]


class ClassifyOut(_Out):
    """A classifier's answer."""

    task: Literal["classify"] = "classify"
    model_version: int | None
    predicted: str
    confidence: float
    uncertainty: float
    probabilities: dict[str, float]


class CountOut(_Out):
    """A counting model's answer."""

    task: Literal["count"] = "count"
    model_version: int | None
    count: float
    points: list[tuple[float, float]] = Field(description="Object centres (x, y) in pixels.")


class SegmentOut(_Out):
    """A segmentation model's answer."""

    task: Literal["segment"] = "segment"
    model_version: int | None
    classes: list[str] = Field(description="Label k of the mask is classes[k - 1]; 0 background.")
    width: int
    height: int
    areas: dict[str, int] = Field(description="Pixels per class.")
    mask_png: str = Field(description="The label map as a base64 8-bit PNG.")


class SelectRequest(_In):
    """A selection round to run."""

    n: int = Field(ge=1, le=10_000, description="How many images to choose.")
    strategy: str = Field(
        default="auto", min_length=1, max_length=512, description="As `lensloop select`."
    )
    balance: str | None = Field(
        default=None, max_length=2048, description="KEY=VALUE:SHARE,... or KEY (equal shares)."
    )
    backbone: str | None = Field(default=None, max_length=256)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class RoundItemOut(_Out):
    """An image of a round, at its rank."""

    rank: int
    image: ImageOut


class RoundOut(_Out):
    """A selection round: the images it chose, in order."""

    id: int
    strategy: str
    created_at: UtcDatetime
    items: list[RoundItemOut]


class RoundSummaryOut(_Out):
    """A selection round and how much of it is labelled."""

    id: int
    strategy: str
    created_at: UtcDatetime
    size: int
    labelled: int


class ModelOut(_Out):
    """A model version."""

    version: int
    task: str
    aliases: list[str]
    created_at: UtcDatetime
    metrics: dict[str, float | int | None] = Field(description="Headline validation scores.")
    n_train: int | None


class ModelDetailOut(ModelOut):
    """A model version with its scores in detail."""

    classes: list[str]
    confusion: list[list[int]] | None
    per_class: dict[str, dict[str, float]] | None
    history: list[dict[str, float | int | None]] | None = Field(
        description="Per-epoch losses and scores (fine-tuned models)."
    )
    learning_curve: list[dict[str, float | int | None]] = Field(
        description="Validation scores of every version of this task by training size."
    )


class ModelPredictionOut(_Out):
    """A labelled image's predicted and actual class."""

    image: ImageOut
    actual: str | None
    predicted: str
    confidence: float | None


class ModelPredictionsOut(_Out):
    """A model's predictions of labelled images, mistakes first."""

    items: list[ModelPredictionOut]
