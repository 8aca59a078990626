"""Strategy factory: kinds, descriptions, clear errors, precision policy."""

import keras
import pytest
import tensorflow as tf

from funnel_tf.engine.strategy import (StrategyError, make_strategy, set_precision,
                                         strategy_info)


def test_default_and_cpu():
    assert strategy_info(make_strategy("default")).kind == "default"
    cpu = make_strategy("cpu")
    info = strategy_info(cpu)
    assert isinstance(cpu, tf.distribute.OneDeviceStrategy)
    assert (info.kind, info.num_replicas, info.num_workers, info.is_chief) == ("one_device", 1, 1, True)
    assert not info.supports_preemption_handler


def test_mirrored_over_two_logical_cpus(mirrored):
    info = strategy_info(mirrored)
    assert (info.kind, info.num_replicas) == ("mirrored", 2)
    assert "2 replica(s)" in info.describe()
    # With no devices given, every logical CPU is used (conftest makes two).
    assert make_strategy("mirrored").num_replicas_in_sync == len(tf.config.list_logical_devices("CPU"))


def test_multi_worker_without_tf_config_is_single_worker(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    info = strategy_info(make_strategy("multi_worker"))
    assert (info.kind, info.num_workers, info.is_chief) == ("multi_worker", 1, True)
    assert info.supports_preemption_handler


def test_bad_requests_fail_clearly():
    with pytest.raises(StrategyError, match="unknown strategy 'gpu'"):
        make_strategy("gpu")
    with pytest.raises(StrategyError, match="--tpu='my-tpu' was given but the strategy is 'mirrored'"):
        make_strategy("mirrored", tpu="my-tpu")
    # No TPU on a CPU box: a StrategyError that says what is needed, not a raw op error.
    with pytest.raises(StrategyError, match="TPU 'local' could not be initialised"):
        make_strategy("tpu")


def test_set_precision():
    try:
        set_precision("mixed_bfloat16")
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        with pytest.raises(ValueError, match="float16 is not supported"):
            set_precision("mixed_float16")
    finally:
        set_precision("float32")
    assert keras.config.dtype_policy().name == "float32"


def test_preemption_handler_only_where_tf_implements_it(monkeypatch):
    """TF's PreemptionCheckpointHandler does nothing on a GCE CPU VM or Cloud TPU VM (TF 2.19-2.21
    failure_handling.py): there the loop must not rely on it (it saves on SIGTERM itself)."""
    from tensorflow.python.distribute.failure_handling import failure_handling_util

    from funnel_tf.engine import strategy as strat

    strat.preemption_platform.cache_clear()
    try:
        monkeypatch.setattr(failure_handling_util, "on_gcp", lambda: True)
        assert strat.preemption_platform() == "GCE_CPU"
        assert not strat.tf_preemption_handler_works("multi_worker")
        assert not strat.tf_preemption_handler_works("tpu")
        monkeypatch.setattr(failure_handling_util, "on_gcp", lambda: False)
        strat.preemption_platform.cache_clear()
        assert strat.preemption_platform() == "INTERNAL_CPU"
        assert strat.tf_preemption_handler_works("multi_worker")
        assert not strat.tf_preemption_handler_works("mirrored")
    finally:
        strat.preemption_platform.cache_clear()
