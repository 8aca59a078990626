#!/usr/bin/env bash
# GPU check of funnel-tf in one command, on any Linux machine with an NVIDIA GPU:
#   1. installs the project with the test + reference + jax extras (TF 2.21, torch 2.13 CUDA
#      build, transformers, jax), `tensorflow[and-cuda]` (the pip CUDA/cuDNN libraries TF's GPU
#      support needs when the machine has no system CUDA) and `jax[cuda12]` (JAX's GPU plugin);
#   2. runs the parity tests (HF fixtures, live HF cross-checks, checkpoint conversions) with the
#      GPU visible and TF32 off (NVIDIA_TF32_OVERRIDE=0: the tolerances are fp32 ones);
#   3. times the XLA train step of small and small-base (fp32 = TF32, mixed_bfloat16) at 32x512
#      against HF PyTorch eager and torch.compile on the same GPU, with MFU against the GPU's
#      dense peak (bench/device_bench.py), printing one table and writing JSON;
#   4. times the two training engines beside HF PyTorch at the same model and shape (small-base
#      and small, 32x512, fp32 + bf16): the TF engine's XLA step, the JAX engine's compiled
#      step (engine/jax/step.TrainStep) and HF PyTorch eager, one JSON record
#      (OUT_DIR/engines_<time>.json, bench/jax_step.py).
#
#   bash bench/device_check.sh [OUT_DIR]           # OUT_DIR default: $OUT, else bench/results/device_check_<UTC time>
#   bash bench/device_check.sh --tiny [OUT_DIR]    # CPU: tiny config, no install, a few minutes
#   DEVICE_CHECK_TINY=1 bash bench/device_check.sh # same as --tiny
#   DEVICE_CHECK_NO_INSTALL=1 ...                  # skip step 1 (already installed)
# Exit status: non-zero when the install, the GPU visibility check, the parity tests or an engine
# timing fail (the benchmarks still run after a parity failure and their tables are printed).
set -uo pipefail

cd "$(dirname "$0")/.."
TINY="${DEVICE_CHECK_TINY:-0}"
NO_INSTALL="${DEVICE_CHECK_NO_INSTALL:-0}"
OUT_DIR=""
for arg in "$@"; do
  case "$arg" in
    --tiny) TINY=1 ;;
    --no-install) NO_INSTALL=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) OUT_DIR="$arg" ;;
  esac
done
OUT_DIR="${OUT_DIR:-${OUT:-bench/results/device_check_$(date -u +%Y%m%dT%H%M%SZ)}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python}"
status=0
log() { echo "== device_check: $*"; }

if [ "$TINY" = "1" ]; then
  log "tiny mode: CPU only, tiny config, no install"
  export CUDA_VISIBLE_DEVICES=""
  NO_INSTALL=1
else
  command -v nvidia-smi >/dev/null || { log "no nvidia-smi: this needs an NVIDIA GPU (or --tiny)"; exit 1; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/nvidia-smi.txt"
  export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"   # tests/conftest.py would hide it
fi

# ---------------------------------------------------------------------------------- 1. install
if [ "$NO_INSTALL" != "1" ]; then
  log "installing .[test,reference,jax], tensorflow[and-cuda] and jax[cuda12]"
  "$PY" -m pip install -q -e ".[test,reference,jax]" || exit 1
  TF_VERSION="$("$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)"
  "$PY" -m pip install -q "tensorflow[and-cuda]==${TF_VERSION}" || exit 1
  JAX_VERSION="$("$PY" -c 'import jax; print(jax.__version__)' 2>/dev/null)"
  "$PY" -m pip install -q "jax[cuda12]==${JAX_VERSION}" || exit 1
fi

# ---------------------------------------------------------------------------------- 2. devices
log "devices"
"$PY" - "$TINY" <<'EOF' 2>&1 | grep -v "^WARNING: All log\|^I0000\|^E0000" | tee "$OUT_DIR/devices.txt"
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf, torch
tiny = sys.argv[1] == "1"
tf_gpus = tf.config.list_physical_devices("GPU")
print(f"tensorflow {tf.__version__}: GPUs {[g.name for g in tf_gpus]}, built with CUDA {tf.test.is_built_with_cuda()}")
print(f"torch {torch.__version__}: CUDA available {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
if not tiny and not (tf_gpus and torch.cuda.is_available()):
    sys.exit("device_check: the GPU is not visible to TensorFlow and PyTorch both")
EOF
[ "${PIPESTATUS[0]}" = "0" ] || { log "GPU not usable; stopping"; exit 1; }
# JAX in its own process (it would take GPU memory from the two above): a missing GPU here fails
# the engine timing of step 5 only, with its reason in the record.
XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" -c \
  'import jax; print(f"jax {jax.__version__}: {jax.default_backend()} {jax.devices()}")' 2>&1 \
  | grep -v "^WARNING\|^I0000\|^E0000" | tee -a "$OUT_DIR/devices.txt"

# ---------------------------------------------------------------------------------- 3. parity
if [ "$TINY" = "1" ]; then
  PARITY=(tests/modeling/test_parity_hf.py -k live)   # the live HF PyTorch cross-checks only
else
  PARITY=(tests/modeling/test_parity_hf.py tests/modeling/test_model.py tests/checkpoints
          tests/test_flops.py)
fi
log "parity tests on ${CUDA_VISIBLE_DEVICES:-CPU} (TF32 off): ${PARITY[*]}"
NVIDIA_TF32_OVERRIDE=0 "$PY" -m pytest -q -p no:cacheprovider "${PARITY[@]}" \
    --junitxml="$OUT_DIR/parity.xml" 2>&1 | tee "$OUT_DIR/parity.txt" | tail -15
[ "${PIPESTATUS[0]}" = "0" ] || { log "PARITY TESTS FAILED (see $OUT_DIR/parity.txt)"; status=1; }

# ---------------------------------------------------------------------------------- 4. speed
log "train-step benchmark"
BENCH=(bench/device_bench.py --out "$OUT_DIR")
[ "$TINY" = "1" ] && BENCH+=(--tiny)
"$PY" "${BENCH[@]}" 2>&1 | tee "$OUT_DIR/bench.txt" | grep -v "^WARNING\|^I0000\|^E0000"
[ "${PIPESTATUS[0]}" = "0" ] || { log "benchmark failed"; status=1; }

# ---------------------------------------------------------------------------------- 5. engines
log "train step: TF engine, JAX engine, HF PyTorch (one record: $OUT_DIR/engines_*.json)"
ENGINES=(bench/jax_step.py --out "$OUT_DIR")
[ "$TINY" = "1" ] && ENGINES+=(--tiny)
"$PY" "${ENGINES[@]}" 2>&1 | tee "$OUT_DIR/engines.txt" | grep -v "^WARNING\|^I0000\|^E0000"
[ "${PIPESTATUS[0]}" = "0" ] || { log "engine timing failed (see $OUT_DIR/engines.txt)"; status=1; }

log "done (status $status); outputs in $OUT_DIR"
exit $status
