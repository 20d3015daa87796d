"""The migration engine: versioned changes applied to tenants, exactly once each.

Vocabulary after Alembic: a *script* is one versioned change (``scripts``),
the *ledger* records what ran where (``ledger``), the *engine* applies or
reverts one script on one tenant (``engine``), a *rollout* fans one script
out over many tenants (``rollout``), and ``commands`` holds the plain
functions the CLI and the controllers call. Nothing here imports kopf or
the Kubernetes client; every SQL statement the engine runs is under this
package, except the user's own migration SQL, which it runs as given inside
the tenant's scope (``scoping.enter``).
"""
