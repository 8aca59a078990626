"""FunnelTextClassifier.from_pretrained(path, dtype=...): the classifier computes in that policy
with the saved weights (mixed_bfloat16: float32 weights and logits, bfloat16 math)."""

import keras
import numpy as np
import pytest

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelTextClassifier, FunnelTokenizer
from funnel_tf.modeling.pretrained import ModelDTypeError
from funnel_tf.resources import demo_vocab_path

TEXTS = ["a good film", "Héllo wörld, a rather dull one"]


def test_from_pretrained_dtype(tmp_path):
    tokenizer = FunnelTokenizer(demo_vocab_path(), sequence_length=16)
    config = FunnelConfig(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1], num_decoder_layers=1, d_model=16,
                          n_head=2, d_head=8, d_inner=24)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(config, num_labels=2), tokenizer)
    folder = clf.save_pretrained(str(tmp_path / "clf"))
    want = keras.ops.convert_to_numpy(clf(TEXTS))
    mixed = FunnelTextClassifier.from_pretrained(folder, dtype="mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in mixed.model._flatten_layers()} == {"mixed_bfloat16"}
    for got, saved in zip(mixed.model.weights, clf.model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(saved))
    logits = keras.ops.convert_to_numpy(mixed(TEXTS))
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, want, atol=0.05)
    with pytest.raises(ModelDTypeError, match="the models compute in one of"):
        FunnelTextClassifier.from_pretrained(folder, dtype="float16")
