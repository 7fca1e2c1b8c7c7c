"""PreRequest plugins: run after scheduling, before the request is forwarded."""
