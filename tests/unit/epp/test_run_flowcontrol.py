"""`pyllmd epp` wiring of the `flowControl` gate: the controller replaces legacy admission."""

from __future__ import annotations

import pytest

from pyllmd import cli
from pyllmd.core.clock import VirtualClock
from pyllmd.core.promtext import parse_samples
from pyllmd.epp.extproc.flowcontroller import FlowController
from tests.unit.epp.plugin_helpers import endpoint, request
from tests.unit.epp.test_run import STATIC, epp_for

GATE_ON = (
    "featureGates: [flowControl]\n"
    "plugins:\n- type: queue-scorer\n- type: fcfs-ordering-policy\n"
    "- type: global-strict-fairness-policy\n"
    "flowControl:\n  defaultRequestTTL: 30s\n  priorityBands:\n  - {priority: 10, maxBytes: 500}\n"
)


def test_gate_on_wires_a_flow_controller_instead_of_admission() -> None:
    epp = epp_for([], GATE_ON)
    flow = epp.servicer.flow_control
    assert isinstance(flow, FlowController)
    assert epp.servicer.admission is None
    assert flow.config.default_ttl == 30.0
    assert flow.config.band(10).max_bytes == 500
    assert flow.saturation == epp.config.saturation
    assert flow.metrics is not None and flow.metrics.pool_name == ""  # static: no pool name


def test_gate_off_keeps_legacy_admission() -> None:
    epp = epp_for([], "flowControl:\n  maxBytes: 10\n")
    assert epp.servicer.flow_control is None
    assert epp.servicer.admission is not None


async def test_flow_metrics_are_served_on_the_epp_registry() -> None:
    clock = VirtualClock(start=100.0)
    epp = epp_for([], GATE_ON, clock=clock)
    flow = epp.servicer.flow_control
    assert isinstance(flow, FlowController)
    fresh = [endpoint("e-rank-0", update_time=clock.now())]
    await flow.enqueue_and_wait(request(priority=10), 20, lambda: fresh)
    samples = parse_samples(epp.metrics.render().decode())
    sizes = [s for s in samples if s.name == "inference_extension_flow_control_queue_size"]
    assert [(s.labels["priority"], s.labels["target_model_name"], s.value) for s in sizes] == [
        ("10", "m", 0.0)
    ]
    await flow.close()


def test_invalid_flow_control_section_fails_start_up(capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        "featureGates: [flowControl]\nflowControl:\n  priorityBands:\n"
        "  - {priority: 1}\n  - {priority: 1}\n"
    )
    code = cli.main(["epp", STATIC, "--config-text", text])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1
    assert err[0] == (
        "pyllmd epp: error: failed to load the configuration - "
        "flowControl: duplicate priority level 1"
    )
