"""save_pretrained never silently replaces files: a folder that is not empty (the user's own
files, or an earlier save) is refused before anything is written, unless overwrite=True."""

import json

import numpy as np
import pytest

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelModel, FunnelTextClassifier, FunnelTokenizer
from funnel_tf.checkpoints import CheckpointError
from funnel_tf.errors import UserError
from funnel_tf.resources import demo_vocab_path

TINY = FunnelConfig(vocab_size=50, block_sizes=[1, 1], num_decoder_layers=1, d_model=16, n_head=2, d_head=8,
                    d_inner=24)


def _user_folder(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "experiment settings"}\n')
    (folder / "notes.txt").write_text("keep me\n")
    return folder


def test_model_save_pretrained_refuses_a_folder_with_other_files(tmp_path):
    folder = _user_folder(tmp_path)
    model = FunnelModel(TINY)
    with pytest.raises(CheckpointError, match=r"config\.json, which this save would replace.*notes\.txt.*"
                                              r"overwrite=True") as e:
        model.save_pretrained(str(folder))
    assert isinstance(e.value, UserError)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "notes.txt"]  # nothing written
    assert json.loads((folder / "config.json").read_text()) == {"my": "experiment settings"}

    # Our own earlier save is not replaced silently either.
    model.save_pretrained(str(tmp_path / "saved"))
    with pytest.raises(CheckpointError, match="funnel_tf.json, model.weights.h5, which this save would replace"):
        model.save_pretrained(str(tmp_path / "saved"))
    # overwrite=True replaces our three files and keeps the user's others.
    model.save_pretrained(str(folder), overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me\n"
    again = FunnelModel.from_pretrained(str(folder))
    np.testing.assert_array_equal(again.weights[0].numpy(), model.weights[0].numpy())
    # A file where the folder should be.
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        model.save_pretrained(str(tmp_path / "file"), overwrite=True)


def test_classifier_save_pretrained_refuses_before_writing(tmp_path):
    config = TINY.replace(vocab_size=FunnelTokenizer(demo_vocab_path()).vocab_size)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(config, num_labels=2),
                               FunnelTokenizer(demo_vocab_path(), sequence_length=16), label_names=["no", "yes"])
    folder = _user_folder(tmp_path)
    with pytest.raises(CheckpointError, match="overwrite=True"):
        clf.save_pretrained(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "notes.txt"]
    clf.save_pretrained(str(tmp_path / "clf"))
    with pytest.raises(CheckpointError, match="text_classifier.json"):
        clf.save_pretrained(str(tmp_path / "clf"))
    clf.save_pretrained(str(tmp_path / "clf"), overwrite=True)
    clf.save_pretrained(str(folder), overwrite=True)
    assert (folder / "notes.txt").exists()
    assert FunnelTextClassifier.from_pretrained(str(folder)).label_names == ["no", "yes"]
