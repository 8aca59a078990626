"""One Funnel layer: relative attention followed by the position-wise FFN (both post-LN)."""

import keras
from keras import ops

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import kernels
from funnel_tf.modeling.activations import get_activation
from funnel_tf.modeling.attention import FunnelRelMultiheadAttention
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.initializers import dense_initializer
from funnel_tf.modeling.serialization import FunnelConfigSerializable


class FunnelPositionwiseFFN(FunnelConfigSerializable, keras.layers.Layer):
    """LN(x + Dropout(W2 Dropout_act(act(W1 x + b1)) + b2))."""

    def __init__(self, config: FunnelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        d, i = config.d_model, config.d_inner
        policy = self.dtype_policy  # every sublayer computes in this layer's policy
        self.linear_1 = keras.layers.Dense(i, kernel_initializer=dense_initializer(config, d, i), name="linear_1",
                                           dtype=policy)
        self.linear_2 = keras.layers.Dense(d, kernel_initializer=dense_initializer(config, i, d), name="linear_2",
                                           dtype=policy)
        self.activation = get_activation(config.hidden_act)
        self.activation_dropout = Dropout(config.activation_dropout, dtype=policy)
        self.dropout = Dropout(config.hidden_dropout, dtype=policy)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm",
                                                          dtype=policy)

    def build(self, input_shape=None):
        d = self.config.d_model
        self.linear_1.build((None, None, d))
        self.linear_2.build((None, None, self.config.d_inner))
        self.layer_norm.build((None, None, d))

    def call(self, hidden, training=False):
        """hidden [B, L, D] -> [B, L, D]. 2-D matmuls; bias+activation and dropout+residual+LayerNorm
        through modeling/kernels.py (on TF each one fused kernel)."""
        dtype = self.compute_dtype
        _, length, d = hidden.shape
        x = ops.reshape(hidden, [-1, d])  # [B*L, D]
        h = ops.matmul(x, kernels.compute_weight(self.linear_1.kernel, dtype))  # [B*L, F]
        h = kernels.bias_activation(h, ops.cast(self.linear_1.bias, dtype), self.config.hidden_act)
        h = self.activation_dropout(h, training=training)
        h = ops.matmul(h, kernels.compute_weight(self.linear_2.kernel, dtype))  # [B*L, D], bias in the tail
        out = kernels.dropout_add_norm(h, x, self.layer_norm, self.dropout, training, bias=self.linear_2.bias)
        return ops.reshape(out, [-1, length, d])


class FunnelLayer(FunnelConfigSerializable, keras.layers.Layer):
    """Attention (query may be pooled, keys/values not) then FFN. `block_index` picks the position table."""

    config_args = ("block_index",)

    def __init__(self, config: FunnelConfig, block_index: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.block_index = block_index
        self.attention = FunnelRelMultiheadAttention(config, block_index, name="attention",
                                                     dtype=self.dtype_policy)
        self.ffn = FunnelPositionwiseFFN(config, name="ffn", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.attention.build()
        self.ffn.build()

    def call(self, query, key, value, attention_inputs, training=False, return_attention=False):
        out = self.attention(query, key, value, attention_inputs, training=training,
                             return_attention=return_attention)
        if return_attention:
            out, prob = out
            return self.ffn(out, training=training), prob
        return self.ffn(out, training=training)
