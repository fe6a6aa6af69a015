"""The lensloop exception hierarchy.

Every error lensloop raises on purpose derives from :class:`LensloopError`, so callers
(the CLI, the HTTP service) can catch one type and show its message. Messages say what
was received, what is allowed and how to fix it. Errors about bad input also derive from
the built-in type with the same meaning (``ValueError``, ``LookupError``), so ordinary
Python code that catches those keeps working.

::

    LensloopError
    ├── ConfigError              bad settings or lensloop.toml               (ValueError)
    ├── ProjectError             no project at a path, or one already there
    ├── UnknownNameError         a registry has no entry of that name        (LookupError)
    ├── ImageError               an image that cannot be used                (ValueError)
    │   ├── ImageDecodeError     empty, truncated, not an image, unreadable
    │   ├── ImageTooLargeError   decompression bomb or over the size limits
    │   ├── MultiPageImageError  a multi-page file read without saying which page
    │   └── UnsupportedImageError a layout or dtype lensloop cannot keep faithfully
    ├── CatalogError             the catalog database refused an operation
    │   ├── SchemaVersionError   the catalog needs a migration (or is newer than lensloop)
    │   └── NotFoundError        an id that is not in the catalog             (LookupError)
    ├── LabelError               a label that the project's schema does not have (ValueError)
    ├── SourceError              an ingest source or metadata file that cannot be read (ValueError)
    ├── EmbeddingError           vectors, ids or an index file that cannot be used (ValueError)
    ├── DatasetError             a bundled data set could not be fetched or is damaged
    ├── RequestError             an API request that cannot be served as sent (ValueError)
    └── FetchRefused             an image URL the service will not fetch, or whose fetch failed
                                 (``code``: forbidden_address, bad_scheme, bad_url, too_large,
                                 timeout, too_many_redirects, http_error, unreachable)
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CatalogError",
    "ConfigError",
    "DatasetError",
    "EmbeddingError",
    "FetchRefused",
    "FetchRefusedCode",
    "ImageDecodeError",
    "ImageError",
    "ImageTooLargeError",
    "LabelError",
    "LensloopError",
    "MultiPageImageError",
    "NotFoundError",
    "ProjectError",
    "RequestError",
    "SchemaVersionError",
    "SourceError",
    "UnknownNameError",
    "UnsupportedImageError",
]


class LensloopError(Exception):
    """Base class of every error lensloop raises on purpose."""


class ConfigError(LensloopError, ValueError):
    """Settings or a project's ``lensloop.toml`` are invalid."""


class ProjectError(LensloopError):
    """No lensloop project where one was expected, or one already where none should be."""


class UnknownNameError(LensloopError, LookupError):
    """A registry (backbones, sources, data sets, ...) has no entry with the given name.

    Args:
        kind: What the registry holds, for the message ("data set", "backbone").
        name: The name that was asked for.
        valid: The names the registry does hold.
    """

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid names are: {', '.join(self.valid)}")

    def __str__(self) -> str:
        # LookupError/KeyError would otherwise show the repr of the message.
        return str(self.args[0])


class ImageError(LensloopError, ValueError):
    """An image that cannot be used."""


class ImageDecodeError(ImageError):
    """The bytes are empty, truncated, not an image, or in a form the decoders cannot read."""


class ImageTooLargeError(ImageError):
    """The image is over the configured pixel or byte limits (a possible decompression bomb)."""


class MultiPageImageError(ImageError):
    """A multi-page file (TIFF) was read without saying which page or how to combine pages.

    Args:
        message: The error message.
        n_pages: How many pages the file has.
    """

    def __init__(self, message: str, *, n_pages: int) -> None:
        super().__init__(message)
        self.n_pages = n_pages


class UnsupportedImageError(ImageError):
    """A layout or dtype lensloop cannot represent without changing the data."""


class CatalogError(LensloopError):
    """The catalog database refused an operation."""


class SchemaVersionError(CatalogError):
    """The catalog's schema is older or newer than this version of lensloop expects."""


class NotFoundError(CatalogError, LookupError):
    """An id or name that is not in the catalog."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LabelError(LensloopError, ValueError):
    """A label that is not in the project's label schema, or an inconsistent schema."""


class SourceError(LensloopError, ValueError):
    """An ingest source or metadata file that cannot be read as given."""


class EmbeddingError(LensloopError, ValueError):
    """Vectors, ids or an index file that cannot be used as given."""


class DatasetError(LensloopError):
    """A bundled data set could not be fetched, or what was fetched is not what was expected."""


class RequestError(LensloopError, ValueError):
    """A request to the HTTP API or a query that cannot be served as sent.

    A damaged page cursor, a malformed filter, both or neither of two exclusive inputs.
    """


FetchRefusedCode = Literal[
    "forbidden_address",
    "bad_scheme",
    "bad_url",
    "too_large",
    "timeout",
    "too_many_redirects",
    "http_error",
    "unreachable",
]
"""The machine-readable reasons a :class:`FetchRefused` carries."""


class FetchRefused(LensloopError):  # noqa: N818 - the name the API and issue 10 use
    """An image URL the service will not fetch, or a fetch that failed.

    The message says what was wrong in one line (never a traceback); it names the URL
    without its user info and query string, which may hold secrets.

    Args:
        code: The machine-readable reason (see :data:`FetchRefusedCode`).
        message: What was wrong, for people.

    Attributes:
        code: The machine-readable reason, for the HTTP API's error body.
    """

    def __init__(self, code: FetchRefusedCode, message: str) -> None:
        super().__init__(message)
        self.code: FetchRefusedCode = code
