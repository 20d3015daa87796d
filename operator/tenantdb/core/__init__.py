"""The database engine, free of Kubernetes.

Identifiers and quoting, provisioning (schemas, roles, grants, RLS), the
tenant registry and the command functions the CLI and the controllers call.
Every SQL statement the operator can run lives under this package.
"""
