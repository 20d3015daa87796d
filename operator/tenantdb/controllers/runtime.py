"""What every handler needs at run time, built once at operator start-up.

kopf hands ``memo`` to every handler; ``Runtime`` is what we keep in it:
the settings, the pool, the control schema's name. Built in the startup
handler, closed in the cleanup handler, never at import time.
"""

from dataclasses import dataclass
from typing import Any

import kopf

from tenantdb import settings as settings_
from tenantdb.core import commands, connecting, naming


@dataclass
class Runtime:
    """Shared state of one operator process."""

    settings: settings_.Settings
    pool: connecting.Pool
    control_schema: naming.Identifier

    @classmethod
    def start(cls, settings: settings_.Settings) -> "Runtime":
        """Open the pool and make sure the control schema is current."""
        db = settings.database
        pool = connecting.open_pool(
            db.url, db.pool_min_size, db.pool_max_size, name="tenantdb-operator"
        )
        schema = naming.identifier(db.control_schema)
        commands.prepare(pool, schema)
        return cls(settings=settings, pool=pool, control_schema=schema)

    def close(self) -> None:
        """Close the pool's connections."""
        self.pool.close()


def of(memo: Any) -> Runtime:
    """The runtime stored in kopf's memo by the startup handler."""
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime
