"""Whether this process can XLA-compile, and `function(fn)` that compiles only where it can.

The TPU build of TensorFlow (`tensorflow-tpu`) links no XLA:CPU backend: a `jit_compile=True`
function that runs on the host dies with "could not find registered transfer manager for platform
Host". Host-side work on a TPU VM (evaluation, export, the demo, the tests) must still run, so every
place that XLA-compiles on the host asks `can_jit()` first and, where it is False, runs the same
math on TF's own kernels (unfused). On a GPU, or inside a TPU computation, nothing changes.

The probe runs once per process (compiling `x + 1` on the CPU). `FUNNEL_TF_HOST_XLA=0` forces the
fallback on a build that has XLA:CPU (the tests use it to check both paths give the same numbers);
`=1` skips the probe and assumes XLA:CPU is there.
"""

from __future__ import annotations

import os
import threading

import tensorflow as tf

ENV = "FUNNEL_TF_HOST_XLA"

_lock = threading.Lock()
_host: dict = {}
_warned: set = set()


def _probe() -> bool:
    with tf.init_scope(), tf.device("/CPU:0"):  # eager, even while a graph is being traced
        try:
            fn = tf.function(lambda x: x + 1.0, jit_compile=True, autograph=False)
            return float(fn(tf.constant(1.0))) == 2.0
        except (tf.errors.OpError, RuntimeError, ValueError):
            return False


def host_has_xla() -> bool:
    """True if `jit_compile=True` functions can run on this host's CPU (probed once)."""
    with _lock:
        if "ok" not in _host:
            forced = os.environ.get(ENV, "").strip()
            if forced in ("0", "1"):
                _host["ok"] = forced == "1"
            else:
                _host["ok"] = _probe()
        return _host["ok"]


def has_gpu() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def can_jit() -> bool:
    """True where a `jit_compile=True` function of the default device compiles: a host with
    XLA:CPU, or a GPU (TPU computations are compiled by TPUStrategy whatever this says)."""
    if "can_jit" not in _host:
        _host["can_jit"] = host_has_xla() or has_gpu()
    return _host["can_jit"]


def effective_jit_compile(requested: bool, what: str = "the step") -> bool:
    """`requested`, or False (with one warning per `what`) where XLA cannot compile on this host."""
    if not requested or can_jit():
        return bool(requested)
    if what not in _warned:
        _warned.add(what)
        from absl import logging
        logging.warning("This TensorFlow build has no XLA:CPU backend (the TPU build?): %s runs "
                        "on TF's kernels instead of jit_compile=True (same math, unfused).", what)
    return False


def function(fn=None, **kwargs):
    """`tf.function(fn, jit_compile=True, **kwargs)` where XLA can compile, a plain `tf.function`
    (TF's kernels) elsewhere. Usable as a decorator, with or without arguments."""
    if fn is None:
        return lambda f: function(f, **kwargs)
    return tf.function(fn, jit_compile=can_jit(), **kwargs)


def in_xla_context() -> bool:
    """True while tracing a graph that XLA compiles as a whole (jit_compile or TPU)."""
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    if control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()):
        return True
    return bool(tf.config.list_logical_devices("TPU"))


def plain_ops() -> bool:
    """True where an XLA-fused region of TF's kernels (funnel_tf/modeling/tf_kernels) should run as
    plain TF: inside a graph XLA compiles anyway, or on a host that cannot XLA-compile at all."""
    return in_xla_context() or not can_jit()


def reset_for_tests() -> None:
    """Forget the probe (after changing FUNNEL_TF_HOST_XLA in a test)."""
    with _lock:
        _host.clear()
        _warned.clear()
