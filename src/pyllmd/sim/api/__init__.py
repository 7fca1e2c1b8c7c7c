"""The OpenAI-compatible surface of the simulator as data: request models and their
validation, response bodies and SSE chunks (no I/O; the server writes them)."""
