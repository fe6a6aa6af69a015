"""``lensloop serve``: the project's images and Label Studio's ML backend over HTTP."""

from __future__ import annotations

import gc
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
    require_token: Annotated[
        bool,
        typer.Option(
            "--require-token",
            help="Require an API token on loopback too (always required on other addresses).",
        ),
    ] = False,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls",
            help="Let /v1/predict, /v1/embed and /v1/similar fetch image URLs on loopback and "
            "private networks (10/8, 172.16/12, 192.168/16); link-local and cloud metadata "
            "addresses stay refused.",
        ),
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A host name or address image URLs may point at whatever it resolves to "
            "(repeatable), e.g. an internal image store.",
        ),
    ] = None,
) -> None:
    """Serve the web UI, the /v1 API and Label Studio's ML backend over HTTP.

    Open http://HOST:PORT/ui/ in a browser; the API's documentation is at /docs (OpenAPI
    at /openapi.json). Label Studio's ML backend routes: /health, /setup, /predict,
    /webhook, /metrics; connect it under Settings > Model with this server's URL, and add
    a webhook to URL/webhook to record annotations as they are made.

    On a loopback address (the default) the server is open to local programs. On any
    other address every route but /health needs an API token (`lensloop token create`);
    --basic-auth credentials are accepted too, for Label Studio.
    """
    import uvicorn

    from lensloop.service import BasicAuth, create_app
    from lensloop.service.auth import TokenAuth
    from lensloop.service.fetch import FetchPolicy

    auth_text = basic_auth or os.environ.get("LENSLOOP_BASIC_AUTH")
    auth = BasicAuth.parse(auth_text) if auth_text else None
    with open_project(directory) as project:
        tokens: TokenAuth | None = None
        if require_token or not _is_loopback(host):
            tokens = TokenAuth(project)
            if not tokens.has_tokens():
                where = "" if _is_loopback(host) else f" to listen on {host}"
                err.print(
                    f"[red]error:[/] an API token is required{where}, and the project has "
                    f"none; create one with `lensloop token create {directory} --name NAME`"
                )
                raise typer.Exit(2)
        policy = FetchPolicy(
            allow_private=allow_private_urls, allowed_hosts=frozenset(allow_host or ())
        )
        server = create_app(
            project,
            model=model,
            basic_auth=auth,
            token_auth=tokens,
            fetch_policy=policy,
            train_config=train_config,
            retrain=retrain,
        )
        err.print(f"serving {project.root} on http://{host}:{port}/ui/")
        # Objects made so far live as long as the server: keep them out of the cyclic
        # collector's full passes, which otherwise stall requests under load.
        gc.collect()
        gc.freeze()
        uvicorn.run(server, host=host, port=port, log_level="warning")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
