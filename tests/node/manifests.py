"""One-shot pods of the operator's image on the node, as locked down as the chart's.

The operator itself runs only as the Helm chart installs it
(``test_chart_install.py``), so the chart's RBAC is the only RBAC proven.
"""

from __future__ import annotations

import json


def command_pod(name: str, image: str, command: list[str]) -> str:
    """A Pod that runs ``command`` once in the image: host network, non-root, read-only root."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "operator",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    return json.dumps(pod)
