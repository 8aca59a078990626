"""The plain keras.ops / keras.random versions of modeling/kernels.py's operations: what runs on
every backend but TensorFlow (JAX, PyTorch), and the reference math of tf_kernels/."""

import keras
from keras import ops

from funnel_tf.modeling.activations import get_activation
from funnel_tf.modeling.attention_probs import attention_probs

__all__ = ["compute_weight", "matmul_nt", "gather_positions", "bias_activation", "dropout_add_norm",
           "norm_dropout", "apply_dropout", "attention_probs"]  # what modeling/kernels.py takes


def compute_weight(variable, dtype):
    """`variable` (a matmul kernel) read in `dtype`."""
    return ops.cast(variable, dtype)


def matmul_nt(a, b):
    """a @ b^T over the last two axes: [..., M, K] x [..., N, K] -> [..., M, N]."""
    return ops.matmul(a, ops.swapaxes(b, -1, -2))


def gather_positions(hidden, positions):
    """hidden [B, L, D], positions int [B, P] -> [B, P, D]."""
    return ops.take_along_axis(hidden, ops.expand_dims(ops.cast(positions, "int32"), -1), axis=1)


def bias_activation(x, bias, activation_name: str):
    """act(x + bias), computed in float32 and returned in x's dtype. x [..., F], bias [F]."""
    act = get_activation(activation_name)
    return ops.cast(act(ops.cast(x, "float32") + ops.cast(bias, "float32")), x.dtype)


def dropout_add_norm(x, residual, norm, dropout, training, bias=None):
    """norm(residual + dropout(x + bias)) over the last axis in float32, returned in x's dtype: the
    post-LN tail of every sub-layer. norm: a LayerNormalization layer (its weights), dropout: a
    Dropout layer."""
    if bias is not None:
        x = x + ops.cast(bias, x.dtype)
    x = dropout(x, training=training)
    h = ops.cast(residual, "float32") + ops.cast(x, "float32")
    return ops.cast(ops.layer_normalization(h, norm.gamma, norm.beta, axis=-1, epsilon=norm.epsilon), x.dtype)


def norm_dropout(x, norm, dropout, training, dtype):
    """dropout(norm(x)) over the last axis, the norm in float32, returned in `dtype` (the embedding tail)."""
    out = ops.layer_normalization(ops.cast(x, "float32"), norm.gamma, norm.beta, axis=-1, epsilon=norm.epsilon)
    return dropout(ops.cast(out, dtype), training=training)


def apply_dropout(layer, inputs):
    """What a training-mode Dropout `layer` does to `inputs` (rate > 0): Keras' own, keras.random."""
    return keras.layers.Dropout.call(layer, inputs, training=True)
