"""Response text and length for random and echo modes (spec §2.5), and the dataset hook.

All randomness comes from the caller's `random.Random`, so a seeded run is
repeatable. The sentences are our own; only their role (a fixed pool, picked
uniformly, pre-tokenized once) follows upstream. With `--dataset-path`, random
mode answers from the dataset instead (§10.2, `pyllmd.sim.dataset.lookup`; the
composition root opens the file), padding with these sentences when `ignore_eos`
asks for more tokens than the row has.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from pyllmd.core.tokenize import Tokenizer
from pyllmd.sim.dataset.lookup import ChatMessage, Dataset, chat_key, fit, prompt_key

SENTENCES: tuple[str, ...] = (
    "The lighthouse keeper counted ships until the fog rolled in from the bay.",
    "A patient gardener knows that roots grow quietly long before any blossom appears "
    "above the soil.",
    "Rain tapped on the tin roof all night.",
    "Every compiler warning is a small letter from your future self, asking politely "
    "for a little more care today.",
    "The recipe said to fold the egg whites gently, so Marta folded them like old maps.",
    "In the shell, write if a < b && b > c then echo ok, and watch the prompt.",
    "Trains leave the northern station at dawn, carrying newspapers, coffee and sleepy "
    "engineers toward the harbour.",
    "She tuned the old piano one string at a time.",
    "When the river froze, the whole village skated to the market instead of walking "
    "the long road around the hills.",
    "Good maps leave room for the places nobody has visited yet.",
    "Our team measured the queue twice, found it twice as long as expected, and "
    "quietly doubled the number of servers before lunch.",
)

# Histogram buckets of the response length when max_tokens is given (spec §2.5).
_CUMULATIVE = (0.2, 0.5, 0.7, 0.75, 0.85)
_LAST_BUCKET_FROM = 0.85
_NORMAL_MEAN = 40.0
_NORMAL_SD = 20.0
_MAX_RESAMPLES = 100


def randbelow(rng: random.Random, n: int) -> int:
    """`rng.randrange(n)` for n >= 1: the same draws (CPython's rejection sampling
    on `getrandbits`), hence the same seeded stream, in one Python call instead of
    two (three for `randint`); it runs once or twice per request."""
    k = n.bit_length()
    r = rng.getrandbits(k)
    while r >= n:
        r = rng.getrandbits(k)
    return r


def _bucket_bounds(index: int, max_tokens: int) -> tuple[int, int]:
    """Inclusive [start, end] of histogram bucket `index` (0..4) for `max_tokens` > 6."""
    if max_tokens <= 101:
        width = (max_tokens - 1) / 5
        start, end = math.floor(width * index) + 1, math.floor(width * (index + 1))
    elif index < 3:
        start, end = 20 * index + 1, 20 * (index + 1)
    elif index == 3:
        start, end = 61, max_tokens - 20
    else:
        start, end = max_tokens - 19, max_tokens
    end = min(end, max_tokens - 1)  # only the r > 0.85 branch yields max_tokens itself
    return start, max(start, end)


def histogram_length(rng: random.Random, max_tokens: int) -> int:
    """Response length for a request with `max_tokens` (about 15% hit the limit)."""
    if max_tokens <= 1:
        return max_tokens
    if max_tokens <= 6:
        return 1 + randbelow(rng, max_tokens)  # rng.randint(1, max_tokens)
    r = rng.random()
    if r > _LAST_BUCKET_FROM:
        return max_tokens
    index = bisect_left(_CUMULATIVE, r)  # the first bucket whose cumulative share is >= r
    start, end = _bucket_bounds(index, max_tokens)
    return start + randbelow(rng, end - start + 1)  # rng.randint(start, end)


def _normal_length(rng: random.Random, limit: int) -> int:
    """round(N(40, 20)) within [1, limit]: resampled a bounded number of times, then clamped."""
    x = rng.gauss(_NORMAL_MEAN, _NORMAL_SD)
    for _ in range(_MAX_RESAMPLES):
        if 1 <= x <= limit:
            break
        x = rng.gauss(_NORMAL_MEAN, _NORMAL_SD)
    length = math.floor(x + 0.5)  # Go's math.Round: half away from zero (x > 0 here)
    return min(max(length, 1), limit)


def completion_length(
    rng: random.Random,
    max_tokens: int | None,
    ignore_eos: bool,
    max_model_len: int,
    prompt_tokens: int,
) -> tuple[int, str]:
    """Number of tokens to generate and the finish reason ("stop" or "length").

    * `ignore_eos` with `max_tokens` → exactly `max_tokens`, "length".
    * `max_tokens` → the histogram rule; "length" only when it reaches `max_tokens`.
    * neither → Normal(40, 20) within the room left in the context window; "length"
      when it fills that room. Deviation from upstream, which loops forever when there
      is no room (`max_model_len - prompt_tokens < 1`): we return (0, "length").
      The resampling is bounded too (then clamped), so a tiny room cannot stall.
    """
    if max_tokens is not None:
        length = max_tokens if ignore_eos else histogram_length(rng, max_tokens)
        return length, "length" if length == max_tokens else "stop"
    room = max_model_len - prompt_tokens
    if room < 1:
        return 0, "length"
    length = _normal_length(rng, room)
    return length, "length" if length == room else "stop"


class RandomText:
    """Random-mode responses: the pre-tokenized sentence pool, or a dataset when one is open."""

    def __init__(self, tokenizer: Tokenizer, dataset: Dataset | None = None) -> None:
        self.tokenizer = tokenizer
        self.dataset = dataset
        self._sentences: tuple[tuple[str, ...], ...] = tuple(
            tuple(tokenizer.encode(s)[1]) for s in SENTENCES
        )

    def chat_keys(self, messages: Iterable[ChatMessage] | None) -> tuple[bytes, ...]:
        """Dataset keys of a chat request, tried before its prompt key; () without a dataset."""
        if self.dataset is None:
            return ()
        return (chat_key(self.tokenizer, messages or ()),)

    def generate(
        self,
        rng: random.Random,
        prompt_ids: Sequence[int],
        keys: Sequence[bytes],
        max_tokens: int | None,
        ignore_eos: bool,
        max_model_len: int,
    ) -> tuple[list[str], str]:
        """Random-mode response tokens and finish reason.

        Without a dataset: `completion_length` tokens of the sentence pool. With one:
        the row chosen by the §10.2 rules for `keys` then the prompt-id key, cut or
        padded to at most `max_tokens` (else the room left in the context window).
        """
        if self.dataset is None:
            length, finish = completion_length(
                rng, max_tokens, ignore_eos, max_model_len, len(prompt_ids)
            )
            return self.tokens(rng, length), finish
        limit = max_tokens if max_tokens is not None else max(0, max_model_len - len(prompt_ids))
        tried = (*keys, prompt_key(prompt_ids))
        row = self.dataset.respond(rng, dict.fromkeys(tried), limit, ignore_eos)
        return fit(row, limit, ignore_eos, lambda n: self.tokens(rng, n))

    def close(self) -> None:
        """Release the dataset file, if any."""
        if self.dataset is not None:
            self.dataset.close()

    def tokens(self, rng: random.Random, n: int) -> list[str]:
        """Exactly `n` token strings: whole random sentences, the last one cut short.

        Joined with "" they read as text; the token count is what usage reports.
        """
        out: list[str] = []
        while len(out) < n:
            sentence = self._sentences[randbelow(rng, len(self._sentences))]
            if out:
                out[-1] += " "  # sentences are separated by one space, as in upstream
            out.extend(sentence[: n - len(out)])
        return out


def echo_tokens(prompt_tokens: list[str], max_tokens: int | None) -> tuple[list[str], str]:
    """Echo mode: the prompt's tokens, never truncated; "length" if they reach `max_tokens`."""
    finish = "length" if max_tokens is not None and len(prompt_tokens) >= max_tokens else "stop"
    return list(prompt_tokens), finish
