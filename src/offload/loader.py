"""Find the user's :class:`~offload.Offload` from ``MODULE:ATTR`` (ATTR defaults to ``app``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import Offload


class AppNotFound(Exception):
    pass


def load_app(spec: str) -> Offload:
    from .app import Offload

    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:  # like uvicorn: the app's module is found from here
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppNotFound(
                f"cannot import module {module_name!r} (from --app {spec!r})"
            ) from None
        raise
    app = getattr(module, attr, None)
    if not isinstance(app, Offload):
        raise AppNotFound(
            f"{module_name}:{attr} is not an offload.Offload instance (got {type(app).__name__})"
        )
    return app
