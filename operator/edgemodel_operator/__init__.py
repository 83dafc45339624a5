"""The EdgeModel operator: kopf wiring, a level-based reconcile, and pure renderers.

Layers, from the top (each may import only those below it):

- ``main``, ``handlers``: the console script and the kopf wiring; thin.
- ``reconcile``: one idempotent pass that reads, renders, applies and reports.
- ``kube``, ``leader``, ``metrics``: I/O at the edges; ``kube`` is the only module
  that talks to the API server.
- ``render.*``, ``conditions``, ``summary``, ``policy``, ``status``, ``resource``, ``shard``,
  ``names``, ``settings``: pure; no kopf, no kubernetes client, no I/O.
"""
