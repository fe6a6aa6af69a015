"""Ingest: discover files, read, hash, decode and record them in the catalog.

The pipeline:

1. the source format discovers items (files under folders, with their folder levels);
2. worker processes read each file, hash it (sha256) and fully decode it, so a truncated
   or mislabelled file is caught now, not at training time; a file whose URI and hash are
   already in the catalog is not decoded again;
3. the main process drops duplicates (sha256 already in the catalog, or seen earlier in the
   run), joins the metadata CSV and folder labels, and commits every ``batch_size`` images
   in one transaction, together with the failures of that batch;
4. at the end, images without a split get one (stratified per class, seeded).

An interrupted ingest keeps every committed batch; running it again adds exactly the rest.
A bad file never stops the run: it is reported with its reason and recorded in the
catalog's ``ingest_failures`` table (and removed from it once it ingests).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lensloop.catalog import NewImage, join_path, roll_up, split_path
from lensloop.catalog.images import (
    add_images,
    assign_splits,
    clear_failures,
    lookup_sha256,
    lookup_uris,
    merge_sample_meta,
    record_failures,
)
from lensloop.catalog.labels import add_class_annotations, current_class_paths, ensure_class_paths
from lensloop.errors import ConfigError, LabelError
from lensloop.executors import Executor, LocalExecutor
from lensloop.project.project import Project
from lensloop.sources import MetadataTable, SourceItem, get_source_format, load_metadata_csv
from lensloop.sources.base import Discovery, SourceContext, StoreMode
from lensloop.sources.reader import (
    PAGE_MODES,
    Decoded,
    Failed,
    PagesMode,
    ReadResult,
    ReadTask,
    Unchanged,
    file_of,
    read_item,
)
from lensloop.sources.remote import copy_destination, is_remote

__all__ = [
    "PAGE_MODES",
    "IngestOptions",
    "IngestReport",
    "PagesMode",
    "check_labels",
    "choose_workers",
    "ingest",
    "parse_split",
]

_log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

# Worker processes pay off for many files, or a few large ones (docs/benchmarks.md).
_MIN_ITEMS_FOR_WORKERS = 16
_MANY_ITEMS = 256
_LARGE_FILE_BYTES = 512 * 1024
_SIZE_SAMPLE = 64


@dataclass(frozen=True)
class IngestOptions:
    """Options of one ingest run (see ``lensloop ingest --help``).

    Attributes:
        labels_from_folders: Use the folder levels below each source folder as the label.
        depth: Taxonomy level used as the class (1 = the first folder level); the whole
            path is stored either way, so the project can be rolled up later.
        metadata: A metadata CSV to join on ``key``.
        key: The CSV column holding file names or stems.
        split: Shares of ``val`` and ``test`` per class, e.g. ``{"val": 0.2}``.
        seed: Seed of the split.
        pages: How multi-page TIFFs are ingested (see :data:`PAGE_MODES`).
        batch_size: Images per catalog transaction.
        workers: Decode processes; 0 decodes in the calling process; None decides from the
            file count and sizes (:func:`choose_workers`).
        source_format: Name of the source format (see ``lensloop.sources``).
        annotator: Recorded as the annotator of folder labels.
        store: Remote images: ``reference`` them where they are, or ``copy`` them into
            ``output`` first.
        output: Where images a source derives (FlowCam crops, copies) are written: a
            folder or ``s3://bucket/prefix``; None is the project's ``images/`` folder.
        sample_pattern: How a FlowCam folder name gives sample metadata (None: the
            default pattern).
        concurrency: Downloads in flight at once.
        executor: Where a source's heavy work (FlowCam slicing) runs; None: here.
    """

    labels_from_folders: bool = False
    depth: int | None = None
    metadata: Path | None = None
    key: str = "filename"
    split: Mapping[str, float] | None = None
    seed: int = 0
    pages: PagesMode = "each"
    batch_size: int = 500
    workers: int | None = None
    source_format: str = "folder"
    annotator: str = "folder-import"
    store: StoreMode = "reference"
    output: str | None = None
    sample_pattern: str | None = None
    concurrency: int = 4
    executor: Executor | None = None


@dataclass
class IngestReport:
    """What an ingest run did; ``lensloop ingest`` prints it."""

    discovered: int = 0
    added: int = 0
    already_in_catalog: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    labelled: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    metadata_matched: int = 0
    metadata_unmatched: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True unless nothing at all could be ingested (the CLI's exit code)."""
        return self.added + self.already_in_catalog + len(self.duplicates) > 0

    @property
    def images_per_s(self) -> float:
        """Files processed per second of wall time."""
        done = self.added + self.already_in_catalog + len(self.duplicates) + len(self.failed)
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0


