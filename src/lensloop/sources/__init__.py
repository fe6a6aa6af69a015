"""Where images come from: local files and folders (ImageFolder layouts) and metadata CSVs.

Each source format is a discovery function registered in :data:`SOURCE_FORMATS`.
"""

from lensloop.sources.base import (
    IMAGE_SUFFIXES,
    SOURCE_FORMATS,
    Discovery,
    SourceItem,
    get_source_format,
    list_source_formats,
    read_bytes,
)
from lensloop.sources.folder import discover_files
from lensloop.sources.metadata import MetadataRow, MetadataTable, load_metadata_csv

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCE_FORMATS",
    "Discovery",
    "MetadataRow",
    "MetadataTable",
    "SourceItem",
    "discover_files",
    "get_source_format",
    "list_source_formats",
    "load_metadata_csv",
    "read_bytes",
]
