"""offload's HTTP API (FastAPI): ``create_app`` for ``offload serve``, ``create_router`` to
mount the routes in your own FastAPI app, ``create_key`` for API keys."""

from .app import create_app, create_router
from .auth import Principal, create_key
from .settings import ApiSettings

__all__ = ["ApiSettings", "Principal", "create_app", "create_key", "create_router"]
