"""Pipeline commands: ``lensloop pipeline init`` (a DVC pipeline) and ``summary``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from lensloop.cli._app import DEFAULT_BACKBONE, app, err, get_settings, open_project, out

__all__: list[str] = []

pipeline_app = typer.Typer(
    help="Reproducible pipelines: a dvc.yaml so `dvc repro` reruns only what changed.",
    no_args_is_help=True,
)
app.add_typer(pipeline_app, name="pipeline")

_DVC_MISSING = "DVC is not installed; install it with: pip install 'lensloop[pipeline]'"


@pipeline_app.command("init")
def pipeline_init(
    directory: Annotated[
        Path, typer.Argument(help="Project folder (created as a classify project if missing).")
    ],
    source: Annotated[
        Path,
        typer.Option(
            exists=True,
            help="Image folder the ingest stage reads (a dependency: DVC reruns ingest "
            "when its files change).",
        ),
    ],
    labels_from_folders: Annotated[
        bool,
        typer.Option(
            "--labels-from-folders/--no-labels-from-folders",
            help="Ingest folder names below SOURCE as labels (ImageFolder layout).",
        ),
    ] = True,
    metadata: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Metadata CSV for ingest (a dependency)."),
    ] = None,
    key: Annotated[str, typer.Option(help="Metadata CSV column holding file names.")] = "filename",
    split: Annotated[
        str, typer.Option(help="Held-out shares per class, given to `lensloop ingest --split`.")
    ] = "val=0.2,test=0.1",
    backbone: Annotated[
        str, typer.Option(help="Embedding backbone (see `lensloop embed --help`).")
    ] = DEFAULT_BACKBONE,
    method: Annotated[str, typer.Option(help="Training method: probe or finetune.")] = "probe",
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Probe solver iterations or finetune epochs (default: the trainer's)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the split and of training.")] = 0,
    eval_split: Annotated[
        str, typer.Option("--eval-split", help="Split the evaluate stage scores: val or test.")
    ] = "test",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing dvc.yaml and params.yaml.")
    ] = False,
    dvc_init: Annotated[
        bool,
        typer.Option(
            "--dvc-init",
            help="Also run `dvc init --no-scm` in DIRECTORY if it is not inside a DVC "
            "repository yet (needs lensloop[pipeline]).",
        ),
    ] = False,
) -> None:
    """Write dvc.yaml and params.yaml: ingest → embed → train → evaluate, predict.

    Each stage calls the lensloop CLI and declares what it reads (the source folder,
    metadata CSV, lensloop.toml, params.yaml settings, the previous stage's record) and
    what it writes (a small record under DIRECTORY/pipeline/; evaluate's metrics file is a
    DVC metric), so `dvc repro` reruns only what changed: edit `train.epochs` in
    params.yaml and only train, evaluate and predict run again.
    """
    from lensloop.errors import ConfigError
    from lensloop.project import Project
    from lensloop.project.config import CONFIG_FILE
    from lensloop.project.pipeline import (
        DVC_FILE,
        METHODS,
        PipelineOptions,
        find_dvc_root,
        source_param,
        write_pipeline,
    )

    if method not in METHODS:
        raise typer.BadParameter(f"{method!r}; valid: {', '.join(METHODS)}", param_hint="--method")
    if eval_split not in ("val", "test"):
        raise typer.BadParameter(f"{eval_split!r}; valid: val, test", param_hint="--eval-split")
    if (directory / CONFIG_FILE).is_file():
        with open_project(directory) as project:
            task = project.task
    else:
        with Project.init(directory, task="classify", settings=get_settings()) as project:
            task = project.task
        out.print(f"Created classify project at {project.root}", highlight=False)
    if task != "classify":
        raise ConfigError(
            f"{directory} is a {task} project; `lensloop pipeline init` writes pipelines for "
            "classify projects only (ingest, embed, train, evaluate, predict)"
        )
    root = directory.resolve()
    options = PipelineOptions(
        source=source_param(source, root),
        labels_from_folders=labels_from_folders,
        metadata=source_param(metadata, root) if metadata is not None else None,
        key=key,
        split=split,
        backbone=backbone,
        method=method,
        epochs=epochs,
        seed=seed,
        eval_split=eval_split,
    )
    written = write_pipeline(root, options, force=force)
    out.print(
        f"Wrote {', '.join(p.name for p in written)} in {root}: stages ingest → embed → "
        "train → evaluate, predict",
        highlight=False,
    )
    dvc_root = find_dvc_root(root)
    if dvc_root is None and dvc_init:
        if importlib.util.find_spec("dvc") is None:
            raise ConfigError(_DVC_MISSING)
        done = subprocess.run(
            [sys.executable, "-m", "dvc", "init", "--no-scm", "--quiet"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ConfigError(f"`dvc init --no-scm` failed in {root}: {done.stderr.strip()}")
        out.print(f"Initialised a DVC repository (no git) in {root}", highlight=False)
        dvc_root = root
    out.print("Next:")
    out.print(f"  cd {root}", highlight=False, markup=False)
    if dvc_root is None:
        out.print(
            "  dvc init --no-scm      # once: DVC needs a repository (or: git init && dvc init)",
            highlight=False,
            markup=False,
        )
    out.print("  dvc repro              # runs what changed; again: nothing", markup=False)
    out.print("  dvc metrics show       # evaluate's metrics", markup=False)
    out.print(
        f"Settings are in params.yaml; {DVC_FILE} reads them. After labelling in the catalog "
        "(which DVC cannot see), rerun from ingest: dvc repro --force --single-item ingest; "
        "dvc repro",
        highlight=False,
        markup=False,
    )
    if importlib.util.find_spec("dvc") is None:
        err.print(f"note: {_DVC_MISSING}")


@pipeline_app.command("summary")
def pipeline_summary(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    stage: Annotated[str, typer.Argument(help="ingest or embed.")],
    backbone: Annotated[
        str | None, typer.Option(help="embed: the backbone whose vectors to count.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="JSON file to write (default: print it).")
    ] = None,
) -> None:
    """Write a deterministic JSON record of what the catalog holds after a stage.

    The pipeline's ingest and embed stages declare it as their output: no timestamps,
    so an unchanged rerun writes identical bytes and DVC skips the stages after it.
    """
    from lensloop.project.pipeline import SUMMARY_STAGES, stage_summary, summary_json

    if stage not in SUMMARY_STAGES:
        raise typer.BadParameter(
            f"{stage!r}; valid: {', '.join(SUMMARY_STAGES)}", param_hint="STAGE"
        )
    if stage == "embed" and not backbone:
        raise typer.BadParameter("the embed summary needs --backbone", param_hint="--backbone")
    with open_project(directory) as project:
        text = summary_json(stage_summary(project, stage, backbone=backbone))
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
