"""Model commands: train, evaluate, and the model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lensloop.cli._app import app, open_project, out, progress_bar

__all__: list[str] = []


def _metrics_line(metrics: dict[str, Any]) -> str:
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
        str | None, typer.Option(help="probe: a classifier on the stored embeddings.")
    ] = None,
    head: Annotated[str | None, typer.Option(help="Probe head: logistic (default) or mlp.")] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Whose embeddings (default efficientnet-lite0).")
    ] = None,
    depth: Annotated[
        int | None, typer.Option(min=1, help="Train on the class hierarchy rolled up to level N.")
    ] = None,
    cv: Annotated[
        int | None, typer.Option(min=2, help="Also cross-validate with K stratified folds.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Solver iterations (logistic) or epochs (mlp).")
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
    """Train a classifier on the labelled images, score it on val, release it as a version.

    The release (models/vN/) holds the ONNX model, its model card, the resolved settings,
    the metrics and a confusion matrix. `latest` moves to it; `champion` moves only if it
    beats the champion on the same validation set.
    """
    from lensloop.train.config import load_train_config
    from lensloop.train.probe import train_probe

    overrides = {
        "method": method,
        "head": head,
        "backbone": backbone,
        "depth": depth,
        "cv": cv,
        "max_iter": epochs,
        "seed": seed,
    }
    settings = load_train_config(config, overrides)
    with open_project(directory) as project:
        result = train_probe(project, settings)
    model, metrics = result.model, result.metrics
    if as_json:
        document = {"version": model.version, "aliases": model.aliases, "metrics": metrics}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    out.print(
        f"model version {model.version} ({', '.join(model.aliases)}): "
        f"{metrics['n_train']} training images, {result.elapsed_s:.1f} s"
    )
    out.print(f"validation ({metrics['val']['n']} images): {_metrics_line(metrics['val'])}")
    if "cv" in metrics:
        cvm = metrics["cv"]
        out.print(
            f"{cvm['folds']}-fold cross-validation: accuracy {cvm['accuracy_mean']:.3f} ± "
            f"{cvm['accuracy_std']:.3f}, macro-F1 {cvm['macro_f1_mean']:.3f} ± "
            f"{cvm['macro_f1_std']:.3f}"
        )
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
    """Score a released model: metrics, confusion matrix and a predicted-vs-actual grid."""
    from lensloop.train.probe import evaluate_model

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
    out.print(_per_class_table(result.metrics, f"{split}, per class"))
    out.print(f"confusion matrix: {result.confusion_png}", highlight=False)
    if result.grid_png is not None:
        out.print(f"predicted vs actual (errors first): {result.grid_png}", highlight=False)


@app.command()
def models(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    action: Annotated[str, typer.Argument(help="list, or promote VERSION.")] = "list",
    version: Annotated[int | None, typer.Argument(help="Version to promote.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List released model versions, or make one the champion."""
    from lensloop.train.registry import list_models, promote

    if action not in ("list", "promote"):
        raise typer.BadParameter(f"{action!r}; valid: list, promote", param_hint="ACTION")
    with open_project(directory) as project:
        if action == "promote":
            if version is None:
                raise typer.BadParameter("give the VERSION to promote", param_hint="VERSION")
            promoted = promote(project, version)
            out.print(f"version {promoted.version} is now the champion")
            return
        found = list_models(project)
    rows = [
        {
            "version": m.version,
            "task": m.task,
            "aliases": m.aliases,
            "val_accuracy": m.metrics.get("val", {}).get("accuracy"),
            "val_macro_f1": m.metrics.get("val", {}).get("macro_f1"),
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
    for column in ("version", "task", "aliases", "val accuracy", "val macro-F1", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["version"]),
            str(row["task"]),
            ", ".join(row["aliases"]),
            f"{row['val_accuracy']:.3f}" if row["val_accuracy"] is not None else "-",
            f"{row['val_macro_f1']:.3f}" if row["val_macro_f1"] is not None else "-",
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
) -> None:
    """Classify images with a released model; store catalog predictions and write a CSV.

    Catalog images are scored from their stored embeddings; each prediction (class
    probabilities and margin uncertainty) is recorded once per model version, and the
    selection strategies read them. --images classifies files without storing anything.
    """
    from lensloop.train.inference import init_model, predict_project, write_predictions_csv

    with open_project(directory) as project, progress_bar("predicting") as progress:
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
            report = predict_project(project, loaded, progress=progress)
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
        if summary["without_vectors"]:
            out.print(
                f"{summary['without_vectors']} images have no vectors of the model's backbone;"
                f" run `lensloop embed {directory}` and predict again"
            )
    out.print(f"written to {target}", highlight=False)
