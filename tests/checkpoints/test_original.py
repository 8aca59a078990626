"""Original TF1 release import, checked against outputs of the original code (oracles in
../shared/data/original_tf1/, made by running laiguokun/Funnel-Transformer's modeling.py), plus the
variable layout rules (ELECTRA sign flip, skipped optimizer/generator state, clear errors)."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.checkpoints import CheckpointError, load_model
from funnel_tf.checkpoints.original import load_original, original_inputs

ELECTRA = "B2-1-1_D2_sepcls_mean_electra"
NOSEP_MLM = "B1x2-2_D1x2_nosep_max_fullpool_emb24_mlm"
ATOL = 1e-5

def oracle_dir(shared_data, name):
    path = shared_data / "original_tf1" / name
    if not path.is_dir():
        pytest.skip(f"original oracle {name} not found at {path}")
    return path


def oracle_inputs(path):
    raw = dict(np.load(path / "inputs.npz"))
    return original_inputs(raw["input_ids"], raw["seg_id"], raw["input_mask"])


def our_outputs(model, inputs):
    """Our tensors under the oracle's names (`encoder_hidden_i` = i-th layer application, ...)."""
    out = model(inputs, output_hidden_states=True)
    cfg = model.config
    n_enc = sum(s * r for s, r in zip(cfg.block_sizes, cfg.block_repeats))
    hidden = out["hidden_states"]
    got = {"embedding": model.funnel.embeddings(inputs["input_ids"]),  # before input_projection
           "encoder_output": hidden[n_enc], "decoder_input_upsampled": hidden[n_enc + 1],
           "decoder_output": out["last_hidden_state"]}
    got.update({f"encoder_hidden_{i}": hidden[1 + i] for i in range(n_enc)})
    got["lm_logits"] = out["logits"]
    got["binary_logits"] = -out["logits"]  # original: positive = original token; ours: positive = replaced
    return {k: np.asarray(v) for k, v in got.items()}


def oracle_diffs(path, attention_type, model=None):
    """Max abs diff per oracle output of `model` (default: load_original(path, attention_type))."""
    model = model or load_original(str(path), attention_type=attention_type)
    ref = dict(np.load(path / ("outputs.npz" if attention_type == "relative_shift" else "outputs_factorized.npz")))
    got = our_outputs(model, oracle_inputs(path))
    diffs = {}
    for key, value in ref.items():
        assert got[key].shape == value.shape, key
        diffs[key] = float(np.max(np.abs(got[key] - value)))
    return diffs


@pytest.fixture(scope="module")
def loaded(shared_data):
    """loaded(name) -> (load_original(oracle `name`) with its defaults, its relative_shift oracle
    diffs), once per module: read by every test that needs the default load (never modified)."""
    cache = {}

    def get(name):
        if name not in cache:
            path = oracle_dir(shared_data, name)
            model = load_original(str(path))
            cache[name] = model, oracle_diffs(path, "relative_shift", model)
        return cache[name]
    return get


@pytest.mark.parametrize("attention_type", ["relative_shift", "factorized"])
@pytest.mark.parametrize("name", [ELECTRA, NOSEP_MLM])
def test_matches_original_code_outputs(shared_data, loaded, name, attention_type):
    # relative_shift is load_original's default attention_type
    diffs = (loaded(name)[1] if attention_type == "relative_shift"
             else oracle_diffs(oracle_dir(shared_data, name), attention_type))
    assert len(diffs) == 9
    bad = {k: v for k, v in diffs.items() if v > ATOL}
    assert not bad, f"{name} ({attention_type}): differs from the original by more than {ATOL}: {bad}"


