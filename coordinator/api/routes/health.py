"""GET /health: liveness plus the facts a client checks before signing (chain id)."""
from fastapi import APIRouter
from sqlalchemy import text

from coordinator.api.deps import ContextDep, RedisDep, SessionDep
from protocol.wire import HealthView

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthView)
def health(ctx: ContextDep, session: SessionDep, r: RedisDep) -> HealthView:
    session.execute(text("SELECT 1"))
    r.ping()
    return HealthView(status="ok", db_revision=ctx.db_revision, chain_id=ctx.gateway.chain_id)
