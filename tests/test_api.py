"""The public API: top-level names, Class.from_pretrained for our / HF / original folders,
save_pretrained, package resources, quiet entry points, and the README quickstart."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import funnel_tf
from funnel_tf import (FunnelBaseModel, FunnelForMaskedLM, FunnelForMultipleChoice, FunnelForPreTraining,
                       FunnelForQuestionAnswering, FunnelForSequenceClassification, FunnelForTokenClassification,
                       FunnelModel, load_model)
from funnel_tf.checkpoints import CheckpointError, from_pretrained
from funnel_tf.registry import UnknownModelClassError

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "hf"
TINY = funnel_tf.FunnelConfig(vocab_size=50, block_sizes=[1, 1], num_decoder_layers=1, d_model=16, n_head=2,
                              d_head=8, d_inner=24)
ALL_CLASSES = [FunnelBaseModel, FunnelModel, FunnelForMaskedLM, FunnelForPreTraining, FunnelForSequenceClassification,
               FunnelForMultipleChoice, FunnelForTokenClassification, FunnelForQuestionAnswering]


def _body(model):
    return model if isinstance(model, FunnelBaseModel) else model.funnel


def _same_body(a, b, atol=0.0):
    """Equal embedding and encoder weights (what every class shares)."""
    wa = {v.path.split("/", 1)[-1]: v.numpy() for v in _body(a).encoder.weights + _body(a).embeddings.weights}
    wb = {v.path.split("/", 1)[-1]: v.numpy() for v in _body(b).encoder.weights + _body(b).embeddings.weights}
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], atol=atol, err_msg=k)


def test_import_is_light_and_names_are_public():
    code = ("import sys, funnel_tf; assert 'tensorflow' not in sys.modules, 'import funnel_tf loaded TF'; "
            "from funnel_tf import FunnelConfig, load_config; assert 'tensorflow' not in sys.modules; "
            "print(sorted(funnel_tf.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(funnel_tf.__all__)
    assert {c.__name__ for c in ALL_CLASSES} | {"FunnelConfig", "load_config", "FunnelTokenizer",
                                                 "FunnelTextClassifier", "load_model"} <= names
    assert funnel_tf.FunnelTokenizer.__module__ == "funnel_tf.tokenizer"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        funnel_tf.Nope  # noqa: B018


def test_every_class_from_our_folder_and_save_pretrained(tmp_path):
    """One pretrained FunnelForPreTraining (body + decoder + head), loaded as every class."""
    source = FunnelForPreTraining(TINY)
    source.save_pretrained(str(tmp_path / "ours"))
    for cls in ALL_CLASSES:
        model = cls.from_pretrained(str(tmp_path / "ours"))
        assert type(model) is cls
        _same_body(model, source)
        if cls is FunnelForPreTraining:  # the saved class itself: every weight, head included
            assert len(model.weights) == len(source.weights)
            for a, b in zip(model.weights, source.weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # checkpoints.from_pretrained / load_model: the same detection, the checkpoint's own class by default.
    assert type(from_pretrained(str(tmp_path / "ours"))) is FunnelForPreTraining
    assert type(load_model(str(tmp_path / "ours"), model_class=FunnelBaseModel)) is FunnelBaseModel


def test_hf_folder_for_backbones_and_heads(tmp_path):
    hf_model = FIXTURES / "model_default_L8"
    full = FunnelModel.from_pretrained(str(hf_model))
    base = FunnelBaseModel.from_pretrained(str(hf_model))  # decoder tensors skipped
    _same_body(full, base)
    # checkpoints.from_pretrained used to read only our own format ("no funnel_tf.json").
    assert type(from_pretrained(str(hf_model))) is FunnelModel
    # A head on a backbone checkpoint: fresh head (num_labels as asked), body from the checkpoint.
    clf = FunnelForSequenceClassification.from_pretrained(str(hf_model), num_labels=5)
    assert clf.num_labels == 5
    _same_body(clf, full)
    with pytest.raises(CheckpointError, match="classifier"):
        FunnelForSequenceClassification.from_pretrained(str(hf_model), allow_missing=())
    # A head checkpoint keeps its head and its num_labels.
    head = FunnelForSequenceClassification.from_pretrained(str(FIXTURES / "head_seq_cls_L8"))
    assert head.num_labels == load_model(str(FIXTURES / "head_seq_cls_L8")).num_labels
    qa = FunnelForQuestionAnswering.from_pretrained(str(FIXTURES / "head_qa_L11"))
    qa.save_pretrained(str(tmp_path / "qa"))
    _same_body(FunnelForQuestionAnswering.from_pretrained(str(tmp_path / "qa")), qa)


def test_original_release_folder(shared_data):
    folder = shared_data / "original_tf1" / "B2-1-1_D2_sepcls_mean_electra"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    disc = FunnelForPreTraining.from_pretrained(str(folder))
    base = FunnelBaseModel.from_pretrained(str(folder))
    _same_body(disc, base)


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        FunnelModel.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(UnknownModelClassError, match="unknown model class 'nope'"):
        load_model(str(FIXTURES / "model_default_L8"), model_class="nope")
    assert issubclass(UnknownModelClassError, funnel_tf.UserError)


def test_configs_and_demo_data_come_from_resources():
    from funnel_tf import resources

    assert os.path.isfile(os.path.join(resources.configs_dir(), "small.json"))
    assert os.path.isfile(resources.demo_corpus_path()) and os.path.isfile(resources.demo_vocab_path())
    assert funnel_tf.load_config("tiny") == funnel_tf.FunnelConfig.from_json_file(
        os.path.join(resources.configs_dir(), "tiny.json"))


def test_quiet_tensorflow_keeps_a_level_the_user_set(monkeypatch):
    """What it hides when the user set no level, in a fresh process: tests/test_logs.py."""
    from funnel_tf import logs

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert logs.quiet_tensorflow() is False and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"  # the user's choice


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path):
    """The README's "Using it" block, as written, against a tiny HF folder (trains one epoch)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import readme_quickstart
    finally:
        sys.path.pop(0)
    scope = readme_quickstart.run(str(REPO / "README.md"), str(tmp_path))
    assert scope["logits"].shape == (2, 2) and np.isfinite(scope["logits"]).all()
    assert scope["hidden"].shape[:2] == (2, 32)
    assert (tmp_path / "my-classifier" / "vocab.txt").exists()
    assert (tmp_path / "my-classifier-savedmodel" / "saved_model.pb").exists()
    assert (tmp_path / "my-classifier-savedmodel" / "README.txt").exists()
