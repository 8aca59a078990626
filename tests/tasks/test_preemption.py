"""A preempted finetune (SIGTERM during training, here while it evaluates at an epoch mark) saves
its checkpoint at once and exits 75 without evaluating at the end, predicting or exporting; the
rerun resumes and finishes everything, the export included. (It used to train on to the next host
call, then evaluate, predict and export the half-trained model and exit 0, and the rerun then
failed because the export existed.) finetune.py's own `main` runs in-process here."""

import json
import os
import signal

import tensorflow as tf

from funnel_tf.tasks import runner as runner_module
from tests.tasks.helpers import DEMO_VOCAB, write_csv_task


def test_sigterm_exits_75_without_predicting_or_exporting_and_the_rerun_finishes(
        finetune_main, micro_config, tmp_path, monkeypatch, capsys):
    config_path = tmp_path / "micro.json"
    micro_config.save(str(config_path))
    files = write_csv_task(str(tmp_path / "data"))
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    argv = ["--task=csv", f"--train_file={files['train']}", f"--dev_file={files['dev']}",
            f"--test_file={files['test']}", "--text_a_column=text", "--label_column=label",
            f"--config={config_path}", f"--vocab_file={DEMO_VOCAB}", f"--model_dir={model_dir}",
            "--do_train", "--do_eval", "--do_predict", f"--export_dir={export_dir}",
            "--batch_size=16", "--epochs=2", "--max_seq_length=16", "--steps_per_loop=4",
            "--log_every=2"]                           # 96 rows: 6 steps an epoch, 12 in all

    evaluate = runner_module.FinetuneRunner.evaluate

    def evaluate_then_preempted(self):
        os.kill(os.getpid(), signal.SIGTERM)          # the pod is told to go while it evaluates
        return evaluate(self)

    monkeypatch.setattr(runner_module.FinetuneRunner, "evaluate", evaluate_then_preempted)
    assert finetune_main(*argv) == 75
    err = capsys.readouterr().err
    assert "finetune.py: preempted at step 6 of 12" in err
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-6")
    assert [json.loads(x)["step"] for x in open(model_dir / "eval_results.jsonl")] == [6]
    assert not (model_dir / "predictions").exists() and not export_dir.exists()
    assert not (model_dir / "RUN_LOCK").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    monkeypatch.undo()
    assert finetune_main(*argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["train"]["step"] == 12 and summary["preempted"] is False
    assert [json.loads(x)["step"] for x in open(model_dir / "eval_results.jsonl")] == [6, 12]
    assert (export_dir / "saved_model.pb").exists()
    assert os.path.exists(summary["predictions"]["test"][0])
    assert not (model_dir / "RUN_LOCK").exists()
