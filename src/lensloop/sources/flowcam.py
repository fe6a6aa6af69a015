"""FlowCam exports: cut every particle out of its collage, with the sample's metadata.

A FlowCam (VisualSpreadsheet) export folder holds collage TIFFs, on which the instrument
pasted the particles it imaged, and one ``.lst`` file with a row per particle (its layout
is in :mod:`lensloop.sources.flowcam_lst`).

The columns lensloop needs are ``id``, ``collage_file`` and the particle's box on the
collage: ``image_x``, ``image_y`` (top-left corner, pixels from 0), ``image_w``,
``image_h``. An optional ``collage_page`` column (0-based; a lensloop extension, since
VisualSpreadsheet writes single-page collages) says which page of a multi-page collage a
box is on; without it every box is on page 0.

Each particle becomes its own lossless image (PNG for 8- and 16-bit collages, TIFF for
other dtypes; the exact pixels of its box, nothing rescaled) at
``<output>/<sample>/<id>.png``, with the sample's position and date in its EXIF. The
sample is the export folder: its name gives latitude, longitude, date and run number
through :data:`DEFAULT_SAMPLE_PATTERN` (or ``--sample-pattern``). Cutting runs one
collage per task through the context's executor (:func:`slice_one_collage` over
:class:`SliceJob`, both picklable), so a Dask cluster can do it. Re-running is safe: a
crop already written with the same bytes is reused, one with different bytes is never
overwritten (the particle is reported as skipped). Collage pages with no particle boxes
on them, or of one uniform colour, are skipped and counted as ``blank collage pages``.

The ``.lst`` parser is :mod:`lensloop.sources.flowcam_lst`; the executor's task is
:mod:`lensloop.sources.flowcam_slice`; both are re-exported here.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lensloop.errors import ConfigError, SourceError
from lensloop.imaging import ExifData
from lensloop.sources.base import Discovery, SourceContext, SourceItem
from lensloop.sources.flowcam_lst import LST_TYPES, REQUIRED_COLUMNS, LstTable, parse_lst, read_lst
from lensloop.sources.flowcam_slice import Particle, SliceJob, SliceResult, slice_one_collage
from lensloop.sources.remote import is_remote

__all__ = [
    "DEFAULT_SAMPLE_PATTERN",
    "LST_TYPES",
    "REQUIRED_COLUMNS",
    "LstTable",
    "Particle",
    "SampleInfo",
    "SliceJob",
    "SliceResult",
    "discover_flowcam",
    "find_exports",
    "parse_lst",
    "parse_sample_name",
    "read_lst",
    "slice_one_collage",
]

_log = logging.getLogger(__name__)

#: Folder names ``<anything>_<lat>_<lon>_<DDMMYYYY>[_<n>]``, e.g.
#: ``cruise42_station7_50.2500_-4.1250_21032024_2``.
DEFAULT_SAMPLE_PATTERN = (
    r"^(?P<sample>.+?)_(?P<lat>[+-]?\d+(?:\.\d+)?)_(?P<lon>[+-]?\d+(?:\.\d+)?)"
    r"_(?P<date>\d{8})(?:_(?P<n>\d+))?$"
)

_PAGE_COLUMN = "collage_page"
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BLANK = "blank collage pages"


# -- sample metadata from the folder name ---------------------------------------------------


@dataclass(frozen=True)
class SampleInfo:
    """What an export folder's name says about its sample.

    Attributes:
        name: The folder name (the catalog's sample name).
        lat: Latitude in decimal degrees, [-90, 90], negative south.
        lon: Longitude in decimal degrees, [-180, 180], negative west.
        day: The sampling date.
        n: The run or replicate number.
        extra: Other named groups of the pattern (``sample`` with the default one).
    """

    name: str
    lat: float | None = None
    lon: float | None = None
    day: date | None = None
    n: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def captured_at(self) -> datetime | None:
        """The sampling date at midnight (local time of the sample, no offset)."""
        return None if self.day is None else datetime(self.day.year, self.day.month, self.day.day)

    def meta(self) -> dict[str, Any]:
        """JSON-serialisable metadata for the catalog's sample."""
        meta: dict[str, Any] = dict(self.extra)
        meta.update(
            lat=self.lat,
            lon=self.lon,
            date=self.day.isoformat() if self.day else None,
            n=self.n,
        )
        return meta


def _compile(pattern: str | None) -> re.Pattern[str]:
    try:
        return re.compile(pattern or DEFAULT_SAMPLE_PATTERN)
    except re.error as exc:
        raise ConfigError(
            f"--sample-pattern {pattern!r} is not a regular expression: {exc}"
        ) from None


def _number(text: str | None, what: str, *, name: str) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise SourceError(f"sample {name!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SourceError(f"sample {name!r}: {what} {text!r} is not a finite number")
    return value


def parse_sample_name(name: str, pattern: str | None = None) -> SampleInfo:
    """Read a sample's position, date and run number from its folder name.

    Args:
        name: The export folder's name.
        pattern: A regular expression searched in ``name``, with any of the named groups
            ``lat``, ``lon`` (decimal degrees), ``date`` (``DDMMYYYY``), ``n`` (integer);
            other named groups are kept as text. None: :data:`DEFAULT_SAMPLE_PATTERN`.

    Returns:
        The sample's metadata.

    Raises:
        SourceError: The name does not match the pattern, a latitude outside [-90, 90]
            or longitude outside [-180, 180] (the message says when the two look
            swapped), or a date that is not a real ``DDMMYYYY`` day.
        ConfigError: ``pattern`` is not a regular expression.

    Example:
        >>> info = parse_sample_name("cruise42_station7_50.2500_-4.1250_21032024_2")
        >>> info.lat, info.lon, info.day.isoformat(), info.n, info.extra
        (50.25, -4.125, '2024-03-21', 2, {'sample': 'cruise42_station7'})
    """
    regex = _compile(pattern)
    match = regex.search(name)
    if match is None:
        raise SourceError(
            f"FlowCam folder name {name!r} does not match the sample pattern "
            f"{regex.pattern!r}; rename the folder to <name>_<lat>_<lon>_<DDMMYYYY>[_<n>] "
            "(e.g. cruise42_station7_50.2500_-4.1250_21032024_2), or pass --sample-pattern "
            "with named groups lat, lon, date, n ('(?P<sample>.+)' ingests without them)"
        )
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    lat = _number(groups.pop("lat", None), "latitude", name=name)
    lon = _number(groups.pop("lon", None), "longitude", name=name)
    lat_bad = lat is not None and abs(lat) > 90
    lon_bad = lon is not None and abs(lon) > 180
    if lat_bad or lon_bad:
        swapped = lat is not None and lon is not None and abs(lon) <= 90 and abs(lat) <= 180
        hint = (
            "; latitude and longitude look swapped: the name must give latitude first"
            if swapped
            else ""
        )
        raise SourceError(
            f"sample {name!r}: latitude {lat} must be in [-90, 90] and longitude {lon} in "
            f"[-180, 180]{hint}"
        )
    day = None
    if "date" in groups:
        text = groups.pop("date")
        try:
            day = datetime.strptime(text, "%d%m%Y").date()
        except ValueError:
            raise SourceError(
                f"sample {name!r}: date {text!r} is not a day written DDMMYYYY (e.g. 21032024 "
                "for 21 March 2024)"
            ) from None
    n = None
    if "n" in groups:
        text = groups.pop("n")
        if not text.isdigit():
            raise SourceError(f"sample {name!r}: run number n={text!r} is not an integer")
        n = int(text)
    return SampleInfo(name=name, lat=lat, lon=lon, day=day, n=n, extra=groups)


# -- discovery (runs here) ------------------------------------------------------------------


def _lst_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".lst" and not p.name.startswith(".")
    )


def find_exports(sources: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Find the FlowCam export folders among the sources.

    A source is an export folder (it holds one ``.lst`` file), the ``.lst`` file itself,
    or a folder whose subfolders are export folders.

    Returns:
        ``(folder, .lst file)`` of each export, in source order, then sorted by name.

    Raises:
        SourceError: A source does not exist, a folder holds several ``.lst`` files, or
            a folder has no ``.lst`` file in it or in its subfolders.
    """
    exports: list[tuple[Path, Path]] = []
    for source in sources:
        if is_remote(str(source)):
            raise SourceError(
                f"FlowCam exports are read from local folders, not {source}; copy the "
                "export folder here first (crops may still go to s3:// with --output)"
            )
        path = Path(source).expanduser().resolve()
        if not path.exists():
            raise SourceError(f"FlowCam source not found: {source}; check the path")
        if path.is_file():
            if path.suffix.lower() != ".lst":
                raise SourceError(
                    f"{path}: not a .lst file; give a FlowCam export folder, its .lst file, "
                    "or a folder of export folders"
                )
            exports.append((path.parent, path))
            continue
        lsts = _lst_files(path)
        if len(lsts) > 1:
            raise SourceError(
                f"{path} holds {len(lsts)} .lst files ({', '.join(p.name for p in lsts)}); "
                "an export folder has one: give the .lst file to use instead of the folder"
            )
        if lsts:
            exports.append((path, lsts[0]))
            continue
        found = []
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            sub_lsts = _lst_files(sub)
            if len(sub_lsts) > 1:
                raise SourceError(
                    f"{sub} holds {len(sub_lsts)} .lst files "
                    f"({', '.join(p.name for p in sub_lsts)}); an export folder has one: give "
                    "the .lst file to use instead"
                )
            if sub_lsts:
                found.append((sub, sub_lsts[0]))
        if not found:
            raise SourceError(
                f"no .lst file in {path} or its subfolders; give a FlowCam export folder "
                "(collage TIFFs and the .lst file VisualSpreadsheet writes) or a folder of them"
            )
        exports.extend(found)
    return exports


def _int_field(row: dict[str, Any], column: str, where: str) -> int:
    value = row[column]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SourceError(f"{where}: {column} must be an integer number of pixels, got {value!r}")
    return value


def _collage_path(folder: Path, name: str, where: str) -> Path:
    candidates = [folder / name, folder / name.replace("\\", "/").rsplit("/", 1)[-1]]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SourceError(
        f"{where}: collage file {name!r} is missing from {folder}; copy the whole export "
        "folder (every collage TIFF the .lst file names)"
    )


def _page_sizes(path: Path) -> list[tuple[int, int]]:
    """``(height, width)`` of each page, from the TIFF's IFDs (no pixels decoded)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            pages = [p.keyframe if isinstance(p, tifffile.TiffFrame) else p for p in tiff.pages]
            return [(int(p.imagelength), int(p.imagewidth)) for p in pages if p is not None]
    except Exception as exc:  # tifffile raises many types on damaged files
        raise SourceError(
            f"{path}: not a readable TIFF collage ({type(exc).__name__}: {exc})"
        ) from exc


@dataclass
class _Export:
    folder: Path
    table: LstTable
    info: SampleInfo
    jobs: list[SliceJob]
    # For each .lst row: (index of its job in `jobs`, index of the particle in the job).
    where: list[tuple[int, int]]


def _plan(folder: Path, lst: Path, context: SourceContext, output: str) -> _Export:
    table = read_lst(lst)
    info = parse_sample_name(folder.name, context.sample_pattern)
    exif = ExifData(latitude=info.lat, longitude=info.lon, captured_at=info.captured_at)
    has_page = any(f == _PAGE_COLUMN for f, _ in table.fields)
    collages: dict[str, tuple[Path, list[tuple[int, int]]]] = {}
    boxes: dict[str, list[Particle]] = {}
    where: list[tuple[str, int]] = []
    stems: dict[str, int] = {}
    for row, number in zip(table.rows, table.lines, strict=True):
        at = f"{lst}, line {number}"
        stem = str(row["id"]).strip()
        if not _SAFE_STEM.fullmatch(stem):
            raise SourceError(
                f"{at}: particle id {row['id']!r} cannot name a file; ids are letters, "
                "digits, '.', '_' and '-'"
            )
        if stem in stems:
            raise SourceError(
                f"{at}: particle id {stem} is repeated (first on line {stems[stem]}); ids "
                "must be unique in an export"
            )
        stems[stem] = number
        name = str(row["collage_file"]).strip()
        if not name:
            raise SourceError(f"{at}: collage_file is empty")
        if name not in collages:
            path = _collage_path(folder, name, at)
            collages[name] = (path, _page_sizes(path))
            boxes[name] = []
        path, sizes = collages[name]
        page = _int_field(row, _PAGE_COLUMN, at) if has_page else 0
        x, y = _int_field(row, "image_x", at), _int_field(row, "image_y", at)
        w, h = _int_field(row, "image_w", at), _int_field(row, "image_h", at)
        if not 0 <= page < len(sizes):
            raise SourceError(
                f"{at}: {_PAGE_COLUMN} {page} does not exist; {path.name} has {len(sizes)} "
                f"page(s), 0 to {len(sizes) - 1}"
            )
        height, width = sizes[page]
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise SourceError(
                f"{at}: particle {stem}'s box (x={x}, y={y}, w={w}, h={h}) is outside its "
                f"collage {path.name} page {page}, which is {width} x {height} pixels; the "
                ".lst file and the collages are from different exports, or the row is damaged"
            )
        boxes[name].append(Particle(stem, page, x, y, w, h))
        where.append((name, len(boxes[name]) - 1))
    # Collage files no row points at hold no particle: every page of them is blank.
    # (Binary masks, *_bin.tif, and calibration images, cal_image_*.tif, are not collages.)
    for extra in sorted(folder.iterdir()):
        name = extra.name
        if (
            extra.is_file()
            and extra.suffix.lower() in (".tif", ".tiff")
            and name not in collages
            and not extra.stem.lower().endswith("_bin")
            and not name.lower().startswith("cal_")
        ):
            try:
                collages[name] = (extra, _page_sizes(extra))
            except SourceError as exc:
                _log.warning("flowcam: %s is not counted as a blank collage: %s", extra, exc)
                continue
            boxes[name] = []
    sample_folder = f"{output.rstrip('/')}/{folder.name}"
    order = list(collages)
    jobs = [
        SliceJob(
            collage=collages[name][0].as_posix(),
            n_pages=len(collages[name][1]),
            particles=tuple(boxes[name]),
            folder=sample_folder,
            exif=exif,
            remote=context.remote,
        )
        for name in order
    ]
    index = {name: i for i, name in enumerate(order)}
    return _Export(folder, table, info, jobs, [(index[n], i) for n, i in where])


def _run(jobs: list[SliceJob], context: SourceContext, output: str) -> Iterable[SliceResult]:
    try:
        yield from context.executor.map(slice_one_collage, jobs)
    except OSError as exc:
        raise SourceError(f"cannot write FlowCam particle images to {output}: {exc}") from exc


def discover_flowcam(sources: Sequence[str | Path], context: SourceContext) -> Discovery:
    """Cut the particles of FlowCam exports out of their collages; items are the crops.

    Every ``.lst`` file is read and every box checked against its collage before any
    crop is written, so a damaged export stops the run with nothing written.

    Args:
        sources: Export folders, their ``.lst`` files, or folders of export folders.
        context: ``output`` (where crops go), ``sample_pattern``, ``remote`` and
            ``executor`` are used.

    Returns:
        One item per crop (sample, position, date, and the particle's ``.lst`` row under
        ``meta["flowcam"]``), the particles that got no crop in ``skipped``, each
        sample's metadata, and counts (``blank collage pages``, ``crops written``,
        ``crops reused``).

    Raises:
        SourceError: A missing or bad ``.lst`` file, a folder name that does not match the
            sample pattern or gives an impossible position or date, a missing collage, a
            box outside its collage, two exports with the same folder name, or crops that
            cannot be written.
        ConfigError: The sample pattern is not a regular expression.
    """
    output = (
        context.output if is_remote(context.output) else Path(context.output).resolve().as_posix()
    )
    exports: list[_Export] = []
    names: dict[str, Path] = {}
    for folder, lst in find_exports(sources):
        if folder.name in names:
            if names[folder.name] == folder:
                continue
            raise SourceError(
                f"two FlowCam exports are named {folder.name!r} ({names[folder.name]} and "
                f"{folder}); a sample's name is its folder name, so rename one"
            )
        names[folder.name] = folder
        exports.append(_plan(folder, lst, context, output))
    jobs = [job for export in exports for job in export.jobs]
    results = list(_run(jobs, context, output))
    discovery = Discovery()
    counts = {_BLANK: 0, "crops written": 0, "crops reused": 0}
    offset = 0
    for export in exports:
        mine = results[offset : offset + len(export.jobs)]
        offset += len(export.jobs)
        blank = sum(r.blank_pages for r in mine)
        counts[_BLANK] += blank
        counts["crops written"] += sum(r.written for r in mine)
        counts["crops reused"] += sum(r.reused for r in mine)
        info, table = export.info, export.table
        for row, number, (job, index) in zip(table.rows, table.lines, export.where, strict=True):
            uri, reason = mine[job].uris[index], mine[job].reasons[index]
            if uri is None:
                discovery.skipped.append((f"{table.path}:{number}", reason or "not written"))
                continue
            discovery.items.append(
                SourceItem(
                    uri=uri,
                    sample=info.name,
                    meta={"flowcam": row},
                    lat=info.lat,
                    lon=info.lon,
                    captured_at=info.captured_at,
                )
            )
        discovery.samples[info.name] = {
            **info.meta(),
            "source_format": "flowcam",
            "lst_version": table.version,
            "folder": export.folder.as_posix(),
            "particles": len(table.rows),
            "collages": len(export.jobs),
            "blank_pages": blank,
        }
    discovery.counts = counts
    _log.info(
        "flowcam: %d exports, %d particles, %d crops written, %d reused, %d blank pages",
        len(exports),
        sum(len(e.table.rows) for e in exports),
        counts["crops written"],
        counts["crops reused"],
        counts[_BLANK],
    )
    return discovery
