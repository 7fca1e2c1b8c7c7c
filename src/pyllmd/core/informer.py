"""A watch-fed cache feeder for one resource kind, like a controller-runtime informer.

`Informer.run` lists the objects once, hands the listing to `on_list`, then
watches from the listing's resourceVersion and hands every event to
`on_event`. A watch that ends (the server's timeout, a dropped connection, an
API server restart) resumes from the last resourceVersion seen, without a new
listing; only a watch whose resourceVersion has expired (410 Gone) lists again,
at once. A failed listing is retried with backoff (`retry_delay`, doubling up
to 30 s). The callbacks are synchronous so that each change is applied whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import OnErrorAction, OnErrorResult

__all__ = ["Informer", "is_gone"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def is_gone(err: BaseException) -> bool:
    """Whether `err` says the watched resourceVersion is too old (410 Gone / Expired)."""
    if isinstance(err, ApiError) and err.status is not None and err.status.code == 410:
        return True
    if isinstance(err, httpx2.HTTPStatusError):  # a plain 410 response to the watch request
        response: httpx2.Response | None = err.response
        return response is not None and response.status_code == 410
    return False


def _watch_error(err: Exception, count: int) -> OnErrorResult:
    if is_gone(err):
        return OnErrorResult(OnErrorAction.RAISE)  # history gone: list again
    delay = min(5.0, 0.1 * 2 ** min(count, 6))
    log.warning("watch failed (%s); resuming in %.1fs", err, delay)
    return OnErrorResult(OnErrorAction.RETRY, sleep=delay)


class Informer:
    """List once, then watch from the listing's resourceVersion; list again only on 410.

    `namespace` is a namespace, `*` for all, or "" for a cluster-scoped resource.

    `synced` is set once the first listing was delivered; `lists` counts the
    listings made (for diagnostics and tests).
    """

    def __init__(
        self,
        client: AsyncClient,
        res: Any,
        namespace: str,
        on_list: Callable[[list[Obj]], None],
        on_event: Callable[[str, Obj], None],
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
    ) -> None:
        self.client, self.res, self.namespace = client, res, namespace
        self.on_list, self.on_event = on_list, on_event
        self.labels: dict[str, Any] | None = dict(labels) if labels else None
        self.fields: dict[str, Any] | None = dict(fields) if fields else None
        self.watch_timeout, self.retry_delay = watch_timeout, retry_delay
        self.synced = asyncio.Event()
        self.lists = 0

    async def run(self) -> None:
        """Forever (until cancelled)."""
        kind = self.res.__name__
        failures = 0
        while True:
            try:
                version = await self._list()
                failures = 0
                stream = self.client.watch(
                    self.res,
                    namespace=self.namespace or None,
                    labels=self.labels,
                    fields=self.fields,
                    resource_version=version,
                    server_timeout=self.watch_timeout,
                    on_error=_watch_error,
                )
                async for event_type, obj in stream:
                    self.on_event(event_type, _plain(obj))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a cache must outlive API hiccups
                if is_gone(err):
                    log.info("%s watch in %s expired; listing again", kind, self.namespace)
                    continue
                failures += 1
                delay = min(30.0, self.retry_delay * 2 ** min(failures - 1, 5))
                log.warning(
                    "%s list/watch in %s failed (%s); listing again in %.1fs",
                    kind, self.namespace, err, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        self.lists += 1
        listing = self.client.list(
            self.res, namespace=self.namespace or None, labels=self.labels, fields=self.fields
        )
        objs = [_plain(o) async for o in listing]
        self.on_list(objs)
        self.synced.set()
        return str(listing.resourceVersion)


def _plain(obj: Any) -> Obj:
    """A dict-backed lightkube object as its JSON dict."""
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    assert isinstance(result, dict)
    return result
