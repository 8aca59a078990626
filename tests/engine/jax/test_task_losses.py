"""The tasks' losses (tasks/losses.py, mlm.py, electra.py, classification.py, base.py) are keras.ops
code that both engines run: the same methods, on the same weights and batches, give the same
values on TensorFlow (eager) and on JAX (under jax.jit, as the JAX engine's step calls them)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("jax")

from tests.engine.jax import task_loss_driver as driver  # noqa: E402

pytestmark = pytest.mark.tf_only  # the TF side runs here; the JAX side in a subprocess

SAMPLING_FREE = ("gen_loss", "gen_correct", "gen_count", "disc_count")


def test_task_losses_agree_between_tensorflow_and_jax(tmp_path):
    want = driver.tf_side(str(tmp_path))
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=driver.ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, driver.__file__, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "jax.json").read_text())
    for name in ("mlm", "sst-2", "sts-b"):  # deterministic: every statistic agrees
        assert set(got[name]) == set(want[name]), name
        for k, v in want[name].items():
            assert got[name][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (name, k)
    assert got["sst-2"]["weight"] == 3.0 and "correct" in got["sst-2"]  # the weight-0 row
    assert set(got["sts-b"]) == {"_loss", "loss_sum", "weight"}
    # ELECTRA samples with each backend's RNG: what does not depend on the sample agrees, and
    # the JAX loss is generator + 50 x discriminator with replaced tokens among the masked ones.
    e, t = got["electra"], want["electra"]
    assert set(e) == set(t)
    for k in SAMPLING_FREE:
        assert e[k] == pytest.approx(t[k], rel=1e-5), k
    assert e["_loss"] == pytest.approx(e["gen_loss"] + 50 * e["disc_loss"], rel=1e-5)
    assert 0 < e["replaced"] <= e["gen_count"] == 4 * driver.P - 1
    assert e["disc_count"] == driver.B * driver.L - 5
    assert got["electra_same_key"] == e
    assert got["electra_other_key"]["disc_loss"] != e["disc_loss"]
