"""The HorizontalPodAutoscaler (autoscaling/v2) on the inference StatefulSet.

Pure functions; no I/O here.
"""

from __future__ import annotations

from typing import Any

from edgemodel_operator import names
from edgemodel_operator.render import common
from edgemodel_operator.resource import EdgeModel

__all__ = ["objects"]


def objects(em: EdgeModel) -> list[dict[str, Any]]:
    scaling = em.spec.scaling
    name = names.inference(em.name)
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": common.metadata(em, name, "inference"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": scaling.target_cpu_utilization_percentage,
                            },
                        },
                    }
                ],
            },
        }
    ]
