"""Report commands: abundance per class per sample or metadata group."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lensloop.cli._app import app, open_project, out

if TYPE_CHECKING:
    from lensloop.reports.abundance import AbundanceTable

__all__ = ["print_abundance"]


def print_abundance(table: AbundanceTable) -> None:
    """Groups as rows, classes as columns: each cell the group's total of that class."""
    source = (
        f"model version {table.model_version}"
        if table.model_version is not None
        else "confirmed labels only"
    )
    depth = f", depth {table.depth}" if table.depth is not None else ""
    grid = Table(title=f"images per class by {table.by} ({source}{depth})")
    grid.add_column(table.by, overflow="fold")
    for name in table.classes:
        grid.add_column(name, justify="right", overflow="fold")
    grid.add_column("unclassified", justify="right")
    grid.add_column("images", justify="right")
    totals = {(row.group, row.class_name): row.total for row in table.rows}
    for group in table.groups:
        counts = [totals.get((group, name), 0) for name in table.classes]
        unclassified = table.unclassified.get(group, 0)
        grid.add_row(group, *map(str, counts), str(unclassified), str(sum(counts) + unclassified))
    out.print(grid)
    confirmed = sum(row.confirmed for row in table.rows)
    predicted = sum(row.predicted for row in table.rows)
    out.print(
        f"{confirmed} images counted by confirmed label, {predicted} by prediction, "
        f"{sum(table.unclassified.values())} unclassified"
    )


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    by: Annotated[
        str,
        typer.Option(help="Group images by 'sample' (the sample name) or by a metadata field."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model version or alias whose predictions count unlabelled images "
            "(default: champion, else latest; a project without models counts confirmed "
            "labels only)."
        ),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Roll classes up to this taxonomy depth (default: the model's, else the "
            "project's).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="CSV file to write; the chart goes beside it as .png "
            "(default: DIR/reports/abundance-<by>.csv).",
        ),
    ] = None,
    plot: Annotated[
        bool, typer.Option("--plot/--no-plot", help="Also draw the stacked bar chart.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Count images per class per sample (or metadata group) and write a CSV and a chart.

    An image counts as its confirmed label when it has one, else as the model's
    prediction; images with neither are counted as unclassified.
    """
    from lensloop.reports.abundance import (
        ModelInfo,
        abundance_table,
        default_csv_path,
        write_abundance,
    )
    from lensloop.train.registry import chosen_classifier, trained_depth

    with open_project(directory) as project:
        registered = chosen_classifier(project, model)
        chosen = (
            None if registered is None else ModelInfo(registered.version, trained_depth(registered))
        )
        table = abundance_table(project, by, model=chosen, depth=depth)
        csv_path = output if output is not None else default_csv_path(project, by)
    written, png = write_abundance(table, csv_path, plot=plot)
    if as_json:
        document = table.to_dict() | {
            "csv": str(written),
            "png": str(png) if png is not None else None,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    print_abundance(table)
    out.print(f"written to {written}" + (f" and {png}" if png else ""), highlight=False)
