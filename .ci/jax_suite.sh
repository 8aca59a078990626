#!/usr/bin/env bash
# CI, JAX: (1) README "On JAX" in a fresh venv without TensorFlow: `pip install -e ".[jax]"`, then the
# models and an HF checkpoint under KERAS_BACKEND=jax; (2) the modeling, checkpoint and parity tests a
# second time under KERAS_BACKEND=jax in CI's own environment (the test set-up imports TensorFlow;
# TensorFlow-only tests skip with a reason: `tf_only` / tests/conftest.py TF_ONLY_FILES).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
venv="${FUNNEL_JAX_VENV:-${TMPDIR:-/tmp}/funnel-tf-jax-venv}"
rm -rf "$venv"
python -m venv "$venv"
"$venv/bin/pip" install -q -e ".[jax]"
if "$venv/bin/pip" list 2>/dev/null | grep -qiE '^(tensorflow|tensorflow-text)[[:space:]]'; then
    echo "jax_suite: the [jax] install pulled in TensorFlow" >&2
    exit 1
fi
KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$venv/bin/python" - <<'PY'
import sys

import numpy as np

import funnel_tf
from funnel_tf import FunnelModel, load_config

out = FunnelModel(load_config("tiny"))({"input_ids": np.ones((2, 8), "int32")})
model = funnel_tf.load_model("tests/fixtures/hf/head_seq_cls_L8")
ref = np.load("tests/fixtures/hf/head_seq_cls_L8/outputs.npz")["logits"]
got = np.asarray(model(dict(np.load("tests/fixtures/hf/head_seq_cls_L8/inputs.npz")))["logits"])
assert np.max(np.abs(got - ref)) < 1e-5, np.max(np.abs(got - ref))
import orbax.checkpoint  # the JAX engine's checkpoints come with the [jax] extra

assert "tensorflow" not in sys.modules and "tensorflow_text" not in sys.modules
print("jax_suite: fresh [jax] venv: FunnelModel", out["last_hidden_state"].shape, "and an HF checkpoint on JAX, "
      "Orbax, no TF")
PY
echo "jax_suite: fresh venv done in $((SECONDS - start)) s"
pip install -q -e ".[jax]"
KERAS_BACKEND=jax JAX_PLATFORMS=cpu python -m pytest -n 2 tests/modeling tests/checkpoints tests/test_classifier_jax.py  # both of CI's cores
# The cross-backend checks are driven from TensorFlow (weights written there, read in a JAX subprocess),
# and the JAX engine's Orbax checkpoints need orbax: the standard suite skips them where jax is not
# installed, so they run here, now that it is.
JAX_PLATFORMS=cpu python -m pytest -n 2 tests/modeling/test_backends.py tests/checkpoints/test_backends.py \
    tests/engine/jax tests/finetuning/test_run_jax.py tests/pretraining/test_engine_mismatch.py
echo "jax_suite: KERAS_BACKEND=jax tests done in $((SECONDS - start)) s"
