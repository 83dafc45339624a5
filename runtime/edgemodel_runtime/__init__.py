"""The EdgeModel runtime: MQTT in, predictions out, drift measured and reported.

Layers (enforced by the ``runtime-layers`` and ``runtime-pure`` contracts in ``.importlinter``):

- ``main`` → ``app``, the I/O shell (threads, MQTT, HTTP, reports, model polling);
- I/O adapters: ``http``, ``mqtt``, ``reporting``, ``models``, ``windowlog``, ``config``, ``logs``;
- pure, no I/O: ``pipeline`` (the message path) over ``inference``, ``drift``, ``window``,
  ``partition`` and ``payloads``; and ``metrics`` (Prometheus objects, served by ``http``).
"""
