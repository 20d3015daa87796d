"""Operator settings: durations PostgreSQL accepts, the caps on Migration timeouts, the watchdog."""

import pytest

from tenantdb import settings


@pytest.mark.parametrize(
    ("duration", "expected"),
    [("0s", 0), ("250ms", 250), ("5s", 5000), ("15min", 900_000), ("596h", 2_145_600_000)],
)
def test_durations_in_milliseconds(duration: str, expected: int) -> None:
    assert settings.milliseconds(duration) == expected


@pytest.mark.parametrize("duration", ["5", "5 s", "1d", "-1s", "1.5s", "", "12345678901ms"])
def test_what_is_not_a_duration_is_refused(duration: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        settings.milliseconds(duration)


def test_no_timeout_and_longer_ones_are_capped() -> None:
    assert settings.capped("0s", "1h") == "1h"
    assert settings.capped("2h", "1h") == "1h"
    assert settings.capped("59min", "1h") == "59min"
    assert settings.capped("0s", None) == "0s"


def test_caps_come_from_the_environment() -> None:
    parsed = settings.Settings.from_environment(
        {"TENANTDB_MAX_STATEMENT_TIMEOUT": "1h", "TENANTDB_MAX_LOCK_TIMEOUT": "30s"}
    )
    assert parsed.migrations == settings.MigrationSettings("30s", "1h")
    assert settings.Settings.from_environment({}).migrations == settings.MigrationSettings()


@pytest.mark.parametrize("value", ["0s", "597h", "an hour"])
def test_a_cap_postgresql_would_refuse_stops_the_start(value: str) -> None:
    with pytest.raises(ValueError, match="TENANTDB_MAX_STATEMENT_TIMEOUT"):
        settings.Settings.from_environment({"TENANTDB_MAX_STATEMENT_TIMEOUT": value})


def test_watchdog_settings_come_from_the_environment() -> None:
    env = {
        "TENANTDB_WATCHDOG_INTERVAL": "1",
        "TENANTDB_WATCHDOG_GRACE": "0.5",
        "TENANTDB_WATCHDOG_TERMINATE_GRACE": "3",
    }
    assert settings.Settings.from_environment(env).watchdog == settings.WatchdogSettings(
        1.0, 0.5, 3.0
    )
    assert settings.Settings.from_environment({}).watchdog == settings.WatchdogSettings()
