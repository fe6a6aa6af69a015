"""``lensloop count``: count objects with a model; import points; check annotator agreement.

``lensloop count IMAGES_OR_FOLDERS...`` runs the ``images`` command (the group sends any
first word that is not a command name there); ``import`` and ``agreement`` work on a
project's point annotations.
"""

from __future__ import annotations

import csv
import io
import json
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
    pass

__all__ = ["count_app"]

count_app = typer.Typer(
    cls=DefaultCommandGroup,
    help="Count and localise objects: `lensloop count IMAGES_OR_FOLDERS... [--model M] "
    "[--out DIR]` with a released counting model; import point annotations; check how well "
    "annotators agree.",
    no_args_is_help=True,
)
app.add_typer(count_app, name="count")

ProjectDir = Annotated[Path, typer.Argument(help="Project folder.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
RadiusOption = Annotated[
    float,
    typer.Option(
        "--radius", help="Largest distance in pixels between two annotators' clicks on one object."
    ),
]

_CSV_COLUMNS = (
    "image_id",
    "uri",
    "status",
    "annotators",
    "counts",
    "consensus",
    "disputed",
    "agreement",
)


@count_app.command("import")
def import_command(
    directory: ProjectDir,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV (image,x,y[,annotator,label,status]) or JSON point file; x, y in "
            "pixels of the original image."
        ),
    ],
    annotator: Annotated[
        str | None,
        typer.Option("--annotator", help="Annotator of entries that name none (default: import)."),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Status of images the file gives none: empty, sparse, full or conflict "
            "(default: sparse, some objects clicked).",
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            help="Label of points without one (default: the project's class, if it has one).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import point annotations from a CSV or JSON file.

    Images are named by catalog id, full URI, or the end of their path (plate1/a.png).
    Importing the same file again adds nothing; a changed entry is added as a new version
    of the old one. A bad entry stops the import with a message naming it, and nothing
    is written.
    """
    from lensloop.annotate.pointfiles import import_points

    with open_project(directory) as project:
        report = import_points(project, file, annotator=annotator, status=status, label=label)
    if as_json:
        out.print(json.dumps(report.as_dict()), markup=False, highlight=False)
        return
    out.print(
        f"read {report.points} points in {report.entries} entries for {report.images} "
        f"images: added {report.added} annotations ({report.superseded} of them new "
        f"versions), {report.unchanged} already imported"
    )


@count_app.command("agreement")
def agreement_command(
    directory: ProjectDir,
    radius: RadiusOption = 5.0,
    as_json: JsonOption = False,
    output: Annotated[
        Path | None, typer.Option("--out", help="Also write the table to this CSV file.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Show how well annotators agree on each image's points, worst first.

    Clicks of different annotators within --radius pixels are the same object; an object
    most annotators marked is agreed (consensus), the others are disputed. Agreement is
    the lowest F1 between two annotators of the image.
    """
    from lensloop.errors import ConfigError
    from lensloop.tasks.counting.data import agreement_report

    if not radius > 0:
        raise typer.BadParameter(
            f"must be a positive number of pixels, got {radius}", param_hint="--radius"
        )
    if output is not None and output.exists() and not force:
        raise ConfigError(f"{output} exists; choose another file or pass --force to replace it")
    with open_project(directory) as project:
        rows = agreement_report(project, radius=radius)
    if output is not None:
        _write_csv(output, rows, overwrite=force)
    if as_json:
        out.print(json.dumps(rows), markup=False, highlight=False)
    elif not rows:
        err.print("no point annotations yet; import some with `lensloop count import DIR FILE`")
    else:
        _print_agreement(rows)
    if output is not None:
        err.print(f"wrote {len(rows)} rows to {output}")


def _print_agreement(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Annotator agreement (worst first)")
    table.add_column("image", justify="right", no_wrap=True)
    table.add_column("uri", overflow="fold")
    table.add_column("annotators: points")
    for name in ("consensus", "disputed", "agreement"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["image_id"]),
            Text(row["uri"]),
            Text(", ".join(f"{name}: {n}" for name, n in row["counts"].items())),
            str(row["consensus"]),
            str(row["disputed"]),
            f"{row['agreement']:.2f}",
            row["status"],
        )
    out.print(table)
    several = [row for row in rows if len(row["annotators"]) >= 2]
    conflict = sum(row["status"] == "conflict" for row in rows)
    mean = (
        f", mean agreement {sum(row['agreement'] for row in several) / len(several):.2f}"
        if several
        else ""
    )
    out.print(
        f"{len(rows)} images with points; {len(several)} with 2 or more annotators{mean}; "
        f"{conflict} in conflict"
    )


def _write_csv(path: Path, rows: list[dict[str, Any]], *, overwrite: bool) -> None:
    from lensloop.imaging import atomic_write

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row["image_id"],
                row["uri"],
                row["status"],
                ";".join(row["annotators"]),
                ";".join(f"{name}={n}" for name, n in row["counts"].items()),
                row["consensus"],
                row["disputed"],
                f"{row['agreement']:.4f}",
            ]
        )
    atomic_write(path, buffer.getvalue().encode("utf-8"), overwrite=overwrite)


