"""Abundance: how many images of each class there are in each sample or metadata group.

This is the number a plankton ecologist publishes (individuals per taxon per sample). For
every image of the catalog:

- its **group** is its sample's name (``by="sample"``) or the value of a metadata field,
  as text (``5.0`` reads ``"5"``); images without one fall in :data:`NO_GROUP`;
- its **class** is its confirmed label (the latest class annotation, rolled up to the
  depth) when it has one, else the class predicted by the chosen model version. A
  confirmed label always overrides the prediction;
- an image with neither is counted per group as unclassified, never as a class.

:func:`abundance_table` builds an :class:`AbundanceTable` from a project;
:func:`write_abundance` writes it as a long-format CSV (``group,class,confirmed,predicted,
total``) and a stacked bar chart PNG beside it. matplotlib is imported only to draw.

Example:
    >>> table = abundance_table(project, "sample")  # doctest: +SKIP
    >>> write_abundance(table, default_csv_path(project, "sample"))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select

from lensloop.catalog.images import metadata_text
from lensloop.catalog.labels import current_class_paths, roll_up
from lensloop.catalog.models import Image, ModelVersion, Prediction, Sample
from lensloop.errors import ConfigError
from lensloop.project import Project

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "CSV_COLUMNS",
    "NO_GROUP",
    "SAMPLE",
    "UNCLASSIFIED",
    "AbundanceRow",
    "AbundanceTable",
    "abundance_table",
    "default_csv_path",
    "group_sort_key",
    "write_abundance",
]

logger = logging.getLogger(__name__)

#: ``by`` value that groups images by their sample's name (not a metadata field).
SAMPLE: Final = "sample"
#: The group of images without a sample or without a value of the metadata field.
NO_GROUP: Final = "(none)"
#: The ``class`` of the CSV rows counting the images that have neither label nor prediction.
UNCLASSIFIED: Final = "(unclassified)"
#: Header of the CSV that :func:`write_abundance` writes.
CSV_COLUMNS: Final = ("group", "class", "confirmed", "predicted", "total")

_YIELD_PER: Final = 10_000
_NAME_CHARS: Final = 40
_UNCLASSIFIED_COLOUR: Final = "0.85"


@dataclass(frozen=True, slots=True)
class AbundanceRow:
    """The images of one class in one group.

    Attributes:
        group: The sample name or metadata value (:data:`NO_GROUP` for none).
        class_name: The class path, rolled up to the table's depth.
        confirmed: Images counted by their confirmed label.
        predicted: Images without a label, counted by the model's prediction.
    """

    group: str
    class_name: str
    confirmed: int
    predicted: int

    @property
    def total(self) -> int:
        """``confirmed + predicted``."""
        return self.confirmed + self.predicted


@dataclass(frozen=True)
class AbundanceTable:
    """Images per class per group, split into confirmed and predicted counts.

    Attributes:
        by: What the images are grouped by: ``"sample"`` or a metadata field.
        model_version: The model version whose predictions fill in unlabelled images, or
            None when the project has no model (confirmed labels only).
        depth: The class depth labels and predictions were rolled up to (None: deepest).
        groups: Every group that has images, in :func:`group_sort_key` order.
        classes: Every class counted in any group, sorted.
        rows: One row per group and class with at least one image, by group then class.
        unclassified: For every group, the images with neither a label nor a prediction.
    """

    by: str
    model_version: int | None
    depth: int | None
    groups: tuple[str, ...]
    classes: tuple[str, ...]
    rows: tuple[AbundanceRow, ...]
    unclassified: Mapping[str, int] = field(default_factory=dict)

    def total(self, group: str, class_name: str) -> int:
        """Images of ``class_name`` in ``group`` (0 when there are none)."""
        for row in self.rows:
            if row.group == group and row.class_name == class_name:
                return row.total
        return 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: ``by``, ``model_version``, ``depth``, ``groups``, ``unclassified``.

        ``groups`` maps each group to ``{class: {"confirmed", "predicted", "total"}}`` (empty
        for a group whose images are all unclassified); ``unclassified`` maps every group to
        its count.
        """
        groups: dict[str, dict[str, dict[str, int]]] = {group: {} for group in self.groups}
        for row in self.rows:
            groups[row.group][row.class_name] = {
                "confirmed": row.confirmed,
                "predicted": row.predicted,
                "total": row.total,
            }
        return {
            "by": self.by,
            "model_version": self.model_version,
            "depth": self.depth,
            "groups": groups,
            "unclassified": {group: self.unclassified.get(group, 0) for group in self.groups},
        }


