"""Every entry point connects its tf.distribute strategy before running any TensorFlow op: on a
TPU pod, ops run before `connect_to_cluster` / `initialize_tpu_system` land on the wrong devices
(issue 19.5). The runs go in a fresh process, where TF's eager context is still unstarted, with
`make_strategy` replaced by a probe that reports whether an op has started it, and stops the run."""

import os
import subprocess
import sys


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import sys
from tensorflow.python.eager import context
from funnel_tf.engine import strategy

class Reached(Exception):
    pass

def probe(*args, **kwargs):
    print("TF_STARTED_BEFORE_STRATEGY", context.context()._context_handle is not None, flush=True)
    raise Reached

strategy.make_strategy = probe
repo, tmp = sys.argv[1:]
demo_corpus = f"{repo}/data/demo_corpus.txt"
demo_vocab = f"{repo}/data/demo_vocab.txt"
# Both entry points in one fresh process (one TF import): the first must leave TF unstarted for
# the second's check to hold, and it is asserted to.
for entry in ("pretrain", "finetune"):
    print("ENTRY", entry, flush=True)
    try:
        if entry == "pretrain":
            from funnel_tf.pretraining.args import PretrainArgs
            from funnel_tf.pretraining.run import run_pretraining
            run_pretraining(PretrainArgs(train_data=[demo_corpus], model_dir=f"{tmp}/pretrain",
                                         vocab=demo_vocab, config="tiny", seq_len=32,
                                         batch_size=4, train_steps=2))
        else:
            sys.path.insert(0, f"{repo}/tests/tasks")
            from helpers import csv_args, write_csv_task
            from funnel_tf.finetuning.run import run_finetuning
            run_finetuning(csv_args(f"{tmp}/finetune", write_csv_task(f"{tmp}/data"), "tiny",
                                    do_predict=True, predictions_dir=f"{tmp}/pred"))
    except Reached:
        pass
"""


def test_the_strategy_comes_before_any_tensorflow_op(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", PROBE, REPO, str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines()
             if ln.startswith(("ENTRY", "TF_STARTED_BEFORE_STRATEGY"))]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert lines == ["ENTRY pretrain", "TF_STARTED_BEFORE_STRATEGY False",
                     "ENTRY finetune", "TF_STARTED_BEFORE_STRATEGY False"], (lines,
                                                                           proc.stderr[-2000:])
    assert not (tmp_path / "pretrain").exists() and not (tmp_path / "finetune").exists()
