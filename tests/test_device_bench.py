"""bench/device_bench.py's pure parts: the GPU-name -> dense-peak lookup behind its MFU column and
the table (the GPU runs themselves happen in bench/device_check.sh on a GPU machine)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import device_bench  # noqa: E402


@pytest.mark.parametrize("name, bf16, fp32", [
    ("NVIDIA H100 80GB HBM3", 989.4, 494.7),     # SXM
    ("NVIDIA H100 PCIe", 756.0, 378.0),
    ("NVIDIA H100 NVL", 835.0, 418.0),
    ("NVIDIA H200", 989.4, 494.7),
    ("NVIDIA A100-SXM4-80GB", 312.0, 156.0),
    ("NVIDIA L4", 121.0, 60.0),
])
def test_dense_peak_from_the_gpu_name(name, bf16, fp32):
    peak = device_bench.dense_peak(name)
    assert peak["bf16"] == pytest.approx(bf16 * 1e12) and peak["fp32"] == pytest.approx(fp32 * 1e12)


def test_unknown_gpu_has_no_peak_and_the_table_says_so():
    peak = device_bench.dense_peak("Tesla K80")
    assert peak["bf16"] is None and "unknown device" in peak["source"]
    rows = device_bench.table([
        dict(model="small", precision="bf16", shape="32x512", impl="ours-xla", device="GPU",
             median_s=0.1, min_s=0.09, tokens_per_s=163840.0, mfu=None, peak_device_mem_mb=1.0),
        dict(model="small", precision="bf16", shape="32x512", impl="hf-torch-eager",
             error="exit 1: CUDA out of memory")]).splitlines()
    assert "| ours-xla | GPU | 100.0 | 90.0 | 163840 | n/a |" in rows[2]
    assert "error: exit 1: CUDA out of memory" in rows[3]
