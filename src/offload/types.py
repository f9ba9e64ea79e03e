"""Type aliases shared across offload; nothing here has behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

JSON: TypeAlias = Any
"""A value that ``json.dumps`` accepts: dict, list, str, int, float, bool or None."""

Handler: TypeAlias = Callable[..., Any] | Callable[..., Awaitable[Any]]
"""``handler(ctx, input)``, a plain or an ``async`` function."""
