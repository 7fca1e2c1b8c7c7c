"""P/D disaggregation and data parallel: deciders, handlers, prefill header (checks 53-55)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pyllmd.core.clock import VirtualClock
from pyllmd.core.errors import ConfigError
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.config.loader import load_config_text
from pyllmd.epp.extproc import wire
from pyllmd.epp.options import load_options
from pyllmd.epp.plugins.prerequest import prefill_header_handler
from pyllmd.epp.plugins.profile import (
    always_disagg_pd_decider,
    data_parallel_profile_handler,
    pd_profile_handler,
    prefix_based_pd_decider,
)
from pyllmd.epp.plugins.profile.pd_common import (
    DATA_PARALLEL_HEADER,
    PREFILL_HEADER,
    PrefixMatch,
    input_tokens,
    pd_decisions,
)
from pyllmd.epp.run import Epp, build_epp
from pyllmd.epp.scheduling.interfaces import PdDecision
from pyllmd.epp.scheduling.interfaces import PrefixLookup as PrefixState
from pyllmd.epp.scheduling.registry import Handle, ParamError
from pyllmd.epp.scheduling.runner import ProfileRunner as Scheduler
from pyllmd.epp.scheduling.runner import SchedulingError
from pyllmd.epp.scheduling.types import LLMRequest, ProfileResult, SchedulingResult
from tests.unit.epp.plugin_helpers import endpoint, request, state
from tests.unit.epp.test_server import body_msg, headers_msg, kinds, resp_headers_msg, run

PREFILL = endpoint("p-rank-0", "10.0.0.1", 8000, {"llm-d.ai/role": "prefill"})
DECODE = endpoint("d-rank-0", "10.0.0.2", 8000, {"llm-d.ai/role": "decode"})
DECODE_RANK1 = endpoint("d-rank-1", "10.0.0.2", 8001, {"llm-d.ai/role": "decode"})

PD_CONFIG = """
plugins:
- type: prefill-header-handler
- type: prefill-filter
- type: decode-filter
- type: queue-scorer
- type: max-score-picker
- type: {decider}
  parameters: {decider_params}
- type: pd-profile-handler
  parameters:
    deciderPluginName: {decider}
    primaryPort: {primary_port}
schedulingProfiles:
- name: prefill
  plugins: [{{pluginRef: prefill-filter}}, {{pluginRef: queue-scorer}}]
- name: decode
  plugins: [{{pluginRef: decode-filter}}, {{pluginRef: queue-scorer}}]
