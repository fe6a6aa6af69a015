"""The project's label schema, and the Label Studio labelling config made from it.

The schema is the project's task plus its classes: every class path the catalog knows,
rolled up to the project's depth (``[labels] depth``), in sorted order. Label Studio
shows those paths as the labels to choose, so what comes back is a path the catalog
knows, with no mapping table to keep in step.

Each task gets the Label Studio control tags that label it:

========== ==================================================================
task       controls (``name`` attribute)
========== ==================================================================
classify   ``Choices`` (``class``)
count      ``KeyPointLabels`` (``points``) and ``Choices`` (``status``: how
           completely the image was annotated: empty, sparse, full)
segment    ``BrushLabels`` (``mask``) and ``PolygonLabels`` (``polygon``)
========== ==================================================================

``RectangleLabels`` (``box``) can be added to any config, for projects whose boxes come
from another tool. Example::

    xml = label_config(LabelSchema(task="count", labels=("cell",)))
    xml = label_config(schema, tools=("keypoints", "rectangle"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from lensloop.catalog.labels import list_classes, roll_up
from lensloop.errors import ConfigError, LabelError, UnknownNameError

if TYPE_CHECKING:
    from lensloop.project import Project
    from lensloop.project.config import Task

__all__ = [
    "COUNT_STATUSES",
    "IMAGE_NAME",
    "TOOLS",
    "LabelSchema",
    "label_config",
    "project_schema",
    "tools_for_task",
]

#: ``name`` of the Image tag, and the task data key holding the image URL.
IMAGE_NAME = "image"
#: Values of the count task's ``status`` choices (``conflict`` is inferred, not chosen).
COUNT_STATUSES = ("empty", "sparse", "full")

#: Label Studio control tag and ``name`` for each tool lensloop can put in a config.
TOOLS: dict[str, tuple[str, str]] = {
    "choices": ("Choices", "class"),
    "keypoints": ("KeyPointLabels", "points"),
    "brush": ("BrushLabels", "mask"),
    "polygon": ("PolygonLabels", "polygon"),
    "rectangle": ("RectangleLabels", "box"),
}

_TASK_TOOLS: dict[str, tuple[str, ...]] = {
    "classify": ("choices",),
    "count": ("keypoints",),
    "segment": ("brush", "polygon"),
}

# Distinct colours (Okabe-Ito, then a few more) so neighbouring labels are told apart.
_PALETTE = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#999999",
    "#8C564B",
    "#17BECF",
)


@dataclass(frozen=True)
class LabelSchema:
    """A task and its labels (class paths at the project's depth, sorted)."""

    task: Task
    labels: tuple[str, ...]

    def check_label(self, label: str, *, where: str) -> None:
        """Raise unless ``label`` is one of the schema's labels.

        Args:
            label: The label received.
            where: Which record it came from, for the message (``"task 3, annotation 9"``).

        Raises:
            LabelError: The label is not in the schema; the message lists the schema's.
        """
        if label not in self.labels:
            raise LabelError(
                f"{where}: label {label!r} is not in the project's label schema "
                f"({', '.join(self.labels) or 'no labels yet'}); fix the label in Label "
                "Studio, or add the class to the project and regenerate the config"
            )


def tools_for_task(task: str) -> tuple[str, ...]:
    """Return the tools (keys of :data:`TOOLS`) a task labels with."""
    try:
        return _TASK_TOOLS[task]
    except KeyError:
        raise UnknownNameError("task", task, tuple(_TASK_TOOLS)) from None


def project_schema(project: Project) -> LabelSchema:
    """Return the project's label schema: its task and the catalog's classes at its depth.

    Raises:
        ConfigError: The project has no classes yet.
    """
    depth = project.config.labels.depth
    with project.catalog.reader() as session:
        paths = {roll_up(info.path, depth) for info in list_classes(session)}
    if depth is None:
        # Without a depth, the classes are the leaves: a parent is not a label of its own.
        parents = {path.rsplit("/", 1)[0] for path in paths if "/" in path}
        paths -= parents
    if not paths:
        raise ConfigError(
            f"project {project.root} has no classes to label with; declare them with "
            "`lensloop init DIR --classes a,b` or ingest a folder of labelled images first"
        )
    return LabelSchema(task=project.task, labels=tuple(sorted(paths)))


def label_config(schema: LabelSchema, *, tools: Sequence[str] | None = None) -> str:
    """Return a Label Studio labelling config (XML) for ``schema``.

    Args:
        schema: The task and labels.
        tools: Keys of :data:`TOOLS`; default the task's (see the module docstring).

    Raises:
        UnknownNameError: A tool is unknown.
        LabelError: The schema has no labels.
    """
    if not schema.labels:
        raise LabelError("a labelling config needs at least one label")
    chosen = tuple(tools) if tools is not None else tools_for_task(schema.task)
    view = ElementTree.Element("View")
    ElementTree.SubElement(
        view,
        "Image",
        name=IMAGE_NAME,
        value=f"${IMAGE_NAME}",
        zoom="true",
        zoomControl="true",
    )
    for tool in chosen:
        if tool not in TOOLS:
            raise UnknownNameError("Label Studio tool", tool, tuple(TOOLS))
        tag, name = TOOLS[tool]
        if tool == "choices":
            control = ElementTree.SubElement(
                view,
                tag,
                name=name,
                toName=IMAGE_NAME,
                choice="single-radio",
                showInline="true",
                required="true",
            )
            for label in schema.labels:
                ElementTree.SubElement(control, "Choice", value=label)
            continue
        control = ElementTree.SubElement(view, tag, name=name, toName=IMAGE_NAME)
        if tool == "keypoints":
            control.set("smart", "false")
        for index, label in enumerate(schema.labels):
            ElementTree.SubElement(
                control, "Label", value=label, background=_PALETTE[index % len(_PALETTE)]
            )
    if "keypoints" in chosen:
        status = ElementTree.SubElement(
            view, "Choices", name="status", toName=IMAGE_NAME, choice="single", showInline="true"
        )
        for value in COUNT_STATUSES:
            ElementTree.SubElement(status, "Choice", value=value)
    ElementTree.indent(view)
    return ElementTree.tostring(view, encoding="unicode")
