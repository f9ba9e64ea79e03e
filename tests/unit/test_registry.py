"""``@app.job`` and submission checks: refused handlers, unknown types, invalid input, and
nothing stored when a submission is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from offload import Context, InvalidInput, Offload, UnknownJobType


class ReportRequest(BaseModel):
    year: int = Field(ge=2000)
    title: str


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[Offload]:
    app = Offload(sqlite_url)

    @app.job("reports.generate", queue="reports", max_attempts=5)
    async def generate(ctx: Context, req: ReportRequest) -> dict[str, Any]:
        return {}

    @app.job("emails.send")
    def send(ctx: Context, req: ReportRequest) -> None:
        return None

    yield app
    await app.close()


def test_a_registered_handler_records_its_model_and_options(app: Offload):
    spec = app.registry.get("reports.generate")

    assert spec.model is ReportRequest
    assert (spec.queue, spec.max_attempts) == ("reports", 5)
    assert spec.is_async is True
    assert app.registry.get("emails.send").is_async is False
    assert app.registry.names() == ["emails.send", "reports.generate"]


@pytest.mark.parametrize("annotation", ["dict", "none", "str"])
def test_a_handler_without_a_pydantic_input_model_is_refused_with_a_clear_type_error(
    sqlite_url: str, annotation: str
):
    app = Offload(sqlite_url)

    def untyped(ctx, req):  # type: ignore[no-untyped-def]
        return None

    def with_dict(ctx: Context, req: dict[str, Any]) -> None:
        return None

    def with_str(ctx: Context, req: str) -> None:
        return None

    handler = {"dict": with_dict, "none": untyped, "str": with_str}[annotation]

    with pytest.raises(TypeError, match="annotate the input parameter with a pydantic BaseModel"):
        app.job("bad.type")(handler)
    assert "bad.type" not in app.registry


def test_a_handler_with_the_wrong_number_of_parameters_is_refused(sqlite_url: str):
    app = Offload(sqlite_url)

    def no_ctx(req: ReportRequest) -> None:
        return None

    with pytest.raises(TypeError, match=r"must take exactly \(ctx, input\)"):
        app.job("bad.arity")(no_ctx)


def test_registering_a_job_type_twice_is_refused(app: Offload):
    def again(ctx: Context, req: ReportRequest) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        app.job("reports.generate")(again)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_attempts": 0}, "max_attempts"), ({"timeout": 0}, "timeout")],
)
def test_bad_job_options_are_refused(app: Offload, options: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        app.job("bad.options", **options)


async def test_submitting_an_unknown_job_type_names_the_registered_ones_and_stores_nothing(
    app: Offload,
):
    with pytest.raises(UnknownJobType) as caught:
        await app.submit("reports.generat", {"year": 2024, "title": "x"})

    message = str(caught.value)
    assert "reports.generat" in message
    assert "emails.send" in message and "reports.generate" in message
    assert caught.value.job_type == "reports.generat"
    assert caught.value.code == "unknown_job_type"
    assert await app.list_jobs() == []


async def test_invalid_input_names_each_bad_field_and_stores_nothing(app: Offload):
    with pytest.raises(InvalidInput) as caught:
        await app.submit("reports.generate", {"year": 1999, "extra": 1})

    error = caught.value
    assert error.job_type == "reports.generate"
    assert error.code == "invalid_input"
    assert {e["field"] for e in error.errors} == {"year", "title"}
    assert all(e["message"] for e in error.errors)
    assert "year" in str(error) and "title" in str(error)
    assert await app.list_jobs() == []


async def test_input_that_is_not_an_object_is_invalid(app: Offload):
    with pytest.raises(InvalidInput) as caught:
        await app.submit("reports.generate", [1, 2, 3])

    assert len(caught.value.errors) >= 1
    assert await app.list_jobs() == []


async def test_one_invalid_input_in_a_batch_stores_none_of_the_batch(app: Offload):
    inputs = [{"year": 2024, "title": "ok"}, {"year": "soon", "title": "bad"}]

    with pytest.raises(InvalidInput) as caught:
        await app.submit_many("reports.generate", inputs)

    [error] = caught.value.errors
    assert error["field"].split(".")[-1] == "year"  # may be prefixed by the item's index
    assert await app.list_jobs() == []


async def test_valid_input_is_stored_as_the_models_json(app: Offload):
    job = await app.submit("reports.generate", ReportRequest(year=2024, title="annual"))

    assert job.input == {"year": 2024, "title": "annual"}
    assert job.queue == "reports"
    assert [j.id for j in await app.list_jobs()] == [job.id]
