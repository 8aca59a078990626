"""Two MirroredStrategies in one process (issue 19.7): a notebook that fits a Keras model under one
strategy and then a funnel model under a new one. TF gives every MirroredStrategy the same
collective keys, so the second strategy's first all-reduce met the first one's record of the same
(group, instance) and aborted with "Shape mismatch in the collective instance 100". Fresh process:
the collective runtime keeps those records for the life of the process. The fix is
funnel_tf/engine/collective_keys.py: installed by engine/strategy.py, and by hand before a
strategy built outside the engine, as here.

The collision is in the all-reduce, not in XLA: both fits run on TF's kernels (jit_compile=False)
and the funnel has one block (no pooling), which halves what the subprocess traces; without
`collective_keys.install()` this script still aborts with the shape mismatch."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
ids = np.random.RandomState(0).randint(0, 50, (16, 12)).astype(np.int32)
labels = (ids[:, 0] % 2).astype(np.int32)
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

# 1. A plain Keras model under a first strategy, before funnel_tf is even imported.
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    plain = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    plain.compile("adam", loss, jit_compile=False)
plain.fit(ids.astype(np.float32), labels, batch_size=8, epochs=1, verbose=0)

# 2. A funnel model under a new strategy: its first all-reduce has another shape than the plain one's.
from funnel_tf.config import FunnelConfig
from funnel_tf.engine import collective_keys
from funnel_tf.modeling.heads import FunnelForSequenceClassification

collective_keys.install()  # what engine/strategy.py does for the strategies a run builds

class Classifier(keras.Model):
    def __init__(self):
        super().__init__()
        config = FunnelConfig(vocab_size=50, block_sizes=[1], num_decoder_layers=1, d_model=16,
                              n_head=2, d_head=8, d_inner=24)
        self.head = FunnelForSequenceClassification(config, num_labels=2)

    def call(self, x, training=False):
        return self.head({"input_ids": x}, training=training)["logits"]

with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    model = Classifier()
    model.compile("adam", loss, jit_compile=False)
history = model.fit(ids, labels, batch_size=8, epochs=1, verbose=0)
print("FIT", np.isfinite(history.history["loss"][-1]), flush=True)
"""


def test_funnel_fit_under_a_second_mirrored_strategy():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("FIT")] == ["FIT True"], \
        proc.stdout[-2000:]
