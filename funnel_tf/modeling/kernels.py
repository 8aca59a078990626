"""The operations of the model that have a TensorFlow fast path, and the one switch that picks it.

Model code calls only these for its hot spots, with Keras-level arguments (layers, not seeds):
compute_weight, matmul_nt, gather_positions, bias_activation, dropout_add_norm, norm_dropout,
apply_dropout and attention_probs. On every backend but TensorFlow they are the plain keras.ops /
keras.random versions (keras_kernels.py). Where the backend is TensorFlow they come from
tf_kernels/ instead: XLA-fused elementwise regions, the hand-written softmax gradient, bf16
weight copies and the ThreeFry dropout kernel, the same math (the CPU speed of TF's kernels).
"""

import keras

TENSORFLOW = keras.backend.backend() == "tensorflow"  # fixed once Keras is imported

if TENSORFLOW:  # the one switch
    from funnel_tf.modeling import tf_kernels as _impl
else:
    from funnel_tf.modeling import keras_kernels as _impl

compute_weight = _impl.compute_weight
matmul_nt = _impl.matmul_nt
gather_positions = _impl.gather_positions
bias_activation = _impl.bias_activation
dropout_add_norm = _impl.dropout_add_norm
norm_dropout = _impl.norm_dropout
apply_dropout = _impl.apply_dropout
attention_probs = _impl.attention_probs
