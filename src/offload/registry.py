"""Job types: the ``@app.job`` decorator and what it records about each handler."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import InvalidInput, UnknownJobType
from .types import JSON, Handler


@dataclass(frozen=True, slots=True)
class JobSpec:
    """How one job type runs. Set with ``@app.job(name, …)``."""

    name: str
    handler: Handler
    model: type[BaseModel]
    queue: str = "default"
    max_attempts: int = 3
    timeout: float | None = None
    priority: int = 0
    """Higher runs first."""
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    is_async: bool = field(init=False)
    """True for ``async def`` handlers (run on the worker's loop), False for plain ones (run in
    a thread)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.handler))

    def validate(self, value: Any) -> BaseModel:
        """The input parsed by the handler's model, or :class:`InvalidInput` listing each field."""
        if isinstance(value, self.model):
            return value
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        try:
            return self.model.model_validate(value)
        except ValidationError as exc:
            raise InvalidInput(self.name, field_errors(exc)) from None

    def dump(self, value: Any) -> JSON:
        """The validated input as plain JSON, the form it is stored in."""
        return self.validate(value).model_dump(mode="json")

    def dump_many(self, values: list[Any]) -> list[JSON]:
        """Validate and dump a whole batch in one pass through pydantic's core; an error names
        the item by its index (``3.year``)."""
        adapter = _list_adapter(self.model)
        try:
            return adapter.dump_python(adapter.validate_python(values), mode="json")
        except ValidationError as exc:
            raise InvalidInput(self.name, field_errors(exc)) from None


@functools.cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[BaseModel]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False)
    ]


class Registry:
    """The job types an :class:`~offload.Offload` app knows, by name."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def add(self, spec: JobSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"job type {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> JobSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownJobType(name, list(self._specs)) from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[JobSpec]:
        return [self._specs[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)


def input_model_of(handler: Callable[..., Any]) -> type[BaseModel]:
    """The Pydantic model of the handler's second parameter (``handler(ctx, input: Model)``)."""
    params = list(inspect.signature(handler).parameters.values())
    if len(params) != 2:
        raise TypeError(
            f"{handler.__qualname__} must take exactly (ctx, input); it takes {len(params)} "
            "parameters"
        )
    try:
        hints = typing.get_type_hints(handler)
    except NameError as exc:
        raise TypeError(
            f"{handler.__qualname__}: cannot resolve the input annotation ({exc}); define the "
            "pydantic model at module level"
        ) from None
    model = hints.get(params[1].name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(
            f"{handler.__qualname__}: annotate the input parameter with a pydantic BaseModel "
            f"(got {model!r})"
        )
    return model
