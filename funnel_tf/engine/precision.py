"""Precision and `jit_compile`, resolved once for a run: "auto" becomes a value from the strategy
and the devices (pretraining and finetuning resolve them here, the same way), and `set_precision`
sets the Keras dtype policy. The names a run may ask for are choices.py's; Keras is imported only
when a policy is set."""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from funnel_tf.engine.choices import JIT_MODES, PRECISIONS


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A run's precision ("float32" / "mixed_bfloat16") and whether its steps are XLA-compiled."""

    precision: str
    jit_compile: bool

    def describe(self) -> str:
        return f"precision {self.precision}, jit_compile={self.jit_compile}"


def resolve_jit(requested: Union[str, bool, None], kind: str,
                has_gpu: Optional[bool] = None) -> bool:
    """`jit_compile` for a strategy kind: "auto" / None -> on for TPU and GPU (XLA's compile time
    dominates short CPU runs), off on CPU; "true"/"false" or a bool as given, except that a host
    whose TensorFlow has no XLA:CPU (the TPU build) runs host steps on TF's kernels (xla.py)."""
    if isinstance(requested, str):
        if requested not in JIT_MODES:
            raise ValueError(f"jit_compile must be one of {JIT_MODES}, got {requested!r}")
        requested = {"true": True, "false": False}.get(requested)
    if requested is None:
        if has_gpu is None:
            import tensorflow as tf

            has_gpu = bool(tf.config.list_physical_devices("GPU"))
        requested = kind == "tpu" or has_gpu
    if requested and kind != "tpu":
        from funnel_tf import xla

        return xla.effective_jit_compile(True, "the train step")
    return bool(requested)


def resolve_precision(requested: str, kind: str) -> str:
    """"auto" -> mixed_bfloat16 on TPU, float32 elsewhere; the others as given."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "auto":
        return "mixed_bfloat16" if kind == "tpu" else "float32"
    return requested


def resolve(precision: str, jit_compile: Union[str, bool, None], kind: str,
            has_gpu: Optional[bool] = None) -> Resolved:
    """The run's (precision, jit_compile) from what was asked and the strategy kind
    (strategy.strategy_info(...).kind); `has_gpu` None: ask TensorFlow."""
    return Resolved(resolve_precision(precision, kind), resolve_jit(jit_compile, kind, has_gpu))


def set_precision(precision: str) -> None:
    """Set the global Keras dtype policy; call before building any model.

    "mixed_bfloat16" keeps variables in float32 and computes in bfloat16 (no loss scaling needed);
    the heads and objectives keep logits and losses in float32. float16 is refused: it needs
    dynamic loss scaling, which the engine does not implement.
    """
    resolved = PRECISIONS[1:]
    if precision not in resolved:
        raise ValueError(f"unknown precision {precision!r}; choose one of {resolved} "
                         f"(float16 is not supported: it would need loss scaling)")
    import keras

    keras.config.set_dtype_policy(precision)
