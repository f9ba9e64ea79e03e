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


def test_webhook_and_email_settings_come_from_the_environment():
    s = Settings.from_env(
        {
            "OFFLOAD_WEBHOOK_ALLOWED_HOSTS": "hooks.internal, 10.0.0.0/8",
            "OFFLOAD_WEBHOOK_RETRY_WINDOW": "600",
            "OFFLOAD_WEBHOOK_BACKOFF_BASE": "0.5",
            "OFFLOAD_WEBHOOK_TIMEOUT": "3",
            "OFFLOAD_SMTP_URL": "smtp://jobs:pw@mail.example:587?from=a%40b.c&starttls=true",
            "OFFLOAD_DISPATCH": "0",
        }
    )
    assert s.webhook_allowed_hosts == "hooks.internal, 10.0.0.0/8"
    assert (s.webhook_retry_window, s.webhook_backoff_base, s.webhook_timeout) == (600, 0.5, 3)
    assert s.dispatch is False and Settings.from_env({}).dispatch is True
    assert "pw" not in repr(s)  # the SMTP password never reaches a log through the settings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OFFLOAD_WEBHOOK_ALLOWED_HOSTS", "10.0.0.0/99", "OFFLOAD_WEBHOOK_ALLOWED_HOSTS"),
        ("OFFLOAD_SMTP_URL", "http://user:s3cret@mail/", "smtp://"),
        ("OFFLOAD_SMTP_URL", "smtp://user:s3cret@mail/?starttls=maybe", "starttls"),
    ],
)
def test_malformed_notify_settings_fail_at_start_up(variable: str, value: str, message: str):
    with pytest.raises(ValueError, match=message) as error:
        Settings.from_env({variable: value})
    assert "s3cret" not in str(error.value)
