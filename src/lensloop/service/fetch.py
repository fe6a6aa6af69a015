"""Fetch an image from a URL a client sent, without letting the URL reach inside the network.

``POST /v1/predict`` and ``/v1/embed`` accept an image URL. Fetching a URL on a client's
behalf is a classic server-side request forgery hole: ``http://169.254.169.254/`` reads the
cloud's instance credentials, ``http://127.0.0.1:5432/`` probes the database, and a public
name can resolve (or be re-pointed between check and use) to either. :func:`fetch_image_url`
closes it:

- only ``http`` and ``https``; numeric IPv4 spellings (``2130706433``, ``0x7f000001``,
  ``0177.0.0.1``, ``127.1``) are read the way browsers and ``inet_aton`` read them and checked
  as the address they mean;
- every address a host name resolves to must be public (:func:`address_problem`), unless the
  policy allows private networks or lists the host;
- **the connection goes to the address that was checked.** The check lives in the TCP connect
  step itself (:class:`_GuardedBackend`, an ``httpcore`` network backend): the name is resolved
  once, every address is checked, and the socket is opened to one of those addresses by
  number. Nothing resolves the name again, so DNS rebinding between check and connect has
  nothing to act on. TLS, SNI, certificate checks and the ``Host`` header still use the name,
  because only the TCP step is replaced;
- redirects are followed by hand, each target checked by the same rules, at most
  ``max_redirects`` of them;
- the body is streamed and cut off as soon as it passes ``max_bytes`` (a ``Content-Length``
  over the limit is refused before reading); it is asked for and read uncompressed, so no
  small download inflates in memory;
- one deadline covers resolution, connects, TLS, every read and write and every redirect:
  each socket operation gets at most the time left (:class:`_DeadlineStream`), so a server
  that drips bytes cannot stretch it.

Every failure is a :class:`~lensloop.errors.FetchRefused` with a short ``code`` and a one-line
message. This module does not import FastAPI; the API maps the codes to HTTP statuses.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from lensloop import __version__
from lensloop.errors import FetchRefused

__all__ = ["FetchPolicy", "FetchRefused", "address_problem", "fetch_image_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = frozenset({"http", "https"})
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")  # IPv4 embedded in the last 32 bits
_METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")
# What inet_aton accepts: one to four parts, each decimal, 0x-hex or 0-octal.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for :func:`fetch_image_url`.

    Attributes:
        max_bytes: The largest body accepted, in bytes.
        timeout_s: One deadline, in seconds, for the whole fetch: resolving, connecting,
            every redirect and reading the body.
        max_redirects: How many redirects are followed; one more is refused.
        allow_private: Also accept loopback, private (10/8, 172.16/12, 192.168/16,
            fc00::/7) and carrier-grade NAT (100.64/10) addresses, for a service that fetches
            from its own network. Link-local (including the cloud metadata address
            169.254.169.254), unspecified, multicast and reserved addresses stay refused.
        allowed_hosts: Host names or IP addresses exempt from the address check: a listed
            name may resolve anywhere, a listed address may be reached by any name. Names
            are compared case-insensitively without a trailing dot; addresses in canonical
            form (``::1`` matches ``[::1]`` and ``0:0:0:0:0:0:0:1``).
    """

    max_bytes: int = 20_000_000
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise TypeError(f"max_bytes must be an int; got {self.max_bytes!r}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1; got {self.max_bytes}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(
                f"timeout_s must be a positive number of seconds; got {self.timeout_s}"
            )
        if isinstance(self.max_redirects, bool) or not isinstance(self.max_redirects, int):
            raise TypeError(f"max_redirects must be an int; got {self.max_redirects!r}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be 0 or more; got {self.max_redirects}")
        if isinstance(self.allowed_hosts, str):
            raise TypeError(
                f"allowed_hosts must be a collection of host names; got the string "
                f"{self.allowed_hosts!r} (wrap it: frozenset({{{self.allowed_hosts!r}}}))"
            )
        object.__setattr__(
            self, "allowed_hosts", frozenset(_normalise_host(h) for h in self.allowed_hosts)
        )


