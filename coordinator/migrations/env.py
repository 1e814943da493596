"""Alembic environment, driven programmatically by coordinator.core.db (no alembic.ini).

`coordinator.core.db.upgrade(engine)` passes an open connection in
`config.attributes["connection"]`; `alembic -c` style use is not supported.
"""
from __future__ import annotations

from alembic import context

from coordinator.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable when run outside coordinator.core.db
    raise RuntimeError("run migrations with `crowdtrain coordinator db upgrade` (coordinator.core.db.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
