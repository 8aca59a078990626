"""HF checkpoint import/export: every weight format, sharding, round trip, heads and clear errors."""

import json
import pathlib
import shutil
import struct
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from funnel_tf.checkpoints import CheckpointError, load_model
from funnel_tf.checkpoints.hf import (_read_safetensors_raw, export_hf, hf_config_dict, load_hf, read_safetensors,
                                      tf_name_to_hf)
from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.model import FunnelModel

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hf"
BODY = "model_default_L8"

pytestmark = pytest.mark.skipif(not (FIXTURES / "index.json").exists(),
                                reason=f"no HF fixtures at {FIXTURES} (run tools/make_hf_fixtures.py)")


def copy_case(tmp_path, case, edit=None, weights=True):
    """A copy of fixture `case` (config.json [+ model.safetensors, edited by `edit(dict)`])."""
    dst = tmp_path / case
    dst.mkdir()
    shutil.copy(FIXTURES / case / "config.json", dst)
    if weights:
        tensors = load_file(str(FIXTURES / case / "model.safetensors"))
        if edit:
            edit(tensors)
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def fixture_model():
    """fixture_model(case) -> load_hf(FIXTURES / case), loaded once per module: the reference the
    tests compare other loads with (read, never modified)."""
    cache = {}

    def get(case):
        if case not in cache:
            cache[case] = load_hf(str(FIXTURES / case))
        return cache[case]
    return get


def variables(model):
    return {v.path: v.numpy() for v in model.weights}


def assert_same_variables(a, b):
    va, vb = variables(a), variables(b)
    assert va.keys() == vb.keys()
    for k in va:
        np.testing.assert_array_equal(va[k], vb[k], err_msg=k)


def max_diff_to_fixture(model, case):
    inputs = dict(np.load(FIXTURES / case / "inputs.npz"))
    ref = np.load(FIXTURES / case / "outputs.npz")["last_hidden_state"]
    return float(np.max(np.abs(np.asarray(model(inputs)["last_hidden_state"]) - ref)))


# ------------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("weight_file", ["pytorch_model.bin", "tf_model.h5"])
def test_other_weight_formats_load_the_same_tensors(tmp_path, weight_file, fixture_model):
    if not (FIXTURES / BODY / weight_file).exists():
        pytest.skip(f"fixture has no {weight_file}")
    if weight_file.endswith(".bin"):
        pytest.importorskip("torch")
    d = tmp_path / "only"
    d.mkdir()
    shutil.copy(FIXTURES / BODY / "config.json", d)
    shutil.copy(FIXTURES / BODY / weight_file, d)
    model, report = load_hf(str(d), return_report=True)
    assert report.source.endswith(weight_file) and not report.skipped
    assert_same_variables(model, fixture_model(BODY))
    assert max_diff_to_fixture(model, BODY) <= 1e-5