def test_nosep_oracle_needs_the_original_mask_pooling(shared_data, loaded):
    """The original min-pools its 1 = pad mask (a pooled key slot stays if ANY member is real); HF pools
    the 1 = attend mask with min (dropped if any member is padding). This oracle (pool_q_only=False, row 1
    pairs tokens 10|11 across the padding boundary) tells them apart; the ELECTRA one cannot."""
    path = oracle_dir(shared_data, NOSEP_MLM)
    assert loaded(NOSEP_MLM)[0].config.mask_pooling == "max"
    model = load_original(str(path), mask_pooling="min")
    ref = dict(np.load(path / "outputs.npz"))
    got = our_outputs(model, oracle_inputs(path))
    assert np.max(np.abs(got["encoder_hidden_1"] - ref["encoder_hidden_1"])) <= ATOL  # before pooling
    assert np.max(np.abs(got["encoder_hidden_2"] - ref["encoder_hidden_2"])) > 1e-2  # the pooling layer
    electra = oracle_dir(shared_data, ELECTRA)
    same = our_outputs(load_original(str(electra), mask_pooling="min"), oracle_inputs(electra))
    ref = dict(np.load(electra / "outputs.npz"))
    assert max(float(np.max(np.abs(same[k] - ref[k]))) for k in ref) <= ATOL


def test_nosep_oracle_exercises_what_it_should(loaded):
    """separate_cls=False, pool_q_only=False, block + decoder repeats, d_embed != d_model, max pooling."""
    model, diffs = loaded(NOSEP_MLM)
    cfg = model.config
    assert (cfg.separate_cls, cfg.pool_q_only, cfg.pooling_type) == (False, False, "max")
    assert cfg.block_repeats == [2, 1] and cfg.decoder_repeats == 2 and cfg.d_embed == 24
    assert cfg.layer_norm_eps == 1e-8 and cfg.always_mask_cls and cfg.mlm_transform
    assert model.funnel.encoder.input_projection is not None
    # Up to the first pooling layer the original and ours agree exactly as for the ELECTRA oracle.
    assert max(diffs[k] for k in ("embedding", "encoder_hidden_0", "encoder_hidden_1")) <= ATOL


def test_electra_head_is_sign_flipped(shared_data, loaded):
    path = oracle_dir(shared_data, ELECTRA)
    model = loaded(ELECTRA)[0]
    assert type(model).__name__ == "FunnelForPreTraining"
    reader = tf.train.load_checkpoint(str(path / "model.ckpt"))
    w, b = reader.get_tensor("model/binary_loss/weight"), reader.get_tensor("model/binary_loss/bias")
    np.testing.assert_array_equal(model.dense_prediction.kernel.numpy(), -w[:, None])
    np.testing.assert_array_equal(model.dense_prediction.bias.numpy(), -b)
    np.testing.assert_array_equal(model.dense.kernel.numpy(), reader.get_tensor("model/binary_proj/dense/kernel"))


# ------------------------------------------------------------------------------------------ layout rules
def write_checkpoint(directory, tensors, net_config_src=None):
    """A TF1-style (name-keyed) checkpoint `directory/model.ckpt-7` from {name: array}."""
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(directory / "model.ckpt-7"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tf.constant(tensors[n]) for n in names])
    if net_config_src is not None:
        shutil.copy(net_config_src, directory / "net_config.json")
    return directory


