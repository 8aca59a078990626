"""FunnelConfig: JSON round trip, HF/original readers, validation errors, sequence-length checks."""

import json

import pytest

from funnel_tf.config import ConfigError, FunnelConfig, load_config


def test_json_round_trip(tmp_path):
    cfg = FunnelConfig(block_sizes=[2, 1], block_repeats=[1, 2], d_model=32, n_head=2, d_head=16, d_inner=40,
                       attention_type="factorized", pooling_type="max", separate_cls=False)
    path = tmp_path / "c.json"
    cfg.save(str(path))
    again = FunnelConfig.from_json_file(str(path))
    assert again == cfg


def test_reads_hf_config_with_aliases_and_bookkeeping(tmp_path):
    hf = {"architectures": ["FunnelModel"], "model_type": "funnel", "hidden_size": 64, "num_attention_heads": 4,
          "d_head": 16, "d_inner": 128, "block_sizes": [4, 4, 4], "max_position_embeddings": 512,
          "type_vocab_size": 3, "rel_attn_type": "factorized", "transformers_version": "4.57.0",
          "attention_type": "relative_shift"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(hf))
    cfg = FunnelConfig.from_json_file(str(path))
    assert (cfg.d_model, cfg.n_head, cfg.block_repeats) == (64, 4, [1, 1, 1])
    assert cfg.attention_type == "relative_shift"  # HF ignores the leftover rel_attn_type


def test_reads_original_net_config():
    orig = {"block_size": "6_3x2_3x2", "decoder_size": "1x2", "vocab_size": 100, "d_embed": 24, "d_model": 32,
            "n_head": 2, "d_head": 16, "d_inner": 48, "ff_activation": "gelu", "dropout": 0.1, "dropatt": 0.1,
            "dropact": 0.0, "rel_attn_type": "factorized", "separate_cls": False, "pooling_type": "max",
            "pool_q_only": False}
    cfg = FunnelConfig.from_original_dict(orig)
    assert cfg.block_sizes == [6, 3, 3] and cfg.block_repeats == [1, 2, 2]
    assert cfg.num_decoder_layers == 1 and cfg.decoder_repeats == 2
    assert cfg.d_embed == 24 and cfg.layer_norm_eps == 1e-8 and cfg.hidden_act == "gelu_new"
    assert cfg.always_mask_cls and cfg.mlm_transform and cfg.truncate_seq


@pytest.mark.parametrize("kwargs, words", [
    (dict(block_sizes=[]), "block_sizes"),
    (dict(block_sizes=[2, 2], block_repeats=[1]), "one entry per block"),
    (dict(pooling_type="avg"), "pooling_type"),
    (dict(attention_type="absolute"), "attention_type"),
    (dict(d_model=33), "even"),
    (dict(hidden_dropout=1.5), "hidden_dropout"),
    (dict(hidden_act="mish"), "hidden_act"),
])
def test_rejects_bad_configs_with_reason(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        FunnelConfig(**kwargs)


def test_unknown_keys_rejected_in_our_format():
    with pytest.raises(ConfigError, match="unknown keys"):
        FunnelConfig.from_dict({"d_model": 32, "n_heads": 4})


def test_pooled_lengths_and_minimum():
    cfg = FunnelConfig()
    assert cfg.pooled_lengths(512) == [512, 256, 128]
    assert cfg.pooled_lengths(7) == [7, 4, 2]
    assert cfg.replace(truncate_seq=False).pooled_lengths(7) == [7, 4, 3]
    assert cfg.min_seq_len() == 5
    cfg.check_seq_len(5)
    with pytest.raises(ConfigError, match="too short.*use seq_len >= 5"):
        cfg.check_seq_len(4)


def test_load_config_by_name_and_unknown():
    assert load_config("small").block_sizes == [4, 4, 4]
    assert load_config("medium").block_repeats == [1, 2, 2]
    assert load_config("large-base").num_decoder_layers == 0
    with pytest.raises(ConfigError, match="unknown config 'huge'"):
        load_config("huge")


def test_bad_json_file_is_clear(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        FunnelConfig.from_json_file(str(p))
    with pytest.raises(ConfigError, match="not found"):
        FunnelConfig.from_json_file(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("field, value, words", [
    ("d_model", "big", "d_model must be an integer, got 'big'"),
    ("n_head", [4, 4], "n_head must be an integer, got \\[4, 4\\]"),
    ("block_sizes", [2, "x"], "block_sizes must be a list of integers"),
    ("hidden_dropout", "0.1", "hidden_dropout must be a finite number"),
    ("separate_cls", "yes", "separate_cls must be true or false"),
    ("d_embed", 1.5, "d_embed must be an integer or null"),
])
def test_wrong_types_in_a_config_file_name_field_and_file(tmp_path, field, value, words):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"d_model": 64, "n_head": 2, field: value}))
    with pytest.raises(ConfigError, match=f"{path}: FunnelConfig: {words}"):
        FunnelConfig.from_json_file(str(path))


def test_non_object_and_broken_original_configs_name_the_file(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=f"{path}: a config must be a JSON object"):
        load_config(str(path))
    path = tmp_path / "net_config.json"
    path.write_text(json.dumps({"block_size": "4_4", "d_model": "big"}))
    with pytest.raises(ConfigError, match=f"{path}: not a usable config"):
        load_config(str(path))


def test_replace_rejects_unknown_fields_and_wrong_types():
    cfg = FunnelConfig()
    with pytest.raises(ConfigError, match=r"unknown fields \['d_modle'\] \(did you mean d_model"):
        cfg.replace(d_modle=32)
    with pytest.raises(ConfigError, match="d_inner must be an integer"):
        cfg.replace(d_inner="wide")
    assert cfg.replace(hidden_size=256).d_model == 256  # HF alias, as in config files


def test_numpy_numbers_are_accepted_and_stored_as_plain_python():
    import numpy as np
    cfg = FunnelConfig(d_model=np.int64(64), n_head=2, hidden_dropout=np.float32(0.5),
                       block_sizes=[np.int32(2), 2])
    assert type(cfg.d_model) is int and type(cfg.hidden_dropout) is float
    assert json.loads(cfg.to_json_string())["block_sizes"] == [2, 2]
