"""The parameter update of a train step on TF's own kernels, as one XLA-compiled function.

With `jit_compile` off (the CPU default: the model runs on TF's oneDNN kernels, where bf16 matmuls
are fastest), the update is memory-bound elementwise work over every weight. As TF ops, clipping
by the global norm alone is several passes over all gradients, and AdamW ~10 kernels per variable.
`FusedUpdate` compiles, in one XLA function: combining the gradient parts, clipping and the
optimizer step, plus, under mixed_bfloat16, rewriting the bf16 weight copies the next forward reads
(training/weight_copies.py). The global norm (for clipping and the finite check) stays on TF's
kernels, where it overlaps the end of the backward pass.

Only for strategies with one replica per process (default, OneDevice): no cross-replica sum is
needed, so nothing in here waits on a collective.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from funnel_tf import xla
from funnel_tf.engine.weight_copies import WeightCopies


def _dense(g):
    """IndexedSlices (an embedding gather's gradient) -> dense, on TF's multi-threaded kernel."""
    return None if g is None else tf.convert_to_tensor(g)


class FusedUpdate:
    """Finite check (TF kernels), then clipping and optimizer step of one replica (one XLA
    function), skipped when the loss or the gradient is not finite.

    optimizer:     a built Keras optimizer for `variables`.
    clip_norm:     clip the gradient by its global norm to this (0 = off: no norm is computed,
                   the finite check is a plain gradient sum).
    weight_copies: optional WeightCopies: the forward reads them (`forward`), their gradients
                   are folded in and they are rewritten from the updated variables.
    """

    def __init__(self, optimizer, variables: Sequence, clip_norm: float = 0.0,
                 weight_copies: Optional[WeightCopies] = None):
        self.optimizer = optimizer
        self.variables = list(variables)
        self.clip_norm = float(clip_norm)
        self.weight_copies = weight_copies
        self._update = xla.function(self._fused)  # TF's kernels where the host has no XLA

    @contextlib.contextmanager
    def forward(self, tape: tf.GradientTape):
        """Run the forward pass inside this (it reads the weight copies, if any)."""
        if self.weight_copies is None:
            yield
            return
        with self.weight_copies.forward(tape):
            yield

    def gradients(self, tape: tf.GradientTape, loss) -> Tuple[List, List]:
        """(gradients w.r.t. the variables, w.r.t. their copies); entries may be None."""
        if self.weight_copies is None:
            return [_dense(g) for g in tape.gradient(loss, self.variables)], \
                [None] * len(self.variables)
        pairs = self.weight_copies.gradients(tape, loss, self.variables)
        return [_dense(d) for d, _ in pairs], [c for _, c in pairs]

    def __call__(self, direct, through_copy, loss) -> Tuple[Optional[tf.Tensor], tf.Tensor]:
        """Apply the update unless `loss` or the gradient is not finite -> (global norm, finite).

        Without clipping the norm is not needed (None is returned): a plain sum of every
        gradient, in its own dtype, is non-finite exactly when some element is (short of an
        overflow past 3e38, which the norm's squares would reach far sooner), at a fifth of the
        norm's memory traffic.
        """
        finite = tf.math.is_finite(tf.cast(loss, tf.float32))
        if self.clip_norm > 0:
            norm = self._global_norm(direct, through_copy)
            # tf.clip_by_global_norm's factor; 1 when the norm is below the threshold.
            scale = self.clip_norm * tf.minimum(1.0 / norm, 1.0 / self.clip_norm)
            finite = tf.logical_and(finite, tf.math.is_finite(norm))
        else:
            norm, scale = None, tf.constant(1.0)
            finite = tf.logical_and(finite, tf.math.is_finite(self._sum(direct, through_copy)))
        # The branch outside XLA: inside a compiled conditional XLA could not update the
        # variables in place (a copy of every weight, ~100 ms a step for small on 2 cores).
        tf.cond(finite, lambda: self._update(direct, through_copy, scale), lambda: None)
        return norm, finite

    @staticmethod
    def _sum(direct, through_copy):
        """float32 sum of all gradient elements (each tensor reduced in its own dtype)."""
        sums = [tf.cast(tf.reduce_sum(g), tf.float32) for g in list(direct) + list(through_copy)
                if g is not None]
        return tf.add_n(sums) if sums else tf.constant(0.0)

    def _global_norm(self, direct, through_copy):
        """Global L2 norm in float32 on TF's kernels: their reductions use every core, XLA:CPU's
        run on one (~50 ms vs ~15 ms over small's 115M gradients)."""
        squares = []
        for d, c, v in zip(direct, through_copy, self.variables):
            if d is None and c is None:
                continue
            # one pass per gradient (the bf16 ones cast first: a bf16 reduction loses precision)
            squares.append(tf.nn.l2_loss(WeightCopies.combine(d, c, v)))  # sum(g ** 2) / 2
        if not squares:
            return tf.constant(0.0)
        return tf.sqrt(2.0 * tf.add_n(squares))

    def _fused(self, direct, through_copy, scale):
        grads = [WeightCopies.combine(d, c, v)
                 for d, c, v in zip(direct, through_copy, self.variables)]  # float32, dense
        if self.clip_norm > 0:
            grads = [g * scale for g in grads]
        self.optimizer.apply(grads, self.variables)
        if self.weight_copies is not None:
            self.weight_copies.refresh_read()
