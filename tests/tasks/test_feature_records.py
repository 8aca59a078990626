"""Finetuning from pre-tokenized feature records (text/feature_records.py), for GLUE, text
classification, SQuAD and RACE, through the runner's own input functions:

- the dataset function handed to `distribute_datasets_from_function` and the evaluation input
  handed to `experimental_distribute_dataset` build graphs whose every op is registered in a
  process that never imported tensorflow_text (a TPU pod host's TF server), checked in a fresh
  subprocess; the same check fails for the tokenize-in-tf.data path (the test discriminates);
- records give exactly the tokenizing path's features in the same order, across epochs;
- a whole run trains and evaluates identically with and without records.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import get_task
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.finetuning.run import run_finetuning
from funnel_tf.finetuning.predictor import Predictor
from funnel_tf.finetuning.runner import FinetuneRunner, RunConfig
from tests.tasks.helpers import DEMO_VOCAB, csv_args, write_csv_task

WORDS = "the river old stone bridge near village warm cold boat harbor lamp".split()
FAMILIES = ("glue", "text_cls", "squad", "race")


def _sentence(rng, lo=3, hi=9):
    return " ".join(rng.choice(WORDS, size=rng.integers(lo, hi)))


def _write_glue(root, rng):
    os.makedirs(os.path.join(root, "SST-2"))
    for split, n in (("train", 20), ("dev", 6)):
        rows = [f"{_sentence(rng)}\t{int(rng.integers(2))}\n" for _ in range(n)]
        with open(os.path.join(root, "SST-2", f"{split}.tsv"), "w") as f:
            f.write("sentence\tlabel\n" + "".join(rows))
    return "sst-2"


def _write_text_cls(root, rng):
    os.makedirs(root)
    for name, n in (("train.csv", 20), ("test.csv", 6)):
        with open(os.path.join(root, name), "w") as f:
            f.writelines(f'"{rng.integers(1, 5)}","{_sentence(rng, 2, 4)}","{_sentence(rng)}"\n'
                         for _ in range(n))
    return "ag_news"


def _write_squad(root, rng):
    os.makedirs(root)
    for split, n in (("train", 10), ("dev", 4)):
        paragraphs = []
        for i in range(n):
            context = " ".join(_sentence(rng, 8, 20) for _ in range(2))
            start = context.index(" ") + 1
            answer = context[start:].split(" ")[0]
            paragraphs.append({"context": context, "qas": [{
                "id": f"{split}{i}", "question": _sentence(rng),
                "answers": [{"text": answer, "answer_start": start}]}]})
        with open(os.path.join(root, f"{split}-v1.1.json"), "w") as f:
            json.dump({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}, f)
    return "squad_v1.1"


def _write_race(root, rng):
    for split, n in (("train", 4), ("dev", 2)):
        for level in ("middle", "high"):
            folder = os.path.join(root, split, level)
            os.makedirs(folder)
            for i in range(n):
                qs = [_sentence(rng) + (" _ ." if j % 2 else " ?") for j in range(3)]
                with open(os.path.join(folder, f"{i}.txt"), "w") as f:
                    json.dump({"id": f"{i}.txt", "article": _sentence(rng, 20, 40),
                               "questions": qs,
                               "options": [[_sentence(rng, 1, 3) for _ in range(4)] for _ in qs],
                               "answers": ["ABCD"[int(rng.integers(4))] for _ in qs]}, f)
    return "race"


WRITERS = {"glue": _write_glue, "text_cls": _write_text_cls, "squad": _write_squad,
           "race": _write_race}
HPARAMS = Hparams(max_seq_length=24, batch_size=4, epochs=1.0, doc_stride=6, max_query_length=6,
                  max_qa_length=8)


def _runner(family, folder, micro_config, demo_tokenizer, mode):
    data_dir = os.path.join(folder, "data")
    task_name = WRITERS[family](data_dir, np.random.default_rng(7)) if not os.path.isdir(
        data_dir) else {"glue": "sst-2", "text_cls": "ag_news", "squad": "squad_v1.1",
                        "race": "race"}[family]
    run = RunConfig(model_dir=os.path.join(folder, f"run_{mode}"), seed=5, feature_records=mode)
    runner = FinetuneRunner(get_task(task_name), HPARAMS, micro_config, demo_tokenizer,
                            tf.distribute.get_strategy(), run)
    runner.load(data_dir, do_train=True, do_eval=True, do_predict=False)
    return runner


def _op_types(ds: tf.data.Dataset) -> list:
    """Every op type in the dataset's serialized graph and its function library."""
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph(
        external_state_policy=tf.data.experimental.ExternalStatePolicy.IGNORE).numpy())
    ops = {n.op for n in graph.node}
    for fn in graph.library.function:
        ops.update(n.op for n in fn.node_def)
    return sorted(ops)


