"""LoRA registry, slots and LoRA-aware scheduling as pure logic (spec §3.1, §7)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pyllmd.core.errors import LlmdError
from pyllmd.sim.api.requests import parse_lora_name
from pyllmd.sim.engine.admission import Admission
from pyllmd.sim.engine.admission import AdmissionQueue as Scheduler
from pyllmd.sim.engine.kvcache import LoraTag
from pyllmd.sim.engine.lora import LoraRegistry, LoraRuntime


@dataclass(eq=False)
class Req:
    name: str
    lora: str | None = None


# -- registry ---------------------------------------------------------------


def test_registry_resolves_served_names_and_adapters() -> None:
    reg = LoraRegistry(["a", "b"], ["l1"])
    assert reg.resolve("a") is None and reg.resolve("b") is None
    assert reg.resolve("l1") == "l1"
    with pytest.raises(LlmdError) as e:
        reg.resolve("x")
    assert (e.value.status, e.value.message) == (404, "The model `x` does not exist.")
    with pytest.raises(LlmdError) as e:
        reg.resolve(None)
    assert e.value.message == "The model `` does not exist."


def test_registry_load_is_idempotent_and_unload_ignores_unknown() -> None:
    reg = LoraRegistry(["m"])
    reg.load("l1")
    reg.load("l2")
    reg.load("l1")
    assert reg.adapters == ("l1", "l2")
    reg.unload("nope")
    reg.unload("l1")
    assert reg.adapters == ("l2",)
    with pytest.raises(LlmdError):
        reg.resolve("l1")


def test_adapter_wins_over_a_served_name_of_the_same_spelling() -> None:
    assert LoraRegistry(["m"], ["m"]).resolve("m") == "m"


def test_models_list_served_names_then_adapters_with_parent() -> None:
    reg = LoraRegistry(["a", "b"], ["l1"])
    data = reg.models(123)
    assert [(d["id"], d["root"], d["parent"]) for d in data] == [
        ("a", "a", None),
        ("b", "b", None),
        ("l1", "l1", "a"),
    ]
    assert all(d["object"] == "model" and d["owned_by"] == "vllm" for d in data)
    assert all(d["created"] == 123 for d in data)


def test_lora_ids_count_from_one_and_survive_unload() -> None:
    reg = LoraRegistry(["m"], ["l1", "l2"])
    reg.load("l3")
    assert [reg.tag(n) for n in ("l1", "l2", "l3")] == [
        LoraTag(1, "l1"),
        LoraTag(2, "l2"),
        LoraTag(3, "l3"),
    ]
    reg.unload("l2")
    reg.load("l2")
    assert reg.tag("l2") == LoraTag(2, "l2")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b'{"lora_name":"x","lora_path":"/p"}', "x"),
        (b'{"lora_name":"x","extra":1}', "x"),
        (b"{}", ""),
        (b'{"lora_name":null}', ""),
        (b"null", ""),
    ],
)
def test_parse_lora_name(raw: bytes, name: str) -> None:
    assert parse_lora_name(raw, load=True) == name
    assert parse_lora_name(raw, load=False) == name


@pytest.mark.parametrize("raw", [b"{", b"", b'{"lora_name":5}', b"[]"])
def test_parse_lora_name_errors_name_the_endpoint(raw: bytes) -> None:
    for load, verb in ((True, "load"), (False, "unload")):
        with pytest.raises(LlmdError) as e:
            parse_lora_name(raw, load=load)
        assert e.value.status == 400
        assert e.value.message.startswith(f"failed to read and parse {verb} lora request body, ")


# -- runtime slots ----------------------------------------------------------


def test_slots_load_up_to_max_then_evict_the_least_recently_started_idle() -> None:
    rt = LoraRuntime(2)
    assert rt.start("a") is None and rt.start("b") is None
    assert not rt.can_load("c")  # both busy
    rt.finish("a")
    rt.finish("b")
    rt.start("b")  # b is now the most recently started
    rt.finish("b")
    assert rt.can_load("c")
    assert rt.start("c") == "a"
    assert rt.loaded == ("b", "c")


def test_running_and_waiting_sets_keep_first_appearance_order() -> None:
    rt = LoraRuntime(3)
    rt.enqueue("w1")
    rt.enqueue("w2")
    rt.enqueue("w1")
    rt.start("a")
    rt.start("b")
    rt.start("a")  # a moves to the LRU tail but keeps its place in the running set
    assert rt.running == ("a", "b") and rt.waiting == ("w1", "w2")
    rt.dequeue("w1")
    assert rt.waiting == ("w1", "w2")
    rt.dequeue("w1")
    assert rt.waiting == ("w2",)
    rt.finish("a")
    rt.finish("a")
    assert rt.running == ("b",)


def test_version_changes_on_every_event() -> None:
    rt = LoraRuntime(1)
    seen = [rt.version]
    for step in (rt.enqueue, rt.dequeue, rt.start, rt.finish):
        step("a")
        seen.append(rt.version)
    assert len(set(seen)) == 5


def test_max_loras_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        LoraRuntime(0)


# -- scheduling -------------------------------------------------------------


def test_sim_acc_40_second_adapter_waits_for_the_slot() -> None:
    sched: Scheduler[Req] = Scheduler(max_running=5, max_waiting=10, max_loras=1)
    first, second = Req("1", "l1"), Req("2", "l2")
    assert sched.submit(first) is Admission.STARTED
    assert sched.submit(second) is Admission.QUEUED  # free workers, but no LoRA slot
    assert sched.loras.running == ("l1",) and sched.loras.waiting == ("l2",)
    assert sched.release(first) == [second]  # l1 idle now: evicted for l2
    assert sched.loras.loaded == ("l2",)
    assert sched.loras.running == ("l2",) and sched.loras.waiting == ()


def test_base_and_loaded_adapter_requests_pass_a_blocked_one() -> None:
    sched: Scheduler[Req] = Scheduler(max_running=5, max_waiting=10, max_loras=1)
    a1, b1, base, a2 = Req("a1", "a"), Req("b1", "b"), Req("base"), Req("a2", "a")
    assert sched.submit(a1) is Admission.STARTED
    assert sched.submit(b1) is Admission.QUEUED
    assert sched.submit(base) is Admission.STARTED
    assert sched.submit(a2) is Admission.STARTED  # a is loaded
    assert sched.release(a1) == []  # a2 still runs on a
    assert sched.release(a2) == [b1]


def test_free_worker_prefers_loaded_adapter_then_fifo_loadable() -> None:
    sched: Scheduler[Req] = Scheduler(max_running=1, max_waiting=10, max_loras=2)
    run = Req("run", "a")
    sched.submit(run)
    c, b, a2 = Req("c", "c"), Req("b", "b"), Req("a2", "a")
    for r in (c, b, a2):
        assert sched.submit(r) is Admission.QUEUED  # the only worker is busy
    assert sched.release(run) == [a2]  # a is loaded: no load needed
    assert sched.release(a2) == [c]  # then the first loadable (a free slot)
    assert sched.loras.loaded == ("a", "c")
    assert sched.release(c) == [b]  # evicts a (least recently started idle)
    assert sched.loras.loaded == ("c", "b")


def test_queue_full_rejects_and_withdraw_updates_waiting_adapters() -> None:
    sched: Scheduler[Req] = Scheduler(max_running=1, max_waiting=1, max_loras=1)
    sched.submit(Req("r"))
    w = Req("w", "l")
    assert sched.submit(w) is Admission.QUEUED
    assert sched.submit(Req("x")) is Admission.REJECTED
    assert sched.withdraw(w) is True and sched.loras.waiting == ()
    assert sched.withdraw(w) is False


def test_pause_queues_everything_and_resume_fills_free_workers() -> None:
    sched: Scheduler[Req] = Scheduler(max_running=2, max_waiting=10, max_loras=1)
    running = Req("running")
    sched.submit(running)
    sched.pause()
    held = [Req("h1"), Req("h2", "l"), Req("h3")]
    assert [sched.submit(r) for r in held] == [Admission.QUEUED] * 3
    assert sched.release(running) == []  # nothing starts while paused
    assert sched.resume() == [held[0], held[2]]  # no-load requests first, then loadable
    assert sched.num_waiting == 1


def test_release_of_an_unknown_item_only_fills() -> None:
    sched: Scheduler[Req] = Scheduler(max_running=1, max_waiting=5, max_loras=1)
    assert sched.release(Req("ghost", "l")) == []
    assert sched.loras.running == ()
