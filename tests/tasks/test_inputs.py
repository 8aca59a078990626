"""`Task.build_inputs(spec, input_context)`: every task builds its own input from a typed spec, and
gives exactly the batches the runs read before the input moved into the task (pretraining: the
records reader with the run's masker; finetuning: the task's rows, sharded, batched per replica)."""

import dataclasses
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.engine.inputs import task_dataset_fn
from funnel_tf.tasks import get_task
from funnel_tf.tasks.base import Task
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.tasks.electra import ElectraTask
from funnel_tf.tasks.inputs import FinetuningInputSpec, PretrainingInputSpec
from funnel_tf.tasks.mlm import MaskedLMTask
from funnel_tf.text.classification import TextExamples

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO_VOCAB = str(REPO / "data" / "demo_vocab.txt")
DEMO_CORPUS = str(REPO / "data" / "demo_corpus.txt")
WORDS = "the river old stone bridge near village warm cold boat harbor lamp".split()
TWO_PIPES = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                       num_replicas_in_sync=4)


def _batches(ds, n):
    return [{k: np.asarray(v) for k, v in b.items()} for b in ds.take(n).as_numpy_iterator()]


def _assert_same(got, want):
    assert len(got) == len(want) > 0
    for i, (a, b) in enumerate(zip(got, want)):
        assert sorted(a) == sorted(b), i
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"batch {i} key {k}")


def test_every_task_implements_build_inputs():
    """The one input method is abstract on Task: each family has its own."""
    assert "build_inputs" in Task.__abstractmethods__
    for task in (MaskedLMTask(), ElectraTask(), get_task("sst-2"), get_task("ag_news"),
                 get_task("squad_v1.1"), get_task("race")):
        assert type(task).build_inputs is not Task.build_inputs
    with pytest.raises(TypeError, match="reads a FinetuningInputSpec"):
        get_task("sst-2").build_inputs(PretrainingInputSpec((), 8, 2, masker=None))
    with pytest.raises(TypeError, match="reads a PretrainingInputSpec"):
        MaskedLMTask().build_inputs(FinetuningInputSpec(training=False, prepared=object()))


@pytest.fixture(scope="module")
def pretraining_input(tmp_path_factory):
    from funnel_tf.config import load_config
    from funnel_tf.pretraining import inputs
    from funnel_tf.text import pretraining

    records = tmp_path_factory.mktemp("records")
    pretraining.create_pretraining_data([DEMO_CORPUS], str(records), DEMO_VOCAB, seq_len=32,
                                        num_shards=3, seed=3, max_examples=48, progress=None)
    cfg = load_config("tiny").replace(vocab_size=919)
    return inputs.build_pretraining_input([str(records / "*.tfrecord")], 32, 8, cfg, seed=5)


def test_pretraining_build_inputs_is_what_the_run_read(pretraining_input):
    """What `PretrainingInput.dataset_fn` gave the loop before: the records reader over the
    planned files with the run's masker, seed and batch, per pipeline, from a start batch on;
    the run now reads it as `task_dataset_fn(task, data.spec)`, for MLM and ELECTRA alike."""
    from funnel_tf.text import pretraining_reader

    spec = pretraining_input.spec
    assert isinstance(spec, PretrainingInputSpec) and spec.files == tuple(pretraining_input.files)
    want = _batches(pretraining_reader.make_pretraining_dataset(
        pretraining_input.files, 32, 8, input_context=TWO_PIPES, seed=5, masker=spec.masker,
        deterministic=True), 4)
    dataset_fn = task_dataset_fn(MaskedLMTask(), spec)
    _assert_same(_batches(dataset_fn(TWO_PIPES), 4), want)
    _assert_same(_batches(dataset_fn(TWO_PIPES, start_batch=3), 1), want[3:])  # a resume
    later = dataclasses.replace(spec, start_batch=2)
    _assert_same(_batches(ElectraTask().build_inputs(later, TWO_PIPES), 2), want[2:])


def _examples(n, seed=0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(n)]
    labels = np.array([int("warm" in t) for t in texts], np.int32)
    return TextExamples(texts, None, labels, [f"id{i}" for i in range(n)], ("0", "1"))


def test_finetuning_build_inputs_is_what_the_runner_read(micro_config, demo_tokenizer, tmp_path):
    """The finetuning runner's old dataset_fn (train_dataset, sharded by pipeline, batched per
    replica) and the Predictor's old rows (EvalData's dataset) are what the task builds now, and
    what the runner's trainer reads."""
    from funnel_tf.finetuning.runner import FinetuneRunner, RunConfig

    task = get_task("sst-2")
    hp = Hparams(max_seq_length=16, batch_size=4, eval_batch_size=8)
    examples = _examples(20)

    def before(ctx):
        ds = task.train_dataset(examples, demo_tokenizer, hp, 7)
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        return ds.batch(ctx.get_per_replica_batch_size(hp.batch_size), drop_remainder=True)

    spec = FinetuningInputSpec(examples, demo_tokenizer, hp, seed=7)
    want = _batches(before(TWO_PIPES), 3)
    _assert_same(_batches(task.build_inputs(spec, TWO_PIPES), 3), want)
    assert want[0]["input_ids"].shape == (1, 16)  # 4 global / 4 replicas

    data = task.eval_data(examples, demo_tokenizer, hp, hp.global_eval_batch_size)
    rows = task.build_inputs(FinetuningInputSpec(training=False, prepared=data))
    eval_rows = _batches(data.dataset, 30)  # each read builds an iterator (~0.5 s): read once
    got = _batches(rows, 30)
    _assert_same(got, eval_rows)
    assert len(got) == 24  # padded to a multiple of the eval batch
    made = task.build_inputs(FinetuningInputSpec(examples, demo_tokenizer, hp, training=False))
    _assert_same(_batches(made, 30), eval_rows)
    with pytest.raises(ValueError, match="no input_context"):
        task.build_inputs(FinetuningInputSpec(training=False, prepared=data), TWO_PIPES)

    runner = FinetuneRunner(task, hp, micro_config, demo_tokenizer, tf.distribute.get_strategy(),
                            RunConfig(model_dir=str(tmp_path), seed=7, feature_records="never"))
    runner.examples[task.train_split] = examples
    runner.train_rows = len(examples)
    trainer = runner.prepare_training(do_eval=False)
    _assert_same(_batches(trainer.dataset_fn(TWO_PIPES), 3), want)
