"""checkpoints.resolve(path): one answer per kind (what it is, what loads, its config, vocab and
class), built on tiny models in tmp_path; anything else is one CheckpointError saying what is read."""

import dataclasses
import json
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import checkpoints
from funnel_tf.checkpoints import CheckpointError
from funnel_tf.checkpoints.resolver import BEST_DIR, Resolved
from funnel_tf.checkpoints.training import model_weights
from funnel_tf.config import FunnelConfig
from funnel_tf.errors import UserError
from funnel_tf.modeling.heads import FunnelForMaskedLM, FunnelForPreTraining

HF_MLM = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hf" / "head_masked_lm_L8"
IDS = np.arange(16, dtype=np.int32).reshape(2, 8) % 50


@pytest.fixture
def config(tiny_config):
    return tiny_config.replace(vocab_size=60, block_sizes=[1, 1], block_repeats=[1, 1], d_model=16,
                               n_head=2, d_head=8, d_inner=32)


def _run(tmp_path, config, objective="mlm"):
    """A pretraining run folder as pretrain.py lays it out, with one checkpoint of its model."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    (run / "pretrain_args.json").write_text(json.dumps({"objective": objective, "vocab": "v.txt"}))
    model = (FunnelForMaskedLM(config, name="masked_lm") if objective == "mlm"
             else FunnelForPreTraining(config, name="discriminator"))
    table = "model" if objective == "mlm" else "discriminator"
    tf.train.Checkpoint(weights={table: model_weights(model)}).write(str(run / "checkpoints" / "ckpt-3"))
    return run, model


def test_native_folder_and_finetuning_run(tmp_path, config):
    model = FunnelForMaskedLM(config)
    checkpoints.save_pretrained(model, str(tmp_path / "native"))
    found = checkpoints.resolve(str(tmp_path / "native"))
    assert (found.kind, found.format, found.model_class) == ("native", "native", "FunnelForMaskedLM")
    assert found.path == str(tmp_path / "native") and found.vocab is None
    assert found.read_config() == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.kind = "hf"
    np.testing.assert_array_equal(found.load()(IDS)["logits"], model(IDS)["logits"])

    run = tmp_path / "finetune"
    shutil.copytree(tmp_path / "native", run / BEST_DIR)
    (run / "vocab.txt").write_text("[PAD]\n")
    found = checkpoints.resolve(str(run))  # a finetuning model_dir stands for its best/
    assert (found.kind, found.format) == ("finetuning_run", "native")
    assert found.path == str(run / BEST_DIR) and found.source == str(run)
    assert found.vocab == str(run / "vocab.txt") and found.read_config() == config


@pytest.mark.tf_only(reason="a TF training checkpoint (tf.train.Checkpoint of TF variables); on other backends it says to load it under TensorFlow")
def test_pretraining_run_its_checkpoints_folder_or_one_checkpoint(tmp_path, config):
    run, model = _run(tmp_path, config)
    prefix = str(run / "checkpoints" / "ckpt-3")
    for path in (run, run / "checkpoints", prefix):
        found = checkpoints.resolve(str(path))
        assert (found.kind, found.format, found.path) == ("pretraining_run", "training", prefix)
        assert found.model_class == "FunnelForMaskedLM"
        assert found.config_file == str(run / "config.json") and found.read_config() == config
        assert found.pretrain_args == str(run / "pretrain_args.json")
    loaded = found.load()
    np.testing.assert_array_equal(loaded(IDS)["logits"], model(IDS)["logits"])

    for name in ("ckpt-3.index", "ckpt-3.data-00000-of-00001"):
        (run / "checkpoints" / name).unlink()
    with pytest.raises(CheckpointError, match="a pretraining run without a usable checkpoint"):
        checkpoints.resolve(str(run))


@pytest.mark.tf_only(reason="a TF training checkpoint (tf.train.Checkpoint of TF variables); on other backends it says to load it under TensorFlow")
def test_an_electra_run_names_its_discriminator(tmp_path, config):
    run, model = _run(tmp_path, config, objective="electra")
    found = checkpoints.resolve(str(run))
    assert found.model_class == "FunnelForPreTraining"
    np.testing.assert_array_equal(found.load()(IDS)["logits"], model(IDS)["logits"])


@pytest.mark.tf_only(reason="a TF training checkpoint (tf.train.Checkpoint of TF variables); on other backends it says to load it under TensorFlow")
def test_loose_training_checkpoint_and_weights_files_only_warm_start(tmp_path, config):
    model = FunnelForMaskedLM(config, name="masked_lm")
    tf.train.Checkpoint(weights={"model": model_weights(model)}).write(str(tmp_path / "loose" / "ckpt-1"))
    found = checkpoints.resolve(str(tmp_path / "loose"))
    assert (found.kind, found.format, found.holds_model) == ("training_checkpoint", None, False)
    assert found.path == str(tmp_path / "loose" / "ckpt-1")
    with pytest.raises(CheckpointError, match="not inside a pretraining run folder"):
        found.load()

    model.funnel.save_weights(str(tmp_path / "backbone.weights.h5"))
    found = checkpoints.resolve(str(tmp_path / "backbone.weights.h5"))
    assert (found.kind, found.path) == ("keras_weights", str(tmp_path / "backbone.weights.h5"))
    with pytest.raises(CheckpointError, match="not a checkpoint this project reads"):
        found.load()
    (tmp_path / "bare").mkdir()
    model.save_weights(str(tmp_path / "bare" / "model.weights.h5"))
    found = checkpoints.resolve(str(tmp_path / "bare"))
    assert (found.kind, found.path) == ("keras_weights", str(tmp_path / "bare" / "model.weights.h5"))
    with pytest.raises(CheckpointError, match="model.weights.h5 without funnel_tf.json"):
        found.load()


def test_hf_and_original_folders(shared_data):
    found = checkpoints.resolve(str(HF_MLM))
    assert (found.kind, found.path, found.model_class) == ("hf", str(HF_MLM), "FunnelForMaskedLM")
    assert isinstance(found.read_config(), FunnelConfig)
    original = shared_data / "original_tf1" / "B2-1-1_D2_sepcls_mean_electra"
    found = checkpoints.resolve(str(original))
    assert (found.kind, found.format) == ("original", "original")
    assert found.config_file == str(original / "net_config.json")
    assert found.read_config().block_sizes == [2, 1, 1]


def test_anything_else_is_one_user_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"not a checkpoint this project reads.*found \['notes.txt'\]"):
        checkpoints.resolve(str(tmp_path))
    with pytest.raises(CheckpointError, match="not found"):
        checkpoints.resolve(str(tmp_path / "nope"))
    found = Resolved("training_checkpoint", source="x", path="x")
    with pytest.raises(CheckpointError, match="no config found next to the checkpoint"):
        found.read_config()


def test_one_error_family():
    from funnel_tf.checkpoints import errors
    from funnel_tf.engine import checkpointing

    for cls in (errors.CheckpointReadError, errors.CheckpointMismatchError, errors.CheckpointWriteError):
        assert issubclass(cls, errors.CheckpointError) and issubclass(cls, UserError)
    assert checkpointing.CheckpointError is errors.CheckpointError  # the engine raises the same class
