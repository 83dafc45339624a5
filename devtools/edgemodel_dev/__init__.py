"""EdgeModel development tools; never shipped in the wheel or the image.

- :mod:`edgemodel_dev.harness`: real Kubernetes, Mosquitto and MLflow processes on loopback,
  for the tests, the benchmarks and the demo;
- :mod:`edgemodel_dev.demo`: the whole self-healing loop on this machine (``edgemodel demo``);
- :mod:`edgemodel_dev.commands`: the ``edgemodel`` subcommands this distribution adds;
- :mod:`edgemodel_dev.testing`: helpers for the runtime's tests and benchmarks.

The shipped packages never import this one (an import-linter contract checks it).
"""
