"""Leader election over a `coordination.k8s.io/v1` Lease, as controller-runtime does it.

Two controller replicas run; only the one holding the Lease runs the engines.
The rules are client-go's (`tools/leaderelection`): a candidate tries every
retry period; a lease counts as held while its holder is set and its content
changed less than `leaseDurationSeconds` ago *as seen by this process* (local
observation time, so clocks of different nodes need not agree); the leader
renews every retry period and steps down when no renewal succeeded within the
renew deadline; on shutdown it releases the lease (holder cleared, 1 s
duration) so the other replica takes over at its next try. Writes carry the
resourceVersion read, so of two racing candidates one gets 409 and loses.

Hand-written rather than a library: no maintained asyncio port of client-go's
elector exists for lightkube, and the decision is a few pure lines
(`decide`, `renew_deadline_exceeded`) that are tested as a table. Unlike
client-go, the retry period has no jitter: with two replicas a 409 settles
any race.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from pyllmd.core.clock import Clock
from pyllmd.core.kubeclient import resource_type

log = logging.getLogger(__name__)

T = TypeVar("T")

Lease = resource_type("coordination.k8s.io", "v1", "Lease", "leases")
RELEASED_LEASE_SECONDS = 1
RELEASE_TIMEOUT = 5.0  # seconds a shutting-down leader waits for its release write


# -- the pure core ------------------------------------------------------------------------


class Action(Enum):
    """What a candidate does with the lease it read."""

    ACQUIRE = "acquire"  # absent, expired or released: take it
    RENEW = "renew"  # mine: write a fresh renewTime
    FOLLOW = "follow"  # someone else holds it: wait


@dataclass(frozen=True)
class LeaseRecord:
    """The `spec` of a Lease; times are Unix seconds (None when unset)."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: float | None = None
    renew_time: float | None = None
    lease_transitions: int = 0


@dataclass(frozen=True)
class Verdict:
    """The action and, unless following, the record to write."""

    action: Action
    record: LeaseRecord | None = None


def decide(
    current: LeaseRecord | None,
    *,
    identity: str,
    observed_at: float,
    now: float,
    wall: float,
    lease_duration: float,
) -> Verdict:
    """client-go's tryAcquireOrRenew decision.

    `observed_at` and `now` are local monotonic seconds (`observed_at` = when
    this process first saw `current` with its present content); `wall` stamps
    the written times.
    """
    seconds = max(1, round(lease_duration))
    if current is None:
        mine = LeaseRecord(identity, seconds, wall, wall, 0)
        return Verdict(Action.ACQUIRE, mine)
    if current.holder_identity == identity:
        renewed = replace(current, lease_duration_seconds=seconds, renew_time=wall)
        return Verdict(Action.RENEW, renewed)
    if current.holder_identity and now < observed_at + current.lease_duration_seconds:
        return Verdict(Action.FOLLOW)
    taken = LeaseRecord(identity, seconds, wall, wall, current.lease_transitions + 1)
    return Verdict(Action.ACQUIRE, taken)


def renew_deadline_exceeded(attempts_since: float, now: float, renew_deadline: float) -> bool:
    """True when renewals attempted since `attempts_since` failed for the whole deadline."""
    return now - attempts_since >= renew_deadline


def released(record: LeaseRecord, wall: float) -> LeaseRecord:
    """The record a leader writes when it gives the lease up (release-on-cancel)."""
    return LeaseRecord("", RELEASED_LEASE_SECONDS, wall, wall, record.lease_transitions)


