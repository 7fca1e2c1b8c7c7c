"""Kubernetes authentication and authorization of `/metrics` scrapers.

What controller-runtime's metrics filter does for the EPP
(`--metrics-endpoint-auth`) and the autoscaler (`--metrics-secure`): the
scraper's bearer token is checked with a `TokenReview`, then the user it
names is checked with a `SubjectAccessReview` for the non-resource URL (the
request path, verb = the lower-cased method). No token, an unknown token or a
failed review → 401 `Unauthorized`; a denied user → 403 `Authorization denied
for user <name>`; an authorization call that fails → 500. Results are cached
as the Kubernetes delegating authenticator and authorizer cache them: token
reviews 1 minute, allowed 5 minutes, denied 30 seconds; failed calls are not
cached.

Hand-written: the Go filter lives in client-go's apiserver packages, which
have no Python port; the two reviews are plain `create` calls of lightkube.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from aiohttp import web
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.models.authorization_v1 import NonResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.authorization_v1 import SubjectAccessReview

from pyllmd.core.clock import Clock

__all__ = [
    "AUTHN_TTL",
    "Decision",
    "KubeAuthorizer",
    "User",
    "bearer_token",
    "guarded_handler",
    "refuse_all",
]

log = logging.getLogger(__name__)

AUTHN_TTL = 60.0  # seconds a token review is remembered (success or rejection)
ALLOW_TTL = 300.0
DENY_TTL = 30.0
Review = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class User:
    """Who a token belongs to, as the TokenReview reported it."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Decision:
    """The HTTP outcome of one scrape's review."""

    status: int  # 200, 401, 403 or 500
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


UNAUTHORIZED = Decision(401, "Unauthorized")


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header, else ''."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclass
class _Cache:
    """Entries that expire `ttl` seconds after they were stored (on the injected clock)."""

    entries: dict[Any, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: Any, now: float) -> Any:
        hit = self.entries.get(key)
        if hit is None or hit[0] <= now:
            self.entries.pop(key, None)
            return None
        return hit[1]

    def put(self, key: Any, value: Any, expires: float) -> None:
        if len(self.entries) > 4096:  # scrapers are few; a flood of bad tokens must not grow it
            self.entries.clear()
        self.entries[key] = (expires, value)


class KubeAuthorizer:
    """TokenReview + SubjectAccessReview with the delegating caches' lifetimes."""

    def __init__(self, client: AsyncClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self._users = _Cache()
        self._access = _Cache()

    async def decide(self, authorization: str, path: str, method: str) -> Decision:
        """The outcome for a request with this `Authorization` header, path and method."""
        token = bearer_token(authorization)
        if not token:
            return UNAUTHORIZED
        user = await self._authenticate(token)
        if user is None:
            return UNAUTHORIZED
        return await self._authorize(user, path, method.lower())

    async def _authenticate(self, token: str) -> User | None:
        now = self.clock.now()
        cached = self._users.get(token, now)
        if cached is not None:
            return cached if isinstance(cached, User) else None
        review = TokenReview(spec=TokenReviewSpec(token=token))
        try:
            result = await self.client.create(review)
        except (ApiError, OSError, httpx2.HTTPError) as err:
            log.warning("token review failed: %s", err)
            return None
        status = result.status
        if status is None or not status.authenticated or status.user is None:
            self._users.put(token, False, now + AUTHN_TTL)
            return None
        u = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (u.extra or {}).items()))
        user = User(u.username or "", u.uid or "", tuple(u.groups or ()), extra)
        self._users.put(token, user, now + AUTHN_TTL)
        return user

    async def _authorize(self, user: User, path: str, verb: str) -> Decision:
        now = self.clock.now()
        key = (user, path, verb)
        cached = self._access.get(key, now)
        if cached is not None:
            return _verdict(user, bool(cached))
        review = SubjectAccessReview(
            spec=SubjectAccessReviewSpec(
                user=user.name,
                uid=user.uid or None,
                groups=list(user.groups) or None,
                extra={k: list(v) for k, v in user.extra} or None,
                nonResourceAttributes=NonResourceAttributes(path=path, verb=verb),
            )
        )
        try:
            result = await self.client.create(review)
        except (ApiError, OSError, httpx2.HTTPError) as err:
            log.warning("subject access review for %s failed: %s", user.name, err)
            return Decision(500, f"Authorization for user {user.name} failed")
        allowed = bool(result.status is not None and result.status.allowed)
        self._access.put(key, allowed, now + (ALLOW_TTL if allowed else DENY_TTL))
        if not allowed:
            reason = result.status.reason if result.status is not None else ""
            log.info("metrics scrape denied for %s: %s", user.name, reason or "no reason given")
        return _verdict(user, allowed)


def _verdict(user: User, allowed: bool) -> Decision:
    return Decision(200) if allowed else Decision(403, f"Authorization denied for user {user.name}")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Decide = Callable[[str, str, str], Awaitable[Decision]]


def guarded_handler(handler: Handler, decide: Decide) -> Handler:
    """`handler`, answered only after `decide` allows the request (plain-text errors otherwise)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        decision = await decide(
            request.headers.get("Authorization", ""), request.path, request.method
        )
        if not decision.allowed:
            return web.Response(status=decision.status, text=decision.message + "\n")
        return await handler(request)

    return guarded


def refuse_all(reason: str) -> Decide:
    """No API server configured: nothing can be reviewed, so all is refused."""

    async def decide(authorization: str, _path: str, _method: str) -> Decision:
        if not bearer_token(authorization):
            return UNAUTHORIZED
        return Decision(403, reason)

    return decide
