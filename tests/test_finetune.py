"""finetune.py end to end (subprocesses, as a user runs it): flags, one fast real run, the errors
users hit, every task on the shared data (slow), and pretrained-vs-random on SST-2 (slow)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")


def finetune(*args, check=True, timeout=900):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "finetune.py"), *map(str, args)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"finetune.py {args} failed ({proc.returncode}):\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def summary_of(proc):
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def eval_records(model_dir):
    with open(os.path.join(model_dir, "eval_results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def micro_config_file(tmp_path, tiny_config):
    """A very small model on the demo vocab, as a config JSON a user could pass with --config."""

    path = tmp_path / "micro.json"
    tiny_config.replace(vocab_size=919, block_sizes=[1, 1, 1], d_model=32, n_head=2,
                        d_head=16, d_inner=64).save(str(path))
    return path


def test_helpfull_explains_the_flags():
    out = finetune("--helpfull", check=False).stdout
    for flag in ("task", "data_dir", "init_checkpoint", "config", "model_dir", "tpu", "strategy",
                 "precision", "batch_size", "learning_rate", "epochs", "train_steps",
                 "max_seq_length", "do_train", "do_eval", "do_predict", "export_dir",
                 "eval_every", "layer_decay", "vocab_file", "predict_splits", "train_file"):
        assert f"--{flag}" in out, flag
    assert "squad_v2.0" in out and "GLUE submission" in out


def test_entry_point_trains_evaluates_predicts_and_exports(tmp_path, shared_data,
                                                           micro_config_file):
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    proc = finetune("--task=sst-2", f"--data_dir={shared_data / 'glue'}",
                    f"--config={micro_config_file}", f"--vocab_file={DEMO_VOCAB}",
                    f"--model_dir={model_dir}", "--do_train", "--do_eval", "--do_predict",
                    "--predict_splits=dev", "--max_train_examples=64", "--max_eval_examples=40",
                    "--batch_size=16", "--epochs=2", "--max_seq_length=32", "--log_every=2",
                    f"--export_dir={export_dir}")
    summary = summary_of(proc)
    assert summary["task"] == "sst-2" and summary["train"]["step"] == 8
    assert [r["step"] for r in eval_records(model_dir)] == [4, 8]
    best = json.load(open(model_dir / "best_result.json"))
    assert best["metric"] == "accuracy" and 0.0 <= best["value"] <= 1.0
    lines = open(model_dir / "predictions" / "dev_SST-2.tsv").read().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 41
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}
    assert (export_dir / "saved_model.pb").exists()
    assert "step 8/8" in proc.stderr  # the engine's progress lines


def test_cli_error_is_a_message_not_a_traceback(tmp_path, micro_config_file):
    proc = finetune("--task=sst3", f"--data_dir={tmp_path}", f"--config={micro_config_file}",
                    f"--vocab_file={DEMO_VOCAB}", f"--model_dir={tmp_path / 'run'}", "--do_train",
                    check=False)
    assert proc.returncode == 2 and "finetune.py: error: unknown task 'sst3'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_user_errors_are_clear_and_write_nothing(tmp_path, shared_data, micro_config_file):
    """Missing task files, a label outside the task's set, an init checkpoint of the wrong shape
    (the same checks run in-process, fast, in tests/tasks/test_runner.py)."""
    from funnel_tf.checkpoints import save_pretrained
    from funnel_tf.config import FunnelConfig
    from funnel_tf.modeling.heads import FunnelForMaskedLM

    model_dir = tmp_path / "run"
    common = [f"--config={micro_config_file}", f"--vocab_file={DEMO_VOCAB}",
              f"--model_dir={model_dir}", "--do_train", "--do_eval", "--train_steps=2"]
    proc = finetune("--task=mrpc", f"--data_dir={tmp_path}", *common, check=False)
    assert proc.returncode == 2 and "missing task files" in proc.stderr
    assert "train.tsv" in proc.stderr and "dev.tsv" in proc.stderr

    bad = tmp_path / "glue" / "SST-2"
    bad.mkdir(parents=True)
    (bad / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\tnegative\n")
    (bad / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    proc = finetune("--task=sst-2", f"--data_dir={tmp_path / 'glue'}", *common, check=False)
    assert proc.returncode == 2 and "SST-2/train.tsv:3" in proc.stderr
    assert "label 'negative' not in ['0', '1']" in proc.stderr

    config = FunnelConfig.from_json_file(str(micro_config_file))
    save_pretrained(FunnelForMaskedLM(config.replace(d_model=48)), str(tmp_path / "other"))
    (bad / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    proc = finetune("--task=sst-2", f"--data_dir={tmp_path / 'glue'}", *common,
                    f"--init_checkpoint={tmp_path / 'other'}", check=False)
    assert proc.returncode == 2 and "does not fit the sst-2 model" in proc.stderr
    assert "shape mismatch" in proc.stderr and "(48,) vs (32,)" in proc.stderr
    assert not model_dir.exists()


# ------------------------------------------------------------------------------ every task
def _split_json_articles(src, dst_train, dst_dev, n_dev):
    data = json.load(open(src))
    for path, articles in ((dst_train, data["data"][:-n_dev]), (dst_dev, data["data"][-n_dev:])):
        json.dump({"version": data.get("version", ""), "data": articles}, open(path, "w"))


def _task_args(task, shared, tmp):
    """(extra flags, expected prediction files, metric keys) per task, on the shared data."""
    glue = shared / "glue"
    dev_predict = ["--predict_splits=dev"]
    if task in ("cola", "sst-2", "mrpc", "sts-b", "qnli", "rte", "wnli"):
        name = {"sst-2": "SST-2", "sts-b": "STS-B"}.get(task, task.upper() if task != "cola"
                                                         else "CoLA")
        metric = {"cola": "mcc", "mrpc": "accuracy_f1_mean",
                  "sts-b": "pearson_spearman_mean"}.get(task, "accuracy")
        return [f"--data_dir={glue}"] + dev_predict, [f"dev_{name}.tsv"], [metric]
    if task == "qqp":
        return ([f"--data_dir={glue}", "--dev_file=QQP/dev_kshot.tsv"] + dev_predict,
                ["dev_QQP.tsv"], ["accuracy", "f1"])
    if task == "mnli":
        return ([f"--data_dir={glue}", "--predict_splits=dev_matched,dev_mismatched"],
                ["dev_matched_MNLI-m.tsv", "dev_mismatched_MNLI-mm.tsv"],
                ["matched_accuracy", "mismatched_accuracy"])
    if task == "imdb":
        imdb = shared / "textcls" / "imdb_fastbert_sample"
        return ([f"--data_dir={imdb}", "--train_file=train_sample.csv",
                 "--dev_file=val_sample.csv", "--test_file=val_sample.csv"],
                ["imdb_test_predictions.tsv"], ["accuracy", "error_rate"])
    if task == "ag_news":
        rows = open(shared / "textcls" / "ag_news_csv" / "test.csv").read().splitlines(True)
        folder = tmp / "ag"
        folder.mkdir()
        (folder / "train.csv").write_text("".join(rows[::2]))   # only test.csv is shared:
        (folder / "test.csv").write_text("".join(rows[1::2]))   # split it in two halves
        return [f"--data_dir={folder}"], ["ag_news_test_predictions.tsv"], ["accuracy"]
    if task.startswith("squad"):
        folder = tmp / "squad"
        folder.mkdir()
        if task == "squad_v1.1":
            _split_json_articles(shared / "squad/v1.1/train-v1.1.head.json",
                                 folder / "train-v1.1.json", folder / "dev-v1.1.json", 2)
            return ([f"--data_dir={folder}", "--doc_stride=32", "--max_query_length=24"],
                    ["predictions.json"], ["exact_match", "f1"])
        _split_json_articles(shared / "squad/v2.0/dev-v2.0.first5articles.json",
                             folder / "train-v2.0.json", folder / "dev-v2.0.json", 1)
        return ([f"--data_dir={folder}", "--doc_stride=32", "--max_query_length=24"],
                ["predictions.json", "null_odds.json", "predictions_thresholded.json"],
                ["best_f1", "HasAns_f1", "NoAns_f1"])
    if task == "race":
        return ([f"--data_dir={shared / 'race'}", "--max_qa_length=32"],
                ["race_test_answers.json"], ["accuracy", "accuracy_middle", "accuracy_high"])
    raise AssertionError(task)


ALL_TASKS = ["cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli", "imdb",
             "ag_news", "squad_v1.1", "squad_v2.0", "race"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_end_to_end_on_shared_data(task, tmp_path, shared_data, bert_vocab):
    extra, files, metrics = _task_args(task, shared_data, tmp_path)
    long_input = task.startswith("squad") or task in ("race", "imdb")
    model_dir = tmp_path / "run"
    proc = finetune(f"--task={task}", "--config=tiny", f"--vocab_file={bert_vocab}",
                    f"--model_dir={model_dir}", "--do_train", "--do_eval", "--do_predict",
                    "--max_train_examples=64", "--max_eval_examples=48", "--batch_size=8",
                    "--train_steps=8", "--eval_every=4", "--log_every=4",
                    f"--max_seq_length={128 if long_input else 64}", *extra)
    summary = summary_of(proc)
    records = eval_records(model_dir)
    assert [r["step"] for r in records] == [4, 8]
    for key in metrics:
        assert all(key in r for r in records), (key, records[-1])
    assert (model_dir / "best" / "model.weights.h5").exists()
    written = [os.path.basename(p) for paths in summary["predictions"].values() for p in paths]
    assert sorted(written) == sorted(files)
    for name in files:
        assert os.path.getsize(model_dir / "predictions" / name) > 10
    if task == "mnli":
        # AX (GLUE diagnostic) is predicted by the MNLI model: predict-only from its model_dir.
        ax_dir = tmp_path / "ax"
        proc = finetune("--task=ax", f"--data_dir={shared_data / 'glue'}",
                        f"--init_checkpoint={model_dir}", f"--model_dir={ax_dir}",
                        "--do_predict", "--max_seq_length=64", "--batch_size=8")
        lines = open(ax_dir / "predictions" / "AX.tsv").read().splitlines()
        assert len(lines) == 1105 and lines[1].split("\t")[1] in (
            "contradiction", "entailment", "neutral")


# ------------------------------------------------------------------------------ the experiment
SST2_FLAGS = ["--task=sst-2", "--do_train", "--do_eval", "--max_train_examples=20000",
              "--batch_size=32", "--epochs=2", "--max_seq_length=64", "--learning_rate=5e-4",
              "--seed=0", "--log_every=100", "--steps_per_loop=100"]


@pytest.mark.slow
def test_pretrained_tiny_beats_random_init_on_sst2_dev(tmp_path, shared_data, bert_vocab):
    """A tiny funnel MLM-pretrained with pretrain.py on the shared corpus (WikiText-2 test +
    Gutenberg, BERT uncased vocab, seq 128, batch 32, 3000 steps) vs. the same tiny funnel from
    random initialisation, finetuned identically on 20k SST-2 train sentences for 2 epochs; the
    best dev accuracy (872 sentences) is compared.

    Measured (CPU, 2 cores; ~40 min pretraining + ~3 min per finetune), best dev accuracy:
      seed 0: random 0.7959, pretrained 0.8062;  seed 1: 0.7924 vs 0.8096;
      seed 2: 0.7878 vs 0.8039  (mean +1.45 points). After only 1500 pretraining steps the gain
    is not reliable (seed 0: 0.7959 vs 0.7959), hence 3000.
    Set FUNNEL_SST2_PRETRAINED=<pretrain model_dir> to reuse an earlier pretraining run.
    """
    pretrained = os.environ.get("FUNNEL_SST2_PRETRAINED")
    if not pretrained:
        corpus = shared_data / "corpus"
        files = [corpus / "wikitext-2-raw" / "wiki.test.raw"] + [
            p for p in sorted((corpus / "gutenberg").glob("*.txt"))
            if p.name not in ("chesterton-ball.txt", "shakespeare-caesar.txt")]  # not UTF-8
        pretrained = tmp_path / "pretrain"
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO, "pretrain.py"),
             "--train_data=" + ",".join(map(str, files)), f"--vocab={bert_vocab}",
             f"--model_dir={pretrained}", "--config=tiny", "--objective=mlm", "--seq_len=128",
             "--batch_size=32", "--train_steps=3000", "--learning_rate=1e-3",
             "--warmup_steps=300", "--steps_per_loop=100", "--log_every=100",
             "--save_every=1000"], cwd=REPO, env=ENV, capture_output=True, text=True,
            timeout=3 * 3600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    glue = f"--data_dir={shared_data / 'glue'}"
    results = {}
    for name, init in (("random", ["--config=tiny"]), ("pretrained",
                                                       [f"--init_checkpoint={pretrained}"])):
        model_dir = tmp_path / name
        finetune(*SST2_FLAGS, glue, f"--vocab_file={bert_vocab}", f"--model_dir={model_dir}",
                 *init, timeout=3600)
        results[name] = json.load(open(model_dir / "best_result.json"))["value"]
    print(f"SST-2 dev accuracy: {results}")
    assert results["pretrained"] > results["random"], results
