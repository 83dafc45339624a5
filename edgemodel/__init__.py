"""EdgeModel: a Kubernetes operator that keeps machine-learning models at the edge healthy.

This package holds what the operator, the runtime and the trainer share: the API
(:mod:`edgemodel.api`), the CRD generated from it (:mod:`edgemodel.crd`), feature
building (:mod:`edgemodel.features`), the hand-off contracts (:mod:`edgemodel.contracts`)
and safe model storage (:mod:`edgemodel.modelstore`). The test harness that runs real
Kubernetes, Mosquitto and MLflow processes lives in :mod:`edgemodel.harness`.
"""

__version__ = "0.1.0"
