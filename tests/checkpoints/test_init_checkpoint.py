"""One loading route for --init_checkpoint: pretraining and finetuning load every checkpoint kind
the same way and end with the same backbone."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.checkpoints import save_pretrained
from funnel_tf.checkpoints.hf import read_hf_config
from funnel_tf.checkpoints.native import named_variables
from funnel_tf.config import load_config
from funnel_tf.modeling.heads import FunnelForMaskedLM
from funnel_tf.tasks import get_task
from funnel_tf.finetuning.initialization import initialize_model
from funnel_tf.tasks.pretraining import pretraining_task
from funnel_tf.engine import checkpointing
from funnel_tf.checkpoints.init_checkpoint import load_init_checkpoint
from funnel_tf.checkpoints.resolver import BEST_DIR, resolve
from funnel_tf.engine.optimization import make_optimizer

HF_MLM = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hf" / "head_masked_lm_L8"
CONFIG = load_config("tiny").replace(vocab_size=120, block_sizes=[1, 1], block_repeats=[1, 1],
                                     num_decoder_layers=1, d_model=16, n_head=2, d_head=8, d_inner=24,
                                     hidden_dropout=0.0, attention_dropout=0.0)


def _values(model, prefix=""):
    return {n: v.numpy() for n, v in named_variables(model) if n.startswith(prefix)}


def _both_routes(path, config):
    """The pretraining objective's model and a finetuning (CoLA) model, each fresh, loaded from path."""
    objective = pretraining_task("mlm", config)
    objective.build()
    pre = load_init_checkpoint(objective.backbone, path, objective.models)
    task = get_task("cola")
    finetune_model = task.build_model(config)
    fine = initialize_model(finetune_model, task, path)
    return objective.model, pre, finetune_model, fine


def _assert_same_encoder(a, b):
    left, right = _values(a, "encoder/"), _values(b, "encoder/")
    assert left and left.keys() == right.keys()
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


def _source(tmp_path):
    tf.keras.utils.set_random_seed(3)
    source = FunnelForMaskedLM(CONFIG)
    source(tf.ones([1, 8], tf.int32))
    return source


def test_native_folder_and_finetune_model_dir(tmp_path):
    source = _source(tmp_path)
    save_pretrained(source, str(tmp_path / "run" / BEST_DIR))
    for path in (tmp_path / "run" / BEST_DIR, tmp_path / "run"):  # a finetuning model_dir: its best/
        mlm, pre, fine_model, fine = _both_routes(str(path), CONFIG)
        assert pre.startswith("native checkpoint") and fine.startswith("native checkpoint"), (pre, fine)
        _assert_same_encoder(mlm, source)
        _assert_same_encoder(fine_model, source)
        for name, value in _values(source).items():  # the MLM head too, where the run has one
            np.testing.assert_array_equal(_values(mlm)[name], value, err_msg=name)


@pytest.mark.tf_only(reason="writes a TF training checkpoint (the TF engine's optimizer and tf.train)")
def test_training_checkpoint_and_weights_file(tmp_path):
    objective = pretraining_task("mlm", CONFIG)
    objective.build()
    step = tf.Variable(5, dtype=tf.int64)
    optimizer = make_optimizer(objective.trainable_variables, 1e-3)
    checkpointing.TrainingCheckpoint(str(tmp_path / "pre"), {"model": objective.model,
                                                             "optimizer": optimizer}, step).save()
    objective.backbone.save_weights(str(tmp_path / "backbone.weights.h5"))
    for path, kind in ((tmp_path / "pre", "training_checkpoint"),
                       (tmp_path / "backbone.weights.h5", "keras_weights")):
        assert resolve(str(path)).kind == kind
        mlm, pre, fine_model, fine = _both_routes(str(path), CONFIG)
        _assert_same_encoder(mlm, objective.model)
        _assert_same_encoder(fine_model, objective.model)


def test_huggingface_folder_in_pretraining_and_finetuning():
    if not HF_MLM.is_dir():
        pytest.skip(f"HF fixture {HF_MLM} not found")
    config = read_hf_config(str(HF_MLM))[1].replace(hidden_dropout=0.0, attention_dropout=0.0,
                                                    activation_dropout=0.0)
    mlm, pre, fine_model, fine = _both_routes(str(HF_MLM), config)
    assert pre.startswith("hf checkpoint") and fine.startswith("hf checkpoint"), (pre, fine)
    _assert_same_encoder(mlm, fine_model)
    from funnel_tf import checkpoints

    reference = checkpoints.load_model(str(HF_MLM))
    for name, value in _values(reference).items():  # backbone, decoder and MLM head
        np.testing.assert_array_equal(_values(mlm)[name], value, err_msg=name)


def test_anything_else_is_one_error_saying_what_is_read(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    objective = pretraining_task("mlm", CONFIG)
    objective.build()
    with pytest.raises(checkpointing.CheckpointError, match="expected a funnel-tf training"):
        load_init_checkpoint(objective.backbone, str(tmp_path), objective.models)
    with pytest.raises(checkpointing.CheckpointError, match="not found"):
        load_init_checkpoint(objective.backbone, str(tmp_path / "nope"), objective.models)
