"""Finetuning with every output on a non-local filesystem (gs:// on pods; TF's in-memory ram://
stands in for it here): checkpoints, resume, eval results, best/, predictions, the export and
save_pretrained, all in one process, then the best model and the export loaded back from ram://
give the same outputs, and an evaluate-only run reads its config, best/ and vocab from there.
(best/ and the export used to go through os / shutil and failed there.)"""

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
from funnel_tf.finetuning.args import FinetuneArgs
from funnel_tf.finetuning.run import run_finetuning
from tests.tasks.helpers import CSV_OPTIONS, csv_args, write_csv_task


def _read(path):
    with tf.io.gfile.GFile(path) as f:
        return f.read()


@pytest.fixture
def ram_root():
    root = f"ram://finetune_{uuid.uuid4().hex}"
    yield root
    storage.remove_tree(root)


@pytest.mark.slow  # three runs (~60 s CPU); test_preemption.py's default test covers most of it
def test_finetune_under_ram_resumes_and_its_outputs_load_back(micro_config, demo_tokenizer,
                                                             tmp_path, ram_root, monkeypatch):
    config_path = str(tmp_path / "micro.json")
    micro_config.save(config_path)
    files = write_csv_task(str(tmp_path / "data"))
    model_dir, export_dir = f"{ram_root}/run", f"{ram_root}/export"
    args = csv_args(model_dir, files, config_path, do_predict=True, export_dir=export_dir,
                    hparams=dict(epochs=2.0), run=dict(steps_per_loop=4))   # 12 steps

    evaluate = runner_module.FinetuneRunner.evaluate

    def evaluate_then_preempted(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(self)

    monkeypatch.setattr(runner_module.FinetuneRunner, "evaluate", evaluate_then_preempted)
    first = run_finetuning(args)
    assert first["preempted"] and first["train"]["step"] == 6
    assert tf.train.latest_checkpoint(f"{model_dir}/checkpoints").endswith("ckpt-6")
    assert tf.io.gfile.exists(f"{model_dir}/best/funnel_tf.json")
    assert not tf.io.gfile.exists(export_dir)

    monkeypatch.undo()
    done = run_finetuning(args)                                   # resumes from ram://
    assert done["train"]["step"] == 12 and not done["preempted"]
    assert [json.loads(x)["step"] for x in _read(f"{model_dir}/eval_results.jsonl").splitlines()] \
        == [6, 12]
    best = json.loads(_read(f"{model_dir}/best_result.json"))
    assert sorted(os.path.basename(p) for p in tf.io.gfile.glob(f"{model_dir}/best/*")) == [
        "config.json", "funnel_tf.json", "model.weights.h5", "task.json", "vocab.txt"]
    predictions = done["predictions"]["test"][0]
    assert predictions.startswith(model_dir) and len(_read(predictions).splitlines()) == 25
    assert tf.io.gfile.exists(f"{export_dir}/saved_model.pb")
    assert not tf.io.gfile.glob(f"{ram_root}/.*") + tf.io.gfile.glob(f"{model_dir}/.*")

    # The best model and the export, loaded back from ram://, agree.
    model = from_pretrained(f"{model_dir}/best")
    texts = tf.constant(["the warm river", "old stone bridge near the cold harbor"])
    expected = ClassifierServing(model, demo_tokenizer, 16, pair=False,
                                 label_names=("neg", "pos")).serve(texts)
    served = tf.saved_model.load(export_dir).signatures["serving_default"](text=texts)
    np.testing.assert_allclose(served["logits"].numpy(), expected["logits"].numpy(), atol=1e-5)

    # Evaluate-only from the ram:// run (its config.json, best/ and vocab) reproduces best/.
    only = run_finetuning(FinetuneArgs(
        task="csv", model_dir=model_dir, files=files, do_train=False, do_eval=True,
        csv_options=dict(CSV_OPTIONS), hparams=dict(batch_size=16, max_seq_length=16)))
    assert only["eval"]["accuracy"] == pytest.approx(best["value"])
