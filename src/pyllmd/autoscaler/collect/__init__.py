"""Metrics collection: PromQL rendering and result parsing (pure), and the backends
(the Prometheus HTTP client, direct EPP scraping)."""
