"""Real components on loopback, for tests and the demo: Kubernetes, Mosquitto and MLflow.

Each component is a class that starts real processes bound to 127.0.0.1 on free ports,
waits until they answer, and stops every process it started. Nothing is mocked.

- :mod:`edgemodel_dev.harness.processes`: start, watch and stop one process.
- :mod:`edgemodel_dev.harness.binaries`: find the pinned Kubernetes tools.
- :mod:`edgemodel_dev.harness.controlplane`: etcd, kube-apiserver, controller-manager, scheduler, kwok.
- :mod:`edgemodel_dev.harness.mosquitto`: a Mosquitto broker with authentication.
- :mod:`edgemodel_dev.harness.mlflowserver`: an MLflow tracking server on sqlite.
- :mod:`edgemodel_dev.harness.monitoring`: Prometheus and kube-state-metrics, for the alert tests.
"""
