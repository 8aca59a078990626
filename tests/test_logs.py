"""Quiet by default (funnel_tf.logs): TensorFlow's log noise is gone from an entry point's stderr
for the whole run (C++ lines that ignore TF_CPP_MIN_LOG_LEVEL, TF's Python INFO lines through
absl), our own lines, errors and tracebacks are kept, and nothing is lost when the run crashes."""

import os
import subprocess
import sys
import textwrap

import pytest

from funnel_tf.logs import noise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONEDNN = ("E0000 00:00:1796635476.243518   11187 util.cc:131] oneDNN supports DT_INT64 only on "
          "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.")
CPP_INFO = ("I0000 00:00:1796635416.391762   10951 port.cc:153] oneDNN custom operations are on. "
            "You may see slightly different numerical results.")
CPP_ERROR = "E0000 00:00:1796635476.243518   11187 kernel.cc:9] Something really failed"
OURS = "I1207 09:24:09.611448 140710011636608 runner.py:233] csv train: 96 examples"
NOISE = ("oneDNN supports DT_INT64", "I0000 ", "Sharding callback duration", "unsupported characters",
         "absl::InitializeLog", "AutoGraph could not transform")


@pytest.mark.parametrize("line, hidden_at", [
    (ONEDNN, {2, 3}),               # an error-level line that is no error
    (CPP_INFO, {1, 2, 3}),          # C++ INFO: hidden even though TF ignores the level for it
    (CPP_ERROR, {3}),               # a real C++ error is shown unless the user asked for level 3
    ("F0000 00:00:1.2   1 x.cc:1] Check failed: a == b", set()),
    ("2024-01-02 03:04:05.678: W tensorflow/core/x.cc:1] warned", {2, 3}),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
     {1, 2, 3}),
    (OURS, set()),                  # our own (Python absl) lines are never TF's noise
    ("W1207 09:24:09.611448 1 loop.py:9] a warning of ours", set()),
    ("Traceback (most recent call last):", set()),
    ("finetune.py: error: --batch_size must be >= 1, got 0", set()),
])
def test_noise_by_level(line, hidden_at):
    assert {level for level in range(4) if noise(line, level)} == hidden_at


SCRIPT = textwrap.dedent("""
    import os, sys
    from funnel_tf.logs import quiet_tensorflow
    print("quiet:", quiet_tensorflow(), "tensorflow" in sys.modules, flush=True)
    from absl import app, logging

    def main(argv):
        # as TF's C++ logs them: two noise lines and a real error
        os.write(2, (%(onednn)r + "\\n" + %(cpp_info)r + "\\n" + %(cpp_error)r + "\\n").encode())
        logging.info("our own line")
        if argv[2] == "light":  # the filter at a level alone: no TensorFlow
            return 0
        import tensorflow as tf
        print("loader:", tf.__loader__.__class__.__name__, flush=True)
        ckpt = tf.train.Checkpoint(v=tf.Variable(1.0))
        ckpt.save(os.path.join(argv[1], "ckpt"))  # TF logs 'Sharding callback duration' (INFO)
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a"], [1]), -1)
        module = tf.Module()
        module.table = table
        module.serve = tf.function(lambda a, b: {"x": table.lookup(a) + table.lookup(b)},
                                   input_signature=[tf.TensorSpec([None], tf.string)] * 2)
        tf.saved_model.save(module, os.path.join(argv[1], "export"))
        print("a line of ours on stderr", file=sys.stderr)
        if argv[2] == "crash":
            sys.stderr.flush()
            os.abort()  # no atexit: the filter must still pass on what it was given
        return 0

    app.run(main)
""") % {"onednn": ONEDNN, "cpp_info": CPP_INFO, "cpp_error": CPP_ERROR}


def run_script(tmp_path, mode="ok", level=None):
    tmp_path.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = str(level)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True,
                          text=True, env=env, timeout=300, cwd=str(tmp_path))


def test_quiet_run_drops_tensorflow_noise_and_loses_nothing_when_it_crashes(tmp_path):
    """One process for both (a TF import each): the run triggers every noise source, then aborts
    (no atexit), so the filter must pass on our lines, errors included, and drop the noise.
    A clean exit status through the filter: the level runs below and tests/test_pretrain.py."""
    proc = run_script(tmp_path, mode="crash")
    assert proc.returncode != 0
    # quiet_tensorflow() acted (no level set by the user) without importing TF, and TF's loader
    # is its own again once TF is in (tests/test_api.py checks the user's level is kept).
    lines = proc.stdout.splitlines()
    assert lines[0] == "quiet: True False" and lines[1].startswith("loader: "), proc.stdout
    assert lines[1] != "loader: _QuietLoader"
    assert "our own line" in proc.stderr and "a line of ours on stderr" in proc.stderr
    assert CPP_ERROR in proc.stderr  # a real C++ error is kept at the default level
    assert "Fatal Python error: Aborted" in proc.stderr
    assert not [n for n in NOISE if n in proc.stderr], proc.stderr


def test_level_3_hides_cpp_info_too_and_level_0_shows_everything(tmp_path):
    """Level 3 reaches the filter (it hides the C++ error too); without TensorFlow in that run, as
    the filter works per line (test_noise_by_level) and the crash run above has TF's own lines.
    Level 0 runs it all and shows every noise source the script triggers."""
    quiet = run_script(tmp_path / "a", mode="light", level=3)
    assert quiet.returncode == 0 and quiet.stdout.startswith("quiet: True False"), quiet.stdout
    assert "I0000 " not in quiet.stderr and ONEDNN not in quiet.stderr and CPP_ERROR not in quiet.stderr
    assert "our own line" in quiet.stderr
    loud = run_script(tmp_path / "b", level=0)
    assert loud.returncode == 0
    assert ONEDNN in loud.stderr and CPP_INFO in loud.stderr and CPP_ERROR in loud.stderr
    assert "Sharding callback" in loud.stderr
    assert "unsupported characters" in loud.stderr  # the export above does trigger it


@pytest.mark.slow
def test_a_real_finetune_with_export_has_no_tensorflow_noise(tmp_path, tiny_config):
    """funnel-finetune (console-script form) on a tiny pair task: train, eval, predict, export."""
    sys.path.insert(0, REPO)
    from tests.tasks.helpers import DEMO_VOCAB, write_csv_task

    files = write_csv_task(str(tmp_path / "data"), n_train=32, n_dev=8, n_test=8)
    tiny_config.replace(vocab_size=919, block_sizes=[1, 1, 1], d_model=32, n_head=2,
                        d_head=16, d_inner=64).save(str(tmp_path / "micro.json"))
    argv = ["--task=csv", f"--train_file={files['train']}", f"--dev_file={files['dev']}",
            f"--test_file={files['test']}", "--text_a_column=text", "--text_b_column=text",
            "--label_column=label", f"--config={tmp_path / 'micro.json'}",
            f"--vocab_file={DEMO_VOCAB}", f"--model_dir={tmp_path / 'run'}", "--do_train",
            "--do_eval", "--do_predict", "--batch_size=16", "--max_seq_length=16",
            f"--export_dir={tmp_path / 'export'}"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import sys; sys.argv[0] = 'funnel-finetune'; "
            "from funnel_tf.entry_points import finetune; finetune()")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval at step" in proc.stderr and "exported" in proc.stderr
    assert not [n for n in NOISE if n in proc.stderr], proc.stderr
