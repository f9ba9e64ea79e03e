"""API keys: ``Authorization: Bearer <key>``, each key with a tenant and a role.

Keys are 256 random bits (``ofk_`` + 43 URL-safe characters) and only their SHA-256 is stored.
A fast hash is the right one here: slow password hashes (bcrypt, argon2) protect low-entropy
secrets that people choose; a 256-bit random key cannot be brute-forced through any hash, and a
plain SHA-256 lets the API find a key by an indexed lookup on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import ApiKey, Store
from ..store.base import ROLES
from .problems import Problem

KEY_PREFIX = "ofk_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, tenant and role."""

    key_id: str
    tenant: str
    role: str

    @property
    def actor(self) -> str:
        """How admin actions name this caller in a job's event log."""
        return f"key:{self.key_id}"

    @property
    def reads_all(self) -> bool:
        return self.role in ("viewer", "admin")

    @property
    def may_write(self) -> bool:
        return self.role in ("client", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees(self, owner: str) -> bool:
        return self.reads_all or owner == self.tenant


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(
    store: Store, tenant: str, role: str, name: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; return it and the secret, which is shown this once and never stored.

    >>> key, secret = await create_key(store, "acme", "client")
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not tenant or len(tenant) > 200:
        raise ValueError("tenant must be 1 to 200 characters")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = await store.key_insert(
        f"key_{secrets.token_hex(8)}", hash_key(secret), tenant, role, name
    )
    return key, secret


def unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="offload"'}
    )


class Authenticator:
    """Finds the principal of a bearer key; lookups are cached for ``cache_seconds``."""

    def __init__(
        self,
        store: Callable[[], object],
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._lookups: dict[str, asyncio.Task[Principal | None]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise unauthorized("send an API key as 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise unauthorized("send an API key as 'Authorization: Bearer <key>'")
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > self._clock():
            principal = cached[0]
        else:
            # Concurrent requests with one key share one lookup: when its cache entry ends,
            # a busy client's requests would otherwise all query the store at once.
            lookup = self._lookups.get(digest)
            if lookup is None:
                lookup = self._lookups[digest] = asyncio.ensure_future(self._lookup(digest))
            principal = await asyncio.shield(lookup)
        if principal is None:
            raise unauthorized("this API key is not valid (unknown or revoked)")
        return principal

    async def _lookup(self, digest: str) -> Principal | None:
        try:
            store: Store = await self._store()  # type: ignore[misc]
            found = await store.key_get_by_hash(digest)
        finally:
            del self._lookups[digest]
        principal = None
        if found is not None and found.active:
            principal = Principal(found.id, found.tenant, found.role)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, self._clock() + self._ttl)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from the cache so it stops working at once in this process."""
        for digest, (principal, _) in list(self._cache.items()):
            if principal is not None and principal.key_id == key_id:
                del self._cache[digest]
