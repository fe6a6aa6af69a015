"""The typer application, its consoles and what every command shares.

The command modules (:mod:`lensloop.cli.project`, :mod:`lensloop.cli.explore`) register
their commands on :data:`app`; :mod:`lensloop.cli` imports them and runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lensloop import __version__
from lensloop.settings import Settings

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = [
    "DEFAULT_BACKBONE",
    "SHOW_FAILURES",
    "app",
    "datasets_app",
    "db_app",
    "err",
    "get_settings",
    "open_project",
    "out",
    "progress_bar",
]

app = typer.Typer(
    name="lensloop",
    help="Turn raw scientific images into labelled data sets and trained models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
datasets_app = typer.Typer(
    help="Real demo data sets that lensloop can fetch.", no_args_is_help=True
)
db_app = typer.Typer(help="Catalog database maintenance.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

SHOW_FAILURES = 20
#: The backbone used when none is given (see lensloop.embed.registry.DEFAULT_BACKBONE;
#: kept here as a literal so `lensloop --help` imports nothing heavy).
DEFAULT_BACKBONE = "efficientnet-lite0"


class _State:
    settings: Settings | None = None


def get_settings() -> Settings:
    if _State.settings is None:
        _State.settings = Settings()
    return _State.settings


def _version(value: bool) -> None:
    if value:
        out.print(f"lensloop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v, -vv).")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Turn raw scientific images into labelled data sets and trained models."""
    from rich.logging import RichHandler

    settings = get_settings()
    level = {0: settings.log_level.upper(), 1: "INFO"}.get(verbose, "DEBUG")
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )


def open_project(directory: Path) -> Project:
    from lensloop.project import Project

    return Project.open(directory, settings=get_settings())


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """Show a transient progress bar on stderr; yield ``update(done, total)`` for it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task_id = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        yield update
