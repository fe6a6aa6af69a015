"""API token commands: ``lensloop token create``, ``list`` and ``revoke``.

``lensloop serve`` asks for a token on every route but health when it listens beyond
loopback; these commands make and revoke them. Only a hash of each token is kept.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lensloop.cli._app import app, err, open_project, out

__all__: list[str] = []

token_app = typer.Typer(
    help="API tokens for `lensloop serve` (needed when it listens beyond loopback).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")

NameOption = Annotated[
    str, typer.Option("--name", help="A label for the token, e.g. alice-laptop.")
]


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


@token_app.command("create")
def token_create(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    name: NameOption,
) -> None:
    """Make a token and print it once on stdout (only its hash is stored)."""
    from lensloop.catalog.tokens import create_token

    with open_project(directory) as project, project.catalog.transaction() as session:
        token, info = create_token(session, name)
    sys.stdout.write(token + "\n")
    err.print(
        f"Token {info.name!r} (prefix {info.prefix}) created. Copy it now: it cannot be "
        "shown again. Send it as 'Authorization: Bearer TOKEN'.",
        highlight=False,
        soft_wrap=True,
    )


@token_app.command("list")
def token_list(directory: Annotated[Path, typer.Argument(help="Project folder.")]) -> None:
    """List the tokens: name, prefix, created, last used, revoked."""
    from rich.table import Table

    from lensloop.catalog.tokens import list_tokens

    with open_project(directory) as project, project.catalog.reader() as session:
        tokens = list_tokens(session)
    if not tokens:
        out.print(f"no API tokens; make one with `lensloop token create {directory} --name NAME`")
        return
    table = Table("name", "prefix", "created (UTC)", "last used (UTC)", "revoked (UTC)")
    for info in tokens:
        table.add_row(
            info.name,
            info.prefix,
            _when(info.created_at),
            _when(info.last_used_at),
            _when(info.revoked_at),
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    name: NameOption,
) -> None:
    """Revoke a token: the server refuses it from the next request on."""
    from lensloop.catalog.tokens import revoke_token

    with open_project(directory) as project, project.catalog.transaction() as session:
        info = revoke_token(session, name)
    out.print(f"Token {info.name!r} revoked at {_when(info.revoked_at)} UTC", highlight=False)
