"""finetune.py --backend=jax (finetuning/run_jax.py): GLUE on the JAX engine, same run folder and
metrics as the TensorFlow engine, SQuAD refused in one line, resume after SIGTERM, and the TF
engine refusing a JAX model_dir. Every JAX run is a subprocess (the Keras backend is fixed per
process); GLUE data from the shared folder. The full runs (about 20-30 s each on a quiet 2-core
machine, several minutes under load) are slow; the default suite keeps the refusals."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("jax")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")


def _cmd(task, glue, config, model_dir, *extra):
    return [sys.executable, os.path.join(REPO, "finetune.py"), f"--task={task}",
            f"--data_dir={glue}", f"--config={config}", f"--vocab_file={DEMO_VOCAB}",
            f"--model_dir={model_dir}", "--do_train", "--do_eval", "--max_train_examples=32",
            "--max_eval_examples=24", "--batch_size=8", "--max_seq_length=16", "--log_every=1",
            *map(str, extra)]


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
               CUDA_VISIBLE_DEVICES="")
    env.pop("XLA_FLAGS", None)
    return env


def _run(cmd, backend="jax", rc=0):
    proc = subprocess.run(cmd, cwd=REPO, env=_env(backend), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == rc, proc.stderr[-4000:]
    return proc


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def config_file(tmp_path):
    """The micro model on the demo vocab, dropout off (runs are deterministic)."""
    from funnel_tf.config import load_config

    path = tmp_path / "micro.json"
    load_config("tiny").replace(vocab_size=919, block_sizes=[1, 1, 1], d_model=32, n_head=2,
                                d_head=16, d_inner=64, hidden_dropout=0.0, attention_dropout=0.0,
                                activation_dropout=0.0).save(str(path))
    return path


@pytest.mark.slow
def test_stsb_regression_on_jax_writes_the_run_folder_and_predicts(tmp_path, shared_data,
                                                                   config_file):
    run = tmp_path / "run"
    _run(_cmd("sts-b", shared_data / "glue", config_file, run, "--train_steps=2",
              "--do_predict", "--predict_splits=dev"))
    for name in ("config.json", "task.json", "run.json", "metrics.jsonl", "eval_results.jsonl",
                 "best_result.json", "best", "train", "checkpoints"):
        assert (run / name).exists(), name
    train = _jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in train] == [1, 2] and "accuracy" not in train[0]
    assert all(np.isfinite(r["loss"]) for r in train)
    last = _jsonl(run / "eval_results.jsonl")[-1]
    assert {"pearson", "spearman", "pearson_spearman_mean"} <= set(last) and last["step"] == 2
    lines = (run / "predictions" / "dev_STS-B.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 25
    assert all(np.isfinite(float(line.split("\t")[1])) for line in lines[1:])


def test_squad_is_refused_on_jax_before_writing(tmp_path, config_file):
    run = tmp_path / "run"
    proc = _run(_cmd("squad_v1.1", tmp_path, config_file, run), rc=2)
    err = proc.stderr.strip().splitlines()
    assert "--backend=jax finetunes GLUE" in err[-1] and "squad_v1.1" in err[-1]
    assert not run.exists()


@pytest.mark.tf_only
def test_tensorflow_engine_refuses_to_train_in_a_jax_model_dir(tmp_path, shared_data,
                                                               config_file, finetune_main,
                                                               capsys):
    """Training on TF in a model_dir of JAX checkpoints would silently start over: refused."""
    run = tmp_path / "run"
    (run / "checkpoints" / "jax_4").mkdir(parents=True)
    assert finetune_main(*_cmd("sst-2", shared_data / "glue", config_file, run)[2:]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds JAX-engine checkpoints" in err and "--backend=jax" in err
    assert os.listdir(run) == ["checkpoints"]


@pytest.mark.slow
def test_resume_after_sigterm_on_jax(tmp_path, shared_data, config_file):
    """SIGTERM once a checkpoint exists: exit 75; the same command resumes and finishes."""
    run = tmp_path / "run"
    cmd = _cmd("sst-2", shared_data / "glue", config_file, run, "--train_steps=400",
               "--save_every=1", "--steps_per_loop=1", "--eval_every=-1", "--keep_checkpoints=1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env("jax"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not (run / "metrics.jsonl").exists() and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 75, err[-3000:]
    stopped = _jsonl(run / "metrics.jsonl")[-1]["step"]
    assert 0 < stopped < 400
    done = _run(cmd)
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["train"]["step"] == 400 and not summary["preempted"]
    assert "restored" in done.stderr
    assert _jsonl(run / "metrics.jsonl")[-1]["step"] == 400


@pytest.mark.slow
def test_sst2_on_jax_matches_tensorflow(tmp_path, shared_data, config_file):
    """The same short SST-2 run (dropout off, the same starting model: a finetuned best/ as
    --init_checkpoint, since each backend's RNG draws other fresh weights) on both engines:
    per-step training losses agree to 1e-4, the dev accuracies and predictions are the same, and
    the JAX run folder holds what the TF one does."""
    glue = shared_data / "glue"
    _run(_cmd("sst-2", glue, config_file, tmp_path / "init", "--train_steps=1", "--nodo_eval"),
         "tensorflow")
    out = {}
    for backend in ("tensorflow", "jax"):
        run = tmp_path / backend
        _run(_cmd("sst-2", glue, config_file, run, "--epochs=2", "--steps_per_loop=2",
                  f"--init_checkpoint={tmp_path / 'init' / 'best'}", "--do_predict",
                  "--predict_splits=dev"), backend)
        out[backend] = (_jsonl(run / "metrics.jsonl"), _jsonl(run / "eval_results.jsonl"),
                        (run / "predictions" / "dev_SST-2.tsv").read_text())
    assert sorted(os.listdir(tmp_path / "jax")) == sorted(os.listdir(tmp_path / "tensorflow"))
    (tf_train, tf_eval, tf_pred), (jax_train, jax_eval, jax_pred) = out["tensorflow"], out["jax"]
    assert [r["step"] for r in jax_train] == [r["step"] for r in tf_train] == list(range(1, 9))
    np.testing.assert_allclose([r["loss"] for r in jax_train], [r["loss"] for r in tf_train],
                               rtol=1e-4)
    assert [r["accuracy"] for r in jax_eval] == [r["accuracy"] for r in tf_eval]
    assert jax_pred == tf_pred
