"""A distinct collective group key for every MirroredStrategy built in this process.

TF gives every `tf.distribute.MirroredStrategy` the same collective keys: its key base is a class
attribute left at 0 ("only set this in tests"), so each new strategy all-reduces in group 1 with
instance keys 100, 101, ... again. The process-wide collective parameter resolver remembers each
(group, instance) it has run, shape included, so the second strategy's first all-reduce meets the
first strategy's record and aborts: "Shape mismatch in the collective instance 100 ... expected
shape [4898] but another member ... expected shape [122]" (a notebook fitting a second model of
another size under a new strategy; TF issue #62790). TF's own tests avoid it by raising the base
by 100000 before each strategy; `install()` does the same for every MirroredStrategy constructed
afterwards. engine/strategy.py installs it on import (every strategy a run builds has it); code
that builds a MirroredStrategy itself calls `install()` first. Eager MirroredStrategy is
single-worker, so the keys only have to be unique within this process (MultiWorkerMirroredStrategy,
whose keys workers must agree on, is left alone).
"""

import functools
import itertools
import threading

import tensorflow as tf

KEY_STRIDE = 100_000  # TF's own per-strategy step (strategy_combinations): room for its groups
_counter = itertools.count(1)  # 1: a strategy built before install() keeps TF's base, 0
_lock = threading.Lock()


def next_key_base(class_base: int) -> int:
    """A key base above `class_base` that no earlier call returned."""
    with _lock:
        return class_base + KEY_STRIDE * next(_counter)


def install() -> None:
    """Wrap MirroredStrategy.__init__ so each instance gets its own key base (idempotent)."""
    cls = tf.distribute.MirroredStrategy
    init = cls.__init__
    if getattr(init, "_funnel_unique_collective_keys", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        # An instance attribute: MirroredExtended reads `container_strategy._collective_key_base`.
        self._collective_key_base = next_key_base(type(self)._collective_key_base)
        init(self, *args, **kwargs)

    __init__._funnel_unique_collective_keys = True
    cls.__init__ = __init__
