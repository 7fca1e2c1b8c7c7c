"""The lightkube client and dict-backed resource classes shared by the EPP and the autoscaler.

Both parts find their API server the way controller-runtime does and read a
handful of fields of each object, so one `connect` and one `resource_type`
serve them both (and `core.leader` / `core.kubeauth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube import generic_resource as gr
from lightkube.config import models
from lightkube.core import resource as lr
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from pyllmd.core.errors import ConfigError

__all__ = ["connect", "resource_type"]


def connect(
    *,
    server: str = "",
    kubeconfig: str = "",
    env: Mapping[str, str] | None = None,
    context: str | None = None,
    timeout: float = 60.0,
) -> AsyncClient:
    """A client as controller-runtime finds one: `--kubeconfig`, `$KUBECONFIG` (from `env`),
    the in-cluster service account, `~/.kube/config`.

    `server` (tests, local API servers) is a plain URL without credentials. A
    missing or broken configuration is a `ConfigError` with one line.
    """
    try:
        if server:
            config = KubeConfig.from_one(cluster=models.Cluster(server=server), user=models.User())
        elif kubeconfig:
            config = KubeConfig.from_file(kubeconfig)
        elif env is not None and env.get("KUBECONFIG"):
            config = KubeConfig.from_file(env["KUBECONFIG"].split(":")[0])
        else:
            config = KubeConfig.from_env()
        return AsyncClient(
            config.get(context), timeout=httpx2.Timeout(timeout), trust_env=not server
        )
    except (LightkubeConfigError, OSError, ValueError) as err:
        raise ConfigError(f"unable to get kubeconfig: {err}") from None
    except (AttributeError, KeyError, TypeError) as err:  # YAML that is not a kubeconfig
        raise ConfigError(f"unable to get kubeconfig: not a kubeconfig file ({err})") from None


def resource_type(group: str, version: str, kind: str, plural: str, namespaced: bool = True) -> Any:
    """A dict-backed lightkube resource class with `Status` and `Scale` subresources.

    Not put in lightkube's global registry, and decoded as plain JSON rather than
    typed models: the callers read a handful of fields and must not fail on
    objects that a strict schema decoder rejects.
    """
    base = gr.GenericNamespacedResource if namespaced else gr.GenericGlobalResource
    info = gr.create_api_info(group, version, kind, plural)
    parent = info.resource

    def sub(cls: type, action: str, target: lr.ResourceDef) -> type:
        sub_info = lr.ApiInfo(
            resource=target,
            parent=parent,
            plural=plural,
            verbs=["get", "patch", "put"],
            action=action,
        )
        return type(f"{kind}{action.capitalize()}", (cls,), {"_api_info": sub_info})

    scale_cls = gr.GenericNamespacedScale if namespaced else gr.GenericGlobalScale
    status_cls = gr.GenericNamespacedStatus if namespaced else gr.GenericGlobalStatus
    attrs = {
        "_api_info": info,
        "Scale": sub(scale_cls, "scale", lr.ResourceDef("autoscaling", "v1", "Scale")),
        "Status": sub(status_cls, "status", parent),
    }
    return type(kind, (base,), attrs)
