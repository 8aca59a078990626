"""TensorFlow-only CPU fast paths, behind modeling/kernels.py's switch (imported only where the Keras
backend is TensorFlow; elsewhere the plain keras.ops versions of keras_kernels.py run).

On TF's own kernels (the engine's jit_compile=False step, the fastest bf16 path on CPU) these are
XLA-fused elementwise regions (fusion.py), the attention tail with a hand-written gradient
(attention_probs.py), bf16 weight copies (compute_weights.py) and the ThreeFry/Philox dropout
masks (dropout.py). Inside a graph that XLA compiles anyway they run as plain TF. This module
adapts them to kernels.py's signatures (Dropout layers in, stateless seeds drawn here).
"""

import keras
import tensorflow as tf

from funnel_tf.modeling.tf_kernels import attention_probs as _probs
from funnel_tf.modeling.tf_kernels import dropout as _dropout
from funnel_tf.modeling.tf_kernels import fusion
from funnel_tf.modeling.tf_kernels.compute_weights import compute_weight

__all__ = ["compute_weight", "matmul_nt", "gather_positions", "bias_activation", "dropout_add_norm",
           "norm_dropout", "apply_dropout", "attention_probs"]  # what modeling/kernels.py takes

bias_activation = fusion.bias_activation


def _seed(layer, training):
    """The Dropout layer's next stateless seed, or None where it does not drop."""
    return _dropout.next_seed(layer) if training and layer.rate > 0 else None


def matmul_nt(a, b):
    return tf.matmul(a, b, transpose_b=True)


def gather_positions(hidden, positions):
    return tf.gather(hidden, tf.cast(positions, tf.int32), batch_dims=1)


def dropout_add_norm(x, residual, norm, dropout, training, bias=None):
    return fusion.dropout_add_norm(x, residual, norm.gamma, norm.beta, _seed(dropout, training), dropout.rate,
                                   norm.epsilon, bias=bias)


def norm_dropout(x, norm, dropout, training, dtype):
    return fusion.norm_dropout(x, norm.gamma, norm.beta, _seed(dropout, training), dropout.rate, norm.epsilon,
                               dtype)


def attention_probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask, dropout, training,
                    shift: int = 0):
    return _probs.attention_probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask,
                                  _seed(dropout, training), shift=shift, rate=dropout.rate)


def apply_dropout(layer, inputs):
    if layer.noise_shape is not None:
        return keras.layers.Dropout.call(layer, inputs, training=True)
    return _dropout.apply_dropout(inputs, _dropout.next_seed(layer), layer.rate)