def fetch_image_url(url: str, *, policy: FetchPolicy) -> bytes:
    """Download the body at ``url``, refusing addresses inside the network and oversized bodies.

    Blocking; call it from a worker thread in async code.

    Args:
        url: An ``http://`` or ``https://`` URL, as a client sent it.
        policy: Size, time, redirect and address limits.

    Returns:
        The response body, exactly as sent (not decoded or checked as an image).

    Raises:
        FetchRefused: With ``code`` ``bad_scheme`` (not http/https), ``bad_url`` (no host,
            unparseable), ``forbidden_address`` (the host is or resolves to a non-public
            address), ``too_large``, ``timeout``, ``too_many_redirects``, ``http_error`` (a
            non-2xx status, a redirect without a target, a broken response) or
            ``unreachable`` (the name does not resolve, the connection fails).

    Example:
        >>> policy = FetchPolicy(max_bytes=5_000_000, timeout_s=5.0)
        >>> url = "https://example.org/diatom.png"
        >>> data = fetch_image_url(url, policy=policy)  # doctest: +SKIP
    """
    deadline = time.monotonic() + policy.timeout_s
    backend = _GuardedBackend(policy, deadline)
    transport = _GuardedTransport(backend)
    headers = {
        "User-Agent": f"lensloop/{__version__}",
        "Accept": "image/*, */*;q=0.5",
        "Accept-Encoding": "identity",
    }
    with httpx.Client(
        transport=transport,
        follow_redirects=False,
        trust_env=False,  # no proxies or .netrc from the environment: a proxy would skip the check
        timeout=httpx.Timeout(policy.timeout_s),
        headers=headers,
    ) as client:
        current = _prepare(url)
        for hops in range(policy.max_redirects + 1):
            backend.current = current
            try:
                with client.stream("GET", current) as response:
                    location = _redirect_target(response)
                    if location is None:
                        return _read_body(response, policy)
            except httpcore.TimeoutException:
                _refuse_timeout(current, policy)
            except httpcore.ConnectError as exc:
                host = f"{current.host}:{current.port or _default_port(current)}"
                raise FetchRefused(
                    "unreachable", f"could not connect to {host} for {_display(current)}: {exc}"
                ) from None
            except (httpcore.NetworkError, httpcore.ProtocolError, httpx.HTTPError) as exc:
                raise FetchRefused(
                    "http_error", f"the response from {_display(current)} broke off: {exc}"
                ) from None
            if hops == policy.max_redirects:
                break
            current = _prepare(urljoin(str(current), location))
        raise FetchRefused(
            "too_many_redirects",
            f"refused to fetch {_display(_prepare(url))}: it redirects more than "
            f"{policy.max_redirects} time(s) (the last went to {_display(current)})",
        )