def _unregistered_without_tf_text(op_sets: dict) -> dict:
    """{name: [op types not registered]} in a fresh process that imports only tensorflow."""
    code = ("import json, sys\nimport tensorflow\n"
            "from tensorflow.python.framework import op_def_registry\n"
            "assert 'tensorflow_text' not in sys.modules\n"
            "sets = json.load(sys.stdin)\n"
            "print(json.dumps({k: [op for op in v if op_def_registry.get(op) is None]"
            " for k, v in sets.items()}))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(op_sets), env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _first(ds, n):
    return [{k: v for k, v in x.items()} for x in ds.take(n).as_numpy_iterator()]


def _assert_same_stream(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert sorted(x) == sorted(y), i
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"element {i} key {k}")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, micro_config, demo_tokenizer):
    """Per family and mode ("always": records, "never": tokenize in tf.data): the runner's train
    dataset_fn and eval input (the Predictor's batches of the split's rows: the tests compare
    their streams and their graphs, one tokenizing trace each), their op types, and one
    subprocess's verdict on all of them."""
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                     num_replicas_in_sync=2)
    op_sets, inputs, runners = {}, {}, {}
    for family in FAMILIES:
        runner = _runner(family, str(tmp_path_factory.mktemp(family)), micro_config,
                         demo_tokenizer, "always")
        runners[family] = runner
        for mode in ("always", "never"):  # the same runner, its input rebuilt for each mode
            runner.run.feature_records = mode
            if mode == "never":  # load() built the "always" eval data: rebuild it only once
                runner._eval_data.clear()
            trainer = runner.prepare_training(do_eval=False)
            split = runner.task.eval_splits[0]
            train = trainer.dataset_fn(ctx)
            evaluation = Predictor.input_dataset(runner.task, runner._data(split),
                                                 runner.hp.global_eval_batch_size)
            inputs[family, mode] = (train, evaluation)
            op_sets[f"{family}/{mode}/train"] = _op_types(train)
            op_sets[f"{family}/{mode}/eval"] = _op_types(evaluation)
    return runners, inputs, op_sets, _unregistered_without_tf_text(op_sets)


@pytest.mark.parametrize("family", FAMILIES)
def test_record_input_graphs_need_no_tensorflow_text(graphs, family):
    _, _, op_sets, missing = graphs
    for purpose in ("train", "eval"):
        name = f"{family}/always/{purpose}"
        assert missing[name] == [], (name, missing[name])
    train_ops = op_sets[f"{family}/always/train"]
    assert "TFRecordDataset" in train_ops and "ShardDataset" in train_ops
    assert any(op.startswith("ParseExample") or op == "ParseSingleExample" for op in train_ops)
    # The tokenizing path's training input does hold tensorflow-text ops: the check bites.
    assert any("Wordpiece" in op for op in missing[f"{family}/never/train"]), \
        missing[f"{family}/never/train"]
    if family != "squad":  # SQuAD evaluates from numpy features in both modes
        assert missing[f"{family}/never/eval"], op_sets[f"{family}/never/eval"]


@pytest.mark.parametrize("family", FAMILIES)
def test_records_give_the_same_features_in_the_same_order(graphs, family):
    runners, inputs, _, _ = graphs
    runner = runners[family]
    # Over two epochs (the second one's reshuffle included), on one of two hosts.
    n = runner.train_rows + 3
    (train_a, eval_a), (train_b, eval_b) = inputs[family, "always"], inputs[family, "never"]
    _assert_same_stream(_first(train_a.unbatch(), n), _first(train_b.unbatch(), n))
    _assert_same_stream(_first(eval_a, 1000), _first(eval_b, 1000))
    records_dir = os.path.join(runner.run.model_dir, "feature_records")
    assert any(name.startswith(f"{runner.task.name}-train-") for name in os.listdir(records_dir))


def _untimed(record: dict) -> dict:
    """A progress / evaluation record without its wall-clock figures."""
    return {k: v for k, v in record.items() if "sec" not in k and "time" not in k}


@pytest.mark.slow
def test_a_run_trains_and_evaluates_identically_with_records(micro_config, tmp_path):
    config_path = str(tmp_path / "config.json")
    with open(config_path, "w") as f:
        f.write(micro_config.to_json_string())
    files = write_csv_task(str(tmp_path / "data"), n_train=48, n_dev=12)
    results = {}
    for mode in ("never", "always"):
        args = csv_args(str(tmp_path / mode), files, config_path,
                        hparams=dict(epochs=2.0), run=dict(feature_records=mode, seed=3))
        results[mode] = run_finetuning(args)
    never, always = results["never"], results["always"]
    assert always["train"]["step"] == never["train"]["step"] == 6
    assert _untimed(always["train"]["final"]) == _untimed(never["train"]["final"])
    assert "loss" in _untimed(always["train"]["final"])
    evaluations = [_untimed(e) for e in always["evaluations"]]
    assert evaluations == [_untimed(e) for e in never["evaluations"]] and len(evaluations) == 2
    assert os.listdir(tmp_path / "always" / "feature_records")
    assert not os.path.exists(tmp_path / "never" / "feature_records")


