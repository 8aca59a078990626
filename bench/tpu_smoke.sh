#!/usr/bin/env bash
# TPU smoke test of funnel-tf in one command, for a fresh TPU VM (v2/v3/v4/v5e/v5p/v6e, e.g. v4-8):
#   1. installs as README "On a TPU VM" says: tensorflow-tpu 2.20.0 + libtpu 0.0.14,
#      tensorflow-text 2.20.1 with --no-deps, then `pip install -e .[tpu]` (refused when the
#      standard `tensorflow` wheel is installed: both fill the same folder; use a fresh venv);
#   2. runs bench/tpu_smoke.py: for each config (tiny, small) pretrain.py under TPUStrategy for
#      two host loops, SIGTERM (expects exit 75 and a checkpoint), the same command again (expects
#      it to resume and finish), finetune.py on RTE for a few steps with an evaluation and an
#      export, the export reloaded; prints one PASS/FAIL line per stage, step times and MFU
#      against the chip's bf16 peak, and writes OUT/tpu_smoke.json.
#
# --backend=jax checks the JAX engine instead (README: On a TPU VM with JAX), in a venv without
# tensorflow-tpu: 1. installs `.[cpu,jax]` (the standard TensorFlow wheel, for tf.data) and
# `jax[tpu]` (its libtpu) at the installed jax version; 2. runs bench/jax_smoke.py: jax.devices()
# must be TPUs (no TPUClusterResolver), then per config `pretrain.py --backend=jax` for two host
# loops, SIGTERM (exit 75 and a checkpoints/jax_<step>), the same command again (resume, finish),
# and its export (<model_dir>/pretrained) loaded on JAX; step times and MFU as above.
#
#   bash bench/tpu_smoke.sh [--out=DIR] [--configs=tiny,small] [--no-install]      # on a TPU VM
#   bash bench/tpu_smoke.sh --backend=jax [--out=DIR] [--no-install]               # JAX engine
#   bash bench/tpu_smoke.sh --strategy=default --no-install --configs=tiny --out=DIR # CPU check
#   bash bench/tpu_smoke.sh --backend=jax --strategy=default --no-install --configs=tiny # JAX, CPU
#   (other --flags go to bench/tpu_smoke.py: --accelerator_type=v4-8, --tpu=NAME, --stage_timeout)
# --strategy=default never installs the TPU build (it would replace the standard wheel): without
# --no-install it installs `.[cpu]` (`.[cpu,jax]` with --backend=jax). OUT default:
# bench/results/tpu_smoke_<UTC time> (jax_smoke_<UTC time> with --backend=jax).
# Exit status: 0 when every stage passed, 1 when one failed, 2 for bad arguments.
set -uo pipefail

cd "$(dirname "$0")/.."
STRATEGY=tpu
BACKEND=tensorflow
NO_INSTALL=0
CONFIGS=tiny,small
OUT_DIR=""
EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --strategy=*) STRATEGY="${arg#*=}" ;;
    --backend=*) BACKEND="${arg#*=}" ;;
    --no-install) NO_INSTALL=1 ;;
    --configs=*) CONFIGS="${arg#*=}" ;;
    --out=*) OUT_DIR="${arg#*=}" ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    --*) EXTRA+=("$arg") ;;
    *) echo "tpu_smoke.sh: unexpected argument '$arg' (flags are --name=value)" >&2; exit 2 ;;
  esac
done
case "$STRATEGY" in
  tpu|default) ;;
  *) echo "tpu_smoke.sh: --strategy=$STRATEGY: use tpu or default" >&2; exit 2 ;;
esac
case "$BACKEND" in
  tensorflow|jax) ;;
  *) echo "tpu_smoke.sh: --backend=$BACKEND: use tensorflow or jax" >&2; exit 2 ;;
esac
[ -n "$CONFIGS" ] || { echo "tpu_smoke.sh: --configs is empty" >&2; exit 2; }
STEM=tpu_smoke
[ "$BACKEND" = "jax" ] && STEM=jax_smoke
OUT_DIR="${OUT_DIR:-bench/results/${STEM}_$(date -u +%Y%m%dT%H%M%SZ)}"
PY="${PYTHON:-python}"
log() { echo "== tpu_smoke: $*"; }

