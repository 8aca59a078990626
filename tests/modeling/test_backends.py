"""The same model classes and weights on JAX: every class built from the tiny config under
TensorFlow, saved as `.weights.h5`, loaded in a KERAS_BACKEND=jax subprocess (the backend cannot
change once Keras imported TF) and run eagerly and under `jax.jit` over `stateless_call` (two
also through `model.predict`): outputs within 1e-5 of TensorFlow's. One subprocess per check
(tests/modeling/backend_check.py prints one JSON report): FunnelModel, FunnelBaseModel and a head
in the default suite; every head, and the HF fixtures on JAX, in the slow suite."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from funnel_tf.config import load_config
from . import backend_check

pytest.importorskip("jax")
# Writes the reference outputs with TensorFlow in this process, and runs JAX in a subprocess.
pytestmark = pytest.mark.tf_only(reason="the TensorFlow side of a TF -> JAX comparison")
ATOL = 1e-5
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _inputs(batch, seq_len, vocab, seed):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, vocab, (batch, seq_len)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[-1, seq_len // 2:] = 0  # padded keys
    types = np.zeros_like(ids)
    types[:, 0] = 2
    types[0, seq_len // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _write_case(work, name, cls, config):
    """Build `cls` under TF, save its weights and its outputs (every hidden state and head output)."""
    model = cls(config)
    inputs = _inputs(2, 16, config.vocab_size, seed=len(name))
    if name == "FunnelForMultipleChoice":
        inputs = {k: v.reshape(1, 2, 16) for k, v in inputs.items()}
    extra = {}
    if name == "FunnelForMaskedLM":
        extra["masked_positions"] = np.array([[1, 5, 9], [2, 3, 15]], np.int32)
    out = model(inputs, output_hidden_states=True, **extra)
    arrays = {f"in_{k}": v for k, v in inputs.items()}
    arrays.update(extra)
    for key, value in out.items():
        if key == "hidden_states":
            arrays.update({f"out_hidden_states_{i}": np.asarray(h) for i, h in enumerate(value)})
        else:
            arrays[f"out_{key}"] = np.asarray(value)
    model.save_weights(work / f"{name}.weights.h5")
    np.savez(work / f"{name}.npz", **arrays)


def _run_on_jax(*args):
    """backend_check.py under KERAS_BACKEND=jax in a subprocess -> its JSON report."""
    # XLA's backend optimisations off: half the compile CPU time (values agree to 1e-6 all the same)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip(),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(pathlib.Path(backend_check.__file__)), *args], env=env,
                          capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["backend"] == "jax"
    return report


# The default suite: the full model, the encoder-only base and a head on it (three compiles on
# JAX); every class in the slow suite.
FAST = ("FunnelModel", "FunnelBaseModel", "FunnelForSequenceClassification")


def _report_for(tmp_path_factory, names):
    work = tmp_path_factory.mktemp("backends")
    config = load_config("tiny")
    (work / "config.json").write_text(json.dumps(config.to_dict()))
    for name in set(names) | {"FunnelModel"}:  # FunnelModel's files also feed the training/bf16 check
        _write_case(work, name, backend_check.CLASSES[name], config)
    return _run_on_jax("models", str(work), *names)


@pytest.fixture(scope="module")
def jax_report(tmp_path_factory):
    return _report_for(tmp_path_factory, FAST)


@pytest.fixture(scope="module")
def jax_report_all(tmp_path_factory):
    return _report_for(tmp_path_factory, list(backend_check.CLASSES))


def _bad(diffs):
    return {k: v for k, v in diffs.items() if isinstance(v, str) or v > ATOL}


def _check_class(report, name):
    result = report["models"][name]
    for mode in ("eager", "jit", "predict"):
        if result[mode] is None:  # predict runs for two classes only
            continue
        assert result[mode], (name, mode)
        assert not _bad(result[mode]), (name, mode, result[mode])


@pytest.mark.parametrize("name", FAST)
def test_same_weights_same_outputs_on_jax(jax_report, name):
    _check_class(jax_report, name)


@pytest.mark.slow  # one XLA compile per class on JAX
def test_every_head_same_outputs_on_jax(jax_report_all):
    for name in backend_check.CLASSES:
        _check_class(jax_report_all, name)


def test_jax_never_imports_tensorflow(jax_report):
    """modeling/kernels.py takes tf_kernels/ (and with it TensorFlow) only on the TF backend."""
    assert jax_report["tensorflow_imported"] is False


def test_training_mode_and_mixed_bfloat16_run_on_jax(jax_report):
    report = jax_report["training_bf16"]
    assert report["train_finite"] and report["train_differs"]  # dropout (keras.random) really ran
    assert report["bf16_dtype"] == "bfloat16"
    assert report["bf16_max_diff"] < 0.1 and report["bf16_jit_max_diff"] < 0.1, report


@pytest.mark.slow  # ~20 cases, one XLA compile each on JAX
def test_hf_fixture_parity_on_jax():
    report = _run_on_jax("hf_fixtures")["hf_fixtures"]
    if "skipped" in report:
        pytest.skip(report["skipped"])
    bad = {k: v for k, v in report.items() if isinstance(v, str) or v > ATOL}
    assert not bad, bad


# PyTorch: the same .weights.h5 files and HF fixtures, eager, in a KERAS_BACKEND=torch subprocess.
_TORCH_CHECK = """
import json, pathlib, sys
import keras, numpy as np
from funnel_tf import load_model
from funnel_tf.config import FunnelConfig
from tests.modeling.backend_check import CLASSES
work, names = pathlib.Path(sys.argv[1]), sys.argv[2:]
config = FunnelConfig.from_dict(json.loads((work / "config.json").read_text()))
diffs = {}
def diff(out, ref):
    got = {k: keras.ops.convert_to_numpy(v) for k, v in out.items() if k != "hidden_states"}
    got.update({f"hidden_states_{i}": keras.ops.convert_to_numpy(h) for i, h in enumerate(out.get("hidden_states", ()))})
    return max(float(np.max(np.abs(got[k] - v))) for k, v in ref.items())
