"""``offload.__all__`` is the public API: sorted, complete, and every name in it exists."""

from __future__ import annotations

import importlib
import inspect

import offload

TOP_LEVEL_MODULES = ["app", "config", "context", "errors", "jobs"]
"""Modules whose public classes and functions users need; the rest are internals
(states, retry, registry, ids, loader, cli, demo) or have their own namespace (store)."""

INTERNAL = {"redact_url", "TERMINAL"}
"""Public-looking names in those modules that are deliberately not exported."""


def test_all_is_sorted_and_has_no_duplicates():
    assert offload.__all__ == sorted(offload.__all__)
    assert len(offload.__all__) == len(set(offload.__all__))


def test_every_name_in_all_exists():
    missing = [name for name in offload.__all__ if not hasattr(offload, name)]

    assert missing == []


def test_the_names_users_need_are_exported():
    required = {"Offload", "Context", "Job", "JobStatus", "PermanentError", "Retry", "Worker"}

    assert required <= set(offload.__all__)


def test_every_public_class_and_function_of_the_top_level_modules_is_exported():
    missing = []
    for module_name in TOP_LEVEL_MODULES:
        module = importlib.import_module(f"offload.{module_name}")
        for name, member in vars(module).items():
            if name.startswith("_") or name in INTERNAL:
                continue
            if not (inspect.isclass(member) or inspect.isfunction(member)):
                continue
            if member.__module__ != module.__name__:
                continue  # imported from elsewhere
            if name not in offload.__all__:
                missing.append(f"offload.{module_name}.{name}")

    assert missing == []


def test_every_offload_error_is_exported():
    errors = importlib.import_module("offload.errors")
    classes = [
        name
        for name, member in vars(errors).items()
        if inspect.isclass(member) and issubclass(member, offload.OffloadError)
    ]

    assert set(classes) <= set(offload.__all__)


def test_exported_names_are_the_objects_of_their_home_modules():
    from offload.app import Offload
    from offload.worker import Worker

    assert offload.Offload is Offload
    assert offload.Worker is Worker
