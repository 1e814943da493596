"""Coordinator service: scheduler (Redis leases), result intake, blob store, HTTP API.

Layout (FastAPI full-stack template): `core/` (settings, database, Redis), `models.py`
(SQLAlchemy ORM) apart from the wire schemas (`protocol/wire.py`), `crud.py` (keyword-only
data access returning None for "not found"), services (`blobs`, `leases`, `guards`,
`events`, `chain`, `intake`, `scheduler`), `api/` (thin routes and `Annotated` deps).
See docs/coordinator.md.
"""


class CoordinatorError(Exception):
    """Base class of every error raised by the coordinator package."""