def test_auto_mode_and_bad_mode(micro_config, demo_tokenizer, tmp_path):
    from funnel_tf.errors import UserError

    runner = _runner("glue", str(tmp_path), micro_config, demo_tokenizer, "auto")
    assert runner.run.feature_records == "auto"
    assert runner._feature_records("train", "train") is None  # default strategy: tokenize
    with pytest.raises(UserError, match="feature_records"):
        RunConfig(model_dir=str(tmp_path), feature_records="sometimes").validate()


def test_feature_records_flags(finetune_main, micro_config, tmp_path, capsys):
    """--feature_records / --feature_records_dir reach the run config; a bad mode is one line
    and exit 2 before anything is written."""
    import finetune

    config_path = tmp_path / "micro.json"
    micro_config.save(str(config_path))
    files = write_csv_task(str(tmp_path / "data"))
    argv = ["--task=csv", f"--train_file={files['train']}", "--text_a_column=text",
            "--label_column=label", f"--config={config_path}", f"--vocab_file={DEMO_VOCAB}",
            f"--model_dir={tmp_path / 'run'}", "--do_train", "--batch_size=16",
            "--max_seq_length=16"]
    assert finetune_main(*argv, "--feature_records=sometimes") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("finetune.py: error: --feature_records must be one of") and \
        "\n" not in err, err
    assert not (tmp_path / "run").exists()
    finetune.FLAGS.unparse_flags()
    finetune.FLAGS(["finetune.py", *argv, "--feature_records=always",
                    f"--feature_records_dir={tmp_path / 'cache'}"])
    run = finetune.args_from_flags().run
    assert run["feature_records"] == "always" and run["feature_records_dir"] == str(
        tmp_path / "cache")


def test_datasets_of_one_tokenizer_share_one_encoder_trace(demo_tokenizer):
    """The tokenizing path (what "never" reads) traces its tokenize-and-pack functions once per
    tokenizer, lengths and input signature: a run's train, eval and predict datasets share them
    (tracing them was most of the cost of building each); the features are unchanged. The
    lengths are HPARAMS': the graphs fixture's datasets may have traced them already."""
    from funnel_tf.text import classification as text_cls
    from funnel_tf.text.packing import _TRACED
    from funnel_tf.text.race import RaceExamples, build_qa, encode_race_examples
    from funnel_tf.text.squad import squad_question_features
    from funnel_tf.text.squad_json import SquadExample

    def traces():
        return {key: fn.experimental_get_tracing_count()
                for key, fn in _TRACED.get(demo_tokenizer, {}).items()}

    hp, tok = HPARAMS, demo_tokenizer
    examples = text_cls.TextExamples(["the warm river", "old stone bridge near the harbor"], None,
                                     np.array([0, 1], np.int32), ["x", "y"], ("0", "1"))
    squad = [SquadExample("q0", "what crosses the river?", "the old stone bridge crosses the "
                          "river near the village", [])]
    race = RaceExamples(["the boat left the harbor at dawn"], [[build_qa("the boat left _ .", o)
                        for o in ("at dawn", "at noon", "never", "today")]],
                        np.zeros(1, np.int32), ["high"], ["r0"])
    builds = {
        ("text", hp.max_seq_length, "longest_first"): lambda **kw: text_cls.encode_text_examples(
            examples, tok, hp.max_seq_length, **kw),
        ("squad_windows", hp.max_seq_length, hp.doc_stride): lambda **kw: squad_question_features(
            squad, tok, seq_len=hp.max_seq_length, doc_stride=hp.doc_stride,
            max_query_length=hp.max_query_length, **kw),
        ("race", hp.max_seq_length, hp.max_qa_length): lambda **kw: encode_race_examples(
            race, tok, hp.max_seq_length, max_qa_length=hp.max_qa_length, **kw)}
    text_key = ("text", hp.max_seq_length, "longest_first")
    first = _first(builds[text_key](), 10)
    for key, build in builds.items():
        build()  # a dataset traces its map functions when it is built
    before = traces()
    assert set(builds) | {("squad_tokens", hp.max_query_length)} <= set(before)
    again = {key: build(shuffle=True, seed=3) for key, build in builds.items()}
    assert traces() == before  # nothing traced again
    # The shared function gives the same features (the second dataset is shuffled).
    _assert_same_stream(first, sorted(_first(again[text_key], 10),
                                      key=lambda x: int(x["example_index"])))
    ids = [tok.cls_id, *tok.tokenize(["the warm river"])[0].numpy(), tok.sep_id]
    np.testing.assert_array_equal(first[0]["input_ids"], ids + [0] * (hp.max_seq_length - len(ids)))
