"""Pure renderers: parsed spec in, Kubernetes objects out. No I/O here."""
