"""EdgeModel: a Kubernetes operator that keeps machine-learning models at the edge healthy.

This package holds what the operator, the runtime and the trainer share: the API
(:mod:`edgemodel.api`), the CRD generated from it (:mod:`edgemodel.crd`), feature
building (:mod:`edgemodel.features`), the hand-off contracts (:mod:`edgemodel.contracts`)
safe model storage (:mod:`edgemodel.modelstore`), the registry conventions
(:mod:`edgemodel.registry`), the layered settings loader (:mod:`edgemodel.settingsources`)
and the user command line (:mod:`edgemodel.cli`). Nothing for
development lives here: the harness, the demo and the test helpers are the separate
``edgemodel-dev`` distribution (``devtools/``).
"""

__version__ = "0.1.0"
