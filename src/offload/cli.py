"""The ``offload`` command: parses, calls the library (or, with ``OFFLOAD_URL`` set, the HTTP
API through :mod:`offload.client`), prints. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import OffloadError
from .jobs import Job, JobStatus

T = TypeVar("T")

cli = typer.Typer(
    help="offload: turn slow API endpoints into reliable background jobs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
queues_cli = typer.Typer(help="Inspect, pause and resume queues.", no_args_is_help=True)
dlq_cli = typer.Typer(help="The dead-letter list: jobs that failed for good.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
broker_cli = typer.Typer(
    help="Broker identities (RabbitMQ, Redis) for the API and workers.", no_args_is_help=True
)
cli.add_typer(broker_cli, name="broker")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(queues_cli, name="queues")
cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(db_cli, name="db")
webhooks_cli = typer.Typer(
    help="Webhook endpoints and deliveries (admin, over the HTTP API: OFFLOAD_URL).",
    no_args_is_help=True,
)
cli.add_typer(webhooks_cli, name="webhooks")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error message stays one greppable line

AppOption = Annotated[
    str | None,
    typer.Option("--app", envvar="OFFLOAD_APP", help="MODULE:ATTR of your Offload app."),
]


def main() -> None:
    cli()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an offload error becomes one red line and exit code 1."""
    try:
        return asyncio.run(coro)
    except OffloadError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _app(spec: str | None) -> Any:
    from .app import Offload
    from .loader import AppNotFound, load_app

    if spec is None:
        return Offload()
    try:
        return load_app(spec)
    except AppNotFound as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _need_app(spec: str | None) -> Any:
    if spec is None:
        err.print("[red]error:[/red] this command needs --app MODULE:ATTR (or OFFLOAD_APP)")
        raise typer.Exit(2)
    return _app(spec)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _json(value: str, option: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise _fail(f"{option} is not valid JSON: {exc}", 2) from None


# -- over the HTTP API (OFFLOAD_URL) ---------------------------------------------------------


def _remote() -> Any | None:
    """A :class:`offload.client.Client` when ``OFFLOAD_URL`` is set, else None (the command
    then works on the store directly)."""
    url = os.environ.get("OFFLOAD_URL")
    if not url:
        return None
    key = os.environ.get("OFFLOAD_API_KEY")
    if not key:
        raise _fail(
            "OFFLOAD_URL is set but OFFLOAD_API_KEY is not: export an API key "
            "(offload keys create --tenant T --role client|admin)",
            2,
        )
    from .client import Client

    return Client(url, key)


def _over_api(api: Any, call: Callable[[Any], T]) -> T:
    """Run ``call(api)``; an error of the API becomes its problem detail on one line, exit 1."""
    from .client import ClientError

    try:
        with api:
            return call(api)
    except ClientError as exc:
        raise _fail(str(exc)) from None


def _first(items: Iterator[T], n: int) -> list[T]:
    """The first ``n`` of a paged listing (no page beyond them is fetched)."""
    return list(itertools.islice(items, n))


# -- running ---------------------------------------------------------------------------------


@cli.command()
def worker(
    app: Annotated[str, typer.Option("--app", envvar="OFFLOAD_APP", help="MODULE:ATTR")],
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: all).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs at once per process.")] = 10,
    prefetch: Annotated[
        int, typer.Option(min=0, help="Jobs claimed ahead of free slots (short jobs).")
    ] = 0,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    grace: Annotated[float, typer.Option(min=0, help="Seconds to drain on SIGTERM.")] = 30.0,
) -> None:
    """Run worker processes until SIGTERM (drains) or a second SIGTERM (stops at once)."""
    args = [
        sys.executable,
        "-m",
        "offload.worker",
        "--app",
        app,
        "--concurrency",
        str(concurrency),
        "--prefetch",
        str(prefetch),
        "--processes",
        str(processes),
        "--grace",
        str(grace),
    ]
    if queues:
        args += ["--queues", queues]
    # Replace this process with the lean worker entry point: a worker carries no CLI toolkit.
    os.execv(sys.executable, args)


