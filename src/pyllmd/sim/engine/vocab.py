"""The simulator's small shared vocabulary: finish reasons and injected failure types.

A leaf module (it imports nothing of the project), so the settings (`config/rules.py`
checks `--failure-types` and `--fake-metrics` against these names), the response
bodies, the metrics and the engine all take their names from here instead of from
each other.
"""

from __future__ import annotations

FINISH_REASONS: tuple[str, ...] = (
    "stop",
    "length",
    "tool_calls",
    "remote_decode",
    "cache_threshold",
)
"""Every `finish_reason` the simulator reports (also the `request_success_total` labels)."""

FAILURE_TYPES: tuple[str, ...] = (
    "rate_limit",
    "invalid_api_key",
    "context_length",
    "server_error",
    "invalid_request",
    "model_not_found",
)
"""The `--failure-types` values (spec §9); an empty list means all of them."""