# ------------------------------------------------------------------------------ 1. install
INSTALL_STATUS=SKIP
INSTALL_DETAIL="--no-install"
if [ "$NO_INSTALL" != "1" ]; then
  mkdir -p "$OUT_DIR"
  INSTALL_LOG="$OUT_DIR/install.txt"
  if [ "$BACKEND" = "jax" ]; then
    EXTRA_JAX=""
    [ "$STRATEGY" = "tpu" ] && EXTRA_JAX=tpu
    log "installing .[cpu,jax]${EXTRA_JAX:+ and jax[tpu]} (README: On a TPU VM with JAX); log in $INSTALL_LOG"
    if "$PY" -m pip show tensorflow-tpu >/dev/null 2>&1; then
      INSTALL_STATUS=FAIL
      INSTALL_DETAIL="tensorflow-tpu is installed here and fills the folder of the standard tensorflow wheel the JAX engine's input pipeline uses: run in a fresh venv (python -m venv ~/funnel-jax)"
    elif "$PY" -m pip install -e ".[cpu,jax]" >"$INSTALL_LOG" 2>&1 \
        && { [ -z "$EXTRA_JAX" ] || "$PY" -m pip install \
               "jax[tpu]==$("$PY" -c 'import jax; print(jax.__version__)')" >>"$INSTALL_LOG" 2>&1; }; then
      PKGS="$("$PY" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|libtpu|tensorflow)[-_ ]' | tr -s ' ' | paste -sd ',' -)"
      echo "$PKGS" >>"$INSTALL_LOG"
      INSTALL_STATUS=PASS; INSTALL_DETAIL="$PKGS"
    else
      INSTALL_STATUS=FAIL; INSTALL_DETAIL="pip failed: $(grep -iE 'error' "$INSTALL_LOG" | tail -1 | cut -c1-300)"
    fi
  elif [ "$STRATEGY" = "tpu" ]; then
    log "installing the TPU build (README: On a TPU VM); log in $INSTALL_LOG"
    if "$PY" -m pip show tensorflow >/dev/null 2>&1; then
      INSTALL_STATUS=FAIL
      INSTALL_DETAIL="the standard 'tensorflow' wheel is installed here and would clash with tensorflow-tpu: run in a fresh venv (python -m venv ~/funnel)"
    elif "$PY" -m pip install tensorflow-tpu==2.20.0 libtpu==0.0.14 >"$INSTALL_LOG" 2>&1 \
        && "$PY" -m pip install --no-deps tensorflow-text==2.20.1 >>"$INSTALL_LOG" 2>&1 \
        && "$PY" -m pip install -e ".[tpu]" >>"$INSTALL_LOG" 2>&1; then
      PKGS="$("$PY" -m pip list 2>/dev/null | grep -iE '^(tensorflow|libtpu)[-_ ]' | tr -s ' ' | paste -sd ',' -)"
      echo "$PKGS" >>"$INSTALL_LOG"
      if "$PY" -m pip show tensorflow >/dev/null 2>&1; then
        INSTALL_STATUS=FAIL; INSTALL_DETAIL="something pulled the standard tensorflow wheel in: $PKGS"
      else
        INSTALL_STATUS=PASS; INSTALL_DETAIL="$PKGS"
      fi
    else
      INSTALL_STATUS=FAIL; INSTALL_DETAIL="pip failed: $(grep -iE 'error' "$INSTALL_LOG" | tail -1 | cut -c1-300)"
    fi
  else
    log "installing .[cpu] (the standard TensorFlow wheel); log in $INSTALL_LOG"
    if "$PY" -m pip install -e ".[cpu]" >"$INSTALL_LOG" 2>&1; then
      INSTALL_STATUS=PASS; INSTALL_DETAIL="pip install -e .[cpu]"
    else
      INSTALL_STATUS=FAIL; INSTALL_DETAIL="pip failed: $(grep -iE 'error' "$INSTALL_LOG" | tail -1 | cut -c1-300)"
    fi
  fi
fi

# --------------------------------------------------------------------- 2. stages + verdict
"$PY" "bench/${STEM}.py" --strategy="$STRATEGY" --configs="$CONFIGS" --out="$OUT_DIR" \
  --install_status="$INSTALL_STATUS" --install_detail="$INSTALL_DETAIL" ${EXTRA[@]+"${EXTRA[@]}"}
status=$?
log "done (status $status); outputs in $OUT_DIR"
exit $status
