"""A preempted finetune (SIGTERM during training, here while it evaluates at an epoch mark) saves
its checkpoint at once and exits 75 without evaluating at the end, predicting or exporting; the
rerun resumes and finishes everything, the export included, with the losses and evaluations of an
uninterrupted run. (It used to train on to the next host
call, then evaluate, predict and export the half-trained model and exit 0, and the rerun then
failed because the export existed.) finetune.py's own `main` runs in-process here, with every
output under ram:// (TF's in-memory filesystem, standing in for gs://) in the default test and on
the local disk in the slow one."""

import json
import os
import signal
import uuid

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import storage
from funnel_tf.checkpoints.native import from_pretrained
from funnel_tf.export import ClassifierServing
from funnel_tf.finetuning import runner as runner_module
from tests.tasks.helpers import DEMO_VOCAB, uninterrupted_csv_run, write_csv_task


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, micro_config):
    """The uninterrupted run the resumed ones are compared with (shared with test_runner)."""
    return uninterrupted_csv_run(tmp_path_factory, micro_config)


def _argv(whole_run, model_dir, export_dir):
    """The whole run's flags: 96 training rows, batch 16: 6 steps an epoch, 12 in all, evaluated
    at step 6 and 12; predicting the test split and exporting at the end."""
    return [*whole_run[2], f"--model_dir={model_dir}", f"--export_dir={export_dir}"]


def _preempt_while_evaluating(monkeypatch, signum=signal.SIGTERM):
    evaluate = runner_module.FinetuneRunner.evaluate

    def evaluate_then_preempted(self):
        os.kill(os.getpid(), signum)                  # the pod is told to go while it evaluates
        return evaluate(self)

    monkeypatch.setattr(runner_module.FinetuneRunner, "evaluate", evaluate_then_preempted)


def _read(path):
    with tf.io.gfile.GFile(str(path)) as f:
        return f.read()


def _losses(model_dir):
    """{step: loss} of a run's metrics.jsonl (a resumed run's last record of a step wins)."""
    return {r["step"]: r["loss"] for r in map(json.loads, _read(f"{model_dir}/metrics.jsonl")
                                             .splitlines()) if "loss" in r}


def _evals(model_dir):
    """The evaluation records of eval_results.jsonl, without their timing."""
    return [{k: v for k, v in json.loads(x).items() if k != "eval_seconds"}
            for x in _read(f"{model_dir}/eval_results.jsonl").splitlines()]


def _eval_steps(model_dir):
    return [e["step"] for e in _evals(model_dir)]


