"""Model initialisation from every checkpoint kind, and the config taken from the checkpoint."""

import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import TaskError, get_task
from funnel_tf.finetuning.initialization import initialize_model, resolve_config


def test_initialize_from_native_and_wrong_shapes(micro_config, tmp_path):
    from funnel_tf.checkpoints import save_pretrained
    from funnel_tf.modeling.heads import FunnelForMaskedLM

    source = FunnelForMaskedLM(micro_config)
    save_pretrained(source, str(tmp_path / "mlm"))
    task = get_task("cola")
    model = task.build_model(micro_config)
    desc = initialize_model(model, task, str(tmp_path / "mlm"))
    assert "native" in desc
    np.testing.assert_array_equal(model.funnel.embeddings.word_embeddings.numpy(),
                                  source.funnel.embeddings.word_embeddings.numpy())
    wrong = task.build_model(micro_config.replace(d_inner=48))
    before = [w.copy() for w in wrong.get_weights()]
    with pytest.raises(TaskError, match=r"(?s)does not fit.*shape mismatch"):
        initialize_model(wrong, task, str(tmp_path / "mlm"))
    for a, b in zip(before, wrong.get_weights()):  # nothing half-loaded
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TaskError, match="not a checkpoint"):
        initialize_model(model, task, str(tmp_path))


def test_initialize_from_a_training_checkpoint(micro_config, tmp_path):
    """A pretrain.py-style checkpoint (model + optimizer) warm-starts the backbone by path."""
    from funnel_tf.engine.checkpointing import TrainingCheckpoint
    from funnel_tf.tasks.mlm import MaskedLMTask
    from funnel_tf.engine.optimization import make_optimizer

    objective = MaskedLMTask(micro_config)
    objective.build()
    optimizer = make_optimizer(objective.trainable_variables, 1e-3)
    step = tf.Variable(7, dtype=tf.int64)
    TrainingCheckpoint(str(tmp_path), {"model": objective.model, "optimizer": optimizer},
                       step).save()
    task = get_task("race")
    model = task.build_model(micro_config)
    assert "training checkpoint" in initialize_model(model, task, str(tmp_path))
    for a, b in zip(model.funnel.encoder.weights, objective.model.funnel.encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_initialize_from_huggingface_and_original_release(shared_data):
    """HF directories and the original TF1 release are converted on the fly; the config comes
    from the checkpoint when --config is not given."""
    from funnel_tf import checkpoints

    hf_dir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "hf",
                          "head_seq_cls_L8")
    config = resolve_config(None, checkpoints.resolve(hf_dir))
    assert config.d_model == 32 and config.block_sizes == [1, 1, 1]
    task = get_task("mnli")  # 3 labels, like the fixture's head: the head is loaded too
    model = task.build_model(config)
    assert "hf checkpoint" in initialize_model(model, task, hf_dir)
    reference = checkpoints.load_model(hf_dir)
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    original = str(shared_data / "original_tf1" / "B2-1-1_D2_sepcls_mean_electra")
    config = resolve_config(None, checkpoints.resolve(original))
    squad = get_task("squad_v1.1")  # the full model: encoder and decoder come from the release
    model = squad.build_model(config)
    assert "original checkpoint" in initialize_model(model, squad, original)
    reference = checkpoints.load_model(original, model_class="full")
    for a, b in zip(model.funnel.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_vocab_of_an_older_pretraining_run_is_found_through_pretrain_args(tmp_path):
    """Issue 20: a pretraining model_dir held no vocab.txt, so `finetune.py --init_checkpoint=
    <that run>` said "no vocabulary" although its pretrain_args.json names it."""
    import json
    import shutil

    from funnel_tf.finetuning.initialization import find_vocab
    from tests.tasks.helpers import DEMO_VOCAB

    vocab = str(tmp_path / "my_vocab.txt")
    shutil.copy(DEMO_VOCAB, vocab)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-2.index").write_bytes(b"")
    args = {"train_data": [str(tmp_path / "corpus.txt")], "vocab": vocab, "seq_len": 32}
    (run / "pretrain_args.json").write_text(json.dumps(args))
    assert find_vocab(str(run)) == vocab
    assert find_vocab(str(run / "checkpoints" / "ckpt-2")) == vocab
    (run / "pretrain_args.json").write_text(json.dumps(dict(args, train_data=None, vocab=None)))
    assert os.path.samefile(find_vocab(str(run)), DEMO_VOCAB)  # the demo's vocab
    os.remove(vocab)
    (run / "pretrain_args.json").write_text(json.dumps(args))
    with pytest.raises(TaskError, match="names the vocab .*my_vocab.txt, which is not found"):
        find_vocab(str(run))
    shutil.copy(DEMO_VOCAB, run / "vocab.txt")  # a newer run's own copy wins
    assert find_vocab(str(run)) == str(run / "vocab.txt")


def test_the_vocab_of_a_pretraining_run_comes_from_its_records_manifest(tmp_path):
    """A run given records and no --vocab used the vocab_path of the manifest.json beside them:
    the checkpoint door (checkpoints/pretraining_run.py) reads it without the pretraining
    package, and a manifest spread over several folders or absent names none."""
    import json
    import shutil

    from funnel_tf.checkpoints import pretraining_run
    from funnel_tf.finetuning.initialization import find_vocab
    from funnel_tf.text import pretraining as text_pretraining
    from tests.tasks.helpers import DEMO_VOCAB

    assert pretraining_run.RECORDS_MANIFEST == text_pretraining.MANIFEST_NAME
    vocab = str(tmp_path / "records_vocab.txt")
    shutil.copy(DEMO_VOCAB, vocab)
    records = tmp_path / "records"
    records.mkdir()
    (records / "part-0.tfrecord").write_bytes(b"")
    (records / text_pretraining.MANIFEST_NAME).write_text(json.dumps({"vocab_path": vocab}))
    run = tmp_path / "run"
    run.mkdir()
    args = {"train_data": [str(records / "*.tfrecord")], "vocab": None}
    (run / "pretrain_args.json").write_text(json.dumps(args))
    assert find_vocab(str(run)) == vocab
    (run / "pretrain_args.json").write_text(json.dumps(dict(args, train_data=[str(records / "*")])))
    assert find_vocab(str(run)) == vocab  # a glob that also matches the manifest
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "part-1.tfrecord").write_bytes(b"")
    (run / "pretrain_args.json").write_text(json.dumps(dict(
        args, train_data=f"{records}/*.tfrecord,{tmp_path}/other/*.tfrecord")))
    assert find_vocab(str(run)) is None  # records in two folders: no one manifest
    os.remove(vocab)
    (run / "pretrain_args.json").write_text(json.dumps(args))
    with pytest.raises(TaskError, match="names the vocab .*records_vocab.txt, which is not found"):
        find_vocab(str(run))


