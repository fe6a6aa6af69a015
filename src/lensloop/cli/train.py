"""Model commands: train, evaluate, and the model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lensloop.cli._app import (
    ExecutorOption,
    SchedulerOption,
    app,
    executor_for,
    open_project,
    out,
    progress_bar,
)

__all__: list[str] = []


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metrics_line(metrics: dict[str, Any]) -> str:
    if "mean_iou" in metrics:  # a segmentation model
        ious = ", ".join(f"{name} {_number(v)}" for name, v in metrics["iou"].items())
        return (
            f"mean IoU {_number(metrics['mean_iou'])} ({ious}), pixel accuracy "
            f"{_number(metrics['pixel_accuracy'])}"
        )
    if "mae" in metrics:  # a counting model
        return (
            f"count MAE {_number(metrics['mae'], 2)}, mean relative error "
            f"{_number(metrics['mre'] * 100 if metrics['mre'] is not None else None, 1)}%, "
            f"localisation F1 {_number(metrics['f1'])} (precision "
            f"{_number(metrics['precision'])}, recall {_number(metrics['recall'])}, within "
            f"{metrics['radius']:g} px)"
        )
    return f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"


def _per_class_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for column in ("class", "precision", "recall", "F1", "images"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(
            name,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    return table


@app.command()
def train(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    method: Annotated[
        str | None,
        typer.Option(
            help="probe: a classifier on the stored embeddings (seconds); finetune: a CNN "
            "trained on the images with Lightning (minutes; needs lensloop[train])."
        ),
    ] = None,
    head: Annotated[str | None, typer.Option(help="Probe head: logistic (default) or mlp.")] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Probe: whose embeddings (default efficientnet-lite0).")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="Finetune: efficientnet-lite0 (default), resnet18 or resnet50."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Finetune: start from imagenet (default; fetched once into the user cache), "
            "a checkpoint path or URL, none (random), or ssl (the project's self-supervised "
            "encoder, with its own architecture)."
        ),
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option(
            min=32,
            help="Finetune: input side in pixels; counting and segmentation: side of the "
            "training crops (default 128).",
        ),
    ] = None,
    sigma: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Counting: pixels of each object's Gaussian in the density map (default 2; "
            "about half an object's radius).",
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Segmentation: the U-Net's encoder, plain (default, from scratch) or "
            "resnet18 / resnet50 (started from --weights, default imagenet)."
        ),
    ] = None,
    depth: Annotated[
        int | None, typer.Option(min=1, help="Train on the class hierarchy rolled up to level N.")
    ] = None,
    cv: Annotated[
        int | None, typer.Option(min=2, help="Also cross-validate with K stratified folds.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Probe: solver iterations (logistic) or epochs (mlp); finetune: most epochs "
            "(default 30; early stopping on the val loss may end sooner).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of every random choice.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML settings (options given here override it); every run "
            "saves its resolved settings as models/vN/config.yaml.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Train a model for the project's task, score it on val, release it as a version.

    Classification: a probe on the stored embeddings or a fine-tuned CNN. Counting: a
    density-map U-Net on the point-annotated images (sparse annotations welcome).
    Segmentation: a U-Net labelling every pixel, on the polygon and mask annotations. The
    release (models/vN/) holds the ONNX model, its model card, the resolved settings, the
    metrics and figures (a confusion matrix; predicted-vs-annotated counts; per-class IoU). `latest`
    moves to it; `champion` moves only if it beats the champion on the same validation set.
    Parameters, metrics per epoch and the release are tracked in MLflow when it is
    installed (local store in runs/, or LENSLOOP_MLFLOW_URI).
    """
    from lensloop.train.config import load_train_config
    from lensloop.train.trainer import train_model

    overrides = {
        "method": method,
        "head": head,
        "backbone": backbone,
        "arch": arch,
        "weights": weights,
        "input_size": input_size,
        "depth": depth,
        "cv": cv,
        "seed": seed,
        "sigma": sigma,
        "encoder": encoder,
    }
    settings = load_train_config(config, overrides)
    with open_project(directory) as project, progress_bar("training") as update:
        if epochs is not None:  # one option, two settings: the trainer's own
            trained_by_epochs = project.task != "classify" or settings.method == "finetune"
            field = "epochs" if trained_by_epochs else "max_iter"
            settings = settings.model_copy(update={field: epochs})  # typer checked min=1

        def progress(stage: str, done: int, total: int) -> None:
            update(done, total)

        result = train_model(project, settings, progress=progress)
    model, metrics = result.model, result.metrics
    if as_json:
        document = {"version": model.version, "aliases": model.aliases, "metrics": metrics}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    out.print(
        f"model version {model.version} ({', '.join(model.aliases)}): "
        f"{metrics['n_train']} training images, {result.elapsed_s:.1f} s"
    )
    if "best_epoch" in metrics:
        out.print(f"best epoch {metrics['best_epoch']} of {len(metrics['history'])} run")
    out.print(f"validation ({metrics['val']['n']} images): {_metrics_line(metrics['val'])}")
    if "cv" in metrics:
        cvm = metrics["cv"]
        out.print(
            f"{cvm['folds']}-fold cross-validation: accuracy {cvm['accuracy_mean']:.3f} ± "
            f"{cvm['accuracy_std']:.3f}, macro-F1 {cvm['macro_f1_mean']:.3f} ± "
            f"{cvm['macro_f1_std']:.3f}"
        )
    if "per_class" in metrics["val"]:
        out.print(_per_class_table(metrics["val"], "validation, per class"))
    out.print(f"released to {model.folder}", highlight=False)


