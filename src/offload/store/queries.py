"""SQL lives in ``sql/<dialect>/queries.sql`` under ``-- name: query_name`` headers, with the
same names in every dialect. ``{claimable}``-style placeholders are filled from
:mod:`offload.states`, so the state machine is written down once."""

from __future__ import annotations

import re
from importlib import resources

from .. import states

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)

_STATE_SETS = {
    "claimable": states.sql_list(states.CLAIMABLE),
    "waiting_cancelable": states.sql_list(states.WAITING_CANCELABLE),
    "promotable": states.sql_list(states.PROMOTABLE),
    "replayable": states.sql_list(states.REPLAYABLE),
    "terminal": states.sql_list(
        frozenset(states.S(s) for s in ("succeeded", "failed", "canceled"))
    ),
}


def load_queries(dialect: str, file: str = "queries.sql") -> dict[str, str]:
    text = resources.files(__package__).joinpath("sql", dialect, file).read_text()
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        queries[name] = body.strip().format(**_STATE_SETS)
    return queries


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``[(version, sql), …]`` sorted; files are named ``NNNN_description.sql``."""
    folder = resources.files(__package__).joinpath("sql", dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)
