"""Run by tests/modeling/test_backends.py under another Keras backend (KERAS_BACKEND=jax): loads the
`.weights.h5` files a TensorFlow process wrote for every model class, runs them eagerly, through
under `jax.jit(stateless_call)` (and two of them through `model.predict`), and prints one JSON report of max abs diffs
against the TensorFlow outputs (plus the HF fixture parity and a mixed_bfloat16 / training smoke run).

    KERAS_BACKEND=jax python tests/modeling/backend_check.py models WORK_DIR [CLASS ...]
    KERAS_BACKEND=jax python tests/modeling/backend_check.py hf_fixtures
"""

import json
import pathlib
import sys
import time

import keras
import numpy as np

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import heads
from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel

CLASSES = {"FunnelBaseModel": FunnelBaseModel, "FunnelModel": FunnelModel,
           **{name: getattr(heads, name) for name in (
               "FunnelForMaskedLM", "FunnelForPreTraining", "FunnelForSequenceClassification",
               "FunnelForMultipleChoice", "FunnelForTokenClassification", "FunnelForQuestionAnswering")}}
PREDICT = ("FunnelModel", "FunnelForSequenceClassification")
HF_FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hf"


_START = time.time()


def _log(what):
    """Progress on stderr (the parent shows it when the run fails or times out)."""
    print(f"[{time.time() - _START:7.1f}s] {what}", file=sys.stderr, flush=True)


def _diffs(out, expected):
    """Max abs diff per expected key (hidden_states_i for the tuple), or a string for a mismatch."""
    result = {}
    for key, ref in expected.items():
        got = out["hidden_states"][int(key.rsplit("_", 1)[1])] if key.startswith("hidden_states_") else out[key]
        got = np.asarray(got, np.float64)
        result[key] = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else f"shape {got.shape}"
    return result


def _jit_call(model, inputs, **kwargs):
    import jax

    @jax.jit
    def run(trainable, non_trainable, inputs):
        out, _ = model.stateless_call(trainable, non_trainable, inputs, **kwargs)
        return out
    return run([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
               inputs)


def check_models(work: pathlib.Path, names):
    report = {}
    config = FunnelConfig.from_dict(json.loads((work / "config.json").read_text()))
    for name in names:
        cls = CLASSES[name]
        data = dict(np.load(work / f"{name}.npz"))
        inputs = {k[len("in_"):]: v for k, v in data.items() if k.startswith("in_")}
        expected = {k[len("out_"):]: v for k, v in data.items() if k.startswith("out_")}
        model = cls(config)
        model.load_weights(work / f"{name}.weights.h5")
        extra = {"masked_positions": data["masked_positions"]} if "masked_positions" in data else {}
        eager = model(inputs, output_hidden_states=True, **extra)
        _log(f"{name} eager")
        jitted = _jit_call(model, inputs, output_hidden_states=True, **extra)
        _log(f"{name} jit")
        predicted = None
        if name in PREDICT:  # Keras' own compiled predict_step (one more compile: two classes)
            predicted = model.predict(inputs, verbose=0, batch_size=len(data["in_input_ids"]))
            _log(f"{name} predict")
        report[name] = {"eager": _diffs(eager, expected), "jit": _diffs(jitted, expected),
                        "predict": _diffs(predicted, {k: v for k, v in expected.items()
                                                      if not k.startswith("hidden_states_")})
                        if predicted is not None else None}
    return report


def check_training_and_bf16(work: pathlib.Path):
    """Training mode under jit (dropout from keras.random) and a mixed_bfloat16 model run, against
    TensorFlow's inference output (which check_models finds within 1e-5 of JAX's, eager and jit)."""
    config = FunnelConfig.from_dict(json.loads((work / "config.json").read_text()))
    data = dict(np.load(work / "FunnelModel.npz"))
    inputs = {k[len("in_"):]: v for k, v in data.items() if k.startswith("in_")}
    model = FunnelModel(config)
    model.load_weights(work / "FunnelModel.weights.h5")
    train = np.asarray(_jit_call(model, inputs, training=True)["last_hidden_state"])
    infer = data["out_last_hidden_state"]  # [batch, seq, d_model]
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        bf16 = FunnelModel(config)
        bf16.load_weights(work / "FunnelModel.weights.h5")
        out = np.asarray(bf16(inputs)["last_hidden_state"], np.float32)
        out_jit = np.asarray(_jit_call(bf16, inputs)["last_hidden_state"], np.float32)
    finally:
        keras.config.set_dtype_policy("float32")
    return {"train_finite": bool(np.isfinite(train).all()),
            "train_differs": bool(np.abs(train - infer).max() > 1e-3),
            "bf16_dtype": str(bf16(inputs)["last_hidden_state"].dtype),
            "bf16_max_diff": float(np.abs(out - infer).max()), "bf16_jit_max_diff": float(np.abs(out_jit - infer).max())}


def check_hf_fixtures():
    """tests/modeling/test_parity_hf.py's fixture cases, loaded through our HF loader on this backend."""
    index = HF_FIXTURES / "index.json"
    if not index.exists():
        return {"skipped": "no fixtures"}
    from funnel_tf.checkpoints.hf import load_hf

    report = {}
    for case in json.loads(index.read_text())["cases"]:
        case_dir = HF_FIXTURES / case["name"]
        meta = json.loads((case_dir / "meta.json").read_text())
        try:
            model = load_hf(str(case_dir))
        except Exception as e:  # noqa: BLE001 - reported, the test names it
            report[case["name"]] = f"load failed: {type(e).__name__}: {str(e)[:200]}"
            continue
        worst = 0.0
        for set_name in [""] + list(meta.get("extra_input_sets", [])):
            suffix = f"_{set_name}" if set_name else ""
            inputs = dict(np.load(case_dir / f"inputs{suffix}.npz"))
            expected = dict(np.load(case_dir / f"outputs{suffix}.npz"))
            # Compiled only: eager JAX (op by op) is checked on every class above.
            diffs = _diffs(_jit_call(model, inputs, output_hidden_states=True), expected)
            if any(isinstance(v, str) for v in diffs.values()):
                worst = f"jit{suffix}: {diffs}"
                break
            worst = max(worst, max(diffs.values()))
        report[case["name"]] = worst
        _log(f"HF fixture {case['name']}")
    return report


def main(what: str, work: str = "", *names):
    """what: "models" (the named classes, default all, from the TF-written files in `work`) or
    "hf_fixtures"."""
    report = {"backend": keras.backend.backend()}
    if what == "models":
        report.update(models=check_models(pathlib.Path(work), names or list(CLASSES)),
                      training_bf16=check_training_and_bf16(pathlib.Path(work)))
    else:
        report.update(hf_fixtures=check_hf_fixtures())
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