@cli.command()
def serve(
    app: Annotated[str, typer.Option("--app", envvar="OFFLOAD_APP", help="MODULE:ATTR")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    inline_workers: Annotated[
        int, typer.Option(min=0, help="Also run jobs in this process, N at once.")
    ] = 0,
    log_level: Annotated[str, typer.Option(envvar="OFFLOAD_LOG_LEVEL")] = "info",
    workers: Annotated[
        int, typer.Option(min=1, envvar="OFFLOAD_API_WORKERS", help="Server processes.")
    ] = 1,
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn); docs at /docs."""
    from .api.serve import serve as run_server

    settings = _need_app(app).settings  # a bad --app fails here, once, with a clear message
    if settings.broker_url:
        # The API checks at start-up that it may publish; doing it here too turns a refusal
        # into one line and exit code 1 instead of uvicorn's start-up traceback.
        _run(_check_broker(settings, "publish"))
    run_server(
        app,
        host=host,
        port=port,
        workers=workers,
        inline_workers=inline_workers,
        log_level=log_level,
    )


async def _check_broker(settings: Any, role: str) -> None:
    from .app import Offload

    probe = Offload(settings=settings)  # not the served app: its connections stay unopened
    try:
        await (await probe.broker()).check(role)
    finally:
        await probe.close()


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Whose jobs the key reaches.")],
    role: Annotated[str, typer.Option(help="client, viewer or admin.")] = "client",
    name: Annotated[str | None, typer.Option(help="A note: who or what uses it.")] = None,
    app: AppOption = None,
) -> None:
    """Create an API key and print it, alone on stdout: it is shown this once."""
    from .api import create_key

    if role not in ("client", "viewer", "admin"):
        err.print(f"[red]error:[/red] --role must be client, viewer or admin, not {role!r}")
        raise typer.Exit(2)
    offload = _app(app)

    async def go() -> tuple[Any, str]:
        async with offload:
            return await create_key(await offload.store(), tenant, role, name)

    key, secret = _run(go())
    err.print(f"created {key.id} ({key.role}, tenant {key.tenant}); store the key now")
    print(secret)


@keys_cli.command("list")
def keys_list(app: AppOption = None) -> None:
    """API keys (never the secrets)."""
    offload = _app(app)

    async def go() -> list[Any]:
        async with offload:
            return await (await offload.store()).key_list()

    table = Table("id", "tenant", "role", "name", "created", "revoked")
    for k in _run(go()):
        table.add_row(
            k.id,
            k.tenant,
            k.role,
            k.name or "",
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
        )
    out.print(table)


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID")], app: AppOption = None
) -> None:
    """Revoke a key; API processes stop accepting it within their key cache time (5 s)."""
    offload = _app(app)

    async def go() -> Any:
        async with offload:
            return await (await offload.store()).key_revoke(key_id)

    if _run(go()) is None:
        err.print(f"[red]error:[/red] no key {key_id}")
        raise typer.Exit(1)
    out.print(f"{key_id} revoked")


@cli.command()
def demo(
    workers: Annotated[
        int, typer.Option(min=2, help="Worker processes (one for the reports queue).")
    ] = 2,
    keep: Annotated[bool, typer.Option(help="Keep the demo database afterwards.")] = False,
) -> None:
    """The example jobs end to end: an API and workers on SQLite, jobs submitted over HTTP."""
    from .demo import run_demo

    raise typer.Exit(run_demo(workers=workers, keep=keep, console=out))


# -- jobs ------------------------------------------------------------------------------------


@cli.command()
def submit(
    job_type: Annotated[str, typer.Argument(metavar="TYPE")],
    input: Annotated[str, typer.Option("--input", help="The job input as JSON.")] = "{}",
    app: AppOption = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result, showing progress.")] = False,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[int | None, typer.Option()] = None,
    delay: Annotated[float | None, typer.Option(help="Seconds before it may run.")] = None,
    notify_webhook: Annotated[
        str | None, typer.Option(help="POST the job's end here (signed webhook).")
    ] = None,
    notify_email: Annotated[str | None, typer.Option(help="Email the job's end here.")] = None,
) -> None:
    """Submit a job (validated against its type's model) and print its id."""
    data = _json(input, "--input")
    notify = {k: v for k, v in {"webhook": notify_webhook, "email": notify_email}.items() if v}
    api = _remote()
    if api is not None:

        def remote(c: Any) -> Any:
            job = c.submit(
                job_type,
                data,
                idempotency_key=idempotency_key,
                queue=queue,
                priority=priority,
                delay_seconds=delay,
                notify=notify or None,
            )
            if not wait:
                return job
            err.print(f"submitted {job.id}")
            with _progress_bar(job) as update:
                return c.wait(job.id, on_progress=update)

        _submitted(_over_api(api, remote), wait)
        return
    offload = _need_app(app)

    async def go() -> Job:
        async with offload:
            job = await offload.submit(
                job_type,
                data,
                idempotency_key=idempotency_key,
                queue=queue,
                priority=priority,
                delay=delay,
                notify=notify or None,
            )
            if not wait:
                return job
            err.print(f"submitted {job.id}")
            return await _follow(offload, job)

    _submitted(_run(go()), wait)


def _submitted(job: Any, wait: bool) -> None:
    if not wait:
        out.print(str(job.id), highlight=False)
        return
    _print_job(job)
    raise typer.Exit(0 if job.status is JobStatus.SUCCEEDED else 1)


@contextlib.contextmanager
def _progress_bar(job: Any) -> Iterator[Callable[[Any], None]]:
    """A progress bar on stderr; yields the function that shows a newer state of the job."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.fields[status]:<9}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("", total=100, status=job.status.value)

        def update(job: Any) -> None:
            bar.update(
                task,
                completed=job.progress.percent,
                status=job.status.value,
                description=job.progress.message or "",
            )

        yield update


async def _follow(offload: Any, job: Job) -> Job:
    """Re-read the job whenever the event bus says it changed (and every second anyway)."""
    hub = await offload.event_hub()
    with _progress_bar(job) as update, hub.watch(job.id) as changed:
        while not job.is_terminal:
            await changed.wait(1.0)
            job = await offload.get_job(job.id)
            update(job)
    return job


@cli.command()
def watch(job_id: Annotated[str, typer.Argument(metavar="ID")], app: AppOption = None) -> None:
    """Follow a job live with a progress bar until it ends (its event stream over HTTP); exit 0
    if it succeeded, 1 otherwise."""
    api = _remote()
    if api is not None:

        def remote(c: Any) -> Any:
            job = c.get(job_id)
            with _progress_bar(job) as update:
                update(job)
                return c.wait(job.id, on_progress=update)

        _submitted(_over_api(api, remote), True)
        return
    offload = _app(app)

    async def go() -> Job | None:
        async with offload:
            job = await offload.get_job(job_id)
            return None if job is None else await _follow(offload, job)

    job = _run(go())
    if job is None:
        err.print(f"[red]error:[/red] no job {job_id}")
        raise typer.Exit(1)
    _submitted(job, True)


@cli.command()
def status(job_id: Annotated[str, typer.Argument(metavar="ID")], app: AppOption = None) -> None:
    """Show one job."""
    api = _remote()
    if api is not None:
        _print_job(_over_api(api, lambda c: c.get(job_id)))
        return
    offload = _app(app)

    async def go() -> Job | None:
        async with offload:
            return await offload.get_job(job_id)

    job = _run(go())
    if job is None:
        err.print(f"[red]error:[/red] no job {job_id}")
        raise typer.Exit(1)
    _print_job(job)


@cli.command()
def jobs(
    status: Annotated[list[str] | None, typer.Option(help="Filter by status (repeatable).")] = None,
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    app: AppOption = None,
) -> None:
    """List jobs, newest first."""
    from .store import JobFilter

    try:
        statuses = [JobStatus(s) for s in status] if status else None
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}; use one of {', '.join(s.value for s in JobStatus)}")
        raise typer.Exit(2) from None
    api = _remote()
    if api is not None:
        size = min(limit, 500)
        found = _over_api(
            api, lambda c: _first(c.list(status=statuses, type=job_type, page_size=size), limit)
        )
        _print_jobs(found)
        return
    offload = _app(app)

    async def go() -> list[Job]:
        async with offload:
            return await offload.list_jobs(JobFilter(status=statuses, type=job_type), limit=limit)

    _print_jobs(_run(go()))


# -- dead letters ----------------------------------------------------------------------------


@dlq_cli.command("list")
def dlq_list(
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    app: AppOption = None,
) -> None:
    """Jobs that failed for good, newest first."""
    api = _remote()
    if api is not None:
        size = min(limit, 500)
        found = _over_api(
            api, lambda c: _first(c.dead_letters(type=job_type, page_size=size), limit)
        )
        _print_jobs(found, errors=True)
        return
    offload = _app(app)

    async def go() -> list[Job]:
        async with offload:
            return await offload.dead_letters(job_type=job_type, limit=limit)

    _print_jobs(_run(go()), errors=True)


@dlq_cli.command("show")
def dlq_show(job_id: Annotated[str, typer.Argument(metavar="ID")], app: AppOption = None) -> None:
    """A dead letter with its traceback and event history."""
    api = _remote()
    if api is not None:
        job = _over_api(api, lambda c: c.dead_letter(job_id))
        _print_detail(job, job.events or [])
        return
    offload = _app(app)

    async def go() -> tuple[Job | None, list[Any]]:
        async with offload:
            return await offload.get_job(job_id), await offload.events(job_id)

    job, events = _run(go())
    if job is None:
        err.print(f"[red]error:[/red] no job {job_id}")
        raise typer.Exit(1)
    _print_detail(job, events)


def _print_detail(job: Any, events: list[Any]) -> None:
    _print_job(job)
    if job.error_detail:
        out.print("[bold]traceback[/bold]")
        out.print(job.error_detail, highlight=False, markup=False)
    table = Table("seq", "event", "attempt", "at", "data")
    for e in events:
        table.add_row(
            str(e.seq),
            e.type,
            str(e.attempt),
            e.created_at.isoformat(timespec="seconds"),
            json.dumps(e.data) if e.data else "",
        )
    out.print(table)


@dlq_cli.command("replay")
def dlq_replay(
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    input: Annotated[str | None, typer.Option("--input", help="Corrected input (JSON).")] = None,
    app: AppOption = None,
) -> None:
    """Put a failed job back in its queue with a fresh attempt budget."""
    data = _json(input, "--input") if input is not None else None
    api = _remote()
    if api is not None:
        job = _over_api(api, lambda c: c.replay(job_id, data))
        out.print(f"{job.id} {job.status.value}")
        return
    offload = _need_app(app)

    async def go() -> Job | None:
        async with offload:
            return await offload.replay(job_id, data, actor=f"cli:{_user()}")

    job = _run(go())
    if job is None:
        err.print(f"[red]error:[/red] no job {job_id}")
        raise typer.Exit(1)
    out.print(f"{job.id} {job.status.value}")


@dlq_cli.command("discard")
def dlq_discard(
    job_id: Annotated[str, typer.Argument(metavar="ID")], app: AppOption = None
) -> None:
    """Take a dead letter off the list; it stays failed, with its history."""
    api = _remote()
    if api is not None:
        job = _over_api(api, lambda c: c.discard(job_id))
        out.print(f"{job.id} discarded")
        return
    try:
        key = uuid.UUID(job_id)
    except ValueError:
        raise _fail(f"{job_id!r} is not a job id", 2) from None
    offload = _app(app)

    async def go() -> Job | None:
        async with offload:
            job = await offload.get_job(key)
            if job is None or job.status is not JobStatus.FAILED:
                return None
            return await (await offload.store()).job_discard(key, f"cli:{_user()}")

    job = _run(go())
    if job is None:
        raise _fail(f"no dead letter {job_id}")
    out.print(f"{job.id} discarded")


# -- queues and schema -----------------------------------------------------------------------


@queues_cli.command("list")
def queues_list(app: AppOption = None) -> None:
    """Depth, running jobs and lag of each queue."""
    from datetime import UTC, datetime

    api = _remote()
    offload = _app(app) if api is None else None

    async def go() -> list[Any]:
        async with offload:
            return await offload.queues()

    found = _over_api(api, lambda c: c.queues()) if api is not None else _run(go())
    table = Table("queue", "paused", "waiting", "running", "oldest waiting")
    now = datetime.now(UTC)
    for q in found:
        lag = f"{(now - q.oldest_waiting_at).total_seconds():.1f} s" if q.oldest_waiting_at else "-"
        table.add_row(q.name, "yes" if q.paused else "no", str(q.waiting), str(q.running), lag)
    out.print(table)


@queues_cli.command("pause")
def queues_pause(name: str, app: AppOption = None) -> None:
    """Workers stop claiming from the queue; nothing waiting is lost."""
    _set_paused(name, True, app)


@queues_cli.command("resume")
def queues_resume(name: str, app: AppOption = None) -> None:
    """Workers claim from the queue again."""
    _set_paused(name, False, app)


def _set_paused(name: str, paused: bool, app: str | None) -> None:
    api = _remote()
    if api is not None:
        _over_api(api, lambda c: c.pause_queue(name) if paused else c.resume_queue(name))
    else:
        offload = _app(app)

        async def go() -> None:
            async with offload:
                change = offload.pause_queue if paused else offload.resume_queue
                await change(name, actor=f"cli:{_user()}")

        _run(go())
    out.print(f"queue {name} {'paused' if paused else 'resumed'}")


# -- webhooks (over the HTTP API) ------------------------------------------------------------


def _admin_api() -> Any:
    api = _remote()
    if api is None:
        raise _fail("webhook commands go through the HTTP API: set OFFLOAD_URL and an admin "
                    "OFFLOAD_API_KEY", 2)  # fmt: skip
    return api


def _print_webhooks(hooks: list[Any]) -> None:
    table = Table("id", "tenant", "url", "events", "state")
    for h in hooks:
        state = f"disabled: {h.disabled_reason}" if h.disabled_at else "active"
        table.add_row(h.id, escape(h.tenant), escape(h.url), " ".join(h.events), escape(state))
    out.print(table)


@webhooks_cli.command("create")
def webhooks_create(
    url: str,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help="An event type to receive (repeat); default the terminal ones."
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Whose jobs (default: the key's).")] = None,
) -> None:
    """Register an endpoint; prints its id and signing secret (shown once)."""
    hook = _over_api(_admin_api(), lambda c: c.create_webhook(url, event or None, tenant))
    out.print(f"{hook.id} {hook.secret}", highlight=False, soft_wrap=True)


@webhooks_cli.command("list")
def webhooks_list(tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """Registered endpoints (never their secrets)."""
    _print_webhooks(_over_api(_admin_api(), lambda c: c.webhooks(tenant)))


@webhooks_cli.command("delete")
def webhooks_delete(endpoint_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete an endpoint; its pending deliveries are dropped."""
    _over_api(_admin_api(), lambda c: c.delete_webhook(endpoint_id))
    out.print(f"{endpoint_id} deleted")


@webhooks_cli.command("rotate")
def webhooks_rotate(endpoint_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Replace an endpoint's signing secret; prints the new one."""
    hook = _over_api(_admin_api(), lambda c: c.rotate_webhook(endpoint_id))
    out.print(hook.secret, highlight=False, soft_wrap=True)


@webhooks_cli.command("secret")
def webhooks_secret(
    tenant: Annotated[str | None, typer.Option(help="Default: the key's tenant.")] = None,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace it first.")] = False,
) -> None:
    """The secret signing a tenant's job webhooks (options.notify.webhook)."""
    secret = _over_api(_admin_api(), lambda c: c.signing_secret(tenant, rotate=rotate))
    out.print(secret, highlight=False, soft_wrap=True)


@webhooks_cli.command("deliveries")
def webhooks_deliveries(
    endpoint_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    job: Annotated[str | None, typer.Option("--job", help="A job's deliveries instead.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The newest deliveries of an endpoint (ID) or of a job (--job)."""
    if (endpoint_id is None) == (job is None):
        raise _fail("give an endpoint ID or --job JOB_ID", 2)
    found = _over_api(
        _admin_api(),
        lambda c: c.deliveries(endpoint_id=endpoint_id, job_id=job, page_size=limit),
    )
    table = Table("delivery", "job", "event", "channel", "status", "attempts", "last")
    for d in found:
        last = str(d.last_status_code or "") or (d.last_error or "")[:60]
        table.add_row(
            d.id, str(d.job_id), d.event_type, d.channel, d.status, str(d.attempts), escape(last)
        )
    out.print(table)


@webhooks_cli.command("resend")
def webhooks_resend(delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID")]) -> None:
    """Send a delivery again (same webhook-id, a fresh retry window)."""
    d = _over_api(_admin_api(), lambda c: c.resend(delivery_id))
    out.print(f"{d.id} {d.status}")


@cli.command()
def dispatch(app: AppOption = None) -> None:
    """Send webhooks and email until SIGTERM. Workers do this too unless OFFLOAD_DISPATCH=0;
    run it on its own to keep delivery off the worker machines."""
    import signal

    offload = _app(app)

    async def go() -> None:
        from .notify.dispatcher import Dispatcher

        dispatcher = Dispatcher(offload)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, dispatcher.stop)
        async with offload:
            await dispatcher.run()

    _run(go())


@db_cli.command("upgrade")
def db_upgrade(app: AppOption = None) -> None:
    """Apply pending schema migrations (safe to run from several places at once)."""
    from .config import redact_url

    offload = _app(app)
    applied = _run(offload.upgrade_schema())
    where = redact_url(offload.settings.database_url)
    if applied:
        out.print(f"applied migrations {', '.join(map(str, applied))} to {where}")
    else:
        out.print(f"{where} is up to date")


BrokerUrl = Annotated[
    str,
    typer.Option("--url", envvar="OFFLOAD_BROKER_URL", help="amqp://… or redis://…"),
]
BrokerPrefix = Annotated[
    str,
    typer.Option(envvar="OFFLOAD_BROKER_PREFIX", help="Namespace of every broker name."),
]


@broker_cli.command("setup")
def broker_setup(
    url: BrokerUrl,
    prefix: BrokerPrefix = "offload",
    publisher: Annotated[
        str | None, typer.Option(help="User for the API (default: PREFIX-publisher).")
    ] = None,
    consumer: Annotated[
        str | None, typer.Option(help="User for workers (default: PREFIX-consumer).")
    ] = None,
    rabbitmqctl: Annotated[
        str, typer.Option(help="RabbitMQ: the rabbitmqctl command on the broker's host.")
    ] = "rabbitmqctl",
    node: Annotated[str | None, typer.Option(help="RabbitMQ: node name (rabbitmqctl -n).")] = None,
) -> None:
    """Create a publisher identity for the API and a consumer identity for workers, each
    allowed only what its side does; print the OFFLOAD_BROKER_URL of each (passwords shown
    once). RabbitMQ: users on the URL's vhost, made with rabbitmqctl. Redis: ACL users, made
    through the URL's (admin) connection. Running it again gives new passwords."""
    import shlex

    from .broker.access import RabbitMQCtl, setup

    names = {
        "publisher": publisher or f"{prefix}-publisher",
        "consumer": consumer or f"{prefix}-consumer",
    }
    ctl = RabbitMQCtl(shlex.split(rabbitmqctl), node)
    identities = _run(setup(url, prefix=prefix, usernames=names, ctl=ctl))  # type: ignore[arg-type]
    sides = {"publisher": "the API (publish only)", "consumer": "workers (consume + publish)"}
    for identity in identities:
        out.print(f"[bold]{identity.role}[/bold] {identity.username!r} for {sides[identity.role]}:")
        print(f"  OFFLOAD_BROKER_URL={identity.url}")
    out.print("The passwords are shown only now: keep them in your secret store.")


@broker_cli.command("check")
def broker_check(
    url: BrokerUrl,
    role: Annotated[str, typer.Option(help="publish (the API) or consume (a worker).")],
    prefix: BrokerPrefix = "offload",
    queues: Annotated[
        str | None, typer.Option(help="consume: comma-separated queues (default: all).")
    ] = None,
) -> None:
    """Check what the API and workers check at start-up: that this identity can publish, or
    consume. Exit code 1 with the broker's reason if not."""
    from .broker import open_broker

    if role not in ("publish", "consume"):
        raise _fail(f"--role must be publish or consume, not {role!r}", 2)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None

    async def check() -> None:
        broker = open_broker(url, prefix=prefix)
        await broker.connect()
        try:
            await broker.check(role, names)
        finally:
            await broker.close()

    _run(check())
    out.print(f"ok: this identity can {role}")


# -- printing --------------------------------------------------------------------------------


def _print_job(job: Any) -> None:
    """A job of the store (``offload.jobs.Job``) or of the API (``offload.client.Job``)."""
    table = Table(show_header=False, box=None)
    rows: list[tuple[str, Any]] = [
        ("id", job.id),
        ("type", job.type),
        ("status", job.status.value),
        ("queue", job.queue),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("progress", f"{job.progress.percent:.0f}% {job.progress.message or ''}"),
        ("created", job.created_at.isoformat(timespec="seconds")),
        ("finished", job.finished_at.isoformat(timespec="seconds") if job.finished_at else "-"),
    ]
    if job.status is JobStatus.SUCCEEDED:
        rows.append(("result", json.dumps(job.result)))
    if job.error is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELED):
        rows.append(("error", f"{job.error.code}: {job.error.message}"))
    for key, value in rows:
        table.add_row(f"[bold]{key}[/bold]", str(value))
    out.print(table)


def _print_jobs(jobs: list[Any], *, errors: bool = False) -> None:
    table = Table("id", "type", "status", "attempt", "created")
    if errors:
        table.add_column("error")
    for job in jobs:
        row = [
            str(job.id),
            job.type,
            job.status.value,
            f"{job.attempt}/{job.max_attempts}",
            job.created_at.isoformat(timespec="seconds"),
        ]
        if errors:
            row.append(f"{job.error.code}: {job.error.message}" if job.error else "")
        table.add_row(*row)
    out.print(table)


def _user() -> str:
    return os.environ.get("USER") or str(os.getuid())


if __name__ == "__main__":
    main()
