"""Per-task finetuning recipes: values from the paper's repo, override rules, step arithmetic."""

import pytest

from funnel_tf.tasks import get_task, task_names
from funnel_tf.tasks.defaults import DEFAULTS, Hparams, default_hparams


def test_every_registered_task_has_a_valid_recipe():
    for name in task_names():
        if name == "csv":
            continue
        hp = get_task(name).default_hparams()
        hp.validate()
        assert hp.warmup_ratio == 0.1 and hp.source


@pytest.mark.parametrize("key,batch,lr,epochs", [
    ("cola", 16, 1e-5, 10), ("sst-2", 16, 1e-5, 10), ("mrpc", 16, 2e-5, 10), ("rte", 16, 2e-5, 10),
    ("qnli", 32, 2e-5, 3), ("mnli", 64, 1e-5, 3), ("qqp", 64, 2e-5, 5)])
def test_glue_recipes_match_the_repo_table(key, batch, lr, epochs):
    hp = default_hparams(key)
    assert (hp.batch_size, hp.learning_rate, hp.epochs, hp.max_seq_length) == (
        batch, lr, epochs, 128)
    assert hp.layer_decay == 1.0  # no layer-wise decay for GLUE in the repo scripts


def test_squad_race_imdb_recipes():
    squad = default_hparams("squad")
    assert (squad.batch_size, squad.learning_rate, squad.layer_decay, squad.train_steps,
            squad.warmup_steps, squad.max_seq_length) == (48, 3e-5, 0.75, 8000, 1000, 512)
    assert (squad.doc_stride, squad.max_query_length) == (128, 64)
    race = default_hparams("race")
    assert (race.batch_size, race.learning_rate, race.train_steps, race.warmup_steps,
            race.max_seq_length, race.max_qa_length) == (16, 2e-5, 24000, 2400, 512, 128)
    imdb = default_hparams("imdb")
    assert (imdb.batch_size, imdb.train_steps, imdb.warmup_steps, imdb.max_seq_length) == (
        32, 4000, 400, 512)


def test_replace_keeps_unset_flags_and_switches_length_kind():
    hp = default_hparams("squad")
    assert hp.replace(batch_size=None, learning_rate=None) == hp
    by_epochs = hp.replace(epochs=2.0)
    assert by_epochs.epochs == 2.0 and by_epochs.train_steps is None
    by_steps = default_hparams("cola").replace(train_steps=7)
    assert by_steps.train_steps == 7 and by_steps.epochs is None
    with pytest.raises(ValueError, match="layer_decay"):
        hp.replace(layer_decay=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        hp.replace(batch_size=0)


def test_step_arithmetic():
    hp = Hparams(batch_size=16, epochs=10.0)
    assert hp.total_steps(8551) == 5345  # CoLA: ceil(10 * 8551 / 16); the repo used 5350
    assert hp.num_warmup_steps(5345) == 534
    assert hp.steps_per_epoch(8551) == 534
    assert Hparams(train_steps=100, epochs=None, warmup_steps=400).num_warmup_steps(100) == 100
    assert Hparams(batch_size=32, epochs=1.0).total_steps(3) == 1


def test_unknown_key():
    with pytest.raises(KeyError, match="known"):
        default_hparams("nope")
    assert set(DEFAULTS) >= {"cola", "squad", "race", "imdb", "ag_news", "csv"}