def parse_split(text: str) -> dict[str, float]:
    """Parse ``val=0.2,test=0.1`` into ``{"val": 0.2, "test": 0.1}``.

    Raises:
        ConfigError: Unknown split names, shares outside [0, 1), or shares summing to 1 or
            more (nothing would be left to train on).
    """
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ("val", "test"):
            raise ConfigError(
                f"invalid split {part!r} in {text!r}: write val=SHARE and/or test=SHARE, "
                "e.g. val=0.2,test=0.1 (train gets the rest)"
            )
        try:
            share = float(value)
        except ValueError:
            raise ConfigError(f"split share {value!r} for {name} is not a number") from None
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"split share for {name} must be in [0, 1), got {share}")
        shares[name] = share
    if sum(shares.values()) >= 1.0:
        raise ConfigError(f"split shares {text!r} sum to 1 or more; leave a share for train")
    return shares


# -- main side ----------------------------------------------------------------------------


def choose_workers(uris: Sequence[str], requested: int | None) -> int:
    """Decide how many decode processes to use.

    An explicit request wins. Otherwise a run of many files, or of a few large ones, uses
    one process per core; a short run of small files is decoded in the calling process,
    where starting workers would cost more than it saves (see docs/benchmarks.md).

    Args:
        uris: The files to ingest.
        requested: ``--workers``; None decides automatically.

    Returns:
        0 for in-process decoding, else the number of worker processes.
    """
    if requested is not None:
        return requested
    cores = os.cpu_count() or 1
    if cores < 2 or len(uris) < _MIN_ITEMS_FOR_WORKERS:
        return 0
    if len(uris) >= _MANY_ITEMS:
        return cores
    sizes = []
    for uri in uris[:: max(1, len(uris) // _SIZE_SAMPLE)][:_SIZE_SAMPLE]:
        with contextlib.suppress(OSError):
            sizes.append(os.stat(uri).st_size)
    mean = sum(sizes) / len(sizes) if sizes else 0
    return cores if mean >= _LARGE_FILE_BYTES else 0


def _results(tasks: list[ReadTask], workers: int) -> Iterator[list[ReadResult]]:
    if workers == 0:
        yield from map(read_item, tasks)
        return
    # forkserver: workers start from a clean process, never a fork of a threaded parent
    # (the progress bar runs a thread). Scripts that call ingest with workers therefore
    # need the usual `if __name__ == "__main__":` guard.
    context = multiprocessing.get_context("forkserver")
    chunksize = max(1, min(16, len(tasks) // (workers * 8)))
    with context.Pool(workers) as pool:
        yield from pool.imap(read_item, tasks, chunksize=chunksize)


def _accepts(label: tuple[str, ...], declared: list[tuple[str, ...]]) -> bool:
    return any(label[: len(d)] == d for d in declared)


def check_labels(project: Project, paths: Iterable[tuple[str, ...]]) -> None:
    """Refuse class paths outside the project's schema when it is closed.

    Raises:
        LabelError: A path is neither a declared class nor below one (the message lists
            them and says where the schema is declared).
    """
    labels = project.config.labels
    if not labels.closed:
        return
    declared = [split_path(c) for c in labels.classes]
    unknown = sorted({join_path(p) for p in paths if p} - set(labels.classes))
    unknown = [u for u in unknown if not _accepts(split_path(u), declared)]
    if unknown:
        raise LabelError(
            f"labels {', '.join(unknown[:10])} are not classes of this project, whose "
            f"schema is closed to: {', '.join(labels.classes)}. Rename the folders (or fix "
            f"the source), or add the classes to [labels].classes in "
            f"{project.root / 'lensloop.toml'}"
        )


class _Writer:
    """Accumulates decoded records and commits them batch by batch."""

    def __init__(
        self,
        project: Project,
        options: IngestOptions,
        labels: Mapping[str, tuple[str, ...]],
        items: Mapping[str, SourceItem],
        metadata: MetadataTable | None,
        report: IngestReport,
    ) -> None:
        self.project = project
        self.options = options
        self.labels = labels
        self.items = items
        self.metadata = metadata
        self.report = report
        self.first_uri: dict[str, str] = {}
        self.records: list[Decoded] = []
        self.failures: list[tuple[str, str]] = []

    def add(self, results: Iterable[ReadResult]) -> None:
        for result in results:
            if isinstance(result, Failed):
                self.failures.append((result.uri, result.reason))
                self.report.failed.append((result.uri, result.reason))
            elif isinstance(result, Unchanged):
                self.report.already_in_catalog += 1
            else:
                self.records.append(result)
        if len(self.records) + len(self.failures) >= self.options.batch_size:
            self.flush()

    def _new_image(self, record: Decoded) -> NewImage:
        meta: dict[str, Any] = {}
        lat, lon, captured, depth, sample = record.lat, record.lon, record.captured_at, None, None
        if record.altitude is not None:
            meta["altitude_m"] = record.altitude
        item = self.items.get(file_of(record.uri))
        if item is not None:
            # What the source states about the image wins over the file's EXIF.
            meta.update(item.meta)
            lat = item.lat if item.lat is not None else lat
            lon = item.lon if item.lon is not None else lon
            captured = item.captured_at or captured
            sample = item.sample
        if record.n_pages > 1:
            # How this multi-page file was read, so the same pixels can be read back.
            meta["n_pages"] = record.n_pages
            meta["pages"] = "each" if record.page is not None else self.options.pages
        row = self.metadata.lookup(file_of(record.uri)) if self.metadata else None
        if row is not None:
            self.report.metadata_matched += 1
            meta.update(row.extra)
            # The CSV is the user's explicit statement: it wins over the file's EXIF.
            lat = row.lat if row.lat is not None else lat
            lon = row.lon if row.lon is not None else lon
            captured = row.captured_at or captured
            depth, sample = row.depth, row.sample or sample
        return NewImage(
            uri=record.uri,
            sha256=record.sha256,
            format=record.format,
            width=record.width,
            height=record.height,
            channels=record.channels,
            dtype=record.dtype,
            bit_depth=record.bit_depth,
            file_size=record.file_size,
            page=record.page,
            sample=sample,
            captured_at=captured,
            lat=lat,
            lon=lon,
            depth=depth,
            meta=meta,
        )

    def flush(self) -> None:
        if not self.records and not self.failures:
            return
        records, failures = self.records, self.failures
        self.records, self.failures = [], []
        with self.project.catalog.transaction() as session:
            known = lookup_sha256(session, [r.sha256 for r in records])
            known_uris = lookup_uris(session, [r.uri for r in records])
            fresh: list[Decoded] = []
            for record in records:
                if record.sha256 in known:
                    self.report.already_in_catalog += 1
                elif record.uri in known_uris:
                    # Same path, new content: never overwrite what was ingested.
                    reason = (
                        f"content changed since it was ingested (catalog has sha256 "
                        f"{known_uris[record.uri][:12]}..., file now {record.sha256[:12]}...); "
                        "lensloop never overwrites an image: save the new version under "
                        "another name to ingest it"
                    )
                    failures.append((record.uri, reason))
                    self.report.failed.append((record.uri, reason))
                elif record.sha256 in self.first_uri:
                    self.report.duplicates.append((record.uri, self.first_uri[record.sha256]))
                else:
                    self.first_uri[record.sha256] = record.uri
                    fresh.append(record)
            ids = add_images(session, [self._new_image(r) for r in fresh])
            labelled = {
                ids[r.sha256]: self.labels[file_of(r.uri)]
                for r in fresh
                if self.labels.get(file_of(r.uri))
            }
            if labelled:
                ensure_class_paths(session, labelled.values())
                add_class_annotations(
                    session,
                    {image_id: join_path(path) for image_id, path in labelled.items()},
                    annotator=self.options.annotator,
                    origin="import",
                )
            record_failures(session, failures)
            failed = {uri for uri, _ in failures}
            clear_failures(session, [file_of(r.uri) for r in records if r.uri not in failed])
        self.report.added += len(fresh)
        self.report.labelled += len(labelled)


def _to_copies(discovery: Discovery, output: str) -> dict[str, str]:
    """For ``--store copy``: point remote items at their copies under ``output``.

    Returns:
        The origin of each copy, by the copy's URI. The copies are made by the readers,
        once an image decodes; a copy that exists already is reused, so a re-run (after a
        failure, or to add new images) neither downloads nor duplicates anything.
    """
    origins: dict[str, str] = {}
    items = []
    prefix = output.rstrip("/") + "/"
    for item in discovery.items:
        if is_remote(item.uri) and not item.uri.startswith(prefix):
            copy = copy_destination(item.uri, output)
            origins[copy] = item.uri
            item = replace(item, uri=copy)
        items.append(item)
    discovery.items = items
    return origins


def ingest(
    project: Project,
    sources: Sequence[str | Path],
    *,
    options: IngestOptions | None = None,
    progress: ProgressFn | None = None,
    discovery: Discovery | None = None,
) -> IngestReport:
    """Ingest files and folders into a project's catalog.

    Args:
        project: The open project.
        sources: Files and folders (walked recursively); for the folder format also
            ``s3://bucket/prefix``, ``https://`` images and URL lists (``.txt``, ``.urls``).
        options: Labels, metadata, splits, pages and batching; defaults otherwise.
        progress: Called as ``progress(done, total)`` after each file.
        discovery: Items found by the caller (the HTTP API's uploads, with their label,
            sample and metadata) instead of by a source format; ``sources`` must then be
            empty.

    Returns:
        A report of what was added, skipped, duplicated and failed.

    Raises:
        SourceError: A source or the metadata CSV cannot be used (nothing is written).
        LabelError: Folder labels outside a closed label schema (nothing is written).
        ConfigError: Invalid options.
        CatalogError: The catalog refused a write (batches committed before it are kept).
    """
    options = options or IngestOptions()
    if options.store not in ("reference", "copy"):
        raise ConfigError(f"unknown store mode {options.store!r}; valid: reference, copy")
    if options.concurrency < 1:
        raise ConfigError(f"concurrency must be 1 or more, got {options.concurrency}")
    if options.pages not in PAGE_MODES:
        raise ConfigError(f"unknown pages mode {options.pages!r}; valid: {', '.join(PAGE_MODES)}")
    if options.depth is not None and options.depth < 1:
        raise ConfigError(f"--depth must be 1 or more, got {options.depth}")
    started = time.perf_counter()
    discover = get_source_format(options.source_format)
    metadata = load_metadata_csv(options.metadata, key=options.key) if options.metadata else None
    context = SourceContext(
        root=project.root,
        output=options.output or (project.root / "images").as_posix(),
        cache_dir=project.settings.cache_dir / "downloads",
        remote=project.remote,
        store=options.store,
        sample_pattern=options.sample_pattern,
        concurrency=options.concurrency,
        executor=options.executor or LocalExecutor(),
    )
    if discovery is None:
        discovery = discover(sources, context)
    elif sources:
        raise ConfigError("pass either sources or a discovery, not both")
    origins = _to_copies(discovery, context.output) if options.store == "copy" else {}
    labels: dict[str, tuple[str, ...]] = {
        item.uri: item.label for item in discovery.items if item.label
    }
    if options.labels_from_folders:
        labels = {item.uri: item.class_path for item in discovery.items if item.class_path}
        labels.update({item.uri: item.label for item in discovery.items if item.label})
    if labels:
        check_labels(project, labels.values())
    depth_changed = options.depth is not None and project.config.labels.depth != options.depth
    if (options.labels_from_folders or labels) and depth_changed:
        project.config.labels.depth = options.depth
        project.save_config()
    report = IngestReport(
        discovered=len(discovery.items),
        skipped=list(discovery.skipped),
        counts=dict(discovery.counts),
    )
    if discovery.samples:
        with project.catalog.transaction() as session:
            merge_sample_meta(session, discovery.samples)
    with project.catalog.reader() as session:
        known = lookup_uris(session, [item.uri for item in discovery.items])
    limits, remote = project.limits, project.remote
    tasks = [
        ReadTask(i.uri, known.get(i.uri), options.pages, limits, remote, origins.get(i.uri))
        for i in discovery.items
    ]
    workers = choose_workers([t.uri for t in tasks], options.workers)
    _log.info("ingest: %d files, %d decode worker(s)", len(tasks), workers)
    items = {item.uri: item for item in discovery.items}
    writer = _Writer(project, options, labels, items, metadata, report)
    for done, results in enumerate(_results(tasks, workers), start=1):
        writer.add(results)
        if progress is not None:
            progress(done, len(tasks))
    writer.flush()
    with project.catalog.transaction() as session:
        depth = project.config.labels.depth
        class_of = {
            image_id: roll_up(path, depth)
            for image_id, path in current_class_paths(session).items()
        }
        report.splits = assign_splits(
            session, labels=class_of, fractions=options.split, seed=options.seed
        )
    if metadata is not None:
        report.metadata_unmatched = metadata.unmatched
    report.elapsed_s = time.perf_counter() - started
    _log.info(
        "ingest: %d added, %d already in catalog, %d failed in %.1f s",
        report.added,
        report.already_in_catalog,
        len(report.failed),
        report.elapsed_s,
    )
    return report
