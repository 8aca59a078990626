"""Run under KERAS_BACKEND=jax by tests/checkpoints/test_backends.py: loads the files TensorFlow wrote
into WORK (our folder, `.weights.h5`, `.keras`), HF fixtures and the original release, writes its own
for TensorFlow to read back, and prints one `REPORT {json}` line (max abs diffs, errors as text).

Phase 1 blocks `import tensorflow` (a JAX install without TF): our, Keras and HF files must load and
the original release must fail with a CheckpointError that says to install TensorFlow. Phase 2
lets TensorFlow in and reads the original release on JAX.

    KERAS_BACKEND=jax python tests/checkpoints/jax_weights_check.py WORK [ORIGINAL_DIR]
"""

import importlib.abc
import json
import pathlib
import sys
import traceback

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
HF_FIXTURES = ROOT / "tests" / "fixtures" / "hf"
HF_CASES = ("model_default_L8", "head_seq_cls_L8", "head_masked_lm_L8", "head_qa_L11")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """`import tensorflow` (and tensorflow_text) fails, as on a machine without them."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_text"):
            raise ImportError(f"No module named {name!r} (blocked by jax_weights_check)")
        return None


def max_diffs(outputs, expected):
    """{output key: max abs diff} for every `out_*` array of `expected`; str when a shape differs."""
    diffs = {}
    for key, ref in expected.items():
        if not key.startswith("out_"):
            continue
        name = key[len("out_"):]
        got = outputs["hidden_states"][int(name.split("_")[-1])] if name.startswith("hidden_states_") \
            else outputs[name]
        got = np.asarray(got, np.float64)
        diffs[key] = (f"shape {got.shape} != {ref.shape}" if got.shape != ref.shape
                      else float(np.max(np.abs(got - ref))))
    return diffs


def run_case(model, case):
    inputs = {k[len("in_"):]: v for k, v in case.items() if k.startswith("in_")}
    return max_diffs(model(inputs, output_hidden_states=True), case)


def jit_outputs(model, inputs):
    """The model's outputs (every hidden state) from one `jax.jit` over `stateless_call`: one XLA
    compile per model instead of eager JAX's one per op and shape (eager runs on the TF-written files)."""
    import jax

    @jax.jit
    def run(trainable, non_trainable, inputs):
        return model.stateless_call(trainable, non_trainable, inputs, output_hidden_states=True)[0]
    return run([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
               inputs)


def guarded(fn, *args):
    try:
        return fn(*args)
    except Exception:  # reported as text: the test names the failing check
        return "error: " + traceback.format_exc(limit=-4)[-1500:]


def tf_written(work, name):
    """Our folder, `.weights.h5` and `.keras` that TensorFlow wrote for class `name`, loaded here."""
    import keras

    import funnel_tf
    from funnel_tf.config import FunnelConfig

    case = dict(np.load(work / f"{name}.npz"))
    kwargs = json.loads((work / f"{name}.kwargs.json").read_text())
    config = FunnelConfig.from_json_file(str(work / "config.json"))

    def native():
        return run_case(funnel_tf.load_model(str(work / f"tf_{name}")), case)

    def weights_h5():
        model = getattr(funnel_tf, name)(config, **kwargs)
        model.load_weights(str(work / f"tf_{name}.weights.h5"))
        return run_case(model, case)

    def keras_file():
        return run_case(keras.saving.load_model(str(work / f"tf_{name}.keras")), case)

    return {"native": guarded(native), "weights_h5": guarded(weights_h5), "keras": guarded(keras_file)}


def jax_writes(work, name):
    """New values for every weight (so TF cannot pass by reading its own), outputs on JAX, and the
    model written in all three formats for TensorFlow to read."""
    import keras

    import funnel_tf

    model = funnel_tf.load_model(str(work / f"tf_{name}"))
    rng = np.random.RandomState(7)
    for v in model.weights:
        v.assign((np.asarray(v.numpy()) + rng.normal(0, 0.02, v.shape)).astype(v.dtype))
    case = dict(np.load(work / f"{name}.npz"))
    inputs = {k[len("in_"):]: v for k, v in case.items() if k.startswith("in_")}
    out = model(inputs, output_hidden_states=True)
    arrays = {k: v for k, v in case.items() if k.startswith("in_")}
    for key in (k[len("out_"):] for k in case if k.startswith("out_")):
        arrays[f"out_{key}"] = np.asarray(
            out["hidden_states"][int(key.split("_")[-1])] if key.startswith("hidden_states_") else out[key])
    np.savez(work / f"jax_{name}.npz", **arrays)
    funnel_tf.checkpoints.save_pretrained(model, str(work / f"jax_{name}"))
    model.save_weights(str(work / f"jax_{name}.weights.h5"))
    model.save(str(work / f"jax_{name}.keras"))
    return "written"


def hf_case(case_name, use_bin):
    """An HF fixture through `from_pretrained` (format detected), safetensors or pytorch_model.bin, run
    compiled (tests/modeling/test_parity_hf.py runs every fixture eagerly on JAX in CI's JAX suite)."""
    import shutil
    import tempfile

    import funnel_tf

    case_dir = HF_FIXTURES / case_name
    if use_bin:  # the .bin alone, so the safetensors file cannot be the one read
        tmp = pathlib.Path(tempfile.mkdtemp())
        for f in ("config.json", "pytorch_model.bin"):
            shutil.copy(case_dir / f, tmp / f)
        case_dir = tmp
    model = funnel_tf.load_model(str(case_dir))
    inputs = dict(np.load(HF_FIXTURES / case_name / "inputs.npz"))
    expected = dict(np.load(HF_FIXTURES / case_name / "outputs.npz"))
    return max_diffs(jit_outputs(model, inputs), {f"out_{k}": v for k, v in expected.items()})


def original_without_tf(original):
    import funnel_tf
    from funnel_tf.checkpoints import CheckpointError

    try:
        funnel_tf.load_model(original)
    except CheckpointError as e:
        return str(e)
    return "loaded without TensorFlow?"


def original_on_jax(original):
    """The original release (read with TF's checkpoint reader) against the original code's outputs."""
    sys.path.insert(0, str(ROOT))
    from tests.checkpoints.test_original import oracle_inputs, our_outputs

    import funnel_tf

    folder = pathlib.Path(original)
    model = funnel_tf.load_model(original)
    got = our_outputs(model, oracle_inputs(folder))
    ref = dict(np.load(folder / "outputs.npz"))
    return {k: float(np.max(np.abs(got[k].astype(np.float64) - v))) for k, v in ref.items()}


def main(work, original=None):
    import keras

    blocker = _NoTensorFlow()
    sys.meta_path.insert(0, blocker)
    names = json.loads((work / "classes.json").read_text())
    report = {"backend": keras.backend.backend(),
              "tf_written": {name: tf_written(work, name) for name in names},
              "jax_written": {name: guarded(jax_writes, work, name) for name in names},
              "hf": {f"{case}{'.bin' if use_bin else ''}": guarded(hf_case, case, use_bin)
                     for case in HF_CASES for use_bin in (False, True)
                     if (HF_FIXTURES / case / ("pytorch_model.bin" if use_bin else "model.safetensors")).exists()}}
    if original:
        report["original_without_tf"] = guarded(original_without_tf, original)
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    sys.meta_path.remove(blocker)
    if original:
        report["original"] = guarded(original_on_jax, original)
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
