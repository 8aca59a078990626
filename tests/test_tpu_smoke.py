"""bench/tpu_smoke.py: the TPU peak table and its per-chip vs per-core arithmetic, MFU from
metrics.jsonl windows and funnel_tf.flops, the verdict lines and the entry points' messages it
reads; and (slow) bench/tpu_smoke.sh end to end on the CPU. bench/jax_smoke.py (tpu_smoke.sh
--backend=jax): the JAX engine's checkpoint names, the JAX device report on a TPU VM and off it,
its stages' failure path, and (slow) its whole run on the CPU (JAX_PLATFORMS=cpu)."""

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import jax_smoke  # noqa: E402
import tpu_smoke as ts  # noqa: E402

from funnel_tf import flops  # noqa: E402


@pytest.mark.parametrize("name, gen", [
    ("v2-8", "v2"), ("v3-8", "v3"), ("v3-32", "v3"), ("v4-8", "v4"), ("v5litepod-8", "v5e"),
    ("v5litepod-16", "v5e"), ("v5e-4", "v5e"), ("v5p-8", "v5p"), ("v6e-8", "v6e"),
    ("TPU v2", "v2"), ("TPU v3", "v3"), ("TPU v4", "v4"), ("TPU v5 lite", "v5e"),
    ("TPU v5e", "v5e"), ("TPU v5", "v5p"), ("TPU v5p", "v5p"), ("TPU v6 lite", "v6e"),
    ("TPU v6e", "v6e"), ("", None), (None, None), ("H100", None), ("v7x-8", None), ("v4p-8", None),
])
def test_generation_from_accelerator_type_or_device_kind(name, gen):
    assert ts.tpu_generation(name) == gen


@pytest.mark.parametrize("accel, chips", [
    ("v2-8", 4), ("v3-8", 4), ("v4-8", 4), ("v4-32", 16), ("v5p-8", 4), ("v5litepod-8", 8),
    ("v6e-8", 8), ("v6e-1", 1), ("TPU v4", None), (None, None)])
def test_slice_chips_counts_cores_or_chips_by_generation(accel, chips):
    assert ts.slice_chips(accel) == chips


@pytest.mark.parametrize("gen, replicas, chips, tflops", [
    ("v2", 8, 4, 4 * 45.0),      # v2-8: TF shows 8 cores as 8 replicas = 4 chips
    ("v3", 8, 4, 4 * 123.0),     # v3-8
    ("v4", 4, 4, 4 * 275.0),     # v4-8: one megacore device per chip
    ("v5p", 4, 4, 4 * 459.0),    # v5p-8
    ("v5e", 8, 8, 8 * 197.0),    # v5litepod-8: one core per chip
    ("v6e", 8, 8, 8 * 918.0),    # v6e-8
    ("v3", 1, 0.5, 61.5),        # one replica of a v3 is half a chip
])
def test_peak_is_per_chip_and_tf_replicas_are_cores(gen, replicas, chips, tflops):
    peak = ts.tpu_peak(gen, replicas)
    assert peak["chips"] == pytest.approx(chips)
    assert peak["peak_flops"] == pytest.approx(tflops * 1e12)


def test_no_peak_off_tpu():
    assert ts.tpu_peak(None, 1)["peak_flops"] is None
    assert ts.tpu_peak("v4", 0)["peak_flops"] is None
    assert ts.mfu(1e12, 0.5, None) is None          # CPU: MFU n/a
    assert ts.mfu(1e12, None, 1e14) is None          # no steady window timed


def test_mlm_step_flops_are_the_model_plus_the_head_at_the_masked_positions(tiny_config):
    cfg = tiny_config.replace(vocab_size=1000)
    body = flops.train_flops(cfg, 64, 8, with_decoder=True)
    got = ts.mlm_train_flops_per_step(cfg, 64, 8, num_predict=10)
    assert got == body + 3 * 2 * 8 * 10 * cfg.d_model * 1000
    with_transform = ts.mlm_train_flops_per_step(cfg.replace(mlm_transform=True), 64, 8, 10)
    assert with_transform - got == 3 * 2 * 8 * 10 * cfg.d_model * cfg.d_model


