"""XLA-fused elementwise regions for graphs that run on TF's own kernels.

Outside `jit_compile`, every elementwise op of a TF graph is its own kernel and its own pass over
memory: the tanh-GELU alone is 8 ops forward and 10 backward, and dropout, residual add and
LayerNorm another dozen per sub-layer. On CPU under `mixed_bfloat16` the fastest train step keeps
the matmuls on TF's oneDNN kernels (XLA:CPU runs bf16 dots at fp32 speed), so these chains were
~40% of its op time. `fused(fn)` compiles `fn` with XLA as one fused kernel, and its gradient as
another that recomputes `fn` from the saved inputs (elementwise recompute is cheaper than storing
the intermediates).

Inside a graph that is already XLA-compiled (`jit_compile=True`, TPU), `fn` is called as is: XLA
fuses it anyway and the custom gradient would only stop it from reusing forward values. So it is
where the host cannot XLA-compile (the TPU build of TF has no XLA:CPU; see funnel_tf/xla.py), and
in eager calls, where a kernel per new shape cost more than it saved (tracing.unfused).
TensorFlow backend only (see tf_kernels/__init__.py).
"""

import keras
import tensorflow as tf

from funnel_tf.modeling.activations import get_activation
from funnel_tf.modeling.tf_kernels.dropout import apply_mask, keep_mask
from funnel_tf.modeling.tf_kernels.tracing import per_shape_function, unfused


def _differentiable(x) -> bool:
    return x.dtype.is_floating


class _Fused:
    """`fn(*tensors) -> tensor` as one XLA kernel forward and one backward (see module doc)."""

    def __init__(self, fn):
        self.fn = fn
        self.forward = per_shape_function(fn, jit_compile=True, autograph=False)
        self.backward = per_shape_function(self._backward, jit_compile=True, autograph=False)

    def _backward(self, dy, *args):
        wrt = [a for a in args if _differentiable(a)]
        with tf.GradientTape() as tape:
            tape.watch(wrt)
            out = self.fn(*args)
        return tape.gradient(out, wrt, output_gradients=dy,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def __call__(self, *args):
        args = [tf.convert_to_tensor(a) for a in args]
        if unfused():
            return self.fn(*args)

        @tf.custom_gradient
        def call(*xs):
            def grad(dy):
                grads = iter(self.backward(dy, *xs))
                return [next(grads) if _differentiable(x) else None for x in xs]
            return self.forward(*xs), grad

        return call(*args)


_CACHE = {}


def fused(fn, key):
    """One shared `_Fused` per `key` (the static parameters of `fn`), so identical layers reuse the
    compiled kernels instead of each compiling their own."""
    if key not in _CACHE:
        _CACHE[key] = _Fused(fn)
    return _CACHE[key]


def bias_activation(x, bias, activation_name: str):
    """act(x + bias), computed in float32 and returned in x's dtype. x [..., F], bias [F]."""
    act = get_activation(activation_name)

    def fn(x, bias):
        return tf.cast(act(tf.cast(x, tf.float32) + tf.cast(bias, tf.float32)), x.dtype)
    return fused(fn, ("bias_activation", activation_name))(x, bias)


def dropout_add_norm(x, residual, gamma, beta, seed, rate: float, epsilon: float, bias=None):
    """LayerNorm(residual + dropout(x + bias)) over the last axis, in float32, returned in x's dtype.

    The post-LN tail of every Funnel sub-layer, with the output projection's bias folded in (its
    gradient is then a reduction inside the fused backward). `seed` is the dropout's [2] int32
    stateless seed, or None for no dropout (inference, rate 0). The keep mask is drawn once, before
    the fused kernel, so the backward reuses it instead of drawing it again.
    """
    has_bias, has_dropout = bias is not None, seed is not None  # the cached fn keeps flags, not tensors

    def fn(x, residual, gamma, beta, *optional):
        optional = list(optional)
        if has_bias:
            x = x + tf.cast(optional.pop(0), x.dtype)
        if has_dropout:
            x = apply_mask(x, optional.pop(0), rate)
        h = tf.cast(residual, tf.float32) + tf.cast(x, tf.float32)
        out = keras.ops.layer_normalization(h, gamma, beta, axis=-1, epsilon=epsilon)
        return tf.cast(out, x.dtype)
    keep = keep_mask(x, seed, rate) if has_dropout else None
    args = (x, residual, gamma, beta) + tuple(a for a in (bias, keep) if a is not None)
    key = ("dropout_add_norm", rate if has_dropout else None, epsilon, has_bias)
    return fused(fn, key)(*args)


def norm_dropout(x, gamma, beta, seed, rate: float, epsilon: float, dtype):
    """dropout(LayerNorm(x)) over the last axis, computed in float32, returned in `dtype`; `seed`
    as in dropout_add_norm (None: no dropout). The embedding tail."""
    def fn(x, gamma, beta, *keep):
        out = keras.ops.layer_normalization(tf.cast(x, tf.float32), gamma, beta, axis=-1, epsilon=epsilon)
        out = tf.cast(out, dtype)
        return apply_mask(out, keep[0], rate) if keep else out
    keep = keep_mask(x, seed, rate) if seed is not None else None
    args = (x, gamma, beta) + ((keep,) if keep is not None else ())
    key = ("norm_dropout", rate if seed is not None else None, epsilon, tf.as_dtype(dtype).name)
    return fused(fn, key)(*args)
