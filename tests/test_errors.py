"""User errors and the file system's refusals end as one line on stderr, exit 2, and lose nothing."""

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from funnel_tf.cli import main_with_user_errors
from funnel_tf.errors import UserError, storage_problem

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/runs/a/metrics.jsonl"), "the disk is full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "the disk quota is exceeded"),
    (OSError(errno.EROFS, "Read-only file system"), "the file system is read-only"),
    (PermissionError(errno.EACCES, "Permission denied", "/runs/a"), "permission denied"),
    (tf.errors.ResourceExhaustedError(None, None, "/runs/a/x.tfrecord; No space left on device"),
     "the disk is full"),
    (tf.errors.UnknownError(None, None, "/runs/a/x; File too large"), "a file-size limit was hit"),
    (tf.errors.PermissionDeniedError(None, None, "gs://b/x: permission denied"), "permission denied"),
])
def test_storage_refusals_are_recognised(error, words):
    line = storage_problem(error)
    assert line.startswith(words) and "\n" not in line and "rerun the same command" in line, line


@pytest.mark.parametrize("error", [
    tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,4096]"),
    ValueError("permission denied is part of this text, but it is no I/O error"),
    OSError(errno.ENOENT, "No such file or directory"),
    RuntimeError("boom"),
])
def test_other_errors_are_not(error):
    assert storage_problem(error) is None


def test_entry_point_wrapper(capsys):
    def failing(error):
        @main_with_user_errors("tool")
        def main():
            raise error
        return main

    assert failing(UserError("bad flag\nsecond line"))() == 2
    assert capsys.readouterr().err == "tool: error: bad flag; second line\n"
    assert failing(OSError(errno.ENOSPC, "No space left on device", "/x"))() == 2
    assert capsys.readouterr().err.startswith("tool: error: the disk is full: [Errno 28]")
    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        failing(RuntimeError("boom"))()


def _limit_file_size(limit):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_records_tool_out_of_space_is_one_line_and_leaves_no_partial_shards(tmp_path):
    """A file-size limit stands in for a full disk (no root needed): the shards that could not
    be completed are removed, so a later run cannot read them."""
    out = tmp_path / "records"
    proc = subprocess.run(
        [sys.executable, "-m", "funnel_tf.text", "create-pretraining-data",
         "--input", os.path.join(REPO, "data", "demo_corpus.txt"), "--output_dir", str(out),
         "--vocab", os.path.join(REPO, "data", "demo_vocab.txt")],
        cwd=REPO, capture_output=True, text=True, preexec_fn=_limit_file_size(2000),
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(
        "python -m funnel_tf.text: error: a file-size limit was hit"), proc.stderr[-2000:]
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.slow
def test_pretraining_out_of_space_mid_run_keeps_the_checkpoint_and_resumes(tmp_path, monkeypatch):
    """The disk fills while the progress log is written (after the step-10 checkpoint): one line,
    exit 2, the checkpoint is intact, the model_dir is free again and the rerun resumes from it."""
    from funnel_tf.engine import progress
    from funnel_tf.pretraining.args import PretrainArgs
    from funnel_tf.pretraining.run import run_pretraining

    args = PretrainArgs(model_dir=str(tmp_path / "run"), train_steps=20, save_every=10,
                        log_every=10, steps_per_loop=10)
    original = progress.ProgressLogger.log

    def log(self, step, *a, **k):
        if int(step) >= 20:
            raise OSError(errno.ENOSPC, "No space left on device", self.jsonl_path)
        return original(self, step, *a, **k)

    monkeypatch.setattr(progress.ProgressLogger, "log", log)
    main = main_with_user_errors("pretrain.py")(lambda: run_pretraining(args))
    assert main() == 2
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.index")) == ["ckpt-10.index"]
    monkeypatch.setattr(progress.ProgressLogger, "log", original)  # space freed
    result = run_pretraining(args)
    assert result.step == 20 and [r["step"] for r in result.history] == [20]  # resumed at 10
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.index")) == ["ckpt-10.index",
                                                                       "ckpt-20.index"]
