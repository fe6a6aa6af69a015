"""A real S3 endpoint (moto's server) and a plain web server, both on 127.0.0.1.

The S3 server is started by :func:`s3_server`; when moto[server] is missing the test
skips, or fails under ``LENSLOOP_REQUIRE_INTEGRATION=1`` (see :func:`servers.require_integration`).
Moto keeps its buckets in process memory, so :meth:`S3Server.stop` and
:meth:`S3Server.start` take the endpoint down and bring it back, with its objects, on the
same port: an endpoint failing in the middle of a run.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from servers import LOOPBACK, free_port, require_integration

__all__ = ["S3Server", "WebServer", "aws_credentials", "s3_server", "web_server"]


def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point botocore at throw-away credentials and no AWS config files of the user's."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lensloop-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lensloop-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class S3Server:
    """moto's S3 server on a fixed loopback port, which can be stopped and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._server: Any = None

    def start(self) -> None:
        """Start (or restart) the server on its port; buckets made before are still there."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Stop serving and close the socket, so connections are refused."""
        if self._server is None:
            return
        self._server.stop()
        inner = getattr(self._server, "_server", None)
        if inner is not None:
            inner.server_close()
        self._server = None

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (credentials from the environment)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="lensloop-test",
            aws_secret_access_key="lensloop-test-secret",
        )

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> list[str]:
        """Create ``bucket`` and upload every file under ``folder`` below ``prefix``.

        Returns:
            The keys written, sorted.
        """
        client = self.client()
        client.create_bucket(Bucket=bucket)
        keys = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            keys.append(key)
        return keys


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Run an S3 server on 127.0.0.1 for the duration of the block."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        require_integration(f"moto[server], boto3 and s3fs are needed for S3 tests ({exc})")
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def do_HEAD(self) -> None:
        self.requests.append(self.path)
        super().do_HEAD()


class WebServer:
    """A static web server for a folder on 127.0.0.1; ``requests`` lists the paths asked."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        handler = type("Handler", (_QuietHandler,), {"requests": self.requests})
        self._httpd = http.server.ThreadingHTTPServer(
            (LOOPBACK, 0), partial(handler, directory=str(folder))
        )
        self.url = f"http://{LOOPBACK}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def web_server(folder: Path) -> WebServer:
    """A :class:`WebServer` for ``folder``; use it as a context manager."""
    return WebServer(folder)
