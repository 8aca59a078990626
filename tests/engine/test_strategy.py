"""Strategy factory: kinds, descriptions, clear errors, precision policy."""

import keras
import pytest
import tensorflow as tf

from funnel_tf.engine import precision
from funnel_tf.engine.precision import set_precision
from funnel_tf.engine.strategy import StrategyError, make_strategy, strategy_info


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


def test_precision_and_jit_auto_resolve_from_the_strategy_kind():
    """One resolution for every run: "auto" precision is bf16 on TPU only; "auto" jit is on for
    TPU and GPU, off on CPU; explicit values pass through; unknown values are refused."""
    assert precision.resolve("auto", "auto", "tpu", has_gpu=False) == precision.Resolved(
        "mixed_bfloat16", True)
    assert precision.resolve("auto", None, "default", has_gpu=False) == precision.Resolved(
        "float32", False)
    assert precision.resolve("auto", "auto", "mirrored", has_gpu=True).precision == "float32"
    assert precision.resolve_jit("false", "tpu") is False
    assert precision.resolve_jit(False, "default", has_gpu=True) is False
    assert precision.resolve("mixed_bfloat16", "false", "default").describe() == \
        "precision mixed_bfloat16, jit_compile=False"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve("float16", "auto", "default")
    with pytest.raises(ValueError, match="jit_compile must be one of"):
        precision.resolve_jit("yes", "default")
    with pytest.raises(ValueError, match="unknown precision 'auto'"):
        set_precision("auto")  # resolve first


def test_the_flags_offer_the_engines_names():
    """--strategy / --precision / --jit_compile choices are the engine's one list of each."""
    from funnel_tf.engine.choices import JIT_MODES, PRECISIONS, STRATEGIES
    from funnel_tf.flags_from_args import ENGINE_FLAGS

    assert ENGINE_FLAGS["strategy"]["flag"].choices is STRATEGIES
    assert ENGINE_FLAGS["precision"]["flag"].choices is PRECISIONS
    assert ENGINE_FLAGS["jit_compile"]["flag"].choices is JIT_MODES
    with pytest.raises(StrategyError, match="choose one of"):
        make_strategy("gpu")


def test_strategies_built_here_get_their_own_collective_keys():
    """engine/strategy.py installs collective_keys: two MirroredStrategies never share a key
    base (modeling/ no longer installs it, so the engine must)."""
    a = make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    b = make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert tf.distribute.MirroredStrategy.__init__._funnel_unique_collective_keys
    assert a._collective_key_base != b._collective_key_base


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
