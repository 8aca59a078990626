"""Bad model inputs are one ModelInputError (a ValueError / TypeError and UserError) naming the input
and what it needs, raised before any graph op: for the backbones and every head."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.errors import UserError
from funnel_tf.modeling import heads
from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel, ModelInputError

CFG = FunnelConfig(vocab_size=50, block_sizes=[1, 1], num_decoder_layers=1, d_model=16, n_head=2, d_head=8,
                   d_inner=24)
IDS = np.arange(24, dtype=np.int32).reshape(2, 12) % 50


@pytest.fixture(scope="module", params=[FunnelBaseModel, FunnelModel, heads.FunnelForSequenceClassification,
                                        heads.FunnelForMaskedLM, heads.FunnelForQuestionAnswering])
def model(request):
    return request.param(CFG)


BAD = [
    (IDS[0], ModelInputError, r"input_ids: expected shape \[batch, seq_len\], got \[12\].*input_ids\[None\]"),
    (IDS[None], ModelInputError, r"input_ids: expected shape \[batch, seq_len\], got \[1, 2, 12\]"),
    (IDS.astype(np.float32) + 0.5, TypeError, "input_ids: expected integer token ids, got float32"),
    (tf.constant([["a b"]]), TypeError, "input_ids: got strings.*tokenize first"),
    ([[1, None, 3]], TypeError, "input_ids"),
    (tf.ragged.constant([[1, 2], [3]]), TypeError, "input_ids: a ragged batch"),
    ({"input_ids": IDS, "attention_mask": np.ones((2, 10), np.int32)}, ModelInputError,
     r"attention_mask: shape \[2, 10\] does not match input_ids \[2, 12\]"),
    ({"input_ids": IDS, "token_type_ids": np.full((2, 12), 0.25, np.float32)}, TypeError,
     "token_type_ids: expected ints, got float32"),
    ({"input_ids": IDS, "token_type_ids": np.zeros((12,), np.int32)}, ModelInputError,
     r"token_type_ids: shape \[12\] does not match"),
    ({"input_id": IDS}, ModelInputError, "inputs need 'input_ids'"),
    (IDS + 40, ModelInputError, r"token id \d+ is outside the vocab \[0, 50\)"),
]


@pytest.mark.parametrize("inputs, error, message", BAD, ids=lambda x: None)
def test_bad_inputs_name_the_input(model, inputs, error, message):
    with pytest.raises(error, match=message) as e:
        model(inputs)
    assert isinstance(e.value, UserError) and isinstance(e.value, (ValueError, TypeError))


def test_good_inputs_still_work(model):
    ids = tf.constant(IDS, tf.int64)
    a = model({"input_ids": ids, "attention_mask": tf.ones([2, 12], tf.bool)})
    b = model(IDS)  # int32 numpy, defaults filled
    c = model({"input_ids": IDS.tolist(), "attention_mask": [[1.0] * 12] * 2})  # nested lists, a float mask
    key = "logits" if "logits" in a else "start_logits" if "start_logits" in a else "last_hidden_state"
    np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-6)
    np.testing.assert_allclose(c[key].numpy(), b[key].numpy(), atol=1e-6)
    # Whole-number float ids are ids (Keras builds a wrapping subclassed model with float32
    # placeholders and its Embedding casts the same way); fractional ones are refused above.
    d = model({"input_ids": IDS.astype(np.float32), "token_type_ids": np.zeros((2, 12), np.float32)})
    np.testing.assert_allclose(d[key].numpy(), b[key].numpy(), atol=1e-6)


def test_multiple_choice_needs_batch_choices_length():
    model = heads.FunnelForMultipleChoice(CFG)
    with pytest.raises(ModelInputError, match=r"input_ids: FunnelForMultipleChoice takes \[batch, num_choices"):
        model({"input_ids": IDS})
    with pytest.raises(ModelInputError, match=r"attention_mask: shape \(2, 12\) does not match"):
        model({"input_ids": IDS.reshape(2, 1, 12), "attention_mask": IDS})
    with pytest.raises(ModelInputError, match="takes a dict"):
        model(IDS.reshape(2, 1, 12))
    assert model({"input_ids": IDS.reshape(1, 2, 12)})["logits"].shape == (1, 2)
