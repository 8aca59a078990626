"""One set of weights for every Keras backend. TensorFlow writes our folder, `.weights.h5` and `.keras`;
one KERAS_BACKEND=jax subprocess (jax_weights_check.py; the backend is fixed once Keras is imported)
loads them with TensorFlow blocked, loads HF fixtures and the original release, and writes its own
files, which TensorFlow then reads back: every output within 1e-5. Plus an in-process check that the
TF1 release fails with a clear CheckpointError when TensorFlow cannot be imported."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import funnel_tf
from funnel_tf.checkpoints import CheckpointError, load_model, save_pretrained
from funnel_tf.config import load_config

from . import jax_weights_check

ATOL = 1e-5
ROOT = pathlib.Path(__file__).resolve().parents[2]
ORIGINAL = "B2-1-1_D2_sepcls_mean_electra"
# class -> constructor arguments besides the config: a backbone with its decoder and a head model.
CLASSES = {"FunnelModel": {}, "FunnelForSequenceClassification": {"num_labels": 3}}
FORMATS = ("native", "weights_h5", "keras")

tf_only = pytest.mark.tf_only(reason="drives the JAX side from a TensorFlow process")


def _config():
    return load_config("tiny").replace(vocab_size=97, block_sizes=[1, 1], block_repeats=[1, 1],
                                       num_decoder_layers=1)


def _inputs(vocab, seed):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, vocab, (2, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    types = np.zeros_like(ids)
    types[:, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _outputs(model, inputs):
    out = model(inputs, output_hidden_states=True)
    arrays = {f"out_{k}": np.asarray(v) for k, v in out.items() if k != "hidden_states"}
    arrays.update({f"out_hidden_states_{i}": np.asarray(h) for i, h in enumerate(out["hidden_states"])})
    return arrays


def _write_tf_side(work, config):
    (work / "config.json").write_text(config.to_json_string())
    (work / "classes.json").write_text(json.dumps(list(CLASSES)))
    for i, (name, kwargs) in enumerate(CLASSES.items()):
        model = getattr(funnel_tf, name)(config, **kwargs)
        inputs = _inputs(config.vocab_size, seed=i)
        arrays = _outputs(model, inputs)
        np.savez(work / f"{name}.npz", **{f"in_{k}": v for k, v in inputs.items()}, **arrays)
        (work / f"{name}.kwargs.json").write_text(json.dumps(kwargs))
        save_pretrained(model, str(work / f"tf_{name}"))
        model.save_weights(str(work / f"tf_{name}.weights.h5"))
        model.save(str(work / f"tf_{name}.keras"))


@pytest.fixture(scope="module")
def jax_report(tmp_path_factory):
    pytest.importorskip("jax")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("drives the JAX side from a TensorFlow process")
    work = tmp_path_factory.mktemp("weights_backends")
    _write_tf_side(work, _config())
    shared = pathlib.Path(os.environ.get("FUNNEL_SHARED_DATA", ROOT.parent / "shared" / "data"))
    original = shared / "original_tf1" / ORIGINAL
    args = [sys.executable, jax_weights_check.__file__, str(work)] + ([str(original)] if original.is_dir() else [])
    # XLA's backend optimisations off: the many small eager compiles cost half the CPU time (values agree to 1e-6)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip(),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    report = json.loads(lines[-1][len("REPORT "):])
    report["work"] = str(work)
    return report


def _bad(diffs):
    assert isinstance(diffs, dict) and diffs, diffs
    return {k: v for k, v in diffs.items() if isinstance(v, str) or v > ATOL}


@tf_only
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(CLASSES))
def test_tf_writes_jax_reads(jax_report, name, fmt):
    assert jax_report["backend"] == "jax"
    assert not _bad(jax_report["tf_written"][name][fmt])


@tf_only
def test_our_and_hf_files_load_on_jax_without_tensorflow(jax_report):
    assert jax_report["tensorflow_imported"] is False
    assert "model_default_L8.bin" in jax_report["hf"]  # the pytorch_model.bin path was taken too
    bad = {case: _bad(diffs) if isinstance(diffs, dict) else diffs for case, diffs in jax_report["hf"].items()}
    assert not any(bad.values()), bad


@tf_only
def test_original_release_on_jax(jax_report):
    if "original" not in jax_report:
        pytest.skip(f"original release {ORIGINAL} not in the shared data")
    assert "install tensorflow" in jax_report["original_without_tf"], jax_report["original_without_tf"]
    assert not _bad(jax_report["original"])


def _read_back(work, name, fmt):
    if fmt == "native":
        return load_model(str(work / f"jax_{name}"))
    if fmt == "keras":
        return keras.saving.load_model(str(work / f"jax_{name}.keras"))
    model = getattr(funnel_tf, name)(_config(), **CLASSES[name])
    model.load_weights(str(work / f"jax_{name}.weights.h5"))
    return model


@tf_only
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(CLASSES))
def test_jax_writes_tf_reads(jax_report, name, fmt):
    assert jax_report["jax_written"][name] == "written", jax_report["jax_written"][name]
    work = pathlib.Path(jax_report["work"])
    case = dict(np.load(work / f"jax_{name}.npz"))
    diffs = jax_weights_check.run_case(_read_back(work, name, fmt), case)
    assert not _bad(diffs)
    # the JAX side changed every weight: TF reads JAX's values, not the ones it wrote itself
    tf_case = dict(np.load(work / f"{name}.npz"))
    assert not np.allclose(case["out_last_hidden_state"], tf_case["out_last_hidden_state"], atol=1e-3)


# ------------------------------------------------------------------ without TensorFlow, in-process
@pytest.fixture
def no_tensorflow(monkeypatch):
    """`import tensorflow` raises ImportError from here on (modules already imported keep theirs)."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)


def test_original_release_without_tensorflow_says_to_install_it(shared_data, no_tensorflow):
    path = shared_data / "original_tf1" / ORIGINAL
    if not path.is_dir():
        pytest.skip(f"original release {ORIGINAL} not in the shared data")
    from funnel_tf.checkpoints.original import load_original

    for load in (load_model, load_original):
        with pytest.raises(CheckpointError, match="install tensorflow"):
            load(str(path))
