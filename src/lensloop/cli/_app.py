"""The typer application, its consoles and what every command shares.

The command modules (:mod:`lensloop.cli.project`, :mod:`lensloop.cli.explore`) register
their commands on :data:`app`; :mod:`lensloop.cli` imports them and runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from lensloop import __version__
from lensloop.settings import Settings

if TYPE_CHECKING:
    from lensloop.executors import Executor
    from lensloop.project import Project

_Loaded = TypeVar("_Loaded")

#: ``--model`` and ``--project`` of the commands that run a released model on image files.
ReleasedModelOption = Annotated[
    str | None,
    typer.Option(
        help="Version number, alias (latest, champion) or the path of a released model "
        "folder (default: the project's champion, else latest)."
    ),
]
ModelProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project",
        help="Project whose registry --model names (default: the current folder, if it "
        "is a project; not needed for a model folder).",
    ),
]

#: ``--executor`` and ``--scheduler`` of the commands that can run as Dask tasks.
ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where the work runs: 'local' (this process) or 'dask' (tasks over shards of "
        "images on the Dask scheduler given by --scheduler).",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Address of the Dask scheduler (tcp://HOST:8786) with --executor dask; "
        "default: the LENSLOOP_DASK_SCHEDULER setting.",
    ),
]

__all__ = [
    "DEFAULT_BACKBONE",
    "SHOW_FAILURES",
    "DefaultCommandGroup",
    "ExecutorOption",
    "ModelProjectOption",
    "ReleasedModelOption",
    "SchedulerOption",
    "app",
    "datasets_app",
    "db_app",
    "err",
    "executor_for",
    "get_settings",
    "load_released",
    "open_project",
    "out",
    "output_names",
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


@contextmanager
def executor_for(name: str, scheduler: str | None) -> Iterator[Executor]:
    """The executor of ``--executor``/``--scheduler``, closed on exit (bad name: usage error)."""
    from lensloop.errors import UnknownNameError
    from lensloop.executors import get_executor

    try:
        runner = get_executor(name, scheduler or get_settings().dask_scheduler)
    except UnknownNameError as exc:
        raise typer.BadParameter(str(exc), param_hint="--executor") from None
    try:
        yield runner
    finally:
        runner.close()


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


class DefaultCommandGroup(TyperGroup):
    """A group that sends ``lensloop GROUP PATH...`` to its :attr:`default_command`.

    Any first word that is not one of the group's commands (nor an option) is taken as
    the default command's first argument, so ``lensloop count a.png`` runs
    ``lensloop count images a.png``.
    """

    default_command = "images"

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [self.default_command, *args]
        return super().resolve_command(ctx, args)


def load_released(
    model: str | None, project_dir: Path | None, load: Callable[..., _Loaded]
) -> _Loaded:
    """Load a released model the way the prediction commands take it.

    ``model`` is the path of a released model folder (no project needed), or a version or
    alias of the project in ``project_dir`` (default: the current folder); ``None``: that
    project's champion, else its latest version. ``load`` is the task's loader
    (``load_counter``, ``load_segmenter``), called as ``load(folder, settings=...)`` or
    ``load(model, project=...)``.

    Raises:
        ConfigError: No model folder given and no project found.
    """
    from lensloop.errors import ConfigError
    from lensloop.project.config import CONFIG_FILE

    if model is not None and Path(model).is_dir():
        return load(Path(model), settings=get_settings())
    root = project_dir if project_dir is not None else Path.cwd()
    if not (root / CONFIG_FILE).is_file():
        raise ConfigError(
            f"{root} is not a lensloop project; pass --project DIR to use its models, or "
            "--model with the path of a released model folder (models/vN)"
        )
    with open_project(root) as project:
        return load(model, project=project)


def output_names(paths: list[Path], suffix: str = ".png") -> dict[Path, str]:
    """A distinct output file name per input image: its stem, or more of its path on a clash."""
    stems: dict[str, int] = {}
    for path in paths:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    names = {}
    for path in paths:
        if stems[path.stem] == 1:
            names[path] = f"{path.stem}{suffix}"
        else:
            flat = "__".join(path.resolve().with_suffix("").parts[-3:])
            names[path] = f"{flat}{suffix}"
    return names
