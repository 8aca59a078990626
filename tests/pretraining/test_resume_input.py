"""A replayed resume starts the input at the resume step: `Trainer` hands a dataset_fn that takes
`start_batch` the batch to start at (pretraining's reader skips serialized records up to it, see
tests/text/test_pretraining.py), and still skips whole batches of a dataset_fn that does not."""

import keras
import numpy as np

from funnel_tf.engine.loop import LoopConfig, Trainer
from funnel_tf.engine.optimization import make_optimizer
from funnel_tf.engine.strategy import make_strategy

from tests.engine import toy

BATCH = 8


def _trainer(model_dir, dataset_fn, steps):
    keras.utils.set_random_seed(1)  # same initial weights in every trainer
    # The input's position is the host's business: the step runs on TF's kernels (no XLA
    # compile per trainer).
    cfg = LoopConfig(train_steps=steps, global_batch_size=BATCH, seq_len=toy.L,
                     model_dir=str(model_dir), steps_per_loop=1, log_every=1, save_every=3,
                     data_resume="replay", jit_compile=False, jit_update=False)
    return Trainer(make_strategy("default"), toy.ToyObjective(),
                   lambda vs: make_optimizer(vs, 3e-2), dataset_fn, cfg)


def _losses(result):
    return {int(r["step"]): r["loss"] for r in result.history}


def test_replay_starts_a_start_batch_dataset_fn_at_the_resume_step_and_skips_any_other(tmp_path):
    """Resume the uninterrupted run's step-3 checkpoint to 6 twice (toy.stopped_at): once with a
    dataset_fn taking `start_batch` (asked to start at batch 3, nothing skipped after it), once
    with a plain `dataset_fn(ctx)` (built from 0, its first 3 batches skipped). Both continue
    with the losses of the uninterrupted run."""
    base, starts, plain_calls = toy.dataset_fn(BATCH), [], []

    def starting_fn(ctx, start_batch=0):
        starts.append(start_batch)
        return base(ctx).skip(start_batch)

    def plain_fn(ctx):
        plain_calls.append(ctx)
        return base(ctx)

    full = _losses(_trainer(tmp_path / "full", starting_fn, 6).train())
    for model_dir, fn in (("part", starting_fn), ("plain", plain_fn)):
        resumed = _trainer(toy.stopped_at(tmp_path / "full", tmp_path / model_dir, 3), fn,
                           6).train()
        assert resumed.start_step == 3 and resumed.step == 6
        got = _losses(resumed)
        np.testing.assert_allclose([got[k] for k in (4, 5, 6)], [full[k] for k in (4, 5, 6)],
                                   rtol=1e-6, err_msg=model_dir)
    assert starts == [0, 3]  # full run, resumed part (at batch 3)
    assert len(plain_calls) == 1
