"""``/v1`` routes over the catalog's images.

The project, listing and filtering, pixels, uploads, classes and bulk labels.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from lensloop.catalog.labels import current_class_paths, list_classes, split_path
from lensloop.catalog.models import EmbeddingSet, Image
from lensloop.catalog.queries import ImageQuery, find_images, image_rows
from lensloop.errors import NotFoundError, RequestError
from lensloop.service.api.deps import MAX_ID, ImageId, State
from lensloop.service.api.inputs import read_upload
from lensloop.service.api.schemas import (
    ClassOut,
    ImageOut,
    ImagePage,
    LabelsOut,
    LabelsRequest,
    ProjectOut,
    UploadOut,
    image_out,
)
from lensloop.service.state import ServiceState

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = ["display_png", "router"]

router = APIRouter(tags=["images"])

_MAX_FILES = 100


@router.get("/project", response_model=ProjectOut, summary="The project: task, classes, sets")
def project_info(state: State) -> ProjectOut:
    project = state.project
    with project.catalog.reader() as session:
        backbones = list(
            dict.fromkeys(
                session.scalars(
                    select(EmbeddingSet.backbone)
                    .where(EmbeddingSet.count > 0)
                    .order_by(EmbeddingSet.id.desc())
                )
            )
        )
    return ProjectOut(
        name=project.root.name,
        task=project.task,
        images=project.catalog.image_count(),
        classes=_classes(state),
        backbones=backbones,
        depth=project.config.labels.depth,
    )


def _classes(state: ServiceState) -> list[ClassOut]:
    with state.project.catalog.reader() as session:
        classes = list_classes(session)
        current = list(current_class_paths(session).values())
    counts: dict[str, int] = {}
    for path in current:
        parts = split_path(path)
        for level in range(1, len(parts) + 1):
            key = "/".join(parts[:level])
            counts[key] = counts.get(key, 0) + 1
    return [
        ClassOut(path=c.path, name=c.name, depth=c.level, count=counts.get(c.path, 0))
        for c in classes
    ]


@router.get("/classes", response_model=list[ClassOut], summary="Classes of the label schema")
def classes(state: State) -> list[ClassOut]:
    return _classes(state)


def _meta_filters(items: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise RequestError(f"meta filters are KEY:VALUE, got {item!r}")
        found[key] = value
    return found


def _ids(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        ids = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise RequestError(f"ids are comma-separated integers, got {text!r}") from exc
    if any(not 1 <= i <= MAX_ID for i in ids):
        raise RequestError(f"image ids lie in 1..{MAX_ID}")
    return ids


@router.get("/images", response_model=ImagePage, summary="List and filter images, one page")
def list_images(
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 60,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    label: Annotated[
        str | None, Query(max_length=2048, description="Class path, or __none__: unlabelled.")
    ] = None,
    predicted: Annotated[str | None, Query(max_length=2048)] = None,
    min_uncertainty: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_uncertainty: Annotated[float | None, Query(ge=0, le=1)] = None,
    cluster: Annotated[int | None, Query(ge=-1, le=2**31 - 1)] = None,
    split: Annotated[str | None, Query(pattern="^(train|val|test|pool)$")] = None,
    sample: Annotated[str | None, Query(max_length=512)] = None,
    meta: Annotated[list[str], Query(description="KEY:VALUE, repeatable.")] = [],  # noqa: B006
    round: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    ids: Annotated[str | None, Query(max_length=20_000, description="1,2,3")] = None,
    order: Annotated[str, Query(pattern="^(id|uncertainty)$")] = "id",
) -> ImagePage:
    query = ImageQuery(
        label=label,
        predicted=predicted,
        min_uncertainty=min_uncertainty,
        max_uncertainty=max_uncertainty,
        cluster=cluster,
        split=split,
        sample=sample,
        meta=_meta_filters(meta),
        round=round,
        ids=_ids(ids),
        order="uncertainty" if order == "uncertainty" else "id",
    )
    with state.project.catalog.reader() as session:
        rows, next_cursor, total = find_images(session, query, limit=limit, cursor=cursor)
    return ImagePage(items=[image_out(r) for r in rows], next_cursor=next_cursor, total=total)


def one_image(state: ServiceState, image_id: int) -> ImageOut:
    """The API view of one image.

    Raises:
        NotFoundError: No such image.
    """
    with state.project.catalog.reader() as session:
        row = image_rows(session, [image_id]).get(image_id)
    if row is None:
        raise NotFoundError(f"no image with id {image_id}")
    return image_out(row)


@router.get("/images/{image_id}", response_model=ImageOut, summary="One image's record")
def get_image(state: State, image_id: ImageId) -> ImageOut:
    return one_image(state, image_id)


_PNG = {200: {"content": {"image/png": {}}, "description": "A PNG."}}
_JPEG = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG."}}


@router.get(
    "/images/{image_id}/file",
    response_class=Response,
    responses=_PNG,  # type: ignore[arg-type]
    summary="The whole image, display-normalised, as PNG",
)
def image_file(state: State, image_id: ImageId) -> Response:
    return display_png(state.project, image_id)


def display_png(project: Project, image_id: int) -> Response:
    """A catalog image at full size, display-normalised (16-bit stretched to 8), as PNG.

    Raises:
        NotFoundError: No such image.
    """
    from lensloop.imaging import encode_image, to_display

    with project.catalog.reader() as session:
        sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
    if sha is None:
        raise NotFoundError(f"no image with id {image_id}")
    data = encode_image(to_display(project.read_image(image_id)), format="png")
    return Response(
        data,
        media_type="image/png",
        headers={"ETag": f'"{sha}"', "Cache-Control": "private, max-age=3600"},
    )


@router.get(
    "/images/{image_id}/thumbnail",
    response_class=Response,
    responses=_JPEG,  # type: ignore[arg-type]
    summary="A display thumbnail (JPEG), cached",
)
def image_thumbnail(
    state: State, image_id: ImageId, size: Annotated[int, Query(ge=32, le=512)] = 256
) -> Response:
    path = state.project.thumbnail(image_id, size=size)
    return Response(
        path.read_bytes(),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400"},
    )


def _meta_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"meta must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise RequestError(f"meta must be a JSON object, got {type(value).__name__}")
    return value


@router.post(
    "/images",
    response_model=UploadOut,
    status_code=201,
    summary="Add images (stored in the project's storage and ingested)",
)
async def upload_images(
    state: State,
    file: Annotated[list[UploadFile], File(description="One or more image files.")],
    label: Annotated[str | None, Form(max_length=2048)] = None,
    sample: Annotated[str | None, Form(max_length=512)] = None,
    meta: Annotated[str | None, Form(max_length=100_000, description="A JSON object.")] = None,
) -> UploadOut:
    from lensloop.project.uploads import add_image_bytes

    if len(file) > _MAX_FILES:
        raise RequestError(f"at most {_MAX_FILES} files per request, got {len(file)}")
    extra = _meta_json(meta)
    received = [await read_upload(f, max_bytes=state.upload_limit) for f in file]
    result = await run_in_threadpool(
        add_image_bytes,
        state.project,
        [(r.name, r.data) for r in received],
        label=label or None,
        sample=sample or None,
        meta=extra,
    )
    with state.project.catalog.reader() as session:
        rows = image_rows(session, result.added)
    return UploadOut(added=[image_out(rows[i]) for i in result.added], existing=result.existing)


@router.post("/labels", response_model=LabelsOut, summary="Give many images one class")
def post_labels(state: State, body: LabelsRequest) -> LabelsOut:
    from lensloop.project.labelling import label_images

    result = label_images(
        state.project, body.image_ids, body.label, annotator=body.annotator, origin="ui"
    )
    return LabelsOut(labelled=result.labelled, unchanged=result.unchanged, label=result.label)
