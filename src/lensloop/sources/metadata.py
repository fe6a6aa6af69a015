"""Metadata CSV files joined to images on a key column.

The key column holds file names (``img_001.tif``) or stems (``img_001``); an image matches
a row on its full name first, then on its stem. Column types are inferred (integers,
floats, booleans, text). Columns recognised by name (case-insensitive, spaces or dashes
count as underscores) fill the catalog's own fields:

========== ===============================================================================
field      column names
========== ===============================================================================
lat        ``lat``, ``latitude``, ``gps_lat``, ``decimal_latitude``
lon        ``lon``, ``lng``, ``long``, ``longitude``, ``gps_lon``, ``decimal_longitude``
time       ``captured_at``, ``datetime``, ``date_time``, ``timestamp``, ``time``, ``date``
           (``date`` + ``time`` columns are combined)
depth      ``depth``, ``depth_m``
sample     ``sample``, ``sample_id``, ``sample_name``
========== ===============================================================================

Every other column goes into the image's free metadata, under its original name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lensloop.errors import SourceError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MetadataRow", "MetadataTable", "load_metadata_csv"]

_ALIASES: dict[str, tuple[str, ...]] = {
    "lat": ("lat", "latitude", "gps_lat", "decimal_latitude"),
    "lon": ("lon", "lng", "long", "longitude", "gps_lon", "decimal_longitude"),
    "time": ("captured_at", "datetime", "date_time", "timestamp", "time", "date"),
    "depth": ("depth", "depth_m"),
    "sample": ("sample", "sample_id", "sample_name"),
}


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class MetadataRow:
    """The fields one CSV row gives an image."""

    key: str
    lat: float | None = None
    lon: float | None = None
    captured_at: datetime | None = None
    depth: float | None = None
    sample: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetadataTable:
    """A metadata CSV indexed by file name and stem, remembering which rows matched."""

    path: Path
    key: str
    rows: dict[str, MetadataRow]
    columns: dict[str, str]
    matched: set[str] = field(default_factory=set)
    _by_stem: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stems: dict[str, list[str]] = {}
        for key in self.rows:
            stems.setdefault(PurePosixPath(key).stem, []).append(key)
        self._by_stem = {stem: keys[0] for stem, keys in stems.items() if len(keys) == 1}

    def lookup(self, uri: str) -> MetadataRow | None:
        """Return the row for a file (by name, then stem), or None."""
        name = PurePosixPath(uri).name
        key = name if name in self.rows else None
        if key is None:
            stem = PurePosixPath(name).stem
            key = stem if stem in self.rows else self._by_stem.get(stem)
        if key is None:
            return None
        self.matched.add(key)
        return self.rows[key]

    @property
    def unmatched(self) -> list[str]:
        """Keys of rows no image has matched so far."""
        return sorted(set(self.rows) - self.matched)


def _to_json(value: Any) -> Any:
    """Convert a pandas/numpy scalar to plain JSON-able Python (None for missing)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _find(columns: dict[str, str], field_name: str) -> str | None:
    for alias in _ALIASES[field_name]:
        if alias in columns:
            return columns[alias]
    return None