for name in names:
    data = dict(np.load(work / f"{name}.npz"))
    model = CLASSES[name](config)
    model.load_weights(work / f"{name}.weights.h5")
    extra = {"masked_positions": data["masked_positions"]} if "masked_positions" in data else {}
    out = model({k[3:]: v for k, v in data.items() if k.startswith("in_")}, output_hidden_states=True, **extra)
    diffs[name] = diff(out, {k[4:]: v for k, v in data.items() if k.startswith("out_")})
for case in ("model_default_L8", "head_seq_cls_L8"):
    folder = pathlib.Path("tests/fixtures/hf") / case
    model = load_model(str(folder))
    diffs["hf/" + case] = diff(model(dict(np.load(folder / "inputs.npz")), output_hidden_states=True),
                              dict(np.load(folder / "outputs.npz")))
mixed = load_model("tests/fixtures/hf/model_default_L8", dtype="mixed_bfloat16")
hidden = mixed(dict(np.load("tests/fixtures/hf/model_default_L8/inputs.npz")))["last_hidden_state"]
weights = CLASSES["FunnelModel"](config.replace(init_scheme="original", vocab_size=30522)).embeddings.word_embeddings
table = keras.ops.convert_to_numpy(weights)
print("REPORT " + json.dumps({"backend": keras.backend.backend(), "diffs": diffs,
                             "bf16_dtype": keras.backend.standardize_dtype(hidden.dtype),
                             "tensorflow_imported": "tensorflow" in sys.modules,
                             "init_max": float(np.abs(table).max()), "init_std": config.initializer_std or 0.02}))
"""


@pytest.mark.slow  # a torch process (~20 s); the JAX checks above stay in the default suite
def test_same_weights_same_outputs_on_torch(tmp_path):
    """Keras' PyTorch backend runs the same models: TF-written weights and the HF fixtures give the
    same outputs (1e-5, eager), mixed_bfloat16 computes in bfloat16, the original init is cut at
    2 std (funnel_tf/modeling/initializers.py redraws Keras-torch's rare uncut values), no TF."""
    pytest.importorskip("torch")
    config = load_config("tiny")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    for name in FAST:
        _write_case(tmp_path, name, backend_check.CLASSES[name], config)
    env = dict(os.environ, KERAS_BACKEND="torch",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _TORCH_CHECK, str(tmp_path), *FAST], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["backend"] == "torch" and report["tensorflow_imported"] is False
    assert max(report["diffs"].values()) <= ATOL, report["diffs"]
    assert report["bf16_dtype"] == "bfloat16"
    assert report["init_max"] <= 2 * report["init_std"] + 1e-7, report
