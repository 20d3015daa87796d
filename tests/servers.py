"""Database settings of the servers tests open in process, as the operator would."""

import dataclasses
import os

from tenantdb import settings as settings_


def database_settings(url: str, **changes: object) -> settings_.DatabaseSettings:
    """The operator's database settings for ``url``, as the environment of this run gives
    them (the run's credentials key among them)."""
    base = settings_.Settings.from_environment({**os.environ, "DATABASE_URL": url}).database
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