def group_sort_key(group: str) -> tuple[int, tuple[tuple[int, int, str], ...], str]:
    """Sort key of a group: natural order (``"st2"`` before ``"st10"``), :data:`NO_GROUP` last."""
    parts = tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part.casefold())
        for part in re.split(r"([0-9]+)", group)
        if part
    )
    return (1 if group == NO_GROUP else 0, parts, group)


def default_csv_path(project: Project, by: str) -> Path:
    """``<project>/reports/abundance-<by>.csv``, with ``by`` made safe as a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", by).strip("._") or "field"
    return project.root / "reports" / f"abundance-{safe}.csv"


# --------------------------------------------------------------------------- counting


@dataclass(frozen=True)
class ModelInfo:
    """The model whose predictions are counted: its version and training depth."""

    version: int
    depth: int | None = None


def abundance_table(
    project: Project,
    by: str,
    *,
    model: ModelInfo | None = None,
    depth: int | None = None,
) -> AbundanceTable:
    """Count the project's images per class per group.

    Args:
        project: An open project.
        by: ``"sample"`` to group by sample name, or a metadata field (a key of
            ``Image.meta``; a field literally named ``sample`` cannot be chosen).
        model: The model whose stored predictions count the unlabelled images (the
            caller resolves it from the registry); None counts confirmed labels only.
        depth: Roll classes up to this taxonomy depth (1 = root). None: the depth the model
            was trained at, else the project's ``[labels] depth``, else the deepest level.

    Returns:
        The counts.

    Raises:
        ConfigError: ``by`` is empty; no image has a sample or a value of the field (the
            message lists the metadata keys present); the model is not a classifier; or
            there is nothing to count (no labels and no predictions).
        LabelError: ``depth`` is below 1.
    """
    if not by or by != by.strip():
        raise ConfigError(
            f"--by must be 'sample' or a metadata field without surrounding spaces; got {by!r}"
        )
    registered = model
    trained = registered.depth if registered is not None else None
    model_depth = trained if trained is not None else project.config.labels.depth
    if depth is None:
        depth = model_depth
    elif registered is not None and model_depth is not None and depth > model_depth:
        logger.warning(
            "model version %d predicts classes at depth %d; confirmed labels are counted at "
            "depth %d, predictions stay at depth %d",
            registered.version,
            model_depth,
            depth,
            model_depth,
        )
    with project.catalog.reader() as session:
        groups = _groups(session, by)
        confirmed = {
            image_id: roll_up(path, depth)
            for image_id, path in current_class_paths(session).items()
        }
        version = registered.version if registered is not None else None
        predicted = (
            {i: roll_up(name, depth) for i, name in _predicted(session, version).items()}
            if version is not None
            else {}
        )
    if not confirmed and not predicted:
        if version is None:
            hint = f"label images, or train a model (`lensloop train {project.root}`)"
        else:
            hint = f"label images, or run `lensloop predict {project.root}`"
        raise ConfigError(
            f"nothing to count: no image has a confirmed label"
            f"{'' if version is None else f' or a prediction of model version {version}'}; "
            f"{hint}"
        )
    table = _count(groups, confirmed, predicted, by=by, model_version=version, depth=depth)
    logger.info(
        "abundance by %s: %d groups, %d classes, model version %s",
        by,
        len(table.groups),
        len(table.classes),
        version,
    )
    return table


def _groups(session: Session, by: str) -> dict[int, str]:
    """``{image_id: group}`` for every image; raises when no image has a group."""
    groups: dict[int, str] = {}
    found = False
    seen_keys: set[str] = set()
    if by == SAMPLE:
        rows = session.execute(
            select(Image.id, Sample.name).outerjoin(Sample, Sample.id == Image.sample_id)
        ).yield_per(_YIELD_PER)
        for image_id, name in rows:
            found = found or name is not None
            groups[image_id] = name if name is not None else NO_GROUP
    else:
        for image_id, meta in session.execute(select(Image.id, Image.meta)).yield_per(_YIELD_PER):
            meta = meta or {}
            seen_keys.update(meta)
            text = metadata_text(meta.get(by))
            found = found or text is not None
            groups[image_id] = text if text is not None else NO_GROUP
    if not groups:
        raise ConfigError("the project has no images; add some with `lensloop ingest`")
    if not found:
        keys = ", ".join(sorted(seen_keys)[:30]) or "none"
        what = "belongs to a sample" if by == SAMPLE else f"has a value for {by!r}"
        raise ConfigError(
            f"no image {what}; group by 'sample' or a metadata field (metadata keys "
            f"present: {keys})"
        )
    return groups


def _predicted(session: Session, version: int) -> dict[int, str]:
    """``{image_id: class}`` of the model version's predictions (the latest per image)."""
    version_id = session.scalar(select(ModelVersion.id).where(ModelVersion.version == version))
    if version_id is None:  # pragma: no cover - resolve_model found it a moment ago
        return {}
    found: dict[int, str] = {}
    rows = session.execute(
        select(Prediction.image_id, Prediction.payload, Prediction.probabilities)
        .where(Prediction.model_version_id == version_id)
        .order_by(Prediction.id)
    ).yield_per(_YIELD_PER)
    for image_id, payload, probabilities in rows:
        name = _predicted_class(payload, probabilities)
        if name is not None:
            found[image_id] = name
    return found


