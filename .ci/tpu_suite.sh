#!/usr/bin/env bash
# CI, second half: the same default test suite on the TPU build of TensorFlow (tensorflow-tpu 2.20.0,
# which has no XLA:CPU backend), installed exactly as README.md's "On a TPU VM" says, in a fresh venv.
# Also checks that installing the project kept the TPU build (no `tensorflow` distribution).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FUNNEL_TPU_VENV:-${TMPDIR:-/tmp}/funnel-tf-tpu-venv}"
rm -rf "$venv"
python -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
# README "On a TPU VM", step by step:
"$pip" install -q tensorflow-tpu==2.20.0 libtpu==0.0.14
"$pip" install -q --no-deps tensorflow-text==2.20.1
"$pip" install -q -e ".[tpu-test,reference]"
if "$pip" list 2>/dev/null | grep -qiE '^tensorflow[[:space:]]'; then
    echo "tpu_suite: installing the project pulled the standard 'tensorflow' wheel over tensorflow-tpu" >&2
    exit 1
fi
"$pip" list 2>/dev/null | grep -iE '^(tensorflow|libtpu|keras)' | sed 's/^/tpu_suite: /'
# Off GCE (CI, a laptop) the TPU build's import waits on the metadata server without this.
TPU_SKIP_MDS_QUERY=1 "$venv/bin/python" -m pytest