def test_the_run_resolves_once_and_hands_the_answer_down(tiny_config, tmp_path, monkeypatch):
    """finetuning's resolve_init is the one resolve of --init_checkpoint: its Resolved gives the
    config and vocab and loads into the model without the path being resolved again; a bad path
    is one TaskError naming the flag."""
    from funnel_tf.checkpoints import init_checkpoint, resolver, save_pretrained
    from funnel_tf.finetuning.initialization import find_vocab, resolve_init
    from funnel_tf.modeling.heads import FunnelForMaskedLM

    config = tiny_config.replace(vocab_size=60, block_sizes=[1, 1], block_repeats=[1, 1], d_model=16,
                                 n_head=2, d_head=8, d_inner=32)
    source = FunnelForMaskedLM(config)
    save_pretrained(source, str(tmp_path / "mlm"))
    (tmp_path / "mlm" / "vocab.txt").write_text("[PAD]\n")
    init = resolve_init(str(tmp_path / "mlm"))
    assert resolve_config(None, init) == config and find_vocab(init) == str(tmp_path / "mlm" / "vocab.txt")

    def no_second_resolve(path):
        raise AssertionError(f"{path} resolved again")

    monkeypatch.setattr(resolver, "resolve", no_second_resolve)
    monkeypatch.setattr(init_checkpoint, "resolve", no_second_resolve)
    task = get_task("cola")
    model = task.build_model(config)
    assert initialize_model(model, task, init).startswith("native checkpoint")
    np.testing.assert_array_equal(model.funnel.embeddings.word_embeddings.numpy(),
                                  source.funnel.embeddings.word_embeddings.numpy())
    monkeypatch.undo()
    with pytest.raises(TaskError, match=r"^--init_checkpoint .*nope: not found"):
        resolve_init(str(tmp_path / "nope"))
    assert resolve_init(None) is None