def _predicted_class(payload: object, probabilities: object) -> str | None:
    if isinstance(payload, Mapping):
        name = payload.get("class")
        if isinstance(name, str) and name:
            return name
    if isinstance(probabilities, Mapping) and probabilities:
        best = max(probabilities.items(), key=lambda item: float(item[1]))
        return str(best[0])
    return None


def _count(
    groups: Mapping[int, str],
    confirmed: Mapping[int, str],
    predicted: Mapping[int, str],
    *,
    by: str,
    model_version: int | None,
    depth: int | None,
) -> AbundanceTable:
    by_confirmed: Counter[tuple[str, str]] = Counter()
    by_predicted: Counter[tuple[str, str]] = Counter()
    unclassified: Counter[str] = Counter()
    for image_id, group in groups.items():
        label = confirmed.get(image_id)
        if label is not None:
            by_confirmed[group, label] += 1
            continue
        guess = predicted.get(image_id)
        if guess is not None:
            by_predicted[group, guess] += 1
        else:
            unclassified[group] += 1
    ordered_groups = tuple(sorted(set(groups.values()), key=group_sort_key))
    position = {group: k for k, group in enumerate(ordered_groups)}
    keys = sorted(set(by_confirmed) | set(by_predicted), key=lambda gc: (position[gc[0]], gc[1]))
    rows = tuple(
        AbundanceRow(g, c, confirmed=by_confirmed[g, c], predicted=by_predicted[g, c])
        for g, c in keys
    )
    return AbundanceTable(
        by=by,
        model_version=model_version,
        depth=depth,
        groups=ordered_groups,
        classes=tuple(sorted({c for _, c in keys})),
        rows=rows,
        unclassified={group: unclassified[group] for group in ordered_groups},
    )


# --------------------------------------------------------------------------- writing


def write_abundance(
    table: AbundanceTable, csv_path: Path, *, plot: bool = True
) -> tuple[Path, Path | None]:
    """Write the table as a CSV and, beside it, a stacked bar chart PNG (same stem).

    The chart stacks each group's total per class (unclassified images in grey on top),
    groups along x in the table's order.

    The CSV is long-format with the header :data:`CSV_COLUMNS`: one row per group and
    class, then per group with unclassified images a row of class :data:`UNCLASSIFIED`
    (confirmed and predicted 0, total the count). Both files are written atomically, the
    figure drawn first, so a failure leaves any earlier report whole. Missing folders are
    created.

    Args:
        table: From :func:`abundance_table`.
        csv_path: Where the CSV goes; must end in ``.csv``.
        plot: Also draw the PNG (needs matplotlib).

    Returns:
        ``(csv_path, png_path)``; ``png_path`` is None when ``plot`` is False.

    Raises:
        ConfigError: ``csv_path`` does not end in ``.csv``, or ``plot`` is True and
            matplotlib is not installed.
        OSError: The folder cannot be created or written.
    """
    from lensloop.imaging import atomic_write

    csv_path = Path(csv_path)
    if csv_path.suffix.lower() != ".csv":
        raise ConfigError(f"the abundance report must be a .csv file; got {csv_path}")
    png_path = csv_path.with_suffix(".png") if plot else None
    png = _draw(table) if plot else None
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(csv_path, _csv_bytes(table), overwrite=True)
    if png_path is not None and png is not None:
        atomic_write(png_path, png, overwrite=True)
    logger.info("wrote %s%s", csv_path, f" and {png_path}" if png_path else "")
    return csv_path, png_path


