"""``Offload.submit(..., notify=…)`` and ``submit_many``: checked, stored with the job."""

from __future__ import annotations

import pytest

from offload import Offload
from offload.errors import NotifyTargetRefused
from offload.store.notify import Notify
from tests.apps.api_jobs import app as jobs_app


@pytest.fixture
async def offload(app: Offload) -> Offload:
    app.registry = jobs_app.registry
    return app


async def test_submit_stores_the_checked_targets_with_the_job(offload: Offload) -> None:
    job = await offload.submit(
        "api.echo", {"text": "x"}, notify={"webhook": "http://127.0.0.1:9/h"}, owner="t"
    )
    many = await offload.submit_many(
        "api.echo", [{"text": "a"}, {"text": "b"}], notify=Notify(webhook="http://127.0.0.1:9/m")
    )
    store = await offload.store()
    found = await store.job_notify_get([job.id, *(j.id for j in many)])
    assert found[job.id] == Notify(webhook="http://127.0.0.1:9/h")
    assert {found[j.id].webhook for j in many} == {"http://127.0.0.1:9/m"}
    plain = await offload.submit("api.echo", {"text": "y"})
    assert await store.job_notify_get([plain.id]) == {}


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ({"webhook": "http://169.254.169.254/"}, "link-local"),
        ({"webhook": "gopher://example.com/"}, "https://"),
        ({"email": "not-an-address"}, "not an email address"),
        ({"email": "ops@example.com"}, "OFFLOAD_SMTP_URL"),
        ({"pager": "555"}, "not pager"),
        ({"webhook": 5}, "must be a string"),
    ],
)
async def test_submit_refuses_targets_before_storing_anything(
    offload: Offload, notify: dict, message: str
) -> None:
    with pytest.raises(NotifyTargetRefused, match=message):
        await offload.submit("api.echo", {"text": "x"}, notify=notify)
    with pytest.raises(NotifyTargetRefused, match=message):
        await offload.submit_many("api.echo", [{"text": "x"}], notify=notify)
    assert await offload.list_jobs() == []
