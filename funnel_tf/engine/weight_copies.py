"""bfloat16 copies of the large weights, kept in sync by the optimizer update.

For a mixed_bfloat16 step on TF's kernels (the CPU default, jit_compile off): the forward reads the
copies (modeling/tf_kernels/compute_weights.py) instead of casting each float32 kernel, the tape differentiates
with respect to them, and the XLA-compiled update takes their bfloat16 gradients, casts them inside
its fused loop and rewrites the copies from the new float32 values. That removes the two separate
cast passes over the weights (forward cast, gradient cast back) from every step; the arithmetic is
unchanged (the forward saw bf16(w) before too, and the same bf16 gradient reached the update).

A variable read both ways (the word-embedding table: gathered in float32, tied into the MLM head
through its copy) gets both gradients summed. Under jit_compile / TPU none of this is used: XLA
fuses the casts into their consumers by itself.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence

import tensorflow as tf

from funnel_tf import xla
from funnel_tf.modeling.tf_kernels.compute_weights import using_copies

MIN_SIZE = 1 << 16  # smaller weights (biases, LayerNorm, relative biases) are not worth a copy


class WeightCopies:
    """Low-precision copies of every trainable float32 variable of rank >= 2 and >= MIN_SIZE
    elements. Create them in the strategy scope after the model is built; they are not part of any
    checkpoint (call `refresh` after restoring or assigning the masters; the training loop does
    once at the start of `train`, after restore / warm start)."""

    def __init__(self, variables: Sequence, dtype=tf.bfloat16):
        self.dtype = tf.as_dtype(dtype)
        self.masters = [v for v in variables if v.dtype == tf.float32 and len(v.shape) >= 2
                        and v.shape.num_elements() >= MIN_SIZE]
        self.copies = [tf.Variable(tf.cast(v, self.dtype), trainable=False,
                                   name=v.path.replace("/", "__") + "__copy")
                       for v in self.masters]
        self._copy_of = {id(m): c for m, c in zip(self.masters, self.copies)}
        self.read_ids: set = set()  # ids of masters whose copy the traced forward read
        self._refresh_all = xla.function(lambda: self._assign(self.masters))

    def __len__(self):
        return len(self.copies)

    @contextlib.contextmanager
    def forward(self, tape: tf.GradientTape):
        """Run the forward pass inside: layers read the copies, and `tape` watches them."""
        tape.watch(self.copies)
        with using_copies(self._copy_of) as read:
            yield
        self.read_ids = set(read)

    def gradients(self, tape: tf.GradientTape, loss, variables: Sequence) -> List[tuple]:
        """Per variable (gradient w.r.t. the float32 variable or None, w.r.t. its copy or None)."""
        copies = [self._copy_of.get(id(v)) if id(v) in self.read_ids else None for v in variables]
        targets = list(variables) + [c for c in copies if c is not None]
        grads = tape.gradient(loss, targets)
        direct, through_copy = grads[:len(variables)], iter(grads[len(variables):])
        return [(g, next(through_copy) if c is not None else None) for g, c in zip(direct, copies)]

    @staticmethod
    def combine(direct, through_copy, variable):
        """The float32 gradient of `variable` from its two parts (either may be None)."""
        parts = [tf.cast(tf.convert_to_tensor(g), variable.dtype)
                 for g in (direct, through_copy) if g is not None]
        if not parts:
            return tf.zeros_like(variable)
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def _assign(self, masters):
        for m in masters:
            self._copy_of[id(m)].assign(tf.cast(m, self.dtype))
        return tf.constant(True)

    def refresh_read(self):
        """Rewrite the copies the forward reads from their masters (call inside the update)."""
        self._assign([m for m in self.masters if id(m) in self.read_ids])

    def refresh(self):
        """Rewrite every copy from its master (after a restore or any outside assignment)."""
        if self.copies:
            self._refresh_all()


def maybe_weight_copies(variables: Sequence, compute_dtype, enabled: bool) -> Optional[WeightCopies]:
    """WeightCopies when `enabled` and the model computes in bfloat16 with float32 variables."""
    if not enabled or tf.as_dtype(compute_dtype) != tf.bfloat16:
        return None
    copies = WeightCopies(variables)
    return copies if len(copies) else None