def test_step_time_and_mfu_from_metrics_records():
    # One run's records: the first window holds the compile (NaN rate); then 50 steps at 10/s
    # and 100 steps at 20/s: 10 s for 150 steps.
    records = [{"step": 50, "steps_per_sec": float("nan")},
               {"step": 100, "steps_per_sec": 10.0},
               {"step": 200, "steps_per_sec": 20.0}]
    windows = ts.steady_windows(records)
    assert windows == [(50, 5.0), (100, 5.0)]
    t = ts.step_time(windows)
    assert t == pytest.approx(10.0 / 150)
    peak = ts.tpu_peak("v4", 4)["peak_flops"]                       # 1100 TFLOP/s
    assert ts.mfu(55e12, t, peak) == pytest.approx(55e12 / t / 1100e12)
    assert ts.steady_windows(records[:1]) == [] and ts.step_time([]) is None


def test_verdict_lines_round_trip_and_any_failure_fails():
    stages = [ts.Stage("install", ts.SKIP, "--no-install"), ts.Stage("devices", ts.PASS, "cpu"),
              ts.Stage("tiny/pretrain", ts.PASS, "step 10/40 - loss 6.7"),
              ts.Stage("tiny/sigterm", ts.PASS)]
    text = "noise\n" + ts.format_verdict(stages) + "\nmore noise"
    verdict, seen = ts.parse_verdict(text)
    assert verdict == "PASS"
    assert seen == {"install": "SKIP", "devices": "PASS", "tiny/pretrain": "PASS",
                    "tiny/sigterm": "PASS"}
    failed = stages + [ts.Stage("tiny/resume", ts.FAIL, "exit 1")]
    assert ts.parse_verdict(ts.format_verdict(failed)) == (
        "FAIL", {**seen, "tiny/resume": "FAIL"})
    assert ts.overall([ts.Stage("install", ts.SKIP)]) == "FAIL"   # nothing ran: not a pass
    assert ts.parse_verdict("no verdict here") == (None, {})


def test_what_the_entry_points_print_is_read_back():
    log = ("I1207 checkpointing.py:160] restored /x/checkpoints/ckpt-10 (step 10)\n"
           "I1207 loop.py:406] resuming input at step 10 by replaying 10 batch(es)\n")
    assert ts.restored_step(log) == 10 and ts.restored_step("fresh run") is None
    assert ts.pretrain_end("\nstopped (preempted) at step 15: loss 6.1\n") == ("preempted", 15)
    assert ts.pretrain_end("\nfinished at step 40: loss 5.0\nloss 6.7 at step 5") == (
        "finished", 40)
    assert ts.pretrain_end("Traceback ...") == (None, None)
    summary = ts.json_summary('I1207 log line\n{\n "task": "rte",\n "train": {"step": 4}\n}\n')
    assert summary == {"task": "rte", "train": {"step": 4}}
    assert ts.json_summary("no json") is None


