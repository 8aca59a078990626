"""Optimizer and learning-rate schedule: AdamW with decoupled weight decay, warmup + linear decay,
and layer-wise learning-rate decay as a true per-variable learning-rate scale.

Why a per-variable *learning-rate* scale: the original Funnel-Transformer (like XLNet) multiplied
each layer's *gradient* by `rate ** depth`. Adam divides the first moment by the root of the second,
so a constant gradient factor cancels out (only the epsilon term notices it) and the decay is nearly a
no-op. Scaling the step size instead gives the intended "lower layers move less" behaviour; the same
scale multiplies the decoupled weight decay, exactly as if that layer had a smaller learning rate.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Optional, Sequence

import keras
from keras import ops

# Variables whose path matches one of these are never decayed (in addition to every rank <= 1
# variable, which covers dense biases and LayerNorm gamma/beta whatever they are named).
NO_DECAY_PATTERNS = ("layer_norm", "layernorm", "LayerNorm", r"(^|/)bias(:\d+)?$")

_LAYER_RE = re.compile(r"(?:^|/)layer_(\d+)(?:/|$)")
_EMBED_RE = re.compile(r"(?:^|/)embeddings(?:/|$)")


# ---------------------------------------------------------------------------------- LR schedule
@keras.saving.register_keras_serializable(package="funnel_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear decay to
    `peak * end_ratio` at `total_steps` (constant after).

    `step` is the number of updates already applied (the optimizer's iteration count), so update
    k (0-based) uses lr(k); warmup uses (k + 1) / warmup_steps so that the very first update is not
    wasted with a zero learning rate.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, end_ratio: float = 0.0):
        if peak < 0:
            raise ValueError(f"learning rate must be >= 0, got {peak}")
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got "
                             f"{warmup_steps}, {total_steps}")
        if warmup_steps > total_steps:
            raise ValueError(f"warmup_steps ({warmup_steps}) exceeds total_steps ({total_steps})")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.end_ratio = float(end_ratio)

    def __call__(self, step):
        # keras.ops: the same schedule in the TF and the JAX engine (engine/jax/).
        step = ops.cast(step, "float32")
        peak = ops.convert_to_tensor(self.peak, "float32")
        warm = peak * ops.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
        span = float(max(self.total_steps - self.warmup_steps, 1))
        frac = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        decayed = peak * (1.0 - (1.0 - self.end_ratio) * frac)
        if self.warmup_steps == 0:
            return decayed
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "end_ratio": self.end_ratio}


# ---------------------------------------------------------------------------------- layer-wise decay
def layer_index(path: str) -> Optional[int]:
    """Depth id of a variable from its path: 0 for the embedding block, k + 1 for parameter layer k
    (`.../layer_k/...`), None for everything else (heads, poolers)."""
    m = _LAYER_RE.search(path)
    if m:
        return int(m.group(1)) + 1
    if _EMBED_RE.search(path):
        return 0
    return None


def layerwise_lr_scales(variables: Iterable, decay_rate: float,
                        num_layers: Optional[int] = None) -> Dict[str, float]:
    """Per-variable learning-rate factors `decay_rate ** (num_layers - depth)` keyed by path.

    `num_layers` is the number of parameter layers (encoder + decoder); when None it is the
    largest `layer_k` index + 1 found. The top layer gets factor 1 (rate ** 0), the embeddings
    rate ** num_layers; variables outside the layer stack (heads) get 1. With decay_rate 1 every
    factor is 1.
    """
    variables = list(variables)
    depths = {v.path: layer_index(v.path) for v in variables}
    if num_layers is None:
        found = [d for d in depths.values() if d is not None]
        num_layers = max(found) if found else 0
    return {path: (1.0 if d is None else float(decay_rate) ** (num_layers - d))
            for path, d in depths.items()}


# ---------------------------------------------------------------------------------- optimizer
@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelAdamW(keras.optimizers.AdamW):
    """Keras AdamW plus a per-variable learning-rate scale and pre-reduced gradients.

    - `lr_scales`: {variable path: factor}. The factor multiplies both the Adam step and the
      decoupled weight decay of that variable (layer-wise LR decay, see the module docstring).
    - `gradients_pre_reduced=True`: the caller has already summed gradients across replicas (the
      training loop does so to clip by the *global* norm of the global gradient), so the optimizer
      must not all-reduce them again. Keep False when used from `model.fit`.
    Weight decay is applied to variable v as `v -= lr * scale * weight_decay * v` just before its
    Adam step (the order does not matter: Adam's step does not depend on v).
    """

    def __init__(self, *args, lr_scales: Optional[Mapping[str, float]] = None,
                 gradients_pre_reduced: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_scales = dict(lr_scales or {})
        self.gradients_pre_reduced = bool(gradients_pre_reduced)
        self._scale_by_key: Dict[int, float] = {}

    def build(self, variables):
        super().build(variables)
        # Key by the optimizer's own variable identity (survives distributed-variable wrapping).
        self._scale_by_key = {self._var_key(v): float(self.lr_scales.get(v.path, 1.0))
                              for v in variables}
        unknown = set(self.lr_scales) - {v.path for v in variables}
        if unknown:
            raise ValueError(f"lr_scales names variables the optimizer does not train: "
                             f"{sorted(unknown)[:5]}")

    def _apply_weight_decay(self, variables):
        # Folded into update_step so that the per-variable scale applies to it too.
        return

    def _all_reduce_sum_gradients(self, grads_and_vars):
        if self.gradients_pre_reduced:
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scale_by_key.get(self._var_key(variable), 1.0)
        lr = ops.cast(learning_rate, variable.dtype)
        if scale != 1.0:
            lr = lr * ops.cast(scale, variable.dtype)
        if self.weight_decay and self._use_weight_decay(variable):
            wd = ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, variable * wd * lr)
        super().update_step(gradient, variable, lr)

    def get_config(self):
        config = super().get_config()
        config.update(lr_scales=self.lr_scales, gradients_pre_reduced=self.gradients_pre_reduced)
        return config


def make_optimizer(variables: Sequence, learning_rate, weight_decay: float = 0.01,
                   beta_1: float = 0.9, beta_2: float = 0.99, epsilon: float = 1e-6,
                   layer_decay: float = 1.0, num_layers: Optional[int] = None,
                   gradients_pre_reduced: bool = True) -> FunnelAdamW:
    """AdamW for `variables` with the original's hyper-parameters, built (slots created).

    Call inside `strategy.scope()`. LayerNorm parameters and biases (every rank <= 1 variable, plus
    anything named like a LayerNorm or a bias) are excluded from weight decay; the relative-attention
    bias matrices (r_w_bias, ...) are rank 2 and are decayed, as in the original.
    `learning_rate` is a float or a `LearningRateSchedule`; clipping is done by the training loop
    (global norm after the cross-replica sum), not here.
    """
    variables = list(variables)
    scales = layerwise_lr_scales(variables, layer_decay, num_layers) if layer_decay != 1.0 else {}
    opt = FunnelAdamW(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1,
                      beta_2=beta_2, epsilon=epsilon, lr_scales=scales,
                      gradients_pre_reduced=gradients_pre_reduced)
    no_decay = [v for v in variables if len(v.shape) <= 1 or any(
        re.search(p, v.path) for p in NO_DECAY_PATTERNS)]
    opt.exclude_from_weight_decay(var_list=no_decay)
    opt.build(variables)
    return opt


def decayed_variable_paths(optimizer: FunnelAdamW, variables: Sequence) -> list:
    """Paths of the variables that receive weight decay (for logs and tests)."""
    return [v.path for v in variables if optimizer._use_weight_decay(v)]
