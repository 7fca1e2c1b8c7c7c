"""In-tree plugins, registered explicitly by upstream type string in `register_all`."""

from __future__ import annotations

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
from pyllmd.epp.scheduling.registry import Registry


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


def default_registry() -> Registry:
    """A fresh registry with all in-tree plugins."""
    return register_all(Registry())