def address_problem(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Say why ``address`` must not be fetched from, or return ``None`` when it may.

    IPv4-mapped (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::7f00:1``) and 6to4 (``2002::/16``)
    IPv6 addresses are judged by the IPv4 address inside them.

    Args:
        address: The address a host name resolved to, or an address literal.
        allow_private: Accept loopback, private and carrier-grade NAT addresses.

    Returns:
        A short description (``"loopback"``, ``"link-local"``, ...) or ``None``.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64_NETWORK:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_problem(embedded, allow_private=allow_private)
        if address.sixtofour is not None:
            problem = address_problem(address.sixtofour, allow_private=allow_private)
            if problem is not None:
                return f"6to4 {problem}"
    if address.is_unspecified:
        return "unspecified"
    if address == _METADATA_ADDRESS:
        return "link-local (cloud metadata service)"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_loopback:
        private_kind = "loopback"
    elif address in _SHARED_NETWORK:
        private_kind = "carrier-grade NAT"
    elif any(address in network for network in _PRIVATE_NETWORKS):
        private_kind = "private"
    else:
        private_kind = ""
    if private_kind:
        return None if allow_private else private_kind
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


# --- URLs ---------------------------------------------------------------------------------


def _prepare(url: str) -> httpx.URL:
    """Check the scheme and host of ``url`` and write a numeric IPv4 host as a dotted quad."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchRefused("bad_url", f"cannot read the URL {url[:200]!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise FetchRefused(
            "bad_scheme",
            f"refused to fetch {url[:200]!r}: {shown} is not allowed; use http or https",
        )
    host = parts.hostname or ""
    if not host:
        raise FetchRefused("bad_url", f"the URL {url[:200]!r} names no host")
    if _LEGACY_IPV4.fullmatch(host.rstrip(".")):
        literal = _legacy_ipv4(host.rstrip("."))
        if literal is None:
            raise FetchRefused(
                "bad_url", f"the host {host!r} in {url[:200]!r} is not a valid address"
            )
        parts = _with_host(parts, str(literal), port)
    try:
        return httpx.URL(urlunsplit(parts))
    except httpx.InvalidURL as exc:
        raise FetchRefused("bad_url", f"cannot read the URL {url[:200]!r}: {exc}") from None


def _with_host(parts: SplitResult, host: str, port: int | None) -> SplitResult:
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port is not None else "")
    return parts._replace(netloc=netloc)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Read ``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` as ``inet_aton`` does."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _ip_literal(host: str) -> IPAddress | None:
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    return _legacy_ipv4(host) if _LEGACY_IPV4.fullmatch(host) else None


def _normalise_host(host: str) -> str:
    literal = _ip_literal(host.strip())
    return str(literal) if literal is not None else host.strip().lower().rstrip(".")


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _display(url: httpx.URL) -> str:
    """``url`` without user info and query string, which may hold secrets."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}{url.path}"


# --- responses ----------------------------------------------------------------------------


def _redirect_target(response: httpx.Response) -> str | None:
    """The Location of a redirect, ``None`` for a 2xx; anything else is refused."""
    if response.is_success:
        return None
    location: str | None = response.headers.get("location")
    if response.is_redirect and location:
        return location
    shown = _display(response.request.url)
    if 300 <= response.status_code < 400:
        raise FetchRefused(
            "http_error", f"{shown} answered HTTP {response.status_code} without a redirect target"
        )
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    raise FetchRefused("http_error", f"{shown} answered HTTP {response.status_code}{reason}")


def _read_body(response: httpx.Response, policy: FetchPolicy) -> bytes:
    shown = _display(response.request.url)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchRefused(
            "http_error",
            f"{shown} sent a compressed body (Content-Encoding: {encoding}) although "
            "lensloop asked for it uncompressed",
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchRefused(
            "too_large",
            f"{shown} is {int(declared):,} bytes (Content-Length); the limit is "
            f"{policy.max_bytes:,} bytes",
        )
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > policy.max_bytes:
            raise FetchRefused(
                "too_large", f"{shown} sent more than the limit of {policy.max_bytes:,} bytes"
            )
    return bytes(body)


def _refuse_timeout(url: httpx.URL, policy: FetchPolicy) -> NoReturn:
    raise FetchRefused(
        "timeout", f"fetching {_display(url)} took longer than the {policy.timeout_s:g} s limit"
    )


# --- the network seam ---------------------------------------------------------------------


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class _GuardedTransport(httpx.BaseTransport):
    """An httpx transport over an ``httpcore`` pool that connects through ``backend``.

    The same steps as ``httpx.HTTPTransport`` (which has no way to pass a network backend),
    without proxies; httpcore's exceptions are left as they are for
    :func:`fetch_image_url` to turn into :class:`FetchRefused`.
    """

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=_iter_request_body(request),
            extensions=request.extensions,
        )
        core_response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def _iter_request_body(request: httpx.Request) -> Iterator[bytes]:
    if isinstance(request.stream, httpx.SyncByteStream):
        yield from request.stream


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolve once, check every address, connect to a checked address, keep the deadline."""

    def __init__(self, policy: FetchPolicy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()
        self.current: httpx.URL | None = None  # the URL being fetched, for messages

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        first, *others = self._checked_addresses(host, port)
        error: httpcore.ConnectError | None = None
        for address in (first, *others):
            try:
                stream = self._inner.connect_tcp(
                    str(address),  # a number: nothing resolves the name a second time
                    port,
                    timeout=_clamp(timeout, self._deadline, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error or httpcore.ConnectError(f"no address of {host} accepted a connection")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def _checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        shown = _display(self.current) if self.current is not None else host
        addresses = _resolve(host, port, shown)
        policy = self._policy
        if _normalise_host(host) in policy.allowed_hosts:
            return addresses
        literal = _ip_literal(host) is not None
        for address in addresses:
            if str(address) in policy.allowed_hosts:
                continue
            problem = address_problem(address, allow_private=policy.allow_private)
            if problem is not None:
                where = f"{address} is" if literal else f"{host} resolves to {address},"
                raise FetchRefused(
                    "forbidden_address",
                    f"refused to fetch {shown}: {where} a {problem} address; only public "
                    "addresses may be fetched",
                )
        return addresses


def _resolve(host: str, port: int, shown: str) -> list[IPAddress]:
    literal = _ip_literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FetchRefused(
            "unreachable", f"cannot fetch {shown}: {host} does not resolve ({reason})"
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        if info[0] in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(info[4][0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise FetchRefused("unreachable", f"cannot fetch {shown}: {host} has no IP address")
    return addresses


def _clamp(timeout: float | None, deadline: float, error: type[Exception]) -> float:
    """``timeout`` cut to the time left before ``deadline``; ``error`` when none is left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context,
            server_hostname,  # the name from the URL: SNI and certificate checks use it
            _clamp(timeout, self._deadline, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
