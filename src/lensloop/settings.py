"""Process-wide settings, read once from the environment (prefix ``LENSLOOP_``).

Entry points (the CLI, the HTTP service) build one :class:`Settings` and pass it down;
library code never reads ``os.environ`` itself. Per-project choices (task, classes,
catalog URL) live in the project's ``lensloop.toml`` instead (see
:mod:`lensloop.project.config`).

Example:
    >>> from lensloop.settings import Settings
    >>> Settings(max_image_pixels=10_000).max_image_pixels
    10000
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("lensloop"))


class Settings(BaseSettings):
    """Settings that apply to every project a process touches.

    Every field can be set from the environment, e.g. ``LENSLOOP_CACHE_DIR=/scratch/cache``.
    """

    model_config = SettingsConfigDict(env_prefix="LENSLOOP_", extra="ignore", frozen=True)

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="User cache for fetched data sets, downloaded weights and released models.",
    )
    max_image_pixels: int = Field(
        default=256_000_000,
        gt=0,
        description="Largest image (width x height) decoded; larger ones are refused as a "
        "possible decompression bomb.",
    )
    max_file_bytes: int = Field(
        default=4 * 1024**3,
        gt=0,
        description="Largest image file read, in bytes.",
    )
    ingest_batch_size: int = Field(
        default=500,
        gt=0,
        description="Images per catalog transaction during ingest; an interrupted ingest "
        "keeps every committed batch.",
    )
    ingest_workers: int | None = Field(
        default=None,
        ge=0,
        description="Decode processes during ingest; 0 decodes in the calling process; None "
        "decides from the file count and sizes.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible object store for s3:// URIs (JASMIN, MinIO, "
        "http://127.0.0.1:9000); unset: AWS, or the endpoint the AWS configuration names. "
        "Credentials come from the usual AWS variables and files.",
    )
    remote_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for a remote image (s3://, https://) to connect or send "
        "its next bytes.",
    )
    remote_retries: int = Field(
        default=3,
        ge=1,
        description="Attempts per remote request before the image is reported as failed "
        "(a re-run picks it up again).",
    )
    thumbnails_uri: str | None = Field(
        default=None,
        description="Also publish every display thumbnail made to this prefix (s3://bucket/"
        "thumbnails, or a folder), laid out as the project's thumbnails/ folder "
        "(<sha[:2]>/<sha>_<size>.jpg), for a web viewer or a team to read; unset: only "
        "the local cache.",
    )
    uploads_uri: str | None = Field(
        default=None,
        description="Where images added through the HTTP API (POST /v1/images) are stored: a "
        "folder or s3://bucket/prefix, laid out <sha[:2]>/<sha>.<ext>; unset: the project's "
        "images/uploads folder.",
    )
    max_upload_bytes: int = Field(
        default=64 * 1024**2,
        gt=0,
        description="Largest image file the HTTP API accepts in one upload or URL fetch, in bytes.",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Address of the Dask scheduler used by --executor dask when --scheduler "
        "is not given (tcp://HOST:8786).",
    )
    log_level: str = Field(default="WARNING", description="Logging level of the CLI.")
    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI for training runs (e.g. http://mlflow.example.org:5000); "
        "overrides the project's [tracking] mlflow_uri; 'off' disables tracking. Unset: a "
        "local store in the project's runs/ folder when MLflow is installed.",
    )