@app.command()
def evaluate(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    model: Annotated[
        str | None,
        typer.Option(help="Version number or alias (default: champion, else latest)."),
    ] = None,
    split: Annotated[str, typer.Option(help="Which labelled split to score: val or test.")] = "val",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a released model on a split: metrics and figures.

    Classifiers: accuracy, macro-F1, a confusion matrix and a predicted-vs-actual grid.
    Counting models: count errors and localisation F1 on the completely annotated (full
    or empty) images, predicted-vs-annotated counts and overlays of the worst images.
    Segmentation models: per-class IoU, mean IoU, pixel accuracy, predicted vs annotated
    areas and fragment counts, and overlays of the worst images.
    """
    from lensloop.train.evaluate import evaluate_model

    if split not in ("val", "test", "train"):
        raise typer.BadParameter(f"{split!r}; valid: val, test, train", param_hint="--split")
    with open_project(directory) as project:
        result = evaluate_model(project, model, split=split)
    if as_json:
        document = {"version": result.version, "split": split, "metrics": result.metrics}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    out.print(
        f"model version {result.version} on {split} ({result.metrics['n']} images): "
        f"{_metrics_line(result.metrics)}"
    )
    if "per_class" in result.metrics:
        out.print(_per_class_table(result.metrics, f"{split}, per class"))
    for name, path in result.figures.items():
        out.print(f"{name}: {path}", highlight=False)


@app.command()
def models(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    action: Annotated[str, typer.Argument(help="list, or promote VERSION.")] = "list",
    version: Annotated[int | None, typer.Argument(help="Version to promote.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List released model versions, or make one the champion."""
    from lensloop.train.registry import list_models, promote
    from lensloop.train.tracking import sync_alias

    if action not in ("list", "promote"):
        raise typer.BadParameter(f"{action!r}; valid: list, promote", param_hint="ACTION")
    with open_project(directory) as project:
        if action == "promote":
            if version is None:
                raise typer.BadParameter("give the VERSION to promote", param_hint="VERSION")
            promoted = promote(project, version)
            tracked = sync_alias(project, task=promoted.task, alias="champion", version=version)
            out.print(
                f"version {promoted.version} is now the champion"
                + (" (also in MLflow's Model Registry)" if tracked else "")
            )
            return
        found = list_models(project)
    rows = [
        {
            "version": m.version,
            "task": m.task,
            "aliases": m.aliases,
            "val_accuracy": m.metrics.get("val", {}).get("accuracy"),
            "val_macro_f1": m.metrics.get("val", {}).get("macro_f1"),
            "val_mre": m.metrics.get("val", {}).get("mre"),
            "val_f1": m.metrics.get("val", {}).get("f1"),
            "val_mean_iou": m.metrics.get("val", {}).get("mean_iou"),
            "created_at": m.created_at.isoformat(),
            "folder": str(m.folder),
        }
        for m in found
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        out.print(f"no models yet; run `lensloop train {directory}`")
        return
    table = Table(title="model versions")
    for column in ("version", "task", "aliases", "validation", "created"):
        table.add_column(column)
    for row in rows:
        if row["task"] == "count":
            mre = row["val_mre"] * 100 if row["val_mre"] is not None else None
            score = f"relative count error {_number(mre, 1)}%, F1 {_number(row['val_f1'])}"
        elif row["task"] == "segment":
            score = f"mean IoU {_number(row['val_mean_iou'])}"
        else:
            score = (
                f"accuracy {_number(row['val_accuracy'])}, macro-F1 {_number(row['val_macro_f1'])}"
            )
        table.add_row(
            str(row["version"]),
            str(row["task"]),
            ", ".join(row["aliases"]),
            score,
            str(row["created_at"])[:19],
        )
    out.print(table)


@app.command()
def predict(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Version number, alias (latest, champion) or the path of a released model "
            "folder (default: champion, else latest)."
        ),
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Classify these files instead of the catalog (not stored)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--out", help="CSV to write (default: reports/predictions-vN.csv)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    executor: ExecutorOption = "local",
    scheduler: SchedulerOption = None,
) -> None:
    """Classify images with a released model; store catalog predictions and write a CSV.

    Catalog images are scored from their stored embeddings (probe models) or read and
    classified whole (finetune models); each prediction (class probabilities and margin
    uncertainty) is recorded once per model version, and the selection strategies read
    them. --images classifies files without storing anything. With --executor dask, a
    finetune model classifies the catalog's images as Dask tasks of 256 images; probe
    models and --images always run here (scoring stored vectors is already fast).
    """
    from lensloop.train.inference import init_model, predict_project, write_predictions_csv

    with (
        open_project(directory) as project,
        executor_for(executor, scheduler) as runner,
        progress_bar("predicting") as progress,
    ):
        loaded = init_model(model, project=project)  # a version, an alias or a folder
        if images:
            found = loaded.predict(list(images), project_root=project.root)
            rows = [
                {
                    "image_id": "",
                    "uri": item.source,
                    "predicted": item.predicted,
                    "confidence": item.confidence,
                    "uncertainty": item.uncertainty,
                    "actual": None,
                    "probabilities": item.probabilities,
                }
                for item in found
            ]
            summary: dict[str, Any] = {"version": loaded.version, "predicted": len(rows)}
        else:
            report = predict_project(project, loaded, progress=progress, executor=runner)
            rows = report.rows
            summary = {
                "version": report.version,
                "predicted": report.predicted,
                "already_predicted": report.already,
                "without_vectors": report.without_vectors,
            }
        name = f"predictions-v{loaded.version}.csv" if loaded.version else "predictions.csv"
        target = output or project.root / "reports" / name
        write_predictions_csv(rows, loaded.classes, target)
    summary["csv"] = str(target)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    if images:
        table = Table(title=f"model version {loaded.version or loaded.folder}")
        for column in ("image", "predicted", "confidence", "uncertainty"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                str(row["uri"]),
                str(row["predicted"]),
                f"{row['confidence']:.3f}",
                f"{row['uncertainty']:.3f}",
            )
        out.print(table)
    else:
        out.print(
            f"model version {summary['version']}: {summary['predicted']} images predicted, "
            f"{summary['already_predicted']} already had predictions"
        )
        if summary["without_vectors"] and loaded.kind == "image":
            out.print(
                f"{summary['without_vectors']} images could not be read (see the warnings "
                "above); fix them and predict again"
            )
        elif summary["without_vectors"]:
            out.print(
                f"{summary['without_vectors']} images have no vectors of the model's backbone;"
                f" run `lensloop embed {directory}` and predict again"
            )
    out.print(f"written to {target}", highlight=False)
