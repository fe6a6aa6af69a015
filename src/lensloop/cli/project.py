"""Project commands: init, ingest, status, datasets, db and the demo."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lensloop.cli._app import (
    DEFAULT_BACKBONE,
    SHOW_FAILURES,
    ExecutorOption,
    SchedulerOption,
    app,
    datasets_app,
    db_app,
    err,
    executor_for,
    get_settings,
    open_project,
    out,
    progress_bar,
)

if TYPE_CHECKING:
    from lensloop.project.ingest import IngestReport

__all__ = ["print_report", "print_status"]


# -- init -----------------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Project folder to create.")],
    task: Annotated[
        str, typer.Option(help="What the project trains: classify, segment or count.")
    ] = "classify",
    classes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated classes (a/b/c for taxonomy paths). Given classes close the "
            "schema: labels outside them are refused."
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Catalog database URL, e.g. postgresql+psycopg://user@host/db "
            "(default: SQLite in the folder)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
) -> None:
    """Create a project folder: lensloop.toml and the catalog."""
    from lensloop.project import Project
    from lensloop.project.config import TASKS

    if task not in TASKS:
        raise typer.BadParameter(
            f"{task!r}; valid tasks are: {', '.join(TASKS)}", param_hint="--task"
        )
    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else []
    with Project.init(
        directory,
        task=task,
        classes=class_list,
        db_url=db,
        name=name,
        settings=get_settings(),
    ) as project:
        out.print(
            f"Created {project.task} project [bold]{project.config.project.name}[/] at "
            f"{project.root} (catalog: {project.catalog.url})"
        )


# -- ingest ---------------------------------------------------------------------------------


def print_report(report: IngestReport) -> None:
    """Print an ingest report: counts, then skipped, duplicate and failed files."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("found", str(report.discovered))
    table.add_row("added", f"[green]{report.added}[/]")
    table.add_row("already in catalog", str(report.already_in_catalog))
    if report.duplicates:
        table.add_row("duplicates in this run", str(len(report.duplicates)))
    table.add_row("failed", f"[red]{len(report.failed)}[/]" if report.failed else "0")
    if report.skipped:
        table.add_row("skipped", str(len(report.skipped)))
    if report.labelled:
        table.add_row("labelled", str(report.labelled))
    for name, count in report.counts.items():
        table.add_row(name, str(count))
    if report.metadata_matched or report.metadata_unmatched:
        table.add_row("metadata rows matched", str(report.metadata_matched))
        table.add_row("metadata rows unmatched", str(len(report.metadata_unmatched)))
    if report.splits:
        table.add_row(
            "splits assigned", ", ".join(f"{k}={v}" for k, v in sorted(report.splits.items()))
        )
    table.add_row("time", f"{report.elapsed_s:.1f} s ({report.images_per_s:.0f} files/s)")
    out.print(table)
    if report.added == 0 and report.already_in_catalog and not report.failed:
        out.print("Nothing new: every image is already in the catalog.")
    for uri, why in report.skipped[:5]:
        out.print(f"  skipped: {uri} ({why})", highlight=False, markup=False)
    for uri, first in report.duplicates[:5]:
        out.print(f"  duplicate: {uri} (same content as {first})")
    if report.failed:
        out.print("[red]Files that could not be ingested[/] (recorded in the catalog):")
        for uri, reason in report.failed[:SHOW_FAILURES]:
            out.print(f"  {uri}: {reason}", highlight=False, markup=False)
        if len(report.failed) > SHOW_FAILURES:
            out.print(f"  ... and {len(report.failed) - SHOW_FAILURES} more")


