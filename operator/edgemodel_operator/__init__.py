"""The EdgeModel operator: kopf handlers, a level-based reconcile, pure renderers."""
