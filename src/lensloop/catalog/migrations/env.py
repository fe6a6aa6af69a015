"""Alembic environment: migrations run on the connection lensloop hands over.

lensloop runs Alembic programmatically (see ``lensloop.catalog.engine``), passing an open
connection in ``config.attributes["connection"]``; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

from lensloop.catalog.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by lensloop.catalog.engine
    raise RuntimeError("lensloop migrations must be run through lensloop.catalog.engine.upgrade")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
