"""Truncated or corrupt weight files (safetensors, torch .bin, HF tf_model.h5, our model.weights.h5,
TF checkpoints, sharded indexes): one CheckpointReadError line naming the file, never a traceback."""

import json
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from funnel_tf.checkpoints import CheckpointError, load_model
from funnel_tf.checkpoints.errors import CheckpointReadError
from funnel_tf.checkpoints.hf import _read_index, _read_safetensors_raw, read_safetensors, read_tf_h5, \
    read_torch_bin
from funnel_tf.checkpoints.native import MARKER_NAME, WEIGHTS_NAME, from_pretrained, save_pretrained
from funnel_tf.checkpoints.original import CheckpointArrays
from funnel_tf.config import FunnelConfig
from funnel_tf.errors import UserError, one_line
from funnel_tf.modeling.model import FunnelModel

CFG = FunnelConfig(vocab_size=31, block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=0, d_model=8,
                   n_head=2, d_head=4, d_inner=12)
TENSORS = {"a.weight": np.arange(600, dtype=np.float32).reshape(20, 30), "b.bias": np.ones(7, np.float32)}


def _truncate(path, frac=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * frac))


def _assert_one_line(error, path):
    assert isinstance(error, CheckpointReadError) and isinstance(error, UserError)
    msg = one_line(error)
    assert str(path) in msg and "truncated" in msg and "\n" not in str(error)


@pytest.mark.parametrize("reader", [read_safetensors, _read_safetensors_raw])
@pytest.mark.parametrize("frac", [0.0, 0.01, 0.6, 0.99])
def test_truncated_safetensors(tmp_path, reader, frac):
    path = tmp_path / "model.safetensors"
    save_file(TENSORS, str(path))
    _truncate(path, frac)
    with pytest.raises(CheckpointReadError) as e:
        reader(str(path))
    _assert_one_line(e.value, path)


def test_truncated_torch_bin(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "pytorch_model.bin"
    torch.save({k: torch.from_numpy(v) for k, v in TENSORS.items()}, str(path))
    _truncate(path, 0.7)
    with pytest.raises(CheckpointReadError) as e:
        read_torch_bin(str(path))
    _assert_one_line(e.value, path)


def test_truncated_hf_tf_h5(tmp_path):
    path = tmp_path / "tf_model.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("tf_funnel_model/funnel/embeddings/weight:0", data=np.ones((50, 40), np.float32))
    _truncate(path, 0.5)
    with pytest.raises(CheckpointReadError) as e:
        read_tf_h5(str(path))
    _assert_one_line(e.value, path)


def test_garbage_sharded_index(tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    path.write_bytes(b"\x00\xff\x13 not json")
    with pytest.raises(CheckpointReadError) as e:
        _read_index(str(path), read_safetensors)
    _assert_one_line(e.value, path)


def test_truncated_native_weights_through_load_model(tmp_path):
    save_pretrained(FunnelModel(CFG), str(tmp_path))
    _truncate(tmp_path / WEIGHTS_NAME, 0.6)
    for load in (from_pretrained, load_model):
        with pytest.raises(CheckpointReadError) as e:
            load(str(tmp_path))
        _assert_one_line(e.value, tmp_path / WEIGHTS_NAME)


def test_binary_marker_is_a_checkpoint_error(tmp_path):
    save_pretrained(FunnelModel(CFG), str(tmp_path))
    (tmp_path / MARKER_NAME).write_bytes(b"\x89HDF\xff\xfe")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        from_pretrained(str(tmp_path))


def _tf_checkpoint(tmp_path):
    ck = tf.train.Checkpoint(model=tf.Module())
    ck.model.w = tf.Variable(np.ones((100, 10), np.float32))
    return ck.write(str(tmp_path / "model.ckpt-5"))


def test_truncated_tf_checkpoint_data(tmp_path):
    prefix = _tf_checkpoint(tmp_path)
    _truncate(tf.io.gfile.glob(prefix + ".data-*")[0], 0.3)
    arrays = CheckpointArrays(prefix)
    name = next(n for n in arrays if "w" in n)
    with pytest.raises(CheckpointReadError) as e:
        arrays[name]
    _assert_one_line(e.value, prefix)


def test_corrupt_tf_checkpoint_index(tmp_path):
    prefix = _tf_checkpoint(tmp_path)
    with open(prefix + ".index", "wb") as f:
        f.write(b"garbage" * 3)
    with pytest.raises(CheckpointReadError) as e:
        CheckpointArrays(prefix)
    _assert_one_line(e.value, prefix)