def test_newest_checkpoint_step_and_generated_rte(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    assert ts.newest_checkpoint_step(str(tmp_path / "run")) is None
    for name in ("ckpt-10.index", "ckpt-10.data-00000-of-00001", "ckpt-25.index", "checkpoint"):
        (ck / name).write_text("")
    assert ts.newest_checkpoint_step(str(tmp_path / "run")) == 25
    folder = ts.write_rte(str(tmp_path / "rte"), num_train=20, num_dev=6)
    rows = (tmp_path / "rte" / "train.tsv").read_text().splitlines()
    assert rows[0] == "index\tsentence1\tsentence2\tlabel" and len(rows) == 21
    assert all(r.split("\t")[3] in ("entailment", "not_entailment") for r in rows[1:])
    assert len((tmp_path / "rte" / "dev.tsv").read_text().splitlines()) == 7
    assert folder == str(tmp_path / "rte")


def test_bad_arguments_exit_2_before_anything_runs(tmp_path):
    sh = os.path.join(REPO, "bench", "tpu_smoke.sh")
    for bad in (["--strategy=gpu"], ["stray"], ["--configs="], ["--backend=torch"],
                ["--backend=jax", "--strategy=gpu"]):
        r = subprocess.run(["bash", sh, *bad, f"--out={tmp_path / 'o'}"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and "tpu_smoke.sh:" in r.stderr, (bad, r.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_tpu_smoke_end_to_end_on_cpu(tmp_path):
    """The whole smoke test with --strategy=default on the CPU: every stage passes, the JSON
    summary says so, with a step time and MFU n/a."""
    out = tmp_path / "smoke"
    r = subprocess.run(["bash", os.path.join(REPO, "bench", "tpu_smoke.sh"), "--strategy=default",
                        "--no-install", "--configs=tiny", f"--out={out}"],
                       capture_output=True, text=True, timeout=1800, cwd=REPO)
    verdict, stages = ts.parse_verdict(r.stdout)
    assert r.returncode == 0 and verdict == "PASS", r.stdout[-4000:] + r.stderr[-4000:]
    for stage in ("pretrain", "sigterm", "resume", "finetune", "export"):
        assert stages[f"tiny/{stage}"] == "PASS"
    summary = json.loads((out / "tpu_smoke.json").read_text())
    assert summary["verdict"] == "PASS" and summary["strategy"] == "default"
    speed = summary["speed"]["tiny"]
    assert speed["mfu"] is None and speed["steps_timed"] > 0
    assert math.isfinite(speed["step_time_s"]) and speed["step_time_s"] > 0
    assert "MFU" in r.stdout and "n/a (CPU)" in r.stdout


def test_a_failing_stage_fails_the_verdict_with_its_reason_and_a_json(tmp_path):
    """The orchestration's failure path, fast: stages run by an interpreter that fails at once."""
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\necho 'I1207 starting' >&2\necho 'RuntimeError: no TPU here' >&2\n"
                    "exit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "tpu_smoke.py"),
                        "--strategy=default", "--configs=tiny", f"--out={out}",
                        f"--python={fake}"], capture_output=True, text=True, timeout=120)
    verdict, stages = ts.parse_verdict(r.stdout)
    assert r.returncode == 1 and verdict == "FAIL" and stages["devices"] == "FAIL", r.stdout
    assert "exit 3: RuntimeError: no TPU here (log: " in r.stdout
    summary = json.loads((out / "tpu_smoke.json").read_text())
    assert summary["verdict"] == "FAIL"
    assert [s["status"] for s in summary["stages"]] == ["SKIP", "FAIL"]
    # a folder holding a run's results is refused (its model_dirs would be resumed)
    (out / "tiny").mkdir()
    (out / "tiny" / "pretrain.log").write_text("")
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "tpu_smoke.py"),
                        "--strategy=default", "--configs=tiny", f"--out={out}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "use a new --out" in r.stderr and r.stdout == ""


# ---------------------------------------------------------------- --backend=jax (jax_smoke.py)
def test_jax_checkpoint_steps_count_finished_checkpoints_only(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    assert jax_smoke.newest_jax_checkpoint_step(str(tmp_path / "run")) is None
    for name in ("jax_10", "jax_20", "jax_40.orbax-checkpoint-tmp-1733", "ckpt-50.index"):
        (ck / name).mkdir()
    assert jax_smoke.newest_jax_checkpoint_step(str(tmp_path / "run")) == 20
    (ck / "jax-30.npz").write_bytes(b"")  # the engine's earlier format
    assert jax_smoke.newest_jax_checkpoint_step(str(tmp_path / "run")) == 30


def test_jax_device_report_needs_tpus_on_a_tpu_vm():
    tpu = {"backend": "tpu", "num_devices": 4, "num_processes": 1, "device_kind": "TPU v4",
           "jax_version": "0.10.2"}
    ok, detail, peak = jax_smoke.device_detail(tpu, "tpu", None)
    assert ok and "4 x TPU v4" in detail and "v4: 4 chip(s) x 275 TFLOP/s" in detail
    assert peak["peak_flops"] == pytest.approx(4 * 275e12)
    v3 = dict(tpu, num_devices=8, device_kind="TPU v3")       # JAX lists v3's TensorCores too
    assert jax_smoke.device_detail(v3, "tpu", "v3-8")[2]["chips"] == pytest.approx(4)
    cpu = dict(tpu, backend="cpu", num_devices=1, device_kind="cpu")
    ok, detail, _ = jax_smoke.device_detail(cpu, "tpu", "v4-8")
    assert not ok and "JAX sees no TPU" in detail
    ok, _, peak = jax_smoke.device_detail(cpu, "default", None)
    assert ok and peak["peak_flops"] is None


def test_jax_stages_on_a_simulated_tpu_vm_fail_with_a_reason_and_a_json(tmp_path):
    """The orchestration, fast: an interpreter whose device probe reports 4 TPU v4 chips (as
    jax.devices() does on a v4-8) and whose pretrain.py fails at once: devices PASS with the v4
    peak, pretraining FAIL with the log's reason, the finetune-less rest skipped, the JSON
    summary marked backend jax."""
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *--probe_devices*) echo 'DEVICES {\"backend\": "
                    "\"tpu\", \"num_devices\": 4, \"num_processes\": 1, \"device_kind\": "
                    "\"TPU v4\", \"jax_version\": \"0.10.2\"}'; exit 0;; esac\n"
                    "echo 'RuntimeError: TPU is held by another process' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "jax_smoke.py"),
                        "--configs=tiny", f"--out={out}", "--accelerator_type=v4-8",
                        f"--python={fake}"], capture_output=True, text=True, timeout=120)
    verdict, stages = ts.parse_verdict(r.stdout)
    assert r.returncode == 1 and verdict == "FAIL", r.stdout + r.stderr
    assert stages["devices"] == "PASS" and stages["tiny/pretrain"] == "FAIL"
    assert stages["tiny/finetune"] == "SKIP"
    assert "exit 1: RuntimeError: TPU is held by another process (log: " in r.stdout
    summary = json.loads((out / "tpu_smoke.json").read_text())
    assert summary["backend"] == "jax" and summary["verdict"] == "FAIL"
    assert summary["device"]["peak"]["peak_flops"] == pytest.approx(4 * 275e12)
    pretrain_cmd = (out / "tiny" / "pretrain.cmd").read_text()
    assert "--backend=jax" in pretrain_cmd and "--precision=mixed_bfloat16" in pretrain_cmd
    assert "--strategy" not in pretrain_cmd and "--tpu" not in pretrain_cmd


@pytest.mark.slow
def test_jax_smoke_end_to_end_on_cpu(tmp_path):
    """tpu_smoke.sh --backend=jax on the CPU (JAX_PLATFORMS=cpu): pretrain.py --backend=jax, its
    SIGTERM save and exit 75, the resume from that checkpoint, the export loaded on JAX; a step
    time, MFU n/a."""
    pytest.importorskip("jax")
    out = tmp_path / "smoke"
    r = subprocess.run(["bash", os.path.join(REPO, "bench", "tpu_smoke.sh"), "--backend=jax",
                        "--strategy=default", "--no-install", "--configs=tiny", f"--out={out}"],
                       capture_output=True, text=True, timeout=1800, cwd=REPO)
    verdict, stages = ts.parse_verdict(r.stdout)
    assert r.returncode == 0 and verdict == "PASS", r.stdout[-4000:] + r.stderr[-4000:]
    for stage in ("devices", "tiny/pretrain", "tiny/sigterm", "tiny/resume", "tiny/export"):
        assert stages[stage] == "PASS", stage
    summary = json.loads((out / "tpu_smoke.json").read_text())
    assert summary["backend"] == "jax" and summary["device"]["backend"] == "cpu"
    speed = summary["speed"]["tiny"]
    assert speed["mfu"] is None and speed["steps_timed"] > 0 and speed["step_time_s"] > 0
    assert jax_smoke.newest_jax_checkpoint_step(str(out / "tiny" / "pretrain")) == 40
