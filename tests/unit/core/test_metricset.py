"""The hand-written metrics: Go number formatting and text exposition a scraper parses."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyllmd.core.metricset import Family, Registry, go_float


@pytest.mark.parametrize(
    "value,text",
    [
        (0.0, "0"),
        (1.0, "1"),
        (0.4, "0.4"),
        (-2.5, "-2.5"),
        (1e-05, "1e-05"),
        (0.0001, "0.0001"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1795455855.0, "1.795455855e+09"),
        (0.30000000000000004, "0.30000000000000004"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_go_float_matches_go_formatfloat_g(value: float, text: str) -> None:
    assert go_float(value) == text


def test_render_is_parseable_sorted_and_cumulative() -> None:
    reg = Registry()
    hist = reg.add(Family("z:h", "histogram", "a histogram", ("model_name",), (0.1, 1.0)))
    gauge = reg.add(Family("a:g", "gauge", "a gauge", ("b", "a")))
    reg.add(Family("m:unused", "counter", "never touched", ("model_name",)))
    child = hist.histogram("m")
    child.observe(0.1)
    child.observe(0.5)
    child.observe_many(7.0, 2)
    gauge.gauge("x", 'quote"back\\slash').set(3)
    text = reg.render().decode()
    assert text.index("# TYPE a:g gauge") < text.index("# TYPE z:h histogram")
    assert "m:unused" not in text
    assert 'z:h_bucket{model_name="m",le="0.1"} 1' in text
    assert 'z:h_bucket{model_name="m",le="1"} 2' in text
    assert 'z:h_bucket{model_name="m",le="+Inf"} 4' in text
    assert 'z:h_count{model_name="m"} 4' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["a:g"].samples
    assert sample.labels == {"b": "x", "a": 'quote"back\\slash'} and sample.value == 3
    sums = [s for s in families["z:h"].samples if s.name == "z:h_sum"]
    assert sums[0].value == pytest.approx(14.6)


def test_duplicate_names_and_wrong_label_counts_are_rejected() -> None:
    reg = Registry()
    fam = reg.add(Family("x", "gauge", "x", ("a",)))
    with pytest.raises(ValueError):
        reg.add(Family("x", "counter", "x"))
    with pytest.raises(ValueError):
        fam.labels("1", "2")


def test_remove_drops_one_series_from_the_exposition() -> None:
    reg = Registry()
    gauge = reg.add(Family("wva_g", "gauge", "g", ("namespace", "variant_name")))
    gauge.gauge("ns", "a").set(1)
    gauge.gauge("ns", "b").set(2)
    assert gauge.remove("ns", "a") is True
    assert gauge.remove("ns", "a") is False
    assert reg.render().decode().splitlines()[2:] == ['wva_g{namespace="ns",variant_name="b"} 2']
    assert gauge.remove("ns", "b") is True
    assert reg.render() == b""
