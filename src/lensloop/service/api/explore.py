"""``/v1`` routes for exploring embeddings: the map, clusters, similar images, embedding."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select

from lensloop.catalog.models import ClusterMember, ClusterRun, EmbeddingSet, MapLayout, MapPoint
from lensloop.catalog.queries import image_rows, latest_cluster_run
from lensloop.errors import NotFoundError
from lensloop.imaging import probe_image
from lensloop.service.api.deps import MAX_ID, State
from lensloop.service.api.inputs import decode_received, receive_image
from lensloop.service.api.schemas import (
    ClusterOut,
    ClustersOut,
    ClustersRequest,
    EmbedOut,
    MapOut,
    MapPointOut,
    SimilarItemOut,
    SimilarOut,
    image_out,
)
from lensloop.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(tags=["explore"])

_K_MAX = 200


def default_backbone(state: ServiceState, backbone: str | None) -> str:
    """``backbone``, or the one with the newest non-empty embedding set.

    Raises:
        NotFoundError: Nothing embedded yet.
    """
    if backbone:
        return backbone
    with state.project.catalog.reader() as session:
        newest = session.scalar(
            select(EmbeddingSet.backbone)
            .where(EmbeddingSet.count > 0)
            .order_by(EmbeddingSet.id.desc())
            .limit(1)
        )
    if newest is None:
        raise NotFoundError(
            f"nothing is embedded yet; run `lensloop embed {state.project.root}` first"
        )
    return str(newest)


def _newest_layout(state: ServiceState, backbone: str) -> tuple[int, str] | None:
    with state.project.catalog.reader() as session:
        row = session.execute(
            select(MapLayout.id, MapLayout.method)
            .join(EmbeddingSet, EmbeddingSet.id == MapLayout.embedding_set_id)
            .where(EmbeddingSet.backbone == backbone)
            .order_by(MapLayout.id.desc())
            .limit(1)
        ).first()
    return (int(row[0]), str(row[1])) if row is not None else None


@router.get("/map", response_model=MapOut, summary="The 2-D embedding map with labels")
def get_map(state: State, backbone: Annotated[str | None, Query(max_length=256)] = None) -> MapOut:
    """The newest stored layout of the backbone's embeddings.

    A PCA layout is made first when none is stored (``lensloop map`` makes t-SNE / UMAP).
    """
    from lensloop.embed.explore import map_images

    name = default_backbone(state, backbone)
    layout = _newest_layout(state, name)
    if layout is None:
        result = map_images(state.project, backbone=name, method="pca", png=False)
        layout = (result.layout_id, result.method)
    layout_id, method = layout
    with state.project.catalog.reader() as session:
        points = session.execute(
            select(MapPoint.image_id, MapPoint.x, MapPoint.y).where(MapPoint.layout_id == layout_id)
        ).all()
        info = image_rows(session, [int(p[0]) for p in points])
    out = []
    for image_id, x, y in points:
        row = info.get(int(image_id))
        if row is None:  # deleted since the layout was made
            continue
        out.append(
            MapPointOut(
                id=row.id,
                x=float(x),
                y=float(y),
                label=row.label,
                predicted=row.predicted,
                cluster=row.cluster,
            )
        )
    return MapOut(layout_id=layout_id, method=method, backbone=name, points=out)


def _clusters(state: ServiceState, backbone: str | None) -> ClustersOut:
    with state.project.catalog.reader() as session:
        run = latest_cluster_run(session, backbone)
        if run is None:
            return ClustersOut(run_id=None, method=None, clusters=[])
        method = session.scalar(select(ClusterRun.method).where(ClusterRun.id == run))
        sizes = session.execute(
            select(ClusterMember.cluster, func.count())
            .where(ClusterMember.run_id == run)
            .group_by(ClusterMember.cluster)
            .order_by(ClusterMember.cluster)
        ).all()
    return ClustersOut(
        run_id=run,
        method=method,
        clusters=[ClusterOut(cluster=int(c), size=int(n)) for c, n in sizes],
    )


@router.get("/clusters", response_model=ClustersOut, summary="The newest clustering run")
def get_clusters(
    state: State, backbone: Annotated[str | None, Query(max_length=256)] = None
) -> ClustersOut:
    return _clusters(state, backbone)


@router.post("/clusters", response_model=ClustersOut, summary="Cluster the embedded images")
def post_clusters(state: State, body: ClustersRequest) -> ClustersOut:
    from lensloop.embed.explore import cluster_images

    name = default_backbone(state, body.backbone)
    cluster_images(state.project, backbone=name, method=body.method, k=body.k, seed=body.seed)
    return _clusters(state, name)


def _similar_out(state: ServiceState, neighbours: list[tuple[int, float]]) -> SimilarOut:
    with state.project.catalog.reader() as session:
        rows = image_rows(session, [i for i, _ in neighbours])
    return SimilarOut(
        items=[
            SimilarItemOut(image=image_out(rows[i]), score=score)
            for i, score in neighbours
            if i in rows
        ]
    )


@router.get("/similar", response_model=SimilarOut, summary="Images most like a catalog image")
def get_similar(
    state: State,
    image_id: Annotated[int, Query(ge=1, le=MAX_ID)],
    k: Annotated[int, Query(ge=1, le=_K_MAX)] = 12,
    backbone: Annotated[str | None, Query(max_length=256)] = None,
) -> SimilarOut:
    from lensloop.embed.explore import similar_images

    name = default_backbone(state, backbone)
    found = similar_images(state.project, image_id, backbone=name, k=k)
    return _similar_out(state, [(n.image_id, n.score) for n in found])


@router.post("/similar", response_model=SimilarOut, summary="Images most like a sent image")
async def post_similar(
    state: State,
    file: Annotated[UploadFile | None, File()] = None,
    url: Annotated[str | None, Form(max_length=4096)] = None,
    k: Annotated[int, Form(ge=1, le=_K_MAX)] = 12,
    backbone: Annotated[str | None, Form(max_length=256)] = None,
) -> SimilarOut:
    from lensloop.embed.explore import similar_images

    received = await receive_image(
        file, url, max_bytes=state.upload_limit, policy=state.fetch_policy
    )
    probe_image(received.data, limits=state.project.limits, name=received.name)  # early 4xx
    name = default_backbone(state, backbone)
    found = await run_in_threadpool(
        similar_images, state.project, received.data, backbone=name, k=k
    )
    return _similar_out(state, [(n.image_id, n.score) for n in found])


@router.post("/embed", response_model=EmbedOut, summary="Embed a sent image")
async def post_embed(
    state: State,
    file: Annotated[UploadFile | None, File()] = None,
    url: Annotated[str | None, Form(max_length=4096)] = None,
    backbone: Annotated[str | None, Form(max_length=256)] = None,
) -> EmbedOut:
    from lensloop.embed.engine import l2_normalize

    received = await receive_image(
        file, url, max_bytes=state.upload_limit, policy=state.fetch_policy
    )
    name = default_backbone(state, backbone)

    def embed() -> EmbedOut:
        image = decode_received(received, limits=state.project.limits)
        model = state.backbone(name)
        vector = l2_normalize(model.infer(model.prepare(image)[None]))[0]
        return EmbedOut(
            backbone=name,
            version=model.version,
            dim=int(vector.shape[0]),
            vector=[float(v) for v in np.asarray(vector, dtype=np.float32)],
        )

    return await run_in_threadpool(embed)
