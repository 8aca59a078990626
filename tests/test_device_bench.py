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



def test_timing_record_summarises_a_run_and_an_error(capsys):
    """device_bench.timing_record, shared by device_bench.py and jax_step.py: median/min step time,
    tokens/s and MFU against the peak of the record's precision; a failed run keeps its error."""
    from funnel_tf.config import load_config

    spec = dict(impl="ours-xla", model="tiny", config=load_config("tiny").to_dict(), base=False,
                task="train", batch=2, seq_len=64, shape="2x64", precision="bf16", iters=3)
    flops = device_bench.bf._flops_for(spec["config"], {k: v for k, v in spec.items()
                                                       if k != "config"})
    rec = device_bench.timing_record(spec, {"times_s": [0.3, 0.1, 0.2]}, 5.0,
                                     {"bf16": 1e12, "fp32": None})
    assert "config" not in rec and rec["wall_s"] == 5.0 and rec["model_flops"] == flops > 0
    assert rec["median_s"] == 0.2 and rec["min_s"] == 0.1 and rec["tokens_per_s"] == 2 * 64 / 0.2
    assert rec["mfu"] == pytest.approx(flops / 0.2 / 1e12)
    fp32 = device_bench.timing_record(dict(spec, precision="fp32"), {"times_s": [0.2]}, 1.0,
                                      {"bf16": 1e12, "fp32": None})
    assert fp32["mfu"] is None                      # no peak known: no MFU, not a wrong one
    failed = device_bench.timing_record(spec, {"error": "exit 1: out of memory"}, 2.0, {})
    assert "median_s" not in failed and failed["error"] == "exit 1: out of memory"
    out = capsys.readouterr().out
    assert "tiny bf16 ours-xla: median 200.0 ms" in out and "ERROR exit 1: out of memory" in out

# ------------------------------------------------ the engine comparison (bench/jax_step.py)
import jax_step  # noqa: E402


def _rec(impl, median, model="small-base", precision="bf16", **extra):
    return dict(model=model, precision=precision, shape="32x512", impl=impl, device="GPU",
                median_s=median, min_s=median * 0.9, tokens_per_s=16384 / median, mfu=None,
                **extra)


def test_engine_ratios_are_the_jax_step_over_each_peer_at_equal_model_and_precision():
    records = [_rec("ours-xla", 0.10), _rec("ours-jax", 0.08), _rec("hf-torch-eager", 0.16),
               _rec("ours-jax", 0.30, precision="fp32"),            # no fp32 peers timed
               dict(model="small-base", precision="fp32", shape="32x512", impl="ours-xla",
                    error="exit 1: CUDA out of memory")]
    jax_step.compare(records)
    assert records[1]["jax_over_tf"] == pytest.approx(0.8)
    assert records[1]["jax_over_torch"] == pytest.approx(0.5)
    assert "jax_over_tf" not in records[0] and "jax_over_tf" not in records[3]
    rows = jax_step.table(records).splitlines()
    assert "| ours-xla | GPU | 100.0 | 90.0 | 163840 | n/a |  | 0.80 |" in rows[2]
    assert "| hf-torch-eager | GPU | 160.0 |" in rows[4] and rows[4].endswith("| 0.50 |")
    assert "error: exit 1: CUDA out of memory" in rows[6]


@pytest.mark.slow
def test_engine_comparison_on_the_cpu_writes_one_record(tmp_path):
    """bench/jax_step.py --tiny (what device_check.sh --tiny runs): the TF engine's XLA step, the
    JAX engine's TrainStep and HF PyTorch eager time the same tiny model, one JSON record with
    the JAX engine's ratios to both and its final loss finite."""
    pytest.importorskip("jax")
    pytest.importorskip("transformers")
    import json
    import subprocess

    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    proc = subprocess.run([sys.executable, os.path.join(bench, "jax_step.py"), "--tiny",
                           "--precisions=fp32", f"--out={tmp_path}"],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("engines_*_tiny.json")
    record = json.loads(path.read_text())
    by = {r["impl"]: r for r in record["records"]}
    assert sorted(by) == sorted(jax_step.ENGINES)
    for r in by.values():
        assert r["median_s"] > 0 and r["device"].upper() == "CPU" and r["shape"] == "2x64"
    jax_rec = by["ours-jax"]
    assert jax_rec["jax_over_tf"] == pytest.approx(jax_rec["median_s"] / by["ours-xla"]["median_s"])
    assert jax_rec["jax_over_torch"] > 0 and jax_rec["versions"]["jax"]
    assert 0 < jax_rec["final_loss"] < float("inf")
