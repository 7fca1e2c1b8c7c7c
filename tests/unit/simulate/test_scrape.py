"""The simulated pods' `/metrics` scraped on the virtual clock, read by the autoscaler's own
collector: its PromQL over the series store, its answer parser and its replica builder."""

from __future__ import annotations

from pyllmd.autoscaler.collect.queries import (
    AVG_INPUT_TOKENS,
    CACHE_CONFIG_INFO,
    KV_CACHE_USAGE,
    KV_LAST_SAMPLE,
    QUEUE_LENGTH,
    REPLICA_QUERIES,
    classify,
    parse_result,
    render_query,
)
from pyllmd.autoscaler.decide.model import ModelGroup, VariantState
from pyllmd.sim.batch.scheduler import Engine, Request, SchedulerConfig, block_hashes
from pyllmd.simulate.promql import Evaluator, SeriesStore
from pyllmd.simulate.scrape import PodMetrics, scrape

NS, MODEL = "llm", "m"


def step_time(tokens: int, pairs: int, kv: int, seqs: int, decode_only: bool) -> float:
    return 0.01


def engine_with(n: int, prompt: int = 64) -> Engine:
    eng = Engine(SchedulerConfig(num_blocks=100, max_num_seqs=2), step_time, record_tokens=True)
    for i in range(n):
        eng.add(Request(i, 0.0, prompt, 50, block_hashes(list(range(i * 1000, i * 1000 + prompt)))))
    eng.step()
    return eng


def answers(ev: Evaluator, t: float) -> dict[str, list]:
    extra = {"retention": "10m", "window": "5m"}
    return {
        name: parse_result(ev.answer(render_query(name, NS, MODEL, **extra), t))
        for name in REPLICA_QUERIES
    }


def test_the_collector_reads_each_pods_kv_usage_and_queue_from_the_virtual_scrapes() -> None:
    busy, idle = engine_with(3), engine_with(0)
    pods = {"v-0": (PodMetrics(MODEL, 4096), busy), "v-1": (PodMetrics(MODEL, 4096), idle)}
    store, seen = SeriesStore(), {}
    for k in range(5):
        scrape(store, 15.0 * k, NS, pods, seen)
    results = answers(Evaluator(store), 60.0)
    group = ModelGroup(MODEL, NS, (VariantState("v", NS, MODEL, "H100", 10.0, 2),))
    found = classify(group, results, {"v-0": "v", "v-1": "v"}, fresh_threshold=120.0)
    assert found.status == "ok"
    by_pod = {r.pod: r for r in found.replicas}
    assert by_pod["v-0"].queue_length == 1  # 2 sequences run, the third waits
    assert by_pod["v-0"].kv_usage == busy.kv.used / 100 > 0
    assert (by_pod["v-1"].kv_usage, by_pod["v-1"].queue_length) == (0.0, 0)
    assert (by_pod["v-0"].num_gpu_blocks, by_pod["v-0"].block_size) == (100, 16)
    assert {s.labels["pod"] for s in results[CACHE_CONFIG_INFO]} == {"v-0", "v-1"}
    assert {s.labels["pod"] for s in results[KV_LAST_SAMPLE]} == {"v-0", "v-1"}


def test_average_prompt_length_comes_from_the_finished_requests() -> None:
    eng = engine_with(0)
    metrics = PodMetrics(MODEL, 4096)
    store, seen = SeriesStore(), {}
    pods = {"v-0": (metrics, eng)}
    for k in range(21):  # five minutes of 15 s scrapes; two requests end in each interval
        if k:
            for prompt in (100, 300):
                req = Request(k * 10 + prompt, 15.0 * k - 1, prompt, 10)
                req.first_token, req.admitted = 15.0 * k - 0.9, 15.0 * k - 1
                metrics.finished(req, 15.0 * k - 1, 15.0 * k - 0.5)
        scrape(store, 15.0 * k, NS, pods, seen)
    results = answers(Evaluator(store), 300.0)
    assert [round(s.value, 6) for s in results[AVG_INPUT_TOKENS]] == [200.0]


def test_a_pod_that_goes_is_marked_stale_at_the_next_scrape() -> None:
    pods = {
        "v-0": (PodMetrics(MODEL, 4096), engine_with(1)),
        "v-1": (PodMetrics(MODEL, 4096), engine_with(1)),
    }
    store, seen = SeriesStore(), {}
    scrape(store, 0.0, NS, pods, seen)
    del pods["v-1"]
    scrape(store, 15.0, NS, pods, seen)
    ev = Evaluator(store)
    live = ev.instant("vllm:num_requests_running", 16.0)
    assert [dict(p.labels)["pod"] for p in live] == ["v-0"]  # type: ignore[union-attr]
    assert {s.labels["pod"] for s in answers(ev, 16.0)[QUEUE_LENGTH]} == {
        "v-0",
        "v-1",
    }  # max_over_time[1m]
    assert KV_CACHE_USAGE in answers(ev, 16.0)