def read_all(path):
    reader = tf.train.load_checkpoint(str(path / "model.ckpt"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def electra_tensors(shared_data):
    return read_all(oracle_dir(shared_data, ELECTRA))


@pytest.fixture
def electra_config(shared_data):
    return oracle_dir(shared_data, ELECTRA) / "net_config.json"


def test_optimizer_slots_global_step_and_generator_are_skipped(tmp_path, electra_tensors, electra_config,
                                                               loaded):
    tensors = dict(electra_tensors)
    tensors["model/encoder/layer_0/rel_attn/q/kernel/adam_m"] = np.zeros((32, 2, 16), np.float32)
    tensors["model/encoder/layer_0/rel_attn/q/kernel/adam_v"] = np.zeros((32, 2, 16), np.float32)
    tensors["global_step"] = np.array(7, np.int64)
    tensors["generator/model/input/word_embedding/lookup_table"] = np.zeros((100, 8), np.float32)
    d = write_checkpoint(tmp_path / "full", tensors, electra_config)
    model, report = load_model(str(d), return_report=True)
    assert report.format == "original" and report.source.endswith("model.ckpt-7")
    assert set(report.skipped) == {"global_step", "generator/model/input/word_embedding/lookup_table",
                                   "model/encoder/layer_0/rel_attn/q/kernel/adam_m",
                                   "model/encoder/layer_0/rel_attn/q/kernel/adam_v"}
    reference = loaded(ELECTRA)[0]
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_errors_name_missing_unexpected_and_mis_shaped(tmp_path, electra_tensors, electra_config):
    tensors = dict(electra_tensors)
    del tensors["model/encoder/layer_2/rel_attn/r_s_bias"]
    tensors["model/encoder/layer_1/rel_attn/extra"] = np.zeros(3, np.float32)
    tensors["model/decoder/layer_4/ff/layer_1/kernel"] = np.zeros((32, 47), np.float32)
    with pytest.raises(CheckpointError) as err:
        load_original(str(write_checkpoint(tmp_path / "bad", tensors, electra_config)))
    assert err.value.missing == ["model/encoder/layer_2/rel_attn/r_s_bias"]
    assert err.value.unexpected == ["model/encoder/layer_1/rel_attn/extra"]
    assert err.value.mismatched == [("model/decoder/layer_4/ff/layer_1/kernel", (32, 47), (32, 48))]


def test_missing_net_config_and_missing_checkpoint(tmp_path, electra_tensors):
    d = write_checkpoint(tmp_path / "noconfig", electra_tensors)
    with pytest.raises(CheckpointError, match="no net_config.json"):
        load_original(str(d))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "net_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no TF checkpoint"):
        load_original(str(tmp_path / "empty"))


def test_checkpoint_prefix_and_explicit_net_config(tmp_path, electra_tensors, electra_config):
    d = write_checkpoint(tmp_path / "ck", electra_tensors)
    model = load_original(str(d / "model.ckpt-7"), net_config=str(electra_config))
    assert type(model).__name__ == "FunnelForPreTraining"


def test_model_class_choice_skips_or_requires_heads(shared_data):
    path = str(oracle_dir(shared_data, ELECTRA))
    _, report = load_original(path, model_class="full", return_report=True)
    assert {"model/binary_loss/weight", "model/binary_loss/bias"} <= set(report.skipped)
    _, report = load_original(path, model_class="base", return_report=True)
    assert any(n.startswith("model/decoder/layer_4/") for n in report.skipped)
    with pytest.raises(CheckpointError) as err:
        load_original(path, model_class="mlm")
    assert "model/lm_loss/bias" in err.value.missing and "allow_missing" in str(err.value)
    _, report = load_original(path, model_class="mlm", allow_missing=["head"], return_report=True)
    assert "model/lm_loss/bias" in report.missing_allowed


def test_finetuned_classification_layout(tmp_path, electra_tensors, electra_config):
    """`sequnece_summary/summary` (sic) + `<task>/logit` -> FunnelForSequenceClassification."""
    tensors = {k: v for k, v in electra_tensors.items() if not k.startswith(("model/binary", "model/decoder"))}
    rng = np.random.RandomState(0)
    tensors.update({"model/sequnece_summary/summary/kernel": rng.randn(32, 32).astype(np.float32),
                    "model/sequnece_summary/summary/bias": rng.randn(32).astype(np.float32),
                    "model/sts-b/logit/kernel": rng.randn(32, 1).astype(np.float32),
                    "model/sts-b/logit/bias": rng.randn(1).astype(np.float32)})
    model = load_original(str(write_checkpoint(tmp_path / "ft", tensors, electra_config)))
    assert type(model).__name__ == "FunnelForSequenceClassification" and model.num_labels == 1
    np.testing.assert_array_equal(model.classifier.linear_out.kernel.numpy(), tensors["model/sts-b/logit/kernel"])
    np.testing.assert_array_equal(model.classifier.linear_hidden.bias.numpy(),
                                  tensors["model/sequnece_summary/summary/bias"])


def test_original_config_reader(shared_data):
    path = oracle_dir(shared_data, ELECTRA)
    with open(path / "net_config.json") as f:
        raw = json.load(f)
    model = load_original(str(path), truncate_seq=False)
    cfg = model.config
    assert cfg.block_sizes == [2, 1, 1] and cfg.num_decoder_layers == int(raw["decoder_size"])
    assert cfg.truncate_seq is False and cfg.separate_cls is True and cfg.pooling_type == "mean"
