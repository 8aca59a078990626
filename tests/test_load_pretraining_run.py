"""A pretraining run's model_dir (what pretrain.py writes: config.json, pretrain_args.json,
checkpoints/ckpt-N) opens with load_model / Class.from_pretrained and converts with funnel-convert:
its newest checkpoint, or a given ckpt-N; a loose training checkpoint is one clear error.
One real tiny run (2 steps, a checkpoint after each) is shared by the module."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import FunnelBaseModel, FunnelForMaskedLM, FunnelForSequenceClassification, convert, load_model
from funnel_tf.checkpoints import CheckpointError, resolve
from funnel_tf.pretraining.defaults import DEMO_CORPUS, DEMO_VOCAB
from funnel_tf.pretraining.args import PretrainArgs
from funnel_tf.pretraining.run import run_pretraining

IDS = (np.arange(32).reshape(2, 16) * 7 % 900).astype(np.int32)
OVERRIDE = ["d_model=16", "n_head=2", "d_head=8", "d_inner=32", "block_sizes=[1,1]", "block_repeats=[1,1]",
            "num_decoder_layers=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(open(DEMO_CORPUS, encoding="utf-8").read().split("\n\n")[:20]))
    model_dir = root / "run"
    run_pretraining(PretrainArgs(
        model_dir=str(model_dir), train_data=[str(corpus)], vocab=str(DEMO_VOCAB), config="tiny",
        config_override=OVERRIDE,
        train_steps=2, save_every=1, steps_per_loop=1, log_every=1, batch_size=2, seq_len=16,
        learning_rate=1e-2, warmup_steps=0, jit_compile="false"))
    assert sorted(p for p in os.listdir(model_dir / "checkpoints") if p.endswith(".index")) == \
        ["ckpt-1.index", "ckpt-2.index"]
    return model_dir


@pytest.fixture(scope="module")
def newest(run_dir):
    """load_model on the run: its newest checkpoint (shared: several tests compare with it)."""
    return load_model(str(run_dir), return_report=True)


def _stored(prefix, key):
    return tf.train.load_checkpoint(str(prefix)).get_tensor(key)


def test_load_model_takes_the_newest_checkpoint_or_a_given_one(run_dir, newest):
    ckpts = run_dir / "checkpoints"
    assert resolve(str(run_dir)).kind == "pretraining_run"
    model, report = newest
    assert type(model) is FunnelForMaskedLM and report.source.endswith("ckpt-2")
    assert not report.missing_allowed and len(report.loaded) == len(model.weights)
    key = "model/lm_bias/.ATTRIBUTES/VARIABLE_VALUE"  # the head too, exactly as the run saved it
    np.testing.assert_array_equal(model.lm_bias.numpy(), _stored(ckpts / "ckpt-2", key))
    assert np.abs(model.lm_bias.numpy()).max() > 0  # trained, not the zero init

    first = load_model(str(ckpts / "ckpt-1"))  # an explicit checkpoint
    np.testing.assert_array_equal(first.lm_bias.numpy(), _stored(ckpts / "ckpt-1", key))
    assert not np.allclose(first(IDS)["logits"], model(IDS)["logits"])
    again = FunnelForMaskedLM.from_pretrained(str(ckpts))  # the checkpoints/ folder: its newest
    np.testing.assert_array_equal(again(IDS)["logits"], model(IDS)["logits"])

    base = FunnelBaseModel.from_pretrained(str(run_dir))  # any class: backbone by name
    np.testing.assert_allclose(base(IDS)["last_hidden_state"],
                               model.funnel.encoder(model.funnel.embeddings(IDS), tf.ones_like(IDS),
                                                    tf.zeros_like(IDS))["last_hidden_state"], atol=1e-6)
    clf = FunnelForSequenceClassification.from_pretrained(str(run_dir), num_labels=3)  # a new head (warns)
    assert clf(IDS)["logits"].shape == (2, 3)


def test_funnel_convert_takes_a_run(run_dir, newest, tmp_path, capsys):
    assert convert.main([str(run_dir), str(tmp_path / "native"), "--to", "native"]) == 0
    out = capsys.readouterr().out
    assert "(pretraining run) -> FunnelForMaskedLM: loaded" in out and "max abs output difference 0" in out
    np.testing.assert_array_equal(load_model(str(tmp_path / "native"))(IDS)["logits"],
                                  newest[0](IDS)["logits"])


def test_a_loose_or_empty_run_is_one_clear_error(run_dir, tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in os.listdir(run_dir / "checkpoints"):
        if name.startswith("ckpt-1."):
            shutil.copy(run_dir / "checkpoints" / name, loose / name)
    with pytest.raises(CheckpointError, match="not inside a pretraining run folder: pass the run's model_dir"):
        load_model(str(loose / "ckpt-1"))
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "pretrain_args.json"):
        shutil.copy(run_dir / name, empty / name)
    with pytest.raises(CheckpointError, match="a pretraining run without a usable checkpoint"):
        load_model(str(empty))


def test_init_checkpoint_is_resolved_once_through_a_run(run_dir, tmp_path, monkeypatch):
    """--init_checkpoint (here: the run above) is resolved once, during the run's checks; the loop's
    warm start gets that answer (a Resolved) and resolves nothing again. The run stops there."""
    from funnel_tf.checkpoints import init_checkpoint, resolver

    calls, handed = [], []
    real = resolver.resolve

    def counting(path):
        calls.append(path)
        return real(path)

    class Stop(Exception):
        pass

    def warm_start(backbone, init, models=None):
        handed.append(init)
        raise Stop

    monkeypatch.setattr(resolver, "resolve", counting)
    monkeypatch.setattr(init_checkpoint, "resolve", counting)
    monkeypatch.setattr(init_checkpoint, "load_init_checkpoint", warm_start)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(open(DEMO_CORPUS, encoding="utf-8").read().split("\n\n")[:20]))
    with pytest.raises(Stop):
        run_pretraining(PretrainArgs(
            model_dir=str(tmp_path / "next"), train_data=[str(corpus)], vocab=str(DEMO_VOCAB), config="tiny",
            config_override=OVERRIDE,
            train_steps=1, steps_per_loop=1, batch_size=2, seq_len=16, jit_compile="false",
            init_checkpoint=str(run_dir)))
    assert calls == [str(run_dir)]
    assert isinstance(handed[0], resolver.Resolved) and handed[0].kind == "pretraining_run"
