"""Shared test set-up: CPU only, two logical devices for distribution tests, paths to shared data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def _share_cores_between_workers():
    """Under pytest-xdist with a worker per core, each worker's TensorFlow (and the entry points it
    starts as subprocesses) runs its ops on one thread: a pool of one thread per core in every
    worker left the cores oversubscribed, spinning and switching (2 workers on 2 cores, 6 paired
    runs of the same tests: 5-16 % more CPU time; wall within the host's noise). TF reads this once,
    at start-up."""
    from scheduling import usable_cores  # tests/ is on sys.path (conftest's rootdir insertion)

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, usable_cores() // workers)))


_share_cores_between_workers()

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
    TPU build of TF has no XLA:CPU, so there they skip (the code under test falls back itself).
    Under another Keras backend (KERAS_BACKEND=jax), TensorFlow-only tests skip (see _skip_tf_only)."""
    _skip_tf_only(items)
    if xla.host_has_xla():
        return
    skip = pytest.mark.skip(reason="this TensorFlow build has no XLA:CPU backend (tensorflow-tpu); "
                                   "the comparison needs jit_compile=True on the host")
    for item in items:
        if "needs_host_xla" in item.keywords:
            item.add_marker(skip)


# Test files that exercise TensorFlow itself (tf_kernels, tf.data, tf.distribute, TF checkpoints):
# skipped when Keras runs on another backend. path prefix (from tests/) -> reason.
_SAME_ON_JAX = "the same models are checked on JAX by modeling/test_backends.py and test_parity_hf.py"
TF_ONLY_FILES = {
    "modeling/test_attention.py": f"feeds tf tensors and compares with tf ops; {_SAME_ON_JAX}",
    "modeling/test_attention_probs.py": "tf_kernels' hand-written softmax gradient vs TF autodiff",
    "modeling/test_dropout.py": "tf_kernels' ThreeFry dropout kernel, XLA:CPU and tf.function",
    "modeling/test_dropout_replicas.py": "dropout masks under tf.distribute replicas",
    "modeling/test_fusion.py": "tf_kernels' XLA-fused elementwise regions",
    "modeling/test_model_inputs.py": "input checks of TF values (tf.string, tf.RaggedTensor, tf tensors)",
    "modeling/test_position.py": f"checks the position tables on tf tensors; {_SAME_ON_JAX}",
    "modeling/test_model.py": f"tf tensors (.numpy()), tf.function/XLA and TF's retracing log; {_SAME_ON_JAX}",
    "modeling/test_pooling.py": f"checks the pooling ops on tf tensors; {_SAME_ON_JAX}",
    "modeling/test_backends.py": "drives the JAX side from a TensorFlow process",
}


def _skip_tf_only(items):
    """Under a Keras backend other than TensorFlow, skip `tf_only`-marked tests and TF_ONLY_FILES."""
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        return
    for item in items:
        path = pathlib.Path(str(item.fspath)).resolve()
        path = path.relative_to(REPO / "tests").as_posix() if path.is_relative_to(REPO / "tests") else ""
        marker = item.get_closest_marker("tf_only")
        reason = (marker.kwargs.get("reason") if marker else None) or next(
            (why for prefix, why in TF_ONLY_FILES.items() if path.startswith(prefix)), None)
        if marker or reason:
            item.add_marker(pytest.mark.skip(reason=f"TensorFlow only (Keras backend {backend}): "
                                                    f"{reason or 'tf_only'}"))


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
