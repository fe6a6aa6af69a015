"""``lensloop segment`` and ``lensloop measure``: masks, region measurements, label import.

``lensloop segment IMAGES_OR_FOLDERS...`` runs the ``images`` command (the group sends
any first word that is not a command name there); ``lensloop segment import`` reads
outside label files into a project. ``lensloop measure`` measures the regions of
predicted masks (a released model on images, or on a project's images) or of a project's
annotated masks, and writes one CSV row per image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lensloop.cli._app import (
    DefaultCommandGroup,
    ExecutorOption,
    ModelProjectOption,
    ReleasedModelOption,
    SchedulerOption,
    app,
    err,
    executor_for,
    get_settings,
    load_released,
    open_project,
    out,
    output_names,
    progress_bar,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from lensloop.executors import Executor
    from lensloop.project import Project
    from lensloop.train.segmenter import Segmenter

__all__ = ["measure_command", "segment_app"]

segment_app = typer.Typer(
    cls=DefaultCommandGroup,
    help="Segment images: `lensloop segment IMAGES_OR_FOLDERS... [--model M] [--out DIR]` "
    "writes a label mask and an overlay per image with a released segmentation model; "
    "`lensloop segment import DIR FILES...` reads masks, labelme or LabelBox files.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@segment_app.command("import")
def import_command(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Label files or folders: PNG masks of class indices (named after their "
            "images), labelme JSON, LabelBox JSON or NDJSON exports."
        ),
    ],
    annotator: Annotated[
        str,
        typer.Option("--annotator", help="Annotator of entries whose file names none."),
    ] = "import",
    label_format: Annotated[
        str,
        typer.Option(
            "--format", help="auto (from each file), mask, labelme, labelbox or labelbox-ndjson."
        ),
    ] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Import segmentation labels (polygons and masks) into a segment project.

    A PNG mask holds class indices: 0 background, k the project's k-th class (sorted),
    255 void. Images are named by catalog id, full URI or the end of their path.
    Importing the same files again adds nothing; a changed file adds a new version. A bad
    file stops the import with a message naming it, and nothing is written.
    """
    from lensloop.annotate.maskfiles import import_labels

    with open_project(directory) as project:
        report = import_labels(project, files, annotator=annotator, format=label_format)
    if as_json:
        out.print(json.dumps(report.as_dict()), markup=False, highlight=False)
        return
    skipped = ", ".join(f"{n} {kind}" for kind, n in sorted(report.skipped.items()))
    out.print(
        f"read {report.regions} regions for {report.images} images: added {report.added} "
        f"annotations ({report.superseded} of them new versions), {report.unchanged} "
        "already imported" + (f"; skipped shapes without area: {skipped}" if skipped else ""),
        highlight=False,
    )