@app.command()
def ingest(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Image files and folders (recursive), s3://bucket/prefix, https:// URLs, or "
            "what --format reads (a FlowCam export folder, a taxonomy JSON file)."
        ),
    ],
    labels_from_folders: Annotated[
        bool,
        typer.Option(
            "--labels-from-folders",
            help="Use folder names below each SOURCE folder as labels (ImageFolder layout).",
        ),
    ] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With nested taxonomy folders, the level used as the class (1 = first). The "
            "whole path is stored, so the project can be rolled up later.",
        ),
    ] = None,
    metadata: Annotated[
        Path | None, typer.Option(help="Metadata CSV joined on --key (file name or stem).")
    ] = None,
    key: Annotated[str, typer.Option(help="Metadata CSV column holding file names.")] = "filename",
    split: Annotated[
        str | None,
        typer.Option(
            help="Held-out shares per class, e.g. val=0.2,test=0.1 (train gets the rest)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    pages: Annotated[
        str,
        typer.Option(
            help="Multi-page TIFFs: 'each' page is an image, 'first' page only, or 'stack' "
            "pages as channels."
        ),
    ] = "each",
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images per catalog transaction.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Decode processes; 0 decodes in-process (default: chosen from the file "
            "count and sizes).",
        ),
    ] = None,
    source_format: Annotated[
        str, typer.Option("--format", help="Source format: folder, flowcam or taxonomy.")
    ] = "folder",
    store: Annotated[
        str,
        typer.Option(
            help="Remote images: 'reference' them in place (fetched on demand, cached) or "
            "'copy' them into --output."
        ),
    ] = "reference",
    output: Annotated[
        str | None,
        typer.Option(
            help="Where derived images (FlowCam crops, copies) are written: a folder or "
            "s3://bucket/prefix (default: the project's images/ folder)."
        ),
    ] = None,
    sample_pattern: Annotated[
        str | None,
        typer.Option(
            help="FlowCam: regular expression with named groups (sample, lat, lon, date, n) "
            "matched against the export folder's name (default: ..._<lat>_<lon>_<DDMMYYYY>[_<n>])."
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Downloads in flight at once (taxonomy catalogues).")
    ] = 4,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Add images (with folder labels and CSV metadata) to the catalog.

    Running the same ingest twice adds nothing; an interrupted ingest keeps what it
    committed and a re-run completes it. Bad files are reported and recorded, never fatal;
    the exit status is 1 only if nothing at all could be ingested.
    """
    from lensloop.project.ingest import PAGE_MODES, IngestOptions, parse_split
    from lensloop.project.ingest import ingest as run_ingest

    if pages not in PAGE_MODES:
        raise typer.BadParameter(f"{pages!r}; valid: {', '.join(PAGE_MODES)}", param_hint="--pages")
    if store not in ("reference", "copy"):
        raise typer.BadParameter(f"{store!r}; valid: reference, copy", param_hint="--store")
    if depth is not None and not labels_from_folders and source_format != "taxonomy":
        raise typer.BadParameter(
            "--depth needs --labels-from-folders (or --format taxonomy)", param_hint="--depth"
        )
    settings = get_settings()
    options = IngestOptions(
        labels_from_folders=labels_from_folders,
        depth=depth,
        metadata=metadata,
        key=key,
        split=parse_split(split) if split else None,
        seed=seed,
        pages=pages,
        batch_size=batch_size or settings.ingest_batch_size,
        workers=workers if workers is not None else settings.ingest_workers,
        source_format=source_format,
        store=store,  # type: ignore[arg-type]
        output=output,
        sample_pattern=sample_pattern,
        concurrency=concurrency,
    )
    with (
        open_project(directory) as project,
        executor_for(executor, scheduler) as runner,
        progress_bar("ingesting") as progress,
    ):
        options = dataclasses.replace(options, executor=runner)
        report = run_ingest(project, sources, options=options, progress=progress)
    print_report(report)
    if not report.ok:
        err.print("[red]error:[/] nothing could be ingested")
        raise typer.Exit(1)


# -- status ---------------------------------------------------------------------------------


def print_status(status: dict[str, Any]) -> None:
    """Print a project status (the dict of :func:`lensloop.project.project_status`)."""
    project, images = status["project"], status["images"]
    out.print(f"[bold]{project['name']}[/] ({project['task']}) at {project['root']}")
    out.print(f"catalog: {project['catalog']}")
    out.print(
        f"images: {images['total']} ({images['labelled']} labelled, "
        f"{images['unlabelled']} unlabelled, {images['failed_files']} failed files, "
        f"{images['samples']} samples)"
    )
    out.print("splits: " + ", ".join(f"{k}={v}" for k, v in status["splits"].items()))
    classes = status["labels"]["classes"]
    if classes:
        depth = status["labels"]["depth"]
        table = Table(title=f"labelled images per class (depth: {depth or 'deepest'})")
        table.add_column("class")
        table.add_column("images", justify="right")
        for cls in classes:
            table.add_row(cls["path"], str(cls["labelled_images"]))
        out.print(table)
    out.print(f"embeddings: {len(status['embeddings'])} set(s); models: {len(status['models'])}")
    if status["selection_rounds"]:
        out.print(
            f"selection rounds: {status['selection_rounds']} "
            f"({status['queued_images']} images queued for labelling)"
        )


@app.command()
def status(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the documented JSON shape (docs/status.md).")
    ] = False,
) -> None:
    """Show images, labelled images per class, splits, embeddings and models."""
    from lensloop.project import project_status

    with open_project(directory) as project:
        summary = project_status(project)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_status(summary)


# -- datasets -------------------------------------------------------------------------------


@datasets_app.command("list")
def datasets_list() -> None:
    """List the data sets lensloop can fetch."""
    from lensloop.datasets import list_datasets

    table = Table("name", "images", "classes", "source", "license", "description")
    for info in list_datasets():
        table.add_row(
            info.name,
            str(info.n_images),
            str(info.n_classes),
            info.source,
            info.license,
            info.description,
        )
    out.print(table)


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Data set name (see `lensloop datasets list`).")],
    dest: Annotated[
        Path | None, typer.Option(help="Copy the images here (default: keep in the user cache).")
    ] = None,
) -> None:
    """Fetch a demo data set into the user cache (once) and print where it is."""
    from lensloop.datasets import fetch_dataset

    path = fetch_dataset(name, cache_dir=get_settings().cache_dir, dest=dest)
    out.print(str(path), highlight=False)


# -- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(directory: Annotated[Path, typer.Argument(help="Project folder.")]) -> None:
    """Migrate the project's catalog to this lensloop's schema (back it up first)."""
    from lensloop.project import Project

    with Project.open(directory, settings=get_settings(), migrate=True) as project:
        out.print(f"catalog at {project.catalog.url} is up to date")


# -- demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Project folder for the demo.")] = Path(
        "demo-project"
    ),
) -> None:
    """Run the whole loop on real data: fetch, ingest, embed, map, simulate, train, report.

    Safe to run again: the project is reused and nothing is ingested twice.
    """
    from lensloop.datasets import fetch_dataset
    from lensloop.project import Project, project_status
    from lensloop.project.config import CONFIG_FILE
    from lensloop.project.ingest import IngestOptions
    from lensloop.project.ingest import ingest as run_ingest

    settings = get_settings()
    out.rule("1. fetch the plankton demo data set")
    data = fetch_dataset("plankton-demo", cache_dir=settings.cache_dir)
    out.print(f"images in {data}")
    out.rule("2. create the project")
    if (directory / CONFIG_FILE).exists():
        project = Project.open(directory, settings=settings)
        out.print(f"reusing the project at {project.root}")
    else:
        project = Project.init(directory, task="classify", settings=settings)
        out.print(f"created {project.root}")
    with project:
        out.rule("3. ingest with folder labels")
        options = IngestOptions(labels_from_folders=True, split={"val": 0.2, "test": 0.1}, seed=0)
        report = run_ingest(project, [data], options=options)
        print_report(report)
        out.rule(f"4. embed ({DEFAULT_BACKBONE})")
        from lensloop.embed.engine import embed_project
        from lensloop.embed.explore import map_images
        from lensloop.embed.registry import BackboneOptions, get_backbone

        options_ = BackboneOptions(cache_dir=settings.cache_dir, project_root=project.root)
        embedded = embed_project(project, get_backbone(DEFAULT_BACKBONE, options_))
        out.print(
            f"{embedded.embedded} embedded, {embedded.already_embedded} already had vectors "
            f"({embedded.dim}-d, {embedded.elapsed_s:.1f} s)"
        )
        out.rule("5. map")
        drawn = map_images(project, backbone=DEFAULT_BACKBONE, method="pca", size_px=1200)
        out.print(f"map of {drawn.n_points} images drawn to {drawn.png_path}", highlight=False)
        out.rule("6. active learning: simulated labelling, auto vs random")
        from lensloop.cli.select import print_simulation
        from lensloop.select.simulate import SimulationConfig, simulate

        config = SimulationConfig(
            rounds=5,
            per_round=6,
            strategies=("auto", "random"),
            seeds=5,
            backbone=DEFAULT_BACKBONE,
        )
        with progress_bar("simulating") as progress:
            simulation = simulate(project, config, progress=progress)
        print_simulation(simulation)
        out.rule("7. train classifiers and release them")
        from lensloop.errors import ConfigError
        from lensloop.train.config import TrainConfig
        from lensloop.train.evaluate import evaluate_model
        from lensloop.train.inference import init_model, predict_project
        from lensloop.train.registry import resolve_model
        from lensloop.train.trainer import train_model

        trained = [train_model(project, TrainConfig(backbone=DEFAULT_BACKBONE, cv=5))]
        try:
            with progress_bar("fine-tuning EfficientNet-Lite0") as update:
                trained.append(
                    train_model(
                        project,
                        TrainConfig(method="finetune"),
                        progress=lambda _stage, done, total: update(done, total),
                    )
                )
        except ConfigError as exc:  # lensloop[train] not installed: the probe is enough
            out.print(f"fine-tuning skipped: {exc}")
        for result in trained:
            val = result.metrics["val"]
            cv = result.metrics.get("cv")
            method = result.model.config["method"]
            out.print(
                f"model version {result.model.version} ({method}, {result.elapsed_s:.0f} s): "
                f"val accuracy {val['accuracy']:.3f}"
                + (
                    f", 5-fold accuracy {cv['accuracy_mean']:.3f} ± {cv['accuracy_std']:.3f}"
                    if cv
                    else ""
                )
                + f"; released to {result.model.folder}",
                highlight=False,
            )
        champion = resolve_model(project, "champion")
        out.print(f"champion: version {champion.version} ({champion.config['method']})")
        out.rule("8. evaluate the champion on the test split, predict every image")
        tested = evaluate_model(project, str(champion.version), split="test")
        out.print(
            f"test ({tested.metrics['n']} images): accuracy {tested.metrics['accuracy']:.3f}, "
            f"macro-F1 {tested.metrics['macro_f1']:.3f}"
        )
        model = init_model(champion.version, project=project)
        predicted = predict_project(project, model)
        out.print(f"{predicted.predicted} predictions stored ({predicted.already} already were)")
        out.rule("9. report")
        html_report = _demo_report(project, simulation, trained, tested)
        out.print(f"HTML report: {html_report}", highlight=False)
        out.rule("10. status")
        print_status(project_status(project))


def _demo_report(project: Any, simulation: Any, trained: Any, tested: Any) -> Path:
    """The demo's one-file HTML report: curves, training, test metrics and figures."""
    from lensloop.reports.html import Section, write_html_report

    curves = [["strategy", *(str(b) for b in simulation.curves[0].budgets), "AUC"]]
    for curve in simulation.curves:
        means = [f"{m:.3f}" for m in curve.mean("accuracy")]
        curves.append([curve.strategy, *means, f"{curve.auc('accuracy').mean():.3f}"])
    per_class = [["class", "precision", "recall", "images"]] + [
        [name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", row["support"]]
        for name, row in tested.metrics["per_class"].items()
    ]
    sections = [
        Section(
            "Active learning, simulated",
            [
                f"Held-out accuracy against the number of labels, mean of "
                f"{simulation.config.seeds} seeds ({simulation.n_pool} pool images, "
                f"{simulation.n_eval} held out): the default strategy against random."
            ],
            [curves],
            [simulation.png_path] if simulation.png_path else [],
        ),
        Section(
            "Models trained",
            [
                "The probe is a logistic regression on the stored EfficientNet-Lite0 "
                "embeddings; the fine-tuned model is the whole CNN trained on the images. "
                "The champion (the better on the validation split) is scored on the test "
                "split below."
            ],
            [
                [["version", "method", "seconds", "val accuracy", "5-fold accuracy"]]
                + [
                    [
                        str(r.model.version),
                        r.model.config["method"],
                        f"{r.elapsed_s:.0f}",
                        f"{r.metrics['val']['accuracy']:.3f}",
                        (
                            f"{r.metrics['cv']['accuracy_mean']:.3f} ± "
                            f"{r.metrics['cv']['accuracy_std']:.3f}"
                            if "cv" in r.metrics
                            else "-"
                        ),
                    ]
                    for r in trained
                ]
            ],
        ),
        Section(
            f"Test split, model version {tested.version}",
            [
                f"Accuracy {tested.metrics['accuracy']:.3f}, macro-F1 "
                f"{tested.metrics['macro_f1']:.3f} on {tested.metrics['n']} images. The grid "
                "shows predicted against actual labels, errors first."
            ],
            [per_class],
            [p for p in (tested.confusion_png, tested.grid_png) if p is not None],
        ),
    ]
    return write_html_report(project.root / "reports" / "demo.html", "lensloop demo", sections)
