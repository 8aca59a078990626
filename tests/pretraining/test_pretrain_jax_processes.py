"""pretrain.py --backend=jax as 2 real processes on localhost (jax.distributed from JAX's own
environment variables, CPU collectives), against 1 process at the same global batch: the two run
in lockstep (every logged loss is the same on both: they are global means), the chief alone
writes the run folder, and the run ends where the 1-process run does.

Each process reads its own share of the records (pretraining_reader: one file each of the two),
masked with its own stream, so the 2-process batches are other draws from the same data than the
1-process ones: the final losses agree to the spread of those draws, not to rounding (the same
batches give the same weights to 1e-5: tests/engine/jax/test_jax_engine.py, fixed batches)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "data", "demo_corpus.txt")
VOCAB = os.path.join(ROOT, "data", "demo_vocab.txt")
STEPS, LOG_EVERY = 24, 4


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    for name in ("KERAS_BACKEND", "XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                 "JAX_PROCESS_ID"):
        env.pop(name, None)
    env.update(extra)
    return env


def _records(out):
    """The demo corpus as 2 record files (several processes read records, not raw text)."""
    proc = subprocess.run([sys.executable, "-m", "funnel_tf.text", "create-pretraining-data",
                           f"--input={CORPUS}", f"--vocab={VOCAB}", f"--output_dir={out}",
                           "--seq_len=32", "--num_shards=2", "--seed=0"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(f for f in os.listdir(out) if f.endswith(".tfrecord"))
    assert len(files) == 2, os.listdir(out)
    return os.path.join(out, "*.tfrecord")


def _cmd(model_dir, records):
    return [sys.executable, os.path.join(ROOT, "pretrain.py"), "--backend=jax",
            f"--model_dir={model_dir}", f"--train_data={records}", f"--vocab={VOCAB}",
            "--config=tiny", f"--train_steps={STEPS}", "--steps_per_loop=4",
            f"--log_every={LOG_EVERY}", "--save_every=8", "--seq_len=32", "--batch_size=8",
            "--learning_rate=1e-3", "--warmup_steps=4", "--seed=3",
            "--config_override=block_sizes=[1,1]", "--config_override=block_repeats=[1,1]",
            "--config_override=num_decoder_layers=1"]


def _summary_losses(stdout):
    """(first, last) logged loss pretrain.py printed: 'loss A at step S0 -> B at step S1'."""
    for line in stdout.splitlines():
        if line.startswith("loss ") and " -> " in line:
            a, b = line.split(" -> ")
            return float(a.split()[1]), float(b.split()[0])
    raise AssertionError(f"no loss summary in:\n{stdout[-2000:]}")


def _metrics(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_in_lockstep_chief_writes_and_end_where_one_does(tmp_path):
    records = _records(str(tmp_path / "records"))
    one = subprocess.run(_cmd(tmp_path / "one", records), env=_env(), capture_output=True,
                         text=True, timeout=1200)
    assert one.returncode == 0, one.stderr[-3000:]

    port, model_dir = _free_port(), tmp_path / "two"
    procs = [subprocess.Popen(_cmd(model_dir, records), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    outs = [p.communicate(timeout=1500) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]

    # lockstep: both processes ran every step and saw the same (global) losses
    chief, other = (_summary_losses(out) for out, _ in outs)
    assert chief == other
    for out, _ in outs:
        assert f"finished at step {STEPS}" in out

    # the chief alone wrote: one record per logged step, TensorBoard files of its process only,
    # the checkpoints and the export
    records_two = _metrics(model_dir)
    assert [r["step"] for r in records_two] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    events = [f for _, _, files in os.walk(model_dir / "train") for f in files
              if f.startswith("events.out.tfevents")]
    assert events and all(f".{procs[0].pid}." in f for f in events), events
    for name in ("config.json", "run.json", "vocab.txt", "pretrain_args.json", "pretrained"):
        assert (model_dir / name).exists(), name
    assert sorted(os.listdir(model_dir / "checkpoints"))  # saved (by the chief)
    assert not any(f".{procs[1].pid}." in f for _, _, files in os.walk(model_dir)
                   for f in files)

    # the same run as 1 process at the same global batch: the same start, the same end
    records_one = _metrics(tmp_path / "one")
    assert [r["step"] for r in records_one] == [r["step"] for r in records_two]
    first_one, last_one = records_one[0]["loss"], records_one[-1]["loss"]
    first_two, last_two = records_two[0]["loss"], records_two[-1]["loss"]
    print(f"loss at steps {LOG_EVERY} -> {STEPS}: 1 process {first_one:.4f} -> {last_one:.4f}, "
          f"2 processes {first_two:.4f} -> {last_two:.4f}")
    assert last_one < first_one and last_two < first_two          # both learn
    # measured: 1 process 6.7464 -> 6.3770, 2 processes 6.7574 -> 6.3997 (seeded, reproducible)
    np.testing.assert_allclose(first_two, first_one, rtol=0.01)
    np.testing.assert_allclose(last_two, last_one, rtol=0.01)
    assert chief == pytest.approx((first_two, last_two), abs=1e-4)  # what both printed