def _parse_times(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    import pandas as pd

    values = frame[column].astype("string")
    normalised = {_norm(c): c for c in frame.columns}
    if _norm(column) == "date" and "time" in normalised:
        values = values + " " + frame[normalised["time"]].astype("string")
    try:
        return pd.to_datetime(values, format="ISO8601")
    except (ValueError, TypeError):
        pass
    try:
        return pd.to_datetime(values, format="mixed", dayfirst=False)
    except (ValueError, TypeError) as exc:
        raise SourceError(
            f"{path}: column {column!r} is recognised as the capture time but cannot be "
            f"parsed ({exc}); use ISO 8601 such as 2024-05-17T13:45:00, or rename the column"
        ) from exc


def _check_range(frame: pd.DataFrame, column: str, low: float, high: float, path: Path) -> None:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce")
    bad_text = frame[column].notna() & values.isna()
    out = values.notna() & ((values < low) | (values > high))
    bad = frame.index[bad_text | out].tolist()
    if bad:
        rows = ", ".join(str(i + 2) for i in bad[:5])  # +2: header line and 1-based lines
        example = frame[column].iloc[bad[0]]
        raise SourceError(
            f"{path}: column {column!r} must hold numbers in [{low}, {high}]; line(s) {rows} "
            f"hold e.g. {example!r}. Fix the file (decimal degrees, negative for S/W)"
        )


def load_metadata_csv(path: str | Path, *, key: str = "filename") -> MetadataTable:
    """Read a metadata CSV to join to images.

    Args:
        path: The CSV file (delimiter sniffed: comma, semicolon or tab).
        key: The column holding file names or stems.

    Returns:
        The table, indexed by key.

    Raises:
        SourceError: The file cannot be read, the key column is missing, keys repeat,
            latitude/longitude are out of range or the time column cannot be parsed.
    """
    import pandas as pd

    path = Path(path).expanduser()
    try:
        frame = pd.read_csv(path, sep=None, engine="python", dtype_backend="numpy_nullable")
    except FileNotFoundError as exc:
        raise SourceError(f"metadata file not found: {path}") from exc
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read metadata file {path}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if key not in frame.columns:
        raise SourceError(
            f"{path} has no key column {key!r}; its columns are: {', '.join(frame.columns)}. "
            "Pass --key with the column holding file names"
        )
    keys = frame[key].astype("string").str.strip()
    if keys.isna().any():
        lines = ", ".join(str(i + 2) for i in frame.index[keys.isna()][:5])
        raise SourceError(f"{path}: key column {key!r} is empty on line(s) {lines}")
    repeated = sorted(keys[keys.duplicated()].unique())
    if repeated:
        raise SourceError(
            f"{path}: key column {key!r} repeats {len(repeated)} value(s), e.g. "
            f"{', '.join(repeated[:5])}; each file may appear once"
        )
    columns = {_norm(c): c for c in frame.columns if c != key}
    lat_col, lon_col = _find(columns, "lat"), _find(columns, "lon")
    time_col, depth_col = _find(columns, "time"), _find(columns, "depth")
    if time_col in (columns.get("time"), columns.get("date")) and {"date", "time"} <= set(columns):
        time_col = columns["date"]  # separate date and time columns: combine them
    sample_col = _find(columns, "sample")
    if lat_col:
        _check_range(frame, lat_col, -90.0, 90.0, path)
    if lon_col:
        _check_range(frame, lon_col, -180.0, 180.0, path)
    times = _parse_times(frame, time_col, path) if time_col else None
    used = {c for c in (lat_col, lon_col, time_col, depth_col, sample_col) if c}
    if time_col and _norm(time_col) == "date" and "time" in columns:
        used.add(columns["time"])
    extra_cols = [c for c in frame.columns if c not in used and c != key]
    rows: dict[str, MetadataRow] = {}
    records = frame.to_dict("records")
    captured_times = list(times) if times is not None else [None] * len(records)
    for row_key, record, when in zip(keys, records, captured_times, strict=True):

        def number(column: str | None, record: dict[Any, Any] = record) -> float | None:
            value = _to_json(record[column]) if column else None
            return None if value is None else float(value)

        captured = None if when is None or pd.isna(when) else when.to_pydatetime()
        sample = _to_json(record[sample_col]) if sample_col else None
        extra = {c: v for c in extra_cols if (v := _to_json(record[c])) is not None}
        rows[str(row_key)] = MetadataRow(
            key=str(row_key),
            lat=number(lat_col),
            lon=number(lon_col),
            captured_at=captured,
            depth=number(depth_col),
            sample=None if sample is None else str(sample),
            extra=extra,
        )
    recognised = {
        name: col
        for name, col in (
            ("lat", lat_col),
            ("lon", lon_col),
            ("time", time_col),
            ("depth", depth_col),
            ("sample", sample_col),
        )
        if col
    }
    return MetadataTable(path=path, key=key, rows=rows, columns=recognised)
