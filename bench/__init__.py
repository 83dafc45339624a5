"""Benchmarks of EdgeModel, each against a baseline measured in the same run on the same machine.

``python -m bench all`` (or one of ``runtime``, ``drift``, ``heal``, ``operator``) writes
markdown and PNG plots under ``bench/results/``; ``--quick`` runs tiny sizes (the smoke
test uses it). Figures are reported as ratios to their baselines; nothing here asserts
a speed.

Modules: ``common`` (pure helpers: percentiles, Prometheus text, /proc, markdown),
``mqttclient`` (publisher and subscriber processes), and one module per benchmark.
"""
