"""Real servers for integration tests, started on 127.0.0.1 and torn down afterwards.

Policy: an integration test whose server or registry cannot be reached *skips*, unless
``LENSLOOP_REQUIRE_INTEGRATION=1`` (CI), where it *fails*. Every such decision goes
through :func:`require_integration`.

Servers listen on the loopback interface only and every URL handed out names 127.0.0.1,
so no test talks to another machine through them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import pytest

__all__ = [
    "LABEL_STUDIO_ENV",
    "LOOPBACK",
    "LabelStudioServer",
    "PostgresServer",
    "assert_loopback",
    "forbid_non_loopback",
    "free_port",
    "labelstudio_server",
    "postgres_server",
    "require_integration",
]

LOOPBACK = "127.0.0.1"
REQUIRE_ENV = "LENSLOOP_REQUIRE_INTEGRATION"
LABEL_STUDIO_ENV = "LENSLOOP_LABEL_STUDIO"  # path of a label-studio executable to test against

_PG_USER = "lensloop"  # the database superuser initdb creates
_PG_SYSTEM_USER = "postgres"  # the OS user the server runs as when the tests run as root
_PG_GLOB = "/usr/lib/postgresql/*/bin"
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_DB_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_LS_DEFAULT_EXE = Path(__file__).resolve().parent.parent / ".venv-labelstudio/bin/label-studio"
_LS_EMAIL = "lensloop@example.com"  # Label Studio's --username is the user's e-mail
_LS_PASSWORD = "lensloop-test-password"
_LS_START_TIMEOUT_S = 180.0  # a cold first start (migrations) takes ~30 s
_LS_POLL_S = 0.5
_LS_STOP_TIMEOUT_S = 30.0
_PORT_TAKEN = "port taken"
_PORT_TAKEN_RE = re.compile(r"is (already )?in use")
# The only variables Label Studio inherits: it reads every setting X from LABEL_STUDIO_X,
# HEARTEX_X *or plain X*, so a developer's USERNAME, PASSWORD, HOST, PORT or DEBUG would
# otherwise reconfigure it.
_LS_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def require_integration(reason: str) -> NoReturn:
    """Skip the running test because a real server or registry is unavailable.

    Under ``LENSLOOP_REQUIRE_INTEGRATION=1`` the test fails instead, so CI cannot pass by
    skipping everything.

    Args:
        reason: Why the integration test cannot run (shown in the skip/fail message).
    """
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def assert_loopback(host: str) -> None:
    """Raise if ``host`` is not a loopback IP address (tests never leave this machine)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise AssertionError(f"test servers must use a loopback address; got {host!r}")


def forbid_non_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every Python-level socket connection to a non-loopback address fail.

    Use it (autouse) in fast tests, so an accidental network call fails loudly instead of
    passing slowly on a developer's machine and hanging in CI. It cannot see connections
    that subprocesses or C libraries make; integration tests own those.

    Args:
        monkeypatch: The test's monkeypatch; the guard ends with the test.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if not isinstance(address, tuple):
            return  # AF_UNIX path
        host = str(address[0])
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            sock.close()  # callers such as create_connection only close it on OSError
            raise AssertionError(f"a test tried to connect to {address!r}, which is not loopback")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bind to port 0)."""
    assert_loopback(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --- PostgreSQL -------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """A throw-away PostgreSQL server on 127.0.0.1 with trust authentication.

    Attributes:
        host: Always 127.0.0.1.
        port: The TCP port it listens on.
        user: The superuser to connect as (no password).
        url: SQLAlchemy URL of the ``postgres`` maintenance database (psycopg 3 driver).
        data_dir: The cluster's data directory.
        log_path: The server log.
    """

    host: str
    port: int
    user: str
    url: str
    data_dir: Path
    log_path: Path

    def url_for(self, database: str) -> str:
        """Return the SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL.

        Args:
            name: Lower-case identifier, e.g. ``"test_ab12cd"``; unique per test.

        Returns:
            ``postgresql+psycopg://lensloop@127.0.0.1:PORT/NAME``.
        """
        import psycopg
        from psycopg import sql

        if not _DB_NAME_RE.fullmatch(name):
            raise ValueError(
                f"database name must match {_DB_NAME_RE.pattern} (lower case, at most 63 "
                f"characters); got {name!r}"
            )
        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)


def _find_pg_bin() -> Path | None:
    """Directory of the newest installed PostgreSQL's binaries, or None."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for initdb in Path("/").glob(_PG_GLOB.lstrip("/") + "/initdb"):
        bin_dir = initdb.parent
        version = bin_dir.parent.name
        if (bin_dir / "pg_ctl").is_file() and re.fullmatch(r"\d+(\.\d+)*", version):
            found.append((tuple(int(part) for part in version.split(".")), bin_dir))
    return max(found)[1] if found else None