def _csv_bytes(table: AbundanceTable) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = iter(table.rows)
    pending = next(rows, None)
    for group in table.groups:
        while pending is not None and pending.group == group:
            writer.writerow(
                [group, pending.class_name, pending.confirmed, pending.predicted, pending.total]
            )
            pending = next(rows, None)
        count = table.unclassified.get(group, 0)
        if count:
            writer.writerow([group, UNCLASSIFIED, 0, 0, count])
    return buffer.getvalue().encode("utf-8")


def _shorten(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](k) for k in range(n)]
    if n <= 20:
        return [colormaps["tab20"](k) for k in range(n)]
    cmap = colormaps["turbo"]
    return [cmap(0.05 + 0.9 * k / (n - 1)) for k in range(n)]


def _draw(table: AbundanceTable) -> bytes:
    """The stacked bar chart as PNG bytes: totals per class (and unclassified) per group."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(
            "drawing the abundance chart needs matplotlib: pip install 'lensloop[embed]' "
            "(or pip install matplotlib), or skip the chart with --no-plot"
        ) from exc

    n_groups = len(table.groups)
    n_classes = len(table.classes)
    has_unclassified = any(table.unclassified.values())
    legend_entries = n_classes + (1 if has_unclassified else 0)
    legend_columns = max(1, math.ceil(legend_entries / 30))
    rotation = 0 if n_groups <= 6 else (45 if n_groups <= 20 else 90)
    longest = max(len(_shorten(group)) for group in table.groups)
    label_in = 0.3 if rotation == 0 else longest * 0.075 * (0.75 if rotation == 45 else 1.0)
    per_group_in = 0.3 if n_groups <= 40 else 0.18
    plot_in = min(max(4.0, per_group_in * n_groups + 1.0), 24.0)
    name_chars = min(max(map(len, table.classes), default=10), _NAME_CHARS)
    legend_in = legend_columns * (name_chars * 0.07 + 0.6)
    figure = Figure(
        figsize=(plot_in + legend_in + 1.0, (4.5 if n_groups <= 40 else 6.0) + label_in),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()

    x = list(range(n_groups))
    bottom = [0] * n_groups
    segments: list[tuple[str, list[int], Any]] = [
        (_shorten(name), [table.total(g, name) for g in table.groups], colour)
        for name, colour in zip(table.classes, _colours(n_classes), strict=True)
    ]
    if has_unclassified:
        unclassified = [table.unclassified.get(g, 0) for g in table.groups]
        segments.append((UNCLASSIFIED, unclassified, _UNCLASSIFIED_COLOUR))
    for label, heights, colour in segments:
        ax.bar(x, heights, bottom=bottom, label=label, color=colour, width=0.8, linewidth=0)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]

    ax.set_xticks(
        x,
        labels=[_shorten(group) for group in table.groups],
        rotation=rotation,
        ha="center" if rotation in (0, 90) else "right",
        rotation_mode="anchor" if rotation == 45 else "default",
        fontsize=9 if n_groups <= 40 else 7,
    )
    ax.set_xlim(-0.6, n_groups - 0.4)
    ax.set_xlabel(table.by)
    ax.set_ylabel("images")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    source = (
        f"model version {table.model_version}"
        if table.model_version is not None
        else "confirmed labels only (no model)"
    )
    depth = f", depth {table.depth}" if table.depth is not None else ""
    ax.set_title(f"abundance by {table.by}: {source}{depth}")
    # Legend top to bottom in the stacking order's reverse, so it reads like the bars.
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1],
        labels[::-1],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        ncols=legend_columns,
        frameon=False,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
