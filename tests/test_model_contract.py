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


MODELS = [
    (FunnelBaseModel, {}),
    (FunnelModel, {}),
    (heads.FunnelForMaskedLM, {}),
    (heads.FunnelForPreTraining, {}),
    (heads.FunnelForSequenceClassification, {"num_labels": 3}),
    (heads.FunnelForMultipleChoice, {}),
    (heads.FunnelForTokenClassification, {"num_labels": 5}),
    (heads.FunnelForQuestionAnswering, {}),
]


def _ids(value):
    return value.__name__ if isinstance(value, type) else ""


def _small(tiny_config):
    """tiny_config smaller still (2 blocks of 1 layer: one pooling; 1 decoder layer): every layer
    kind, and each of the ~9 builds and calls per class costs a third less than with 3 blocks."""
    return tiny_config.replace(vocab_size=VOCAB, block_sizes=[1, 1], block_repeats=None, num_decoder_layers=1,
                               d_inner=64, hidden_dropout=0.0, attention_dropout=0.0)


def test_every_public_model_class_is_checked():
    public = {name for name in funnel_tf.__all__ if name.startswith("FunnelFor") or name.endswith("Model")}
    assert public == {cls.__name__ for cls, _ in MODELS}


@pytest.mark.parametrize("cls, kwargs", MODELS, ids=_ids)
def test_model_contract(cls, kwargs, tiny_config, tmp_path):
    config = _small(tiny_config)
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


def _policies(model) -> set:
    """The dtype policy names of the model and of every layer inside it."""
    return {layer.dtype_policy.name for layer in model._flatten_layers(include_self=True)}


def _assert_mixed_outputs(cls, out):
    """bfloat16 hidden states, float32 (finite) logits."""
    assert out["last_hidden_state"].dtype == "bfloat16"
    logits = {name: value for name, value in out.items() if name.endswith("logits")}
    assert logits or cls in (FunnelBaseModel, FunnelModel)
    for name, value in logits.items():
        assert value.dtype == np.float32, name
        assert np.isfinite(value).all(), name


@pytest.mark.parametrize("cls, kwargs", MODELS, ids=_ids)
def test_model_contract_dtype_argument(cls, kwargs, tiny_config, tmp_path):
    """`cls(config, dtype="mixed_bfloat16")` under the float32 global policy computes exactly as the
    global mixed_bfloat16 policy does (every sublayer takes the model's policy, keras-hub style),
    and get_config / from_config, save_pretrained / from_pretrained and .keras keep the policy.
    Under either, the weights stay float32, the hidden states are bfloat16 and every logit comes
    out float32 (keras-hub's run_precision_test)."""
    assert keras.mixed_precision.global_policy().name == "float32"
    config = _small(tiny_config)
    model = cls(config, dtype="mixed_bfloat16", **kwargs)
    assert _policies(model) == {"mixed_bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    inputs = _inputs(cls)
    out = _outputs(model, inputs)
    _assert_mixed_outputs(cls, out)

    # The same weights under the global policy: the same numbers.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        reference = cls(config, **kwargs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {w.dtype for w in reference.weights} == {"float32"}
    reference.set_weights(model.get_weights())
    reference_out = _outputs(reference, inputs)
    _assert_mixed_outputs(cls, reference_out)
    _assert_same_outputs(reference_out, out)

    assert keras.dtype_policies.get(model.get_config()["dtype"]).name == "mixed_bfloat16"
    clone = cls.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    folder = str(tmp_path / "pretrained")
    model.save_pretrained(folder)
    path = str(tmp_path / "model.keras")
    model.save(path)
    for name, other in (("from_config", clone), ("from_pretrained", cls.from_pretrained(folder)),
                        (".keras", keras.saving.load_model(path))):
        assert type(other) is cls, name
        assert _policies(other) == {"mixed_bfloat16"}, name
        _assert_same_outputs(_outputs(other, inputs), out)


def test_inherited_global_policy_is_not_saved(tiny_config, tmp_path):
    """A model built under the global mixed_bfloat16 policy (no dtype=) saves no policy:
    from_pretrained under float32 computes in float32, the reader's choice."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = FunnelModel(_small(tiny_config))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.save_pretrained(str(tmp_path))
    loaded = FunnelModel.from_pretrained(str(tmp_path))
    assert _policies(loaded) == {"float32"}
    assert _outputs(loaded, _inputs(FunnelModel))["last_hidden_state"].dtype == np.float32
