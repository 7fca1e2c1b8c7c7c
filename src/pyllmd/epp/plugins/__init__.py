"""In-tree plugins, registered explicitly by upstream type string in `register_all`; plugins
of other packages, registered through the `pyllmd.epp.plugins` entry-point group, are added
by `default_registry` (see `core.plugins`)."""

from __future__ import annotations

from typing import Any

from pyllmd.core import plugins as entry_points
from pyllmd.epp.plugins.datalayer import (
    metrics_data_source,
    model_server_protocol_metrics,
    model_server_protocol_models,
    models_data_source,
)
from pyllmd.epp.plugins.filter import (
    by_label,
    by_label_selector,
    decode_filter,
    header_based_testing_filter,
    prefill_filter,
)
from pyllmd.epp.plugins.flowcontrol import (
    edf_ordering_policy,
    fcfs_ordering_policy,
    global_strict_fairness_policy,
    round_robin_fairness_policy,
)
from pyllmd.epp.plugins.picker import max_score_picker, random_picker, weighted_random_picker
from pyllmd.epp.plugins.prerequest import prefill_header_handler
from pyllmd.epp.plugins.profile import (
    always_disagg_pd_decider,
    data_parallel_profile_handler,
    pd_profile_handler,
    prefix_based_pd_decider,
    single_profile_handler,
)
from pyllmd.epp.plugins.scorer import (
    active_request_scorer,
    kv_cache_utilization_scorer,
    load_aware_scorer,
    lora_affinity_scorer,
    no_hit_lru_scorer,
    precise_prefix_cache_scorer,
    prefix_cache_scorer,
    queue_scorer,
    running_requests_size_scorer,
    session_affinity_scorer,
)
from pyllmd.epp.scheduling.interfaces import Plugin
from pyllmd.epp.scheduling.registry import Factory, Handle, Registry


def register_all(registry: Registry) -> Registry:
    """Adds every in-tree plugin type to `registry` and returns it."""
    for module in (
        single_profile_handler,
        max_score_picker,
        random_picker,
        weighted_random_picker,
        queue_scorer,
        running_requests_size_scorer,
        kv_cache_utilization_scorer,
        lora_affinity_scorer,
        prefix_cache_scorer,
        load_aware_scorer,
        header_based_testing_filter,
        by_label,
        by_label_selector,
        prefill_filter,
        decode_filter,
        metrics_data_source,
        model_server_protocol_metrics,
        models_data_source,
        model_server_protocol_models,
        fcfs_ordering_policy,
        edf_ordering_policy,
        global_strict_fairness_policy,
        round_robin_fairness_policy,
        active_request_scorer,
        session_affinity_scorer,
        no_hit_lru_scorer,
        prefill_header_handler,
        pd_profile_handler,
        data_parallel_profile_handler,
        prefix_based_pd_decider,
        always_disagg_pd_decider,
        precise_prefix_cache_scorer,
    ):
        registry.register(module.TYPE, module.factory)
    return registry


def _entry_point_factory(type_name: str, builtin: frozenset[str]) -> Factory:
    """A factory that imports the entry point on first use (a config naming the type), so
    that a broken package fails only the configs that use it, with one line naming it."""

    def factory(name: str, raw: Any, handle: Handle) -> Plugin:
        loaded = entry_points.load_callable(entry_points.EPP_PLUGINS, type_name, builtin)
        assert callable(loaded)  # discovered under type_name, so never None here
        try:
            plugin: Plugin = loaded(name, raw, handle)
        except (ValueError, TypeError):
            raise  # the loader reports these as "failed to create plugin ..."
        except Exception as err:  # a third-party factory: one line, not a traceback
            raise ValueError(f"{type(err).__name__}: {err}") from None
        return plugin

    return factory


def register_entry_points(registry: Registry) -> Registry:
    """Adds the installed `pyllmd.epp.plugins` entry points whose type the registry lacks."""
    builtin = frozenset(registry.types())
    for type_name in entry_points.names(entry_points.EPP_PLUGINS, builtin):
        registry.register(type_name, _entry_point_factory(type_name, builtin))
    return registry


def default_registry() -> Registry:
    """A fresh registry with all in-tree plugins, then the installed entry-point plugins."""
    return register_entry_points(register_all(Registry()))
