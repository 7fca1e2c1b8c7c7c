"""Data sources that feed the decision core: metrics and model scrapes, the endpoints file,
Kubernetes discovery, and the KV-event subscribers."""
