"""FunnelTextClassifierPreprocessor: raw strings (or pairs) + optional labels -> the model's features.

keras-hub's TextClassifierPreprocessor pattern: tokenization runs in the tf.data pipeline
(`dataset.map(preprocessor)`), so FunnelTextClassifier's compiled step only sees int tensors
[N, sequence_length] and stays jit-compilable (XLA has no string ops). The SavedModel export calls
the same `features` in its serving graph, so `predict` and the export build identical features.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from funnel_tf.classifier_inputs import is_features
from funnel_tf.tokenizer import FunnelTokenizer


class FunnelTextClassifierPreprocessor:
    """`preprocessor(x, y=None, sample_weight=None)` -> features, or (features, y[, sample_weight]).

    x: string texts [N], a pair `(texts [N], pair_texts [N])`, or a features dict (passed through).
    Features: int32 `input_ids`, `attention_mask`, `token_type_ids`, each [N, sequence_length].
    Usable as a tf.data map function: `dataset.map(preprocessor)` on (x,), (x, y) or (x, y, w) elements.
    """

    def __init__(self, tokenizer: FunnelTokenizer, pair: bool = False):
        self.tokenizer = tokenizer
        self.pair = bool(pair)

    @property
    def sequence_length(self) -> int:
        return self.tokenizer.sequence_length

    def features(self, texts, pair_texts=None) -> dict:
        """Texts [N] (and pair texts [N]) -> the model's input dict, int32 [N, sequence_length]."""
        return self.tokenizer(texts, pair_texts)

    def __call__(self, x, y=None, sample_weight=None):
        if is_features(x):
            features = x
        elif _is_pair(x):
            features = self.features(x[0], x[1])  # (texts, pair_texts)
        elif isinstance(x, tuple) and len(x) == 1:
            return self(x[0], y, sample_weight)  # a (x,) element of a predict dataset
        else:
            features = self.features(x)
        return keras.utils.pack_x_y_sample_weight(features, y, sample_weight)

    def map(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        """`dataset` with every x tokenized (labels and sample weights kept), in parallel. The map
        function is one tf.function per tokenizer and settings (packing.traced_per_tokenizer):
        every fit / evaluate / predict dataset of a classifier reuses its trace per element
        structure instead of tracing the tokenizer's graph again."""
        from funnel_tf.text.packing import traced_per_tokenizer

        tokenizer = self.tokenizer

        def make(get_tokenizer):
            def preprocess(x, y=None, sample_weight=None):
                return FunnelTextClassifierPreprocessor(get_tokenizer())(x, y, sample_weight)
            return preprocess

        key = ("text_classifier", tokenizer.sequence_length, tokenizer.truncation)
        return dataset.map(traced_per_tokenizer(tokenizer, key, make), num_parallel_calls=tf.data.AUTOTUNE)


def _is_pair(x) -> bool:
    """(texts, pair_texts): two batches of texts, not a list (or tuple) of two strings."""
    return isinstance(x, (tuple, list)) and len(x) == 2 and not any(isinstance(t, (str, bytes)) for t in x)


__all__ = ["FunnelTextClassifierPreprocessor"]