def _preempted_then_finished(finetune_main, argv, model_dir, export_dir, monkeypatch, capsys,
                             signum=signal.SIGTERM):
    """Run 1 is preempted at step 6 (checks what it left), run 2 finishes; returns run 2's
    summary."""
    _preempt_while_evaluating(monkeypatch, signum)
    assert finetune_main(*argv) == 75
    err = capsys.readouterr().err
    assert "finetune.py: preempted at step 6 of 12" in err
    assert tf.train.latest_checkpoint(f"{model_dir}/checkpoints").endswith("ckpt-6")
    assert _eval_steps(model_dir) == [6]
    assert not tf.io.gfile.exists(f"{model_dir}/predictions/csv_test_predictions.tsv")
    assert not tf.io.gfile.exists(f"{export_dir}/saved_model.pb")
    assert not tf.io.gfile.exists(f"{model_dir}/RUN_LOCK")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    monkeypatch.undo()
    assert finetune_main(*argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["train"]["step"] == 12 and summary["preempted"] is False
    assert _eval_steps(model_dir) == [6, 12]
    assert tf.io.gfile.exists(f"{export_dir}/saved_model.pb")
    assert len(_read(summary["predictions"]["test"][0]).splitlines()) == 25
    assert not tf.io.gfile.exists(f"{model_dir}/RUN_LOCK")
    return summary


def test_preempted_run_under_ram_exits_75_then_resumes_exports_and_loads_back(
        finetune_main, whole_run, demo_tokenizer, monkeypatch, capsys):
    root = f"ram://preempt_{uuid.uuid4().hex}"
    model_dir, export_dir = f"{root}/run", f"{root}/export"
    try:
        summary = _preempted_then_finished(finetune_main, _argv(whole_run, model_dir, export_dir),
                                           model_dir, export_dir, monkeypatch, capsys)
        assert summary["predictions"]["test"][0].startswith(model_dir)
        assert not tf.io.gfile.glob(f"{root}/.*") + tf.io.gfile.glob(f"{model_dir}/.*")

        # The resumed run trained as the uninterrupted one did: same losses, same evaluations.
        whole = os.path.join(whole_run[0], "run")
        assert sorted(_losses(whole)) == sorted(_losses(model_dir)) == [2, 4, 6, 8, 10, 12]
        assert _losses(whole) == pytest.approx(_losses(model_dir), rel=1e-6, abs=0)
        assert _eval_steps(whole) == [6, 12]
        assert _evals(whole) == _evals(model_dir)  # accuracy / error rate on the same dev set

        # best/ and the export, read back from ram://, give the same outputs.
        model = from_pretrained(f"{model_dir}/best")
        texts = tf.constant(["the warm river", "old stone bridge near the cold harbor"])
        features = ClassifierServing(model, demo_tokenizer, 16, pair=False,
                                     label_names=("neg", "pos")).features(texts)
        expected = model(features, training=False)["logits"].numpy()         # [2, 2]
        served = tf.saved_model.load(export_dir).signatures["serving_default"](text=texts)
        np.testing.assert_allclose(served["logits"].numpy(), expected, atol=1e-5)
    finally:
        storage.remove_tree(root)


@pytest.mark.slow  # two runs on the local disk (~45 s CPU): the default test does it on ram://
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_preempted_run_on_local_disk_exits_75_then_resumes_and_exports(
        finetune_main, whole_run, tmp_path, monkeypatch, capsys, signum):
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    argv = _argv(whole_run, model_dir, export_dir)
    (model_dir / ".tmp_best_x1y2").mkdir(parents=True)   # left by a run killed mid-copy
    _preempted_then_finished(finetune_main, argv, model_dir, export_dir, monkeypatch, capsys,
                             signum)
    assert not (model_dir / ".tmp_best_x1y2").exists()
    assert {"assets", "saved_model.pb", "variables"} <= set(os.listdir(export_dir))


def test_sigterm_while_exporting_exits_75_and_leaves_no_partial_export(
        finetune_main, micro_config, tmp_path, monkeypatch, capsys):
    """Outside the training loop SIGTERM used to kill the process where it stood (a temp export
    folder and the run lock left behind); now it unwinds: exit 75, nothing half-written."""
    from funnel_tf.checkpoints import save_pretrained
    from funnel_tf.modeling.heads import FunnelForSequenceClassification

    config_path = tmp_path / "micro.json"
    micro_config.save(str(config_path))
    save_pretrained(FunnelForSequenceClassification(micro_config, num_labels=2),
                    str(tmp_path / "finetuned"))
    save = tf.saved_model.save

    def save_then_preempted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return save(*args, **kwargs)

    monkeypatch.setattr(tf.saved_model, "save", save_then_preempted)
    files = write_csv_task(str(tmp_path / "data"))
    argv = ["--task=csv", f"--train_file={files['train']}", "--text_a_column=text",
            "--label_column=label", "--label_names=neg,pos", f"--config={config_path}", f"--vocab_file={DEMO_VOCAB}",
            f"--init_checkpoint={tmp_path / 'finetuned'}", f"--model_dir={tmp_path / 'run'}",
            f"--export_dir={tmp_path / 'export'}", "--max_seq_length=16", "--batch_size=16"]
    assert finetune_main(*argv) == 75
    assert "finetune.py: interrupted (SIGTERM)" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["data", "finetuned", "micro.json", "run"]
    assert os.listdir(tmp_path / "run") == []                    # the lock was released
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
