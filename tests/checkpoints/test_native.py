"""Our own checkpoint format: save_pretrained / from_pretrained round trips, class + head rebuild,
cross-class loads, and verification that catches a silently partial Keras load."""

import json
import shutil

import numpy as np
import pytest

from funnel_tf.checkpoints import CheckpointError, load_model
from funnel_tf.checkpoints.native import (MARKER_NAME, canonical_name, from_pretrained, load_native_weights,
                                          save_pretrained)
from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import heads
from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel

CFG = FunnelConfig(vocab_size=101, block_sizes=[1, 2], block_repeats=[1, 2], num_decoder_layers=1, d_model=16,
                   n_head=2, d_head=8, d_inner=24, initializer_std=0.2)


def inputs(batch=2, seq_len=9, num_choices=None):
    rng = np.random.RandomState(0)
    shape = (batch, num_choices, seq_len) if num_choices else (batch, seq_len)
    ids = rng.randint(0, CFG.vocab_size, shape).astype(np.int32)
    mask = np.ones_like(ids)
    mask[..., -2:] = 0
    types = np.zeros_like(ids)
    types[..., 0] = 2
    types[..., 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def perturbed(model):
    """Random values everywhere (LayerNorm params and biases too), so a mis-load cannot hide."""
    rng = np.random.RandomState(1)
    for v in model.weights:
        v.assign(rng.randn(*v.shape).astype(np.float32) * 0.2)
    return model


MODELS = [
    (FunnelModel, {}, {}),
    (FunnelBaseModel, {}, {}),
    (heads.FunnelForMaskedLM, {}, {}),
    (heads.FunnelForPreTraining, {}, {}),
    (heads.FunnelForSequenceClassification, {"num_labels": 3}, {}),
    (heads.FunnelForMultipleChoice, {}, {"num_choices": 3}),
    (heads.FunnelForTokenClassification, {"num_labels": 5}, {}),
    (heads.FunnelForQuestionAnswering, {}, {}),
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """saved(cls, **kwargs) -> (perturbed(cls(CFG, **kwargs)), the folder save_pretrained wrote it
    to): one build and one save per class in this module; tests read both, never modify them
    (copy the folder to tamper with it)."""
    cache = {}

    def get(cls, **kwargs):
        key = (cls, tuple(sorted(kwargs.items())))
        if key not in cache:
            model = perturbed(cls(CFG, **kwargs))
            folder = tmp_path_factory.mktemp(cls.__name__)
            save_pretrained(model, str(folder))
            cache[key] = model, folder
        return cache[key]
    return get


def copy_of(folder, tmp_path):
    """A writable copy of a saved folder."""
    return shutil.copytree(folder, tmp_path / "copy")


@pytest.mark.parametrize("cls,kwargs,input_kwargs", MODELS, ids=[m[0].__name__ for m in MODELS])
def test_round_trip_rebuilds_class_and_gives_identical_outputs(saved, cls, kwargs, input_kwargs):
    model, folder = saved(cls, **kwargs)
    loaded, report = from_pretrained(str(folder), return_report=True)
    assert type(loaded) is cls and loaded.config == CFG
    for key, value in kwargs.items():
        assert getattr(loaded, key) == value
    assert len(report.loaded) == len(model.weights)
    x = inputs(**input_kwargs)
    a, b = model(x, output_hidden_states=True), loaded(x, output_hidden_states=True)
    for key in a:
        if key == "hidden_states":
            for ha, hb in zip(a[key], b[key]):
                np.testing.assert_array_equal(np.asarray(ha), np.asarray(hb))
        else:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_original_style_model_round_trips(tmp_path):
    """d_embed != d_model, MLM transform and decoder repeats exist only in our format (not HF's)."""
    cfg = CFG.replace(d_embed=12, mlm_transform=True, decoder_repeats=2, always_mask_cls=True, separate_cls=False)
    model = perturbed(heads.FunnelForMaskedLM(cfg))
    save_pretrained(model, str(tmp_path))
    loaded = load_model(str(tmp_path))
    assert loaded.config == cfg and loaded.transform is not None
    x = inputs()
    np.testing.assert_array_equal(np.asarray(model(x)["logits"]), np.asarray(loaded(x)["logits"]))


def test_config_overrides_that_keep_shapes(saved):
    _, folder = saved(FunnelModel)
    loaded = from_pretrained(str(folder), hidden_dropout=0.3)
    assert loaded.config.hidden_dropout == 0.3
    with pytest.raises(CheckpointError, match="shape mismatch"):
        from_pretrained(str(folder), d_inner=32)


def test_backbone_into_head_model_needs_allow_missing(saved):
    body, folder = saved(FunnelModel)
    with pytest.raises(CheckpointError) as err:
        from_pretrained(str(folder), model_class="token_cls")
    assert err.value.missing == ["classifier/bias", "classifier/kernel"]
    model, report = from_pretrained(str(folder), model_class="token_cls", num_labels=4, allow_missing=["head"],
                                    return_report=True)
    assert isinstance(model, heads.FunnelForTokenClassification) and model.num_labels == 4
    assert report.missing_allowed == ["classifier/kernel", "classifier/bias"]
    x = inputs()
    np.testing.assert_array_equal(np.asarray(model(x)["last_hidden_state"]), np.asarray(body(x)["last_hidden_state"]))


def test_head_model_as_backbone_skips_and_reports(saved):
    _, folder = saved(heads.FunnelForMaskedLM)
    model, report = load_model(str(folder), model_class="base", return_report=True)
    assert isinstance(model, FunnelBaseModel) and not isinstance(model, FunnelModel)
    assert "lm_bias" in report.skipped and any(n.startswith("decoder/") for n in report.skipped)


def test_different_num_labels_is_refused(saved):
    _, folder = saved(heads.FunnelForSequenceClassification, num_labels=3)
    with pytest.raises(CheckpointError, match="num_labels=3, not 2"):
        from_pretrained(str(folder), num_labels=2)


def test_tampered_weights_are_detected(saved, tmp_path):
    """The manifest CRCs catch values that did not land where they were saved from."""
    tmp_path = copy_of(saved(FunnelModel)[1], tmp_path)
    marker = json.loads((tmp_path / MARKER_NAME).read_text())
    name = "encoder/layer_1/attention/r_kernel"
    marker["variables"][name]["crc32"] ^= 1
    (tmp_path / MARKER_NAME).write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="do not hold the saved values") as err:
        from_pretrained(str(tmp_path))
    assert name in str(err.value)


def test_loading_into_another_structure_names_the_variables(saved):
    _, folder = saved(FunnelModel)
    other = FunnelModel(CFG.replace(block_sizes=[1, 1], block_repeats=[1, 1]))
    with pytest.raises(CheckpointError) as err:
        load_native_weights(other, str(folder))
    assert any(n.startswith("encoder/layer_2/") for n in err.value.unexpected)
    assert all(n.startswith("decoder/layer_2/") for n in err.value.missing)


def test_names_do_not_depend_on_model_names(tmp_path):
    model = perturbed(FunnelModel(CFG, name="my_encoder"))
    assert canonical_name(model, model.weights[0]) == "embeddings/word_embeddings"
    save_pretrained(model, str(tmp_path))
    target = FunnelModel(CFG)
    load_native_weights(target, str(tmp_path))
    for a, b in zip(model.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_marker_or_weights(saved, tmp_path):
    tmp_path = copy_of(saved(FunnelModel)[1], tmp_path)
    (tmp_path / "model.weights.h5").rename(tmp_path / "moved.h5")
    with pytest.raises(CheckpointError, match="no model.weights.h5"):
        from_pretrained(str(tmp_path))
    (tmp_path / "moved.h5").rename(tmp_path / "model.weights.h5")
    (tmp_path / MARKER_NAME).unlink()
    with pytest.raises(CheckpointError, match="without funnel_tf.json"):
        load_model(str(tmp_path))
    with pytest.raises(CheckpointError, match="no funnel_tf.json"):
        from_pretrained(str(tmp_path))


def test_load_model_from_non_local_storage(saved):
    """model_dir on gs:// (ram:// here): load_model and from_pretrained find our format there, and
    an HF folder there is refused with the reason (only our format is read through tf.io.gfile)."""
    import uuid

    import tensorflow as tf

    root = f"ram://native_{uuid.uuid4().hex}"
    model, _ = saved(heads.FunnelForSequenceClassification, num_labels=3)
    x = inputs()
    want = model(x)["logits"]
    model.save_pretrained(f"{root}/m")
    for loaded in (load_model(f"{root}/m"),
                   heads.FunnelForSequenceClassification.from_pretrained(f"{root}/m")):
        np.testing.assert_allclose(loaded(x)["logits"], want, atol=1e-6)
    tf.io.gfile.makedirs(f"{root}/hf")
    with tf.io.gfile.GFile(f"{root}/hf/config.json", "w") as f:
        f.write("{}")
    with pytest.raises(CheckpointError, match="only our own format"):
        load_model(f"{root}/hf")
    tf.io.gfile.rmtree(root)