"""


def pd_config(
    decider: str = "always-disagg-pd-decider", params: str = "{}", primary_port: int = 0
) -> str:
    return PD_CONFIG.format(decider=decider, decider_params=params, primary_port=primary_port)


def decider(name: str = "always-disagg-pd-decider") -> Any:
    return always_disagg_pd_decider.factory(name, None, Handle())


def handler(raw: Any = None, *deciders: Any) -> pd_profile_handler.PdProfileHandler:
    handle = Handle({d.name: d for d in (deciders or (decider(),))})
    return pd_profile_handler.factory("pd", raw, handle)


def schedule(config: str, req: LLMRequest, endpoints: list[Any]) -> tuple[SchedulingResult, Any]:
    cfg = load_config_text(config)
    st = state()
    result = Scheduler(cfg.profiles, cfg.scheduler.handler).schedule_in(st, req, endpoints)
    for plugin in cfg.plugins.values():
        pre = getattr(plugin, "pre_request", None)
        if pre is not None:
            pre(st, req, result)
    return result, st


# ------------------------------------------------------------------ deciders


@pytest.mark.parametrize(
    ("threshold", "tokens", "match", "expected"),
    [
        (0, 1, None, True),  # nonCachedTokens 0: always
        (16, 10, None, False),  # shorter than the threshold
        (16, 40, None, False),  # no prefix information
        (16, 40, PrefixMatch(0, 2, 16), True),  # nothing cached: 40 uncached
        (16, 40, PrefixMatch(2, 2, 16), False),  # 32 cached: 8 uncached
        (16, 48, PrefixMatch(2, 3, 16), True),  # 32 cached: exactly 16 uncached
    ],
)
def test_prefix_based_decider_table(
    threshold: int, tokens: int, match: PrefixMatch | None, expected: bool
) -> None:
    d = prefix_based_pd_decider.factory("d", {"nonCachedTokens": threshold}, Handle())
    assert d.disaggregate(tokens, DECODE, match) is expected


def test_prefix_based_decider_parameter_errors() -> None:
    with pytest.raises(ParamError, match="^failed to create prefix-based-pd-decider plugin: "):
        prefix_based_pd_decider.factory("d", {"nonCachedTokens": -1}, Handle())
    with pytest.raises(ParamError) as err:
        prefix_based_pd_decider.factory("d", {"nonCachedTokens": "x"}, Handle())
    assert str(err.value).startswith("failed to parse prefix-based-pd-decider plugin config: json:")
    assert prefix_based_pd_decider.factory("d", None, Handle()).non_cached_tokens == 0


def test_always_disagg_decider_says_yes() -> None:
    assert decider().disaggregate(0, DECODE, None) is True


def test_input_tokens_estimate_is_bytes_over_four() -> None:
    assert input_tokens(request("x" * 40)) == 10
    assert input_tokens(request("x" * 43)) == 10
    chat = LLMRequest("r", "m", "m", "chat-completions", {"messages": [{"content": "hi"}]})
    assert input_tokens(chat) == len(b'[{"content":"hi"}]') // 4


# ------------------------------------------------------------------ pd-profile-handler


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"primaryPort": 70000}, "invalid primaryPort: must be between 1 and 65535, got 70000"),
        ({"primaryPort": -1}, "invalid primaryPort: must be between 1 and 65535, got -1"),
        ({"deciderPluginName": ""}, "decider plugin name is not defined"),
        ({"deciderPluginName": "nope"}, "invalid decider plugin type: nope"),
        ({"primaryPort": "x"}, "failed to parse the parameters of the 'pd-profile-handler'"),
    ],
)
def test_pd_handler_parameter_errors(raw: Any, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        handler(raw)


def test_pd_handler_needs_a_declared_decider_plugin() -> None:
    with pytest.raises(ParamError, match="invalid decider plugin type: always-disagg-pd-decider"):
        pd_profile_handler.factory("pd", None, Handle())
    not_a_decider = prefill_header_handler.factory("h", None, Handle())
    with pytest.raises(ParamError, match="does not implement pdDeciderPlugin"):
        pd_profile_handler.factory("pd", {"deciderPluginName": "h"}, Handle({"h": not_a_decider}))


def test_pd_handler_defaults() -> None:
    h = handler()
    assert (h.decode_profile, h.prefill_profile, h.primary_port) == ("decode", "prefill", 0)
    assert h.prefix_plugin_name == "prefix-cache-scorer"
    assert handler({"prefixPluginType": "t"}).prefix_plugin_name == "t"
    assert handler({"prefixPluginType": "t", "prefixPluginName": "n"}).prefix_plugin_name == "n"


def test_pd_handler_runs_decode_then_prefill() -> None:
    h, st, req = handler(), state(), request()
    profiles = ["prefill", "decode"]
    assert h.pick_profiles(st, req, profiles, {}) == ["decode"]
    results: dict[str, ProfileResult | None] = {"decode": ProfileResult((DECODE,))}
    assert h.pick_profiles(st, req, profiles, results) == ["prefill"]
    assert pd_decisions(st) == [PdDecision("m", "prefill-decode")]
    results["prefill"] = ProfileResult((PREFILL,))
    assert h.pick_profiles(st, req, profiles, results) == []
    out = h.process_results(st, req, results)
    assert out.primary_profile == "decode"
    assert out.targets == (DECODE,)
    assert out.profile_results["prefill"].targets == (PREFILL,)
    assert out.headers == {}


def test_pd_handler_stops_without_a_decision_when_decode_failed() -> None:
    h, st = handler(), state()
    assert h.pick_profiles(st, request(), ["prefill", "decode"], {"decode": None}) == []
    assert pd_decisions(st) == []
    with pytest.raises(SchedulingError, match="^failed to find available decode workers$"):
        h.process_results(st, request(), {"decode": None})


def test_pd_handler_runs_prefill_once_even_with_an_extra_profile() -> None:
    h, st = handler(), state()
    results: dict[str, ProfileResult | None] = {
        "decode": ProfileResult((DECODE,)),
        "prefill": ProfileResult((PREFILL,)),
    }
    assert h.pick_profiles(st, request(), ["prefill", "decode", "extra"], results) == []


def test_pd_handler_with_only_a_decode_profile_records_no_decision() -> None:
    h, st = handler(), state()
    assert h.pick_profiles(st, request(), ["decode"], {"decode": ProfileResult((DECODE,))}) == []
    assert pd_decisions(st) == []


def test_pd_handler_keeps_decode_result_when_prefill_failed() -> None:
    out = handler().process_results(
        state(), request(), {"decode": ProfileResult((DECODE,)), "prefill": None}
    )
    assert list(out.profile_results) == ["decode"]


def test_pd_handler_primary_port_readdresses_decode_targets() -> None:
    out = handler({"primaryPort": 8000}).process_results(
        state(), request(), {"decode": ProfileResult((DECODE_RANK1,))}
    )
    assert [t.hostport for t in out.targets] == ["10.0.0.2:8000"]
    assert out.targets[0].name == "d-rank-1"  # identity kept: name, labels, metrics
    assert out.headers == {DATA_PARALLEL_HEADER: "10.0.0.2:8001"}


def test_pd_handler_gives_the_decider_the_prefix_match_of_the_decode_endpoint() -> None:
    seen: list[PrefixMatch | None] = []

    class Spy:
        type_name, name = "spy", "spy"

        def disaggregate(self, tokens: int, ep: Any, match: PrefixMatch | None) -> bool:
            seen.append(match)
            return False

    h = handler({"deciderPluginName": "spy", "prefixPluginName": "px"}, Spy())
    st = state()
    st.prefix["px"] = PrefixState((1, 2, 3), {DECODE.namespaced_name: 2}, 16)
    results: dict[str, ProfileResult | None] = {"decode": ProfileResult((DECODE,))}
    assert h.pick_profiles(st, request(), ["prefill", "decode"], results) == []
    assert seen == [PrefixMatch(2, 3, 16)]
    assert pd_decisions(st) == [PdDecision("m", "decode-only")]


def test_epp_acc_54_prefix_based_decider_threshold() -> None:
    prompt = "x" * 40  # 10 tokens by the 4-characters estimate
    high = pd_config("prefix-based-pd-decider", "{nonCachedTokens: 16}")
    result, st = schedule(high, request(prompt), [PREFILL, DECODE])
    assert list(result.profile_results) == ["decode"]
    assert pd_decisions(st) == [PdDecision("m", "decode-only")]
    assert PREFILL_HEADER not in result.headers
    default = pd_config("prefix-based-pd-decider")
    result, st = schedule(default, request(prompt), [PREFILL, DECODE])
    assert set(result.profile_results) == {"decode", "prefill"}
    assert pd_decisions(st) == [PdDecision("m", "prefill-decode")]


def test_prefix_based_decider_uses_the_prefix_scorer_of_the_decode_profile() -> None:
    config = """