@count_app.command(DefaultCommandGroup.default_command)
def images_command(
    images: Annotated[
        list[Path], typer.Argument(help="Image files or folders (searched recursively).")
    ],
    model: ReleasedModelOption = None,
    project_dir: ModelProjectOption = None,
    output: Annotated[
        Path,
        typer.Option("--out", help="Folder for counts.json and the overlays in plots/."),
    ] = Path("counts"),
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw an overlay PNG per image.")
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing counts.json in --out.")
    ] = False,
    as_json: JsonOption = False,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Count and locate objects in images with a released counting model.

    Writes OUT/counts.json (each image's count, the sum of the model's density map, and
    the located objects' x, y in pixels) and, unless --no-plots, an overlay per image in
    OUT/plots/. Images of any size are counted in overlapping tiles. With --executor dask
    the images are counted by Dask workers (16 per task; they must reach the files and
    the model), and the files above are written here as usual.
    """
    from lensloop.errors import ConfigError
    from lensloop.imaging import atomic_write
    from lensloop.reports import draw_count_overlay
    from lensloop.train.counter import load_counter
    from lensloop.train.dense import expand_images, read_file
    from lensloop.train.sharded import count_files

    counts_file = output / "counts.json"
    if counts_file.exists() and not force:
        raise ConfigError(
            f"{counts_file} exists; pass --force to replace it or choose another --out"
        )
    found = [p for p in expand_images(list(images)) if isinstance(p, Path)]
    counter = load_released(model, project_dir, load_counter)
    names = output_names(found)
    if plots:
        (output / "plots").mkdir(parents=True, exist_ok=True)
    counts: dict[str, float] = {}
    located: dict[str, Any] = {}
    with executor_for(executor, scheduler) as runner, progress_bar("counting") as progress:
        results = count_files(runner, counter, get_settings(), found)
        for done, (path, result, image) in enumerate(results, start=1):
            counts[str(path)] = round(result.count, 3)
            located[str(path)] = result.as_dict()["points"]
            if plots:
                draw_count_overlay(
                    image if image is not None else read_file(path, verb="count"),
                    result.points,
                    output / "plots" / names[path],
                    title=f"{path.name}: {result.count:.1f}",
                )
            progress(done, len(found))
    document = {
        "model": {
            "version": counter.version,
            "folder": str(counter.folder),
            "sigma": counter.sigma,
            "threshold": counter.threshold,
        },
        "counts": counts,
        "locations": located,
    }
    output.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(counts_file, text.encode("utf-8"), overwrite=True)
    if as_json:
        out.print_json(json.dumps({"counts": counts, "file": str(counts_file)}))
        return
    total = sum(counts.values())
    out.print(
        f"counted {len(counts)} images: {total:.1f} objects in all; counts and locations in "
        f"{counts_file}" + (f", overlays in {output / 'plots'}" if plots else ""),
        highlight=False,
    )
