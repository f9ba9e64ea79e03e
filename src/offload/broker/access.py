"""Credential isolation: a *publisher* identity for the API and a *consumer* identity for
workers, each allowed only what its side does (``offload broker setup``).

- **publisher** (API processes): publish job messages, nothing else. It can neither read nor
  acknowledge messages, nor create or delete queues, nor touch names outside the prefix.
- **consumer** (worker processes): declare and read its queues, acknowledge, take over the
  messages of dead workers, and publish too, because workers also publish: the outbox relay
  and the reconciler run in them, and so do promotion of due jobs and the reaper. Still
  nothing outside the prefix and no administration (users, other vhosts, FLUSHALL, CONFIG).

RabbitMQ: users with configure/write/read permission regexes on one vhost, made with
``rabbitmqctl`` on the broker's host (the management plugin is optional and often off).
Redis: ACL users limited to the prefix's keys and to the commands each side sends.

Passwords are generated here and shown once; nothing is stored.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..errors import OffloadError

Role = Literal["publisher", "consumer"]
ROLES: tuple[Role, ...] = ("publisher", "consumer")


class AccessSetupError(OffloadError):
    """Creating the broker identities failed; the message says what the broker answered."""

    code = "broker_setup_failed"


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    username: str
    password: str
    url: str
    """``OFFLOAD_BROKER_URL`` for that side, password included."""


def new_password() -> str:
    return secrets.token_urlsafe(24)


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with this user name and password in it (both percent-encoded)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


# -- RabbitMQ ----------------------------------------------------------------------------------


def rabbitmq_permissions(prefix: str) -> dict[Role, tuple[str, str, str]]:
    """(configure, write, read) regexes per role, over the names of
    :class:`offload.broker.rabbitmq.Names`. The publisher only writes to the jobs exchange
    (it finds the exchange with a passive declare, which needs no permission); the consumer
    declares, binds, reads and publishes within the prefix."""
    p = re.escape(prefix)
    ours = rf"^{p}\.(jobs|dead|q\..+)$"
    return {
        "publisher": ("^$", rf"^{p}\.jobs$", "^$"),
        "consumer": (ours, ours, ours),
    }


class RabbitMQCtl:
    """``rabbitmqctl`` on the broker's host (run as root or the rabbitmq user)."""

    def __init__(self, command: Sequence[str] = ("rabbitmqctl",), node: str | None = None):
        self.command = list(command)
        self.node = node

    def available(self) -> bool:
        return shutil.which(self.command[0]) is not None

    def run(self, *args: str, stdin: str | None = None) -> str:
        node = ["-n", self.node] if self.node else []
        try:
            done = subprocess.run(
                [*self.command, *node, "-q", *args],
                input=stdin.encode() if stdin is not None else None,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AccessSetupError(f"rabbitmqctl {args[0]} failed: {exc}") from None
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise AccessSetupError(
                f"rabbitmqctl {args[0]} failed: {reason[-1] if reason else done.returncode}"
            )
        return done.stdout.decode(errors="replace")

    def users(self) -> set[str]:
        listing = self.run("list_users", "--no-table-headers")
        return {line.split("\t")[0] for line in listing.splitlines() if line}


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


async def setup_rabbitmq(
    url: str,
    *,
    prefix: str,
    usernames: dict[Role, str],
    ctl: RabbitMQCtl | None = None,
) -> list[Identity]:
    """Create (or reset the password and permissions of) the two users on the vhost of
    ``url``, creating the vhost if needed; then declare the topology as the consumer, so the
    publisher finds its exchange. Returns both identities with their URLs."""
    from .rabbitmq import RabbitBroker

    ctl = ctl or RabbitMQCtl()
    vhost = _vhost(url)
    ctl.run("add_vhost", vhost)  # a no-op when it exists
    existing = ctl.users()
    identities = []
    for role, (configure, write, read) in rabbitmq_permissions(prefix).items():
        name, password = usernames[role], new_password()
        # The password goes through stdin, never the command line (ps would show it).
        if name in existing:
            ctl.run("change_password", name, stdin=password + "\n")
        else:
            ctl.run("add_user", name, stdin=password + "\n")
        ctl.run("set_permissions", "-p", vhost, name, configure, write, read)
        identities.append(Identity(role, name, password, with_credentials(url, name, password)))
    consumer = next(i for i in identities if i.role == "consumer")
    broker = RabbitBroker(consumer.url, prefix=prefix)
    await broker.connect()
    try:
        await broker.check("consume")
    finally:
        await broker.close()
    return identities


def delete_rabbitmq(usernames: Sequence[str], *, ctl: RabbitMQCtl | None = None) -> None:
    ctl = ctl or RabbitMQCtl()
    existing = ctl.users()
    for name in dict.fromkeys(usernames):
        if name in existing:
            ctl.run("delete_user", name)


# -- Redis -------------------------------------------------------------------------------------

REDIS_COMMANDS: dict[Role, tuple[str, ...]] = {
    "publisher": ("ping", "select", "xadd", "sadd", "xlen"),
    "consumer": (
        "ping",
        "select",
        "xadd",
        "sadd",
        "xlen",
        "smembers",
        "xreadgroup",
        "xack",
        "xdel",
        "xautoclaim",
        "xgroup|create",
    ),
}
"""What each side of :class:`offload.broker.redis.RedisBroker` sends (kept in step with it by
tests/broker/test_access.py, which runs the broker under these users)."""


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def redis_acl_rules(prefix: str, role: Role, password: str) -> list[str]:
    """``ACL SETUSER`` rules: start from nothing, then the prefix's keys and the role's
    commands only (no pub/sub channels)."""
    return [
        "reset",
        "on",
        f">{password}",
        f"~{_glob_escape(prefix)}:*",
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in REDIS_COMMANDS[role]),
    ]


