"""The finetuning run: distributed prediction, evaluation marks, and a short in-process run (train,
eval, best/, resume, predict) that checks the "nothing half-written" rule."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import TaskError, get_task
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.finetuning.args import FinetuneArgs
from funnel_tf.finetuning.run import run_finetuning
from funnel_tf.finetuning.predictor import Predictor
from funnel_tf.finetuning.runner import FinetuneRunner, RunConfig
from funnel_tf.text.classification import TextExamples
from tests.tasks.helpers import uninterrupted_csv_args, uninterrupted_csv_run

DEMO_VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "demo_vocab.txt")

WORDS = "the river old stone bridge near village warm cold boat harbor lamp".split()


def _examples(n, seed=0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(n)]
    labels = np.array([int("warm" in t) for t in texts], np.int32)
    return TextExamples(texts, None, labels, [f"id{i}" for i in range(n)], ("0", "1"))


def _write_csv_task(folder, n_train=96, n_dev=24):
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2), ("test", n_dev, 3)):
        ex = _examples(n, seed)
        paths[split] = os.path.join(folder, f"{split}.tsv")
        with open(paths[split], "w") as f:
            f.write("text\tlabel\n" + "".join(f"{t}\t{('neg', 'pos')[y]}\n"
                                             for t, y in zip(ex.text_a, ex.labels)))
    return paths


def test_predictor_under_mirrored_strategy_matches_one_device(micro_config, demo_tokenizer,
                                                              mirrored):
    task = get_task("sst-2")
    hp = Hparams(max_seq_length=16, batch_size=4)
    examples = _examples(10)
    model = task.build_model(micro_config)
    data = task.eval_data(examples, demo_tokenizer, hp, global_batch=4)
    single = Predictor(tf.distribute.get_strategy(), task, model, jit_compile=True)(data, 4)
    assert len(single["logits"]) == 12 and single["example_index"].tolist()[-2:] == [-1, -1]
    assert single["example_index"].tolist()[:10] == list(range(10))

    with mirrored.scope():
        model2 = task.build_model(micro_config)
    model2.set_weights(model.get_weights())
    dist = Predictor(mirrored, task, model2, jit_compile=False)(data, 4)
    np.testing.assert_array_equal(dist["example_index"], single["example_index"])
    np.testing.assert_allclose(dist["logits"], single["logits"], atol=1e-5)
    metrics = task.compute_metrics("dev", data, dist, hp)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_eval_marks_follow_epochs_or_eval_every(micro_config, demo_tokenizer, tmp_path):
    task = get_task("sst-2")
    runner = FinetuneRunner(task, Hparams(batch_size=32, epochs=4.0, max_seq_length=16),
                            micro_config, demo_tokenizer, tf.distribute.get_strategy(),
                            RunConfig(model_dir=str(tmp_path)))
    runner.train_rows = 1200
    assert runner.total_steps == 150 and runner.eval_marks() == [38, 75, 112]
    runner.run.eval_every = 40
    assert runner.eval_marks() == [40, 80, 120]
    runner.run.eval_every = -1
    assert runner.eval_marks() == []


def test_vocab_and_replica_checks(micro_config, demo_tokenizer, tmp_path, mirrored):
    task = get_task("sst-2")
    with pytest.raises(TaskError, match="vocab_size 30522"):
        FinetuneRunner(task, Hparams(max_seq_length=16), micro_config.replace(vocab_size=30522),
                       demo_tokenizer, tf.distribute.get_strategy(), RunConfig(str(tmp_path)))
    with pytest.raises(TaskError, match="not divisible"):
        FinetuneRunner(task, Hparams(batch_size=5, max_seq_length=16), micro_config,
                       demo_tokenizer, mirrored, RunConfig(str(tmp_path)))


def test_short_run_trains_keeps_best_resumes_and_predicts(micro_config, tmp_path,
                                                          tmp_path_factory):
    # The session's uninterrupted csv run (also test_preemption's reference): 12 steps.
    folder, summary, _ = uninterrupted_csv_run(tmp_path_factory, micro_config)
    model_dir = str(tmp_path / "run")
    shutil.copytree(os.path.join(folder, "run"), model_dir)  # the shared run is read-only
    args = uninterrupted_csv_args(folder, model_dir)
    files = args.files
    assert summary["train"]["step"] == 12
    assert [e["step"] for e in summary["evaluations"]] == [6, 12]
    best = json.load(open(os.path.join(model_dir, "best_result.json")))
    assert best["metric"] == "accuracy" and best["step"] in (6, 12)
    assert best["value"] == max(e["accuracy"] for e in summary["evaluations"])
    assert sorted(os.listdir(os.path.join(model_dir, "best"))) == [
        "config.json", "funnel_tf.json", "model.weights.h5", "task.json", "vocab.txt"]
    pred = open(summary["predictions"]["test"][0]).read().splitlines()
    assert pred[0] == "id\tprediction\tp_neg\tp_pos" and len(pred) == 25

    # Same model_dir again: training is complete, evaluations are not repeated.
    again = run_finetuning(args)
    assert again["train"]["step"] == 12 and again["evaluations"] == []
    with open(os.path.join(model_dir, "eval_results.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [6, 12]

    # Evaluate-only from the run's best model reproduces the best metric.
    only = run_finetuning(FinetuneArgs(
        task="csv", model_dir=model_dir, files=files, do_train=False, do_eval=True,
        csv_options={"text_a_column": "text", "label_column": "label"},
        hparams=dict(batch_size=16, max_seq_length=16)))
    assert only["eval"]["accuracy"] == pytest.approx(best["value"])


def test_errors_before_anything_is_written(micro_config, tmp_path):
    config_path = str(tmp_path / "micro.json")
    micro_config.save(config_path)
    files = _write_csv_task(str(tmp_path / "data"))
    base = dict(task="csv", config=config_path, vocab_file=DEMO_VOCAB,
                csv_options={"text_a_column": "text", "label_column": "label"},
                hparams=dict(batch_size=16, train_steps=2, max_seq_length=16))
    model_dir = tmp_path / "run"
    with pytest.raises(TaskError, match="missing task files"):
        run_finetuning(FinetuneArgs(model_dir=str(model_dir), files=dict(
            files, dev=str(tmp_path / "nope.tsv")), **base))
    (tmp_path / "bad.tsv").write_text("text\tlabel\nok\tpos\nhm\tmaybe\n")
    with pytest.raises(ValueError, match=r"bad.tsv:3.*'maybe'"):
        run_finetuning(FinetuneArgs(model_dir=str(model_dir), files=dict(
            files, dev=str(tmp_path / "bad.tsv")), **dict(base, csv_options=dict(
                base["csv_options"], label_names=["neg", "pos"]))))
    from funnel_tf.checkpoints import save_pretrained
    from funnel_tf.modeling.heads import FunnelForMaskedLM

    save_pretrained(FunnelForMaskedLM(micro_config.replace(d_model=48)), str(tmp_path / "big"))
    with pytest.raises(TaskError, match=r"(?s)does not fit.*shape mismatch"):
        run_finetuning(FinetuneArgs(model_dir=str(model_dir), files=files,
                                    init_checkpoint=str(tmp_path / "big"), **base))
    assert not model_dir.exists()


@pytest.mark.slow  # XLA compiles four models: ~1 min on an idle 2-core CPU
def test_task_steps_compile_with_xla_under_mixed_bfloat16(micro_config):
    """Loss + gradients of every task family in one XLA cluster, bf16 compute, float32 losses."""
    import keras

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        ids = tf.random.stateless_uniform([2, 16], [3, 4], 1, micro_config.vocab_size, tf.int32)
        base = {"input_ids": ids, "attention_mask": tf.ones_like(ids),
                "token_type_ids": tf.zeros_like(ids), "example_weight": tf.ones([2]),
                "example_index": tf.constant([0, 1])}
        cases = {
            "sts-b": dict(base, label=tf.constant([1.0, 4.5])),
            "qnli": dict(base, label=tf.constant([0, 1])),
            "squad_v2.0": dict(base, p_mask=tf.concat([tf.zeros([2, 8], tf.int32),
                                                        tf.ones([2, 8], tf.int32)], 1),
                               start_positions=tf.constant([3, 0]),
                               end_positions=tf.constant([5, 0]),
                               is_impossible=tf.constant([0, 1])),
            "race": {k: (tf.stack([v] * 4, 1) if k in ("input_ids", "attention_mask",
                                                         "token_type_ids") else v)
                     for k, v in dict(base, label=tf.constant([3, 1])).items()},
        }
        for name, features in cases.items():
            task = get_task(name)
            model = task.build_model(micro_config)

            @tf.function(jit_compile=True)
            def step(f):
                with tf.GradientTape() as tape:
                    loss, _ = task.per_example_loss(model, f, training=True)
                    mean = tf.reduce_mean(loss)
                grads = tape.gradient(mean, model.trainable_variables)
                return loss, tf.linalg.global_norm(grads), task.predict(model, f)

            loss, norm, outputs = step(features)
            assert loss.dtype == tf.float32 and np.all(np.isfinite(loss.numpy())), name
            assert np.isfinite(float(norm)) and float(norm) > 0, name
            assert all(v.dtype in (tf.float32, tf.int32) for v in outputs.values()), name
            assert model.funnel.embeddings.word_embeddings.dtype == tf.float32
    finally:
        keras.config.set_dtype_policy("float32")


def test_an_evaluation_of_a_run_that_lost_its_lock_writes_nothing(tmp_path):
    """evaluate_and_keep_best re-checks the model_dir lock before it appends eval_results.jsonl or
    refreshes best/: a run whose RUN_LOCK was deleted stops there (the checkpoints' own check is in
    tests/engine/test_loop.py). Only the runner's bookkeeping is faked: the evaluation itself."""
    from types import SimpleNamespace

    from funnel_tf.engine.actions import KeepBest
    from funnel_tf.engine.run_lock import LOCK_NAME, ModelDirLock, RunLockLostError

    model_dir = str(tmp_path / "run")
    lock = ModelDirLock(model_dir).acquire()
    runner = SimpleNamespace(
        _read_evaluated=dict, _keep_best=KeepBest(
            "accuracy", os.path.join(model_dir, "best_result.json"),
            lambda step: pytest.fail("best/ written by a run that lost its lock")),
        evaluate=lambda: {"accuracy": 0.5}, task=SimpleNamespace(main_metric="accuracy"),
        hp=SimpleNamespace(batch_size=4), train_rows=8, info=SimpleNamespace(is_chief=True),
        run=SimpleNamespace(model_dir=model_dir),
        save_model=lambda d: pytest.fail("best/ written by a run that lost its lock"))
    os.remove(os.path.join(model_dir, LOCK_NAME))
    try:
        with pytest.raises(RunLockLostError, match="was removed while this run held it"):
            FinetuneRunner.evaluate_and_keep_best(runner, 2)
        assert os.listdir(model_dir) == []  # no eval_results.jsonl, no best/
    finally:
        lock.release()
