"""Tokenizers shared by the simulator and the EPP: the simple one and local Hugging Face ones.

Simple tokenizer (llm-d-inference-sim's, simulator spec §12.1): a token is one
punctuation character or one run of ASCII word characters, plus the whitespace
that follows it; anything else is dropped. Its id is the FNV-1a 32-bit hash of its
UTF-8 bytes. It is what our simulator (and upstream's, offline) uses when no
`tokenizer.json` is on disk, so the EPP's precise prefix scorer tokenizes the same
way to compute the same KV-block keys.

Hugging Face tokenizer: a local `tokenizer.json` run by the `tokenizers` library.
Nothing here ever touches the network: a tokenizer is found on disk or not at all
(upstream downloads from the Hub; a routing decision must not depend on that).

FNV-1a-32 comes from `fnv-c` (C). Ids of repeated token strings are memoised,
since prompts repeat words.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Protocol

import fnv_c

from pyllmd.core.errors import ConfigError

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"

# Same alternatives, in the same order, as upstream (order matters: leftmost-first,
# so "_x" yields "_" then "x"). `\w` and `\s` are spelled out because Python's are
# Unicode-aware and include \v; upstream's (Go RE2) are ASCII-only and exclude \v.
_TOKEN_RE = re.compile(
    r"""(?:\{|\}|:|,|-|\.|\?|!|;|@|\#|\$|%|\^|&|\*|\(|\)|\+|-|_|~|/|\\|>|<|\[|\]|=|"|[0-9A-Za-z_]+)"""
    r"[\t\n\f\r ]*"
)


def fnv1a_32(data: bytes) -> int:
    """FNV-1a 32-bit hash of `data`."""
    return int(fnv_c.fnv1a_32(data))


_IDS: dict[str, int] = {}  # token string → id; started afresh before it passes _IDS_MAX
_IDS_MAX = 65_536


def token_id(token: str) -> int:
    """Id of one token string (FNV-1a-32 of its UTF-8 bytes, trailing whitespace included)."""
    return token_ids([token])[0]


def token_ids(tokens: list[str]) -> list[int]:
    """Ids of token strings. Most of a prompt's tokens were seen before, so the
    all-known case is one C-level pass over the memo (a long prompt has thousands)."""
    try:
        return list(map(_IDS.__getitem__, tokens))
    except KeyError:
        pass
    missing = set(tokens).difference(_IDS)
    if len(_IDS) + len(missing) > _IDS_MAX:
        _IDS.clear()
        missing = set(tokens)
    for token in missing:
        _IDS[token] = fnv1a_32(token.encode("utf-8"))
    return list(map(_IDS.__getitem__, tokens))


class Tokenizer(Protocol):
    """Token ids (and the text of each token) of a string."""

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """Token ids and token strings of `text`, special tokens added."""
        ...

    def tokens(self, text: str) -> list[str]:
        """Only the token strings of `text`."""
        ...

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        ...

    def ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Only the token ids of `text`; `add_special_tokens=False` omits e.g. BOS."""
        ...


class SimpleTokenizer:
    """Stateless regex tokenizer; it has no special tokens. One shared instance is enough."""

    name = "simple"

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        strs = self.tokens(text)
        return token_ids(strs), strs

    def tokens(self, text: str) -> list[str]:
        return _TOKEN_RE.findall(text)  # no capturing group: whole matches

    def count(self, text: str) -> int:
        return len(_TOKEN_RE.findall(text))

    def ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return token_ids(_TOKEN_RE.findall(text))


class HFTokenizer:
    """A Hugging Face `tokenizer.json`, run by the `tokenizers` library.

    `encode` adds special tokens (as vLLM does for a prompt); a token's string is
    the slice of the input its offsets cover, as upstream does, so an added special
    token has the empty string.
    """

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _HF

        self.path = path
        self.name = str(path)
        try:
            self._tok = _HF.from_file(str(path))
        except Exception as e:  # the library raises plain Exception for bad files
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"cannot load tokenizer {path}: {first}") from None

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        enc = self._tok.encode(text, add_special_tokens=True)
        return list(enc.ids), [text[start:end] for start, end in enc.offsets]

    def tokens(self, text: str) -> list[str]:
        return self.encode(text)[1]

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=True).ids)

    def ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)


def hub_model_name(dir_name: str) -> str | None:
    """`models--org--name` (a Hugging Face hub cache entry) → `org/name`, else None."""
    prefix = "models--"
    if not dir_name.startswith(prefix) or len(dir_name) == len(prefix):
        return None
    return "/".join(dir_name[len(prefix) :].split("--"))


def find_tokenizer_file(model: str, cache_dir: str) -> Path | None:
    """The local `tokenizer.json` for `model`, looked for in this order, or None.

    1. `model` itself is a directory holding `tokenizer.json` (a local model path);
    2. `<cache_dir>/<model>/tokenizer.json` (where upstream's downloader stores it);
    3. `<cache_dir>/models--<org>--<name>/snapshots/<rev>/tokenizer.json` (the Hugging
       Face hub cache layout): the revision `refs/main` names, else the newest one.
    """
    if not model:
        return None
    local = Path(model) / TOKENIZER_FILE
    if local.is_file():
        return local
    if not cache_dir:
        return None
    root = Path(cache_dir)
    direct = root / model / TOKENIZER_FILE
    if direct.is_file():
        return direct
    repo = root / ("models--" + model.replace("/", "--"))
    main_ref = repo / "refs" / "main"
    if main_ref.is_file():
        pinned = repo / "snapshots" / main_ref.read_text().strip() / TOKENIZER_FILE
        if pinned.is_file():
            return pinned
    found = [p for p in (repo / "snapshots").glob(f"*/{TOKENIZER_FILE}") if p.is_file()]
    return max(found, key=lambda p: (p.stat().st_mtime, str(p))) if found else None


def discover_tokenizers(base_dir: str, file_name: str = TOKENIZER_FILE) -> dict[str, Path]:
    """Model name → tokenizer file for every `file_name` under `base_dir` (recursively).

    The model name is `org/name` when the path crosses a hub cache entry
    (`models--org--name`), else the directory path relative to `base_dir`
    (`/mnt/models/Qwen/Qwen3/tokenizer.json` → `Qwen/Qwen3`). The first file found
    for a name wins (paths are visited in sorted order, so the result is stable).
    A missing or unreadable directory yields nothing.
    """
    found: dict[str, Path] = {}
    if not base_dir or not file_name:
        return found
    root = Path(base_dir)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if file_name not in filenames:
            continue
        path = Path(dirpath) / file_name
        rel = path.relative_to(root).parts
        name = next((n for n in map(hub_model_name, rel) if n is not None), None)
        if name is None:
            name = "/".join(rel[:-1]) or "."
        found.setdefault(name, path)
    return found


def load_tokenizer(model: str, cache_dir: str) -> Tokenizer:
    """The model's Hugging Face tokenizer when one is on disk, else the simple one.

    Never touches the network (upstream asks huggingface.co first). A tokenizer
    file that exists but cannot be loaded is a start-up error (ConfigError), not a
    silent fallback: the user put it there to be used.
    """
    path = find_tokenizer_file(model, cache_dir)
    if path is None:
        log.info("tokenizer: simple (no tokenizer.json for model=%s under %s)", model, cache_dir)
        return SimpleTokenizer()
    log.info("tokenizer: Hugging Face %s", path)
    return HFTokenizer(path)
