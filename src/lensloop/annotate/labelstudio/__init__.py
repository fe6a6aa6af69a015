"""Label Studio: results <-> pixel payloads, exports, tasks, import and live sync."""

from lensloop.annotate.labelstudio.exports import ExportedAnnotation, parse_export, read_export
from lensloop.annotate.labelstudio.importer import ImportReport, import_annotations
from lensloop.annotate.labelstudio.results import ImageSize, parse_results, results_from_payload
from lensloop.annotate.labelstudio.tasks import (
    ImageUrls,
    PreAnnotation,
    build_task,
    images_to_label,
)

__all__ = [
    "ExportedAnnotation",
    "ImageSize",
    "ImageUrls",
    "ImportReport",
    "PreAnnotation",
    "build_task",
    "images_to_label",
    "import_annotations",
    "parse_export",
    "parse_results",
    "read_export",
    "results_from_payload",
]