async def setup_redis(url: str, *, prefix: str, usernames: dict[Role, str]) -> list[Identity]:
    """Create (or reset) the two ACL users through the admin connection ``url``."""
    import redis.asyncio as aredis
    from redis.exceptions import RedisError

    if "default" in usernames.values():
        raise AccessSetupError("the Redis 'default' user is never changed; pick another name")
    client = aredis.Redis.from_url(url, socket_connect_timeout=5)
    identities = []
    try:
        for role in ROLES:
            name, password = usernames[role], new_password()
            await client.execute_command(
                "ACL", "SETUSER", name, *redis_acl_rules(prefix, role, password)
            )
            identities.append(Identity(role, name, password, with_credentials(url, name, password)))
    except (RedisError, OSError) as exc:
        raise AccessSetupError(f"Redis refused ACL SETUSER: {exc}") from None
    finally:
        await client.aclose()
    return identities


async def delete_redis(url: str, usernames: Sequence[str]) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        names = [n for n in usernames if n != "default"]
        if names:
            await client.execute_command("ACL", "DELUSER", *names)
    finally:
        await client.aclose()


async def setup(
    url: str,
    *,
    prefix: str,
    usernames: dict[Role, str] | None = None,
    ctl: RabbitMQCtl | None = None,
) -> list[Identity]:
    """``offload broker setup``: the two identities for the broker of ``url``."""
    usernames = usernames or {role: f"{prefix}-{role}" for role in ROLES}
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("amqp", "amqps"):
        return await setup_rabbitmq(url, prefix=prefix, usernames=usernames, ctl=ctl)
    if scheme in ("redis", "rediss"):
        return await setup_redis(url, prefix=prefix, usernames=usernames)
    raise AccessSetupError(
        f"offload broker setup needs an amqp:// or redis:// URL, not {scheme or url!r}"
    )


__all__ = [
    "REDIS_COMMANDS",
    "ROLES",
    "AccessSetupError",
    "Identity",
    "RabbitMQCtl",
    "delete_rabbitmq",
    "delete_redis",
    "rabbitmq_permissions",
    "redis_acl_rules",
    "setup",
    "setup_rabbitmq",
    "setup_redis",
    "with_credentials",
]