@segment_app.command(DefaultCommandGroup.default_command)
def images_command(
    images: Annotated[
        list[Path], typer.Argument(help="Image files or folders (searched recursively).")
    ],
    model: ReleasedModelOption = None,
    project_dir: ModelProjectOption = None,
    output: Annotated[
        Path,
        typer.Option("--out", help="Folder for segments.json, masks/ (label PNGs) and overlays/."),
    ] = Path("segments"),
    overlays: Annotated[
        bool, typer.Option("--overlays/--no-overlays", help="Draw an overlay PNG per image.")
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Replace existing results in --out.")
    ] = False,
    as_json: JsonOption = False,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Segment images with a released segmentation model.

    Writes OUT/masks/NAME.png (8-bit label PNG: 0 background, k the model's k-th class),
    unless --no-overlays OUT/overlays/NAME.png, and OUT/segments.json (the classes and
    each image's mask file and class area fractions). Images of any size are segmented
    in overlapping tiles. With --executor dask the images are segmented by Dask workers
    (16 per task; they must reach the files and the model) and the files above are
    written here as usual.
    """
    import numpy as np

    from lensloop.errors import ConfigError
    from lensloop.imaging import atomic_write
    from lensloop.reports.segmentation import draw_segment_overlay
    from lensloop.train.dense import expand_images, read_file
    from lensloop.train.segmenter import load_segmenter

    index_file = output / "segments.json"
    if index_file.exists() and not force:
        raise ConfigError(
            f"{index_file} exists; pass --force to replace it or choose another --out"
        )
    found = [p for p in expand_images(list(images)) if isinstance(p, Path)]
    segmenter = load_released(model, project_dir, load_segmenter)
    names = output_names(found)
    (output / "masks").mkdir(parents=True, exist_ok=True)
    if overlays:
        (output / "overlays").mkdir(parents=True, exist_ok=True)
    classes = list(segmenter.classes)
    done_images: dict[str, Any] = {}
    with executor_for(executor, scheduler) as runner:
        for path, labels, image in _segmented(runner, segmenter, found, "segmenting"):
            mask_file = output / "masks" / names[path]
            _write_label_png(mask_file, labels)
            counts = np.bincount(labels.ravel(), minlength=len(classes) + 1)
            entry: dict[str, Any] = {
                "mask": str(mask_file),
                "fractions": {
                    name: round(float(counts[k]) / labels.size, 6)
                    for k, name in enumerate(["background", *classes])
                },
            }
            if overlays:
                entry["overlay"] = str(
                    draw_segment_overlay(
                        image if image is not None else read_file(path, verb="segment"),
                        labels,
                        classes,
                        output / "overlays" / names[path],
                        title=path.name,
                    )
                )
            done_images[str(path)] = entry
    document = {
        "model": {"version": segmenter.version, "folder": str(segmenter.folder)},
        "classes": classes,
        "labels": "mask PNG values: 0 background, k classes[k-1]",
        "images": done_images,
    }
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(index_file, text.encode("utf-8"), overwrite=True)
    if as_json:
        out.print_json(json.dumps({"images": len(done_images), "file": str(index_file)}))
        return
    out.print(
        f"segmented {len(done_images)} images into {', '.join(classes)}: masks in "
        f"{output / 'masks'}"
        + (f", overlays in {output / 'overlays'}" if overlays else "")
        + f"; index in {index_file}",
        highlight=False,
    )


def _segmented(
    runner: Executor, segmenter: Segmenter, paths: list[Path], what: str
) -> Iterator[tuple[Path, npt.NDArray[np.uint8], npt.NDArray[Any] | None]]:
    """``(path, label map, image or None)`` per image file, with a progress bar."""
    from lensloop.train.sharded import segment_files

    with progress_bar(what) as progress:
        results = segment_files(runner, segmenter, get_settings(), paths)
        for done, result in enumerate(results, start=1):
            yield result
            progress(done, len(paths))


def _write_label_png(path: Path, labels: npt.NDArray[np.uint8]) -> None:
    """An 8-bit grey PNG of the label values, written atomically."""
    import io

    from PIL import Image as PILImage

    from lensloop.imaging import atomic_write

    buffer = io.BytesIO()
    PILImage.fromarray(labels, mode="L").save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue(), overwrite=True)


@app.command("measure")
def measure_command(
    targets: Annotated[
        list[Path],
        typer.Argument(help="A segment project folder (its images), or image files and folders."),
    ],
    model: ReleasedModelOption = None,
    project_dir: ModelProjectOption = None,
    annotated: Annotated[
        bool,
        typer.Option(
            "--annotated",
            help="Measure the project's annotated masks instead of predicting (the target "
            "must be a project folder).",
        ),
    ] = False,
    output: Annotated[Path, typer.Option("--out", help="The CSV file (one row per image).")] = Path(
        "measurements.csv"
    ),
    overlays: Annotated[
        Path | None,
        typer.Option("--overlays", help="Also draw an overlay PNG per image in this folder."),
    ] = None,
    min_area: Annotated[
        int | None,
        typer.Option(
            "--min-area",
            min=0,
            help="Smallest fragment counted, in pixels (default: the project's [segment] "
            "min_area, else 0).",
        ),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(
            "--pixel-size",
            help="Units per pixel (e.g. mm) to add areas in units squared (default: the "
            "project's [segment] pixel_size).",
        ),
    ] = None,
    summary: Annotated[
        list[str] | None,
        typer.Option(
            "--summary",
            help="A summary column, e.g. 'intact = fraction(rock, of=box)' or 'pieces = "
            "count(rock)'; repeat for more (default: the project's [segment] summary, else "
            "each class's fraction and fragment count).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Measure the regions of segmentation masks: areas, fragments, shapes, summary scores.

    Per image and class: area in pixels and as a fraction of the image, number of
    fragments (connected pieces of at least --min-area pixels), perimeter, complexity
    (perimeter squared over 4 pi area: 1 for a disc) and the largest fragment; then the
    summary columns. Masks are predicted by a released segmentation model (--model), or
    with --annotated taken from the project's own annotations.
    """
    from lensloop.errors import ConfigError
    from lensloop.project.config import CONFIG_FILE
    from lensloop.tasks.segment.measure import (
        measure_regions,
        measurements_row,
        write_measurements_csv,
    )

    if pixel_size is not None and not pixel_size > 0:
        raise typer.BadParameter(
            f"must be a positive number of units per pixel, got {pixel_size}",
            param_hint="--pixel-size",
        )
    if output.exists() and not force:
        raise ConfigError(f"{output} exists; pass --force to replace it or choose another --out")
    project_root = _project_target(targets, CONFIG_FILE)
    if annotated and project_root is None:
        raise ConfigError(
            "--annotated measures a project's annotated masks: pass the project folder alone"
        )
    settings = _segment_settings((project_root or project_dir or Path.cwd()) / CONFIG_FILE)
    min_area = min_area if min_area is not None else settings.get("min_area", 0)
    pixel_size = pixel_size if pixel_size is not None else settings.get("pixel_size")
    rows: list[dict[str, Any]] = []
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if project_root is not None:
            project = stack.enter_context(open_project(project_root))
            classes, source = (
                _annotated_maps(project) if annotated else _project_maps(project, model)
            )
        else:
            classes, source = _file_maps(targets, model, project_dir)
        specs = _specs(summary, settings, classes)
        for name, stem, image, labels in source:
            found = measure_regions(labels, classes, min_area=min_area, pixel_size=pixel_size)
            rows.append(measurements_row(name, found, specs, units=pixel_size is not None))
            if overlays is not None:
                from lensloop.reports.segmentation import draw_segment_overlay

                draw_segment_overlay(image, labels, classes, overlays / f"{stem}.png", title=name)
    write_measurements_csv(output, rows, force=force)
    if as_json:
        out.print(json.dumps({"file": str(output), "rows": rows}), markup=False, highlight=False)
        return
    if not rows:
        err.print("no images to measure")
    out.print(f"measured {len(rows)} images; one row each in {output}", highlight=False)


def _project_target(targets: list[Path], config_file: str) -> Path | None:
    """The project folder when the targets are exactly one project folder."""
    if len(targets) == 1 and (targets[0] / config_file).is_file():
        return targets[0]
    return None


def _segment_settings(config_path: Path) -> dict[str, Any]:
    """The ``[segment]`` settings of the project at ``config_path``, if there is one."""
    from lensloop.project.config import load_config

    if not config_path.is_file():
        return {}
    return load_config(config_path).segment.model_dump()


def _specs(summary: list[str] | None, settings: dict[str, Any], classes: list[str]) -> Any:
    """The summary columns: --summary, else the project's, else each class's defaults."""
    from lensloop.tasks.segment.measure import default_summary, parse_summary

    texts = summary or settings.get("summary") or []
    return parse_summary(texts, classes) if texts else default_summary(classes)


_Maps = Iterator[tuple[str, str, "npt.NDArray[Any]", "npt.NDArray[np.uint8]"]]
"""``(name, overlay file stem, image, label map)`` per image measured."""


def _file_maps(
    targets: list[Path], model: str | None, project_dir: Path | None
) -> tuple[list[str], _Maps]:
    """The classes and the predicted label maps of image files and folders."""
    from lensloop.executors import LocalExecutor
    from lensloop.train.dense import expand_images, read_file
    from lensloop.train.segmenter import load_segmenter

    paths = [p for p in expand_images(list(targets)) if isinstance(p, Path)]
    segmenter = load_released(model, project_dir, load_segmenter)
    names = output_names(paths, suffix="")

    def maps() -> _Maps:
        # In this process: each image comes back with its label map (never read twice).
        for path, labels, image in _segmented(LocalExecutor(), segmenter, paths, "measuring"):
            pixels = image if image is not None else read_file(path, verb="measure")
            yield str(path), names[path], pixels, labels

    return list(segmenter.classes), maps()


def _project_maps(project: Project, model: str | None) -> tuple[list[str], _Maps]:
    """The classes and the predicted label maps of every image in the project."""
    from sqlalchemy import select

    from lensloop.catalog.models import Image
    from lensloop.train.segmenter import load_segmenter

    if model is not None and Path(model).is_dir():
        segmenter = load_segmenter(Path(model), settings=project.settings)
    else:
        segmenter = load_segmenter(model, project=project)
    with project.catalog.reader() as session:
        rows = list(session.execute(select(Image.id, Image.uri).order_by(Image.id)))

    def maps() -> _Maps:
        with progress_bar("measuring") as progress:
            for done, (image_id, uri) in enumerate(rows, start=1):
                image = project.read_image(image_id)
                labels = segmenter.segment_array(image, name=uri).labels
                yield uri, f"{image_id}-{Path(uri).stem}", image, labels
                progress(done, len(rows))

    return list(segmenter.classes), maps()


def _annotated_maps(project: Project) -> tuple[list[str], _Maps]:
    """The classes and the annotated label maps of the project's annotated images."""
    from sqlalchemy import select

    from lensloop.catalog.models import Image
    from lensloop.tasks.segment.data import load_segment_images, segment_classes

    items = load_segment_images(project)
    classes = segment_classes(project, items)
    settings = project.config.segment
    with project.catalog.reader() as session:
        uris = {i: uri for i, uri in session.execute(select(Image.id, Image.uri))}

    def maps() -> _Maps:
        for item in items:
            labels = item.label_map(
                classes, draw_order=settings.draw_order, unlabelled=settings.unlabelled
            )
            uri = uris[item.image_id]
            yield (
                uri,
                f"{item.image_id}-{Path(uri).stem}",
                project.read_image(item.image_id),
                labels,
            )

    return classes, maps()