def test_pytorch_bin_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    shutil.copy(FIXTURES / BODY / "config.json", d)
    (d / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(CheckpointError, match="needs torch"):
        load_hf(str(d))


def test_sharded_safetensors(tmp_path, fixture_model):
    d = tmp_path / "sharded"
    d.mkdir()
    shutil.copy(FIXTURES / BODY / "config.json", d)
    tensors = load_file(str(FIXTURES / BODY / "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(d / shard), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_same_variables(load_hf(str(d)), fixture_model(BODY))

    (d / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors listed in the index is missing"):
        load_hf(str(d))


def test_bf16_safetensors_are_read_as_float32(tmp_path):
    import ml_dtypes

    values = np.array([[1.5, -2.0, 0.25]], np.float32)
    raw = values.astype(ml_dtypes.bfloat16).tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1, 3], "data_offsets": [0, len(raw)]},
                         "__metadata__": {"format": "pt"}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    for out in (read_safetensors(str(path)), _read_safetensors_raw(str(path))):
        assert out["w"].dtype == np.float32
        np.testing.assert_array_equal(out["w"], values)


def test_tf_weight_names_map_to_pytorch_names_and_layouts():
    k = np.arange(6, dtype=np.float32).reshape(2, 3)
    name, arr = tf_name_to_hf("tf_funnel_model/funnel/encoder/blocks_._1_._0/attention/q_head/kernel:0", k)
    assert name == "funnel.encoder.blocks.1.0.attention.q_head.weight"
    np.testing.assert_array_equal(arr, k.T)
    assert tf_name_to_hf("x/funnel/decoder/layers_._0/ffn/layer_norm/gamma:0", k)[0] == \
        "funnel.decoder.layers.0.ffn.layer_norm.weight"
    name, arr = tf_name_to_hf("tf_funnel_model/funnel/encoder/blocks_._0_._0/attention/r_kernel:0", k)
    assert name.endswith("attention.r_kernel") and arr is k  # r_kernel is not a Dense kernel: no transpose
    assert tf_name_to_hf("tf_funnel_for_masked_lm/lm_head/bias:0", k[0])[0] == "lm_head.bias"
    assert tf_name_to_hf("m/classifier/linear_out/kernel:0", k)[0] == "classifier.linear_out.weight"


# ------------------------------------------------------------------------------------------ round trip
ROUND_TRIP_CASES = ["model_default_L8", "base_nh2_L8", "model_repeats_L16", "head_masked_lm_L8",
                    "head_pretraining_L11", "head_seq_cls_L8", "head_multiple_choice_L8", "head_token_cls_L7",
                    "head_qa_L11"]
CONFIG_KEYS = ["architectures", "vocab_size", "block_sizes", "block_repeats", "num_decoder_layers", "d_model",
               "n_head", "d_head", "d_inner", "hidden_act", "hidden_dropout", "attention_dropout",
               "activation_dropout", "initializer_range", "initializer_std", "layer_norm_eps", "pooling_type",
               "attention_type", "separate_cls", "truncate_seq", "pool_q_only", "pad_token_id",
               "tie_word_embeddings"]


@pytest.mark.parametrize("case", ROUND_TRIP_CASES)
def test_hf_to_ours_to_hf_is_bitwise_identical(tmp_path, case, fixture_model):
    model = fixture_model(case)
    written = export_hf(model, str(tmp_path / "out"))
    source = load_file(str(FIXTURES / case / "model.safetensors"))
    exported = load_file(written["weights"])
    assert sorted(exported) == sorted(source)
    for name, value in source.items():
        assert exported[name].dtype == value.dtype and exported[name].shape == value.shape, name
        assert exported[name].tobytes() == value.tobytes(), f"{name} changed in the round trip"
    with open(FIXTURES / case / "config.json") as f:
        src_cfg = json.load(f)
    with open(written["config"]) as f:
        out_cfg = json.load(f)
    for key in CONFIG_KEYS:
        assert out_cfg[key] == src_cfg[key], key
    if "id2label" in src_cfg:
        assert out_cfg["id2label"] == src_cfg["id2label"]


def test_export_refuses_what_hf_cannot_express(tmp_path):
    cfg = FunnelConfig(vocab_size=50, block_sizes=[1, 1], block_repeats=[2, 1], d_model=16, n_head=2, d_head=8,
                       d_inner=24, d_embed=8, decoder_repeats=2, mask_pooling="max")
    with pytest.raises(CheckpointError) as err:
        export_hf(FunnelModel(cfg), str(tmp_path / "out"))
    msg = str(err.value)
    for fragment in ("d_embed=8", "decoder_repeats=2", "block_repeats[0]=2", "mask_pooling='max'"):
        assert fragment in msg
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_mask_pooling_change_is_an_explicit_choice(tmp_path):
    """An original-release model (mask_pooling 'max') exports only when HF's 'min' is accepted."""
    model = load_hf(str(FIXTURES / BODY), mask_pooling="max")
    with pytest.raises(CheckpointError, match="allow_mask_pooling_change"):
        export_hf(model, str(tmp_path / "out"))
    export_hf(model, str(tmp_path / "out"), allow_mask_pooling_change=True)
    again = load_hf(str(tmp_path / "out"))
    assert again.config.mask_pooling == "min"
    assert again.config == model.config.replace(mask_pooling="min")


def test_hf_config_dict_reads_back_as_the_same_config(fixture_model):
    model = fixture_model("head_seq_cls_L8")
    again = FunnelConfig.from_hf_dict(hf_config_dict(model))
    assert again == model.config


# ------------------------------------------------------------------------------------------ heads
def test_head_class_and_num_labels_are_detected(fixture_model):
    model = fixture_model("head_seq_cls_L8")
    assert type(model).__name__ == "FunnelForSequenceClassification" and model.num_labels == 3
    assert type(fixture_model("head_multiple_choice_L8")).__name__ == "FunnelForMultipleChoice"


def test_head_checkpoint_as_backbone_skips_and_reports_the_rest(fixture_model):
    model, report = load_hf(str(FIXTURES / "head_masked_lm_L8"), model_class="base", return_report=True)
    assert type(model).__name__ == "FunnelBaseModel"
    assert "lm_head.bias" in report.skipped
    assert any(n.startswith("decoder.layers.0.") for n in report.skipped)
    full = fixture_model("head_masked_lm_L8")
    for a, b in zip(model.encoder.layers_flat, full.funnel.encoder.layers_flat):
        for va, vb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_missing_head_needs_allow_missing():
    with pytest.raises(CheckpointError) as err:
        load_hf(str(FIXTURES / BODY), model_class="token_cls", num_labels=5)
    assert "classifier.weight" in str(err.value) and "allow_missing" in str(err.value)
    model, report = load_hf(str(FIXTURES / BODY), model_class="token_cls", num_labels=5,
                            allow_missing=["head"], return_report=True)
    assert sorted(report.missing_allowed) == ["classifier.bias", "classifier.weight"]
    assert model.classifier.kernel.shape == (32, 5)
    _, report = load_hf(str(FIXTURES / BODY), model_class="token_cls", allow_missing=["classifier.*"],
                        return_report=True)
    assert len(report.missing_allowed) == 2


def test_tied_lm_head_weight(tmp_path, fixture_model):
    case = "head_masked_lm_L8"
    emb = "funnel.embeddings.word_embeddings.weight"
    same = copy_case(tmp_path, case, lambda t: t.update({"lm_head.weight": t[emb].copy()}))
    assert_same_variables(load_hf(str(same)), fixture_model(case))

    def only_head(t):
        t["lm_head.weight"] = t.pop(emb)
    (tmp_path / "b").mkdir()
    assert_same_variables(load_hf(str(copy_case(tmp_path / "b", case, only_head))), fixture_model(case))

    def untied(t):
        t["lm_head.weight"] = t[emb] + 1.0
    (tmp_path / "c").mkdir()
    with pytest.raises(CheckpointError, match="lm_head.weight differs from the word embeddings"):
        load_hf(str(copy_case(tmp_path / "c", case, untied)))


# ------------------------------------------------------------------------------------------ errors
def test_missing_tensor_is_named(tmp_path):
    d = copy_case(tmp_path, BODY, lambda t: t.pop("encoder.blocks.1.0.attention.r_kernel"))
    with pytest.raises(CheckpointError) as err:
        load_hf(str(d))
    assert err.value.missing == ["encoder.blocks.1.0.attention.r_kernel"]
    assert "missing from the checkpoint (1)" in str(err.value) and "model.safetensors" in str(err.value)


def test_unexpected_tensor_is_named(tmp_path):
    def add(t):
        t["encoder.blocks.0.0.attention.extra_bias"] = np.zeros(3, np.float32)
        t["pooler.dense.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(CheckpointError) as err:
        load_hf(str(copy_case(tmp_path, BODY, add)))
    assert err.value.unexpected == ["encoder.blocks.0.0.attention.extra_bias", "pooler.dense.weight"]
    assert not err.value.missing


def test_wrong_shape_is_named_with_both_shapes(tmp_path):
    def bad(t):
        t["encoder.blocks.0.0.ffn.linear_1.weight"] = t["encoder.blocks.0.0.ffn.linear_1.weight"][:30]
        t["encoder.blocks.0.0.attention.q_head.weight"] = np.zeros((33, 32), np.float32)
    with pytest.raises(CheckpointError) as err:
        load_hf(str(copy_case(tmp_path, BODY, bad)))
    assert err.value.mismatched == [("encoder.blocks.0.0.attention.q_head.weight", (33, 32), (32, 32)),
                                    ("encoder.blocks.0.0.ffn.linear_1.weight", (30, 32), (37, 32))]
    assert "(30, 32) vs (37, 32)" in str(err.value)


def test_failed_load_changes_nothing(tmp_path):
    """All-or-nothing: a checkpoint with one bad tensor must not half-load into an existing model."""
    from funnel_tf.checkpoints.hf import load_hf_weights

    model = load_hf(str(FIXTURES / BODY))
    before = variables(model)
    tensors = load_file(str(FIXTURES / BODY / "model.safetensors"))
    tensors = {k: v + 1.0 for k, v in tensors.items()}
    tensors.pop("decoder.layers.0.ffn.linear_2.bias")
    with pytest.raises(CheckpointError):
        load_hf_weights(model, tensors)
    after = variables(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_missing_config_json(tmp_path):
    d = tmp_path / "noconfig"
    d.mkdir()
    shutil.copy(FIXTURES / BODY / "model.safetensors", d)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf(str(d))
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(str(d))


def test_config_without_weights(tmp_path):
    d = copy_case(tmp_path, BODY, weights=False)
    with pytest.raises(CheckpointError, match="no HuggingFace weights"):
        load_model(str(d))


def test_wrong_format_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(str(tmp_path))
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(str(tmp_path / "absent"))


def test_non_funnel_config_is_rejected(tmp_path):
    d = copy_case(tmp_path, BODY)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "bert"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not a Funnel config"):
        load_hf(str(d))
