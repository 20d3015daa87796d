"""Pydantic models of every custom resource's spec and status.

The CRDs in ``crds/`` are generated from these models and nothing else. This
package never imports kopf, the Kubernetes client or psycopg.
"""

GROUP = "tenantdb.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
