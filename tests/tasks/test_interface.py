"""One Task interface: MLM, ELECTRA, GLUE, RACE and SQuAD all build, compute their loss and report
their metrics through the same methods the engine calls; bind() gives each run its own
models; one cross-entropy + accuracy."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import Task, get_task
from funnel_tf.tasks.base import FinetuningTask
from funnel_tf.tasks.electra import ElectraTask
from funnel_tf.tasks.losses import cross_entropy_and_correct
from funnel_tf.tasks.mlm import MaskedLMTask
from funnel_tf.tasks.pretraining import pretraining_task
from tests.tasks.mlm_features import tiny_config

B, L, P = 2, 8, 2


def _batch(task, vocab_size):
    """A tiny batch holding every feature `task` reads ([B, L] inputs; RACE [B, 4, L])."""
    shape = [B, 4, L] if task.name == "race" else [B, L]
    ids = tf.random.stateless_uniform(shape, [1, 2], 5, vocab_size, tf.int32)
    f = {"input_ids": ids, "attention_mask": tf.ones_like(ids), "token_type_ids": tf.zeros_like(ids),
         "example_weight": tf.constant([1.0, 0.0]), "label": tf.constant([1, 0]),
         "masked_positions": tf.constant([[1, 3], [2, 0]]), "masked_ids": tf.constant([[7, 8], [9, 0]]),
         "masked_weights": tf.constant([[1.0, 1.0], [1.0, 0.0]]),
         "p_mask": tf.zeros_like(ids, tf.float32), "start_positions": tf.constant([1, 2]),
         "end_positions": tf.constant([2, 3]), "is_impossible": tf.constant([0, 1])}
    return f


@pytest.mark.parametrize("name", ["mlm", "electra", "sst-2", "race", "squad_v2.0"])
def test_every_task_trains_through_the_same_methods(name):
    config = tiny_config()  # 2 blocks of 1 layer, 1 decoder layer, vocab 64
    if name in ("mlm", "electra"):
        task = pretraining_task(name, config)
    else:
        task = get_task(name).bind(config)
    assert isinstance(task, Task)
    assert isinstance(task, FinetuningTask) == (name not in ("mlm", "electra"))
    task.build()
    assert task.backbone in [m.funnel for m in task.models.values()]
    assert len(task.trainable_variables) == len({id(v) for v in task.trainable_variables})
    features = _batch(task, config.vocab_size)

    normalizers = task.local_normalizers(features)  # eager: the engine tests compile them
    loss, stats = task.loss_and_stats(features, normalizers, training=False,
                                      seed=tf.constant([3, 4]))
    assert loss.shape == () and np.isfinite(float(loss))
    for metric, (num, den) in task.metrics.items():  # every reported metric has its stats
        assert num in stats and (den is None or den in stats), metric


def test_bind_gives_each_run_its_own_models(micro_config):
    task = get_task("sst-2")
    first, second = task.bind(micro_config), task.bind(micro_config)
    first.build()
    second.build()
    assert first.model is not second.model and first.config is micro_config
    with pytest.raises(RuntimeError, match="build"):
        task.models  # the registry's task itself holds no models
    model = first.model
    again = task.bind(micro_config, {"model": model})
    again.build()  # already built: trains the model it was given
    assert again.model is model


def test_pretraining_task_names():
    assert isinstance(pretraining_task("electra", None, disc_weight=2.0), ElectraTask)
    assert isinstance(pretraining_task("mlm", None), MaskedLMTask)
    with pytest.raises(ValueError, match="unknown objective"):
        pretraining_task("bert", None)


def test_cross_entropy_and_correct_match_numpy():
    r = np.random.RandomState(0)
    logits = r.randn(3, 4, 5).astype(np.float32)
    labels = r.randint(0, 5, (3, 4))
    ce, correct = cross_entropy_and_correct(tf.constant(logits), tf.constant(labels))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(ce.numpy(), -np.take_along_axis(logp, labels[..., None], -1)[..., 0],
                               rtol=1e-5)
    np.testing.assert_array_equal(correct.numpy(), (logits.argmax(-1) == labels).astype(np.float32))