plugins:
- type: prefill-header-handler
- type: prefix-cache-scorer
  parameters: {autoTune: false, blockSizeTokens: 4}
- type: prefill-filter
- type: decode-filter
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 8}
- type: pd-profile-handler
  parameters: {deciderPluginName: prefix-based-pd-decider}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}]
"""
    cfg = load_config_text(config)
    sched = Scheduler(cfg.profiles, cfg.scheduler.handler)
    prompt = "p" * 160  # 40 tokens, 10 blocks of 4 tokens
    decisions = []
    for _ in range(2):
        st = state()
        result = sched.schedule_in(st, request(prompt), [PREFILL, DECODE])
        cfg.plugins["prefix-cache-scorer"].pre_request(st, request(prompt), result)  # type: ignore[attr-defined]
        decisions += [d.decision_type for d in pd_decisions(st)]
    # cold: 40 uncached tokens → prefill; then the decode endpoint holds it all → decode only
    assert decisions == ["prefill-decode", "decode-only"]


# ------------------------------------------------------------------ prefill-header-handler


def test_prefill_header_handler_sets_the_prefill_endpoint() -> None:
    h = prefill_header_handler.factory("h", None, Handle())
    result = SchedulingResult(
        "decode", {"decode": ProfileResult((DECODE,)), "prefill": ProfileResult((PREFILL,))}
    )
    h.pre_request(state(), request(), result)
    assert result.headers == {PREFILL_HEADER: "10.0.0.1:8000"}


def test_prefill_header_handler_clears_a_client_value() -> None:
    h = prefill_header_handler.factory("h", None, Handle())
    result = SchedulingResult("decode", {"decode": ProfileResult((DECODE,))})
    h.pre_request(state(), request(headers={PREFILL_HEADER: "6.6.6.6:1"}), result)
    assert result.headers == {PREFILL_HEADER: ""}
    untouched = SchedulingResult("decode", {"decode": ProfileResult((DECODE,))})
    h.pre_request(state(), request(), untouched)
    assert untouched.headers == {}


def test_prefill_header_handler_profile_parameter() -> None:
    h = prefill_header_handler.factory("h", {"prefillProfile": "p2"}, Handle())
    result = SchedulingResult(
        "decode", {"decode": ProfileResult((DECODE,)), "p2": ProfileResult((PREFILL,))}
    )
    h.pre_request(state(), request(), result)
    assert result.headers[PREFILL_HEADER] == "10.0.0.1:8000"
    with pytest.raises(ParamError, match="'prefill-header-handler' pre-request plugin - json:"):
        prefill_header_handler.factory("h", {"prefillProfile": 3}, Handle())


# ------------------------------------------------------------------ data parallel


def test_epp_acc_55_data_parallel_primary_port() -> None:
    h = data_parallel_profile_handler.factory("dp", {"primaryPort": 8000}, Handle())
    assert h.pick_profiles(state(), request(), ["default"], {}) == ["default"]
    out = h.process_results(state(), request(), {"default": ProfileResult((DECODE_RANK1,))})
    assert [t.hostport for t in out.targets] == ["10.0.0.2:8000"]
    assert out.headers == {DATA_PARALLEL_HEADER: "10.0.0.2:8001"}


def test_data_parallel_handler_parameters() -> None:
    assert data_parallel_profile_handler.factory("dp", None, Handle()).primary_port == 8000
    zero = data_parallel_profile_handler.factory("dp", {"primaryPort": 0}, Handle())
    out = zero.process_results(state(), request(), {"default": ProfileResult((DECODE,))})
    assert out.targets[0].port == 0  # upstream uses 0 literally
    with pytest.raises(ParamError, match="got 65536"):
        data_parallel_profile_handler.factory("dp", {"primaryPort": 65536}, Handle())


def test_data_parallel_handler_refuses_several_profiles() -> None:
    h = data_parallel_profile_handler.factory("dp", None, Handle())
    results: dict[str, ProfileResult | None] = {
        "a": ProfileResult((DECODE,)),
        "b": ProfileResult((PREFILL,)),
    }
    with pytest.raises(SchedulingError, match="intended to be used with a single profile"):
        h.process_results(state(), request(), results)
    with pytest.raises(SchedulingError, match="failed to run scheduler profile 'a'"):
        h.process_results(state(), request(), {"a": None})


# ------------------------------------------------------------------ through the servicer


STATIC_PD = (
    "--static-endpoints=10.0.0.1:8000;llm-d.ai/role=prefill,"
    "10.0.0.2:8000;llm-d.ai/role=decode,10.0.0.2:8001;llm-d.ai/role=decode"
)


async def fake_fetch(url: str) -> str:
    return "vllm:num_requests_waiting 0\n"


def epp_with(config: str, static: str = STATIC_PD) -> Epp:
    options = load_options([static], {})
    return build_epp(
        options,
        load_config_text(config),
        clock=VirtualClock(start=100.0),
        rng=random.Random(3),
        fetch=fake_fetch,
    )


def pd_metric(epp: Epp, decision: str) -> float:
    for s in parse_samples(epp.metrics.render().decode()):
        if s.name == "llm_d_inference_scheduler_pd_decision_total" and s.labels == {
            "model_name": "m",
            "decision_type": decision,
        }:
            return s.value
    return 0.0


async def test_epp_acc_53_always_disagg_through_the_servicer() -> None:
    epp = epp_with(pd_config())
    client = {PREFILL_HEADER: "6.6.6.6:1"}  # a client value never survives
    replies = await run(
        epp.servicer, [headers_msg(client), body_msg(b'{"model":"m","prompt":"hi"}')]
    )
    assert kinds(replies) == ["request_headers", "request_body"]
    sent = wire.headers_of(replies[0], "request_headers")
    assert sent[PREFILL_HEADER] == "10.0.0.1:8000"
    assert sent["x-gateway-destination-endpoint"] in ("10.0.0.2:8000", "10.0.0.2:8001")
    assert pd_metric(epp, "prefill-decode") == 1
    assert pd_metric(epp, "decode-only") == 0


async def test_decode_only_request_forwards_an_empty_prefill_header() -> None:
    epp = epp_with(pd_config("prefix-based-pd-decider", "{nonCachedTokens: 16}"))
    msgs = [headers_msg({PREFILL_HEADER: "6.6.6.6:1"}), body_msg(b'{"model":"m","prompt":"hi"}')]
    sent = wire.headers_of((await run(epp.servicer, msgs))[0], "request_headers")
    assert sent[PREFILL_HEADER] == ""
    assert pd_metric(epp, "decode-only") == 1


async def test_pd_with_primary_port_sets_the_rank_header() -> None:
    epp = epp_with(pd_config(primary_port=9000))
    msgs = [headers_msg(), body_msg(b'{"model":"m","prompt":"hi"}')]
    sent = wire.headers_of((await run(epp.servicer, msgs))[0], "request_headers")
    assert sent["x-gateway-destination-endpoint"] == "10.0.0.2:9000"
    assert sent[DATA_PARALLEL_HEADER] in ("10.0.0.2:8000", "10.0.0.2:8001")
    assert sent[PREFILL_HEADER] == "10.0.0.1:8000"


async def test_no_decode_endpoint_is_429_and_counts_no_decision() -> None:
    epp = epp_with(pd_config(), "--static-endpoints=10.0.0.1:8000;llm-d.ai/role=prefill")
    replies = await run(epp.servicer, [headers_msg(), body_msg(b'{"model":"m","prompt":"hi"}')])
    status = replies[-1].immediate_response
    assert status.status.code == 429
    assert b"failed to find available decode workers" in status.body
    assert pd_metric(epp, "prefill-decode") + pd_metric(epp, "decode-only") == 0


async def test_data_parallel_config_through_the_servicer() -> None:
    config = """
