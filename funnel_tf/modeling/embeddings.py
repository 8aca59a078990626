"""Word embeddings + LayerNorm + dropout. Funnel has no absolute position or token-type embedding:
positions and segments enter only through attention biases."""

import keras
from keras import ops

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import kernels
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.initializers import embedding_initializer
from funnel_tf.modeling.serialization import FunnelConfigSerializable


class FunnelEmbeddings(FunnelConfigSerializable, keras.layers.Layer):
    """ids [B, L] -> [B, L, d_embed]. `word_embeddings` is the [V, E] table the MLM heads tie to."""

    def __init__(self, config: FunnelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm",
                                                     dtype=self.dtype_policy)
        self.dropout = Dropout(config.hidden_dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        cfg = self.config
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(cfg.vocab_size, cfg.embedding_size),
            initializer=embedding_initializer(cfg),
            # Read in float32 even under mixed precision: Keras' autocast would cast the whole
            # [V, E] table before the gather; the fused tail below casts only the gathered rows.
            autocast=False)
        self.layer_norm.build((None, None, cfg.embedding_size))

    def call(self, input_ids, training=False):
        x = ops.take(self.word_embeddings, input_ids, axis=0)  # [B, L, E] float32
        # Cast, LayerNorm and dropout in one fused kernel on TF. Also keeps the cast after the
        # gather: on TF's kernels Grappler moves a Cast that directly follows a Gather in front of
        # it, which cast the whole [V, E] table every step under mixed precision.
        return kernels.norm_dropout(x, self.layer_norm, self.dropout, training, self.compute_dtype)
