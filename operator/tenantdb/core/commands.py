"""The operations both the CLI and the controllers call.

Plain functions on a ``Server`` and plain values; each raises only
``errors`` classes and knows nothing about Kubernetes. The work itself lives
in ``tenancy`` (provisioning per isolation mode) and ``verifying`` (the
isolation check and its repair).
"""

from tenantdb.core import connecting, privileges, tenancy, verifying

Server = tenancy.Server
TenantRequest = tenancy.TenantRequest
Provisioned = tenancy.Provisioned

open_server = tenancy.open_server
prepare = tenancy.prepare
provision = tenancy.provision
deprovision = tenancy.deprovision
rotate_password = tenancy.rotate_password
list_tenants = tenancy.list_tenants
verify_isolation = verifying.verify
repair_isolation = verifying.repair
Privileges = privileges.Privileges


def inspect_privileges(server: Server) -> Privileges:
    """What the operator's own role may do (``privileges``)."""
    with connecting.connection(server.pool) as conn:
        return privileges.inspect(conn)
