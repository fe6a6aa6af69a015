"""Fetching client-sent image URLs: the address guard, DNS pinning, redirects, size and time.

Network traffic goes only to a throw-away HTTP server on 127.0.0.1; every other connection
fails the test (``forbid_non_loopback``), so nothing can reach 169.254.169.254 or 10.x.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image as PILImage

from lensloop.errors import FetchRefused, LensloopError
from lensloop.service.fetch import FetchPolicy, address_problem, fetch_image_url
from servers import LOOPBACK, forbid_non_loopback, free_port

LOCAL = FetchPolicy(timeout_s=5.0, allowed_hosts=frozenset({LOOPBACK}))
PRIVATE_OK = FetchPolicy(timeout_s=5.0, allow_private=True)
DRIP_SECONDS = 0.05


def _png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 32), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.stop = threading.Event()

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (size and time limits)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path = self.path
        if path == "/image.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif path == "/redirect-relative":
            self._redirect("/image.png")
        elif path == "/redirect-local":
            self._redirect(f"{self.server.base}/image.png")
        elif path == "/redirect-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/redirect-private":
            self._redirect("http://10.0.0.1/image.png")
        elif path == "/redirect-ftp":
            self._redirect("ftp://127.0.0.1/image.png")
        elif path == "/redirect-nowhere":
            self._send(302, b"", {})
        elif path == "/loop":
            self._redirect("/loop")
        elif path.startswith("/chain/"):
            n = int(path.removeprefix("/chain/"))
            self._redirect(f"/chain/{n - 1}" if n > 0 else "/image.png")
        elif path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"x" * 1000)
        elif path == "/huge-streamed":
            self._stream(b"x" * 65536, count=200, pause=0.0)
        elif path == "/slow-body":
            self._stream(b"x", count=10_000, pause=DRIP_SECONDS)
        elif path == "/slow-headers":
            self._drip(b"HTTP/1.0 200 OK\r\nX-Slow: " + b"y" * 10_000)
        elif path == "/gzip":
            self._send(200, b"\x1f\x8b" + b"\0" * 20, {"Content-Encoding": "gzip"})
        else:
            self._send(404, b"no such thing", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(302, b"", {"Location": location})

    def _stream(self, chunk: bytes, *, count: int, pause: float) -> None:
        self.send_response(200)  # HTTP/1.0, no Content-Length: the body ends when we close
        self.end_headers()
        for _ in range(count):
            if self.server.stop.is_set():
                return
            try:
                self.wfile.write(chunk)
            except OSError:
                return
            time.sleep(pause)

    def _drip(self, data: bytes) -> None:
        for i in range(len(data)):
            if self.server.stop.is_set():
                return
            try:
                self.wfile.write(data[i : i + 1])
            except OSError:
                return
            time.sleep(DRIP_SECONDS)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_non_loopback(monkeypatch)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail any TCP connection; the returned list records the attempts."""
    attempts: list[Any] = []

    def refuse(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise AssertionError(f"a connection to {address!r} was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Answer ``getaddrinfo`` for the names in ``answers`` (one list per successive lookup)."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, *args, **kwargs)
        lookups.append(name)
        seen = answers[name]
        ips = seen[min(lookups.count(name), len(seen)) - 1]
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, int(port or 0)),
            )
            for ip in ips
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def refused(url: str, policy: FetchPolicy, code: str) -> FetchRefused:
    with pytest.raises(FetchRefused) as info:
        fetch_image_url(url, policy=policy)
    assert info.value.code == code, str(info.value)
    assert isinstance(info.value, LensloopError)
    assert "Traceback" not in str(info.value)
    return info.value


# --- the address guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/image.png",
        "http://localhost:{port}/image.png",
        "http://LocalHost:{port}/image.png",
        "http://127.1:{port}/image.png",
        "http://2130706433:{port}/image.png",
        "http://0x7f000001:{port}/image.png",
        "http://0177.0.0.1:{port}/image.png",
        "http://0x7f.0.0.1:{port}/image.png",
        "http://[::1]:{port}/image.png",
        "http://[::ffff:127.0.0.1]:{port}/image.png",
        "http://[::ffff:7f00:1]:{port}/image.png",
        "http://[64:ff9b::7f00:1]:{port}/image.png",
        "http://[2002:7f00:1::1]:{port}/image.png",
        "https://127.0.0.1:{port}/image.png",
        "http://10.0.0.1/image.png",
        "http://172.16.5.4/image.png",
        "http://192.168.1.1/image.png",
        "http://[fc00::1]/image.png",
        "http://100.64.0.1/image.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/image.png",
        "http://0.0.0.0/image.png",
        "http://0/image.png",
        "http://[::]/image.png",
        "http://224.0.0.1/image.png",
        "http://240.0.0.1/image.png",
        "http://255.255.255.255/image.png",
        "http://192.0.2.1/image.png",
    ],
)
def test_internal_addresses_are_refused_before_connecting(
    url: str, server: _Server, no_connect: list[Any]
) -> None:
    error = refused(url.format(port=server.server_port), FetchPolicy(), "forbidden_address")
    assert "only public addresses" in str(error)
    assert no_connect == []
    assert server.requests == []


def test_the_message_names_the_address_and_hides_secrets(no_connect: list[Any]) -> None:
    error = refused(
        "http://user:s3cret@169.254.169.254/latest/?token=abc123",
        FetchPolicy(),
        "forbidden_address",
    )
    message = str(error)
    assert "169.254.169.254" in message
    assert "metadata" in message
    assert "s3cret" not in message
    assert "abc123" not in message


def test_a_public_name_resolving_to_loopback_is_refused(
    server: _Server, no_connect: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = fake_dns(monkeypatch, {"images.example.org": [["127.0.0.1"]]})
    url = f"http://images.example.org:{server.server_port}/image.png"
    error = refused(url, FetchPolicy(), "forbidden_address")
    assert "images.example.org resolves to 127.0.0.1" in str(error)
    assert lookups == ["images.example.org"]
    assert no_connect == []
    assert server.requests == []


def test_one_bad_address_among_several_refuses_the_name(
    no_connect: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"mixed.example.org": [["93.184.215.14", "10.0.0.1"]]})
    error = refused("https://mixed.example.org/a.png", FetchPolicy(), "forbidden_address")
    assert "10.0.0.1" in str(error)
    assert no_connect == []


def test_the_checked_address_is_the_one_connected_to(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a second lookup would say 10.0.0.1, but there is no second lookup."""
    lookups = fake_dns(monkeypatch, {"rebind.example.org": [["127.0.0.1"], ["10.0.0.1"]]})
    url = f"http://rebind.example.org:{server.server_port}/image.png"
    assert fetch_image_url(url, policy=LOCAL) == PNG  # 127.0.0.1 is on the allow-list
    assert lookups == ["rebind.example.org"]
    # The connection went to the number; the request still names the host.
    assert server.requests == [("/image.png", f"rebind.example.org:{server.server_port}")]


def test_an_unresolvable_name_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    error = refused("https://no-such-host.example.org/a.png", FetchPolicy(), "unreachable")
    assert "does not resolve" in str(error)


@pytest.mark.parametrize(
    ("address", "allow_private", "problem"),
    [
        ("8.8.8.8", False, None),
        ("2606:4700:4700::1111", False, None),
        ("::ffff:8.8.8.8", False, None),
        ("64:ff9b::808:808", False, None),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("10.1.2.3", True, None),
        ("fd12::1", True, None),
        ("100.64.0.1", False, "carrier-grade NAT"),
        ("::ffff:10.0.0.1", False, "private"),
        ("169.254.169.254", True, "link-local (cloud metadata service)"),
        ("fe80::1", True, "link-local"),
        ("0.0.0.0", True, "unspecified"),
        ("239.1.1.1", True, "multicast"),
        ("240.0.0.1", True, "reserved"),
        ("192.0.2.1", True, "non-public"),
    ],
)
def test_address_problem(address: str, allow_private: bool, problem: str | None) -> None:
    ip = ipaddress.ip_address(address)
    assert address_problem(ip, allow_private=allow_private) == problem


# --- fetching from an allowed server ------------------------------------------------------


@pytest.mark.parametrize("policy", [LOCAL, PRIVATE_OK], ids=["allowed_hosts", "allow_private"])
@pytest.mark.parametrize("path", ["/image.png", "/redirect-relative", "/redirect-local"])
def test_an_allowed_server_serves_the_image(
    server: _Server, policy: FetchPolicy, path: str
) -> None:
    assert fetch_image_url(server.base + path, policy=policy) == PNG


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        (LOCAL, "/redirect-metadata"),
        (PRIVATE_OK, "/redirect-metadata"),  # allow_private never opens link-local
        (LOCAL, "/redirect-private"),
    ],
    ids=["allowed_hosts-metadata", "allow_private-metadata", "allowed_hosts-private"],
)
def test_a_redirect_into_the_network_is_still_refused(
    server: _Server, policy: FetchPolicy, path: str
) -> None:
    error = refused(server.base + path, policy, "forbidden_address")
    assert ("169.254.169.254" in str(error)) or ("10.0.0.1" in str(error))
    assert [p for p, _ in server.requests] == [path]


def test_redirects_are_counted(server: _Server) -> None:
    policy = FetchPolicy(timeout_s=5.0, max_redirects=3, allowed_hosts=frozenset({LOOPBACK}))
    assert fetch_image_url(f"{server.base}/chain/2", policy=policy) == PNG  # 3 redirects
    server.requests.clear()
    refused(f"{server.base}/chain/3", policy, "too_many_redirects")
    server.requests.clear()
    error = refused(f"{server.base}/loop", policy, "too_many_redirects")
    assert "more than 3" in str(error)
    assert len(server.requests) == 4  # the first request and 3 redirects, then it stops


def test_no_redirects_allowed(server: _Server) -> None:
    policy = FetchPolicy(timeout_s=5.0, max_redirects=0, allowed_hosts=frozenset({LOOPBACK}))
    refused(f"{server.base}/redirect-relative", policy, "too_many_redirects")


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/image.png", "file:///etc/passwd", "gopher://127.0.0.1/", "javascript:1"],
)
def test_only_http_and_https(url: str, no_connect: list[Any]) -> None:
    refused(url, LOCAL, "bad_scheme")
    assert no_connect == []


def test_a_redirect_to_another_scheme_is_refused(server: _Server) -> None:
    refused(f"{server.base}/redirect-ftp", LOCAL, "bad_scheme")


@pytest.mark.parametrize(
    "url", ["http:///image.png", "http://[::1/", "http://a.org:99999/", "http://08/"]
)
def test_unreadable_urls(url: str, no_connect: list[Any]) -> None:
    refused(url, LOCAL, "bad_url")
    assert no_connect == []


# --- limits and failures ------------------------------------------------------------------


def test_a_declared_size_over_the_limit_is_refused_before_reading(server: _Server) -> None:
    policy = FetchPolicy(max_bytes=10_000, timeout_s=5.0, allowed_hosts=frozenset({LOOPBACK}))
    error = refused(f"{server.base}/huge-declared", policy, "too_large")
    assert "Content-Length" in str(error)


def test_a_streamed_body_is_cut_off_at_the_limit(server: _Server) -> None:
    policy = FetchPolicy(max_bytes=100_000, timeout_s=5.0, allowed_hosts=frozenset({LOOPBACK}))
    error = refused(f"{server.base}/huge-streamed", policy, "too_large")
    assert "100,000" in str(error)


def test_the_image_at_exactly_the_limit_is_accepted(server: _Server) -> None:
    policy = FetchPolicy(max_bytes=len(PNG), timeout_s=5.0, allowed_hosts=frozenset({LOOPBACK}))
    assert fetch_image_url(f"{server.base}/image.png", policy=policy) == PNG
    smaller = FetchPolicy(max_bytes=len(PNG) - 1, allowed_hosts=frozenset({LOOPBACK}))
    refused(f"{server.base}/image.png", smaller, "too_large")


@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_one_deadline_covers_a_dripping_server(server: _Server, path: str) -> None:
    """Each read returns in time, but the whole fetch must still end at the deadline."""
    policy = FetchPolicy(timeout_s=0.5, allowed_hosts=frozenset({LOOPBACK}))
    start = time.monotonic()
    error = refused(server.base + path, policy, "timeout")
    # The drip would last minutes; a few seconds of slack keeps a loaded CI machine green.
    assert time.monotonic() - start < 0.5 + 4.0
    assert "0.5 s" in str(error)


def test_http_errors(server: _Server) -> None:
    error = refused(f"{server.base}/missing", LOCAL, "http_error")
    assert "HTTP 404" in str(error)
    refused(f"{server.base}/redirect-nowhere", LOCAL, "http_error")
    error = refused(f"{server.base}/gzip", LOCAL, "http_error")
    assert "gzip" in str(error)


def test_a_closed_port_is_unreachable() -> None:
    error = refused(f"http://{LOOPBACK}:{free_port()}/image.png", LOCAL, "unreachable")
    assert "could not connect" in str(error)


# --- the policy ---------------------------------------------------------------------------


def test_policy_normalises_allowed_hosts() -> None:
    policy = FetchPolicy(allowed_hosts=frozenset({"[::1]", "Images.Example.ORG.", "0x7f000001"}))
    assert policy.allowed_hosts == {"::1", "images.example.org", "127.0.0.1"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_bytes": 0}, ValueError),
        ({"max_bytes": 1.5}, TypeError),
        ({"timeout_s": 0}, ValueError),
        ({"timeout_s": float("inf")}, ValueError),
        ({"max_redirects": -1}, ValueError),
        ({"allowed_hosts": "127.0.0.1"}, TypeError),
    ],
)
def test_policy_rejects_bad_limits(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        FetchPolicy(**kwargs)
