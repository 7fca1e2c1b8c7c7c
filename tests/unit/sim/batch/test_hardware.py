"""Accelerators: the built-in table, a --accelerator-config file, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyllmd.core.errors import ConfigError
from pyllmd.sim.batch.hardware import (
    BUILTIN,
    get_accelerator,
    load_accelerators,
    parse_interconnect,
)


def test_builtin_table_has_the_calibration_gpus_with_their_peaks() -> None:
    h100 = get_accelerator("H100")
    assert h100.flops == pytest.approx(989.5e12)
    assert h100.flops_for(fp8=True) == pytest.approx(1979e12)
    assert h100.hbm_bytes_per_s == pytest.approx(3.35e12)
    assert h100.nvlink and h100.link_gbps == pytest.approx(450.0)
    a100 = get_accelerator("a100-80gb")  # case-insensitive
    assert a100.fp8_tflops is None and a100.flops_for(fp8=True) == pytest.approx(312e12)
    l40s = BUILTIN["L40S"]
    assert not l40s.nvlink and l40s.link_gbps == pytest.approx(32.0)
    assert l40s.memory_bytes == pytest.approx(48 * 2**30)


def test_unknown_accelerator_is_one_line_naming_the_flag_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as e:
        get_accelerator("B200")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("--accelerator 'B200': unknown accelerator")
    assert "H100" in msg and "--accelerator-config" in msg


def test_a_config_file_adds_a_gpu_and_overrides_a_builtin(tmp_path: Path) -> None:
    f = tmp_path / "gpus.csv"
    f.write_text(
        "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect,notes\n"
        "B200,2250,4500,8,180,NVLink 1800 GB/s,x\n"
        "H100,900,,3.0,80,PCIe Gen5,slower\n"
    )
    extra = load_accelerators(f)
    b200 = get_accelerator("B200", extra)
    assert b200.hbm_tbps == 8 and b200.link_gbps == 900
    assert get_accelerator("H100", extra).bf16_tflops == 900
    assert get_accelerator("H100", extra).link_gbps == 64


def test_the_network_per_gpu_built_in_and_from_the_optional_column(tmp_path: Path) -> None:
    # NVIDIA's reference systems, one NIC per GPU: DGX H100 400 Gb/s, DGX A100 200 Gb/s
    assert get_accelerator("H100").network_gbps == 50.0
    assert get_accelerator("A100-80GB").network_gbps == 25.0
    assert get_accelerator("L40S").network_gbps == 25.0  # assumed: 200 Gb/s
    f = tmp_path / "gpus.csv"
    f.write_text(
        "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect,network_GBps\n"
        "B200,2250,4500,8,180,NVLink 1800 GB/s,100\n"
        "X,1,,1,1,PCIe Gen4,\n"
    )
    extra = load_accelerators(f)
    assert extra["B200"].network_gbps == 100.0
    assert extra["X"].network_gbps == 25.0  # left empty: the default


def test_the_host_link_the_cpu_kv_tier_loads_over(tmp_path: Path) -> None:
    # PCIe Gen5 x16 on H100 SXM, Gen4 x16 on A100 SXM and L40S: GB/s one way
    assert get_accelerator("H100").host_gbps == 64.0
    assert get_accelerator("A100-80GB").host_gbps == 32.0
    assert get_accelerator("L40S").host_gbps == 32.0
    f = tmp_path / "gpus.csv"
    f.write_text(
        "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect,host_link\n"
        "B200,2250,4500,8,180,NVLink 1800 GB/s,PCIe Gen6\n"
        "X,1,,1,1,PCIe Gen4,\n"
    )
    extra = load_accelerators(f)
    assert extra["B200"].host_gbps == 128.0
    assert extra["X"].host_gbps == 32.0  # left empty: PCIe Gen4


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("gpu,bf16_tflops_dense\nX,1\n", "missing column(s) fp8_tflops_dense"),
        (
            "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect,network_GBps\n"
            "X,1,,1,1,PCIe Gen4,0\n",
            ":2: column network_GBps must be > 0, got '0'",
        ),
        (
            "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect\n"
            "X,fast,,1,1,PCIe Gen4\n",
            ":2: column bf16_tflops_dense must be a number, got 'fast'",
        ),
        (
            "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect\n"
            "X,1,,1,1,carrier pigeon\n",
            "interconnect 'carrier pigeon': must be",
        ),
        (
            "gpu,bf16_tflops_dense,fp8_tflops_dense,hbm_bw_TBps,memory_GiB,interconnect\n",
            "no accelerator rows",
        ),
    ],
)
def test_a_bad_config_file_is_one_line_naming_file_and_rule(
    tmp_path: Path, text: str, needle: str
) -> None:
    f = tmp_path / "gpus.csv"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_accelerators(f)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"--accelerator-config {f}")


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--accelerator-config .*nope.csv: No such file"):
        load_accelerators(tmp_path / "nope.csv")


def test_interconnect_forms() -> None:
    assert parse_interconnect("NVLink 600 GB/s") == (300.0, True)
    assert parse_interconnect("PCIe Gen4 (no NVLink)") == (32.0, False)
    assert parse_interconnect("100 GB/s") == (100.0, False)
