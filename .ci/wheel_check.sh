#!/usr/bin/env bash
# The wheel works outside the checkout: build it from this checkout's files, install it with
# --no-deps into a fresh venv that sees this environment's TensorFlow (--system-site-packages, so
# nothing is downloaded), then, from a temp folder outside the checkout, check the package data
# (configs, demo corpus/vocab), the console scripts, and run the README quickstart.
#   .ci/wheel_check.sh            (PYTHON=python3.11 to pick the interpreter; KEEP=1 keeps the temp folder)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/funnel_wheel_check.XXXXXX")"
if [[ "${KEEP:-0}" != "1" ]]; then trap 'rm -rf "$WORK"' EXIT; fi
echo "wheel_check: working in $WORK"

# 1. Build from a copy of the tracked + untracked (not ignored) files, so the checkout gets no build/.
"$PY" - "$REPO" "$WORK/src" <<'PYEOF'
import os, shutil, subprocess, sys
repo, dst = sys.argv[1:3]
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                       capture_output=True, check=True).stdout.decode().split("\0")
for rel in filter(None, files):
    src = os.path.join(repo, rel)
    if os.path.isfile(src) and not rel.startswith(".git/"):
        os.makedirs(os.path.dirname(os.path.join(dst, rel)) or dst, exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel))
PYEOF
"$PY" -m pip wheel --no-deps --no-build-isolation --quiet -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/funnel_tf-*.whl)"
echo "wheel_check: built $(basename "$WHEEL")"

# 2. A fresh venv with the environment's packages visible; only the wheel is installed into it.
"$PY" -m venv --system-site-packages "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --no-deps --no-index --quiet "$WHEEL"

# 3. Outside the checkout: the installed copy is the one imported, package data and scripts are there.
mkdir -p "$WORK/run" && cd "$WORK/run"
cp "$REPO/README.md" "$REPO/tests/readme_quickstart.py" .
"$VPY" - "$WORK/venv" <<'PYEOF'
import os, sys
venv = os.path.realpath(sys.argv[1])
import funnel_tf
where = os.path.realpath(funnel_tf.__file__)
assert where.startswith(venv), f"funnel_tf imported from {where}, not from the venv {venv}"
from funnel_tf import load_config, resources
assert load_config("small").d_model == 768 and load_config("tiny-base")
assert os.path.isfile(resources.demo_corpus_path()) and os.path.isfile(resources.demo_vocab_path())
assert os.path.realpath(resources.configs_dir()).startswith(venv)
import importlib.util
assert importlib.util.find_spec("pretrain") and importlib.util.find_spec("finetune")  # shipped entry scripts
print(f"wheel_check: funnel_tf {funnel_tf.__version__} from {os.path.dirname(where)}; configs + demo data ok")
PYEOF
for script in funnel-pretrain funnel-finetune funnel-convert funnel-text funnel-glue-submission; do
  [[ -x "$WORK/venv/bin/$script" ]] || { echo "wheel_check: console script $script missing" >&2; exit 1; }
done
"$WORK/venv/bin/funnel-convert" --help > /dev/null
"$WORK/venv/bin/funnel-text" --help > /dev/null
"$WORK/venv/bin/funnel-glue-submission" --help > /dev/null
# --helpshort: exit 0, the script's own description (its docstring) and its flags on stdout.
for pair in "funnel-pretrain:Pretrain a Funnel-Transformer" "funnel-finetune:Finetune"; do
  script="${pair%%:*}"; words="${pair#*:}"
  usage="$("$WORK/venv/bin/$script" --helpshort 2>/dev/null)" \
    || { echo "wheel_check: $script --helpshort exited non-zero" >&2; exit 1; }
  { grep -q "^$words" <<< "$usage" && grep -q "^flags:" <<< "$usage" \
      && grep -q "/$script:" <<< "$usage"; } \
    || { echo "wheel_check: $script --helpshort did not print its help: $usage" >&2; exit 1; }
done
echo "wheel_check: console scripts ok"
"$VPY" readme_quickstart.py README.md "$WORK/run/quickstart"
echo "wheel_check: OK"
