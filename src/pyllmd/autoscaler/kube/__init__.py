"""Kubernetes access: the API server client, watch-fed caches, object parsing,
InferencePools and label selectors."""
