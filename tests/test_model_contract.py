"""The contract every model class keeps (keras-hub's `run_backbone_test` / `run_task_test`, one
test for all): built from `tiny_config`, called on a tiny batch it gives the documented outputs
(keys, shapes [batch, ...], float32), and it survives get_config/from_config, save_pretrained/
from_pretrained and a `.keras` file with the same outputs."""

import keras
import numpy as np
import pytest

import funnel_tf
from funnel_tf.modeling import heads
from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel

BATCH, SEQ, CHOICES, VOCAB = 2, 8, 3, 50


def _expected(cls, config, kwargs):
    """Output name -> shape, as each class's docstring states it."""
    last = config.pooled_lengths(SEQ)[-1]  # the encoder's last block length
    d, labels = config.d_model, kwargs.get("num_labels")
    return {
        FunnelBaseModel: {"last_hidden_state": (BATCH, last, d)},
        FunnelModel: {"last_hidden_state": (BATCH, SEQ, d), "encoder_last_hidden_state": (BATCH, last, d)},
        heads.FunnelForMaskedLM: {"logits": (BATCH, SEQ, VOCAB), "last_hidden_state": (BATCH, SEQ, d)},
        heads.FunnelForPreTraining: {"logits": (BATCH, SEQ)},
        heads.FunnelForSequenceClassification: {"logits": (BATCH, labels), "last_hidden_state": (BATCH, last, d)},
        heads.FunnelForMultipleChoice: {"logits": (BATCH, CHOICES)},
        heads.FunnelForTokenClassification: {"logits": (BATCH, SEQ, labels)},
        heads.FunnelForQuestionAnswering: {"start_logits": (BATCH, SEQ), "end_logits": (BATCH, SEQ)},
    }[cls]


def _inputs(cls):
    """A tiny batch of random ids: [BATCH, SEQ] ([BATCH, CHOICES, SEQ] for multiple choice)."""
    shape = (BATCH, CHOICES, SEQ) if cls is heads.FunnelForMultipleChoice else (BATCH, SEQ)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, shape).astype(np.int32)
    mask = np.ones_like(ids)
    mask[..., -2:] = 0  # some padding, so the mask is read
    types = np.zeros_like(ids)
    types[..., SEQ // 2:] = 1
    types[..., 0] = 2  # CLS
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _outputs(model, inputs):
    return {k: v.numpy() for k, v in model(inputs, training=False).items() if hasattr(v, "numpy")}


def _assert_same_outputs(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("cls, kwargs", [
    (FunnelBaseModel, {}),
    (FunnelModel, {}),
    (heads.FunnelForMaskedLM, {}),
    (heads.FunnelForPreTraining, {}),
    (heads.FunnelForSequenceClassification, {"num_labels": 3}),
    (heads.FunnelForMultipleChoice, {}),
    (heads.FunnelForTokenClassification, {"num_labels": 5}),
    (heads.FunnelForQuestionAnswering, {}),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_model_contract(cls, kwargs, tiny_config, tmp_path):
    assert cls.__name__ in funnel_tf.__all__  # every public model class is checked here
    config = tiny_config.replace(vocab_size=VOCAB, block_sizes=[1, 1, 1], num_decoder_layers=1, d_inner=64,
                                 hidden_dropout=0.0, attention_dropout=0.0)  # smaller still: seconds
    model = cls(config, **kwargs)
    inputs = _inputs(cls)

    # Call: the documented outputs, float32, finite.
    out = _outputs(model, inputs)
    for name, shape in _expected(cls, config, kwargs).items():
        assert out[name].shape == shape, name
        assert out[name].dtype == np.float32, name
        assert np.isfinite(out[name]).all(), name

    # get_config / from_config: the same config and, with the weights copied, the same outputs.
    clone = cls.from_config(model.get_config())
    assert type(clone) is cls and clone.get_config() == model.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    _assert_same_outputs(_outputs(clone, inputs), out)

    # save_pretrained / from_pretrained (which goes through funnel_tf.load_model).
    folder = str(tmp_path / "pretrained")
    model.save_pretrained(folder)
    loaded = cls.from_pretrained(folder)
    assert type(loaded) is cls and loaded.get_config() == model.get_config()
    _assert_same_outputs(_outputs(loaded, inputs), out)

    # A .keras file: keras.saving.load_model finds the registered class.
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is cls
    _assert_same_outputs(_outputs(restored, inputs), out)
