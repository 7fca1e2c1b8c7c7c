"""Request → token ids for the precise prefix scorer (kv-events contract §1.3), offline.

Tokenizer, looked for in this order and never downloaded:
1. `local.modelTokenizerMap[modelName]`, then the files auto-discovered under
   `local.autoDiscoveryDir` (env `LOCAL_TOKENIZER_DIR`, default `/mnt/models`)
   named `local.autoDiscoveryTokenizerFileName` (env `LOCAL_TOKENIZER_FILENAME`,
   default `tokenizer.json`), as upstream's `local` backend;
2. with `hf.enabled` (default): `modelName` as a local directory, then
   `hf.tokenizersCacheDir` and the Hugging Face hub cache (`HF_HUB_CACHE`,
   `HF_HOME/hub`, `~/.cache/huggingface/hub`) — where upstream would download to;
3. otherwise the simple tokenizer of llm-d-inference-sim and `pyllmd sim`, which
   is what those simulators hash with when they have no Hugging Face tokenizer.
`uds` (an external tokenizer service) is not supported and is ignored with a warning.

Text: `/v1/completions` → the `prompt` string, with special tokens (as vLLM).
`/v1/chat/completions` → there is no chat template offline, so the text is the
one our simulator (and upstream's) tokenizes for chat: each message's content
(a string, or its `text` parts each followed by a space) joined with single
spaces and stripped, with special tokens. With a real vLLM, whose chat template
renders roles and markers, chat prompts therefore do not match; completions do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyllmd.core.tokenize import (
    HFTokenizer,
    SimpleTokenizer,
    Tokenizer,
    discover_tokenizers,
    find_tokenizer_file,
)
from pyllmd.epp.kvindex.params import TokenizerSettings
from pyllmd.epp.scheduling.registry import ParamError
from pyllmd.epp.scheduling.types import LLMRequest

log = logging.getLogger(__name__)


def hub_cache_dirs(env: Mapping[str, str]) -> list[str]:
    """Where a Hugging Face hub cache may already hold the tokenizer."""
    dirs = [env.get("HF_HUB_CACHE", "")]
    if env.get("HF_HOME"):
        dirs.append(str(Path(env["HF_HOME"]) / "hub"))
    dirs.append(str(Path("~/.cache/huggingface/hub").expanduser()))
    return [d for d in dirs if d]


def resolve_tokenizer(t: TokenizerSettings, env: Mapping[str, str] | None = None) -> Tokenizer:
    """The tokenizer for `t.model_name` (module doc order); ParamError when none may be used."""
    env = os.environ if env is None else env
    model = t.model_name
    if t.uds_socket:
        log.warning("precise-prefix-cache-scorer: the uds tokenizer is not supported; ignored")
    local = {name: Path(path) for name, path in t.local_map.items() if path}
    for name, path in discover_tokenizers(t.local_dir, t.local_file).items():
        local.setdefault(name, path)
    if model in local:
        return _loaded(HFTokenizer(local[model]), model)
    if not t.hf_enabled and not local and not t.uds_socket:
        raise ParamError("at least one tokenizer config must be enabled")
    if t.hf_enabled:
        for directory in ("", t.hf_cache_dir, *hub_cache_dirs(env)):
            found = find_tokenizer_file(model, directory)
            if found is not None:
                return _loaded(HFTokenizer(found), model)
    log.warning(
        "precise-prefix-cache-scorer: no tokenizer.json for model %s on disk (nothing is "
        "downloaded); using the simple tokenizer, which matches pyllmd sim and "
        "llm-d-inference-sim running without a Hugging Face tokenizer",
        model,
    )
    return SimpleTokenizer()


def _loaded(tokenizer: HFTokenizer, model: str) -> Tokenizer:
    log.info("precise-prefix-cache-scorer: tokenizer of %s from %s", model, tokenizer.path)
    return tokenizer


def content_text(content: Any) -> str:
    """A message's plain text as our simulator reads it (string, or text parts + space)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        return ""
    parts = []
    for block in content:
        if isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text")
            parts.append(f"{text if isinstance(text, str) else ''} ")
    return "".join(parts)


def chat_text(messages: Any) -> str:
    """The text the simulators tokenize for a chat request (module doc)."""
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        return ""
    texts = [content_text(m.get("content")) if isinstance(m, Mapping) else "" for m in messages]
    return " ".join(texts).strip()


def request_tokens(tokenizer: Tokenizer, request: LLMRequest) -> list[int] | None:
    """The token ids the engine will hash for `request`; None when it has no usable input
    (neither a completions prompt string nor chat messages)."""
    if request.api == "chat-completions":
        messages = request.body.get("messages")
        if not isinstance(messages, list):
            return None
        return tokenizer.ids(chat_text(messages), add_special_tokens=True)
    if request.api == "completions":
        prompt = request.body.get("prompt")
        if not isinstance(prompt, str):
            return None
        return tokenizer.ids(prompt, add_special_tokens=True)
    return None
