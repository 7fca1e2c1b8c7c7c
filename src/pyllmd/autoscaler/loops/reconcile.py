"""Which VAs the engines handle, and the small status writes made outside a cycle.

Shared by the saturation engine, its event-driven targets pass and the
scale-from-zero engine, so all three agree on the same set of VAs:
this controller's instance label, not being deleted, a named target, a valid
object, and a namespace not annotated `wva.llmd.ai/exclude=true` (the watch
namespace is exempt, as upstream's predicate has it). Upstream applies the
exclusion only to reconcile events and ConfigMaps; its engines still process
such VAs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pyllmd.autoscaler.decide import api
from pyllmd.autoscaler.decide.status import (
    InvalidVariantAutoscaling,
    StatusBook,
    invalid_patch,
    same_condition,
)
from pyllmd.autoscaler.interfaces import Cluster

log = logging.getLogger(__name__)


async def excluded_namespaces(
    cluster: object, namespaces: Iterable[str], exempt: str = ""
) -> set[str]:
    """Namespaces annotated `wva.llmd.ai/exclude=true` (`exempt`, the watch namespace, never).

    Asks `cluster.namespace_annotations` when the cluster has it (Kubernetes); a
    cluster without namespaces to annotate (the local stack) excludes nothing.
    """
    reader = getattr(cluster, "namespace_annotations", None)
    if reader is None:
        return set()
    found: set[str] = set()
    for ns in sorted(set(namespaces) - {exempt, ""}):
        try:
            annotations = await reader(ns)
        except Exception as e:  # unknown: process the namespace rather than drop it
            log.warning("namespace annotations unreadable namespace=%s: %s", ns, e)
            continue
        if annotations.get(api.EXCLUDE_ANNOTATION) == "true":
            found.add(ns)
    return found


@dataclass(frozen=True)
class VaScope:
    """The VAs one controller handles."""

    cluster: Cluster
    controller_instance: str = ""
    watch_namespace: str = ""

    def instance_ok(self, labels: Mapping[str, str]) -> bool:
        """Multi-controller isolation: the VA carries this controller's instance label."""
        instance = self.controller_instance
        return not instance or labels.get(api.CONTROLLER_INSTANCE_LABEL) == instance

    def mine(self, va: api.VariantAutoscaling) -> bool:
        """Labelled for this controller, not being deleted, with a named target."""
        if va.metadata.deletion_timestamp or not va.spec.scale_target_ref.name:
            return False
        return self.instance_ok(va.metadata.labels)

    async def list(
        self, exclude: bool = True
    ) -> tuple[list[api.VariantAutoscaling], list[InvalidVariantAutoscaling]]:
        """This controller's VAs outside excluded namespaces, and the invalid ones among them.

        Invalid objects come from `cluster.list_variant_autoscalings_checked` when
        the cluster has it (Kubernetes); otherwise there are none to report.
        `exclude=False` skips the namespace check (for callers that narrow first).
        """
        checked = getattr(self.cluster, "list_variant_autoscalings_checked", None)
        if checked is not None:
            vas, invalid = await checked()
        else:
            vas, invalid = await self.cluster.list_variant_autoscalings(), []
        vas = [va for va in vas if self.mine(va)]
        invalid = [
            i
            for i in invalid
            if not i.metadata.deletion_timestamp and self.instance_ok(i.metadata.labels)
        ]
        if not exclude:
            return vas, invalid
        namespaces = {va.metadata.namespace for va in vas} | {i.key[0] for i in invalid}
        excluded = await self.excluded(namespaces)
        return (
            [va for va in vas if va.metadata.namespace not in excluded],
            [i for i in invalid if i.key[0] not in excluded],
        )

    async def excluded(self, namespaces: Iterable[str]) -> set[str]:
        """Which of `namespaces` are excluded by annotation."""
        return await excluded_namespaces(self.cluster, namespaces, self.watch_namespace)


async def write_target(cluster: Cluster, va: api.VariantAutoscaling, now: datetime) -> bool:
    """Look the target up and write `TargetResolved` if it changed; True when written."""
    workload = await cluster.get_workload(va.metadata.namespace, va.spec.scale_target_ref)
    book = StatusBook()
    book.target(va, workload is not None)
    patch = book.patch_for(va, now)
    assert patch is not None
    after = api.get_condition(
        [api.Condition.model_validate(c) for c in patch["conditions"]], api.TYPE_TARGET_RESOLVED
    )
    if same_condition(api.get_condition(va.status.conditions, api.TYPE_TARGET_RESOLVED), after):
        return False
    try:
        await cluster.patch_status(va, patch)
    except Exception as e:  # gone meanwhile, or a conflict: the next cycle writes it
        log.warning("status patch failed va=%s/%s: %s", va.metadata.namespace,
                    va.metadata.name, e)  # fmt: skip
        return False
    return True


async def flag_invalid(
    cluster: Cluster, invalid: Sequence[InvalidVariantAutoscaling], now: datetime
) -> None:
    """Tell the owner of each schema-breaking VA why it is ignored (if it can be patched)."""
    for inv in invalid:
        patch = invalid_patch(inv, now)
        if patch is None:
            continue
        log.warning("ignoring invalid VariantAutoscaling %s/%s: %s", *inv.key, inv.message)
        try:
            await cluster.patch_status(inv.placeholder(), patch)
        except Exception as e:  # the server may refuse status writes on a broken object
            log.warning("status patch failed va=%s/%s: %s", *inv.key, e)
