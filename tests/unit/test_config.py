"""Settings from the environment, and URLs safe to log."""

from __future__ import annotations

import pytest

from offload.config import DEFAULT_DATABASE_URL, Settings, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:s3cret@db.example:5432/jobs",
            "postgresql://app:***@db.example:5432/jobs",
        ),
        ("postgresql://app:s3cret@db.example/jobs", "postgresql://app:***@db.example/jobs"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "amqp://guest:guest@rabbit/vhost?heartbeat=30",
            "amqp://guest:***@rabbit/vhost?heartbeat=30",
        ),
    ],
)
def test_redact_url_hides_the_password(url: str, expected: str):
    redacted = redact_url(url)

    assert redacted == expected
    assert "s3cret" not in redacted


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///offload.db",
        "postgresql://app@db.example/jobs",
        "postgresql://db.example:5432/jobs",
    ],
)
def test_redact_url_leaves_urls_without_a_password_alone(url: str):
    assert redact_url(url) == url


def test_settings_have_defaults_when_the_environment_is_empty():
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL


def test_settings_are_read_from_offload_variables():
    settings = Settings.from_env(
        {
            "OFFLOAD_DATABASE_URL": "postgresql://db/jobs",
            "OFFLOAD_LEASE_SECONDS": "12.5",
            "OFFLOAD_IDEMPOTENCY_TTL": "60",
            "OFFLOAD_REAP_INTERVAL": "0.5",
            "OFFLOAD_POLL_INTERVAL": "0.01",
            "OFFLOAD_CANCEL_GRACE": "3",
            "UNRELATED": "ignored",
        }
    )

    assert settings.database_url == "postgresql://db/jobs"
    assert settings.lease_seconds == 12.5
    assert settings.idempotency_ttl_seconds == 60.0
    assert settings.reap_interval == 0.5
    assert settings.poll_interval == 0.01
    assert settings.cancel_grace == 3.0


def test_overrides_win_over_the_environment_and_none_overrides_are_ignored():
    settings = Settings.from_env(
        {"OFFLOAD_LEASE_SECONDS": "12"}, lease_seconds=5.0, database_url=None
    )

    assert settings.lease_seconds == 5.0
    assert settings.database_url == DEFAULT_DATABASE_URL


@pytest.mark.parametrize("value", ["abc", "", "1,5", "ten"])
def test_settings_reject_a_value_that_is_not_a_number_and_name_the_variable(value: str):
    with pytest.raises(ValueError, match="OFFLOAD_REAP_INTERVAL must be a number"):
        Settings.from_env({"OFFLOAD_REAP_INTERVAL": value})


@pytest.mark.parametrize("value", ["0", "-1"])
def test_settings_reject_a_lease_that_is_not_positive(value: str):
    with pytest.raises(ValueError, match="OFFLOAD_LEASE_SECONDS"):
        Settings.from_env({"OFFLOAD_LEASE_SECONDS": value})