plugins:
- type: decode-filter
- type: data-parallel-profile-handler
  parameters: {primaryPort: 9000}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: decode-filter}]
"""
    epp = epp_with(config)
    msgs = [headers_msg(), body_msg(b'{"model":"m","prompt":"hi"}'), resp_headers_msg({})]
    replies = await run(epp.servicer, msgs)
    sent = wire.headers_of(replies[0], "request_headers")
    assert sent["x-gateway-destination-endpoint"] == "10.0.0.2:9000"
    assert sent[DATA_PARALLEL_HEADER] in ("10.0.0.2:8000", "10.0.0.2:8001")


def test_pd_sample_style_configs_load() -> None:
    """The shape of llm-d's P/D samples (prefix scorer, queue scorer, both filters, picker
    declared, decider before the handler, `${PRIMARY_PORT}` substituted)."""
    for port in (0, 8000):
        cfg = load_config_text(
            f"""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [prepareDataPlugins]
plugins:
- type: prefill-header-handler
- type: prefix-cache-scorer
  parameters: {{blockSizeTokens: 16, autoTune: false, maxPrefixBlocksToMatch: 256}}
- type: queue-scorer
- type: prefill-filter
- type: decode-filter
- type: max-score-picker
- type: prefix-based-pd-decider
  parameters: {{nonCachedTokens: 16}}
- type: pd-profile-handler
  parameters: {{primaryPort: {port}, deciderPluginName: prefix-based-pd-decider}}
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: max-score-picker
  - {{pluginRef: prefix-cache-scorer, weight: 2}}
  - {{pluginRef: queue-scorer, weight: 1}}
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
  - {{pluginRef: prefix-cache-scorer, weight: 2}}
  - {{pluginRef: queue-scorer, weight: 1}}
"""
        )
        assert cfg.handler_name == "pd-profile-handler"
        assert set(cfg.profiles) == {"prefill", "decode"}


def test_decider_declared_after_the_handler_is_a_config_error() -> None:
    config = """
plugins:
- type: pd-profile-handler
- type: always-disagg-pd-decider
schedulingProfiles:
- name: decode
  plugins: []
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(config)
    assert str(err.value) == (
        "failed to load the configuration - plugin instantiation failed: failed to create "
        "plugin 'pd-profile-handler' (type: pd-profile-handler): "
        "invalid decider plugin type: always-disagg-pd-decider"
    )
