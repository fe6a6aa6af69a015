"""Active-learning commands: select the next images to label, and simulate strategies."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lensloop.cli._app import DEFAULT_BACKBONE, app, open_project, out, progress_bar

if TYPE_CHECKING:
    from lensloop.select.rounds import RoundResult
    from lensloop.select.simulate import SimulationResult

__all__ = ["print_simulation"]

STRATEGY_HELP = (
    "auto (typical images while labels are few, then uncertainty x diversity once every "
    "class has 3 labels), random, typical, kcenter, coverage, margin, entropy, "
    "least_confidence, or terms joined by '+' with strengths and thresholds, e.g. "
    "kcenter+margin=0.5 or typical+entropy>0.3."
)


def _round_dict(result: RoundResult) -> dict[str, Any]:
    return {
        "round": result.round_id,
        "strategy": result.strategy,
        "resolved": result.resolved,
        "created_at": result.created_at.isoformat(),
        "n_candidates": result.n_candidates,
        "details": result.details,
        "images": [
            {"rank": i.rank, "image_id": i.image_id, "uri": i.uri, "group": i.group}
            for i in result.images
        ],
    }


@app.command("select")
def select_command(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="How many images to select.")] = 50,
    strategy: Annotated[str, typer.Option(help=STRATEGY_HELP)] = "auto",
    balance: Annotated[
        str | None,
        typer.Option(
            help="Target shares over a metadata key, 'sample' or 'predicted', e.g. "
            "particle_type=Fe:0.5,X-ray:0.5, or just the key for equal shares."
        ),
    ] = None,
    backbone: Annotated[str, typer.Option(help="Whose embeddings to use.")] = DEFAULT_BACKBONE,
    seed: Annotated[int, typer.Option(min=0, help="Seed of every random choice.")] = 0,
    depth: Annotated[
        int | None, typer.Option(min=1, help="Class hierarchy depth for uncertainty.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Choose and print, but record no round.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--out", help="Also write the round as JSON to this file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the round as JSON.")] = False,
) -> None:
    """Choose the next images worth labelling and record them as a selection round.

    Images already labelled or queued by an earlier round are never chosen again.
    """
    from lensloop.select.balance import parse_balance
    from lensloop.select.rounds import select_round
    from lensloop.select.strategy import parse_strategy

    parsed = parse_strategy(strategy)
    target = parse_balance(balance) if balance is not None else None
    with open_project(directory) as project:
        result = select_round(
            project,
            n,
            strategy,
            parsed,
            backbone=backbone,
            seed=seed,
            balance=target,
            depth=depth,
            record=not dry_run,
        )
    document = _round_dict(result)
    if output is not None:
        output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    table = Table(title=f"round {result.round_id or '(dry run)'}: {result.resolved}")
    table.add_column("rank", justify="right")
    table.add_column("image", justify="right")
    if target is not None:
        table.add_column(target.key)
    table.add_column("uri", overflow="fold")
    for image in result.images:
        row = [str(image.rank), str(image.image_id)]
        if target is not None:
            row.append(image.group or "")
        table.add_row(*row, image.uri)
    out.print(table)
    mode = result.details.get("mode")
    if mode:
        out.print(
            f"auto: {mode} ({result.details['labels_per_class_min']} labels in the "
            f"rarest class, {result.details['labels_per_class_needed']} needed)"
        )
    if result.details.get("not_embedded"):
        out.print(
            f"{result.details['not_embedded']} images have no {backbone} embeddings and could "
            f"not be chosen; run `lensloop embed {directory}`"
        )
    if output is not None:
        out.print(f"written to {output}", highlight=False)


def print_simulation(result: SimulationResult) -> None:
    """The curve table: mean held-out accuracy per budget and strategy, then the AUCs."""
    table = Table(
        title=f"{result.n_pool} pool images, {result.n_eval} held out, "
        f"{result.config.seeds} seeds: mean held-out accuracy"
    )
    table.add_column("labels", justify="right")
    for curve in result.curves:
        table.add_column(curve.strategy, justify="right", overflow="fold")
    means = [curve.mean("accuracy") for curve in result.curves]
    for r, budget in enumerate(result.curves[0].budgets):
        table.add_row(str(budget), *(f"{mean[r]:.3f}" for mean in means))
    table.add_section()
    for metric, label in (("accuracy", "AUC acc"), ("macro_f1", "AUC F1")):
        cells = []
        for curve in result.curves:
            auc = curve.auc(metric)
            spread = float(auc.std(ddof=1)) if len(auc) > 1 else 0.0
            cells.append(f"{auc.mean():.3f}±{spread:.3f}")
        table.add_row(label, *cells)
    out.print(table)
    for name, gain in result.relative_to("random").items():
        out.print(
            f"{name} vs random: AUC {gain['auc_accuracy']:+.1%}, at {result.curves[0].budgets[0]}"
            f" labels {gain['first_budget_accuracy']:+.1%}"
        )
    if result.png_path is not None:
        out.print(f"curves: {result.png_path}  data: {result.json_path}", highlight=False)


@app.command()
def simulate(
    directory: Annotated[Path, typer.Argument(help="A project with labels and a held-out split.")],
    rounds: Annotated[int, typer.Option(min=1, help="Labelling rounds.")] = 5,
    per_round: Annotated[int, typer.Option(min=1, help="Images labelled per round.")] = 10,
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategies (see `lensloop select --help`).")
    ] = "auto,random",
    seeds: Annotated[int, typer.Option(min=1, help="Runs per strategy (seeds 0..N-1).")] = 5,
    backbone: Annotated[str, typer.Option(help="Whose embeddings to use.")] = DEFAULT_BACKBONE,
    depth: Annotated[int | None, typer.Option(min=1, help="Class hierarchy depth.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for simulation.json and .png (default: reports/)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
) -> None:
    """Replay labelling with the catalog's labels as the oracle and compare strategies.

    Each round a strategy picks images from the labelled training pool, their labels are
    revealed, and an embedding classifier is retrained and scored on the val and test
    splits. Writes learning curves (PNG and JSON) with the area under each.
    """
    from lensloop.select.simulate import SimulationConfig
    from lensloop.select.simulate import simulate as run_simulation

    config = SimulationConfig(
        rounds=rounds,
        per_round=per_round,
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        seeds=seeds,
        backbone=backbone,
        depth=depth,
    )
    with open_project(directory) as project, progress_bar("simulating") as progress:
        result = run_simulation(project, config, out_dir=output, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    print_simulation(result)
