"""The ``lensloop`` command line.

This is an entry point: it reads the settings once, sets up logging and passes both down.
Library errors (:class:`~lensloop.errors.LensloopError`) are shown as one clear line and
exit with status 1; usage errors exit with status 2. Commands live in
:mod:`lensloop.cli.project`, :mod:`lensloop.cli.explore`, :mod:`lensloop.cli.select`,
:mod:`lensloop.cli.train`, :mod:`lensloop.cli.report`, :mod:`lensloop.cli.labelstudio`,
:mod:`lensloop.cli.count`, :mod:`lensloop.cli.segment`, :mod:`lensloop.cli.serve` and
:mod:`lensloop.cli.pipeline`.
"""

from __future__ import annotations

import importlib
import sys

from rich.markup import escape

from lensloop.cli._app import app, err
from lensloop.errors import LensloopError

#: Command modules, in the order their commands appear in ``lensloop --help``; importing
#: one registers its commands on :data:`app`.
COMMAND_MODULES = (
    "project",
    "explore",
    "select",
    "train",
    "report",
    "labelstudio",
    "count",
    "segment",
    "serve",
    "token",
    "pipeline",
)
for _module in COMMAND_MODULES:
    importlib.import_module(f"lensloop.cli.{_module}")

__all__ = ["COMMAND_MODULES", "app", "main"]


def main() -> None:
    """Run the CLI, turning lensloop errors into one clear line on stderr."""
    try:
        app()
    except LensloopError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; committed work is kept, run the command again to finish")
        sys.exit(130)
