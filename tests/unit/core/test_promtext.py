"""Text-format parsing into flat samples."""

from __future__ import annotations

import pytest

from pyllmd.core.promtext import PromTextError, Sample, parse_samples

TEXT = """\
# HELP inference_extension_flow_control_queue_size Requests in the flow-control queue.
# TYPE inference_extension_flow_control_queue_size gauge
inference_extension_flow_control_queue_size{priority="0",target_model_name="m\\"1"} 2
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{model_name="m",le="0.5"} 1
vllm:e2e_request_latency_seconds_bucket{model_name="m",le="+Inf"} 3
vllm:e2e_request_latency_seconds_sum{model_name="m"} 2.25
vllm:e2e_request_latency_seconds_count{model_name="m"} 3
# TYPE requests counter
requests_total 7 1700000000000
untyped_metric NaN
"""


def test_every_sample_with_its_full_name_labels_and_value() -> None:
    samples = parse_samples(TEXT)
    assert samples[0] == Sample(
        "inference_extension_flow_control_queue_size",
        {"priority": "0", "target_model_name": 'm"1'},
        2.0,
    )
    names = [s.name for s in samples]
    assert names[1:5] == [
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_sum",
        "vllm:e2e_request_latency_seconds_count",
    ]
    assert samples[2].labels == {"model_name": "m", "le": "+Inf"}
    assert samples[5] == Sample("requests_total", {}, 7.0)
    assert samples[6].name == "untyped_metric" and samples[6].value != samples[6].value


def test_empty_text_has_no_samples() -> None:
    assert parse_samples("") == []


@pytest.mark.parametrize("text", ['x{a="1} 3\n', "x{a=1} 3\n", 'x{a="1"} notanumber\n'])
def test_malformed_text_raises(text: str) -> None:
    with pytest.raises(PromTextError):
        parse_samples(text)


NARROW_TEXT = """# HELP vllm:num_requests_waiting Waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 3
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 2
vllm:e2e_request_latency_seconds_sum{model_name="m"} 0.5
vllm:kv_cache_usage_perc 0.25 1700000000000
requests_total 7
"""


def test_names_narrow_the_parse_without_changing_the_wanted_samples() -> None:
    names = {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"}
    narrowed = parse_samples(NARROW_TEXT, names)
    assert narrowed == [s for s in parse_samples(NARROW_TEXT) if s.name in names]
    assert [s.name for s in narrowed] == sorted(names, reverse=True)


@pytest.mark.parametrize(
    "line", ["this is { not prometheus", 'x{a="1} 3', 'x{a="1"} notanumber', "x{a=1} 3"]
)
def test_names_still_reject_malformed_lines_of_other_metrics(line: str) -> None:
    with pytest.raises(PromTextError):
        parse_samples(NARROW_TEXT + line + "\n", {"vllm:num_requests_waiting"})
