"""What every handler needs at run time, built once at operator start-up.

kopf hands ``memo`` to every handler; ``Runtime`` is what we keep in it:
the settings and the database server (pool, control and shared schema).
Built in the startup handler, closed in the cleanup handler, never at
import time.
"""

from dataclasses import dataclass, field
from typing import Any

import kopf

from tenantdb import settings as settings_
from tenantdb.core import commands, connecting, naming


@dataclass
class Runtime:
    """Shared state of one operator process."""

    settings: settings_.Settings
    server: commands.Server
    last_verified: dict[str, float] = field(default_factory=dict)
    """Monotonic time of each tenant's last isolation check, by UID."""

    @classmethod
    def start(cls, settings: settings_.Settings) -> "Runtime":
        """Open the pool and make sure the control and shared schemas are current."""
        server = commands.open_server(settings.database, "tenantdb-operator")
        try:
            commands.prepare(server)
        except Exception:
            server.close()
            raise
        return cls(settings=settings, server=server)

    @property
    def pool(self) -> connecting.Pool:
        """The operator's connection pool."""
        return self.server.pool

    @property
    def control_schema(self) -> naming.Identifier:
        """Schema of the registry and the ledgers."""
        return self.server.control_schema

    def close(self) -> None:
        """Close the pool's connections and the idle tenant sessions."""
        self.server.close()


def of(memo: Any) -> Runtime:
    """The runtime stored in kopf's memo by the startup handler."""
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime
