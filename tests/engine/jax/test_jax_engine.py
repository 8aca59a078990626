"""The JAX training engine (funnel_tf/engine/jax/): parity with the TF engine, data parallel, and
pretrain.py --backend=jax end to end. Every JAX run is its own process (KERAS_BACKEND is fixed
when Keras loads); the TF-side checks run in this process."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DRIVER = os.path.join(os.path.dirname(__file__), "engine_driver.py")


def _env(backend, devices=None):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("XLA_FLAGS", None)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _driver(engine, out, backend, devices=None):
    proc = subprocess.run([sys.executable, DRIVER, engine, str(out)], env=_env(backend, devices),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _weights(npz):
    return {k: npz[k] for k in npz.files if k.startswith("w/")}


@pytest.mark.slow
def test_tf_and_jax_engines_agree_for_30_steps(tmp_path):
    """Dropout off, fp32, the same batches and initial weights: 30 steps of the TF engine
    (loop.Trainer, XLA) and of the JAX engine (3 host calls of 10) agree to 1e-5 relative in loss
    and 1e-5 in every weight, and the weights did move."""
    _driver("tf", tmp_path, "tensorflow")
    _driver("jax", tmp_path, "jax")
    tf_run, jax_run = np.load(tmp_path / "tf.npz"), np.load(tmp_path / "jax1.npz")
    assert len(tf_run["loss"]) == len(jax_run["loss"]) == 30
    np.testing.assert_allclose(jax_run["loss"], tf_run["loss"], rtol=1e-5, atol=0)
    a, b = _weights(tf_run), _weights(jax_run)
    assert sorted(a) == sorted(b) and len(a) > 10
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-5, err_msg=k)
    import h5py  # the weights moved away from the shared start
    assert tf_run["loss"][-1] < tf_run["loss"][0]
    with h5py.File(tmp_path / "init.weights.h5") as f:
        assert len(f.keys()) > 0


@pytest.mark.slow
def test_two_devices_equal_one(tmp_path):
    """The same global batch over 2 virtual CPU devices (batch sharded, gradients summed by XLA)
    gives the 1-device losses and weights."""
    _driver("jax", tmp_path, "jax", devices=1)
    _driver("jax", tmp_path, "jax", devices=2)
    one, two = np.load(tmp_path / "jax1.npz"), np.load(tmp_path / "jax2.npz")
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5, atol=0)
    a, b = _weights(one), _weights(two)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-5, err_msg=k)


def test_backend_flag_must_agree_with_keras():
    """In a process whose Keras runs on TensorFlow, --backend=jax is one UserError (not a silent
    TF run); the matching flag and None pass."""
    import keras

    from funnel_tf.engine.jax.backend import BackendError, choose_backend
    from funnel_tf.errors import UserError

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(BackendError, match="already runs on tensorflow") as e:
        choose_backend("jax")
    assert isinstance(e.value, UserError)
    assert choose_backend("tensorflow") == choose_backend(None) == "tensorflow"


def test_pretrain_refuses_backend_disagreeing_with_keras_backend(tmp_path):
    """pretrain.py --backend=jax with KERAS_BACKEND=tensorflow: one line on stderr, exit 2,
    nothing written (decided before Keras or TensorFlow load)."""
    model_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "pretrain.py"), "--backend=jax",
                           f"--model_dir={model_dir}", "--train_steps=2"],
                          env=_env("tensorflow"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("pretrain.py: error: --backend=jax disagrees with "
                                "KERAS_BACKEND=tensorflow"), proc.stderr[-2000:]
    assert not model_dir.exists()


def _pretrain(model_dir, *flags, wait=True):
    cmd = [sys.executable, os.path.join(ROOT, "pretrain.py"), "--backend=jax",
           f"--model_dir={model_dir}", "--train_steps=24", "--steps_per_loop=4", "--log_every=4",
           "--save_every=8", "--seq_len=32", "--batch_size=8",
           "--config_override=block_sizes=[1,1]", "--config_override=block_repeats=[1,1]",
           "--config_override=num_decoder_layers=1", *flags]
    env = _env("jax")
    env.pop("KERAS_BACKEND")  # the flag alone picks the engine
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _records(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_demo_pretrains_on_jax_and_resumes_after_sigterm(tmp_path):
    """The embedded demo on JAX: SIGTERM mid-run saves and exits 75; the rerun resumes from that
    checkpoint, ends at the uninterrupted run's losses (1e-6), with a falling loss, and exports a
    save_pretrained folder that FunnelModel.from_pretrained (TensorFlow) loads."""
    full = _pretrain(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    interrupted = tmp_path / "interrupted"
    proc = _pretrain(interrupted, wait=False)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:  # wait for a first checkpoint
        ckpts = interrupted / "checkpoints"
        if ckpts.is_dir() and any(p.name.startswith("jax_") for p in ckpts.iterdir()):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 75, err[-3000:]
    from funnel_tf.engine.jax.checkpoints import list_checkpoints

    stopped = int(re.search(r"stopped at step (\d+)", err).group(1))  # its async save is complete
    assert [s for s, _ in list_checkpoints(str(interrupted))][0] == stopped, err[-3000:]
    assert not [p for p in (interrupted / "checkpoints").iterdir() if "tmp" in p.name]
    resumed = _pretrain(interrupted)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = {r["step"]: r["loss"] for r in _records(tmp_path / "full")}
    b = {r["step"]: r["loss"] for r in _records(interrupted)}  # the resumed run's records last
    assert sorted(a) == [4, 8, 12, 16, 20, 24] and set(b) == set(a)
    np.testing.assert_allclose(b[24], a[24], rtol=1e-6)
    assert a[24] < a[4]
    for name in ("config.json", "run.json", "vocab.txt", "pretrain_args.json", "train"):
        assert (interrupted / name).exists(), name
    from funnel_tf import FunnelModel

    model = FunnelModel.from_pretrained(str(interrupted / "pretrained"))
    assert model.config.vocab_size == json.loads((interrupted / "config.json").read_text())[
        "vocab_size"]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _processes(cmd, n, extra_env, timeout=900):
    """Run `cmd` as processes 0..n-1 of one jax.distributed job on localhost (CPU collectives)."""
    port = _free_port()
    procs = []
    for i in range(n):
        env = dict(extra_env, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                   JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(cmd(i), env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
    return [p.returncode for p in procs], errs


@pytest.mark.slow
def test_two_processes_in_lockstep_equal_one(tmp_path):
    """2 real processes with jax.distributed on localhost, each feeding its half of every global
    batch through make_array_from_process_local_data: both see the 1-process losses (1e-5) and
    end at its weights."""
    _driver("jax", tmp_path, "jax")
    codes, errs = _processes(lambda i: [sys.executable, DRIVER, "jax", str(tmp_path)], 2,
                             _env("jax"))
    assert codes == [0, 0], "\n".join(e[-2000:] for e in errs)
    one = np.load(tmp_path / "jax1.npz")
    for i in range(2):
        part = np.load(tmp_path / f"jax2-process{i}of2.npz")
        np.testing.assert_allclose(part["loss"], one["loss"], rtol=1e-5, atol=0)
        a, b = _weights(one), _weights(part)
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-5, err_msg=k)


def test_distributed_setup_comes_from_the_environment(monkeypatch):
    """engine/jax/distributed.py reads JAX's variables: a coordinator with count and id, a TPU
    pod's host list (no args), nothing for one process; a bad setting is one UserError."""
    from funnel_tf.engine.jax import distributed
    from funnel_tf.errors import UserError

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                 "JAX_DISTRIBUTED", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.distributed_args() is None
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1k-0")  # a single-host TPU VM
    assert distributed.distributed_args() is None
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1k-0,t1k-1")
    assert distributed.distributed_args() == {}
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES")
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.2:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed.distributed_args() == {"coordinator_address": "10.0.0.2:1234",
                                              "num_processes": 4, "process_id": 3}
    for name, value, message in (("JAX_PROCESS_ID", "4", "not below"),
                                 ("JAX_PROCESS_ID", "x", "must be an integer"),
                                 ("JAX_COORDINATOR_ADDRESS", "10.0.0.2", "host:port")):
        monkeypatch.setenv(name, value)
        with pytest.raises(UserError, match=message):
            distributed.distributed_args()
        monkeypatch.setenv("JAX_PROCESS_ID", "3")
        monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.2:1234")
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
    with pytest.raises(UserError, match="need JAX_COORDINATOR_ADDRESS"):
        distributed.distributed_args()
