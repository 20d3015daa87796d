"""Settings come from the environment once, with typed defaults."""

from tenantdb.settings import Settings, WatchdogSettings


def test_watchdog_settings_come_from_the_environment() -> None:
    env = {
        "TENANTDB_WATCHDOG_INTERVAL": "1",
        "TENANTDB_WATCHDOG_GRACE": "0.5",
        "TENANTDB_WATCHDOG_TERMINATE_GRACE": "3",
    }
    assert Settings.from_environment(env).watchdog == WatchdogSettings(1.0, 0.5, 3.0)
    assert Settings.from_environment({}).watchdog == WatchdogSettings()
