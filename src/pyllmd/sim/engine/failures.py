"""Failure injection (`--failure-injection-rate`, `--failure-types`, spec §9).

Pure: the caller passes its seeded `random.Random`, so a run with `--seed` is
reproducible. The texts are part of the wire contract and must stay exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pyllmd.core.errors import LlmdError
from pyllmd.sim.engine.vocab import FAILURE_TYPES

# type -> (HTTP status, message template with {model}, param)
_FAILURES: dict[str, tuple[int, str, str | None]] = {
    "rate_limit": (
        429,
        "Rate limit reached for {model} in organization org-xxx on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1.",
        None,
    ),
    "invalid_api_key": (401, "Incorrect API key provided.", None),
    "context_length": (
        400,
        "This model's maximum context length is 4096 tokens. "
        "However, your messages resulted in 4500 tokens.",
        "messages",
    ),
    "server_error": (503, "The server is overloaded or not ready yet.", None),
    "invalid_request": (400, "Invalid request: missing required parameter 'model'.", "model"),
    "model_not_found": (404, "The model '{model}-nonexistent' does not exist", "model"),
}


def failure_error(failure_type: str, model: str) -> LlmdError:
    """The error a client gets for one injected failure type."""
    status, template, param = _FAILURES[failure_type]
    return LlmdError(status, template.format(model=model), param)


def pick_failure(
    rng: random.Random, rate: int, types: Sequence[str], model: str
) -> LlmdError | None:
    """Decide whether this request fails, and how.

    A uniform integer in [1, 100] at most `rate` means failure; its type is
    drawn uniformly from `types` (all six when empty). At rate 0 nothing is
    drawn, so the random stream is left as it was.
    """
    if rate <= 0:
        return None
    if rng.randint(1, 100) > rate:
        return None
    pool = types or FAILURE_TYPES
    return failure_error(pool[rng.randrange(len(pool))], model)
