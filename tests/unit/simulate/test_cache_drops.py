"""Figure (h)'s "divergent" conditions in virtual time: a pod's prefix cache dropped behind the
router's back (as `/sleep?level=1` then `/wake_up` live), and prompt tokens rendered wider
than the approximate prefix scorer's four characters."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pyllmd.simulate.cluster import Fleet
from pyllmd.simulate.deployment import build_engine_spec, variant_from_args
from pyllmd.simulate.kvfeed import TokenTextTokenizer, drop_prefix_cache
from pyllmd.simulate.replay import replay
from pyllmd.simulate.routing import EppRouter, token_text
from pyllmd.simulate.run import load_options, simulate
from pyllmd.simulate.workload import Client, parse_workload

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ARGS = ["--model", MODEL, "--max-num-seqs", "8", "--max-model-len", "4096",
        "--kv-cache-size", "640"]  # fmt: skip
PRECISE = (
    "plugins:\n- type: precise-prefix-cache-scorer\n  parameters:\n    indexerConfig:\n"
    f"      tokenizersPoolConfig: {{modelName: {MODEL}}}\n"
    "    kvEventsConfig: {discoverPods: false}\n- type: max-score-picker\n"
    "schedulingProfiles:\n- name: default\n  plugins:\n"
    "  - {pluginRef: precise-prefix-cache-scorer, weight: 1}\n  - {pluginRef: max-score-picker}\n"
)


def workload(rate: float, duration: float, users: int) -> dict[str, Any]:
    """One tenant's 512-token system prompt, each request it and a question of its own."""
    return {
        "api": {"type": "completion", "streaming": True},
        "data": {
            "type": "shared_prefix",
            "shared_prefix": {
                "num_unique_system_prompts": 1,
                "num_users_per_system_prompt": users,
                "system_prompt_len": 512,
                "question_len": 16,
                "output_len": 4,
            },
        },
        "server": {"type": "vllm", "model_name": MODEL, "ignore_eos": True},
        "load": {"type": "constant", "stages": [{"rate": rate, "duration": duration}]},
    }


def run(tmp: Path, name: str, drops: list[tuple[float, str]]) -> list[dict[str, str]]:
    stack = {"variants": [{"deployment": {"name": "llama", "replicas": 1, "args": ARGS}}]}
    (tmp / "stack.yaml").write_text(yaml.safe_dump(stack), encoding="utf-8")
    (tmp / "wl.yaml").write_text(yaml.safe_dump(workload(2.0, 10.0, 20)), encoding="utf-8")
    config = load_options(["--stack", str(tmp / "stack.yaml"), "--workload",
                           str(tmp / "wl.yaml"), "--output", str(tmp / name)])  # fmt: skip
    simulate(config, cache_drops=drops, plots=False)
    with (tmp / name / "per_request.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def cached(rows: list[dict[str, str]]) -> list[int]:
    return [int(r["cached_tokens"]) for r in rows]


def test_a_dropped_cache_makes_the_next_request_miss_the_system_prompt(tmp_path: Path) -> None:
    kept = run(tmp_path, "kept", [])
    dropped = run(tmp_path, "dropped", [(5.2, "llama-0")])
    assert cached(kept)[0] == 0 and min(cached(kept)[1:]) >= 512  # one miss, then hits
    after = [i for i, r in enumerate(dropped) if float(r["send_s"]) > 5.2][0]
    assert cached(dropped)[after] == 0  # the system prompt is gone from the pod
    assert cached(dropped)[:after] == cached(kept)[:after]
    assert min(cached(dropped)[after + 1 :]) >= 512  # and cached again by that request


def test_a_drop_of_a_pod_that_is_not_there_changes_nothing(tmp_path: Path) -> None:
    assert run(tmp_path, "a", [(5.2, "llama-7")]) == run(tmp_path, "b", [])


def test_the_precise_scorer_hears_the_drop_as_all_blocks_cleared() -> None:
    spec = build_engine_spec(variant_from_args("llama", ARGS))
    fleet = Fleet.of_pods(spec, ["pod-a"])
    router = EppRouter(PRECISE, "default", 0, token_chars=11)
    pod = fleet.by_name["pod-a"]
    router.attach(pod)
    client = Client(parse_workload(workload(2.0, 2.0, 4)), 0)
    outcome = replay(client, fleet, router=router)
    assert router.kv_feed is not None
    router.kv_feed.deliver(outcome.end + 1)
    processor = router.kv_feed.processors[0]
    prompt = client.sends[0].tokens
    address = router.address("pod-a")

    def holds(tokens: list[int]) -> bool:
        keys = processor.keyer.keys(tokens[:16], MODEL, 0)
        return any(e.pod == address for e in processor.index.holders(keys[0]))

    assert holds(prompt) and processor.stats.cleared == 0
    drop_prefix_cache(pod, outcome.end + 2)
    assert not pod.engine.kv.cached  # nothing was running: every block forgot its prefix
    router.kv_feed.deliver(outcome.end + 2)
    assert processor.stats.cleared == 0  # heard after the feed's delay
    router.kv_feed.deliver(outcome.end + 3)
    assert processor.stats.cleared == 1 and not holds(prompt)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, (1 << 20) - 1), max_size=40), st.integers(4, 16))
def test_the_precise_tokenizer_reads_back_tokens_of_any_width(ids: list[int], chars: int) -> None:
    text = token_text(ids, chars)
    assert len(text) == chars * len(ids)
    tokenizer = TokenTextTokenizer(chars)
    assert tokenizer.count(text) == len(ids)
    assert tokenizer.ids(text) == [t % 36**4 for t in ids]  # ids of a workload are < 36**4
    if chars == 4:
        assert text == token_text(ids)