def format_micro_time(wall: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 time (fraction optional); None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def record_from_spec(spec: Any) -> LeaseRecord:
    """Read a Lease `spec` leniently (missing or odd fields become defaults)."""
    spec = spec if isinstance(spec, dict) else {}

    def integer(key: str) -> int:
        value = spec.get(key)
        return value if isinstance(value, int) else 0

    holder = spec.get("holderIdentity")
    return LeaseRecord(
        holder_identity=holder if isinstance(holder, str) else "",
        lease_duration_seconds=integer("leaseDurationSeconds"),
        acquire_time=parse_micro_time(spec.get("acquireTime")),
        renew_time=parse_micro_time(spec.get("renewTime")),
        lease_transitions=integer("leaseTransitions"),
    )


def spec_from_record(record: LeaseRecord, previous: Any = None) -> dict[str, Any]:
    """The Lease `spec` for `record`, keeping fields of `previous` this code does not own."""
    spec = dict(previous) if isinstance(previous, dict) else {}
    spec.update(
        holderIdentity=record.holder_identity,
        leaseDurationSeconds=record.lease_duration_seconds,
        leaseTransitions=record.lease_transitions,
    )
    for key, when in (("acquireTime", record.acquire_time), ("renewTime", record.renew_time)):
        if when is None:
            spec.pop(key, None)
        else:
            spec[key] = format_micro_time(when)
    return spec


def default_identity() -> str:
    """`<hostname>_<uuid>`, client-go's candidate identity."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


# -- the shell ----------------------------------------------------------------------------


class LeaderElector:
    """Acquires, renews and releases one Lease through the Kubernetes API."""

    def __init__(
        self,
        client: AsyncClient,
        clock: Clock,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 60.0,
        renew_deadline: float = 50.0,
        retry_period: float = 10.0,
    ) -> None:
        self.client = client
        self.clock = clock
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None  # the last object read or written

    @property
    def is_leader(self) -> bool:
        """Whether the last lease seen names this process as holder."""
        return self._observed is not None and self._observed.holder_identity == self.identity

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every retry period until leading (True) or `stop` is set (False)."""
        log.info("attempting to acquire leader lease %s/%s", self.namespace, self.name)
        while not stop.is_set():
            if await self._attempt():
                log.info("successfully acquired lease %s/%s", self.namespace, self.name)
                return True
            if await self._wait(stop, self.retry_period):
                break
        return False

    async def hold(self, stop: asyncio.Event) -> bool:
        """Renew every retry period until `stop` (True) or the renew deadline passes (False)."""
        while not await self._wait(stop, self.retry_period):
            started = self.clock.now()
            deadline = started + self.renew_deadline
            while True:
                renewed = await self._before(self._attempt(), deadline)
                if renewed:
                    break
                now = self.clock.now()
                if renew_deadline_exceeded(started, now, self.renew_deadline):
                    log.error("failed to renew lease %s/%s", self.namespace, self.name)
                    return False
                if await self._wait(stop, min(self.retry_period, deadline - now)):
                    return True
        return True

    async def release(self) -> None:
        """Give the lease up if held (best effort, at most `RELEASE_TIMEOUT` seconds)."""
        if not self.is_leader or self._observed is None or self._lease is None:
            return
        record = released(self._observed, self.clock.wall())
        body = dict(self._lease, spec=spec_from_record(record, self._lease.get("spec")))
        deadline = self.clock.now() + RELEASE_TIMEOUT
        try:
            done = await self._before(self.client.replace(Lease(body)), deadline)
        except Exception as e:  # shutting down either way: the lease then expires by itself
            log.warning("failed to release lease %s/%s: %s", self.namespace, self.name, e)
            return
        if done is not None:
            self._observed = record
            log.info("released lease %s/%s", self.namespace, self.name)

    async def _attempt(self) -> bool:
        try:
            return await self._try_acquire_or_renew()
        except ApiError as e:
            if e.status.code == 409:
                log.info("lease %s/%s: lost a write race", self.namespace, self.name)
            else:
                log.error("lease %s/%s: %s", self.namespace, self.name, e)
        except Exception as e:  # network errors: try again next period
            log.error("lease %s/%s: %s", self.namespace, self.name, e)
        return False

    async def _try_acquire_or_renew(self) -> bool:
        now, wall = self.clock.now(), self.clock.wall()
        try:
            current: dict[str, Any] | None = dict(
                await self.client.get(Lease, self.name, namespace=self.namespace)
            )
        except ApiError as e:
            if e.status.code != 404:
                raise
            current = None
        record = record_from_spec(current.get("spec")) if current is not None else None
        if current is not None:
            self._lease = current
            if record != self._observed:
                self._observed, self._observed_at = record, now
        verdict = decide(
            record,
            identity=self.identity,
            observed_at=self._observed_at,
            now=now,
            wall=wall,
            lease_duration=self.lease_duration,
        )
        if verdict.record is None:
            return False
        if current is None:
            meta = {"name": self.name, "namespace": self.namespace}
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": meta,
            }
            body["spec"] = spec_from_record(verdict.record)
            written = await self.client.create(Lease(body))
        else:
            spec = spec_from_record(verdict.record, current.get("spec"))
            written = await self.client.replace(Lease(dict(current, spec=spec)))
        self._lease = dict(written)
        self._observed = record_from_spec(self._lease.get("spec"))
        self._observed_at = self.clock.now()
        return True

    async def _wait(self, stop: asyncio.Event, seconds: float) -> bool:
        """Sleep `seconds` on the clock; True when `stop` was set first (or already)."""
        if stop.is_set():
            return True
        stopped = asyncio.ensure_future(stop.wait())
        slept = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait((stopped, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (stopped, slept):
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
        return stop.is_set()

    async def _before(self, work: Awaitable[T], deadline: float) -> T | None:
        """`work`'s result, or None (work cancelled) when the clock reaches `deadline` first."""
        task = asyncio.ensure_future(work)
        timer = asyncio.ensure_future(self.clock.sleep_until(deadline))
        try:
            await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return task.result() if not task.cancelled() else None
