"""A fake Kubernetes API server over real HTTP on 127.0.0.1, for controller tests.

Built on kmock: its `Server` (aiohttp on a loopback port), its discovery
documents (`/api`, `/apis`, `/apis/<g>/<v>`, `/version`) and its DSL for any
non-resource path. Resource paths are served by this module's own store,
because kmock's `KubernetesEmulator` store is too loose for a controller: it
answers 200 on create, merges PUTs, ignores selectors, has no
resourceVersion/uid/creationTimestamp, treats subresources as the object, and
mis-parses `/api/v1/namespaces[/name]`. Here:

- create → 201 (uid, resourceVersion, creationTimestamp, generation set;
  status dropped for resources with a status subresource), 409 AlreadyExists;
- get/list with `labelSelector`/`fieldSelector`, Table output for `kubectl get`
  (CRD printer columns of VariantAutoscaling);
- PUT replaces (409 Conflict on a stale resourceVersion), PATCH in merge,
  strategic (approximated) and JSON-patch flavours;
- `/status` changes only status; the main path ignores status;
- `/scale` (autoscaling/v1 Scale) of Deployments, ReplicaSets, LeaderWorkerSets;
- TokenReview and SubjectAccessReview answered from `tokens` and `grants`
  (what a test registers), as the real reviews answer;
- watch with resourceVersion resume, 410 Expired, `timeoutSeconds`, and
  `drop_watches()` to test reconnects; 404/409/422 as `v1 Status` objects with
  the exact `Content-Type: application/json` clients check.

No admission/validation and no garbage collection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import kmock
import pytest_asyncio

from tests.unit.autoscaler import kubefake_api as api
from tests.unit.autoscaler.kubefake_api import ApiCall, ApiStatusError, Obj, ResourceDef
from tests.unit.autoscaler.kubefake_builders import ObjectBuilders

JSON = "application/json"
GPU_VENDORS = ("nvidia.com", "amd.com", "intel.com")


def _ts(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _json_response(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": JSON}
    )


class KubeFake(ObjectBuilders, kmock.KubernetesScaffold):  # type: ignore[misc]
    """The fake API server; enter it and a `kmock.Server`, or use `running_kube()`."""

    def __init__(
        self,
        resources: Iterable[ResourceDef] = api.ALL_RESOURCES,
        *,
        history: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.defs = {(r.group, r.version, r.plural): r for r in resources}
        self.by_kind = {r.kind: r for r in resources}
        self.store: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[ApiCall] = []
        self.clock = clock
        self._rv = 0
        self._events: collections.deque[tuple[int, str, str, Obj]] = collections.deque(
            maxlen=history
        )
        self._changed = asyncio.Event()
        self._epoch = 0
        self.tokens: dict[str, Obj] = {}  # bearer token -> TokenReview `status.user`
        self.grants: set[tuple[str, str, str]] = set()  # (user or "group:<g>", path, verb)
        for r in resources:
            self.resources[r.key] = kmock.ResourceInfo(
                namespaced=r.namespaced,
                kind=r.kind,
                singular=r.singular,
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                shortnames=set(r.short_names),
                subresources=set(r.subresources),
            )

    @property
    def url(self) -> str:  # type: ignore[override]
        """Base URL of the (first) running server, without a trailing slash."""
        return str(self._next_server().url).rstrip("/")

    async def _serve_version(self, request: Any) -> Any:
        """kmock's APIResourceList, with the core group's `groupVersion` fixed to `v1`."""
        doc = await super()._serve_version(request)
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")
        for entry in doc["resources"]:
            if "/" in entry["name"]:  # subresources: no short names, their own kind and verbs
                entry.update(shortNames=[], singularName="", verbs=["get", "patch", "update"])
                if entry["name"].endswith("/scale"):
                    entry.update(kind="Scale", group="autoscaling", version="v1")
        return doc

    # -- HTTP entry ---------------------------------------------------------------------------

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            found = api.route(raw.path, self.defs)
        except ApiStatusError as exc:
            return _json_response(exc.status(), exc.code)
        if found is None:
            return await super().__call__(raw)
        body_bytes = await raw.read()
        body = json.loads(body_bytes) if body_bytes else None
        self.calls.append(
            ApiCall(
                raw.method, raw.path, dict(raw.query), raw.headers.get("Content-Type", ""), body
            )
        )
        try:
            return await self._serve(raw, found, body)
        except ApiStatusError as exc:
            return _json_response(exc.status(), exc.code)

    async def _serve(
        self, raw: aiohttp.web.BaseRequest, r: api.Route, body: Any
    ) -> aiohttp.web.StreamResponse:
        method, q = raw.method, raw.query
        if r.rdef.kind in ("TokenReview", "SubjectAccessReview") and method == "POST":
            return _json_response(self._review(r.rdef, body), 201)
        if r.name is None:
            if method == "GET" and q.get("watch") in ("true", "1"):
                return await self._watch(raw, r)
            if method == "GET":
                return self._list(raw, r)
            if method == "POST":
                return _json_response(self._create(r, body), 201)
            raise ApiStatusError(405, "MethodNotAllowed", f"method {method} not allowed")
        if method == "GET":
            obj = self._get(r.rdef, r.namespace, r.name)
            if "as=Table" in raw.headers.get("Accept", ""):
                return _json_response(self._table(r.rdef, [obj]))
            return _json_response(api.scale_of(r.rdef, obj) if r.subresource == "scale" else obj)
        if method == "DELETE":
            return _json_response(self._delete(r.rdef, r.namespace, r.name))
        if method in ("PUT", "PATCH"):
            ctype = raw.headers.get("Content-Type", JSON)
            return _json_response(self._write(r, method, ctype, body))
        raise ApiStatusError(405, "MethodNotAllowed", f"method {method} not allowed")

    def _review(self, rdef: ResourceDef, body: Obj) -> Obj:
        """The review `body` with the `status` the real API server would fill in."""
        spec = body.get("spec") or {}
        if rdef.kind == "TokenReview":
            user = self.tokens.get(spec.get("token", ""))
            status: Obj = {"authenticated": True, "user": user} if user else {"error": "invalid"}
        else:
            attrs = spec.get("nonResourceAttributes") or {}
            who = [spec.get("user", "")] + [f"group:{g}" for g in spec.get("groups") or []]
            allowed = any((w, attrs.get("path"), attrs.get("verb")) in self.grants for w in who)
            status = {"allowed": allowed} | ({} if allowed else {"reason": "no RBAC rule"})
        return {**body, "status": status}

    # -- verbs --------------------------------------------------------------------------------

    def _key(self, rdef: ResourceDef, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rdef.key, (namespace or "") if rdef.namespaced else "", name)

    def _get(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(self._key(rdef, namespace, name))
        if obj is None:
            raise api.not_found(rdef, name)
        return obj

    def _select(self, r: api.Route, q: Any) -> list[Obj]:
        objs = [
            o
            for (key, ns, _), o in sorted(self.store.items())
            if key == r.rdef.key and (r.namespace is None or ns == r.namespace)
        ]
        if q.get("labelSelector"):
            objs = [
                o
                for o in objs
                if api.label_match(q["labelSelector"], o["metadata"].get("labels") or {})
            ]
        if q.get("fieldSelector"):
            objs = [o for o in objs if api.field_match(q["fieldSelector"], o)]
        return objs

    def _table(self, rdef: ResourceDef, objs: list[Obj]) -> Obj:
        return api.table(rdef, objs, str(self._rv), self.clock(), _parse_ts)

    def _list(self, raw: aiohttp.web.BaseRequest, r: api.Route) -> aiohttp.web.Response:
        objs = self._select(r, raw.query)
        if "as=Table" in raw.headers.get("Accept", ""):
            return _json_response(self._table(r.rdef, objs))
        return _json_response(
            {
                "kind": f"{r.rdef.kind}List",
                "apiVersion": r.rdef.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": objs,
            }
        )

    def _create(self, r: api.Route, body: Any) -> Obj:
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            raise ApiStatusError(422, "Invalid", "metadata.name: Required value")
        meta = body["metadata"]
        if r.rdef.namespaced:
            if meta.get("namespace") not in (None, "", r.namespace):
                raise ApiStatusError(
                    400, "BadRequest", "the namespace of the provided object does not match"
                )
            meta["namespace"] = r.namespace
        if r.rdef.has_status:
            body.pop("status", None)
        return self.create(r.rdef, body)

    def _write(self, r: api.Route, method: str, ctype: str, body: Any) -> Obj:
        rdef, name = r.rdef, r.name or ""
        current = self._get(rdef, r.namespace, name)
        base = api.scale_of(rdef, current) if r.subresource == "scale" else current
        if method == "PATCH":
            new = api.apply_patch(copy.deepcopy(base), ctype, body)
        elif isinstance(body, dict):
            new = body
        else:
            raise ApiStatusError(400, "BadRequest", "body must be an object")
        sent_rv = (new.get("metadata") or {}).get("resourceVersion")
        if method == "PUT" and sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise api.conflict(rdef, name)
        if r.subresource == "scale":
            replicas = api.get_path(new, "spec.replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiStatusError(
                    422, "Invalid", "spec.replicas: must be a non-negative integer"
                )
            result = self.update(rdef, r.namespace, name, {"spec": {"replicas": replicas}})
            return api.scale_of(rdef, result)
        if r.subresource == "status":
            return self._replace(rdef, current, status=new.get("status"))
        return self._replace(rdef, current, new=new)

    def _replace(
        self, rdef: ResourceDef, current: Obj, *, new: Obj | None = None, status: Any = None
    ) -> Obj:
        obj = copy.deepcopy(current)
        if new is None:  # status subresource write
            if status is None:
                obj.pop("status", None)
            else:
                obj["status"] = status
        else:
            keep = obj["metadata"]
            meta = dict(new.get("metadata") or {})
            for fixed in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if fixed in keep:
                    meta[fixed] = keep[fixed]
                else:
                    meta.pop(fixed, None)
            old_status = obj.get("status")
            obj = {k: copy.deepcopy(v) for k, v in new.items() if k != "metadata"}
            obj["metadata"] = meta
            obj["apiVersion"], obj["kind"] = rdef.api_version, rdef.kind
            if rdef.has_status:
                obj.pop("status", None)
                if old_status is not None:
                    obj["status"] = old_status
            if obj.get("spec") != current.get("spec"):
                meta["generation"] = int(keep.get("generation", 1)) + 1
        return self._commit(rdef, obj, "MODIFIED")

    def _delete(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj:
        obj = self._get(rdef, namespace, name)
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                return self.update(
                    rdef, namespace, name, {"metadata": {"deletionTimestamp": _ts(self.clock())}}
                )
            return obj
        return self.delete(rdef, namespace, name)

    # -- watch --------------------------------------------------------------------------------

    def _matches(self, r: api.Route, q: Any, obj: Obj) -> bool:
        meta = obj["metadata"]
        if r.namespace is not None and meta.get("namespace") != r.namespace:
            return False
        if q.get("labelSelector") and not api.label_match(
            q["labelSelector"], meta.get("labels") or {}
        ):
            return False
        return not (q.get("fieldSelector") and not api.field_match(q["fieldSelector"], obj))

    async def _watch(
        self, raw: aiohttp.web.BaseRequest, r: api.Route
    ) -> aiohttp.web.StreamResponse:
        q = raw.query
        since = q.get("resourceVersion") or "0"
        timeout = float(q.get("timeoutSeconds") or 0) or None
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        resp = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": JSON})
        await resp.prepare(raw)
        epoch = self._epoch

        async def send(kind: str, obj: Obj) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            if since == "0":
                last = self._rv
                for obj in self._select(r, q):
                    await send("ADDED", obj)
            else:
                last = int(since)
                oldest = self._events[0][0] if self._events else self._rv + 1
                if last < oldest - 1 and self._events.maxlen == len(self._events):
                    gone = ApiStatusError(410, "Expired", f"too old resource version: {last}")
                    await send("ERROR", gone.status())
                    return resp
            while epoch == self._epoch:
                for rv, key, kind, obj in list(self._events):
                    if rv > last and key == r.rdef.key and self._matches(r, q, obj):
                        await send(kind, obj)
                    last = max(last, rv) if rv > last else last
                waiter = self._changed
                left = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if left is not None and left <= 0:
                    break
                try:
                    await asyncio.wait_for(waiter.wait(), left)
                except TimeoutError:
                    break
            await resp.write_eof()
        return resp

    def drop_watches(self) -> None:
        """End every open watch stream (clients must reconnect)."""
        self._epoch += 1
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- store operations (also used directly by tests) ---------------------------------------

    def _commit(self, rdef: ResourceDef, obj: Obj, kind: str) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        key = self._key(rdef, meta.get("namespace"), meta["name"])
        if kind == "DELETED":
            self.store.pop(key, None)
        else:
            self.store[key] = obj
        self._events.append((self._rv, rdef.key, kind, copy.deepcopy(obj)))
        self._notify()
        return copy.deepcopy(obj)

    def create(self, rdef: ResourceDef, body: Obj) -> Obj:
        """Store a new object (server-set metadata filled in); 409 if it exists."""
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not rdef.namespaced:
            meta.pop("namespace", None)
        elif not meta.get("namespace"):
            meta["namespace"] = "default"
        if self._key(rdef, meta.get("namespace"), meta["name"]) in self.store:
            raise api.already_exists(rdef, meta["name"])
        obj["apiVersion"], obj["kind"] = rdef.api_version, rdef.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _ts(self.clock())
        meta["generation"] = 1
        return self._commit(rdef, obj, "ADDED")

    def update(self, rdef: ResourceDef, namespace: str | None, name: str, patch: Obj) -> Obj:
        """Merge-patch an object directly (any field, status included); emits MODIFIED."""
        current = self._get(rdef, namespace, name)
        obj = api.merge_patch(current, patch)
        if obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        return self._commit(rdef, obj, "MODIFIED")

    def delete(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj:
        """Remove an object now (no finalizers, no garbage collection); emits DELETED."""
        return self._commit(rdef, copy.deepcopy(self._get(rdef, namespace, name)), "DELETED")

    def get(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj | None:
        """A copy of a stored object, or None."""
        obj = self.store.get(self._key(rdef, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def writes_to(self, path: str) -> list[ApiCall]:
        """PUT/PATCH/POST/DELETE calls whose path is exactly `path`."""
        return [c for c in self.calls if c.path == path and c.method != "GET"]


@contextlib.asynccontextmanager
async def running_kube(**kwargs: Any) -> AsyncIterator[KubeFake]:
    """A started fake on 127.0.0.1 with a random port; `.url` is its base URL."""
    async with KubeFake(**kwargs) as fake, kmock.Server(fake):
        yield fake


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[KubeFake]:
    """A fresh fake API server per test."""
    async with running_kube() as fake:
        yield fake
