"""The catalog: images, samples, labels, predictions, embeddings, rounds and models.

SQLite (WAL mode) is the embedded default and PostgreSQL is chosen by URL; the schema is
migrated with Alembic. This layer never imports torch or any other heavy library.
"""

from lensloop.catalog.catalog import Catalog
from lensloop.catalog.images import NewImage
from lensloop.catalog.labels import ClassInfo, join_path, roll_up, split_path
from lensloop.catalog.models import ANNOTATION_KINDS, SPLITS

__all__ = [
    "ANNOTATION_KINDS",
    "SPLITS",
    "Catalog",
    "ClassInfo",
    "NewImage",
    "join_path",
    "roll_up",
    "split_path",
]
