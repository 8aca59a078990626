"""Shared test set-up: CPU only, two logical devices for distribution tests, paths to shared data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy tests run on one CPU; must happen before TF init.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:  # already initialised by an earlier import
    pass

from funnel_tf import xla  # noqa: E402  (after the logical devices: the probe initialises TF)

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """`needs_host_xla` tests compare against an explicitly XLA-compiled function on the CPU: the
    TPU build of TF has no XLA:CPU, so there they skip (the code under test falls back itself)."""
    if xla.host_has_xla():
        return
    skip = pytest.mark.skip(reason="this TensorFlow build has no XLA:CPU backend (tensorflow-tpu); "
                                   "the comparison needs jit_compile=True on the host")
    for item in items:
        if "needs_host_xla" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_log_levels():
    """Each test leaves absl's and the root logger's levels as it found them: a test that runs an
    entry point's flags in-process and then resets them (FLAGS.unparse_flags() sets --verbosity
    back to its default, -1, whose setter makes absl's logger WARNING for the rest of the
    process) silenced every later test's absl INFO records (caplog read '')."""
    import logging

    from absl import logging as absl_logging

    absl_logger, root = absl_logging.get_absl_logger(), logging.getLogger()
    levels = absl_logger.level, root.level
    yield
    absl_logger.setLevel(levels[0])
    root.setLevel(levels[1])


@pytest.fixture
def tiny_config():
    """The shipped "tiny" FunnelConfig (configs/tiny.json: 3 blocks of 2 layers, d_model 64), a fresh
    copy per test; shrink it further with `tiny_config.replace(vocab_size=..., ...)`."""
    from funnel_tf.config import load_config

    return load_config("tiny")


SHARED_DATA = pathlib.Path(os.environ.get("FUNNEL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set FUNNEL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bert_vocab(shared_data):
    path = shared_data / "vocab" / "bert-base-uncased-vocab.txt"
    if not path.exists():
        pytest.skip(f"BERT uncased vocab not found at {path}")
    return path


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for the whole session (built once: cheaper;
    separate strategies in one process no longer collide, see funnel_tf/engine/collective_keys.py)."""
    from funnel_tf.engine import collective_keys

    collective_keys.install()  # as engine/strategy.py does for the strategies runs build
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


# The run fixtures (demo vocab tokenizer, micro config, finetune.py in-process) for every test
# folder, and how the suite spreads over the cores (scheduling.py).
pytest_plugins = ["run_fixtures", "scheduling"]
