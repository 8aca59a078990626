"""A model_dir belongs to the engine whose checkpoints it holds: the TensorFlow engine refuses a
JAX-engine model_dir (checkpoints/jax-<step>.npz) and the JAX engine a TensorFlow-engine one
(checkpoints/ckpt-<step>), each in one line, exit 2, before anything is written (a run on the
other engine would otherwise start afresh in the folder, beside the checkpoints it ignores)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.pretraining.args import PretrainArgs
from funnel_tf.errors import UserError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _jax_run_dir(path, layout="orbax"):
    """JAX-engine checkpoints by their names (all the TF engine looks at): a finished Orbax step
    folder checkpoints/jax_8/ (the engine's format), or checkpoints/jax-8.npz (its earlier one);
    no config.json, so no other check (the config's) refuses the folder first."""
    (path / "checkpoints").mkdir(parents=True)
    if layout == "orbax":
        (path / "checkpoints" / "jax_8" / "state").mkdir(parents=True)
    else:
        np.savez(path / "checkpoints" / "jax-8.npz", **{"trainable/0": np.zeros([2], np.float32)})
    return path


def _tf_run_dir(path):
    """A TensorFlow-engine checkpoint (tf.train, under checkpoints/); no config.json either."""
    ckpt = tf.train.Checkpoint(step=tf.Variable(8, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(path / "checkpoints"), max_to_keep=1).save(8)
    return path


def _snapshot(path):
    """Every file under `path` with its size and mtime: "nothing written" compares two of them."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("layout", ["orbax", "npz"])
def test_tensorflow_engine_refuses_a_jax_engine_model_dir(tmp_path, layout):
    from funnel_tf.pretraining.run import run_pretraining

    model_dir = _jax_run_dir(tmp_path / "run", layout)
    before = _snapshot(model_dir)
    with pytest.raises(UserError) as e:
        run_pretraining(PretrainArgs(model_dir=str(model_dir), train_steps=1, seq_len=32,
                                     batch_size=2, backend="tensorflow"))
    message = str(e.value)
    assert "\n" not in message
    assert f"{model_dir}" in message and "JAX-engine checkpoints" in message
    if layout == "orbax":
        assert "resume it with --backend=jax" in message
    assert _snapshot(model_dir) == before


def test_jax_engine_refuses_a_tensorflow_engine_model_dir(tmp_path):
    """The JAX run's checks, called in this (TensorFlow) process: the refusal comes before any
    JAX computation or Keras model."""
    pytest.importorskip("jax")
    from funnel_tf.pretraining.run_jax import run_pretraining_jax

    model_dir = _tf_run_dir(tmp_path / "run")
    before = _snapshot(model_dir)
    with pytest.raises(UserError) as e:
        run_pretraining_jax(PretrainArgs(model_dir=str(model_dir), train_steps=1, seq_len=32,
                                         batch_size=2, backend="jax"))
    message = str(e.value)
    assert "\n" not in message
    assert "holds TensorFlow-engine checkpoints" in message and "--backend=tensorflow" in message
    assert _snapshot(model_dir) == before


def _pretrain(model_dir, backend):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KERAS_BACKEND", None)  # the flag alone picks the engine
    return subprocess.run([sys.executable, os.path.join(ROOT, "pretrain.py"),
                           f"--backend={backend}", f"--model_dir={model_dir}", "--train_steps=1",
                           "--seq_len=32", "--batch_size=2"],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two interpreters with TensorFlow (and JAX): ~15 s each on a loaded machine
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_pretrain_py_refuses_the_other_engines_model_dir_in_one_line(tmp_path, backend):
    """pretrain.py on either engine, given the other engine's model_dir: exit 2, the last stderr
    line says which engine wrote it and what to do, and the folder is as it was."""
    if backend == "jax":
        pytest.importorskip("jax")
    make, other = (_jax_run_dir, "jax") if backend == "tensorflow" else (_tf_run_dir,
                                                                        "tensorflow")
    model_dir = make(tmp_path / "run")
    before = _snapshot(model_dir)
    proc = _pretrain(model_dir, backend)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    engine = "JAX" if other == "jax" else "TensorFlow"
    assert last.startswith("pretrain.py: error: ") and str(model_dir) in last, proc.stderr[-3000:]
    assert f"{engine}-engine checkpoints" in last, proc.stderr[-3000:]
    assert _snapshot(model_dir) == before
