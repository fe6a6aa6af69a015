"""``lensloop serve``: the project's images and Label Studio's ML backend over HTTP."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from lensloop.cli._app import app, err, open_project

__all__ = ["serve"]


@app.command()
def serve(
    directory: Annotated[Path, typer.Argument(help="Project folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 9090,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model that predicts: version or alias (default: champion, else latest)."
        ),
    ] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option(
            "--basic-auth",
            help="USER:PASSWORD every route but /health requires (default: the "
            "LENSLOOP_BASIC_AUTH environment variable; unset: no auth).",
        ),
    ] = None,
    train_config: Annotated[
        Path | None,
        typer.Option(
            "--train-config",
            help="Training settings (YAML) for retraining after annotations arrive (default: "
            "those of the newest release).",
        ),
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain",
            help="Retrain in the background when Label Studio reports annotations.",
        ),
    ] = True,
) -> None:
    """Serve the images and Label Studio's ML backend over HTTP.

    Routes: /images/ID (display PNG), /health, /setup, /predict, /webhook, /metrics.
    Connect it in Label Studio under Settings > Model with this server's URL; add a
    webhook to URL/webhook to record annotations as they are made.
    """
    import uvicorn

    from lensloop.service import BasicAuth, create_app

    auth_text = basic_auth or os.environ.get("LENSLOOP_BASIC_AUTH")
    auth = BasicAuth.parse(auth_text) if auth_text else None
    if auth is None and not _is_loopback(host):
        err.print(
            f"[yellow]warning:[/] listening on {host} without --basic-auth: anyone who can "
            "reach this port can read the images and post annotations"
        )
    with open_project(directory) as project:
        server = create_app(
            project, model=model, basic_auth=auth, train_config=train_config, retrain=retrain
        )
        err.print(f"serving {project.root} on http://{host}:{port}")
        uvicorn.run(server, host=host, port=port, log_level="warning")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