def _traversable_tmp_base() -> Path | None:
    """A temp base whose every ancestor other users may enter (o+x), or None.

    The server runs as another OS user when the tests run as root, so it must reach its
    data directory. Rather than loosen permissions on the caller's folders, pick a base
    that is already open (``/tmp`` on almost every machine).
    """
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        base = Path(candidate)
        if base.is_dir() and all(
            os.stat(folder).st_mode & stat.S_IXOTH for folder in (base, *base.parents)
        ):
            return base
    return None


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty server log)"


def _run(command: list[str], *, as_user: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    if as_user is not None:
        command = ["runuser", "-u", as_user, "--", *command]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def _stop(pg_ctl: Path, data_dir: Path, *, as_user: str | None, cwd: Path) -> None:
    """Stop the server; if pg_ctl cannot, kill the postmaster whose pid it recorded."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    result = _run(
        [str(pg_ctl), "stop", "-D", str(data_dir), "-m", "immediate", "-w", "-t", "30"],
        as_user=as_user,
        cwd=cwd,
    )
    if result.returncode == 0 or not pid_file.exists():
        return
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL cluster on 127.0.0.1 for the duration of the block.

    The cluster lives in a new temp directory (``initdb -A trust -U lensloop``), listens on
    a free port of 127.0.0.1 only, runs with ``fsync=off``, and is stopped
    (``pg_ctl stop -m immediate``) and deleted on exit, also when the block raises. When
    the tests run as root, the server runs as the ``postgres`` OS user (PostgreSQL refuses
    to run as root).

    Yields:
        The running server.

    Raises:
        pytest.skip.Exception: No PostgreSQL binaries, no usable OS user, or the server did
            not start (pytest fails instead under ``LENSLOOP_REQUIRE_INTEGRATION=1``); the
            message includes the server log's tail.
    """
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        require_integration(
            f"no PostgreSQL server binaries ({_PG_GLOB}/initdb); run `make sysdeps` "
            f"(apt-get install postgresql)"
        )
    as_user: str | None = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            require_integration("running as root, and `runuser` is missing to drop to postgres")
        try:
            account = pwd.getpwnam(_PG_SYSTEM_USER)
        except KeyError:
            require_integration(
                f"running as root and there is no {_PG_SYSTEM_USER!r} OS user to run "
                f"PostgreSQL as (it refuses to run as root)"
            )
        as_user = account.pw_name
    base = _traversable_tmp_base()
    if base is None:
        require_integration("no temp folder that the postgres OS user can reach")

    tmp = Path(tempfile.mkdtemp(prefix="lensloop-pg-", dir=base))
    data_dir = tmp / "data"
    sock_dir = tmp / "sock"
    log_path = tmp / "postgres.log"
    pg_ctl = bin_dir / "pg_ctl"
    try:
        sock_dir.mkdir()
        if as_user is not None:
            for path in (tmp, sock_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        init = _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                _PG_USER,
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            as_user=as_user,
            cwd=tmp,
        )
        if init.returncode != 0:
            require_integration(
                f"initdb failed (exit code {init.returncode}):\n{init.stderr[-3000:]}"
            )
        port = 0
        started = False
        for _attempt in range(_START_ATTEMPTS):
            port = free_port()
            options = " ".join(
                [
                    f"-c listen_addresses={LOOPBACK}",
                    f"-p {port}",
                    f"-k {shlex.quote(str(sock_dir))}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
            )
            start_command = [str(pg_ctl), "start", "-w", "-t", "60", "-D", str(data_dir)]
            start = _run(
                [*start_command, "-l", str(log_path), "-o", options],
                as_user=as_user,
                cwd=tmp,
            )
            if start.returncode == 0:
                started = True
                break
            _stop(pg_ctl, data_dir, as_user=as_user, cwd=tmp)
            if "could not bind" not in _log_tail(log_path):
                break  # not a lost race for the port: another try will not help
        if not started:
            require_integration(
                f"PostgreSQL ({bin_dir}) did not start on {LOOPBACK}:{port}; server log:\n"
                f"{_log_tail(log_path)}"
            )
        server = PostgresServer(
            host=LOOPBACK,
            port=port,
            user=_PG_USER,
            url=f"postgresql+psycopg://{_PG_USER}@{LOOPBACK}:{port}/postgres",
            data_dir=data_dir,
            log_path=log_path,
        )
        assert_loopback(server.host)
        yield server
    finally:
        try:
            _stop(pg_ctl, data_dir, as_user=as_user, cwd=tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# --- Label Studio -----------------------------------------------------------------------


@dataclass(frozen=True)
class LabelStudioServer:
    """A throw-away Label Studio on 127.0.0.1 with one admin user and a known API token.

    Attributes:
        url: Base URL without a trailing slash, ``http://127.0.0.1:PORT``; Label Studio also
            knows it as its host, so the URLs it hands out (local-files tasks, the
            ``hostname`` it sends ML backends) name 127.0.0.1 too.
        token: The admin's legacy API token; send ``Authorization: Token <token>``
            (:attr:`headers`), or pass it as ``api_key`` to ``label_studio_sdk.LabelStudio``.
        email: The admin's login (Label Studio's ``--username`` is an e-mail address).
        password: The admin's password.
        data_dir: ``LABEL_STUDIO_BASE_DATA_DIR``: the SQLite database, uploads, exports.
        files_root: ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``, served because
            ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``. A local-files storage must
            point at a *subfolder* (Label Studio refuses the root itself), and a file is
            served only below such a storage's path.
        log_path: The server's stdout and stderr.
    """

    url: str
    token: str
    email: str
    password: str
    data_dir: Path
    files_root: Path
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that authenticate as the admin."""
        return {"Authorization": f"Token {self.token}"}

    def local_files_url(self, path: Path) -> str:
        """Return the URL Label Studio serves ``path`` (a file under :attr:`files_root`) at.

        It is the form Label Studio writes itself when it syncs a local-files storage:
        ``http://127.0.0.1:PORT/data/local-files/?d=<path relative to files_root>``.

        Raises:
            ValueError: ``path`` is not under :attr:`files_root`.
        """
        relative = Path(path).resolve().relative_to(self.files_root.resolve())
        return f"{self.url}/data/local-files/?d={quote(relative.as_posix())}"


def _find_label_studio() -> Path:
    """The ``label-studio`` executable to test against, or skip/fail by policy."""
    configured = os.environ.get(LABEL_STUDIO_ENV)
    if configured:
        exe = Path(configured)
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            require_integration(
                f"{LABEL_STUDIO_ENV}={configured!r} is not an executable file; point it at a "
                f"label-studio executable or unset it to use {_LS_DEFAULT_EXE}"
            )
        return exe
    if not (_LS_DEFAULT_EXE.is_file() and os.access(_LS_DEFAULT_EXE, os.X_OK)):
        require_integration(
            f"no Label Studio at {_LS_DEFAULT_EXE}; run `make labelstudio` (or set "
            f"{LABEL_STUDIO_ENV} to a label-studio executable)"
        )
    return _LS_DEFAULT_EXE


def _labelstudio_env(tmp: Path, data_dir: Path, files_root: Path) -> dict[str, str]:
    """A clean environment with the test settings; the calls home that LS can skip are off."""
    env = {name: os.environ[name] for name in _LS_INHERITED_ENV if name in os.environ}
    env.update(
        {
            "HOME": str(tmp / "home"),  # nothing lands in the developer's ~/.local/share
            "PYTHONUNBUFFERED": "1",  # the log tail in an error is up to date
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
            # Token auth with the token given by --user-token (besides --enable-legacy-api-token).
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # Let Label Studio call ML backends (ML_BLOCK_LOCAL_IP) and webhooks
            # (SSRF_PROTECTION_ENABLED) on 127.0.0.1; both are refused by default.
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
            # No PyPI version check at start, no usage analytics, no Sentry (whose DSN
            # defaults to Label Studio's own), no image downloads while converting exports.
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_CONVERTER_DOWNLOAD_RESOURCES": "false",
        }
    )
    return env


def _whoami(url: str, token: str) -> tuple[int, str]:
    """``GET /api/current-user/whoami`` with the token: (HTTP status, e-mail or error)."""
    request = urllib.request.Request(
        f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read().decode("utf-8"))
            return response.status, str(body.get("email", ""))
    except urllib.error.HTTPError as error:
        return error.code, error.reason
    except (OSError, ValueError) as error:  # refused, reset, timed out, not JSON yet
        return 0, str(error)


def _wait_for_labelstudio(
    process: subprocess.Popen[bytes], url: str, token: str, log_path: Path
) -> tuple[int, str]:
    """Poll whoami until it answers 200, the server exits or loses its port, or time runs out.

    Returns:
        The last (HTTP status, detail) from :func:`_whoami`, or ``(0, _PORT_TAKEN)``.
    """
    status, detail = 0, "no answer"
    deadline = time.monotonic() + _LS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        status, detail = _whoami(url, token)
        if status == 200:
            return status, detail
        # Label Studio quietly moves to the next port when its own is taken ("Port N is in
        # use"), and Django exits when it loses the race to bind it ("already in use").
        if _PORT_TAKEN_RE.search(_log_tail(log_path)):
            return 0, _PORT_TAKEN
        if process.poll() is not None:
            break
        time.sleep(_LS_POLL_S)
    return status, detail


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group the server leads, then SIGKILL what is left after 30 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_LS_STOP_TIMEOUT_S)
    # Children (none today; Django's runserver is one process) may outlive the leader.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def labelstudio_server() -> Iterator[LabelStudioServer]:
    """Start a fresh Label Studio on 127.0.0.1 for the duration of the block.

    The executable is ``$LENSLOOP_LABEL_STUDIO`` if set, else
    ``.venv-labelstudio/bin/label-studio`` (``make labelstudio`` installs it). The server
    gets a new temp folder (data dir, local-files root, HOME), a free port of 127.0.0.1, an
    admin user with a random legacy API token, and a clean environment that turns off the
    PyPI version check, analytics, Sentry and export image downloads, and allows ML backends
    and webhooks on 127.0.0.1. It answers the API about 30 s after start. On exit its process
    group is terminated and the temp folder deleted, also when the block raises.

    Yields:
        The running server.

    Raises:
        pytest.skip.Exception: No ``label-studio`` executable, or the server did not answer
            ``GET /api/current-user/whoami`` with the token within 180 s (pytest fails
            instead under ``LENSLOOP_REQUIRE_INTEGRATION=1``); the message includes the
            server log's tail.
    """
    exe = _find_label_studio()
    tmp = Path(tempfile.mkdtemp(prefix="lensloop-ls-"))
    data_dir, files_root, log_path = tmp / "data", tmp / "files", tmp / "label-studio.log"
    for folder in (data_dir, files_root, tmp / "home"):
        folder.mkdir()
    token = secrets.token_hex(20)  # the shape of Label Studio's own tokens
    process: subprocess.Popen[bytes] | None = None
    try:
        url = ""
        for _attempt in range(_START_ATTEMPTS):
            port = free_port()
            url = f"http://{LOOPBACK}:{port}"
            command = [
                str(exe),
                "start",
                "--no-browser",
                "--internal-host",
                LOOPBACK,
                "--port",
                str(port),
                "--host",
                url,
                "--username",
                _LS_EMAIL,
                "--password",
                _LS_PASSWORD,
                "--user-token",
                token,
                "--enable-legacy-api-token",
            ]
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command,
                    cwd=tmp,
                    env=_labelstudio_env(tmp, data_dir, files_root),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as a whole
                )
            status, detail = _wait_for_labelstudio(process, url, token, log_path)
            if status == 200 and detail == _LS_EMAIL:
                break
            exit_code = process.poll()
            _stop_group(process)
            if detail != _PORT_TAKEN:
                outcome = (
                    f"exited with code {exit_code}"
                    if exit_code is not None
                    else f"did not answer within {_LS_START_TIMEOUT_S:.0f} s"
                )
                require_integration(
                    f"Label Studio ({exe}) {outcome}: GET {url}/api/current-user/whoami with "
                    f"its token last gave {status} {detail!r}; server log:\n"
                    f"{_log_tail(log_path)}"
                )
        else:
            require_integration(
                f"Label Studio ({exe}) found its port taken {_START_ATTEMPTS} times; server "
                f"log:\n{_log_tail(log_path)}"
            )
        server = LabelStudioServer(
            url=url,
            token=token,
            email=_LS_EMAIL,
            password=_LS_PASSWORD,
            data_dir=data_dir,
            files_root=files_root,
            log_path=log_path,
        )
        assert_loopback(str(urlsplit(server.url).hostname))
        yield server
    finally:
        try:
            if process is not None:
                _stop_group(process)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
