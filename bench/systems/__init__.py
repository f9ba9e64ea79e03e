"""Registry of benchmarked systems: name -> module holding exactly one System subclass."""

from __future__ import annotations

import importlib
import inspect

from bench.systems.base import System

#: name -> module (order = report order). offload first, then peers, then raw references.
SYSTEMS: dict[str, str] = {
    "offload": "bench.systems.offload_sys",
    "offload-sqlite": "bench.systems.offload_sqlite_sys",
    "offload-redis": "bench.systems.offload_redis_sys",
    "offload-rabbitmq": "bench.systems.offload_rabbitmq_sys",
    "celery": "bench.systems.celery_sys",
    "dramatiq": "bench.systems.dramatiq_sys",
    "arq": "bench.systems.arq_sys",
    "rq": "bench.systems.rq_sys",
    "procrastinate": "bench.systems.procrastinate_sys",
    "raw_pg": "bench.systems.raw_pg",
    "raw_redis": "bench.systems.raw_redis",
    "raw_rabbitmq": "bench.systems.raw_rabbitmq",
    "raw_rabbitmq_p100": "bench.systems.raw_rabbitmq_p100",
}


def load_system(name: str) -> type[System]:
    """Import a system module and return its System subclass (ImportError etc. propagate)."""
    module = importlib.import_module(SYSTEMS[name])
    for obj in vars(module).values():
        if (
            inspect.isclass(obj)
            and issubclass(obj, System)
            and not inspect.isabstract(obj)
            and obj.__module__ == module.__name__
        ):
            return obj
    raise ImportError(f"{SYSTEMS[name]} defines no concrete System subclass")
