"""`--dataset-url`: the dataset file fetched at start-up, before the simulator listens.

The download uses aiohttp (already the server's HTTP library) and writes to
`<path>.part`, renamed on success, so a failed download never leaves a file that
the next start would take for the dataset.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import aiohttp

from pyllmd.core.errors import ConfigError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


async def download_dataset(url: str, path: str) -> bool:
    """Fetch `url` into `path` unless `path` exists; True if it downloaded.

    Parent directories are created. Non-200, an empty body or a broken transfer is
    a ConfigError and leaves no file behind.
    """
    target = Path(path)
    if target.exists():
        log.info("dataset %s exists, not downloading", path)
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"failed to create parent directory: {e}") from None
    part = target.with_name(target.name + ".part")
    try:
        written = await _fetch(url, part)
        if written == 0:
            raise ConfigError("downloaded file is empty")
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    log.info("downloaded dataset from %s to %s (%d bytes)", url, path, written)
    return True


async def _fetch(url: str, part: Path) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as resp,
        ):
            if resp.status != 200:
                status = f"{resp.status} {resp.reason or ''}".rstrip()
                raise ConfigError(f"dataset download bad status: {status}")
            total, written, step = resp.content_length or 0, 0, 10
            with part.open("wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    if total and written * 100 >= total * step:
                        log.info("dataset download %d%%", written * 100 // total)
                        step = written * 100 // total // 10 * 10 + 10
                out.flush()
                os.fsync(out.fileno())
            return written
    except (TimeoutError, aiohttp.ClientError, ValueError) as e:
        reason = str(e) or type(e).__name__
        raise ConfigError(f"failed to download dataset from {url}: {reason}") from None
    except OSError as e:
        raise ConfigError(f"failed to write dataset {part}: {e}") from None


def ensure_dataset_file(url: str, path: str) -> None:
    """Start-up step of `pyllmd sim`: download the dataset when a URL is given."""
    if url and path:
        try:
            asyncio.run(download_dataset(url, path))
        except ConfigError as e:  # upstream's text, naming the flag
            raise ConfigError(f"--dataset-url: {e}") from None
